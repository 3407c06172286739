//! `/api/v1/trading/*` on a real server: manual orders against ingested
//! quotes, risk rejections as problem documents, idempotent client ids,
//! the kill switch, and HALTED / positions / open orders after kill -9.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Server, problem, wait_for};

const T0: i64 = 1_704_157_200_000_000_000;

fn ingest(s: &Server, t: &str, i: i64, price: f64, bid: f64, ask: f64) {
    let ts = T0 + i * 1_000_000_000;
    s.ingest(
        t,
        &json!([{"symbol": "IF2409", "ts": ts, "price": price, "size": 1, "bid": bid, "ask": ask}]),
    );
    // The desk follows the tick feed; wait until it has this quote.
    wait_for(&format!("quote {i} to reach the desk"), || {
        s.get_json(t, "/api/v1/trading/quotes")["IF2409"]["ts"] == ts
    });
}

fn order(s: &Server, t: &str, body: Value) -> reqwest::blocking::Response {
    s.post("/api/v1/trading/orders")
        .bearer_auth(t)
        .json(&body)
        .send()
        .unwrap()
}

#[test]
fn manual_trading_risk_and_the_kill_switch_survive_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = Server::start_in(tmp.path(), &[]);
    let admin = s.admin_token();
    let trader = s.user_token(&admin, "tom", "trader");
    // The default account is the house's: an admin grants it.
    s.grant(&admin, "paper", "tom");
    ingest(&s, &admin, 0, 3500.0, 3499.8, 3500.2);

    // A market buy fills at the ask; the same client id again is the same
    // order (200, not 201) and no second fill.
    let r = order(
        &s,
        &trader,
        json!({"client_id": "m1", "symbol": "IF2409", "side": "buy", "qty": "2"}),
    );
    assert_eq!(r.status(), 201);
    let o: Value = r.json().unwrap();
    assert_eq!(o["state"], "filled", "{o}");
    assert_eq!(o["avg_fill_price"], "3500.2");
    let r = order(
        &s,
        &trader,
        json!({"client_id": "m1", "symbol": "IF2409", "side": "buy", "qty": "2"}),
    );
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().unwrap()["id"], o["id"]);
    assert_eq!(
        s.get_json(&trader, "/api/v1/trading/fills")
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Limits set by the admin; a trader may not.
    let limits = json!({"limits": {"max_order_qty": "5", "price_collar": "0.01"}});
    let r = s
        .http
        .put(s.url("/api/v1/trading/accounts/paper/limits"))
        .bearer_auth(&trader)
        .json(&limits)
        .send()
        .unwrap();
    problem(r, 403);
    let r = s
        .http
        .put(s.url("/api/v1/trading/accounts/paper/limits"))
        .bearer_auth(&admin)
        .json(&limits)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let p = problem(
        order(
            &s,
            &trader,
            json!({"client_id": "big", "symbol": "IF2409", "side": "buy", "qty": "6",
                                  "type": "limit", "price": "3400"}),
        ),
        422,
    );
    assert_eq!(p["type"], "/problems/risk-rejected");
    assert_eq!(p["rule"], "max_order_qty");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("quantity 6 exceeds 5"),
        "{p}"
    );
    let rejected = s.get_json(
        &trader,
        &format!("/api/v1/trading/orders/{}", p["order_id"].as_str().unwrap()),
    );
    assert_eq!(rejected["state"], "rejected");
    let p = problem(
        order(
            &s,
            &trader,
            json!({"client_id": "far", "symbol": "IF2409", "side": "buy", "qty": "1",
                                  "type": "limit", "price": "3400"}),
        ),
        422,
    );
    assert_eq!(p["rule"], "price_collar");
    // Bad input is a validation problem naming the field.
    let p = problem(
        order(
            &s,
            &trader,
            json!({"client_id": "x", "symbol": "IF2409", "side": "buy", "qty": "1", "type": "limit"}),
        ),
        422,
    );
    assert_eq!(p["errors"][0]["field"], "price");

    // Resting orders, then the kill switch.
    for (id, px) in [("l1", "3480"), ("l2", "3470")] {
        let r = order(
            &s,
            &trader,
            json!({"client_id": id, "symbol": "IF2409", "side": "buy", "qty": "1",
                                          "type": "limit", "price": px}),
        );
        assert_eq!(r.status(), 201);
    }
    assert_eq!(
        s.get_json(&trader, "/api/v1/trading/orders")
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let r = s
        .post("/api/v1/trading/kill?reason=drill")
        .bearer_auth(&trader)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let k: Value = r.json().unwrap();
    assert_eq!(k["cancelled"].as_array().unwrap().len(), 2);
    assert!(
        s.get_json(&trader, "/api/v1/trading/orders")
            .as_array()
            .unwrap()
            .is_empty()
    );
    let p = problem(
        order(
            &s,
            &trader,
            json!({"client_id": "after", "symbol": "IF2409", "side": "sell", "qty": "1"}),
        ),
        422,
    );
    assert_eq!(p["rule"], "halted");
    let audit = s.get_json(&admin, "/api/v1/audit?page_size=100");
    let audited = audit["items"].as_array().unwrap();
    assert!(
        audited.iter().any(|e| e["target"]
            .as_str()
            .unwrap_or_default()
            .contains("/trading/kill")),
        "{audit}"
    );
    assert!(
        audited.iter().any(|e| e["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("rejected=max_order_qty")),
        "{audit}"
    );
    // One more resting order would be lost if not persisted: place it on a
    // second account (the trader opens it, so it is theirs), then kill -9.
    let r = s
        .post("/api/v1/trading/accounts")
        .bearer_auth(&trader)
        .json(&json!({"name": "second", "initial_cash": "500000"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = order(
        &s,
        &trader,
        json!({"client_id": "keep", "symbol": "IF2409", "side": "buy", "qty": "1",
                                      "type": "limit", "price": "3490"}),
    );
    assert_eq!(r.status(), 422, "paper is halted");
    let r = s
        .post("/api/v1/trading/orders?account=second")
        .bearer_auth(&trader)
        .json(
            &json!({"client_id": "keep", "symbol": "IF2409", "side": "buy", "qty": "1",
                      "type": "limit", "price": "3490"}),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let positions = s.get_json(&trader, "/api/v1/trading/positions");
    s.kill9();

    let s = Server::start_in(tmp.path(), &[]);
    let admin = s.admin_token();
    let account = s.get_json(&admin, "/api/v1/trading/account");
    assert_eq!(account["halted"], true, "{account}");
    assert_eq!(account["halted_reason"], "drill");
    assert_eq!(s.get_json(&admin, "/api/v1/trading/positions"), positions);
    let open = s.get_json(&admin, "/api/v1/trading/orders?account=second");
    assert_eq!(open.as_array().unwrap().len(), 1, "{open}");
    assert_eq!(open[0]["client_id"], "keep");
    // The restored order still works: the ask comes down to it.
    ingest(&s, &admin, 1, 3489.0, 3488.0, 3489.0);
    wait_for("the restored order to fill", || {
        s.get_json(&admin, "/api/v1/trading/orders?account=second")
            .as_array()
            .unwrap()
            .is_empty()
    });
    let fills = s.get_json(&admin, "/api/v1/trading/fills?account=second");
    assert_eq!(fills[0]["price"], "3490");
    // Only an admin resumes.
    let r = s
        .post("/api/v1/trading/resume")
        .bearer_auth(&admin)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().unwrap()["halted"], false);
    // The daily retention job keeps today's orders (90 days by default).
    let job: Value = s
        .post("/api/v1/jobs")
        .bearer_auth(&admin)
        .json(&json!({"kind": "trading.retention"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let job = s.wait_job(&admin, job["id"].as_str().unwrap(), |j| {
        j["state"] == "succeeded"
    });
    assert_eq!(job["result"]["orders_deleted"], 0, "{job}");
    assert_eq!(
        s.get_json(&admin, "/api/v1/trading/fills?account=second"),
        fills
    );
}

#[test]
fn no_acknowledged_order_is_lost_or_duplicated_by_kill_9() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let tmp = tempfile::tempdir().unwrap();
    let mut s = Server::start_in(tmp.path(), &[]);
    let t = s.admin_token();
    ingest(&s, &t, 0, 3500.0, 3499.8, 3500.2);
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (url, t, acked, stop) = (
            s.url("/api/v1/trading/orders"),
            t.clone(),
            acked.clone(),
            stop.clone(),
        );
        std::thread::spawn(move || {
            let http = reqwest::blocking::Client::new();
            for i in 0.. {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let id = format!("c{i}");
                let body = json!({"client_id": id, "symbol": "IF2409", "side": "buy", "qty": "1",
                                  "type": "limit", "price": format!("{}", 3400 + i % 50)});
                match http.post(&url).bearer_auth(&t).json(&body).send() {
                    Ok(r) if r.status() == 201 => acked.lock().unwrap().push(id),
                    Ok(r) => panic!("order {id}: {}", r.status()),
                    Err(_) => return, // the server is gone
                }
            }
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    s.kill9();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    writer.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 20,
        "only {} orders acknowledged",
        acked.len()
    );

    let s = Server::start_in(tmp.path(), &[]);
    let t = s.admin_token();
    let all = s.get_json(&t, "/api/v1/trading/orders?status=all");
    let ids: Vec<String> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["client_id"].as_str().unwrap().to_string())
        .collect();
    let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "a client id appears twice");
    for id in &acked {
        assert!(unique.contains(id), "acknowledged order {id} lost");
    }
    let open = s.get_json(&t, "/api/v1/trading/orders");
    assert_eq!(
        open.as_array().unwrap().len(),
        ids.len(),
        "all still resting"
    );
    // Idempotency survives the restart: an acknowledged id is that order.
    let r = order(
        &s,
        &t,
        json!({"client_id": acked[0], "symbol": "IF2409", "side": "buy", "qty": "1",
                                 "type": "limit", "price": "3400"}),
    );
    assert_eq!(r.status(), 200);
}
