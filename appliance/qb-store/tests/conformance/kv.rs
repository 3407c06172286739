use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use qb_core::{KvStore, KvWrite};
use qb_store::RedbKv;

pub async fn suite(kv: Arc<dyn KvStore>) {
    kv.ping().await.unwrap();
    assert_eq!(kv.get("a", "k").await.unwrap(), None);
    kv.put("a", "k", b"v1", None).await.unwrap();
    kv.put("a", "k2", b"v2", None).await.unwrap();
    kv.put("b", "k", b"other", None).await.unwrap();
    assert_eq!(kv.get("a", "k").await.unwrap().as_deref(), Some(&b"v1"[..]));
    kv.put("a", "k", b"v1b", None).await.unwrap();
    assert_eq!(
        kv.get("a", "k").await.unwrap().as_deref(),
        Some(&b"v1b"[..])
    );
    // Namespaces do not leak into each other, even with shared prefixes.
    kv.put("ab", "k", b"ns-ab", None).await.unwrap();
    let scanned = kv.scan("a", "k").await.unwrap();
    assert_eq!(
        scanned,
        vec![
            ("k".to_string(), b"v1b".to_vec()),
            ("k2".to_string(), b"v2".to_vec())
        ]
    );
    assert_eq!(kv.scan("a", "k2").await.unwrap().len(), 1);
    assert!(kv.delete("a", "k").await.unwrap());
    assert!(!kv.delete("a", "k").await.unwrap());
    assert!(kv.put("a\0b", "k", b"", None).await.is_err());

    // Batches: all writes or none.
    let put = |ns: &str, key: &str, v: &[u8]| KvWrite::Put {
        ns: ns.into(),
        key: key.into(),
        value: v.to_vec(),
    };
    kv.write(vec![
        put("o", "1", b"one"),
        put("o", "2", b"two"),
        KvWrite::Delete {
            ns: "a".into(),
            key: "k2".into(),
        },
    ])
    .await
    .unwrap();
    assert_eq!(kv.scan("o", "").await.unwrap().len(), 2);
    assert_eq!(kv.get("a", "k2").await.unwrap(), None);
    let bad = kv
        .write(vec![put("o", "3", b"three"), put("o\0x", "4", b"four")])
        .await;
    assert!(bad.is_err());
    assert_eq!(kv.get("o", "3").await.unwrap(), None, "nothing applied");
    kv.write(Vec::new()).await.unwrap();

    // Expiry: gone for readers at once, removed by purge.
    kv.put("t", "short", b"x", Some(Duration::from_millis(50)))
        .await
        .unwrap();
    kv.put("t", "long", b"y", Some(Duration::from_secs(3600)))
        .await
        .unwrap();
    assert!(kv.get("t", "short").await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert!(kv.get("t", "short").await.unwrap().is_none());
    assert_eq!(kv.scan("t", "").await.unwrap().len(), 1);
    assert_eq!(kv.purge_expired().await.unwrap(), 1);
    assert!(kv.get("t", "long").await.unwrap().is_some());
}

/// Writes, closes, reopens: committed values are still there.
pub async fn reopen_probe(dir: &Path) -> RedbKv {
    let path = dir.join("reopen.redb");
    {
        let kv = RedbKv::open(&path).unwrap();
        kv.put("p", "durable", b"yes", None).await.unwrap();
    }
    let kv = RedbKv::open(&path).unwrap();
    assert_eq!(
        kv.get("p", "durable").await.unwrap().as_deref(),
        Some(&b"yes"[..])
    );
    kv
}
