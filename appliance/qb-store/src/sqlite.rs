//! SQLite adapter for [`MetaStore`] and [`JobQueue`].
//!
//! One writer connection and a few reader connections (WAL lets readers run
//! beside the writer). Every call runs on tokio's blocking pool. A write
//! returns only after its transaction committed with `synchronous=FULL`.
//! Write transactions are `IMMEDIATE`: they take the write lock up front,
//! so a second instance on the same file waits (busy timeout) instead of
//! failing a read-to-write upgrade with "database is locked".
//!
//! The job queue acts for one [`NodeIdentity`]; instances opened on the
//! same file in one process share their wake-ups (a restart opened beside
//! the old instance, as the conformance suite does).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use qb_core::market::Instrument;
use qb_core::model::*;
use qb_core::time::{Millis, now_ms, to_utc};
use qb_core::{JobQueue, MetaStore, NodeIdentity, StoreError, StoreResult};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior, params};
use tokio::sync::Notify;

use crate::migrations;

const READERS: usize = 4;

/// The SQLite metadata store and job queue. Cheap to clone.
#[derive(Clone)]
pub struct Sqlite {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    wakeups: Arc<Wakeups>,
    node: NodeIdentity,
}

/// Per-queue wake-ups of idle claimers.
type Wakeups = Mutex<HashMap<String, Arc<Notify>>>;

/// The wake-ups of every SQLite file open in this process, by path.
fn shared_wakeups(path: &Path) -> Arc<Wakeups> {
    static ALL: std::sync::OnceLock<Mutex<HashMap<PathBuf, Arc<Wakeups>>>> =
        std::sync::OnceLock::new();
    let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    ALL.get_or_init(Default::default)
        .lock()
        .entry(key)
        .or_default()
        .clone()
}

pub(crate) fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

pub(crate) fn map_sql(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(code, msg) = &e
        && code.code == rusqlite::ErrorCode::ConstraintViolation
    {
        return StoreError::Conflict(msg.clone().unwrap_or_else(|| "constraint violated".into()));
    }
    backend(e)
}

fn open_conn(path: &Path, flags: OpenFlags) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

impl Sqlite {
    /// Opens (creating if needed) the database and applies migrations; its
    /// job queue acts as node `local`.
    pub fn open(path: impl AsRef<Path>) -> StoreResult<Self> {
        Self::open_as(path, NodeIdentity::new("local"))
    }

    /// Opens the database with a job queue acting as `node`.
    pub fn open_as(path: impl AsRef<Path>, node: NodeIdentity) -> StoreResult<Self> {
        let path = path.as_ref().to_path_buf();
        let mut writer = open_conn(&path, OpenFlags::default()).map_err(backend)?;
        writer
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(backend)?;
        migrations::run(&mut writer).map_err(backend)?;
        let readers = (0..READERS)
            .map(|_| {
                open_conn(
                    &path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map(Mutex::new)
            })
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(backend)?;
        Ok(Self {
            inner: Arc::new(Inner {
                wakeups: shared_wakeups(&path),
                path,
                writer: Mutex::new(writer),
                readers,
                next_reader: AtomicUsize::new(0),
                node,
            }),
        })
    }

    /// Applies migrations without opening the full store (`quantbox migrate`).
    pub fn migrate(path: impl AsRef<Path>) -> StoreResult<(u32, u32)> {
        let mut conn = open_conn(path.as_ref(), OpenFlags::default()).map_err(backend)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(backend)?;
        migrations::run(&mut conn).map_err(backend)
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Writes a consistent copy of the database to the new file `dest`
    /// with `VACUUM INTO` (one read transaction: writers carry on) and
    /// returns the rows of each table of the copy (`quantbox backup`).
    /// Blocking.
    pub fn backup_into(&self, dest: &Path) -> StoreResult<Vec<(String, u64)>> {
        let conn = open_conn(&self.inner.path, OpenFlags::default()).map_err(backend)?;
        let target = dest
            .to_str()
            .ok_or_else(|| StoreError::Invalid(format!("{} is not UTF-8", dest.display())))?;
        conn.execute("VACUUM INTO ?1", [target]).map_err(backend)?;
        drop(conn);
        Self::table_counts(dest)
    }

    /// Rows per table of the database file at `path`, in name order. Blocking.
    pub fn table_counts(path: &Path) -> StoreResult<Vec<(String, u64)>> {
        let conn = open_conn(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(backend)?;
        let names: Vec<String> = conn
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table' \
                 AND name NOT LIKE 'sqlite_%' ORDER BY name",
            )
            .and_then(|mut st| {
                st.query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()
            })
            .map_err(backend)?;
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            let count: i64 = conn
                .query_row(&format!("SELECT count(*) FROM \"{n}\""), [], |r| r.get(0))
                .map_err(backend)?;
            out.push((n, count as u64));
        }
        Ok(out)
    }

    pub fn node(&self) -> &NodeIdentity {
        &self.inner.node
    }

    pub(crate) async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&mut inner.writer.lock()))
            .await
            .map_err(backend)?
    }

    pub(crate) async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let i = inner.next_reader.fetch_add(1, Ordering::Relaxed) % inner.readers.len();
            f(&inner.readers[i].lock())
        })
        .await
        .map_err(backend)?
    }

    fn wakeup(&self, queue: &str) -> Arc<Notify> {
        self.inner
            .wakeups
            .lock()
            .entry(queue.to_string())
            .or_default()
            .clone()
    }
}

fn opt_time(ms: Option<Millis>) -> Option<DateTime<Utc>> {
    ms.map(to_utc)
}

fn parse_col<T: std::str::FromStr<Err = String>>(idx: usize, s: String) -> rusqlite::Result<T> {
    s.parse().map_err(|e: String| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, e.into())
    })
}

fn json_col(idx: usize, s: String) -> rusqlite::Result<serde_json::Value> {
    serde_json::from_str(&s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, e.into())
    })
}

const USER_COLS: &str = "id, username, role, disabled, created_at, token_version, feed";

fn user_row(r: &Row<'_>) -> rusqlite::Result<User> {
    user_at(r, 0)
}

/// A [`User`] from [`USER_COLS`] starting at column `at`.
fn user_at(r: &Row<'_>, at: usize) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(at)?,
        username: r.get(at + 1)?,
        role: parse_col(at + 2, r.get(at + 2)?)?,
        disabled: r.get(at + 3)?,
        created_at: to_utc(r.get(at + 4)?),
        token_version: r.get(at + 5)?,
        feed: r.get(at + 6)?,
    })
}

