/// Exponential moving average, `alpha = 2 / (n + 1)`, seeded with the SMA
/// of the first `n` values.
#[derive(Debug, Clone)]
pub struct Ema {
    n: usize,
    alpha: f64,
    seen: usize,
    seed_sum: f64,
    value: Option<f64>,
}

impl Ema {
    /// An EMA of period `n`. Panics if `n` is 0.
    pub fn new(n: usize) -> Self {
        assert!(n > 0, "EMA period must be at least 1");
        Self {
            n,
            alpha: 2.0 / (n as f64 + 1.0),
            seen: 0,
            seed_sum: 0.0,
            value: None,
        }
    }

    /// Adds a value; the average once `n` values were seen.
    pub fn update(&mut self, x: f64) -> Option<f64> {
        self.seen += 1;
        self.value = match self.value {
            Some(prev) => Some(prev + self.alpha * (x - prev)),
            None => {
                self.seed_sum += x;
                (self.seen == self.n).then(|| self.seed_sum / self.n as f64)
            }
        };
        self.value
    }

    /// The current average, if ready.
    pub fn value(&self) -> Option<f64> {
        self.value
    }
}
