//! redb adapter for [`KvStore`]: one table keyed `"{ns}\0{key}"`, each value
//! prefixed with its expiry (8 bytes, big-endian milliseconds; 0 = never).
//! Every `put` and `delete` commits durably before it returns. Leases live
//! in a second table, `leases` (name → epoch, expiry in ms, holder), so a
//! fenced write checks the epoch in the same write transaction.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use qb_core::time::{duration_ms, now_ms};
use qb_core::{KvEntry, KvStore, KvWrite, Lease, LeaseState, StoreError, StoreResult};
use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle,
};

const KV: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("kv");
const LEASES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("leases");

/// A lease row: epoch and expiry (ms) big-endian, then the holder.
struct LeaseRow {
    epoch: i64,
    expires: i64,
    holder: String,
}

impl LeaseRow {
    fn encode(&self) -> Vec<u8> {
        let mut raw = Vec::with_capacity(16 + self.holder.len());
        raw.extend_from_slice(&self.epoch.to_be_bytes());
        raw.extend_from_slice(&self.expires.to_be_bytes());
        raw.extend_from_slice(self.holder.as_bytes());
        raw
    }

    fn decode(raw: &[u8]) -> StoreResult<Self> {
        let bad = || backend("a lease row is damaged");
        let epoch = raw.get(..8).ok_or_else(bad)?;
        let expires = raw.get(8..16).ok_or_else(bad)?;
        Ok(Self {
            epoch: i64::from_be_bytes(epoch.try_into().map_err(|_| bad())?),
            expires: i64::from_be_bytes(expires.try_into().map_err(|_| bad())?),
            holder: String::from_utf8(raw[16..].to_vec()).map_err(|_| bad())?,
        })
    }
}

/// A batch's writes, keys checked: (full key, raw value or None = delete).
type Ops = Vec<(String, Option<Vec<u8>>)>;

fn ops(batch: Vec<KvWrite>) -> StoreResult<Ops> {
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
    Ok(ops)
}

