//! Fresh databases for tests: each test gets its own, dropped afterwards,
//! so runs never see each other.

use qb_core::StoreResult;
use tokio_postgres::NoTls;

use crate::backend;

/// The server tests use: `QB_TEST_PG` or the local trust-auth server.
pub fn server_url() -> String {
    std::env::var("QB_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database created for one test; [`TestDatabase::url`] connects to it.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    admin_url: String,
    keep: bool,
}

fn with_db(url: &str, db: &str) -> String {
    // postgres://user@host:port/db?params -> same with another db
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let root = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{db}?{q}"),
        None => format!("{root}/{db}"),
    }
}

async fn admin(url: &str) -> StoreResult<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|e| backend(format!("test PostgreSQL at {url}: {e}")))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

impl TestDatabase {
    /// Creates `qb_t_<random>` on the test server.
    pub async fn create() -> StoreResult<Self> {
        Self::create_named(&format!("qb_t_{}", uuid::Uuid::now_v7().simple())).await
    }

    /// Creates (or reuses) the database `name` on the test server.
    pub async fn create_named(name: &str) -> StoreResult<Self> {
        let admin_url = server_url();
        let client = admin(&admin_url).await?;
        let exists = client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .await
            .map_err(backend)?
            .is_some();
        if !exists {
            client
                .batch_execute(&format!("CREATE DATABASE \"{name}\""))
                .await
                .map_err(backend)?;
        }
        Ok(Self {
            name: name.to_string(),
            url: with_db(&admin_url, name),
            admin_url,
            keep: false,
        })
    }

    /// Keeps the database when this handle goes (another process or a
    /// later test uses it; drop it with [`drop_matching`]).
    pub fn keep(mut self) {
        self.keep = true;
    }

    /// Drops the database, ending its sessions.
    pub async fn drop_now(&self) -> StoreResult<()> {
        let client = admin(&self.admin_url).await?;
        client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ))
            .await
            .map_err(backend)
    }

    /// Ends every session of this database except the caller's (to
    /// simulate dropped connections).
    pub async fn terminate_sessions(&self, application_name: &str) -> StoreResult<u64> {
        let client = admin(&self.admin_url).await?;
        let rows = client
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = $1 AND application_name = $2 AND pid <> pg_backend_pid()",
                &[&self.name, &application_name],
            )
            .await
            .map_err(backend)?;
        Ok(rows.len() as u64)
    }
}

/// Drops every database whose name starts with `prefix` (leftovers of
/// earlier runs); returns how many.
pub async fn drop_matching(prefix: &str) -> StoreResult<usize> {
    let client = admin(&server_url()).await?;
    let names: Vec<String> = client
        .query(
            "SELECT datname FROM pg_database WHERE starts_with(datname, $1)",
            &[&prefix],
        )
        .await
        .map_err(backend)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for name in &names {
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await
            .map_err(backend)?;
    }
    Ok(names.len())
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        let name = self.name.clone();
        let admin_url = self.admin_url.clone();
        // Drop may run inside or outside a runtime: use a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async {
                    if let Ok(client) = admin(&admin_url).await {
                        let _ = client
                            .batch_execute(&format!(
                                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                            ))
                            .await;
                    }
                });
            }
        })
        .join();
    }
}

#[cfg(test)]
mod tests {
    use super::with_db;

    #[test]
    fn swaps_the_database_name() {
        assert_eq!(
            with_db("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_db("postgres://u@h/db?sslmode=disable", "y"),
            "postgres://u@h/y?sslmode=disable"
        );
        assert_eq!(with_db("postgres://u@h", "z"), "postgres://u@h/z");
    }
}
