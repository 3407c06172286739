//! The indicators against exact rational arithmetic over long series on a
//! tick grid, where equal averages (ties) are common.
//!
//! The references work on the integer ticks the prices were made from,
//! with nothing of the indicators' own code: window sums of ticks for the
//! means and variances (exact rationals), and the recurrences (EMA, Wilder,
//! MACD) in fixed point with 60 fractional bits, whose rounding (< 2^-60 a
//! step, shrunk by every later step) is ten thousand times below what an
//! `f64` can resolve at these prices.

use super::*;

/// ε: the spacing of `f64`s at 1.
const EPS: f64 = f64::EPSILON;
/// Fractional bits of the fixed-point references.
const FRAC: u32 = 60;

/// A price grid: price = ticks * num / den.
#[derive(Clone, Copy)]
struct Grid {
    num: i128,
    den: i128,
}

impl Grid {
    /// The nearest `f64` to the decimal price (one correctly rounded
    /// division of two exact integers).
    fn price(self, ticks: i64) -> f64 {
        (i128::from(ticks) * self.num) as f64 / self.den as f64
    }

    /// `ticks * num / den` in fixed point.
    fn fixed(self, ticks: i64) -> i128 {
        ((i128::from(ticks) * self.num) << FRAC) / self.den
    }
}

/// A random walk of integer ticks that often stands still or steps by
/// one: averages of such a walk tie often.
fn walk(n: usize, start: i64, seed: u64) -> Vec<i64> {
    let mut state = seed;
    let mut t = start;
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            t += match state >> 61 {
                0..=2 => 0,
                3 | 4 => 1,
                5 | 6 => -1,
                _ => ((state >> 40) % 9) as i64 - 4,
            };
            t
        })
        .collect()
}

/// |v − num/den| in units in the last place of `v`, from integers.
fn ulps_off(v: f64, num: i128, den: i128) -> f64 {
    assert!(v.is_finite() && v != 0.0 && den > 0);
    let bits = v.to_bits();
    let e = ((bits >> 52) & 0x7ff) as i32 - 1075;
    let m = ((bits & ((1 << 52) - 1)) | (1 << 52)) as i128 * if v < 0.0 { -1 } else { 1 };
    // v = m·2^e with e < 0 here; |v − num/den| / 2^e = |m·den − num·2^−e| / den.
    assert!(e < 0, "{v}");
    let diff = m * den - (num << -e);
    diff.unsigned_abs() as f64 / den as f64
}

fn fixed_to_f64(x: i128) -> f64 {
    x as f64 / (1u128 << FRAC) as f64
}

const GRIDS: [(Grid, i64); 2] = [
    // 0.2 around 4000 (index futures), 0.01 around 37.5.
    (Grid { num: 1, den: 5 }, 20_000),
    (Grid { num: 1, den: 100 }, 3_750),
];

#[test]
fn sma_is_exact_ties_are_ties_and_history_does_not_matter() {
    const N: usize = 2_000_000;
    let (nf, ns) = (10usize, 30usize);
    for (g, start) in GRIDS {
        let ticks = walk(N, start, 7);
        let prices: Vec<f64> = ticks.iter().map(|&t| g.price(t)).collect();
        let (mut fast, mut slow) = (Sma::new(nf), Sma::new(ns));
        let mut cross = Crossing::new();
        // The definition, on exact signs: the last non-zero sign.
        let mut last_sign = 0i128;
        let (mut sum_f, mut sum_s) = (0i128, 0i128);
        let (mut ties, mut crossings, mut worst) = (0usize, 0usize, 0f64);
        // A second pair started far into the run must agree bit for bit.
        let late_start = 777_777;
        let (mut late_fast, mut late_slow) = (Sma::new(nf), Sma::new(ns));
        for i in 0..N {
            sum_f += i128::from(ticks[i]);
            sum_s += i128::from(ticks[i]);
            if i >= nf {
                sum_f -= i128::from(ticks[i - nf]);
            }
            if i >= ns {
                sum_s -= i128::from(ticks[i - ns]);
            }
            let (f, s) = (fast.update(prices[i]), slow.update(prices[i]));
            if i >= late_start {
                let (lf, ls) = (late_fast.update(prices[i]), late_slow.update(prices[i]));
                if i >= late_start + ns - 1 {
                    assert_eq!((lf, ls), (f, s), "history changed the value at {i}");
                }
            }
            if i + 1 < ns {
                assert_eq!(s, None);
                continue;
            }
            let (f, s) = (f.unwrap(), s.unwrap());
            worst = worst
                .max(ulps_off(f, sum_f * g.num, nf as i128 * g.den))
                .max(ulps_off(s, sum_s * g.num, ns as i128 * g.den));
            // Exact comparison of the two means: sum_f/nf vs sum_s/ns.
            let sign = (sum_f * ns as i128 - sum_s * nf as i128).signum();
            assert_eq!(
                (f - s).partial_cmp(&0.0),
                Some(sign.cmp(&0)),
                "order of the averages at bar {i}: {f} vs {s}"
            );
            ties += usize::from(sign == 0);
            let expected = match (last_sign, sign) {
                (-1, 1) => Some(Cross::Up),
                (1, -1) => Some(Cross::Down),
                _ => None,
            };
            if sign != 0 {
                last_sign = sign;
            }
            let got = cross.update(f, s);
            assert_eq!(got, expected, "crossing at bar {i}");
            crossings += usize::from(got.is_some());
        }
        assert!(worst <= 1.5, "SMA within 1.5 ulp, worst {worst}");
        assert!(ties > N / 500, "the series must tie often: {ties}");
        eprintln!(
            "grid {}/{}: worst {worst} ulp, {ties} ties, {crossings} crossings",
            g.num, g.den
        );
        assert!(crossings > N / 200, "{crossings}");
    }
}

