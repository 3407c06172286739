//! Turning the core module a Rust strategy compiles to
//! (`wasm32-unknown-unknown`, with the component type wit-bindgen embeds)
//! into a component. Such a component imports nothing but the strategy
//! interface: no WASI adapter, because nothing in it uses WASI.

use crate::error::PluginError;

/// Whether `bytes` start like a WebAssembly component, a core module, or
/// neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasmKind {
    Component,
    CoreModule,
    NotWasm,
}

pub fn kind(bytes: &[u8]) -> WasmKind {
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', _, _, 0x01, 0x00]) => WasmKind::Component,
        Some([0, b'a', b's', b'm', 0x01, 0x00, 0x00, 0x00]) => WasmKind::CoreModule,
        _ => WasmKind::NotWasm,
    }
}

/// The component for a core module built with the SDK.
pub fn componentize(core: &[u8]) -> Result<Vec<u8>, PluginError> {
    if kind(core) != WasmKind::CoreModule {
        return Err(PluginError::Invalid(
            "expected a core WebAssembly module (built for wasm32-unknown-unknown)".into(),
        ));
    }
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(core)
        .and_then(|e| e.encode())
        .map_err(|e| {
            PluginError::Invalid(format!(
                "cannot make a component of this module (was it built with quantbox-sdk?): {e:#}"
            ))
        })
}
