//! The [`PubSub`] suite. Delivery may be asynchronous (the cluster adapter
//! carries every event through Redis, also to the publishing node), so
//! every wait for an event has a deadline instead of expecting it at once,
//! and "nothing arrives" is checked after a grace period.

use std::sync::Arc;
use std::time::{Duration, Instant};

use qb_core::PubSub;
use qb_core::seams::Event;
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::TryRecvError;

/// How long an event may take to arrive.
const DELIVERY: Duration = Duration::from_secs(10);
/// How long to wait before concluding that no event is coming.
const GRACE: Duration = Duration::from_millis(300);

/// The next event of `rx`, which must arrive within [`DELIVERY`].
async fn next(rx: &mut Receiver<Arc<Event>>) -> Arc<Event> {
    match tokio::time::timeout(DELIVERY, rx.recv()).await {
        Ok(Ok(e)) => e,
        Ok(Err(e)) => panic!("receiving an event: {e}"),
        Err(_) => panic!("no event within {DELIVERY:?}"),
    }
}

pub async fn suite(ps: Arc<dyn PubSub>) {
    // Publishing with no subscribers is fine. (With asynchronous delivery
    // this event may still be in flight when the subscribers below join,
    // so they may see it first; they must then see the next one.)
    ps.publish("jobs", serde_json::json!({"n": 0}));
    let mut a = ps.subscribe("jobs");
    let mut b = ps.subscribe("jobs");
    let mut other = ps.subscribe("ticks");
    ps.publish("jobs", serde_json::json!({"n": 1}));
    for rx in [&mut a, &mut b] {
        let mut e = next(rx).await;
        if e.data["n"].as_i64() == Some(0) {
            e = next(rx).await;
        }
        assert_eq!((e.topic.as_str(), e.data["n"].as_i64()), ("jobs", Some(1)));
    }
    tokio::time::sleep(GRACE).await;
    assert!(
        matches!(other.try_recv(), Err(TryRecvError::Empty)),
        "an event of another topic arrived"
    );

    // A subscriber that never reads does not block publishers; it lags.
    // Publish in rounds until it reports `Lagged` (delivery may trail the
    // publishing; the probe reads one event per round at most).
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut n = 0u64;
    loop {
        let started = Instant::now();
        for _ in 0..10_000 {
            ps.publish("jobs", serde_json::json!({ "n": n }));
            n += 1;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "publishing 10,000 events took {:?}: publishers are blocked",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        match a.try_recv() {
            Err(TryRecvError::Lagged(_)) => break,
            Ok(_) | Err(TryRecvError::Empty) => {}
            Err(TryRecvError::Closed) => panic!("subscription closed"),
        }
        assert!(
            Instant::now() < deadline,
            "a subscriber that never reads did not report Lagged after {n} events"
        );
    }
    // After the gap it gets the newest events again.
    let e = next(&mut a).await;
    assert_eq!(e.topic, "jobs");
}

/// Events published on `a` reach the subscribers of `b` and of `a`, each
/// in publish order. `a` and `b` are two instances over one backend (two
/// nodes of a cluster), or the same instance twice for an in-process one.
pub async fn across_instances(a: Arc<dyn PubSub>, b: Arc<dyn PubSub>) {
    const N: i64 = 1000;
    let mut on_a = a.subscribe("across");
    let mut on_b = b.subscribe("across");
    for n in 0..N {
        a.publish("across", serde_json::json!({ "n": n }));
    }
    for (who, rx) in [("a", &mut on_a), ("b", &mut on_b)] {
        for n in 0..N {
            let e = next(rx).await;
            assert_eq!(
                (e.topic.as_str(), e.data["n"].as_i64()),
                ("across", Some(n)),
                "subscriber of {who}"
            );
        }
    }
    // And the other way round.
    b.publish("across", serde_json::json!({"from": "b"}));
    for rx in [&mut on_a, &mut on_b] {
        assert_eq!(next(rx).await.data["from"], "b");
    }
}
