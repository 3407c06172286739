//! Hostile plugins are stopped and reported; limits hold; the host and
//! other instances keep working.

use std::time::Duration;

use qb_plugin_host::*;

use crate::support::*;

fn limits() -> Limits {
    Limits {
        memory_bytes: 32 << 20,
        call_timeout: Duration::from_millis(300),
        ..Limits::default()
    }
}

fn misbehaving(plugin: &Plugin, mode: f64) -> Instance<Recorder> {
    let mut inst = plugin.instantiate(Recorder::default(), 1).unwrap();
    inst.init(0, &params(&[("mode", mode)]), None).unwrap();
    inst
}

fn stop_reason(e: PluginError) -> (StopReason, Stop) {
    match e {
        PluginError::Stopped(stop) => (stop.reason, stop),
        other => panic!("expected a stopped call, got {other}"),
    }
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn each_hostile_plugin_is_stopped_with_its_reason() {
    let traps = prometheus::IntCounterVec::new(
        prometheus::Opts::new("quantbox_plugin_traps_total", "t"),
        &["plugin", "callback", "reason"],
    )
    .unwrap();
    let engine = engine(limits()).with_trap_counter(traps.clone());
    let plugin = Plugin::compile(&engine, &rust_plugin("misbehave")).unwrap();
    // The same limits with a deadline no busy machine reaches: the bombs
    // below must meet their own bound, not the clock.
    let patient = crate::support::engine(Limits {
        call_timeout: Duration::from_secs(30),
        ..limits()
    })
    .with_trap_counter(traps.clone());
    let bomb = Plugin::compile(&patient, &rust_plugin("misbehave")).unwrap();
    let b = bars("x", 0, &[1.0, 2.0]);

    // A well-behaved strategy runs on another thread the whole time.
    let sma = Plugin::compile(&engine, &rust_plugin("sma_crossover")).unwrap();
    let series = closes(20_000);
    let p = params(&[("fast", 5.0), ("slow", 20.0)]);
    let expected = run_bars(&sma, &p, &series, 500);
    let bystander = std::thread::spawn(move || {
        let mut runs = 0;
        for _ in 0..20 {
            assert_eq!(run_bars(&sma, &p, &series, 500), expected);
            runs += 1;
        }
        runs
    });

    // Endless loop: the deadline stops it, and the instance stays stopped.
    let mut inst = misbehaving(&plugin, 1.0);
    let (reason, stop) = stop_reason(inst.on_bars(0, &b).unwrap_err());
    assert_eq!(reason, StopReason::Timeout);
    assert_eq!(
        (stop.plugin.as_str(), stop.version.as_str(), stop.callback),
        ("misbehave", "0.1.0", "on_bars")
    );
    assert!(
        stop.to_string()
            .contains("misbehave 0.1.0 was stopped in on_bars: timeout"),
        "{stop}"
    );
    assert_eq!(
        inst.on_timer(0).unwrap_err(),
        PluginError::Poisoned(StopReason::Timeout)
    );

    // Memory bomb, repeatedly: stopped at the cap each time, and the
    // process does not keep the memory.
    let (reason, _) = stop_reason(misbehaving(&bomb, 2.0).on_bars(0, &b).unwrap_err());
    assert_eq!(reason, StopReason::OutOfMemory);
    let before = rss_bytes();
    for _ in 0..10 {
        let (reason, stop) = stop_reason(misbehaving(&bomb, 2.0).on_bars(0, &b).unwrap_err());
        assert_eq!(reason, StopReason::OutOfMemory, "{stop}");
    }
    let grown = rss_bytes().saturating_sub(before);
    assert!(
        grown < 64 << 20,
        "10 memory bombs of 32 MiB left {grown} bytes resident"
    );

    // A trap in every callback.
    for call in 0..3 {
        let mut inst = misbehaving(&plugin, 3.0);
        let r = match call {
            0 => inst.on_bars(0, &b),
            1 => inst.on_timer(0),
            _ => inst.on_ticks(
                0,
                &Ticks {
                    symbol: "x".into(),
                    ts: vec![0],
                    price: vec![1.0],
                    size: vec![1.0],
                    bid: vec![f64::NAN],
                    ask: vec![f64::NAN],
                },
            ),
        };
        let (reason, stop) = stop_reason(r.unwrap_err());
        assert_eq!(reason, StopReason::Trap);
        assert!(stop.detail.contains("unreachable"), "{}", stop.detail);
    }

    // Unbounded recursion hits the WebAssembly stack limit, not the thread's.
    let (reason, stop) = stop_reason(misbehaving(&plugin, 4.0).on_bars(0, &b).unwrap_err());
    assert_eq!(reason, StopReason::StackOverflow, "{stop}");

    // State without end: stopped at the bound, which the environment's
    // store never passes; the snapshot is bounded too.
    let mut inst = misbehaving(&bomb, 6.0);
    let mut calls = 0;
    let err = loop {
        match inst.on_timer(0) {
            Ok(()) => calls += 1,
            Err(e) => break e,
        }
        assert!(calls < 100, "never stopped");
    };
    let (reason, stop) = stop_reason(err);
    assert_eq!(reason, StopReason::StateLimit, "{stop}");
    assert!(stop.detail.contains("the limits are"), "{}", stop.detail);
    let held: usize = inst
        .env()
        .state
        .iter()
        .map(|(k, v)| k.len() + v.len())
        .sum();
    assert!(held <= limits().state_max_bytes, "{held} bytes held");
    assert!(inst.env().state.len() <= limits().state_max_keys);
    // 4 MiB of 64 KiB values: 63 or so fit, then the call stops.
    assert!((3..=4).contains(&calls), "{calls} calls");
    let mut inst = misbehaving(&bomb, 6.0);
    let (reason, stop) = stop_reason(inst.snapshot_state().unwrap_err());
    assert_eq!(reason, StopReason::StateLimit, "{stop}");

    // Every stop was counted with its labels.
    let count = |cb: &str, r: &str| traps.with_label_values(&["misbehave", cb, r]).get();
    assert_eq!(count("on_bars", "timeout"), 1);
    assert_eq!(count("on_bars", "out_of_memory"), 11);
    assert_eq!(
        count("on_timer", "trap") + count("on_ticks", "trap") + count("on_bars", "trap"),
        3
    );
    assert_eq!(count("on_bars", "stack_overflow"), 1);

    // The bystander finished every run with the same orders.
    assert_eq!(bystander.join().unwrap(), 20);
    // And a fresh instance of the hostile plugin in mode 0 works.
    misbehaving(&plugin, 0.0).on_bars(0, &b).unwrap();
}

#[test]
fn deterministic_mode_counts_instructions() {
    let engine = engine(Limits {
        fuel_per_call: Some(5_000_000),
        ..limits()
    });
    let plugin = Plugin::compile(&engine, &rust_plugin("misbehave")).unwrap();
    let (reason, stop) = stop_reason(
        misbehaving(&plugin, 1.0)
            .on_bars(0, &bars("x", 0, &[1.0]))
            .unwrap_err(),
    );
    assert_eq!(reason, StopReason::OutOfFuel);
    assert!(stop.detail.contains("5000000"), "{}", stop.detail);
    // The budget is per call: a normal strategy runs call after call.
    let sma = Plugin::compile(&engine, &rust_plugin("sma_crossover")).unwrap();
    let p = params(&[("fast", 5.0), ("slow", 20.0)]);
    assert!(!run_bars(&sma, &p, &closes(5000), 250).is_empty());
}

#[test]
fn logs_are_limited_per_simulated_second() {
    let engine = engine(Limits {
        log_lines_per_sec: 5,
        ..limits()
    });
    let plugin = Plugin::compile(&engine, &rust_plugin("misbehave")).unwrap();
    let mut inst = misbehaving(&plugin, 0.0);
    // 8 lines at t=1s, 3 more in the same second, 4 at t=2s.
    inst.on_bars(1_000_000_000, &bars("x", 0, &[1.0; 8]))
        .unwrap();
    inst.on_bars(1_500_000_000, &bars("x", 0, &[1.0; 3]))
        .unwrap();
    inst.on_bars(2_000_000_000, &bars("x", 0, &[1.0; 4]))
        .unwrap();
    let (lines, dropped) = inst.take_logs();
    let got: Vec<(i64, &str)> = lines.iter().map(|l| (l.ts, l.message.as_str())).collect();
    assert_eq!(
        got,
        [
            (1_000_000_000, "fine 0"),
            (1_000_000_000, "fine 1"),
            (1_000_000_000, "fine 2"),
            (1_000_000_000, "fine 3"),
            (1_000_000_000, "fine 4"),
            (2_000_000_000, "fine 0"),
            (2_000_000_000, "fine 1"),
            (2_000_000_000, "fine 2"),
            (2_000_000_000, "fine 3"),
        ]
    );
    assert_eq!(dropped, 6);
    assert!(inst.take_logs().0.is_empty());
}

#[test]
fn the_pool_limits_concurrent_instances() {
    let engine = engine(Limits {
        max_instances: 2,
        ..limits()
    });
    let plugin = Plugin::compile(&engine, &rust_plugin("sma_crossover")).unwrap();
    let a = plugin.instantiate(Recorder::default(), 1).unwrap();
    let _b = plugin.instantiate(Recorder::default(), 1).unwrap();
    let e = plugin.instantiate(Recorder::default(), 1).err().unwrap();
    assert!(matches!(e, PluginError::Busy(_)), "{e}");
    drop(a);
    plugin.instantiate(Recorder::default(), 1).unwrap();
}
