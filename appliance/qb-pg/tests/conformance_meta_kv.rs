//! The metadata, key-value and blob conformance suites against PostgreSQL, each
//! test on a fresh database of the test server (`QB_TEST_PG`, else the
//! local trust-auth server), plus the PostgreSQL-only case of a batch whose
//! connection is cut while it runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use qb_conformance::kv::BatchOutcome;
use qb_conformance::{kv, meta, records};
use qb_core::{KvStore, NodeIdentity};
use qb_pg::testing::TestDatabase;
use qb_pg::{PgOptions, PgStore};

/// A store on `db` whose sessions show `application_name = app`.
async fn store(db: &TestDatabase, app: &str) -> PgStore {
    let mut opts = PgOptions::new(db.url.clone());
    opts.application_name = app.into();
    PgStore::connect(opts, NodeIdentity::new("conformance"))
        .await
        .unwrap()
}

#[tokio::test]
async fn pg_meta_store() {
    let db = TestDatabase::create().await.unwrap();
    meta::suite(Arc::new(store(&db, "qb-test-meta").await)).await;
}

fn tables(s: PgStore) -> records::Tables {
    records::Tables {
        meta: Arc::new(s.clone()),
        jobs: Arc::new(s.clone()),
        records: Arc::new(s),
    }
}

#[tokio::test]
async fn pg_records_copy() {
    let a = TestDatabase::create().await.unwrap();
    let b = TestDatabase::create().await.unwrap();
    records::suite(
        tables(store(&a, "qb-test-records").await),
        tables(store(&b, "qb-test-records").await),
    )
    .await;
}

#[tokio::test]
async fn pg_blob_store() {
    let db = TestDatabase::create().await.unwrap();
    qb_conformance::blobs::suite(Arc::new(store(&db, "qb-test-blobs").await)).await;
}

#[tokio::test]
async fn pg_kv_store() {
    let db = TestDatabase::create().await.unwrap();
    kv::suite(Arc::new(store(&db, "qb-test-kv").await)).await;
}

/// A database whose default collation is a language's (ICU `en-US`), where
/// `ORDER BY` a plain text column is not byte order: the suites still pass
/// (symbols and keys are listed in byte order, as in SQLite and redb).
#[tokio::test]
async fn pg_suites_under_a_language_collation() {
    let name = format!("qb_t_icu_{}", uuid::Uuid::now_v7().simple());
    let (admin, conn) =
        tokio_postgres::connect(&qb_pg::testing::server_url(), tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(conn);
    admin
        .batch_execute(&format!(
            "CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8' \
             LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
        ))
        .await
        .expect("the test server supports ICU collations");
    let db = TestDatabase::create_named(&name).await.unwrap();
    let s = store(&db, "qb-test-icu").await;
    meta::suite(Arc::new(s.clone())).await;
    kv::suite(Arc::new(s)).await;
    // Rows leave in the same (byte) order whatever the collation.
    let name = format!("qb_t_icu_{}", uuid::Uuid::now_v7().simple());
    admin
        .batch_execute(&format!(
            "CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8' \
             LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
        ))
        .await
        .unwrap();
    let icu = TestDatabase::create_named(&name).await.unwrap();
    let plain = TestDatabase::create().await.unwrap();
    records::suite(
        tables(store(&icu, "qb-test-icu").await),
        tables(store(&plain, "qb-test-records").await),
    )
    .await;
}

#[tokio::test]
async fn pg_kv_survives_reconnect() {
    let db = TestDatabase::create().await.unwrap();
    store(&db, "qb-test-kv")
        .await
        .put("p", "durable", b"yes", None)
        .await
        .unwrap();
    let kv: Arc<dyn KvStore> = Arc::new(store(&db, "qb-test-kv").await);
    assert_eq!(
        kv.get("p", "durable").await.unwrap().as_deref(),
        Some(&b"yes"[..])
    );
}

/// A batch write interrupted by a dropped connection is all-or-nothing.
/// Each round writes 20k puts of 2 KiB through a store of its own and
/// terminates that store's sessions every `cut_after` until the write
/// returns; the last round never cuts (its write must commit).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_kv_batch_interrupted_by_dropped_connection_is_all_or_nothing() {
    let db = Arc::new(TestDatabase::create().await.unwrap());
    let reader: Arc<dyn KvStore> = Arc::new(store(&db, "qb-test-reader").await);
    let cuts = [20, 100, 400, 1_200, 2_500, 60_000].map(Duration::from_millis);
    let mut interrupted = 0;
    for (round, cut_after) in cuts.into_iter().enumerate() {
        let app = format!("qb-cut-{round}-{}", db.name);
        let writer = Arc::new(store(&db, &app).await);
        let killed = Arc::new(AtomicU64::new(0));
        let interrupt = {
            let (db, killed) = (db.clone(), killed.clone());
            move || -> futures_util::future::BoxFuture<'static, ()> {
                let (db, app, killed) = (db.clone(), app.clone(), killed.clone());
                Box::pin(async move {
                    tokio::time::sleep(cut_after).await;
                    if let Ok(n) = db.terminate_sessions(&app).await {
                        killed.fetch_add(n, Ordering::Relaxed);
                    }
                })
            }
        };
        let started = std::time::Instant::now();
        let outcome = kv::interrupted_batch(
            writer,
            reader.clone(),
            &format!("cut{round}"),
            20_000,
            2048,
            interrupt,
        )
        .await;
        println!(
            "round {round}: cut every {cut_after:?}, {} session(s) terminated, \
             {outcome:?} after {:?}",
            killed.load(Ordering::Relaxed),
            started.elapsed()
        );
        if !matches!(outcome, BatchOutcome::Committed) {
            interrupted += 1;
        }
        if round == cuts.len() - 1 {
            assert_eq!(outcome, BatchOutcome::Committed, "an uncut batch commits");
        }
    }
    assert!(
        interrupted > 0,
        "no round was interrupted: the batch is too small to be cut while it runs"
    );
}
