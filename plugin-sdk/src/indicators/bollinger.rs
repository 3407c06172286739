use std::collections::VecDeque;

/// Bollinger bands: an SMA and `k` population standard deviations around it.
#[derive(Debug, Clone)]
pub struct Bollinger {
    n: usize,
    k: f64,
    window: VecDeque<f64>,
    sum: f64,
    sum_sq: f64,
}

/// One reading of the bands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bands {
    /// The SMA.
    pub middle: f64,
    /// `middle + k * sd`.
    pub upper: f64,
    /// `middle - k * sd`.
    pub lower: f64,
    /// Population standard deviation of the window.
    pub sd: f64,
}

impl Bollinger {
    /// Bands over `n` values, `k` deviations wide. Panics if `n` is 0.
    pub fn new(n: usize, k: f64) -> Self {
        assert!(n > 0, "Bollinger period must be at least 1");
        Self {
            n,
            k,
            window: VecDeque::with_capacity(n + 1),
            sum: 0.0,
            sum_sq: 0.0,
        }
    }

    /// Adds a value; the bands once `n` values were seen.
    pub fn update(&mut self, x: f64) -> Option<Bands> {
        self.window.push_back(x);
        self.sum += x;
        self.sum_sq += x * x;
        if self.window.len() > self.n {
            let old = self.window.pop_front().unwrap_or(0.0);
            self.sum -= old;
            self.sum_sq -= old * old;
        }
        self.value()
    }

    /// The current bands, if ready.
    pub fn value(&self) -> Option<Bands> {
        if self.window.len() < self.n {
            return None;
        }
        let n = self.n as f64;
        let mean = self.sum / n;
        // Clamp: cancellation can leave a tiny negative variance.
        let sd = (self.sum_sq / n - mean * mean).max(0.0).sqrt();
        Some(Bands {
            middle: mean,
            upper: mean + self.k * sd,
            lower: mean - self.k * sd,
            sd,
        })
    }
}
