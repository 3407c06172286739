//! Jobs end to end through the queues, crash recovery, graceful shutdown,
//! and schedules firing.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Server, component, problem};

fn enqueue(s: &Server, t: &str, spec: Value) -> String {
    let r = s
        .post("/api/v1/jobs")
        .bearer_auth(t)
        .json(&spec)
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let job: Value = r.json().unwrap();
    assert_eq!(job["state"], "queued");
    job["id"].as_str().unwrap().to_string()
}

#[test]
fn jobs_run_fail_and_cancel_through_the_queues() {
    let s = Server::start(&[]);
    let t = s.admin_token();

    let id = enqueue(
        &s,
        &t,
        json!({"kind": "diag.sleep", "params": {"seconds": 0.3, "steps": 3}}),
    );
    let done = s.wait_job(&t, &id, |j| j["state"] == "succeeded");
    assert_eq!(done["progress"], 1.0);
    assert_eq!(done["result"]["steps"], 3);
    assert_eq!(done["attempts"], 1);
    assert_eq!(done["queue"], "data");
    assert_eq!(done["created_by"], "admin");

    // Explicit queue; failure is recorded with its message.
    let id = enqueue(
        &s,
        &t,
        json!({"kind": "diag.sleep", "queue": "backtest", "params": {"seconds": 0, "fail_with": "boom"}}),
    );
    let failed = s.wait_job(&t, &id, |j| j["state"] == "failed");
    assert_eq!(
        (failed["queue"].as_str(), failed["error"].as_str()),
        (Some("backtest"), Some("boom"))
    );

    // Cancelling a running job stops it at its next step.
    let id = enqueue(
        &s,
        &t,
        json!({"kind": "diag.sleep", "params": {"seconds": 60, "steps": 600}}),
    );
    s.wait_job(&t, &id, |j| j["state"] == "running");
    let r = s
        .post(&format!("/api/v1/jobs/{id}/cancel"))
        .bearer_auth(&t)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let started = Instant::now();
    let cancelled = s.wait_job(&t, &id, |j| j["state"] == "cancelled");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(cancelled["progress"].as_f64().unwrap() < 1.0);
    problem(
        s.post(&format!("/api/v1/jobs/{id}/cancel"))
            .bearer_auth(&t)
            .send()
            .unwrap(),
        409,
    );

    // Maintenance jobs do real work.
    let id = enqueue(&s, &t, json!({"kind": "maintenance.checkpoint"}));
    let done = s.wait_job(&t, &id, |j| j["state"] == "succeeded");
    assert!(
        done["result"]["metadata"]
            .as_str()
            .unwrap()
            .contains("checkpoint")
    );
    // Retention sweeps leftovers from the scratch folders, not fresh files.
    let uploads = s.data_dir().join("uploads");
    std::fs::create_dir_all(&uploads).unwrap();
    let stale = uploads.join("stale.csv");
    let fresh = uploads.join("fresh.csv");
    std::fs::write(&stale, "x").unwrap();
    std::fs::write(&fresh, "x").unwrap();
    let two_hours_ago = std::time::SystemTime::now() - Duration::from_secs(7200);
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(two_hours_ago)
        .unwrap();
    let id = enqueue(&s, &t, json!({"kind": "maintenance.retention"}));
    let done = s.wait_job(&t, &id, |j| j["state"] == "succeeded");
    assert_eq!(done["result"]["jobs_removed"], 0);
    assert_eq!(done["result"]["scratch_files_removed"], 1);
    assert!(!stale.exists() && fresh.exists());

    // Filters and outcome metrics.
    let failed: Value = s.get_json(&t, "/api/v1/jobs?state=failed");
    assert_eq!(failed["total"], 1);
    let metrics = s.get("/metrics").send().unwrap().text().unwrap();
    for line in [
        "quantbox_jobs_total{outcome=\"succeeded\",queue=\"data\"} 3",
        "quantbox_jobs_total{outcome=\"failed\",queue=\"backtest\"} 1",
        "quantbox_jobs_total{outcome=\"cancelled\",queue=\"data\"} 1",
    ] {
        assert!(metrics.contains(line), "missing {line}");
    }
    let queues: Value = s.get_json(&t, "/api/v1/queues");
    assert_eq!(queues[0]["queue"], "backtest");
    assert_eq!(queues[0]["concurrency"], 2);
    assert_eq!(queues[1]["concurrency"], 4);
    assert_eq!(
        (
            queues[2]["queue"].as_str(),
            queues[2]["concurrency"].as_u64()
        ),
        (Some("trading"), Some(1))
    );
}

