//! Starting and stopping the real binary.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::{Value, json};

pub const ADMIN_PASSWORD: &str = "test-admin-password-1234";
pub const SECRET: &str = "integration-test-secret-0123456789abcdef";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_quantbox")
}

/// The cargo target directory (target/debug/quantbox -> target), where the
/// test command built the example plugins.
pub fn target_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(bin())
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf()
}

/// An example plugin's core module (wasm32-unknown-unknown build).
pub fn core_module(name: &str) -> Vec<u8> {
    let path = target_dir().join(format!("wasm32-unknown-unknown/release/{name}.wasm"));
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run packaging/scripts/dev.sh test", path.display()))
}

/// An example plugin as an uploadable component.
pub fn component(name: &str) -> Vec<u8> {
    qb_plugin_host::componentize(&core_module(name)).unwrap()
}

/// Whether this run drives cluster-backed servers (`QB_IT_BACKEND=cluster`:
/// PostgreSQL and Redis on this machine) instead of the embedded stores.
/// The same tests run in both configurations.
pub fn cluster() -> bool {
    std::env::var("QB_IT_BACKEND").is_ok_and(|b| b == "cluster")
}

/// The PostgreSQL database and Redis prefix of a cluster-backed server on
/// data directory `dir`: one per directory, so a restart on the same
/// directory finds its state again and tests never see each other's.
pub fn cluster_env(dir: &Path) -> Vec<(String, String)> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    dir.hash(&mut h);
    let tag = format!("{:016x}", h.finish());
    let name = format!("qb_it_{tag}");
    let db = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(qb_pg::testing::TestDatabase::create_named(&name))
        .unwrap_or_else(|e| panic!("creating test database {name}: {e}"));
    let url = db.url.clone();
    // Dropped with the data directory's tests: `dev.sh test` drops every
    // qb_it_* database before a cluster run.
    db.keep();
    vec![
        ("DATABASE_URL".into(), url),
        (
            "REDIS_URL".into(),
            std::env::var("QB_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
        ),
        (
            "QUANTBOX_CLUSTER__REDIS_PREFIX".into(),
            format!("qbit-{tag}"),
        ),
        ("QUANTBOX_CLUSTER__NODE_ID".into(), format!("it-{tag}")),
        ("QUANTBOX_CLUSTER__CONNECT_TIMEOUT_SECS".into(), "20".into()),
        // max_connections is shared by every test server of the run.
        ("QUANTBOX_CLUSTER__DB_POOL_SIZE".into(), "4".into()),
    ]
}

