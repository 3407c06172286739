/// Average True Range with Wilder's smoothing.
#[derive(Debug, Clone)]
pub struct Atr {
    n: usize,
    prev_close: Option<f64>,
    seen: usize,
    value: f64,
    ready: bool,
}

impl Atr {
    /// An ATR of period `n`. Panics if `n` is 0.
    pub fn new(n: usize) -> Self {
        assert!(n > 0, "ATR period must be at least 1");
        Self {
            n,
            prev_close: None,
            seen: 0,
            value: 0.0,
            ready: false,
        }
    }

    /// The true range of a bar given the previous close (none for the first bar).
    pub fn true_range(high: f64, low: f64, prev_close: Option<f64>) -> f64 {
        match prev_close {
            None => high - low,
            Some(c) => (high - low).max((high - c).abs()).max((low - c).abs()),
        }
    }

    /// Adds a bar; the ATR once `n` bars were seen.
    pub fn update(&mut self, high: f64, low: f64, close: f64) -> Option<f64> {
        let tr = Self::true_range(high, low, self.prev_close);
        self.prev_close = Some(close);
        let n = self.n as f64;
        if self.ready {
            self.value = (self.value * (n - 1.0) + tr) / n;
        } else {
            self.seen += 1;
            self.value += tr;
            if self.seen == self.n {
                self.value /= n;
                self.ready = true;
            }
        }
        self.value()
    }

    /// The current ATR, if ready.
    pub fn value(&self) -> Option<f64> {
        self.ready.then_some(self.value)
    }
}
