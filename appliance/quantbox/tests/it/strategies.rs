//! Live strategies on a real server: a replay feed drives the SMA plugin,
//! which trades through the desk; hot swap; a trapping plugin; the kill
//! switch stops strategies; a running strategy resumes after kill -9.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Server, component, problem, wait_for};

const T0: i64 = 1_704_157_200_000_000_000;

/// Three slow sine cycles of IF2409, one tick per second.
fn ticks(n: i64) -> Value {
    let rows: Vec<Value> = (0..n)
        .map(|i| {
            let p =
                (3500.0 + 20.0 * (i as f64 * 6.0 * std::f64::consts::PI / n as f64).sin()).round();
            json!({"symbol": "IF2409", "ts": T0 + i * 1_000_000_000, "price": p, "size": 1,
                   "bid": p - 0.2, "ask": p + 0.2})
        })
        .collect();
    Value::Array(rows)
}

fn upload(s: &Server, t: &str, name: &str) {
    let r = s.upload_plugin(t, component(name));
    assert!(r.status().is_success(), "{name}: {}", r.status());
}

fn start(s: &Server, t: &str, body: Value) -> reqwest::blocking::Response {
    s.post("/api/v1/strategies")
        .bearer_auth(t)
        .json(&body)
        .send()
        .unwrap()
}

