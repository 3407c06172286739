//! Versioned schema migrations for the PostgreSQL stores. The applied
//! version is the one row of `qb_schema`; every step runs in its own
//! transaction, and the whole run holds a session advisory lock, so nodes
//! starting at once on an empty database migrate it exactly once.

use qb_core::{StoreError, StoreResult};
use tokio_postgres::Client;

/// Key of the advisory lock held while migrating (any fixed bigint).
const MIGRATION_LOCK: i64 = 0x7162_6d69_6772_0001;

/// Columns of `ticks`: `ts` in nanoseconds UTC, numbers as binary64 (as
/// in the DuckDB store), `(symbol, ts, seq)` the identity.
macro_rules! tick_columns {
    () => {
        r#"
        symbol        TEXT COLLATE "C" NOT NULL,
        ts            BIGINT NOT NULL,
        seq           INTEGER NOT NULL,
        price         DOUBLE PRECISION NOT NULL,
        size          DOUBLE PRECISION NOT NULL,
        volume        DOUBLE PRECISION,
        turnover      DOUBLE PRECISION,
        open_interest DOUBLE PRECISION,
        bid           DOUBLE PRECISION,
        bid_size      DOUBLE PRECISION,
        ask           DOUBLE PRECISION,
        ask_size      DOUBLE PRECISION,
        PRIMARY KEY (symbol, ts, seq)
        "#
    };
}

/// Columns of `tick_bars` (imported bars), `(symbol, interval_s, ts)` unique.
macro_rules! bar_columns {
    () => {
        r#"
        symbol        TEXT COLLATE "C" NOT NULL,
        interval_s    INTEGER NOT NULL,
        ts            BIGINT NOT NULL,
        open          DOUBLE PRECISION NOT NULL,
        high          DOUBLE PRECISION NOT NULL,
        low           DOUBLE PRECISION NOT NULL,
        close         DOUBLE PRECISION NOT NULL,
        volume        DOUBLE PRECISION NOT NULL,
        turnover      DOUBLE PRECISION,
        open_interest DOUBLE PRECISION,
        PRIMARY KEY (symbol, interval_s, ts)
        "#
    };
}

