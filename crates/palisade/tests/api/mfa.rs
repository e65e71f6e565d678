//! TOTP: enrolment, sign-in with a code or a recovery code, replay refusal, removal, and a
//! tenant that requires a second factor of every member.

use std::time::Duration;

use palisade::identity::mfa::{hotp, time_step};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, Session, TestApp, PASSWORD};
use crate::sessions::add_membership;

pub(crate) fn base32_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut buffer, mut bits, mut out) = (0u64, 0u32, Vec::new());
    for c in text.chars() {
        buffer = (buffer << 5) | ALPHABET.find(c).unwrap() as u64;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    out
}

/// The code an authenticator app shows now.
pub fn code(app: &TestApp, secret: &[u8]) -> String {
    format!("{:06}", hotp(secret, time_step(app.clock_now()) as u64, 6))
}

/// Enrols and confirms TOTP for a signed-in session; returns the secret and recovery codes.
pub async fn enable_totp(app: &TestApp, session: &Session) -> (Vec<u8>, Vec<String>) {
    let wrong = app
        .post_as(
            "/api/v1/auth/mfa/totp",
            &session.access,
            Some(&json!({"password": "not the password"})),
        )
        .await;
    assert_eq!(wrong.status(), 401, "the password is asked again");
    let response = app
        .post_as(
            "/api/v1/auth/mfa/totp",
            &session.access,
            Some(&json!({ "password": PASSWORD })),
        )
        .await;
    assert_eq!(response.status(), 200);
    let enrolment: Value = response.json().await.unwrap();
    let uri = enrolment["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/palisade:"), "{uri}");
    let secret = base32_decode(enrolment["secret"].as_str().unwrap());
    assert_eq!(secret.len(), 20);
    let wrong = app
        .post_as(
            "/api/v1/auth/mfa/totp/confirm",
            &session.access,
            Some(&json!({"code": "000000"})),
        )
        .await;
    assert_eq!(wrong.status(), 422);
    let response = app
        .post_as(
            "/api/v1/auth/mfa/totp/confirm",
            &session.access,
            Some(&json!({"code": code(app, &secret)})),
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let codes: Vec<String> = body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    (secret, codes)
}

async fn login_with(app: &TestApp, extra: Value) -> reqwest::Response {
    let mut body = json!({"email": "ada@example.com", "password": PASSWORD});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    app.post_json("/api/v1/auth/login", &body).await
}

// claim: ID-12
#[tokio::test]
async fn totp_guards_sign_in_and_a_code_is_never_accepted_twice() {
    let app = spawn_app().await;
    let session = app.signed_in("ada@example.com").await;
    let (secret, recovery) = enable_totp(&app, &session).await;
    assert_eq!(recovery.len(), 10);

    let without = login_with(&app, json!({})).await;
    assert_eq!(without.status(), 401);
    assert!(without.text().await.unwrap().contains("mfa_required"));

    // The confirmation used this window's code: it cannot sign in.
    let replay = login_with(&app, json!({"totp": code(&app, &secret)})).await;
    assert_eq!(replay.status(), 401);
    assert!(replay.text().await.unwrap().contains("invalid_mfa_code"));

    app.clock.advance(Duration::from_secs(30));
    let fresh = code(&app, &secret);
    let signed_in = login_with(&app, json!({"totp": fresh})).await;
    assert_eq!(signed_in.status(), 200);
    let again = login_with(&app, json!({"totp": fresh})).await;
    assert_eq!(
        again.status(),
        401,
        "a used code is refused within its window"
    );

    let with_recovery =
        login_with(&app, json!({"recovery_code": recovery[0].to_lowercase()})).await;
    assert_eq!(with_recovery.status(), 200, "recovery codes ignore case");
    let reused = login_with(&app, json!({"recovery_code": recovery[0]})).await;
    assert_eq!(reused.status(), 401, "each recovery code works once");

    // Recovery codes are stored hashed only.
    let stored: Vec<Vec<u8>> = app
        .inspect("SELECT code_hash FROM recovery_codes", None)
        .await;
    assert_eq!(stored.len(), 10);
    assert!(stored.iter().all(|hash| hash.len() == 32));
}

