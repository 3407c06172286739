//! The SMA crossover strategy over the same bars, as a WebAssembly plugin
//! in the sandboxed host and compiled natively, side by side in one run.
//!
//!   cargo build --release --target wasm32-wasip2 -p sma-crossover
//!   cargo run --release -p qb-plugin-host --example wasm_vs_native -- [BARS] [BATCH]

use std::time::Instant;

use qb_plugin_host::*;

#[derive(Default)]
struct Flat {
    position: f64,
    orders: u64,
}

impl Env for Flat {
    fn submit_order(&mut self, order: Order) -> Result<(), String> {
        self.position += if order.side == Side::Buy {
            order.quantity
        } else {
            -order.quantity
        };
        self.orders += 1;
        Ok(())
    }
    fn cancel_order(&mut self, _: &str) -> Result<(), String> {
        Ok(())
    }
    fn position(&mut self, symbol: &str) -> Position {
        Position {
            symbol: symbol.into(),
            quantity: self.position,
            average_price: 0.0,
        }
    }
    fn account(&mut self) -> Account {
        Account {
            cash: 0.0,
            equity: 0.0,
            margin_used: 0.0,
        }
    }
    fn state_get(&mut self, _: &str) -> Option<Vec<u8>> {
        None
    }
    fn state_set(&mut self, _: &str, _: Vec<u8>) {}
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().unwrap())
        .unwrap_or(2_000_000);
    let batch: usize = std::env::args()
        .nth(2)
        .map(|s| s.parse().unwrap())
        .unwrap_or(1024);
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap().to_path_buf();
    let bytes = std::fs::read(target.join("wasm32-wasip2/release/sma_crossover.wasm"))
        .expect("build the plugin first");
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

    let engine = engine().unwrap();
    let t = Instant::now();
    let plugin = Plugin::load(&engine, &bytes).unwrap();
    println!(
        "compile component: {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let mut inst = plugin
        .instantiate(Flat::default(), Limits::default(), 1)
        .unwrap();
    inst.init(&params, None).unwrap();
    let t = Instant::now();
    for (k, chunk) in closes.chunks(batch).enumerate() {
        let m = chunk.len();
        let bars = Bars {
            symbol: "X".into(),
            ts: (0..m as i64).map(|i| (k * batch) as i64 + i).collect(),
            open: chunk.to_vec(),
            high: chunk.to_vec(),
            low: chunk.to_vec(),
            close: chunk.to_vec(),
            volume: vec![1.0; m],
        };
        inst.on_bars(0, &bars).unwrap();
    }
    let wasm = t.elapsed().as_secs_f64();
    let wasm_orders = inst.state().env.orders;

    use quantbox_sdk::Strategy as _;
    let spec = sma_crossover::SmaCrossover::describe().params;
    let given: Vec<quantbox_sdk::Param> = params
        .iter()
        .map(|p| quantbox_sdk::Param {
            name: p.name.clone(),
            value: p.value,
        })
        .collect();
    let mut native = sma_crossover::SmaCrossover::init(
        &quantbox_sdk::Params::resolve(&spec, &given).unwrap(),
        None,
    )
    .unwrap();
    struct NativeCtx(Flat);
    impl quantbox_sdk::Ctx for NativeCtx {
        fn submit_order(&mut self, o: quantbox_sdk::Order) -> Result<(), String> {
            self.0.position += if o.side == quantbox_sdk::Side::Buy {
                o.quantity
            } else {
                -o.quantity
            };
            self.0.orders += 1;
            Ok(())
        }
        fn cancel_order(&mut self, _: &str) -> Result<(), String> {
            Ok(())
        }
        fn position(&mut self, s: &str) -> quantbox_sdk::Position {
            quantbox_sdk::Position {
                symbol: s.into(),
                quantity: self.0.position,
                average_price: 0.0,
            }
        }
        fn account(&mut self) -> quantbox_sdk::Account {
            quantbox_sdk::Account {
                cash: 0.0,
                equity: 0.0,
                margin_used: 0.0,
            }
        }
        fn log(&mut self, _: quantbox_sdk::LogLevel, _: &str) {}
        fn state_get(&mut self, _: &str) -> Option<Vec<u8>> {
            None
        }
        fn state_set(&mut self, _: &str, _: &[u8]) {}
        fn random_u64(&mut self) -> u64 {
            4
        }
    }
    let mut ctx = NativeCtx(Flat::default());
    let t = Instant::now();
    for (k, chunk) in closes.chunks(batch).enumerate() {
        let m = chunk.len();
        let bars = quantbox_sdk::Bars {
            symbol: "X".into(),
            ts: (0..m as i64).map(|i| (k * batch) as i64 + i).collect(),
            open: chunk.to_vec(),
            high: chunk.to_vec(),
            low: chunk.to_vec(),
            close: chunk.to_vec(),
            volume: vec![1.0; m],
        };
        native.on_bars(&mut ctx, 0, &bars);
    }
    let nat = t.elapsed().as_secs_f64();
    assert_eq!(ctx.0.orders, wasm_orders, "same orders both ways");
    println!("{n} bars in batches of {batch}, {wasm_orders} orders each way");
    println!("wasm plugin: {:.1} ns/bar", wasm / n as f64 * 1e9);
    println!("native:      {:.1} ns/bar", nat / n as f64 * 1e9);
    println!("ratio:       {:.2}x", wasm / nat);
}
