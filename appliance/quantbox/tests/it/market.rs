//! Market data through the API: uploads as jobs, live ingest, queries,
//! exports, and durability of acknowledged ticks across SIGKILL.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use reqwest::blocking::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::support::{Server, problem};

const CSV: &str = "symbol,ts,price,size,bid,ask
rb2410,2024-01-02T01:00:00Z,3900,1,3899,3901
rb2410,2024-01-02T01:00:30Z,3905,2,3904,3906
rb2410,2024-01-02T01:01:10Z,3902,5,3901,3903
";

fn upload(
    s: &Server,
    t: &str,
    name: &str,
    body: &str,
    fields: &[(&str, &str)],
) -> reqwest::blocking::Response {
    let mut form = Form::new().part(
        "file",
        Part::text(body.to_string()).file_name(name.to_string()),
    );
    for (k, v) in fields {
        form = form.text(k.to_string(), v.to_string());
    }
    s.post("/api/v1/market/imports")
        .bearer_auth(t)
        .multipart(form)
        .send()
        .unwrap()
}

#[test]
fn uploads_become_import_jobs_with_line_numbers() {
    let s = Server::start(&[]);
    let t = s.admin_token();
    let r = upload(&s, &t, "rb.csv", CSV, &[("format", "csv")]);
    assert_eq!(r.status(), 202);
    let job: Value = r.json().unwrap();
    assert_eq!(
        (job["kind"].as_str(), job["queue"].as_str()),
        (Some("market.import"), Some("data"))
    );
    let done = s.wait_job(&t, job["id"].as_str().unwrap(), |j| {
        j["state"] == "succeeded"
    });
    assert_eq!(done["result"]["rows_stored"], 3);
    assert_eq!(done["result"]["symbols_created"], json!(["rb2410"]));
    assert_eq!(done["result"]["file"], "rb.csv");
    // The unknown symbol was registered with defaults.
    let inst: Value = s.get_json(&t, "/api/v1/instruments/rb2410");
    assert_eq!(inst["multiplier"], "1");
    // Re-importing the same file stores nothing new.
    let r = upload(&s, &t, "rb.csv", CSV, &[("format", "csv")]);
    let again: Value = r.json().unwrap();
    let done = s.wait_job(&t, again["id"].as_str().unwrap(), |j| {
        j["state"] == "succeeded"
    });
    assert_eq!(
        (
            done["result"]["rows_stored"].as_u64(),
            done["result"]["rows_duplicate"].as_u64()
        ),
        (Some(0), Some(3))
    );

    // Strict: the job fails, names the lines, stores nothing.
    let bad = "symbol,ts,price,size\ncu,2024-01-02T01:00:00Z,70000,1\ncu,2024-01-02T01:00:01Z,abc,1\ncu,not-a-time,70000,1\n";
    let r = upload(&s, &t, "cu.csv", bad, &[("format", "csv")]);
    let job: Value = r.json().unwrap();
    let failed = s.wait_job(&t, job["id"].as_str().unwrap(), |j| j["state"] == "failed");
    let err = failed["error"].as_str().unwrap();
    assert!(
        err.contains("line 3: price") && err.contains("line 4: ts"),
        "{err}"
    );
    assert_eq!(failed["result"]["rejections"][0]["line"], 3);
    let syms: Value = s.get_json(&t, "/api/v1/market/symbols");
    assert!(syms.as_array().unwrap().iter().all(|c| c["symbol"] != "cu"));
    // Skip: the good row is stored and every bad one reported.
    let r = upload(
        &s,
        &t,
        "cu.csv",
        bad,
        &[("format", "csv"), ("mode", "skip")],
    );
    let job: Value = r.json().unwrap();
    let done = s.wait_job(&t, job["id"].as_str().unwrap(), |j| {
        j["state"] == "succeeded"
    });
    assert_eq!(
        (
            done["result"]["rows_stored"].as_u64(),
            done["result"]["rows_rejected"].as_u64()
        ),
        (Some(1), Some(2))
    );

    // Bad requests are refused before any job exists.
    let doc = problem(upload(&s, &t, "x.csv", CSV, &[("format", "xls")]), 422);
    assert_eq!(doc["errors"][0]["field"], "format");
    let doc = problem(upload(&s, &t, "x.csv", CSV, &[("format", "bars_csv")]), 422);
    assert_eq!(doc["errors"][0]["field"], "interval");
    let doc = problem(
        upload(
            &s,
            &t,
            "x.csv",
            CSV,
            &[("format", "csv"), ("mapping", "{oops")],
        ),
        422,
    );
    assert_eq!(doc["errors"][0]["field"], "mapping");
    // Nobody names a file on the server, admins included: not to the
    // imports route, not in a job's parameters.
    let r = s
        .post("/api/v1/market/imports")
        .bearer_auth(&t)
        .json(&json!({"path": "/etc/passwd", "format": "csv"}))
        .send()
        .unwrap();
    problem(r, 415);
    let job = |params: Value| {
        s.post("/api/v1/jobs")
            .bearer_auth(&t)
            .json(&json!({"kind": "market.import", "params": params}))
            .send()
            .unwrap()
    };
    let doc = problem(
        job(json!({"path": "/etc/passwd", "upload": "x", "options": {"format": "csv"}})),
        422,
    );
    assert!(doc["detail"].as_str().unwrap().contains("path"), "{doc}");
    let doc = problem(
        job(json!({"upload": "../../etc/passwd", "options": {"format": "csv"}})),
        422,
    );
    assert_eq!(doc["errors"][0]["field"], "params.upload", "{doc}");
    let r = job(json!({"upload": "no-such-upload", "options": {"format": "csv"}}));
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let failed = s.wait_job(&t, &id, |j| j["state"] == "failed");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("upload no-such-upload is gone"),
        "{failed}"
    );
    // A job's error says where a file is wrong, not what it holds, nor
    // where the server keeps it: a bad row, and a file the reader cannot
    // read at all.
    let data_dir = s.data_dir().display().to_string();
    let ragged = "symbol,ts,price,size\ncu,2024-01-02T01:00:00Z,70000,1\ncu,\"SECRET-LINE,1,1\n";
    for (format, expect) in [
        ("csv", "line 3: ts"),
        ("parquet", "cannot read the Parquet file"),
    ] {
        let r = upload(&s, &t, "secret.csv", ragged, &[("format", format)]);
        let id = r.json::<Value>().unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let failed = s.wait_job(&t, &id, |j| j["state"] == "failed");
        let err = failed["error"].as_str().unwrap();
        assert!(err.contains(expect), "{err}");
        assert!(!err.contains("SECRET") && !err.contains(&data_dir), "{err}");
    }
    // Uploads are not left behind: not as blobs (files under uploads/ on
    // one box), not as scratch copies (cluster mode).
    for dir in ["uploads", "scratch"] {
        let left: Vec<_> = std::fs::read_dir(s.data_dir().join(dir))
            .map(|d| d.flatten().filter(|e| e.path().is_file()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{dir}: {left:?}");
    }
}

#[test]
fn live_ingest_queries_and_exports() {
    let s = Server::start(&[]);
    let t = s.admin_token();
    let ingest = |ct: &str, body: String| {
        s.post("/api/v1/market/ticks")
            .bearer_auth(&t)
            .header("content-type", ct)
            .body(body)
            .send()
            .unwrap()
    };
    let base = 1_704_157_200_000_000_000i64; // 2024-01-02T01:00:00Z
    let arr = json!([
        {"symbol": "IF2409", "ts": "2024-01-02T01:00:00Z", "price": 3500.2, "size": 1, "bid": 3500.0, "ask": 3500.4},
        {"symbol": "IF2409", "ts": base + 20_000_000_000i64, "price": 3501.0, "size": 2},
    ]);
    let r: Value = ingest("application/json", arr.to_string()).json().unwrap();
    assert_eq!(r, json!({"stored": 2, "duplicates": 0}));
    let r: Value = ingest("application/json", arr.to_string()).json().unwrap();
    assert_eq!(
        r,
        json!({"stored": 0, "duplicates": 2}),
        "a retried request is idempotent"
    );
    let nd = format!(
        "{}\n{}\n",
        json!({"symbol": "IF2409", "ts": base + 65_000_000_000i64, "price": 3499.0, "size": 3}),
        json!({"symbol": "IF2409", "ts": base + 70_000_000_000i64, "price": 3498.5, "size": 1, "volume": 120}),
    );
    let r: Value = ingest("application/x-ndjson", nd).json().unwrap();
    assert_eq!(r["stored"], 2);
    let csv = format!(
        "symbol,ts,price,size\nIF2409,{},3497,4\n",
        base + 130_000_000_000i64
    );
    let r: Value = ingest("text/csv", csv).json().unwrap();
    assert_eq!(r["stored"], 1);

    // A bad row rejects the whole request, says where, and stores nothing.
    let doc = problem(
        ingest("application/json", json!([{"symbol": "IF2409", "ts": base, "price": 1, "size": 1}, {"symbol": "IF2409", "ts": "yesterday", "price": 1, "size": 1}]).to_string()),
        422,
    );
    assert!(doc["detail"].as_str().unwrap().contains("index 1"), "{doc}");
    let doc = problem(ingest("application/x-ndjson", "{\"symbol\":\"A\",\"ts\":1,\"price\":1,\"size\":1}\n{\"symbol\":\"A\",\"ts\":2,\"price\":\"x\",\"size\":1}\n".into()), 422);
    assert!(doc["detail"].as_str().unwrap().contains("line 2"), "{doc}");
    let doc = problem(
        ingest(
            "text/csv",
            "symbol,ts,price,size\nA,1,1,1\nA,2,3912.50000000000001,1\n".into(),
        ),
        422,
    );
    assert!(doc["detail"].as_str().unwrap().contains("line 3"), "{doc}");
    let syms: Value = s.get_json(&t, "/api/v1/market/symbols");
    assert_eq!(
        syms.as_array().unwrap().len(),
        1,
        "nothing from the rejected requests: {syms}"
    );
    assert_eq!(syms[0]["ticks"], 5);

    // Ticks, paged by cursor.
    let page: Value = s.get_json(&t, "/api/v1/market/ticks?symbol=IF2409&limit=3");
    assert_eq!(page["items"].as_array().unwrap().len(), 3);
    let next = page["next"].as_str().unwrap();
    let page2: Value = s.get_json(
        &t,
        &format!("/api/v1/market/ticks?symbol=IF2409&limit=3&after={next}"),
    );
    assert_eq!(page2["items"].as_array().unwrap().len(), 2);
    assert!(page2["next"].is_null());

    // 1-minute bars: [01:00, 01:01) has 3500.2 and 3501; [01:01, 01:02) two; 01:02 one.
    let bars: Value = s.get_json(&t, "/api/v1/market/bars?symbol=IF2409&interval=1m");
    let b = bars.as_array().unwrap();
    assert_eq!(b.len(), 3);
    assert_eq!(b[0]["ts"], "2024-01-02T01:00:00Z");
    assert_eq!(
        (
            b[0]["open"].as_f64(),
            b[0]["close"].as_f64(),
            b[0]["volume"].as_f64()
        ),
        (Some(3500.2), Some(3501.0), Some(3.0))
    );
    assert_eq!(
        (b[1]["high"].as_f64(), b[1]["low"].as_f64()),
        (Some(3499.0), Some(3498.5))
    );
    let doc = problem(
        s.get("/api/v1/market/bars?symbol=IF2409&interval=7m")
            .bearer_auth(&t)
            .send()
            .unwrap(),
        422,
    );
    assert_eq!(doc["errors"][0]["field"], "interval");
    let doc = problem(
        s.get("/api/v1/market/bars?symbol=IF2409&interval=1d&tz=Nowhere/Land")
            .bearer_auth(&t)
            .send()
            .unwrap(),
        422,
    );
    assert_eq!(doc["errors"][0]["field"], "tz");

    // Exports download as attachments.
    let r = s
        .get("/api/v1/market/export?kind=ticks&format=csv&symbol=IF2409")
        .bearer_auth(&t)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let text = r.text().unwrap();
    assert_eq!(text.lines().count(), 6, "{text}");
    let r = s
        .get("/api/v1/market/export?kind=bars&interval=1m&format=parquet&symbol=IF2409")
        .bearer_auth(&t)
        .send()
        .unwrap();
    let bytes = r.bytes().unwrap();
    assert_eq!(&bytes[..4], b"PAR1");
    // ... and a Parquet export imports back.
    let dir = tempfile::tempdir().unwrap();
    let pq = dir.path().join("ticks.parquet");
    let r = s
        .get("/api/v1/market/export?kind=ticks&format=parquet&symbol=IF2409")
        .bearer_auth(&t)
        .send()
        .unwrap();
    std::fs::write(&pq, r.bytes().unwrap()).unwrap();
    let form = Form::new()
        .part(
            "file",
            Part::bytes(std::fs::read(&pq).unwrap()).file_name("t.parquet"),
        )
        .text("format", "parquet")
        .text("mapping", r#"{"ts": "time"}"#);
    let job: Value = s
        .post("/api/v1/market/imports")
        .bearer_auth(&t)
        .multipart(form)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let done = s.wait_job(&t, job["id"].as_str().unwrap(), |j| {
        j["state"] == "succeeded"
    });
    assert_eq!(done["result"]["rows_duplicate"], 5);

    let metrics = s.get("/metrics").send().unwrap().text().unwrap();
    assert!(
        metrics.contains("quantbox_ticks_ingested_total 5"),
        "{metrics}"
    );
}

#[test]
fn acknowledged_ticks_survive_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let acked = Arc::new(AtomicU64::new(0));
    let batch = 500u64;
    {
        let mut s = Server::start_in(tmp.path(), &[]);
        let t = s.admin_token();
        let stop = Arc::new(AtomicBool::new(false));
        let url = s.url("/api/v1/market/ticks");
        let writer = {
            let (acked, stop) = (acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::new();
                let mut n = 0i64;
                while !stop.load(Ordering::SeqCst) {
                    let body: Vec<Value> = (0..batch)
                        .map(|i| json!({"symbol": "DUR", "ts": 1_700_000_000_000_000_000i64 + n * 1000 + i as i64, "price": 1.0, "size": 1.0}))
                        .collect();
                    n += 1;
                    match http.post(&url).bearer_auth(&t).json(&body).send() {
                        Ok(r) if r.status() == 200 => {
                            let v: Value = r.json().unwrap();
                            acked.fetch_add(v["stored"].as_u64().unwrap(), Ordering::SeqCst);
                        }
                        _ => break, // the server is gone
                    }
                }
            })
        };
        std::thread::sleep(Duration::from_millis(2500));
        s.kill9();
        stop.store(true, Ordering::SeqCst);
        writer.join().unwrap();
    }
    let acked = acked.load(Ordering::SeqCst);
    assert!(
        acked >= 5 * batch,
        "only {acked} ticks acknowledged before the kill"
    );
    let s = Server::start_in(tmp.path(), &[]);
    let t = s.admin_token();
    let syms: Value = s.get_json(&t, "/api/v1/market/symbols");
    let stored = syms[0]["ticks"].as_u64().unwrap();
    assert!(stored >= acked, "{stored} stored < {acked} acknowledged");
    assert!(
        stored <= acked + batch,
        "{stored} stored, {acked} acknowledged: at most one unacknowledged batch"
    );
}

