use super::exact::{SCALE, U256, Window, units};

/// Bollinger bands: an SMA and `k` population standard deviations around it.
///
/// Exact sums like [`Sma`](super::Sma): the middle band is the exact mean
/// of the window (within 1.5 units in the last place); the deviation is
/// the square root of the exact variance `(n·Σx² − (Σx)²) / n²`, kept in
/// integers, so it is within 3 units in the last place whatever the run's
/// length and whatever the level of the prices (no cancellation). The
/// bands add `±k·sd` in `f64`. Non-finite inputs are ignored.
#[derive(Debug, Clone)]
pub struct Bollinger {
    k: f64,
    window: Window,
    sum_sq: U256,
    value: Option<Bands>,
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
            k,
            window: Window::new(n),
            sum_sq: U256::default(),
            value: None,
        }
    }

    /// Adds a value; the bands once `n` values were seen.
    pub fn update(&mut self, x: f64) -> Option<Bands> {
        if !x.is_finite() {
            return self.value;
        }
        let u = units(x);
        self.sum_sq = self.sum_sq.plus(U256::square(u));
        if let Some(old) = self.window.push(u) {
            self.sum_sq = self.sum_sq.minus(U256::square(old));
        }
        self.value = self.window.full().then(|| self.bands());
        self.value
    }

    /// The current bands, if ready.
    pub fn value(&self) -> Option<Bands> {
        self.value
    }

    fn bands(&self) -> Bands {
        let n = self.window.len();
        let middle = self.window.mean();
        // n·Σx² − (Σx)² ≥ 0 (Cauchy–Schwarz), exact.
        let spread = self
            .sum_sq
            .times(n as u64)
            .minus(U256::square(self.window.sum()));
        let sd = spread.to_f64().sqrt() / (n as f64 * SCALE as f64);
        Bands {
            middle,
            upper: middle + self.k * sd,
            lower: middle - self.k * sd,
            sd,
        }
    }
}
