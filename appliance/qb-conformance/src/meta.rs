use std::sync::Arc;

use chrono::{Duration, Utc};
use qb_core::model::*;
use qb_core::{MetaStore, StoreError};

fn page(n: u32, size: u32) -> PageRequest {
    PageRequest {
        page: n,
        page_size: size,
    }
}

pub async fn suite(db: Arc<dyn MetaStore>) {
    db.ping().await.unwrap();
    let (applied, expected) = db.schema_version().await.unwrap();
    assert_eq!(applied, expected);

    // Users: unique names (case-insensitive), paging, updates.
    let admin = db
        .create_user("admin", "h-admin", Role::Admin)
        .await
        .unwrap();
    assert_eq!(admin.role, Role::Admin);
    assert!(matches!(
        db.create_user("ADMIN", "h", Role::Viewer).await,
        Err(StoreError::Conflict(_))
    ));
    for i in 0..5 {
        db.create_user(&format!("user{i}"), "h", Role::Viewer)
            .await
            .unwrap();
    }
    let p = db.list_users(page(2, 4)).await.unwrap();
    assert_eq!((p.total, p.items.len()), (6, 2));
    assert_eq!(p.items[0].username, "user3");
    let creds = db.user_credentials("user1").await.unwrap().unwrap();
    assert_eq!(creds.password_hash, "h");
    assert_eq!(
        db.user_by_id(creds.user.id).await.unwrap().unwrap(),
        creds.user
    );
    let u = db
        .update_user(
            "user1",
            UserUpdate {
                role: Some(Role::Trader),
                password_hash: Some("h2".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(u.role, Role::Trader);
    assert_eq!(
        db.user_credentials("user1")
            .await
            .unwrap()
            .unwrap()
            .password_hash,
        "h2"
    );
    // The last admin can be neither demoted nor deleted.
    assert!(matches!(
        db.update_user(
            "admin",
            UserUpdate {
                role: Some(Role::Viewer),
                ..Default::default()
            }
        )
        .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        db.delete_user("admin").await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        db.delete_user("nobody").await,
        Err(StoreError::NotFound(_))
    ));
    db.delete_user("user4").await.unwrap();
    assert!(db.user_credentials("user4").await.unwrap().is_none());
    assert_eq!(db.count_admins().await.unwrap(), 1);

    // Ids are never reused: the highest id deleted, the next user gets a
    // new one (its predecessor's tokens must not authenticate it).
    let last = db.create_user("last", "h", Role::Viewer).await.unwrap();
    db.delete_user("last").await.unwrap();
    let next = db.create_user("next", "h", Role::Admin).await.unwrap();
    assert!(next.id > last.id, "id {} reused after {}", next.id, last.id);
    assert!(db.user_by_id(last.id).await.unwrap().is_none());

    // Any change of role, status or password moves the token version and
    // revokes the user's refresh tokens (its sessions end); nothing else
    // moves it.
    let v0 = db.user_by_id(next.id).await.unwrap().unwrap().token_version;
    let rt = |hash: &str| RefreshToken {
        token_hash: hash.into(),
        user_id: next.id,
        family: format!("fam-{hash}"),
        expires_at: Utc::now() + Duration::hours(1),
        revoked: false,
        rotated_at: None,
    };
    db.insert_refresh_token(&rt("tv-1")).await.unwrap();
    let mut version = v0;
    for update in [
        UserUpdate {
            role: Some(Role::Trader),
            ..Default::default()
        },
        UserUpdate {
            disabled: Some(true),
            ..Default::default()
        },
        UserUpdate {
            password_hash: Some("h3".into()),
            ..Default::default()
        },
    ] {
        db.insert_refresh_token(&rt(&format!("loop-{version}")))
            .await
            .unwrap();
        let u = db.update_user("next", update).await.unwrap();
        assert!(u.token_version > version, "{u:?}");
        version = u.token_version;
        let live = db
            .refresh_token(&format!("loop-{}", version - 1))
            .await
            .unwrap();
        assert!(
            live.is_none_or(|t| t.revoked),
            "refresh token survived a change"
        );
    }
    assert!(db.refresh_token("tv-1").await.unwrap().unwrap().revoked);
    let u = db.update_user("next", UserUpdate::default()).await.unwrap();
    assert_eq!(u.token_version, version, "a no-op moved the version");
    db.delete_user("next").await.unwrap();

    // API keys: found by hash while active, listed per owner, revocable.
    let key = db
        .create_api_key("ci", "qbk_abcd", "hash-1", Role::Viewer, creds.user.id)
        .await
        .unwrap();
    assert_eq!(key.owner, "user1");
    let (found, owner) = db.api_key_by_hash("hash-1").await.unwrap().unwrap();
    assert_eq!(
        (found.id.as_str(), owner.id),
        (key.id.as_str(), creds.user.id)
    );
    assert!(db.api_key_by_hash("hash-2").await.unwrap().is_none());
    assert_eq!(
        db.list_api_keys(Some(creds.user.id), page(1, 10))
            .await
            .unwrap()
            .total,
        1
    );
    assert_eq!(
        db.list_api_keys(Some(admin.id), page(1, 10))
            .await
            .unwrap()
            .total,
        0
    );
    assert!(matches!(
        db.revoke_api_key(&key.id, Some(admin.id)).await,
        Err(StoreError::NotFound(_))
    ));
    let revoked = db.revoke_api_key(&key.id, None).await.unwrap();
    assert!(revoked.revoked_at.is_some());
    assert!(db.api_key_by_hash("hash-1").await.unwrap().is_none());

    // Refresh tokens: single use, families, per-user revocation.
    let t = |hash: &str, family: &str| RefreshToken {
        token_hash: hash.into(),
        user_id: creds.user.id,
        family: family.into(),
        expires_at: Utc::now() + Duration::hours(1),
        revoked: false,
        rotated_at: None,
    };
    db.insert_refresh_token(&t("r1", "f1")).await.unwrap();
    db.insert_refresh_token(&t("r2", "f1")).await.unwrap();
    db.insert_refresh_token(&t("r3", "f2")).await.unwrap();
    db.insert_refresh_token(&t("r4", "f2")).await.unwrap();
    let rotated_at = async |hash: &str| db.refresh_token(hash).await.unwrap().unwrap().rotated_at;
    assert!(rotated_at("r1").await.is_none());
    let before = Utc::now() - Duration::seconds(1);
    assert!(db.revoke_refresh_token("r1").await.unwrap());
    assert!(!db.revoke_refresh_token("r1").await.unwrap());
    assert!(db.refresh_token("r1").await.unwrap().unwrap().revoked);
    // Rotation time kept (to the millisecond) for the reuse grace.
    assert!(
        rotated_at("r1")
            .await
            .is_some_and(|at| at >= before && at <= Utc::now())
    );
    assert_eq!(db.revoke_refresh_family("f1").await.unwrap(), 1);
    // A revoked family, or a user's revoked tokens, have no recent
    // rotation any more.
    assert!(rotated_at("r1").await.is_none());
    assert!(db.revoke_refresh_token("r4").await.unwrap());
    assert!(rotated_at("r4").await.is_some());
    assert_eq!(
        db.revoke_user_refresh_tokens(creds.user.id).await.unwrap(),
        1
    );
    assert!(rotated_at("r4").await.is_none());
    assert!(db.refresh_token("r3").await.unwrap().unwrap().revoked);

    // Audit log: newest first, filters, purge.
    for (actor, action) in [
        ("admin", "auth.login"),
        ("user1", "POST /api/v1/jobs"),
        ("admin", "POST /api/v1/users"),
    ] {
        db.append_audit(NewAuditEntry {
            actor: actor.into(),
            action: action.into(),
            result: "ok".into(),
            status: Some(200),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let all = db
        .list_audit(&AuditFilter::default(), page(1, 10))
        .await
        .unwrap();
    assert_eq!(all.total, 3);
    assert_eq!(all.items[0].action, "POST /api/v1/users");
    let admin_only = db
        .list_audit(
            &AuditFilter {
                actor: Some("admin".into()),
                ..Default::default()
            },
            page(1, 10),
        )
        .await
        .unwrap();
    assert_eq!(admin_only.total, 2);
    let posts = db
        .list_audit(
            &AuditFilter {
                action_prefix: Some("POST ".into()),
                ..Default::default()
            },
            page(1, 10),
        )
        .await
        .unwrap();
    assert_eq!(posts.total, 2);
    let (audit, _) = db
        .purge(Utc::now() - Duration::days(1), Utc::now())
        .await
        .unwrap();
    assert_eq!(audit, 0);
    let (audit, _) = db
        .purge(Utc::now() + Duration::seconds(1), Utc::now())
        .await
        .unwrap();
    assert_eq!(audit, 3);
    assert!(!db.checkpoint().await.unwrap().is_empty());

    // Instruments: upsert, defaults for unknown symbols, paging, delete.
    use qb_core::market::{Decimal, Instrument};
    let mut rb = Instrument::with_defaults("rb2410");
    rb.multiplier = Decimal::from(10);
    rb.fees.open_rate = "0.0001".parse().unwrap();
    db.upsert_instrument(&rb).await.unwrap();
    assert_eq!(db.instrument("rb2410").await.unwrap().unwrap(), rb);
    rb.margin_ratio = "0.13".parse().unwrap();
    db.upsert_instrument(&rb).await.unwrap();
    assert_eq!(
        db.instrument("rb2410")
            .await
            .unwrap()
            .unwrap()
            .margin_ratio
            .to_string(),
        "0.13"
    );
    let created = db
        .ensure_instruments(&["rb2410".into(), "IF2409".into(), "cu2409".into()])
        .await
        .unwrap();
    assert_eq!(created, vec!["IF2409".to_string(), "cu2409".to_string()]);
    let all = db.list_instruments(page(1, 2)).await.unwrap();
    assert_eq!(all.total, 3);
    assert_eq!(all.items[0].symbol, "IF2409");
    db.delete_instrument("cu2409").await.unwrap();
    assert!(matches!(
        db.delete_instrument("cu2409").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(db.instrument("cu2409").await.unwrap().is_none());

    plugins(&*db).await;
    grants(&*db).await;
}

/// Account grants (one per account and user, gone with the user) and the
/// feed permission (read back everywhere a user is, moves no token
/// version).
async fn grants(db: &dyn MetaStore) {
    let ann = db
        .create_user("grant-ann", "h", Role::Trader)
        .await
        .unwrap();
    let bob = db
        .create_user("grant-bob", "h", Role::Viewer)
        .await
        .unwrap();
    assert!(db.account_grants(None, None).await.unwrap().is_empty());
    let g = db.grant_account("desk-a", ann.id, "admin").await.unwrap();
    assert_eq!(
        (
            g.account.as_str(),
            g.user_id,
            g.username.as_str(),
            g.granted_by.as_str()
        ),
        ("desk-a", ann.id, "grant-ann", "admin")
    );
    // Granting again keeps the first grant.
    let again = db.grant_account("desk-a", ann.id, "other").await.unwrap();
    assert_eq!(again, g);
    db.grant_account("desk-b", ann.id, "grant-ann")
        .await
        .unwrap();
    db.grant_account("desk-a", bob.id, "admin").await.unwrap();
    assert!(matches!(
        db.grant_account("desk-a", bob.id + 1000, "admin").await,
        Err(StoreError::NotFound(_))
    ));
    let of_ann: Vec<String> = db
        .account_grants(None, Some(ann.id))
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.account)
        .collect();
    assert_eq!(of_ann, ["desk-a", "desk-b"]);
    let of_a: Vec<i64> = db
        .account_grants(Some("desk-a"), None)
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.user_id)
        .collect();
    assert_eq!(of_a, [ann.id, bob.id]);
    assert_eq!(
        db.account_grants(Some("desk-b"), Some(bob.id))
            .await
            .unwrap(),
        vec![]
    );
    assert_eq!(db.account_grants(None, None).await.unwrap().len(), 3);
    // Account names are exact (no case folding).
    assert!(
        db.account_grants(Some("DESK-A"), None)
            .await
            .unwrap()
            .is_empty()
    );
    db.revoke_account("desk-b", ann.id).await.unwrap();
    assert!(matches!(
        db.revoke_account("desk-b", ann.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        db.account_grants(None, Some(ann.id)).await.unwrap().len(),
        1
    );

    // The feed permission: off by default, set and cleared by an update
    // that ends no session.
    assert!(!ann.feed);
    let on = db
        .update_user(
            "grant-ann",
            UserUpdate {
                feed: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(on.feed);
    assert_eq!(on.token_version, ann.token_version);
    assert!(db.user_by_id(ann.id).await.unwrap().unwrap().feed);
    assert!(
        db.user_credentials("grant-ann")
            .await
            .unwrap()
            .unwrap()
            .user
            .feed
    );
    db.create_api_key("feeder", "qbk_feed", "feed-key-hash", Role::Trader, ann.id)
        .await
        .unwrap();
    let (_, owner) = db.api_key_by_hash("feed-key-hash").await.unwrap().unwrap();
    assert!(owner.feed);
    let off = db
        .update_user(
            "grant-ann",
            UserUpdate {
                feed: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(!off.feed);

    // Deleting a user removes their grants, and only theirs.
    db.delete_user("grant-ann").await.unwrap();
    assert!(
        db.account_grants(None, Some(ann.id))
            .await
            .unwrap()
            .is_empty()
    );
    let left: Vec<i64> = db
        .account_grants(None, None)
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.user_id)
        .collect();
    assert_eq!(left, [bob.id]);
    db.delete_user("grant-bob").await.unwrap();
    assert!(db.account_grants(None, None).await.unwrap().is_empty());
}

pub(crate) fn plugin_info(id: &str, name: &str, version: &str, at_secs: i64) -> PluginInfo {
    PluginInfo {
        id: id.into(),
        name: name.into(),
        version: version.into(),
        description: "test".into(),
        interface: "quantbox:strategy/host@0.1.0".into(),
        params: vec![PluginParam {
            name: "fast".into(),
            kind: "integer".into(),
            default: 10.0,
            min: Some(1.0),
            max: None,
            description: "fast period".into(),
        }],
        symbols: 1,
        intervals: vec!["1m".into()],
        size_bytes: 3,
        uploaded_by: Some("admin".into()),
        uploaded_at: chrono::DateTime::from_timestamp(1_700_000_000 + at_secs, 0).unwrap(),
    }
}

/// The plugin registry: bytes kept exactly, name+version unique, newest first.
async fn plugins(db: &dyn MetaStore) {
    let a = plugin_info(&"a".repeat(64), "sma", "0.1.0", 0);
    let b = plugin_info(&"b".repeat(64), "sma", "0.2.0", 10);
    let c = plugin_info(&"c".repeat(64), "donchian", "1.0.0", 5);
    let wasm: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    db.insert_plugin(&a, &wasm).await.unwrap();
    db.insert_plugin(&b, b"bbb").await.unwrap();
    db.insert_plugin(&c, b"ccc").await.unwrap();
    // Same name and version under another hash is refused; so is the same hash.
    let clash = plugin_info(&"d".repeat(64), "sma", "0.1.0", 20);
    assert!(matches!(
        db.insert_plugin(&clash, b"ddd").await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        db.insert_plugin(&a, &wasm).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(db.plugin(&a.id).await.unwrap().unwrap(), a);
    assert_eq!(db.plugin_wasm(&a.id).await.unwrap().unwrap(), wasm);
    assert!(db.plugin(&"e".repeat(64)).await.unwrap().is_none());
    assert!(db.plugin_wasm(&"e".repeat(64)).await.unwrap().is_none());
    assert_eq!(db.plugin_by_name("sma", None).await.unwrap().unwrap(), b);
    assert_eq!(
        db.plugin_by_name("sma", Some("0.1.0"))
            .await
            .unwrap()
            .unwrap(),
        a
    );
    assert!(db.plugin_by_name("sma", Some("9")).await.unwrap().is_none());
    let page1 = db.list_plugins(page(1, 2)).await.unwrap();
    assert_eq!(page1.total, 3);
    let ids: Vec<&str> = page1.items.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(ids, ["sma", "donchian"]);
    assert_eq!(page1.items[0].version, "0.2.0");
    db.delete_plugin(&b.id).await.unwrap();
    assert!(matches!(
        db.delete_plugin(&b.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(db.plugin_by_name("sma", None).await.unwrap().unwrap(), a);
    assert_eq!(db.list_plugins(page(1, 10)).await.unwrap().total, 2);
}
