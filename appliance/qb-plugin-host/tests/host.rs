//! The host running real plugins built from `plugins/` for wasm32-wasip2
//! (the test command builds them first).

use std::path::PathBuf;

use qb_plugin_host::*;

fn wasm(name: &str) -> Vec<u8> {
    // target/<profile>/deps/host-… -> target/wasm32-wasip2/release/NAME.wasm
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap().to_path_buf();
    let path: PathBuf = target
        .join("wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build the plugins first: cargo build --release --target wasm32-wasip2 -p sma-crossover -p misbehave",
            path.display()
        )
    })
}

/// Records orders; positions follow fills at once (market orders).
#[derive(Default)]
struct Recorder {
    orders: Vec<(String, Side, f64)>,
    position: f64,
}

impl Env for Recorder {
    fn submit_order(&mut self, order: Order) -> Result<(), String> {
        self.position += if order.side == Side::Buy {
            order.quantity
        } else {
            -order.quantity
        };
        self.orders
            .push((order.client_id, order.side, order.quantity));
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

fn closes(n: usize) -> Vec<f64> {
    // Two full sine cycles: the averages cross several times.
    (0..n)
        .map(|i| 100.0 + 10.0 * (i as f64 * 4.0 * std::f64::consts::PI / n as f64).sin())
        .collect()
}

fn bars(closes: &[f64]) -> Bars {
    let n = closes.len();
    Bars {
        symbol: "rb".into(),
        ts: (0..n as i64).map(|i| i * 60_000_000_000).collect(),
        open: closes.to_vec(),
        high: closes.to_vec(),
        low: closes.to_vec(),
        close: closes.to_vec(),
        volume: vec![1.0; n],
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

#[test]
fn sma_plugin_runs_and_matches_the_native_build() {
    let engine = engine().unwrap();
    let plugin = Plugin::load(&engine, &wasm("sma_crossover")).unwrap();
    let mut inst = plugin
        .instantiate(Recorder::default(), Limits::default(), 7)
        .unwrap();
    let info = inst.describe().unwrap();
    assert_eq!(info.name, "sma-crossover");
    assert_eq!(
        info.params
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        ["fast", "slow", "size"]
    );
    inst.init(&params(5.0, 20.0), None).unwrap();
    let series = closes(400);
    // In batches, as the engine feeds them.
    for chunk in series.chunks(64) {
        inst.on_bars(0, &bars(chunk)).unwrap();
    }
    let wasm_orders = inst.state().env.orders.clone();
    assert!(wasm_orders.len() >= 3, "{wasm_orders:?}");
    assert_eq!(wasm_orders[0].1, Side::Buy);

    // The same strategy compiled natively, through the SDK's trait.
    use quantbox_sdk::Strategy as _;
    let spec = sma_crossover::SmaCrossover::describe().params;
    let given: Vec<quantbox_sdk::Param> = params(5.0, 20.0)
        .into_iter()
        .map(|p| quantbox_sdk::Param {
            name: p.name,
            value: p.value,
        })
        .collect();
    let p = quantbox_sdk::Params::resolve(&spec, &given).unwrap();
    let mut native = sma_crossover::SmaCrossover::init(&p, None).unwrap();
    let mut held = 0.0;
    let mut native_orders = Vec::new();
    for &c in &series {
        match native.step(c) {
            Some(sma_crossover::Cross::Up) if held == 0.0 => {
                held = 1.0;
                native_orders.push(Side::Buy);
            }
            Some(sma_crossover::Cross::Down) if held > 0.0 => {
                held = 0.0;
                native_orders.push(Side::Sell);
            }
            _ => {}
        }
    }
    assert_eq!(
        wasm_orders.iter().map(|o| o.1).collect::<Vec<_>>(),
        native_orders
    );

    // Snapshot and restore (hot swap): the successor continues seamlessly.
    let snap = inst.snapshot_state().unwrap();
    assert_eq!(snap.len(), 20 * 8, "the last `slow` closes");
    let mut next = plugin
        .instantiate(
            Recorder {
                position: inst.state().env.position,
                ..Default::default()
            },
            Limits::default(),
            7,
        )
        .unwrap();
    next.init(&params(5.0, 20.0), Some(&snap)).unwrap();
    assert_eq!(next.snapshot_state().unwrap(), snap);

    // Bad parameters are refused with the reason.
    let mut bad = plugin
        .instantiate(Recorder::default(), Limits::default(), 7)
        .unwrap();
    let e = bad.init(&params(30.0, 20.0), None).unwrap_err();
    assert!(
        matches!(&e, PluginError::Refused(m) if m.contains("fast")),
        "{e}"
    );
    let e = bad
        .init(
            &[Param {
                name: "fats".into(),
                value: 1.0,
            }],
            None,
        )
        .unwrap_err();
    assert!(e.to_string().contains("unknown parameter"), "{e}");
}

#[test]
fn misbehaving_plugins_are_stopped_and_reported() {
    let engine = engine().unwrap();
    let plugin = Plugin::load(&engine, &wasm("misbehave")).unwrap();
    let limits = Limits {
        fuel_per_call: 50_000_000,
        memory_bytes: 32 << 20,
        log_lines_per_call: 10,
    };
    let run = |mode: f64| {
        let mut inst = plugin.instantiate(Recorder::default(), limits, 1).unwrap();
        inst.init(
            &[Param {
                name: "mode".into(),
                value: mode,
            }],
            None,
        )
        .unwrap();
        let r = inst.on_bars(0, &bars(&[1.0, 2.0]));
        (r, inst)
    };
    let (ok, inst) = run(0.0);
    ok.unwrap();
    assert_eq!(
        inst.state().logs,
        vec![(LogLevel::Info, "fine".to_string())]
    );

    let (r, mut inst) = run(1.0);
    assert_eq!(
        r.unwrap_err(),
        PluginError::OutOfFuel(50_000_000),
        "endless loop"
    );
    assert_eq!(inst.on_timer(0).unwrap_err(), PluginError::Poisoned);

    let (r, _) = run(2.0);
    let e = r.unwrap_err();
    assert!(
        matches!(e, PluginError::OutOfMemory(_) | PluginError::Trap(_)),
        "memory bomb: {e}"
    );

    let (r, _) = run(3.0);
    assert!(matches!(r.unwrap_err(), PluginError::Trap(_)), "panic");

    // The host keeps working: a fresh instance runs normally.
    let (ok, _) = run(0.0);
    ok.unwrap();

    // Malformed modules and foreign imports are refused before running.
    assert!(matches!(
        Plugin::load(&engine, b"\0asm garbage"),
        Err(PluginError::Invalid(_))
    ));
}
