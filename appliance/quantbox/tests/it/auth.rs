//! Login, refresh, logout, token validation, roles, API keys, sign-in throttle.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::support::{ADMIN_PASSWORD, SECRET, Server, problem};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn forge(secret: &str, claims: Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[test]
fn login_refresh_logout_and_bad_tokens() {
    let s = Server::start(&[("QUANTBOX_AUTH__REFRESH_REUSE_GRACE_SECS", "1")]);
    let pair = s.login("admin", ADMIN_PASSWORD);
    assert_eq!(pair["token_type"], "bearer");
    assert_eq!(pair["expires_in"], 900);
    let access = pair["access_token"].as_str().unwrap();
    let refresh = pair["refresh_token"].as_str().unwrap();

    let me: Value = s
        .get("/api/v1/auth/me")
        .bearer_auth(access)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        (me["username"].as_str(), me["role"].as_str()),
        (Some("admin"), Some("admin"))
    );

    // Wrong password and unknown users look the same.
    for (u, p) in [
        ("admin", "wrong-password-123"),
        ("nobody", "whatever-password"),
    ] {
        let r = s
            .post("/api/v1/auth/login")
            .json(&json!({"username": u, "password": p}))
            .send()
            .unwrap();
        let doc = problem(r, 401);
        assert_eq!(doc["detail"], "invalid username or password");
    }

    // No token, garbage, tampered, alg=none, expired, wrong secret: 401.
    problem(s.get("/api/v1/jobs").send().unwrap(), 401);
    problem(
        s.get("/api/v1/jobs").bearer_auth("garbage").send().unwrap(),
        401,
    );
    let mut parts: Vec<String> = access.split('.').map(String::from).collect();
    let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
    parts[1] = URL_SAFE_NO_PAD.encode(payload.replace("\"admin\"", "\"root\""));
    problem(
        s.get("/api/v1/jobs")
            .bearer_auth(parts.join("."))
            .send()
            .unwrap(),
        401,
    );
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        access.split('.').nth(1).unwrap()
    );
    problem(s.get("/api/v1/jobs").bearer_auth(none).send().unwrap(), 401);
    let claims = |iat: i64, exp: i64| {
        json!({"sub": "1", "name": "admin", "role": "admin", "iat": iat,
               "exp": exp, "jti": "x", "typ": "access", "tv": 0, "sid": "forged"})
    };
    let expired = forge(SECRET, claims(now() - 7200, now() - 3600));
    let doc = problem(
        s.get("/api/v1/jobs").bearer_auth(expired).send().unwrap(),
        401,
    );
    assert_eq!(doc["detail"], "token expired");
    let wrong = forge(
        "some-other-secret-0123456789abcdef012345",
        claims(now() - 60, now() + 600),
    );
    problem(
        s.get("/api/v1/jobs").bearer_auth(wrong).send().unwrap(),
        401,
    );
    // The same claims with the right secret pass: the checks above are not vacuous.
    let good = forge(SECRET, claims(now() - 60, now() + 600));
    assert_eq!(
        s.get("/api/v1/jobs")
            .bearer_auth(good)
            .send()
            .unwrap()
            .status(),
        200
    );
    // Signed with the right secret but living longer than the server's
    // maximum (15 min from iat), whatever its exp: refused.
    let long = forge(SECRET, claims(now() - 1000, now() + 86_400));
    let doc = problem(s.get("/api/v1/jobs").bearer_auth(long).send().unwrap(), 401);
    assert!(
        doc["detail"].as_str().unwrap().contains("maximum lifetime"),
        "{doc}"
    );

    // Refresh rotates.
    let refresh_with = |token: &str| {
        s.post("/api/v1/auth/refresh")
            .json(&json!({"refresh_token": token}))
            .send()
            .unwrap()
    };
    let r2: Value = refresh_with(refresh).json().unwrap();
    let refresh2 = r2["refresh_token"].as_str().unwrap();
    assert_ne!(refresh2, refresh);
    // The spent token again at once (a client that lost the answer, such
    // as a page reloaded mid-request): a new pair of the same session.
    let r = refresh_with(refresh);
    assert_eq!(r.status(), 200);
    let r3: Value = r.json().unwrap();
    let refresh3 = r3["refresh_token"].as_str().unwrap();
    assert!(refresh3 != refresh2 && refresh3 != refresh);
    // After the grace (1 s here) a spent token is taken as stolen: the
    // whole session family is revoked, its newest tokens included.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    problem(refresh_with(refresh), 401);
    problem(refresh_with(refresh2), 401);
    problem(refresh_with(refresh3), 401);

    // Logout revokes the access token at once.
    let t = s.admin_token();
    assert_eq!(
        s.get("/api/v1/jobs")
            .bearer_auth(&t)
            .send()
            .unwrap()
            .status(),
        200
    );
    let r = s
        .post("/api/v1/auth/logout")
        .bearer_auth(&t)
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    let doc = problem(s.get("/api/v1/jobs").bearer_auth(&t).send().unwrap(), 401);
    assert!(doc["detail"].as_str().unwrap().contains("revoked"));

    // Nothing secret reached the log.
    let log = s.log();
    for secret in [
        ADMIN_PASSWORD,
        SECRET,
        access,
        refresh,
        refresh2,
        refresh3,
        &t,
    ] {
        assert!(!log.contains(secret), "a secret leaked into the log");
    }
}

