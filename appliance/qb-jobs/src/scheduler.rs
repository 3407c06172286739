//! Cron schedules on tokio-cron-scheduler. Each firing is turned into a due
//! instant (the latest cron occurrence at or before now) and handed to
//! [`JobQueue::fire_schedule`], which enqueues it at most once, whoever fires.
//!
//! Any number of scheduler nodes may run. An edit made through any node is
//! announced on [`SCHEDULES_TOPIC`]; every scheduler re-reads that schedule
//! at once, and compares all of them with the store every
//! [`RESYNC`] in case an announcement was lost.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use qb_core::model::Schedule;
use qb_core::{JobQueue, PubSub};
use tokio::sync::Mutex;
use tokio_cron_scheduler::{Job as CronJob, JobScheduler};
use tracing::{info, warn};
use uuid::Uuid;

use crate::registry::Registry;

/// Where schedule edits are announced: `{"id": <schedule id>}`.
pub const SCHEDULES_TOPIC: &str = "schedules";

/// How often a scheduler compares its registrations with the store.
pub const RESYNC: Duration = Duration::from_secs(10);

/// Turns a 5-field expression into the 6-field form (seconds first) and
/// checks it with the parser the scheduler uses.
pub fn normalize_cron(expr: &str) -> Result<String, String> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let normalized = match fields.len() {
        5 => format!("0 {}", fields.join(" ")),
        6 | 7 => fields.join(" "),
        n => {
            return Err(format!(
                "a cron expression has 5 or 6 fields (sec min hour dom month dow), not {n}"
            ));
        }
    };
    parse(&normalized).map_err(|e| format!("invalid cron expression {expr:?}: {e}"))?;
    Ok(normalized)
}