#[test]
fn bollinger_is_exact_at_any_length() {
    const N: usize = 2_000_000;
    let n = 20usize;
    for (g, start) in GRIDS {
        let ticks = walk(N, start, 11);
        let mut bands = Bollinger::new(n, 2.0);
        let (mut sum, mut sum_sq) = (0i128, 0i128);
        let mut worst_sd = 0f64;
        for i in 0..N {
            let t = i128::from(ticks[i]);
            sum += t;
            sum_sq += t * t;
            if i >= n {
                let old = i128::from(ticks[i - n]);
                sum -= old;
                sum_sq -= old * old;
            }
            let got = bands.update(g.price(ticks[i]));
            if i + 1 < n {
                assert_eq!(got, None);
                continue;
            }
            let b = got.unwrap();
            assert!(ulps_off(b.middle, sum * g.num, n as i128 * g.den) <= 1.5);
            // Variance in ticks², exact: (n·Σt² − (Σt)²) / n².
            let spread = n as i128 * sum_sq - sum * sum;
            let sd = (spread as f64).sqrt() / n as f64 * (g.num as f64 / g.den as f64);
            if sd == 0.0 {
                assert_eq!(b.sd, 0.0, "a flat window has no deviation (bar {i})");
            } else {
                worst_sd = worst_sd.max((b.sd - sd).abs() / (sd * EPS));
            }
            let width = (b.upper - b.middle) - 2.0 * b.sd;
            assert!(width.abs() <= 4.0 * EPS * b.middle, "bar {i}: {b:?}");
        }
        eprintln!("grid {}/{}: sd worst {worst_sd} ε", g.num, g.den);
        assert!(worst_sd <= 4.0, "sd within 4 ε relative, worst {worst_sd}");
    }
}

/// `v = ((n−1)·v + k·x) / (n−1+k)` in fixed point, seeded with the mean
/// of the first `n`: the EMA with `alpha = 2/(n+1)` for `k = 2`, Wilder's
/// average for `k = 1`.
struct FixedSmoothing {
    n: i128,
    k: i128,
    seen: i128,
    value: i128,
}

impl FixedSmoothing {
    fn ema(n: usize) -> Self {
        Self::new(n, 2)
    }

    fn wilder(n: usize) -> Self {
        Self::new(n, 1)
    }

    fn new(n: usize, k: i128) -> Self {
        Self {
            n: n as i128,
            k,
            seen: 0,
            value: 0,
        }
    }

    fn update(&mut self, x: i128) -> Option<i128> {
        self.seen += 1;
        if self.seen <= self.n {
            self.value += x;
            if self.seen < self.n {
                return None;
            }
            self.value /= self.n;
        } else {
            self.value = ((self.n - 1) * self.value + self.k * x) / (self.n - 1 + self.k);
        }
        Some(self.value)
    }
}

