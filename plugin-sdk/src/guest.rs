//! Glue between the generated WebAssembly exports and a [`Strategy`]; used
//! by [`export_strategy!`](crate::export_strategy).

use std::any::Any;
use std::cell::RefCell;

use crate::bindings::quantbox::strategy::host;
use crate::{
    Account, Bars, Ctx, Info, LogLevel, Order, OrderEvent, Param, Params, Position, Strategy, Ticks,
};

thread_local! {
    static INSTANCE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

/// [`Ctx`] backed by the host's imports.
pub struct HostCtx;

impl Ctx for HostCtx {
    fn submit_order(&mut self, order: Order) -> Result<(), String> {
        host::submit_order(&order)
    }
    fn cancel_order(&mut self, client_id: &str) -> Result<(), String> {
        host::cancel_order(client_id)
    }
    fn position(&mut self, symbol: &str) -> Position {
        host::get_position(symbol)
    }
    fn account(&mut self) -> Account {
        host::get_account()
    }
    fn log(&mut self, level: LogLevel, message: &str) {
        host::log(level, message)
    }
    fn state_get(&mut self, key: &str) -> Option<Vec<u8>> {
        host::state_get(key)
    }
    fn state_set(&mut self, key: &str, value: &[u8]) {
        host::state_set(key, value)
    }
    fn random_u64(&mut self) -> u64 {
        host::random_u64()
    }
}

fn with<S: Strategy>(f: impl FnOnce(&mut S)) {
    INSTANCE.with(|slot| {
        if let Some(s) = slot
            .borrow_mut()
            .as_mut()
            .and_then(|b| b.downcast_mut::<S>())
        {
            f(s);
        }
    });
}

pub fn describe<S: Strategy>() -> Info {
    S::describe()
}

pub fn init<S: Strategy>(params: Vec<Param>, state: Option<Vec<u8>>) -> Result<(), String> {
    let params = Params::resolve(&S::describe().params, &params)?;
    let s = S::init(&params, state)?;
    INSTANCE.with(|slot| *slot.borrow_mut() = Some(Box::new(s)));
    Ok(())
}

pub fn on_bars<S: Strategy>(now: i64, bars: Bars) {
    with::<S>(|s| s.on_bars(&mut HostCtx, now, &bars));
}

pub fn on_ticks<S: Strategy>(now: i64, ticks: Ticks) {
    with::<S>(|s| s.on_ticks(&mut HostCtx, now, &ticks));
}

pub fn on_order<S: Strategy>(now: i64, event: OrderEvent) {
    with::<S>(|s| s.on_order(&mut HostCtx, now, &event));
}

pub fn on_timer<S: Strategy>(now: i64) {
    with::<S>(|s| s.on_timer(&mut HostCtx, now));
}

pub fn snapshot_state<S: Strategy>() -> Vec<u8> {
    let mut out = Vec::new();
    with::<S>(|s| out = s.snapshot());
    out
}

/// `claim` as the byte array the `quantbox:plugin` custom section holds.
pub const fn claim_bytes<const N: usize>(claim: &str) -> [u8; N] {
    let bytes = claim.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = bytes[i];
        i += 1;
    }
    out
}

/// Exports a [`Strategy`](crate::Strategy) type as the plugin's entry points.
///
/// The strategy's `describe` must give the package's name and version
/// (`CARGO_PKG_NAME`, `CARGO_PKG_VERSION`): the plugin carries them in a
/// custom section, and quantbox refuses an upload whose `describe`
/// disagrees with it.
#[macro_export]
macro_rules! export_strategy {
    ($strategy:ty) => {
        // The component exports exist only in the WebAssembly build, so
        // native builds of several strategies link into one program (the
        // engine's differential tests and benchmarks).
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            // The package's `name@version` in a custom section the host
            // reads before compiling an upload (a clash with a stored
            // plugin is refused without a compile); `describe` must say
            // the same name and version.
            const __CLAIM: &str = concat!(env!("CARGO_PKG_NAME"), "@", env!("CARGO_PKG_VERSION"));
            #[allow(unsafe_code)]
            #[used]
            #[unsafe(link_section = "quantbox:plugin")]
            static __QUANTBOX_PLUGIN: [u8; __CLAIM.len()] = $crate::guest::claim_bytes(__CLAIM);
            struct __QuantboxPlugin;
            impl $crate::bindings::Guest for __QuantboxPlugin {
                fn describe() -> $crate::Info {
                    $crate::guest::describe::<$strategy>()
                }
                fn init(params: ::std::vec::Vec<$crate::Param>, state: ::std::option::Option<::std::vec::Vec<u8>>) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::guest::init::<$strategy>(params, state)
                }
                fn on_bars(now: i64, bars: $crate::Bars) {
                    $crate::guest::on_bars::<$strategy>(now, bars)
                }
                fn on_ticks(now: i64, ticks: $crate::Ticks) {
                    $crate::guest::on_ticks::<$strategy>(now, ticks)
                }
                fn on_order(now: i64, event: $crate::OrderEvent) {
                    $crate::guest::on_order::<$strategy>(now, event)
                }
                fn on_timer(now: i64) {
                    $crate::guest::on_timer::<$strategy>(now)
                }
                fn snapshot_state() -> ::std::vec::Vec<u8> {
                    $crate::guest::snapshot_state::<$strategy>()
                }
            }
            $crate::bindings::__export_strategy_world!(__QuantboxPlugin with_types_in $crate::bindings);
        };
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn() = || {
            fn is_strategy<S: $crate::Strategy>() {}
            is_strategy::<$strategy>();
        };
    };
}
