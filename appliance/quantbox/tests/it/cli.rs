//! The command line: config check, migrate, user management, refusal to
//! start with bad configuration.

use std::io::Write;
use std::process::Stdio;

use crate::support::{Server, command};

fn run(dir: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let out = command(dir, env).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn config_check_redacts_and_rejects() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = run(dir.path(), &[("WORKERS", "3")], &["config", "check"]);
    assert_eq!(code, 0);
    assert!(out.contains("workers = 3"), "{out}");
    assert!(out.contains("secret_key = \"[redacted]\""), "{out}");
    assert!(!out.contains("integration-test-secret"), "{out}");

    let (code, _, err) = run(
        dir.path(),
        &[("MAX_PAGE_SIZE", "many")],
        &["config", "check"],
    );
    assert_eq!(code, 2);
    assert!(err.contains("max_page_size"), "{err}");

    let toml = dir.path().join("q.toml");
    std::fs::write(&toml, "default_page_size = 500\n[queues]\nbacktest = 0\n").unwrap();
    let (code, _, err) = run(
        dir.path(),
        &[],
        &["--config", toml.to_str().unwrap(), "config", "check"],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("default_page_size") && err.contains("queues.backtest"),
        "{err}"
    );

    // Production refuses missing and well-known secrets, and does not start.
    let (code, _, err) = run(
        dir.path(),
        &[("ENV", "production"), ("SECRET_KEY", "changeme")],
        &["serve"],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("secret_key") && err.contains("well-known"),
        "{err}"
    );
    let mut cmd = command(dir.path(), &[("ENV", "production")]);
    cmd.env_remove("SECRET_KEY");
    let out = cmd.args(["serve"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("secret_key"));
}

#[test]
fn development_generates_a_private_secret_and_admin_password() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(dir.path(), &[]);
    cmd.env_remove("SECRET_KEY")
        .env_remove("QUANTBOX_ADMIN_PASSWORD");
    let mut child = cmd
        .args(["serve", "--bind", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let secret = dir.path().join("secret_key");
    let password = dir.path().join("initial-admin-password");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !(secret.exists() && password.exists()) {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    use std::os::unix::fs::PermissionsExt;
    for f in [&secret, &password] {
        let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", f.display());
    }
    assert!(std::fs::read_to_string(&secret).unwrap().trim().len() >= 32);
    // The generated password works.
    let pw = std::fs::read_to_string(&password)
        .unwrap()
        .trim()
        .to_string();
    let s = Server::start_in(
        dir.path(),
        &[("QUANTBOX_ADMIN_PASSWORD", "ignored-after-first-start")],
    );
    s.login("admin", &pw);
}

/// The data directory is its owner's alone, whoever made it: 0700, every
/// file in it 0600 (those there before the start tightened, those the
/// stores and jobs create made so).
#[test]
fn the_data_directory_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let set = |p: &std::path::Path, mode| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    std::fs::create_dir_all(dir.join("uploads")).unwrap();
    std::fs::write(dir.join("uploads/left-over.csv"), "x").unwrap();
    set(&dir, 0o755);
    set(&dir.join("uploads"), 0o775);
    set(&dir.join("uploads/left-over.csv"), 0o644);
    let s = Server::start_in(&dir, &[]);
    let t = s.admin_token();
    s.ingest(
        &t,
        &serde_json::json!([{"symbol": "P", "ts": 1_700_000_000_000_000_000i64, "price": 1, "size": 1}]),
    );
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("uploads")), 0o700);
    assert_eq!(mode(&dir.join("uploads/left-over.csv")), 0o600);
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        let m = mode(&entry.path());
        if entry.file_type().unwrap().is_dir() {
            assert_eq!(m, 0o700, "{}", entry.path().display());
        } else {
            assert_eq!(m & 0o077, 0, "{} is {m:o}", entry.path().display());
            files += 1;
        }
    }
    assert!(files >= 3, "the stores' files were checked");
}