const KEY_COLS: &str =
    "k.id, k.name, k.prefix, k.role, u.username, k.created_at, k.last_used_at, k.revoked_at";

fn key_row(r: &Row<'_>) -> rusqlite::Result<ApiKey> {
    Ok(ApiKey {
        id: r.get(0)?,
        name: r.get(1)?,
        prefix: r.get(2)?,
        role: parse_col(3, r.get(3)?)?,
        owner: r.get(4)?,
        created_at: to_utc(r.get(5)?),
        last_used_at: opt_time(r.get(6)?),
        revoked_at: opt_time(r.get(7)?),
    })
}

const JOB_COLS: &str = "id, queue, kind, params, state, progress, message, result, error, attempts, \
     max_attempts, cancel_requested, created_by, schedule_id, created_at, started_at, finished_at, node";

fn job_row(r: &Row<'_>) -> rusqlite::Result<Job> {
    Ok(Job {
        id: r.get(0)?,
        queue: r.get(1)?,
        kind: r.get(2)?,
        params: json_col(3, r.get(3)?)?,
        state: parse_col(4, r.get(4)?)?,
        progress: r.get(5)?,
        message: r.get(6)?,
        result: r
            .get::<_, Option<String>>(7)?
            .map(|s| json_col(7, s))
            .transpose()?,
        error: r.get(8)?,
        attempts: r.get(9)?,
        max_attempts: r.get(10)?,
        cancel_requested: r.get(11)?,
        created_by: r.get(12)?,
        schedule_id: r.get(13)?,
        created_at: to_utc(r.get(14)?),
        started_at: opt_time(r.get(15)?),
        finished_at: opt_time(r.get(16)?),
        node: r.get(17)?,
    })
}

const SCHEDULE_COLS: &str =
    "id, name, cron, job, enabled, created_at, last_run_at, last_job_id, disabled_reason";

fn schedule_row(r: &Row<'_>) -> rusqlite::Result<Schedule> {
    let job: String = r.get(3)?;
    Ok(Schedule {
        id: r.get(0)?,
        name: r.get(1)?,
        cron: r.get(2)?,
        job: serde_json::from_str(&job).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, e.into())
        })?,
        enabled: r.get(4)?,
        created_at: to_utc(r.get(5)?),
        last_run_at: opt_time(r.get(6)?),
        last_job_id: r.get(7)?,
        disabled_reason: r.get(8)?,
        next_run_at: None,
    })
}

fn get_job(conn: &Connection, id: &str) -> StoreResult<Option<Job>> {
    conn.query_row(
        &format!("SELECT {JOB_COLS} FROM jobs WHERE id = ?1"),
        [id],
        job_row,
    )
    .optional()
    .map_err(backend)
}

fn insert_job(conn: &Connection, job: &NewJob) -> StoreResult<Job> {
    let id = uuid::Uuid::now_v7().to_string();
    conn.execute(
        "INSERT INTO jobs (id, queue, kind, params, state, max_attempts, created_by, schedule_id, created_at)
         VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?6, ?7, ?8)",
        params![
            id,
            job.queue,
            job.kind,
            job.params.to_string(),
            job.max_attempts,
            job.created_by,
            job.schedule_id,
            now_ms()
        ],
    )
    .map_err(map_sql)?;
    get_job(conn, &id)?.ok_or_else(|| StoreError::NotFound(format!("job {id}")))
}

/// Records that `node`'s instance is alive at `now`.
fn beat(conn: &Connection, node: &NodeIdentity, now: Millis) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO nodes (instance, node, started_at, heartbeat_at) VALUES (?1, ?2, ?3, ?3)
         ON CONFLICT (instance) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
        params![node.instance, node.node, now],
    )
    .map_err(backend)?;
    Ok(())
}

/// Why a job update by its claimer matched nothing: no such job, or the
/// claim is not (or no longer) this instance's.
fn claim_lost(conn: &Connection, id: &str) -> StoreResult<StoreError> {
    Ok(match get_job(conn, id)? {
        None => StoreError::NotFound(format!("job {id}")),
        Some(job) if job.state == JobState::Running => StoreError::Conflict(format!(
            "job {id} is no longer held by this process (taken back after it was presumed dead; now on node {})",
            job.node.as_deref().unwrap_or("?")
        )),
        Some(job) => StoreError::Conflict(format!(
            "job {id} is {}, not running under this process's claim",
            job.state.as_str()
        )),
    })
}

fn get_user(conn: &Connection, username: &str) -> StoreResult<User> {
    conn.query_row(
        &format!("SELECT {USER_COLS} FROM users WHERE username = ?1"),
        [username],
        user_row,
    )
    .optional()
    .map_err(backend)?
    .ok_or_else(|| StoreError::NotFound(format!("user {username:?}")))
}

fn get_schedule(conn: &Connection, id: &str) -> StoreResult<Option<Schedule>> {
    conn.query_row(
        &format!("SELECT {SCHEDULE_COLS} FROM schedules WHERE id = ?1"),
        [id],
        schedule_row,
    )
    .optional()
    .map_err(backend)
}

fn count(conn: &Connection, sql: &str, args: &[&dyn rusqlite::ToSql]) -> StoreResult<u64> {
    conn.query_row(sql, args, |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
        .map_err(backend)
}

fn collect<T>(
    conn: &Connection,
    sql: &str,
    args: &[&dyn rusqlite::ToSql],
    f: fn(&Row<'_>) -> rusqlite::Result<T>,
) -> StoreResult<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql).map_err(backend)?;
    let rows = stmt.query_map(args, f).map_err(backend)?;
    rows.collect::<rusqlite::Result<Vec<T>>>().map_err(backend)
}

