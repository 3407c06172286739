//! The one typed configuration and its layering:
//! built-in defaults < TOML file < environment < command-line flags.
//!
//! Environment names: the seed's (`ENV`, `LOG_LEVEL`, `WORKERS`, `CORS_ORIGINS`,
//! `DEFAULT_PAGE_SIZE`, `MAX_PAGE_SIZE`, `SECRET_KEY` / `JWT_SECRET_KEY`,
//! `DATABASE_URL`, `REDIS_URL`) and `QUANTBOX_`-prefixed ones, where `__`
//! separates nesting levels (`QUANTBOX_QUEUES__BACKTEST=3`). `QUANTBOX_` names
//! win over seed names. Every secret also has a `*_FILE` variant (env or TOML
//! `*_file` key) whose file content, trimmed, becomes the value.
//!
//! Loading takes the environment as a map so tests never touch the process
//! environment.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where the packaged config lives; read when present and no `--config` is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/quantbox/quantbox.toml";

/// Secrets that ship in examples and must never reach production.
const WELL_KNOWN_SECRETS: &[&str] = &[
    "changeme",
    "change-me",
    "changeit",
    "secret",
    "secret-key",
    "your-secret-key",
    "your_secret_key",
    "supersecret",
    "development",
    "quantbox",
    "password",
    "<base64-encoded-secret-key>",
    "<base64-encoded-jwt-secret>",
];

/// Minimum length of the signing secret in production.
pub const MIN_SECRET_LEN: usize = 32;

/// Deployment environment (`ENV`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    #[default]
    #[serde(alias = "dev", alias = "DEVELOPMENT", alias = "Development")]
    Development,
    #[serde(alias = "prod", alias = "PRODUCTION", alias = "Production")]
    Production,
    #[serde(alias = "testing", alias = "TEST")]
    Test,
}

/// What a quantbox process runs (the seed's API replicas, Celery workers
/// and Beat, plus the trading desk). One box runs all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeRole {
    /// The REST and WebSocket API and the dashboard.
    Api,
    /// Job workers (`queues.backtest` / `queues.data` of them).
    Worker,
    /// The schedules: due times become jobs.
    Scheduler,
    /// Trading desks and live strategies.
    Trader,
}

impl NodeRole {
    pub const ALL: [NodeRole; 4] = [Self::Api, Self::Worker, Self::Scheduler, Self::Trader];
}

impl fmt::Display for NodeRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Api => "api",
            Self::Worker => "worker",
            Self::Scheduler => "scheduler",
            Self::Trader => "trader",
        })
    }
}

impl std::str::FromStr for NodeRole {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Self::ALL
            .iter()
            .copied()
            .find(|r| r.to_string().eq_ignore_ascii_case(s.trim()))
            .ok_or(())
    }
}

/// A secret string: never printed, serialized as `[redacted]`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself. Call sites are the few places that use it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("[redacted]")
    }
}

/// Worker threads per job queue (the seed's Celery `--concurrency`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueuesConfig {
    pub backtest: usize,
    pub data: usize,
    /// How often a job is retried after the process died while running it.
    pub max_attempts: u32,
    /// Jobs one user (not an admin) may have queued or running on one
    /// queue, a sweep's backtests included; more are refused with 429.
    pub max_active_per_user: u64,
}

impl Default for QueuesConfig {
    fn default() -> Self {
        Self {
            backtest: 2,
            data: 4,
            max_attempts: 3,
            max_active_per_user: 100,
        }
    }
}

/// Token lifetimes and brute-force protection.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub access_ttl_secs: u64,
    pub refresh_ttl_secs: u64,
    /// Seconds after a refresh during which the spent refresh token is
    /// answered again (a client that lost the answer, e.g. a page reloaded
    /// mid-request) instead of revoking the session as stolen; 0 is strict.
    pub refresh_reuse_grace_secs: u64,
    /// Wrong passwords in a row for one name from one client address
    /// before that pair waits (the account itself is never locked).
    pub lockout_threshold: u32,
    /// First wait; doubles with each further failure.
    pub lockout_base_secs: u64,
    pub lockout_max_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            access_ttl_secs: 15 * 60,
            refresh_ttl_secs: 7 * 24 * 3600,
            refresh_reuse_grace_secs: 10,
            lockout_threshold: 5,
            lockout_base_secs: 30,
            lockout_max_secs: 15 * 60,
        }
    }
}

/// Per-client request rate limits (the seed's nginx `limit_req` zones).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    pub enabled: bool,
    pub api_per_sec: u32,
    pub api_burst: u32,
    pub trading_per_sec: u32,
    pub trading_burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            api_per_sec: 10,
            api_burst: 20,
            trading_per_sec: 5,
            trading_burst: 10,
        }
    }
}

/// Request body limits in bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BodyLimits {
    pub json_bytes: usize,
    pub upload_bytes: usize,
    /// Largest `/ws` message a client may send (its messages are small
    /// JSON commands).
    pub ws_message_bytes: usize,
    /// Seconds a `/ws` connection has to authenticate (it may send
    /// [`WS_PRE_AUTH_BYTES`] before that).
    pub ws_auth_secs: u64,
    /// `/ws` connections at once per user and per client address.
    pub ws_per_user: usize,
    pub ws_per_address: usize,
    /// Channels one `/ws` connection may follow.
    pub ws_subscriptions: usize,
    /// Seconds between checks of an open `/ws` session (expiry, logout,
    /// user changes).
    pub ws_recheck_secs: u64,
}

