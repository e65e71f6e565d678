//! Sign-in and sessions: tokens, the refresh cookie, rotation and reuse, limits, logout,
//! revoke-all, brute-force limits and tenant choice, over HTTP on both backends.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use crate::helpers::{
    backend, refresh_cookie, spawn_app, spawn_app_with, Backend, Session, TestApp, PASSWORD,
};

pub fn jwt_part(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

async fn audit_actions(app: &TestApp) -> Vec<String> {
    app.inspect("SELECT action FROM audit_events", None).await
}

async fn refused_again(app: &TestApp) -> u16 {
    app.post_json(
        "/api/v1/auth/login",
        &json!({"email": "ada@example.com", "password": "wrong again"}),
    )
    .await
    .status()
    .as_u16()
}

async fn status_of(response: reqwest::Response) -> u16 {
    response.status().as_u16()
}

// claim: ID-3
#[tokio::test]
async fn sign_in_issues_a_short_lived_eddsa_token_and_a_hardened_refresh_cookie() {
    let app = spawn_app().await;
    app.sign_up("ada@example.com").await;
    let response = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": "Ada@Example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let cookie = response
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    for attribute in [
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/api/v1/auth",
        "Max-Age=2592000",
    ] {
        assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
    }
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    let token = body["access_token"].as_str().unwrap();
    let header = jwt_part(token, 0);
    assert_eq!(header["alg"], "EdDSA");
    assert!(header["kid"].is_string());
    let claims = jwt_part(token, 1);
    for claim in [
        "iss", "aud", "sub", "tid", "role", "sid", "iat", "exp", "jti",
    ] {
        assert!(!claims[claim].is_null(), "{claim} missing from {claims}");
    }
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        900
    );
    assert_eq!(claims["role"], "owner");

    let me: Value = app.get_as("/api/v1/me", token).await.json().await.unwrap();
    assert_eq!(me["user"]["email"], "ada@example.com");
    assert_eq!(me["user"]["id"], claims["sub"]);
    assert_eq!(me["tenant"]["id"], claims["tid"]);
    assert_eq!(me["tenant"]["name"], "Acme");
    assert_eq!(me["role"], "owner");
    assert_eq!(me["session_id"], claims["sid"]);
    assert_eq!(status_of(app.get("/api/v1/me").await).await, 401);
}

// claim: ID-3
#[tokio::test]
async fn tampered_expired_and_unsigned_tokens_are_refused() {
    let app = spawn_app().await;
    let session = app.signed_in("ada@example.com").await;
    let parts: Vec<&str> = session.access.split('.').collect();
    let mut claims = jwt_part(&session.access, 1);
    claims["role"] = json!("viewer");
    let forged_payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    for bad in [tampered.as_str(), unsigned.as_str(), "garbage", ""] {
        let response = app.get_as("/api/v1/me", bad).await;
        assert_eq!(response.status(), 401, "{bad}");
        assert!(response.headers().contains_key("www-authenticate"));
    }
    assert_eq!(
        status_of(app.get_as("/api/v1/me", &session.access).await).await,
        200
    );
    app.clock.advance(Duration::from_secs(15 * 60));
    assert_eq!(
        status_of(app.get_as("/api/v1/me", &session.access).await).await,
        401,
        "expired after 15 minutes"
    );
}

// claim: ID-10
#[tokio::test]
async fn sign_in_answers_are_identical_for_known_and_unknown_emails() {
    let app = spawn_app().await;
    app.sign_up("ada@example.com").await;
    let mut answers = Vec::new();
    for email in ["ada@example.com", "nobody@example.com"] {
        let response = app
            .post_json(
                "/api/v1/auth/login",
                &json!({"email": email, "password": "not the right password"}),
            )
            .await;
        let status = response.status();
        let request_id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let mut names: Vec<String> = response.headers().keys().map(|k| k.to_string()).collect();
        names.sort();
        // The request id is fresh per request whatever the email; everything else is equal.
        let body = response.text().await.unwrap().replace(&request_id, "<id>");
        answers.push((status, names, body));
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0].0, 401);
    assert!(answers[0].2.contains("invalid_credentials"));
}