#[async_trait]
impl MetaStore for Sqlite {
    async fn ping(&self) -> StoreResult<()> {
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(backend))
            .await
    }

    async fn schema_version(&self) -> StoreResult<(u32, u32)> {
        self.read(|c| {
            let v: u32 = c
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .map_err(backend)?;
            Ok((v, migrations::latest()))
        })
        .await
    }

    async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        role: Role,
    ) -> StoreResult<User> {
        let (username, hash) = (username.to_string(), password_hash.to_string());
        self.write(move |c| {
            let now = now_ms();
            c.execute(
                "INSERT INTO users (username, password_hash, role, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?4)",
                params![username, hash, role.as_str(), now],
            )
            .map_err(|e| match map_sql(e) {
                StoreError::Conflict(_) => {
                    StoreError::Conflict(format!("user {username:?} already exists"))
                }
                other => other,
            })?;
            get_user(c, &username)
        })
        .await
    }

    async fn user_credentials(&self, username: &str) -> StoreResult<Option<UserCredentials>> {
        let username = username.to_string();
        self.read(move |c| {
            c.query_row(
                &format!("SELECT {USER_COLS}, password_hash FROM users WHERE username = ?1"),
                [username],
                |r| {
                    Ok(UserCredentials {
                        user: user_row(r)?,
                        password_hash: r.get(7)?,
                    })
                },
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn user_by_id(&self, id: i64) -> StoreResult<Option<User>> {
        self.read(move |c| {
            c.query_row(
                &format!("SELECT {USER_COLS} FROM users WHERE id = ?1"),
                [id],
                user_row,
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn list_users(&self, page: PageRequest) -> StoreResult<Page<User>> {
        self.read(move |c| {
            let total = count(c, "SELECT COUNT(*) FROM users", &[])?;
            let items = collect(
                c,
                &format!("SELECT {USER_COLS} FROM users ORDER BY id LIMIT ?1 OFFSET ?2"),
                &[&page.page_size, &(page.offset() as i64)],
                user_row,
            )?;
            Ok(Page::of(items, page, total))
        })
        .await
    }

    async fn update_user(&self, username: &str, update: UserUpdate) -> StoreResult<User> {
        let username = username.to_string();
        self.write(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let user = get_user(&tx, &username)?;
            let now = now_ms();
            if update.role.is_some() || update.disabled.is_some() || update.password_hash.is_some()
            {
                // Sessions end: access tokens by version, refresh tokens here.
                tx.execute(
                    "UPDATE users SET token_version = token_version + 1 WHERE id = ?1",
                    [user.id],
                )
                .map_err(map_sql)?;
                tx.execute(
                    "UPDATE refresh_tokens SET revoked = 1 WHERE user_id = ?1",
                    [user.id],
                )
                .map_err(map_sql)?;
            }
            if let Some(role) = update.role {
                tx.execute(
                    "UPDATE users SET role = ?1, updated_at = ?2 WHERE id = ?3",
                    params![role.as_str(), now, user.id],
                )
                .map_err(map_sql)?;
            }
            if let Some(disabled) = update.disabled {
                tx.execute(
                    "UPDATE users SET disabled = ?1, updated_at = ?2 WHERE id = ?3",
                    params![disabled, now, user.id],
                )
                .map_err(map_sql)?;
            }
            if let Some(feed) = update.feed {
                tx.execute(
                    "UPDATE users SET feed = ?1, updated_at = ?2 WHERE id = ?3",
                    params![feed, now, user.id],
                )
                .map_err(map_sql)?;
            }
            if let Some(hash) = &update.password_hash {
                tx.execute(
                    "UPDATE users SET password_hash = ?1, updated_at = ?2 WHERE id = ?3",
                    params![hash, now, user.id],
                )
                .map_err(map_sql)?;
            }
            let admins = count(
                &tx,
                "SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0",
                &[],
            )?;
            if admins == 0 {
                return Err(StoreError::Conflict(
                    "this change would leave no active admin".into(),
                ));
            }
            let user = get_user(&tx, &username)?;
            tx.commit().map_err(backend)?;
            Ok(user)
        })
        .await
    }

    async fn delete_user(&self, username: &str) -> StoreResult<()> {
        let username = username.to_string();
        self.write(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let n = tx
                .execute("DELETE FROM users WHERE username = ?1", [&username])
                .map_err(map_sql)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("user {username:?}")));
            }
            let admins = count(
                &tx,
                "SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0",
                &[],
            )?;
            if admins == 0 {
                return Err(StoreError::Conflict(
                    "cannot delete the last active admin".into(),
                ));
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn count_admins(&self) -> StoreResult<u64> {
        self.read(|c| count(c, "SELECT COUNT(*) FROM users WHERE role = 'admin'", &[]))
            .await
    }

    async fn create_api_key(
        &self,
        name: &str,
        prefix: &str,
        key_hash: &str,
        role: Role,
        user_id: i64,
    ) -> StoreResult<ApiKey> {
        let (name, prefix, hash) = (name.to_string(), prefix.to_string(), key_hash.to_string());
        self.write(move |c| {
            let id = uuid::Uuid::now_v7().to_string();
            c.execute(
                "INSERT INTO api_keys (id, name, prefix, key_hash, role, user_id, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![id, name, prefix, hash, role.as_str(), user_id, now_ms()],
            )
            .map_err(map_sql)?;
            c.query_row(
                &format!(
                    "SELECT {KEY_COLS} FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.id = ?1"
                ),
                [&id],
                key_row,
            )
            .map_err(backend)
        })
        .await
    }

    async fn api_key_by_hash(&self, key_hash: &str) -> StoreResult<Option<(ApiKey, User)>> {
        let hash = key_hash.to_string();
        let found = self
            .read(move |c| {
                c.query_row(
                    &format!(
                        "SELECT {KEY_COLS}, u.id, u.username, u.role, u.disabled, u.created_at,
                                u.token_version, u.feed
                         FROM api_keys k JOIN users u ON u.id = k.user_id
                         WHERE k.key_hash = ?1 AND k.revoked_at IS NULL"
                    ),
                    [hash],
                    |r| Ok((key_row(r)?, user_at(r, 8)?)),
                )
                .optional()
                .map_err(backend)
            })
            .await?;
        if let Some((key, _)) = &found {
            // Record the use at most once a minute per key to keep writes rare.
            let stale = key
                .last_used_at
                .is_none_or(|t| (Utc::now() - t).num_seconds() >= 60);
            if stale {
                let id = key.id.clone();
                self.write(move |c| {
                    c.execute(
                        "UPDATE api_keys SET last_used_at = ?1 WHERE id = ?2",
                        params![now_ms(), id],
                    )
                    .map_err(backend)?;
                    Ok(())
                })
                .await?;
            }
        }
        Ok(found)
    }

    async fn list_api_keys(
        &self,
        owner: Option<i64>,
        page: PageRequest,
    ) -> StoreResult<Page<ApiKey>> {
        self.read(move |c| {
            let total = count(
                c,
                "SELECT COUNT(*) FROM api_keys WHERE ?1 IS NULL OR user_id = ?1",
                &[&owner],
            )?;
            let items = collect(
                c,
                &format!(
                    "SELECT {KEY_COLS} FROM api_keys k JOIN users u ON u.id = k.user_id
                     WHERE ?1 IS NULL OR k.user_id = ?1 ORDER BY k.created_at DESC, k.id DESC
                     LIMIT ?2 OFFSET ?3"
                ),
                &[&owner, &page.page_size, &(page.offset() as i64)],
                key_row,
            )?;
            Ok(Page::of(items, page, total))
        })
        .await
    }

    async fn revoke_api_key(&self, id: &str, owner: Option<i64>) -> StoreResult<ApiKey> {
        let id = id.to_string();
        self.write(move |c| {
            let n = c
                .execute(
                    "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?1)
                     WHERE id = ?2 AND (?3 IS NULL OR user_id = ?3)",
                    params![now_ms(), id, owner],
                )
                .map_err(backend)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("API key {id}")));
            }
            c.query_row(
                &format!(
                    "SELECT {KEY_COLS} FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.id = ?1"
                ),
                [&id],
                key_row,
            )
            .map_err(backend)
        })
        .await
    }

    async fn insert_refresh_token(&self, token: &RefreshToken) -> StoreResult<()> {
        let t = token.clone();
        self.write(move |c| {
            c.execute(
                "INSERT INTO refresh_tokens (token_hash, user_id, family, expires_at, revoked, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    t.token_hash,
                    t.user_id,
                    t.family,
                    t.expires_at.timestamp_millis(),
                    t.revoked,
                    now_ms()
                ],
            )
            .map_err(map_sql)?;
            Ok(())
        })
        .await
    }

    async fn refresh_token(&self, token_hash: &str) -> StoreResult<Option<RefreshToken>> {
        let hash = token_hash.to_string();
        self.read(move |c| {
            c.query_row(
                "SELECT token_hash, user_id, family, expires_at, revoked, rotated_at
                 FROM refresh_tokens WHERE token_hash = ?1",
                [hash],
                |r| {
                    Ok(RefreshToken {
                        token_hash: r.get(0)?,
                        user_id: r.get(1)?,
                        family: r.get(2)?,
                        expires_at: to_utc(r.get(3)?),
                        revoked: r.get(4)?,
                        rotated_at: r.get::<_, Option<i64>>(5)?.map(to_utc),
                    })
                },
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn revoke_refresh_token(&self, token_hash: &str) -> StoreResult<bool> {
        let hash = token_hash.to_string();
        self.write(move |c| {
            let n = c
                .execute(
                    "UPDATE refresh_tokens SET revoked = 1, rotated_at = ?2
                     WHERE token_hash = ?1 AND revoked = 0",
                    params![hash, now_ms()],
                )
                .map_err(backend)?;
            Ok(n == 1)
        })
        .await
    }

    async fn revoke_refresh_family(&self, family: &str) -> StoreResult<u64> {
        let family = family.to_string();
        self.write(move |c| {
            // A revoked family has no recent rotation (no reuse grace).
            c.execute(
                "UPDATE refresh_tokens SET rotated_at = NULL WHERE family = ?1",
                [&family],
            )
            .map_err(backend)?;
            c.execute(
                "UPDATE refresh_tokens SET revoked = 1 WHERE family = ?1 AND revoked = 0",
                [&family],
            )
            .map(|n| n as u64)
            .map_err(backend)
        })
        .await
    }

    async fn revoke_user_refresh_tokens(&self, user_id: i64) -> StoreResult<u64> {
        self.write(move |c| {
            c.execute(
                "UPDATE refresh_tokens SET rotated_at = NULL WHERE user_id = ?1",
                [user_id],
            )
            .map_err(backend)?;
            c.execute(
                "UPDATE refresh_tokens SET revoked = 1 WHERE user_id = ?1 AND revoked = 0",
                [user_id],
            )
            .map(|n| n as u64)
            .map_err(backend)
        })
        .await
    }

    async fn append_audit(&self, e: NewAuditEntry) -> StoreResult<()> {
        self.write(move |c| {
            c.execute(
                "INSERT INTO audit_log (ts, actor, action, target, result, status, client_ip, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    now_ms(),
                    e.actor,
                    e.action,
                    e.target,
                    e.result,
                    e.status,
                    e.client_ip,
                    e.detail
                ],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn list_audit(
        &self,
        filter: &AuditFilter,
        page: PageRequest,
    ) -> StoreResult<Page<AuditEntry>> {
        let actor = filter.actor.clone();
        let action = filter.action_prefix.as_ref().map(|p| {
            let escaped = p
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("{escaped}%")
        });
        self.read(move |c| {
            let cond = "(?1 IS NULL OR actor = ?1) AND (?2 IS NULL OR action LIKE ?2 ESCAPE '\\')";
            let total = count(
                c,
                &format!("SELECT COUNT(*) FROM audit_log WHERE {cond}"),
                &[&actor, &action],
            )?;
            let items = collect(
                c,
                &format!(
                    "SELECT id, ts, actor, action, target, result, status, client_ip, detail
                     FROM audit_log WHERE {cond} ORDER BY id DESC LIMIT ?3 OFFSET ?4"
                ),
                &[&actor, &action, &page.page_size, &(page.offset() as i64)],
                |r| {
                    Ok(AuditEntry {
                        id: r.get(0)?,
                        ts: to_utc(r.get(1)?),
                        actor: r.get(2)?,
                        action: r.get(3)?,
                        target: r.get(4)?,
                        result: r.get(5)?,
                        status: r.get(6)?,
                        client_ip: r.get(7)?,
                        detail: r.get(8)?,
                    })
                },
            )?;
            Ok(Page::of(items, page, total))
        })
        .await
    }

    async fn purge(
        &self,
        audit_before: DateTime<Utc>,
        tokens_before: DateTime<Utc>,
    ) -> StoreResult<(u64, u64)> {
        let (a, t) = (
            audit_before.timestamp_millis(),
            tokens_before.timestamp_millis(),
        );
        self.write(move |c| {
            let audit = c
                .execute("DELETE FROM audit_log WHERE ts < ?1", [a])
                .map_err(backend)?;
            let tokens = c
                .execute("DELETE FROM refresh_tokens WHERE expires_at < ?1", [t])
                .map_err(backend)?;
            Ok((audit as u64, tokens as u64))
        })
        .await
    }

    async fn checkpoint(&self) -> StoreResult<String> {
        self.write(|c| {
            let (busy, log, done): (i64, i64, i64) = c
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .map_err(backend)?;
            c.execute_batch("PRAGMA optimize").map_err(backend)?;
            Ok(format!(
                "sqlite wal checkpoint: busy={busy} frames={log} checkpointed={done}"
            ))
        })
        .await
    }

    async fn upsert_instrument(&self, instrument: &Instrument) -> StoreResult<Instrument> {
        let i = instrument.clone();
        self.write(move |c| {
            let spec = serde_json::to_string(&i).map_err(backend)?;
            let now = now_ms();
            c.execute(
                "INSERT INTO instruments (symbol, spec, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)
                 ON CONFLICT (symbol) DO UPDATE SET spec = excluded.spec, updated_at = excluded.updated_at",
                params![i.symbol, spec, now],
            )
            .map_err(map_sql)?;
            Ok(i)
        })
        .await
    }

    async fn instrument(&self, symbol: &str) -> StoreResult<Option<Instrument>> {
        let symbol = symbol.to_string();
        self.read(move |c| {
            let spec: Option<String> = c
                .query_row(
                    "SELECT spec FROM instruments WHERE symbol = ?1",
                    [symbol],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            spec.map(|s| serde_json::from_str(&s).map_err(backend))
                .transpose()
        })
        .await
    }

    async fn list_instruments(&self, page: PageRequest) -> StoreResult<Page<Instrument>> {
        self.read(move |c| {
            page_of_specs(
                c,
                "SELECT COUNT(*) FROM instruments",
                "SELECT spec FROM instruments ORDER BY symbol LIMIT ?1 OFFSET ?2",
                page,
            )
        })
        .await
    }

    async fn delete_instrument(&self, symbol: &str) -> StoreResult<()> {
        let symbol = symbol.to_string();
        self.write(move |c| {
            let n = c
                .execute("DELETE FROM instruments WHERE symbol = ?1", [&symbol])
                .map_err(backend)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("instrument {symbol:?}")));
            }
            Ok(())
        })
        .await
    }

    async fn ensure_instruments(&self, symbols: &[String]) -> StoreResult<Vec<String>> {
        let symbols = symbols.to_vec();
        self.write(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let now = now_ms();
            let mut created = Vec::new();
            for s in symbols {
                let spec =
                    serde_json::to_string(&Instrument::with_defaults(&s)).map_err(backend)?;
                let n = tx
                    .execute(
                        "INSERT OR IGNORE INTO instruments (symbol, spec, created_at, updated_at)
                         VALUES (?1, ?2, ?3, ?3)",
                        params![s, spec, now],
                    )
                    .map_err(backend)?;
                if n == 1 {
                    created.push(s);
                }
            }
            tx.commit().map_err(backend)?;
            Ok(created)
        })
        .await
    }

    async fn insert_plugin(&self, info: &PluginInfo, wasm: &[u8]) -> StoreResult<()> {
        let (info, wasm) = (info.clone(), wasm.to_vec());
        self.write(move |c| {
            let spec = serde_json::to_string(&info).map_err(backend)?;
            c.execute(
                "INSERT INTO plugins (id, name, version, spec, uploaded_at, wasm)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    info.id,
                    info.name,
                    info.version,
                    spec,
                    info.uploaded_at.timestamp_millis(),
                    wasm
                ],
            )
            .map_err(|e| match map_sql(e) {
                StoreError::Conflict(_) => StoreError::Conflict(format!(
                    "plugin {} {} is already registered",
                    info.name, info.version
                )),
                other => other,
            })?;
            Ok(())
        })
        .await
    }

    async fn plugin(&self, id: &str) -> StoreResult<Option<PluginInfo>> {
        let id = id.to_string();
        self.read(move |c| plugin_spec(c, "SELECT spec FROM plugins WHERE id = ?1", &[&id]))
            .await
    }

    async fn plugin_by_name(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> StoreResult<Option<PluginInfo>> {
        let (name, version) = (name.to_string(), version.map(str::to_string));
        self.read(move |c| match &version {
            Some(v) => plugin_spec(
                c,
                "SELECT spec FROM plugins WHERE name = ?1 AND version = ?2",
                &[&name, v],
            ),
            None => plugin_spec(
                c,
                "SELECT spec FROM plugins WHERE name = ?1 ORDER BY uploaded_at DESC, rowid DESC LIMIT 1",
                &[&name],
            ),
        })
        .await
    }

    async fn plugin_wasm(&self, id: &str) -> StoreResult<Option<Vec<u8>>> {
        let id = id.to_string();
        self.read(move |c| {
            c.query_row("SELECT wasm FROM plugins WHERE id = ?1", [id], |r| r.get(0))
                .optional()
                .map_err(backend)
        })
        .await
    }

    async fn list_plugins(&self, page: PageRequest) -> StoreResult<Page<PluginInfo>> {
        self.read(move |c| {
            page_of_specs(
                c,
                "SELECT COUNT(*) FROM plugins",
                "SELECT spec FROM plugins ORDER BY uploaded_at DESC, rowid DESC LIMIT ?1 OFFSET ?2",
                page,
            )
        })
        .await
    }

    async fn delete_plugin(&self, id: &str) -> StoreResult<()> {
        let id = id.to_string();
        self.write(move |c| {
            let n = c
                .execute("DELETE FROM plugins WHERE id = ?1", [&id])
                .map_err(backend)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("plugin {id}")));
            }
            Ok(())
        })
        .await
    }

    async fn grant_account(
        &self,
        account: &str,
        user_id: i64,
        granted_by: &str,
    ) -> StoreResult<AccountGrant> {
        let (account, granted_by) = (account.to_string(), granted_by.to_string());
        self.write(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let exists = count(&tx, "SELECT COUNT(*) FROM users WHERE id = ?1", &[&user_id])?;
            if exists == 0 {
                return Err(StoreError::NotFound(format!("user {user_id}")));
            }
            tx.execute(
                "INSERT INTO account_grants (account, user_id, granted_by, granted_at)
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (account, user_id) DO NOTHING",
                params![account, user_id, granted_by, now_ms()],
            )
            .map_err(map_sql)?;
            let grant = grants_where(&tx, Some(&account), Some(user_id))?
                .pop()
                .ok_or_else(|| backend("the grant just written is missing"))?;
            tx.commit().map_err(backend)?;
            Ok(grant)
        })
        .await
    }

    async fn revoke_account(&self, account: &str, user_id: i64) -> StoreResult<()> {
        let account = account.to_string();
        self.write(move |c| {
            let n = c
                .execute(
                    "DELETE FROM account_grants WHERE account = ?1 AND user_id = ?2",
                    params![account, user_id],
                )
                .map_err(map_sql)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!(
                    "grant of account {account} to user {user_id}"
                )));
            }
            Ok(())
        })
        .await
    }

    async fn account_grants(
        &self,
        account: Option<&str>,
        user_id: Option<i64>,
    ) -> StoreResult<Vec<AccountGrant>> {
        let account = account.map(String::from);
        self.read(move |c| grants_where(c, account.as_deref(), user_id))
            .await
    }
}