/// What an unauthenticated `/ws` connection may send in all.
pub const WS_PRE_AUTH_BYTES: usize = 4096;

impl Default for BodyLimits {
    fn default() -> Self {
        Self {
            json_bytes: 1024 * 1024,
            upload_bytes: 50 * 1024 * 1024,
            ws_message_bytes: 16 * 1024,
            ws_auth_secs: 5,
            ws_per_user: 16,
            ws_per_address: 32,
            ws_subscriptions: 64,
            ws_recheck_secs: 5,
        }
    }
}

/// Bounds of the HTTP listener (see `qb_api::server`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Connections open at once; more are closed as they arrive.
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers, from the
    /// connection's start or the previous response (idle keep-alive
    /// connections close after it too).
    pub header_timeout_secs: u64,
    /// Seconds a request's body has to arrive, in all.
    pub body_timeout_secs: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_timeout_secs: 30,
            body_timeout_secs: 120,
        }
    }
}

/// Who may read `/metrics`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `/metrics` on this address only (and not on `bind`), e.g. a
    /// private interface Prometheus scrapes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// Require `Authorization: Bearer <token>` on `/metrics`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
}

/// The tick store.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MarketConfig {
    /// Ticks and bars older than this many days are deleted by the
    /// `market.retention` job; 0 keeps everything.
    pub retention_days: u32,
    /// DuckDB memory limit, e.g. `2GB`.
    pub memory_limit: String,
    /// DuckDB threads.
    pub threads: usize,
    /// Most ticks one ingest request may carry.
    pub max_ingest_rows: usize,
}

impl Default for MarketConfig {
    fn default() -> Self {
        Self {
            retention_days: 0,
            memory_limit: "2GB".into(),
            threads: 2,
            max_ingest_rows: 1_000_000,
        }
    }
}

/// The strategy plugin sandbox (see `qb-plugin-host`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginsConfig {
    /// Linear memory per strategy instance (Python plugins need >= 16).
    pub memory_mib: u32,
    /// Wall-clock budget of one call into a strategy.
    pub call_timeout_ms: u64,
    /// Deterministic mode: an instruction budget per call; 0 is off.
    pub fuel_per_call: u64,
    /// Largest plugin upload, checked before compiling.
    pub max_module_mib: u32,
    /// WebAssembly stack per call.
    pub max_wasm_stack_kib: u32,
    /// Log lines a strategy may write per simulated second.
    pub log_lines_per_sec: u32,
    /// Strategy instances that may exist at once.
    pub max_instances: u32,
    /// Deadline of compiling an upload (in a child process).
    pub compile_timeout_secs: u64,
    /// Address-space cap of the compiling child process.
    pub compile_memory_mib: u64,
    /// Uploads compiled at once; more are answered 503 before their body
    /// is read.
    pub max_compiles: usize,
    /// Keys a strategy's state may hold, in backtests and live.
    pub state_max_keys: usize,
    /// Size of a strategy's state (keys and values), and of the snapshot
    /// it hands to its next instance.
    pub state_max_kib: u32,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self {
            memory_mib: 64,
            call_timeout_ms: 2000,
            fuel_per_call: 0,
            max_module_mib: 64,
            max_wasm_stack_kib: 1024,
            log_lines_per_sec: 20,
            max_instances: 64,
            compile_timeout_secs: 120,
            compile_memory_mib: 4096,
            max_compiles: 2,
            state_max_keys: 1024,
            state_max_kib: 4096,
        }
    }
}

/// Live paper trading.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TradingConfig {
    /// The account created on first start (and used when a request names
    /// none).
    pub default_account: String,
    /// Its starting cash.
    pub initial_cash: rust_decimal::Decimal,
    /// Paper broker: price ticks of slippage on market and stop fills.
    pub slippage_ticks: u32,
    /// Days final orders (filled, cancelled, rejected) and their fills are
    /// kept in the hot-state store after their last change; 0 keeps them
    /// forever. A client id can be reused once its order is gone.
    pub order_retention_days: u32,
}

impl Default for TradingConfig {
    fn default() -> Self {
        Self {
            default_account: "paper".into(),
            initial_cash: rust_decimal::Decimal::from(1_000_000),
            slippage_ticks: 0,
            order_retention_days: 90,
        }
    }
}

/// How long finished records are kept by the retention job.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    pub audit_days: u32,
    pub jobs_days: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            audit_days: 365,
            jobs_days: 30,
        }
    }
}

/// Cluster mode: what several quantbox processes sharing PostgreSQL and
/// Redis need beyond the two URLs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// This node's name in job claims, heartbeats and logs; the host name
    /// when empty. Unique per running process of a cluster.
    pub node_id: String,
    /// PostgreSQL connections per process (`max_connections` is shared by
    /// every node: keep this small).
    pub db_pool_size: usize,
    /// Connections per process to `database_read_url`.
    pub db_read_pool_size: usize,
    /// Prefix of every Redis key and channel: one per deployment.
    pub redis_prefix: String,
    /// How long start-up keeps retrying (with backoff) while PostgreSQL or
    /// Redis do not answer yet.
    pub connect_timeout_secs: u64,
    /// How often a node records that it is alive.
    pub heartbeat_secs: u64,
    /// A node silent this long is dead: its running jobs are taken back.
    pub node_timeout_secs: u64,
    /// Term of the desk lease (ms): the trader holding it renews every
    /// third of it; a standby asks every sixth and takes over once a
    /// term passed without renewal (a dead or frozen holder is replaced
    /// within about 1.2 terms).
    pub desk_lease_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            node_id: String::new(),
            db_pool_size: 8,
            db_read_pool_size: 4,
            redis_prefix: "quantbox".into(),
            connect_timeout_secs: 60,
            heartbeat_secs: 5,
            node_timeout_secs: 30,
            desk_lease_ms: 3000,
        }
    }
}

