//! [`KvStore`] on PostgreSQL: the `kv` table, one row per `(ns, key)`
//! (both `COLLATE "C"`, so keys sort in byte order), the value as `BYTEA`
//! and the expiry as integer milliseconds UTC (`NULL` = never).
//!
//! A port of the redb adapter (`qb-store/src/redb_kv.rs`): expired rows are
//! invisible to every reader before `purge_expired` removes them; a `write`
//! batch is one transaction, durable when it returns, and applies nothing
//! when any of its keys is invalid or the connection drops before the
//! commit. Namespaces and keys cannot hold NUL (neither can PostgreSQL
//! `TEXT`): they are refused with `Invalid` before anything is sent.
//!
//! Leases are rows of `leases`, timed by the server's clock
//! (`clock_timestamp()`), so nodes with skewed clocks agree on expiry. A
//! fenced write reads its lease row `FOR SHARE` in the batch's
//! transaction: a takeover (an update of that row) waits for the write to
//! commit, and a write after the takeover sees the new epoch and applies
//! nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use qb_core::time::{Millis, duration_ms, now_ms};
use qb_core::{KvEntry, KvStore, KvWrite, Lease, LeaseState, StoreError, StoreResult};
use tokio_postgres::error::SqlState;

use crate::{PgStore, backend, map_pg};

// Every reader passes its clock as `$3` and sees only rows not expired by
// then: `(expires_at IS NULL OR expires_at > $3)`.

const GET: &str = "SELECT value FROM kv WHERE ns = $1 AND key = $2 \
                   AND (expires_at IS NULL OR expires_at > $3)";

const PUT: &str = "INSERT INTO kv (ns, key, value, expires_at) VALUES ($1, $2, $3, $4) \
                   ON CONFLICT (ns, key) DO UPDATE \
                   SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at";

/// Returns whether the deleted row was still live.
const DELETE: &str = "DELETE FROM kv WHERE ns = $1 AND key = $2 \
                      RETURNING (expires_at IS NULL OR expires_at > $3)";

/// One chunk of a batch: deletes (`value` NULL) and puts, keys distinct.
const APPLY: &str = "WITH batch AS (
        SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[]) AS b(ns, key, value)
    ), deleted AS (
        DELETE FROM kv USING batch
        WHERE batch.value IS NULL AND kv.ns = batch.ns AND kv.key = batch.key
    )
    INSERT INTO kv (ns, key, value, expires_at)
    SELECT ns, key, value, NULL FROM batch WHERE value IS NOT NULL
    ON CONFLICT (ns, key) DO UPDATE SET value = EXCLUDED.value, expires_at = NULL";

/// Live keys of `$1` from `$2` (the prefix) up to `$4` (excluded) in byte
/// order: a range on the primary key, which serves bounds and order.
const SCAN_RANGE: &str = "SELECT key, value FROM kv WHERE ns = $1 AND key >= $2 AND key < $4 \
                          AND (expires_at IS NULL OR expires_at > $3) ORDER BY key";

/// [`SCAN_RANGE`] without an upper bound (empty prefix).
const SCAN_FROM: &str = "SELECT key, value FROM kv WHERE ns = $1 AND key >= $2 \
                         AND (expires_at IS NULL OR expires_at > $3) ORDER BY key";

/// Durable rows in `(ns, key)` order, from the start or after `($1, $2)`.
const ENTRIES: &str = "SELECT ns, key, value FROM kv WHERE expires_at IS NULL \
                       ORDER BY ns, key LIMIT $1";
const ENTRIES_AFTER: &str = "SELECT ns, key, value FROM kv WHERE expires_at IS NULL \
                             AND (ns, key) > ($1, $2) ORDER BY ns, key LIMIT $3";

const PURGE: &str = "DELETE FROM kv WHERE expires_at <= $1";