#[test]
fn replayed_ticks_drive_a_live_strategy_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = Server::start_in(tmp.path(), &[]);
    let admin = s.admin_token();
    let t = s.user_token(&admin, "tara", "trader");
    // Trades the house account and feeds the market (ticks, replays).
    s.grant(&admin, "paper", "tara");
    s.allow_feed(&admin, "tara");
    // Stored ticks (the desk sees them live as they are ingested).
    s.ingest(&t, &ticks(600));
    upload(&s, &t, "sma_crossover");
    upload(&s, &t, "misbehave");

    let r = start(
        &s,
        &t,
        json!({"plugin": "sma-crossover", "params": {"fast": 5, "slow": 20, "size": 1},
                                 "symbols": ["IF2409"], "interval": "tick"}),
    );
    assert_eq!(r.status(), 201);
    let sma: Value = r.json().unwrap();
    let id = sma["id"].as_str().unwrap().to_string();
    assert_eq!(sma["status"], "running");
    assert_eq!(sma["plugin_label"], "sma-crossover@0.1.0");
    assert_eq!(
        s.get_json(&t, "/api/v1/strategies")
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Replay the stored ticks as fast as they are taken.
    let r = s
        .post("/api/v1/trading/replays")
        .bearer_auth(&t)
        .json(&json!({"symbols": ["IF2409"], "speed": 0}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    wait_for("the replay", || {
        s.get_json(&t, "/api/v1/trading/replays")[0]["done"] == true
    });
    let published = s.get_json(&t, "/api/v1/trading/replays")[0]["published"].clone();
    assert_eq!(published, 600);
    let mine = |f: &Value| f["strategy"] == id.as_str();
    wait_for("the strategy's fills", || {
        s.get_json(&t, "/api/v1/trading/fills")
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| mine(f))
            .count()
            >= 4
    });
    // Let the strategy drain its inbox, then check the books agree.
    std::thread::sleep(Duration::from_millis(500));
    let fills = s.get_json(&t, "/api/v1/trading/fills");
    let net: f64 = fills
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| mine(f))
        .map(|f| {
            let q: f64 = f["qty"].as_str().unwrap().parse().unwrap();
            if f["side"] == "buy" { q } else { -q }
        })
        .sum();
    let positions = s.get_json(&t, "/api/v1/trading/positions");
    let held: f64 = positions
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["strategy"] == id.as_str())
        .map_or(0.0, |p| p["qty"].as_str().unwrap().parse().unwrap());
    assert_eq!(held, net, "{positions}");
    assert!(held == 0.0 || held == 1.0, "long-only, size 1: {held}");
    let account = s.get_json(&t, "/api/v1/trading/account");
    assert!(
        account["pnl_by_strategy"][id.as_str()].is_string(),
        "{account}"
    );
    let metrics = s.get("/metrics").send().unwrap().text().unwrap();
    assert!(
        metrics.contains("quantbox_strategies_running 1"),
        "{metrics}"
    );

    // Hot swap: a plugin that refuses the strategy's parameters does not
    // replace it; the same plugin again does, with the state handed over.
    let r = s
        .post(&format!("/api/v1/strategies/{id}/swap"))
        .bearer_auth(&t)
        .json(&json!({"plugin": "misbehave"}))
        .send()
        .unwrap();
    let p = problem(r, 422);
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("old version keeps running"),
        "{p}"
    );
    let doc = s.get_json(&t, &format!("/api/v1/strategies/{id}"));
    assert_eq!(
        (doc["status"].clone(), doc["swaps"].clone()),
        (json!("running"), json!(0))
    );
    let r = s
        .post(&format!("/api/v1/strategies/{id}/swap"))
        .bearer_auth(&t)
        .json(&json!({"plugin": "sma-crossover@0.1.0"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().unwrap()["swaps"], 1);
    // The new instance started from the old one's history (20 closes: the
    // slow average's window), which it reports on its first tick.
    s.ingest(&t, &json!([{"symbol": "IF2409", "ts": T0 + 900 * 1_000_000_000i64, "price": 3500.0, "size": 1}]));
    wait_for("the swapped instance's first log line", || {
        s.get_json(&t, &format!("/api/v1/strategies/{id}/logs"))
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["message"] == "resumed with 20 closes of history")
    });

    // A plugin that traps fails its strategy only.
    let r = start(
        &s,
        &t,
        json!({"plugin": "misbehave", "params": {"mode": 3},
                                 "symbols": ["IF2409"], "interval": "tick"}),
    );
    assert_eq!(r.status(), 201);
    let bad = r.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.ingest(&t, &json!([{"symbol": "IF2409", "ts": T0 + 1000 * 1_000_000_000i64, "price": 3500.0, "size": 1}]));
    wait_for("the trap", || {
        s.get_json(&t, &format!("/api/v1/strategies/{bad}"))["status"] == "failed"
    });
    let failed = s.get_json(&t, &format!("/api/v1/strategies/{bad}"));
    assert!(
        failed["error"]
            .as_str()
            .unwrap_or_default()
            .contains("trap"),
        "{failed}"
    );
    assert_eq!(
        s.get_json(&t, &format!("/api/v1/strategies/{id}"))["status"],
        "running"
    );

    // A strategy's own limits: every order it tries is rejected, and each
    // rejection is audited under the strategy's name.
    let r = start(
        &s,
        &t,
        json!({"plugin": "sma-crossover", "params": {"fast": 5, "slow": 20, "size": 1},
                                 "symbols": ["IF2409"], "interval": "tick",
                                 "limits": {"max_order_qty": "0.5"}}),
    );
    assert_eq!(r.status(), 201);
    let capped = r.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = s
        .post("/api/v1/trading/replays")
        .bearer_auth(&t)
        .json(&json!({"symbols": ["IF2409"], "speed": 0}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let actor = format!("strategy:{capped}");
    wait_for("an audited risk rejection", || {
        s.get_json(&admin, "/api/v1/audit?page_size=100")["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| {
                e["actor"] == actor.as_str()
                    && e["action"] == "trading.risk_reject"
                    && e["detail"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("rule=max_order_qty")
            })
    });
    let r = s
        .post(&format!("/api/v1/strategies/{capped}/stop"))
        .bearer_auth(&t)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);

    // kill -9 with the SMA strategy running: it resumes.
    s.kill9();
    let s = Server::start_in(tmp.path(), &[]);
    let admin = s.admin_token();
    let doc = s.get_json(&admin, &format!("/api/v1/strategies/{id}"));
    assert_eq!(doc["status"], "running", "{doc}");
    assert_eq!(doc["swaps"], 1);

    // The kill switch stops it and halts the account.
    let r = s
        .post("/api/v1/trading/kill")
        .bearer_auth(&admin)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let k: Value = r.json().unwrap();
    assert_eq!(k["stopped_strategies"], json!([id]));
    assert_eq!(
        s.get_json(&admin, &format!("/api/v1/strategies/{id}"))["status"],
        "stopped"
    );
    assert_eq!(
        s.get_json(&admin, "/api/v1/trading/account")["halted"],
        true
    );
}

/// A restart (SIGTERM, as `systemctl restart` sends) keeps a live
/// strategy's state up to its last tick: it is snapshotted as it stops,
/// not only every few seconds, and resumes from there.
#[test]
fn a_restart_keeps_the_strategy_state_to_its_last_tick() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = Server::start_in(tmp.path(), &[]);
    let admin = s.admin_token();
    upload(&s, &admin, "sma_crossover");
    let r = start(
        &s,
        &admin,
        json!({"plugin": "sma-crossover", "params": {"fast": 5, "slow": 20, "size": 1},
               "symbols": ["IF2409"], "interval": "tick"}),
    );
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Seven closes, well inside one periodic snapshot interval.
    let all = ticks(8);
    let rows = all.as_array().unwrap();
    s.ingest(&admin, &Value::Array(rows[..7].to_vec()));
    let last = rows[6]["ts"].clone();
    wait_for("the last tick to be live", || {
        s.get_json(&admin, "/api/v1/trading/quotes")["IF2409"]["ts"] == last
    });
    std::thread::sleep(Duration::from_millis(300));
    let (status, _) = s.terminate();
    assert!(status.success(), "{status}");

    let s = Server::start_in(tmp.path(), &[]);
    let admin = s.admin_token();
    assert_eq!(
        s.get_json(&admin, &format!("/api/v1/strategies/{id}"))["status"],
        "running"
    );
    s.ingest(&admin, &Value::Array(rows[7..].to_vec()));
    wait_for("the resumed instance's first log line", || {
        s.get_json(&admin, &format!("/api/v1/strategies/{id}/logs"))
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["message"] == "resumed with 7 closes of history")
    });
}