// claim: ID-9
#[tokio::test]
async fn a_sixth_failed_sign_in_within_15_minutes_gets_429_and_is_audited() {
    let app = spawn_app().await;
    app.sign_up("ada@example.com").await;
    let attempt = |password: &'static str| {
        let body = json!({"email": "ada@example.com", "password": password});
        let request = app.client.post(app.url("/api/v1/auth/login")).json(&body);
        async move { request.send().await.unwrap() }
    };
    for _ in 0..5 {
        assert_eq!(status_of(attempt("wrong password").await).await, 401);
    }
    let refused = attempt(PASSWORD).await;
    assert_eq!(refused.status(), 429, "even the right password waits");
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry_after), "{retry_after}");
    assert!(audit_actions(&app)
        .await
        .contains(&"auth.login_locked".to_owned()));
    // Five failures, each counted for its (email, address), its address and its account.
    assert_eq!(
        app.count_rows("login_failures").await,
        15,
        "kept in the database"
    );
    assert_eq!(
        refused_again(&app).await,
        429,
        "still, with nothing more written"
    );
    assert_eq!(app.count_rows("login_failures").await, 15);

    app.clock.advance(Duration::from_secs(retry_after));
    assert_eq!(
        status_of(attempt(PASSWORD).await).await,
        200,
        "the window passed"
    );
}

// claim: ID-9
#[tokio::test]
async fn parallel_guesses_are_counted_before_the_hashing_and_capped() {
    let app = spawn_app().await;
    app.sign_up("ada@example.com").await;
    let guesses: Vec<_> = (0..16)
        .map(|n| {
            let request = app.client.post(app.url("/api/v1/auth/login")).json(
                &json!({"email": "ada@example.com", "password": format!("guess number {n}")}),
            );
            tokio::spawn(async move { request.send().await.unwrap().status().as_u16() })
        })
        .collect();
    let mut statuses = Vec::new();
    for guess in guesses {
        statuses.push(guess.await.unwrap());
    }
    // Each guess is counted before its hash is checked, so exactly the cap's five are
    // tried whatever the interleaving, and the other eleven are refused unhashed.
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((checked, refused), (5, 11), "{statuses:?}");
    assert_eq!(app.count_rows("login_failures").await, 3 * checked as i64);
}

// claim: ID-9
#[tokio::test]
async fn one_address_trying_many_emails_hits_the_per_ip_cap() {
    let app = spawn_app_with(|s| s.auth.max_failures_per_ip = 8).await;
    for n in 0..8 {
        let response = app
            .post_json(
                "/api/v1/auth/login",
                &json!({"email": format!("user{n}@example.com"), "password": "wrong password"}),
            )
            .await;
        assert_eq!(response.status(), 401);
    }
    let response = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": "user99@example.com", "password": "wrong password"}),
        )
        .await;
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
}

// claim: ID-4
#[tokio::test]
async fn refresh_rotates_and_a_replayed_token_revokes_the_whole_family() {
    let app = spawn_app().await;
    let first = app.signed_in("ada@example.com").await;
    // Another session of the same user, on another device: not of the replayed family.
    let phone = app.login("ada@example.com").await;
    let second = Session::from_response(app.refresh(&first.refresh).await).await;
    assert_ne!(second.refresh, first.refresh, "rotated");
    assert_eq!(
        status_of(app.get_as("/api/v1/me", &second.access).await).await,
        200
    );

    let replay = app.refresh(&first.refresh).await;
    assert_eq!(replay.status(), 401);
    assert_eq!(
        refresh_cookie(&replay).as_deref(),
        Some(""),
        "cookie cleared"
    );
    assert_eq!(
        status_of(app.refresh(&second.refresh).await).await,
        401,
        "the family is dead"
    );
    assert_eq!(
        status_of(app.get_as("/api/v1/me", &second.access).await).await,
        401,
        "so is its access token"
    );
    assert!(audit_actions(&app)
        .await
        .contains(&"auth.refresh_token_reused".to_owned()));
    assert_eq!(status_of(app.refresh("not-a-token").await).await, 401);
    assert_eq!(
        status_of(app.get_as("/api/v1/me", &phone.access).await).await,
        200,
        "an unrelated session survives the replay"
    );
    assert_eq!(status_of(app.refresh(&phone.refresh).await).await, 200);
}

// claim: ID-5
#[tokio::test]
async fn a_session_idle_for_8_hours_cannot_be_refreshed() {
    let app = spawn_app().await;
    let session = app.signed_in("ada@example.com").await;
    app.clock.advance(Duration::from_secs(8 * 3600 - 60));
    let kept = Session::from_response(app.refresh(&session.refresh).await).await;
    app.clock.advance(Duration::from_secs(8 * 3600));
    assert_eq!(status_of(app.refresh(&kept.refresh).await).await, 401);
}

