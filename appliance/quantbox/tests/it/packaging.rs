//! Packaging artefacts that no tool here can run: the Dockerfile (no
//! Docker engine) is parsed and checked against the binary's defaults;
//! every metric the alert rules and the Grafana dashboard use is one the
//! server exports (or is named as exported by a later component).

use std::path::PathBuf;

use crate::support::Server;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Labelled metrics that appear with their first event: a stopped plugin
/// call (tested in qb-plugin-host) and a live strategy's PnL (tested in
/// `strategies`).
const LATER: &[&str] = &["quantbox_plugin_traps_total", "quantbox_strategy_pnl"];

#[test]
fn dockerfile_matches_the_binary() {
    let text = std::fs::read_to_string(repo().join("packaging/docker/Dockerfile")).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    let froms: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("FROM "))
        .copied()
        .collect();
    assert_eq!(
        froms.len(),
        3,
        "dashboard, Rust build and runtime stages: {froms:?}"
    );
    assert!(froms[0].contains("node:") && froms[0].ends_with("AS web"));
    // The Rust build embeds the dashboard built by the first stage.
    assert!(lines.iter().any(|l| l.starts_with("COPY --from=web ")));
    assert!(lines.iter().any(|l| l.contains("QB_WEB_DIST=")));
    assert!(froms[1].contains("rust:1.95") && froms[1].ends_with("AS build"));
    assert!(
        froms[2].contains("-slim") && froms[2].ends_with("AS runtime"),
        "slim glibc runtime"
    );
    let runtime = &lines[lines
        .iter()
        .position(|l| l.starts_with("FROM debian"))
        .unwrap()..];
    let user = runtime
        .iter()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER in the runtime stage");
    assert_ne!(user.trim(), "root");
    assert!(
        runtime
            .iter()
            .any(|l| l.starts_with("RUN quantbox --version")),
        "smoke step"
    );
    let health = runtime
        .iter()
        .position(|l| l.starts_with("HEALTHCHECK"))
        .expect("HEALTHCHECK");
    let default_port = qb_core::config::Config::default().bind.port();
    assert!(runtime[health + 1].contains(&format!("127.0.0.1:{default_port}/health")));
    let expose: u16 = runtime
        .iter()
        .find_map(|l| l.strip_prefix("EXPOSE "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(expose, default_port);
    assert!(
        runtime
            .iter()
            .any(|l| l.starts_with("VOLUME") && l.contains("/var/lib/quantbox"))
    );
    assert!(
        runtime
            .iter()
            .any(|l| l.contains("QUANTBOX_DATA_DIR=/var/lib/quantbox"))
    );
    assert!(text.contains("--profile dist"), "ships the dist profile");
    assert!(
        text.contains("/out/usr/lib/quantbox/libduckdb.so"),
        "ships libduckdb beside the binary's RUNPATH"
    );
}

fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_alphabetic() || bytes[i] == '_' {
            let start = i;
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || bytes[i] == '_' || bytes[i] == ':')
            {
                i += 1;
            }
            let word: String = bytes[start..i].iter().collect();
            let next = bytes[i..].iter().find(|c| !c.is_whitespace());
            if (word.starts_with("quantbox_")
                || word.starts_with("http_")
                || word.starts_with("process_"))
                && next != Some(&'(')
            {
                out.push(word);
            }
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn alerts_and_dashboards_use_exported_metrics() {
    let s = Server::start(&[]);
    let t = s.admin_token();
    s.get("/api/v1/jobs").bearer_auth(&t).send().unwrap();
    let exposition = s.get("/metrics").send().unwrap().text().unwrap();
    let exported = |name: &str| {
        let base = name
            .trim_end_matches("_bucket")
            .trim_end_matches("_sum")
            .trim_end_matches("_count");
        exposition
            .lines()
            .any(|l| l.starts_with(name) || l.starts_with(&format!("# TYPE {base} ")))
    };
    let rules =
        std::fs::read_to_string(repo().join("packaging/monitoring/prometheus/quantbox.rules.yml"))
            .unwrap();
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            repo().join("packaging/monitoring/grafana/dashboards/quantbox.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut exprs: Vec<String> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr:").map(|e| e.trim().to_string()))
        .collect();
    // Multi-line expressions continue on the following indented lines.
    exprs.extend(
        rules
            .split("expr: |")
            .skip(1)
            .map(|b| b.lines().take(3).collect::<Vec<_>>().join(" ")),
    );
    let panels = dash["panels"].as_array().unwrap();
    assert!(panels.len() >= 10);
    for p in panels {
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        exprs.extend(
            targets
                .iter()
                .map(|t| t["expr"].as_str().unwrap().to_string()),
        );
    }
    let mut checked = 0;
    for e in &exprs {
        for name in metric_names(e) {
            if name.contains(':') || LATER.contains(&name.as_str()) {
                continue;
            }
            assert!(
                exported(&name),
                "{name} (in {e}) is not exported by quantbox"
            );
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} metric references checked");
}