/// A `quantbox` command with a clean environment.
pub fn command(dir: &Path, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("QUANTBOX_DATA_DIR", dir)
        .env("QUANTBOX_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("SECRET_KEY", SECRET)
        .env("QUANTBOX_RATE_LIMIT__ENABLED", "false")
        .env("LOG_LEVEL", "info");
    if cluster() {
        for (k, v) in cluster_env(dir) {
            cmd.env(k, v);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

pub struct Server {
    child: Option<Child>,
    pub base: String,
    dir: std::path::PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub log: Arc<Mutex<String>>,
    pub http: Client,
}

impl Server {
    pub fn start(env: &[(&str, &str)]) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let mut s = Server::start_in(&dir, env);
        s._tmp = Some(tmp);
        s
    }

    /// Starts on an existing data directory (which the caller keeps alive).
    pub fn start_in(dir: &Path, env: &[(&str, &str)]) -> Server {
        Server::spawn(command(dir, env), dir, "127.0.0.1:0")
    }

    /// Runs `cmd` (the binary with its environment) as `serve --bind
    /// <bind>` and waits until it is ready.
    pub fn spawn(mut cmd: Command, dir: &Path, bind: &str) -> Server {
        let mut child = cmd
            .args(["serve", "--bind", bind])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn quantbox");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("listening on ").nth(1) {
                    let _ = tx.send(addr.trim().to_string());
                }
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let base = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(b) => b,
            Err(_) => {
                let _ = child.kill();
                panic!("server did not start; log:\n{}", log.lock().unwrap());
            }
        };
        let s = Server {
            child: Some(child),
            base,
            dir: dir.to_path_buf(),
            _tmp: None,
            log,
            http: Client::builder()
                .timeout(Duration::from_secs(30))
                // Below the server's idle bound (http.header_timeout_secs):
                // the client lets a connection go before the server does.
                .pool_idle_timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        };
        s.wait_ready();
        s
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = self.http.get(self.url("/ready")).send()
                && r.status() == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not ready in time; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.clone()
    }

    /// The server process.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// A line of `/proc/<pid>/status` in bytes (`VmRSS`, `VmHWM`).
    pub fn memory(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in the status of the server"));
        kib << 10
    }

    /// Starts the peak resident size (`VmHWM`) over from the current one.
    pub fn reset_peak_memory(&self) {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5").unwrap();
    }

    /// File descriptors the server holds open (sockets included).
    pub fn open_files(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.http.get(self.url(path))
    }

    /// GET with a bearer token, parsed as JSON.
    pub fn get_json(&self, token: &str, path: &str) -> Value {
        self.get(path)
            .bearer_auth(token)
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    pub fn post(&self, path: &str) -> RequestBuilder {
        self.http.post(self.url(path))
    }

    /// Uploads a plugin's bytes as `application/wasm`.
    pub fn upload_plugin(&self, token: &str, wasm: Vec<u8>) -> Response {
        self.post("/api/v1/plugins")
            .bearer_auth(token)
            .header("content-type", "application/wasm")
            .body(wasm)
            .send()
            .unwrap()
    }

    pub fn login(&self, user: &str, password: &str) -> Value {
        let r = self
            .post("/api/v1/auth/login")
            .json(&json!({"username": user, "password": password}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "login {user}: {}", r.text().unwrap());
        r.json().unwrap()
    }

    pub fn admin_token(&self) -> String {
        self.login("admin", ADMIN_PASSWORD)["access_token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Creates a user through the API and returns an access token for it.
    pub fn user_token(&self, admin: &str, name: &str, role: &str) -> String {
        let password = format!("{name}-password-123");
        let r = self
            .post("/api/v1/users")
            .bearer_auth(admin)
            .json(&json!({"username": name, "password": password, "role": role}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().unwrap());
        self.login(name, &password)["access_token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Grants paper account `account` to `username` (as admin `admin`).
    pub fn grant(&self, admin: &str, account: &str, username: &str) {
        let r = self
            .http
            .put(self.url(&format!(
                "/api/v1/trading/accounts/{account}/grants/{username}"
            )))
            .bearer_auth(admin)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "grant: {}", r.text().unwrap());
    }

    /// Gives `username` the feed permission (live ticks, replays).
    pub fn allow_feed(&self, admin: &str, username: &str) {
        let r = self
            .http
            .patch(self.url(&format!("/api/v1/users/{username}")))
            .bearer_auth(admin)
            .json(&json!({"feed": true}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "feed: {}", r.text().unwrap());
        assert_eq!(r.json::<Value>().unwrap()["feed"], true);
    }

    /// Polls a job until `done(job)`.
    pub fn wait_job(&self, token: &str, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        let mut job = Value::Null;
        wait_for(&format!("job {id} to reach the state"), || {
            job = self.get_json(token, &format!("/api/v1/jobs/{id}"));
            done(&job)
        });
        job
    }

    /// Live ingest of tick rows (a JSON array) through the API; asserts it
    /// was stored.
    pub fn ingest(&self, token: &str, ticks: &Value) {
        let r = self
            .post("/api/v1/market/ticks")
            .bearer_auth(token)
            .json(ticks)
            .send()
            .unwrap();
        assert!(r.status().is_success(), "ingest: {}", r.status());
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) to the server process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {pid}");
    }

    pub fn kill9(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self) -> (ExitStatus, Duration) {
        let mut child = self.child.take().unwrap();
        let start = Instant::now();
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let status = child.wait().unwrap();
        (status, start.elapsed())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Asserts a problem+json response with `status`; returns the document.
/// Polls `done` every 20 ms for up to 30 s.
pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn problem(r: Response, status: u16) -> Value {
    assert_eq!(r.status().as_u16(), status, "unexpected status");
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    assert_eq!(ct, "application/problem+json");
    let doc: Value = r.json().unwrap();
    assert_eq!(doc["status"], status);
    assert!(doc["detail"].as_str().is_some_and(|d| !d.is_empty()));
    assert!(doc["type"].as_str().unwrap().starts_with("/problems/"));
    doc
}

/// `n` one-minute bars of `rb` from 2024-01-02T01:00:00Z as a bars CSV
/// (epoch seconds): integer prices trending up and down by the hour.
pub fn trend_bars_csv(n: i64) -> String {
    let mut csv = String::from("symbol,ts,open,high,low,close,volume\n");
    let mut close = 3900i64;
    for i in 0..n {
        let open = close;
        close = open + if (i / 60) % 2 == 0 { 2 } else { -2 } + (i * 7919 % 5) - 2;
        csv.push_str(&format!(
            "rb,{},{open},{},{},{close},10\n",
            1_704_157_200 + i * 60,
            open.max(close) + 1,
            open.min(close) - 1
        ));
    }
    csv
}