// claim: ID-5
#[tokio::test]
async fn an_active_session_still_ends_after_30_days() {
    let app = spawn_app().await;
    let mut session = app.signed_in("ada@example.com").await;
    let mut elapsed = Duration::ZERO;
    let step = Duration::from_secs(7 * 3600);
    while elapsed + step < Duration::from_secs(30 * 24 * 3600) {
        app.clock.advance(step);
        elapsed += step;
        session = Session::from_response(app.refresh(&session.refresh).await).await;
    }
    app.clock.advance(step);
    assert_eq!(status_of(app.refresh(&session.refresh).await).await, 401);
    assert_eq!(
        status_of(app.get_as("/api/v1/me", &session.access).await).await,
        401
    );
}

// claim: ID-6
#[tokio::test]
async fn logout_revokes_the_refresh_token_and_the_session_at_once() {
    let app = spawn_app().await;
    let session = app.signed_in("ada@example.com").await;
    let response = app
        .client
        .post(app.url("/api/v1/auth/logout"))
        .header(
            "cookie",
            format!("{}={}", crate::helpers::REFRESH_COOKIE, session.refresh),
        )
        .header(
            crate::helpers::CSRF_HEADER,
            crate::helpers::csrf_token(&session.refresh),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(refresh_cookie(&response).as_deref(), Some(""));
    assert_eq!(status_of(app.refresh(&session.refresh).await).await, 401);
    assert_eq!(
        status_of(app.get_as("/api/v1/me", &session.access).await).await,
        401
    );
    assert!(audit_actions(&app)
        .await
        .contains(&"auth.logout".to_owned()));

    let other = app.login("ada@example.com").await;
    let response = app
        .post_as("/api/v1/auth/logout", &other.access, None)
        .await;
    assert_eq!(response.status(), 204, "a bearer token can sign out too");
    assert_eq!(status_of(app.refresh(&other.refresh).await).await, 401);
}

// claim: ID-7
#[tokio::test]
async fn revoke_all_refuses_every_earlier_token_on_the_very_next_request() {
    let app = spawn_app().await;
    let laptop = app.signed_in("ada@example.com").await;
    let phone = app.login("ada@example.com").await;
    // A session of Ada's in another tenant ends too: revoke-all is per user.
    let bob = app.signed_in("bob@example.com").await;
    add_membership(&app, "ada@example.com", &bob.tenant, "member").await;
    let elsewhere = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": "ada@example.com", "password": PASSWORD, "tenant_id": bob.tenant}),
        )
        .await;
    let elsewhere = Session::from_response(elsewhere).await;
    assert_eq!(elsewhere.tenant, bob.tenant);
    let response = app
        .post_as("/api/v1/auth/revoke-all", &laptop.access, None)
        .await;
    assert_eq!(response.status(), 204);
    assert_eq!(
        status_of(app.get_as("/api/v1/me", &bob.access).await).await,
        200,
        "another user's session is untouched"
    );
    for session in [&laptop, &phone, &elsewhere] {
        assert_eq!(
            status_of(app.get_as("/api/v1/me", &session.access).await).await,
            401
        );
        assert_eq!(status_of(app.refresh(&session.refresh).await).await, 401);
    }
    let fresh = app.login("ada@example.com").await;
    assert_eq!(
        status_of(app.get_as("/api/v1/me", &fresh.access).await).await,
        200
    );
}

// claim: ID-7, ID-1
#[tokio::test]
async fn changing_the_password_ends_every_session() {
    let app = spawn_app().await;
    let session = app.signed_in("ada@example.com").await;
    let wrong = app
        .post_as(
            "/api/v1/auth/password",
            &session.access,
            Some(&json!({"current_password": "not it at all", "new_password": "a brand new passphrase"})),
        )
        .await;
    assert_eq!(wrong.status(), 401);
    let response = app
        .post_as(
            "/api/v1/auth/password",
            &session.access,
            Some(&json!({"current_password": PASSWORD, "new_password": "a brand new passphrase"})),
        )
        .await;
    assert_eq!(response.status(), 204);
    assert_eq!(
        status_of(app.get_as("/api/v1/me", &session.access).await).await,
        401
    );
    assert_eq!(status_of(app.refresh(&session.refresh).await).await, 401);
    let old = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": "ada@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(old.status(), 401);
    let new = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": "ada@example.com", "password": "a brand new passphrase"}),
        )
        .await;
    assert_eq!(new.status(), 200);
}

