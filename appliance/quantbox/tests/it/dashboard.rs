//! The embedded dashboard: every file the binary carries is served with its
//! MIME type and cache policy, client-side routes fall back to the entry
//! page, and a headless Chromium (Debian's, driven by playwright-core in
//! `web/e2e/dashboard.mjs`) works through the pages against the real server.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{ADMIN_PASSWORD, Server, component, problem};

fn expected_mime(path: &str) -> &'static [&'static str] {
    match path.rsplit('.').next().unwrap_or_default() {
        "html" => &["text/html"],
        "js" => &["text/javascript", "application/javascript"],
        "css" => &["text/css"],
        "svg" => &["image/svg+xml"],
        "png" => &["image/png"],
        "woff2" => &["font/woff2"],
        other => panic!("an embedded file of an unexpected kind: {path} ({other})"),
    }
}

#[test]
fn every_embedded_asset_is_served_with_its_mime_type_and_cache_policy() {
    let s = Server::start(&[]);
    let files: Vec<String> = qb_web::Assets::iter().map(|f| f.to_string()).collect();
    assert!(files.iter().any(|f| f == "index.html"), "{files:?}");
    assert!(
        files
            .iter()
            .any(|f| f.starts_with("assets/index-") && f.ends_with(".js")),
        "a hashed entry bundle: {files:?}"
    );
    for f in &files {
        let r = s.get(&format!("/{f}")).send().unwrap();
        assert_eq!(r.status(), 200, "{f}");
        let mime = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(
            expected_mime(f).iter().any(|m| mime.starts_with(m)),
            "{f}: {mime}"
        );
        let cache = r.headers()["cache-control"].to_str().unwrap().to_string();
        if f.starts_with("assets/") {
            assert_eq!(cache, "public, max-age=31536000, immutable", "{f}");
        } else {
            assert_eq!(cache, "no-cache", "{f}");
        }
        // Revalidation by ETag.
        let etag = r.headers()["etag"].clone();
        let body = r.bytes().unwrap();
        assert_eq!(
            body.as_ref(),
            qb_web::Assets::get(f).unwrap().data.as_ref(),
            "{f}"
        );
        let again = s
            .get(&format!("/{f}"))
            .header("if-none-match", etag)
            .send()
            .unwrap();
        assert_eq!(again.status(), 304, "{f}");
    }
    // The entry page at / and for client-side routes; it loads nothing
    // from other origins.
    for path in ["/", "/backtests/0190abcd", "/live", "/login"] {
        let r = s.get(path).send().unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        let html = r.text().unwrap();
        assert!(html.contains("/assets/index-"), "{path}: {html}");
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "{html}"
        );
    }
    // Server paths and missing files stay problem+json 404s.
    for path in [
        "/api/v1/nope",
        "/assets/missing-123.js",
        "/metrics/nope",
        "/favicon.ico",
    ] {
        problem(s.get(path).send().unwrap(), 404);
    }
    // Compressed when the client asks.
    let js = files.iter().find(|f| f.ends_with(".js")).unwrap();
    let r = s
        .get(&format!("/{js}"))
        .header("accept-encoding", "gzip")
        .send()
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
}

/// The repository root (`web/` lives there).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

#[test]
fn the_dashboard_works_in_a_browser() {
    let root = repo_root();
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: install Debian's chromium (packaging/scripts/dev.sh test does)"
    );
    assert!(
        root.join("web/node_modules/playwright-core").exists(),
        "web/node_modules is missing: building the binary runs npm ci"
    );
    let tmp = tempfile::tempdir().unwrap();
    let plugin = tmp.path().join("sma_crossover.wasm");
    std::fs::write(&plugin, component("sma_crossover")).unwrap();
    let shots = crate::support::target_dir().join("dashboard-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    // Short-lived access tokens: the page must renew them as it goes. The
    // seed's rate limits stay on (the other tests turn them off): the
    // dashboard must work within them without a single 429.
    let s = Server::start(&[
        ("QUANTBOX_AUTH__ACCESS_TTL_SECS", "20"),
        ("QUANTBOX_RATE_LIMIT__ENABLED", "true"),
    ]);
    let out = Command::new("node")
        .arg(root.join("web/e2e/dashboard.mjs"))
        .env("QB_BASE", &s.base)
        .env("QB_PASSWORD", ADMIN_PASSWORD)
        .env("QB_PLUGIN", &plugin)
        .env("QB_SCREENSHOTS", &shots)
        .env("CHROMIUM", &chromium)
        .current_dir(root.join("web"))
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser test failed\n{stdout}\n{stderr}\nserver log:\n{}",
        s.log()
    );
    println!("{stdout}");
    for page in [
        "login",
        "overview",
        "market",
        "plugins",
        "backtests",
        "backtest-result",
        "sweep",
        "live",
        "live-halted",
        "schedules",
        "jobs",
        "users",
        "audit",
        "overview-tablet",
    ] {
        let png = shots.join(format!("{page}.png"));
        let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
        assert!(bytes.starts_with(b"\x89PNG"), "{}", png.display());
    }
}