/// Who a token names and how long it stays valid: the attacks of issue 18
/// (an id handed to a new user with the old user's tokens, sessions that
/// outlive a change or a logout), each shown failing.
#[test]
fn sessions_end_with_their_identity() {
    let s = Server::start(&[]);
    let admin = s.admin_token();
    let status = |token: &str| {
        s.get("/api/v1/jobs")
            .bearer_auth(token)
            .send()
            .unwrap()
            .status()
    };
    let me = |token: &str| s.get_json(token, "/api/v1/auth/me");

    // A viewer (the newest user, so the highest id) is deleted and an admin
    // created: the viewer's unexpired token must not become the admin's.
    let viewer = s.user_token(&admin, "vic", "viewer");
    let vic_id = me(&viewer)["id"].as_i64().unwrap();
    let r = s
        .http
        .delete(s.url("/api/v1/users/vic"))
        .bearer_auth(&admin)
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    let eve = s.user_token(&admin, "eve", "admin");
    let eve_id = me(&eve)["id"].as_i64().unwrap();
    assert!(eve_id > vic_id, "user id {vic_id} reused");
    let doc = problem(
        s.get("/api/v1/users").bearer_auth(&viewer).send().unwrap(),
        401,
    );
    assert!(
        doc["detail"].as_str().unwrap().contains("no longer exists"),
        "{doc}"
    );

    // A role change ends the user's sessions at once: access and refresh.
    let pair = s.login("eve", "eve-password-123");
    let access = pair["access_token"].as_str().unwrap();
    assert_eq!(status(access), 200);
    let r = s
        .http
        .patch(s.url("/api/v1/users/eve"))
        .bearer_auth(&admin)
        .json(&json!({"role": "viewer"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc = problem(
        s.get("/api/v1/jobs").bearer_auth(access).send().unwrap(),
        401,
    );
    assert!(
        doc["detail"].as_str().unwrap().contains("session ended"),
        "{doc}"
    );
    problem(
        s.post("/api/v1/auth/refresh")
            .json(&json!({"refresh_token": pair["refresh_token"]}))
            .send()
            .unwrap(),
        401,
    );
    // Logging in again gives a working session with the new role.
    let fresh = s.login("eve", "eve-password-123")["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(me(&fresh)["role"], "viewer");

    // Changing one's own password ends every session, this one included.
    let other = s.login("eve", "eve-password-123")["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = s
        .post("/api/v1/auth/password")
        .bearer_auth(&fresh)
        .json(&json!({"current_password": "eve-password-123", "new_password": "eve-password-456"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(status(&fresh), 401);
    assert_eq!(status(&other), 401);

    // Logout without the refresh token still ends the session's refresh
    // family, and only that session.
    let one = s.login("eve", "eve-password-456");
    let two = s.login("eve", "eve-password-456");
    let r = s
        .post("/api/v1/auth/logout")
        .bearer_auth(one["access_token"].as_str().unwrap())
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    problem(
        s.post("/api/v1/auth/refresh")
            .json(&json!({"refresh_token": one["refresh_token"]}))
            .send()
            .unwrap(),
        401,
    );
    assert_eq!(status(two["access_token"].as_str().unwrap()), 200);
    // A token refreshed within the logged-out session before the logout is
    // refused too (the session, not just one token, ended).
    let three = s.login("eve", "eve-password-456");
    let renewed: Value = s
        .post("/api/v1/auth/refresh")
        .json(&json!({"refresh_token": three["refresh_token"]}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let r = s
        .post("/api/v1/auth/logout")
        .bearer_auth(three["access_token"].as_str().unwrap())
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(status(renewed["access_token"].as_str().unwrap()), 401);

    // Disabling ends the sessions too.
    let r = s
        .http
        .patch(s.url("/api/v1/users/eve"))
        .bearer_auth(&admin)
        .json(&json!({"disabled": true}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(status(two["access_token"].as_str().unwrap()), 401);
}

#[test]
fn roles_and_api_keys() {
    let s = Server::start(&[]);
    let admin = s.admin_token();
    let viewer = s.user_token(&admin, "vera", "viewer");
    let trader = s.user_token(&admin, "tom", "trader");
    let sleep = json!({"kind": "diag.sleep", "params": {"seconds": 0}});

    assert_eq!(
        s.get("/api/v1/jobs")
            .bearer_auth(&viewer)
            .send()
            .unwrap()
            .status(),
        200
    );
    let doc = problem(
        s.post("/api/v1/jobs")
            .bearer_auth(&viewer)
            .json(&sleep)
            .send()
            .unwrap(),
        403,
    );
    assert!(doc["detail"].as_str().unwrap().contains("viewer"));
    // Diagnostics, maintenance jobs and user management are for admins.
    problem(
        s.post("/api/v1/jobs")
            .bearer_auth(&trader)
            .json(&sleep)
            .send()
            .unwrap(),
        403,
    );
    problem(
        s.post("/api/v1/jobs")
            .bearer_auth(&trader)
            .json(&json!({"kind": "maintenance.checkpoint"}))
            .send()
            .unwrap(),
        403,
    );
    problem(
        s.get("/api/v1/users").bearer_auth(&trader).send().unwrap(),
        403,
    );
    problem(
        s.get("/api/v1/audit").bearer_auth(&trader).send().unwrap(),
        403,
    );
    assert_eq!(
        s.post("/api/v1/jobs")
            .bearer_auth(&admin)
            .json(&json!({"kind": "maintenance.checkpoint"}))
            .send()
            .unwrap()
            .status(),
        202
    );
    // A viewer may still log itself out.
    assert_eq!(
        s.post("/api/v1/auth/logout")
            .bearer_auth(&viewer)
            .send()
            .unwrap()
            .status(),
        204
    );

    // API keys: shown once, scoped to a role not above the creator's, revocable.
    problem(
        s.post("/api/v1/api-keys")
            .bearer_auth(&trader)
            .json(&json!({"name": "too-high", "role": "admin"}))
            .send()
            .unwrap(),
        422,
    );
    let created: Value = s
        .post("/api/v1/api-keys")
        .bearer_auth(&trader)
        .json(&json!({"name": "reporting", "role": "viewer"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let key = created["key"].as_str().unwrap();
    assert!(key.starts_with("qbk_"));
    let id = created["api_key"]["id"].as_str().unwrap();
    assert_eq!(
        s.get("/api/v1/jobs")
            .bearer_auth(key)
            .send()
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        s.get("/api/v1/jobs")
            .header("x-api-key", key)
            .send()
            .unwrap()
            .status(),
        200
    );
    problem(
        s.post("/api/v1/jobs")
            .bearer_auth(key)
            .json(&sleep)
            .send()
            .unwrap(),
        403,
    );
    let listed: Value = s
        .get("/api/v1/api-keys")
        .bearer_auth(&trader)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(listed["total"], 1);
    assert!(
        !listed.to_string().contains(key),
        "the key is shown only once"
    );
    let r = s
        .http
        .delete(s.url(&format!("/api/v1/api-keys/{id}")))
        .bearer_auth(&trader)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    problem(s.get("/api/v1/jobs").bearer_auth(key).send().unwrap(), 401);

    // Disabling a user locks them out at once.
    let r = s
        .http
        .patch(s.url("/api/v1/users/tom"))
        .bearer_auth(&admin)
        .json(&json!({"disabled": true}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    problem(
        s.get("/api/v1/jobs").bearer_auth(&trader).send().unwrap(),
        401,
    );
    // The last admin cannot be demoted.
    let doc = problem(
        s.http
            .patch(s.url("/api/v1/users/admin"))
            .bearer_auth(&admin)
            .json(&json!({"role": "viewer"}))
            .send()
            .unwrap(),
        409,
    );
    assert!(doc["detail"].as_str().unwrap().contains("admin"));

    // Every mutating call and login is in the audit log.
    let audit: Value = s
        .get("/api/v1/audit?page_size=100")
        .bearer_auth(&admin)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let items = audit["items"].as_array().unwrap();
    let has = |actor: &str, action: &str, result: &str| {
        items.iter().any(|e| {
            e["actor"].as_str().unwrap().starts_with(actor)
                && e["action"] == action
                && e["result"] == result
        })
    };
    assert!(has("admin", "auth.login", "ok"));
    assert!(has("vera", "POST /api/v1/jobs", "denied"));
    assert!(has("tom", "POST /api/v1/jobs", "denied"));
    assert!(has("admin", "POST /api/v1/jobs", "ok"));
    assert!(has("tom/apikey:reporting", "POST /api/v1/jobs", "denied"));
    assert!(has("admin", "PATCH /api/v1/users/{username}", "ok"));
    assert!(has("admin", "PATCH /api/v1/users/{username}", "error"));
}

/// A client at `ip` (any loopback address reaches the server).
fn client_from(ip: [u8; 4]) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .local_address(std::net::IpAddr::from(ip))
        .build()
        .unwrap()
}

#[test]
fn wrong_passwords_slow_down_their_address_not_the_owner() {
    let s = Server::start(&[
        ("QUANTBOX_AUTH__LOCKOUT_THRESHOLD", "3"),
        ("QUANTBOX_AUTH__LOCKOUT_BASE_SECS", "60"),
    ]);
    let guesser = client_from([127, 0, 0, 2]);
    let login = |c: &reqwest::blocking::Client, user: &str, password: &str| {
        c.post(s.url("/api/v1/auth/login"))
            .json(&json!({"username": user, "password": password}))
            .send()
            .unwrap()
    };
    // Three guesses at the admin and at a name that does not exist: the
    // same answers, then the same wait, the right password included.
    let mut waits = Vec::new();
    for user in ["admin", "ghost"] {
        for _ in 0..3 {
            let p = problem(login(&guesser, user, "not-the-password"), 401);
            assert_eq!(p["detail"], "invalid username or password");
        }
        let r = login(&guesser, user, ADMIN_PASSWORD);
        let retry: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        // The base wait (60 s) from the third failure on.
        assert!((50..=60).contains(&retry), "{retry}");
        let p = problem(r, 429);
        let detail: String = p["detail"]
            .as_str()
            .unwrap()
            .chars()
            .filter(|c| !c.is_ascii_digit())
            .collect();
        waits.push((retry, p["type"].clone(), detail));
    }
    let ((a, ka, da), (b, kb, db)) = (&waits[0], &waits[1]);
    assert!(
        a.abs_diff(*b) <= 1 && ka == kb && da == db,
        "a real and an invented name answer alike: {waits:?}"
    );
    // Case does not open a new count.
    problem(login(&guesser, "ADMIN", ADMIN_PASSWORD), 429);
    // The owner, from their own address, signs in as ever.
    let r = login(&reqwest::blocking::Client::new(), "admin", ADMIN_PASSWORD);
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());

    // Checks of the current password count too, per address.
    let admin = s.admin_token();
    let tom = s.user_token(&admin, "tom", "trader");
    let change = |c: &reqwest::blocking::Client, current: &str| {
        c.post(s.url("/api/v1/auth/password"))
            .bearer_auth(&tom)
            .json(&json!({"current_password": current, "new_password": "another-long-password-1"}))
            .send()
            .unwrap()
    };
    for _ in 0..3 {
        problem(change(&guesser, "wrong-password"), 422);
    }
    problem(change(&guesser, "wrong-password"), 429);
    problem(login(&guesser, "tom", "wrong-password"), 429);

    let metrics = s.get("/metrics").send().unwrap().text().unwrap();
    assert!(
        metrics.contains("quantbox_logins_total{result=\"locked\"} 4"),
        "{metrics}"
    );
}

#[test]
fn rate_limit_answers_429_with_retry_after() {
    let s = Server::start(&[
        ("QUANTBOX_RATE_LIMIT__ENABLED", "true"),
        ("QUANTBOX_RATE_LIMIT__API_PER_SEC", "1"),
        ("QUANTBOX_RATE_LIMIT__API_BURST", "5"),
    ]);
    let statuses: Vec<u16> = (0..8)
        .map(|_| s.get("/api/v1/jobs").send().unwrap().status().as_u16())
        .collect();
    assert_eq!(&statuses[..5], &[401; 5], "{statuses:?}");
    assert!(statuses[5..].contains(&429), "{statuses:?}");
    let r = s.get("/api/v1/jobs").send().unwrap();
    assert!(
        r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    problem(r, 429);
    // Health is outside the API zones.
    for _ in 0..10 {
        assert_eq!(s.get("/health").send().unwrap().status(), 200);
    }
    let metrics = s.get("/metrics").send().unwrap().text().unwrap();
    assert!(metrics.contains("quantbox_rate_limited_total{zone=\"api\"}"));
}
