use super::exact::{Window, units};

/// Simple moving average of the last `n` values.
///
/// Exact: the window's sum is kept in integer units (see the module text),
/// so the average depends on the last `n` values only, however long the
/// run; the value is the exact mean within 1.5 units in the last place,
/// and two averages with the same exact mean are the same `f64`.
/// Non-finite inputs are ignored.
#[derive(Debug, Clone)]
pub struct Sma {
    window: Window,
    value: Option<f64>,
}

impl Sma {
    /// An SMA over `n` values. Panics if `n` is 0.
    pub fn new(n: usize) -> Self {
        assert!(n > 0, "SMA period must be at least 1");
        Self {
            window: Window::new(n),
            value: None,
        }
    }

    /// Adds a value; the average once `n` values were seen.
    pub fn update(&mut self, x: f64) -> Option<f64> {
        if x.is_finite() {
            self.window.push(units(x));
            self.value = self.window.full().then(|| self.window.mean());
        }
        self.value
    }

    /// The current average, if ready.
    pub fn value(&self) -> Option<f64> {
        self.value
    }

    /// The period.
    pub fn period(&self) -> usize {
        self.window.len()
    }
}
