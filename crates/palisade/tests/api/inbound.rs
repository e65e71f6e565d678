//! Webhooks in (claim HOOK-5): a Stripe-style and a Standard Webhooks source, signed by
//! their senders' own libraries (npm `stripe`, `standardwebhooks`), verified against the
//! raw body within 5 minutes, recorded once per event id and handed on to the source's
//! tenant as messages signed by Palisade.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{assert_error_shape, Instance, TestApp};
use crate::webhooks::{app_with_receivers, dispatch, endpoint_on, Receiver};
use palisade::config::{InboundScheme, InboundSource};

const STRIPE_SECRET: &str = "whsec_billing_provider_test_secret_0123456789";
const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Request headers, as a signer prints them.
type Headers = Vec<(String, String)>;

fn inbound(path: &str) -> String {
    format!("/api/v1/webhooks/inbound/{path}")
}

/// The deployment, a tenant, and a sibling instance whose `webhooks.inbound` names the
/// tenant for a Stripe-style `billing` and a Standard Webhooks `mail` source (sources are
/// settings, and the tenant must exist first); its owner's endpoint receives both.
struct Inbound {
    app: TestApp,
    edge: Instance,
    receiver: Receiver,
    secret: String,
}

async fn set_up() -> Inbound {
    let app = app_with_receivers().await;
    let owner = app.signed_in("owner@example.com").await;
    let tenant = owner.tenant.clone();
    let edge = app
        .spawn_sibling_with(|settings| {
            crate::webhooks::allow_receivers(settings);
            for (name, scheme, secret) in [
                ("billing", InboundScheme::Stripe, STRIPE_SECRET),
                ("mail", InboundScheme::Standard, STANDARD_SECRET),
            ] {
                settings.webhooks.inbound.insert(
                    name.to_owned(),
                    InboundSource {
                        scheme,
                        secret: secret.to_owned().into(),
                        tenant: tenant.clone(),
                    },
                );
            }
            settings.validate().expect("inbound settings are valid");
        })
        .await;
    let receiver = Receiver::start(0).await;
    let (_, secret) = endpoint_on(
        &edge.client,
        &edge.base,
        &owner.access,
        &receiver.url(),
        &["inbound.billing", "inbound.mail"],
    )
    .await;
    Inbound {
        app,
        edge,
        receiver,
        secret,
    }
}

/// Headers the sender's own library signs `body` with, at unix second `timestamp`.
async fn signed_by_the_senders_library(
    scheme: &str,
    secret: &str,
    id: &str,
    timestamp: i64,
    body: &str,
) -> Headers {
    let dir = crate::jwks::interop_dir();
    crate::jwks::install_interop_once(&dir).await;
    let file = tempfile::NamedTempFile::new().unwrap();
    let input =
        json!({"scheme": scheme, "secret": secret, "id": id, "timestamp": timestamp, "body": body});
    std::fs::write(file.path(), input.to_string()).unwrap();
    let mut command = std::process::Command::new("node");
    command
        .current_dir(&dir)
        .arg("sign-webhook.mjs")
        .arg(file.path());
    let printed = crate::helpers::run_outside(command).await;
    let headers: serde_json::Map<String, Value> = serde_json::from_str(&printed).unwrap();
    headers
        .into_iter()
        .map(|(name, value)| (name, value.as_str().unwrap().to_owned()))
        .collect()
}

async fn post(
    edge: &Instance,
    source: &str,
    headers: &[(String, String)],
    body: &str,
) -> reqwest::Response {
    let mut request = edge
        .client
        .post(edge.url(&inbound(source)))
        .header("content-type", "application/json; charset=utf-8")
        .body(body.to_owned());
    for (name, value) in headers {
        request = request.header(name, value);
    }
    request.send().await.unwrap()
}

fn now(app: &TestApp) -> i64 {
    use palisade::clock::Clock;
    app.clock.now().unix_timestamp()
}

