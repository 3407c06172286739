//! Every suite against the embedded adapters: SQLite (metadata, jobs),
//! redb (hot state), the in-process pub/sub.

use std::path::PathBuf;
use std::sync::Arc;

use qb_conformance::{JobQueueFactory, jobs, kv, meta, pubsub, records};
use qb_core::{JobQueue, KvStore, MetaStore, NodeIdentity};
use qb_store::{LocalPubSub, RedbKv, Sqlite};

fn sqlite() -> (tempfile::TempDir, Sqlite) {
    let dir = tempfile::tempdir().unwrap();
    let db = Sqlite::open(dir.path().join("quantbox.sqlite")).unwrap();
    (dir, db)
}

/// Instances over one SQLite file, as a restarted process would open it.
fn sqlite_jobs() -> (tempfile::TempDir, JobQueueFactory) {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("quantbox.sqlite");
    let open: JobQueueFactory = Arc::new(move |node: NodeIdentity| {
        let path = path.clone();
        Box::pin(async move {
            let q: Arc<dyn JobQueue> = Arc::new(Sqlite::open_as(&path, node).unwrap());
            q
        })
    });
    (dir, open)
}

fn tables(db: Sqlite) -> records::Tables {
    records::Tables {
        meta: Arc::new(db.clone()),
        jobs: Arc::new(db.clone()),
        records: Arc::new(db),
    }
}

#[tokio::test]
async fn sqlite_records_copy() {
    let (_a, src) = sqlite();
    let (_b, dst) = sqlite();
    records::suite(tables(src), tables(dst)).await;
}

#[tokio::test]
async fn sqlite_meta_store() {
    let (_dir, db) = sqlite();
    meta::suite(Arc::new(db)).await;
}

#[tokio::test]
async fn sqlite_job_queue() {
    let (_dir, open) = sqlite_jobs();
    jobs::suite(open).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_job_queue_concurrent_claims() {
    let (_dir, open) = sqlite_jobs();
    jobs::concurrent_claims(open).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_schedule_fires_once_across_instances() {
    let (_dir, open) = sqlite_jobs();
    jobs::schedule_fires_once_across_instances(open).await;
}

#[tokio::test]
async fn sqlite_dead_instances_and_fencing() {
    let (_dir, open) = sqlite_jobs();
    jobs::dead_instances_and_fencing(open).await;
}

#[tokio::test]
async fn sqlite_wakes_across_instances() {
    let (_dir, open) = sqlite_jobs();
    jobs::wakes_across_instances(open).await;
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
        db.create_user("kept", "hash", qb_core::model::Role::Viewer)
            .await
            .unwrap();
    }
    let db = Sqlite::open(&path).unwrap();
    assert!(db.user_credentials("kept").await.unwrap().is_some());
}

/// Migration 6 rebuilds `users` (AUTOINCREMENT ids, token versions): the
/// API keys and refresh tokens referring to its rows survive (the rebuild
/// must not cascade the old table's drop into them), and ids are not
/// reused from then on.
#[tokio::test]
async fn sqlite_user_rebuild_keeps_what_refers_to_users() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v5.sqlite");
    {
        let mut c = rusqlite::Connection::open(&path).unwrap();
        c.pragma_update(None, "foreign_keys", true).unwrap();
        let tx = c.transaction().unwrap();
        for step in &qb_store::migrations::STEPS[..5] {
            tx.execute_batch(step).unwrap();
        }
        tx.pragma_update(None, "user_version", 5).unwrap();
        tx.execute_batch(
            "INSERT INTO users (id, username, password_hash, role, created_at, updated_at)
                 VALUES (1, 'ann', 'h', 'admin', 0, 0), (2, 'bob', 'h', 'trader', 0, 0);
             INSERT INTO api_keys (id, name, prefix, key_hash, role, user_id, created_at)
                 VALUES ('k1', 'ci', 'qbk_x', 'key-hash', 'trader', 2, 0);
             INSERT INTO refresh_tokens (token_hash, user_id, family, expires_at, created_at)
                 VALUES ('rt-hash', 2, 'fam', 9999999999999, 0);",
        )
        .unwrap();
        tx.commit().unwrap();
    }
    let (before, after) = Sqlite::migrate(&path).unwrap();
    assert_eq!((before, after), (5, qb_store::migrations::latest()));
    let db = Sqlite::open(&path).unwrap();
    let (key, owner) = db.api_key_by_hash("key-hash").await.unwrap().unwrap();
    assert_eq!((key.id.as_str(), owner.username.as_str()), ("k1", "bob"));
    assert_eq!(owner.token_version, 0);
    assert!(!db.refresh_token("rt-hash").await.unwrap().unwrap().revoked);
    let carl = db
        .create_user("carl", "h", qb_core::model::Role::Viewer)
        .await
        .unwrap();
    assert_eq!(carl.id, 3);
    db.delete_user("carl").await.unwrap();
    let dan = db
        .create_user("dan", "h", qb_core::model::Role::Viewer)
        .await
        .unwrap();
    assert_eq!(dan.id, 4, "the deleted id 3 was reused");
}

#[tokio::test]
async fn file_blob_store() {
    let dir = tempfile::tempdir().unwrap();
    qb_conformance::blobs::suite(Arc::new(qb_store::FileBlobs::new(dir.path()))).await;
}

#[tokio::test]
async fn redb_kv_store() {
    let dir = tempfile::tempdir().unwrap();
    let kv = RedbKv::open(dir.path().join("state.redb")).unwrap();
    kv::suite(Arc::new(kv)).await;
}

#[tokio::test]
async fn redb_kv_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reopen.redb");
    {
        let kv = RedbKv::open(&path).unwrap();
        kv.put("p", "durable", b"yes", None).await.unwrap();
    }
    let kv = RedbKv::open(&path).unwrap();
    assert_eq!(
        kv.get("p", "durable").await.unwrap().as_deref(),
        Some(&b"yes"[..])
    );
}

#[tokio::test]
async fn local_pubsub() {
    pubsub::suite(Arc::new(LocalPubSub::new())).await;
}

#[tokio::test]
async fn local_pubsub_across_instances() {
    // One process: the "other instance" is the same one.
    let ps: Arc<dyn qb_core::PubSub> = Arc::new(LocalPubSub::new());
    pubsub::across_instances(ps.clone(), ps).await;
}

#[tokio::test]
async fn local_limits() {
    let rl: Arc<dyn qb_core::RateLimiter> = Arc::new(qb_store::LocalRateLimiter::new());
    qb_conformance::limits::suite(rl).await;
}

#[tokio::test]
async fn local_limits_shared() {
    // One process: both "nodes" are the same limiter.
    let rl: Arc<dyn qb_core::RateLimiter> = Arc::new(qb_store::LocalRateLimiter::new());
    qb_conformance::limits::shared(rl.clone(), rl).await;
}
