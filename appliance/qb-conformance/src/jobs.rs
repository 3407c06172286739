use std::collections::HashSet;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use qb_core::model::*;
use qb_core::{NodeIdentity, StoreError};

use crate::JobQueueFactory;

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

pub async fn suite(open: JobQueueFactory) {
    let q = open(NodeIdentity::new("node-1")).await;
    q.heartbeat().await.unwrap();
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

    // Recovery after a restart of the node: the new instance takes back
    // the old one's running jobs until their attempts run out.
    let claimed = q.claim("data", Duration::ZERO).await.unwrap().unwrap();
    assert_eq!(claimed.attempts, 1);
    assert_eq!(claimed.node.as_deref(), Some("node-1"));
    assert_eq!(
        q.recover(Duration::from_secs(60)).await.unwrap(),
        Recovery::default()
    );
    let restarted = open(NodeIdentity::new("node-1")).await;
    let rec = restarted.recover(Duration::from_secs(60)).await.unwrap();
    assert_eq!(rec.requeued, vec![r.id.clone()]);
    let claimed = restarted
        .claim("data", Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.attempts, 2);
    let again = open(NodeIdentity::new("node-1")).await;
    let rec = again.recover(Duration::from_secs(60)).await.unwrap();
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
    let mut other = new_job("late", 6);
    other.created_by = Some("someone-else".into());
    q.enqueue(other).await.unwrap();
    let mut by_key = new_job("late", 7);
    by_key.created_by = Some("tester/apikey:ci".into());
    q.enqueue(by_key).await.unwrap();
    let by = |who: &str| JobFilter {
        queue: Some("late".into()),
        created_by: Some(who.into()),
        ..Default::default()
    };
    assert_eq!(q.list(&by("tester"), page(1, 10)).await.unwrap().total, 2);
    assert_eq!(q.list(&by("test"), page(1, 10)).await.unwrap().total, 0);
    let theirs = q.list(&by("someone-else"), page(1, 10)).await.unwrap();
    assert_eq!(theirs.total, 1);
    assert_eq!(theirs.items[0].created_by.as_deref(), Some("someone-else"));
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
    assert_eq!(u.disabled_reason, None);
    // The scheduler's reason stays until the schedule is enabled again.
    let off = |reason: &str| ScheduleUpdate {
        enabled: Some(false),
        disabled_reason: Some(reason.into()),
        ..Default::default()
    };
    let u = q.update_schedule(&s.id, off("cron: bad")).await.unwrap();
    assert_eq!(u.disabled_reason.as_deref(), Some("cron: bad"));
    let u = q
        .update_schedule(
            &s.id,
            ScheduleUpdate {
                cron: Some("0 0 4 * * *".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(u.disabled_reason.as_deref(), Some("cron: bad"));
    assert_eq!(
        q.get_schedule(&s.id)
            .await
            .unwrap()
            .unwrap()
            .disabled_reason
            .as_deref(),
        Some("cron: bad")
    );
    let u = q
        .update_schedule(
            &s.id,
            ScheduleUpdate {
                enabled: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(u.enabled && u.disabled_reason.is_none());
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

/// Many claimers on two instances (two nodes), many jobs: every job is
/// claimed exactly once.
pub async fn concurrent_claims(open: JobQueueFactory) {
    let a = open(NodeIdentity::new("node-a")).await;
    let b = open(NodeIdentity::new("node-b")).await;
    let n = 200;
    for i in 0..n {
        a.enqueue(new_job("race", i)).await.unwrap();
    }
    let mut tasks = Vec::new();
    for i in 0..8 {
        let q = if i % 2 == 0 { a.clone() } else { b.clone() };
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

/// Two instances fire the same due time of a schedule at once, many times:
/// exactly one job is enqueued.
pub async fn schedule_fires_once_across_instances(open: JobQueueFactory) {
    let a = open(NodeIdentity::new("sched-a")).await;
    let b = open(NodeIdentity::new("sched-b")).await;
    let s = a
        .create_schedule(NewSchedule {
            name: "twice".into(),
            cron: "0 * * * * *".into(),
            job: JobSpec {
                kind: "diag.sleep".into(),
                queue: None,
                params: serde_json::json!({}),
            },
            enabled: true,
        })
        .await
        .unwrap();
    let due = Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 0).unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let q = if i % 2 == 0 { a.clone() } else { b.clone() };
        let sid = s.id.clone();
        tasks.push(tokio::spawn(async move {
            let mut job = new_job("fired", i);
            job.schedule_id = Some(sid.clone());
            q.fire_schedule(&sid, due, job).await.unwrap()
        }));
    }
    let mut fired = 0;
    for t in tasks {
        fired += t.await.unwrap().is_some() as usize;
    }
    assert_eq!(fired, 1, "one job per due time");
    let jobs = a
        .list(
            &JobFilter {
                queue: Some("fired".into()),
                ..Default::default()
            },
            page(1, 50),
        )
        .await
        .unwrap();
    assert_eq!(jobs.total, 1);
}

/// Liveness and fencing across nodes: only dead instances' jobs are taken
/// back, and an instance that lost its claim can no longer report on it.
pub async fn dead_instances_and_fencing(open: JobQueueFactory) {
    let a = open(NodeIdentity::new("node-a")).await;
    let b = open(NodeIdentity::new("node-b")).await;
    a.heartbeat().await.unwrap();
    b.heartbeat().await.unwrap();
    let j1 = a.enqueue(new_job("inst", 1)).await.unwrap();
    let j2 = a.enqueue(new_job("inst", 2)).await.unwrap();
    let c1 = a.claim("inst", Duration::ZERO).await.unwrap().unwrap();
    let c2 = b.claim("inst", Duration::ZERO).await.unwrap().unwrap();
    assert_eq!(
        (c1.id.as_str(), c2.id.as_str()),
        (j1.id.as_str(), j2.id.as_str())
    );
    assert_eq!(c1.node.as_deref(), Some("node-a"));
    assert_eq!(c2.node.as_deref(), Some("node-b"));

    // Both alive: nothing is taken back, whoever asks.
    for q in [&a, &b] {
        assert_eq!(
            q.recover(Duration::from_secs(60)).await.unwrap(),
            Recovery::default()
        );
    }
    // A node cannot report on a job another node holds.
    let conflict = |r: Result<_, StoreError>| matches!(r, Err(StoreError::Conflict(_)));
    assert!(conflict(b.progress(&j1.id, 0.5, None).await.map(|_| ())));
    assert!(conflict(
        b.finish(&j1.id, &JobOutcome::Cancelled).await.map(|_| ())
    ));
    assert!(conflict(b.release(&j1.id, "not mine").await));
    assert_eq!(
        a.get(&j1.id).await.unwrap().unwrap().state,
        JobState::Running
    );

    // node-a restarts: the new instance takes back the old one's job at
    // once and leaves node-b's alone.
    let a2 = open(NodeIdentity::new("node-a")).await;
    a2.heartbeat().await.unwrap();
    let rec = a2.recover(Duration::from_secs(60)).await.unwrap();
    assert_eq!((rec.requeued, rec.failed), (vec![j1.id.clone()], vec![]));
    assert_eq!(
        a2.get(&j2.id).await.unwrap().unwrap().state,
        JobState::Running
    );
    // The old instance is fenced off its former job.
    assert!(conflict(a.progress(&j1.id, 0.9, None).await.map(|_| ())));
    assert!(conflict(
        a.finish(
            &j1.id,
            &JobOutcome::Succeeded(serde_json::json!({"stale": true}))
        )
        .await
        .map(|_| ())
    ));
    let c1 = a2.claim("inst", Duration::ZERO).await.unwrap().unwrap();
    assert_eq!((c1.id.as_str(), c1.attempts), (j1.id.as_str(), 2));

    // node-b falls silent: once its heartbeat is older than the bound its
    // job goes back; a2, which keeps beating, keeps its own.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    a2.heartbeat().await.unwrap();
    let rec = a2.recover(Duration::from_secs(1)).await.unwrap();
    assert_eq!((rec.requeued, rec.failed), (vec![j2.id.clone()], vec![]));
    assert_eq!(
        a2.get(&j1.id).await.unwrap().unwrap().state,
        JobState::Running
    );
    // node-b wakes up: its result is refused; the job waits for a live node.
    assert!(conflict(
        b.finish(&j2.id, &JobOutcome::Cancelled).await.map(|_| ())
    ));
    let back = a2.get(&j2.id).await.unwrap().unwrap();
    assert_eq!((back.state, back.attempts), (JobState::Queued, 1));
    // The live holder finishes normally.
    let done = a2
        .finish(&j1.id, &JobOutcome::Succeeded(serde_json::json!({"ok": 1})))
        .await
        .unwrap();
    assert_eq!(done.state, JobState::Succeeded);
}

/// An idle claimer on one instance wakes when another instance enqueues,
/// well before its wait ends (not by polling).
pub async fn wakes_across_instances(open: JobQueueFactory) {
    let a = open(NodeIdentity::new("wake-a")).await;
    let b = open(NodeIdentity::new("wake-b")).await;
    let waiter = tokio::spawn(async move {
        let t = std::time::Instant::now();
        let job = b.claim("wake", Duration::from_secs(20)).await.unwrap();
        (job, t.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let j = a.enqueue(new_job("wake", 1)).await.unwrap();
    let (got, waited) = waiter.await.unwrap();
    assert_eq!(got.map(|g| g.id), Some(j.id));
    assert!(
        // Well under the ~2 s safety poll of the adapters: a wake-up.
        waited < Duration::from_millis(1500),
        "woken after {waited:?}: the enqueue on the other instance did not wake it"
    );
}
