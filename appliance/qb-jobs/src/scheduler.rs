//! Cron schedules on tokio-cron-scheduler. Each firing is turned into a due
//! instant (the latest cron occurrence at or before now) and handed to
//! [`JobQueue::fire_schedule`], which enqueues it at most once, whoever fires.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use qb_core::JobQueue;
use qb_core::model::Schedule;
use tokio::sync::Mutex;
use tokio_cron_scheduler::{Job as CronJob, JobScheduler};
use tracing::{info, warn};
use uuid::Uuid;

use crate::registry::Registry;

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

/// Registers persisted schedules with the cron runner and keeps them in sync.
pub struct Scheduler {
    runner: Mutex<JobScheduler>,
    registered: Mutex<HashMap<String, Uuid>>,
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
        if let Some(old) = registered.remove(schedule_id)
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
                    registered.insert(schedule.id.clone(), uuid);
                }
                Err(e) => warn!(schedule = %schedule.name, error = %e, "cannot register schedule"),
            },
            Err(e) => {
                warn!(schedule = %schedule.name, cron = %schedule.cron, error = %e, "bad cron expression")
            }
        }
    }

    async fn fire(&self, schedule_id: &str, cron: &str) {
        let now = Utc::now();
        let due = parse(cron)
            .ok()
            .and_then(|c| c.find_previous_occurrence(&now, true).ok())
            .unwrap_or(now);
        let schedule = match self.queue.get_schedule(schedule_id).await {
            Ok(Some(s)) if s.enabled => s,
            _ => return,
        };
        let mut job = match self.registry.prepare(
            &schedule.job,
            Some(format!("schedule:{}", schedule.name)),
            self.max_attempts,
        ) {
            Ok(job) => job,
            Err((field, e)) => {
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
