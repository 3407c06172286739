//! redb adapter for [`KvStore`]: one table keyed `"{ns}\0{key}"`, each value
//! prefixed with its expiry (8 bytes, big-endian milliseconds; 0 = never).
//! Every `put` and `delete` commits durably before it returns.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use qb_core::time::now_ms;
use qb_core::{KvStore, KvWrite, StoreError, StoreResult};
use redb::{Database, ReadableDatabase, TableDefinition};

const KV: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("kv");

/// The redb hot-state store. Cheap to clone.
#[derive(Clone)]
pub struct RedbKv {
    db: Arc<Database>,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn full_key(ns: &str, key: &str) -> StoreResult<String> {
    if ns.contains('\0') || key.contains('\0') {
        return Err(StoreError::Invalid("keys must not contain NUL".into()));
    }
    Ok(format!("{ns}\0{key}"))
}

fn live(raw: &[u8], now: i64) -> Option<&[u8]> {
    let (head, data) = raw.split_at_checked(8)?;
    let expires = i64::from_be_bytes(head.try_into().ok()?);
    (expires == 0 || expires > now).then_some(data)
}

impl RedbKv {
    pub fn open(path: impl AsRef<Path>) -> StoreResult<Self> {
        let db = Database::create(path.as_ref()).map_err(backend)?;
        // Make sure the table exists so readers never see "table missing".
        let tx = db.begin_write().map_err(backend)?;
        tx.open_table(KV).map_err(backend)?;
        tx.commit().map_err(backend)?;
        Ok(Self { db: Arc::new(db) })
    }

    async fn blocking<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> StoreResult<T> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(backend)?
    }
}

#[async_trait]
impl KvStore for RedbKv {
    async fn ping(&self) -> StoreResult<()> {
        self.blocking(|db| {
            let tx = db.begin_read().map_err(backend)?;
            tx.open_table(KV).map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn get(&self, ns: &str, key: &str) -> StoreResult<Option<Vec<u8>>> {
        let k = full_key(ns, key)?;
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(backend)?;
            let table = tx.open_table(KV).map_err(backend)?;
            let value = table.get(k.as_str()).map_err(backend)?;
            Ok(value.and_then(|v| live(v.value(), now_ms()).map(<[u8]>::to_vec)))
        })
        .await
    }

    async fn put(
        &self,
        ns: &str,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> StoreResult<()> {
        let k = full_key(ns, key)?;
        let expires = ttl.map_or(0, |t| now_ms() + t.as_millis() as i64);
        let mut raw = Vec::with_capacity(8 + value.len());
        raw.extend_from_slice(&expires.to_be_bytes());
        raw.extend_from_slice(value);
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(backend)?;
            {
                let mut table = tx.open_table(KV).map_err(backend)?;
                table.insert(k.as_str(), raw.as_slice()).map_err(backend)?;
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn delete(&self, ns: &str, key: &str) -> StoreResult<bool> {
        let k = full_key(ns, key)?;
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(backend)?;
            let existed = {
                let mut table = tx.open_table(KV).map_err(backend)?;
                let old = table.remove(k.as_str()).map_err(backend)?;
                old.is_some_and(|v| live(v.value(), now_ms()).is_some())
            };
            tx.commit().map_err(backend)?;
            Ok(existed)
        })
        .await
    }

    async fn write(&self, batch: Vec<KvWrite>) -> StoreResult<()> {
        // Keys are checked before the transaction: a bad one writes nothing.
        let mut ops = Vec::with_capacity(batch.len());
        for w in batch {
            ops.push(match w {
                KvWrite::Put { ns, key, value } => {
                    let mut raw = Vec::with_capacity(8 + value.len());
                    raw.extend_from_slice(&0i64.to_be_bytes());
                    raw.extend_from_slice(&value);
                    (full_key(&ns, &key)?, Some(raw))
                }
                KvWrite::Delete { ns, key } => (full_key(&ns, &key)?, None),
            });
        }
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(backend)?;
            {
                let mut table = tx.open_table(KV).map_err(backend)?;
                for (k, raw) in &ops {
                    match raw {
                        Some(raw) => {
                            table.insert(k.as_str(), raw.as_slice()).map_err(backend)?;
                        }
                        None => {
                            table.remove(k.as_str()).map_err(backend)?;
                        }
                    }
                }
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn scan(&self, ns: &str, prefix: &str) -> StoreResult<Vec<(String, Vec<u8>)>> {
        let start = full_key(ns, prefix)?;
        let ns_len = ns.len() + 1;
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(backend)?;
            let table = tx.open_table(KV).map_err(backend)?;
            let now = now_ms();
            let mut out = Vec::new();
            for item in table.range(start.as_str()..).map_err(backend)? {
                let (k, v) = item.map_err(backend)?;
                let k = k.value();
                if !k.starts_with(start.as_str()) {
                    break;
                }
                if let Some(data) = live(v.value(), now) {
                    out.push((k[ns_len..].to_string(), data.to_vec()));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn purge_expired(&self) -> StoreResult<u64> {
        self.blocking(|db| {
            let now = now_ms();
            let tx = db.begin_write().map_err(backend)?;
            let mut removed = 0u64;
            {
                let mut table = tx.open_table(KV).map_err(backend)?;
                table
                    .retain(|_, v| {
                        let keep = live(v, now).is_some();
                        if !keep {
                            removed += 1;
                        }
                        keep
                    })
                    .map_err(backend)?;
            }
            tx.commit().map_err(backend)?;
            Ok(removed)
        })
        .await
    }
}
