//! Misbehaves on purpose, chosen by parameter `mode`:
//! 0 behaves (logs a line per bar, to test the log limit), 1 loops forever,
//! 2 allocates without bound, 3 traps (panics) in every callback,
//! 4 recurses without bound, 5 is slow (about 100,000 steps per bar,
//! for cancelling long runs), 6 hoards state (16 new 64 KiB keys per
//! call, and a 8 MiB snapshot). The host must stop and report each and keep
//! serving. Built for wasm32-wasip2 too, it is also the plugin that
//! imports WASI (which the host refuses).

use quantbox_sdk::*;

struct Misbehave {
    mode: i64,
}

/// Recursion the optimiser cannot turn into a loop; nothing of it lives
/// in linear memory, so it exhausts the WebAssembly call stack.
#[allow(unconditional_recursion)]
fn dive(depth: u64) -> u64 {
    std::hint::black_box(dive(depth.wrapping_add(1))).wrapping_mul(depth | 1)
}

impl Misbehave {
    fn act(&self, ctx: &mut dyn Ctx, n: usize) {
        match self.mode {
            1 => {
                let mut x: u64 = n as u64;
                loop {
                    x = std::hint::black_box(
                        x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1),
                    );
                }
            }
            2 => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            3 => panic!("strategy bug"),
            4 => {
                std::hint::black_box(dive(n as u64));
            }
            5 => {
                // Slow but within the deadline: about 100,000 steps a bar.
                for i in 0..n as u64 {
                    let mut x = i;
                    for _ in 0..100_000 {
                        x = std::hint::black_box(
                            x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1),
                        );
                    }
                }
            }
            6 => {
                let first = ctx.state_get("next").map_or(0, |b| b.len());
                for i in first..first + 16 {
                    ctx.state_set(&format!("hoard-{i}"), &vec![7u8; 64 << 10]);
                }
                ctx.state_set("next", &vec![0u8; first + 16]);
            }
            _ => {
                for i in 0..n {
                    ctx.log(LogLevel::Info, &format!("fine {i}"));
                }
            }
        }
    }
}

impl Strategy for Misbehave {
    fn describe() -> Info {
        info(
            "misbehave",
            "0.1.0",
            "sandbox test plugin",
            vec![param(
                "mode",
                ParamType::Integer,
                0.0,
                Some(0.0),
                Some(6.0),
                "0 ok, 1 loop, 2 memory, 3 trap, 4 recursion, 5 slow, 6 state",
            )],
        )
    }

    fn init(params: &Params, _: Option<Vec<u8>>) -> Result<Self, String> {
        Ok(Self {
            mode: params.int("mode"),
        })
    }

    fn on_bars(&mut self, ctx: &mut dyn Ctx, _now: i64, bars: &Bars) {
        self.act(ctx, bars.close.len());
    }

    fn on_ticks(&mut self, ctx: &mut dyn Ctx, _now: i64, ticks: &Ticks) {
        self.act(ctx, ticks.price.len());
    }

    fn on_timer(&mut self, ctx: &mut dyn Ctx, _now: i64) {
        self.act(ctx, 1);
    }

    fn snapshot(&self) -> Vec<u8> {
        if self.mode == 6 {
            vec![7u8; 8 << 20]
        } else {
            Vec::new()
        }
    }
}

export_strategy!(Misbehave);
