//! Email verification, password reset and mail delivery: the outbox, and a real SMTP
//! listener started by the test.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::helpers::{
    spawn_app, spawn_app_with, token_in_mail, verification_token, TestApp, PASSWORD,
};

async fn stored_tokens(app: &TestApp) -> Vec<Vec<u8>> {
    app.inspect("SELECT token_hash FROM email_tokens", None)
        .await
}

// claim: ID-11, ID-13, ID-10
#[tokio::test]
async fn a_new_account_verifies_its_email_once_with_the_mailed_link_before_it_signs_in() {
    let app = spawn_app().await;
    app.sign_up_unverified("ada@example.com").await;
    let mails = app.outbox(1).await;
    assert_eq!(mails.len(), 1, "the verification mail is in the outbox");
    assert!(mails[0].contains("To: ada@example.com"));
    let token = token_in_mail(&mails[0]);

    // Only the SHA-256 of the token is stored.
    let stored = stored_tokens(&app).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].len(), 32);
    assert_ne!(stored[0], token.as_bytes());
    assert_eq!(stored[0], sha256(token.as_bytes()));

    // Before the address is verified the right password answers as a wrong one does.
    let sign_in = |password: &str| {
        let body = json!({"email": "ada@example.com", "password": password});
        let request = app.client.post(app.url("/api/v1/auth/login")).json(&body);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let mut body: Value = response.json().await.unwrap();
            body["error"]["request_id"] = Value::Null;
            (status, body)
        }
    };
    let unverified = sign_in(PASSWORD).await;
    assert_eq!(unverified.0, 401);
    assert_eq!(unverified, sign_in("not the password at all").await);
    assert_eq!(
        app.outbox(2).await.len(),
        2,
        "the owner is sent a fresh link"
    );

    let verify = |token: String| {
        let request = app
            .client
            .post(app.url("/api/v1/auth/verify-email"))
            .json(&json!({ "token": token }));
        async move { request.send().await.unwrap() }
    };
    assert_eq!(verify(token.clone()).await.status(), 204);
    let session = app.login("ada@example.com").await;
    assert_eq!(app.me(&session).await["user"]["email_verified"], true);
    let again = verify(token).await;
    assert_eq!(again.status(), 400, "single use");
    assert!(again.text().await.unwrap().contains("invalid_token"));
    assert_eq!(verify("x".repeat(43)).await.status(), 400);
}

// claim: ID-11
#[tokio::test]
async fn a_verification_link_works_until_24_hours_and_not_at_them() {
    let app = spawn_app().await;
    app.sign_up_unverified("ada@example.com").await;
    let ada = verification_token(&app.outbox_dir(), "ada@example.com").await;
    app.sign_up_unverified("bob@example.com").await;
    let bob = verification_token(&app.outbox_dir(), "bob@example.com").await;
    app.clock.advance(Duration::from_secs(24 * 3600 - 1));
    let response = app
        .post_json("/api/v1/auth/verify-email", &json!({ "token": ada }))
        .await;
    assert_eq!(response.status(), 204, "alive a second before the limit");
    app.clock.advance(Duration::from_secs(1));
    let response = app
        .post_json("/api/v1/auth/verify-email", &json!({ "token": bob }))
        .await;
    assert_eq!(response.status(), 400, "dead at the limit");
}

// claim: ID-11, ID-7
#[tokio::test]
async fn a_password_reset_works_once_and_ends_every_session() {
    let app = spawn_app().await;
    let session = app.signed_in("ada@example.com").await;
    let response = app
        .post_json(
            "/api/v1/auth/password-reset/request",
            &json!({"email": "ada@example.com"}),
        )
        .await;
    assert_eq!(response.status(), 202);
    let mails = app.outbox(2).await;
    let reset = mails.iter().find(|m| m.contains("reset-password")).unwrap();
    let token = token_in_mail(reset);
    let reset = |token: &str, password: &str| {
        let request = app
            .client
            .post(app.url("/api/v1/auth/password-reset"))
            .json(&json!({"token": token, "new_password": password}));
        async move { request.send().await.unwrap() }
    };
    assert_eq!(
        reset(&token, "short").await.status(),
        422,
        "the policy applies, and the token survives a refused password"
    );
    assert_eq!(
        reset(&token, "a new and long passphrase").await.status(),
        204
    );
    assert_eq!(
        app.get_as("/api/v1/me", &session.access).await.status(),
        401
    );
    assert_eq!(app.refresh(&session.refresh).await.status(), 401);
    assert_eq!(
        reset(&token, "yet another long passphrase").await.status(),
        400,
        "a used reset token fails"
    );
    let login = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": "ada@example.com", "password": "a new and long passphrase"}),
        )
        .await;
    assert_eq!(login.status(), 200);
}

