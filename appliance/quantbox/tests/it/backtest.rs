//! `quantbox backtest`: imported bars, a real plugin, the summary.

use std::path::PathBuf;

use serde_json::Value;

use reqwest::blocking::multipart::{Form, Part};
use serde_json::json;

use crate::support::{Server, command, component, problem, target_dir};

fn sma_component() -> Vec<u8> {
    component("sma_crossover")
}

fn sma_core_module() -> PathBuf {
    target_dir().join("wasm32-unknown-unknown/release/sma_crossover.wasm")
}

/// 600 one-minute bars of `rb` with integer prices and a few trend
/// changes, as a bars CSV; and each bar's (time, open).
fn bars_csv() -> (String, Vec<(String, i64)>) {
    let mut csv = String::from("symbol,ts,open,high,low,close,volume\n");
    let mut opens = Vec::new();
    let mut close = 3900i64;
    for i in 0..600i64 {
        let open = close;
        let drift = if (i / 60) % 2 == 0 { 2 } else { -2 };
        close = open + drift + (i * 7919 % 5) - 2;
        let ts = chrono::DateTime::from_timestamp(1_704_157_200 + i * 60, 0)
            .unwrap()
            .to_rfc3339();
        csv.push_str(&format!(
            "rb,{ts},{open},{},{},{close},10\n",
            open.max(close) + 1,
            open.min(close) - 1
        ));
        opens.push((ts, open));
    }
    (csv, opens)
}

