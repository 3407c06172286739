//! The example strategies against independent simulations of the same
//! rules, over long series: a million bars, a million ticks, and a pair of
//! symbols with half a million bars each.
//!
//! Prices are whole ticks of 0.2 that often stand still, so the SMA
//! crossover's averages tie exactly thousands of times. Each reference is
//! written from the rules (`docs/backtesting.md`, the strategy's own
//! description) and shares no code with the engine, the ledger or the SDK:
//! averages from integer tick sums, crossings by their definition,
//! fills at the next bar's open or the next quote, 0.1 % commission, money
//! in `Decimal`. Fills, commissions, final cash and final equity must be
//! equal to the cent and beyond.

mod support;

use std::collections::BTreeMap;

use qb_backtest::engine::*;
use qb_core::market::Instrument;
use rust_decimal::Decimal;
use support::{params, plugin};

/// Prices are `ticks / 5`: a grid of 0.2.
const DEN: i64 = 5;
const T0: i64 = 1_700_000_000_000_000_000;

fn price(ticks: i64) -> f64 {
    ticks as f64 / DEN as f64
}

fn money(ticks: i64) -> Decimal {
    Decimal::new(ticks * 2, 1)
}

fn rate() -> Decimal {
    Decimal::new(1, 3)
}

fn instrument(symbol: &str) -> Instrument {
    let mut i = Instrument::with_defaults(symbol);
    i.price_tick = Decimal::new(2, 1);
    i.timezone = "UTC".into();
    // 0.1 % on every fill, whatever day the position was opened.
    i.fees.open_rate = rate();
    i.fees.close_rate = rate();
    i.fees.close_today_rate = rate();
    i
}

/// A random walk of ticks: stands still 3 steps in 8, else moves by one
/// or (1 in 8) up to 4.
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

/// Bars whose closes are `closes`; each opens a tick or so away from the
/// previous close.
fn bars(symbol: &str, closes: &[i64], opens: &[i64]) -> SymbolBars {
    let mut b = SymbolBars {
        symbol: symbol.into(),
        ..Default::default()
    };
    for (i, (&o, &c)) in opens.iter().zip(closes).enumerate() {
        b.ts.push(T0 + i as i64 * 60_000_000_000);
        b.open.push(price(o));
        b.high.push(price(o.max(c) + 1));
        b.low.push(price(o.min(c) - 1));
        b.close.push(price(c));
        b.volume.push(1.0);
    }
    b
}

fn opens_near(closes: &[i64]) -> Vec<i64> {
    closes
        .iter()
        .enumerate()
        .map(|(i, &c)| match i {
            0 => c,
            _ => closes[i - 1] + (i % 3) as i64 - 1,
        })
        .collect()
}

/// The reference's book: one position per symbol, money in Decimal.
#[derive(Default)]
struct Book {
    /// (ts, symbol, signed qty, price, commission).
    fills: Vec<(i64, String, Decimal, Decimal, Decimal)>,
    /// symbol -> (signed qty, entry price).
    positions: BTreeMap<String, (Decimal, Decimal)>,
    realized: Decimal,
    fees: Decimal,
}

impl Book {
    fn qty(&self, symbol: &str) -> Decimal {
        self.positions.get(symbol).map_or(Decimal::ZERO, |p| p.0)
    }

    fn fill(&mut self, ts: i64, symbol: &str, qty: Decimal, price: Decimal) {
        let fee = (qty * price).abs() * rate();
        let (held, entry) = self.positions.get(symbol).copied().unwrap_or_default();
        let after = held + qty;
        if held.is_zero() {
            self.positions.insert(symbol.into(), (after, price));
        } else {
            // The examples open with one fill and close with one.
            assert!(after.is_zero(), "the examples never add to a position");
            self.realized += (price - entry) * held;
            self.positions.remove(symbol);
        }
        self.fees += fee;
        self.fills.push((ts, symbol.into(), qty, price, fee));
    }

