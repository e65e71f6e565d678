//! The app's own events in the tenant's chain (claim APP-4) and the tenant tokens its
//! background work acts with (APP-8), on both backends.

use serde_json::{json, Value};

use crate::access::{post_with, service_credential};
use crate::audit::{export, first_problem, published_key, verdict, TENANT_ROWS};
use crate::helpers::{Session, TestApp};
use crate::platform::{after_external_change, as_operator};
use crate::tenancy::user_id_of;
use palisade::audit::export::verify_export;

const EVENTS: &str = "/api/v1/audit/events";
const BATCH: &str = "/api/v1/audit/events/batch";
const TENANT_TOKEN: &str = "/api/v1/services/tenant-token";

/// A work order's status change by `access`'s user, as the app forwards it.
fn workorder_updated(access: &str) -> Value {
    json!({
        "action": "workorder.update",
        "actor": {"access_token": access},
        "targets": [{"type": "workorder", "id": "wo_42"}, {"type": "asset", "id": "boiler_7"}],
        "changes": {
            "before": {"status": "open", "title": "Leak", "assignee": null},
            "after": {"status": "closed", "title": "Leak", "assignee": "usr_tech"},
        },
        "context": {
            "ip": "203.0.113.7",
            "user_agent": "Mozilla/5.0 (work orders)",
            "request_id": "app-req-1",
        },
        "metadata": {"plan": "pro", "source": "web"},
    })
}