#[test]
fn a_backlog_is_visible() {
    // One data worker, busy: the rest wait in the queue.
    let s = Server::start(&[("QUANTBOX_QUEUES__DATA", "1")]);
    let t = s.admin_token();
    let first = enqueue(
        &s,
        &t,
        json!({"kind": "diag.sleep", "params": {"seconds": 30, "steps": 300}}),
    );
    s.wait_job(&t, &first, |j| j["state"] == "running");
    for _ in 0..3 {
        enqueue(
            &s,
            &t,
            json!({"kind": "diag.sleep", "params": {"seconds": 0}}),
        );
    }
    let metrics = s.get("/metrics").send().unwrap().text().unwrap();
    assert!(
        metrics.contains("quantbox_queue_length{queue=\"data\"} 3"),
        "{metrics}"
    );
    assert!(metrics.contains("quantbox_jobs_running{queue=\"data\"} 1"));
    let queues: Value = s.get_json(&t, "/api/v1/queues");
    assert_eq!(
        (queues[1]["queued"].as_u64(), queues[1]["running"].as_u64()),
        (Some(3), Some(1))
    );
}

#[test]
fn a_job_running_at_sigkill_is_recovered_after_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let id;
    {
        let mut s = Server::start_in(tmp.path(), &[]);
        let t = s.admin_token();
        id = enqueue(
            &s,
            &t,
            json!({"kind": "diag.sleep", "params": {"seconds": 2, "steps": 20}}),
        );
        s.wait_job(&t, &id, |j| {
            j["state"] == "running" && j["progress"].as_f64() > Some(0.0)
        });
        s.kill9();
    }
    let s = Server::start_in(tmp.path(), &[]);
    assert!(s.log().contains("took back jobs"), "{}", s.log());
    let t = s.admin_token();
    let done = s.wait_job(&t, &id, |j| j["state"] == "succeeded");
    assert_eq!(done["attempts"], 2, "ran again after the crash");
}

#[test]
fn sigterm_drains_and_hands_running_jobs_back() {
    let tmp = tempfile::tempdir().unwrap();
    let id;
    {
        let mut s = Server::start_in(tmp.path(), &[("QUANTBOX_SHUTDOWN_TIMEOUT_SECS", "10")]);
        let t = s.admin_token();
        id = enqueue(
            &s,
            &t,
            json!({"kind": "diag.sleep", "params": {"seconds": 60, "steps": 600}}),
        );
        s.wait_job(&t, &id, |j| j["state"] == "running");
        let (status, took) = s.terminate();
        assert!(
            status.success(),
            "exit status {status:?}; log:\n{}",
            s.log()
        );
        assert!(took < Duration::from_secs(10), "took {took:?}");
        let log = s.log();
        assert!(log.contains("job workers stopped"), "{log}");
        assert!(log.contains("stores flushed"), "{log}");
    }
    let s = Server::start_in(tmp.path(), &[]);
    let t = s.admin_token();
    let job: Value = s.get_json(&t, &format!("/api/v1/jobs/{id}"));
    // Handed back without spending an attempt, and picked up again.
    assert!(
        job["state"] == "queued" || job["state"] == "running",
        "{job}"
    );
    assert!(
        !s.log().contains("took back jobs"),
        "a clean stop needs no crash recovery"
    );
}