/// Steps in order; step `i` upgrades version `i` to `i + 1`. Never edit a
/// released step: append a new one. Times are integer milliseconds UTC
/// (as in the SQLite store); ids never reused (identity columns).
pub const STEPS: &[&str] = &[
    // 1: users, API keys, refresh tokens, audit log, jobs, schedules, nodes,
    // instruments, plugins, hot state.
    r#"
    CREATE TABLE users (
        id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        username      TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        role          TEXT NOT NULL CHECK (role IN ('admin', 'trader', 'viewer')),
        disabled      BOOLEAN NOT NULL DEFAULT FALSE,
        failed_logins INTEGER NOT NULL DEFAULT 0,
        locked_until  BIGINT,
        created_at    BIGINT NOT NULL,
        updated_at    BIGINT NOT NULL
    );
    CREATE UNIQUE INDEX users_username ON users (lower(username));
    CREATE TABLE api_keys (
        id           TEXT PRIMARY KEY,
        name         TEXT NOT NULL,
        prefix       TEXT NOT NULL,
        key_hash     TEXT NOT NULL UNIQUE,
        role         TEXT NOT NULL,
        user_id      BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        created_at   BIGINT NOT NULL,
        last_used_at BIGINT,
        revoked_at   BIGINT
    );
    CREATE INDEX api_keys_user ON api_keys (user_id);
    CREATE TABLE refresh_tokens (
        token_hash TEXT PRIMARY KEY,
        user_id    BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        family     TEXT NOT NULL,
        expires_at BIGINT NOT NULL,
        revoked    BOOLEAN NOT NULL DEFAULT FALSE,
        created_at BIGINT NOT NULL,
        rotated_at BIGINT
    );
    CREATE INDEX refresh_tokens_family ON refresh_tokens (family);
    CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
    CREATE TABLE audit_log (
        id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        ts        BIGINT NOT NULL,
        actor     TEXT NOT NULL,
        action    TEXT NOT NULL,
        target    TEXT,
        result    TEXT NOT NULL,
        status    INTEGER,
        client_ip TEXT,
        detail    TEXT
    );
    CREATE INDEX audit_log_ts ON audit_log (ts);
    CREATE TABLE jobs (
        seq              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id               TEXT NOT NULL UNIQUE,
        queue            TEXT NOT NULL,
        kind             TEXT NOT NULL,
        params           TEXT NOT NULL,
        state            TEXT NOT NULL,
        progress         DOUBLE PRECISION NOT NULL DEFAULT 0,
        message          TEXT,
        result           TEXT,
        error            TEXT,
        attempts         INTEGER NOT NULL DEFAULT 0,
        max_attempts     INTEGER NOT NULL,
        cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
        created_by       TEXT,
        schedule_id      TEXT,
        node             TEXT,
        claimed_by       TEXT,
        created_at       BIGINT NOT NULL,
        started_at       BIGINT,
        finished_at      BIGINT
    );
    CREATE INDEX jobs_queue_state ON jobs (queue, state, seq);
    CREATE INDEX jobs_state ON jobs (state);
    CREATE TABLE schedules (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        cron        TEXT NOT NULL,
        job         TEXT NOT NULL,
        enabled     BOOLEAN NOT NULL,
        created_at  BIGINT NOT NULL,
        last_run_at BIGINT,
        last_job_id TEXT
    );
    CREATE TABLE schedule_runs (
        schedule_id TEXT NOT NULL,
        due_at      BIGINT NOT NULL,
        job_id      TEXT NOT NULL,
        PRIMARY KEY (schedule_id, due_at)
    );
    CREATE TABLE nodes (
        instance     TEXT PRIMARY KEY,
        node         TEXT NOT NULL,
        started_at   BIGINT NOT NULL,
        heartbeat_at BIGINT NOT NULL
    );
    CREATE TABLE instruments (
        symbol     TEXT PRIMARY KEY,
        spec       TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    );
    CREATE TABLE plugins (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        version     TEXT NOT NULL,
        spec        TEXT NOT NULL,
        uploaded_at BIGINT NOT NULL,
        wasm        BYTEA NOT NULL,
        UNIQUE (name, version)
    );
    CREATE INDEX plugins_by_time ON plugins (uploaded_at DESC, id);
    CREATE TABLE kv (
        ns         TEXT COLLATE "C" NOT NULL,
        key        TEXT COLLATE "C" NOT NULL,
        value      BYTEA NOT NULL,
        expires_at BIGINT,
        PRIMARY KEY (ns, key)
    );
    CREATE INDEX kv_expires ON kv (expires_at) WHERE expires_at IS NOT NULL;
    "#,
    // 2: the tick store (`ticks.rs`): ticks, imported bars, ticks per
    // symbol and day (coverage without a scan), the layout chosen. With the
    // timescaledb extension usable: hypertables with a compression policy;
    // otherwise (or when creating the extension fails) tables partitioned
    // by range on `ts`, partitions created on demand by the store.
    concat!(
        r#"
    CREATE TABLE tick_layout (
        one    BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
        layout TEXT NOT NULL CHECK (layout IN ('partitions', 'hypertable')),
        reason TEXT NOT NULL
    );
    CREATE TABLE tick_days (
        symbol   TEXT COLLATE "C" NOT NULL,
        day      BIGINT NOT NULL,
        ticks    BIGINT NOT NULL,
        first_ts BIGINT NOT NULL,
        last_ts  BIGINT NOT NULL,
        PRIMARY KEY (symbol, day)
    );
    DO $qb$
    DECLARE
        why TEXT := 'timescaledb is not installed';
    BEGIN
        IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') THEN
            BEGIN
                CREATE EXTENSION IF NOT EXISTS timescaledb;
                CREATE TABLE ticks ("#,
        tick_columns!(),
        r#");
                CREATE TABLE tick_bars ("#,
        bar_columns!(),
        r#");
                PERFORM create_hypertable('ticks', 'ts', chunk_time_interval => 86400000000000);
                PERFORM create_hypertable('tick_bars', 'ts', chunk_time_interval => 2592000000000000);
                CREATE FUNCTION qb_now_ns() RETURNS BIGINT LANGUAGE SQL STABLE
                    AS 'SELECT (extract(epoch FROM now()) * 1000000000)::BIGINT';
                PERFORM set_integer_now_func('ticks', 'qb_now_ns');
                ALTER TABLE ticks SET (timescaledb.compress,
                    timescaledb.compress_segmentby = 'symbol',
                    timescaledb.compress_orderby = 'ts, seq');
                PERFORM add_compression_policy('ticks', compress_after => 604800000000000::BIGINT);
                INSERT INTO tick_layout (layout, reason)
                    SELECT 'hypertable', 'timescaledb ' || extversion FROM pg_extension
                    WHERE extname = 'timescaledb';
                RETURN;
            EXCEPTION WHEN OTHERS THEN
                why := 'timescaledb is available but could not be used: ' || SQLERRM;
            END;
        END IF;
        CREATE TABLE ticks ("#,
        tick_columns!(),
        r#") PARTITION BY RANGE (ts);
        CREATE TABLE tick_bars ("#,
        bar_columns!(),
        r#") PARTITION BY RANGE (ts);
        INSERT INTO tick_layout (layout, reason) VALUES ('partitions', why);
    END
    $qb$;
    "#
    ),
    // 3: a token version per user that ends its sessions on a change of
    // role, status or password (user ids are an identity column: never
    // reused).
    r#"
    ALTER TABLE users ADD COLUMN token_version BIGINT NOT NULL DEFAULT 0;
    "#,
    // 4: leases (the trading desk's): one holder at a time, an epoch that
    // fences every write made under it, expiry on the server's clock.
    r#"
    CREATE TABLE leases (
        name       TEXT PRIMARY KEY,
        holder     TEXT NOT NULL,
        epoch      BIGINT NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL
    );
    "#,
    // 5: blobs (uploads, backtest outputs) any node reads: a header row and
    // chunks of at most 1 MiB.
    r#"
    CREATE TABLE blobs (
        key        TEXT COLLATE "C" PRIMARY KEY,
        size       BIGINT NOT NULL,
        created_ms BIGINT NOT NULL
    );
    CREATE TABLE blob_chunks (
        key  TEXT COLLATE "C" NOT NULL REFERENCES blobs (key) ON DELETE CASCADE,
        n    INTEGER NOT NULL,
        data BYTEA NOT NULL,
        PRIMARY KEY (key, n)
    );
    "#,
    // 6: paper accounts granted to users (gone with the user), and the feed
    // permission (who may post live ticks, which drive paper fills).
    r#"
    CREATE TABLE account_grants (
        account    TEXT COLLATE "C" NOT NULL,
        user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        granted_by TEXT NOT NULL,
        granted_at BIGINT NOT NULL,
        PRIMARY KEY (account, user_id)
    );
    CREATE INDEX account_grants_user ON account_grants (user_id);
    ALTER TABLE users ADD COLUMN feed BOOLEAN NOT NULL DEFAULT FALSE;
    "#,
    // 7: failed sign-ins are counted per (name, client address) in the hot
    // state now, not per user (which let anyone lock the owner out).
    r#"
    ALTER TABLE users DROP COLUMN failed_logins, DROP COLUMN locked_until;
    "#,
    // 8: why the scheduler turned a schedule off.
    r#"
    ALTER TABLE schedules ADD COLUMN disabled_reason TEXT;
    "#,
];

/// The schema version this build expects.
pub fn latest() -> u32 {
    STEPS.len() as u32
}

fn backend(e: tokio_postgres::Error) -> StoreError {
    StoreError::Backend(format!("migrating the PostgreSQL schema: {e}"))
}

/// The applied version (0 on an empty database).
pub async fn applied(client: &Client) -> StoreResult<u32> {
    let exists: bool = client
        .query_one("SELECT to_regclass('qb_schema') IS NOT NULL", &[])
        .await
        .map_err(backend)?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let v: i32 = client
        .query_one("SELECT version FROM qb_schema", &[])
        .await
        .map_err(backend)?
        .get(0);
    Ok(v as u32)
}

/// Applies the missing steps under the migration lock; returns (version
/// before, version after). Refuses a database newer than this build.
pub async fn run(client: &mut Client) -> StoreResult<(u32, u32)> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(backend)?;
    let result = run_locked(client).await;
    let unlock = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(backend);
    let out = result?;
    unlock?;
    Ok(out)
}

async fn run_locked(client: &mut Client) -> StoreResult<(u32, u32)> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS qb_schema (
                 one     BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
                 version INTEGER NOT NULL
             );
             INSERT INTO qb_schema (version) VALUES (0) ON CONFLICT DO NOTHING;",
        )
        .await
        .map_err(backend)?;
    let before = applied(client).await?;
    if before > latest() {
        return Err(StoreError::Invalid(format!(
            "the database schema is version {before}, newer than this build's {}; upgrade quantbox",
            latest()
        )));
    }
    for (i, sql) in STEPS.iter().enumerate().skip(before as usize) {
        let tx = client.transaction().await.map_err(backend)?;
        tx.batch_execute(sql).await.map_err(backend)?;
        tx.execute("UPDATE qb_schema SET version = $1", &[&((i + 1) as i32)])
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
    }
    Ok((before, applied(client).await?))
}
