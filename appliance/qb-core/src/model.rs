//! Records shared by the stores, the workers and the API.
//!
//! Timestamps are UTC `DateTime`s here; the stores persist them as integer
//! milliseconds (see [`crate::time`]).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a user or API key may do. Ordered: `Viewer < Trader < Admin`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything a trader can see; changes nothing.
    Viewer,
    /// Runs backtests, imports data, trades.
    Trader,
    /// Everything, including users, schedules and the audit log.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Trader => "trader",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "trader" => Ok(Role::Trader),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role {other:?} (expected admin, trader or viewer)"
            )),
        }
    }
}

/// A user as the API shows it (never with the password hash).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct User {
    /// Never reused, even after the user is deleted.
    pub id: i64,
    pub username: String,
    pub role: Role,
    pub disabled: bool,
    /// May post live ticks (`POST /api/v1/market/ticks`) and start replays:
    /// market data drives the paper broker's fills, so it is trusted input.
    /// Admins may always; others when an admin granted this.
    #[serde(default)]
    pub feed: bool,
    pub created_at: DateTime<Utc>,
    /// Moves with every change of role, status or password
    /// ([`MetaStore::update_user`](crate::MetaStore::update_user)): access
    /// tokens carry the version they were issued under and stop working
    /// when it moves. Not shown by the API.
    #[serde(skip)]
    pub token_version: i64,
}

/// A user with the fields authentication needs.
#[derive(Debug, Clone)]
pub struct UserCredentials {
    pub user: User,
    pub password_hash: String,
}

/// Changes to a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserUpdate {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
    pub password_hash: Option<String>,
    /// The feed permission ([`User::feed`]); changing it alone does not end
    /// the user's sessions (it is read on every request).
    pub feed: Option<bool>,
}

/// A paper trading account granted to a user: they act on it within their
/// role (viewers read it, traders also trade it). Admins act on every
/// account without grants. Removed with the user.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct AccountGrant {
    pub account: String,
    pub user_id: i64,
    pub username: String,
    /// Who granted it (an admin, or the trader who opened the account).
    pub granted_by: String,
    pub granted_at: DateTime<Utc>,
}

/// An API key as listed (the key itself is shown once, at creation).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    /// First characters of the key, to recognise it.
    pub prefix: String,
    pub role: Role,
    pub owner: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A stored refresh token (by hash).
#[derive(Debug, Clone)]
pub struct RefreshToken {
    pub token_hash: String,
    pub user_id: i64,
    /// All tokens issued from one login share a family; reuse of a rotated
    /// token revokes the family.
    pub family: String,
    pub expires_at: DateTime<Utc>,
    pub revoked: bool,
    /// When it was spent by a refresh (rotation). Cleared when its family
    /// or its user's tokens are revoked, so a recent rotation also means
    /// the session is still alive.
    pub rotated_at: Option<DateTime<Utc>>,
}

/// One audit record.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct AuditEntry {
    pub id: i64,
    pub ts: DateTime<Utc>,
    /// Username, `apikey:<name>`, or `anonymous`.
    pub actor: String,
    /// e.g. `POST /api/v1/users` or `auth.login`.
    pub action: String,
    /// The concrete path or object acted on.
    pub target: Option<String>,
    /// `ok`, `denied` or `error`.
    pub result: String,
    pub status: Option<u16>,
    pub client_ip: Option<String>,
    pub detail: Option<String>,
}

/// An audit record before it is stored.
#[derive(Debug, Clone, Default)]
pub struct NewAuditEntry {
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub result: String,
    pub status: Option<u16>,
    pub client_ip: Option<String>,
    pub detail: Option<String>,
}

/// Filter for listing the audit log.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action_prefix: Option<String>,
}

/// Lifecycle of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

impl FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "succeeded" => JobState::Succeeded,
            "failed" => JobState::Failed,
            "cancelled" => JobState::Cancelled,
            other => return Err(format!("unknown job state {other:?}")),
        })
    }
}

/// How a finished job ended; the `outcome` label of `quantbox_jobs_total`.
#[derive(Debug, Clone, PartialEq)]
pub enum JobOutcome {
    Succeeded(serde_json::Value),
    /// The error, and what the job produced before failing (e.g. the
    /// rejected rows of an import).
    Failed(String, Option<serde_json::Value>),
    Cancelled,
}

impl JobOutcome {
    pub fn label(&self) -> &'static str {
        match self {
            JobOutcome::Succeeded(_) => "succeeded",
            JobOutcome::Failed(..) => "failed",
            JobOutcome::Cancelled => "cancelled",
        }
    }
}

/// What to run: a registered job kind with its parameters, on a queue.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct JobSpec {
    /// Registered job kind, e.g. `maintenance.checkpoint`.
    pub kind: String,
    /// Queue to run on; the kind's default queue when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
}