/// Takes `$1` for `$2` for `$3` ms when free, expired or `$2`'s; returns
/// the new epoch (no row: a live lease of another holder).
const LEASE_ACQUIRE: &str = "INSERT INTO leases AS l (name, holder, epoch, expires_at) \
     VALUES ($1, $2, 1, clock_timestamp() + $3::bigint * interval '1 millisecond') \
     ON CONFLICT (name) DO UPDATE \
     SET holder = EXCLUDED.holder, epoch = l.epoch + 1, expires_at = EXCLUDED.expires_at \
     WHERE l.expires_at <= clock_timestamp() OR l.holder = EXCLUDED.holder \
     RETURNING epoch";

const LEASE_RENEW: &str = "UPDATE leases \
     SET expires_at = clock_timestamp() + $4::bigint * interval '1 millisecond' \
     WHERE name = $1 AND holder = $2 AND epoch = $3";

const LEASE_RELEASE: &str =
    "UPDATE leases SET expires_at = clock_timestamp() WHERE name = $1 AND epoch = $2";

const LEASE_STATE: &str = "SELECT holder, epoch, \
     (extract(epoch FROM expires_at - clock_timestamp()) * 1000)::bigint \
     FROM leases WHERE name = $1";

const LEASE_EPOCH: &str = "SELECT epoch FROM leases WHERE name = $1 FOR SHARE";

/// A fenced batch holds its lease row (`FOR SHARE`) until it commits; a
/// holder frozen in the middle (SIGSTOP, a stalled VM) must not block the
/// takeover for longer than this: PostgreSQL ends the session instead.
const FENCED_IDLE: &str = "SET LOCAL idle_in_transaction_session_timeout = 1000";

/// A candidate waits at most this long for a lease row another
/// transaction holds, then counts the lease as held.
const ACQUIRE_WAIT: &str = "SET LOCAL lock_timeout = 1000";

/// Rows and value bytes per statement of a batch (one transaction however
/// many statements).
const CHUNK_ROWS: usize = 2_000;
const CHUNK_BYTES: usize = 8 << 20;

/// Attempts of a batch that PostgreSQL rolled back for a deadlock with a
/// concurrent batch (nothing of it was applied, so it is safe to rerun).
const BATCH_TRIES: usize = 3;

fn check(ns: &str, key: &str) -> StoreResult<()> {
    if ns.contains('\0') {
        return Err(StoreError::Invalid(
            "a key-value namespace must not contain NUL characters".into(),
        ));
    }
    if key.contains('\0') {
        return Err(StoreError::Invalid(
            "a key-value key must not contain NUL characters".into(),
        ));
    }
    Ok(())
}

fn expiry(ttl: Option<Duration>) -> Option<Millis> {
    ttl.map(|t| now_ms().saturating_add(duration_ms(t)))
}

