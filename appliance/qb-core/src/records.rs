//! The durable tables of the metadata and job stores as plain rows, for
//! copying one store into another verbatim (`quantbox cluster import`):
//! ids, password and key hashes, token versions, times and job states are
//! kept, so a user, an API key or a backtest is the same one after the
//! copy. [`TABLES`] is the one description of those tables both adapters
//! (SQLite, PostgreSQL) read and write through [`RecordStore`].
//!
//! Not copied, on purpose: refresh tokens (sessions: users log in again on
//! the cluster), `schedule_runs` (the cluster's schedulers fire only
//! instants after they start), `nodes` (process heartbeats).

use async_trait::async_trait;

use crate::seams::StoreResult;

/// A column's type as both adapters store it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    Real,
    Bool,
    Text,
    Bytes,
}

/// One value of a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Bool(bool),
    Text(String),
    Bytes(Vec<u8>),
}

impl Cell {
    /// Appends an unambiguous encoding (a tag, then the value; lengths
    /// before variable-length values), the input of row checksums.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Cell::Null => out.push(0),
            Cell::Int(v) => {
                out.push(1);
                out.extend_from_slice(&v.to_be_bytes());
            }
            Cell::Real(v) => {
                out.push(2);
                out.extend_from_slice(&v.to_bits().to_be_bytes());
            }
            Cell::Bool(v) => out.extend_from_slice(&[3, *v as u8]),
            Cell::Text(v) => {
                out.push(4);
                out.extend_from_slice(&(v.len() as u64).to_be_bytes());
                out.extend_from_slice(v.as_bytes());
            }
            Cell::Bytes(v) => {
                out.push(5);
                out.extend_from_slice(&(v.len() as u64).to_be_bytes());
                out.extend_from_slice(v);
            }
        }
    }

    /// The row key as text (keys are integers or text), for messages and
    /// progress markers.
    pub fn key_text(&self) -> String {
        match self {
            Cell::Int(v) => v.to_string(),
            Cell::Text(v) => v.clone(),
            other => format!("{other:?}"),
        }
    }
}

/// A row: one cell per column of its [`Table`], in order.
pub type Row = Vec<Cell>;

/// A table as the copy sees it. The first `key` columns are the key rows
/// are ordered and matched by.
#[derive(Debug, PartialEq, Eq)]
pub struct Table {
    pub name: &'static str,
    pub columns: &'static [(&'static str, Kind)],
    /// How many leading columns make the key (1, or 2 for a pair).
    pub key: usize,
    /// The key is one id the store generates: a copy keeps the source's
    /// ids and moves the destination's generator past them.
    pub generated_key: bool,
}

