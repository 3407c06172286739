//! End-to-end backtest throughput, side by side in one run, each scenario
//! in its own child process (so its peak RSS is its own):
//! - the SMA crossover over generated 1-minute bars on one thread: the
//!   same strategy compiled natively, the Rust plugin, the Python plugin
//!   (on a tenth of the bars);
//! - tick mode: the same over ticks with best bid/ask (native, Rust);
//! - a sweep of 8 runs on 1 worker thread and on 2.
//!
//!   packaging/scripts/dev.sh test   (builds the plugins), then
//!   cargo run --release -p qb-backtest --example backtest_bench -- [ROWS]

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use qb_backtest::engine::{Feed, Settings, SymbolBars, SymbolTicks, run, run_with};
use qb_core::market::Instrument;
use qb_plugin_host::native::Native;
use qb_plugin_host::{Limits, Param, Plugin, PluginEngine, componentize};

fn bars(n: usize) -> SymbolBars {
    let mut b = SymbolBars {
        symbol: "X".into(),
        ..Default::default()
    };
    let mut x = 7u64;
    let mut close = 4000.0f64;
    for i in 0..n {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let open = close;
        close = (open + ((x >> 40) % 21) as f64 - 10.0 + (i as f64 / 700.0).sin() * 2.0).round();
        b.ts.push(1_700_000_000_000_000_000 + i as i64 * 60_000_000_000);
        b.open.push(open);
        b.high.push(open.max(close) + 1.0);
        b.low.push(open.min(close) - 1.0);
        b.close.push(close);
        b.volume.push(1.0);
    }
    b
}

/// One tick per bar close, a one-tick spread around it, 500 ms apart.
fn ticks(n: usize) -> SymbolTicks {
    let b = bars(n);
    SymbolTicks {
        symbol: "X".into(),
        ts: (0..n as i64)
            .map(|i| 1_700_000_000_000_000_000 + i * 500_000_000)
            .collect(),
        size: vec![1.0; n],
        bid: b.close.iter().map(|c| c - 1.0).collect(),
        ask: b.close.iter().map(|c| c + 1.0).collect(),
        price: b.close,
    }
}

fn params(fast: f64, slow: f64) -> Vec<Param> {
    vec![
        Param {
            name: "fast".into(),
            value: fast,
        },
        Param {
            name: "slow".into(),
            value: slow,
        },
    ]
}

fn instrument() -> Instrument {
    let mut inst = Instrument::with_defaults("X");
    inst.price_tick = rust_decimal::Decimal::ONE;
    inst
}

fn plugin(engine: &PluginEngine, python: bool) -> Plugin {
    let target = std::env::current_exe()
        .unwrap()
        .ancestors()
        .nth(3)
        .unwrap()
        .to_path_buf();
    if python {
        let wasm = std::fs::read(target.join("plugins/sma_crossover_py.wasm"))
            .expect("build the Python plugin first");
        return Plugin::compile(engine, &wasm).unwrap();
    }
    let core = std::fs::read(target.join("wasm32-unknown-unknown/release/sma_crossover.wasm"))
        .expect("build the plugins first");
    Plugin::compile(engine, &componentize(&core).unwrap()).unwrap()
}

/// Peak resident set of this process, in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Runs one scenario in this process and prints its line.
fn scenario(name: &str, n: usize) {
    // Native scenarios need no plugin engine (and none runs under valgrind,
    // whose address space cannot hold the pooling allocator's reservation).
    let engine = || PluginEngine::new(Limits::default()).unwrap();
    let settings = Settings::default();
    let p = params(10.0, 30.0);
    let (bar_data, tick_data);
    let (feed, unit) = if name.starts_with("ticks") {
        tick_data = vec![ticks(n)];
        (Feed::Ticks(&tick_data), "ticks")
    } else {
        bar_data = vec![bars(n)];
        (Feed::Bars(&bar_data), "bars")
    };
    // Compiling the plugin is not part of the run.
    let compiled = match name {
        "bars-rust" | "ticks-rust" => Some(plugin(&engine(), false)),
        "bars-python" => Some(plugin(&engine(), true)),
        "sweep-1" | "sweep-2" => return sweep(&engine(), name.ends_with('2'), n),
        "bars-native" | "ticks-native" => None,
        other => panic!("unknown scenario {other}"),
    };
    let t = Instant::now();
    let r = match &compiled {
        None => run_with(
            |env| Ok(Native::<sma_crossover::SmaCrossover, _>::new(env, 0)),
            &p,
            feed,
            vec![instrument()],
            &settings,
            |_| true,
        ),
        Some(plugin) => run(plugin, &p, feed, vec![instrument()], &settings, |_| true),
    }
    .unwrap();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{name:13} {n:>9} {unit} {secs:7.3} s {:>12.0} {unit}/s  peak RSS {:6.1} MiB  {} fills, final equity {}",
        n as f64 / secs,
        peak_rss_mib(),
        r.fills.len(),
        r.final_equity
    );
}

/// Eight runs of the Rust plugin with different parameters, on one or two
/// threads sharing one engine (as queue workers do).
fn sweep(engine: &PluginEngine, two: bool, n: usize) {
    let plugin = plugin(engine, false);
    let data = vec![bars(n)];
    let grid: Vec<(f64, f64)> = [5.0, 10.0]
        .iter()
        .flat_map(|&f| [20.0, 30.0, 40.0, 60.0].map(|s| (f, s)))
        .collect();
    let next = AtomicUsize::new(0);
    let work = || {
        while let Some(&(f, s)) = grid.get(next.fetch_add(1, Ordering::Relaxed)) {
            run(
                &plugin,
                &params(f, s),
                Feed::Bars(&data),
                vec![instrument()],
                &Settings::default(),
                |_| true,
            )
            .unwrap();
        }
    };
    let threads = if two { 2 } else { 1 };
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(work);
        }
    });
    let secs = t.elapsed().as_secs_f64();
    println!(
        "sweep, {threads} worker{} {} runs x {n} bars in {secs:.3} s = {:.2} runs/s ({:.0} bars/s)  peak RSS {:6.1} MiB",
        if two { "s" } else { " " },
        grid.len(),
        grid.len() as f64 / secs,
        (grid.len() * n) as f64 / secs,
        peak_rss_mib()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--one") {
        return scenario(&args[2], args[3].parse().unwrap());
    }
    let n: usize = args.get(1).map_or(1_000_000, |s| s.parse().unwrap());
    let exe = std::env::current_exe().unwrap();
    for (name, rows) in [
        ("bars-native", n),
        ("bars-rust", n),
        ("bars-python", n / 10),
        ("ticks-native", n),
        ("ticks-rust", n),
        ("sweep-1", n / 4),
        ("sweep-2", n / 4),
    ] {
        let status = Command::new(&exe)
            .args(["--one", name, &rows.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "{name}: {status}");
    }
}
