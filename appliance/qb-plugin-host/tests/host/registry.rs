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

/// The component with a `quantbox:plugin` section claiming `claim` put
/// first (right after the header), so it is the claim the host reads.
fn claiming(bytes: &[u8], claim: &str) -> Vec<u8> {
    let name = CLAIM_SECTION.as_bytes();
    let mut out = bytes[..8].to_vec();
    out.push(0);
    out.push((1 + name.len() + claim.len()) as u8);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(claim.as_bytes());
    out.extend_from_slice(&bytes[8..]);
    out
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

    // Other bytes claiming the same name and version are refused, before
    // they are compiled: the SDK put the claim in a custom section.
    assert_eq!(
        claimed_name(&bytes),
        Some(("sma-crossover".into(), "0.1.0".into()))
    );
    let twin = with_custom_section(bytes.clone());
    Plugin::compile(reg.engine(), &twin).expect("still a valid component");
    let compiled = reg.compiled();
    let slot = reg.compile_slot().unwrap();
    let e = reg.upload(twin, None, slot).await.unwrap_err();
    assert!(
        matches!(&e, RegistryError::Store(StoreError::Conflict(m)) if m.contains("before compiling")),
        "{e}"
    );
    assert_eq!(reg.compiled(), compiled, "the twin was compiled");
    // A `describe` that disagrees with the claim is refused once compiled,
    // and leaves nothing behind.
    let liar = claiming(&bytes, "sma-renamed@9.9.9");
    let slot = reg.compile_slot().unwrap();
    let e = reg.upload(liar, None, slot).await.unwrap_err();
    assert!(
        matches!(&e, RegistryError::Plugin(PluginError::Invalid(m))
            if m.contains("describe says sma-crossover 0.1.0 but the plugin was built as sma-renamed 9.9.9")),
        "{e}"
    );
    assert_eq!(reg.compiled(), compiled + 1);
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
