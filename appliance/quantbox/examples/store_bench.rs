//! Latencies that depend on the store backend, against a running server:
//!
//! - job enqueue-to-start: `diag.sleep` jobs with 0 s are posted one at a
//!   time; each sample is the job's `started_at - created_at` as the
//!   server recorded it (the wake-up of an idle worker and its claim).
//! - order submit: limit orders far from the market (they rest) posted one
//!   at a time; each sample is the client-side round trip of `POST
//!   /api/v1/trading/orders` (risk checks, the durable batch, the answer).
//!
//! Prints one line per figure: `name p50_ms p99_ms samples`.
//!
//!   store_bench URL TOKEN [SAMPLES]   (packaging/bench/cluster.sh runs it)

use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(name: &str, mut samples: Vec<f64>) {
    samples.sort_by(f64::total_cmp);
    println!(
        "{name} {:.2} {:.2} {}",
        pct(&samples, 0.5),
        pct(&samples, 0.99),
        samples.len()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (base, token) = (args[1].clone(), args[2].clone());
    let n: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(200);
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let post = |path: &str, body: Value| -> Value {
        let r = http
            .post(format!("{base}{path}"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().unwrap()
    };
    let get = |path: &str| -> Value {
        http.get(format!("{base}{path}"))
            .bearer_auth(&token)
            .send()
            .unwrap()
            .json()
            .unwrap()
    };

    // Job enqueue-to-start: one job at a time, so every claim starts idle.
    let mut started = Vec::with_capacity(n);
    for _ in 0..n {
        let job = post(
            "/api/v1/jobs",
            json!({"kind": "diag.sleep", "params": {"seconds": 0}}),
        );
        let id = job["id"].as_str().unwrap().to_string();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let j = get(&format!("/api/v1/jobs/{id}"));
            if j["state"] == "succeeded" {
                let t = |k: &str| {
                    chrono::DateTime::parse_from_rfc3339(j[k].as_str().unwrap())
                        .unwrap()
                        .timestamp_micros() as f64
                };
                started.push((t("started_at") - t("created_at")) / 1000.0);
                break;
            }
            assert!(Instant::now() < deadline, "job {id} did not finish");
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    report("job_enqueue_to_start", started);

    // Order submit round trips: resting limit buys 1 % below a quote the
    // desk has seen, with room for all of them in the account's limits.
    let r = http
        .put(format!("{base}/api/v1/trading/accounts/paper/limits"))
        .bearer_auth(&token)
        .json(&json!({"limits": {"max_open_orders": 1_000_000}}))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "limits: {}", r.status());
    let ts = 1_704_157_200_000_000_000i64;
    post(
        "/api/v1/market/ticks",
        json!([{"symbol": "BENCH", "ts": ts, "price": 100, "size": 1, "bid": 99.9, "ask": 100.1}]),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while get("/api/v1/trading/quotes")["BENCH"]["ts"] != ts {
        assert!(Instant::now() < deadline, "the desk never saw the quote");
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut submit = Vec::with_capacity(n);
    let run = uuid_ish();
    for i in 0..n {
        let body = json!({"client_id": format!("bench-{run}-{i}"), "symbol": "BENCH",
                          "side": "buy", "qty": "1", "type": "limit", "price": "99"});
        let t0 = Instant::now();
        post("/api/v1/trading/orders", body);
        submit.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    report("order_submit", submit);
}

/// A run tag so repeated runs against one server use fresh client ids.
fn uuid_ish() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}
