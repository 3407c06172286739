//! [`RecordStore`] for the SQLite store: the tables of
//! `qb_core::records` read and inserted verbatim. Booleans are SQLite
//! integers; `AUTOINCREMENT` keeps its counter past every inserted id.

use async_trait::async_trait;
use qb_core::records::{Cell, Kind, RecordStore, Row, Table};
use qb_core::{StoreError, StoreResult};
use rusqlite::types::Value;

use crate::sqlite::{Sqlite, backend, map_sql};

fn cell(r: &rusqlite::Row<'_>, i: usize, kind: Kind) -> rusqlite::Result<Cell> {
    Ok(match kind {
        Kind::Int => r.get::<_, Option<i64>>(i)?.map_or(Cell::Null, Cell::Int),
        Kind::Real => r.get::<_, Option<f64>>(i)?.map_or(Cell::Null, Cell::Real),
        Kind::Bool => r
            .get::<_, Option<i64>>(i)?
            .map_or(Cell::Null, |v| Cell::Bool(v != 0)),
        Kind::Text => r
            .get::<_, Option<String>>(i)?
            .map_or(Cell::Null, Cell::Text),
        Kind::Bytes => r
            .get::<_, Option<Vec<u8>>>(i)?
            .map_or(Cell::Null, Cell::Bytes),
    })
}

fn value(c: &Cell) -> Value {
    match c {
        Cell::Null => Value::Null,
        Cell::Int(v) => Value::Integer(*v),
        Cell::Real(v) => Value::Real(*v),
        Cell::Bool(v) => Value::Integer(*v as i64),
        Cell::Text(v) => Value::Text(v.clone()),
        Cell::Bytes(v) => Value::Blob(v.clone()),
    }
}

#[async_trait]
impl RecordStore for Sqlite {
    async fn read_rows(
        &self,
        table: &Table,
        after: Option<&Row>,
        limit: u32,
    ) -> StoreResult<Vec<Row>> {
        let cols = table.column_list();
        let key = table.key_list();
        let kinds: Vec<Kind> = table.columns.iter().map(|c| c.1).collect();
        let name = table.name;
        let after: Option<Vec<Value>> = after.map(|r| r[..table.key].iter().map(value).collect());
        let marks = (2..2 + table.key)
            .map(|i| format!("?{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        self.read(move |c| {
            // Row values compare column by column; text as bytes (BINARY).
            let filter = if after.is_some() {
                format!("WHERE ({key}) > ({marks})")
            } else {
                String::new()
            };
            let sql = format!("SELECT {cols} FROM {name} {filter} ORDER BY {key} LIMIT ?1");
            let mut stmt = c.prepare(&sql).map_err(backend)?;
            let mut args: Vec<Value> = vec![Value::Integer(limit.into())];
            args.extend(after.into_iter().flatten());
            let rows = stmt
                .query_map(rusqlite::params_from_iter(args), |r| {
                    kinds
                        .iter()
                        .enumerate()
                        .map(|(i, k)| cell(r, i, *k))
                        .collect::<rusqlite::Result<Row>>()
                })
                .map_err(backend)?;
            rows.collect::<rusqlite::Result<Vec<Row>>>()
                .map_err(backend)
        })
        .await
    }

    async fn insert_rows(&self, table: &Table, rows: &[Row]) -> StoreResult<u64> {
        for r in rows {
            table.check_row(r)?;
        }
        let cols = table.column_list();
        let key = table.key_list();
        let name = table.name;
        let key_len = table.key;
        let key_of = move |r: &Vec<Value>| format!("{:?}", &r[..key_len]);
        let marks = (1..=table.columns.len())
            .map(|i| format!("?{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql =
            format!("INSERT INTO {name} ({cols}) VALUES ({marks}) ON CONFLICT ({key}) DO NOTHING");
        let rows: Vec<Vec<Value>> = rows.iter().map(|r| r.iter().map(value).collect()).collect();
        self.write(move |c| {
            let tx = c.transaction().map_err(backend)?;
            let mut inserted = 0u64;
            {
                let mut stmt = tx.prepare(&sql).map_err(backend)?;
                for r in &rows {
                    inserted += stmt
                        .execute(rusqlite::params_from_iter(r.iter()))
                        .map_err(|e| match map_sql(e) {
                            StoreError::Conflict(why) => StoreError::Conflict(format!(
                                "{name}: the row ({key}) = {} collides with a stored row ({why})",
                                key_of(r)
                            )),
                            other => other,
                        })? as u64;
                }
            }
            tx.commit().map_err(backend)?;
            Ok(inserted)
        })
        .await
    }

    async fn id_high_water(&self, table: &Table) -> StoreResult<i64> {
        let (name, key) = (table.name, table.columns[0].0);
        self.read(move |c| {
            // `sqlite_sequence` counts AUTOINCREMENT tables (users); the
            // others hand out max(id) + 1.
            c.query_row(
                &format!(
                    "SELECT max(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = ?1), 0),
                                COALESCE((SELECT max({key}) FROM {name}), 0))"
                ),
                [name],
                |r| r.get(0),
            )
            .map_err(backend)
        })
        .await
    }

    async fn raise_id_high_water(&self, table: &Table, high: i64) -> StoreResult<()> {
        let name = table.name;
        self.write(move |c| {
            let tx = c.transaction().map_err(backend)?;
            let counted: bool = tx
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence')",
                    [],
                    |r| r.get(0),
                )
                .map_err(backend)?;
            if counted {
                tx.execute(
                    "UPDATE sqlite_sequence SET seq = max(seq, ?2) WHERE name = ?1",
                    rusqlite::params![name, high],
                )
                .map_err(backend)?;
                tx.execute(
                    "INSERT INTO sqlite_sequence (name, seq) SELECT ?1, ?2
                     WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = ?1)
                       AND EXISTS (SELECT 1 FROM sqlite_master WHERE name = ?1
                                   AND sql LIKE '%AUTOINCREMENT%')",
                    rusqlite::params![name, high],
                )
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)
        })
        .await
    }
}
