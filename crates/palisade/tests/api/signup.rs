//! Sign-up: one transaction, hashed password, no enumeration.

use serde_json::json;

use crate::helpers::{backend, spawn_app, Backend, TestApp};

const PASSWORD: &str = "correct horse battery staple";

async fn stored_text(app: &TestApp) -> String {
    match backend() {
        Backend::Sqlite => {
            // Checkpoint so the WAL's content is in the main file too, then read every byte.
            if let palisade::store::Database::Sqlite(pool) = &app.state.db {
                sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                    .execute(pool)
                    .await
                    .unwrap();
            }
            String::from_utf8_lossy(&std::fs::read(app.sqlite_path()).unwrap()).into_owned()
        }
        Backend::Postgres => {
            let owner = app.db.inspector_pool().await;
            let rows: Vec<String> = sqlx::query_scalar(
                "SELECT row_to_json(t)::text FROM (SELECT * FROM users) t
                 UNION ALL SELECT row_to_json(t)::text FROM (SELECT * FROM audit_events) t",
            )
            .fetch_all(&owner)
            .await
            .unwrap();
            owner.close().await;
            rows.join("\n")
        }
    }
}

// claim: ID-1
#[tokio::test]
async fn sign_up_creates_user_tenant_owner_membership_and_audit_event_with_a_hashed_password() {
    let app = spawn_app().await;
    let response = app
        .post_json(
            "/api/v1/auth/signup",
            &json!({"email": "Ada@Example.com", "password": PASSWORD, "tenant_name": "Analytical Engines"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap(),
        json!({"status": "accepted"})
    );
    assert_eq!(app.count_rows("tenants").await, 1);
    assert_eq!(app.count_rows("users").await, 1);
    assert_eq!(app.count_rows("memberships").await, 1);
    let signed_up: Vec<i64> = app
        .inspect(
            "SELECT count(*) FROM audit_events WHERE action = 'account.signed_up'",
            None,
        )
        .await;
    assert_eq!(signed_up, [1]);
    let stored = stored_text(&app).await;
    assert!(
        stored.contains("ada@example.com"),
        "the email is stored normalised"
    );
    assert!(stored.contains("$argon2id$v=19$m=19456,t=2,p=1$"));
    assert!(
        !stored.contains(PASSWORD),
        "the password never reaches the database"
    );
    assert!(stored.contains("account.signed_up"));
    app.stop().await;
}

// claim: ID-10
#[tokio::test]
async fn signing_up_with_a_taken_email_answers_the_same_and_writes_nothing() {
    let app = spawn_app().await;
    let body = json!({"email": "ada@example.com", "password": PASSWORD, "tenant_name": "First"});
    let first = app.post_json("/api/v1/auth/signup", &body).await;
    let (first_status, first_body) = (first.status(), first.text().await.unwrap());
    let again = json!({"email": "ADA@example.com", "password": "another long password", "tenant_name": "Second"});
    let second = app.post_json("/api/v1/auth/signup", &again).await;
    assert_eq!(second.status(), first_status);
    assert_eq!(second.text().await.unwrap(), first_body);
    assert_eq!(app.count_rows("users").await, 1);
    assert_eq!(
        app.count_rows("tenants").await,
        1,
        "the second tenant was rolled back"
    );
    let actions: Vec<String> = app
        .inspect(
            "SELECT action FROM audit_events WHERE action LIKE 'account.sign%' ORDER BY action",
            None,
        )
        .await;
    assert_eq!(
        actions,
        ["account.signed_up", "account.signup_existing_email"],
        "the attempt is recorded in the platform stream, as the new account's commit is matched"
    );
    app.stop().await;
}

#[tokio::test]
async fn concurrent_sign_ups_of_one_email_create_exactly_one_user() {
    let app = spawn_app().await;
    let attempts = (0..6).map(|i| {
        let body = json!({"email": "race@example.com", "password": PASSWORD, "tenant_name": format!("T{i}")});
        let request = app.client.post(app.url("/api/v1/auth/signup")).json(&body);
        async move { request.send().await.unwrap().status().as_u16() }
    });
    let statuses = futures_util::future::join_all(attempts).await;
    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
    assert_eq!(app.count_rows("users").await, 1);
    assert_eq!(app.count_rows("tenants").await, 1);
    app.stop().await;
}

// claim: ID-2, ID-10
#[tokio::test]
async fn look_alike_addresses_are_one_account_or_refused_and_a_password_is_one_whatever_its_form() {
    let app = spawn_app().await;
    let sign_up = |email: &str, password: &str| {
        let body = json!({"email": email, "password": password, "tenant_name": "Acme"});
        let request = app.client.post(app.url("/api/v1/auth/signup")).json(&body);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let precomposed = "p\u{e4}ssw\u{f6}rd-correct-horse";
    let decomposed = "pa\u{308}sswo\u{308}rd-correct-horse";
    assert_eq!(sign_up("owner@a.example", precomposed).await, 201);
    // Fullwidth letters, a fullwidth domain, an upper-case mix: the same address.
    for twin in [
        "\u{ff4f}\u{ff57}\u{ff4e}\u{ff45}\u{ff52}@a.example",
        "owner@\u{ff41}.example",
        "OWNER@A.EXAMPLE",
    ] {
        assert_eq!(
            sign_up(twin, PASSWORD).await,
            201,
            "the same answer: {twin}"
        );
    }
    assert_eq!(app.count_rows("users").await, 1, "one account");
    // A Cyrillic о in the local part would be a second "owner": refused.
    assert_eq!(sign_up("\u{43e}wner@a.example", PASSWORD).await, 422);
    // A Unicode domain and its xn-- spelling are one domain.
    assert_eq!(sign_up("user@b\u{fc}cher.example", PASSWORD).await, 201);
    assert_eq!(sign_up("user@xn--bcher-kva.example", PASSWORD).await, 201);
    assert_eq!(app.count_rows("users").await, 2);
    let stored: Vec<String> = app
        .inspect("SELECT email FROM users ORDER BY email", None)
        .await;
    assert_eq!(stored, ["owner@a.example", "user@xn--bcher-kva.example"]);
    // Signed up precomposed, signed in decomposed, under the fullwidth address.
    app.mark_verified("owner@a.example").await;
    let login = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": "\u{ff4f}wner@a.example", "password": decomposed}),
        )
        .await;
    assert_eq!(login.status(), 200);
}

// claim: ID-2
#[tokio::test]
async fn a_common_password_is_refused_at_sign_up_without_echoing_it() {
    let app = spawn_app().await;
    let response = app
        .post_json(
            "/api/v1/auth/signup",
            &json!({"email": "ada@example.com", "password": "Qwerty123456", "tenant_name": "Acme"}),
        )
        .await;
    assert_eq!(response.status(), 422);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_field");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("password:"), "{message}");
    assert!(!message.to_lowercase().contains("qwerty"), "{message}");
    assert_eq!(app.count_rows("users").await, 0);
    app.stop().await;
}

async fn audited_ip(app: &TestApp) -> Option<String> {
    app.inspect("SELECT ip FROM audit_events", None)
        .await
        .remove(0)
}

#[tokio::test]
async fn the_audited_address_is_the_peer_unless_the_peer_is_a_trusted_proxy() {
    let body = json!({"email": "ip@example.com", "password": PASSWORD, "tenant_name": "Ip"});
    for (trusted, expected) in [
        (vec![], "127.0.0.1"),
        (vec!["127.0.0.0/8".to_owned()], "203.0.113.9"),
    ] {
        let app = crate::helpers::spawn_app_with(|s| s.http.trusted_proxies = trusted).await;
        let response = app
            .client
            .post(app.url("/api/v1/auth/signup"))
            .header("x-forwarded-for", "198.51.100.1, 203.0.113.9")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        assert_eq!(audited_ip(&app).await.as_deref(), Some(expected));
        app.stop().await;
    }
}

/// The token of the newest password-reset link mailed to `email`.
async fn reset_token(app: &TestApp, email: &str) -> String {
    for _ in 0..250 {
        let mails = app.outbox(1).await;
        let found = mails
            .iter()
            .rev()
            .find(|m| m.contains("reset-password") && m.contains(&format!("To: {email}")));
        if let Some(mail) = found {
            return crate::helpers::token_in_mail(mail);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("no reset mail to {email}");
}

// claim: ID-10, ID-11
#[tokio::test]
async fn signing_up_with_someone_elses_address_gives_no_access_and_tells_nothing() {
    let app = spawn_app().await;
    let attacker_password = "the attacker's own passphrase";
    let attempt = |email: &str| {
        let signup = json!({"email": email, "password": attacker_password, "tenant_name": "Trap"});
        let login = json!({"email": email, "password": attacker_password});
        let (signup, login) = (
            app.client
                .post(app.url("/api/v1/auth/signup"))
                .json(&signup),
            app.client.post(app.url("/api/v1/auth/login")).json(&login),
        );
        async move {
            let signed_up = signup.send().await.unwrap().status().as_u16();
            let response = login.send().await.unwrap();
            let status = response.status().as_u16();
            let mut body: serde_json::Value = response.json().await.unwrap();
            body["error"]["request_id"] = serde_json::Value::Null;
            (signed_up, status, body)
        }
    };
    // The victim has an account; a second address is still free.
    app.sign_up("victim@example.com").await;
    let taken = attempt("victim@example.com").await;
    let free = attempt("victim-new@example.com").await;
    assert_eq!(
        taken, free,
        "signing up then in tells nothing of the address"
    );
    assert_eq!(free.1, 401, "no session before the address is verified");

    // The pre-registered address: its real owner recovers it, and only they get in.
    app.post_json(
        "/api/v1/auth/password-reset/request",
        &json!({"email": "victim-new@example.com"}),
    )
    .await;
    let token = reset_token(&app, "victim-new@example.com").await;
    let reset = app
        .post_json(
            "/api/v1/auth/password-reset",
            &json!({"token": token, "new_password": PASSWORD}),
        )
        .await;
    assert_eq!(reset.status(), 204);
    let owner = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": "victim-new@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(owner.status(), 200, "the reset link proved the mailbox");
    let attacker = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": "victim-new@example.com", "password": attacker_password}),
        )
        .await;
    assert_eq!(attacker.status(), 401);
    // Nothing was made in the account while it was unproven.
    assert_eq!(app.count_rows("api_keys").await, 0);
    assert_eq!(app.count_rows("invitations").await, 0);
}