/// `text` with the character `from_end` places before its end changed.
fn flipped(text: &str, from_end: usize) -> String {
    let mut bytes = text.as_bytes().to_vec();
    let at = bytes.len() - from_end;
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

async fn app_events(app: &TestApp, access: &str, action: &str) -> Vec<Value> {
    let response = app
        .get_as(&format!("{EVENTS}?action={action}"), access)
        .await;
    assert_eq!(response.status(), 200);
    let page: Value = response.json().await.unwrap();
    page["events"].as_array().unwrap().clone()
}

async fn app_event_rows(app: &TestApp) -> i64 {
    let rows: Vec<i64> = app
        .inspect(
            "SELECT count(*) FROM audit_events WHERE app IS NOT NULL",
            None,
        )
        .await;
    rows[0]
}

pub(crate) async fn tenant_token(app: &TestApp, service: &str, tenant: &str) -> String {
    let (status, issued) =
        post_with(app, TENANT_TOKEN, service, &json!({"tenant_id": tenant})).await;
    assert_eq!(status, 201, "{issued}");
    assert_eq!(issued["tenant_id"], tenant);
    assert_eq!(issued["expires_in"], 300);
    issued["token"].as_str().unwrap().to_owned()
}

// claim: APP-4, AUD-3, AUD-4
#[tokio::test]
async fn an_app_event_with_a_diff_and_the_users_origin_is_listed_exported_and_verified() {
    let app = crate::manifest::with_workorders().await;
    let owner = app.signed_in("owner@example.com").await;
    let owner_id = user_id_of(&app, &owner).await;
    let (service_id, service) = service_credential(&app).await;

    let (status, appended) =
        post_with(&app, EVENTS, &service, &workorder_updated(&owner.access)).await;
    assert_eq!(status, 201, "{appended}");
    assert_eq!(appended["tenant_id"], owner.tenant);
    assert!(appended["id"].as_str().unwrap().starts_with("evt_"));
    assert_eq!(appended["hash"].as_str().unwrap().len(), 64);

    // Listed beside Palisade's own, proven actor and role, the diff as objects, the end
    // user's origin, and the app's part.
    let listed = app_events(&app, &owner.access, "workorder.update").await;
    assert_eq!(listed.len(), 1);
    let event = &listed[0];
    assert_eq!(event["seq"], appended["seq"]);
    assert_eq!(event["hash"], appended["hash"]);
    assert_eq!(event["actor_type"], "user");
    assert_eq!(event["actor_id"], owner_id);
    assert_eq!(event["actor_role"], "owner");
    assert_eq!(event["target_type"], "workorder");
    assert_eq!(event["target_id"], "wo_42");
    assert_eq!(event["outcome"], "success");
    assert_eq!(
        event["changes"],
        json!({
            "status": {"before": "open", "after": "closed"},
            "assignee": {"before": null, "after": "usr_tech"},
        })
    );
    assert_eq!(event["ip"], "203.0.113.7");
    assert_eq!(event["user_agent"], "Mozilla/5.0 (work orders)");
    assert_eq!(event["request_id"], "app-req-1");
    assert_eq!(event["app"]["service"], service_id);
    assert_eq!(
        event["app"]["targets"][1],
        json!({"type": "asset", "id": "boiler_7"})
    );
    assert_eq!(event["app"]["metadata"]["plan"], "pro");

    // The chain verifies through the API, the export verifies offline in both formats,
    // and the operator's command verifies it too.
    app.state.audit.checkpoint_due().await.unwrap();
    assert_eq!(verdict(&app, &owner).await["ok"], true);
    let key = published_key(&app).await;
    for format in ["ndjson", "csv"] {
        let text = export(&app, &owner.access, &format!("?format={format}")).await;
        assert!(text.contains("app-req-1"), "{format}");
        let report =
            verify_export(text.as_bytes(), &key).unwrap_or_else(|p| panic!("{format}: {p}"));
        // Each export is itself an event, after the app's.
        assert!(report.last_seq >= appended["seq"].as_i64(), "{format}");
    }
    let (ok, report) = crate::import::palisade_command(&app, &["audit", "verify"]).await;
    assert!(ok, "{report}");

    // An edit of the app's part in the database is named at that event.
    app.tamper(&[&format!(
        "UPDATE audit_events SET app = replace(app, 'boiler_7', 'boiler_8') WHERE app IS NOT NULL AND {TENANT_ROWS}"
    )])
    .await;
    assert_eq!(
        first_problem(&app, &owner).await,
        (appended["seq"].as_i64().unwrap(), "edited".to_owned())
    );
    let (ok, report) = crate::import::palisade_command(&app, &["audit", "verify"]).await;
    assert!(!ok, "{report}");
    app.stop().await;
}

async fn idempotency_keys(app: &crate::helpers::TestApp) -> i64 {
    app.inspect("SELECT count(*) FROM app_event_keys", None)
        .await[0]
}

// claim: APP-4
#[tokio::test]
async fn the_same_idempotency_key_writes_one_event_and_another_body_is_refused() {
    let app = crate::manifest::with_workorders().await;
    let owner = app.signed_in("owner@example.com").await;
    let (_, service) = service_credential(&app).await;
    let send = |body: Value, key: &'static str| {
        let request = app
            .client
            .post(app.url(BATCH))
            .bearer_auth(&service)
            .header("idempotency-key", key)
            .json(&body);
        async move {
            let response = request.send().await.unwrap();
            let replayed = response.headers().get("idempotent-replayed").is_some();
            (
                response.status().as_u16(),
                replayed,
                response.json::<Value>().await.unwrap(),
            )
        }
    };
    let batch =
        json!({"events": [workorder_updated(&owner.access), workorder_updated(&owner.access)]});
    let (status, replayed, first) = send(batch.clone(), "order-42-closed").await;
    assert_eq!((status, replayed), (201, false), "{first}");
    assert_eq!(first["events"].as_array().unwrap().len(), 2);
    let (status, replayed, again) = send(batch.clone(), "order-42-closed").await;
    assert_eq!((status, replayed), (200, true), "{again}");
    assert_eq!(again, first);
    assert_eq!(app_event_rows(&app).await, 2);

    // Another body under the same key: refused, nothing written.
    let other = json!({"events": [workorder_updated(&owner.access)]});
    let (status, _, refused) = send(other.clone(), "order-42-closed").await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "idempotency_key_reused");
    assert_eq!(app_event_rows(&app).await, 2);

    // After 24 hours the key is anyone's again.
    app.clock
        .advance(std::time::Duration::from_secs(24 * 3600 + 1));
    let fresh = app.login("owner@example.com").await;
    let other = json!({"events": [workorder_updated(&fresh.access)]});
    let (status, _, _) = send(other, "order-42-closed").await;
    assert_eq!(status, 201);
    assert_eq!(app_event_rows(&app).await, 3);

    // Upkeep forgets keys past their window, and only those.
    app.clock.advance(std::time::Duration::from_secs(12 * 3600));
    let fresh = app.login("owner@example.com").await;
    let later = json!({"events": [workorder_updated(&fresh.access)]});
    let (status, _, _) = send(later, "order-43-opened").await;
    assert_eq!(status, 201);
    palisade::app::upkeep_step(&app.state, true, true).await;
    assert_eq!(idempotency_keys(&app).await, 2, "both within their window");
    app.clock
        .advance(std::time::Duration::from_secs(12 * 3600 + 1));
    palisade::app::upkeep_step(&app.state, true, true).await;
    assert_eq!(
        idempotency_keys(&app).await,
        1,
        "the first key's window ended"
    );
    app.stop().await;
}

