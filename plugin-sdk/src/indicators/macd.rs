use super::Ema;

/// Moving Average Convergence Divergence.
#[derive(Debug, Clone)]
pub struct Macd {
    fast: Ema,
    slow: Ema,
    signal: Ema,
}

/// One reading of MACD.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MacdValue {
    /// `EMA(fast) - EMA(slow)`.
    pub macd: f64,
    /// EMA of `macd` over the signal period.
    pub signal: f64,
    /// `macd - signal`.
    pub histogram: f64,
}

impl Macd {
    /// MACD with the given periods (classically 12, 26, 9). Panics if
    /// `fast >= slow` or any period is 0.
    pub fn new(fast: usize, slow: usize, signal: usize) -> Self {
        assert!(
            fast < slow,
            "MACD fast period must be shorter than the slow one"
        );
        Self {
            fast: Ema::new(fast),
            slow: Ema::new(slow),
            signal: Ema::new(signal),
        }
    }

    /// Adds a close; a value once the signal line is ready
    /// (`slow + signal - 1` closes).
    pub fn update(&mut self, close: f64) -> Option<MacdValue> {
        let fast = self.fast.update(close);
        let slow = self.slow.update(close)?;
        let macd = fast? - slow;
        let signal = self.signal.update(macd)?;
        Some(MacdValue {
            macd,
            signal,
            histogram: macd - signal,
        })
    }
}
