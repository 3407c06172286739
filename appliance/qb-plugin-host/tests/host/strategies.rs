//! The example strategies through real wasmtime: same orders as their
//! native builds, Python as Rust, snapshot and restore.

use qb_plugin_host::*;
use quantbox_sdk::Strategy as _;

use crate::support::*;

#[test]
fn sma_plugin_matches_its_native_build() {
    let engine = engine(Limits::default());
    let plugin = Plugin::compile(&engine, &rust_plugin("sma_crossover")).unwrap();
    let mut inst = plugin.instantiate(Recorder::default(), 7).unwrap();
    let info = inst.info().clone();
    assert_eq!(info.name, "sma-crossover");
    let names: Vec<&str> = info.params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["fast", "slow", "size"]);

    let p = params(&[("fast", 5.0), ("slow", 20.0)]);
    let series = closes(400);
    let wasm_orders = run_bars(&plugin, &p, &series, 64);
    assert!(wasm_orders.len() >= 3, "{wasm_orders:?}");
    // Ids, sides, sizes and decision times, as the native build gives them.
    let native = native_run::<sma_crossover::SmaCrossover>(&p, &batches("rb", &series, 64));
    assert_eq!(wasm_orders, native);
    // Each order is stamped with the bar whose close made the cross.
    let mut check = sma_crossover::SmaCrossover::init(
        &quantbox_sdk::Params::resolve(
            &sma_crossover::SmaCrossover::describe().params,
            &[
                quantbox_sdk::Param {
                    name: "fast".into(),
                    value: 5.0,
                },
                quantbox_sdk::Param {
                    name: "slow".into(),
                    value: 20.0,
                },
            ],
        )
        .unwrap(),
        None,
    )
    .unwrap();
    let crossings: Vec<i64> = series
        .iter()
        .enumerate()
        .filter_map(|(i, &c)| check.step(c).map(|_| i as i64 * 60_000_000_000))
        .collect();
    assert!(
        wasm_orders.iter().all(|o| crossings.contains(&o.4)),
        "{wasm_orders:?}"
    );
    // Batch size does not change the result.
    assert_eq!(run_bars(&plugin, &p, &series, 7), wasm_orders);

    // Snapshot and restore (hot swap): the successor continues where the
    // first left off.
    inst.init(0, &p, None).unwrap();
    inst.on_bars(0, &bars("rb", 0, &series[..250])).unwrap();
    let snap = inst.snapshot_state().unwrap();
    assert_eq!(snap.len(), 20 * 8, "the last `slow` closes");
    let mut next = plugin
        .instantiate(
            Recorder {
                positions: inst.env().positions.clone(),
                ..Default::default()
            },
            7,
        )
        .unwrap();
    next.init(0, &p, Some(&snap)).unwrap();
    assert_eq!(next.snapshot_state().unwrap(), snap);
    inst.on_bars(0, &bars("rb", 250, &series[250..])).unwrap();
    next.on_bars(0, &bars("rb", 250, &series[250..])).unwrap();
    let tail =
        |r: &Recorder, skip: usize| -> Vec<Side> { r.orders[skip..].iter().map(|o| o.2).collect() };
    let before = inst.env().orders.len() - next.env().orders.len();
    assert_eq!(tail(inst.env(), before), tail(next.env(), 0));

    // Bad parameters are refused with the reason.
    let mut bad = plugin.instantiate(Recorder::default(), 7).unwrap();
    let e = bad
        .init(0, &params(&[("fast", 30.0), ("slow", 20.0)]), None)
        .unwrap_err();
    assert!(
        matches!(&e, PluginError::Refused(m) if m.contains("fast")),
        "{e}"
    );
    let e = bad.init(0, &params(&[("fats", 1.0)]), None).unwrap_err();
    assert!(e.to_string().contains("unknown parameter"), "{e}");
}

#[test]
fn python_plugin_trades_like_the_rust_one() {
    let engine = engine(Limits::default());
    let rust = Plugin::compile(&engine, &rust_plugin("sma_crossover")).unwrap();
    let python = Plugin::compile(&engine, &python_plugin("sma_crossover")).unwrap();
    let mut inst = python.instantiate(Recorder::default(), 7).unwrap();
    assert_eq!(inst.info().name, "sma-crossover-py");
    let spec: Vec<(String, f64)> = inst
        .info()
        .params
        .iter()
        .map(|p| (p.name.clone(), p.default))
        .collect();
    let rust_spec: Vec<(String, f64)> = rust
        .instantiate(Recorder::default(), 7)
        .unwrap()
        .info()
        .params
        .iter()
        .map(|p| (p.name.clone(), p.default))
        .collect();
    assert_eq!(spec, rust_spec, "same parameter schema");

    let p = params(&[("fast", 5.0), ("slow", 20.0), ("size", 2.0)]);
    // A noisy series: many crossings.
    let series: Vec<f64> = closes(2000)
        .iter()
        .enumerate()
        .map(|(i, c)| c + ((i * 7919) % 13) as f64 * 0.2)
        .collect();
    let from_rust = run_bars(&rust, &p, &series, 256);
    let from_python = run_bars(&python, &p, &series, 256);
    assert!(from_rust.len() >= 5);
    assert_eq!(from_python, from_rust, "client ids, sides and sizes");

    // Same refusals, same snapshot bytes.
    let e = inst
        .init(0, &params(&[("fast", 30.0), ("slow", 20.0)]), None)
        .unwrap_err();
    assert!(
        matches!(&e, PluginError::Refused(m) if m.contains("fast")),
        "{e}"
    );
    let mut r = rust.instantiate(Recorder::default(), 7).unwrap();
    let mut py = python.instantiate(Recorder::default(), 7).unwrap();
    r.init(0, &p, None).unwrap();
    py.init(0, &p, None).unwrap();
    let b = bars("rb", 0, &series[..100]);
    r.on_bars(0, &b).unwrap();
    py.on_bars(0, &b).unwrap();
    assert_eq!(py.snapshot_state().unwrap(), r.snapshot_state().unwrap());
}

