//! [`RecordStore`] on PostgreSQL: the tables of `qb_core::records` read
//! and inserted verbatim. Integer columns are read as `BIGINT` and every
//! value is sent with its type (`$n::bigint`, …), assigned to the
//! column's own type on insert. Identity keys are inserted with
//! `OVERRIDING SYSTEM VALUE`, then the identity moves past them (never
//! back), so ids stay never reused. Rows are read in key order, text keys
//! in byte order (`COLLATE "C"`) as SQLite orders them.

use async_trait::async_trait;
use qb_core::records::{Cell, Kind, RecordStore, Row, Table};
use qb_core::{StoreError, StoreResult};
use tokio_postgres::types::ToSql;

use crate::{PgStore, map_pg};

fn pg_type(kind: Kind) -> &'static str {
    match kind {
        Kind::Int => "bigint",
        Kind::Real => "float8",
        Kind::Bool => "boolean",
        Kind::Text => "text",
        Kind::Bytes => "bytea",
    }
}

fn select_list(table: &Table) -> String {
    table
        .columns
        .iter()
        .map(|(c, k)| match k {
            Kind::Int => format!("{c}::bigint"),
            _ => c.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn cell(r: &tokio_postgres::Row, i: usize, kind: Kind) -> Result<Cell, tokio_postgres::Error> {
    Ok(match kind {
        Kind::Int => r
            .try_get::<_, Option<i64>>(i)?
            .map_or(Cell::Null, Cell::Int),
        Kind::Real => r
            .try_get::<_, Option<f64>>(i)?
            .map_or(Cell::Null, Cell::Real),
        Kind::Bool => r
            .try_get::<_, Option<bool>>(i)?
            .map_or(Cell::Null, Cell::Bool),
        Kind::Text => r
            .try_get::<_, Option<String>>(i)?
            .map_or(Cell::Null, Cell::Text),
        Kind::Bytes => r
            .try_get::<_, Option<Vec<u8>>>(i)?
            .map_or(Cell::Null, Cell::Bytes),
    })
}

/// A cell as a parameter of the column's kind (a NULL typed like it).
fn param(c: &Cell, kind: Kind) -> StoreResult<Box<dyn ToSql + Sync + Send>> {
    let wrong = || StoreError::Invalid(format!("a {c:?} cell in a {} column", pg_type(kind)));
    Ok(match (kind, c) {
        (Kind::Int, Cell::Null) => Box::new(None::<i64>),
        (Kind::Int, Cell::Int(v)) => Box::new(*v),
        (Kind::Real, Cell::Null) => Box::new(None::<f64>),
        (Kind::Real, Cell::Real(v)) => Box::new(*v),
        (Kind::Bool, Cell::Null) => Box::new(None::<bool>),
        (Kind::Bool, Cell::Bool(v)) => Box::new(*v),
        (Kind::Text, Cell::Null) => Box::new(None::<String>),
        (Kind::Text, Cell::Text(v)) => Box::new(v.clone()),
        (Kind::Bytes, Cell::Null) => Box::new(None::<Vec<u8>>),
        (Kind::Bytes, Cell::Bytes(v)) => Box::new(v.clone()),
        _ => return Err(wrong()),
    })
}

#[async_trait]
impl RecordStore for PgStore {
    async fn read_rows(
        &self,
        table: &Table,
        after: Option<&Row>,
        limit: u32,
    ) -> StoreResult<Vec<Row>> {
        // Text keys in byte order (as SQLite orders them), whatever the
        // database's collation.
        let key = table
            .key_columns()
            .iter()
            .map(|(c, k)| match k {
                Kind::Text => format!("{c} COLLATE \"C\""),
                _ => c.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let c = self.conn().await?;
        let limit = i64::from(limit);
        let rows = match after {
            Some(a) => {
                let marks = table
                    .key_columns()
                    .iter()
                    .enumerate()
                    .map(|(i, (_, k))| format!("${}::{}", i + 2, pg_type(*k)))
                    .collect::<Vec<_>>()
                    .join(", ");
                let sql = format!(
                    "SELECT {} FROM {} WHERE ({key}) > ({marks}) ORDER BY {key} LIMIT $1",
                    select_list(table),
                    table.name,
                );
                let keys = a[..table.key]
                    .iter()
                    .zip(table.key_columns())
                    .map(|(cell, (_, k))| param(cell, *k))
                    .collect::<StoreResult<Vec<_>>>()?;
                let mut args: Vec<&(dyn ToSql + Sync)> = vec![&limit];
                args.extend(keys.iter().map(|b| b.as_ref() as &(dyn ToSql + Sync)));
                crate::sql::rows(&c, &sql, &args).await?
            }
            None => {
                let sql = format!(
                    "SELECT {} FROM {} ORDER BY {key} LIMIT $1",
                    select_list(table),
                    table.name
                );
                crate::sql::rows(&c, &sql, &[&limit]).await?
            }
        };
        rows.iter()
            .map(|r| {
                table
                    .columns
                    .iter()
                    .enumerate()
                    .map(|(i, (_, k))| cell(r, i, *k))
                    .collect::<Result<Row, _>>()
                    .map_err(map_pg)
            })
            .collect()
    }

    async fn insert_rows(&self, table: &Table, rows: &[Row]) -> StoreResult<u64> {
        let key = table.key_list();
        let mut params = Vec::with_capacity(rows.len());
        for r in rows {
            table.check_row(r)?;
            params.push(
                r.iter()
                    .zip(table.columns)
                    .map(|(c, (_, k))| param(c, *k))
                    .collect::<StoreResult<Vec<_>>>()?,
            );
        }
        let values = table
            .columns
            .iter()
            .enumerate()
            .map(|(i, (_, k))| format!("${}::{}", i + 1, pg_type(*k)))
            .collect::<Vec<_>>()
            .join(", ");
        let overriding = if table.generated_key {
            "OVERRIDING SYSTEM VALUE"
        } else {
            ""
        };
        let sql = format!(
            "INSERT INTO {} ({}) {overriding} VALUES ({values}) ON CONFLICT ({key}) DO NOTHING",
            table.name,
            table.column_list()
        );
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(map_pg)?;
        let stmt = tx.prepare(&sql).await.map_err(map_pg)?;
        let mut inserted = 0;
        for (row, p) in rows.iter().zip(&params) {
            let args: Vec<&(dyn ToSql + Sync)> = p
                .iter()
                .map(|b| b.as_ref() as &(dyn ToSql + Sync))
                .collect();
            inserted += tx
                .execute(&stmt, &args)
                .await
                .map_err(|e| match map_pg(e) {
                    StoreError::Conflict(why) => StoreError::Conflict(format!(
                        "{}: the row ({key}) = {} collides with a stored row ({why})",
                        table.name,
                        table.key_text(row)
                    )),
                    other => other,
                })?;
        }
        if table.generated_key && inserted > 0 {
            raise(&tx, table, None).await?;
        }
        tx.commit().await.map_err(map_pg)?;
        Ok(inserted)
    }

    async fn id_high_water(&self, table: &Table) -> StoreResult<i64> {
        let key = table.columns[0].0;
        let seq = sequence(table);
        let c = self.conn().await?;
        let sql = format!(
            "SELECT GREATEST(COALESCE(pg_sequence_last_value({seq}::regclass), 0), \
                             COALESCE((SELECT max({key}) FROM {}), 0))::bigint",
            table.name
        );
        crate::sql::col(&crate::sql::one_row(&c, &sql, &[]).await?, 0)
    }

    async fn raise_id_high_water(&self, table: &Table, high: i64) -> StoreResult<()> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(map_pg)?;
        raise(&tx, table, Some(high)).await?;
        tx.commit().await.map_err(map_pg)
    }
}

/// The identity sequence of `table`'s key.
fn sequence(table: &Table) -> String {
    format!(
        "pg_get_serial_sequence('{}', '{}')",
        table.name, table.columns[0].0
    )
}

/// Moves the identity of `table` past every stored id and `high`, never
/// back: `setval(v)` makes the next id v + 1.
async fn raise(
    tx: &tokio_postgres::Transaction<'_>,
    table: &Table,
    high: Option<i64>,
) -> StoreResult<()> {
    let seq = sequence(table);
    let sql = format!(
        "SELECT setval({seq}, GREATEST((SELECT max({key}) FROM {name}), $1::bigint, \
         COALESCE(pg_sequence_last_value({seq}::regclass), 1)))",
        key = table.columns[0].0,
        name = table.name
    );
    tx.execute(&sql, &[&high]).await.map_err(map_pg)?;
    Ok(())
}