// claim: APP-4
#[tokio::test]
async fn an_unproven_actor_or_an_event_out_of_bounds_is_refused_and_nothing_is_written() {
    let app = crate::manifest::with_workorders().await;
    let owner = app.signed_in("owner@example.com").await;
    let (_, service) = service_credential(&app).await;
    let (key, key_secret) =
        crate::keys::create_key(&app, &owner, json!({"name": "customer", "role": "member"})).await;
    // A customer's key is a proven actor.
    let mut by_key = workorder_updated(&owner.access);
    by_key["actor"] = json!({"api_key": key_secret});
    let (status, answer) = post_with(&app, EVENTS, &service, &by_key).await;
    assert_eq!(status, 201, "{answer}");
    let listed = app_events(&app, &owner.access, "workorder.update").await;
    assert_eq!(listed[0]["actor_type"], "api_key");
    assert_eq!(listed[0]["actor_id"], key["id"]);
    assert_eq!(listed[0]["actor_role"], "member");
    let written = app_event_rows(&app).await;

    let with = |change: &dyn Fn(&mut Value)| {
        let mut event = workorder_updated(&owner.access);
        change(&mut event);
        event
    };
    // A signature character changed well inside it (the last one carries padding bits).
    let forged = flipped(&owner.access, 10);
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "undeclared action",
            with(&|e| e["action"] = json!("members.invite")),
            "invalid_field",
        ),
        (
            "unknown action",
            with(&|e| e["action"] = json!("workorder.teleport")),
            "invalid_field",
        ),
        (
            "forged token",
            with(&|e| e["actor"] = json!({"access_token": forged})),
            "invalid_subject",
        ),
        (
            "unknown key",
            with(&|e| e["actor"] = json!({"api_key": flipped(&key_secret, 20)})),
            "invalid_subject",
        ),
        (
            "system without a tenant token",
            with(&|e| e["actor"] = json!("system")),
            "invalid_field",
        ),
        (
            "claimed user",
            with(&|e| e["actor"] = json!({"user_id": "usr_1"})),
            "invalid_body",
        ),
        (
            "no targets",
            with(&|e| e["targets"] = json!([])),
            "invalid_field",
        ),
        (
            "bad target type",
            with(&|e| e["targets"] = json!([{"type": "Work Order", "id": "1"}])),
            "invalid_field",
        ),
        (
            "unknown field",
            with(&|e| e["severity"] = json!("high")),
            "invalid_body",
        ),
        (
            "changes not objects",
            with(&|e| e["changes"] = json!({"before": "open", "after": "closed"})),
            "invalid_body",
        ),
        (
            "metadata too big",
            with(&|e| e["metadata"] = json!({"blob": "x".repeat(5000)})),
            "invalid_field",
        ),
        (
            "in the future",
            with(&|e| e["occurred_at"] = json!("2999-01-01T00:00:00Z")),
            "invalid_field",
        ),
        (
            "bad address",
            with(&|e| e["context"]["ip"] = json!("not-an-ip")),
            "invalid_body",
        ),
    ];
    for (case, event, code) in &cases {
        let (status, answer) = post_with(&app, EVENTS, &service, event).await;
        assert_eq!(answer["error"]["code"], *code, "{case}: {status} {answer}");
        assert!((400..500).contains(&status), "{case}: {status}");
        // In a batch, one bad event refuses them all and names itself.
        let batch = json!({"events": [workorder_updated(&owner.access), event]});
        let (status, answer) = post_with(&app, BATCH, &service, &batch).await;
        assert!((400..500).contains(&status), "{case} in a batch: {status}");
        if status == 422 && answer["error"]["code"] != "invalid_body" {
            let message = answer["error"]["message"].as_str().unwrap();
            assert!(message.starts_with("events[1]"), "{case}: {message}");
        }
    }
    let small = json!({"action": "workorder.read", "actor": "system", "targets": [{"type": "workorder", "id": "1"}]});
    let too_many = json!({"events": vec![small; 101]});
    let (status, answer) = post_with(&app, BATCH, &service, &too_many).await;
    assert_eq!(status, 422, "{answer}");
    let too_big = json!({"events": vec![workorder_updated(&owner.access); 100]});
    let (status, _) = post_with(&app, BATCH, &service, &too_big).await;
    assert_eq!(status, 413);
    // A revoked key, a logged-out user: no longer proven.
    crate::keys::revoke_key(&app, &owner, &key).await;
    let (status, answer) = post_with(&app, EVENTS, &service, &by_key).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (422, Some("invalid_subject"))
    );
    // A session's token, and a key, are not the app's credential.
    let (status, _) = post_with(
        &app,
        EVENTS,
        &owner.access,
        &workorder_updated(&owner.access),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(app_event_rows(&app).await, written);
    app.stop().await;
}