// claim: ID-11
#[tokio::test]
async fn one_reset_voids_every_other_reset_link_and_links_are_rationed() {
    let app = spawn_app().await;
    app.sign_up("ada@example.com").await;
    for _ in 0..5 {
        app.post_json(
            "/api/v1/auth/password-reset/request",
            &json!({"email": "ada@example.com"}),
        )
        .await;
    }
    // Every request has been dealt with once two are recorded as rationed and the three
    // others' mails (after the sign-up's) are in the outbox: nothing more can arrive.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let rationed: Vec<i64> = app
            .inspect(
                "SELECT count(*) FROM audit_events
                 WHERE action = 'account.password_reset_requested' AND outcome = 'rationed'",
                None,
            )
            .await;
        if rationed[0] == 2 && app.outbox(4).await.len() == 4 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the requests were not all handled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mails_now = app.outbox(4).await;
    assert_eq!(mails_now.len(), 4);
    let resets: Vec<String> = mails_now
        .iter()
        .filter(|m| m.contains("reset-password"))
        .map(|m| token_in_mail(m))
        .collect();
    assert_eq!(resets.len(), 3, "three links per quarter hour, not five");
    let reset = |token: &str| {
        let request = app
            .client
            .post(app.url("/api/v1/auth/password-reset"))
            .json(&json!({"token": token, "new_password": "a new and long passphrase"}));
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(reset(&resets[0]).await, 204);
    assert_eq!(
        reset(&resets[1]).await,
        400,
        "the other links died with the old password"
    );
}

// claim: ID-11
#[tokio::test]
async fn a_reset_link_works_until_30_minutes_and_not_at_them() {
    let app = spawn_app().await;
    app.sign_up("ada@example.com").await;
    app.sign_up("bob@example.com").await;
    let mut tokens = Vec::new();
    for email in ["ada@example.com", "bob@example.com"] {
        app.post_json(
            "/api/v1/auth/password-reset/request",
            &json!({ "email": email }),
        )
        .await;
        let token = loop {
            let mails = app.outbox(1).await;
            let found = mails
                .iter()
                .find(|m| m.contains("reset-password") && m.contains(&format!("To: {email}")));
            if let Some(mail) = found {
                break token_in_mail(mail);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        tokens.push(token);
    }
    let reset = |token: String| {
        let body = json!({"token": token, "new_password": "a new and long passphrase"});
        let request = app
            .client
            .post(app.url("/api/v1/auth/password-reset"))
            .json(&body);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    app.clock.advance(Duration::from_secs(30 * 60 - 1));
    assert_eq!(
        reset(tokens[0].clone()).await,
        204,
        "alive a second before the limit"
    );
    app.clock.advance(Duration::from_secs(1));
    assert_eq!(reset(tokens[1].clone()).await, 400, "dead at the limit");
    let login = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": "bob@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(login.status(), 200, "bob's password did not change");
}

// claim: ID-10
#[tokio::test]
async fn reset_and_verification_requests_answer_the_same_for_unknown_emails() {
    let app = spawn_app().await;
    app.sign_up("ada@example.com").await;
    app.outbox(1).await;
    for path in [
        "/api/v1/auth/password-reset/request",
        "/api/v1/auth/verify-email/request",
    ] {
        let mut answers = Vec::new();
        for email in ["ada@example.com", "nobody@example.com"] {
            let response = app.post_json(path, &json!({ "email": email })).await;
            answers.push((response.status(), response.text().await.unwrap()));
        }
        assert_eq!(answers[0], answers[1], "{path}");
        assert_eq!(answers[0].0, 202);
    }
    let mails = app.outbox(3).await;
    assert!(mails.iter().all(|m| !m.contains("nobody@example.com")));
}

/// A real SMTP listener: speaks enough of RFC 5321 to accept mail, and hands each
/// message's text to the test.
async fn smtp_sink() -> (std::net::SocketAddr, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (sender, receiver) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let sender = sender.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 sink ESMTP\r\n").await.unwrap();
                let mut message = String::new();
                let mut in_data = false;
                while let Ok(Some(line)) = lines.next_line().await {
                    if in_data {
                        if line == "." {
                            in_data = false;
                            let _ = sender.send(std::mem::take(&mut message));
                            write.write_all(b"250 queued\r\n").await.unwrap();
                        } else {
                            message.push_str(line.strip_prefix('.').unwrap_or(&line));
                            message.push('\n');
                        }
                        continue;
                    }
                    let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" => b"250-sink\r\n250 8BITMIME\r\n",
                        "DATA" => {
                            in_data = true;
                            b"354 go ahead\r\n"
                        }
                        "QUIT" => {
                            write.write_all(b"221 bye\r\n").await.unwrap();
                            break;
                        }
                        _ => b"250 ok\r\n",
                    };
                    write.write_all(reply).await.unwrap();
                }
            });
        }
    });
    (addr, receiver)
}

// claim: ID-13
#[tokio::test]
async fn mail_goes_through_smtp_when_configured() {
    let (addr, mut inbox) = smtp_sink().await;
    let app = spawn_app_with(|s| {
        s.mail.smtp_url = Some(format!("smtp://{addr}").into());
        s.mail.from = "Palisade <security@example.com>".into();
    })
    .await;
    app.sign_up("ada@example.com").await;
    let message = tokio::time::timeout(Duration::from_secs(10), inbox.recv())
        .await
        .expect("a mail within 10 s")
        .unwrap();
    assert!(message.contains("To: ada@example.com"), "{message}");
    assert!(message.contains("From: Palisade <security@example.com>"));
    let token = token_in_mail(&message);
    let response = app
        .post_json("/api/v1/auth/verify-email", &json!({ "token": token }))
        .await;
    assert_eq!(response.status(), 204);
    assert!(app.outbox(0).await.is_empty(), "nothing went to the outbox");
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    palisade::crypto::sha256(bytes).to_vec()
}