#[test]
fn the_retention_job_deletes_old_market_data() {
    let s = Server::start(&[("QUANTBOX_MARKET__RETENTION_DAYS", "30")]);
    let t = s.admin_token();
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let day = 86_400_000_000_000i64;
    let ticks = json!([
        {"symbol": "OLD", "ts": now_ns - 40 * day, "price": 1.0, "size": 1},
        {"symbol": "OLD", "ts": now_ns - 20 * day, "price": 2.0, "size": 1},
        {"symbol": "NEW", "ts": now_ns - day, "price": 3.0, "size": 1},
    ]);
    let r = s
        .post("/api/v1/market/ticks")
        .bearer_auth(&t)
        .json(&ticks)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let sched: Value = s.get_json(&t, "/api/v1/schedules");
    assert!(
        sched["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["job"]["kind"] == "market.retention")
    );
    let job: Value = s
        .post("/api/v1/jobs")
        .bearer_auth(&t)
        .json(&json!({"kind": "market.retention"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let done = s.wait_job(&t, job["id"].as_str().unwrap(), |j| {
        j["state"] == "succeeded"
    });
    assert_eq!(done["result"]["rows_deleted"], 1);
    let syms: Value = s.get_json(&t, "/api/v1/market/symbols");
    let count = |sym: &str| {
        syms.as_array()
            .unwrap()
            .iter()
            .find(|c| c["symbol"] == sym)
            .map(|c| c["ticks"].as_u64().unwrap())
    };
    assert_eq!((count("OLD"), count("NEW")), (Some(1), Some(1)));
}

/// A retried ingest stores nothing twice and publishes nothing twice: the
/// live feed (`/ws`, the desk, strategies) gets only the ticks a request
/// stored, in its order.
#[test]
fn a_retried_ingest_publishes_only_what_it_stored() {
    let s = Server::start(&[]);
    let t = s.admin_token();
    let mut ws = crate::ws::connect(&s);
    crate::ws::send(&mut ws, json!({"auth": t}));
    crate::ws::next(&mut ws, "authenticated");
    crate::ws::send(&mut ws, json!({"subscribe": ["ticks"]}));
    crate::ws::next(&mut ws, "subscribed");
    let ts = 1_700_000_000_000_000_000i64;
    let tick =
        |dt: i64, price: f64| json!({"symbol": "RT", "ts": ts + dt, "price": price, "size": 1});
    let post = |body: Value| -> Value {
        let r = s
            .post("/api/v1/market/ticks")
            .bearer_auth(&t)
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().unwrap()
    };
    let first = json!([tick(0, 10.0), tick(0, 10.5), tick(1, 11.0)]);
    assert_eq!(post(first.clone())["stored"], 3);
    let event = crate::ws::next(&mut ws, "ticks");
    assert_eq!(event["price"], json!([10.0, 10.5, 11.0]));
    // The client timed out and sends it again, with one more tick at the
    // same time as the first two (a third one there) and one later.
    let mut again = first.as_array().unwrap().clone();
    again.insert(2, tick(0, 10.75));
    again.push(tick(2, 12.0));
    let r = post(Value::Array(again));
    assert_eq!(
        (r["stored"].as_u64(), r["duplicates"].as_u64()),
        (Some(2), Some(3))
    );
    let event = crate::ws::next(&mut ws, "ticks");
    assert_eq!(event["price"], json!([10.75, 12.0]), "{event}");
    assert_eq!(event["ts"], json!([ts, ts + 2]));
    // Nothing new: nothing published (the next event is the next new tick).
    assert_eq!(post(first)["stored"], 0);
    post(json!([tick(3, 13.0)]));
    assert_eq!(crate::ws::next(&mut ws, "ticks")["price"], json!([13.0]));
}

/// A refused upload leaves nothing behind: a second `file` field, an
/// unknown or bad field after the file, a missing format. The files of
/// the data directory's `uploads/` are counted before and after.
#[test]
fn refused_uploads_leave_no_files() {
    let s = Server::start(&[]);
    let t = s.admin_token();
    let uploads = s.data_dir().join("uploads");
    let count = || std::fs::read_dir(&uploads).map(|d| d.count()).unwrap_or(0);
    let send = |form: Form| {
        s.post("/api/v1/market/imports")
            .bearer_auth(&t)
            .multipart(form)
            .send()
            .unwrap()
    };
    let file = || Part::text(CSV.to_string()).file_name("ticks.csv");
    let cases: Vec<(Form, &str)> = vec![
        (
            Form::new()
                .part("file", file())
                .part("file", file())
                .text("format", "csv"),
            "file",
        ),
        (
            Form::new()
                .part("file", file())
                .text("format", "csv")
                .text("delete_after", "true"),
            "delete_after",
        ),
        (
            Form::new().part("file", file()).text("format", "xls"),
            "format",
        ),
        (Form::new().part("file", file()), "format"),
    ];
    for (form, field) in cases {
        let doc = problem(send(form), 422);
        assert_eq!(doc["errors"][0]["field"], field, "{doc}");
        assert_eq!(count(), 0, "a refused upload ({field}) left a file");
    }
    // An accepted one is kept until its import ran.
    let r = send(Form::new().part("file", file()).text("format", "csv"));
    assert_eq!(r.status(), 202);
    let job: Value = r.json().unwrap();
    s.wait_job(&t, job["id"].as_str().unwrap(), |j| {
        j["state"] == "succeeded"
    });
    assert_eq!(count(), 0, "imported uploads are deleted");
}
