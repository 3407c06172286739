//! `/ws`: authenticated subscriptions to ticks and job progress.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::Message;

use crate::support::Server;

type Ws = tungstenite::WebSocket<TcpStream>;

pub fn connect(s: &Server) -> Ws {
    let addr = s.base.trim_start_matches("http://").to_string();
    let stream = TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (ws, _) = tungstenite::client(format!("ws://{addr}/ws"), stream).unwrap();
    ws
}

pub fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).unwrap();
}

/// Next JSON frame whose topic is `topic`.
pub fn next(ws: &mut Ws, topic: &str) -> Value {
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
            .contains("unknown channel")
    );
    assert_eq!(
        next(&mut ws, "subscribed")["topics"],
        json!(["jobs", "ticks"])
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

#[test]
fn trading_channels_and_a_slow_consumer_that_is_cut_off() {
    let s = Server::start(&[]);
    let t = s.admin_token();
    let mut fast = connect(&s);
    send(&mut fast, json!({"auth": t}));
    next(&mut fast, "authenticated");
    send(
        &mut fast,
        json!({"subscribe": ["ticks:IF2409", "bars:IF2409:1m", "orders", "fills", "positions", "bars:IF2409:2x"]}),
    );
    assert!(
        next(&mut fast, "error")["detail"]
            .as_str()
            .unwrap()
            .contains("interval")
    );
    assert_eq!(
        next(&mut fast, "subscribed")["topics"],
        json!([
            "bars:IF2409:1m",
            "fills",
            "orders",
            "positions",
            "ticks:IF2409"
        ])
    );
    // A client that subscribes and never reads.
    let mut slow = connect(&s);
    send(&mut slow, json!({"auth": t}));
    send(&mut slow, json!({"subscribe": ["ticks", "ticks:IF2409"]}));

    let base = 1_704_157_200_000_000_000i64;
    let batches = 1500;
    let per = 200;
    let ingest = |k: i64| {
        let rows: Vec<Value> = (0..per)
            .map(|i| {
                let n = k * per + i;
                json!({"symbol": "IF2409", "ts": base + n * 10_000_000, "price": 3500.0 + (n % 7) as f64,
                       "size": 1, "bid": 3499.8, "ask": 3500.2})
            })
            .collect();
        s.ingest(&t, &Value::Array(rows));
    };
    // The fast client reads as the ticks come; the slow one's queue fills.
    let mut got = 0;
    let mut closed_bars = 0;
    let mut cut_off = false;
    for k in 0..batches {
        ingest(k);
        // Once the server has cut the slow client off, it reads what is
        // left: the frames already on the wire, the notice, the close.
        if !cut_off && s.log().contains("websocket client too slow") {
            drain_slow(&s, &mut slow);
            cut_off = true;
        }
        loop {
            let Message::Text(txt) = fast.read().unwrap() else {
                continue;
            };
            let v: Value = serde_json::from_str(&txt).unwrap();
            match v["topic"].as_str().unwrap() {
                "ticks:IF2409" => {
                    assert_eq!(v["data"]["ts"].as_array().unwrap().len(), per as usize);
                    got += 1;
                    break;
                }
                "bars:IF2409:1m" => closed_bars += v["data"]["closed"].as_bool().unwrap() as u32,
                other => panic!("unexpected {other}: {v}"),
            }
        }
    }
    assert_eq!(got, batches);
    assert!(cut_off, "the slow client was never cut off");
    // 1500 batches of 200 ticks 10 ms apart span 50 minutes.
    assert!(closed_bars >= 45, "{closed_bars}");

    // Orders, fills and positions stream as they happen.
    let r = s
        .post("/api/v1/trading/orders")
        .bearer_auth(&t)
        .json(&json!({"client_id": "ws1", "symbol": "IF2409", "side": "buy", "qty": "1"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 3 {
        let Message::Text(txt) = fast.read().unwrap() else {
            continue;
        };
        let v: Value = serde_json::from_str(&txt).unwrap();
        let topic = v["topic"].as_str().unwrap().to_string();
        if topic == "fills" {
            assert_eq!(v["data"]["price"], "3500.2");
        }
        if ["orders", "fills", "positions"].contains(&topic.as_str()) {
            seen.insert(topic);
        }
    }
}

/// Reads a cut-off client to its end: whether it got the notice.
fn drain_slow(s: &Server, slow: &mut Ws) {
    slow.get_mut()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut told = false;
    let mut frames = 0;
    let end = loop {
        match slow.read() {
            Ok(Message::Text(txt)) => {
                let v: Value = serde_json::from_str(&txt).unwrap();
                frames += 1;
                told |= v["topic"] == "slow_consumer";
            }
            Ok(Message::Close(c)) => break format!("close {c:?}"),
            Err(e) => break format!("error {e}"),
            Ok(_) => {}
        }
    };
    assert!(
        told,
        "the slow consumer got no notice ({frames} frames, then {end}); log:\n{}",
        s.log()
            .lines()
            .filter(|l| l.contains("slow"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
