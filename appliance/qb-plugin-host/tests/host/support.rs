//! Plugins built from `plugins/` by the test command, and a recording
//! environment for them.

use std::path::PathBuf;

use qb_plugin_host::*;

/// The cargo target directory the tests were built in.
pub fn target_dir() -> PathBuf {
    // target/<profile>/deps/host-… -> target
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().to_path_buf()
}

fn read(path: PathBuf, build: &str) -> Vec<u8> {
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; build the plugins first: {build}", path.display()))
}

/// A Rust example plugin as a component (core module + componentize).
pub fn rust_plugin(name: &str) -> Vec<u8> {
    let core = read(
        target_dir().join(format!("wasm32-unknown-unknown/release/{name}.wasm")),
        "cargo build --release --target wasm32-unknown-unknown --workspace --exclude '*' ... (see packaging/scripts/dev.sh)",
    );
    componentize(&core).unwrap()
}

/// The same crate built for wasm32-wasip2: a component importing WASI.
pub fn wasi_plugin(name: &str) -> Vec<u8> {
    read(
        target_dir().join(format!("wasm32-wasip2/release/{name}.wasm")),
        "cargo build --release --target wasm32-wasip2 -p misbehave",
    )
}

/// A Python example plugin (componentize-py).
pub fn python_plugin(name: &str) -> Vec<u8> {
    read(
        target_dir().join(format!("plugins/{name}_py.wasm")),
        "plugins/python/build.sh $CARGO_TARGET_DIR/plugins",
    )
}

pub fn engine(limits: Limits) -> PluginEngine {
    PluginEngine::new(limits).unwrap()
}

#[path = "../../examples/common/recorder.rs"]
mod recorder;
pub use recorder::Recorder;

/// Two full sine cycles: the averages cross several times.
pub fn closes(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| 100.0 + 10.0 * (i as f64 * 4.0 * std::f64::consts::PI / n as f64).sin())
        .collect()
}

/// One-minute bars with the given closes, from `start` minutes.
pub fn bars(symbol: &str, start: i64, closes: &[f64]) -> Bars {
    let n = closes.len() as i64;
    Bars {
        symbol: symbol.into(),
        ts: (start..start + n).map(|i| i * 60_000_000_000).collect(),
        open: closes.to_vec(),
        high: closes.iter().map(|c| c + 0.5).collect(),
        low: closes.iter().map(|c| c - 0.5).collect(),
        close: closes.to_vec(),
        volume: vec![1.0; closes.len()],
    }
}

pub fn params(list: &[(&str, f64)]) -> Vec<Param> {
    list.iter()
        .map(|(n, v)| Param {
            name: (*n).into(),
            value: *v,
        })
        .collect()
}

pub type Orders = Vec<(String, String, Side, f64, i64)>;

/// Feeds `series` in batches of `batch` to a fresh instance; the orders.
pub fn run_bars(plugin: &Plugin, p: &[Param], series: &[f64], batch: usize) -> Orders {
    let mut inst = plugin.instantiate(Recorder::default(), 7).unwrap();
    inst.init(0, p, None).unwrap();
    for (i, chunk) in series.chunks(batch).enumerate() {
        let b = bars("rb", (i * batch) as i64, chunk);
        inst.on_bars(*b.ts.last().unwrap(), &b).unwrap();
    }
    inst.env().orders.clone()
}
