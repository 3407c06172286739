//! `/ws`: authenticated subscriptions to ticks and job progress.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::Message;

use crate::support::Server;

pub type Ws = tungstenite::WebSocket<TcpStream>;

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

/// Next frame of a private trading channel (orders, fills, positions,
/// strategies): its topic and data.
pub fn next_private(ws: &mut Ws) -> (String, Value) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert!(Instant::now() < deadline, "no private frame");
        if let Message::Text(t) = ws.read().unwrap() {
            let v: Value = serde_json::from_str(&t).unwrap();
            let topic = v["topic"].as_str().unwrap_or_default().to_string();
            if ["orders", "fills", "positions", "strategies"].contains(&topic.as_str()) {
                return (topic, v["data"].clone());
            }
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

/// The next frame's topic and data, or None when the server closed the
/// connection (a close frame or the socket ending).
fn next_or_closed(ws: &mut Ws) -> Option<(String, Value)> {
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                return Some((
                    v["topic"].as_str().unwrap_or("").to_string(),
                    v["data"].clone(),
                ));
            }
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// Reads until the server closes; returns the topics seen on the way.
fn until_closed(ws: &mut Ws) -> Vec<(String, Value)> {
    let mut seen = Vec::new();
    while let Some(f) = next_or_closed(ws) {
        seen.push(f);
        assert!(seen.len() < 100, "the server did not close: {seen:?}");
    }
    seen
}

fn authed(s: &Server, token: &str) -> Ws {
    let mut ws = connect(s);
    send(&mut ws, json!({"auth": token}));
    next(&mut ws, "authenticated");
    ws
}

/// Issue 18's /ws attacks: an anonymous client that never authenticates
/// or sends too much, a listener whose session ends, more connections or
/// channels than allowed; each shown refused.
#[test]
fn the_socket_is_bounded_and_follows_the_session() {
    let s = Server::start(&[
        ("QUANTBOX_LIMITS__WS_AUTH_SECS", "1"),
        ("QUANTBOX_LIMITS__WS_RECHECK_SECS", "1"),
        ("QUANTBOX_LIMITS__WS_PER_USER", "2"),
        ("QUANTBOX_LIMITS__WS_PER_ADDRESS", "64"),
        ("QUANTBOX_LIMITS__WS_SUBSCRIPTIONS", "2"),
        ("QUANTBOX_RATE_LIMIT__ENABLED", "false"),
    ]);
    let admin = s.admin_token();

    // Silent: closed after the authentication window.
    let mut ws = connect(&s);
    let seen = until_closed(&mut ws);
    assert!(
        seen.iter()
            .any(|(t, d)| t == "error" && d["detail"] == "authentication required"),
        "{seen:?}"
    );
    // Chatty before authenticating: closed after 4 KiB.
    let mut ws = connect(&s);
    let filler = "x".repeat(1000);
    for _ in 0..5 {
        if ws
            .send(Message::Text(json!({ "pad": filler }).to_string().into()))
            .is_err()
        {
            break;
        }
    }
    let seen = until_closed(&mut ws);
    assert!(
        seen.iter().any(|(_, d)| d["detail"]
            .as_str()
            .unwrap_or("")
            .contains("before authenticating")),
        "{seen:?}"
    );
    // An authenticated client's message beyond 16 KiB ends the connection.
    let mut ws = authed(&s, &admin);
    let big = "y".repeat(20 * 1024);
    let _ = ws.send(Message::Text(
        json!({ "subscribe": [big] }).to_string().into(),
    ));
    until_closed(&mut ws);

    // Channels per connection.
    let mut ws = authed(&s, &admin);
    send(&mut ws, json!({"subscribe": ["ticks", "jobs", "orders"]}));
    let e = next(&mut ws, "error");
    assert!(
        e["detail"].as_str().unwrap().contains("at most 2 channels"),
        "{e}"
    );
    assert_eq!(
        next(&mut ws, "subscribed")["topics"],
        json!(["jobs", "ticks"])
    );
    drop(ws);

    // Connections per user (2).
    let t1 = s.user_token(&admin, "wsa", "trader");
    let a = authed(&s, &t1);
    let b = authed(&s, &t1);
    let mut c = connect(&s);
    send(&mut c, json!({"auth": t1}));
    let e = next(&mut c, "error");
    assert!(
        e["detail"].as_str().unwrap().contains("of this user"),
        "{e}"
    );
    until_closed(&mut c);
    drop((a, b, c));

    // The session is followed: a logout ends the listener's socket...
    let pair = s.login("wsa", "wsa-password-123");
    let token = pair["access_token"].as_str().unwrap();
    let mut ws = authed(&s, token);
    let r = s
        .post("/api/v1/auth/logout")
        .bearer_auth(token)
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    let seen = until_closed(&mut ws);
    assert!(seen.iter().any(|(t, _)| t == "session_ended"), "{seen:?}");
    // ...so does disabling the user, while a renewed token of the same
    // user keeps a socket open past the end of the session it started with.
    let first = s.login("wsa", "wsa-password-123");
    let mut ws = authed(&s, first["access_token"].as_str().unwrap());
    let second = s.login("wsa", "wsa-password-123");
    send(&mut ws, json!({"auth": second["access_token"]}));
    next(&mut ws, "authenticated");
    let r = s
        .post("/api/v1/auth/logout")
        .bearer_auth(first["access_token"].as_str().unwrap())
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    // Still open after two checks: it answers a subscription.
    std::thread::sleep(Duration::from_millis(2200));
    send(&mut ws, json!({"subscribe": ["ticks"]}));
    next(&mut ws, "subscribed");
    let r = s
        .http
        .patch(s.url("/api/v1/users/wsa"))
        .bearer_auth(&admin)
        .json(&json!({"disabled": true}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = until_closed(&mut ws);
    assert!(seen.iter().any(|(t, _)| t == "session_ended"), "{seen:?}");
}

/// An access token's expiry ends the socket it opened.
#[test]
fn an_expiring_token_ends_its_socket() {
    let s = Server::start(&[
        ("QUANTBOX_AUTH__ACCESS_TTL_SECS", "2"),
        ("QUANTBOX_LIMITS__WS_RECHECK_SECS", "1"),
    ]);
    let mut ws = authed(&s, &s.admin_token());
    let started = Instant::now();
    let seen = until_closed(&mut ws);
    let ended = seen
        .iter()
        .find(|(t, _)| t == "session_ended")
        .unwrap_or_else(|| panic!("{seen:?}"));
    assert!(
        ended.1["detail"].as_str().unwrap().contains("expired"),
        "{ended:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// Connections per client address: beyond the cap the upgrade is 429.
#[test]
fn connections_per_address_are_capped() {
    let s = Server::start(&[("QUANTBOX_LIMITS__WS_PER_ADDRESS", "2")]);
    let (a, b) = (connect(&s), connect(&s));
    let addr = s.base.trim_start_matches("http://").to_string();
    let stream = TcpStream::connect(&addr).unwrap();
    match tungstenite::client(format!("ws://{addr}/ws"), stream) {
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(r))) => {
            assert_eq!(r.status(), 429);
            let body =
                String::from_utf8_lossy(r.body().as_deref().unwrap_or_default()).into_owned();
            assert!(body.contains("2 WebSocket connections"), "{body}");
        }
        other => panic!(
            "a third connection from one address was not refused: ok={}",
            other.is_ok()
        ),
    }
    drop((a, b));
}