#[test]
fn recurrences_stay_within_their_bounds_over_a_million_updates() {
    const N: usize = 1_000_000;
    for (g, start) in GRIDS {
        let ticks = walk(N, start, 23);
        // Bars: high and low a few ticks around the close.
        let highs: Vec<i64> = ticks
            .iter()
            .enumerate()
            .map(|(i, t)| t + (i % 3) as i64)
            .collect();
        let lows: Vec<i64> = ticks
            .iter()
            .enumerate()
            .map(|(i, t)| t - (i % 4) as i64)
            .collect();
        let m = ticks
            .iter()
            .chain(&highs)
            .map(|&t| g.price(t).abs())
            .fold(0.0, f64::max);

        let (ne, nw, (mf, ms, msig)) = (200usize, 14usize, (12usize, 26usize, 9usize));
        let (mut ema, mut rsi, mut atr, mut macd) = (
            Ema::new(ne),
            Rsi::new(nw),
            Atr::new(nw),
            Macd::new(mf, ms, msig),
        );
        let mut ref_ema = FixedSmoothing::ema(ne);
        let (mut ref_gain, mut ref_loss, mut ref_atr) = (
            FixedSmoothing::wilder(nw),
            FixedSmoothing::wilder(nw),
            FixedSmoothing::wilder(nw),
        );
        let (mut ref_fast, mut ref_slow, mut ref_signal) = (
            FixedSmoothing::ema(mf),
            FixedSmoothing::ema(ms),
            FixedSmoothing::ema(msig),
        );
        let mut worst = [0f64; 4];
        for i in 0..N {
            let (c, h, l) = (ticks[i], highs[i], lows[i]);
            let x = g.fixed(c);

            let got = ema.update(g.price(c));
            let want = ref_ema.update(x);
            assert_eq!(got.is_some(), want.is_some(), "EMA warm-up at {i}");
            if let (Some(a), Some(b)) = (got, want) {
                worst[0] = worst[0].max((a - fixed_to_f64(b)).abs() / (EPS * m));
            }

            // RSI from exact changes in ticks.
            let got = rsi.update(g.price(c));
            if i > 0 {
                let change = g.fixed(c) - g.fixed(ticks[i - 1]);
                let gain = ref_gain.update(change.max(0));
                let loss = ref_loss.update((-change).max(0));
                assert_eq!(got.is_some(), gain.is_some(), "RSI warm-up at {i}");
                if let (Some(r), Some(gn), Some(ls)) = (got, gain, loss) {
                    let want = if gn + ls == 0 {
                        50.0
                    } else {
                        100.0 * fixed_to_f64(gn) / fixed_to_f64(gn + ls)
                    };
                    // The averages are off by at most 2n·ε·M; RSI is
                    // 100·G/(G+L), so its error scales by 100/(G+L).
                    let scale = 100.0 / fixed_to_f64(gn + ls).max(f64::MIN_POSITIVE);
                    worst[1] = worst[1].max((r - want).abs() / (EPS * m * scale));
                }
            } else {
                assert_eq!(got, None);
            }

            // ATR: true range in ticks.
            let got = atr.update(g.price(h), g.price(l), g.price(c));
            let tr = if i == 0 {
                h - l
            } else {
                let pc = ticks[i - 1];
                (h - l).max((h - pc).abs()).max((l - pc).abs())
            };
            let want = ref_atr.update(g.fixed(tr));
            assert_eq!(got.is_some(), want.is_some(), "ATR warm-up at {i}");
            if let (Some(a), Some(b)) = (got, want) {
                worst[2] = worst[2].max((a - fixed_to_f64(b)).abs() / (EPS * m));
            }

            // MACD: EMA(12) − EMA(26), signal EMA(9) of that.
            let got = macd.update(g.price(c));
            let (f, s) = (ref_fast.update(x), ref_slow.update(x));
            let want = match (f, s) {
                (Some(f), Some(s)) => ref_signal.update(f - s).map(|sig| (f - s, sig)),
                _ => None,
            };
            assert_eq!(got.is_some(), want.is_some(), "MACD warm-up at {i}");
            if let (Some(v), Some((line, sig))) = (got, want) {
                let off = (v.macd - fixed_to_f64(line))
                    .abs()
                    .max((v.signal - fixed_to_f64(sig)).abs());
                worst[3] = worst[3].max(off / (EPS * m));
            }
        }
        eprintln!(
            "grid {}/{}: EMA, RSI, ATR, MACD worst {worst:?} ε·M",
            g.num, g.den
        );
        // The bounds the module text states.
        let bounds = [
            (ne + 1) as f64,
            2.0 * nw as f64,
            2.0 * nw as f64,
            (ms + msig + 2) as f64,
        ];
        for ((name, w), b) in ["EMA", "RSI", "ATR", "MACD"].iter().zip(worst).zip(bounds) {
            assert!(w <= b, "{name}: worst error {w} ε·M, bound {b}");
        }
    }
}
