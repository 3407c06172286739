//! The plugin registry through the API and the `quantbox plugin` commands:
//! real components built from `plugins/`, compiled by the server in its
//! child process.

use reqwest::blocking::multipart::{Form, Part};
use serde_json::Value;

use crate::support::{Server, command, component, core_module, problem, target_dir};

fn upload_form(s: &Server, token: &str, bytes: Vec<u8>) -> reqwest::blocking::Response {
    let form = Form::new().part("file", Part::bytes(bytes).file_name("plugin.wasm"));
    s.post("/api/v1/plugins")
        .bearer_auth(token)
        .multipart(form)
        .send()
        .unwrap()
}

#[test]
fn upload_list_inspect_delete() {
    let s = Server::start(&[("QUANTBOX_PLUGINS__MAX_MODULE_MIB", "2")]);
    let admin = s.admin_token();
    let trader = s.user_token(&admin, "tina", "trader");
    let viewer = s.user_token(&admin, "vic", "viewer");
    let sma = component("sma_crossover");
    let sha = qb_plugin_host::sha256_hex(&sma);

    // A trader uploads the raw component: validated, described, stored.
    let r = s.upload_plugin(&trader, sma.clone());
    assert_eq!(r.status(), 201);
    let info: Value = r.json().unwrap();
    assert_eq!(info["id"], sha.as_str());
    assert_eq!(info["name"], "sma-crossover");
    assert_eq!(info["version"], "0.1.0");
    assert_eq!(info["interface"], "quantbox:strategy/host@0.1.0");
    assert_eq!(info["size_bytes"], sma.len() as u64);
    assert_eq!(info["uploaded_by"], "tina");
    let params: Vec<(&str, &str, f64)> = info["params"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap(),
                p["type"].as_str().unwrap(),
                p["default"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        params,
        [
            ("fast", "integer", 10.0),
            ("slow", "integer", 30.0),
            ("size", "float", 1.0)
        ]
    );
    assert_eq!(info["params"][0]["max"], 500.0);
    // The compiled artifact is cached under the data directory.
    let cached: Vec<String> = std::fs::read_dir(s.data_dir().join("cache/plugins"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        cached
            .iter()
            .any(|f| f.starts_with(&sha) && f.ends_with(".cwasm")),
        "{cached:?}"
    );

    // The same bytes again: 200, one plugin. Multipart works too.
    assert_eq!(s.upload_plugin(&trader, sma.clone()).status(), 200);
    // Other bytes built as the same name and version (a custom section
    // appended): 409, known from the section the SDK writes, so before
    // the server compiles them.
    let mut twin = sma.clone();
    twin.extend_from_slice(&[0, 5, 4]);
    twin.extend_from_slice(b"note");
    let doc = problem(s.upload_plugin(&trader, twin), 409);
    assert!(
        doc["detail"].as_str().unwrap().contains(
            "sma-crossover 0.1.0 is already registered (other bytes; refused before compiling)"
        ),
        "{doc}"
    );
    let r = upload_form(&s, &trader, component("donchian_breakout"));
    assert_eq!(r.status(), 201);
    let donchian: Value = r.json().unwrap();
    assert_eq!(donchian["name"], "donchian-breakout");

    // Viewers read but cannot upload; refused before its body is read, the
    // answer closes the connection (the unread rest is on it).
    let r = s.upload_plugin(&viewer, sma.clone());
    assert_eq!(r.headers()["connection"], "close");
    problem(r, 403);
    let list = s.get_json(&viewer, "/api/v1/plugins");
    assert_eq!(list["total"], 2);
    assert_eq!(
        list["items"][0]["name"], "donchian-breakout",
        "newest first"
    );
    assert_eq!(
        s.get_json(&viewer, &format!("/api/v1/plugins/{sha}"))["name"],
        "sma-crossover"
    );
    assert_eq!(
        s.get_json(&viewer, "/api/v1/plugins/sma-crossover@0.1.0")["id"],
        sha.as_str()
    );
    assert_eq!(
        s.get_json(&viewer, "/api/v1/plugins/sma-crossover")["id"],
        sha.as_str()
    );

    // Bad uploads: each says what is wrong, and nothing is stored.
    let two = Form::new()
        .part(
            "file",
            Part::bytes(component("bollinger_reversion")).file_name("a.wasm"),
        )
        .part(
            "file",
            Part::bytes(component("pairs_spread")).file_name("b.wasm"),
        );
    let doc = problem(
        s.post("/api/v1/plugins")
            .bearer_auth(&trader)
            .multipart(two)
            .send()
            .unwrap(),
        422,
    );
    assert!(
        doc["detail"]
            .as_str()
            .unwrap()
            .contains("the form has 2 `file` fields"),
        "{doc}"
    );
    let doc = problem(
        s.upload_plugin(&trader, b"MZ\x90\x00 not wasm".to_vec()),
        422,
    );
    assert!(
        doc["detail"].as_str().unwrap().contains("not WebAssembly"),
        "{doc}"
    );
    let doc = problem(s.upload_plugin(&trader, core_module("sma_crossover")), 422);
    assert!(
        doc["detail"]
            .as_str()
            .unwrap()
            .contains("core WebAssembly module"),
        "{doc}"
    );
    let wasi = std::fs::read(target_dir().join("wasm32-wasip2/release/misbehave.wasm")).unwrap();
    let doc = problem(s.upload_plugin(&trader, wasi), 422);
    assert_eq!(doc["errors"][0]["field"], "imports");
    assert!(doc["detail"].as_str().unwrap().contains("wasi:"), "{doc}");
    let mut truncated = sma.clone();
    truncated.truncate(sma.len() / 2);
    let doc = problem(s.upload_plugin(&trader, truncated), 422);
    assert!(
        doc["detail"]
            .as_str()
            .unwrap()
            .contains("not a valid strategy component"),
        "{doc}"
    );
    let doc = problem(s.upload_plugin(&trader, vec![0u8; 3 << 20]), 413);
    assert!(doc["detail"].as_str().unwrap().contains("limit"), "{doc}");
    assert_eq!(s.get_json(&viewer, "/api/v1/plugins")["total"], 2);

    // Every upload is audited with its hash, refused ones included.
    let audit = s.get_json(
        &admin,
        "/api/v1/audit?action=POST%20/api/v1/plugins&page_size=100",
    );
    let details: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["detail"].as_str())
        .collect();
    assert!(
        details.iter().any(|d| d.contains(&format!("sha256={sha}"))),
        "{details:?}"
    );
    assert!(details.len() >= 7, "{details:?}");

    // Delete: viewers may not, nor another trader (research is read by
    // the team, changed by its owner or an admin); then it is gone,
    // artifacts too.
    problem(
        s.http
            .delete(s.url(&format!("/api/v1/plugins/{sha}")))
            .bearer_auth(&viewer)
            .send()
            .unwrap(),
        403,
    );
    let other = s.user_token(&admin, "otto", "trader");
    let doc = problem(
        s.http
            .delete(s.url(&format!("/api/v1/plugins/{sha}")))
            .bearer_auth(&other)
            .send()
            .unwrap(),
        403,
    );
    assert!(
        doc["detail"].as_str().unwrap().contains("belongs to tina"),
        "{doc}"
    );
    let r = s
        .http
        .delete(s.url("/api/v1/plugins/sma-crossover@0.1.0"))
        .bearer_auth(&trader)
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    problem(
        s.get(&format!("/api/v1/plugins/{sha}"))
            .bearer_auth(&viewer)
            .send()
            .unwrap(),
        404,
    );
    assert!(
        !std::fs::read_dir(s.data_dir().join("cache/plugins"))
            .unwrap()
            .any(|e| e.unwrap().file_name().to_string_lossy().starts_with(&sha))
    );
}

#[test]
fn python_plugin_uploads_and_slow_compiles_are_cut_off() {
    let python = std::fs::read(target_dir().join("plugins/sma_crossover_py.wasm")).unwrap();
    // Compiling 18 MB of CPython takes longer than a second: the child is
    // killed at the deadline, the server answers and keeps serving.
    let s = Server::start(&[("QUANTBOX_PLUGINS__COMPILE_TIMEOUT_SECS", "1")]);
    let admin = s.admin_token();
    let doc = problem(upload_form(&s, &admin, python.clone()), 422);
    assert!(
        doc["detail"]
            .as_str()
            .unwrap()
            .contains("did not finish within 1 s"),
        "{doc}"
    );
    assert_eq!(s.get("/health").send().unwrap().status(), 200);
    assert_eq!(
        s.upload_plugin(&admin, component("sma_crossover")).status(),
        201
    );
    drop(s);

    let s = Server::start(&[]);
    let admin = s.admin_token();
    // Compiling CPython in full takes tens of seconds on a busy 2-core
    // machine: more than the client's default 30 s.
    let form = Form::new().part("file", Part::bytes(python).file_name("plugin.wasm"));
    let r = s
        .post("/api/v1/plugins")
        .bearer_auth(&admin)
        .multipart(form)
        .timeout(std::time::Duration::from_secs(300))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let info: Value = r.json().unwrap();
    assert_eq!(info["name"], "sma-crossover-py");
    assert_eq!(info["params"].as_array().unwrap().len(), 3);
}

#[test]
fn scaffolded_strategy_builds_checks_and_uploads() {
    let tmp = tempfile::tempdir().unwrap();
    let out = command(tmp.path(), &[])
        .args(["plugin", "new", "my-trend", "--dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let project = tmp.path().join("my-trend");
    assert!(project.join("quantbox-sdk/wit/strategy.wit").exists());
    assert!(project.join("src/lib.rs").exists());
    // A name cargo would refuse, and an existing directory, are refused.
    let out = command(tmp.path(), &[])
        .args(["plugin", "new", "My Trend", "--dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let out = command(tmp.path(), &[])
        .args(["plugin", "new", "my-trend", "--dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists already"));

    // One command builds it (reusing this build's target directory).
    let mut build = command(tmp.path(), &[]);
    build.args(["plugin", "build"]).arg(&project);
    for var in [
        "CARGO_TARGET_DIR",
        "CARGO_HOME",
        "RUSTUP_HOME",
        "RUSTUP_TOOLCHAIN",
        "HOME",
    ] {
        if let Some(v) = std::env::var_os(var) {
            build.env(var, v);
        }
    }
    if std::env::var_os("CARGO_TARGET_DIR").is_none() {
        build.env("CARGO_TARGET_DIR", target_dir());
    }
    let out = build.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("my-trend 0.1.0"), "{stdout}");
    assert!(stdout.contains("period"), "{stdout}");
    let wasm = std::fs::read(project.join("my_trend.wasm")).unwrap();

    // `plugin check` says the same as an upload would; the upload works.
    let out = command(tmp.path(), &[])
        .args(["plugin", "check"])
        .arg(project.join("my_trend.wasm"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let bad = tmp.path().join("bad.wasm");
    std::fs::write(&bad, b"\0asm\x01\0\0\0").unwrap();
    let out = command(tmp.path(), &[])
        .args(["plugin", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("core WebAssembly module"));

    let s = Server::start(&[]);
    let admin = s.admin_token();
    let r = s.upload_plugin(&admin, wasm);
    assert_eq!(r.status(), 201);
    assert_eq!(r.json::<Value>().unwrap()["name"], "my-trend");
}
