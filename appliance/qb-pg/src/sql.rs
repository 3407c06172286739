//! Statement and row helpers every PostgreSQL adapter here uses: prepared
//! through the connection's statement cache, errors mapped once (unique
//! and foreign-key violations become `Conflict`).

use deadpool_postgres::GenericClient;
use qb_core::StoreResult;
use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, ToSql};

use crate::map_pg;

pub(crate) type Args<'a> = &'a [&'a (dyn ToSql + Sync)];

pub(crate) async fn rows(
    c: &impl GenericClient,
    sql: &str,
    args: Args<'_>,
) -> StoreResult<Vec<Row>> {
    let stmt = c.prepare_cached(sql).await.map_err(map_pg)?;
    c.query(&stmt, args).await.map_err(map_pg)
}

pub(crate) async fn opt_row(
    c: &impl GenericClient,
    sql: &str,
    args: Args<'_>,
) -> StoreResult<Option<Row>> {
    let stmt = c.prepare_cached(sql).await.map_err(map_pg)?;
    c.query_opt(&stmt, args).await.map_err(map_pg)
}

pub(crate) async fn one_row(c: &impl GenericClient, sql: &str, args: Args<'_>) -> StoreResult<Row> {
    let stmt = c.prepare_cached(sql).await.map_err(map_pg)?;
    c.query_one(&stmt, args).await.map_err(map_pg)
}

pub(crate) async fn exec(c: &impl GenericClient, sql: &str, args: Args<'_>) -> StoreResult<u64> {
    let stmt = c.prepare_cached(sql).await.map_err(map_pg)?;
    c.execute(&stmt, args).await.map_err(map_pg)
}

/// The single `BIGINT` of a `SELECT COUNT(*) ...`.
pub(crate) async fn count(c: &impl GenericClient, sql: &str, args: Args<'_>) -> StoreResult<u64> {
    let n: i64 = col(&one_row(c, sql, args).await?, 0)?;
    Ok(n.max(0) as u64)
}

pub(crate) fn col<'a, T: FromSql<'a>>(r: &'a Row, idx: usize) -> StoreResult<T> {
    r.try_get(idx).map_err(map_pg)
}