// claim: ID-12
#[tokio::test]
async fn totp_is_removed_only_with_a_fresh_code_and_both_changes_are_audited() {
    let app = spawn_app().await;
    let session = app.signed_in("ada@example.com").await;
    let (secret, _) = enable_totp(&app, &session).await;
    let disable = |code: String| {
        let request = app
            .client
            .post(app.url("/api/v1/auth/mfa/totp/disable"))
            .bearer_auth(&session.access)
            .json(&json!({ "code": code }));
        async move { request.send().await.unwrap() }
    };
    assert_eq!(
        disable(code(&app, &secret)).await.status(),
        422,
        "the confirmation's code is spent"
    );
    app.clock.advance(Duration::from_secs(30));
    assert_eq!(disable(code(&app, &secret)).await.status(), 204);
    assert_eq!(login_with(&app, json!({})).await.status(), 200);
    let policy = app
        .client
        .put(app.url("/api/v1/tenant/mfa-policy"))
        .bearer_auth(&session.access)
        .json(&json!({"required": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        policy.status(),
        409,
        "without a factor the session no longer counts as MFA"
    );
    let actions: Vec<String> = app.inspect("SELECT action FROM audit_events", None).await;
    assert!(actions.contains(&"mfa.totp_enabled".to_owned()));
    assert!(actions.contains(&"mfa.totp_disabled".to_owned()));
}

// claim: ID-12
#[tokio::test]
async fn a_tenant_requiring_mfa_holds_members_without_it_to_enrolment() {
    let app = spawn_app().await;
    let owner = app.signed_in("ada@example.com").await;
    app.signed_in("bob@example.com").await;
    add_membership(&app, "bob@example.com", &owner.tenant, "member").await;

    let policy = |access: &str, required: bool| {
        let request = app
            .client
            .put(app.url("/api/v1/tenant/mfa-policy"))
            .bearer_auth(access)
            .json(&json!({ "required": required }));
        async move { request.send().await.unwrap() }
    };
    assert_eq!(
        policy(&owner.access, true).await.status(),
        409,
        "not before the owner uses a second factor"
    );
    let (_secret, _) = enable_totp(&app, &owner).await;
    assert_eq!(policy(&owner.access, true).await.status(), 204);

    let bob = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": "bob@example.com", "password": PASSWORD, "tenant_id": owner.tenant}),
        )
        .await;
    let bob = Session::from_response(bob).await;
    let me: Value = app
        .get_as("/api/v1/me", &bob.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["mfa_enrollment_required"], true);
    let held = app
        .post_as(
            "/api/v1/auth/password",
            &bob.access,
            Some(&json!({"current_password": "wrong but irrelevant", "new_password": "another long passphrase"})),
        )
        .await;
    assert_eq!(held.status(), 403);
    assert!(held
        .text()
        .await
        .unwrap()
        .contains("mfa_enrollment_required"));
    // Refreshing does not escape the policy.
    let refreshed = Session::from_response(app.refresh(&bob.refresh).await).await;
    let held = app.put_policy_as(&refreshed.access).await;
    assert_eq!(held, (403, "mfa_enrollment_required".to_owned()));

    // Enrolling lifts the hold for this very session.
    let (_, _) = enable_totp(&app, &refreshed).await;
    let me: Value = app
        .get_as("/api/v1/me", &refreshed.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["mfa_enrollment_required"], false);
    let as_member = app.put_policy_as(&refreshed.access).await;
    assert_eq!(
        as_member,
        (403, "forbidden".to_owned()),
        "now refused for the role, not for MFA"
    );
}

// claim: ID-12, ID-9
#[tokio::test]
async fn codes_are_limited_per_user_whatever_the_address() {
    let app = spawn_app_with(|s| s.http.trusted_proxies = vec!["127.0.0.1/32".into()]).await;
    let session = app.signed_in("ada@example.com").await;
    let (secret, _) = enable_totp(&app, &session).await;
    app.clock.advance(Duration::from_secs(30));
    let login_from = |address: String, code: String| {
        let request = app
            .client
            .post(app.url("/api/v1/auth/login"))
            .header("x-forwarded-for", address)
            .json(&json!({"email": "ada@example.com", "password": PASSWORD, "totp": code}));
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let wrong = if code(&app, &secret) == "000000" {
        "111111"
    } else {
        "000000"
    };
    // The wrong code tried at confirmation counts too: with four here, five in all.
    for n in 0..4 {
        assert_eq!(
            login_from(format!("198.51.100.{n}"), wrong.into()).await,
            401
        );
    }
    assert_eq!(
        login_from("203.0.113.7".into(), code(&app, &secret)).await,
        429,
        "six digits are not guessable from many addresses"
    );
}

impl TestApp {
    /// Tries to lift the tenant's MFA policy; returns the status and the error code.
    async fn put_policy_as(&self, access: &str) -> (u16, String) {
        let response = self
            .client
            .put(self.url("/api/v1/tenant/mfa-policy"))
            .bearer_auth(access)
            .json(&json!({"required": false}))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        (
            status,
            body["error"]["code"].as_str().unwrap_or("").to_owned(),
        )
    }
}
