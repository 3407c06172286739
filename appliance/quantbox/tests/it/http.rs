//! Problem documents on bad input, security headers, CORS, compression,
//! and the OpenAPI document.

use serde_json::{Value, json};

use crate::support::{Server, problem};

#[test]
fn bad_input_gets_problem_json_saying_where() {
    let s = Server::start(&[]);
    let t = s.admin_token();
    let post = |body: &str| {
        s.post("/api/v1/jobs")
            .bearer_auth(&t)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .unwrap()
    };
    let doc = problem(post("{\"kind\": \"diag.sleep\",\n \"params\": {"), 400);
    assert!(doc["detail"].as_str().unwrap().contains("line 2"), "{doc}");
    let doc = problem(post(r#"{"kind": 5}"#), 422);
    assert_eq!(doc["errors"][0]["field"], "kind");
    let doc = problem(post(r#"{"kind": "no.such.kind"}"#), 422);
    assert_eq!(doc["errors"][0]["field"], "kind");
    assert!(
        doc["detail"].as_str().unwrap().contains("diag.sleep"),
        "lists known kinds"
    );
    let doc = problem(
        post(r#"{"kind": "diag.sleep", "params": {"seconds": -1}}"#),
        422,
    );
    assert_eq!(doc["errors"][0]["field"], "params");
    assert!(doc["detail"].as_str().unwrap().contains("seconds"));
    let doc = problem(post(r#"{"kind": "diag.sleep", "queue": "nope"}"#), 422);
    assert_eq!(doc["errors"][0]["field"], "queue");
    let r = s
        .post("/api/v1/jobs")
        .bearer_auth(&t)
        .body("{}")
        .send()
        .unwrap();
    problem(r, 415);
    let big = format!("{{\"kind\": \"{}\"}}", "x".repeat(2 * 1024 * 1024));
    problem(post(&big), 413);
    // A path segment that is not UTF-8 once decoded.
    let r = s.get("/api/v1/users/%FF").bearer_auth(&t).send().unwrap();
    problem(r, 400);
    // Routes that read the raw body answer a body over the limit alike.
    let r = s
        .post("/api/v1/auth/logout")
        .bearer_auth(&t)
        .body(" ".repeat(2 * 1024 * 1024))
        .send()
        .unwrap();
    problem(r, 413);

    // Paging limits.
    let doc = problem(
        s.get("/api/v1/jobs?page_size=1000")
            .bearer_auth(&t)
            .send()
            .unwrap(),
        422,
    );
    assert_eq!(doc["errors"][0]["field"], "page_size");
    let doc = problem(
        s.get("/api/v1/jobs?page=abc")
            .bearer_auth(&t)
            .send()
            .unwrap(),
        400,
    );
    assert!(doc["detail"].as_str().unwrap().contains("page"));
    let page: Value = s.get_json(&t, "/api/v1/jobs");
    assert_eq!(page["page_size"], 20, "DEFAULT_PAGE_SIZE");

    // Unknown routes, unknown ids, wrong methods.
    problem(s.get("/api/v1/nope").bearer_auth(&t).send().unwrap(), 404);
    problem(
        s.get("/api/v1/jobs/no-such-id")
            .bearer_auth(&t)
            .send()
            .unwrap(),
        404,
    );
    problem(s.http.delete(s.url("/health")).send().unwrap(), 405);

    // Schedules validate cron expressions.
    let doc = problem(
        s.post("/api/v1/schedules")
            .bearer_auth(&t)
            .json(&json!({"name": "bad", "cron": "61 * * * * *", "job": {"kind": "diag.sleep"}}))
            .send()
            .unwrap(),
        422,
    );
    assert_eq!(doc["errors"][0]["field"], "cron");
    let doc = problem(
        s.post("/api/v1/schedules")
            .bearer_auth(&t)
            .json(&json!({"name": "bad", "cron": "* * * * *", "job": {"kind": "nope"}}))
            .send()
            .unwrap(),
        422,
    );
    assert_eq!(doc["errors"][0]["field"], "job.kind");
    // Nothing was stored by the rejected requests.
    let jobs: Value = s.get_json(&t, "/api/v1/jobs");
    assert_eq!(jobs["total"], 0);
}

#[test]
fn security_headers_cors_and_compression() {
    let s = Server::start(&[(
        "CORS_ORIGINS",
        "https://app.example.com,http://localhost:5173",
    )]);
    let r = s.get("/health").send().unwrap();
    let h = r.headers();
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["x-content-type-options"], "nosniff");
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    // Connections (fetch, the dashboard's /ws) to the page's own origin
    // only: no other ws:/wss: host.
    let connect: Vec<&str> = csp
        .split(';')
        .map(str::trim)
        .filter(|d| d.starts_with("connect-src"))
        .collect();
    assert_eq!(connect, ["connect-src 'self'"], "{csp}");
    assert!(
        h.get("strict-transport-security").is_none(),
        "no HSTS without TLS"
    );

    let pre = s
        .http
        .request(reqwest::Method::OPTIONS, s.url("/api/v1/jobs"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization")
        .send()
        .unwrap();
    assert_eq!(
        pre.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(pre.headers()["access-control-allow-credentials"], "true");
    let other = s
        .get("/health")
        .header("origin", "https://evil.example.com")
        .send()
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());

    let gz = s
        .get("/api/openapi.json")
        .header("accept-encoding", "gzip")
        .send()
        .unwrap();
    assert_eq!(gz.headers()["content-encoding"], "gzip");

    let tls = Server::start(&[("QUANTBOX_BEHIND_TLS", "true")]);
    let r = tls.get("/health").send().unwrap();
    assert!(
        r.headers()["strict-transport-security"]
            .to_str()
            .unwrap()
            .contains("max-age=")
    );
}

#[test]
fn openapi_document_and_docs_page() {
    let s = Server::start(&[]);
    let doc: Value = s.get("/api/openapi.json").send().unwrap().json().unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/v1/auth/login",
        "/api/v1/jobs",
        "/api/v1/jobs/{id}/cancel",
        "/api/v1/schedules",
        "/health",
        "/ready",
        "/metrics",
    ] {
        assert!(paths.contains_key(p), "{p} missing");
    }
    // Every /api/v1 operation except login and refresh demands authentication.
    let mut checked = 0;
    for (path, ops) in paths {
        if !path.starts_with("/api/v1/") || path.ends_with("/login") || path.ends_with("/refresh") {
            continue;
        }
        let concrete = path.replace("{id}", "x").replace("{username}", "x");
        for method in ops.as_object().unwrap().keys() {
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = s.http.request(m, s.url(&concrete)).send().unwrap();
            assert_eq!(r.status(), 401, "{method} {path} without a token");
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} operations checked");
    let html = s.get("/api/docs/").send().unwrap();
    assert_eq!(html.status(), 200);
    let body = html.text().unwrap();
    assert!(body.contains("swagger"), "docs page served by the binary");
    assert!(
        !body.contains("https://"),
        "docs page loads nothing from the internet"
    );
}
