//! What the engine tests share: the example plugins built from `plugins/`.

use std::path::PathBuf;

use qb_plugin_host::{Limits, Param, Plugin, PluginEngine, componentize};

/// An example plugin (`plugins/<name>`), built for wasm32 by
/// `packaging/scripts/dev.sh test`, compiled into a component.
pub fn plugin(name: &str) -> Plugin {
    // target/<profile>/deps/<test>-… -> target
    let target: PathBuf = std::env::current_exe()
        .unwrap()
        .ancestors()
        .nth(3)
        .unwrap()
        .to_path_buf();
    let path = target.join(format!("wasm32-unknown-unknown/release/{name}.wasm"));
    let core = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run packaging/scripts/dev.sh test", path.display()));
    let engine = PluginEngine::new(Limits::default()).unwrap();
    Plugin::compile(&engine, &componentize(&core).unwrap()).unwrap()
}

pub fn params(list: &[(&str, f64)]) -> Vec<Param> {
    list.iter()
        .map(|(n, v)| Param {
            name: (*n).into(),
            value: *v,
        })
        .collect()
}
