//! Webhooks out (claims HOOK-1 to HOOK-4, the pushed half of APP-6): endpoints, the app's
//! messages and Palisade's own, delivered to a real https receiver on loopback (allowed by
//! `webhooks.allowed_networks`), verified by the Standard Webhooks reference library.

use std::collections::BTreeSet;
use std::path::PathBuf;

use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

use crate::helpers::{spawn_app_with, TestApp};
pub use crate::receiver::{Received, Receiver};
use crate::tenancy::send;

const ENDPOINTS: &str = "/api/v1/webhooks/endpoints";
pub(crate) const MESSAGES: &str = "/api/v1/webhooks/messages";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A server whose deliveries may reach loopback and trust the fixtures' CA.
pub async fn app_with_receivers() -> TestApp {
    spawn_app_with(allow_receivers).await
}

/// The work-order manifest, loopback allowed, the fixtures' CA trusted.
pub(crate) fn allow_receivers(settings: &mut palisade::config::Settings) {
    trust_receivers(settings);
    settings.webhooks.allowed_networks = vec!["127.0.0.1/32".into()];
}

/// The work-order manifest and the fixtures' CA, with the guard as the operator left it.
fn trust_receivers(settings: &mut palisade::config::Settings) {
    settings.access.manifest = Some(crate::manifest::workorders_manifest());
    settings.webhooks.ca_file = Some(fixture("tls-ca.pem"));
}

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    access: &str,
    body: Value,
) -> (u16, Value) {
    send(app, method, path, access, (!body.is_null()).then_some(body)).await
}

/// Registers an endpoint for `types`; answers its id and secret.
pub async fn endpoint(app: &TestApp, access: &str, url: &str, types: &[&str]) -> (String, String) {
    endpoint_on(&app.client, &app.base, access, url, types).await
}

/// [`endpoint`], through the instance at `base`.
pub async fn endpoint_on(
    client: &reqwest::Client,
    base: &str,
    access: &str,
    url: &str,
    types: &[&str],
) -> (String, String) {
    let response = client
        .post(format!("{base}{ENDPOINTS}"))
        .bearer_auth(access)
        .json(&json!({"url": url, "event_types": types, "description": "ops"}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let made: Value = response.json().await.unwrap();
    assert_eq!(status, 201, "{made}");
    (
        made["id"].as_str().unwrap().to_owned(),
        made["secret"].as_str().unwrap().to_owned(),
    )
}

/// A server, a receiver answering 500 to its first `failing` requests, a tenant's owner,
/// and the owner's endpoint to the receiver for `types`.
pub struct SetUp {
    pub app: TestApp,
    pub receiver: Receiver,
    pub owner: crate::helpers::Session,
    pub id: String,
    pub secret: String,
}

pub async fn set_up(failing: usize, types: &[&str]) -> SetUp {
    let app = app_with_receivers().await;
    let receiver = Receiver::start(failing).await;
    let owner = app.signed_in("owner@example.com").await;
    let (id, secret) = endpoint(&app, &owner.access, &receiver.url(), types).await;
    SetUp {
        app,
        receiver,
        owner,
        id,
        secret,
    }
}

/// An endpoint's attempts, newest first.
async fn attempts_of(app: &TestApp, access: &str, endpoint: &str) -> Vec<Value> {
    let (status, attempts) = call(
        app,
        Method::GET,
        &format!("{ENDPOINTS}/{endpoint}/attempts"),
        access,
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{attempts}");
    attempts.as_array().unwrap().clone()
}

/// Runs dispatch rounds until one finds nothing due.
pub async fn dispatch(app: &TestApp) -> usize {
    let mut total = 0;
    loop {
        let done = app.state.webhooks.dispatch_due().await.unwrap();
        if done == 0 {
            return total;
        }
        total += done;
    }
}

/// Verifies deliveries with the npm `standardwebhooks` package; answers each one's type.
pub(crate) async fn verified_by_the_reference_library(
    secret: &str,
    deliveries: &[Received],
) -> Result<Vec<String>, String> {
    let dir = crate::jwks::interop_dir();
    crate::jwks::install_interop_once(&dir).await;
    let file = tempfile::NamedTempFile::new().unwrap();
    let input = json!({
        "secret": secret,
        "deliveries": deliveries.iter().map(|d| json!({"headers": d.headers, "body": d.body})).collect::<Vec<_>>(),
    });
    std::fs::write(file.path(), input.to_string()).unwrap();
    let path = file.path().to_owned();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .current_dir(&dir)
            .arg("verify-webhooks.mjs")
            .arg(path)
            .output()
            .expect("node runs")
    })
    .await
    .unwrap();
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_owned)
            .collect())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

