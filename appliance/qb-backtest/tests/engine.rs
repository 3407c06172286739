//! The engine running real plugins built from `plugins/`.

mod support;

use qb_backtest::engine::*;
use qb_backtest::execution::Slippage;
use qb_core::market::Instrument;
use qb_plugin_host::{PluginError, StopReason};
use rust_decimal::Decimal;
use support::{params, plugin};

/// Integer prices (sums stay exact in f64): a random walk with a cycle.
fn series(symbol: &str, n: usize, seed: u64) -> SymbolBars {
    let mut x = seed;
    let mut close = 1000i64;
    let mut b = SymbolBars {
        symbol: symbol.into(),
        ..Default::default()
    };
    for i in 0..n {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let open = close + ((x >> 60) as i64 - 8);
        close = open + ((x >> 40) % 21) as i64 - 10 + if (i / 150) % 2 == 0 { 3 } else { -3 };
        b.ts.push(1_700_000_000_000_000_000 + i as i64 * 60_000_000_000);
        b.open.push(open as f64);
        b.high.push(open.max(close) as f64 + 2.0);
        b.low.push(open.min(close) as f64 - 2.0);
        b.close.push(close as f64);
        b.volume.push(1.0);
    }
    b
}

fn instrument(symbol: &str) -> Instrument {
    let mut i = Instrument::with_defaults(symbol);
    i.price_tick = Decimal::ONE;
    i.timezone = "UTC".into();
    i
}

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

#[test]
fn runs_are_deterministic_and_batch_size_does_not_change_market_order_results() {
    let data = vec![series("AU", 2000, 1), series("AG", 2000, 2)];
    let p = plugin("pairs_spread");
    let go = |batch: usize| {
        run(
            &p,
            &params(&[("period", 30.0), ("entry", 1.0), ("exit", 0.2)]),
            Feed::Bars(&data),
            vec![instrument("AU"), instrument("AG")],
            &Settings {
                batch,
                slippage: Slippage::Ticks(1),
                ..Settings::default()
            },
            |_| true,
        )
        .unwrap()
    };
    let a = serde_json::to_vec(&go(256)).unwrap();
    let b = serde_json::to_vec(&go(256)).unwrap();
    assert_eq!(a, b, "byte-identical");
    let one = go(1);
    assert!(one.fills.len() >= 10, "{}", one.fills.len());
    assert_eq!(
        serde_json::to_vec(&one).unwrap(),
        a,
        "market orders: same result at any batch size"
    );
}

#[test]
fn margin_rejections_cancellation_and_traps() {
    let data = series("X", 500, 3);
    let mut rich = instrument("X");
    rich.multiplier = d("100");
    rich.margin_ratio = d("0.5");
    // 1000 cash cannot margin one lot of ~1000 * 100 * 0.5.
    let r = run(
        &plugin("sma_crossover"),
        &params(&[("fast", 5.0), ("slow", 20.0)]),
        Feed::Bars(std::slice::from_ref(&data)),
        vec![rich],
        &Settings {
            initial_cash: d("1000"),
            ..Settings::default()
        },
        |_| true,
    )
    .unwrap();
    assert!(r.fills.is_empty());
    assert!(!r.rejections.is_empty());
    assert!(
        r.rejections[0].reason.contains("insufficient margin"),
        "{:?}",
        r.rejections[0]
    );

    let mut calls = 0;
    let e = run(
        &plugin("sma_crossover"),
        &params(&[("fast", 5.0), ("slow", 20.0)]),
        Feed::Bars(std::slice::from_ref(&data)),
        vec![instrument("X")],
        &Settings {
            batch: 50,
            ..Settings::default()
        },
        |_| {
            calls += 1;
            calls < 3
        },
    )
    .unwrap_err();
    assert!(matches!(e, RunError::Cancelled));
    assert_eq!(calls, 3);

    let e = run(
        &plugin("misbehave"),
        &params(&[("mode", 3.0)]),
        Feed::Bars(std::slice::from_ref(&data)),
        vec![instrument("X")],
        &Settings::default(),
        |_| true,
    )
    .unwrap_err();
    assert!(
        matches!(&e, RunError::Plugin(PluginError::Stopped(s)) if s.reason == StopReason::Trap && s.callback == "on_bars"),
        "{e}"
    );
}

/// Bars from (open, high, low, close) rows, one minute apart.
fn hand_bars(rows: &[(f64, f64, f64, f64)]) -> SymbolBars {
    let mut b = SymbolBars {
        symbol: "X".into(),
        ..Default::default()
    };
    for (i, &(o, h, l, c)) in rows.iter().enumerate() {
        b.ts.push(1_700_000_000_000_000_000 + i as i64 * 60_000_000_000);
        b.open.push(o);
        b.high.push(h);
        b.low.push(l);
        b.close.push(c);
        b.volume.push(1.0);
    }
    b
}

