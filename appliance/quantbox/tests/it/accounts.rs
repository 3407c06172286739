//! Issue 18's ownership attacks, each shown refused: trader B acting on
//! trader A's paper account (orders, reads, cancels, the kill switch,
//! strategies, A's order by its client id), listening to A's fills on
//! `/ws`, and posting a tick at ask = 1 without the feed permission to
//! fill A's resting buy. Then what grants do: a trader owns the account it
//! opens, an admin grants and revokes, a viewer granted an account reads
//! it, an API key acts with its owner's grants, a deleted user's grants go.

use serde_json::{Value, json};

use crate::support::{Server, component, problem, wait_for};
use crate::ws::{connect, next, send};

const T0: i64 = 1_704_157_200_000_000_000;

fn quote(s: &Server, token: &str, i: i64, bid: f64, ask: f64) -> reqwest::blocking::Response {
    s.post("/api/v1/market/ticks")
        .bearer_auth(token)
        .json(
            &json!([{"symbol": "IF2409", "ts": T0 + i * 1_000_000_000, "price": (bid + ask) / 2.0,
                       "size": 1, "bid": bid, "ask": ask}]),
        )
        .send()
        .unwrap()
}

/// An admin's quote, waited for at the desk.
fn admin_quote(s: &Server, admin: &str, i: i64, bid: f64, ask: f64) {
    assert_eq!(quote(s, admin, i, bid, ask).status(), 200);
    let ts = T0 + i * 1_000_000_000;
    wait_for("the quote at the desk", || {
        s.get_json(admin, "/api/v1/trading/quotes")["IF2409"]["ts"] == ts
    });
}

