//! [`RecordStore`]: every table of `qb_core::records` copied row by row
//! from one store into a fresh one of the same adapter comes out equal,
//! ids and all; a second copy inserts nothing; ids of rows deleted before
//! the copy are never handed out after it; a row that collides on a name
//! is refused whole.

use std::sync::Arc;
use std::time::Duration;

use qb_core::model::*;
use qb_core::records::{Cell, RecordStore, Row, TABLES, Table};
use qb_core::{JobQueue, MetaStore, StoreError};

/// One backend's metadata, jobs and row access (the same store).
#[derive(Clone)]
pub struct Tables {
    pub meta: Arc<dyn MetaStore>,
    pub jobs: Arc<dyn JobQueue>,
    pub records: Arc<dyn RecordStore>,
}

/// Every row of `table`, read `page` rows at a time.
pub async fn all_rows(s: &dyn RecordStore, table: &Table, page: u32) -> Vec<Row> {
    let mut out: Vec<Row> = Vec::new();
    loop {
        let rows = s.read_rows(table, out.last(), page).await.unwrap();
        let full = rows.len() == page as usize;
        out.extend(rows);
        if !full {
            return out;
        }
    }
}

async fn fill(t: &Tables) {
    let m = &t.meta;
    let admin = m
        .create_user("admin", "h-admin", Role::Admin)
        .await
        .unwrap();
    let ann = m.create_user("ann", "h-ann", Role::Trader).await.unwrap();
    m.create_user("bob", "h-bob", Role::Viewer).await.unwrap();
    let gone = m.create_user("gone", "h-gone", Role::Viewer).await.unwrap();
    // A disabled user with a moved token version, a deleted one (its id
    // must stay spent).
    m.update_user(
        "bob",
        UserUpdate {
            disabled: Some(true),
            password_hash: Some("h-bob-2".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    m.grant_account("paper", ann.id, "admin").await.unwrap();
    m.grant_account("desk-b", ann.id, "admin").await.unwrap();
    m.grant_account("desk-b", admin.id, "ann").await.unwrap();
    m.grant_account("paper", gone.id, "admin").await.unwrap();
    m.update_user(
        "ann",
        UserUpdate {
            feed: Some(true),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    m.delete_user("gone").await.unwrap();
    assert!(gone.id > ann.id);
    let key = m
        .create_api_key("ci", "qbk_ab", "hash-ci", Role::Trader, ann.id)
        .await
        .unwrap();
    m.create_api_key("old", "qbk_cd", "hash-old", Role::Viewer, admin.id)
        .await
        .unwrap();
    m.revoke_api_key(&key.id, None).await.unwrap();
    for i in 0..3 {
        m.append_audit(NewAuditEntry {
            actor: "admin".into(),
            action: format!("test.{i}"),
            target: (i > 0).then(|| "x".into()),
            result: "ok".into(),
            status: Some(200),
            client_ip: None,
            detail: Some("{\"n\":1}".into()),
        })
        .await
        .unwrap();
    }
    let mut rb = qb_core::market::Instrument::with_defaults("rb2410");
    rb.margin_ratio = "0.13".parse().unwrap();
    m.upsert_instrument(&rb).await.unwrap();
    m.ensure_instruments(&["IF".into()]).await.unwrap();
    let p = crate::meta::plugin_info("ab12", "sma", "1.0.0", 1);
    m.insert_plugin(&p, &[0, 97, 115, 109, 255, 0])
        .await
        .unwrap();
    let q = &t.jobs;
    q.create_schedule(NewSchedule {
        name: "nightly".into(),
        cron: "0 0 2 * * *".into(),
        job: JobSpec {
            kind: "maintenance.checkpoint".into(),
            queue: None,
            params: serde_json::json!({}),
        },
        enabled: false,
    })
    .await
    .unwrap();
    for n in 0..4 {
        q.enqueue(NewJob {
            queue: "data".into(),
            kind: "diag.sleep".into(),
            params: serde_json::json!({ "n": n, "half": 0.5 }),
            max_attempts: 2,
            created_by: Some("ann".into()),
            schedule_id: None,
        })
        .await
        .unwrap();
    }
    let job = q
        .claim("data", Duration::from_millis(10))
        .await
        .unwrap()
        .unwrap();
    q.progress(&job.id, 0.25, Some("a quarter")).await.unwrap();
    q.finish(
        &job.id,
        &JobOutcome::Succeeded(serde_json::json!({ "x": 1.5 })),
    )
    .await
    .unwrap();
}

pub async fn suite(src: Tables, dst: Tables) {
    fill(&src).await;
    for table in TABLES {
        let rows = all_rows(src.records.as_ref(), table, 2).await;
        assert!(
            !rows.is_empty(),
            "{}: the fixture fills every table",
            table.name
        );
        // Copied in pages, as the import does.
        let mut inserted = 0;
        for chunk in rows.chunks(3) {
            inserted += dst.records.insert_rows(table, chunk).await.unwrap();
        }
        assert_eq!(inserted, rows.len() as u64, "{}", table.name);
        assert_eq!(
            all_rows(dst.records.as_ref(), table, 100).await,
            rows,
            "{}: copied verbatim",
            table.name
        );
        assert_eq!(
            dst.records.insert_rows(table, &rows).await.unwrap(),
            0,
            "{}: a second copy inserts nothing",
            table.name
        );
        if table.generated_key {
            let high = src.records.id_high_water(table).await.unwrap();
            dst.records.raise_id_high_water(table, high).await.unwrap();
            assert!(dst.records.id_high_water(table).await.unwrap() >= high);
            // Never lowered.
            dst.records.raise_id_high_water(table, 1).await.unwrap();
            assert!(dst.records.id_high_water(table).await.unwrap() >= high);
        }
    }
    // The copy behaves like the original through the ordinary calls.
    let creds = dst.meta.user_credentials("bob").await.unwrap().unwrap();
    let orig = src.meta.user_credentials("bob").await.unwrap().unwrap();
    assert_eq!(creds.user, orig.user);
    assert_eq!(creds.password_hash, "h-bob-2");
    assert!(creds.user.disabled);
    assert!(
        dst.meta
            .user_credentials("ann")
            .await
            .unwrap()
            .unwrap()
            .user
            .feed
    );
    let grants = |t: &Tables| {
        let meta = t.meta.clone();
        async move {
            meta.account_grants(None, None)
                .await
                .unwrap()
                .into_iter()
                .map(|g| (g.account, g.username, g.granted_by))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(grants(&dst).await, grants(&src).await);
    assert_eq!(
        grants(&dst).await.len(),
        3,
        "the deleted user's grant went with them"
    );
    let (key, owner) = dst.meta.api_key_by_hash("hash-old").await.unwrap().unwrap();
    assert_eq!(
        (key.name.as_str(), owner.username.as_str()),
        ("old", "admin")
    );
    let jobs = dst
        .jobs
        .list(
            &JobFilter::default(),
            PageRequest {
                page: 1,
                page_size: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(jobs.total, 4);
    assert_eq!(
        dst.jobs.get(&jobs.items[0].id).await.unwrap(),
        src.jobs.get(&jobs.items[0].id).await.unwrap()
    );
    // Queued copies are claimed in their original order.
    let first_queued = src
        .jobs
        .list(
            &JobFilter {
                state: Some(JobState::Queued),
                ..Default::default()
            },
            PageRequest {
                page: 1,
                page_size: 10,
            },
        )
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|j| j.id)
        .min()
        .unwrap();
    let claimed = dst
        .jobs
        .claim("data", Duration::from_millis(10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id, first_queued);
    // The deleted user's id is spent in the copy too.
    let gone_id = src
        .records
        .id_high_water(&qb_core::records::USERS)
        .await
        .unwrap();
    let fresh = dst
        .meta
        .create_user("newcomer", "h", Role::Admin)
        .await
        .unwrap();
    assert!(fresh.id > gone_id, "{} reuses a deleted id", fresh.id);
    // A row whose key is free but whose name is taken: refused whole.
    let clash: Row = vec![
        Cell::Int(fresh.id + 100),
        Cell::Text("ANN".into()),
        Cell::Text("h".into()),
        Cell::Text("viewer".into()),
        Cell::Bool(false),
        Cell::Int(1),
        Cell::Int(1),
        Cell::Int(0),
        Cell::Bool(false),
    ];
    let mut fine = clash.clone();
    fine[0] = Cell::Int(fresh.id + 101);
    fine[1] = Cell::Text("carol".into());
    let users = &qb_core::records::USERS;
    assert!(matches!(
        dst.records.insert_rows(users, &[fine, clash]).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(dst.meta.user_credentials("carol").await.unwrap().is_none());
    // A malformed row is refused before anything is written.
    assert!(matches!(
        dst.records.insert_rows(users, &[vec![Cell::Int(9)]]).await,
        Err(StoreError::Invalid(_))
    ));
}
