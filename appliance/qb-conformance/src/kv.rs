use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use qb_core::{Fenced, KvStore, KvWrite, StoreError};

pub async fn suite(kv: Arc<dyn KvStore>) {
    kv.ping().await.unwrap();
    entries(&kv).await;
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

    leases(kv).await;
}

fn one_put(key: &str) -> Vec<KvWrite> {
    vec![KvWrite::Put {
        ns: "fenced".into(),
        key: key.into(),
        value: b"x".to_vec(),
    }]
}

fn assert_fenced(r: Result<(), StoreError>, what: &str) {
    match r {
        Err(StoreError::Fenced(m)) => assert!(m.contains("epoch"), "{what}: {m}"),
        other => panic!("{what}: expected a fenced refusal, got {other:?}"),
    }
}

/// Leases and fenced writes: one holder at a time, an epoch that grows at
/// every acquisition, expiry, release, and writes under an old epoch
/// refused whole.
async fn leases(kv: Arc<dyn KvStore>) {
    let ttl = Duration::from_millis(400);
    let name = "desk-conformance";
    assert_eq!(kv.lease_state(name).await.unwrap(), None);
    let a = kv
        .lease_acquire(name, "node-a", ttl)
        .await
        .unwrap()
        .expect("a lease nobody holds is free");
    assert_eq!((a.holder.as_str(), a.epoch), ("node-a", 1));
    // Held: another holder is refused; the same holder (a restart of the
    // node) takes it again at once, under a new epoch.
    assert_eq!(kv.lease_acquire(name, "node-b", ttl).await.unwrap(), None);
    let a2 = kv
        .lease_acquire(name, "node-a", ttl)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a2.epoch, 2);
    // The earlier epoch is fenced: nothing of its batch is applied and it
    // cannot renew.
    assert_fenced(kv.write_fenced(&a, one_put("1")).await, "old epoch");
    assert_eq!(kv.get("fenced", "1").await.unwrap(), None);
    assert!(!kv.lease_renew(&a, ttl).await.unwrap());
    kv.write_fenced(&a2, one_put("2")).await.unwrap();
    assert!(kv.get("fenced", "2").await.unwrap().is_some());
    assert!(kv.lease_renew(&a2, ttl).await.unwrap());
    let st = kv.lease_state(name).await.unwrap().unwrap();
    assert_eq!((st.holder.as_str(), st.epoch), ("node-a", 2));
    assert!(st.expires_in_ms > 0 && st.expires_in_ms <= 400, "{st:?}");

    // A term without renewal: expired. Until someone takes it, it is
    // still its holder's (nobody else can have written).
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    assert!(kv.lease_state(name).await.unwrap().unwrap().expires_in_ms <= 0);
    kv.write_fenced(&a2, one_put("3")).await.unwrap();
    let b = kv
        .lease_acquire(name, "node-b", ttl)
        .await
        .unwrap()
        .expect("an expired lease is free");
    assert_eq!(b.epoch, 3);
    // The old holder, back: it writes nothing and cannot renew.
    assert_fenced(kv.write_fenced(&a2, one_put("4")).await, "taken over");
    assert_eq!(kv.get("fenced", "4").await.unwrap(), None);
    assert!(!kv.lease_renew(&a2, ttl).await.unwrap());

    // The same through the Fenced wrapper the desk writes through.
    let old = Fenced::new(kv.clone(), a2.clone());
    let held = Fenced::new(kv.clone(), b.clone());
    assert!(matches!(
        old.put("fenced", "5", b"y", None).await,
        Err(StoreError::Fenced(_))
    ));
    held.put("fenced", "6", b"y", None).await.unwrap();
    assert!(held.delete("fenced", "6").await.unwrap());
    assert_eq!(kv.get("fenced", "5").await.unwrap(), None);
    assert_eq!(kv.get("fenced", "6").await.unwrap(), None);
    assert!(held.put("fenced", "7", b"y", Some(ttl)).await.is_err());

    // Release: the next candidate takes it at once. Releasing a lease
    // that moved on changes nothing.
    kv.lease_release(&b).await.unwrap();
    let c = kv
        .lease_acquire(name, "node-c", ttl)
        .await
        .unwrap()
        .expect("a released lease is free");
    assert_eq!(c.epoch, 4);
    kv.lease_release(&b).await.unwrap();
    assert_eq!(kv.lease_acquire(name, "node-d", ttl).await.unwrap(), None);
    // Leases are independent of each other.
    assert!(
        kv.lease_acquire("other-lease", "node-d", ttl)
            .await
            .unwrap()
            .is_some()
    );

    // Candidates racing for a free lease: exactly one wins.
    let long = Duration::from_secs(60);
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let kv = kv.clone();
            tokio::spawn(async move { kv.lease_acquire("raced", &format!("n{i}"), long).await })
        })
        .collect();
    let mut winners = 0;
    for r in racers {
        winners += usize::from(r.await.unwrap().unwrap().is_some());
    }
    assert_eq!(winners, 1);
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

/// `entries`: every durable entry of every namespace in (namespace, key)
/// byte order, paged; entries put with an expiry and leases are not
/// listed. Runs on an empty store and leaves it empty.
async fn entries(kv: &Arc<dyn KvStore>) {
    assert_eq!(kv.entries(None, 10).await.unwrap(), Vec::new());
    let durable = [
        ("e", "b", "1"),
        ("e", "a", "2"),
        ("e.x", "a", "3"),
        ("d", "z", "4"),
        ("e", "B", "5"),
        ("e", "a/\u{e9}", "6"),
    ];
    for (ns, key, v) in durable {
        kv.put(ns, key, v.as_bytes(), None).await.unwrap();
    }
    kv.put("e", "ttl", b"x", Some(Duration::from_secs(600)))
        .await
        .unwrap();
    let lease = kv
        .lease_acquire("entries-lease", "n1", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let mut want: Vec<(String, String, Vec<u8>)> = durable
        .iter()
        .map(|(ns, k, v)| (ns.to_string(), k.to_string(), v.as_bytes().to_vec()))
        .collect();
    want.sort_by(|a, b| (a.0.as_bytes(), a.1.as_bytes()).cmp(&(b.0.as_bytes(), b.1.as_bytes())));
    let flat = |es: Vec<qb_core::KvEntry>| {
        es.into_iter()
            .map(|e| (e.ns, e.key, e.value))
            .collect::<Vec<_>>()
    };
    assert_eq!(flat(kv.entries(None, 100).await.unwrap()), want);
    let mut paged = Vec::new();
    loop {
        let after = paged
            .last()
            .map(|(ns, k, _): &(String, String, Vec<u8>)| (ns.clone(), k.clone()));
        let page = kv
            .entries(after.as_ref().map(|(n, k)| (n.as_str(), k.as_str())), 2)
            .await
            .unwrap();
        let n = page.len();
        paged.extend(flat(page));
        if n < 2 {
            break;
        }
    }
    assert_eq!(paged, want, "paged by (namespace, key)");
    for (ns, key, _) in durable {
        kv.delete(ns, key).await.unwrap();
    }
    kv.delete("e", "ttl").await.unwrap();
    kv.lease_release(&lease).await.unwrap();
    assert_eq!(kv.entries(None, 10).await.unwrap(), Vec::new());
}
