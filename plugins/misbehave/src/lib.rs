//! Misbehaves on purpose in `on_bars`, chosen by parameter `mode`:
//! 1 loops forever, 2 allocates without bound, 3 panics (a trap). The host
//! must stop and report each and keep running.

use quantbox_sdk::*;

struct Misbehave {
    mode: i64,
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
                Some(3.0),
                "0 ok, 1 loop, 2 memory, 3 trap",
            )],
        )
    }

    fn init(params: &Params, _: Option<Vec<u8>>) -> Result<Self, String> {
        Ok(Self {
            mode: params.int("mode"),
        })
    }

    fn on_bars(&mut self, ctx: &mut dyn Ctx, _now: i64, bars: &Bars) {
        match self.mode {
            1 => {
                let mut x: u64 = bars.close.len() as u64;
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
            _ => ctx.log(LogLevel::Info, "fine"),
        }
    }
}

export_strategy!(Misbehave);