fn parse(expr: &str) -> Result<Cron, croner::errors::CronError> {
    CronParser::builder()
        .seconds(Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(expr)
}

/// The next time an expression fires after `after`.
pub fn next_run(expr: &str, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    parse(expr).ok()?.find_next_occurrence(&after, false).ok()
}

/// The due instant of a firing at `now`: the latest occurrence of `cron`
/// at or before it, in whole seconds (cron's resolution), so every
/// scheduler node firing for the same occurrence names the same instant
/// whatever its clock's sub-second part.
pub fn due_at(cron: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    use chrono::Timelike;
    let due = parse(cron)
        .ok()?
        .find_previous_occurrence(&now, true)
        .ok()?;
    due.with_nanosecond(0)
}

/// Registers persisted schedules with the cron runner and keeps them in sync.
pub struct Scheduler {
    runner: Mutex<JobScheduler>,
    /// Schedule id → its registration and the cron it was registered with.
    registered: Mutex<HashMap<String, (Uuid, String)>>,
    queue: Arc<dyn JobQueue>,
    registry: Registry,
    max_attempts: u32,
}

impl Scheduler {
    pub async fn start(
        queue: Arc<dyn JobQueue>,
        registry: Registry,
        max_attempts: u32,
    ) -> Result<Arc<Self>, String> {
        let runner = JobScheduler::new().await.map_err(|e| e.to_string())?;
        runner.start().await.map_err(|e| e.to_string())?;
        let this = Arc::new(Self {
            runner: Mutex::new(runner),
            registered: Mutex::new(HashMap::new()),
            queue,
            registry,
            max_attempts,
        });
        for s in this
            .queue
            .all_schedules()
            .await
            .map_err(|e| e.to_string())?
        {
            this.reload(&s.id).await;
        }
        Ok(this)
    }

    /// Re-reads one schedule from the store and (re)registers or removes it.
    pub async fn reload(self: &Arc<Self>, schedule_id: &str) {
        let mut registered = self.registered.lock().await;
        let runner = self.runner.lock().await;
        if let Some((old, _)) = registered.remove(schedule_id)
            && let Err(e) = runner.remove(&old).await
        {
            warn!(schedule = schedule_id, error = %e, "cannot unregister schedule");
        }
        let schedule = match self.queue.get_schedule(schedule_id).await {
            Ok(Some(s)) if s.enabled => s,
            Ok(_) => return,
            Err(e) => {
                warn!(schedule = schedule_id, error = %e, "cannot load schedule");
                return;
            }
        };
        // A cron expression that no longer checks (stored by an older
        // version, or edited behind the API's back) turns the schedule off
        // with the reason, where the API and the dashboard show it.
        if let Err(e) = normalize_cron(&schedule.cron) {
            drop(runner);
            drop(registered);
            self.turn_off(&schedule, format!("cron: {e}")).await;
            return;
        }
        let this = Arc::downgrade(self);
        let (id, cron) = (schedule.id.clone(), schedule.cron.clone());
        let job = CronJob::new_async(schedule.cron.as_str(), move |_uuid, _lock| {
            let this = this.clone();
            let (id, cron) = (id.clone(), cron.clone());
            Box::pin(async move {
                if let Some(this) = this.upgrade() {
                    this.fire(&id, &cron).await;
                }
            })
        });
        match job {
            Ok(job) => match runner.add(job).await {
                Ok(uuid) => {
                    registered.insert(schedule.id.clone(), (uuid, schedule.cron.clone()));
                }
                Err(e) => warn!(schedule = %schedule.name, error = %e, "cannot register schedule"),
            },
            Err(e) => {
                warn!(schedule = %schedule.name, cron = %schedule.cron, error = %e, "bad cron expression")
            }
        }
    }

    /// Follows edits announced on [`SCHEDULES_TOPIC`] and resyncs with
    /// the store every [`RESYNC`].
    pub fn follow(self: &Arc<Self>, pubsub: &dyn PubSub) -> tokio::task::JoinHandle<()> {
        use tokio::sync::broadcast::error::RecvError;
        let mut rx = pubsub.subscribe(SCHEDULES_TOPIC);
        let this = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut resync = tokio::time::interval(RESYNC);
            resync.tick().await;
            loop {
                let id = tokio::select! {
                    e = rx.recv() => match e {
                        Ok(e) => e.data["id"].as_str().map(str::to_string),
                        Err(RecvError::Lagged(_)) => None,
                        Err(RecvError::Closed) => return,
                    },
                    _ = resync.tick() => None,
                };
                let Some(this) = this.upgrade() else { return };
                match id {
                    Some(id) => this.reload(&id).await,
                    None => this.resync().await,
                }
            }
        })
    }

    /// Re-registers every schedule whose cron or enabled flag differs from
    /// what is registered, and drops the ones that are gone.
    pub async fn resync(self: &Arc<Self>) {
        let stored = match self.queue.all_schedules().await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "cannot list schedules to resync");
                return;
            }
        };
        let registered: HashMap<String, String> = self
            .registered
            .lock()
            .await
            .iter()
            .map(|(id, (_, cron))| (id.clone(), cron.clone()))
            .collect();
        let mut stale: Vec<String> = registered
            .keys()
            .filter(|id| !stored.iter().any(|s| s.id == **id && s.enabled))
            .cloned()
            .collect();
        stale.extend(
            stored
                .iter()
                .filter(|s| s.enabled && registered.get(&s.id) != Some(&s.cron))
                .map(|s| s.id.clone()),
        );
        for id in stale {
            self.reload(&id).await;
        }
    }

    async fn fire(&self, schedule_id: &str, cron: &str) {
        let now = Utc::now();
        // The due instant comes from the cron, never from the clock: a
        // firing whose occurrence cannot be found is skipped, not enqueued
        // as "now" (which another node's firing would not deduplicate).
        let Some(due) = due_at(cron, now) else {
            warn!(
                schedule = schedule_id,
                cron, "no due instant for this firing; skipped"
            );
            return;
        };
        let schedule = match self.queue.get_schedule(schedule_id).await {
            Ok(Some(s)) if s.enabled => s,
            _ => return,
        };
        let mut job = match self
            .registry
            .prepare(
                &schedule.job,
                Some(format!("schedule:{}", schedule.name)),
                self.max_attempts,
            )
            .await
        {
            Ok(job) => job,
            Err((field, e)) => {
                // Not turned off: the check may have failed for a moment
                // (a store unreachable); the next firing tries again.
                warn!(schedule = %schedule.name, field, error = %e, "schedule has an invalid job spec");
                return;
            }
        };
        job.schedule_id = Some(schedule.id.clone());
        match self.queue.fire_schedule(&schedule.id, due, job).await {
            Ok(Some(job)) => {
                info!(schedule = %schedule.name, job = %job.id, due = %due, "schedule fired")
            }
            Ok(None) => {}
            Err(e) => warn!(schedule = %schedule.name, error = %e, "cannot enqueue scheduled job"),
        }
    }

    /// Disables a schedule and records why.
    async fn turn_off(&self, schedule: &Schedule, reason: String) {
        warn!(schedule = %schedule.name, %reason, "schedule turned off");
        let off = qb_core::model::ScheduleUpdate {
            enabled: Some(false),
            disabled_reason: Some(reason),
            ..Default::default()
        };
        if let Err(e) = self.queue.update_schedule(&schedule.id, off).await {
            warn!(schedule = %schedule.name, error = %e, "cannot turn the schedule off");
        }
    }

    /// Fills in `next_run_at`.
    pub fn annotate(mut s: Schedule) -> Schedule {
        s.next_run_at = if s.enabled {
            next_run(&s.cron, Utc::now())
        } else {
            None
        };
        s
    }

    pub async fn shutdown(&self) {
        if let Err(e) = self.runner.lock().await.shutdown().await {
            warn!(error = %e, "scheduler shutdown");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn due_instants_are_whole_occurrences() {
        let at = |s: &str| s.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
        let every_second = super::normalize_cron("* * * * * *").unwrap();
        // Two nodes firing for the same second, a few ms apart.
        for now in ["2026-12-02T10:00:05.004Z", "2026-12-02T10:00:05.950Z"] {
            assert_eq!(
                super::due_at(&every_second, at(now)),
                Some(at("2026-12-02T10:00:05Z"))
            );
        }
        let hourly = super::normalize_cron("0 * * * *").unwrap();
        assert_eq!(
            super::due_at(&hourly, at("2026-12-02T10:59:59.999Z")),
            Some(at("2026-12-02T10:00:00Z"))
        );
    }

    use super::*;
    use chrono::TimeZone;

    #[test]
    fn cron_expressions_normalize() {
        assert_eq!(normalize_cron("*/5 * * * *").unwrap(), "0 */5 * * * *");
        assert_eq!(normalize_cron("0 30 3 * * *").unwrap(), "0 30 3 * * *");
        assert!(normalize_cron("* * *").unwrap_err().contains("not 3"));
        assert!(normalize_cron("0 99 * * * *").is_err());
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 3, 10, 0).unwrap();
        assert_eq!(
            next_run("0 30 3 * * *", t),
            Some(Utc.with_ymd_and_hms(2026, 1, 1, 3, 30, 0).unwrap())
        );
    }
}
