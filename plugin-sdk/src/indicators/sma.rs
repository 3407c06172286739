use std::collections::VecDeque;

/// Simple moving average of the last `n` values.
#[derive(Debug, Clone)]
pub struct Sma {
    n: usize,
    window: VecDeque<f64>,
    sum: f64,
}

impl Sma {
    /// An SMA over `n` values. Panics if `n` is 0.
    pub fn new(n: usize) -> Self {
        assert!(n > 0, "SMA period must be at least 1");
        Self {
            n,
            window: VecDeque::with_capacity(n + 1),
            sum: 0.0,
        }
    }

    /// Adds a value; the average once `n` values were seen.
    pub fn update(&mut self, x: f64) -> Option<f64> {
        self.window.push_back(x);
        self.sum += x;
        if self.window.len() > self.n {
            self.sum -= self.window.pop_front().unwrap_or(0.0);
        }
        self.value()
    }

    /// The current average, if ready.
    pub fn value(&self) -> Option<f64> {
        (self.window.len() == self.n).then(|| self.sum / self.n as f64)
    }

    /// The period.
    pub fn period(&self) -> usize {
        self.n
    }
}
