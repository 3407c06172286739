//! What is refused before anything runs, and the compiled-artifact cache.

use qb_plugin_host::*;

use crate::support::*;

fn refused(engine: &PluginEngine, bytes: &[u8]) -> PluginError {
    Plugin::compile(engine, bytes).err().expect("refused")
}

fn component_wat(text: &str) -> Vec<u8> {
    wat::parse_str(text).unwrap()
}

#[test]
fn bad_modules_are_refused_with_the_reason() {
    let engine = engine(Limits {
        max_module_bytes: 4 << 20,
        ..Limits::default()
    });
    // Not WebAssembly, truncated, a core module.
    let e = refused(&engine, b"PK\x03\x04 a zip file");
    assert!(
        matches!(&e, PluginError::Invalid(m) if m.contains("not WebAssembly")),
        "{e}"
    );
    let good = rust_plugin("sma_crossover");
    let e = refused(&engine, &good[..good.len() / 2]);
    assert!(matches!(e, PluginError::Invalid(_)), "{e}");
    let core =
        std::fs::read(target_dir().join("wasm32-unknown-unknown/release/sma_crossover.wasm"))
            .unwrap();
    let e = refused(&engine, &core);
    assert!(
        matches!(&e, PluginError::Invalid(m) if m.contains("core WebAssembly module")),
        "{e}"
    );

    // Too large: refused on size alone.
    let mut huge = good.clone();
    huge.resize(5 << 20, 0);
    assert_eq!(
        refused(&engine, &huge),
        PluginError::TooLarge {
            size: 5 << 20,
            limit: 4 << 20
        }
    );

    // WASI imports (the same strategy built for wasm32-wasip2).
    let e = refused(&engine, &wasi_plugin("misbehave"));
    assert!(
        matches!(&e, PluginError::Incompatible(m) if m.contains("wasi:") && m.contains("without WASI")),
        "{e}"
    );

    // An interface outside the world, and another version of ours.
    let e = refused(
        &engine,
        &component_wat(r#"(component (import "evil:net/socket" (instance)))"#),
    );
    assert!(
        matches!(&e, PluginError::Incompatible(m) if m.contains("evil:net/socket")),
        "{e}"
    );
    let e = refused(
        &engine,
        &component_wat(r#"(component (import "quantbox:strategy/host@0.2.0" (instance)))"#),
    );
    assert!(
        matches!(&e, PluginError::Incompatible(m) if m.contains("@0.2.0") && m.contains(INTERFACE)),
        "{e}"
    );

    // A component that imports nothing but exports nothing either fails
    // at instantiation: it does not implement the world.
    let empty = component_wat("(component)");
    let plugin = Plugin::compile(&engine, &empty).unwrap();
    let e = plugin.instantiate(Recorder::default(), 0).err().unwrap();
    assert!(
        matches!(&e, PluginError::Incompatible(m) if m.contains("describe")),
        "{e}"
    );
}

#[test]
fn compiled_artifacts_are_cached_per_engine_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ArtifactCache::open(dir.path()).unwrap();
    let bytes = rust_plugin("sma_crossover");
    let first = engine(Limits::default());
    let p = Plugin::load(&first, &cache, &Compiler::InProcess, &bytes).unwrap();
    assert!(!p.was_cached());
    assert_eq!(p.sha256(), sha256_hex(&bytes));
    assert!(cache.path(&first, p.sha256()).exists());

    // Another engine with the same settings (a restart) loads the artifact.
    let again = engine(Limits::default());
    assert_eq!(again.fingerprint(), first.fingerprint());
    let p = Plugin::load(&again, &cache, &Compiler::InProcess, &bytes).unwrap();
    assert!(p.was_cached());
    let orders = run_bars(
        &p,
        &params(&[("fast", 5.0), ("slow", 20.0)]),
        &closes(400),
        64,
    );
    assert!(!orders.is_empty());

    // Fuel metering changes the code: a different fingerprint, a new artifact.
    let fuel = engine(Limits {
        fuel_per_call: Some(1_000_000_000),
        ..Limits::default()
    });
    assert_ne!(fuel.fingerprint(), first.fingerprint());
    assert!(
        !Plugin::load(&fuel, &cache, &Compiler::InProcess, &bytes)
            .unwrap()
            .was_cached()
    );

    // A damaged artifact is discarded and rebuilt, not trusted. (Loaded
    // artifacts are mapped from their files, so files are only ever
    // replaced, never rewritten in place: a new inode here too.)
    let path = cache.path(&first, p.sha256());
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, b"garbage").unwrap();
    let p = Plugin::load(&first, &cache, &Compiler::InProcess, &bytes).unwrap();
    assert!(!p.was_cached());
    cache.remove(p.sha256());
    assert!(!path.exists());
}