fn scripted(rows: &[(f64, f64, f64, f64)], p: &[(&str, f64)], settings: Settings) -> RunResult {
    run(
        &plugin("order_script"),
        &params(p),
        Feed::Bars(&[hand_bars(rows)]),
        vec![instrument("X")],
        &settings,
        |_| true,
    )
    .unwrap()
}

fn fills(r: &RunResult) -> Vec<(&str, i64, Decimal, Decimal)> {
    let t0 = 1_700_000_000_000_000_000;
    r.fills
        .iter()
        .map(|f| {
            (
                f.client_id.as_str(),
                (f.ts - t0) / 60_000_000_000,
                f.qty,
                f.price,
            )
        })
        .collect()
}

#[test]
fn golden_market_limit_and_stop_fills_end_to_end() {
    // Decided on bar 0; bar 1 touches the limit (99) and the stop (103).
    let rows = [
        (100.0, 101.0, 99.5, 100.0),
        (102.0, 103.0, 98.0, 99.0),
        (99.0, 100.0, 98.0, 99.0),
    ];
    let p = [("market", 1.0), ("limit", 99.0), ("stop", 103.0)];
    let r = scripted(&rows, &p, Settings::default());
    // Stops first, then the market order, then the limit, all on bar 1.
    assert_eq!(
        fills(&r),
        [
            ("stop", 1, d("1"), d("103")),
            ("market", 1, d("1"), d("102")),
            ("limit", 1, d("1"), d("99"))
        ]
    );
    // Average (103 + 102 + 99) / 3; marked at the last close 99:
    // unrealized (99 - 101.333…) * 3 = -7.
    assert_eq!(r.final_equity, Settings::default().initial_cash - d("7"));

    // One tick of slippage on market and stop fills, none on the limit.
    let r = scripted(
        &rows,
        &p,
        Settings {
            slippage: Slippage::Ticks(1),
            ..Settings::default()
        },
    );
    assert_eq!(
        fills(&r),
        [
            ("stop", 1, d("1"), d("104")),
            ("market", 1, d("1"), d("103")),
            ("limit", 1, d("1"), d("99"))
        ]
    );

    // Gaps: bar 1 opens at 95, below the buy limit (fills at the better
    // open); a sell stop at 97 gapped through fills at the worse open.
    let gap = [(100.0, 101.0, 99.5, 100.0), (95.0, 96.0, 94.0, 95.0)];
    let r = scripted(&gap, &[("limit", 99.0)], Settings::default());
    assert_eq!(fills(&r), [("limit", 1, d("1"), d("95"))]);
    let r = scripted(&gap, &[("side", 1.0), ("stop", 97.0)], Settings::default());
    assert_eq!(fills(&r), [("stop", 1, d("-1"), d("95"))]);

    // Never reached: no fill; a limit reached only after it was cancelled:
    // no fill either (batch 1, so the cancel comes before bar 2).
    let r = scripted(
        &rows,
        &[("limit", 90.0), ("stop", 120.0)],
        Settings::default(),
    );
    assert!(r.fills.is_empty());
    let late = [
        (100.0, 101.0, 99.5, 100.0),
        (100.0, 101.0, 99.5, 100.0),
        (99.0, 99.0, 90.0, 95.0),
    ];
    let r = scripted(&late, &[("limit", 95.0)], Settings::default());
    assert_eq!(fills(&r), [("limit", 2, d("1"), d("95"))]);
    let r = scripted(
        &late,
        &[("limit", 95.0), ("cancel_limit", 1.0)],
        Settings {
            batch: 1,
            ..Settings::default()
        },
    );
    assert!(r.fills.is_empty(), "{:?}", r.fills);
}

/// Ticks from (price, bid, ask) rows, one second apart; NaN: no quote.
fn hand_ticks(rows: &[(f64, f64, f64)]) -> SymbolTicks {
    let mut t = SymbolTicks {
        symbol: "X".into(),
        ..Default::default()
    };
    for (i, &(p, b, a)) in rows.iter().enumerate() {
        t.ts.push(1_700_000_000_000_000_000 + i as i64 * 60_000_000_000);
        t.price.push(p);
        t.size.push(1.0);
        t.bid.push(b);
        t.ask.push(a);
    }
    t
}

