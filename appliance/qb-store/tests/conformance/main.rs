//! One conformance suite per seam, run against every adapter this crate
//! has. Cluster adapters (PostgreSQL, Redis) join by adding one `#[tokio::test]`
//! per suite that builds their adapter.

mod jobs;
mod kv;
mod meta;
mod pubsub;

use std::sync::Arc;

use qb_store::{LocalPubSub, RedbKv, Sqlite};

fn sqlite() -> (tempfile::TempDir, Sqlite) {
    let dir = tempfile::tempdir().unwrap();
    let db = Sqlite::open(dir.path().join("quantbox.sqlite")).unwrap();
    (dir, db)
}

#[tokio::test]
async fn sqlite_meta_store() {
    let (_dir, db) = sqlite();
    meta::suite(Arc::new(db)).await;
}

#[tokio::test]
async fn sqlite_job_queue() {
    let (_dir, db) = sqlite();
    jobs::suite(Arc::new(db)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_job_queue_concurrent_claims() {
    let (_dir, db) = sqlite();
    jobs::concurrent_claims(Arc::new(db)).await;
}

#[tokio::test]
async fn sqlite_survives_reopen_and_migrates_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("quantbox.sqlite");
    let (before, after) = Sqlite::migrate(&path).unwrap();
    assert_eq!(before, 0);
    assert_eq!(after, qb_store::migrations::latest());
    assert_eq!(Sqlite::migrate(&path).unwrap(), (after, after));
    {
        let db = Sqlite::open(&path).unwrap();
        use qb_core::MetaStore;
        db.create_user("kept", "hash", qb_core::model::Role::Viewer)
            .await
            .unwrap();
    }
    let db = Sqlite::open(&path).unwrap();
    use qb_core::MetaStore;
    assert!(db.user_credentials("kept").await.unwrap().is_some());
}

#[tokio::test]
async fn redb_kv_store() {
    let dir = tempfile::tempdir().unwrap();
    let kv = RedbKv::open(dir.path().join("state.redb")).unwrap();
    kv::suite(Arc::new(kv)).await;
    // Data survives closing and reopening the file.
    drop(kv::reopen_probe(dir.path()).await);
}

#[tokio::test]
async fn local_pubsub() {
    pubsub::suite(Arc::new(LocalPubSub::new())).await;
}