/// Account grants, optionally of one account and/or one user.
fn grants_where(
    c: &Connection,
    account: Option<&str>,
    user_id: Option<i64>,
) -> StoreResult<Vec<AccountGrant>> {
    collect(
        c,
        "SELECT g.account, g.user_id, u.username, g.granted_by, g.granted_at
         FROM account_grants g JOIN users u ON u.id = g.user_id
         WHERE (?1 IS NULL OR g.account = ?1) AND (?2 IS NULL OR g.user_id = ?2)
         ORDER BY g.account, g.user_id",
        &[&account, &user_id],
        |r| {
            Ok(AccountGrant {
                account: r.get(0)?,
                user_id: r.get(1)?,
                username: r.get(2)?,
                granted_by: r.get(3)?,
                granted_at: to_utc(r.get(4)?),
            })
        },
    )
}

/// One page of records stored as JSON in a `spec` column.
fn page_of_specs<T: serde::de::DeserializeOwned>(
    c: &Connection,
    count_sql: &str,
    list_sql: &str,
    page: PageRequest,
) -> StoreResult<Page<T>> {
    let total = count(c, count_sql, &[])?;
    let specs = collect(
        c,
        list_sql,
        &[&page.page_size, &(page.offset() as i64)],
        |r| r.get::<_, String>(0),
    )?;
    let items = specs
        .iter()
        .map(|s| serde_json::from_str(s).map_err(backend))
        .collect::<StoreResult<Vec<T>>>()?;
    Ok(Page::of(items, page, total))
}