/// The least string above every string starting with `prefix`, in byte
/// (= code point) order; `None` when there is no bound (empty prefix).
pub(crate) fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last {
            '\u{D7FF}' => Some('\u{E000}'),
            c => char::from_u32(c as u32 + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// What a batch leaves behind: the last write of each `(ns, key)` (`None`
/// = deleted), in key order (so concurrent batches lock rows alike).
type NetEffect = BTreeMap<(String, String), Option<Vec<u8>>>;

/// Validates every key first, so a bad one applies nothing.
fn net_effect(batch: Vec<KvWrite>) -> StoreResult<NetEffect> {
    let mut net = BTreeMap::new();
    for w in batch {
        let (ns, key, value) = match w {
            KvWrite::Put { ns, key, value } => (ns, key, Some(value)),
            KvWrite::Delete { ns, key } => (ns, key, None),
        };
        check(&ns, &key)?;
        net.insert((ns, key), value);
    }
    Ok(net)
}

/// One statement's worth of a batch.
type Chunk<'a> = Vec<(&'a (String, String), &'a Option<Vec<u8>>)>;

/// The net effect cut into statements of at most [`CHUNK_ROWS`] rows and
/// about [`CHUNK_BYTES`] of values.
fn chunks(net: &NetEffect) -> Vec<Chunk<'_>> {
    let mut out = Vec::new();
    let (mut cur, mut bytes) = (Vec::new(), 0);
    for entry in net {
        let len = entry.1.as_ref().map_or(0, Vec::len);
        if !cur.is_empty() && (cur.len() == CHUNK_ROWS || bytes + len > CHUNK_BYTES) {
            out.push(std::mem::take(&mut cur));
            bytes = 0;
        }
        cur.push(entry);
        bytes += len;
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Why one attempt at a batch failed.
enum Failed {
    /// Rolled back by a deadlock or serialization failure: rerun it.
    Retry(tokio_postgres::Error),
    Fatal(StoreError),
}

fn failed(e: tokio_postgres::Error) -> Failed {
    match e.code() {
        Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED => Failed::Retry(e),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE => Failed::Retry(e),
        _ => Failed::Fatal(map_pg(e)),
    }
}

/// A failed `COMMIT`. When the session ended under it (connection lost,
/// or terminated: SQLSTATE class 57) the commit may have reached the disk
/// before the answer was lost, so the outcome is unknown (though still all
/// or nothing); say so rather than claim it failed.
fn commit_failed(e: tokio_postgres::Error) -> Failed {
    let session_ended = match e.code() {
        Some(code) => code.code().starts_with("57"),
        None => true,
    };
    if session_ended {
        let why = std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| s.to_string());
        Failed::Fatal(backend(format!(
            "the connection ended while committing a key-value batch, so whether \
             it was applied (entirely: never in part) is unknown: {why}"
        )))
    } else {
        failed(e)
    }
}

impl PgStore {
    /// Applies the chunks in one transaction; with `fence`, only while
    /// its lease is at its epoch.
    async fn apply_batch(&self, chunks: &[Chunk<'_>], fence: Option<&Lease>) -> Result<(), Failed> {
        let mut c = self.conn().await.map_err(Failed::Fatal)?;
        let tx = c.transaction().await.map_err(failed)?;
        if let Some(lease) = fence {
            tx.batch_execute(FENCED_IDLE).await.map_err(failed)?;
            let row = tx
                .query_opt(LEASE_EPOCH, &[&lease.name])
                .await
                .map_err(failed)?;
            let current: Option<i64> = row.map(|r| r.try_get(0)).transpose().map_err(failed)?;
            if current != Some(lease.epoch) {
                return Err(Failed::Fatal(StoreError::Fenced(format!(
                    "the {} lease moved on from epoch {} (now {}): this holder may no longer write",
                    lease.name,
                    lease.epoch,
                    current.map_or_else(|| "none".into(), |e| e.to_string())
                ))));
            }
        }
        let stmt = tx.prepare_cached(APPLY).await.map_err(failed)?;
        for chunk in chunks {
            let ns: Vec<&str> = chunk.iter().map(|((ns, _), _)| ns.as_str()).collect();
            let keys: Vec<&str> = chunk.iter().map(|((_, k), _)| k.as_str()).collect();
            let values: Vec<Option<&[u8]>> = chunk.iter().map(|(_, v)| v.as_deref()).collect();
            tx.execute(&stmt, &[&ns, &keys, &values])
                .await
                .map_err(failed)?;
        }
        tx.commit().await.map_err(commit_failed)
    }

    async fn write_batch(&self, batch: Vec<KvWrite>, fence: Option<&Lease>) -> StoreResult<()> {
        let net = net_effect(batch)?;
        if net.is_empty() && fence.is_none() {
            return Ok(());
        }
        let chunks = chunks(&net);
        let mut tries = 1;
        loop {
            match self.apply_batch(&chunks, fence).await {
                Ok(()) => return Ok(()),
                Err(Failed::Retry(_)) if tries < BATCH_TRIES => tries += 1,
                Err(Failed::Retry(e)) => return Err(map_pg(e)),
                Err(Failed::Fatal(e)) => return Err(e),
            }
        }
    }
}

#[async_trait]
impl KvStore for PgStore {
    async fn ping(&self) -> StoreResult<()> {
        let c = self.conn().await?;
        c.query_one("SELECT 1", &[]).await.map_err(map_pg)?;
        Ok(())
    }

    async fn get(&self, ns: &str, key: &str) -> StoreResult<Option<Vec<u8>>> {
        check(ns, key)?;
        let c = self.conn().await?;
        let stmt = c.prepare_cached(GET).await.map_err(map_pg)?;
        let row = c
            .query_opt(&stmt, &[&ns, &key, &now_ms()])
            .await
            .map_err(map_pg)?;
        row.map(|r| r.try_get(0).map_err(map_pg)).transpose()
    }

    async fn put(
        &self,
        ns: &str,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> StoreResult<()> {
        check(ns, key)?;
        let c = self.conn().await?;
        let stmt = c.prepare_cached(PUT).await.map_err(map_pg)?;
        c.execute(&stmt, &[&ns, &key, &value, &expiry(ttl)])
            .await
            .map_err(map_pg)?;
        Ok(())
    }

    async fn delete(&self, ns: &str, key: &str) -> StoreResult<bool> {
        check(ns, key)?;
        let c = self.conn().await?;
        let stmt = c.prepare_cached(DELETE).await.map_err(map_pg)?;
        let row = c
            .query_opt(&stmt, &[&ns, &key, &now_ms()])
            .await
            .map_err(map_pg)?;
        match row {
            Some(r) => r.try_get(0).map_err(map_pg),
            None => Ok(false),
        }
    }

    async fn write(&self, batch: Vec<KvWrite>) -> StoreResult<()> {
        self.write_batch(batch, None).await
    }

    async fn write_fenced(&self, lease: &Lease, batch: Vec<KvWrite>) -> StoreResult<()> {
        self.write_batch(batch, Some(lease)).await
    }

    async fn lease_acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> StoreResult<Option<Lease>> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(map_pg)?;
        tx.batch_execute(ACQUIRE_WAIT).await.map_err(map_pg)?;
        let row = match tx
            .query_opt(LEASE_ACQUIRE, &[&name, &holder, &duration_ms(ttl)])
            .await
        {
            Ok(row) => row,
            // The row is locked by the holder's write in flight: held.
            Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => return Ok(None),
            Err(e) => return Err(map_pg(e)),
        };
        tx.commit().await.map_err(map_pg)?;
        row.map(|r| {
            Ok(Lease {
                name: name.into(),
                holder: holder.into(),
                epoch: r.try_get(0).map_err(map_pg)?,
            })
        })
        .transpose()
    }

    async fn lease_renew(&self, lease: &Lease, ttl: Duration) -> StoreResult<bool> {
        let c = self.conn().await?;
        let n = c
            .execute(
                LEASE_RENEW,
                &[&lease.name, &lease.holder, &lease.epoch, &duration_ms(ttl)],
            )
            .await
            .map_err(map_pg)?;
        Ok(n == 1)
    }

    async fn lease_release(&self, lease: &Lease) -> StoreResult<()> {
        let c = self.conn().await?;
        c.execute(LEASE_RELEASE, &[&lease.name, &lease.epoch])
            .await
            .map_err(map_pg)?;
        Ok(())
    }

    async fn lease_state(&self, name: &str) -> StoreResult<Option<LeaseState>> {
        let c = self.conn().await?;
        let row = c.query_opt(LEASE_STATE, &[&name]).await.map_err(map_pg)?;
        row.map(|r| {
            Ok(LeaseState {
                holder: r.try_get(0).map_err(map_pg)?,
                epoch: r.try_get(1).map_err(map_pg)?,
                expires_in_ms: r.try_get(2).map_err(map_pg)?,
            })
        })
        .transpose()
    }

    async fn scan(&self, ns: &str, prefix: &str) -> StoreResult<Vec<(String, Vec<u8>)>> {
        check(ns, prefix)?;
        let c = self.conn().await?;
        let now = now_ms();
        let rows = match prefix_end(prefix) {
            Some(end) => {
                let stmt = c.prepare_cached(SCAN_RANGE).await.map_err(map_pg)?;
                c.query(&stmt, &[&ns, &prefix, &now, &end]).await
            }
            None => {
                let stmt = c.prepare_cached(SCAN_FROM).await.map_err(map_pg)?;
                c.query(&stmt, &[&ns, &prefix, &now]).await
            }
        }
        .map_err(map_pg)?;
        rows.iter()
            .map(|r| Ok((r.try_get(0).map_err(map_pg)?, r.try_get(1).map_err(map_pg)?)))
            .collect()
    }

    async fn purge_expired(&self) -> StoreResult<u64> {
        let c = self.conn().await?;
        let stmt = c.prepare_cached(PURGE).await.map_err(map_pg)?;
        c.execute(&stmt, &[&now_ms()]).await.map_err(map_pg)
    }

    async fn entries(&self, after: Option<(&str, &str)>, limit: u32) -> StoreResult<Vec<KvEntry>> {
        let c = self.conn().await?;
        let limit = i64::from(limit);
        let rows = match after {
            Some((ns, key)) => {
                check(ns, key)?;
                crate::sql::rows(&c, ENTRIES_AFTER, &[&ns, &key, &limit]).await?
            }
            None => crate::sql::rows(&c, ENTRIES, &[&limit]).await?,
        };
        rows.iter()
            .map(|r| {
                Ok(KvEntry {
                    ns: crate::sql::col(r, 0)?,
                    key: crate::sql::col(r, 1)?,
                    value: crate::sql::col(r, 2)?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_bounds_the_prefix_in_byte_order() {
        assert_eq!(prefix_end(""), None);
        assert_eq!(prefix_end("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_end("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(prefix_end("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_end("\u{10FFFF}"), None);
        for key in ["ab", "ab\u{10FFFF}", "abzzz", "ab\u{7f}"] {
            assert!(key >= "ab" && key < prefix_end("ab").unwrap().as_str());
        }
    }

    #[test]
    fn a_batch_keeps_the_last_write_of_each_key_and_refuses_nul() {
        let put = |k: &str, v: &[u8]| KvWrite::Put {
            ns: "n".into(),
            key: k.into(),
            value: v.to_vec(),
        };
        let del = |k: &str| KvWrite::Delete {
            ns: "n".into(),
            key: k.into(),
        };
        let net = net_effect(vec![
            put("b", b"1"),
            del("b"),
            put("a", b"2"),
            del("c"),
            put("c", b"3"),
        ])
        .unwrap();
        let flat: Vec<_> = net
            .iter()
            .map(|((_, k), v)| (k.as_str(), v.as_deref()))
            .collect();
        assert_eq!(
            flat,
            [("a", Some(&b"2"[..])), ("b", None), ("c", Some(&b"3"[..]))]
        );
        assert!(matches!(
            net_effect(vec![put("a", b""), del("x\0y")]),
            Err(StoreError::Invalid(_))
        ));
    }

    #[test]
    fn chunks_respect_rows_and_bytes() {
        let mut net = NetEffect::new();
        for i in 0..(CHUNK_ROWS + 1) {
            net.insert(("n".into(), format!("{i:08}")), Some(vec![0; 1]));
        }
        assert_eq!(
            chunks(&net).iter().map(Vec::len).collect::<Vec<_>>(),
            [CHUNK_ROWS, 1]
        );
        let mut big = NetEffect::new();
        for i in 0..3 {
            big.insert(
                ("n".into(), format!("{i}")),
                Some(vec![0; CHUNK_BYTES / 2 + 1]),
            );
        }
        assert_eq!(chunks(&big).len(), 3);
    }
}
