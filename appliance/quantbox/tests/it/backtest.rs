//! `quantbox backtest`: imported bars, a real plugin, the summary.

use std::path::PathBuf;

use serde_json::Value;

use crate::support::{bin, command};

fn sma_core_module() -> PathBuf {
    let target = PathBuf::from(bin())
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf();
    target.join("wasm32-unknown-unknown/release/sma_crossover.wasm")
}

#[test]
fn backtest_command_runs_over_imported_bars() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // 600 one-minute bars with integer prices and a few trend changes.
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
    assert_eq!(doc["bars"], 600);
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
}