fn plugin_spec(
    c: &Connection,
    sql: &str,
    args: &[&dyn rusqlite::ToSql],
) -> StoreResult<Option<PluginInfo>> {
    let spec: Option<String> = c
        .query_row(sql, args, |r| r.get(0))
        .optional()
        .map_err(backend)?;
    spec.map(|s| serde_json::from_str(&s).map_err(backend))
        .transpose()
}

#[async_trait]
impl JobQueue for Sqlite {
    async fn enqueue(&self, job: NewJob) -> StoreResult<Job> {
        let queue = job.queue.clone();
        let job = self.write(move |c| insert_job(c, &job)).await?;
        self.wakeup(&queue).notify_waiters();
        Ok(job)
    }

    async fn claim(&self, queue: &str, wait: Duration) -> StoreResult<Option<Job>> {
        let notify = self.wakeup(queue);
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let try_claim = || {
            let queue = queue.to_string();
            let node = self.inner.node.clone();
            self.write(move |c| {
                let tx = c
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(backend)?;
                let now = now_ms();
                beat(&tx, &node, now)?;
                let job = tx
                    .query_row(
                        &format!(
                            "UPDATE jobs SET state = 'running', attempts = attempts + 1,
                             started_at = ?2, message = NULL, node = ?3, claimed_by = ?4
                             WHERE seq = (SELECT seq FROM jobs WHERE queue = ?1 AND state = 'queued'
                                          ORDER BY seq LIMIT 1)
                             RETURNING {JOB_COLS}"
                        ),
                        params![queue, now, node.node, node.instance],
                        job_row,
                    )
                    .optional()
                    .map_err(backend)?;
                tx.commit().map_err(backend)?;
                Ok(job)
            })
        };
        if let Some(job) = try_claim().await? {
            return Ok(Some(job));
        }
        if wait.is_zero() {
            return Ok(None);
        }
        let _ = tokio::time::timeout(wait, notified).await;
        try_claim().await
    }

