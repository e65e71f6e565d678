//! The app's side of Palisade: service credentials (claim APP-2) and live decisions in the
//! shapes of OpenID AuthZEN 1.0 (claim APP-3) — a decision honours, on the very next call,
//! whatever a request of the subject itself would meet.

use serde_json::{json, Value};

use crate::helpers::{backend, spawn_app, Backend, Session, TestApp};
use crate::keys::create_key;
use crate::mfa::enable_totp;
use crate::platform::{after_external_change, as_operator};
use crate::tenancy::{staffed_tenant, user_id_of};

pub async fn services(app: &TestApp, args: &[&str]) -> (bool, String) {
    as_operator(app, "services", args).await
}

/// A new service credential's id and text, through the operator's CLI.
pub async fn service_credential(app: &TestApp) -> (String, String) {
    let (ok, output) = services(app, &["create", "work orders backend"]).await;
    assert!(ok, "{output}");
    let word = |prefix: &str| {
        output
            .split_whitespace()
            .find(|w| w.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in {output}"))
            .to_owned()
    };
    (word("svc_"), word("pal_svc_"))
}

pub async fn post_with(app: &TestApp, path: &str, credential: &str, body: &Value) -> (u16, Value) {
    post_with_method(app, reqwest::Method::POST, path, credential, body).await
}

/// A call with `credential` as the bearer: the status and the JSON answer.
pub async fn post_with_method(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    credential: &str,
    body: &Value,
) -> (u16, Value) {
    crate::helpers::json_call(&app.client, method, app.url(path), credential, body).await
}

pub fn user_subject(user: &str, session: &Session) -> Value {
    json!({"type": "user", "id": user, "properties": {"access_token": session.access}})
}

fn question(subject: Value, action: &str, tenant: &str) -> Value {
    json!({
        "subject": subject,
        "action": {"name": action},
        "resource": {"type": "tenant", "id": tenant},
    })
}

/// The decision and, on a deny, its reason.
pub async fn evaluate(app: &TestApp, service: &str, body: &Value) -> (bool, Option<String>) {
    let (status, answer) = post_with(app, "/access/v1/evaluation", service, body).await;
    assert_eq!(status, 200, "{answer}");
    let reason = answer["context"]["reason"].as_str().map(str::to_owned);
    (answer["decision"].as_bool().unwrap(), reason)
}

pub fn denied(reason: &str) -> (bool, Option<String>) {
    (false, Some(reason.to_owned()))
}

pub const ALLOWED: (bool, Option<String>) = (true, None);

/// The actions `GET /api/v1/me` says the session may take.
pub async fn effective_actions(app: &TestApp, session: &Session) -> Vec<String> {
    app.me(session).await["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect()
}

// claim: APP-2
#[tokio::test]
async fn service_credentials_are_shown_once_stored_as_hashes_and_audited() {
    let app = spawn_app().await;
    let (id, credential) = service_credential(&app).await;
    assert!(credential.starts_with("pal_svc_"), "{credential}");
    let stored: Vec<Vec<u8>> = app
        .inspect("SELECT secret_hash FROM service_credentials", None)
        .await;
    assert_eq!(
        stored,
        vec![palisade::crypto::sha256(credential.as_bytes()).to_vec()]
    );
    let names: Vec<String> = app
        .inspect("SELECT name FROM service_credentials", None)
        .await;
    assert_eq!(names, vec!["work orders backend"]);
    let (ok, listed) = services(&app, &["list"]).await;
    assert!(
        ok && listed.contains(&id) && listed.contains("work orders backend"),
        "{listed}"
    );
    assert!(
        !listed.contains(&credential),
        "the list never shows the credential"
    );
    let (ok, refused) = services(&app, &["create", " "]).await;
    assert!(!ok, "a blank name is refused: {refused}");
    let actions: Vec<String> = app
        .inspect(
            "SELECT action FROM audit_events WHERE action LIKE 'platform.service%' ORDER BY seq",
            None,
        )
        .await;
    assert_eq!(
        actions,
        vec!["platform.service_created", "platform.services_listed"]
    );
    let targets: Vec<String> = app
        .inspect(
            "SELECT target_id FROM audit_events WHERE action = 'platform.service_created'",
            None,
        )
        .await;
    assert_eq!(targets, vec![id]);
}

// claim: APP-2, TEN-1
#[tokio::test]
async fn a_service_credential_is_good_for_the_integration_endpoints_only() {
    let app = spawn_app().await;
    let owner = app.signed_in("owner@example.com").await;
    let owner_id = user_id_of(&app, &owner).await;
    let (_, service) = service_credential(&app).await;
    let body = question(
        user_subject(&owner_id, &owner),
        "members.read",
        &owner.tenant,
    );
    assert_eq!(evaluate(&app, &service, &body).await, ALLOWED);
    for path in [
        "/api/v1/tenant",
        "/api/v1/me",
        "/api/v1/members",
        "/api/v1/api-keys",
    ] {
        assert_eq!(
            app.get_as(path, &service).await.status(),
            401,
            "{path} takes no service credential"
        );
    }
    let (status, _) = post_with(
        &app,
        "/api/v1/custom-roles",
        &service,
        &json!({"name": "x", "actions": ["members.read"]}),
    )
    .await;
    assert_eq!(status, 401);
    // Nothing but a service credential calls the integration endpoints.
    let (_, key) = create_key(&app, &owner, json!({"name": "ci", "role": "admin"})).await;
    let mut typo = service.clone().into_bytes();
    let last = typo.len() - 1;
    typo[last] = if typo[last] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    let (other_id, other) = service_credential(&app).await;
    let forged = format!(
        "{}{}",
        &other[..other.len() - 20],
        &service[service.len() - 20..]
    );
    for credential in [
        owner.access.as_str(),
        key.as_str(),
        typo.as_str(),
        forged.as_str(),
        "pal_svc_x",
    ] {
        let (status, answer) = post_with(&app, "/access/v1/evaluation", credential, &body).await;
        assert_eq!(status, 401, "{answer}");
        assert_eq!(answer["error"]["code"], "unauthenticated");
    }
    let response = app
        .client
        .post(app.url("/access/v1/evaluation"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401, "no credential at all");
    assert!(other_id.starts_with("svc_"));
}

// claim: APP-2
#[tokio::test]
async fn a_revoked_service_credential_is_refused_on_the_next_request_on_every_instance() {
    let app = spawn_app().await;
    let sibling = app.spawn_sibling().await;
    let owner = app.signed_in("owner@example.com").await;
    let owner_id = user_id_of(&app, &owner).await;
    let (id, service) = service_credential(&app).await;
    let (_, other) = service_credential(&app).await;
    let body = question(
        user_subject(&owner_id, &owner),
        "members.read",
        &owner.tenant,
    );
    let on_sibling = |credential: &str| {
        let request = sibling
            .client
            .post(sibling.url("/access/v1/evaluation"))
            .bearer_auth(credential)
            .json(&body);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(evaluate(&app, &service, &body).await, ALLOWED);
    assert_eq!(on_sibling(&service).await, 200, "cached on both instances");
    let (ok, output) = services(&app, &["revoke", &id]).await;
    assert!(ok, "{output}");
    after_external_change(&app).await;
    if backend() == Backend::Sqlite {
        sibling.state.identity.poll().await.unwrap();
    }
    let (status, _) = post_with(&app, "/access/v1/evaluation", &service, &body).await;
    assert_eq!(status, 401);
    assert_eq!(on_sibling(&service).await, 401);
    assert_eq!(
        evaluate(&app, &other, &body).await,
        ALLOWED,
        "another credential lives on"
    );
    let (ok, _) = services(&app, &["revoke", &id]).await;
    assert!(!ok, "revoking twice says there is no live credential");
    let revoked: Vec<String> = app
        .inspect(
            "SELECT target_id FROM audit_events WHERE action = 'platform.service_revoked'",
            None,
        )
        .await;
    assert_eq!(revoked, vec![id]);
}

// claim: APP-3, TEN-1
#[tokio::test]
async fn decisions_follow_the_subjects_own_credential_role_and_tenant() {
    let app = spawn_app().await;
    let staff = staffed_tenant(&app).await;
    let other = app.signed_in("elsewhere@example.com").await;
    let (_, service) = service_credential(&app).await;
    let tenant = staff["owner"].tenant.clone();
    let member = &staff["member"];
    let member_id = user_id_of(&app, member).await;
    let subject = user_subject(&member_id, member);
    let ask = |action: &str, tenant: &str| question(subject.clone(), action, tenant);
    assert_eq!(
        evaluate(&app, &service, &ask("secrets.read", &tenant)).await,
        ALLOWED
    );
    assert_eq!(
        evaluate(&app, &service, &ask("audit.read", &tenant)).await,
        denied("role")
    );
    assert_eq!(
        evaluate(&app, &service, &ask("secrets.read", &other.tenant)).await,
        denied("not_a_member"),
        "the tenant comes from the subject's credential"
    );
    let impostor = question(
        user_subject(&member_id, &staff["owner"]),
        "audit.read",
        &tenant,
    );
    assert_eq!(
        evaluate(&app, &service, &impostor).await,
        denied("subject_mismatch")
    );
    let garbage = question(
        json!({"type": "user", "id": member_id, "properties": {"access_token": "not-a-token"}}),
        "secrets.read",
        &tenant,
    );
    assert_eq!(
        evaluate(&app, &service, &garbage).await,
        denied("invalid_credential")
    );
    // A customer's API key is a subject too: its role and scopes decide.
    let owner = &staff["owner"];
    let (view, key) = create_key(
        &app,
        owner,
        json!({"name": "reporting", "role": "admin", "scopes": ["audit.read"]}),
    )
    .await;
    let key_subject = json!({"type": "api_key", "id": view["id"], "properties": {"api_key": key}});
    let ask_key = |action: &str| question(key_subject.clone(), action, &tenant);
    assert_eq!(
        evaluate(&app, &service, &ask_key("audit.read")).await,
        ALLOWED
    );
    assert_eq!(
        evaluate(&app, &service, &ask_key("members.read")).await,
        denied("role")
    );
    assert_eq!(
        evaluate(&app, &service, &ask_key("members.invite")).await,
        denied("role"),
        "never a people-only action"
    );
    // Bad questions are the app's to fix: a clear 422, never a deny that hides the bug.
    for (body, field) in [
        (ask("workorder.delete", &tenant), "action.name"),
        (
            json!({"subject": subject, "action": {"name": "secrets.read"}, "resource": {"type": "workorder", "id": "1"}}),
            "resource.type",
        ),
        (ask("secrets.read", "not-a-tenant"), "resource.id"),
        (
            question(
                json!({"type": "group", "id": "x", "properties": {}}),
                "secrets.read",
                &tenant,
            ),
            "subject.type",
        ),
        (
            question(
                json!({"type": "user", "id": member_id, "properties": {"access_token": member.access, "api_key": key}}),
                "secrets.read",
                &tenant,
            ),
            "subject.properties",
        ),
    ] {
        let (status, answer) = post_with(&app, "/access/v1/evaluation", &service, &body).await;
        assert_eq!(status, 422, "{answer}");
        assert!(
            answer["error"]["message"].as_str().unwrap().contains(field),
            "{answer}"
        );
    }
    let mut unknown = ask("secrets.read", &tenant);
    unknown["subject"]["extra"] = json!(true);
    let (status, _) = post_with(&app, "/access/v1/evaluation", &service, &unknown).await;
    assert_eq!(status, 422, "unknown fields are refused");
}

// claim: APP-3
#[tokio::test]
async fn every_kind_of_revocation_flips_the_very_next_decision() {
    let app = spawn_app().await;
    let staff = staffed_tenant(&app).await;
    let (_, service) = service_credential(&app).await;
    let owner = &staff["owner"];
    let tenant = owner.tenant.clone();
    let decide = |session: &Session, user: &str, action: &str| {
        let body = question(user_subject(user, session), action, &tenant);
        let app = &app;
        let service = service.clone();
        async move { evaluate(app, &service, &body).await }
    };
    let send = |method: reqwest::Method, path: String, body: Option<Value>| {
        let mut request = app
            .client
            .request(method, app.url(&path))
            .bearer_auth(&owner.access);
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };

    // A role change.
    let member = &staff["member"];
    let member_id = user_id_of(&app, member).await;
    assert_eq!(decide(member, &member_id, "secrets.read").await, ALLOWED);
    assert!(effective_actions(&app, member)
        .await
        .contains(&"secrets.read".to_owned()));
    let status = send(
        reqwest::Method::PATCH,
        format!("/api/v1/members/{member_id}"),
        Some(json!({"role": "viewer"})),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(
        decide(member, &member_id, "secrets.read").await,
        denied("role")
    );

    // A custom role, given and taken back.
    let manager = &staff["manager"];
    let manager_id = user_id_of(&app, manager).await;
    assert_eq!(decide(manager, &manager_id, "keys.read").await, ALLOWED);
    let created: Value = app
        .post_as(
            "/api/v1/custom-roles",
            &owner.access,
            Some(&json!({"name": "Readers", "actions": ["members.read"]})),
        )
        .await
        .json()
        .await
        .unwrap();
    let status = send(
        reqwest::Method::PUT,
        format!("/api/v1/members/{manager_id}/custom-role"),
        Some(json!({"custom_role_id": created["id"]})),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(
        decide(manager, &manager_id, "keys.read").await,
        denied("role")
    );
    assert_eq!(decide(manager, &manager_id, "members.read").await, ALLOWED);

    // The end of a session.
    let admin = &staff["admin"];
    let admin_id = user_id_of(&app, admin).await;
    assert_eq!(decide(admin, &admin_id, "audit.read").await, ALLOWED);
    let logout = app
        .post_as("/api/v1/auth/logout", &admin.access, None)
        .await;
    assert_eq!(logout.status(), 204);
    assert_eq!(
        decide(admin, &admin_id, "audit.read").await,
        denied("invalid_credential")
    );

    // A removal.
    let viewer = &staff["viewer"];
    let viewer_id = user_id_of(&app, viewer).await;
    assert_eq!(decide(viewer, &viewer_id, "members.read").await, ALLOWED);
    let status = send(
        reqwest::Method::DELETE,
        format!("/api/v1/members/{viewer_id}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(
        decide(viewer, &viewer_id, "members.read").await,
        denied("invalid_credential")
    );

    // A revoked key.
    let (view, key) = create_key(&app, owner, json!({"name": "ci", "role": "member"})).await;
    let key_question = question(
        json!({"type": "api_key", "id": view["id"], "properties": {"api_key": key}}),
        "secrets.read",
        &tenant,
    );
    assert_eq!(evaluate(&app, &service, &key_question).await, ALLOWED);
    let status = send(
        reqwest::Method::DELETE,
        format!("/api/v1/api-keys/{}", view["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(
        evaluate(&app, &service, &key_question).await,
        denied("invalid_credential")
    );

    // The tenant's MFA policy: a member without a second factor is held.
    let owner_id = user_id_of(&app, owner).await;
    enable_totp(&app, owner).await;
    let status = send(
        reqwest::Method::PUT,
        "/api/v1/tenant/mfa-policy".to_owned(),
        Some(json!({"required": true})),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(
        decide(member, &member_id, "members.read").await,
        denied("mfa_required")
    );
    assert_eq!(decide(owner, &owner_id, "members.read").await, ALLOWED);

    // A suspension by the operator.
    let (ok, output) = as_operator(&app, "admin", &["tenants", "suspend", &tenant]).await;
    assert!(ok, "{output}");
    after_external_change(&app).await;
    assert_eq!(
        decide(owner, &owner_id, "members.read").await,
        denied("tenant_suspended")
    );
}

// claim: APP-3
#[tokio::test]
async fn a_batch_decides_each_entry_with_defaults_and_its_semantic() {
    let app = spawn_app().await;
    let staff = staffed_tenant(&app).await;
    let (_, service) = service_credential(&app).await;
    let tenant = staff["owner"].tenant.clone();
    let member = &staff["member"];
    let member_id = user_id_of(&app, member).await;
    let owner_id = user_id_of(&app, &staff["owner"]).await;
    let batch = |entries: Vec<Value>, semantic: &str| {
        json!({
            "subject": user_subject(&member_id, member),
            "resource": {"type": "tenant", "id": tenant},
            "evaluations": entries,
            "options": {"evaluations_semantic": semantic},
        })
    };
    let reasons = |answer: &Value| -> Vec<Option<String>> {
        answer["evaluations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| match e["decision"].as_bool().unwrap() {
                true => None,
                false => Some(e["context"]["reason"].as_str().unwrap().to_owned()),
            })
            .collect()
    };
    let entries = vec![
        json!({"action": {"name": "secrets.read"}}),
        json!({"action": {"name": "audit.read"}}),
        json!({"action": {"name": "audit.read"}, "subject": user_subject(&owner_id, &staff["owner"])}),
        json!({"action": {"name": "members.read"}}),
    ];
    let (status, answer) = post_with(
        &app,
        "/access/v1/evaluations",
        &service,
        &batch(entries.clone(), "execute_all"),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        reasons(&answer),
        vec![None, Some("role".into()), None, None]
    );
    let (_, answer) = post_with(
        &app,
        "/access/v1/evaluations",
        &service,
        &batch(entries.clone(), "deny_on_first_deny"),
    )
    .await;
    assert_eq!(
        reasons(&answer),
        vec![None, Some("role".into())],
        "stops at the first deny"
    );
    let (_, answer) = post_with(
        &app,
        "/access/v1/evaluations",
        &service,
        &batch(entries, "permit_on_first_permit"),
    )
    .await;
    assert_eq!(reasons(&answer), vec![None], "stops at the first permit");

    let before = app.table_counts().await;
    let fifty = vec![json!({"action": {"name": "members.read"}}); 50];
    let (status, answer) = post_with(
        &app,
        "/access/v1/evaluations",
        &service,
        &batch(fifty.clone(), "execute_all"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(answer["evaluations"].as_array().unwrap().len(), 50);
    let mut fifty_one = fifty;
    fifty_one.push(json!({"action": {"name": "members.read"}}));
    for (entries, why) in [
        (fifty_one, "over 50"),
        (vec![], "empty"),
        (
            vec![
                json!({"action": {"name": "members.read"}}),
                json!({"action": {"name": "no.such"}}),
            ],
            "one unknown action",
        ),
        (vec![json!({})], "an entry without an action"),
    ] {
        let (status, answer) = post_with(
            &app,
            "/access/v1/evaluations",
            &service,
            &batch(entries, "execute_all"),
        )
        .await;
        assert_eq!(status, 422, "{why}: {answer}");
    }
    let mut bad_semantic = batch(
        vec![json!({"action": {"name": "members.read"}})],
        "execute_all",
    );
    bad_semantic["options"]["evaluations_semantic"] = json!("whatever");
    let (status, _) = post_with(&app, "/access/v1/evaluations", &service, &bad_semantic).await;
    assert_eq!(status, 422);
    assert_eq!(app.table_counts().await, before, "decisions write nothing");
}