/// The strategy compiled natively over the same batches.
fn native_run<S: quantbox_sdk::Strategy>(p: &[Param], batches: &[Bars]) -> Orders {
    let mut s = native::Native::<S, _>::new(Recorder::default(), 7);
    Runner::init(&mut s, 0, p, None).unwrap();
    for b in batches {
        s.on_bars(*b.ts.last().unwrap(), b).unwrap();
    }
    s.env().orders.clone()
}

fn wasm_run(plugin: &Plugin, p: &[Param], batches: &[Bars]) -> Orders {
    let mut inst = plugin.instantiate(Recorder::default(), 7).unwrap();
    inst.init(0, p, None).unwrap();
    for b in batches {
        inst.on_bars(*b.ts.last().unwrap(), b).unwrap();
    }
    inst.env().orders.clone()
}

/// A mean-reverting random walk (deterministic LCG noise).
fn walk(n: usize, seed: u64) -> Vec<f64> {
    let mut x = seed;
    let mut level = 100.0;
    (0..n)
        .map(|i| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let noise = ((x >> 11) as f64 / (1u64 << 53) as f64) - 0.5;
            level += noise * 1.5 + (100.0 - level) * 0.01 + (i as f64 / 300.0).sin() * 0.2;
            level
        })
        .collect()
}

fn batches(symbol: &str, closes: &[f64], size: usize) -> Vec<Bars> {
    closes
        .chunks(size)
        .enumerate()
        .map(|(i, c)| bars(symbol, (i * size) as i64, c))
        .collect()
}

#[test]
fn every_rust_example_matches_its_native_build() {
    let engine = engine(Limits::default());
    let series = walk(6000, 42);
    let load = |name: &str| Plugin::compile(&engine, &rust_plugin(name)).unwrap();

    let one = batches("rb", &series, 500);
    let cases: Vec<(&str, Vec<Param>, Orders)> = vec![
        (
            "bollinger_reversion",
            params(&[("period", 30.0), ("width", 1.5), ("short", 1.0)]),
            native_run::<bollinger_reversion::Reversion>(
                &params(&[("period", 30.0), ("width", 1.5), ("short", 1.0)]),
                &one,
            ),
        ),
        (
            "donchian_breakout",
            params(&[("entry", 40.0), ("exit", 15.0)]),
            native_run::<donchian_breakout::Breakout>(
                &params(&[("entry", 40.0), ("exit", 15.0)]),
                &one,
            ),
        ),
    ];
    for (name, p, native) in cases {
        let plugin = load(name);
        let wasm = wasm_run(&plugin, &p, &one);
        assert!(wasm.len() >= 10, "{name} trades: {wasm:?}");
        assert_eq!(wasm, native, "{name}");
    }

    // The spread strategy: two symbols, batches interleaved and offset, and
    // B's batches arriving first for some ranges.
    let a = series.clone();
    let b: Vec<f64> = walk(6000, 7)
        .iter()
        .zip(&series)
        .map(|(n, s)| s * 0.5 + n * 0.5)
        .collect();
    let mut two = Vec::new();
    for (i, (ca, cb)) in batches("AU", &a, 300)
        .into_iter()
        .zip(batches("AG", &b, 300))
        .enumerate()
    {
        if i % 3 == 0 {
            two.push(cb);
            two.push(ca);
        } else {
            two.push(ca);
            two.push(cb);
        }
    }
    let p = params(&[
        ("period", 50.0),
        ("entry", 1.5),
        ("exit", 0.3),
        ("hedge", 1.0),
    ]);
    let wasm = wasm_run(&load("pairs_spread"), &p, &two);
    assert_eq!(wasm, native_run::<pairs_spread::Spread>(&p, &two));
    assert!(wasm.len() >= 10, "{wasm:?}");
    // Both legs traded, in opposite directions per entry.
    let first: Vec<(&str, Side)> = wasm[..2].iter().map(|o| (o.1.as_str(), o.2)).collect();
    assert!(
        first == [("AG", Side::Buy), ("AU", Side::Sell)]
            || first == [("AG", Side::Sell), ("AU", Side::Buy)],
        "legs in alphabetical order, opposite sides: {first:?}"
    );
}