    async fn progress(&self, id: &str, fraction: f64, message: Option<&str>) -> StoreResult<bool> {
        let (id, message) = (id.to_string(), message.map(String::from));
        let instance = self.inner.node.instance.clone();
        let fraction = if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.write(move |c| {
            let cancel = c
                .query_row(
                    "UPDATE jobs SET progress = ?2, message = COALESCE(?3, message)
                     WHERE id = ?1 AND state = 'running' AND claimed_by = ?4
                     RETURNING cancel_requested",
                    params![id, fraction, message, instance],
                    |r| r.get::<_, bool>(0),
                )
                .optional()
                .map_err(backend)?;
            match cancel {
                Some(cancel) => Ok(cancel),
                None => Err(claim_lost(c, &id)?),
            }
        })
        .await
    }

    async fn finish(&self, id: &str, outcome: &JobOutcome) -> StoreResult<Job> {
        let id = id.to_string();
        let outcome = outcome.clone();
        let instance = self.inner.node.instance.clone();
        self.write(move |c| {
            let (state, result, error) = match &outcome {
                JobOutcome::Succeeded(v) => ("succeeded", Some(v.to_string()), None),
                JobOutcome::Failed(e, detail) => (
                    "failed",
                    detail.as_ref().map(|v| v.to_string()),
                    Some(e.clone()),
                ),
                JobOutcome::Cancelled => ("cancelled", None, Some("cancelled on request".into())),
            };
            let n = c
                .execute(
                    "UPDATE jobs SET state = ?2, result = ?3, error = ?4, finished_at = ?5,
                     progress = CASE WHEN ?2 = 'succeeded' THEN 1.0 ELSE progress END
                     WHERE id = ?1 AND state = 'running' AND claimed_by = ?6",
                    params![id, state, result, error, now_ms(), instance],
                )
                .map_err(backend)?;
            if n == 0 {
                return Err(claim_lost(c, &id)?);
            }
            get_job(c, &id)?.ok_or_else(|| StoreError::NotFound(format!("job {id}")))
        })
        .await
    }