#[tokio::test]
async fn users_list_and_end_their_own_sessions_but_not_anyone_elses() {
    let app = spawn_app().await;
    let ada = app.signed_in("ada@example.com").await;
    let ada_phone = app.login("ada@example.com").await;
    let bob = app.signed_in("bob@example.com").await;
    let sessions: Vec<Value> = app
        .get_as("/api/v1/auth/sessions", &ada.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);
    let phone_id = jwt_part(&ada_phone.access, 1)["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/v1/auth/sessions/{phone_id}");
    let by_bob = app
        .client
        .delete(app.url(&path))
        .bearer_auth(&bob.access)
        .send()
        .await
        .unwrap();
    assert_eq!(by_bob.status(), 404, "another user's session is not found");
    assert_eq!(
        status_of(app.get_as("/api/v1/me", &ada_phone.access).await).await,
        200
    );
    let by_ada = app
        .client
        .delete(app.url(&path))
        .bearer_auth(&ada.access)
        .send()
        .await
        .unwrap();
    assert_eq!(by_ada.status(), 204);
    assert_eq!(
        status_of(app.get_as("/api/v1/me", &ada_phone.access).await).await,
        401
    );
    assert_eq!(status_of(app.refresh(&ada_phone.refresh).await).await, 401);
}

/// Adds `email`'s user to `tenant` with `role`, as an invitation will.
pub async fn add_membership(app: &TestApp, email: &str, tenant: &str, role: &str) {
    let tenant = uuid::Uuid::try_parse(tenant.strip_prefix("ten_").unwrap()).unwrap();
    match &app.state.db {
        palisade::store::Database::Sqlite(pool) => {
            sqlx::query(
                "INSERT INTO memberships (tenant_id, user_id, role, created_at)
                 SELECT $1, id, $2, $3 FROM users WHERE email = $4",
            )
            .bind(tenant.hyphenated().to_string())
            .bind(role)
            .bind(app.clock_now())
            .bind(email)
            .execute(pool)
            .await
            .unwrap();
        }
        palisade::store::Database::Postgres(_) => {
            let owner = app.db.inspector_pool().await;
            sqlx::query(
                "INSERT INTO memberships (tenant_id, user_id, role, created_at)
                 SELECT $1, id, $2, $3 FROM users WHERE email = $4",
            )
            .bind(tenant)
            .bind(role)
            .bind(app.clock_now())
            .bind(email)
            .execute(&owner)
            .await
            .unwrap();
            owner.close().await;
        }
    }
}

// claim: TEN-1
#[tokio::test]
async fn a_member_of_two_tenants_picks_one_at_sign_in_and_switches_with_a_new_token() {
    let app = spawn_app().await;
    let ada = app.signed_in("ada@example.com").await;
    let bob = app.signed_in("bob@example.com").await;
    add_membership(&app, "ada@example.com", &bob.tenant, "member").await;

    let tenants: Vec<Value> = app
        .get_as("/api/v1/me/tenants", &ada.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tenants.len(), 2);

    // A header naming another tenant changes nothing: the token decides.
    let me: Value = app
        .client
        .get(app.url("/api/v1/me"))
        .bearer_auth(&ada.access)
        .header("x-tenant-id", &bob.tenant)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["tenant"]["id"], ada.tenant.as_str());

    let in_bobs = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": "ada@example.com", "password": PASSWORD, "tenant_id": bob.tenant}),
        )
        .await;
    let in_bobs = Session::from_response(in_bobs).await;
    assert_eq!(in_bobs.tenant, bob.tenant);
    let me: Value = app
        .get_as("/api/v1/me", &in_bobs.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["role"], "member");

    let switched = app
        .post_as(
            "/api/v1/auth/switch-tenant",
            &in_bobs.access,
            Some(&json!({"tenant_id": ada.tenant})),
        )
        .await;
    assert_eq!(switched.status(), 200);
    let switched: Value = switched.json().await.unwrap();
    let token = switched["access_token"].as_str().unwrap();
    let me: Value = app.get_as("/api/v1/me", token).await.json().await.unwrap();
    assert_eq!(me["tenant"]["id"], ada.tenant.as_str());
    assert_eq!(me["role"], "owner");
    assert_eq!(
        status_of(app.get_as("/api/v1/me", &in_bobs.access).await).await,
        401,
        "the token for the previous tenant stops working"
    );
    let refreshed = Session::from_response(app.refresh(&in_bobs.refresh).await).await;
    assert_eq!(
        refreshed.tenant, ada.tenant,
        "the refresh cookie follows the switch"
    );

    // Bob is not in Ada's other tenants: asking for one is 404, at sign-in and switching.
    let foreign = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": "bob@example.com", "password": PASSWORD, "tenant_id": ada.tenant}),
        )
        .await;
    assert_eq!(foreign.status(), 404);
    let foreign = app
        .post_as(
            "/api/v1/auth/switch-tenant",
            &bob.access,
            Some(&json!({"tenant_id": ada.tenant})),
        )
        .await;
    assert_eq!(foreign.status(), 404);
}

