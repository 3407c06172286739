//! One box → cluster: `quantbox cluster import` on a data directory the
//! real appliance wrote (history imported by its CLI, users, an API key,
//! an instrument, a plugin, a backtest with its files, a schedule, a
//! filled order), into PostgreSQL: interrupted by kill -9 and resumed, a
//! no-op when run again, every count and checksum agreeing, and a cluster
//! node serving the same data afterwards. A cluster that already holds
//! other rows gets them reported, never overwritten.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;

use serde_json::{Value, json};

use crate::cluster::{as_refs, fresh_db, node_env};
use crate::support::{Server, command, component, trend_bars_csv, wait_for};

const T0: i64 = 1_704_157_200_000_000_000;

/// 60,000 ticks of `IF`, every seventh sharing the time of the one before
/// (so `seq` matters), as a CSV with nanosecond times.
fn ticks_csv() -> String {
    let mut csv = String::from("symbol,ts,price,size,bid,ask\n");
    let mut ts = T0;
    for i in 0..60_000i64 {
        if i % 7 != 0 {
            ts += 250_000_000 + (i * 7919 % 1000);
        }
        let p = 3500.0 + ((i * 31) % 200) as f64 * 0.2;
        csv.push_str(&format!(
            "IF,{ts},{p},{},{},{}\n",
            1 + i % 5,
            p - 0.2,
            p + 0.2
        ));
    }
    csv
}

