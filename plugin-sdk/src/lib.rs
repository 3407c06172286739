//! The quantbox strategy SDK.
//!
//! Today it holds the streaming indicators strategies build on; the
//! `Strategy` trait and the WASM export glue generated from the plugin
//! interface (WIT) join it with the plugin host. Everything here compiles
//! natively as well as to WebAssembly, so the engine can run a strategy
//! both ways for side-by-side benchmarks and differential tests.
#![deny(missing_docs)]

pub mod indicators;