impl ClusterConfig {
    /// The desk lease's term, renewal and standby poll intervals.
    pub fn desk_lease(&self) -> (Duration, Duration, Duration) {
        let ttl = Duration::from_millis(self.desk_lease_ms);
        (ttl, ttl / 3, ttl / 6)
    }
}

/// The effective configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub env: Environment,
    pub log_level: String,
    pub bind: SocketAddr,
    pub data_dir: PathBuf,
    /// Threads of the async runtime serving HTTP (the seed's uvicorn `WORKERS`).
    pub workers: usize,
    /// What this process runs (`--role`, `QUANTBOX_ROLE`): any of
    /// [`NodeRole`]'s names, comma-separated; all of them by default (one
    /// box).
    #[serde(deserialize_with = "string_or_list")]
    pub role: Vec<String>,
    #[serde(deserialize_with = "string_or_list")]
    pub cors_origins: Vec<String>,
    pub default_page_size: u32,
    pub max_page_size: u32,
    /// Signs access tokens (`SECRET_KEY` or `JWT_SECRET_KEY`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_key_file: Option<PathBuf>,
    /// Password for the `admin` user created on first start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_password: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_password_file: Option<PathBuf>,
    /// Cluster mode: PostgreSQL / TimescaleDB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url_file: Option<PathBuf>,
    /// Cluster mode: a streaming replica for reads that tolerate lag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_read_url: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_read_url_file: Option<PathBuf>,
    /// Cluster mode: Redis.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_url_file: Option<PathBuf>,
    /// Send HSTS: set when clients reach quantbox over TLS (directly or via a proxy).
    pub behind_tls: bool,
    /// Take the client address from `X-Forwarded-For` (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
    /// Bound on draining requests and job steps at shutdown (keep below systemd's
    /// `TimeoutStopSec` and k8s' `terminationGracePeriodSeconds`).
    pub shutdown_timeout_secs: u64,
    pub queues: QueuesConfig,
    pub auth: AuthConfig,
    pub rate_limit: RateLimitConfig,
    pub limits: BodyLimits,
    pub http: HttpConfig,
    pub metrics: MetricsConfig,
    pub retention: RetentionConfig,
    pub market: MarketConfig,
    pub plugins: PluginsConfig,
    pub trading: TradingConfig,
    pub cluster: ClusterConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            env: Environment::Development,
            log_level: "info".into(),
            bind: SocketAddr::from(([127, 0, 0, 1], 8000)),
            data_dir: PathBuf::from("./data"),
            workers: 4,
            role: NodeRole::ALL.iter().map(|r| r.to_string()).collect(),
            cors_origins: Vec::new(),
            default_page_size: 20,
            max_page_size: 100,
            secret_key: None,
            secret_key_file: None,
            admin_password: None,
            admin_password_file: None,
            database_url: None,
            database_url_file: None,
            database_read_url: None,
            database_read_url_file: None,
            redis_url: None,
            redis_url_file: None,
            behind_tls: false,
            trust_forwarded_for: false,
            shutdown_timeout_secs: 20,
            queues: QueuesConfig::default(),
            auth: AuthConfig::default(),
            rate_limit: RateLimitConfig::default(),
            limits: BodyLimits::default(),
            http: HttpConfig::default(),
            metrics: MetricsConfig::default(),
            retention: RetentionConfig::default(),
            market: MarketConfig::default(),
            plugins: PluginsConfig::default(),
            trading: TradingConfig::default(),
            cluster: ClusterConfig::default(),
        }
    }
}

fn string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Either::deserialize(d)? {
        Either::One(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        Either::Many(v) => v,
    })
}

/// One invalid setting: which key and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub key: String,
    pub reason: String,
}

/// Everything wrong with a configuration, reported at once.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError(pub Vec<ConfigIssue>);

impl ConfigError {
    fn one(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self(vec![ConfigIssue {
            key: key.into(),
            reason: reason.into(),
        }])
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration:")?;
        for issue in &self.0 {
            write!(f, "\n  - {}: {}", issue.key, issue.reason)?;
        }
        Ok(())
    }
}

/// What to load a configuration from.
#[derive(Debug, Default, Clone)]
pub struct ConfigSource {
    /// Explicit config file (`--config`): must exist.
    pub file: Option<PathBuf>,
    /// Read [`DEFAULT_CONFIG_PATH`] when it exists and no `file` is given.
    pub use_default_file: bool,
    /// The environment, as a map.
    pub env: HashMap<String, String>,
    /// Highest layer: command-line flags, keyed like the TOML file.
    pub overrides: BTreeMap<String, String>,
}

impl ConfigSource {
    /// The process environment and the default file lookup.
    pub fn from_process() -> Self {
        Self {
            file: None,
            use_default_file: true,
            env: std::env::vars().collect(),
            overrides: BTreeMap::new(),
        }
    }

