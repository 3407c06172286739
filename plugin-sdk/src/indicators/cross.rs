/// Which way one series crossed another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cross {
    /// `a` went from below `b` to above it.
    Up,
    /// `a` went from above `b` to below it.
    Down,
}

/// Crossings of a series `a` through a series `b`, counted as backtrader's
/// `CrossOver` and TA-Lib-style cross functions count them.
///
/// Feed both values at each step. The difference `a - b` crosses **up**
/// at the step where it becomes strictly positive and the last non-zero
/// difference before it was negative; **down** symmetrically. So:
/// - a tie (`a == b`) is never a crossing, and does not reset the memory:
///   below, equal, equal, above is one crossing up (at the step where `a`
///   is above); below, equal, below is none;
/// - the first non-zero difference is not a crossing (nothing came before
///   it), nor are the ties before it;
/// - a flat stretch of ties, however long, changes nothing.
///
/// Steps where either value is NaN are skipped. Exact ties need exact
/// inputs: the SDK's [`Sma`](super::Sma) gives equal means equal values.
#[derive(Debug, Clone, Default)]
pub struct Crossing {
    /// Whether the last non-zero difference was positive.
    above: Option<bool>,
}

impl Crossing {
    /// No history yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// One step of both series; the crossing it completes, if any.
    pub fn update(&mut self, a: f64, b: f64) -> Option<Cross> {
        let diff = a - b;
        if diff.is_nan() || diff == 0.0 {
            return None;
        }
        let above = diff > 0.0;
        match self.above.replace(above) {
            Some(false) if above => Some(Cross::Up),
            Some(true) if !above => Some(Cross::Down),
            _ => None,
        }
    }

    /// Whether `a` was above `b` at the last step where they differed.
    pub fn above(&self) -> Option<bool> {
        self.above
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(diffs: &[f64]) -> Vec<Option<Cross>> {
        let mut c = Crossing::new();
        diffs.iter().map(|&d| c.update(d, 0.0)).collect()
    }

    #[test]
    fn ties_and_flat_stretches() {
        use Cross::*;
        // A plain crossing each way.
        assert_eq!(run(&[-1.0, 1.0, -1.0]), [None, Some(Up), Some(Down)]);
        // Touching and going back is no crossing, however long the touch.
        assert_eq!(run(&[-1.0, 0.0, -1.0]), [None; 3]);
        assert_eq!(run(&[1.0, 0.0, 0.0, 0.0, 2.0]), [None; 5]);
        // Through a tie: one crossing, where the other side is reached.
        assert_eq!(
            run(&[-1.0, 0.0, 0.0, 1.0, 0.0, -2.0]),
            [None, None, None, Some(Up), None, Some(Down)]
        );
        // Ties first, then a side: nothing to cross from yet.
        assert_eq!(
            run(&[0.0, 0.0, 1.0, 0.0, -1.0]),
            [None, None, None, None, Some(Down)]
        );
        // Staying on one side: no crossing.
        assert_eq!(run(&[1.0, 2.0, 3.0]), [None; 3]);
        // NaN steps are skipped without forgetting the side.
        assert_eq!(run(&[-1.0, f64::NAN, 1.0]), [None, None, Some(Up)]);
    }

    #[test]
    fn differences_not_values() {
        let mut c = Crossing::new();
        assert_eq!(c.update(100.2, 100.4), None);
        assert_eq!(c.update(100.4, 100.4), None);
        assert_eq!(c.above(), Some(false));
        assert_eq!(c.update(100.6, 100.4), Some(Cross::Up));
        assert_eq!(c.above(), Some(true));
    }
}
