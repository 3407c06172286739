//! Cluster mode (PostgreSQL + Redis on this machine): the configuration
//! switch and its refusals, two processes sharing one state, the node-name
//! lock, and a Redis restart that loses nothing acknowledged. The other
//! integration tests run against a cluster-backed server as well
//! (`QB_IT_BACKEND=cluster`, see `dev.sh test`).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use qb_pg::testing::TestDatabase;
use serde_json::{Value, json};

use crate::hosts::{Host, through};
use crate::support::{Server, command, trend_bars_csv, wait_for};
use crate::ws;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub(crate) fn fresh_db() -> TestDatabase {
    runtime().block_on(TestDatabase::create()).unwrap()
}

fn redis_url() -> String {
    std::env::var("QB_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// The environment of one cluster node on `db`, events under `prefix`.
pub(crate) fn node_env(db: &TestDatabase, prefix: &str, node: &str) -> Vec<(String, String)> {
    vec![
        ("DATABASE_URL".into(), db.url.clone()),
        ("REDIS_URL".into(), redis_url()),
        ("QUANTBOX_CLUSTER__REDIS_PREFIX".into(), prefix.into()),
        ("QUANTBOX_CLUSTER__NODE_ID".into(), node.into()),
        ("QUANTBOX_CLUSTER__DB_POOL_SIZE".into(), "4".into()),
        ("QUANTBOX_CLUSTER__CONNECT_TIMEOUT_SECS".into(), "3".into()),
    ]
}

pub(crate) fn as_refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn run(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let out = command(dir, env).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_switch_and_its_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_db();
    let env = node_env(&db, "qbit-switch", "switch-1");
    // config check names the backend of every store.
    let (code, out, err) = run(dir.path(), &as_refs(&env), &["config", "check"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("mode = \"cluster\""), "{out}");
    assert!(out.contains("meta = \"postgresql\""), "{out}");
    assert!(out.contains("pubsub = \"redis\""), "{out}");
    assert!(
        !out.contains(&db.url),
        "the database URL is a secret: {out}"
    );
    let (code, out, _) = run(dir.path(), &[], &["config", "check"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("mode = \"embedded\"") && out.contains("sqlite"),
        "{out}"
    );

    // PostgreSQL without Redis, or without a shared secret: refused.
    let no_redis: Vec<_> = env
        .iter()
        .filter(|(k, _)| k != "REDIS_URL")
        .cloned()
        .collect();
    let (code, _, err) = run(dir.path(), &as_refs(&no_redis), &["serve"]);
    assert_eq!(code, 2);
    assert!(err.contains("redis_url"), "{err}");
    let mut cmd = command(dir.path(), &as_refs(&env));
    cmd.env_remove("SECRET_KEY");
    let out = cmd.args(["serve"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("secret_key") && err.contains("shared"),
        "{err}"
    );

    // Unreachable PostgreSQL: retried with backoff, then a clear exit.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut down = env.clone();
    down[0].1 = format!("postgres://postgres@127.0.0.1:{port}/nothing");
    let t0 = Instant::now();
    let (code, _, err) = run(
        dir.path(),
        &as_refs(&down),
        &["serve", "--bind", "127.0.0.1:0"],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("not reachable yet"),
        "retries are logged: {err}"
    );
    assert!(err.contains("PostgreSQL unreachable"), "{err}");
    assert!(
        t0.elapsed() >= Duration::from_millis(2900),
        "it waited for the database"
    );

    // Migrations through the CLI, then the server finds the schema current.
    let (code, out, err) = run(dir.path(), &as_refs(&env), &["migrate"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("migrated schema from version 0"), "{out}");
    let s = Server::start_in(dir.path(), &as_refs(&env));
    let ready: Value = s.get("/ready").send().unwrap().json().unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["node"], "switch-1");
    assert_eq!(ready["backends"]["mode"], "cluster");
    assert_eq!(ready["backends"]["kv"], "postgresql");
    assert_eq!(ready["backends"]["rate_limits"], "redis");

    // A second process may not run under the same node name.
    let dir2 = tempfile::tempdir().unwrap();
    let (code, _, err) = run(
        dir2.path(),
        &as_refs(&env),
        &["serve", "--bind", "127.0.0.1:0"],
    );
    assert_ne!(code, 0);
    assert!(err.contains("node id switch-1 is in use"), "{err}");

    // The users command works on the cluster database too.
    let (code, out, err) = run(dir.path(), &as_refs(&env), &["user", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("admin"), "{out}");
}

#[test]
fn two_processes_share_one_state() {
    let db = fresh_db();
    let prefix = format!("qbit-two-{}", std::process::id());
    let e1 = node_env(&db, &prefix, "node-1");
    let e2 = node_env(&db, &prefix, "node-2");
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Both start at once on the empty database.
    let (s1, s2) = std::thread::scope(|sc| {
        let a = sc.spawn(|| Server::start_in(d1.path(), &as_refs(&e1)));
        let b = sc.spawn(|| Server::start_in(d2.path(), &as_refs(&e2)));
        (a.join().unwrap(), b.join().unwrap())
    });
    // One admin and one set of default schedules, whoever won the race.
    let t1 = s1.admin_token();
    let users = s2.get_json(&t1, "/api/v1/users");
    assert_eq!(users["total"], 1, "{users}");
    let schedules = s1.get_json(&t1, "/api/v1/schedules");
    assert_eq!(schedules["total"], 4, "{schedules}");

    // A token from node 1 works on node 2 (one signing secret), and a
    // logout on node 1 holds on node 2 (one deny-list).
    let login: Value = s1
        .post("/api/v1/auth/login")
        .json(&json!({"username": "admin", "password": crate::support::ADMIN_PASSWORD}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let token = login["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        s2.get("/api/v1/users")
            .bearer_auth(&token)
            .send()
            .unwrap()
            .status(),
        200
    );
    let r = s1
        .post("/api/v1/auth/logout")
        .bearer_auth(&token)
        .json(&json!({"refresh_token": login["refresh_token"]}))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "logout: {}", r.status());
    assert_eq!(
        s2.get("/api/v1/users")
            .bearer_auth(&token)
            .send()
            .unwrap()
            .status(),
        401
    );

    // A job enqueued through node 2 runs on one of them, once; node 1 sees it.
    let job: Value = s2
        .post("/api/v1/jobs")
        .bearer_auth(&t1)
        .json(&json!({"kind": "diag.sleep", "params": {"seconds": 0.1}}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let id = job["id"].as_str().unwrap();
    let done = s1.wait_job(&t1, id, |j| j["state"] == "succeeded");
    assert_eq!(done["attempts"], 1);
    assert!(
        ["node-1", "node-2"].contains(&done["node"].as_str().unwrap()),
        "{done}"
    );

    // A tick ingested through node 1 reaches a /ws client of node 2.
    let mut client = ws::connect(&s2);
    ws::send(&mut client, json!({"auth": t1}));
    ws::next(&mut client, "authenticated");
    ws::send(&mut client, json!({"subscribe": ["ticks"]}));
    ws::next(&mut client, "subscribed");
    s1.ingest(
        &t1,
        &json!([{"symbol": "CL1", "ts": 1_700_000_000_000_000_000i64, "price": 71.5, "size": 3}]),
    );
    let tick = ws::next(&mut client, "ticks");
    assert_eq!(tick["symbol"], "CL1");
    let _ = runtime().block_on(qb_redis::delete_prefix(&redis_url(), &prefix));
}

#[test]
fn roles_split_the_work() {
    let db = fresh_db();
    let prefix = format!("qbit-roles-{}", std::process::id());
    let mut ea = node_env(&db, &prefix, "api-1");
    ea.push(("QUANTBOX_ROLE".into(), "api".into()));
    let mut eb = node_env(&db, &prefix, "back-1");
    eb.push(("QUANTBOX_ROLE".into(), "worker,scheduler,trader".into()));
    let (da, db_) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let api = Server::start_in(da.path(), &as_refs(&ea));
    let mut back = Server::start_in(db_.path(), &as_refs(&eb));
    let token = api.admin_token();

    // Each node is ready for what its roles run, and says which they are.
    let ready: Value = api.get("/ready").send().unwrap().json().unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["roles"], json!(["api"]));
    let ready: Value = back.get("/ready").send().unwrap().json().unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["roles"], json!(["worker", "scheduler", "trader"]));

    // The API node does not trade; the trader node trades but serves no
    // other API call; both answer the probes.
    let p = refused(
        api.get("/api/v1/trading/accounts")
            .bearer_auth(&token)
            .send()
            .unwrap(),
        "role-elsewhere",
    );
    assert!(p["detail"].as_str().unwrap().contains("trader role"), "{p}");
    let accounts = back.get_json(&token, "/api/v1/trading/accounts");
    assert_eq!(accounts[0]["name"], "paper", "{accounts}");
    let p = refused(
        back.get("/api/v1/users")
            .bearer_auth(&token)
            .send()
            .unwrap(),
        "role-elsewhere",
    );
    assert!(p["detail"].as_str().unwrap().contains("api role"), "{p}");
    for path in ["/health", "/metrics"] {
        assert_eq!(back.get(path).send().unwrap().status(), 200, "{path}");
        assert_eq!(api.get(path).send().unwrap().status(), 200, "{path}");
    }
    let metrics = back.get("/metrics").send().unwrap().text().unwrap();
    assert!(
        metrics.contains(r#"quantbox_node_info{node="back-1",roles="worker,scheduler,trader"} 1"#),
        "{metrics}"
    );

    // The API node runs no workers and says so.
    let queues = api.get_json(&token, "/api/v1/queues");
    assert!(
        queues
            .as_array()
            .unwrap()
            .iter()
            .all(|q| q["concurrency"] == 0),
        "{queues}"
    );
    // A job submitted to the API node (which has no workers) runs on the
    // worker node.
    let job: Value = api
        .post("/api/v1/jobs")
        .bearer_auth(&token)
        .json(&json!({"kind": "diag.sleep", "params": {"seconds": 0.1}}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let done = api.wait_job(&token, job["id"].as_str().unwrap(), |j| {
        j["state"] == "succeeded"
    });
    assert_eq!(done["node"], "back-1", "{done}");

    // The worker/trader node stops gracefully on SIGTERM.
    let (status, _) = back.terminate();
    assert!(status.success(), "{status:?}");
    let log = back.log();
    assert!(
        log.contains("live strategies stopped after a final snapshot"),
        "{log}"
    );
    let _ = runtime().block_on(qb_redis::delete_prefix(&redis_url(), &prefix));
}

/// A private redis-server on a free port (keeps nothing on disk).
struct PrivateRedis {
    child: Option<Child>,
    port: u16,
}

impl PrivateRedis {
    fn start_on(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server");
        let r = Self {
            child: Some(child),
            port,
        };
        wait_for("the private Redis to answer", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        r
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn a_redis_restart_loses_nothing_acknowledged() {
    let db = fresh_db();
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut redis = PrivateRedis::start_on(port);
    let mut env = node_env(&db, "qbit-restart", "restart-1");
    env[1].1 = format!("redis://127.0.0.1:{}", redis.port);
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_in(dir.path(), &as_refs(&env));
    let t = s.admin_token();
    let ts0 = 1_704_157_200_000_000_000i64;
    s.ingest(&t, &json!([{"symbol": "IF2409", "ts": ts0, "price": 3500, "size": 1, "bid": 3499.8, "ask": 3500.2}]));
    wait_for("the quote to reach the desk", || {
        s.get_json(&t, "/api/v1/trading/quotes")["IF2409"]["ts"] == ts0
    });
    let order = |cid: &str| {
        s.post("/api/v1/trading/orders")
            .bearer_auth(&t)
            .json(
                &json!({"client_id": cid, "symbol": "IF2409", "side": "buy", "qty": "1",
                          "type": "limit", "price": "3490"}),
            )
            .send()
            .unwrap()
    };
    assert_eq!(order("before").status(), 201);

    // Redis goes away (and comes back empty): readiness says so, durable
    // operations carry on.
    redis.stop();
    wait_for("/ready to report the lost event fan-out", || {
        let r: Value = s.get("/ready").send().unwrap().json().unwrap();
        r["reasons"]
            .to_string()
            .contains("event fan-out unavailable")
    });
    assert_eq!(order("during").status(), 201, "orders are in PostgreSQL");
    let job: Value = s
        .post("/api/v1/jobs")
        .bearer_auth(&t)
        .json(&json!({"kind": "diag.sleep", "params": {"seconds": 0}}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    s.wait_job(&t, job["id"].as_str().unwrap(), |j| {
        j["state"] == "succeeded"
    });

    let _redis = PrivateRedis::start_on(port);
    wait_for("readiness after Redis is back", || {
        s.get("/ready").send().unwrap().status() == 200
    });
    let orders = s.get_json(&t, "/api/v1/trading/orders");
    let ids: Vec<&str> = orders
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["client_id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"before") && ids.contains(&"during"),
        "{orders}"
    );
    // The fan-out works again: a new tick reaches a /ws client.
    let mut client = ws::connect(&s);
    ws::send(&mut client, json!({"auth": t}));
    ws::next(&mut client, "authenticated");
    ws::send(&mut client, json!({"subscribe": ["ticks"]}));
    ws::next(&mut client, "subscribed");
    s.ingest(
        &t,
        &json!([{"symbol": "IF2409", "ts": ts0 + 1_000_000_000, "price": 3501, "size": 1}]),
    );
    assert_eq!(ws::next(&mut client, "ticks")["symbol"], "IF2409");
}

/// A trader node (`api,trader`) on `db` with a short desk lease.
fn trader_env(db: &TestDatabase, prefix: &str, node: &str) -> Vec<(String, String)> {
    let mut e = node_env(db, prefix, node);
    e.push(("QUANTBOX_ROLE".into(), "api,trader".into()));
    e.push(("QUANTBOX_CLUSTER__DESK_LEASE_MS".into(), "1500".into()));
    e
}

/// Positions as booked (quantity, average price, realized PnL, fees),
/// without the mark, which follows the market rather than the book.
fn booked(positions: Value) -> Value {
    let mut p = positions;
    for row in p.as_array_mut().unwrap() {
        row.as_object_mut().unwrap().remove("mark");
    }
    p
}

fn ready(s: &Server) -> Value {
    s.get("/ready").send().unwrap().json().unwrap()
}

fn order(s: &Server, token: &str, account: &str, body: Value) -> reqwest::blocking::Response {
    s.post(&format!("/api/v1/trading/orders?account={account}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .unwrap()
}

/// A 503 problem document of `kind` (`role-elsewhere`, `desk-elsewhere`):
/// the call was not for this node.
fn refused(r: reqwest::blocking::Response, kind: &str) -> Value {
    let p = crate::support::problem(r, 503);
    assert!(p["type"].as_str().unwrap().ends_with(kind), "{p}");
    p
}

/// `old`, a holder that lost the desk to `new` while it was away: its
/// first trading write is refused, it stands by, and the orders `new`
/// sees are still `before`.
fn writes_nothing(old: &Server, new: &Server, token: &str, before: &Value) {
    let r = order(
        old,
        token,
        "paper",
        json!({"client_id": "from-the-past", "symbol": "IF2409", "side": "buy", "qty": "1"}),
    );
    refused(r, "desk-elsewhere");
    wait_for("the old holder to stand by", || {
        ready(old)["desk"] == "standby"
    });
    assert_eq!(
        &new.get_json(token, "/api/v1/trading/orders?status=all"),
        before,
        "the old holder wrote nothing"
    );
}

/// Waits until `s` holds the desk; how long that took from `since`.
fn until_held(s: &Server, since: Instant) -> Duration {
    wait_for("the standby to take the desk", || {
        ready(s)["desk"] == "held"
    });
    since.elapsed()
}

#[test]
fn one_desk_fails_over_and_the_old_holder_writes_nothing() {
    let db = fresh_db();
    let prefix = format!("qbit-desk-{}", std::process::id());
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    // Each trader on a host of its own where namespaces can be made here
    // (root), else on loopback ports.
    let hosts: Option<Vec<Host>> = (0..3).map(Host::create).collect();
    let start = |i: usize| {
        let env = trader_env(&db, &prefix, &format!("trader-{}", i + 1));
        match &hosts {
            Some(h) => h[i].start(dirs[i].path(), &as_refs(&through(&h[i], env))),
            None => Server::start_in(dirs[i].path(), &as_refs(&env)),
        }
    };
    let mut t1 = start(0);
    wait_for("trader-1 to hold the desk", || ready(&t1)["desk"] == "held");
    let t2 = start(1);
    let r = ready(&t2);
    assert_eq!(r["status"], "ready", "a standby is ready to take over: {r}");
    assert_eq!(
        (&r["desk"], &r["desk_holder"]),
        (&json!("standby"), &json!("trader-1"))
    );
    let token = t1.admin_token();

    // The standby refuses trading calls and says where the desk is.
    let p = refused(
        t2.get("/api/v1/trading/accounts")
            .bearer_auth(&token)
            .send()
            .unwrap(),
        "desk-elsewhere",
    );
    assert!(p["detail"].as_str().unwrap().contains("trader-1"), "{p}");
    // Desk jobs submitted through the standby run on the holder: the
    // standby does not claim them.
    let jobs: Vec<String> = (0..4)
        .map(|_| {
            let r = t2
                .post("/api/v1/jobs")
                .bearer_auth(&token)
                .json(&json!({"kind": "trading.retention"}))
                .send()
                .unwrap();
            assert_eq!(r.status(), 202);
            r.json::<Value>().unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    for id in jobs {
        let done = t2.wait_job(&token, &id, |j| {
            j["state"] == "succeeded" || j["state"] == "failed"
        });
        assert_eq!(
            (&done["state"], &done["node"]),
            (&json!("succeeded"), &json!("trader-1")),
            "{done}"
        );
    }

    // Trading on trader-1: a fill, a resting order, a halted account.
    let tick = |s: &Server, i: i64, ask: f64| {
        let ts = 1_704_157_200_000_000_000 + i * 1_000_000_000;
        s.ingest(
            &token,
            &json!([{"symbol": "IF2409", "ts": ts, "price": ask - 0.2, "size": 1,
                     "bid": ask - 0.4, "ask": ask}]),
        );
        wait_for("the quote to reach the desk", || {
            s.get_json(&token, "/api/v1/trading/quotes")["IF2409"]["ts"] == ts
        });
    };
    tick(&t1, 0, 3500.2);
    let m1 = json!({"client_id": "m1", "symbol": "IF2409", "side": "buy", "qty": "2"});
    let r = order(&t1, &token, "paper", m1.clone());
    assert_eq!(r.status(), 201);
    let filled: Value = r.json().unwrap();
    assert_eq!(filled["state"], "filled", "{filled}");
    let rest = json!({"client_id": "rest", "symbol": "IF2409", "side": "buy", "qty": "1",
                      "type": "limit", "price": "3490"});
    assert_eq!(order(&t1, &token, "paper", rest).status(), 201);
    let r = t1
        .post("/api/v1/trading/accounts")
        .bearer_auth(&token)
        .json(&json!({"name": "second", "initial_cash": "500000"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = t1
        .post("/api/v1/trading/kill?account=second&reason=drill")
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    // A live strategy on the holder, fed by ticks ingested through the
    // standby's API; its fills reach a /ws client of the standby.
    let r = t1.upload_plugin(&token, crate::support::component("sma_crossover"));
    assert_eq!(r.status(), 201);
    let r = t1
        .post("/api/v1/strategies")
        .bearer_auth(&token)
        .json(
            &json!({"plugin": "sma-crossover", "params": {"fast": 3, "slow": 8, "size": 1},
                      "symbols": ["IF2409"], "interval": "tick"}),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let strategy = r.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut client = ws::connect(&t2);
    ws::send(&mut client, json!({"auth": token}));
    ws::next(&mut client, "authenticated");
    ws::send(&mut client, json!({"subscribe": ["fills"]}));
    ws::next(&mut client, "subscribed");
    let wave: Vec<Value> = (0..120i64)
        .map(|i| {
            let p = (3500.0 + 10.0 * (i as f64 / 10.0).sin()).round();
            json!({"symbol": "IF2409", "ts": 1_704_157_300_000_000_000i64 + i * 1_000_000_000,
                   "price": p, "size": 1, "bid": p - 0.2, "ask": p + 0.2})
        })
        .collect();
    t2.ingest(&token, &Value::Array(wave));
    let fill = ws::next(&mut client, "fills");
    assert_eq!(fill["strategy"], strategy.as_str(), "{fill}");
    drop(client);
    // Let the strategy's last orders land before the books are compared.
    std::thread::sleep(Duration::from_millis(500));
    let positions = booked(t1.get_json(&token, "/api/v1/trading/positions"));
    let open = t1.get_json(&token, "/api/v1/trading/orders");
    assert_eq!(open.as_array().unwrap().len(), 1, "{open}");
    let fills = t1.get_json(&token, "/api/v1/trading/fills");

    // The holder dies: the standby takes over within 5 s with the same
    // positions, open orders and kill switch.
    let killed = Instant::now();
    t1.kill9();
    let failover = until_held(&t2, killed);
    assert!(
        failover < Duration::from_secs(5),
        "failover took {failover:?}"
    );
    assert_eq!(
        booked(t2.get_json(&token, "/api/v1/trading/positions")),
        positions
    );
    assert_eq!(t2.get_json(&token, "/api/v1/trading/orders"), open);
    let second = t2.get_json(&token, "/api/v1/trading/account?account=second");
    assert_eq!(
        (&second["halted"], &second["halted_reason"]),
        (&json!(true), &json!("drill"))
    );
    // A retried client id is the order already placed: no second fill.
    let r = order(&t2, &token, "paper", m1);
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().unwrap()["id"], filled["id"]);
    assert_eq!(t2.get_json(&token, "/api/v1/trading/fills"), fills);
    // The strategy runs again on the new holder.
    let doc = t2.get_json(&token, &format!("/api/v1/strategies/{strategy}"));
    assert_eq!(doc["status"], "running", "{doc}");
    // The new holder trades.
    tick(&t2, 300, 3501.0);
    let r = order(
        &t2,
        &token,
        "paper",
        json!({"client_id": "after-kill", "symbol": "IF2409", "side": "buy", "qty": "1"}),
    );
    assert_eq!(r.status(), 201);
    let r = order(
        &t2,
        &token,
        "second",
        json!({"client_id": "halted", "symbol": "IF2409", "side": "buy", "qty": "1"}),
    );
    assert_eq!(r.status(), 422, "the kill switch holds across the failover");

    // The holder freezes (SIGSTOP) while a standby takes over; when it
    // wakes, it writes nothing and stands by.
    let t3 = start(2);
    assert_eq!(ready(&t3)["desk"], "standby");
    t2.signal("STOP");
    let frozen = Instant::now();
    let takeover = until_held(&t3, frozen);
    assert!(
        takeover < Duration::from_secs(5),
        "takeover took {takeover:?}"
    );
    let before = t3.get_json(&token, "/api/v1/trading/orders?status=all");
    t2.signal("CONT");
    writes_nothing(&t2, &t3, &token, &before);
    assert_eq!(ready(&t2)["desk_holder"], "trader-3");
    let log = t2.log();
    assert!(log.contains("desk lease lost"), "{log}");
    eprintln!("failover after kill -9: {failover:?}; after SIGSTOP: {takeover:?}");

    // On hosts of their own: the holder's link is cut (it can reach
    // neither the database nor anyone); the standby takes over; when the
    // link is back, the old holder writes nothing and stands by.
    if let Some(h) = &hosts {
        let before = t3.get_json(&token, "/api/v1/trading/orders?status=all");
        h[2].cut();
        let cut = Instant::now();
        let partition = until_held(&t2, cut);
        assert!(
            partition < Duration::from_secs(5),
            "takeover took {partition:?}"
        );
        // Give the cut-off holder a whole lease term to notice, then heal.
        std::thread::sleep(Duration::from_millis(1600));
        h[2].restore();
        writes_nothing(&t3, &t2, &token, &before);
        eprintln!("failover after a network partition: {partition:?}");
    }
    drop((t1, t2, t3));
    let _ = runtime().block_on(qb_redis::delete_prefix(&redis_url(), &prefix));
}

fn schedule_jobs(s: &Server, token: &str, sid: &str) -> Vec<Value> {
    let jobs = s.get_json(token, "/api/v1/jobs?kind=diag.sleep&page_size=100");
    jobs["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["schedule_id"] == sid)
        .cloned()
        .collect()
}

#[test]
fn two_schedulers_fire_once_and_follow_edits_made_elsewhere() {
    let db = fresh_db();
    let prefix = format!("qbit-sched-{}", std::process::id());
    let env = |node: &str, role: &str| {
        let mut e = node_env(&db, &prefix, node);
        e.push(("QUANTBOX_ROLE".into(), role.into()));
        e
    };
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let api = Server::start_in(dirs[0].path(), &as_refs(&env("api-1", "api")));
    let _s1 = Server::start_in(dirs[1].path(), &as_refs(&env("sched-1", "scheduler")));
    let mut s2 = Server::start_in(dirs[2].path(), &as_refs(&env("sched-2", "scheduler")));
    let token = api.admin_token();

    // Created on the API node, which runs no scheduler: both schedulers
    // hear of it, and each due second is enqueued once.
    let r = api
        .post("/api/v1/schedules")
        .bearer_auth(&token)
        .json(&json!({"name": "every-second", "cron": "* * * * * *",
                      "job": {"kind": "diag.sleep", "params": {"seconds": 0}}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let sid = r.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let created = Instant::now();
    std::thread::sleep(Duration::from_millis(3500));
    let edit = |enabled: bool| {
        let r = api
            .http
            .patch(api.url(&format!("/api/v1/schedules/{sid}")))
            .bearer_auth(&token)
            .json(&json!({ "enabled": enabled }))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    };
    edit(false);
    let elapsed = created.elapsed().as_secs_f64();
    let n = schedule_jobs(&api, &token, &sid).len();
    assert!(
        n >= 2 && n as f64 <= elapsed.ceil() + 1.0,
        "{n} runs in {elapsed:.1} s from two schedulers"
    );
    // Disabled through the API node: within seconds neither fires.
    std::thread::sleep(Duration::from_millis(1500));
    let settled = schedule_jobs(&api, &token, &sid).len();
    std::thread::sleep(Duration::from_millis(2000));
    assert_eq!(
        schedule_jobs(&api, &token, &sid).len(),
        settled,
        "disabled everywhere"
    );

    // One scheduler dies; enabled again, the other still fires once a second.
    s2.kill9();
    edit(true);
    let resumed = Instant::now();
    std::thread::sleep(Duration::from_millis(3000));
    edit(false);
    let more = schedule_jobs(&api, &token, &sid).len() - settled;
    let elapsed = resumed.elapsed().as_secs_f64();
    assert!(
        more >= 2 && more as f64 <= elapsed.ceil() + 1.0,
        "{more} runs in {elapsed:.1} s from the surviving scheduler"
    );
    let _ = runtime().block_on(qb_redis::delete_prefix(&redis_url(), &prefix));
}

/// An upload and backtests through one API node, run by workers that
/// share no disk with it, read back through another API node; a worker
/// killed in the middle of a backtest, whose job the other finishes with
/// the result of an undisturbed run.
#[test]
fn work_crosses_nodes_and_survives_a_killed_worker() {
    use reqwest::blocking::multipart::{Form, Part};
    let db = fresh_db();
    let prefix = format!("qbit-blobs-{}", std::process::id());
    let env = |node: &str, role: &str| {
        let mut e = node_env(&db, &prefix, node);
        e.push(("QUANTBOX_ROLE".into(), role.into()));
        // A dead worker is noticed after 3 s.
        e.push(("QUANTBOX_CLUSTER__HEARTBEAT_SECS".into(), "1".into()));
        e.push(("QUANTBOX_CLUSTER__NODE_TIMEOUT_SECS".into(), "3".into()));
        e
    };
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    // A host of its own per node where namespaces can be made here.
    let hosts: Option<Vec<Host>> = (10..14).map(Host::create).collect();
    let start = |i: usize, node: &str, role: &str| match &hosts {
        Some(h) => h[i].start(dirs[i].path(), &as_refs(&through(&h[i], env(node, role)))),
        None => Server::start_in(dirs[i].path(), &as_refs(&env(node, role))),
    };
    let api1 = start(0, "api-1", "api");
    let api2 = start(1, "api-2", "api");
    let mut workers = vec![
        Some(start(2, "worker-1", "worker")),
        Some(start(3, "worker-2", "worker")),
    ];
    let token = api1.admin_token();

    // 20,000 one-minute bars uploaded to api-1, imported by a worker.
    let csv = trend_bars_csv(20_000);
    let form = Form::new()
        .part("file", Part::text(csv).file_name("bars.csv"))
        .text("format", "bars_csv")
        .text("interval", "1m")
        .text("ts_unit", "s");
    let r = api1
        .post("/api/v1/market/imports")
        .bearer_auth(&token)
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let job: Value = r.json().unwrap();
    let done = api2.wait_job(&token, job["id"].as_str().unwrap(), |j| {
        j["state"] == "succeeded" || j["state"] == "failed"
    });
    assert_eq!(done["state"], "succeeded", "{done}");
    assert!(
        done["node"].as_str().unwrap().starts_with("worker-"),
        "{done}"
    );
    assert_eq!(done["result"]["rows_stored"], 20_000, "{done}");
    // No node kept the upload: it was a blob, deleted after the import.
    for d in &dirs {
        for sub in ["uploads", "scratch"] {
            let left: Vec<_> = std::fs::read_dir(d.path().join(sub))
                .map(|r| r.flatten().filter(|e| e.path().is_file()).collect())
                .unwrap_or_default();
            assert!(left.is_empty(), "{sub}: {left:?}");
        }
    }

    for (name, plugin) in [("sma", "sma_crossover"), ("slow", "misbehave")] {
        let r = api1.upload_plugin(&token, crate::support::component(plugin));
        assert_eq!(r.status(), 201, "{name}");
    }
    let start = |body: Value| -> String {
        let r = api1
            .post("/api/v1/backtests")
            .bearer_auth(&token)
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(r.status(), 202);
        r.json::<Value>().unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let finished = |id: &str| -> Value {
        wait_for("the backtest to finish", || {
            let b = api2.get_json(&token, &format!("/api/v1/backtests/{id}"));
            b["status"] != "queued" && b["status"] != "running"
        });
        api2.get_json(&token, &format!("/api/v1/backtests/{id}"))
    };
    let id = start(
        json!({"plugin": "sma-crossover@0.1.0", "params": {"fast": 5, "slow": 20},
                          "symbols": ["rb"], "interval": "1m"}),
    );
    let b = finished(&id);
    assert_eq!(b["status"], "succeeded", "{b}");
    // Everything the worker wrote is served by the other API node.
    let fills = api2.get_json(&token, &format!("/api/v1/backtests/{id}/fills"));
    assert!(fills.as_array().unwrap().len() >= 6, "{fills}");
    for path in [
        format!("/api/v1/backtests/{id}/files/equity.csv"),
        format!("/api/v1/backtests/{id}/files/fills.parquet"),
        format!("/reports/{id}.html"),
    ] {
        let r = api2.get(&path).bearer_auth(&token).send().unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(!r.bytes().unwrap().is_empty(), "{path}");
    }
    let equity = api2
        .get(&format!("/api/v1/backtests/{id}/files/equity.csv"))
        .bearer_auth(&token)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(equity.lines().count(), 20_001);

    // A slow run (seconds): its worker is killed while it runs; the other
    // worker takes the job back and finishes it with the result an
    // undisturbed run gives.
    let slow = json!({"plugin": "misbehave@0.1.0", "params": {"mode": 5},
                      "symbols": ["rb"], "interval": "1m"});
    let id = start(slow.clone());
    let mut running = Value::Null;
    wait_for("the slow backtest to run", || {
        running = api2.get_json(&token, &format!("/api/v1/jobs/{id}"));
        running["state"] == "running"
    });
    let victim = running["node"].as_str().unwrap().to_string();
    let index = usize::from(victim == "worker-2");
    workers[index].take().unwrap().kill9();
    let b = finished(&id);
    assert_eq!(b["status"], "succeeded", "{b}");
    let job = api2.get_json(&token, &format!("/api/v1/jobs/{id}"));
    assert_ne!(job["node"], victim.as_str(), "{job}");
    let undisturbed = finished(&start(slow));
    assert_eq!(undisturbed["status"], "succeeded", "{undisturbed}");
    assert_eq!(b["result_hash"], undisturbed["result_hash"]);
    drop((api1, api2, workers));
    let _ = runtime().block_on(qb_redis::delete_prefix(&redis_url(), &prefix));
}

/// The trading zone's budget is one for the whole cluster (Redis), not one
/// per node: requests spread over two nodes run out of it together.
#[test]
fn the_trading_rate_limit_is_one_budget_for_the_cluster() {
    let db = fresh_db();
    let prefix = format!("qbit-limit-{}", std::process::id());
    let env = |node: &str| {
        let mut e = trader_env(&db, &prefix, node);
        for (k, v) in [
            ("QUANTBOX_RATE_LIMIT__ENABLED", "true"),
            ("QUANTBOX_RATE_LIMIT__TRADING_PER_SEC", "1"),
            ("QUANTBOX_RATE_LIMIT__TRADING_BURST", "4"),
        ] {
            e.push((k.into(), v.into()));
        }
        e
    };
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let t1 = Server::start_in(dirs[0].path(), &as_refs(&env("trader-1")));
    wait_for("trader-1 to hold the desk", || ready(&t1)["desk"] == "held");
    let t2 = Server::start_in(dirs[1].path(), &as_refs(&env("trader-2")));
    let token = t1.admin_token();
    let nodes = [&t1, &t2];
    let statuses: Vec<u16> = (0..6)
        .map(|i| {
            nodes[i % 2]
                .get("/api/v1/trading/accounts")
                .bearer_auth(&token)
                .send()
                .unwrap()
                .status()
                .as_u16()
        })
        .collect();
    // Four within the burst (the holder answers, the standby points to
    // it), then both nodes refuse: the budget was spent on both together.
    assert!(statuses[..4].iter().all(|s| *s != 429), "{statuses:?}");
    assert_eq!(&statuses[4..], &[429, 429], "{statuses:?}");
    let _ = runtime().block_on(qb_redis::delete_prefix(&redis_url(), &prefix));
}