    /// The config file this source reads, if any.
    pub fn config_file(&self) -> Option<PathBuf> {
        if let Some(f) = &self.file {
            return Some(f.clone());
        }
        if let Some(f) = self.env.get("QUANTBOX_CONFIG").filter(|s| !s.is_empty()) {
            return Some(PathBuf::from(f));
        }
        let default = Path::new(DEFAULT_CONFIG_PATH);
        (self.use_default_file && default.exists()).then(|| default.to_path_buf())
    }
}

/// Seed environment names and the key each one sets.
const SEED_ENV: &[(&str, &str)] = &[
    ("ENV", "env"),
    ("LOG_LEVEL", "log_level"),
    ("WORKERS", "workers"),
    ("CORS_ORIGINS", "cors_origins"),
    ("DEFAULT_PAGE_SIZE", "default_page_size"),
    ("MAX_PAGE_SIZE", "max_page_size"),
    ("SECRET_KEY", "secret_key"),
    // JWT_SECRET_KEY is the more specific name: it wins over SECRET_KEY.
    ("JWT_SECRET_KEY", "secret_key"),
    ("DATABASE_URL", "database_url"),
    ("DATABASE_READ_URL", "database_read_url"),
    ("REDIS_URL", "redis_url"),
    ("SECRET_KEY_FILE", "secret_key_file"),
    ("JWT_SECRET_KEY_FILE", "secret_key_file"),
    ("DATABASE_URL_FILE", "database_url_file"),
    ("DATABASE_READ_URL_FILE", "database_read_url_file"),
    ("REDIS_URL_FILE", "redis_url_file"),
];

/// Keys whose values stay strings even when they look like numbers.
const STRING_KEYS: &[&str] = &[
    "env",
    "role",
    "log_level",
    "bind",
    "data_dir",
    "cors_origins",
    "secret_key",
    "admin_password",
    "database_url",
    "database_read_url",
    "redis_url",
    "node_id",
    "redis_prefix",
    "secret_key_file",
    "admin_password_file",
    "database_url_file",
    "database_read_url_file",
    "redis_url_file",
    "listen",
    "token",
    "token_file",
];

fn insert_path(dict: &mut Dict, path: &[String], value: Value) {
    match path {
        [] => {}
        [last] => {
            dict.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = dict
                .entry(first.clone())
                .or_insert_with(|| Value::from(Map::<String, Value>::new()));
            if let Value::Dict(_, inner) = entry {
                insert_path(inner, rest, value);
            } else {
                let mut inner = Dict::new();
                insert_path(&mut inner, rest, value);
                *entry = Value::from(inner);
            }
        }
    }
}

fn typed_value(key: &str, raw: &str) -> Value {
    if STRING_KEYS.contains(&key) {
        Value::from(raw.to_string())
    } else {
        raw.parse::<Value>()
            .unwrap_or_else(|_| Value::from(raw.to_string()))
    }
}

fn env_layer(env: &HashMap<String, String>) -> Dict {
    let mut dict = Dict::new();
    for (name, key) in SEED_ENV {
        if let Some(raw) = env.get(*name) {
            insert_path(&mut dict, &[key.to_string()], typed_value(key, raw));
        }
    }
    let mut prefixed: Vec<_> = env
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("QUANTBOX_").map(|rest| (rest, v)))
        .filter(|(rest, _)| *rest != "CONFIG")
        .collect();
    prefixed.sort();
    for (rest, raw) in prefixed {
        let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        let leaf = path.last().cloned().unwrap_or_default();
        insert_path(&mut dict, &path, typed_value(&leaf, raw));
    }
    dict
}

fn read_secret_file(key: &str, path: &Path) -> Result<Secret, ConfigIssue> {
    std::fs::read_to_string(path)
        .map(|s| Secret::new(s.trim().to_string()))
        .map_err(|e| ConfigIssue {
            key: format!("{key}_file"),
            reason: format!("cannot read {}: {e}", path.display()),
        })
}

impl Config {
    /// Loads and validates a configuration.
    pub fn load(source: &ConfigSource) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = source.config_file() {
            if !path.exists() {
                return Err(ConfigError::one(
                    "config",
                    format!("config file {} does not exist", path.display()),
                ));
            }
            figment = figment.merge(Toml::file_exact(&path));
        }
        figment = figment.merge(Serialized::defaults(env_layer(&source.env)));
        let mut flags = Dict::new();
        for (k, v) in &source.overrides {
            insert_path(&mut flags, std::slice::from_ref(k), typed_value(k, v));
        }
        figment = figment.merge(Serialized::defaults(flags));

