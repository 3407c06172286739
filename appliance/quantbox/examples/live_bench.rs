//! Live trading latency and WebSocket fan-out against a running server:
//!
//! - tick-to-order: one tick at a time is ingested (`POST
//!   /api/v1/market/ticks`); the SMA crossover (fast 1, slow 2, on ticks)
//!   running as a live strategy answers every tick of an alternating price
//!   with an order; the time from sending the tick to receiving the
//!   order's first event on `/ws` (`orders`) is one sample. p50/p99.
//! - fan-out: N WebSocket clients subscribe to `ticks:FAN`; ticks are
//!   ingested at a steady rate; delivered frames per second across all
//!   clients and the p50/p99 delay from sending a tick to each client
//!   receiving it.
//!
//!   live_bench URL TOKEN PLUGIN_PATH [SAMPLES] [CLIENTS] [RATE] [SECONDS]
//!   (packaging/bench/live.sh starts a server and runs this)

use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::Message;

type Ws = tungstenite::WebSocket<TcpStream>;

fn ws(base: &str, token: &str, channels: &[&str]) -> Ws {
    let addr = base.trim_start_matches("http://").to_string();
    let stream = TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let (mut ws, _) = tungstenite::client(format!("ws://{addr}/ws"), stream).unwrap();
    ws.send(Message::Text(json!({"auth": token}).to_string().into()))
        .unwrap();
    ws.send(Message::Text(
        json!({"subscribe": channels}).to_string().into(),
    ))
    .unwrap();
    loop {
        if let Message::Text(t) = ws.read().unwrap() {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["topic"] == "subscribed" {
                return ws;
            }
        }
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn tick(symbol: &str, n: i64, price: f64) -> Value {
    json!([{"symbol": symbol, "ts": 1_704_157_200_000_000_000i64 + n * 1_000_000,
            "price": price, "size": 1, "bid": price - 0.5, "ask": price + 0.5}])
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (base, token) = (args[1].clone(), args[2].clone());
    let plugin = std::fs::read(&args[3]).expect("plugin component");
    let arg = |i: usize, d: u64| args.get(i).map_or(d, |s| s.parse().unwrap());
    let (samples, clients, rate, secs) = (arg(4, 500), arg(5, 1000), arg(6, 100), arg(7, 10));
    let http = reqwest::blocking::Client::new();
    let post = |path: &str, body: &Value| {
        let r = http
            .post(format!("{base}{path}"))
            .bearer_auth(&token)
            .json(body)
            .send()
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json::<Value>().unwrap_or(Value::Null)
    };

    // Tick to order.
    let r = http
        .post(format!("{base}/api/v1/plugins"))
        .bearer_auth(&token)
        .header("content-type", "application/wasm")
        .body(plugin)
        .send()
        .unwrap();
    assert!(r.status().is_success());
    post(
        "/api/v1/strategies",
        &json!({"plugin": "sma-crossover", "params": {"fast": 1, "slow": 2, "size": 1},
                "symbols": ["LAT"], "interval": "tick"}),
    );
    let mut orders = ws(&base, &token, &["orders"]);
    // Warm up: the averages get their values and the first crossing is
    // downwards while flat (no order); from then on every tick crosses and
    // the long-only strategy buys or sells.
    for (n, p) in [(0, 100.0), (1, 101.0), (2, 100.0)] {
        post("/api/v1/market/ticks", &tick("LAT", n, p));
    }
    let mut lat = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for n in 3..(3 + samples as i64) {
        let price = if n % 2 == 0 { 100.0 } else { 101.0 };
        let t0 = Instant::now();
        post("/api/v1/market/ticks", &tick("LAT", n, price));
        loop {
            let Message::Text(t) = orders.read().unwrap() else {
                continue;
            };
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["topic"] == "orders"
                && seen.insert(v["data"]["id"].as_str().unwrap_or_default().to_string())
            {
                lat.push(t0.elapsed().as_secs_f64() * 1e3);
                break;
            }
        }
    }
    lat.sort_by(f64::total_cmp);
    println!(
        "tick-to-order: {} samples, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        lat.len(),
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        lat.last().unwrap()
    );
    let _ = http
        .post(format!("{base}/api/v1/trading/kill"))
        .bearer_auth(&token)
        .send();

    // Fan-out.
    let sent: Arc<Mutex<Vec<Instant>>> = Arc::new(Mutex::new(Vec::new()));
    let delays: Arc<Mutex<Vec<f64>>> = Arc::new(Mutex::new(Vec::new()));
    // Clients the server cut off as too slow.
    let cut = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let total = rate * secs;
    let readers: Vec<_> = (0..clients)
        .map(|_| {
            let mut c = ws(&base, &token, &["ticks:FAN"]);
            let (sent, delays, cut) = (sent.clone(), delays.clone(), cut.clone());
            std::thread::Builder::new()
                .stack_size(256 << 10)
                .spawn(move || {
                    let mut mine = Vec::with_capacity(total as usize);
                    let mut got = 0;
                    while got < total {
                        let t = match c.read() {
                            Ok(Message::Text(t)) => t,
                            Ok(_) => continue, // pings
                            Err(_) => break,
                        };
                        let at = Instant::now();
                        let v: Value = serde_json::from_str(&t).unwrap();
                        if v["topic"] == "slow_consumer" {
                            cut.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            break;
                        }
                        if v["topic"] != "ticks:FAN" {
                            continue;
                        }
                        let n = ((v["data"]["ts"][0].as_i64().unwrap() - 1_704_157_200_000_000_000)
                            / 1_000_000) as usize;
                        if let Some(s) = sent.lock().unwrap().get(n) {
                            mine.push((at - *s).as_secs_f64() * 1e3);
                        }
                        got += 1;
                    }
                    delays.lock().unwrap().extend(mine);
                })
                .unwrap()
        })
        .collect();
    let start = Instant::now();
    for n in 0..total as i64 {
        let due = start + Duration::from_secs_f64(n as f64 / rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        sent.lock().unwrap().push(Instant::now());
        post("/api/v1/market/ticks", &tick("FAN", n, 100.0));
    }
    let publish_secs = start.elapsed().as_secs_f64();
    for r in readers {
        let _ = r.join();
    }
    let all_secs = start.elapsed().as_secs_f64();
    let mut d = delays.lock().unwrap().clone();
    d.sort_by(f64::total_cmp);
    println!(
        "fan-out: {clients} clients x {total} ticks at {rate}/s ({publish_secs:.1} s): {} of {} frames delivered ({} clients cut off as slow), {:.0} frames/s, delay p50 {:.2} ms, p99 {:.2} ms",
        d.len(),
        clients * total,
        cut.load(std::sync::atomic::Ordering::Relaxed),
        d.len() as f64 / all_secs,
        pct(&d, 0.5),
        pct(&d, 0.99)
    );
}
