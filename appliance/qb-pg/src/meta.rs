//! [`MetaStore`] on PostgreSQL: users, API keys, refresh tokens, the audit
//! log, the instrument registry and the plugin registry.
//!
//! A port of the SQLite adapter (`qb-store/src/sqlite.rs`), behaviour for
//! behaviour: same messages, same ordering, times as integer milliseconds
//! UTC. Usernames compare case-insensitively (`lower(username)`, backed by
//! the unique index on it). Every call uses the primary except
//! [`MetaStore::list_audit`], which tolerates replica lag. The checks that
//! must see a consistent set of users (never zero active admins) take a
//! transaction-scoped advisory lock, since PostgreSQL, unlike SQLite, runs
//! writers concurrently.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use qb_core::market::Instrument;
use qb_core::model::*;
use qb_core::time::{Millis, now_ms, to_utc};
use qb_core::{MetaStore, StoreError, StoreResult};
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use crate::sql::{Args, col, count, exec, one_row, opt_row, rows};
use crate::{PgStore, backend, map_pg, migrations};

/// Key of the transaction advisory lock serialising changes that could
/// leave no active admin (role changes, disabling, deletions).
const ADMIN_LOCK: i64 = 0x7162_7573_6572_0001;

/// [`rows`], reporting a unique violation as `Conflict(conflict())` (a
/// message naming what clashed rather than the constraint).
async fn rows_unique(
    c: &impl GenericClient,
    sql: &str,
    args: Args<'_>,
    conflict: impl FnOnce() -> String,
) -> StoreResult<Vec<Row>> {
    let stmt = c.prepare_cached(sql).await.map_err(map_pg)?;
    c.query(&stmt, args).await.map_err(|e| {
        if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
            StoreError::Conflict(conflict())
        } else {
            map_pg(e)
        }
    })
}

// ---------------------------------------------------------------------------
// Row decoding.

fn role_col(r: &Row, idx: usize) -> StoreResult<Role> {
    col::<String>(r, idx)?.parse().map_err(StoreError::Backend)
}

fn time_col(r: &Row, idx: usize) -> StoreResult<DateTime<Utc>> {
    Ok(to_utc(col(r, idx)?))
}

fn opt_time_col(r: &Row, idx: usize) -> StoreResult<Option<DateTime<Utc>>> {
    Ok(col::<Option<Millis>>(r, idx)?.map(to_utc))
}

fn json_col<T: serde::de::DeserializeOwned>(r: &Row, idx: usize) -> StoreResult<T> {
    serde_json::from_str(col::<&str>(r, idx)?).map_err(backend)
}

const USER_COLS: &str = "id, username, role, disabled, created_at, token_version, feed";

/// A [`User`] from [`USER_COLS`] starting at column `at`.
fn user_at(r: &Row, at: usize) -> StoreResult<User> {
    Ok(User {
        id: col(r, at)?,
        username: col(r, at + 1)?,
        role: role_col(r, at + 2)?,
        disabled: col(r, at + 3)?,
        created_at: time_col(r, at + 4)?,
        token_version: col(r, at + 5)?,
        feed: col(r, at + 6)?,
    })
}

fn user_row(r: &Row) -> StoreResult<User> {
    user_at(r, 0)
}

const KEY_COLS: &str =
    "k.id, k.name, k.prefix, k.role, u.username, k.created_at, k.last_used_at, k.revoked_at";

fn key_row(r: &Row) -> StoreResult<ApiKey> {
    Ok(ApiKey {
        id: col(r, 0)?,
        name: col(r, 1)?,
        prefix: col(r, 2)?,
        role: role_col(r, 3)?,
        owner: col(r, 4)?,
        created_at: time_col(r, 5)?,
        last_used_at: opt_time_col(r, 6)?,
        revoked_at: opt_time_col(r, 7)?,
    })
}

const TOKEN_COLS: &str = "token_hash, user_id, family, expires_at, revoked, rotated_at";