    async fn release(&self, id: &str, reason: &str) -> StoreResult<()> {
        let (id, reason) = (id.to_string(), reason.to_string());
        let instance = self.inner.node.instance.clone();
        let queue = self
            .write(move |c| {
                let queue = c
                    .query_row(
                        "UPDATE jobs SET state = 'queued', attempts = MAX(attempts - 1, 0),
                         started_at = NULL, message = ?2, claimed_by = NULL
                         WHERE id = ?1 AND state = 'running' AND claimed_by = ?3 RETURNING queue",
                        params![id, reason, instance],
                        |r| r.get::<_, String>(0),
                    )
                    .optional()
                    .map_err(backend)?;
                match queue {
                    Some(q) => Ok(q),
                    None => Err(claim_lost(c, &id)?),
                }
            })
            .await?;
        self.wakeup(&queue).notify_waiters();
        Ok(())
    }

    async fn heartbeat(&self) -> StoreResult<()> {
        let node = self.inner.node.clone();
        self.write(move |c| beat(c, &node, now_ms())).await
    }

    async fn request_cancel(&self, id: &str) -> StoreResult<Job> {
        let id = id.to_string();
        self.write(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let job =
                get_job(&tx, &id)?.ok_or_else(|| StoreError::NotFound(format!("job {id}")))?;
            match job.state {
                JobState::Queued => {
                    tx.execute(
                        "UPDATE jobs SET state = 'cancelled', cancel_requested = 1,
                         finished_at = ?2, error = 'cancelled before it started' WHERE id = ?1",
                        params![id, now_ms()],
                    )
                    .map_err(backend)?;
                }
                JobState::Running => {
                    tx.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?1", [&id])
                        .map_err(backend)?;
                }
                s => {
                    return Err(StoreError::Conflict(format!(
                        "job {id} already {}",
                        s.as_str()
                    )));
                }
            }
            let job =
                get_job(&tx, &id)?.ok_or_else(|| StoreError::NotFound(format!("job {id}")))?;
            tx.commit().map_err(backend)?;
            Ok(job)
        })
        .await
    }

    async fn get(&self, id: &str) -> StoreResult<Option<Job>> {
        let id = id.to_string();
        self.read(move |c| get_job(c, &id)).await
    }

    async fn list(&self, filter: &JobFilter, page: PageRequest) -> StoreResult<Page<Job>> {
        let f = filter.clone();
        self.read(move |c| {
            let state = f.state.map(|s| s.as_str());
            let cond = "(?1 IS NULL OR queue = ?1) AND (?2 IS NULL OR state = ?2) \
                        AND (?3 IS NULL OR kind = ?3) \
                        AND (?4 IS NULL OR created_by = ?4 OR substr(created_by, 1, length(?4) + 1) = ?4 || '/')";
            let total = count(
                c,
                &format!("SELECT COUNT(*) FROM jobs WHERE {cond}"),
                &[&f.queue, &state, &f.kind, &f.created_by],
            )?;
            let items = collect(
                c,
                &format!(
                    "SELECT {JOB_COLS} FROM jobs WHERE {cond} ORDER BY seq DESC LIMIT ?5 OFFSET ?6"
                ),
                &[
                    &f.queue,
                    &state,
                    &f.kind,
                    &f.created_by,
                    &page.page_size,
                    &(page.offset() as i64),
                ],
                job_row,
            )?;
            Ok(Page::of(items, page, total))
        })
        .await
    }

    async fn stats(&self, queues: &[&str]) -> StoreResult<Vec<QueueStats>> {
        let queues: Vec<String> = queues.iter().map(|s| s.to_string()).collect();
        self.read(move |c| {
            let rows = collect(
                c,
                "SELECT queue, state, COUNT(*) FROM jobs WHERE state IN ('queued', 'running')
                 GROUP BY queue, state",
                &[],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                },
            )?;
            let mut out: Vec<QueueStats> = queues
                .iter()
                .map(|q| QueueStats {
                    queue: q.clone(),
                    ..Default::default()
                })
                .collect();
            for (queue, state, n) in rows {
                let i = match out.iter().position(|s| s.queue == queue) {
                    Some(i) => i,
                    None => {
                        out.push(QueueStats {
                            queue,
                            ..Default::default()
                        });
                        out.len() - 1
                    }
                };
                if state == "queued" {
                    out[i].queued = n as u64;
                } else {
                    out[i].running = n as u64;
                }
            }
            Ok(out)
        })
        .await
    }

    async fn recover(&self, stale_after: Duration) -> StoreResult<Recovery> {
        let node = self.inner.node.clone();
        let (recovery, queues) = self
            .write(move |c| {
                let tx = c
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(backend)?;
                let now = now_ms();
                let cut = now - stale_after.as_millis() as i64;
                // Running jobs whose claimer is not this instance and is dead:
                // an earlier instance of this node, silent past the bound, or
                // unknown.
                let dead = collect(
                    &tx,
                    "SELECT j.id, j.attempts, j.max_attempts, j.queue FROM jobs j
                     LEFT JOIN nodes n ON n.instance = j.claimed_by
                     WHERE j.state = 'running' AND j.claimed_by IS NOT ?1
                       AND (n.instance IS NULL OR n.node = ?2 OR n.heartbeat_at < ?3)
                     ORDER BY j.seq",
                    &[&node.instance, &node.node, &cut],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, u32>(1)?,
                            r.get::<_, u32>(2)?,
                            r.get::<_, String>(3)?,
                        ))
                    },
                )?;
                let mut out = Recovery::default();
                let mut queues = Vec::new();
                for (id, attempts, max, queue) in dead {
                    if attempts < max {
                        tx.execute(
                            "UPDATE jobs SET state = 'queued', started_at = NULL, claimed_by = NULL,
                             message = ?2 WHERE id = ?1",
                            params![id, requeue_message(attempts, max)],
                        )
                        .map_err(backend)?;
                        out.requeued.push(id);
                        queues.push(queue);
                    } else {
                        tx.execute(
                            "UPDATE jobs SET state = 'failed', finished_at = ?2, claimed_by = NULL,
                             error = ?3 WHERE id = ?1",
                            params![id, now, interrupted_message(attempts, max)],
                        )
                        .map_err(backend)?;
                        out.failed.push(id);
                    }
                }
                // Instances silent for ten bounds are forgotten.
                tx.execute(
                    "DELETE FROM nodes WHERE heartbeat_at < ?1 AND instance <> ?2",
                    params![now - 10 * stale_after.as_millis() as i64, node.instance],
                )
                .map_err(backend)?;
                tx.execute(
                    "DELETE FROM nodes WHERE node = ?1 AND instance <> ?2",
                    params![node.node, node.instance],
                )
                .map_err(backend)?;
                tx.commit().map_err(backend)?;
                Ok((out, queues))
            })
            .await?;
        for q in queues {
            self.wakeup(&q).notify_waiters();
        }
        Ok(recovery)
    }

    async fn purge_finished(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let before = before.timestamp_millis();
        self.write(move |c| {
            let n = c
                .execute(
                    "DELETE FROM jobs WHERE state IN ('succeeded', 'failed', 'cancelled')
                     AND finished_at < ?1",
                    [before],
                )
                .map_err(backend)?;
            c.execute("DELETE FROM schedule_runs WHERE due_at < ?1", [before])
                .map_err(backend)?;
            Ok(n as u64)
        })
        .await
    }

    async fn create_schedule(&self, s: NewSchedule) -> StoreResult<Schedule> {
        self.write(move |c| {
            let id = uuid::Uuid::now_v7().to_string();
            let job = serde_json::to_string(&s.job).map_err(backend)?;
            c.execute(
                "INSERT INTO schedules (id, name, cron, job, enabled, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![id, s.name, s.cron, job, s.enabled, now_ms()],
            )
            .map_err(|e| match map_sql(e) {
                StoreError::Conflict(_) => {
                    StoreError::Conflict(format!("a schedule named {:?} already exists", s.name))
                }
                other => other,
            })?;
            get_schedule(c, &id)?.ok_or_else(|| StoreError::NotFound(format!("schedule {id}")))
        })
        .await
    }

    async fn list_schedules(&self, page: PageRequest) -> StoreResult<Page<Schedule>> {
        self.read(move |c| {
            let total = count(c, "SELECT COUNT(*) FROM schedules", &[])?;
            let items = collect(
                c,
                &format!("SELECT {SCHEDULE_COLS} FROM schedules ORDER BY name LIMIT ?1 OFFSET ?2"),
                &[&page.page_size, &(page.offset() as i64)],
                schedule_row,
            )?;
            Ok(Page::of(items, page, total))
        })
        .await
    }

    async fn all_schedules(&self) -> StoreResult<Vec<Schedule>> {
        self.read(|c| {
            collect(
                c,
                &format!("SELECT {SCHEDULE_COLS} FROM schedules ORDER BY name"),
                &[],
                schedule_row,
            )
        })
        .await
    }

    async fn get_schedule(&self, id: &str) -> StoreResult<Option<Schedule>> {
        let id = id.to_string();
        self.read(move |c| get_schedule(c, &id)).await
    }

    async fn update_schedule(&self, id: &str, u: ScheduleUpdate) -> StoreResult<Schedule> {
        let id = id.to_string();
        self.write(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            if get_schedule(&tx, &id)?.is_none() {
                return Err(StoreError::NotFound(format!("schedule {id}")));
            }
            if let Some(cron) = &u.cron {
                tx.execute(
                    "UPDATE schedules SET cron = ?2 WHERE id = ?1",
                    params![id, cron],
                )
                .map_err(backend)?;
            }
            if let Some(job) = &u.job {
                let job = serde_json::to_string(job).map_err(backend)?;
                tx.execute(
                    "UPDATE schedules SET job = ?2 WHERE id = ?1",
                    params![id, job],
                )
                .map_err(backend)?;
            }
            if let Some(enabled) = u.enabled {
                tx.execute(
                    "UPDATE schedules SET enabled = ?2,
                     disabled_reason = CASE WHEN ?2 THEN NULL ELSE disabled_reason END
                     WHERE id = ?1",
                    params![id, enabled],
                )
                .map_err(backend)?;
            }
            if let Some(reason) = &u.disabled_reason {
                tx.execute(
                    "UPDATE schedules SET disabled_reason = ?2 WHERE id = ?1",
                    params![id, reason],
                )
                .map_err(backend)?;
            }
            let s = get_schedule(&tx, &id)?
                .ok_or_else(|| StoreError::NotFound(format!("schedule {id}")))?;
            tx.commit().map_err(backend)?;
            Ok(s)
        })
        .await
    }

    async fn delete_schedule(&self, id: &str) -> StoreResult<()> {
        let id = id.to_string();
        self.write(move |c| {
            let n = c
                .execute("DELETE FROM schedules WHERE id = ?1", [&id])
                .map_err(backend)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("schedule {id}")));
            }
            Ok(())
        })
        .await
    }

    async fn fire_schedule(
        &self,
        schedule_id: &str,
        due_at: DateTime<Utc>,
        job: NewJob,
    ) -> StoreResult<Option<Job>> {
        let sid = schedule_id.to_string();
        let queue = job.queue.clone();
        let due = due_at.timestamp_millis();
        let fired = self
            .write(move |c| {
                let tx = c
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(backend)?;
                let exists: bool = tx
                    .query_row(
                        "SELECT 1 FROM schedule_runs WHERE schedule_id = ?1 AND due_at = ?2",
                        params![sid, due],
                        |_| Ok(true),
                    )
                    .optional()
                    .map_err(backend)?
                    .unwrap_or(false);
                if exists {
                    return Ok(None);
                }
                let job = insert_job(&tx, &job)?;
                tx.execute(
                    "INSERT INTO schedule_runs (schedule_id, due_at, job_id) VALUES (?1, ?2, ?3)",
                    params![sid, due, job.id],
                )
                .map_err(map_sql)?;
                tx.execute(
                    "UPDATE schedules SET last_run_at = ?2, last_job_id = ?3 WHERE id = ?1",
                    params![sid, due, job.id],
                )
                .map_err(backend)?;
                tx.commit().map_err(backend)?;
                Ok(Some(job))
            })
            .await?;
        if fired.is_some() {
            self.wakeup(&queue).notify_waiters();
        }
        Ok(fired)
    }
}