    fn check(&self, got: &RunResult, marks: &BTreeMap<String, Decimal>) {
        let initial = Settings::default().initial_cash;
        let fills: Vec<_> = got
            .fills
            .iter()
            .map(|f| (f.ts, f.symbol.clone(), f.qty, f.price, f.commission))
            .collect();
        assert_eq!(fills.len(), self.fills.len(), "number of fills");
        for (i, (g, w)) in fills.iter().zip(&self.fills).enumerate() {
            assert_eq!(g, w, "fill {i}");
        }
        let cash = initial + self.realized - self.fees;
        let open: Decimal = self
            .positions
            .iter()
            .map(|(s, (q, entry))| (marks[s] - entry) * q)
            .sum();
        assert_eq!(got.final_cash, cash, "final cash");
        assert_eq!(got.final_equity, cash + open, "final equity");
    }
}

/// The SMA crossover's crossings, by definition: at each row where both
/// averages exist, the sign of `fast − slow` compared exactly (integer
/// sums: `sum_f · slow` vs `sum_s · fast`); a crossing is a non-zero sign
/// opposite to the last non-zero sign. Also counts the ties.
fn sma_crossings(ticks: &[i64], fast: usize, slow: usize) -> (Vec<(usize, i64)>, usize) {
    let (mut sum_f, mut sum_s, mut last, mut ties) = (0i64, 0i64, 0i64, 0);
    let mut out = Vec::new();
    for (i, &t) in ticks.iter().enumerate() {
        sum_f += t - if i >= fast { ticks[i - fast] } else { 0 };
        sum_s += t - if i >= slow { ticks[i - slow] } else { 0 };
        if i + 1 < slow {
            continue;
        }
        let sign =
            (i128::from(sum_f) * slow as i128 - i128::from(sum_s) * fast as i128).signum() as i64;
        if sign == 0 {
            ties += 1;
            continue;
        }
        if last == -sign {
            out.push((i, sign));
        }
        last = sign;
    }
    (out, ties)
}

/// Long only: buy `size` on a crossing up while flat, sell everything on
/// a crossing down while long; the order fills on the next row at
/// `fill(row, side)` (none after the last row).
fn sma_reference(
    ticks: &[i64],
    ts: &[i64],
    size: i64,
    (fast, slow): (usize, usize),
    fill: impl Fn(usize, i64) -> i64,
) -> Book {
    let (crossings, ties) = sma_crossings(ticks, fast, slow);
    assert!(
        ties > ticks.len() / 1000,
        "the series must tie often: {ties}"
    );
    eprintln!(
        "{} rows: {ties} ties, {} crossings",
        ticks.len(),
        crossings.len()
    );
    let mut book = Book::default();
    for (i, sign) in crossings {
        let held = book.qty("X");
        let qty = match sign {
            1 if held.is_zero() => Decimal::from(size),
            -1 if held > Decimal::ZERO => -held,
            _ => continue,
        };
        if i + 1 < ticks.len() {
            let side = if qty > Decimal::ZERO { 1 } else { -1 };
            book.fill(ts[i + 1], "X", qty, money(fill(i + 1, side)));
        }
    }
    book
}

/// The SMA crossover example over `feed` of symbol X, default settings.
fn run_sma(feed: Feed<'_>, (fast, slow): (usize, usize), size: i64) -> RunResult {
    run(
        &plugin("sma_crossover"),
        &params(&[
            ("fast", fast as f64),
            ("slow", slow as f64),
            ("size", size as f64),
        ]),
        feed,
        vec![instrument("X")],
        &Settings::default(),
        |_| true,
    )
    .unwrap()
}

#[test]
fn sma_crossover_on_a_million_bars() {
    const N: usize = 1_000_000;
    let closes = walk(N, 20_000, 5);
    let opens = opens_near(&closes);
    let data = bars("X", &closes, &opens);
    let (fast, slow, size) = (10, 30, 3);
    let got = run_sma(Feed::Bars(std::slice::from_ref(&data)), (fast, slow), size);
    let want = sma_reference(&closes, &data.ts, size, (fast, slow), |row, _| opens[row]);
    assert!(want.fills.len() > N / 100, "{}", want.fills.len());
    want.check(&got, &BTreeMap::from([("X".into(), money(closes[N - 1]))]));
    assert_eq!(got.rows, N as u64);
}

