//! The OpenAPI document is the contract: schemathesis (PyPI, pinned in
//! `packaging/scripts/dev.sh`) generates requests from
//! `/api/openapi.json`, valid and invalid, sends them to the real server
//! and checks every answer: no 5xx, no status the operation does not
//! declare, the declared content type, a body that matches its schema.
//! Rate limits are off for the test servers (`support::command`).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use serde_json::{Value, json};

use reqwest::blocking::multipart::{Form, Part};

use crate::support::{Server, component, trend_bars_csv};

/// The version `dev.sh` installs; the test refuses another, so that what
/// it checks does not change under it.
const SCHEMATHESIS: &str = "4.32.5";

/// Runs schemathesis against `s` with `credential` as the bearer token on
/// every request and `extra` arguments (filters); panics with its report
/// unless it found nothing.
fn schemathesis(s: &Server, credential: &str, extra: &[&str], dir: &Path) {
    let schema = s.url("/api/openapi.json");
    let auth = format!("Authorization: Bearer {credential}");
    let mut cmd = Command::new("schemathesis");
    cmd.current_dir(dir)
        .env("NO_COLOR", "1")
        .args(["--config-file", "schemathesis.toml"])
        .args(["run", &schema, "--url", &s.base, "-H", &auth])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_schema_conformance,response_headers_conformance",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            // Bounded (about a minute on two cores) and reproducible:
            // deterministic generation sends the same cases every run.
            "--max-examples",
            "60",
            "--generation-deterministic",
            // Hypothesis' health checks judge the generated data (too much
            // filtered, too slow on a busy machine), not the API.
            "--suppress-health-check",
            "all",
            "--generation-with-security-parameters",
            "false",
            // One worker: Hypothesis describing its strategies from two
            // threads at once trips over Python's parser ("AST constructor
            // recursion depth mismatch", a tool error, not a finding).
            "--workers",
            "1",
            "--request-timeout",
            "30",
            "--continue-on-failure",
            "--no-shrink",
            "--no-color",
        ])
        .args(extra);
    let started = Instant::now();
    let out = cmd.output().unwrap_or_else(|e| {
        panic!(
            "cannot run schemathesis ({e}); packaging/scripts/dev.sh installs it: \
             python3 -m pip install schemathesis=={SCHEMATHESIS}"
        )
    });
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "schemathesis {extra:?}: {:?} in {:.0?}",
        out.status,
        started.elapsed()
    );
    let log = s.log();
    let tail: Vec<&str> = log.lines().rev().take(100).collect();
    assert!(
        out.status.success(),
        "schemathesis found contract violations ({}):\n{report}\nserver log (last lines):\n{}",
        out.status,
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
}