// claim: HOOK-1, HOOK-2, APP-6
#[tokio::test]
async fn deliveries_verify_with_the_standard_webhooks_library_and_carry_no_personal_data() {
    let SetUp {
        app,
        receiver,
        owner,
        secret,
        ..
    } = set_up(
        0,
        &[
            "session.revoked",
            "workorder.status_changed",
            "member.added",
        ],
    )
    .await;
    assert!(secret.starts_with("whsec_"));
    let (_, service) = crate::access::service_credential(&app).await;
    let token = crate::app_events::tenant_token(&app, &service, &owner.tenant).await;
    let (status, sent) = call(
        &app,
        Method::POST,
        MESSAGES,
        &token,
        json!({"event_type": "workorder.status_changed", "payload": {"workorder_id": "wo_1", "status": "done"}}),
    )
    .await;
    assert_eq!(status, 202, "{sent}");
    // Revoke-all announces that every session of the user ended (CAEP session-revoked).
    let (status, _) = call(
        &app,
        Method::POST,
        "/api/v1/auth/revoke-all",
        &owner.access,
        Value::Null,
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(dispatch(&app).await, 2);

    let got = receiver.accepted();
    assert_eq!(got.len(), 2);
    let mut types = verified_by_the_reference_library(&secret, &got)
        .await
        .unwrap();
    types.sort();
    assert_eq!(types, ["session.revoked", "workorder.status_changed"]);
    let message = got
        .iter()
        .find(|d| d.headers["webhook-id"] == sent["id"])
        .unwrap();
    let body: Value = serde_json::from_str(&message.body).unwrap();
    assert_eq!(
        body["data"],
        json!({"workorder_id": "wo_1", "status": "done"})
    );
    let revoked = got
        .iter()
        .find(|d| d.headers["webhook-id"] != sent["id"])
        .unwrap();
    let revoked: Value = serde_json::from_str(&revoked.body).unwrap();
    assert_eq!(revoked["data"]["tenant_id"], owner.tenant);
    assert_eq!(revoked["data"]["session_id"], Value::Null);
    assert!(revoked["data"]["caep_event_type"]
        .as_str()
        .unwrap()
        .ends_with("/session-revoked"));
    for delivery in &got {
        assert!(!delivery.body.contains("owner@example.com") && !delivery.body.contains('@'));
    }
    // Another secret does not verify them.
    let other = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    assert!(verified_by_the_reference_library(other, &got)
        .await
        .is_err());
    // A tampered body does not either.
    let mut tampered = got[0].clone();
    tampered.body = tampered.body.replace("done", "open");
    assert!(verified_by_the_reference_library(&secret, &[tampered])
        .await
        .is_err());
}

// claim: HOOK-1
#[tokio::test]
async fn during_a_secret_rotation_both_secrets_sign_each_delivery() {
    let SetUp {
        app,
        receiver,
        owner,
        id,
        secret: old,
        ..
    } = set_up(0, &["workorder.assigned"]).await;
    let (status, rotated) = call(
        &app,
        Method::POST,
        &format!("{ENDPOINTS}/{id}/rotate-secret"),
        &owner.access,
        json!({"overlap_seconds": 3600}),
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["secret"].as_str().unwrap();
    assert_ne!(new, old);
    let message = json!({"event_type": "workorder.assigned", "payload": {"workorder_id": "wo_2"}});
    call(&app, Method::POST, MESSAGES, &owner.access, message.clone()).await;
    dispatch(&app).await;
    let got = receiver.accepted();
    assert_eq!(got[0].headers["webhook-signature"].split(' ').count(), 2);
    for secret in [old.as_str(), new] {
        verified_by_the_reference_library(secret, &got)
            .await
            .unwrap();
    }
    // Once the overlap has ended, only the new secret signs.
    app.clock.advance(Duration::from_secs(7200));
    let owner = app.login("owner@example.com").await;
    let (status, _) = call(&app, Method::POST, MESSAGES, &owner.access, message).await;
    assert_eq!(status, 202);
    dispatch(&app).await;
    let last = receiver.accepted().pop().unwrap();
    assert_eq!(last.headers["webhook-signature"].split(' ').count(), 1);
}

// claim: HOOK-3
#[tokio::test]
async fn a_receiver_that_fails_for_a_while_gets_every_message_once_after_it_recovers() {
    let SetUp {
        app,
        receiver,
        owner,
        id,
        ..
    } = set_up(6, &["workorder.status_changed"]).await;
    let mut sent = Vec::new();
    for n in 0..3 {
        let (_, message) = call(
            &app,
            Method::POST,
            MESSAGES,
            &owner.access,
            json!({"event_type": "workorder.status_changed", "payload": {"n": n}}),
        )
        .await;
        sent.push(message["id"].as_str().unwrap().to_owned());
    }
    // Attempt 1 fails at once; nothing is retried before its 5 seconds.
    assert_eq!(dispatch(&app).await, 3);
    assert_eq!(dispatch(&app).await, 0);
    app.clock.advance(Duration::from_secs(6));
    assert_eq!(dispatch(&app).await, 3);
    // Attempt 3 waits 5 minutes (and at most a tenth more).
    app.clock.advance(Duration::from_secs(200));
    assert_eq!(dispatch(&app).await, 0);
    app.clock.advance(Duration::from_secs(200));
    assert_eq!(dispatch(&app).await, 3);
    let mut delivered: Vec<String> = receiver
        .accepted()
        .iter()
        .map(|d| d.headers["webhook-id"].clone())
        .collect();
    delivered.sort();
    sent.sort();
    assert_eq!(delivered, sent, "each message once among the successes");
    let (status, attempts) = call(
        &app,
        Method::GET,
        &format!("{ENDPOINTS}/{id}/attempts?limit=100"),
        &owner.access,
        Value::Null,
    )
    .await;
    assert_eq!(status, 200);
    let attempts = attempts.as_array().unwrap();
    assert_eq!(attempts.len(), 9);
    let failed: Vec<&Value> = attempts
        .iter()
        .filter(|a| a["succeeded"] == false)
        .collect();
    assert_eq!(failed.len(), 6);
    assert!(failed
        .iter()
        .all(|a| a["status_code"] == 500 && a["response"] == "receiver down"));
    // The endpoint's run of failures ended with the successes.
    let (_, endpoint) = call(
        &app,
        Method::GET,
        &format!("{ENDPOINTS}/{id}"),
        &owner.access,
        Value::Null,
    )
    .await;
    assert_eq!(endpoint["failing_since"], Value::Null);
    // A manual replay sends one message again, with the same webhook-id.
    let (status, _) = call(
        &app,
        Method::POST,
        &format!("{ENDPOINTS}/{id}/replay"),
        &owner.access,
        json!({"message_id": sent[0]}),
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(dispatch(&app).await, 1);
    assert_eq!(
        receiver.accepted().last().unwrap().headers["webhook-id"],
        sent[0]
    );
}

// claim: HOOK-3
#[tokio::test]
async fn an_endpoint_failing_for_days_is_disabled_audited_and_announced_then_recovered() {
    let app = app_with_receivers().await;
    let down = Receiver::start(usize::MAX).await;
    let watcher = Receiver::start(0).await;
    let owner = app.signed_in("owner@example.com").await;
    let (id, _) = endpoint(&app, &owner.access, &down.url(), &["workorder.assigned"]).await;
    endpoint(
        &app,
        &owner.access,
        &watcher.url(),
        &["webhook_endpoint.disabled"],
    )
    .await;
    let message = json!({"event_type": "workorder.assigned", "payload": {"workorder_id": "wo_3"}});
    let started = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
    call(&app, Method::POST, MESSAGES, &owner.access, message.clone()).await;
    dispatch(&app).await;
    app.clock.advance(Duration::from_secs(5 * 86_400 + 60));
    let owner = app.login("owner@example.com").await;
    let (status, _) = call(&app, Method::POST, MESSAGES, &owner.access, message).await;
    assert_eq!(status, 202);
    dispatch(&app).await;
    let (_, endpoint_now) = call(
        &app,
        Method::GET,
        &format!("{ENDPOINTS}/{id}"),
        &owner.access,
        Value::Null,
    )
    .await;
    assert_eq!(
        (
            endpoint_now["enabled"].clone(),
            endpoint_now["disabled_reason"].clone()
        ),
        (json!(false), json!("failing"))
    );
    let disabled = watcher.accepted();
    assert_eq!(disabled.len(), 1);
    let body: Value = serde_json::from_str(&disabled[0].body).unwrap();
    assert_eq!(
        (body["type"].as_str(), body["data"]["endpoint_id"].as_str()),
        (Some("webhook_endpoint.disabled"), Some(id.as_str()))
    );
    let (_, events) = call(
        &app,
        Method::GET,
        "/api/v1/audit/events?action=webhooks.endpoint_disabled",
        &owner.access,
        Value::Null,
    )
    .await;
    assert_eq!(events["events"][0]["actor_type"], "system", "{events}");
    // Re-enabled, and everything that failed since the outage began is sent again.
    down.fail_next(0);
    let (status, _) = call(
        &app,
        Method::PATCH,
        &format!("{ENDPOINTS}/{id}"),
        &owner.access,
        json!({"enabled": true}),
    )
    .await;
    assert_eq!(status, 200);
    // The first message is still retrying; the second (sent to a disabled endpoint) failed.
    let since = started
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (status, requeued) = call(
        &app,
        Method::POST,
        &format!("{ENDPOINTS}/{id}/recover"),
        &owner.access,
        json!({"since": since}),
    )
    .await;
    assert_eq!(status, 202, "{requeued}");
    assert!(requeued["requeued"].as_u64().unwrap() >= 1);
    dispatch(&app).await;
    assert!(!down.accepted().is_empty());
}

// claim: HOOK-4
#[tokio::test]
async fn private_and_plain_http_urls_are_refused_when_the_operator_allows_none() {
    let app = crate::helpers::spawn_app().await;
    let owner = app.signed_in("owner@example.com").await;
    for url in [
        "https://127.0.0.1:8443/hooks",
        "https://localhost/hooks",
        "https://10.0.0.5/hooks",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]/hooks",
        "https://[::ffff:127.0.0.1]/hooks",
        "http://example.com/hooks",
        "ftp://example.com/hooks",
        "https://user:pass@example.com/hooks",
    ] {
        let (status, error) = call(
            &app,
            Method::POST,
            ENDPOINTS,
            &owner.access,
            json!({"url": url, "event_types": ["member.added"]}),
        )
        .await;
        assert_eq!(status, 422, "{url}: {error}");
        assert_eq!(error["error"]["code"], "invalid_field");
    }
    assert_eq!(app.count_rows("webhook_endpoints").await, 0);
}

// claim: HOOK-4
#[tokio::test]
async fn the_guard_runs_again_at_delivery_on_the_connection_made() {
    // Registered where loopback is allowed; delivered by an instance that allows none: the
    // delivery is refused, though the registration was fine.
    let SetUp {
        app,
        receiver,
        owner,
        id,
        ..
    } = set_up(0, &["workorder.assigned"]).await;
    let strict = app.spawn_sibling_with(trust_receivers).await;
    call(
        &app,
        Method::POST,
        MESSAGES,
        &owner.access,
        json!({"event_type": "workorder.assigned", "payload": {}}),
    )
    .await;
    assert_eq!(strict.state.webhooks.dispatch_due().await.unwrap(), 1);
    assert!(receiver.received().is_empty());
    let attempts = attempts_of(&app, &owner.access, &id).await;
    assert_eq!(attempts[0]["succeeded"], false);
    assert!(
        attempts[0]["response"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1"),
        "{attempts:?}"
    );
    assert!(attempts[0].get("status_code").is_none());
    strict.stop().await;
}

// claim: HOOK-3
#[tokio::test]
async fn two_instances_sharing_the_outbox_deliver_each_message_exactly_once() {
    let SetUp {
        app,
        receiver,
        owner,
        ..
    } = set_up(0, &["workorder.assigned"]).await;
    let sibling = app.spawn_sibling_with(allow_receivers).await;
    for n in 0..40 {
        call(
            &app,
            Method::POST,
            MESSAGES,
            &owner.access,
            json!({"event_type": "workorder.assigned", "payload": {"n": n}}),
        )
        .await;
    }
    let (a, b) = tokio::join!(
        async {
            let mut done = 0;
            for _ in 0..5 {
                done += app.state.webhooks.dispatch_due().await.unwrap();
            }
            done
        },
        async {
            let mut done = 0;
            for _ in 0..5 {
                done += sibling.state.webhooks.dispatch_due().await.unwrap();
            }
            done
        }
    );
    assert_eq!(a + b, 40);
    let mut ids: Vec<String> = receiver
        .accepted()
        .iter()
        .map(|d| d.headers["webhook-id"].clone())
        .collect();
    assert_eq!(ids.len(), 40);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 40, "no message twice");
    sibling.stop().await;
}

// claim: HOOK-2
#[tokio::test]
async fn bad_endpoints_and_messages_are_refused_and_nothing_is_written() {
    let app = app_with_receivers().await;
    let receiver = Receiver::start(0).await;
    let tenant = crate::tenancy::staffed_tenant(&app).await;
    let owner = &tenant["owner"];
    let url = receiver.url();
    for (body, why) in [
        (
            json!({"url": url, "event_types": ["no.such_event"]}),
            "unknown event type",
        ),
        (json!({"url": url, "event_types": []}), "no event type"),
        (
            json!({"url": url, "event_types": ["member.added"], "extra": 1}),
            "unknown field",
        ),
        (
            json!({"url": url, "event_types": ["member.added"], "description": "x".repeat(501)}),
            "long description",
        ),
    ] {
        let (status, error) = call(&app, Method::POST, ENDPOINTS, &owner.access, body).await;
        assert_eq!(status, 422, "{why}: {error}");
    }
    assert_eq!(app.count_rows("webhook_endpoints").await, 0);
    for (body, why) in [
        (
            json!({"event_type": "member.added", "payload": {}}),
            "Palisade's own type",
        ),
        (
            json!({"event_type": "workorder.exploded", "payload": {}}),
            "undeclared type",
        ),
        (
            json!({"event_type": "workorder.assigned", "payload": [1]}),
            "not an object",
        ),
        (
            json!({"event_type": "workorder.assigned", "payload": {"x": "y".repeat(70_000)}}),
            "too large",
        ),
    ] {
        let (status, error) = call(&app, Method::POST, MESSAGES, &owner.access, body).await;
        assert!(status == 422 || status == 413, "{why}: {status} {error}");
    }
    assert_eq!(app.count_rows("webhook_messages").await, 0);
    // Members below Admin may not manage endpoints.
    let (status, _) = call(
        &app,
        Method::GET,
        ENDPOINTS,
        &tenant["manager"].access,
        Value::Null,
    )
    .await;
    assert_eq!(status, 403);
}

// claim: HOOK-2
#[tokio::test]
async fn an_idempotency_key_sends_a_message_once() {
    let SetUp {
        app,
        receiver,
        owner,
        ..
    } = set_up(0, &["workorder.assigned"]).await;
    let post = |body: Value| {
        app.client
            .post(app.url(MESSAGES))
            .bearer_auth(&owner.access)
            .header("idempotency-key", "order-77-assigned")
            .json(&body)
            .send()
    };
    let body = json!({"event_type": "workorder.assigned", "payload": {"workorder_id": "wo_77"}});
    let first = post(body.clone()).await.unwrap();
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    let again = post(body).await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap()["id"], first["id"]);
    let other =
        post(json!({"event_type": "workorder.assigned", "payload": {"workorder_id": "wo_78"}}))
            .await
            .unwrap();
    assert_eq!(other.status(), 409);
    dispatch(&app).await;
    assert_eq!(receiver.accepted().len(), 1);
}

// claim: HOOK-1, TEN-2
#[tokio::test]
async fn another_tenants_endpoints_are_not_found() {
    let app = app_with_receivers().await;
    let receiver = Receiver::start(0).await;
    let owner = app.signed_in("owner@example.com").await;
    let stranger = app.signed_in("stranger@example.com").await;
    let (id, _) = endpoint(&app, &owner.access, &receiver.url(), &["member.added"]).await;
    for (method, path, body) in [
        (Method::GET, format!("{ENDPOINTS}/{id}"), Value::Null),
        (
            Method::PATCH,
            format!("{ENDPOINTS}/{id}"),
            json!({"enabled": false}),
        ),
        (
            Method::GET,
            format!("{ENDPOINTS}/{id}/attempts"),
            Value::Null,
        ),
        (
            Method::POST,
            format!("{ENDPOINTS}/{id}/rotate-secret"),
            json!({}),
        ),
        (Method::DELETE, format!("{ENDPOINTS}/{id}"), Value::Null),
    ] {
        let (status, _) = call(&app, method.clone(), &path, &stranger.access, body).await;
        assert_eq!(status, 404, "{method} {path}");
    }
    let (_, listed) = call(&app, Method::GET, ENDPOINTS, &stranger.access, Value::Null).await;
    assert_eq!(listed, json!([]));
}

// claim: HOOK-3
#[tokio::test]
async fn a_dispatcher_killed_between_sending_and_recording_loses_nothing() {
    let SetUp {
        app,
        receiver,
        owner,
        id,
        ..
    } = set_up(0, &["workorder.assigned"]).await;
    let (_, sent) = call(
        &app,
        Method::POST,
        MESSAGES,
        &owner.access,
        json!({"event_type": "workorder.assigned", "payload": {"workorder_id": "wo_9"}}),
    )
    .await;
    // The receiver takes the request and hangs; the process dies before it records.
    receiver.stall(true);
    let state = app.state.clone();
    let round = tokio::spawn(async move { state.webhooks.dispatch_due().await });
    for _ in 0..500 {
        if !receiver.received().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(receiver.received().len(), 1, "the request was sent");
    round.abort();
    let _ = round.await;
    receiver.stall(false);
    // Its lease holds the delivery for a minute; then another round sends it again, with
    // the same webhook-id for the receiver to drop the duplicate.
    assert_eq!(dispatch(&app).await, 0);
    app.clock.advance(Duration::from_secs(61));
    assert_eq!(dispatch(&app).await, 1);
    let got = receiver.received();
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|r| r.headers["webhook-id"] == sent["id"]));
    let owner = app.login("owner@example.com").await;
    let attempts = attempts_of(&app, &owner.access, &id).await;
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0]["succeeded"], true);
}