// claim: HOOK-5
#[tokio::test]
async fn a_stripe_event_is_verified_handed_on_signed_by_palisade_and_its_replays_processed_once() {
    let Inbound {
        app,
        edge,
        receiver,
        secret,
    } = set_up().await;
    let event =
        json!({"id": "evt_1Pq", "type": "invoice.paid", "data": {"object": {"customer": "cus_9"}}});
    let body = event.to_string();
    let headers =
        signed_by_the_senders_library("stripe", STRIPE_SECRET, "", now(&app), &body).await;
    let first = post(&edge, "billing", &headers, &body).await;
    assert_eq!(first.status(), 202);
    let request_id = first.headers()["x-request-id"].to_str().unwrap().to_owned();
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["duplicate"], false);

    // The provider retries: the same event, signed again a minute later, and a burst of
    // the same request at once — each acknowledged, none handed on again.
    app.clock.advance(std::time::Duration::from_secs(60));
    let resigned =
        signed_by_the_senders_library("stripe", STRIPE_SECRET, "", now(&app), &body).await;
    let burst = (0..6).map(|n| {
        let headers = if n % 2 == 0 { &headers } else { &resigned };
        post(&edge, "billing", headers, &body)
    });
    for replay in futures_util::future::join_all(burst).await {
        assert_eq!(replay.status(), 200);
        let replay: Value = replay.json().await.unwrap();
        assert_eq!(
            replay,
            json!({"message_id": first["message_id"], "duplicate": true})
        );
    }
    assert_eq!(app.count_rows("webhook_inbound_events").await, 1);
    assert_eq!(app.count_rows("webhook_messages").await, 1);

    assert_eq!(dispatch(&app).await, 1);
    let got = receiver.accepted();
    assert_eq!(got.len(), 1);
    let types = crate::webhooks::verified_by_the_reference_library(&secret, &got)
        .await
        .unwrap();
    assert_eq!(types, ["inbound.billing"]);
    assert_eq!(got[0].headers["webhook-id"], first["message_id"]);
    let delivered: Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(
        delivered["data"],
        json!({"source": "billing", "event_id": "evt_1Pq", "payload": event})
    );
    // Audited once, by the system, under the request that brought it.
    let audited: Vec<String> = app
        .inspect(
            "SELECT actor_type || ' ' || request_id FROM audit_events
             WHERE action = 'webhooks.inbound_received'",
            None,
        )
        .await;
    assert_eq!(audited, [format!("system {request_id}")]);
}

// claim: HOOK-5
#[tokio::test]
async fn a_standard_webhooks_sender_is_verified_and_deduplicated_by_its_message_id() {
    let Inbound {
        app,
        edge,
        receiver,
        ..
    } = set_up().await;
    let body = json!({"type": "email.bounced", "data": {"message": "m_1"}}).to_string();
    let headers =
        signed_by_the_senders_library("standard", STANDARD_SECRET, "msg_a1", now(&app), &body)
            .await;
    assert_eq!(post(&edge, "mail", &headers, &body).await.status(), 202);
    assert_eq!(post(&edge, "mail", &headers, &body).await.status(), 200);
    // Another message id is another event.
    let other =
        signed_by_the_senders_library("standard", STANDARD_SECRET, "msg_a2", now(&app), &body)
            .await;
    assert_eq!(post(&edge, "mail", &other, &body).await.status(), 202);
    assert_eq!(dispatch(&app).await, 2);
    let ids: Vec<String> = receiver
        .accepted()
        .iter()
        .map(|d| serde_json::from_str::<Value>(&d.body).unwrap()["data"]["event_id"].to_string())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&"\"msg_a1\"".to_owned()) && ids.contains(&"\"msg_a2\"".to_owned()));
}