// claim: ID-9
#[tokio::test]
async fn guesses_at_one_account_from_many_addresses_are_slowed_and_its_owner_still_gets_in() {
    let app = crate::helpers::spawn_app_with(|s| {
        s.http.trusted_proxies = vec!["127.0.0.0/8".to_owned()];
    })
    .await;
    app.sign_up("ada@example.com").await;
    let attempt = |from: String, password: &'static str| {
        let request = app
            .client
            .post(app.url("/api/v1/auth/login"))
            .header("x-forwarded-for", from)
            .json(&json!({"email": "ada@example.com", "password": password}));
        async move { request.send().await.unwrap() }
    };
    // Two wrong guesses from each of ten addresses: no address reaches its cap of five.
    for n in 0..20 {
        let response = attempt(format!("198.51.100.{}", n / 2), "a wrong guess, surely").await;
        assert_eq!(response.status(), 401, "guess {n}");
    }
    // The account has had its threshold of failures: a guess from a new address, and even
    // the right password from the owner's own, must now wait — seconds, not a lock-out.
    let slowed = attempt("203.0.113.50".to_owned(), "a wrong guess, surely").await;
    assert_eq!(slowed.status(), 429);
    let wait: u64 = slowed.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&wait), "{wait}");
    assert_eq!(
        attempt("192.0.2.7".to_owned(), PASSWORD).await.status(),
        429
    );
    app.clock.advance(Duration::from_secs(wait));
    assert_eq!(
        attempt("192.0.2.7".to_owned(), PASSWORD).await.status(),
        200,
        "the owner gets in after the wait"
    );
}

// claim: TEN-1, AUD-1
#[tokio::test]
async fn a_token_from_before_a_switch_stays_dead_after_switching_back_in_the_same_second() {
    // The test clock stands still: every switch below happens in the same instant.
    let app = spawn_app().await;
    let ada = app.signed_in("ada@example.com").await;
    let bob = app.signed_in("bob@example.com").await;
    add_membership(&app, "ada@example.com", &bob.tenant, "viewer").await;
    let switch = |token: String, tenant: String| {
        let app = &app;
        async move {
            let response = app
                .post_as(
                    "/api/v1/auth/switch-tenant",
                    &token,
                    Some(&json!({"tenant_id": tenant})),
                )
                .await;
            assert_eq!(response.status(), 200);
            let body: Value = response.json().await.unwrap();
            body["access_token"].as_str().unwrap().to_owned()
        }
    };
    let in_bobs = switch(ada.access.clone(), bob.tenant.clone()).await;
    let back = switch(in_bobs.clone(), ada.tenant.clone()).await;
    assert_eq!(status_of(app.get_as("/api/v1/me", &back).await).await, 200);
    for (stale, what) in [
        (&ada.access, "the first A token"),
        (&in_bobs, "the B token"),
    ] {
        assert_eq!(
            status_of(app.get_as("/api/v1/me", stale).await).await,
            401,
            "{what} stays dead"
        );
    }
    // The switch into Bob's tenant names the role Ada holds there.
    let events: Value = app
        .get_as(
            "/api/v1/audit/events?action=auth.tenant_switched",
            &bob.access,
        )
        .await
        .json()
        .await
        .unwrap();
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["actor_role"], "viewer", "{:?}", events[0]);
}

