use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use qb_core::{KvStore, KvWrite};

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

/// How a batch whose connection was cut ended (see [`interrupted_batch`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOutcome {
    /// The write returned `Ok`: every write of the batch is there.
    Committed,
    /// The write returned this error: nothing of the batch is there.
    RolledBack(String),
    /// The write returned this error, yet every write of the batch is
    /// there: the connection dropped after the commit reached the backend
    /// but before its answer did. Still all-or-nothing.
    CommittedUnacknowledged(String),
}

/// A large batch (`puts` puts of `value_len` bytes into `ns`, and the
/// deletion of a key that existed before) written through `kv` while
/// `interrupt` cuts its connection is all-or-nothing: afterwards `reader`,
/// another instance over the same backend that `interrupt` leaves alone,
/// sees either the whole batch or none of it, and the whole batch if the
/// write returned `Ok`. `interrupt` is awaited again and again until the
/// write returns (it should wait a little, then cut). `ns` must be unused.
pub async fn interrupted_batch<F>(
    kv: Arc<dyn KvStore>,
    reader: Arc<dyn KvStore>,
    ns: &str,
    puts: usize,
    value_len: usize,
    interrupt: F,
) -> BatchOutcome
where
    F: Fn() -> BoxFuture<'static, ()>,
{
    let value = |i: usize| -> Vec<u8> {
        (0..value_len)
            .map(|j| (i.wrapping_mul(31).wrapping_add(j) % 251) as u8)
            .collect()
    };
    let victim = "victim";
    reader.put(ns, victim, b"before", None).await.unwrap();
    let mut batch: Vec<KvWrite> = (0..puts)
        .map(|i| KvWrite::Put {
            ns: ns.into(),
            key: format!("k{i:08}"),
            value: value(i),
        })
        .collect();
    batch.push(KvWrite::Delete {
        ns: ns.into(),
        key: victim.into(),
    });

    let mut write = tokio::spawn(async move { kv.write(batch).await });
    let result = loop {
        tokio::select! {
            r = &mut write => break r.expect("the write task panicked"),
            () = interrupt() => {}
        }
    };

    let stored = reader.scan(ns, "k").await.unwrap();
    let victim_left = reader.get(ns, victim).await.unwrap().is_some();
    let applied = match stored.len() {
        0 => false,
        n if n == puts => true,
        n => panic!("a partial batch is visible: {n} of {puts} puts ({result:?})"),
    };
    assert_eq!(
        victim_left, !applied,
        "the batch's delete and its puts were not applied together ({result:?})"
    );
    if applied {
        for (i, (key, v)) in stored.iter().enumerate() {
            assert_eq!(key, &format!("k{i:08}"));
            assert!(v == &value(i), "value of {key} differs");
        }
    }
    match result {
        Ok(()) => {
            assert!(applied, "the write returned Ok but the batch is not there");
            BatchOutcome::Committed
        }
        Err(e) if applied => BatchOutcome::CommittedUnacknowledged(e.to_string()),
        Err(e) => BatchOutcome::RolledBack(e.to_string()),
    }
}
