//! End-to-end backtest throughput on one thread: the SMA crossover plugin
//! (Rust, and Python on a tenth of the bars) over generated 1-minute bars.
//!
//!   packaging/scripts/dev.sh test   (builds the plugins), then
//!   cargo run --release -p qb-backtest --example backtest_bench -- [BARS]

use std::time::Instant;

use qb_backtest::engine::{Settings, SymbolBars, run};
use qb_core::market::Instrument;
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

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(1_000_000, |s| s.parse().unwrap());
    let target = std::env::current_exe()
        .unwrap()
        .ancestors()
        .nth(3)
        .unwrap()
        .to_path_buf();
    let engine = PluginEngine::new(Limits::default()).unwrap();
    let rust = std::fs::read(target.join("wasm32-unknown-unknown/release/sma_crossover.wasm"))
        .expect("build the plugins first");
    let rust = Plugin::compile(&engine, &componentize(&rust).unwrap()).unwrap();
    let python = std::fs::read(target.join("plugins/sma_crossover_py.wasm"))
        .expect("build the Python plugin first");
    let python = Plugin::compile(&engine, &python).unwrap();
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
    let mut inst = Instrument::with_defaults("X");
    inst.price_tick = rust_decimal::Decimal::ONE;
    let data = bars(n);
    for (name, plugin, count) in [
        ("Rust plugin", &rust, n),
        ("Python plugin", &python, n / 10),
    ] {
        let slice = SymbolBars {
            symbol: data.symbol.clone(),
            ts: data.ts[..count].to_vec(),
            open: data.open[..count].to_vec(),
            high: data.high[..count].to_vec(),
            low: data.low[..count].to_vec(),
            close: data.close[..count].to_vec(),
            volume: data.volume[..count].to_vec(),
        };
        let t = Instant::now();
        let r = run(
            plugin,
            &params,
            &[slice],
            vec![inst.clone()],
            &Settings::default(),
            |_| true,
        )
        .unwrap();
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{name:14} {count} bars in {secs:.3} s = {:.0} bars/s, {} fills, final equity {}",
            count as f64 / secs,
            r.fills.len(),
            r.final_equity
        );
    }
}
