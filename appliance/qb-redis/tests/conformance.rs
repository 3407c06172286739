//! The pub/sub and rate-limit suites against Redis (`QB_TEST_REDIS`, else
//! `redis://127.0.0.1:6379`), plus what only the Redis adapters can get
//! wrong: prefixes that must not see each other, the bounded publish
//! queue, reconnecting, and failing fast. Each test works under its own
//! random prefix and deletes its keys at the end (rate-limit keys also
//! expire by themselves within a second). Nothing is kept across a Redis
//! restart, and no test relies on anything surviving one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use qb_conformance::{limits, pubsub};
use qb_core::{PubSub, Quota, RateLimiter, StoreError};
use qb_redis::{RedisPubSub, RedisRateLimiter};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

fn url() -> String {
    std::env::var("QB_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn prefix() -> String {
    format!("qbt-{}", uuid::Uuid::now_v7().simple())
}

async fn cleanup(prefix: &str) {
    qb_redis::delete_prefix(&url(), prefix).await.unwrap();
}

async fn pubsub_at(prefix: &str) -> RedisPubSub {
    RedisPubSub::connect(&url(), prefix).await.unwrap()
}

async fn limiter_at(prefix: &str) -> RedisRateLimiter {
    RedisRateLimiter::connect(&url(), prefix).await.unwrap()
}

#[tokio::test]
async fn redis_pubsub() {
    let p = prefix();
    pubsub::suite(Arc::new(pubsub_at(&p).await)).await;
    cleanup(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_pubsub_across_instances() {
    let p = prefix();
    let a = Arc::new(pubsub_at(&p).await);
    let b = Arc::new(pubsub_at(&p).await);
    pubsub::across_instances(a, b).await;
    cleanup(&p).await;
}

#[tokio::test]
async fn redis_pubsub_prefixes_are_separate() {
    let (p, q) = (prefix(), prefix());
    let ours = pubsub_at(&p).await;
    let theirs = pubsub_at(&q).await;
    let mut mine = ours.subscribe("jobs");
    let mut foreign = theirs.subscribe("jobs");
    ours.publish("jobs", serde_json::json!({"from": "p"}));
    theirs.publish("jobs", serde_json::json!({"from": "q"}));
    let got = tokio::time::timeout(Duration::from_secs(10), mine.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.data["from"], "p");
    let got = tokio::time::timeout(Duration::from_secs(10), foreign.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.data["from"], "q");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(matches!(mine.try_recv(), Err(TryRecvError::Empty)));
    assert!(matches!(foreign.try_recv(), Err(TryRecvError::Empty)));
    cleanup(&p).await;
    cleanup(&q).await;
}

#[tokio::test]
async fn redis_pubsub_full_queue_drops_and_counts() {
    let p = prefix();
    let ps = pubsub_at(&p).await;
    let mut rx = ps.subscribe("flood");
    // The publisher task cannot run while this (single-threaded) test does
    // not yield: the queue fills up and the rest is dropped, not waited for.
    let started = Instant::now();
    for n in 0..150_000 {
        ps.publish("flood", serde_json::json!(n));
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(ps.dropped(), 50_000);
    // What was queued still goes out, in order (this subscriber lags
    // behind 100,000 events, so it sees the newest): the last one queued
    // arrives, and nothing after it.
    let mut last = -1;
    while last < 99_999 {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Ok(e)) => {
                let n = e.data.as_i64().unwrap();
                assert!(n > last, "{n} after {last}");
                last = n;
            }
            Ok(Err(RecvError::Lagged(_))) => {}
            other => panic!("waiting for the last queued event: {other:?}"),
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
    cleanup(&p).await;
}

#[tokio::test]
async fn redis_connect_fails_fast() {
    // Nothing listens on port 1.
    let started = Instant::now();
    let e = RedisPubSub::connect("redis://127.0.0.1:1", "x").await.err();
    assert!(matches!(e, Some(StoreError::Backend(_))), "{e:?}");
    let e = RedisRateLimiter::connect("redis://127.0.0.1:1", "x")
        .await
        .err();
    assert!(matches!(e, Some(StoreError::Backend(_))), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let e = RedisPubSub::connect("nonsense://", "x").await.err();
    assert!(matches!(e, Some(StoreError::Invalid(_))), "{e:?}");
}

/// A TCP proxy to Redis whose connections the test can cut.
struct Proxy {
    port: u16,
    cut: tokio::sync::watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let target = url()
            .trim_start_matches("redis://")
            .trim_end_matches('/')
            .to_string();
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let target = target.clone();
                let mut cuts = cuts.clone();
                cuts.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cuts.changed() => {}
                    }
                    let _ = inbound.shutdown().await;
                });
            }
        });
        Proxy { port, cut, task }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Closes every connection made so far (new ones still get through).
    fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_pubsub_resubscribes_after_connection_loss() {
    let proxy = Proxy::start().await;
    let p = prefix();
    let ps = RedisPubSub::connect(&proxy.url(), &p).await.unwrap();
    // Published straight to Redis, so only the subscriber side is tested.
    let direct = pubsub_at(&p).await;
    let mut rx = ps.subscribe("jobs");
    direct.publish("jobs", serde_json::json!({"n": 1}));
    let e = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.data["n"], 1);

    proxy.cut();
    // Events during the gap are lost; once resubscribed, events flow again.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 2;
    loop {
        direct.publish("jobs", serde_json::json!({ "n": n }));
        n += 1;
        if let Ok(Ok(e)) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
            assert!(e.data["n"].as_i64().unwrap() >= 2);
            break;
        }
        assert!(Instant::now() < deadline, "no events after reconnecting");
    }
    cleanup(&p).await;
}

#[tokio::test]
async fn redis_limits() {
    let p = prefix();
    limits::suite(Arc::new(limiter_at(&p).await)).await;
    cleanup(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_limits_shared() {
    let p = prefix();
    let a: Arc<dyn RateLimiter> = Arc::new(limiter_at(&p).await);
    let b: Arc<dyn RateLimiter> = Arc::new(limiter_at(&p).await);
    limits::shared(a, b).await;
    cleanup(&p).await;
}

#[tokio::test]
async fn redis_limits_keys_expire_and_stay_under_the_prefix() {
    let p = prefix();
    let rl = limiter_at(&p).await;
    let q = Quota {
        per_sec: 20,
        burst: 3,
    };
    assert_eq!(rl.check("api", "10.0.0.1", q).await.unwrap(), None);
    let mut conn = redis::Client::open(url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let key = format!("{p}:rl:api:10.0.0.1");
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        ttl > 0 && ttl <= 50,
        "{key}: TTL {ttl} ms, expected one period"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let exists: bool = redis::cmd("EXISTS")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!exists, "an idle client's key outlives its burst window");
    cleanup(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_limits_fail_while_redis_is_away() {
    let proxy = Proxy::start().await;
    let p = prefix();
    let rl = RedisRateLimiter::connect(&proxy.url(), &p).await.unwrap();
    let q = Quota {
        per_sec: 20,
        burst: 3,
    };
    assert_eq!(rl.check("api", "k", q).await.unwrap(), None);
    drop(proxy); // stops listening and cuts the connection
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let e = rl.check("api", "k", q).await.err();
    assert!(matches!(e, Some(StoreError::Backend(_))), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let e = rl.check("api", "k", q).await.err();
    assert!(matches!(e, Some(StoreError::Backend(_))), "{e:?}");
    cleanup(&p).await;
}
