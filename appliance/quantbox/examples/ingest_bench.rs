//! Acknowledged ingest through the API: posts batches of ticks (CSV or
//! JSON bodies) to a running server and counts what it acknowledged.
//!
//!   ingest_bench URL TOKEN [BATCH] [SECONDS] [csv|json] [CLIENTS]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = format!("{}/api/v1/market/ticks", args[1]);
    let token = args[2].clone();
    let batch: usize = args.get(3).map(|s| s.parse().unwrap()).unwrap_or(50_000);
    let secs: u64 = args.get(4).map(|s| s.parse().unwrap()).unwrap_or(10);
    let format = args.get(5).cloned().unwrap_or_else(|| "csv".into());
    let clients: usize = args.get(6).map(|s| s.parse().unwrap()).unwrap_or(2);
    let acked = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let (url, token, acked, format) = (url.clone(), token.clone(), acked.clone(), format.clone());
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::new();
                let mut n: i64 = 0;
                while Instant::now() < deadline {
                    let symbol = format!("{}{c}", format.to_uppercase());
                    let (ct, body) = if format == "json" {
                        let ticks: Vec<serde_json::Value> = (0..batch)
                            .map(|_| {
                                n += 1;
                                serde_json::json!({"symbol": symbol, "ts": 1_700_000_000_000_000_000i64 + n * 1000,
                                                   "price": 3900.5, "size": 2, "bid": 3900.0, "ask": 3901.0})
                            })
                            .collect();
                        ("application/json", serde_json::to_vec(&ticks).unwrap())
                    } else {
                        let mut s = String::from("symbol,ts,price,size,bid,ask\n");
                        for _ in 0..batch {
                            n += 1;
                            s.push_str(&format!("{symbol},{},3900.5,2,3900,3901\n", 1_700_000_000_000_000_000i64 + n * 1000));
                        }
                        ("text/csv", s.into_bytes())
                    };
                    let r = http.post(&url).bearer_auth(&token).header("content-type", ct).body(body).send().unwrap();
                    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
                    let v: serde_json::Value = r.json().unwrap();
                    acked.fetch_add(v["stored"].as_u64().unwrap(), Ordering::Relaxed);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let n = acked.load(Ordering::Relaxed);
    println!(
        "{format} bodies, batches of {batch}, {clients} clients: {n} ticks acknowledged in {elapsed:.1} s = {:.0} ticks/s",
        n as f64 / elapsed
    );
}