        let mut config: Config = figment.extract().map_err(|e| {
            ConfigError(
                e.into_iter()
                    .map(|e| ConfigIssue {
                        key: if e.path.is_empty() {
                            "config".into()
                        } else {
                            e.path.join(".")
                        },
                        reason: e.kind.to_string(),
                    })
                    .collect(),
            )
        })?;
        config.resolve_secret_files()?;
        config.validate()?;
        Ok(config)
    }

    fn resolve_secret_files(&mut self) -> Result<(), ConfigError> {
        let mut issues = Vec::new();
        let slots: [(&str, &Option<PathBuf>, &mut Option<Secret>); 6] = [
            ("secret_key", &self.secret_key_file, &mut self.secret_key),
            (
                "admin_password",
                &self.admin_password_file,
                &mut self.admin_password,
            ),
            (
                "database_url",
                &self.database_url_file,
                &mut self.database_url,
            ),
            (
                "database_read_url",
                &self.database_read_url_file,
                &mut self.database_read_url,
            ),
            ("redis_url", &self.redis_url_file, &mut self.redis_url),
            (
                "metrics.token",
                &self.metrics.token_file,
                &mut self.metrics.token,
            ),
        ];
        for (key, file, slot) in slots {
            if let Some(path) = file {
                match read_secret_file(key, path) {
                    Ok(secret) => *slot = Some(secret),
                    Err(issue) => issues.push(issue),
                }
            }
        }
        if issues.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(issues))
        }
    }

    /// Checks values that types alone cannot; reports every problem at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut issues = Vec::new();
        let mut bad = |key: &str, reason: String| {
            issues.push(ConfigIssue {
                key: key.into(),
                reason,
            })
        };
        if self.role.is_empty() {
            bad(
                "role",
                "names no role; give any of api, worker, scheduler, trader".into(),
            );
        }
        for r in &self.role {
            if r.parse::<NodeRole>().is_err() {
                bad(
                    "role",
                    format!("{r:?} is not a role: api, worker, scheduler or trader"),
                );
            }
        }
        if self.default_page_size == 0 {
            bad("default_page_size", "must be at least 1".into());
        }
        if self.max_page_size == 0 || self.max_page_size > 10_000 {
            bad("max_page_size", "must be between 1 and 10000".into());
        }
        if self.default_page_size > self.max_page_size {
            bad(
                "default_page_size",
                format!(
                    "{} is larger than max_page_size ({})",
                    self.default_page_size, self.max_page_size
                ),
            );
        }
        if !(1..=512).contains(&self.workers) {
            bad(
                "workers",
                format!("{} is not between 1 and 512", self.workers),
            );
        }
        for (key, n) in [
            ("queues.backtest", self.queues.backtest),
            ("queues.data", self.queues.data),
        ] {
            if !(1..=256).contains(&n) {
                bad(key, format!("{n} is not between 1 and 256"));
            }
        }
        if !(1..=64).contains(&self.market.threads) {
            bad(
                "market.threads",
                format!("{} is not between 1 and 64", self.market.threads),
            );
        }
        let p = &self.plugins;
        for (key, value, lo, hi) in [
            ("plugins.memory_mib", u64::from(p.memory_mib), 16, 4096),
            ("plugins.call_timeout_ms", p.call_timeout_ms, 10, 600_000),
            (
                "plugins.max_module_mib",
                u64::from(p.max_module_mib),
                1,
                1024,
            ),
            (
                "plugins.max_wasm_stack_kib",
                u64::from(p.max_wasm_stack_kib),
                64,
                8192,
            ),
            (
                "plugins.max_instances",
                u64::from(p.max_instances),
                1,
                10_000,
            ),
            (
                "plugins.compile_timeout_secs",
                p.compile_timeout_secs,
                1,
                3600,
            ),
            (
                "plugins.compile_memory_mib",
                p.compile_memory_mib,
                512,
                1 << 20,
            ),
        ] {
            if !(lo..=hi).contains(&value) {
                bad(key, format!("{value} is not between {lo} and {hi}"));
            }
        }
        if self.market.max_ingest_rows == 0 {
            bad("market.max_ingest_rows", "must be at least 1".into());
        }
        if self.queues.max_attempts == 0 {
            bad("queues.max_attempts", "must be at least 1".into());
        }
        if self.log_level.trim().is_empty() {
            bad("log_level", "must not be empty".into());
        }
        for origin in &self.cors_origins {
            if origin == "*" {
                if self.cors_origins.len() > 1 {
                    bad(
                        "cors_origins",
                        "\"*\" cannot be combined with explicit origins".into(),
                    );
                }
                continue;
            }
            if let Err(reason) = check_origin(origin) {
                bad("cors_origins", format!("{origin:?}: {reason}"));
            }
        }
        let rl = &self.rate_limit;
        for (key, n) in [
            ("rate_limit.api_per_sec", rl.api_per_sec),
            ("rate_limit.api_burst", rl.api_burst),
            ("rate_limit.trading_per_sec", rl.trading_per_sec),
            ("rate_limit.trading_burst", rl.trading_burst),
        ] {
            if n == 0 {
                bad(key, "must be at least 1".into());
            }
        }
        if self.auth.access_ttl_secs == 0 || self.auth.refresh_ttl_secs == 0 {
            bad("auth", "token lifetimes must be at least 1 second".into());
        }
        if self.limits.json_bytes == 0 || self.limits.upload_bytes == 0 {
            bad("limits", "body limits must be at least 1 byte".into());
        }
        let l = &self.limits;
        if l.ws_message_bytes < 256
            || l.ws_auth_secs == 0
            || l.ws_per_user == 0
            || l.ws_per_address == 0
            || l.ws_subscriptions == 0
            || l.ws_recheck_secs == 0
        {
            bad(
                "limits",
                "ws_* limits must be at least 1 (ws_message_bytes at least 256)".into(),
            );
        }
        let h = &self.http;
        if h.max_connections == 0 || h.header_timeout_secs == 0 || h.body_timeout_secs == 0 {
            bad(
                "http",
                "max_connections and the timeouts must be at least 1".into(),
            );
        }
        if self.metrics.listen.is_some_and(|a| a == self.bind) {
            bad(
                "metrics.listen",
                format!(
                    "{} is `bind` itself; give another port or leave it unset",
                    self.bind
                ),
            );
        }
        if self
            .metrics
            .token
            .as_ref()
            .is_some_and(|t| t.expose().len() < 16)
        {
            bad("metrics.token", "must be at least 16 characters".into());
        }
        if let Err(reason) = crate::market::check_symbol(&self.trading.default_account) {
            bad("trading.default_account", reason);
        }
        if self.trading.initial_cash <= rust_decimal::Decimal::ZERO {
            bad("trading.initial_cash", "must be positive".into());
        }
        match (&self.database_url, &self.redis_url) {
            (Some(_), None) => bad(
                "redis_url",
                "cluster mode (database_url is set) also needs REDIS_URL: events and rate limits are shared through Redis".into(),
            ),
            (None, Some(_)) => bad(
                "database_url",
                "REDIS_URL is set but DATABASE_URL is not: cluster mode needs both".into(),
            ),
            _ => {}
        }
        if self.database_read_url.is_some() && self.database_url.is_none() {
            bad(
                "database_read_url",
                "a read replica needs DATABASE_URL as well".into(),
            );
        }
        if self.cluster_mode() {
            match &self.secret_key {
                None => bad(
                    "secret_key",
                    "cluster mode needs one signing secret shared by every node (set SECRET_KEY or SECRET_KEY_FILE); otherwise each node would refuse the others' tokens".into(),
                ),
                Some(s) => {
                    if let Err(reason) = check_secret_strength(s.expose()) {
                        bad("secret_key", reason);
                    }
                }
            }
            let c = &self.cluster;
            for (key, n, lo, hi) in [
                ("cluster.db_pool_size", c.db_pool_size as u64, 1, 256),
                (
                    "cluster.db_read_pool_size",
                    c.db_read_pool_size as u64,
                    1,
                    256,
                ),
                (
                    "cluster.connect_timeout_secs",
                    c.connect_timeout_secs,
                    0,
                    3600,
                ),
            ] {
                if !(lo..=hi).contains(&n) {
                    bad(key, format!("{n} is not between {lo} and {hi}"));
                }
            }
            if c.redis_prefix.is_empty()
                || !c
                    .redis_prefix
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "-_.:".contains(ch))
            {
                bad(
                    "cluster.redis_prefix",
                    "must be letters, digits, '-', '_', '.' or ':'".into(),
                );
            }
        }
        // Heartbeats and take-back run on one box too (jobs of a previous
        // process of this node).
        let c = &self.cluster;
        if !(1..=300).contains(&c.heartbeat_secs) {
            bad(
                "cluster.heartbeat_secs",
                format!("{} is not between 1 and 300", c.heartbeat_secs),
            );
        }
        if !(300..=60_000).contains(&c.desk_lease_ms) {
            bad(
                "cluster.desk_lease_ms",
                format!("{} is not between 300 and 60000", c.desk_lease_ms),
            );
        }
        if c.node_timeout_secs < 2 * c.heartbeat_secs {
            bad(
                "cluster.node_timeout_secs",
                format!(
                    "{} must be at least twice cluster.heartbeat_secs ({})",
                    c.node_timeout_secs, c.heartbeat_secs
                ),
            );
        }
        if self.env == Environment::Production {
            match &self.secret_key {
                None => bad(
                    "secret_key",
                    "required in production (set SECRET_KEY, JWT_SECRET_KEY or *_FILE)".into(),
                ),
                Some(s) => {
                    if let Err(reason) = check_secret_strength(s.expose()) {
                        bad("secret_key", reason);
                    }
                }
            }
        }
        if issues.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(issues))
        }
    }

    /// Whether this process runs `role`.
    pub fn runs(&self, role: NodeRole) -> bool {
        self.role.iter().any(|r| r.parse() == Ok(role))
    }

    /// The roles this process runs, in [`NodeRole::ALL`] order.
    pub fn roles(&self) -> Vec<NodeRole> {
        NodeRole::ALL
            .iter()
            .copied()
            .filter(|r| self.runs(*r))
            .collect()
    }

    /// Every environment variable the configuration reads: the seed's
    /// names, `QUANTBOX_CONFIG`, and `QUANTBOX_` plus each key's path
    /// (`__` between levels), `*_FILE` variants included.
    pub fn env_keys() -> Vec<String> {
        fn walk(prefix: &str, v: &serde_json::Value, out: &mut Vec<String>) {
            match v {
                serde_json::Value::Object(m) => {
                    for (k, v) in m {
                        let name = if prefix.is_empty() {
                            k.to_ascii_uppercase()
                        } else {
                            format!("{prefix}__{}", k.to_ascii_uppercase())
                        };
                        walk(&name, v, out);
                    }
                }
                _ => out.push(format!("QUANTBOX_{prefix}")),
            }
        }
        // Every optional key set, so that it is serialised.
        let secret = || Some(Secret::new(String::new()));
        let file = || Some(PathBuf::new());
        let full = Config {
            secret_key: secret(),
            secret_key_file: file(),
            admin_password: secret(),
            admin_password_file: file(),
            database_url: secret(),
            database_url_file: file(),
            database_read_url: secret(),
            database_read_url_file: file(),
            redis_url: secret(),
            redis_url_file: file(),
            metrics: MetricsConfig {
                listen: Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
                token: secret(),
                token_file: file(),
            },
            ..Config::default()
        };
        let mut out: Vec<String> = SEED_ENV.iter().map(|(n, _)| n.to_string()).collect();
        out.push("QUANTBOX_CONFIG".into());
        walk(
            "",
            &serde_json::to_value(&full).expect("the configuration serialises"),
            &mut out,
        );
        out.sort();
        out.dedup();
        out
    }

    /// Whether the stores are PostgreSQL and Redis (`DATABASE_URL` set)
    /// rather than the embedded files.
    pub fn cluster_mode(&self) -> bool {
        self.database_url.is_some()
    }

    /// This node's name: `cluster.node_id`, else the host name.
    pub fn node_name(&self) -> String {
        if !self.cluster.node_id.trim().is_empty() {
            return self.cluster.node_id.trim().to_string();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "quantbox".into())
    }

    /// The configuration as TOML with every secret redacted.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// Rejects empty, short and well-known signing secrets.
