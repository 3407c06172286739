use std::sync::Arc;

use qb_core::PubSub;
use tokio::sync::broadcast::error::RecvError;

pub async fn suite(ps: Arc<dyn PubSub>) {
    // Publishing with no subscribers is fine.
    ps.publish("jobs", serde_json::json!({"n": 0}));
    let mut a = ps.subscribe("jobs");
    let mut b = ps.subscribe("jobs");
    let mut other = ps.subscribe("ticks");
    ps.publish("jobs", serde_json::json!({"n": 1}));
    for rx in [&mut a, &mut b] {
        let e = rx.recv().await.unwrap();
        assert_eq!((e.topic.as_str(), e.data["n"].as_i64()), ("jobs", Some(1)));
    }
    assert!(other.try_recv().is_err());

    // A subscriber that never reads does not block publishers; it lags.
    for n in 0..10_000 {
        ps.publish("jobs", serde_json::json!({ "n": n }));
    }
    assert!(matches!(a.recv().await, Err(RecvError::Lagged(_))));
}