#[test]
fn backtest_command_runs_over_imported_bars() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (csv, opens) = bars_csv();
    let file = dir.join("bars.csv");
    std::fs::write(&file, csv).unwrap();
    let out = command(dir, &[])
        .args([
            "import",
            "--format",
            "bars_csv",
            "--interval",
            "1m",
            "--symbol",
            "rb",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let backtest = |extra: &[&str]| {
        command(dir, &[])
            .args([
                "backtest", "--symbol", "rb", "--param", "fast=5", "--param", "slow=20", "--plugin",
            ])
            .arg(sma_core_module())
            .args(extra)
            .output()
            .unwrap()
    };
    let out = backtest(&["--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["rows"], 600);
    let fills = doc["fills"].as_array().unwrap();
    assert!(fills.len() >= 6, "{doc}");
    // Each fill is at the open of an imported bar.
    for f in fills {
        let ts = f["ts"].as_i64().unwrap();
        let i = ((ts / 1_000_000_000) - 1_704_157_200) / 60;
        assert_eq!(
            f["price"].as_str().unwrap(),
            opens[i as usize].1.to_string(),
            "{f}"
        );
    }
    assert!(doc["metrics"]["round_trips"].as_u64().unwrap() >= 3);
    assert!(doc["metrics"]["sharpe"].is_number());

    // The same run again: the same result, byte for byte.
    let again: Value = serde_json::from_slice(&backtest(&["--json"]).stdout).unwrap();
    assert_eq!(again["result_hash"], doc["result_hash"]);
    assert_eq!(doc["result_hash"].as_str().unwrap().len(), 64);
    // The text summary with the HTML report, and a refusal of bad parameters.
    let report = dir.join("report.html");
    let out = backtest(&["--report", report.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains("<svg") && html.contains(doc["result_hash"].as_str().unwrap()));
    assert!(
        text.contains("result hash") && text.contains(doc["result_hash"].as_str().unwrap()),
        "{text}"
    );
    let out = backtest(&["--param", "fast=30"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--param fast is given twice"));
    let out = command(dir, &[])
        .args([
            "backtest", "--symbol", "rb", "--param", "fast=30", "--param", "slow=20", "--plugin",
        ])
        .arg(sma_core_module())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("fast (30) must be shorter than slow (20)"),
        "{err}"
    );
    // Parameters the plugin does not declare, or out of its range: refused
    // by the same check as an uploaded plugin's.
    for (param, says) in [
        ("fats=5", "has no parameter \"fats\""),
        ("fast=0", "0 is outside"),
    ] {
        let out = command(dir, &[])
            .args(["backtest", "--symbol", "rb", "--param", param, "--plugin"])
            .arg(sma_core_module())
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{param}: {err}");
    }
}

/// Every way a backtest starts gets the one check of its kind: through
/// `POST /api/v1/jobs` and a schedule as through `POST /api/v1/backtests`,
/// parameters are checked against the plugin's schema and the plugin is
/// pinned by its hash (a later upload of a new version changes nothing
/// already queued or scheduled).
#[test]
fn every_entry_point_checks_a_backtest_the_same_way() {
    let s = Server::start(&[]);
    let admin = s.admin_token();
    let r = s.upload_plugin(&admin, sma_component());
    assert_eq!(r.status(), 201);
    let hash = r.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let job = |params: Value| {
        s.post("/api/v1/jobs")
            .bearer_auth(&admin)
            .json(&json!({"kind": "backtest.run", "params": params}))
            .send()
            .unwrap()
    };
    let bad = json!({"plugin": "sma-crossover", "params": {"fats": 5}, "symbols": ["rb"]});
    assert_eq!(
        problem(job(bad.clone()), 422)["errors"][0]["field"],
        "params.fats"
    );
    let out_of_range = json!({"plugin": "sma-crossover", "params": {"fast": 0}, "symbols": ["rb"]});
    assert_eq!(
        problem(job(out_of_range), 422)["errors"][0]["field"],
        "params.fast"
    );
    let nope = json!({"plugin": "nope@9", "symbols": ["rb"]});
    assert_eq!(problem(job(nope), 422)["errors"][0]["field"], "plugin");
    let r = job(json!({"plugin": "sma-crossover@0.1.0", "params": {"fast": 5}, "symbols": ["rb"]}));
    assert_eq!(r.status(), 202);
    assert_eq!(
        r.json::<Value>().unwrap()["params"]["plugin"],
        hash.as_str()
    );

    let schedule = |params: Value| {
        s.post("/api/v1/schedules")
            .bearer_auth(&admin)
            .json(
                &json!({"name": "nightly", "cron": "0 0 2 * * *", "enabled": false,
                          "job": {"kind": "backtest.run", "params": params}}),
            )
            .send()
            .unwrap()
    };
    assert_eq!(
        problem(schedule(bad), 422)["errors"][0]["field"],
        "job.params.fats"
    );
    let r = schedule(json!({"plugin": "sma-crossover", "symbols": ["rb"]}));
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.json::<Value>().unwrap()["job"]["params"]["plugin"],
        hash.as_str()
    );

    // A sweep names its fields as its request does.
    let r = s
        .post("/api/v1/sweeps")
        .bearer_auth(&admin)
        .json(&json!({"base": {"plugin": "sma-crossover", "params": {"slow": 9999}, "symbols": ["rb"]},
                      "grid": {"fast": [5]}}))
        .send()
        .unwrap();
    assert_eq!(problem(r, 422)["errors"][0]["field"], "base.params.slow");
}

/// Through the API: upload, import, run on the backtest queue, results,
/// files, report; determinism; refusals; a trapping plugin fails its job
/// and the worker goes on.
#[test]
fn backtests_through_the_api() {
    let s = Server::start(&[]);
    let admin = s.admin_token();
    let trader = s.user_token(&admin, "tess", "trader");
    let form = Form::new()
        .part("file", Part::text(bars_csv().0).file_name("bars.csv"))
        .text("format", "bars_csv")
        .text("interval", "1m");
    let r = s
        .post("/api/v1/market/imports")
        .bearer_auth(&trader)
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let job: Value = r.json().unwrap();
    s.wait_job(&trader, job["id"].as_str().unwrap(), |j| {
        j["state"] == "succeeded"
    });
    for (name, bytes) in [
        ("sma", sma_component()),
        ("misbehave", component("misbehave")),
    ] {
        let r = s.upload_plugin(&trader, bytes);
        assert_eq!(r.status(), 201, "{name}");
    }

    let start = |body: Value| {
        s.post("/api/v1/backtests")
            .bearer_auth(&trader)
            .json(&body)
            .send()
            .unwrap()
    };
    let wait = |id: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let b = s.get_json(&trader, &format!("/api/v1/backtests/{id}"));
            if ["succeeded", "failed", "cancelled"].contains(&b["status"].as_str().unwrap()) {
                return b;
            }
            assert!(std::time::Instant::now() < deadline, "{b}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    let body = json!({
        "plugin": "sma-crossover@0.1.0", "params": {"fast": 5, "slow": 20},
        "symbols": ["rb"], "interval": "1m", "commission_rate": "0.0001"
    });
    let r = start(body.clone());
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let b = wait(&id);
    assert_eq!(b["status"], "succeeded", "{b}");
    assert_eq!(b["result_hash"].as_str().unwrap().len(), 64);
    assert!(b["metrics"]["round_trips"].as_u64().unwrap() >= 3, "{b}");
    assert!(b["final_equity"].as_str().is_some());
    assert_eq!(b["settings"]["params"]["fast"], 5.0);

    let fills: Vec<Value> = s
        .get_json(&trader, &format!("/api/v1/backtests/{id}/fills"))
        .as_array()
        .unwrap()
        .clone();
    assert!(fills.len() >= 6);
    assert_eq!(fills[0]["side"], "buy");
    let commission: f64 = fills[0]["commission"].as_str().unwrap().parse().unwrap();
    let price: f64 = fills[0]["price"].as_str().unwrap().parse().unwrap();
    assert!((commission - price * 0.0001).abs() < 1e-9, "{}", fills[0]);
    let equity = s
        .get(&format!("/api/v1/backtests/{id}/files/equity.csv"))
        .bearer_auth(&trader)
        .send()
        .unwrap();
    assert_eq!(equity.status(), 200);
    assert_eq!(equity.text().unwrap().lines().count(), 601);
    // The same tables as Parquet, money as exact decimals.
    let dir = tempfile::tempdir().unwrap();
    for name in ["fills", "equity", "trades"] {
        let r = s
            .get(&format!("/api/v1/backtests/{id}/files/{name}.parquet"))
            .bearer_auth(&trader)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{name}");
        assert_eq!(
            r.headers()["content-type"],
            "application/vnd.apache.parquet"
        );
        let path = dir.path().join(format!("{name}.parquet"));
        std::fs::write(&path, r.bytes().unwrap()).unwrap();
    }
    let db = duckdb::Connection::open_in_memory().unwrap();
    let sql = |q: &str| q.replace("@", &dir.path().display().to_string());
    let n: i64 = db
        .query_row(&sql("SELECT count(*) FROM '@/equity.parquet'"), [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(n, 600);
    let (side, price, commission): (String, String, String) = db
        .query_row(
            &sql("SELECT side, price::VARCHAR, commission::VARCHAR FROM '@/fills.parquet' ORDER BY ts LIMIT 1"),
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    let dec = |v: &Value| {
        v.as_str()
            .unwrap()
            .parse::<rust_decimal::Decimal>()
            .unwrap()
    };
    assert_eq!(side, fills[0]["side"]);
    assert_eq!(
        price.parse::<rust_decimal::Decimal>().unwrap(),
        dec(&fills[0]["price"])
    );
    assert_eq!(
        commission.parse::<rust_decimal::Decimal>().unwrap(),
        dec(&fills[0]["commission"])
    );
    let trips: i64 = db
        .query_row(&sql("SELECT count(*) FROM '@/trades.parquet'"), [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(trips as u64, b["metrics"]["round_trips"].as_u64().unwrap());
    let report = s
        .get(&format!("/reports/{id}.html"))
        .bearer_auth(&trader)
        .send()
        .unwrap();
    assert_eq!(report.status(), 200);
    assert!(
        report.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    assert!(report.text().unwrap().contains("<svg"));
    let list = s.get_json(&trader, "/api/v1/backtests");
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0]["result_hash"], b["result_hash"]);
    // Cancelling a finished backtest is refused and changes nothing.
    let r = s
        .post(&format!("/api/v1/jobs/{id}/cancel"))
        .bearer_auth(&trader)
        .send()
        .unwrap();
    problem(r, 409);
    assert_eq!(
        s.get_json(&trader, &format!("/api/v1/backtests/{id}"))["status"],
        "succeeded"
    );

    // Same data, plugin and parameters: the same result hash.
    let again = start(body).json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(wait(&again)["result_hash"], b["result_hash"]);

    // A backtest on a schedule: its settings (plugin pinned by hash) as the
    // job of a cron schedule; each run gives the same result.
    let r = s
        .post("/api/v1/schedules")
        .bearer_auth(&admin)
        .json(&json!({"name": "nightly-sma", "cron": "* * * * * *",
                      "job": {"kind": "backtest.run", "params": b["settings"]}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap_or_default());
    let sid = r.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let scheduled = loop {
        let jobs = s.get_json(&admin, "/api/v1/jobs?kind=backtest.run&page_size=100");
        let done = jobs["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["schedule_id"] == sid.as_str() && j["state"] == "succeeded")
            .cloned();
        if let Some(j) = done {
            break j;
        }
        assert!(std::time::Instant::now() < deadline, "{jobs}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let r = s
        .http
        .delete(s.url(&format!("/api/v1/schedules/{sid}")))
        .bearer_auth(&admin)
        .send()
        .unwrap();
    assert!(r.status().is_success());
    let run = s.get_json(
        &trader,
        &format!("/api/v1/backtests/{}", scheduled["id"].as_str().unwrap()),
    );
    assert_eq!(run["result_hash"], b["result_hash"]);

    // A sweep: 3 x 2 runs over the same base, spread over the workers;
    // the table sorts by any metric and marks the best run.
    let r = s
        .post("/api/v1/sweeps")
        .bearer_auth(&trader)
        .json(&json!({
            "base": {"plugin": "sma-crossover", "symbols": ["rb"], "commission_rate": "0.0001"},
            "grid": {"fast": [3, 5, 8], "slow": [20, 30]}
        }))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let sweep = r.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let table = loop {
        let t = s.get_json(&trader, &format!("/api/v1/sweeps/{sweep}"));
        if t["done"] == 6 {
            break t;
        }
        assert!(std::time::Instant::now() < deadline, "{t}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let rows = table["rows"].as_array().unwrap();
    let sharpe: Vec<f64> = rows
        .iter()
        .map(|r| r["metrics"]["sharpe"].as_f64().unwrap())
        .collect();
    assert!(sharpe.windows(2).all(|w| w[0] >= w[1]), "{sharpe:?}");
    assert_eq!(table["best"], rows[0]["id"]);
    let twin = rows
        .iter()
        .find(|r| r["params"]["fast"] == 5.0 && r["params"]["slow"] == 20.0)
        .unwrap();
    let twin = s.get_json(
        &trader,
        &format!("/api/v1/backtests/{}", twin["id"].as_str().unwrap()),
    );
    assert_eq!(
        twin["result_hash"], b["result_hash"],
        "the same run inside a sweep"
    );
    let by_return = s.get_json(
        &trader,
        &format!("/api/v1/sweeps/{sweep}?sort=total_return&order=asc"),
    );
    let returns: Vec<f64> = by_return["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["metrics"]["total_return"].as_f64().unwrap())
        .collect();
    assert!(returns.windows(2).all(|w| w[0] <= w[1]), "{returns:?}");
    problem(
        s.get(&format!("/api/v1/sweeps/{sweep}?sort=luck"))
            .bearer_auth(&trader)
            .send()
            .unwrap(),
        422,
    );
    let bad = s
        .post("/api/v1/sweeps")
        .bearer_auth(&trader)
        .json(&json!({"base": {"plugin": "sma-crossover", "symbols": ["rb"]}, "grid": {"fast": [0, 5]}}))
        .send()
        .unwrap();
    assert_eq!(problem(bad, 422)["errors"][0]["field"], "grid.fast");

    // Refusals before anything is queued.
    let doc = problem(
        start(json!({"plugin": "sma-crossover", "params": {"fats": 5}, "symbols": ["rb"]})),
        422,
    );
    assert_eq!(doc["errors"][0]["field"], "params.fats");
    problem(start(json!({"plugin": "nope", "symbols": ["rb"]})), 422);
    problem(
        start(json!({"plugin": "sma-crossover", "symbols": ["r b"]})),
        422,
    );
    // No bars in range: the job fails and says why.
    let id = start(
        json!({"plugin": "sma-crossover", "symbols": ["rb"], "start": "2030-01-01T00:00:00Z"}),
    )
    .json::<Value>()
    .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let b = wait(&id);
    assert_eq!(b["status"], "failed");
    assert!(
        b["error"].as_str().unwrap().contains("no 1m bars of rb"),
        "{b}"
    );
    // A plugin trapping mid-run fails its job; the next run is fine.
    let id = start(json!({"plugin": "misbehave", "params": {"mode": 3}, "symbols": ["rb"]}))
        .json::<Value>()
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let b = wait(&id);
    assert_eq!(b["status"], "failed");
    assert!(b["error"].as_str().unwrap().contains("trap"), "{b}");
    let id = start(json!({"plugin": "sma-crossover", "symbols": ["rb"]}))
        .json::<Value>()
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(wait(&id)["status"], "succeeded");
}

/// A long backtest is cancelled through the jobs API while it runs; the
/// worker takes the next one.
#[test]
fn tick_mode_fills_at_the_stored_quotes() {
    let s = Server::start(&[]);
    let t = s.admin_token();
    let base = 1_704_157_200_000_000_000i64;
    let ticks = json!([
        {"symbol": "IF2409", "ts": base, "price": 3500.2, "size": 1, "bid": 3500.0, "ask": 3500.4},
        {"symbol": "IF2409", "ts": base + 500_000_000, "price": 3501.0, "size": 1, "bid": 3500.8, "ask": 3501.2},
        {"symbol": "IF2409", "ts": base + 1_000_000_000, "price": 3499.0, "size": 1, "bid": 3498.8, "ask": 3499.2},
    ]);
    let r = s
        .post("/api/v1/market/ticks")
        .bearer_auth(&t)
        .json(&ticks)
        .send()
        .unwrap();
    assert!(r.status().is_success());
    let r = s.upload_plugin(&t, component("order_script"));
    assert_eq!(r.status(), 201);
    let start = |interval: &str| {
        s.post("/api/v1/backtests")
            .bearer_auth(&t)
            .json(&json!({"plugin": "order-script", "params": {"market": 2},
                          "symbols": ["IF2409"], "interval": interval}))
            .send()
            .unwrap()
    };
    let p = problem(start("2 ticks"), 422);
    assert!(p["detail"].as_str().unwrap().contains("tick"), "{p}");
    let id = start("tick").json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let b = loop {
        let b = s.get_json(&t, &format!("/api/v1/backtests/{id}"));
        if b["status"] != "queued" && b["status"] != "running" {
            break b;
        }
        assert!(std::time::Instant::now() < deadline, "{b}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(b["status"], "succeeded", "{b}");
    // Decided on the first tick, bought at the next quote's ask.
    let fills = s.get_json(&t, &format!("/api/v1/backtests/{id}/fills"));
    assert_eq!(fills.as_array().unwrap().len(), 1, "{fills}");
    assert_eq!(fills[0]["side"], "buy");
    assert_eq!(fills[0]["qty"], "2");
    assert_eq!(fills[0]["price"], "3501.2");
    assert_eq!(fills[0]["ts"], base + 500_000_000);
}

#[test]
fn a_running_backtest_can_be_cancelled() {
    let s = Server::start(&[]);
    let admin = s.admin_token();
    // 20,000 one-minute bars: about twenty windows of the slow plugin.
    let mut csv = String::from("symbol,ts,open,high,low,close,volume\n");
    for i in 0..20_000i64 {
        let ts = chrono::DateTime::from_timestamp(1_704_157_200 + i * 60, 0)
            .unwrap()
            .to_rfc3339();
        csv.push_str(&format!("x,{ts},100,101,99,100,1\n"));
    }
    let form = Form::new()
        .part("file", Part::text(csv).file_name("bars.csv"))
        .text("format", "bars_csv")
        .text("interval", "1m");
    let job: Value = s
        .post("/api/v1/market/imports")
        .bearer_auth(&admin)
        .multipart(form)
        .send()
        .unwrap()
        .json()
        .unwrap();
    s.wait_job(&admin, job["id"].as_str().unwrap(), |j| {
        j["state"] == "succeeded"
    });
    let r = s.upload_plugin(&admin, component("misbehave"));
    assert_eq!(r.status(), 201);
    let start = |mode: f64| {
        let r = s
            .post("/api/v1/backtests")
            .bearer_auth(&admin)
            .json(&json!({"plugin": "misbehave", "params": {"mode": mode}, "symbols": ["x"]}))
            .send()
            .unwrap();
        r.json::<Value>().unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let id = start(5.0);
    s.wait_job(&admin, &id, |j| {
        j["state"] == "running" && j["progress"].as_f64().unwrap() > 0.0
    });
    let r = s
        .post(&format!("/api/v1/jobs/{id}/cancel"))
        .bearer_auth(&admin)
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().unwrap());
    let done = s.wait_job(&admin, &id, |j| j["state"] != "running");
    assert_eq!(done["state"], "cancelled", "{done}");
    assert!(done["progress"].as_f64().unwrap() < 1.0);
    let next = start(0.0);
    assert_eq!(
        s.wait_job(&admin, &next, |j| j["state"] != "queued"
            && j["state"] != "running")["state"],
        "succeeded"
    );
}
