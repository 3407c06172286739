//! Strategy plugin costs, side by side in one run:
//! - the SMA crossover per bar: native Rust, the Rust plugin, the Python
//!   plugin (same bars, same orders asserted);
//! - compiling a component vs loading its cached artifact; instantiating.
//!
//!   packaging/scripts/dev.sh test   (builds the plugins), then
//!   cargo run --release -p qb-plugin-host --example plugin_bench -- [BARS] [BATCH]

#[path = "common/recorder.rs"]
mod recorder;

use std::time::Instant;

use qb_plugin_host::*;
use recorder::Recorder;

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn bars(k: usize, chunk: &[f64]) -> Bars {
    let m = chunk.len();
    Bars {
        symbol: "X".into(),
        ts: (0..m as i64).map(|i| k as i64 + i).collect(),
        open: chunk.to_vec(),
        high: chunk.to_vec(),
        low: chunk.to_vec(),
        close: chunk.to_vec(),
        volume: vec![1.0; m],
    }
}

/// ns per bar and orders of one plugin over `closes`.
fn run(plugin: &Plugin, params: &[Param], closes: &[f64], batch: usize) -> (f64, usize) {
    let mut inst = plugin.instantiate(Recorder::default(), 1).unwrap();
    inst.init(0, params, None).unwrap();
    let t = Instant::now();
    for (k, chunk) in closes.chunks(batch).enumerate() {
        inst.on_bars(0, &bars(k * batch, chunk)).unwrap();
    }
    let ns = t.elapsed().as_secs_f64() * 1e9 / closes.len() as f64;
    (ns, inst.env().orders.len())
}

fn native(params: &[Param], closes: &[f64], batch: usize) -> (f64, usize) {
    let mut s = native::Native::<sma_crossover::SmaCrossover, _>::new(Recorder::default(), 1);
    Runner::init(&mut s, 0, params, None).unwrap();
    let t = Instant::now();
    for (k, chunk) in closes.chunks(batch).enumerate() {
        s.on_bars(0, &bars(k * batch, chunk)).unwrap();
    }
    let ns = t.elapsed().as_secs_f64() * 1e9 / closes.len() as f64;
    (ns, s.env().orders.len())
}

fn main() {
    let arg = |i: usize, d: usize| std::env::args().nth(i).map_or(d, |s| s.parse().unwrap());
    let (n, batch) = (arg(1, 2_000_000), arg(2, 1024));
    let target = std::env::current_exe()
        .unwrap()
        .ancestors()
        .nth(3)
        .unwrap()
        .to_path_buf();
    let core = std::fs::read(target.join("wasm32-unknown-unknown/release/sma_crossover.wasm"))
        .expect("build the plugins first (packaging/scripts/dev.sh test)");
    let rust_bytes = componentize(&core).unwrap();
    let py_bytes = std::fs::read(target.join("plugins/sma_crossover_py.wasm"))
        .expect("build the Python plugin first (plugins/python/build.sh)");
    let closes: Vec<f64> = (0..n)
        .map(|i| 100.0 + 10.0 * (i as f64 / 500.0).sin() + (i % 7) as f64 * 0.01)
        .collect();
    let params = vec![
        Param {
            name: "fast".into(),
            value: 10.0,
        },
        Param {
            name: "slow".into(),
            value: 30.0,
        },
    ];
    let engine = PluginEngine::new(Limits::default()).unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = ArtifactCache::open(cache_dir.path()).unwrap();

    println!(
        "## load ({} CPUs)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let mut plugins = Vec::new();
    for (name, bytes) in [("rust", &rust_bytes), ("python", &py_bytes)] {
        let t = Instant::now();
        Plugin::load(&engine, &cache, &Compiler::InProcess, bytes).unwrap();
        let compile = ms(t);
        let t = Instant::now();
        let p = Plugin::load(&engine, &cache, &Compiler::InProcess, bytes).unwrap();
        assert!(p.was_cached());
        let cached = ms(t);
        let t = Instant::now();
        for _ in 0..20 {
            p.instantiate(Recorder::default(), 1).unwrap();
        }
        let inst = ms(t) / 20.0;
        println!(
            "{name:6}: {:.1} MB component, compile {compile:.0} ms, cached load {cached:.1} ms, instantiate+describe {inst:.2} ms",
            bytes.len() as f64 / 1e6
        );
        plugins.push(p);
    }

    println!("## SMA crossover, {n} bars in batches of {batch}");
    let (nat, orders) = native(&params, &closes, batch);
    let (rs, rs_orders) = run(&plugins[0], &params, &closes, batch);
    assert_eq!(rs_orders, orders, "same orders native and wasm");
    let py_n = (n / 10).max(batch);
    let (py, py_orders) = run(&plugins[1], &params, &closes[..py_n], batch);
    let (_, rs_orders_short) = run(&plugins[0], &params, &closes[..py_n], batch);
    assert_eq!(py_orders, rs_orders_short, "same orders Python and Rust");
    println!("native Rust:    {nat:8.1} ns/bar ({orders} orders)");
    println!("Rust plugin:    {rs:8.1} ns/bar  {:.2}x native", rs / nat);
    println!(
        "Python plugin:  {py:8.1} ns/bar  {:.1}x the Rust plugin (first {py_n} bars)",
        py / rs
    );
}