impl Table {
    /// The key columns, in order.
    pub fn key_columns(&self) -> &'static [(&'static str, Kind)] {
        &self.columns[..self.key]
    }

    /// The key columns' names, comma-separated.
    pub fn key_list(&self) -> String {
        self.key_columns()
            .iter()
            .map(|(c, _)| *c)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `Invalid` unless `row` has one cell per column.
    pub fn check_row(&self, row: &Row) -> StoreResult<()> {
        if row.len() == self.columns.len() {
            return Ok(());
        }
        Err(crate::StoreError::Invalid(format!(
            "a row of {} has {} cells, the table {} columns",
            self.name,
            row.len(),
            self.columns.len()
        )))
    }

    /// A row's key as text (`a/b` for a pair), for messages and maps.
    pub fn key_text(&self, row: &Row) -> String {
        row[..self.key]
            .iter()
            .map(Cell::key_text)
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The column names, comma-separated, in order.
    pub fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|(c, _)| *c)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

use Kind::*;

pub const USERS: Table = Table {
    name: "users",
    columns: &[
        ("id", Int),
        ("username", Text),
        ("password_hash", Text),
        ("role", Text),
        ("disabled", Bool),
        ("created_at", Int),
        ("updated_at", Int),
        ("token_version", Int),
        ("feed", Bool),
    ],
    key: 1,
    generated_key: true,
};

pub const API_KEYS: Table = Table {
    name: "api_keys",
    columns: &[
        ("id", Text),
        ("name", Text),
        ("prefix", Text),
        ("key_hash", Text),
        ("role", Text),
        ("user_id", Int),
        ("created_at", Int),
        ("last_used_at", Int),
        ("revoked_at", Int),
    ],
    key: 1,
    generated_key: false,
};

pub const AUDIT_LOG: Table = Table {
    name: "audit_log",
    columns: &[
        ("id", Int),
        ("ts", Int),
        ("actor", Text),
        ("action", Text),
        ("target", Text),
        ("result", Text),
        ("status", Int),
        ("client_ip", Text),
        ("detail", Text),
    ],
    key: 1,
    generated_key: true,
};

pub const INSTRUMENTS: Table = Table {
    name: "instruments",
    columns: &[
        ("symbol", Text),
        ("spec", Text),
        ("created_at", Int),
        ("updated_at", Int),
    ],
    key: 1,
    generated_key: false,
};

pub const PLUGINS: Table = Table {
    name: "plugins",
    columns: &[
        ("id", Text),
        ("name", Text),
        ("version", Text),
        ("spec", Text),
        ("uploaded_at", Int),
        ("wasm", Bytes),
    ],
    key: 1,
    generated_key: false,
};

pub const SCHEDULES: Table = Table {
    name: "schedules",
    columns: &[
        ("id", Text),
        ("name", Text),
        ("cron", Text),
        ("job", Text),
        ("enabled", Bool),
        ("created_at", Int),
        ("last_run_at", Int),
        ("last_job_id", Text),
        ("disabled_reason", Text),
    ],
    key: 1,
    generated_key: false,
};

/// Jobs by id (time-ordered UUIDs); the destination numbers them in its
/// own queue order (`seq`) as they arrive, which keeps their order.
pub const JOBS: Table = Table {
    name: "jobs",
    columns: &[
        ("id", Text),
        ("queue", Text),
        ("kind", Text),
        ("params", Text),
        ("state", Text),
        ("progress", Real),
        ("message", Text),
        ("result", Text),
        ("error", Text),
        ("attempts", Int),
        ("max_attempts", Int),
        ("cancel_requested", Bool),
        ("created_by", Text),
        ("schedule_id", Text),
        ("node", Text),
        ("claimed_by", Text),
        ("created_at", Int),
        ("started_at", Int),
        ("finished_at", Int),
    ],
    key: 1,
    generated_key: false,
};

/// Paper accounts granted to users.
pub const ACCOUNT_GRANTS: Table = Table {
    name: "account_grants",
    columns: &[
        ("account", Text),
        ("user_id", Int),
        ("granted_by", Text),
        ("granted_at", Int),
    ],
    key: 2,
    generated_key: false,
};

/// Every copied table, parents before the tables referring to them.
pub const TABLES: &[&Table] = &[
    &USERS,
    &API_KEYS,
    &ACCOUNT_GRANTS,
    &AUDIT_LOG,
    &INSTRUMENTS,
    &PLUGINS,
    &SCHEDULES,
    &JOBS,
];

/// Reading and writing [`TABLES`] row by row, verbatim.
#[async_trait]
pub trait RecordStore: Send + Sync {
    /// Rows of `table` whose key comes after the key of `after` (the
    /// last row of the previous page), in key order (text in byte order),
    /// at most `limit`.
    async fn read_rows(
        &self,
        table: &Table,
        after: Option<&Row>,
        limit: u32,
    ) -> StoreResult<Vec<Row>>;
    /// Inserts, in one transaction, the rows whose key is not stored yet,
    /// exactly as given (generated keys included: the store's generator
    /// moves past them, so it never hands them out again); returns how
    /// many were inserted. A row whose key is free but that collides with
    /// a stored row on another unique column (a user name) is a
    /// `Conflict` and inserts nothing.
    async fn insert_rows(&self, table: &Table, rows: &[Row]) -> StoreResult<u64>;
    /// The highest id the store has handed out for a table with a
    /// generated key, whether or not its row still exists (0: none).
    async fn id_high_water(&self, table: &Table) -> StoreResult<i64>;
    /// Makes the store never hand out an id up to `high` for `table`
    /// (never lowers it): a copy carries the ids of deleted rows over, so
    /// a deleted user's id is not given to a new user after the copy.
    async fn raise_id_high_water(&self, table: &Table, high: i64) -> StoreResult<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_first_and_encodings_differ_by_type() {
        for t in TABLES {
            assert!((1..=2).contains(&t.key), "{}", t.name);
            for (c, k) in t.key_columns() {
                assert!(matches!(k, Int | Text), "{}.{c}", t.name);
            }
            assert!(!t.generated_key || t.key == 1, "{}", t.name);
        }
        let enc = |c: Cell| {
            let mut v = Vec::new();
            c.encode(&mut v);
            v
        };
        assert_ne!(enc(Cell::Int(1)), enc(Cell::Bool(true)));
        assert_ne!(
            enc(Cell::Text("ab".into())),
            enc(Cell::Bytes(b"ab".to_vec()))
        );
        // Lengths come first: ("a", "bc") and ("ab", "c") differ.
        let pair = |a: &str, b: &str| {
            let mut v = Vec::new();
            Cell::Text(a.into()).encode(&mut v);
            Cell::Text(b.into()).encode(&mut v);
            v
        };
        assert_ne!(pair("a", "bc"), pair("ab", "c"));
    }
}
