//! Exact window sums: why `Sma`, `Bollinger` and the EMA seed never drift.
//!
//! Every input is read as a whole number of **units of 10^-18**
//! ([`units`]). A value whose shortest decimal form has at most 15
//! significant digits and 18 places (every price, quantity or tick size
//! met in practice) is taken as exactly that decimal: `3900.1` is 3900.1,
//! not its binary expansion, the same reading the ledger gives prices.
//! Other values are read as a longer decimal that maps back to them when
//! one with at most 18 places is found, otherwise as the multiple of 10^-18
//! nearest to their binary value: an error below one unit in the last
//! place of the value or 5e-19, whichever is larger.
//!
//! Sums of units are integers: adding a value and later taking it out
//! leaves no trace, so a window's sum depends on the window alone, never
//! on how long the run has been or where it started. A mean is turned into
//! an `f64` from the reduced fraction ([`ratio`]), so two windows with the
//! same exact mean give the same `f64`, bit for bit: equal averages of
//! prices on a tick grid are ties, not a coin toss between neighbours.
//!
//! Overflow is never silent: sums past `i128` (or, for squares, 256 bits)
//! panic with a message, which stops the strategy and is reported. The
//! limit is far away: 10^6 values of 10^12 each.

/// Units per 1: 10^18.
pub(crate) const SCALE: i128 = 1_000_000_000_000_000_000;

const POW10: [f64; 19] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18,
];

/// 2^53: integers below it are exact in an `f64`.
const EXACT_INT: f64 = 9_007_199_254_740_992.0;

/// `x` as a whole number of 10^-18 units (see the module text). Panics for
/// values too large to count in an `i128` (|x| above ~1.7e20).
pub(crate) fn units(x: f64) -> i128 {
    // The shortest decimal with at most 18 places whose nearest f64 is x:
    // scale by 10^k, round, and check the decimal maps back to x (one
    // correctly rounded division of two exact f64s). A decimal of at most
    // 15 significant digits is always found at its own number of places.
    for (k, &p) in POW10.iter().enumerate() {
        let scaled = x * p;
        if scaled.abs() >= EXACT_INT {
            break;
        }
        let y = scaled.round();
        if y / p == x {
            return (y as i128) * 10i128.pow(18 - k as u32);
        }
    }
    nearest_unit(x)
}

/// The multiple of 10^-18 nearest to `x`'s binary value, computed exactly
/// (halves round up).
fn nearest_unit(x: f64) -> i128 {
    let bits = x.to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as i32;
    let fraction = bits & ((1u64 << 52) - 1);
    let (mantissa, e) = if exponent == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1u64 << 52), exponent - 1075)
    };
    // mantissa < 2^53 and SCALE < 2^60: the product fits.
    let p = i128::from(mantissa) * SCALE;
    let magnitude = if e >= 0 {
        p.checked_mul(1i128 << e.min(126))
            .filter(|_| e < 127)
            .unwrap_or_else(|| panic!("indicator input {x} is too large to sum exactly"))
    } else if -e >= 127 {
        0
    } else {
        let s = -e;
        (p + (1i128 << (s - 1))) >> s
    };
    if bits >> 63 == 1 {
        -magnitude
    } else {
        magnitude
    }
}

/// `a + b`, or a panic naming the limit.
pub(crate) fn add(a: i128, b: i128) -> i128 {
    a.checked_add(b)
        .unwrap_or_else(|| panic!("indicator window sum overflows i128"))
}

/// The `f64` of `num / den` (den > 0), computed from the reduced fraction:
/// equal fractions give the same `f64`; the result is within 1.5 units in
/// the last place of the exact quotient (two conversions and a division,
/// each correctly rounded).
pub(crate) fn ratio(num: i128, den: i128) -> f64 {
    debug_assert!(den > 0);
    let g = gcd(num.unsigned_abs(), den.unsigned_abs()) as i128;
    if g == 0 {
        return 0.0;
    }
    (num / g) as f64 / (den / g) as f64
}

/// Binary GCD.
fn gcd(mut a: u128, mut b: u128) -> u128 {
    if a == 0 {
        return b;
    }
    if b == 0 {
        return a;
    }
    let shift = (a | b).trailing_zeros();
    a >>= a.trailing_zeros();
    loop {
        b >>= b.trailing_zeros();
        if a > b {
            std::mem::swap(&mut a, &mut b);
        }
        b -= a;
        if b == 0 {
            return a << shift;
        }
    }
}

/// The last `n` inputs as units, and their exact sum.
#[derive(Debug, Clone)]
pub(crate) struct Window {
    n: usize,
    values: std::collections::VecDeque<i128>,
    sum: i128,
}

impl Window {
    pub(crate) fn new(n: usize) -> Self {
        Self {
            n,
            values: std::collections::VecDeque::with_capacity(n + 1),
            sum: 0,
        }
    }

    /// Adds `x` (in units); the value that left the window, if one did.
    pub(crate) fn push(&mut self, x: i128) -> Option<i128> {
        self.values.push_back(x);
        self.sum = add(self.sum, x);
        if self.values.len() <= self.n {
            return None;
        }
        let old = self.values.pop_front()?;
        self.sum -= old;
        Some(old)
    }