/// Applies `ops` in one write transaction; with `fence`, only if the
/// fence's lease is still at its epoch.
fn apply(db: &Database, ops: &Ops, fence: Option<&Lease>) -> StoreResult<()> {
    let tx = db.begin_write().map_err(backend)?;
    if let Some(lease) = fence {
        let leases = tx.open_table(LEASES).map_err(backend)?;
        let current = match leases.get(lease.name.as_str()).map_err(backend)? {
            Some(v) => Some(LeaseRow::decode(v.value())?.epoch),
            None => None,
        };
        if current != Some(lease.epoch) {
            return Err(fenced(lease, current));
        }
    }
    {
        let mut table = tx.open_table(KV).map_err(backend)?;
        for (k, raw) in ops {
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
}

/// Replaces the row of `lease` with `change(row)` when the row is still at
/// the lease's epoch and `change` gives one; whether it did.
fn update_lease(
    db: &Database,
    lease: &Lease,
    change: impl FnOnce(LeaseRow) -> Option<LeaseRow>,
) -> StoreResult<bool> {
    let tx = db.begin_write().map_err(backend)?;
    {
        let mut leases = tx.open_table(LEASES).map_err(backend)?;
        let current = match leases.get(lease.name.as_str()).map_err(backend)? {
            Some(v) => LeaseRow::decode(v.value())?,
            None => return Ok(false),
        };
        if current.epoch != lease.epoch {
            return Ok(false);
        }
        let Some(row) = change(current) else {
            return Ok(false);
        };
        leases
            .insert(lease.name.as_str(), row.encode().as_slice())
            .map_err(backend)?;
    }
    tx.commit().map_err(backend)?;
    Ok(true)
}

fn fenced(lease: &Lease, current: Option<i64>) -> StoreError {
    StoreError::Fenced(format!(
        "the {} lease moved on from epoch {} (now {}): this holder may no longer write",
        lease.name,
        lease.epoch,
        current.map_or_else(|| "none".into(), |e| e.to_string())
    ))
}

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
        tx.open_table(LEASES).map_err(backend)?;
        tx.commit().map_err(backend)?;
        Ok(Self { db: Arc::new(db) })
    }

    /// Copies every table, as one read transaction sees them, into a new
    /// redb file at `dest` (`quantbox backup`; writers carry on meanwhile).
    /// Returns the entries copied per table. Blocking.
    pub fn backup_into(&self, dest: &Path) -> StoreResult<Vec<(String, u64)>> {
        let names: Vec<String> = {
            let tx = self.db.begin_read().map_err(backend)?;
            tx.list_tables()
                .map_err(backend)?
                .map(|t| t.name().to_string())
                .collect()
        };
        for n in &names {
            if n != "kv" && n != "leases" {
                return Err(StoreError::Backend(format!(
                    "the hot state holds a table this build does not know: {n}"
                )));
            }
        }
        let out = Database::create(dest).map_err(backend)?;
        let src = self.db.begin_read().map_err(backend)?;
        let mut tx = out.begin_write().map_err(backend)?;
        tx.set_durability(redb::Durability::Immediate)
            .map_err(backend)?;
        let mut counts = Vec::new();
        for def in [KV, LEASES] {
            let from = src.open_table(def).map_err(backend)?;
            let mut to = tx.open_table(def).map_err(backend)?;
            let mut n = 0u64;
            for row in from.iter().map_err(backend)? {
                let (k, v) = row.map_err(backend)?;
                to.insert(k.value(), v.value()).map_err(backend)?;
                n += 1;
            }
            counts.push((def.name().to_string(), n));
        }
        tx.commit().map_err(backend)?;
        Ok(counts)
    }

    /// Entries per table (the counts `backup_into` reports). Blocking.
    pub fn table_counts(&self) -> StoreResult<Vec<(String, u64)>> {
        let tx = self.db.begin_read().map_err(backend)?;
        let mut counts = Vec::new();
        for def in [KV, LEASES] {
            let t = tx.open_table(def).map_err(backend)?;
            counts.push((def.name().to_string(), t.len().map_err(backend)?));
        }
        Ok(counts)
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
        let expires = ttl.map_or(0, |t| now_ms().saturating_add(duration_ms(t)));
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
        let ops = ops(batch)?;
        self.blocking(move |db| apply(db, &ops, None)).await
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

    async fn entries(&self, after: Option<(&str, &str)>, limit: u32) -> StoreResult<Vec<KvEntry>> {
        let after = after.map(|(ns, key)| full_key(ns, key)).transpose()?;
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(backend)?;
            let table = tx.open_table(KV).map_err(backend)?;
            let range = match &after {
                Some(k) => table.range::<&str>((
                    std::ops::Bound::Excluded(k.as_str()),
                    std::ops::Bound::Unbounded,
                )),
                None => table.range::<&str>(..),
            }
            .map_err(backend)?;
            let mut out = Vec::new();
            for item in range {
                if out.len() >= limit as usize {
                    break;
                }
                let (k, v) = item.map_err(backend)?;
                let raw = v.value();
                // Durable entries only: an expiry of 0 means never.
                let Some((head, data)) = raw.split_at_checked(8) else {
                    continue;
                };
                if head != [0u8; 8] {
                    continue;
                }
                let (ns, key) = k.value().split_once('\0').ok_or_else(|| {
                    backend(format!("a key without a namespace: {:?}", k.value()))
                })?;
                out.push(KvEntry {
                    ns: ns.to_string(),
                    key: key.to_string(),
                    value: data.to_vec(),
                });
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

    async fn lease_acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> StoreResult<Option<Lease>> {
        let (name, holder) = (name.to_string(), holder.to_string());
        self.blocking(move |db| {
            let now = now_ms();
            let tx = db.begin_write().map_err(backend)?;
            let epoch = {
                let mut leases = tx.open_table(LEASES).map_err(backend)?;
                let current = match leases.get(name.as_str()).map_err(backend)? {
                    Some(v) => Some(LeaseRow::decode(v.value())?),
                    None => None,
                };
                if let Some(c) = &current
                    && c.expires > now
                    && c.holder != holder
                {
                    return Ok(None);
                }
                let row = LeaseRow {
                    epoch: current.map_or(0, |c| c.epoch) + 1,
                    expires: now.saturating_add(duration_ms(ttl)),
                    holder: holder.clone(),
                };
                leases
                    .insert(name.as_str(), row.encode().as_slice())
                    .map_err(backend)?;
                row.epoch
            };
            tx.commit().map_err(backend)?;
            Ok(Some(Lease {
                name,
                holder,
                epoch,
            }))
        })
        .await
    }

    async fn lease_renew(&self, lease: &Lease, ttl: Duration) -> StoreResult<bool> {
        let lease = lease.clone();
        self.blocking(move |db| {
            update_lease(db, &lease, |row| {
                (row.holder == lease.holder).then(|| LeaseRow {
                    expires: now_ms().saturating_add(duration_ms(ttl)),
                    ..row
                })
            })
        })
        .await
    }

    async fn lease_release(&self, lease: &Lease) -> StoreResult<()> {
        let lease = lease.clone();
        self.blocking(move |db| {
            update_lease(db, &lease, |row| {
                Some(LeaseRow {
                    expires: now_ms(),
                    ..row
                })
            })
            .map(|_| ())
        })
        .await
    }

    async fn lease_state(&self, name: &str) -> StoreResult<Option<LeaseState>> {
        let name = name.to_string();
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(backend)?;
            let leases = tx.open_table(LEASES).map_err(backend)?;
            let Some(v) = leases.get(name.as_str()).map_err(backend)? else {
                return Ok(None);
            };
            let row = LeaseRow::decode(v.value())?;
            Ok(Some(LeaseState {
                holder: row.holder,
                epoch: row.epoch,
                expires_in_ms: row.expires - now_ms(),
            }))
        })
        .await
    }

    async fn write_fenced(&self, lease: &Lease, batch: Vec<KvWrite>) -> StoreResult<()> {
        let ops = ops(batch)?;
        let lease = lease.clone();
        self.blocking(move |db| apply(db, &ops, Some(&lease))).await
    }
}