fn token_row(r: &Row) -> StoreResult<RefreshToken> {
    Ok(RefreshToken {
        token_hash: col(r, 0)?,
        user_id: col(r, 1)?,
        family: col(r, 2)?,
        expires_at: time_col(r, 3)?,
        revoked: col(r, 4)?,
        rotated_at: opt_time_col(r, 5)?,
    })
}

const AUDIT_COLS: &str = "id, ts, actor, action, target, result, status, client_ip, detail";

fn audit_row(r: &Row) -> StoreResult<AuditEntry> {
    Ok(AuditEntry {
        id: col(r, 0)?,
        ts: time_col(r, 1)?,
        actor: col(r, 2)?,
        action: col(r, 3)?,
        target: col(r, 4)?,
        result: col(r, 5)?,
        status: col::<Option<i32>>(r, 6)?
            .map(|s| u16::try_from(s).map_err(backend))
            .transpose()?,
        client_ip: col(r, 7)?,
        detail: col(r, 8)?,
    })
}

fn decode<T>(rows: &[Row], f: fn(&Row) -> StoreResult<T>) -> StoreResult<Vec<T>> {
    rows.iter().map(f).collect()
}

/// `LIMIT` and `OFFSET` of a page, as `BIGINT`s.
fn limits(page: PageRequest) -> (i64, i64) {
    (
        i64::from(page.page_size),
        i64::try_from(page.offset()).unwrap_or(i64::MAX),
    )
}

// ---------------------------------------------------------------------------
// Shared lookups.

async fn get_user(c: &impl GenericClient, username: &str) -> StoreResult<User> {
    let sql = format!("SELECT {USER_COLS} FROM users WHERE lower(username) = lower($1)");
    opt_row(c, &sql, &[&username])
        .await?
        .as_ref()
        .map(user_row)
        .transpose()?
        .ok_or_else(|| StoreError::NotFound(format!("user {username:?}")))
}

async fn active_admins(c: &impl GenericClient) -> StoreResult<u64> {
    count(
        c,
        "SELECT COUNT(*) FROM users WHERE role = 'admin' AND NOT disabled",
        &[],
    )
    .await
}

async fn lock_admins(c: &impl GenericClient) -> StoreResult<()> {
    exec(c, "SELECT pg_advisory_xact_lock($1)", &[&ADMIN_LOCK])
        .await
        .map(drop)
}

/// One page of records stored as JSON in a `spec` column.
async fn page_of_specs<T: serde::de::DeserializeOwned>(
    c: &impl GenericClient,
    count_sql: &str,
    list_sql: &str,
    page: PageRequest,
) -> StoreResult<Page<T>> {
    let total = count(c, count_sql, &[]).await?;
    let (limit, offset) = limits(page);
    let items = rows(c, list_sql, &[&limit, &offset])
        .await?
        .iter()
        .map(|r| json_col(r, 0))
        .collect::<StoreResult<Vec<T>>>()?;
    Ok(Page::of(items, page, total))
}

async fn plugin_spec(
    c: &impl GenericClient,
    sql: &str,
    args: Args<'_>,
) -> StoreResult<Option<PluginInfo>> {
    opt_row(c, sql, args)
        .await?
        .map(|r| json_col(&r, 0))
        .transpose()
}

impl PgStore {
    /// Revokes the refresh tokens matching `cond` (on `$1`) and clears their
    /// rotation time (a revoked family or user has no reuse grace); returns
    /// how many were still active.
    async fn revoke_tokens_where(&self, cond: &str, arg: &(dyn ToSql + Sync)) -> StoreResult<u64> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(map_pg)?;
        exec(
            &tx,
            &format!("UPDATE refresh_tokens SET rotated_at = NULL WHERE {cond}"),
            &[arg],
        )
        .await?;
        let n = exec(
            &tx,
            &format!("UPDATE refresh_tokens SET revoked = TRUE WHERE {cond} AND NOT revoked"),
            &[arg],
        )
        .await?;
        tx.commit().await.map_err(map_pg)?;
        Ok(n)
    }
}

