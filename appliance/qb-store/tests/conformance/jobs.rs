use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use qb_core::model::*;
use qb_core::{JobQueue, StoreError};

fn page(n: u32, size: u32) -> PageRequest {
    PageRequest {
        page: n,
        page_size: size,
    }
}

fn new_job(queue: &str, n: i64) -> NewJob {
    NewJob {
        queue: queue.into(),
        kind: "diag.sleep".into(),
        params: serde_json::json!({ "n": n }),
        max_attempts: 2,
        created_by: Some("tester".into()),
        schedule_id: None,
    }
}

pub async fn suite(q: Arc<dyn JobQueue>) {
    let a = q.enqueue(new_job("data", 1)).await.unwrap();
    let b = q.enqueue(new_job("data", 2)).await.unwrap();
    let other = q.enqueue(new_job("backtest", 3)).await.unwrap();
    assert_eq!(a.state, JobState::Queued);
    assert_eq!(a.params["n"], 1);

    // FIFO per queue; queues are independent.
    let claimed = q.claim("data", Duration::ZERO).await.unwrap().unwrap();
    assert_eq!((claimed.id.as_str(), claimed.attempts), (a.id.as_str(), 1));
    assert_eq!(claimed.state, JobState::Running);
    let stats = q.stats(&["backtest", "data"]).await.unwrap();
    assert_eq!(
        stats,
        vec![
            QueueStats {
                queue: "backtest".into(),
                queued: 1,
                running: 0
            },
            QueueStats {
                queue: "data".into(),
                queued: 1,
                running: 1
            },
        ]
    );

    // Progress is stored and reports cancellation requests.
    assert!(!q.progress(&a.id, 0.5, Some("half")).await.unwrap());
    let got = q.get(&a.id).await.unwrap().unwrap();
    assert_eq!((got.progress, got.message.as_deref()), (0.5, Some("half")));
    let job = q.request_cancel(&a.id).await.unwrap();
    assert!(job.cancel_requested && job.state == JobState::Running);
    assert!(q.progress(&a.id, 0.6, None).await.unwrap());
    let done = q.finish(&a.id, &JobOutcome::Cancelled).await.unwrap();
    assert_eq!(done.state, JobState::Cancelled);
    assert!(matches!(
        q.finish(&a.id, &JobOutcome::Cancelled).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        q.request_cancel(&a.id).await,
        Err(StoreError::Conflict(_))
    ));

    // A queued job cancels at once and is never claimed.
    let c = q.request_cancel(&b.id).await.unwrap();
    assert_eq!(c.state, JobState::Cancelled);
    assert!(q.claim("data", Duration::ZERO).await.unwrap().is_none());

    // Success stores the result.
    let run = q.claim("backtest", Duration::ZERO).await.unwrap().unwrap();
    assert_eq!(run.id, other.id);
    let ok = q
        .finish(
            &run.id,
            &JobOutcome::Succeeded(serde_json::json!({"rows": 7})),
        )
        .await
        .unwrap();
    assert_eq!(ok.state, JobState::Succeeded);
    assert_eq!(ok.result, Some(serde_json::json!({"rows": 7})));
    assert_eq!(ok.progress, 1.0);

    // Release puts a job back without spending an attempt.
    let r = q.enqueue(new_job("data", 4)).await.unwrap();
    let claimed = q.claim("data", Duration::ZERO).await.unwrap().unwrap();
    q.release(&claimed.id, "shutting down").await.unwrap();
    let back = q.get(&r.id).await.unwrap().unwrap();
    assert_eq!((back.state, back.attempts), (JobState::Queued, 0));

    // Recovery: running jobs are re-queued until their attempts run out.
    let claimed = q.claim("data", Duration::ZERO).await.unwrap().unwrap();
    assert_eq!(claimed.attempts, 1);
    let rec = q.recover().await.unwrap();
    assert_eq!(rec.requeued, vec![r.id.clone()]);
    let claimed = q.claim("data", Duration::ZERO).await.unwrap().unwrap();
    assert_eq!(claimed.attempts, 2);
    let rec = q.recover().await.unwrap();
    assert_eq!(rec.failed, vec![r.id.clone()]);
    let failed = q.get(&r.id).await.unwrap().unwrap();
    assert_eq!(failed.state, JobState::Failed);
    assert!(failed.error.unwrap().contains("interrupted"));

    // A claim waits for work that arrives while it waits.
    let waiter = {
        let q = q.clone();
        tokio::spawn(async move { q.claim("late", Duration::from_secs(5)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let late = q.enqueue(new_job("late", 5)).await.unwrap();
    let got = waiter.await.unwrap().unwrap().unwrap();
    assert_eq!(got.id, late.id);

    // Listing: newest first, filters, paging.
    let all = q.list(&JobFilter::default(), page(1, 2)).await.unwrap();
    assert_eq!((all.total, all.items.len()), (5, 2));
    assert_eq!(all.items[0].id, late.id);
    let cancelled = q
        .list(
            &JobFilter {
                state: Some(JobState::Cancelled),
                ..Default::default()
            },
            page(1, 10),
        )
        .await
        .unwrap();
    assert_eq!(cancelled.total, 2);
    assert!(q.get("no-such-job").await.unwrap().is_none());

    // Schedules fire once per due instant.
    let s = q
        .create_schedule(NewSchedule {
            name: "nightly".into(),
            cron: "0 0 3 * * *".into(),
            job: JobSpec {
                kind: "maintenance.retention".into(),
                queue: None,
                params: serde_json::json!({}),
            },
            enabled: true,
        })
        .await
        .unwrap();
    assert!(matches!(
        q.create_schedule(NewSchedule {
            name: "nightly".into(),
            cron: "0 0 4 * * *".into(),
            job: s.job.clone(),
            enabled: true,
        })
        .await,
        Err(StoreError::Conflict(_))
    ));
    let due = Utc.with_ymd_and_hms(2026, 1, 2, 3, 0, 0).unwrap();
    let mut job = new_job("data", 6);
    job.schedule_id = Some(s.id.clone());
    let fired = q
        .fire_schedule(&s.id, due, job.clone())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fired.schedule_id.as_deref(), Some(s.id.as_str()));
    assert!(
        q.fire_schedule(&s.id, due, job.clone())
            .await
            .unwrap()
            .is_none()
    );
    let s2 = q.get_schedule(&s.id).await.unwrap().unwrap();
    assert_eq!(s2.last_run_at, Some(due));
    assert_eq!(s2.last_job_id.as_deref(), Some(fired.id.as_str()));
    let u = q
        .update_schedule(
            &s.id,
            ScheduleUpdate {
                enabled: Some(false),
                cron: Some("0 30 3 * * *".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(!u.enabled);
    assert_eq!(u.cron, "0 30 3 * * *");
    assert_eq!(q.all_schedules().await.unwrap().len(), 1);
    assert_eq!(q.list_schedules(page(1, 10)).await.unwrap().total, 1);
    q.delete_schedule(&s.id).await.unwrap();
    assert!(matches!(
        q.delete_schedule(&s.id).await,
        Err(StoreError::NotFound(_))
    ));

    // Purge removes finished jobs only.
    let purged = q
        .purge_finished(Utc::now() + chrono::Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!(purged, 4);
    assert!(q.get(&fired.id).await.unwrap().is_some());
}

/// Many claimers, many jobs: every job is claimed exactly once.
pub async fn concurrent_claims(q: Arc<dyn JobQueue>) {
    let n = 200;
    for i in 0..n {
        q.enqueue(new_job("race", i)).await.unwrap();
    }
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let q = q.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(job) = q.claim("race", Duration::ZERO).await.unwrap() {
                got.push(job.id);
            }
            got
        }));
    }
    let mut seen = HashSet::new();
    for t in tasks {
        for id in t.await.unwrap() {
            assert!(seen.insert(id), "a job was claimed twice");
        }
    }
    assert_eq!(seen.len(), n as usize);
}