#[test]
fn sma_crossover_on_a_million_ticks() {
    const N: usize = 1_000_000;
    let trades = walk(N, 20_000, 6);
    // Quotes around the trade: bid one or two ticks under, ask one over.
    let bid: Vec<i64> = trades
        .iter()
        .enumerate()
        .map(|(i, t)| t - 1 - (i % 2) as i64)
        .collect();
    let ask: Vec<i64> = trades.iter().map(|t| t + 1).collect();
    let mut data = SymbolTicks {
        symbol: "X".into(),
        ..Default::default()
    };
    for i in 0..N {
        data.ts.push(T0 + i as i64 * 1_000_000_000);
        data.price.push(price(trades[i]));
        data.size.push(1.0);
        data.bid.push(price(bid[i]));
        data.ask.push(price(ask[i]));
    }
    let (fast, slow, size) = (20, 60, 2);
    let got = run_sma(Feed::Ticks(std::slice::from_ref(&data)), (fast, slow), size);
    // A market order fills at the next quote: buys at its ask, sells at its bid.
    let want = sma_reference(&trades, &data.ts, size, (fast, slow), |row, side| {
        if side > 0 { ask[row] } else { bid[row] }
    });
    assert!(want.fills.len() > N / 200, "{}", want.fills.len());
    want.check(&got, &BTreeMap::from([("X".into(), money(trades[N - 1]))]));
}

/// Mean and population deviation of `xs`, two passes.
fn mean_sd(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    (mean, var.sqrt())
}

#[test]
fn pairs_spread_on_two_symbols_of_half_a_million_bars() {
    const N: usize = 500_000;
    // B wanders; A follows it with a mean-reverting gap.
    let b_closes = walk(N, 20_000, 8);
    let noise = walk(N, 0, 9);
    let mut gap = 0i64;
    let a_closes: Vec<i64> = (0..N)
        .map(|i| {
            let step = noise[i] - if i > 0 { noise[i - 1] } else { 0 };
            gap = gap * 15 / 16 + step * 3;
            b_closes[i] + 500 + gap
        })
        .collect();
    let (a_opens, b_opens) = (opens_near(&a_closes), opens_near(&b_closes));
    let data = vec![
        bars("A", &a_closes, &a_opens),
        bars("B", &b_closes, &b_opens),
    ];
    let (period, entry, exit, size) = (60usize, 2.0, 0.5, 1i64);
    let got = run(
        &plugin("pairs_spread"),
        &params(&[
            ("period", period as f64),
            ("hedge", 1.0),
            ("entry", entry),
            ("exit", exit),
            ("size", size as f64),
        ]),
        Feed::Bars(&data),
        vec![instrument("A"), instrument("B")],
        &Settings::default(),
        |_| true,
    )
    .unwrap();

    // The rule from the strategy's description: spread ln(A) − ln(B); its
    // z-score over the last `period` spreads; short the spread above
    // `entry`, long below −entry, flat when |z| < exit.
    let mut book = Book::default();
    let (mut side, mut spreads) = (0i64, Vec::with_capacity(N));
    // How close any decision came to a threshold: the comparison is only
    // meaningful if no z sits within rounding of one.
    let mut closest = f64::MAX;
    for i in 0..N {
        spreads.push(price(a_closes[i]).ln() - price(b_closes[i]).ln());
        if i + 1 < period {
            continue;
        }
        let (mean, sd) = mean_sd(&spreads[i + 1 - period..=i]);
        let z = (spreads[i] - mean) / sd;
        closest = closest
            .min((z.abs() - entry).abs())
            .min((z.abs() - exit).abs());
        let target = match side {
            0 if z > entry => -1,
            0 if z < -entry => 1,
            s if s != 0 && z.abs() < exit => 0,
            s => s,
        };
        if target == side {
            continue;
        }
        side = target;
        for (symbol, per_unit, opens) in [("A", 1, &a_opens), ("B", -1, &b_opens)] {
            let delta = Decimal::from(target * size * per_unit) - book.qty(symbol);
            if !delta.is_zero() && i + 1 < N {
                book.fill(data[0].ts[i + 1], symbol, delta, money(opens[i + 1]));
            }
        }
    }
    assert!(closest > 1e-9, "a z-score within {closest} of a threshold");
    // The engine books fills of one bar in symbol order, as the reference.
    assert!(book.fills.len() > N / 100, "{}", book.fills.len());
    book.check(
        &got,
        &BTreeMap::from([
            ("A".into(), money(a_closes[N - 1])),
            ("B".into(), money(b_closes[N - 1])),
        ]),
    );
}
