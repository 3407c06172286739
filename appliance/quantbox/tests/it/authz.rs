//! The authorization matrix: every operation of the OpenAPI document ×
//! {anonymous, viewer, trader owning the object, trader not owning it,
//! admin} against the rule [`RULES`] states for it (`SECURITY.md`). An
//! operation the table does not name fails the test, and so does a table
//! row naming no operation: a new route cannot be forgotten.
//!
//! The objects: paper account `alpha` (granted to the owner `ann` and, for
//! reading, to the viewer `vera`; not to `ben`), an order and a strategy on
//! it, and research `ann` made (a backtest job, a plugin, an API key). `ann` has the
//! feed permission, `ben` has not.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::support::{ADMIN_PASSWORD, Server, component, wait_for};

/// Who asks.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Who {
    Anonymous,
    Viewer,
    /// A trader that does not own the object (no grant, not the author).
    Other,
    /// The trader owning the object (granted the account, its author).
    Owner,
    Admin,
}

/// Denied principals first: an allowed one may consume the object.
const ORDER: [Who; 5] = [
    Who::Anonymous,
    Who::Viewer,
    Who::Other,
    Who::Owner,
    Who::Admin,
];

/// The designed rule of an operation.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Rule {
    /// No authentication (probes).
    Public,
    /// Authenticates by the credential in its body, not a bearer: a bad
    /// one is 401 whoever sends it.
    BodyCredential,
    /// The caller's own session (logout, password): every user, viewers
    /// included.
    Session,
    /// Any authenticated user (reads of shared data; lists filtered to
    /// what the caller reaches).
    User,
    /// Traders and admins.
    Trader,
    Admin,
    /// Reading a paper account: users it is granted to, admins.
    AccountRead,
    /// Trading a paper account: traders it is granted to, admins.
    AccountTrade,
    /// Changing a research object: its author (a trader) or an admin.
    Owner,
    /// The caller's own API key or an admin; others are told it does not
    /// exist.
    OwnKey,
    /// Market data that drives fills: traders with the feed permission,
    /// admins.
    Feed,
}

/// What a principal gets under a rule: `None` = allowed (any answer but
/// 401 and 403, and no server error), `Some(status)` = refused so.
fn designed(rule: Rule, who: Who) -> Option<u16> {
    use Who::*;
    match rule {
        Rule::Public => None,
        Rule::BodyCredential => Some(401),
        _ if who == Anonymous => Some(401),
        Rule::Session | Rule::User => None,
        _ if who == Admin => None,
        Rule::Admin => Some(403),
        // The viewer is granted alpha: it reads it.
        Rule::AccountRead if who == Viewer => None,
        // Viewers change nothing else.
        _ if who == Viewer => Some(403),
        Rule::Trader => None,
        _ if who == Owner => None,
        Rule::OwnKey => Some(404),
        Rule::AccountRead | Rule::AccountTrade | Rule::Owner | Rule::Feed => Some(403),
    }
}