// claim: APP-8
#[tokio::test]
async fn a_tenant_token_acts_in_its_tenant_only_is_audited_twice_and_expires() {
    let app = crate::manifest::with_workorders().await;
    let owner = app.signed_in("owner@example.com").await;
    let stranger = app.signed_in("stranger@example.com").await;
    let (_, service) = service_credential(&app).await;
    let token = tenant_token(&app, &service, &owner.tenant).await;

    // Recorded in the tenant's chain and in the platform stream.
    let issued = app_events(&app, &owner.access, "services.tenant_token_issued").await;
    assert_eq!(issued.len(), 1);
    assert_eq!(issued[0]["actor_type"], "service");
    let platform: Vec<i64> = app
        .inspect(
            "SELECT count(*) FROM audit_events WHERE action = 'services.tenant_token_issued'
               AND tenant_id = '00000000-0000-0000-0000-000000000000'",
            None,
        )
        .await;
    assert_eq!(platform, [1]);

    // The app's own work in that tenant, recorded as the service's.
    let system = json!({"action": "settings.update", "actor": "system",
        "targets": [{"type": "settings", "id": "sso"}],
        "changes": {"before": {"sso": false}, "after": {"sso": true}}});
    let (status, appended) = post_with(&app, EVENTS, &token, &system).await;
    assert_eq!(status, 201, "{appended}");
    assert_eq!(appended["tenant_id"], owner.tenant);
    let listed = app_events(&app, &owner.access, "settings.update").await;
    assert_eq!(listed[0]["actor_type"], "service");
    // A user of another tenant cannot be recorded under this tenant's token.
    let (status, refused) =
        post_with(&app, EVENTS, &token, &workorder_updated(&stranger.access)).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (422, Some("invalid_subject"))
    );
    assert!(app_events(&app, &stranger.access, "workorder.update")
        .await
        .is_empty());
    // It is no credential for tenant routes, nor for the service's own endpoints.
    assert_eq!(app.get_as(EVENTS, &token).await.status(), 401);
    let (status, _) = post_with(
        &app,
        TENANT_TOKEN,
        &token,
        &json!({"tenant_id": owner.tenant}),
    )
    .await;
    assert_eq!(status, 401);

    // Five minutes, then nothing.
    app.clock.advance(std::time::Duration::from_secs(301));
    let (status, _) = post_with(&app, EVENTS, &token, &system).await;
    assert_eq!(status, 401);

    // An unknown tenant gets none; a suspended one neither, and its live token stops.
    let (status, _) = post_with(
        &app,
        TENANT_TOKEN,
        &service,
        &json!({"tenant_id": "ten_0192f5c4e1a87c3b9d2e4f6a8b0c1d2e"}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = post_with(
        &app,
        TENANT_TOKEN,
        &service,
        &json!({"tenant_id": "nonsense"}),
    )
    .await;
    assert_eq!(status, 422);
    let live = tenant_token(&app, &service, &owner.tenant).await;
    let (ok, output) = as_operator(&app, "admin", &["tenants", "suspend", &owner.tenant]).await;
    assert!(ok, "{output}");
    after_external_change(&app).await;
    let (status, refused) = post_with(&app, EVENTS, &live, &system).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (403, Some("tenant_suspended"))
    );
    let (status, refused) = post_with(
        &app,
        TENANT_TOKEN,
        &service,
        &json!({"tenant_id": owner.tenant}),
    )
    .await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (403, Some("tenant_suspended"))
    );
    app.stop().await;
}

// claim: APP-8
#[tokio::test]
async fn a_revoked_service_credential_takes_its_tenant_tokens_with_it() {
    let app = crate::manifest::with_workorders().await;
    let owner: Session = app.signed_in("owner@example.com").await;
    let (service_id, service) = service_credential(&app).await;
    let token = tenant_token(&app, &service, &owner.tenant).await;
    let system = json!({"action": "settings.update", "actor": "system",
        "targets": [{"type": "settings", "id": "sso"}]});
    let (status, _) = post_with(&app, EVENTS, &token, &system).await;
    assert_eq!(status, 201);
    let (ok, output) = crate::access::services(&app, &["revoke", &service_id]).await;
    assert!(ok, "{output}");
    after_external_change(&app).await;
    let (status, _) = post_with(&app, EVENTS, &token, &system).await;
    assert_eq!(status, 401);
    app.stop().await;
}
