//! Backup while serving and restore into a fresh data directory (issue
//! 20): a real server takes ticks, orders and a backtest while
//! `quantbox backup` asks it for a copy; `quantbox restore` puts the copy
//! into a new directory, and a second server on it holds everything that
//! was acknowledged before the backup started, with the store counts of
//! the manifest.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::blocking::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::support::{Server, cluster, command, trend_bars_csv, wait_for};

const T0: i64 = 1_704_157_200_000_000_000; // 2024-01-02T01:00:00Z

fn run(cmd: &mut std::process::Command) -> (bool, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn symbols(s: &Server, t: &str) -> std::collections::BTreeMap<String, u64> {
    s.get_json(t, "/api/v1/market/symbols")
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["symbol"].as_str().unwrap().to_string(),
                v["ticks"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn client_ids(s: &Server, t: &str) -> BTreeSet<String> {
    s.get_json(t, "/api/v1/trading/orders?status=all")
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["client_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_backup_taken_while_serving_restores_everything_acknowledged_before_it() {
    if cluster() {
        return; // one box only: a cluster's data is PostgreSQL's to back up
    }
    let tmp = tempfile::tempdir().unwrap();
    let live = tmp.path().join("live");
    let restored = tmp.path().join("restored");
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&live).unwrap();
    let mut s = Server::start_in(&live, &[]);
    let t = s.admin_token();
    s.user_token(&t, "bea", "trader");

    // Research: bars, a plugin, a finished backtest (its files are blobs).
    let form = Form::new()
        .part(
            "file",
            Part::text(trend_bars_csv(5_000)).file_name("bars.csv"),
        )
        .text("format", "bars_csv")
        .text("interval", "1m")
        .text("ts_unit", "s");
    let r = s
        .post("/api/v1/market/imports")
        .bearer_auth(&t)
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let job: Value = r.json().unwrap();
    let done = s.wait_job(&t, job["id"].as_str().unwrap(), |j| {
        j["state"] == "succeeded" || j["state"] == "failed"
    });
    assert_eq!(done["state"], "succeeded", "{done}");
    let r = s.upload_plugin(&t, crate::support::component("sma_crossover"));
    assert_eq!(r.status(), 201);
    let start_backtest = || -> String {
        let r = s
            .post("/api/v1/backtests")
            .bearer_auth(&t)
            .json(
                &json!({"plugin": "sma-crossover@0.1.0", "params": {"fast": 5, "slow": 20},
                          "symbols": ["rb"], "interval": "1m"}),
            )
            .send()
            .unwrap();
        assert_eq!(r.status(), 202);
        r.json::<Value>().unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let bt = start_backtest();
    wait_for("the backtest to finish", || {
        let b = s.get_json(&t, &format!("/api/v1/backtests/{bt}"));
        b["status"] != "queued" && b["status"] != "running"
    });
    let equity = s
        .get(&format!("/api/v1/backtests/{bt}/files/equity.csv"))
        .bearer_auth(&t)
        .send()
        .unwrap();
    assert_eq!(equity.status(), 200);
    let equity = equity.bytes().unwrap();

    // 50,000 ticks before the writers start, and a quote for the desk.
    for b in 0..5i64 {
        let body: Vec<Value> = (0..10_000i64)
            .map(|i| json!({"symbol": "BAK", "ts": T0 + (b * 10_000 + i) * 1000, "price": 1.0, "size": 1.0}))
            .collect();
        s.ingest(&t, &Value::Array(body));
    }
    s.ingest(
        &t,
        &json!([{"symbol": "IF2409", "ts": T0, "price": 3500.0, "size": 1, "bid": 3499.8, "ask": 3500.2}]),
    );
    wait_for("the quote to reach the desk", || {
        s.get_json(&t, "/api/v1/trading/quotes")["IF2409"]["ts"] == T0
    });

    // Writers: ticks (500 a request) and orders, acknowledged ones counted.
    let stop = Arc::new(AtomicBool::new(false));
    let ticks_acked = Arc::new(AtomicU64::new(50_000));
    let orders_acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let tick_writer = {
        let (url, t, acked, stop) = (
            s.url("/api/v1/market/ticks"),
            t.clone(),
            ticks_acked.clone(),
            stop.clone(),
        );
        std::thread::spawn(move || {
            let http = reqwest::blocking::Client::new();
            let mut n = 100i64;
            while !stop.load(Ordering::SeqCst) {
                let body: Vec<Value> = (0..500i64)
                    .map(|i| json!({"symbol": "BAK", "ts": T0 + (n * 500 + i) * 1000, "price": 2.0, "size": 1.0}))
                    .collect();
                n += 1;
                let r = http.post(&url).bearer_auth(&t).json(&body).send().unwrap();
                assert_eq!(r.status(), 200);
                let v: Value = r.json().unwrap();
                acked.fetch_add(v["stored"].as_u64().unwrap(), Ordering::SeqCst);
            }
        })
    };
    let order_writer = {
        let (url, t, acked, stop) = (
            s.url("/api/v1/trading/orders"),
            t.clone(),
            orders_acked.clone(),
            stop.clone(),
        );
        std::thread::spawn(move || {
            let http = reqwest::blocking::Client::new();
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let id = format!("b{i}");
                let body = json!({"client_id": id, "symbol": "IF2409", "side": "buy", "qty": "1",
                                  "type": "limit", "price": format!("{}", 3400 + i % 50)});
                let r = http.post(&url).bearer_auth(&t).json(&body).send().unwrap();
                assert_eq!(r.status(), 201, "order {id}");
                acked.lock().unwrap().push(id);
                i += 1;
            }
        })
    };
    std::thread::sleep(Duration::from_millis(1000));
    // A backtest running (or queued) while the copy is made.
    let running_bt = start_backtest();

    // What was acknowledged before the backup started.
    let ticks_before = ticks_acked.load(Ordering::SeqCst);
    let orders_before = orders_acked.lock().unwrap().clone();
    let began = Instant::now();
    let (ok, stdout, stderr) = run(command(&live, &[]).args([
        "backup",
        "--to",
        out.to_str().unwrap(),
        "--url",
        s.base.as_str(),
        "--token",
        t.as_str(),
    ]));
    let took = began.elapsed();
    // Acknowledged by the time the command returned: the writers were not
    // held up by the copy.
    let ticks_during = ticks_acked.load(Ordering::SeqCst);
    let orders_during = orders_acked.lock().unwrap().len();
    assert!(ok, "backup: {stdout}\n{stderr}");
    stop.store(true, Ordering::SeqCst);
    tick_writer.join().unwrap();
    order_writer.join().unwrap();
    assert!(
        ticks_during > ticks_before && orders_during > orders_before.len(),
        "the writers went on during the backup: ticks {ticks_before} -> {ticks_during}, \
         orders {} -> {orders_during}",
        orders_before.len()
    );
    assert!(!orders_before.is_empty());

    // The backup is under --to, moved out of the server's data directory.
    let backups: Vec<_> = std::fs::read_dir(&out).unwrap().flatten().collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    let backup = backups[0].path();
    assert!(
        stdout.contains(&format!("written to {}", backup.display())),
        "{stdout}"
    );
    let left: Vec<_> = std::fs::read_dir(live.join("backups"))
        .unwrap()
        .flatten()
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(backup.join("manifest.json")).unwrap()).unwrap();
    let stores = &manifest["stores"];
    let manifest_ticks = stores["duckdb"]["ticks"].as_u64().unwrap();
    assert!(
        manifest_ticks > ticks_before,
        "{manifest_ticks} ticks in the backup, {ticks_before} acknowledged before it (+1 quote)"
    );
    assert!(stores["blobs"]["files"].as_u64().unwrap() >= 3, "{stores}");
    assert!(stores["sqlite"]["users"].as_u64().unwrap() >= 2, "{stores}");
    eprintln!(
        "backup while writing: {} ms in the CLI, {} ms in the server, {} files, {} bytes; \
         ticks {manifest_ticks} in the copy ({ticks_before} acknowledged before, {ticks_during} when the command returned); \
         orders {} acknowledged before, {orders_during} when it returned",
        took.as_millis(),
        manifest["took_ms"],
        manifest["files"].as_array().unwrap().len(),
        manifest["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["bytes"].as_u64().unwrap())
            .sum::<u64>(),
        orders_before.len(),
    );

    // A damaged copy is refused.
    let damaged = tmp.path().join("damaged");
    std::fs::create_dir_all(&damaged).unwrap();
    for e in std::fs::read_dir(&backup).unwrap().flatten() {
        if e.path().is_file() {
            std::fs::copy(e.path(), damaged.join(e.file_name())).unwrap();
        }
    }
    let mut bytes = std::fs::read(damaged.join("quantbox.sqlite")).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(damaged.join("quantbox.sqlite"), bytes).unwrap();
    let (ok, stdout, stderr) = run(command(&tmp.path().join("from-damaged"), &[]).args([
        "restore",
        "--from",
        damaged.to_str().unwrap(),
    ]));
    assert!(!ok, "a damaged backup restored: {stdout}");
    assert!(stderr.contains("damaged"), "{stderr}");

    // Restore into a fresh directory; refused into a non-empty one.
    let began = Instant::now();
    let (ok, stdout, stderr) =
        run(command(&restored, &[]).args(["restore", "--from", backup.to_str().unwrap()]));
    let restore_took = began.elapsed();
    assert!(ok, "restore: {stdout}\n{stderr}");
    assert!(!stdout.contains("DIFFERS"), "{stdout}");
    let (ok, _, stderr) =
        run(command(&restored, &[]).args(["restore", "--from", backup.to_str().unwrap()]));
    assert!(!ok && stderr.contains("not empty"), "{stderr}");
    // The restored stores hold the manifest's rows, table by table.
    let counts = qb_stores::backup::count(&restored).unwrap();
    let counts = serde_json::to_value(&counts).unwrap();
    assert_eq!(&counts, stores, "restored counts against the manifest");
    eprintln!("restore: {} ms", restore_took.as_millis());

    // A second server on the restored directory.
    let r = Server::start_in(&restored, &[]);
    let t2 = r.admin_token();
    let syms = symbols(&r, &t2);
    assert!(
        syms["BAK"] + syms["IF2409"] > ticks_before,
        "{syms:?}: {ticks_before} acknowledged before the backup"
    );
    assert_eq!(syms.values().sum::<u64>(), manifest_ticks, "{syms:?}");
    let ids = client_ids(&r, &t2);
    for id in &orders_before {
        assert!(ids.contains(id), "acknowledged order {id} missing");
    }
    let users: Vec<String> = r.get_json(&t2, "/api/v1/users")["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap().to_string())
        .collect();
    assert!(users.contains(&"bea".to_string()), "{users:?}");
    let plugins = r.get_json(&t2, "/api/v1/plugins").to_string();
    assert!(plugins.contains("sma-crossover"), "{plugins}");
    let b = r.get_json(&t2, &format!("/api/v1/backtests/{bt}"));
    assert_eq!(b["status"], "succeeded", "{b}");
    let again = r
        .get(&format!("/api/v1/backtests/{bt}/files/equity.csv"))
        .bearer_auth(&t2)
        .send()
        .unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.bytes().unwrap(), equity, "the backtest's file");
    // The backtest that ran during the copy is there (it reruns if the
    // copy caught it running) and finishes on the restored box.
    let b = r.get_json(&t2, &format!("/api/v1/backtests/{running_bt}"));
    assert!(b["status"].is_string(), "{b}");
    wait_for("the restored box's backtest to finish", || {
        let b = r.get_json(&t2, &format!("/api/v1/backtests/{running_bt}"));
        b["status"] == "succeeded"
    });
    // Orders still idempotent: an acknowledged client id is that order.
    let o = r
        .post("/api/v1/trading/orders")
        .bearer_auth(&t2)
        .json(
            &json!({"client_id": orders_before[0], "symbol": "IF2409", "side": "buy", "qty": "1",
                      "type": "limit", "price": "3400"}),
        )
        .send()
        .unwrap();
    assert_eq!(o.status(), 200);
    drop(r);

    // The same as one archive: `--archive` writes `<name>.tar`, which
    // `restore --from` takes as it takes a directory.
    let out2 = tmp.path().join("out-archive");
    let (ok, stdout, stderr) = run(command(&live, &[]).args([
        "backup",
        "--archive",
        "--to",
        out2.to_str().unwrap(),
        "--url",
        s.base.as_str(),
        "--token",
        t.as_str(),
    ]));
    assert!(ok, "backup --archive: {stdout}\n{stderr}");
    let archives: Vec<_> = std::fs::read_dir(&out2).unwrap().flatten().collect();
    assert_eq!(archives.len(), 1, "{archives:?}");
    let archive = archives[0].path();
    assert!(
        archive.is_file() && archive.extension().is_some_and(|e| e == "tar"),
        "{archive:?}"
    );
    assert!(
        stdout.contains(&format!("written to {}", archive.display())),
        "{stdout}"
    );
    let restored2 = tmp.path().join("restored-archive");
    let (ok, stdout, stderr) =
        run(command(&restored2, &[]).args(["restore", "--from", archive.to_str().unwrap()]));
    assert!(ok, "restore from the archive: {stdout}\n{stderr}");
    assert!(!stdout.contains("DIFFERS"), "{stdout}");
    let staged: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".restore-"))
        .collect();
    assert!(staged.is_empty(), "{staged:?}");
    let counts = qb_stores::backup::count(&restored2).unwrap();
    assert!(counts["duckdb"]["ticks"] >= manifest_ticks, "{counts:?}");
    eprintln!(
        "archive: {} bytes",
        std::fs::metadata(&archive).unwrap().len()
    );

    // With no server running, the command copies the stores itself; the
    // restored box then holds exactly what the stopped one holds.
    let (status, _) = s.terminate();
    assert!(status.success(), "{status}");
    let out3 = tmp.path().join("out-offline");
    let (ok, stdout, stderr) =
        run(command(&live, &[]).args(["backup", "--to", out3.to_str().unwrap()]));
    assert!(ok, "offline backup: {stdout}\n{stderr}");
    let offline = std::fs::read_dir(&out3)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let restored3 = tmp.path().join("restored-offline");
    let (ok, stdout, stderr) =
        run(command(&restored3, &[]).args(["restore", "--from", offline.to_str().unwrap()]));
    assert!(ok, "restore of the offline backup: {stdout}\n{stderr}");
    assert!(!stdout.contains("DIFFERS"), "{stdout}");
    assert_eq!(
        qb_stores::backup::count(&restored3).unwrap(),
        qb_stores::backup::count(&live).unwrap(),
        "the restored offline backup against the stopped box"
    );
}