fn cli(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> (i32, String) {
    let out = command(dir, env).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// What the box serves, read back from the cluster to compare.
fn snapshot(s: &Server, admin: &str, backtest: &str) -> Value {
    let get = |p: &str| s.get_json(admin, p);
    let users: Vec<Value> = get("/api/v1/users?page_size=100")["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| json!([u["id"], u["username"], u["role"], u["disabled"], u["feed"]]))
        .collect();
    let equity = s
        .get(&format!("/api/v1/backtests/{backtest}/files/equity.csv"))
        .bearer_auth(admin)
        .send()
        .unwrap()
        .text()
        .unwrap();
    let b = get(&format!("/api/v1/backtests/{backtest}"));
    let schedules: Vec<Value> = get("/api/v1/schedules?page_size=100")["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| json!([s["id"], s["name"], s["cron"], s["enabled"]]))
        .collect();
    json!({
        "users": users,
        "instrument": get("/api/v1/instruments/IF"),
        "plugins": get("/api/v1/plugins")["items"],
        "backtest": [b["status"], b["result_hash"], b["final_equity"]],
        "equity": equity,
        "schedules": schedules,
        "ticks": get(&format!("/api/v1/market/ticks?symbol=IF&limit=50&start={}", T0 + 4_000_000_000_000)),
        "bars": get("/api/v1/market/bars?symbol=rb&interval=5m"),
        "coverage": get("/api/v1/market/symbols"),
        "grants": get("/api/v1/trading/accounts/paper/grants"),
        "positions": get("/api/v1/trading/positions"),
        "orders": get("/api/v1/trading/orders?status=all"),
    })
}

/// The copy and check lines of an import's output.
fn lines<'a>(out: &'a str, prefix: &str) -> Vec<&'a str> {
    let mut on = false;
    let mut v = Vec::new();
    for l in out.lines() {
        if !l.starts_with(' ') {
            on = l.starts_with(prefix);
        } else if on && !l.starts_with("  ...") {
            v.push(l);
        }
    }
    v
}

#[test]
fn a_box_moves_into_a_cluster_resumably_and_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("ticks.csv"), ticks_csv()).unwrap();
    std::fs::write(dir.join("bars.csv"), trend_bars_csv(600)).unwrap();
    for args in [
        vec!["import", "--format", "csv", "--ts-unit", "ns", "ticks.csv"],
        vec![
            "import",
            "--format",
            "bars_csv",
            "--interval",
            "1m",
            "--ts-unit",
            "s",
            "bars.csv",
        ],
    ] {
        let mut full: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let file = dir.join(full.pop().unwrap());
        full.push(file.display().to_string());
        let refs: Vec<&str> = full.iter().map(String::as_str).collect();
        let (code, out) = cli(dir, &[], &refs);
        assert_eq!(code, 0, "{out}");
    }

    // The box at work.
    let mut s = Server::start_in(dir, &[]);
    let admin = s.admin_token();
    let ann = s.user_token(&admin, "ann", "trader");
    s.user_token(&admin, "gone", "viewer");
    let r = s
        .http
        .delete(s.url("/api/v1/users/gone"))
        .bearer_auth(&admin)
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    // Ann trades the house account and may feed ticks.
    let r = s
        .http
        .put(s.url("/api/v1/trading/accounts/paper/grants/ann"))
        .bearer_auth(&admin)
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let r = s
        .http
        .patch(s.url("/api/v1/users/ann"))
        .bearer_auth(&admin)
        .json(&json!({"feed": true}))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let key: Value = s
        .post("/api/v1/api-keys")
        .bearer_auth(&ann)
        .json(&json!({"name": "feed", "role": "viewer"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let key = key["key"].as_str().unwrap().to_string();
    // Registered with defaults by the import; its contract set here.
    let r = s
        .http
        .put(s.url("/api/v1/instruments/IF"))
        .bearer_auth(&admin)
        .json(&json!({"symbol": "IF", "multiplier": "300", "price_tick": "0.2"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    let r = s.upload_plugin(&ann, component("sma_crossover"));
    assert_eq!(r.status(), 201);
    let r = s
        .post("/api/v1/backtests")
        .bearer_auth(&ann)
        .json(
            &json!({"plugin": "sma-crossover@0.1.0", "params": {"fast": 5, "slow": 20},
                      "symbols": ["rb"], "interval": "1m"}),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let backtest = r.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.wait_job(&ann, &backtest, |j| j["state"] == "succeeded");
    let r = s
        .post("/api/v1/schedules")
        .bearer_auth(&admin)
        .json(
            &json!({"name": "nightly-sma", "cron": "0 0 2 * * *", "enabled": false,
                      "job": {"kind": "maintenance.checkpoint"}}),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());
    // A filled order: the desk's state (accounts, orders, fills).
    let ts = T0 + 100_000_000_000_000;
    s.ingest(
        &admin,
        &json!([{"symbol": "IF2409", "ts": ts, "price": 3500, "size": 1, "bid": 3499.8, "ask": 3500.2}]),
    );
    wait_for("the quote at the desk", || {
        s.get_json(&admin, "/api/v1/trading/quotes")["IF2409"]["ts"] == ts
    });
    let r = s
        .post("/api/v1/trading/orders")
        .bearer_auth(&admin)
        .json(&json!({"client_id": "c1", "symbol": "IF2409", "side": "buy", "qty": "2"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());
    let before = snapshot(&s, &admin, &backtest);
    assert_eq!(before["ticks"]["items"].as_array().unwrap().len(), 50);
    assert!(
        before["grants"].to_string().contains("\"ann\""),
        "{}",
        before["grants"]
    );
    assert!(
        before["users"]
            .to_string()
            .contains("\"ann\",\"trader\",false,true"),
        "{}",
        before["users"]
    );
    assert!(
        before["positions"].to_string().contains("IF2409"),
        "{}",
        before["positions"]
    );
    // While the box runs its files are locked: the import refuses.
    let db = fresh_db();
    let prefix = format!("qbit-import-{}", std::process::id());
    let env = node_env(&db, &prefix, "n1");
    let env = as_refs(&env);
    let from = dir.display().to_string();
    let scratch = tempfile::tempdir().unwrap();
    let import = |batch: &str| {
        cli(
            scratch.path(),
            &env,
            &["cluster", "import", "--from", &from, "--batch", batch],
        )
    };
    let (code, out) = import("500");
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("stop the quantbox"), "{out}");
    s.terminate();

    // Interrupted in the middle of the ticks.
    let mut child = command(scratch.path(), &env)
        .args(["cluster", "import", "--from", &from, "--batch", "500"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = String::new();
    for l in BufReader::new(child.stdout.take().unwrap()).lines() {
        let l = l.unwrap();
        seen.push_str(&l);
        seen.push('\n');
        if l.starts_with("  ... ticks IF") {
            break;
        }
    }
    assert!(seen.contains("  ... ticks IF"), "{seen}");
    child.kill().unwrap();
    child.wait().unwrap();

    // Resumed: everything arrives and every check agrees.
    let (code, out) = import("500");
    assert_eq!(code, 0, "{out}");
    // It went on from the marker: some ticks were in before the kill,
    // the rest came now.
    let resumed = lines(&out, "copy")
        .into_iter()
        .find(|l| l.trim_start().starts_with("ticks IF (resumed)"))
        .unwrap_or_else(|| panic!("{out}"));
    let new: u64 = resumed
        .split_whitespace()
        .rev()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(new > 0 && new < 60_000, "{resumed}");
    let checks = lines(&out, "check");
    assert!(checks.len() >= 12, "{out}");
    for c in &checks {
        assert!(c.ends_with(" ok"), "{c}\n{out}");
    }
    for what in [
        "users",
        "api_keys",
        "account_grants",
        "jobs",
        "hot state (entries)",
        "blobs",
        "ticks IF",
        "bars rb 1m",
    ] {
        assert!(
            checks.iter().any(|c| c.trim_start().starts_with(what)),
            "{what} not checked:\n{out}"
        );
    }
    let ticks = checks
        .iter()
        .find(|c| c.trim_start().starts_with("ticks IF"))
        .unwrap();
    assert!(ticks.contains(" 60000 "), "{ticks}");

    // Again: nothing new, the same digests.
    let (code, again) = import("777");
    assert_eq!(code, 0, "{again}");
    for c in lines(&again, "copy") {
        assert!(c.trim_end().ends_with(" 0 new"), "{c}\n{again}");
    }
    assert_eq!(lines(&again, "check"), checks);

    // A cluster node serves what the box served.
    let node = Server::start_in(scratch.path(), &env);
    let admin = node.admin_token();
    wait_for("the desk to open on the cluster node", || {
        node.get_json(&admin, "/ready")["desk"] == "held"
    });
    let after = snapshot(&node, &admin, &backtest);
    for (k, v) in before.as_object().unwrap() {
        assert_eq!(&after[k], v, "{k} differs on the cluster");
    }
    node.login("ann", "ann-password-123");
    let me = node
        .get("/api/v1/auth/me")
        .bearer_auth(&key)
        .send()
        .unwrap();
    assert_eq!(me.status(), 200, "the API key works on the cluster");
    // The deleted user's id stays spent.
    let highest = before["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u[0].as_i64().unwrap())
        .max()
        .unwrap();
    let r = node
        .post("/api/v1/users")
        .bearer_auth(&admin)
        .json(&json!({"username": "newbie", "password": "newbie-password-123", "role": "viewer"}))
        .send()
        .unwrap();
    let created: Value = r.json().unwrap();
    assert!(created["id"].as_i64().unwrap() > highest + 1, "{created}");
    drop(node);

    // A cluster that started before the import holds its own first admin
    // and default schedules: reported, kept, the rest copied.
    let other = fresh_db();
    let env2 = node_env(&other, &format!("{prefix}-b"), "n2");
    let env2 = as_refs(&env2);
    let scratch2 = tempfile::tempdir().unwrap();
    drop(Server::start_in(scratch2.path(), &env2));
    let (code, out) = cli(
        scratch2.path(),
        &env2,
        &["cluster", "import", "--from", &from],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAILED"), "{out}");
    let users = lines(&out, "check")
        .into_iter()
        .find(|c| c.trim_start().starts_with("users"))
        .unwrap();
    assert!(users.contains("DIFFERS"), "{out}");
    let ticks = lines(&out, "check")
        .into_iter()
        .find(|c| c.trim_start().starts_with("ticks IF"))
        .unwrap();
    assert!(ticks.ends_with(" ok"), "{out}");
}
