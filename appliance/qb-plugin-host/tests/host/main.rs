//! The plugin host running real plugins built from `plugins/` (Rust for
//! wasm32-unknown-unknown, componentized; Python with componentize-py).

mod loading;
mod registry;
mod sandbox;
mod strategies;
mod support;