pub fn check_secret_strength(secret: &str) -> Result<(), String> {
    let trimmed = secret.trim();
    if trimmed.is_empty() {
        return Err("is empty".into());
    }
    let lower = trimmed.to_ascii_lowercase();
    if WELL_KNOWN_SECRETS.contains(&lower.as_str()) {
        return Err("is a well-known placeholder value".into());
    }
    if trimmed.len() < MIN_SECRET_LEN {
        return Err(format!(
            "is {} characters long; at least {MIN_SECRET_LEN} are required",
            trimmed.len()
        ));
    }
    if trimmed
        .chars()
        .all(|c| c == trimmed.chars().next().unwrap_or(' '))
    {
        return Err("repeats a single character".into());
    }
    Ok(())
}

fn check_origin(origin: &str) -> Result<(), &'static str> {
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or("must start with http:// or https://")?;
    if rest.is_empty() {
        return Err("has no host");
    }
    if rest.contains('/') {
        return Err("must not contain a path");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(env: &[(&str, &str)], toml: Option<&str>) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let file = toml.map(|t| {
            let p = dir.path().join("q.toml");
            std::fs::write(&p, t).unwrap();
            p
        });
        Config::load(&ConfigSource {
            file,
            use_default_file: false,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            overrides: BTreeMap::new(),
        })
    }

    fn keys(e: ConfigError) -> Vec<String> {
        e.0.into_iter().map(|i| i.key).collect()
    }

    #[test]
    fn roles_default_to_all_and_are_checked() {
        let c = load(&[], None).unwrap();
        assert_eq!(c.roles(), NodeRole::ALL.to_vec());
        let c = load(&[("QUANTBOX_ROLE", "api, Worker")], None).unwrap();
        assert_eq!(c.roles(), vec![NodeRole::Api, NodeRole::Worker]);
        assert!(c.runs(NodeRole::Worker) && !c.runs(NodeRole::Trader));
        let c = load(&[], Some("role = [\"trader\"]")).unwrap();
        assert_eq!(c.roles(), vec![NodeRole::Trader]);
        let e = load(&[("QUANTBOX_ROLE", "api,cook")], None).unwrap_err();
        assert!(
            e.0.iter()
                .any(|i| i.key == "role" && i.reason.contains("cook")),
            "{e}"
        );
        let e = load(&[("QUANTBOX_ROLE", " , ")], None).unwrap_err();
        assert!(e.0.iter().any(|i| i.key == "role"), "{e}");
    }

    #[test]
    fn env_keys_are_the_keys_the_loader_reads() {
        let keys = Config::env_keys();
        for k in [
            "ENV",
            "SECRET_KEY_FILE",
            "DATABASE_URL",
            "QUANTBOX_CONFIG",
            "QUANTBOX_ROLE",
            "QUANTBOX_BIND",
            "QUANTBOX_ADMIN_PASSWORD_FILE",
            "QUANTBOX_CLUSTER__NODE_ID",
            "QUANTBOX_QUEUES__BACKTEST",
            "QUANTBOX_PLUGINS__MEMORY_MIB",
        ] {
            assert!(keys.iter().any(|x| x == k), "{k} missing from {keys:?}");
        }
        // Each QUANTBOX_ key names a setting: set to a value of the wrong
        // shape, loading fails on that key (an unknown key would fail as
        // unknown, a known one as invalid; never silently ignored).
        let e = load(&[("QUANTBOX_CLUSTER__NODE_ID_TYPO", "x")], None).unwrap_err();
        assert!(e.to_string().contains("node_id_typo"), "{e}");
        for k in keys
            .iter()
            .filter(|k| k.starts_with("QUANTBOX_") && k.contains("__"))
        {
            let leaf = k.rsplit("__").next().unwrap().to_ascii_lowercase();
            let c = load(&[(k.as_str(), "[1, 2]")], None);
            if let Err(e) = c {
                assert!(
                    !e.to_string().contains("unknown field"),
                    "{k}: the loader does not know it: {e}"
                );
                assert!(e.to_string().contains(&leaf), "{k}: {e}");
            }
        }
    }

    #[test]
    fn cluster_mode_needs_both_urls_and_a_shared_secret() {
        let c = load(&[], None).unwrap();
        assert!(!c.cluster_mode());
        let pg = ("DATABASE_URL", "postgres://u@db/q");
        let redis = ("REDIS_URL", "redis://r:6379");
        let secret = ("SECRET_KEY", "a-cluster-wide-secret-0123456789abcdef");
        assert_eq!(
            keys(load(&[pg, secret], None).unwrap_err()),
            vec!["redis_url"]
        );
        assert_eq!(
            keys(load(&[redis, secret], None).unwrap_err()),
            vec!["database_url"]
        );
        assert_eq!(
            keys(load(&[pg, redis], None).unwrap_err()),
            vec!["secret_key"]
        );
        let c = load(
            &[
                pg,
                redis,
                secret,
                ("DATABASE_READ_URL", "postgres://u@replica/q"),
                ("QUANTBOX_CLUSTER__NODE_ID", "api-1"),
                ("QUANTBOX_CLUSTER__DB_POOL_SIZE", "3"),
            ],
            None,
        )
        .unwrap();
        assert!(c.cluster_mode());
        assert_eq!(c.node_name(), "api-1");
        assert_eq!(c.cluster.db_pool_size, 3);
        assert_eq!(
            c.database_read_url.unwrap().expose(),
            "postgres://u@replica/q"
        );
        let e = load(
            &[
                pg,
                redis,
                secret,
                ("QUANTBOX_CLUSTER__REDIS_PREFIX", "bad prefix*"),
                ("QUANTBOX_CLUSTER__NODE_TIMEOUT_SECS", "3"),
            ],
            None,
        )
        .unwrap_err();
        assert_eq!(
            keys(e),
            vec!["cluster.redis_prefix", "cluster.node_timeout_secs"]
        );
        // The liveness settings are checked on one box too.
        let e = load(&[("QUANTBOX_CLUSTER__HEARTBEAT_SECS", "0")], None).unwrap_err();
        assert_eq!(keys(e), vec!["cluster.heartbeat_secs"]);
    }

    #[test]
    fn defaults_match_the_seed() {
        let c = load(&[], None).unwrap();
        assert_eq!(c.bind.to_string(), "127.0.0.1:8000");
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!((c.default_page_size, c.max_page_size), (20, 100));
        assert_eq!((c.queues.backtest, c.queues.data), (2, 4));
        assert_eq!((c.rate_limit.api_per_sec, c.rate_limit.api_burst), (10, 20));
        assert_eq!(c.limits.upload_bytes, 50 * 1024 * 1024);
    }

    #[test]
    fn layers_apply_in_order() {
        let toml = "workers = 2\nmax_page_size = 50\n[queues]\ndata = 7\n";
        let c = load(&[], Some(toml)).unwrap();
        assert_eq!((c.workers, c.max_page_size, c.queues.data), (2, 50, 7));
        let c = load(
            &[("WORKERS", "3"), ("QUANTBOX_QUEUES__DATA", "9")],
            Some(toml),
        )
        .unwrap();
        assert_eq!((c.workers, c.queues.data), (3, 9));
        // QUANTBOX_ names win over seed names.
        let c = load(&[("WORKERS", "3"), ("QUANTBOX_WORKERS", "5")], None).unwrap();
        assert_eq!(c.workers, 5);
    }

    #[test]
    fn cors_origins_accept_comma_lists() {
        let c = load(
            &[("CORS_ORIGINS", "https://a.example, https://b.example:8443")],
            None,
        )
        .unwrap();
        assert_eq!(
            c.cors_origins,
            vec!["https://a.example", "https://b.example:8443"]
        );
        let e = load(&[("CORS_ORIGINS", "https://a.example/path")], None).unwrap_err();
        assert_eq!(keys(e), vec!["cors_origins"]);
        let e = load(&[("CORS_ORIGINS", "*,https://a.example")], None).unwrap_err();
        assert_eq!(keys(e), vec!["cors_origins"]);
    }

    #[test]
    fn invalid_values_name_the_key() {
        let e = load(&[("MAX_PAGE_SIZE", "lots")], None).unwrap_err();
        assert_eq!(keys(e.clone()), vec!["max_page_size"]);
        assert!(e.to_string().contains("max_page_size"), "{e}");
        let e = load(&[("DEFAULT_PAGE_SIZE", "200")], None).unwrap_err();
        assert_eq!(keys(e), vec!["default_page_size"]);
        let e = load(&[], Some("no_such_key = 1\n")).unwrap_err();
        assert!(e.to_string().contains("no_such_key"), "{e}");
        let e = load(&[("QUANTBOX_BIND", "not-an-address")], None).unwrap_err();
        assert_eq!(keys(e), vec!["bind"]);
    }

    #[test]
    fn secrets_come_from_files_and_are_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwt");
        std::fs::write(&path, "0123456789abcdef0123456789abcdef-from-file\n").unwrap();
        let c = load(
            &[
                ("SECRET_KEY", "plain-but-overridden-0123456789abcdef"),
                ("JWT_SECRET_KEY_FILE", path.to_str().unwrap()),
            ],
            None,
        )
        .unwrap();
        assert_eq!(
            c.secret_key.as_ref().unwrap().expose(),
            "0123456789abcdef0123456789abcdef-from-file"
        );
        let shown = c.to_redacted_toml();
        assert!(!shown.contains("from-file"), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
        let e = load(&[("REDIS_URL_FILE", "/nonexistent/redis")], None).unwrap_err();
        assert_eq!(keys(e), vec!["redis_url_file"]);
    }

    #[test]
    fn production_refuses_weak_secrets() {
        let e = load(&[("ENV", "production")], None).unwrap_err();
        assert_eq!(keys(e), vec!["secret_key"]);
        for weak in ["changeme", "short", "", "<base64-encoded-jwt-secret>"] {
            let e = load(&[("ENV", "production"), ("SECRET_KEY", weak)], None).unwrap_err();
            assert_eq!(keys(e), vec!["secret_key"], "{weak:?}");
        }
        let c = load(
            &[
                ("ENV", "production"),
                ("SECRET_KEY", "k3y-that-is-long-enough-for-production-use"),
            ],
            None,
        )
        .unwrap();
        assert_eq!(c.env, Environment::Production);
    }
}