fn open_account(s: &Server, token: &str, name: &str) {
    let r = s
        .post("/api/v1/trading/accounts")
        .bearer_auth(token)
        .json(&json!({"name": name, "initial_cash": "1000000"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());
}

fn order(s: &Server, token: &str, account: &str, body: Value) -> reqwest::blocking::Response {
    s.post(&format!("/api/v1/trading/orders?account={account}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .unwrap()
}

fn get(s: &Server, token: &str, path: &str) -> reqwest::blocking::Response {
    s.get(path).bearer_auth(token).send().unwrap()
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect()
}

/// 403 as a problem document saying the account is not granted.
fn not_granted(r: reqwest::blocking::Response) {
    let doc = problem(r, 403);
    assert!(
        doc["detail"].as_str().unwrap().contains("not granted"),
        "{doc}"
    );
}

#[test]
fn a_trader_cannot_act_on_another_traders_account() {
    let s = Server::start(&[]);
    let admin = s.admin_token();
    let ann = s.user_token(&admin, "ann", "trader");
    let ben = s.user_token(&admin, "ben", "trader");
    let vera = s.user_token(&admin, "vera", "viewer");

    // A trader opening an account owns it; each sees only their own, the
    // admin every one. The default account is the house's: admins only
    // until one grants it.
    open_account(&s, &ann, "ann-desk");
    open_account(&s, &ben, "ben-desk");
    assert_eq!(
        names(&s.get_json(&ann, "/api/v1/trading/accounts")),
        ["ann-desk"]
    );
    assert_eq!(
        names(&s.get_json(&ben, "/api/v1/trading/accounts")),
        ["ben-desk"]
    );
    assert_eq!(
        names(&s.get_json(&admin, "/api/v1/trading/accounts")),
        ["ann-desk", "ben-desk", "paper"]
    );
    not_granted(get(&s, &ann, "/api/v1/trading/account"));
    let grants = s.get_json(&admin, "/api/v1/trading/accounts/ann-desk/grants");
    assert_eq!(grants[0]["username"], "ann", "{grants}");
    assert_eq!(grants[0]["granted_by"], "ann");

    admin_quote(&s, &admin, 0, 3499.8, 3500.2);
    let rest = json!({"client_id": "a1", "symbol": "IF2409", "side": "buy", "qty": "1",
                      "type": "limit", "price": "3400"});
    let r = order(&s, &ann, "ann-desk", rest.clone());
    assert_eq!(r.status(), 201);
    let a1: Value = r.json().unwrap();
    let id = a1["id"].as_str().unwrap();

    // Ben against ann's account: every trading call refused, nothing changed.
    not_granted(order(
        &s,
        &ben,
        "ann-desk",
        json!({"client_id": "b1", "symbol": "IF2409", "side": "sell", "qty": "1"}),
    ));
    // Reusing ann's client id no longer answers with ann's order.
    not_granted(order(&s, &ben, "ann-desk", rest.clone()));
    for path in [
        "/api/v1/trading/orders?account=ann-desk".to_string(),
        "/api/v1/trading/orders?account=ann-desk&status=all".to_string(),
        format!("/api/v1/trading/orders/{id}?account=ann-desk"),
        "/api/v1/trading/fills?account=ann-desk".to_string(),
        "/api/v1/trading/positions?account=ann-desk".to_string(),
        "/api/v1/trading/account?account=ann-desk".to_string(),
    ] {
        not_granted(get(&s, &ben, &path));
    }
    for target in [id, "a1"] {
        not_granted(
            s.http
                .delete(s.url(&format!("/api/v1/trading/orders/{target}?account=ann-desk")))
                .bearer_auth(&ben)
                .send()
                .unwrap(),
        );
    }
    not_granted(
        s.post("/api/v1/trading/kill?account=ann-desk&reason=sabotage")
            .bearer_auth(&ben)
            .send()
            .unwrap(),
    );
    // Unknown accounts look the same to him (nothing to learn by asking);
    // an admin is told it does not exist.
    not_granted(get(&s, &ben, "/api/v1/trading/account?account=no-such"));
    problem(
        get(&s, &admin, "/api/v1/trading/account?account=no-such"),
        404,
    );

    // Strategies: ben cannot start one on ann's account, nor see, stop or
    // swap ann's.
    let r = s.upload_plugin(&ann, component("sma_crossover"));
    assert!(r.status().is_success());
    let spec = json!({"plugin": "sma-crossover", "params": {"fast": 5, "slow": 20, "size": 1},
                      "symbols": ["IF2409"], "interval": "tick", "account": "ann-desk"});
    not_granted(
        s.post("/api/v1/strategies")
            .bearer_auth(&ben)
            .json(&spec)
            .send()
            .unwrap(),
    );
    let r = s
        .post("/api/v1/strategies")
        .bearer_auth(&ann)
        .json(&spec)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let strategy = r.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(s.get_json(&ben, "/api/v1/strategies"), json!([]));
    assert_eq!(
        s.get_json(&ann, "/api/v1/strategies")
            .as_array()
            .unwrap()
            .len(),
        1
    );
    not_granted(get(&s, &ben, &format!("/api/v1/strategies/{strategy}")));
    not_granted(get(
        &s,
        &ben,
        &format!("/api/v1/strategies/{strategy}/logs"),
    ));
    for action in ["stop", "restart"] {
        not_granted(
            s.post(&format!("/api/v1/strategies/{strategy}/{action}"))
                .bearer_auth(&ben)
                .send()
                .unwrap(),
        );
    }
    not_granted(
        s.post(&format!("/api/v1/strategies/{strategy}/swap"))
            .bearer_auth(&ben)
            .json(&json!({"plugin": "sma-crossover"}))
            .send()
            .unwrap(),
    );

    // Nothing of ann's moved.
    let account = s.get_json(&ann, "/api/v1/trading/account?account=ann-desk");
    assert_eq!(account["halted"], false, "{account}");
    let open = s.get_json(&ann, "/api/v1/trading/orders?account=ann-desk");
    assert_eq!(open.as_array().unwrap().len(), 1, "{open}");
    assert_eq!(open[0]["id"], id);
    assert_eq!(
        s.get_json(&ann, &format!("/api/v1/strategies/{strategy}"))["status"],
        "running"
    );

    // Client ids are per account: ben's own "a1" is his own order.
    let r = order(&s, &ben, "ben-desk", rest.clone());
    assert_eq!(r.status(), 201);
    assert_ne!(r.json::<Value>().unwrap()["id"], a1["id"]);

    // An API key acts with its owner's grants.
    let key: Value = s
        .post("/api/v1/api-keys")
        .bearer_auth(&ben)
        .json(&json!({"name": "ben-bot"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let key = key["key"].as_str().unwrap().to_string();
    not_granted(get(&s, &key, "/api/v1/trading/orders?account=ann-desk"));
    assert_eq!(
        get(&s, &key, "/api/v1/trading/orders?account=ben-desk").status(),
        200
    );

    // An admin grants ann's account to ben: now he trades it; revoked, he
    // no longer does (from the next request on).
    s.grant(&admin, "ann-desk", "ben");
    assert_eq!(
        get(&s, &key, "/api/v1/trading/orders?account=ann-desk").status(),
        200
    );
    assert_eq!(
        names(&s.get_json(&ben, "/api/v1/trading/accounts")),
        ["ann-desk", "ben-desk"]
    );
    let r = s
        .http
        .delete(s.url("/api/v1/trading/accounts/ann-desk/grants/ben"))
        .bearer_auth(&admin)
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    not_granted(get(&s, &ben, "/api/v1/trading/orders?account=ann-desk"));
    // Only admins grant.
    problem(
        s.http
            .put(s.url("/api/v1/trading/accounts/ann-desk/grants/ben"))
            .bearer_auth(&ann)
            .send()
            .unwrap(),
        403,
    );

    // A viewer granted an account reads it and changes nothing.
    not_granted(get(&s, &vera, "/api/v1/trading/orders?account=ann-desk"));
    s.grant(&admin, "ann-desk", "vera");
    assert_eq!(
        s.get_json(&vera, "/api/v1/trading/orders?account=ann-desk")
            .as_array()
            .unwrap()
            .len(),
        1
    );
    problem(
        order(
            &s,
            &vera,
            "ann-desk",
            json!({"client_id": "v1", "symbol": "IF2409", "side": "buy", "qty": "1"}),
        ),
        403,
    );

    // Ann herself cancels her order and presses her kill switch.
    let r = s
        .http
        .delete(s.url("/api/v1/trading/orders/a1?account=ann-desk"))
        .bearer_auth(&ann)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = s
        .post("/api/v1/trading/kill?account=ann-desk")
        .bearer_auth(&ann)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().unwrap()["stopped_strategies"],
        json!([strategy])
    );

    // Deleting a user removes their grants.
    let r = s
        .http
        .delete(s.url("/api/v1/users/vera"))
        .bearer_auth(&admin)
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    let grants = s.get_json(&admin, "/api/v1/trading/accounts/ann-desk/grants");
    let holders: Vec<&str> = grants
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["username"].as_str().unwrap())
        .collect();
    assert_eq!(holders, ["ann"]);
}

#[test]
fn a_tick_without_the_feed_permission_cannot_fill_another_account() {
    let s = Server::start(&[]);
    let admin = s.admin_token();
    let ann = s.user_token(&admin, "ann", "trader");
    let ben = s.user_token(&admin, "ben", "trader");
    open_account(&s, &ann, "ann-desk");
    admin_quote(&s, &admin, 0, 3499.8, 3500.2);
    let r = order(
        &s,
        &ann,
        "ann-desk",
        json!({"client_id": "a1", "symbol": "IF2409", "side": "buy", "qty": "1",
               "type": "limit", "price": "3400"}),
    );
    assert_eq!(r.status(), 201);

    // Ben posts a quote with ask = 1: it would fill ann's buy at 1.
    let doc = problem(quote(&s, &ben, 1, 0.5, 1.0), 403);
    assert!(
        doc["detail"].as_str().unwrap().contains("feed permission"),
        "{doc}"
    );
    // Nor may he replay stored ticks onto the live feed.
    problem(
        s.post("/api/v1/trading/replays")
            .bearer_auth(&ben)
            .json(&json!({"symbols": ["IF2409"], "speed": 0}))
            .send()
            .unwrap(),
        403,
    );
    // Nothing reached the desk: the last quote is the admin's, ann's
    // order still rests, nothing filled.
    assert_eq!(
        s.get_json(&ann, "/api/v1/trading/quotes")["IF2409"]["ask"],
        "3500.2"
    );
    let open = s.get_json(&ann, "/api/v1/trading/orders?account=ann-desk");
    assert_eq!(open.as_array().unwrap().len(), 1);
    assert_eq!(
        s.get_json(&ann, "/api/v1/trading/fills?account=ann-desk"),
        json!([])
    );

    // History imports stay with traders.
    let form = reqwest::blocking::multipart::Form::new()
        .part(
            "file",
            reqwest::blocking::multipart::Part::text(
                "symbol,ts,price,size\nrb2410,2024-01-02T01:00:00Z,3900,1\n",
            )
            .file_name("rb.csv"),
        )
        .text("format", "csv");
    let r = s
        .post("/api/v1/market/imports")
        .bearer_auth(&ben)
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);

    // An admin gives ben the feed permission: his quotes now reach the
    // desk (and fill what they cross).
    s.allow_feed(&admin, "ben");
    assert_eq!(quote(&s, &ben, 2, 3399.0, 3400.0).status(), 200);
    wait_for("ann's order to fill", || {
        s.get_json(&ann, "/api/v1/trading/fills?account=ann-desk")
            .as_array()
            .unwrap()
            .len()
            == 1
    });
    // Taken back, it is gone at once.
    let r = s
        .http
        .patch(s.url("/api/v1/users/ben"))
        .bearer_auth(&admin)
        .json(&json!({"feed": false}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    problem(quote(&s, &ben, 3, 0.5, 1.0), 403);
}

/// Reads private-channel frames until one of each of `topics` came;
/// every one must be of `account`.
fn only_from(ws: &mut crate::ws::Ws, account: &str, topics: &[&str]) -> Vec<Value> {
    let mut seen = std::collections::BTreeSet::new();
    let mut frames = Vec::new();
    while seen.len() < topics.len() {
        let (topic, data) = crate::ws::next_private(ws);
        assert_eq!(data["account"], account, "{topic}: {data}");
        if topics.contains(&topic.as_str()) {
            seen.insert(topic);
        }
        frames.push(data);
    }
    frames
}

#[test]
fn private_channels_deliver_only_granted_accounts() {
    let s = Server::start(&[]);
    let admin = s.admin_token();
    let ann = s.user_token(&admin, "ann", "trader");
    let ben = s.user_token(&admin, "ben", "trader");
    open_account(&s, &ann, "ann-desk");
    open_account(&s, &ben, "ben-desk");
    let listen = |token: &str| {
        let mut ws = connect(&s);
        send(&mut ws, json!({"auth": token}));
        next(&mut ws, "authenticated");
        send(
            &mut ws,
            json!({"subscribe": ["orders", "fills", "positions", "strategies"]}),
        );
        next(&mut ws, "subscribed");
        ws
    };
    let mut ann_ws = listen(&ann);
    let mut ben_ws = listen(&ben);
    let mut admin_ws = listen(&admin);
    admin_quote(&s, &admin, 0, 3499.8, 3500.2);
    let all = ["orders", "fills", "positions"];

    // Ann's market buy fills, then ben's: each socket hears only its own
    // account (ann's events, had they leaked, would come before ben's).
    let buy = |c: &str| json!({"client_id": c, "symbol": "IF2409", "side": "buy", "qty": "1"});
    assert_eq!(order(&s, &ann, "ann-desk", buy("a1")).status(), 201);
    only_from(&mut ann_ws, "ann-desk", &all);
    assert_eq!(order(&s, &ben, "ben-desk", buy("b1")).status(), 201);
    let frames = only_from(&mut ben_ws, "ben-desk", &all);
    assert!(frames.iter().any(|f| f["client_id"] == "b1"), "{frames:?}");
    assert_eq!(order(&s, &ann, "ann-desk", buy("a2")).status(), 201);
    let frames = only_from(&mut ann_ws, "ann-desk", &all);
    assert!(frames.iter().any(|f| f["client_id"] == "a2"), "{frames:?}");
    // The admin hears both accounts.
    let mut accounts = std::collections::BTreeSet::new();
    while accounts.len() < 2 {
        let f = next(&mut admin_ws, "fills");
        accounts.insert(f["account"].as_str().unwrap().to_string());
    }

    // A grant reaches an open socket at its next session check (5 s).
    s.grant(&admin, "ann-desk", "ben");
    std::thread::sleep(std::time::Duration::from_secs(6));
    assert_eq!(order(&s, &ann, "ann-desk", buy("a3")).status(), 201);
    let f = next(&mut ben_ws, "fills");
    assert_eq!(
        (f["account"].as_str(), f["client_id"].as_str()),
        (Some("ann-desk"), Some("a3"))
    );
}