#[test]
fn schedules_fire_once_per_due_time() {
    let s = Server::start(&[]);
    let t = s.admin_token();
    // The default maintenance schedules exist from the first start.
    let list: Value = s.get_json(&t, "/api/v1/schedules");
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec![
            "market-retention",
            "retention",
            "store-checkpoint",
            "trading-retention"
        ]
    );
    assert!(list["items"][0]["next_run_at"].is_string());

    let r = s
        .post("/api/v1/schedules")
        .bearer_auth(&t)
        .json(&json!({"name": "every-second", "cron": "* * * * * *",
                      "job": {"kind": "diag.sleep", "params": {"seconds": 0}}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let sched: Value = r.json().unwrap();
    let sid = sched["id"].as_str().unwrap().to_string();
    let created = Instant::now();
    std::thread::sleep(Duration::from_millis(3500));
    let r = s
        .http
        .patch(s.url(&format!("/api/v1/schedules/{sid}")))
        .bearer_auth(&t)
        .json(&json!({"enabled": false}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let elapsed = created.elapsed().as_secs_f64();
    let jobs: Value = s.get_json(&t, "/api/v1/jobs?kind=diag.sleep&page_size=100");
    let fired = jobs["items"].as_array().unwrap();
    let n = fired.len();
    assert!(
        n >= 2 && (n as f64) <= elapsed.ceil() + 1.0,
        "{n} runs in {elapsed} s"
    );
    assert!(fired.iter().all(|j| j["schedule_id"] == sid.as_str()));
    assert!(
        fired
            .iter()
            .all(|j| j["created_by"] == "schedule:every-second")
    );
    let got: Value = s.get_json(&t, &format!("/api/v1/schedules/{sid}"));
    assert!(got["last_run_at"].is_string() && got["last_job_id"].is_string());
    assert!(
        got["next_run_at"].is_null(),
        "disabled schedules have no next run"
    );
    for j in fired {
        s.wait_job(&t, j["id"].as_str().unwrap(), |j| j["state"] == "succeeded");
    }
    // Disabled: no further runs.
    std::thread::sleep(Duration::from_millis(1500));
    let again: Value = s.get_json(&t, "/api/v1/jobs?kind=diag.sleep&page_size=100");
    assert_eq!(again["total"].as_u64(), Some(n as u64));
}

/// Jobs (backtests and sweeps included) are read by the whole team but
/// cancelled only by their submitter or an admin; a trader keeps at most
/// `queues.max_active_per_user` of them queued or running on a queue.
#[test]
fn jobs_are_cancelled_by_their_submitter_or_an_admin_and_capped_per_user() {
    let s = Server::start(&[
        ("QUANTBOX_QUEUES__BACKTEST", "1"),
        ("QUANTBOX_QUEUES__MAX_ACTIVE_PER_USER", "2"),
    ]);
    let admin = s.admin_token();
    let ann = s.user_token(&admin, "ann", "trader");
    let ben = s.user_token(&admin, "ben", "trader");
    let r = s.upload_plugin(&admin, component("sma_crossover"));
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());
    // The one backtest worker is busy (admins are not capped): the
    // traders' backtests stay queued.
    let busy = enqueue(
        &s,
        &admin,
        json!({"kind": "diag.sleep", "queue": "backtest", "params": {"seconds": 60, "steps": 600}}),
    );
    s.wait_job(&admin, &busy, |j| j["state"] == "running");
    let backtest = json!({"kind": "backtest.run", "params": {"plugin": "sma-crossover",
        "params": {"fast": 5, "slow": 20, "size": 1}, "symbols": ["CAP1"]}});
    let cancel = |token: &str, id: &str| {
        s.post(&format!("/api/v1/jobs/{id}/cancel"))
            .bearer_auth(token)
            .send()
            .unwrap()
    };
    let id = enqueue(&s, &ann, backtest.clone());
    // Ben reads Ann's job, but may not cancel it.
    assert_eq!(
        s.get_json(&ben, &format!("/api/v1/jobs/{id}"))["id"],
        id.as_str()
    );
    let doc = problem(cancel(&ben, &id), 403);
    assert!(
        doc["detail"].as_str().unwrap().contains("belongs to ann"),
        "{doc}"
    );
    // Ann's second is taken, her third (through an API key of hers, too)
    // is refused until one of hers ends; Ben has room of his own.
    enqueue(&s, &ann, backtest.clone());
    let submit = |token: &str| {
        s.post("/api/v1/jobs")
            .bearer_auth(token)
            .json(&backtest)
            .send()
            .unwrap()
    };
    let doc = problem(submit(&ann), 429);
    assert!(
        doc["detail"].as_str().unwrap().contains("2 of your jobs"),
        "{doc}"
    );
    let key: Value = s
        .post("/api/v1/api-keys")
        .bearer_auth(&ann)
        .json(&json!({"name": "ann-key", "role": "trader"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    problem(submit(key["key"].as_str().unwrap()), 429);
    let mine = s.get_json(&admin, "/api/v1/jobs?created_by=ann&state=queued");
    assert_eq!(mine["total"], 2, "{mine}");
    assert_eq!(cancel(&ann, &id).status(), 200);
    assert_eq!(submit(&ann).status(), 202);
    // An admin cancels anyone's.
    let id = enqueue(&s, &ben, backtest);
    assert_eq!(cancel(&admin, &id).status(), 200);
    s.wait_job(&admin, &id, |j| j["state"] == "cancelled");
    assert_eq!(cancel(&admin, &busy).status(), 200);
}