#[async_trait]
impl MetaStore for PgStore {
    async fn ping(&self) -> StoreResult<()> {
        let c = self.conn().await?;
        one_row(&c, "SELECT 1", &[]).await.map(drop)
    }

    async fn schema_version(&self) -> StoreResult<(u32, u32)> {
        let c = self.conn().await?;
        Ok((migrations::applied(&c).await?, migrations::latest()))
    }

    async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        role: Role,
    ) -> StoreResult<User> {
        let c = self.conn().await?;
        let sql = format!(
            "INSERT INTO users (username, password_hash, role, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $4) RETURNING {USER_COLS}"
        );
        let created = rows_unique(
            &c,
            &sql,
            &[&username, &password_hash, &role.as_str(), &now_ms()],
            || format!("user {username:?} already exists"),
        )
        .await?;
        created
            .first()
            .map(user_row)
            .unwrap_or_else(|| Err(backend("INSERT INTO users returned no row")))
    }

    async fn user_credentials(&self, username: &str) -> StoreResult<Option<UserCredentials>> {
        let c = self.conn().await?;
        let sql = format!(
            "SELECT {USER_COLS}, password_hash FROM users WHERE lower(username) = lower($1)"
        );
        let Some(r) = opt_row(&c, &sql, &[&username]).await? else {
            return Ok(None);
        };
        Ok(Some(UserCredentials {
            user: user_row(&r)?,
            password_hash: col(&r, 7)?,
        }))
    }

    async fn user_by_id(&self, id: i64) -> StoreResult<Option<User>> {
        let c = self.conn().await?;
        let sql = format!("SELECT {USER_COLS} FROM users WHERE id = $1");
        opt_row(&c, &sql, &[&id])
            .await?
            .as_ref()
            .map(user_row)
            .transpose()
    }

    async fn list_users(&self, page: PageRequest) -> StoreResult<Page<User>> {
        let c = self.conn().await?;
        let total = count(&c, "SELECT COUNT(*) FROM users", &[]).await?;
        let (limit, offset) = limits(page);
        let sql = format!("SELECT {USER_COLS} FROM users ORDER BY id LIMIT $1 OFFSET $2");
        let items = decode(&rows(&c, &sql, &[&limit, &offset]).await?, user_row)?;
        Ok(Page::of(items, page, total))
    }

    async fn update_user(&self, username: &str, update: UserUpdate) -> StoreResult<User> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(map_pg)?;
        lock_admins(&tx).await?;
        let user = get_user(&tx, username).await?;
        let changes =
            update.role.is_some() || update.disabled.is_some() || update.password_hash.is_some();
        if changes {
            exec(
                &tx,
                "UPDATE users SET
                     role = COALESCE($1, role),
                     disabled = COALESCE($2, disabled),
                     password_hash = COALESCE($3, password_hash),
                     updated_at = $4,
                     token_version = token_version + 1
                 WHERE id = $5",
                &[
                    &update.role.map(Role::as_str),
                    &update.disabled,
                    &update.password_hash,
                    &now_ms(),
                    &user.id,
                ],
            )
            .await?;
            // Sessions end: access tokens by version, refresh tokens here.
            exec(
                &tx,
                "UPDATE refresh_tokens SET revoked = TRUE WHERE user_id = $1",
                &[&user.id],
            )
            .await?;
        }
        if let Some(feed) = update.feed {
            exec(
                &tx,
                "UPDATE users SET feed = $1, updated_at = $2 WHERE id = $3",
                &[&feed, &now_ms(), &user.id],
            )
            .await?;
        }
        if active_admins(&tx).await? == 0 {
            return Err(StoreError::Conflict(
                "this change would leave no active admin".into(),
            ));
        }
        let sql = format!("SELECT {USER_COLS} FROM users WHERE id = $1");
        let user = user_row(&one_row(&tx, &sql, &[&user.id]).await?)?;
        tx.commit().await.map_err(map_pg)?;
        Ok(user)
    }

    async fn delete_user(&self, username: &str) -> StoreResult<()> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(map_pg)?;
        lock_admins(&tx).await?;
        let n = exec(
            &tx,
            "DELETE FROM users WHERE lower(username) = lower($1)",
            &[&username],
        )
        .await?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("user {username:?}")));
        }
        if active_admins(&tx).await? == 0 {
            return Err(StoreError::Conflict(
                "cannot delete the last active admin".into(),
            ));
        }
        tx.commit().await.map_err(map_pg)
    }

    async fn count_admins(&self) -> StoreResult<u64> {
        let c = self.conn().await?;
        count(&c, "SELECT COUNT(*) FROM users WHERE role = 'admin'", &[]).await
    }

    async fn create_api_key(
        &self,
        name: &str,
        prefix: &str,
        key_hash: &str,
        role: Role,
        user_id: i64,
    ) -> StoreResult<ApiKey> {
        let c = self.conn().await?;
        let id = uuid::Uuid::now_v7().to_string();
        let sql = format!(
            "WITH k AS (
                 INSERT INTO api_keys (id, name, prefix, key_hash, role, user_id, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *
             )
             SELECT {KEY_COLS} FROM k JOIN users u ON u.id = k.user_id"
        );
        let row = one_row(
            &c,
            &sql,
            &[
                &id,
                &name,
                &prefix,
                &key_hash,
                &role.as_str(),
                &user_id,
                &now_ms(),
            ],
        )
        .await?;
        key_row(&row)
    }

    async fn api_key_by_hash(&self, key_hash: &str) -> StoreResult<Option<(ApiKey, User)>> {
        let c = self.conn().await?;
        let sql = format!(
            "SELECT {KEY_COLS}, u.id, u.username, u.role, u.disabled, u.created_at, u.token_version,
                    u.feed
             FROM api_keys k JOIN users u ON u.id = k.user_id
             WHERE k.key_hash = $1 AND k.revoked_at IS NULL"
        );
        let Some(r) = opt_row(&c, &sql, &[&key_hash]).await? else {
            return Ok(None);
        };
        let (key, user) = (key_row(&r)?, user_at(&r, 8)?);
        // Record the use at most once a minute per key to keep writes rare.
        let stale = key
            .last_used_at
            .is_none_or(|t| (Utc::now() - t).num_seconds() >= 60);
        if stale {
            exec(
                &c,
                "UPDATE api_keys SET last_used_at = $1 WHERE id = $2",
                &[&now_ms(), &key.id],
            )
            .await?;
        }
        Ok(Some((key, user)))
    }

    async fn list_api_keys(
        &self,
        owner: Option<i64>,
        page: PageRequest,
    ) -> StoreResult<Page<ApiKey>> {
        let c = self.conn().await?;
        let total = count(
            &c,
            "SELECT COUNT(*) FROM api_keys WHERE $1::bigint IS NULL OR user_id = $1",
            &[&owner],
        )
        .await?;
        let (limit, offset) = limits(page);
        let sql = format!(
            "SELECT {KEY_COLS} FROM api_keys k JOIN users u ON u.id = k.user_id
             WHERE $1::bigint IS NULL OR k.user_id = $1
             ORDER BY k.created_at DESC, k.id DESC LIMIT $2 OFFSET $3"
        );
        let items = decode(&rows(&c, &sql, &[&owner, &limit, &offset]).await?, key_row)?;
        Ok(Page::of(items, page, total))
    }

    async fn revoke_api_key(&self, id: &str, owner: Option<i64>) -> StoreResult<ApiKey> {
        let c = self.conn().await?;
        let sql = format!(
            "UPDATE api_keys k SET revoked_at = COALESCE(k.revoked_at, $1)
             FROM users u
             WHERE u.id = k.user_id AND k.id = $2 AND ($3::bigint IS NULL OR k.user_id = $3)
             RETURNING {KEY_COLS}"
        );
        match opt_row(&c, &sql, &[&now_ms(), &id, &owner]).await? {
            Some(r) => key_row(&r),
            None => Err(StoreError::NotFound(format!("API key {id}"))),
        }
    }

    async fn insert_refresh_token(&self, token: &RefreshToken) -> StoreResult<()> {
        let c = self.conn().await?;
        exec(
            &c,
            "INSERT INTO refresh_tokens (token_hash, user_id, family, expires_at, revoked, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &token.token_hash,
                &token.user_id,
                &token.family,
                &token.expires_at.timestamp_millis(),
                &token.revoked,
                &now_ms(),
            ],
        )
        .await
        .map(drop)
    }

    async fn refresh_token(&self, token_hash: &str) -> StoreResult<Option<RefreshToken>> {
        let c = self.conn().await?;
        let sql = format!("SELECT {TOKEN_COLS} FROM refresh_tokens WHERE token_hash = $1");
        opt_row(&c, &sql, &[&token_hash])
            .await?
            .as_ref()
            .map(token_row)
            .transpose()
    }

    async fn revoke_refresh_token(&self, token_hash: &str) -> StoreResult<bool> {
        let c = self.conn().await?;
        let n = exec(
            &c,
            "UPDATE refresh_tokens SET revoked = TRUE, rotated_at = $2
             WHERE token_hash = $1 AND NOT revoked",
            &[&token_hash, &now_ms()],
        )
        .await?;
        Ok(n == 1)
    }

    async fn revoke_refresh_family(&self, family: &str) -> StoreResult<u64> {
        self.revoke_tokens_where("family = $1", &family).await
    }

    async fn revoke_user_refresh_tokens(&self, user_id: i64) -> StoreResult<u64> {
        self.revoke_tokens_where("user_id = $1", &user_id).await
    }

    async fn append_audit(&self, e: NewAuditEntry) -> StoreResult<()> {
        let c = self.conn().await?;
        exec(
            &c,
            "INSERT INTO audit_log (ts, actor, action, target, result, status, client_ip, detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &now_ms(),
                &e.actor,
                &e.action,
                &e.target,
                &e.result,
                &e.status.map(i32::from),
                &e.client_ip,
                &e.detail,
            ],
        )
        .await
        .map(drop)
    }

    async fn list_audit(
        &self,
        filter: &AuditFilter,
        page: PageRequest,
    ) -> StoreResult<Page<AuditEntry>> {
        // The one read that tolerates replica lag: nobody reads the audit
        // log right after writing it in the same flow.
        let c = self.read_conn().await?;
        let cond =
            "($1::text IS NULL OR actor = $1) AND ($2::text IS NULL OR starts_with(action, $2))";
        let (actor, action) = (&filter.actor, &filter.action_prefix);
        let total = count(
            &c,
            &format!("SELECT COUNT(*) FROM audit_log WHERE {cond}"),
            &[actor, action],
        )
        .await?;
        let (limit, offset) = limits(page);
        let sql = format!(
            "SELECT {AUDIT_COLS} FROM audit_log WHERE {cond}
             ORDER BY id DESC LIMIT $3 OFFSET $4"
        );
        let items = decode(
            &rows(&c, &sql, &[actor, action, &limit, &offset]).await?,
            audit_row,
        )?;
        Ok(Page::of(items, page, total))
    }

    async fn purge(
        &self,
        audit_before: DateTime<Utc>,
        tokens_before: DateTime<Utc>,
    ) -> StoreResult<(u64, u64)> {
        let c = self.conn().await?;
        let audit = exec(
            &c,
            "DELETE FROM audit_log WHERE ts < $1",
            &[&audit_before.timestamp_millis()],
        )
        .await?;
        let tokens = exec(
            &c,
            "DELETE FROM refresh_tokens WHERE expires_at < $1",
            &[&tokens_before.timestamp_millis()],
        )
        .await?;
        Ok((audit, tokens))
    }

    async fn checkpoint(&self) -> StoreResult<String> {
        // The server checkpoints its WAL itself; `CHECKPOINT` would need
        // superuser (or pg_checkpoint) rights and buys nothing here.
        Ok("postgresql: no checkpoint needed (the server checkpoints its own WAL)".into())
    }

    async fn upsert_instrument(&self, instrument: &Instrument) -> StoreResult<Instrument> {
        let c = self.conn().await?;
        let spec = serde_json::to_string(instrument).map_err(backend)?;
        exec(
            &c,
            "INSERT INTO instruments (symbol, spec, created_at, updated_at) VALUES ($1, $2, $3, $3)
             ON CONFLICT (symbol) DO UPDATE
             SET spec = EXCLUDED.spec, updated_at = EXCLUDED.updated_at",
            &[&instrument.symbol, &spec, &now_ms()],
        )
        .await?;
        Ok(instrument.clone())
    }

    async fn instrument(&self, symbol: &str) -> StoreResult<Option<Instrument>> {
        let c = self.conn().await?;
        opt_row(
            &c,
            "SELECT spec FROM instruments WHERE symbol = $1",
            &[&symbol],
        )
        .await?
        .map(|r| json_col(&r, 0))
        .transpose()
    }

    async fn list_instruments(&self, page: PageRequest) -> StoreResult<Page<Instrument>> {
        let c = self.conn().await?;
        // Byte order of symbols, as in SQLite, whatever the database's collation.
        page_of_specs(
            &c,
            "SELECT COUNT(*) FROM instruments",
            r#"SELECT spec FROM instruments ORDER BY symbol COLLATE "C" LIMIT $1 OFFSET $2"#,
            page,
        )
        .await
    }

    async fn delete_instrument(&self, symbol: &str) -> StoreResult<()> {
        let c = self.conn().await?;
        let n = exec(&c, "DELETE FROM instruments WHERE symbol = $1", &[&symbol]).await?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("instrument {symbol:?}")));
        }
        Ok(())
    }

    async fn ensure_instruments(&self, symbols: &[String]) -> StoreResult<Vec<String>> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(map_pg)?;
        let now = now_ms();
        let mut created = Vec::new();
        for s in symbols {
            let spec = serde_json::to_string(&Instrument::with_defaults(s)).map_err(backend)?;
            let n = exec(
                &tx,
                "INSERT INTO instruments (symbol, spec, created_at, updated_at)
                 VALUES ($1, $2, $3, $3) ON CONFLICT (symbol) DO NOTHING",
                &[s, &spec, &now],
            )
            .await?;
            if n == 1 {
                created.push(s.clone());
            }
        }
        tx.commit().await.map_err(map_pg)?;
        Ok(created)
    }

    async fn insert_plugin(&self, info: &PluginInfo, wasm: &[u8]) -> StoreResult<()> {
        let c = self.conn().await?;
        let spec = serde_json::to_string(info).map_err(backend)?;
        rows_unique(
            &c,
            "INSERT INTO plugins (id, name, version, spec, uploaded_at, wasm)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &info.id,
                &info.name,
                &info.version,
                &spec,
                &info.uploaded_at.timestamp_millis(),
                &wasm,
            ],
            || {
                format!(
                    "plugin {} {} is already registered",
                    info.name, info.version
                )
            },
        )
        .await
        .map(drop)
    }

    async fn plugin(&self, id: &str) -> StoreResult<Option<PluginInfo>> {
        let c = self.conn().await?;
        plugin_spec(&c, "SELECT spec FROM plugins WHERE id = $1", &[&id]).await
    }

    async fn plugin_by_name(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> StoreResult<Option<PluginInfo>> {
        let c = self.conn().await?;
        match version {
            Some(v) => {
                plugin_spec(
                    &c,
                    "SELECT spec FROM plugins WHERE name = $1 AND version = $2",
                    &[&name, &v],
                )
                .await
            }
            None => {
                plugin_spec(
                    &c,
                    "SELECT spec FROM plugins WHERE name = $1
                     ORDER BY uploaded_at DESC, id LIMIT 1",
                    &[&name],
                )
                .await
            }
        }
    }

    async fn plugin_wasm(&self, id: &str) -> StoreResult<Option<Vec<u8>>> {
        let c = self.conn().await?;
        opt_row(&c, "SELECT wasm FROM plugins WHERE id = $1", &[&id])
            .await?
            .map(|r| col(&r, 0))
            .transpose()
    }

    async fn list_plugins(&self, page: PageRequest) -> StoreResult<Page<PluginInfo>> {
        let c = self.conn().await?;
        page_of_specs(
            &c,
            "SELECT COUNT(*) FROM plugins",
            "SELECT spec FROM plugins ORDER BY uploaded_at DESC, id LIMIT $1 OFFSET $2",
            page,
        )
        .await
    }

    async fn delete_plugin(&self, id: &str) -> StoreResult<()> {
        let c = self.conn().await?;
        let n = exec(&c, "DELETE FROM plugins WHERE id = $1", &[&id]).await?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("plugin {id}")));
        }
        Ok(())
    }

    async fn grant_account(
        &self,
        account: &str,
        user_id: i64,
        granted_by: &str,
    ) -> StoreResult<AccountGrant> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(map_pg)?;
        // Holds the user row until commit: a concurrent deletion waits.
        if opt_row(
            &tx,
            "SELECT id FROM users WHERE id = $1 FOR SHARE",
            &[&user_id],
        )
        .await?
        .is_none()
        {
            return Err(StoreError::NotFound(format!("user {user_id}")));
        }
        exec(
            &tx,
            "INSERT INTO account_grants (account, user_id, granted_by, granted_at)
             VALUES ($1, $2, $3, $4) ON CONFLICT (account, user_id) DO NOTHING",
            &[&account, &user_id, &granted_by, &now_ms()],
        )
        .await?;
        let grant = grants_where(&tx, Some(account), Some(user_id))
            .await?
            .pop()
            .ok_or_else(|| backend("the grant just written is missing"))?;
        tx.commit().await.map_err(map_pg)?;
        Ok(grant)
    }

    async fn revoke_account(&self, account: &str, user_id: i64) -> StoreResult<()> {
        let c = self.conn().await?;
        let n = exec(
            &c,
            "DELETE FROM account_grants WHERE account = $1 AND user_id = $2",
            &[&account, &user_id],
        )
        .await?;
        if n == 0 {
            return Err(StoreError::NotFound(format!(
                "grant of account {account} to user {user_id}"
            )));
        }
        Ok(())
    }

    async fn account_grants(
        &self,
        account: Option<&str>,
        user_id: Option<i64>,
    ) -> StoreResult<Vec<AccountGrant>> {
        let c = self.conn().await?;
        grants_where(&c, account, user_id).await
    }
}

/// Account grants, optionally of one account and/or one user.
async fn grants_where(
    c: &impl GenericClient,
    account: Option<&str>,
    user_id: Option<i64>,
) -> StoreResult<Vec<AccountGrant>> {
    let found = rows(
        c,
        "SELECT g.account, g.user_id, u.username, g.granted_by, g.granted_at
         FROM account_grants g JOIN users u ON u.id = g.user_id
         WHERE ($1::text IS NULL OR g.account = $1) AND ($2::bigint IS NULL OR g.user_id = $2)
         ORDER BY g.account, g.user_id",
        &[&account, &user_id],
    )
    .await?;
    found
        .iter()
        .map(|r| {
            Ok(AccountGrant {
                account: col(r, 0)?,
                user_id: col(r, 1)?,
                username: col(r, 2)?,
                granted_by: col(r, 3)?,
                granted_at: time_col(r, 4)?,
            })
        })
        .collect()
}