// claim: HOOK-5
#[tokio::test]
async fn forged_stale_malformed_and_oversized_inbound_requests_are_refused_and_write_nothing() {
    let Inbound { app, edge, .. } = set_up().await;
    let body = json!({"id": "evt_2", "type": "charge.refunded"}).to_string();
    let at = now(&app);
    let good = signed_by_the_senders_library("stripe", STRIPE_SECRET, "", at, &body).await;
    let forged = signed_by_the_senders_library(
        "stripe",
        "whsec_somebody_elses_secret_0123456789",
        "",
        at,
        &body,
    )
    .await;
    let stale = signed_by_the_senders_library("stripe", STRIPE_SECRET, "", at - 301, &body).await;
    let early = signed_by_the_senders_library("stripe", STRIPE_SECRET, "", at + 301, &body).await;
    let standard_stale =
        signed_by_the_senders_library("standard", STANDARD_SECRET, "msg_b1", at - 600, &body).await;
    let not_json = "{\"id\": \"evt_3\"";
    let not_json_signed =
        signed_by_the_senders_library("stripe", STRIPE_SECRET, "", at, not_json).await;
    let no_id = json!({"type": "charge.refunded"}).to_string();
    let no_id_signed = signed_by_the_senders_library("stripe", STRIPE_SECRET, "", at, &no_id).await;
    let huge = json!({"id": "evt_4", "pad": "x".repeat(70 * 1024)}).to_string();
    let huge_signed = signed_by_the_senders_library("stripe", STRIPE_SECRET, "", at, &huge).await;
    let before = app.table_counts().await;

    let header = |name: &str, value: &str| vec![(name.to_owned(), value.to_owned())];
    let body = body.as_str();
    let cases: Vec<(&str, &str, Headers, &str, u16, &str)> = vec![
        ("forged", "billing", forged, body, 400, "invalid_signature"),
        ("stale", "billing", stale, body, 400, "invalid_signature"),
        (
            "from the future",
            "billing",
            early,
            body,
            400,
            "invalid_signature",
        ),
        (
            "standard stale",
            "mail",
            standard_stale,
            body,
            400,
            "invalid_signature",
        ),
        (
            "unsigned",
            "billing",
            Vec::new(),
            body,
            400,
            "invalid_signature",
        ),
        (
            "malformed header",
            "billing",
            header("stripe-signature", "t=now,v1=zz"),
            body,
            400,
            "invalid_signature",
        ),
        (
            "another source's scheme",
            "mail",
            good.clone(),
            body,
            400,
            "invalid_signature",
        ),
        (
            "tampered body",
            "billing",
            good.clone(),
            "{\"id\":\"evt_2\",\"type\":\"charge.succeeded\"}",
            400,
            "invalid_signature",
        ),
        (
            "unknown source",
            "payroll",
            good.clone(),
            body,
            404,
            "not_found",
        ),
        (
            "not JSON",
            "billing",
            not_json_signed,
            not_json,
            400,
            "malformed_json",
        ),
        (
            "no event id",
            "billing",
            no_id_signed,
            &no_id,
            422,
            "invalid_field",
        ),
        (
            "over 64 KiB",
            "billing",
            huge_signed,
            &huge,
            413,
            "payload_too_large",
        ),
    ];
    for (case, source, headers, body, status, code) in cases {
        let response = post(&edge, source, &headers, body).await;
        assert_eq!(
            assert_error_shape(response).await,
            (status, code.to_owned()),
            "{case}"
        );
    }
    let text = edge
        .client
        .post(edge.url(&inbound("billing")))
        .header("content-type", "text/plain")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(assert_error_shape(text).await.0, 415);

    // The clock moves past the tolerance after signing: a good signature goes stale.
    app.clock.advance(std::time::Duration::from_secs(360));
    let late = post(&edge, "billing", &good, body).await;
    assert_eq!(assert_error_shape(late).await.1, "invalid_signature");
    assert_eq!(app.table_counts().await, before, "nothing was written");
}

// claim: HOOK-5
#[tokio::test]
async fn inbound_event_types_are_listed_and_only_a_configured_source_may_be_subscribed() {
    let Inbound { app, edge, .. } = set_up().await;
    let owner = app.login("owner@example.com").await;
    let listed: Value = edge
        .client
        .get(edge.url("/api/v1/webhooks/event-types"))
        .bearer_auth(&owner.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let inbound: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["source"] == "inbound")
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(inbound, ["inbound.billing", "inbound.mail"]);
    let refused = edge
        .client
        .request(Method::POST, edge.url("/api/v1/webhooks/endpoints"))
        .bearer_auth(&owner.access)
        .json(&json!({"url": "https://hooks.example.com/x", "event_types": ["inbound.payroll"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        assert_error_shape(refused).await,
        (422, "invalid_field".to_owned())
    );
}