fn scripted_ticks(rows: &[(f64, f64, f64)], p: &[(&str, f64)], settings: Settings) -> RunResult {
    run(
        &plugin("order_script"),
        &params(p),
        Feed::Ticks(&[hand_ticks(rows)]),
        vec![instrument("X")],
        &settings,
        |_| true,
    )
    .unwrap()
}

#[test]
fn golden_tick_mode_fills_at_the_quote() {
    let batch1 = || Settings {
        batch: 1,
        ..Settings::default()
    };
    // Decided on tick 0. Tick 1: market buy at the ask (100); the limit
    // at 98 is not reached and rests; the stop at 103 is not triggered.
    // Tick 2: the ask comes down to 97: the resting limit fills at its
    // own price 98. Tick 3: the ask rises to 105: the stop fills there.
    let rows = [
        (100.0, 99.0, 101.0),
        (99.0, 99.0, 100.0),
        (96.0, 96.0, 97.0),
        (104.0, 104.0, 105.0),
    ];
    let p = [("market", 1.0), ("limit", 98.0), ("stop", 103.0)];
    let r = scripted_ticks(&rows, &p, batch1());
    assert_eq!(
        fills(&r),
        [
            ("market", 1, d("1"), d("100")),
            ("limit", 2, d("1"), d("98")),
            ("stop", 3, d("1"), d("105")),
        ]
    );
    // Marked at the last trade price 104: (104 * 3) - (100 + 98 + 105).
    assert_eq!(r.final_equity, Settings::default().initial_cash + d("9"));

    // A marketable limit fills at the ask of the next quote; sells go to
    // the bid; slippage moves market and stop fills only.
    let r = scripted_ticks(&rows, &[("limit", 102.0)], batch1());
    assert_eq!(fills(&r), [("limit", 1, d("1"), d("100"))]);
    let r = scripted_ticks(
        &rows,
        &[("side", 1.0), ("market", 2.0), ("stop", 97.0)],
        Settings {
            slippage: Slippage::Ticks(1),
            ..batch1()
        },
    );
    assert_eq!(
        fills(&r),
        [
            ("market", 1, d("-2"), d("98")),
            ("stop", 2, d("-1"), d("95"))
        ]
    );

    // Without a quote the trade price stands for bid and ask.
    let bare = [(100.0, f64::NAN, f64::NAN), (101.0, f64::NAN, f64::NAN)];
    let r = scripted_ticks(&bare, &[("market", 1.0)], batch1());
    assert_eq!(fills(&r), [("market", 1, d("1"), d("101"))]);

    // Ticks sharing a timestamp are one instant: an order decided on the
    // first does not fill on the second.
    let mut same = hand_ticks(&[
        (100.0, 99.0, 101.0),
        (100.0, 99.0, 102.0),
        (100.0, 99.0, 103.0),
    ]);
    same.ts[1] = same.ts[0];
    let r = run(
        &plugin("order_script"),
        &params(&[("market", 1.0)]),
        Feed::Ticks(&[same]),
        vec![instrument("X")],
        &Settings::default(),
        |_| true,
    )
    .unwrap();
    assert_eq!(fills(&r), [("market", 2, d("1"), d("103"))]);
}

#[test]
fn the_wasm_plugin_and_its_native_build_give_the_same_run() {
    use qb_plugin_host::native::Native;
    let p = params(&[("fast", 5.0), ("slow", 20.0), ("size", 3.0)]);
    let settings = Settings {
        batch: 64,
        slippage: Slippage::Ticks(1),
        ..Settings::default()
    };
    let bars = vec![series("X", 3000, 4)];
    let mut ticks = SymbolTicks {
        symbol: "X".into(),
        ..Default::default()
    };
    for (i, &ts) in bars[0].ts.iter().enumerate() {
        ticks.ts.push(ts);
        ticks.price.push(bars[0].close[i]);
        ticks.size.push(1.0);
        ticks.bid.push(bars[0].close[i] - 1.0);
        ticks.ask.push(bars[0].close[i] + 1.0);
    }
    let ticks = vec![ticks];
    let plugin = plugin("sma_crossover");
    for feed in [Feed::Bars(&bars), Feed::Ticks(&ticks)] {
        let wasm = run(&plugin, &p, feed, vec![instrument("X")], &settings, |_| {
            true
        })
        .unwrap();
        let native = run_with(
            |env| Ok(Native::<sma_crossover::SmaCrossover, _>::new(env, 0)),
            &p,
            feed,
            vec![instrument("X")],
            &settings,
            |_| true,
        )
        .unwrap();
        assert!(wasm.fills.len() >= 20, "{}", wasm.fills.len());
        assert_eq!(wasm.hash(), native.hash());
    }
}