/// Bars of `rb`, the SMA plugin and a finished backtest of it, so that
/// the routes reading them answer with what they hold (files in CSV and
/// Parquet, the HTML report) and not only 404. Returns the backtest's id.
fn seed_backtest(s: &Server, token: &str) -> String {
    let form = Form::new()
        .part(
            "file",
            Part::text(trend_bars_csv(600)).file_name("bars.csv"),
        )
        .text("format", "bars_csv")
        .text("interval", "1m")
        .text("ts_unit", "s");
    let r = s
        .post("/api/v1/market/imports")
        .bearer_auth(token)
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let job: Value = r.json().unwrap();
    let done = |j: &Value| j["state"] != "queued" && j["state"] != "running";
    let job = s.wait_job(token, job["id"].as_str().unwrap(), done);
    assert_eq!(job["state"], "succeeded", "{job}");
    let r = s.upload_plugin(token, component("sma_crossover"));
    assert_eq!(r.status(), 201);
    let r = s
        .post("/api/v1/backtests")
        .bearer_auth(token)
        .json(
            &json!({"plugin": "sma-crossover@0.1.0", "params": {"fast": 5, "slow": 20},
                      "symbols": ["rb"]}),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let job = s.wait_job(token, &id, done);
    assert_eq!(job["state"], "succeeded", "{job}");
    id
}

#[test]
fn schemathesis_finds_no_contract_violation() {
    let version = Command::new("schemathesis")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|e| {
            panic!(
                "schemathesis is not installed ({e}); packaging/scripts/dev.sh test installs it \
                 (python3 -m pip install schemathesis=={SCHEMATHESIS})"
            )
        });
    assert!(
        version.contains(SCHEMATHESIS),
        "schemathesis {SCHEMATHESIS} expected, found {version:?}; \
         python3 -m pip install schemathesis=={SCHEMATHESIS}"
    );
    let s = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let token = s.admin_token();
    let new_key = |name: &str| -> Value {
        let r = s
            .post("/api/v1/api-keys")
            .bearer_auth(&token)
            .json(&json!({"name": name, "role": "admin"}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
        r.json().unwrap()
    };
    // The main run authenticates with an admin API key: logging out and
    // changing the password end token sessions, not keys, so no operation
    // has to be left out for the run to keep its credential.
    let key = new_key("schemathesis");
    // Every operation stays in, but the ones that change or remove a user
    // or revoke a key act on objects made for them: schemathesis reuses
    // names and ids it read in earlier answers, and deleting the admin or
    // revoking the run's own key would leave the rest of the run with a
    // dead credential (401 everywhere).
    let backtest = seed_backtest(&s, &token);
    s.user_token(&token, "contract-scratch", "trader");
    let scratch_key = new_key("contract-scratch");
    std::fs::write(
        dir.path().join("schemathesis.toml"),
        format!(
            r#"
[[operations]]
include-name = ["PATCH /api/v1/users/{{username}}", "DELETE /api/v1/users/{{username}}"]
parameters = {{ "path.username" = "contract-scratch" }}

[[operations]]
include-name = "DELETE /api/v1/api-keys/{{id}}"
parameters = {{ "path.id" = "{key}" }}

# The seeded backtest's files and report.
[[operations]]
include-name = "GET /api/v1/backtests/{{id}}/files/{{name}}"
parameters = {{ "path.id" = "{backtest}" }}

[[operations]]
include-name = "GET /reports/{{file}}"
parameters = {{ "path.file" = "{backtest}.html" }}
"#,
            key = scratch_key["api_key"]["id"].as_str().unwrap()
        ),
    )
    .unwrap();
    schemathesis(&s, key["key"].as_str().unwrap(), &[], dir.path());
    // Keys cannot make keys (403 in the run above): the key routes once
    // more with the admin's access token.
    schemathesis(
        &s,
        &token,
        &["--include-path-regex", "^/api/v1/api-keys"],
        dir.path(),
    );
}

/// Every `$ref` string in `v`, with where it was found.
fn refs<'a>(v: &'a Value, at: String, out: &mut Vec<(String, &'a str)>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                match (k.as_str(), x) {
                    ("$ref", Value::String(r)) => out.push((at.clone(), r)),
                    _ => refs(x, format!("{at}/{k}"), out),
                }
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                refs(x, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// The document on its own: every reference names a component that is
/// there (a missing one makes the operations using it uncheckable), and
/// every error answer is a problem document.
#[test]
fn document_references_resolve_and_errors_are_problem_documents() {
    let s = Server::start(&[]);
    let doc: Value = s.get("/api/openapi.json").send().unwrap().json().unwrap();
    let mut found = Vec::new();
    refs(&doc, String::new(), &mut found);
    assert!(found.len() > 100, "only {} references", found.len());
    let dangling: Vec<_> = found
        .iter()
        .filter(|(_, r)| doc.pointer(r.trim_start_matches('#')).is_none())
        .collect();
    assert!(dangling.is_empty(), "references to nothing: {dangling:?}");

    let mut operations = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            operations += 1;
            for (status, response) in op["responses"].as_object().unwrap() {
                let response = match response["$ref"].as_str() {
                    Some(r) => doc.pointer(r.trim_start_matches('#')).unwrap(),
                    None => response,
                };
                let content = response["content"].as_object();
                let is_ready = path == "/ready" && status == "503";
                if status.starts_with(['4', '5']) && !is_ready {
                    let types: Vec<&String> =
                        content.map(|c| c.keys().collect()).unwrap_or_default();
                    assert_eq!(
                        types,
                        ["application/problem+json"],
                        "{method} {path} {status}"
                    );
                }
            }
            let statuses = op["responses"].as_object().unwrap();
            if op.get("security").is_some() {
                for status in ["401", "403"] {
                    assert!(
                        statuses.contains_key(status),
                        "{method} {path}: no {status}"
                    );
                }
            }
            if path.starts_with("/api/") {
                assert!(statuses.contains_key("429"), "{method} {path}: no 429");
            }
            if path.contains('{') {
                for status in ["400", "404"] {
                    assert!(
                        statuses.contains_key(status),
                        "{method} {path}: no {status}"
                    );
                }
            }
            if op.get("requestBody").is_some() {
                for status in ["400", "408", "413", "415", "422"] {
                    assert!(
                        statuses.contains_key(status),
                        "{method} {path}: no {status}"
                    );
                }
            }
        }
    }
    assert!(operations > 60, "only {operations} operations");
}
