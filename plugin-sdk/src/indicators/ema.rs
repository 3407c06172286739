use super::exact::{SCALE, add, ratio, units};

/// Exponential moving average, `alpha = 2 / (n + 1)`, seeded with the SMA
/// of the first `n` values (as TA-Lib does).
///
/// The seed is the exact mean (integer units, like [`Sma`](super::Sma));
/// after it, `ema += alpha * (x - ema)` in `f64`. Each step shrinks the
/// error carried from earlier steps by `1 - alpha`, so the error never
/// grows with the run: it stays within `(n + 1) · ε · M` of the exact
/// recurrence (ε = 2^-52, M the largest |x| seen), tested over millions
/// of updates. Non-finite inputs are ignored.
#[derive(Debug, Clone)]
pub struct Ema {
    n: usize,
    alpha: f64,
    seen: usize,
    seed_sum: i128,
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
            seed_sum: 0,
            value: None,
        }
    }

    /// Adds a value; the average once `n` values were seen.
    pub fn update(&mut self, x: f64) -> Option<f64> {
        if !x.is_finite() {
            return self.value;
        }
        self.value = match self.value {
            Some(prev) => Some(prev + self.alpha * (x - prev)),
            None => {
                self.seen += 1;
                self.seed_sum = add(self.seed_sum, units(x));
                (self.seen == self.n).then(|| ratio(self.seed_sum, self.n as i128 * SCALE))
            }
        };
        self.value
    }

    /// The current average, if ready.
    pub fn value(&self) -> Option<f64> {
        self.value
    }
}
