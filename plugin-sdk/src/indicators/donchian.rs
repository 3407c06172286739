use std::collections::VecDeque;

/// Donchian channel: the highest high and lowest low of the last `n` bars,
/// kept with monotonic queues (amortized O(1) per bar).
#[derive(Debug, Clone)]
pub struct Donchian {
    n: usize,
    index: u64,
    highs: VecDeque<(u64, f64)>,
    lows: VecDeque<(u64, f64)>,
}

/// One reading of the channel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Channel {
    /// Highest high of the window.
    pub upper: f64,
    /// Lowest low of the window.
    pub lower: f64,
}

impl Channel {
    /// The channel's midpoint.
    pub fn middle(&self) -> f64 {
        (self.upper + self.lower) / 2.0
    }
}

impl Donchian {
    /// A channel over `n` bars. Panics if `n` is 0.
    pub fn new(n: usize) -> Self {
        assert!(n > 0, "Donchian period must be at least 1");
        Self {
            n,
            index: 0,
            highs: VecDeque::new(),
            lows: VecDeque::new(),
        }
    }

    /// Adds a bar; the channel once `n` bars were seen.
    pub fn update(&mut self, high: f64, low: f64) -> Option<Channel> {
        let i = self.index;
        self.index += 1;
        while self.highs.back().is_some_and(|&(_, h)| h <= high) {
            self.highs.pop_back();
        }
        self.highs.push_back((i, high));
        while self.lows.back().is_some_and(|&(_, l)| l >= low) {
            self.lows.pop_back();
        }
        self.lows.push_back((i, low));
        let oldest = (i + 1).saturating_sub(self.n as u64);
        while self.highs.front().is_some_and(|&(j, _)| j < oldest) {
            self.highs.pop_front();
        }
        while self.lows.front().is_some_and(|&(j, _)| j < oldest) {
            self.lows.pop_front();
        }
        self.value()
    }

    /// The current channel, if ready.
    pub fn value(&self) -> Option<Channel> {
        if self.index < self.n as u64 {
            return None;
        }
        Some(Channel {
            upper: self.highs.front()?.1,
            lower: self.lows.front()?.1,
        })
    }
}
