//! The job-queue conformance suites against PostgreSQL, each on a fresh
//! database, with every instance a `PgStore` of its own (as separate
//! processes would be); plus the node lock and the wake-up listener's
//! reconnection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use qb_conformance::{JobQueueFactory, jobs};
use qb_core::model::NewJob;
use qb_core::{JobQueue, NodeIdentity, StoreError};
use qb_pg::testing::TestDatabase;
use qb_pg::{PgOptions, PgStore};

fn options(db: &TestDatabase, application_name: &str) -> PgOptions {
    let mut opts = PgOptions::new(db.url.clone());
    opts.pool_size = 4;
    opts.read_pool_size = 1;
    opts.connect_timeout = Duration::from_secs(10);
    opts.application_name = application_name.into();
    opts
}

async fn store(db: &TestDatabase, application_name: &str, node: NodeIdentity) -> PgStore {
    PgStore::connect(options(db, application_name), node)
        .await
        .unwrap()
}

/// A fresh database and a factory opening stores over it; keep the
/// database alive for the whole test.
async fn pg_jobs() -> (TestDatabase, JobQueueFactory) {
    let db = TestDatabase::create().await.unwrap();
    let opts = options(&db, "qb-test-jobs");
    let open: JobQueueFactory = Arc::new(move |node: NodeIdentity| {
        let opts = opts.clone();
        Box::pin(async move {
            let q: Arc<dyn JobQueue> = Arc::new(PgStore::connect(opts, node).await.unwrap());
            q
        })
    });
    (db, open)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_job_queue() {
    let (_db, open) = pg_jobs().await;
    jobs::suite(open).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_job_queue_concurrent_claims() {
    let (_db, open) = pg_jobs().await;
    jobs::concurrent_claims(open).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_schedule_fires_once_across_instances() {
    let (_db, open) = pg_jobs().await;
    jobs::schedule_fires_once_across_instances(open).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_dead_instances_and_fencing() {
    let (_db, open) = pg_jobs().await;
    jobs::dead_instances_and_fencing(open).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_wakes_across_instances() {
    let (_db, open) = pg_jobs().await;
    jobs::wakes_across_instances(open).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_node_lock_is_exclusive() {
    let db = TestDatabase::create().await.unwrap();
    let first = store(&db, "qb-test-lock", NodeIdentity::new("node-x")).await;
    let second = store(&db, "qb-test-lock", NodeIdentity::new("node-x")).await;
    let other = store(&db, "qb-test-lock", NodeIdentity::new("node-y")).await;

    let held = first.hold_node_lock(Duration::ZERO).await.unwrap();
    assert!(held.is_held());
    assert_eq!(held.node(), "node-x");
    match second.hold_node_lock(Duration::from_millis(600)).await {
        Err(StoreError::Conflict(msg)) => {
            assert!(msg.contains("node id node-x is in use"), "{msg}")
        }
        other => panic!("a second lock on the same node name: {other:?}"),
    }
    // Another node name is independent.
    let _y = other.hold_node_lock(Duration::ZERO).await.unwrap();

    drop(held);
    let again = second.hold_node_lock(Duration::from_secs(5)).await.unwrap();
    assert!(again.is_held());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_wakeups_survive_a_dropped_listener() {
    let db = TestDatabase::create().await.unwrap();
    let waiter = store(&db, "qb-test-dropped", NodeIdentity::new("wake-a")).await;
    let sender = store(&db, "qb-test-sender", NodeIdentity::new("wake-b")).await;
    assert!(db.terminate_sessions("qb-test-dropped").await.unwrap() >= 1);
    // Reconnection starts after 250 ms at most.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let task = tokio::spawn(async move {
        let t = Instant::now();
        let job = waiter.claim("wake", Duration::from_secs(20)).await.unwrap();
        (job, t.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let job = sender
        .enqueue(NewJob {
            queue: "wake".into(),
            kind: "diag.sleep".into(),
            params: serde_json::json!({}),
            max_attempts: 1,
            created_by: None,
            schedule_id: None,
        })
        .await
        .unwrap();
    let (got, waited) = task.await.unwrap();
    assert_eq!(got.map(|j| j.id), Some(job.id));
    // Under the 2 s poll: woken by the re-established LISTEN.
    assert!(
        waited < Duration::from_millis(1500),
        "woken after {waited:?}"
    );
}