    pub(crate) fn full(&self) -> bool {
        self.values.len() == self.n
    }

    pub(crate) fn sum(&self) -> i128 {
        self.sum
    }

    pub(crate) fn len(&self) -> usize {
        self.n
    }

    /// The exact mean as an `f64` (see [`ratio`]).
    pub(crate) fn mean(&self) -> f64 {
        ratio(self.sum, self.n as i128 * SCALE)
    }
}

/// An unsigned 256-bit integer: just enough for sums of squared units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct U256 {
    hi: u128,
    lo: u128,
}

impl U256 {
    /// `a * b`, exact.
    pub(crate) fn product(a: u128, b: u128) -> Self {
        let mask = u128::from(u64::MAX);
        let (a1, a0) = (a >> 64, a & mask);
        let (b1, b0) = (b >> 64, b & mask);
        let (p00, p01, p10, p11) = (a0 * b0, a0 * b1, a1 * b0, a1 * b1);
        let middle = (p00 >> 64) + (p01 & mask) + (p10 & mask);
        let lo = (p00 & mask) | (middle << 64);
        let hi = p11 + (p01 >> 64) + (p10 >> 64) + (middle >> 64);
        Self { hi, lo }
    }

    /// `x * x` for a signed `x`.
    pub(crate) fn square(x: i128) -> Self {
        Self::product(x.unsigned_abs(), x.unsigned_abs())
    }

    pub(crate) fn plus(self, other: Self) -> Self {
        let (lo, carry) = self.lo.overflowing_add(other.lo);
        let hi = self
            .hi
            .checked_add(other.hi)
            .and_then(|h| h.checked_add(u128::from(carry)))
            .unwrap_or_else(|| panic!("indicator sum of squares overflows 256 bits"));
        Self { hi, lo }
    }

    /// `self - other`; panics below zero (a bug, not an input problem).
    pub(crate) fn minus(self, other: Self) -> Self {
        let (lo, borrow) = self.lo.overflowing_sub(other.lo);
        let hi = self
            .hi
            .checked_sub(other.hi)
            .and_then(|h| h.checked_sub(u128::from(borrow)))
            .unwrap_or_else(|| panic!("indicator sum of squares went negative"));
        Self { hi, lo }
    }

    /// `self * k`.
    pub(crate) fn times(self, k: u64) -> Self {
        let lo = Self::product(self.lo, u128::from(k));
        let hi = self
            .hi
            .checked_mul(u128::from(k))
            .and_then(|h| h.checked_add(lo.hi))
            .unwrap_or_else(|| panic!("indicator sum of squares overflows 256 bits"));
        Self { hi, lo: lo.lo }
    }

    /// The nearest `f64`, within one unit in the last place.
    pub(crate) fn to_f64(self) -> f64 {
        self.hi as f64 * 2f64.powi(128) + self.lo as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_read_as_written() {
        assert_eq!(units(3900.1), 3_900_100_000_000_000_000_000);
        assert_eq!(units(-0.2), -200_000_000_000_000_000);
        assert_eq!(units(0.0), 0);
        assert_eq!(units(1e-18), 1);
        assert_eq!(units(123_456.789_012_345), 123_456_789_012_345_000_000_000);
        // Sixteen digits: a decimal that maps back to the value.
        assert_eq!(units(1.0 / 3.0), 333_333_333_333_333_300);
        // Beyond 18 places: the nearest unit of the binary value.
        assert_eq!(units(7e-19), 1);
        assert_eq!(units(-7e-19), -1);
        assert_eq!(units(2f64.powi(-70)), 0);
        assert_eq!(units(2f64.powi(-60)), 1); // 0.867 units
        // A sum of decimal prices taken exactly: 0.1 + 0.2 - 0.3 = 0.
        assert_eq!(units(0.1) + units(0.2) - units(0.3), 0);
    }

    #[test]
    fn ratios_of_equal_fractions_are_equal() {
        let s10 = units(4000.2) * 10;
        let s30 = units(4000.2) * 30;
        assert_eq!(ratio(s10, 10 * SCALE), ratio(s30, 30 * SCALE));
        assert_eq!(ratio(s10, 10 * SCALE), 4000.2);
        assert_eq!(ratio(-3, 6), -0.5);
        assert_eq!(ratio(0, 7), 0.0);
        assert_eq!(gcd(12, 18), 6);
        assert_eq!(gcd(0, 5), 5);
    }

    #[test]
    fn wide_arithmetic() {
        let x = (1i128 << 100) + 12345;
        let sq = U256::square(x);
        assert_eq!(sq.minus(sq), U256::default());
        assert_eq!(
            U256::product(u128::MAX, 2),
            U256 {
                hi: 1,
                lo: u128::MAX - 1
            }
        );
        assert_eq!(
            U256::product(3, 5).times(7).plus(U256::product(1, 1)).lo,
            106
        );
        let big = U256::product(1 << 127, 1 << 127); // 2^254
        assert_eq!(big.to_f64(), 2f64.powi(254));
    }
}
