//! The quantbox strategy SDK.
//!
//! A strategy is a type implementing [`Strategy`], exported with
//! [`export_strategy!`] and built for `wasm32-unknown-unknown` (then made a
//! component by `quantbox plugin build`):
//!
//! ```no_run
//! use quantbox_sdk::*;
//!
//! struct Hold;
//! impl Strategy for Hold {
//!     fn describe() -> Info { info("hold", "0.1.0", "never trades", vec![]) }
//!     fn init(_: &Params, _: Option<Vec<u8>>) -> Result<Self, String> { Ok(Hold) }
//! }
//! export_strategy!(Hold);
//! ```
//!
//! The same code compiles natively, so the engine can run a strategy with
//! and without WebAssembly for side-by-side benchmarks and differential
//! tests. The plugin interface itself is `wit/strategy.wit`; the types here
//! are generated from it.
#![deny(missing_docs)]

pub mod indicators;
mod strategy;

#[doc(hidden)]
pub mod guest;

/// Bindings generated from `wit/strategy.wit`.
#[allow(missing_docs, unsafe_code, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "strategy",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "__export_strategy_world",
        default_bindings_module: "quantbox_sdk::bindings",
    });
}

pub use bindings::quantbox::strategy::types::{
    Account, Bars, Info, LogLevel, Order, OrderEvent, OrderState, OrderType, Param, ParamSpec,
    ParamType, Position, Side, Ticks,
};
pub use strategy::{Ctx, Params, Strategy, info, param};

/// The interface version this SDK builds plugins for.
pub const INTERFACE_VERSION: &str = "0.1.0";
