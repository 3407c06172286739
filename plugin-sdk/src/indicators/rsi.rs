/// Relative Strength Index with Wilder's smoothing, in 0..=100.
#[derive(Debug, Clone)]
pub struct Rsi {
    n: usize,
    prev: Option<f64>,
    changes: usize,
    gain: f64,
    loss: f64,
    ready: bool,
}

impl Rsi {
    /// An RSI of period `n`. Panics if `n` is 0.
    pub fn new(n: usize) -> Self {
        assert!(n > 0, "RSI period must be at least 1");
        Self {
            n,
            prev: None,
            changes: 0,
            gain: 0.0,
            loss: 0.0,
            ready: false,
        }
    }

    /// Adds a close; the RSI once `n` changes (n + 1 closes) were seen.
    pub fn update(&mut self, close: f64) -> Option<f64> {
        let prev = self.prev.replace(close)?;
        let change = close - prev;
        let (g, l) = (change.max(0.0), (-change).max(0.0));
        let n = self.n as f64;
        if self.ready {
            self.gain = (self.gain * (n - 1.0) + g) / n;
            self.loss = (self.loss * (n - 1.0) + l) / n;
        } else {
            self.changes += 1;
            self.gain += g;
            self.loss += l;
            if self.changes == self.n {
                self.gain /= n;
                self.loss /= n;
                self.ready = true;
            }
        }
        self.value()
    }

    /// The current RSI, if ready. 100 when there were no losses, 50 when the
    /// window was flat.
    pub fn value(&self) -> Option<f64> {
        if !self.ready {
            return None;
        }
        Some(if self.loss == 0.0 {
            if self.gain == 0.0 { 50.0 } else { 100.0 }
        } else {
            100.0 - 100.0 / (1.0 + self.gain / self.loss)
        })
    }
}