/// A job as stored.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Job {
    pub id: String,
    pub queue: String,
    pub kind: String,
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    pub state: JobState,
    /// 0.0 ..= 1.0
    pub progress: f64,
    pub message: Option<String>,
    /// What the job produced (e.g. a reference to a stored result).
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    pub error: Option<String>,
    /// Times the job was started (> 1 after a crash recovery).
    pub attempts: u32,
    pub max_attempts: u32,
    pub cancel_requested: bool,
    pub created_by: Option<String>,
    pub schedule_id: Option<String>,
    /// The node that claimed it last (the one running it while `running`).
    #[serde(default)]
    pub node: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A job about to be enqueued.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub queue: String,
    pub kind: String,
    pub params: serde_json::Value,
    pub max_attempts: u32,
    pub created_by: Option<String>,
    pub schedule_id: Option<String>,
}

/// Filter for listing jobs.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub queue: Option<String>,
    pub state: Option<JobState>,
    pub kind: Option<String>,
    /// Who enqueued the job: a user name matches the user's own jobs and
    /// those of their API keys (`name/apikey:key`); any other actor
    /// (`schedule:name`) matches exactly.
    pub created_by: Option<String>,
}

/// Counts of one queue.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct QueueStats {
    pub queue: String,
    pub queued: u64,
    pub running: u64,
}

/// The message of a job taken back from a dead instance and queued again.
pub fn requeue_message(attempts: u32, max: u32) -> String {
    format!("re-queued after the process running it stopped (attempt {attempts} of {max})")
}

/// The error of a job taken back from a dead instance with no attempt left.
pub fn interrupted_message(attempts: u32, max: u32) -> String {
    format!(
        "interrupted: the process stopped while the job was running, {attempts} of {max} attempts used"
    )
}

/// What became of jobs taken back from dead instances.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recovery {
    pub requeued: Vec<String>,
    pub failed: Vec<String>,
}

/// A persisted cron schedule that enqueues a job spec.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Schedule {
    pub id: String,
    pub name: String,
    /// Six fields with seconds (`sec min hour dom month dow`), UTC; five-field
    /// expressions get `0` seconds prepended.
    pub cron: String,
    pub job: JobSpec,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub last_run_at: Option<DateTime<Utc>>,
    pub last_job_id: Option<String>,
    /// Why the scheduler turned the schedule off (its cron expression or
    /// job no longer checks); cleared when it is enabled again.
    pub disabled_reason: Option<String>,
    /// Filled in by the scheduler from the cron expression.
    pub next_run_at: Option<DateTime<Utc>>,
}

/// Fields to create a schedule.
#[derive(Debug, Clone)]
pub struct NewSchedule {
    pub name: String,
    pub cron: String,
    pub job: JobSpec,
    pub enabled: bool,
}

/// Changes to a schedule.
#[derive(Debug, Clone, Default)]
pub struct ScheduleUpdate {
    pub cron: Option<String>,
    pub job: Option<JobSpec>,
    /// `Some(true)` also clears `disabled_reason`.
    pub enabled: Option<bool>,
    /// Recorded as the schedule's `disabled_reason` (with `enabled:
    /// Some(false)`, by the scheduler).
    pub disabled_reason: Option<String>,
}

/// A page request: 1-based page number and a validated page size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub page: u32,
    pub page_size: u32,
}

impl PageRequest {
    pub fn offset(&self) -> u64 {
        u64::from(self.page.saturating_sub(1)) * u64::from(self.page_size)
    }
}

/// One page of a list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub page: u32,
    pub page_size: u32,
    /// Total matching items over all pages.
    pub total: u64,
}

impl<T> Page<T> {
    /// The page `request` asked for, holding `items` of `total`.
    pub fn of(items: Vec<T>, request: PageRequest, total: u64) -> Self {
        Self {
            items,
            page: request.page,
            page_size: request.page_size,
            total,
        }
    }
}

/// One tunable parameter a strategy plugin declares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PluginParam {
    pub name: String,
    /// `integer`, `float` or `boolean`.
    #[serde(rename = "type")]
    pub kind: String,
    pub default: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    pub description: String,
}

/// A strategy plugin in the registry. Its identity is the sha256 of the
/// component; name and version come from the plugin's own `describe`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PluginInfo {
    /// Lowercase hex sha256 of the uploaded component.
    pub id: String,
    pub name: String,
    pub version: String,
    pub description: String,
    /// The WIT interface it was built for, e.g. `quantbox:strategy/host@0.1.0`.
    pub interface: String,
    pub params: Vec<PluginParam>,
    /// How many symbols it trades at once.
    pub symbols: u32,
    /// Bar intervals it wants; empty for tick strategies.
    pub intervals: Vec<String>,
    pub size_bytes: u64,
    pub uploaded_by: Option<String>,
    pub uploaded_at: DateTime<Utc>,
}