// claim: ID-8
#[tokio::test]
async fn signing_keys_rotate_and_retired_keys_stay_published_until_their_tokens_expire() {
    let app = spawn_app().await;
    let before = app.signed_in("ada@example.com").await;
    let jwks = |app: &TestApp| {
        let request = app.client.get(app.url("/.well-known/jwks.json"));
        async move {
            let keys: Value = request.send().await.unwrap().json().await.unwrap();
            keys["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["kid"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let first_kid = jwt_part(&before.access, 0)["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(jwks(&app).await, vec![first_kid.clone()]);

    let identity = &app.state.identity;
    let second_kid = identity
        .tokens()
        .rotate(identity.store(), identity.now())
        .await
        .unwrap();
    let after = app.login("ada@example.com").await;
    assert_eq!(jwt_part(&after.access, 0)["kid"], second_kid.as_str());
    assert_eq!(
        jwks(&app).await,
        vec![second_kid.clone(), first_kid.clone()]
    );
    assert_eq!(
        status_of(app.get_as("/api/v1/me", &before.access).await).await,
        200,
        "tokens of the retired key verify until they expire"
    );

    app.clock.advance(Duration::from_secs(15 * 60 + 61));
    assert_eq!(
        jwks(&app).await,
        vec![second_kid.clone()],
        "then it is withdrawn"
    );

    // The schedule: a key older than 30 days is replaced by the periodic upkeep.
    app.clock.advance(Duration::from_secs(30 * 24 * 3600));
    identity.maintain().await.unwrap();
    let keys = jwks(&app).await;
    assert_eq!(keys.len(), 2);
    assert_ne!(keys[0], second_kid);
}

// claim: ID-8
#[tokio::test]
async fn palisade_keys_rotate_publishes_a_new_key_that_running_servers_pick_up() {
    let app = spawn_app().await;
    let before = app.signed_in("ada@example.com").await;
    let (ok, output) = crate::import::palisade_command(&app, &["keys", "rotate"]).await;
    assert!(ok, "{output}");
    let kid = output
        .trim()
        .strip_prefix("new signing key ")
        .unwrap_or_else(|| panic!("{output}"))
        .to_owned();
    // The running server notices at its next minute tick; the test runs it now.
    app.state.identity.maintain().await.unwrap();
    let keys: Value = app
        .get("/.well-known/jwks.json")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(keys["keys"][0]["kid"], kid.as_str(), "the new key signs");
    assert_eq!(keys["keys"].as_array().unwrap().len(), 2);
    let after = app.login("ada@example.com").await;
    assert_eq!(jwt_part(&after.access, 0)["kid"], kid.as_str());
    assert_eq!(
        status_of(app.get_as("/api/v1/me", &before.access).await).await,
        200
    );
}

impl TestApp {
    pub fn clock_now(&self) -> time::OffsetDateTime {
        use palisade::clock::Clock;
        self.clock.now()
    }
}

// claim: ID-9, ID-8, ID-6
#[tokio::test]
async fn two_instances_on_one_database_share_limits_keys_and_revocations() {
    let app = spawn_app().await;
    let sibling = app.spawn_sibling().await;
    app.sign_up("ada@example.com").await;
    let wrong = json!({"email": "ada@example.com", "password": "wrong password"});
    for base in [
        &app.base,
        &app.base,
        &app.base,
        &sibling.base,
        &sibling.base,
    ] {
        let response = app
            .client
            .post(format!("{base}/api/v1/auth/login"))
            .json(&wrong)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
    }
    let sixth = app
        .client
        .post(sibling.url("/api/v1/auth/login"))
        .json(&json!({"email": "ada@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        sixth.status(),
        429,
        "5 per 15 minutes across both instances"
    );
    app.clock.advance(Duration::from_secs(15 * 60));

    // A key rotated through one instance is trusted by the other at once.
    let identity = &app.state.identity;
    identity
        .tokens()
        .rotate(identity.store(), identity.now())
        .await
        .unwrap();
    let session = app.login("ada@example.com").await;
    let me = |access: String| {
        let request = app
            .client
            .get(sibling.url("/api/v1/me"))
            .bearer_auth(access);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(me(session.access.clone()).await, 200);

    // Logout through one instance is refused by the other on the next request. Two servers
    // on one SQLite file see each other's changes at the next once-a-second poll, which the
    // test runs at once; PostgreSQL instances read the epoch on every request.
    let response = app
        .post_as("/api/v1/auth/logout", &session.access, None)
        .await;
    assert_eq!(response.status(), 204);
    if backend() == Backend::Sqlite {
        sibling.state.identity.poll().await.unwrap();
    }
    assert_eq!(me(session.access.clone()).await, 401);
    sibling.stop().await;
}