/// The real `palisade serve` on `app`'s database and data directory, its dispatcher running
/// on the real clock, delivering to loopback receivers.
fn serve_beside(app: &TestApp, dir: &std::path::Path) -> crate::process::Server {
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("palisade.toml");
    let settings = format!(
        "[access]\nmanifest = {:?}\n[webhooks]\nallowed_networks = [\"127.0.0.1/32\"]\nca_file = {:?}\n",
        crate::manifest::workorders_manifest(),
        fixture("tls-ca.pem"),
    );
    std::fs::write(&config, settings).unwrap();
    let data_dir = app.data_dir();
    crate::process::start(
        dir,
        &app.db.env(),
        &[
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    )
}

/// Sends `count` messages through `app`; answers their ids.
async fn send_messages(app: &TestApp, access: &str, count: usize) -> BTreeSet<String> {
    let mut sent = BTreeSet::new();
    for n in 0..count {
        let (status, message) = call(
            app,
            Method::POST,
            MESSAGES,
            access,
            json!({"event_type": "workorder.assigned", "payload": {"workorder_id": format!("wo_{n}")}}),
        )
        .await;
        assert_eq!(status, 202, "{message}");
        sent.insert(message["id"].as_str().unwrap().to_owned());
    }
    sent
}

/// Waits (real time: the processes' dispatchers run on it) until `done`, at most 30 s.
async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !done().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn webhook_ids(deliveries: &[Received]) -> Vec<String> {
    deliveries
        .iter()
        .map(|d| d.headers["webhook-id"].clone())
        .collect()
}

// claim: HOOK-3
#[tokio::test]
async fn a_server_process_killed_mid_dispatch_loses_nothing() {
    let SetUp {
        app,
        receiver,
        owner,
        id,
        ..
    } = set_up(0, &["workorder.assigned"]).await;
    // The receiver takes every request and hangs: the process has sent, not recorded.
    receiver.stall(true);
    // Written first, so the process's first round claims all five at once.
    let sent = send_messages(&app, &owner.access, 5).await;
    let dir = tempfile::tempdir().unwrap();
    let server = serve_beside(&app, dir.path());
    until("the process sent all five", async || {
        webhook_ids(&receiver.received())
            .into_iter()
            .collect::<BTreeSet<_>>()
            .len()
            == 5
    })
    .await;
    server.kill();
    receiver.stall(false);
    assert_eq!(
        dispatch(&app).await,
        0,
        "the dead process's leases still hold"
    );
    // Past its 60-second leases (the process claimed on the real clock, after this app's
    // clock started), another instance sends each again, with the same webhook-id.
    app.clock.advance(Duration::from_secs(120));
    assert_eq!(dispatch(&app).await, 5);
    let delivered: BTreeSet<String> = webhook_ids(&receiver.accepted()).into_iter().collect();
    assert_eq!(delivered, sent, "every message arrived");
    let owner = app.login("owner@example.com").await;
    // One success each. A kept-alive connection the stalled receiver let go may have
    // failed an attempt before the kill: recorded as failed, and retried.
    let succeeded: Vec<String> = attempts_of(&app, &owner.access, &id)
        .await
        .iter()
        .filter(|a| a["succeeded"] == true)
        .map(|a| a["message_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(succeeded.len(), 5, "{succeeded:?}");
    assert_eq!(succeeded.into_iter().collect::<BTreeSet<_>>(), sent);
}

// claim: HOOK-3
#[tokio::test]
async fn two_server_processes_sharing_the_outbox_deliver_each_message_exactly_once() {
    let SetUp {
        app,
        receiver,
        owner,
        ..
    } = set_up(0, &["workorder.assigned"]).await;
    let dir = tempfile::tempdir().unwrap();
    let one = serve_beside(&app, &dir.path().join("one"));
    let two = serve_beside(&app, &dir.path().join("two"));
    let sent = send_messages(&app, &owner.access, 40).await;
    // A delivery is recorded after it was sent: once all are, any second send has arrived.
    until("every delivery is recorded", async || {
        app.inspect::<i64>(
            "SELECT count(*) FROM webhook_deliveries WHERE state = 'succeeded'",
            None,
        )
        .await[0]
            == 40
    })
    .await;
    one.kill();
    two.kill();
    let mut delivered = webhook_ids(&receiver.received());
    delivered.sort();
    assert_eq!(
        delivered,
        sent.into_iter().collect::<Vec<_>>(),
        "each exactly once"
    );
    assert_eq!(app.count_rows("webhook_attempts").await, 40);
}

// claim: HOOK-3
#[tokio::test]
async fn a_receiver_that_hangs_does_not_hold_back_deliveries_to_others() {
    let SetUp {
        app,
        receiver: hanging,
        owner,
        ..
    } = set_up(0, &["workorder.assigned"]).await;
    let healthy = Receiver::start(0).await;
    endpoint(
        &app,
        &owner.access,
        &healthy.url(),
        &["workorder.status_changed"],
    )
    .await;
    hanging.stall(true);
    let dispatcher = tokio::spawn(app.state.webhooks.clone().run());
    send_messages(&app, &owner.access, 1).await;
    until("the hanging receiver holds its request", async || {
        hanging.received().len() == 1
    })
    .await;
    let started = std::time::Instant::now();
    let (status, _) = call(
        &app,
        Method::POST,
        MESSAGES,
        &owner.access,
        json!({"event_type": "workorder.status_changed", "payload": {"workorder_id": "wo_1"}}),
    )
    .await;
    assert_eq!(status, 202);
    until("the healthy receiver gets its message", async || {
        healthy.accepted().len() == 1
    })
    .await;
    // Not behind the hanging round, which waits out its 15-second timeout.
    assert!(started.elapsed() < Duration::from_secs(10));
    dispatcher.abort();
}

// claim: HOOK-3
#[tokio::test]
async fn a_messages_history_is_forgotten_after_the_retention_window_but_a_pending_delivery_never_is(
) {
    let SetUp {
        app,
        receiver,
        owner,
        ..
    } = set_up(1, &["workorder.assigned"]).await;
    send_messages(&app, &owner.access, 2).await;
    // The receiver refuses the first request: one message is delivered, one stays pending.
    assert_eq!(dispatch(&app).await, 2);
    assert_eq!(receiver.accepted().len(), 1);
    assert_eq!(history_rows(&app).await, (2, 2, 2));
    app.clock.advance(Duration::from_secs(29 * 86_400));
    assert_eq!(palisade::app::prune_webhooks(&app.state).await.unwrap(), 0);
    app.clock.advance(Duration::from_secs(2 * 86_400));
    assert_eq!(palisade::app::prune_webhooks(&app.state).await.unwrap(), 3);
    assert_eq!(
        history_rows(&app).await,
        (1, 1, 0),
        "the pending message and its delivery stay"
    );
    assert_eq!(dispatch(&app).await, 1);
    assert_eq!(receiver.accepted().len(), 2, "and it is still delivered");
}

/// Messages, deliveries and attempts, counted past any tenant filter.
async fn history_rows(app: &TestApp) -> (i64, i64, i64) {
    (
        app.count_rows("webhook_messages").await,
        app.count_rows("webhook_deliveries").await,
        app.count_rows("webhook_attempts").await,
    )
}