enum Body {
    None,
    Json(Value),
    Raw(&'static str, Vec<u8>),
}

/// One operation: method, OpenAPI path, rule, the concrete request (path
/// with `{order}`, `{strategy}`, `{job}`, `{plugin}`, `{key}`,
/// `{schedule}`, `{replay}` filled in from the fixture) and its body.
struct Row {
    method: &'static str,
    path: &'static str,
    rule: Rule,
    concrete: &'static str,
    body: fn() -> Body,
}

fn none() -> Body {
    Body::None
}

const MULTIPART: &str = "--qbmatrix\r\nContent-Disposition: form-data; name=\"file\"; filename=\"m.csv\"\r\nContent-Type: text/csv\r\n\r\nsymbol,ts,price,size\r\nMTX1,2024-01-02T01:00:00Z,1,1\r\n\r\n--qbmatrix\r\nContent-Disposition: form-data; name=\"format\"\r\n\r\ncsv\r\n--qbmatrix--\r\n";

macro_rules! row {
    ($m:literal $p:literal $rule:ident) => {
        row!($m $p $rule, $p, none)
    };
    ($m:literal $p:literal $rule:ident, $c:literal) => {
        row!($m $p $rule, $c, none)
    };
    ($m:literal $p:literal $rule:ident, $c:literal, $body:expr) => {
        Row { method: $m, path: $p, rule: Rule::$rule, concrete: $c, body: $body }
    };
}

/// The designed rule of every operation.
const RULES: &[Row] = &[
    // Probes.
    row!("get" "/health" Public),
    row!("get" "/ready" Public),
    row!("get" "/metrics" Public),
    // Sessions.
    row!("post" "/api/v1/auth/login" BodyCredential, "/api/v1/auth/login",
        || Body::Json(json!({"username": "nobody-here", "password": "wrong-password-123"}))),
    row!("post" "/api/v1/auth/refresh" BodyCredential, "/api/v1/auth/refresh",
        || Body::Json(json!({"refresh_token": "not-a-refresh-token"}))),
    row!("post" "/api/v1/auth/logout" Session),
    row!("get" "/api/v1/auth/me" User),
    row!("post" "/api/v1/auth/password" Session, "/api/v1/auth/password",
        || Body::Json(json!({"current_password": "wrong", "new_password": "x"}))),
    // Users, keys, audit.
    row!("get" "/api/v1/users" Admin),
    row!("post" "/api/v1/users" Admin, "/api/v1/users",
        || Body::Json(json!({"username": "matrix-new", "password": "matrix-new-password-1", "role": "viewer"}))),
    row!("get" "/api/v1/users/{username}" Admin, "/api/v1/users/gus"),
    row!("patch" "/api/v1/users/{username}" Admin, "/api/v1/users/gus",
        || Body::Json(json!({"feed": false}))),
    row!("get" "/api/v1/api-keys" User),
    row!("post" "/api/v1/api-keys" Trader, "/api/v1/api-keys",
        || Body::Json(json!({"name": "matrix"}))),
    row!("delete" "/api/v1/api-keys/{id}" OwnKey, "/api/v1/api-keys/{key}"),
    row!("get" "/api/v1/audit" Admin),
    // Research: read by the team, changed by traders, their own by owner.
    row!("get" "/api/v1/jobs" User),
    // Diagnostic kinds are for admins (traders enqueue backtests).
    row!("post" "/api/v1/jobs" Admin, "/api/v1/jobs",
        || Body::Json(json!({"kind": "diag.sleep", "params": {"seconds": 0}}))),
    row!("get" "/api/v1/jobs/kinds" User),
    row!("get" "/api/v1/jobs/{id}" User, "/api/v1/jobs/{job}"),
    row!("post" "/api/v1/jobs/{id}/cancel" Owner, "/api/v1/jobs/{job}/cancel"),
    row!("get" "/api/v1/queues" User),
    row!("get" "/api/v1/backtests" User),
    row!("post" "/api/v1/backtests" Trader, "/api/v1/backtests",
        || Body::Json(json!({"plugin": "sma-crossover", "symbols": ["IF2409"], "interval": "1m"}))),
    row!("get" "/api/v1/backtests/{id}" User, "/api/v1/backtests/{job}"),
    row!("get" "/api/v1/backtests/{id}/fills" User, "/api/v1/backtests/{job}/fills"),
    row!("get" "/api/v1/backtests/{id}/files/{name}" User, "/api/v1/backtests/{job}/files/report.html"),
    row!("get" "/reports/{file}" User, "/reports/{job}.html"),
    row!("post" "/api/v1/sweeps" Trader, "/api/v1/sweeps",
        || Body::Json(json!({"base": {"plugin": "sma-crossover", "symbols": ["IF2409"], "interval": "1m"}, "grid": {"fast": [5]}}))),
    row!("get" "/api/v1/sweeps/{id}" User, "/api/v1/sweeps/{job}"),
    row!("get" "/api/v1/plugins" User),
    row!("post" "/api/v1/plugins" Trader, "/api/v1/plugins",
        || Body::Raw("application/wasm", b"not a component".to_vec())),
    row!("get" "/api/v1/plugins/{id}" User, "/api/v1/plugins/{plugin}"),
    row!("delete" "/api/v1/plugins/{id}" Owner, "/api/v1/plugins/{plugin}"),
    row!("get" "/api/v1/schedules" User),
    row!("post" "/api/v1/schedules" Admin, "/api/v1/schedules",
        || Body::Json(json!({"name": "matrix-new", "cron": "0 0 3 * * *", "job": {"kind": "diag.sleep"}}))),
    row!("get" "/api/v1/schedules/{id}" User, "/api/v1/schedules/{schedule}"),
    row!("patch" "/api/v1/schedules/{id}" Admin, "/api/v1/schedules/{schedule}",
        || Body::Json(json!({"enabled": false}))),
    row!("delete" "/api/v1/schedules/{id}" Admin, "/api/v1/schedules/{schedule}"),
    // Market data: read by all; imports by traders; live ticks are a feed.
    row!("get" "/api/v1/instruments" User),
    row!("post" "/api/v1/instruments" Trader, "/api/v1/instruments",
        || Body::Json(json!({"symbol": "MTX2"}))),
    row!("get" "/api/v1/instruments/{symbol}" User, "/api/v1/instruments/IF2409"),
    row!("put" "/api/v1/instruments/{symbol}" Trader, "/api/v1/instruments/MTX3",
        || Body::Json(json!({"symbol": "MTX3"}))),
    row!("delete" "/api/v1/instruments/{symbol}" Trader, "/api/v1/instruments/MTX3"),
    row!("get" "/api/v1/market/symbols" User),
    row!("get" "/api/v1/market/ticks" User, "/api/v1/market/ticks?symbol=IF2409"),
    row!("post" "/api/v1/market/ticks" Feed, "/api/v1/market/ticks",
        || Body::Json(json!([{"symbol": "MTX4", "ts": 1_704_157_200_000_000_000i64, "price": 1, "size": 1}]))),
    row!("get" "/api/v1/market/bars" User, "/api/v1/market/bars?symbol=IF2409&interval=1m"),
    row!("get" "/api/v1/market/export" User, "/api/v1/market/export?symbol=IF2409"),
    row!("post" "/api/v1/market/imports" Trader, "/api/v1/market/imports",
        || Body::Raw("multipart/form-data; boundary=qbmatrix", MULTIPART.as_bytes().to_vec())),
    row!("get" "/api/v1/system" User),
    row!("post" "/api/v1/backups" Admin),
    // Paper trading: the account decides.
    row!("get" "/api/v1/trading/accounts" User),
    row!("post" "/api/v1/trading/accounts" Trader, "/api/v1/trading/accounts",
        || Body::Json(json!({"name": "matrix-new", "initial_cash": "1000"}))),
    row!("get" "/api/v1/trading/account" AccountRead, "/api/v1/trading/account?account=alpha"),
    row!("get" "/api/v1/trading/accounts/{name}/grants" Admin, "/api/v1/trading/accounts/alpha/grants"),
    row!("put" "/api/v1/trading/accounts/{name}/grants/{username}" Admin,
        "/api/v1/trading/accounts/alpha/grants/gus"),
    row!("delete" "/api/v1/trading/accounts/{name}/grants/{username}" Admin,
        "/api/v1/trading/accounts/alpha/grants/gus"),
    row!("put" "/api/v1/trading/accounts/{name}/limits" Admin, "/api/v1/trading/accounts/alpha/limits",
        || Body::Json(json!({"limits": {}}))),
    row!("get" "/api/v1/trading/orders" AccountRead, "/api/v1/trading/orders?account=alpha&status=all"),
    row!("post" "/api/v1/trading/orders" AccountTrade, "/api/v1/trading/orders?account=alpha",
        || Body::Json(json!({"client_id": "matrix", "symbol": "IF2409", "side": "buy", "qty": "1", "type": "limit", "price": "3000"}))),
    row!("get" "/api/v1/trading/orders/{id}" AccountRead, "/api/v1/trading/orders/{order}?account=alpha"),
    row!("delete" "/api/v1/trading/orders/{id}" AccountTrade, "/api/v1/trading/orders/{order}?account=alpha"),
    row!("get" "/api/v1/trading/fills" AccountRead, "/api/v1/trading/fills?account=alpha"),
    row!("get" "/api/v1/trading/positions" AccountRead, "/api/v1/trading/positions?account=alpha"),
    row!("post" "/api/v1/trading/kill" AccountTrade, "/api/v1/trading/kill?account=alpha"),
    row!("post" "/api/v1/trading/resume" Admin, "/api/v1/trading/resume?account=alpha"),
    row!("get" "/api/v1/trading/quotes" User),
    row!("get" "/api/v1/trading/replays" User),
    row!("post" "/api/v1/trading/replays" Feed, "/api/v1/trading/replays",
        || Body::Json(json!({"symbols": ["IF2409"], "speed": 0}))),
    row!("delete" "/api/v1/trading/replays/{id}" Feed, "/api/v1/trading/replays/{replay}"),
    row!("get" "/api/v1/strategies" User),
    row!("post" "/api/v1/strategies" AccountTrade, "/api/v1/strategies",
        || Body::Json(json!({"plugin": "sma-crossover", "params": {"fast": 5, "slow": 20, "size": 1},
                             "symbols": ["IF2409"], "interval": "tick", "account": "alpha"}))),
    row!("get" "/api/v1/strategies/{id}" AccountRead, "/api/v1/strategies/{strategy}"),
    row!("get" "/api/v1/strategies/{id}/logs" AccountRead, "/api/v1/strategies/{strategy}/logs"),
    row!("post" "/api/v1/strategies/{id}/stop" AccountTrade, "/api/v1/strategies/{strategy}/stop"),
    row!("post" "/api/v1/strategies/{id}/restart" AccountTrade, "/api/v1/strategies/{strategy}/restart"),
    row!("post" "/api/v1/strategies/{id}/swap" AccountTrade, "/api/v1/strategies/{strategy}/swap",
        || Body::Json(json!({"plugin": "sma-crossover"}))),
    // Last: the grant rows above still find gus.
    row!("delete" "/api/v1/users/{username}" Admin, "/api/v1/users/gus"),
];

fn created(r: reqwest::blocking::Response, what: &str) -> Value {
    let status = r.status();
    let body = r.text().unwrap();
    assert!(status.is_success(), "{what}: {status} {body}");
    serde_json::from_str(&body).unwrap()
}

fn login(s: &Server, user: &str, password: &str) -> String {
    s.login(user, password)["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn every_operation_against_every_kind_of_caller() {
    let s = Server::start(&[]);
    let admin = s.admin_token();
    let viewer = s.user_token(&admin, "vera", "viewer");
    let ann = s.user_token(&admin, "ann", "trader");
    let ben = s.user_token(&admin, "ben", "trader");
    s.user_token(&admin, "gus", "viewer");
    s.allow_feed(&admin, "ann");
    let r = s
        .post("/api/v1/trading/accounts")
        .bearer_auth(&ann)
        .json(&json!({"name": "alpha", "initial_cash": "1000000"}))
        .send()
        .unwrap();
    created(r, "alpha");
    s.grant(&admin, "alpha", "vera");
    s.grant(&admin, "alpha", "gus");

    // The fixture: a quote, an order and a strategy on alpha, ann's job,
    // plugin and key, an admin's schedule and replay.
    s.ingest(
        &admin,
        &json!([{"symbol": "IF2409", "ts": 1_704_157_200_000_000_000i64, "price": 3500, "size": 1, "bid": 3499.8, "ask": 3500.2}]),
    );
    wait_for("the quote", || {
        s.get_json(&admin, "/api/v1/trading/quotes")["IF2409"].is_object()
    });
    let order = created(
        s.post("/api/v1/trading/orders?account=alpha")
            .bearer_auth(&ann)
            .json(
                &json!({"client_id": "rest", "symbol": "IF2409", "side": "buy", "qty": "1",
                          "type": "limit", "price": "3400"}),
            )
            .send()
            .unwrap(),
        "order",
    );
    for (name, who) in [("sma_crossover", &ann), ("donchian_breakout", &ann)] {
        created(s.upload_plugin(who, component(name)), name);
    }
    let plugins = s.get_json(&admin, "/api/v1/plugins");
    let plugin = plugins["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "donchian-breakout")
        .expect("donchian uploaded")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let strategy = created(
        s.post("/api/v1/strategies")
            .bearer_auth(&ann)
            .json(
                &json!({"plugin": "sma-crossover", "params": {"fast": 5, "slow": 20, "size": 1},
                          "symbols": ["IF2409"], "interval": "tick", "account": "alpha"}),
            )
            .send()
            .unwrap(),
        "strategy",
    );
    let job = created(
        s.post("/api/v1/backtests")
            .bearer_auth(&ann)
            .json(
                &json!({"plugin": "sma-crossover", "params": {"fast": 5, "slow": 20, "size": 1},
                          "symbols": ["IF2409"], "interval": "tick"}),
            )
            .send()
            .unwrap(),
        "job",
    );
    let key = created(
        s.post("/api/v1/api-keys")
            .bearer_auth(&ann)
            .json(&json!({"name": "ann-key"}))
            .send()
            .unwrap(),
        "key",
    );
    let schedule = created(
        s.post("/api/v1/schedules")
            .bearer_auth(&admin)
            .json(&json!({"name": "matrix", "cron": "0 0 3 * * *", "job": {"kind": "diag.sleep"}}))
            .send()
            .unwrap(),
        "schedule",
    );
    let replay = created(
        s.post("/api/v1/trading/replays")
            .bearer_auth(&admin)
            .json(&json!({"symbols": ["IF2409"], "speed": 1}))
            .send()
            .unwrap(),
        "replay",
    );
    let fill = |template: &str| {
        template
            .replace("{order}", order["id"].as_str().unwrap())
            .replace("{strategy}", strategy["id"].as_str().unwrap())
            .replace("{job}", job["id"].as_str().unwrap())
            .replace("{plugin}", &plugin)
            .replace("{key}", key["api_key"]["id"].as_str().unwrap())
            .replace("{schedule}", schedule["id"].as_str().unwrap())
            .replace("{replay}", replay["id"].as_str().unwrap())
    };

    // Every operation of the document is in the table, and every row of
    // the table is an operation.
    let doc: Value = s.get("/api/openapi.json").send().unwrap().json().unwrap();
    let mut documented = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.insert((method.clone(), path.clone()));
        }
    }
    let tabled: BTreeSet<(String, String)> = RULES
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    assert_eq!(tabled.len(), RULES.len(), "a row appears twice");
    let missing: Vec<_> = documented.difference(&tabled).collect();
    assert!(
        missing.is_empty(),
        "operations without a designed rule in authz.rs RULES: {missing:?}"
    );
    let stale: Vec<_> = tabled.difference(&documented).collect();
    assert!(stale.is_empty(), "rows naming no operation: {stale:?}");

    let mut failures = Vec::new();
    let mut checked = 0;
    for row in RULES {
        let url = s.url(&fill(row.concrete));
        for who in ORDER {
            // A session route ends or changes the session it is called
            // with: give it a fresh one.
            let token = match (who, row.rule) {
                (Who::Anonymous, _) => None,
                (Who::Viewer, Rule::Session) => Some(login(&s, "vera", "vera-password-123")),
                (Who::Other, Rule::Session) => Some(login(&s, "ben", "ben-password-123")),
                (Who::Owner, Rule::Session) => Some(login(&s, "ann", "ann-password-123")),
                (Who::Admin, Rule::Session) => Some(login(&s, "admin", ADMIN_PASSWORD)),
                (Who::Viewer, _) => Some(viewer.clone()),
                (Who::Other, _) => Some(ben.clone()),
                (Who::Owner, _) => Some(ann.clone()),
                (Who::Admin, _) => Some(admin.clone()),
            };
            let method = reqwest::Method::from_bytes(row.method.to_uppercase().as_bytes()).unwrap();
            let mut req = s.http.request(method, &url);
            if let Some(t) = &token {
                req = req.bearer_auth(t);
            }
            req = match (row.body)() {
                Body::None => req,
                Body::Json(v) => req.json(&v),
                Body::Raw(ct, bytes) => req.header("content-type", ct).body(bytes),
            };
            let r = req.send().unwrap();
            let status = r.status().as_u16();
            let ct = r
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            let body = r.text().unwrap_or_default();
            checked += 1;
            let want = designed(row.rule, who);
            let ok = match want {
                None => !matches!(status, 401 | 403) && status < 500,
                Some(code) => status == code && ct == "application/problem+json",
            };
            if !ok {
                failures.push(format!(
                    "{} {} as {who:?} ({:?}): got {status} {body:.200}, designed {}",
                    row.method.to_uppercase(),
                    row.concrete,
                    row.rule,
                    want.map_or("allowed".into(), |c| c.to_string())
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} checks failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked >= 5 * 75, "only {checked} checks");
}
