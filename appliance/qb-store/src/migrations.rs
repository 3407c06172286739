//! Versioned, idempotent schema migrations for the SQLite metadata store.
//! The applied version is `PRAGMA user_version`; each step runs in its own
//! transaction, so a crash mid-way leaves the previous version intact.

use rusqlite::{Connection, OptionalExtension};

/// Steps in order; step `i` upgrades version `i` to `i + 1`. Never edit a
/// released step: append a new one.
pub const STEPS: &[&str] = &[
    // 1: users, API keys, refresh tokens, audit log, jobs, schedules.
    r#"
    CREATE TABLE users (
        id            INTEGER PRIMARY KEY,
        username      TEXT NOT NULL UNIQUE COLLATE NOCASE,
        password_hash TEXT NOT NULL,
        role          TEXT NOT NULL CHECK (role IN ('admin', 'trader', 'viewer')),
        disabled      INTEGER NOT NULL DEFAULT 0,
        failed_logins INTEGER NOT NULL DEFAULT 0,
        locked_until  INTEGER,
        created_at    INTEGER NOT NULL,
        updated_at    INTEGER NOT NULL
    );
    CREATE TABLE api_keys (
        id           TEXT PRIMARY KEY,
        name         TEXT NOT NULL,
        prefix       TEXT NOT NULL,
        key_hash     TEXT NOT NULL UNIQUE,
        role         TEXT NOT NULL,
        user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        created_at   INTEGER NOT NULL,
        last_used_at INTEGER,
        revoked_at   INTEGER
    );
    CREATE TABLE refresh_tokens (
        token_hash TEXT PRIMARY KEY,
        user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        family     TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        revoked    INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX refresh_tokens_family ON refresh_tokens(family);
    CREATE TABLE audit_log (
        id        INTEGER PRIMARY KEY,
        ts        INTEGER NOT NULL,
        actor     TEXT NOT NULL,
        action    TEXT NOT NULL,
        target    TEXT,
        result    TEXT NOT NULL,
        status    INTEGER,
        client_ip TEXT,
        detail    TEXT
    );
    CREATE INDEX audit_log_ts ON audit_log(ts);
    CREATE TABLE jobs (
        seq              INTEGER PRIMARY KEY AUTOINCREMENT,
        id               TEXT NOT NULL UNIQUE,
        queue            TEXT NOT NULL,
        kind             TEXT NOT NULL,
        params           TEXT NOT NULL,
        state            TEXT NOT NULL,
        progress         REAL NOT NULL DEFAULT 0,
        message          TEXT,
        result           TEXT,
        error            TEXT,
        attempts         INTEGER NOT NULL DEFAULT 0,
        max_attempts     INTEGER NOT NULL,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        created_by       TEXT,
        schedule_id      TEXT,
        created_at       INTEGER NOT NULL,
        started_at       INTEGER,
        finished_at      INTEGER
    );
    CREATE INDEX jobs_queue_state ON jobs(queue, state, seq);
    CREATE INDEX jobs_state ON jobs(state);
    CREATE TABLE schedules (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        cron        TEXT NOT NULL,
        job         TEXT NOT NULL,
        enabled     INTEGER NOT NULL,
        created_at  INTEGER NOT NULL,
        last_run_at INTEGER,
        last_job_id TEXT
    );
    CREATE TABLE schedule_runs (
        schedule_id TEXT NOT NULL,
        due_at      INTEGER NOT NULL,
        job_id      TEXT NOT NULL,
        PRIMARY KEY (schedule_id, due_at)
    );
    "#,
    // 2: the instrument registry.
    r#"
    CREATE TABLE instruments (
        symbol     TEXT PRIMARY KEY,
        spec       TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    "#,
    // 3: the strategy plugin registry (component bytes kept with the
    // metadata, so every process of a cluster reads them from one place).
    r#"
    CREATE TABLE plugins (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        version     TEXT NOT NULL,
        spec        TEXT NOT NULL,
        uploaded_at INTEGER NOT NULL,
        wasm        BLOB NOT NULL,
        UNIQUE (name, version)
    );
    CREATE INDEX plugins_by_time ON plugins (uploaded_at DESC, id);
    "#,
    // 4: when a refresh token was spent by rotation (the reuse grace).
    r#"
    ALTER TABLE refresh_tokens ADD COLUMN rotated_at INTEGER;
    "#,
    // 5: who holds a running job (node name and process instance) and the
    // instances' heartbeats, so only dead instances' jobs are taken back.
    r#"
    ALTER TABLE jobs ADD COLUMN node TEXT;
    ALTER TABLE jobs ADD COLUMN claimed_by TEXT;
    CREATE TABLE nodes (
        instance     TEXT PRIMARY KEY,
        node         TEXT NOT NULL,
        started_at   INTEGER NOT NULL,
        heartbeat_at INTEGER NOT NULL
    );
    "#,
    // 6: user ids are never reused (AUTOINCREMENT: without it SQLite hands a
    // deleted highest id to the next user, and that user's tokens to it);
    // a token version per user that ends its sessions on change. The table
    // is rebuilt (SQLite's procedure: foreign keys off around the step,
    // checked before it commits; see `run`).
    r#"
    CREATE TABLE users_new (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        username      TEXT NOT NULL UNIQUE COLLATE NOCASE,
        password_hash TEXT NOT NULL,
        role          TEXT NOT NULL CHECK (role IN ('admin', 'trader', 'viewer')),
        disabled      INTEGER NOT NULL DEFAULT 0,
        failed_logins INTEGER NOT NULL DEFAULT 0,
        locked_until  INTEGER,
        created_at    INTEGER NOT NULL,
        updated_at    INTEGER NOT NULL,
        token_version INTEGER NOT NULL DEFAULT 0
    );
    INSERT INTO users_new (id, username, password_hash, role, disabled, failed_logins,
                           locked_until, created_at, updated_at)
        SELECT id, username, password_hash, role, disabled, failed_logins, locked_until,
               created_at, updated_at FROM users;
    DROP TABLE users;
    ALTER TABLE users_new RENAME TO users;
    "#,
    // 7: paper accounts granted to users (gone with the user), and the feed
    // permission (who may post live ticks, which drive paper fills).
    r#"
    CREATE TABLE account_grants (
        account    TEXT NOT NULL,
        user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        granted_by TEXT NOT NULL,
        granted_at INTEGER NOT NULL,
        PRIMARY KEY (account, user_id)
    );
    CREATE INDEX account_grants_user ON account_grants(user_id);
    ALTER TABLE users ADD COLUMN feed INTEGER NOT NULL DEFAULT 0;
    "#,
    // 8: failed sign-ins are counted per (name, client address) in the hot
    // state now, not per user (which let anyone lock the owner out).
    r#"
    ALTER TABLE users DROP COLUMN failed_logins;
    ALTER TABLE users DROP COLUMN locked_until;
    "#,
    // 9: why the scheduler turned a schedule off.
    r#"
    ALTER TABLE schedules ADD COLUMN disabled_reason TEXT;
    "#,
];

/// The schema version this build expects.
pub fn latest() -> u32 {
    STEPS.len() as u32
}

/// Applies the missing steps; returns (version before, version after).
///
/// Foreign keys are off while steps run (a step that rebuilds a table
/// would otherwise cascade its drop into the tables referring to it) and
/// checked before each step commits: a step that breaks one is rolled back.
pub fn run(conn: &mut Connection) -> rusqlite::Result<(u32, u32)> {
    let before: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let fk: bool = conn.pragma_query_value(None, "foreign_keys", |r| r.get(0))?;
    conn.pragma_update(None, "foreign_keys", false)?;
    let result = (|| {
        for (i, sql) in STEPS.iter().enumerate().skip(before as usize) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            let broken: Option<String> = tx
                .query_row("PRAGMA foreign_key_check", [], |r| r.get(0))
                .optional()?;
            if let Some(table) = broken {
                return Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY),
                    Some(format!(
                        "migration {} breaks a foreign key of {table}",
                        i + 1
                    )),
                ));
            }
            tx.pragma_update(None, "user_version", (i + 1) as u32)?;
            tx.commit()?;
        }
        Ok(())
    })();
    conn.pragma_update(None, "foreign_keys", fk)?;
    result?;
    let after: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    Ok((before, after))
}
