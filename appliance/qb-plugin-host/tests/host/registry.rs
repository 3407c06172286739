//! The registry over a real SQLite metadata store: idempotent uploads,
//! name + version uniqueness, leases blocking deletion, restart from cache.

use std::sync::Arc;

use qb_core::StoreError;
use qb_core::model::PageRequest;
use qb_plugin_host::registry::{PluginRegistry, RegistryError};
use qb_plugin_host::*;

use crate::support::*;

/// The same component with a custom section appended: other bytes, same
/// plugin name and version.
fn with_custom_section(mut bytes: Vec<u8>) -> Vec<u8> {
    let name = b"note";
    let payload = b"rebuilt";
    bytes.push(0); // custom section id
    bytes.push((1 + name.len() + payload.len()) as u8);
    bytes.push(name.len() as u8);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(payload);
    bytes
}

fn registry(dir: &std::path::Path) -> Arc<PluginRegistry> {
    let meta = Arc::new(qb_store::Sqlite::open(dir.join("meta.sqlite")).unwrap());
    Arc::new(
        PluginRegistry::new(
            meta,
            engine(Limits::default()),
            ArtifactCache::open(dir.join("cache")).unwrap(),
            Compiler::InProcess,
        )
        .with_max_compiles(1),
    )
}

/// Compiled artifacts in the cache directory.
fn artifacts(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("cache")).unwrap().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_leases_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let bytes = rust_plugin("sma_crossover");
    let slot = reg.compile_slot().unwrap();
    // One upload checked at a time: the next waits for the slot.
    assert!(matches!(reg.compile_slot(), Err(PluginError::Busy(_))));
    let (info, created) = reg
        .upload(bytes.clone(), Some("tina".into()), slot)
        .await
        .unwrap();
    assert_eq!(artifacts(dir.path()), 1);
    assert!(created);
    assert_eq!(
        (info.name.as_str(), info.version.as_str()),
        ("sma-crossover", "0.1.0")
    );
    let slot = reg.compile_slot().unwrap();
    let (again, created) = reg.upload(bytes.clone(), None, slot).await.unwrap();
    assert!(!created);
    assert_eq!(again, info);

    // Other bytes claiming the same name and version are refused.
    let twin = with_custom_section(bytes.clone());
    Plugin::compile(reg.engine(), &twin).expect("still a valid component");
    let slot = reg.compile_slot().unwrap();
    let e = reg.upload(twin, None, slot).await.unwrap_err();
    assert!(
        matches!(e, RegistryError::Store(StoreError::Conflict(_))),
        "{e}"
    );
    // Nothing of the refused upload is kept.
    assert_eq!(
        artifacts(dir.path()),
        1,
        "the refused twin left its artifact"
    );

    // A plugin in use cannot be deleted; released, it can.
    assert_eq!(reg.resolve("sma-crossover").await.unwrap().id, info.id);
    let lease = reg.lease(&info.id);
    let e = reg.delete(&info.id).await.unwrap_err();
    assert!(
        matches!(&e, RegistryError::InUse(m) if m.contains("1 running strategy")),
        "{e}"
    );
    drop(lease);

    // A restart (new registry, same files) loads the cached artifact.
    drop(reg);
    let reg = registry(dir.path());
    let plugin = reg.load(&info.id).await.unwrap();
    assert!(plugin.was_cached(), "restart must not recompile");
    let orders = run_bars(
        &plugin,
        &params(&[("fast", 5.0), ("slow", 20.0)]),
        &closes(400),
        64,
    );
    assert!(!orders.is_empty());
    reg.delete(&info.id).await.unwrap();
    assert_eq!(
        reg.list(PageRequest {
            page: 1,
            page_size: 10
        })
        .await
        .unwrap()
        .total,
        0
    );
    assert!(matches!(
        reg.resolve(&info.id).await.unwrap_err(),
        RegistryError::Store(StoreError::NotFound(_))
    ));
}
