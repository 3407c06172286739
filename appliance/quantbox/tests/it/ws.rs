//! `/ws`: authenticated subscriptions to ticks and job progress.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::Message;

use crate::support::Server;

type Ws = tungstenite::WebSocket<TcpStream>;

fn connect(s: &Server) -> Ws {
    let addr = s.base.trim_start_matches("http://").to_string();
    let stream = TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (ws, _) = tungstenite::client(format!("ws://{addr}/ws"), stream).unwrap();
    ws
}

fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).unwrap();
}

/// Next JSON frame whose topic is `topic`.
fn next(ws: &mut Ws, topic: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert!(Instant::now() < deadline, "no {topic} frame");
        match ws.read().unwrap() {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["topic"] == topic {
                    return v["data"].clone();
                }
            }
            _ => continue,
        }
    }
}

#[test]
fn websocket_streams_ticks_and_jobs_after_auth() {
    let s = Server::start(&[]);
    let t = s.admin_token();

    // Unauthenticated subscriptions are refused; a bad token closes.
    let mut ws = connect(&s);
    send(&mut ws, json!({"subscribe": ["ticks"]}));
    assert_eq!(next(&mut ws, "error")["detail"], "authenticate first");
    send(&mut ws, json!({"auth": "not-a-token"}));
    assert!(
        next(&mut ws, "error")["detail"]
            .as_str()
            .unwrap()
            .contains("token")
    );

    let mut ws = connect(&s);
    send(&mut ws, json!({"auth": t}));
    assert_eq!(next(&mut ws, "authenticated")["username"], "admin");
    send(&mut ws, json!({"subscribe": ["ticks", "jobs", "secrets"]}));
    assert!(
        next(&mut ws, "error")["detail"]
            .as_str()
            .unwrap()
            .contains("unknown topic")
    );
    assert_eq!(
        next(&mut ws, "subscribed")["topics"],
        json!(["ticks", "jobs"])
    );

    let r = s
        .post("/api/v1/market/ticks")
        .bearer_auth(&t)
        .json(&json!([{"symbol": "WS1", "ts": 1_700_000_000_000_000_000i64, "price": 10.5, "size": 2}]))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let tick = next(&mut ws, "ticks");
    assert_eq!(
        (tick["symbol"].as_str(), tick["price"][0].as_f64()),
        (Some("WS1"), Some(10.5))
    );

    let job: Value = s
        .post("/api/v1/jobs")
        .bearer_auth(&t)
        .json(&json!({"kind": "diag.sleep", "params": {"seconds": 0.2, "steps": 2}}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let id = job["id"].as_str().unwrap();
    let mut states = Vec::new();
    while !states.contains(&"succeeded".to_string()) {
        let e = next(&mut ws, "jobs");
        if e["id"] == id {
            states.push(e["state"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(states.first().map(String::as_str), Some("running"));
}
