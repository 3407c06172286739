//! Health, readiness and the Prometheus exposition.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::support::Server;

#[test]
fn health_ready_and_metrics() {
    let s = Server::start(&[]);
    let h: serde_json::Value = s.get("/health").send().unwrap().json().unwrap();
    assert_eq!(h["status"], "ok");
    assert_eq!(h["version"], env!("CARGO_PKG_VERSION"));
    let r: serde_json::Value = s.get("/ready").send().unwrap().json().unwrap();
    assert_eq!(r["status"], "ready");

    let t = s.admin_token();
    // A concrete id must be reported under its route template.
    s.get("/api/v1/jobs/0190abcd-not-a-job")
        .bearer_auth(&t)
        .send()
        .unwrap();
    let text = s.get("/metrics").send().unwrap().text().unwrap();
    for needle in [
        "http_requests_total{method=\"GET\",route=\"/api/v1/jobs/{id}\",status=\"404\"} 1",
        "http_requests_total{method=\"POST\",route=\"/api/v1/auth/login\",status=\"200\"} 1",
        "http_request_duration_seconds_bucket{route=\"/health\",le=\"1\"}",
        "quantbox_queue_length{queue=\"backtest\"} 0",
        "quantbox_queue_length{queue=\"data\"} 0",
        "quantbox_workers{queue=\"data\"} 4",
        "quantbox_workers{queue=\"backtest\"} 2",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
    ] {
        assert!(text.contains(needle), "missing {needle}");
    }
    assert!(!text.contains("0190abcd"), "raw paths never become labels");

    // Invented methods: one `OTHER` label, however many a client makes up.
    let series = |t: &str| {
        t.lines()
            .filter(|l| l.starts_with("http_requests_total{"))
            .count()
    };
    let before = series(&text);
    for i in 0..40 {
        let m = reqwest::Method::from_bytes(format!("INVENTED{i}").as_bytes()).unwrap();
        s.http.request(m, s.url("/health")).send().unwrap();
    }
    let text = s.get("/metrics").send().unwrap().text().unwrap();
    assert!(
        !text.contains("INVENTED"),
        "a method a client invents is no label"
    );
    assert!(text.contains("method=\"OTHER\""));
    assert!(
        series(&text) <= before + 2,
        "{} series after 40 invented methods, {before} before",
        series(&text)
    );

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) must be installed: .ci/run installs it");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