#[test]
fn migrate_and_user_commands() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(dir.path(), &[], &["migrate"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("from version 0 to"), "{out}");
    let (code, out, _) = run(dir.path(), &[], &["migrate"]);
    assert_eq!(code, 0);
    assert!(out.contains("up to date"), "{out}");

    let mut child = command(dir.path(), &[])
        .args([
            "user",
            "add",
            "carol",
            "--role",
            "trader",
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"carol-password-1234\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let (code, out, _) = run(dir.path(), &[], &["user", "add", "dave"]);
    assert_eq!(code, 0);
    let generated = out
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .unwrap()
        .to_string();
    let (code, _, err) = run(dir.path(), &[], &["user", "add", "carol"]);
    assert_ne!(code, 0);
    assert!(err.contains("already exists"), "{err}");
    let (code, out, _) = run(dir.path(), &[], &["user", "list"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("carol") && out.contains("trader") && out.contains("dave"),
        "{out}"
    );

    let s = Server::start_in(dir.path(), &[]);
    s.login("carol", "carol-password-1234");
    s.login("dave", &generated);
    let (code, out, _) = run(dir.path(), &[], &["user", "passwd", "dave"]);
    assert_eq!(code, 0, "passwd works while the server runs");
    let newpw = out
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .unwrap();
    s.login("dave", newpw);

    let (code, out, _) = run(dir.path(), &[], &["version"]);
    assert_eq!(code, 0);
    assert_eq!(
        out.trim(),
        format!("quantbox {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn import_command_runs_the_import_code() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("t.csv");
    std::fs::write(
        &csv,
        "time,last,qty\n2024-01-02 09:00:00,3900,1\n2024-01-02 09:00:01,3901,2\n",
    )
    .unwrap();
    let args = [
        "import",
        csv.to_str().unwrap(),
        "--format",
        "csv",
        "--symbol",
        "rb2410",
        "--map",
        "ts=time",
        "--map",
        "price=last",
        "--map",
        "size=qty",
        "--timezone",
        "Asia/Shanghai",
    ];
    let (code, out, err) = run(dir.path(), &[], &args);
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["rows_stored"], 2);
    assert_eq!(report["symbols_created"], serde_json::json!(["rb2410"]));
    let (code, out, _) = run(dir.path(), &[], &args);
    assert_eq!(code, 0);
    assert!(out.contains("\"rows_duplicate\": 2"), "{out}");

    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "symbol,ts,price,size\nrb,2024-01-02T00:00:00Z,x,1\n").unwrap();
    let (code, out, _) = run(
        dir.path(),
        &[],
        &["import", bad.to_str().unwrap(), "--format", "csv"],
    );
    assert_eq!(code, 3, "strict rejection exits 3");
    assert!(out.contains("\"line\": 2"), "{out}");

    // The server sees what the command imported.
    let s = Server::start_in(dir.path(), &[]);
    let t = s.admin_token();
    let syms: serde_json::Value = s.get_json(&t, "/api/v1/market/symbols");
    assert_eq!(syms[0]["symbol"], "rb2410");
    assert_eq!(syms[0]["ticks"], 2);
    assert_eq!(
        syms[0]["first_ts"], 1_704_157_200_000_000_000i64,
        "09:00 Shanghai = 01:00 UTC"
    );
}

/// A cron expression stored that no longer checks (written by an older
/// version, or behind the API's back) turns its schedule off with the
/// reason, shown by the API until the schedule is fixed and enabled.
#[test]
fn a_schedule_whose_cron_no_longer_parses_is_turned_off_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start_in(dir.path(), &[]);
    let admin = s.admin_token();
    let r = s
        .post("/api/v1/schedules")
        .bearer_auth(&admin)
        .json(
            &serde_json::json!({"name": "nightly", "cron": "0 0 3 * * *",
                                  "job": {"kind": "maintenance.checkpoint"}}),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());
    let id = r.json::<serde_json::Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(s.terminate().0.success());
    let db = rusqlite::Connection::open(dir.path().join("quantbox.sqlite")).unwrap();
    db.execute(
        "UPDATE schedules SET cron = '0 0 27 * * * * *' WHERE id = ?1",
        [&id],
    )
    .unwrap();
    drop(db);

    let s = Server::start_in(dir.path(), &[]);
    let admin = s.admin_token();
    let path = format!("/api/v1/schedules/{id}");
    let got = s.get_json(&admin, &path);
    assert_eq!(got["enabled"], false, "{got}");
    let reason = got["disabled_reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("cron: "), "{got}");
    assert!(s.log().contains("schedule turned off"), "{}", s.log());
    // Fixed and enabled again: the reason goes.
    let r = s
        .http
        .patch(s.url(&path))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"cron": "0 0 4 * * *", "enabled": true}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    let got = s.get_json(&admin, &path);
    assert_eq!(
        (got["enabled"].as_bool(), got["disabled_reason"].as_str()),
        (Some(true), None),
        "{got}"
    );
    assert!(got["next_run_at"].is_string(), "{got}");
}
