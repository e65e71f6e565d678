//! Roles and member management: the published action table is the one enforced, every
//! guarded operation refuses the roles below it, no escalation, the last Owner stays, and
//! another tenant's members are as absent as missing ones.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::helpers::{spawn_app, token_in_mail, verification_token, Session, TestApp, PASSWORD};
use crate::sessions::add_membership;

/// Signs `email` in to `tenant` (a member there).
pub async fn login_to(app: &TestApp, email: &str, tenant: &str) -> Session {
    let response = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": email, "password": PASSWORD, "tenant_id": tenant}),
        )
        .await;
    Session::from_response(response).await
}

/// A tenant with one member of each role: email → session in that tenant.
pub async fn staffed_tenant(app: &TestApp) -> HashMap<&'static str, Session> {
    let owner = app.signed_in("owner@example.com").await;
    let mut sessions = HashMap::from([("owner", owner.clone())]);
    for role in ["admin", "manager", "member", "viewer"] {
        let email = format!("{role}@example.com");
        app.sign_up(&email).await;
        add_membership(app, &email, &owner.tenant, role).await;
        sessions.insert(role, login_to(app, &email, &owner.tenant).await);
    }
    sessions
}

pub async fn user_id_of(app: &TestApp, session: &Session) -> String {
    app.me(session).await["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    access: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = app
        .client
        .request(method, app.url(path))
        .bearer_auth(access);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

// claim: RBAC-1
#[tokio::test]
async fn the_roles_endpoint_publishes_the_table_that_is_enforced() {
    let app = spawn_app().await;
    let table = crate::manifest::action_rows(&app).await;
    let remove = table
        .iter()
        .find(|row| row["action"] == "members.remove")
        .unwrap();
    assert_eq!(remove["roles"], json!(["owner", "admin"]));
    let read = table
        .iter()
        .find(|row| row["action"] == "members.read")
        .unwrap();
    assert_eq!(read["roles"].as_array().unwrap().len(), 5);
}

/// Operations any signed-in user (or anyone) may call: their own account and sessions,
/// and the public documents. Everything else must name an action.
fn self_service(method: &str, path: &str) -> bool {
    path.starts_with("/api/v1/auth/")
        || path == "/api/v1/me"
        || path.starts_with("/api/v1/me/")
        || path == "/api/v1/roles"
        || path == "/api/v1/invitations/accept"
        // Public: the key that verifies audit exports offline.
        || path == "/api/v1/audit/checkpoint-key"
        // Public: an inbound webhook's signature is its proof.
        || path == "/api/v1/webhooks/inbound/{source}"
        // The operator's, by posture.bearer_token: no tenant role.
        || path == "/api/v1/posture"
        // The app's backend, by its service credential: no tenant role.
        || palisade::ratelimit::is_integration(&method.to_uppercase(), path)
        || !path.starts_with("/api/v1/")
}

// claim: RBAC-1, RBAC-2
#[tokio::test]
async fn every_tenant_operation_names_its_action_and_refuses_the_roles_below_it() {
    let app = spawn_app().await;
    let sessions = staffed_tenant(&app).await;
    let table = crate::manifest::action_rows(&app).await;
    let allowed: HashMap<String, Vec<String>> = table
        .iter()
        .map(|row| {
            let roles = row["roles"].as_array().unwrap();
            (
                row["action"].as_str().unwrap().to_owned(),
                roles
                    .iter()
                    .map(|r| r.as_str().unwrap().to_owned())
                    .collect(),
            )
        })
        .collect();
    let doc: Value = app.get("/api/openapi.json").await.json().await.unwrap();
    let (mut guarded, mut allowed_reads) = (0, 0);
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if self_service(method, path) {
                continue;
            }
            let description = operation["description"].as_str().unwrap_or("");
            let action = description
                .split("Action: `")
                .nth(1)
                .and_then(|rest| rest.split('`').next())
                .unwrap_or_else(|| panic!("{method} {path} names no action"));
            let roles = allowed
                .get(action)
                .unwrap_or_else(|| panic!("{method} {path}: {action} is not in the table"));
            let concrete = path
                .replace("{user_id}", "usr_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0")
                .replace("{invitation_id}", "inv_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0")
                .replace("{role_id}", "crl_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0")
                .replace("{application_id}", "app_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0");
            for (role, session) in &sessions {
                let (status, body) = send(
                    &app,
                    method.to_uppercase().parse().unwrap(),
                    &concrete,
                    &session.access,
                    (method != "get").then(|| json!({})),
                )
                .await;
                if !roles.iter().any(|r| r == role) {
                    assert_eq!(status, 403, "{role} on {method} {path}: {body}");
                    assert_eq!(body["error"]["code"], "forbidden");
                } else if method == "get" && !path.contains('{') {
                    // An allowed role reads: the table's "may" is a real yes.
                    assert_eq!(status, 200, "{role} on {method} {path}: {body}");
                    allowed_reads += 1;
                } else {
                    // An allowed role gets past the permission to the body and the ids
                    // (made up here: 404 or 422); what succeeds with real ones is shown
                    // by the grants walk and each capability's tests.
                    assert_ne!(
                        body["error"]["code"], "forbidden",
                        "{role} on {method} {path}"
                    );
                    assert!(
                        matches!(status, 200..=299 | 404 | 409 | 422),
                        "{role} on {method} {path}: {status} {body}"
                    );
                }
            }
            guarded += 1;
        }
    }
    assert!(guarded >= 4, "the walk found the guarded operations");
    assert!(
        allowed_reads >= 20,
        "{allowed_reads} reads by allowed roles"
    );
}

// claim: RBAC-6
#[tokio::test]
async fn nobody_escalates_and_the_last_owner_stays() {
    let app = spawn_app().await;
    let s = staffed_tenant(&app).await;
    let owner_id = user_id_of(&app, &s["owner"]).await;
    let admin_id = user_id_of(&app, &s["admin"]).await;
    let member_id = user_id_of(&app, &s["member"]).await;
    let patch = |who: &str, target: &str, role: &str| {
        let access = s[who].access.clone();
        let path = format!("/api/v1/members/{target}");
        let app = &app;
        let role = role.to_owned();
        async move {
            send(
                app,
                reqwest::Method::PATCH,
                &path,
                &access,
                Some(json!({"role": role})),
            )
            .await
            .0
        }
    };
    assert_eq!(
        patch("admin", &member_id, "owner").await,
        403,
        "above the admin's own role"
    );
    assert_eq!(
        patch("admin", &admin_id, "owner").await,
        403,
        "nobody raises their own role"
    );
    assert_eq!(
        patch("admin", &owner_id, "viewer").await,
        403,
        "a member above the admin"
    );
    let (status, _) = send(
        &app,
        reqwest::Method::DELETE,
        &format!("/api/v1/members/{owner_id}"),
        &s["admin"].access,
        None,
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(
        patch("admin", &member_id, "admin").await,
        204,
        "up to one's own role"
    );

    // The last Owner can be neither demoted nor removed.
    assert_eq!(
        patch("owner", &owner_id, "admin").await,
        403,
        "not by themselves either"
    );
    assert_eq!(patch("owner", &admin_id, "owner").await, 204);
    assert_eq!(
        patch("admin", &owner_id, "admin").await,
        204,
        "now an Owner demotes an Owner"
    );
    let (status, body) = send(
        &app,
        reqwest::Method::DELETE,
        &format!("/api/v1/members/{admin_id}"),
        &s["admin"].access,
        None,
    )
    .await;
    assert_eq!(status, 409, "the last Owner cannot leave: {body}");
    let members: Vec<Value> = app
        .get_as("/api/v1/members", &s["viewer"].access)
        .await
        .json()
        .await
        .unwrap();
    let owners: Vec<&Value> = members.iter().filter(|m| m["role"] == "owner").collect();
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0]["user_id"], admin_id.as_str());
    let actions: Vec<String> = app
        .inspect(
            "SELECT action FROM audit_events WHERE action = 'members.role_changed'",
            None,
        )
        .await;
    assert_eq!(actions.len(), 3);
}

// claim: RBAC-6, ID-6
#[tokio::test]
async fn role_changes_and_removals_apply_on_the_next_request() {
    let app = spawn_app().await;
    let s = staffed_tenant(&app).await;
    let admin_id = user_id_of(&app, &s["admin"]).await;
    let member_id = user_id_of(&app, &s["member"]).await;
    let viewer_id = user_id_of(&app, &s["viewer"]).await;
    let (status, _) = send(
        &app,
        reqwest::Method::PATCH,
        &format!("/api/v1/members/{admin_id}"),
        &s["owner"].access,
        Some(json!({"role": "viewer"})),
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = send(
        &app,
        reqwest::Method::DELETE,
        &format!("/api/v1/members/{viewer_id}"),
        &s["admin"].access,
        None,
    )
    .await;
    assert_eq!(status, 403, "the demoted admin's very next request");
    let (status, _) = send(
        &app,
        reqwest::Method::DELETE,
        &format!("/api/v1/members/{member_id}"),
        &s["owner"].access,
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(
        app.get_as("/api/v1/me", &s["member"].access).await.status(),
        401
    );
    assert_eq!(app.refresh(&s["member"].refresh).await.status(), 401);
}

// claim: TEN-4
#[tokio::test]
async fn another_tenants_member_answers_byte_for_byte_like_a_missing_one() {
    let app = spawn_app().await;
    let ada = app.signed_in("ada@example.com").await;
    let bob = app.signed_in("bob@example.com").await;
    let ada_id = user_id_of(&app, &ada).await;
    let mut answers = Vec::new();
    for target in [
        ada_id.as_str(),
        "usr_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0",
        "not-an-id",
    ] {
        for method in [reqwest::Method::PATCH, reqwest::Method::DELETE] {
            let response = app
                .client
                .request(
                    method.clone(),
                    app.url(&format!("/api/v1/members/{target}")),
                )
                .bearer_auth(&bob.access)
                .json(&json!({"role": "viewer"}))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let id = response.headers()["x-request-id"]
                .to_str()
                .unwrap()
                .to_owned();
            let body = response.text().await.unwrap().replace(&id, "<id>");
            answers.push((method, status, body));
        }
    }
    for answer in &answers {
        assert_eq!(answer.1, 404, "{answer:?}");
        assert_eq!(answer.2, answers[0].2, "{answer:?}");
    }
    let me: Value = app
        .get_as("/api/v1/me", &ada.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["role"], "owner", "ada's membership is untouched");
}

async fn invite(app: &TestApp, by: &Session, email: &str, role: &str) -> (u16, Value) {
    send(
        app,
        reqwest::Method::POST,
        "/api/v1/invitations",
        &by.access,
        Some(json!({"email": email, "role": role})),
    )
    .await
}

async fn accept(app: &TestApp, by: &Session, token: &str) -> (u16, Value) {
    send(
        app,
        reqwest::Method::POST,
        "/api/v1/invitations/accept",
        &by.access,
        Some(json!({ "token": token })),
    )
    .await
}

/// Signs up, verifies the address with the mailed link, and signs in.
async fn verified(app: &TestApp, email: &str) -> Session {
    app.sign_up_unverified(email).await;
    verify_pending(app, email).await;
    app.login(email).await
}

/// Verifies `email` with the link mailed at sign-up.
async fn verify_pending(app: &TestApp, email: &str) {
    let token = verification_token(&app.outbox_dir(), email).await;
    let response = app
        .post_json("/api/v1/auth/verify-email", &json!({ "token": token }))
        .await;
    assert_eq!(response.status(), 204);
}

/// The invitation mail to `email` (the outbox holds sign-up mails too).
async fn invitation_token(app: &TestApp, email: &str, total_mails: usize) -> String {
    let mails = app.outbox(total_mails).await;
    let mail = mails
        .iter()
        .rev()
        .find(|m| m.contains("accept-invitation") && m.contains(&format!("To: {email}")))
        .expect("an invitation mail");
    token_in_mail(mail)
}

// claim: RBAC-6, AUD-1
#[tokio::test]
async fn an_invitation_grants_at_most_the_inviters_role_once_to_its_addressee() {
    let app = spawn_app().await;
    let s = staffed_tenant(&app).await;
    assert_eq!(
        invite(&app, &s["admin"], "grace@example.com", "owner")
            .await
            .0,
        403
    );
    assert_eq!(
        invite(&app, &s["member"], "grace@example.com", "viewer")
            .await
            .0,
        403
    );
    let (status, created) = invite(&app, &s["admin"], "Grace@Example.com", "manager").await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["email"], "grace@example.com");
    // Five sign-up mails, then the invitation.
    let token = invitation_token(&app, "grace@example.com", 6).await;
    assert!(token.starts_with(&s["owner"].tenant));
    let stored: Vec<Vec<u8>> = app
        .inspect("SELECT token_hash FROM invitations", None)
        .await;
    assert_eq!(
        stored,
        vec![palisade::crypto::sha256(token.as_bytes()).to_vec()]
    );

    let mallory = verified(&app, "mallory@example.com").await;
    assert_eq!(
        accept(&app, &mallory, &token).await.0,
        404,
        "bound to its email"
    );
    // Until her address is verified, grace cannot even sign in to accept it.
    app.sign_up_unverified("grace@example.com").await;
    let early = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": "grace@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(early.status(), 401, "only once the address is verified");
    verify_pending(&app, "grace@example.com").await;
    let grace = app.login("grace@example.com").await;
    let (status, joined) = accept(&app, &grace, &token).await;
    assert_eq!(status, 200, "{joined}");
    assert_eq!(joined["role"], "manager");
    assert_eq!(joined["tenant_id"], s["owner"].tenant.as_str());
    assert_eq!(accept(&app, &grace, &token).await.0, 404, "single use");
    let in_tenant = login_to(&app, "grace@example.com", &s["owner"].tenant).await;
    let me: Value = app
        .get_as("/api/v1/me", &in_tenant.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["role"], "manager");
    let pending: Vec<Value> = app
        .get_as("/api/v1/invitations", &s["admin"].access)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        pending.is_empty(),
        "accepted invitations are no longer pending"
    );
    // The joining is audited in the role joined with, not grace's role in her own tenant
    // (claim AUD-1).
    let events: Value = app
        .get_as(
            "/api/v1/audit/events?action=members.joined",
            &s["owner"].access,
        )
        .await
        .json()
        .await
        .unwrap();
    let joined = &events["events"][0];
    assert_eq!(joined["actor_role"], "manager", "{joined}");
    assert_eq!(joined["changes"]["role"]["after"], "manager", "{joined}");
}

// claim: RBAC-6
#[tokio::test]
async fn revoked_and_expired_invitations_do_not_work() {
    let app = spawn_app().await;
    let owner = app.signed_in("ada@example.com").await;
    let (_, first) = invite(&app, &owner, "grace@example.com", "member").await;
    let first_token = invitation_token(&app, "grace@example.com", 2).await;
    let (status, _) = send(
        &app,
        reqwest::Method::DELETE,
        &format!("/api/v1/invitations/{}", first["id"].as_str().unwrap()),
        &owner.access,
        None,
    )
    .await;
    assert_eq!(status, 204);
    invite(&app, &owner, "linus@example.com", "member").await;
    let second_token = invitation_token(&app, "linus@example.com", 3).await;
    invite(&app, &owner, "mia@example.com", "member").await;
    let third_token = invitation_token(&app, "mia@example.com", 4).await;
    let grace = verified(&app, "grace@example.com").await;
    assert_eq!(accept(&app, &grace, &first_token).await.0, 404, "revoked");
    verified(&app, "linus@example.com").await;
    verified(&app, "mia@example.com").await;
    // Seven days: alive a second before, dead at the instant.
    app.clock
        .advance(std::time::Duration::from_secs(7 * 24 * 3600 - 1));
    let mia = app.login("mia@example.com").await;
    assert_eq!(accept(&app, &mia, &third_token).await.0, 200, "still alive");
    app.clock.advance(std::time::Duration::from_secs(1));
    let linus = app.login("linus@example.com").await;
    assert_eq!(accept(&app, &linus, &second_token).await.0, 404, "expired");
    assert_eq!(accept(&app, &linus, "garbage").await.0, 404);
}

// claim: TEN-4
#[tokio::test]
async fn another_tenants_invitation_answers_like_a_missing_one() {
    let app = spawn_app().await;
    let ada = app.signed_in("ada@example.com").await;
    let bob = app.signed_in("bob@example.com").await;
    let (_, invitation) = invite(&app, &ada, "grace@example.com", "member").await;
    let mut bodies = Vec::new();
    for id in [
        invitation["id"].as_str().unwrap(),
        "inv_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0",
        "x",
    ] {
        let response = app
            .client
            .delete(app.url(&format!("/api/v1/invitations/{id}")))
            .bearer_auth(&bob.access)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);
        let request_id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        bodies.push(response.text().await.unwrap().replace(&request_id, "<id>"));
    }
    assert!(bodies.iter().all(|b| *b == bodies[0]), "{bodies:?}");
    let pending: Vec<Value> = app
        .get_as("/api/v1/invitations", &ada.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(pending.len(), 1, "ada's invitation is untouched");
    let bobs: Vec<Value> = app
        .get_as("/api/v1/invitations", &bob.access)
        .await
        .json()
        .await
        .unwrap();
    assert!(bobs.is_empty(), "and bob does not see it");
}

/// A body each walked operation accepts, so the answer is about the id, not the body.
fn valid_body(path: &str) -> Value {
    if path.ends_with("/reveal") {
        json!({ "reason": "isolation" })
    } else if path.contains("/secrets/") {
        json!({ "value": "a value" })
    } else if path.ends_with("/replay") {
        json!({ "message_id": "msg_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0" })
    } else if path.ends_with("/recover") {
        json!({ "since": "2020-01-01T00:00:00Z" })
    } else if path.ends_with("/rotate-secret") {
        json!({})
    } else if path.contains("/webhooks/endpoints/") {
        json!({ "enabled": true })
    } else if path.ends_with("/rotate") {
        json!({ "overlap_seconds": 0 })
    } else if path.ends_with("/custom-role") {
        json!({ "custom_role_id": null })
    } else {
        json!({ "role": "viewer" })
    }
}

/// Every id-like string (`usr_…`, `ten_…`, …) and email in a JSON answer.
fn identifiers(value: &Value, found: &mut std::collections::HashSet<String>) {
    match value {
        Value::String(text) => {
            let id_like = text.split_once('_').is_some_and(|(prefix, rest)| {
                (2..=4).contains(&prefix.len())
                    && rest.len() >= 32
                    && rest.chars().all(|c| c.is_ascii_hexdigit())
            });
            if id_like || text.contains('@') {
                found.insert(text.clone());
            }
        }
        Value::Array(items) => items.iter().for_each(|item| identifiers(item, found)),
        Value::Object(fields) => fields.values().for_each(|item| identifiers(item, found)),
        _ => {}
    }
}

// claim: TEN-2
#[tokio::test]
async fn no_collection_answers_tenant_b_with_a_row_of_tenant_a() {
    let app = spawn_app().await;
    let a = app.signed_in("a-owner@example.com").await;
    let b = app.signed_in("b-owner@example.com").await;
    // Tenant A gets a row in every collection: a second member, an invitation, a custom
    // role, an application, a key, audit events.
    app.sign_up("a-member@example.com").await;
    add_membership(&app, "a-member@example.com", &a.tenant, "member").await;
    invite(&app, &a, "a-guest@example.com", "member").await;
    for (path, body) in [
        (
            "/api/v1/custom-roles",
            json!({"name": "A auditor", "actions": ["members.read"]}),
        ),
        ("/api/v1/applications", json!({"name": "A sync"})),
        (
            "/api/v1/api-keys",
            json!({"name": "A CI", "role": "viewer"}),
        ),
    ] {
        let (status, _) = send(&app, reqwest::Method::POST, path, &a.access, Some(body)).await;
        assert_eq!(status, 201, "{path}");
    }
    let (_, b_key) = send(
        &app,
        reqwest::Method::POST,
        "/api/v1/api-keys",
        &b.access,
        Some(json!({"name": "B CI", "role": "admin"})),
    )
    .await;
    let b_key = b_key["secret"].as_str().unwrap().to_owned();

    // Every collection GET of the document (no path parameter), as A, then as B's session
    // and B's key: whatever A sees of its own, B sees none of.
    let doc: Value = app.get("/api/openapi.json").await.json().await.unwrap();
    let collections: Vec<String> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(path, item)| {
            path.starts_with("/api/v1/") && !path.contains('{') && item.get("get").is_some()
        })
        .map(|(path, _)| path.clone())
        .collect();
    let mut of_a = std::collections::HashSet::from([a.tenant.clone()]);
    let mut walked = 0;
    for path in &collections {
        let (status, answer) = send(&app, reqwest::Method::GET, path, &a.access, None).await;
        if status == 200 {
            identifiers(&answer, &mut of_a);
        }
    }
    let mut of_b = std::collections::HashSet::new();
    let (_, b_me) = send(&app, reqwest::Method::GET, "/api/v1/me", &b.access, None).await;
    identifiers(&b_me, &mut of_b);
    of_a.retain(|id| !of_b.contains(id));
    assert!(of_a.len() >= 10, "A's rows were seen by A: {of_a:?}");
    for path in &collections {
        for (who, request) in [
            (
                "session",
                app.client.get(app.url(path)).bearer_auth(&b.access),
            ),
            (
                "key",
                app.client.get(app.url(path)).header("x-api-key", &b_key),
            ),
        ] {
            let response = request.send().await.unwrap();
            let text = response.text().await.unwrap();
            for id in &of_a {
                assert!(
                    !text.contains(id.as_str()),
                    "B's {who} sees {id} of A at {path}"
                );
            }
            walked += 1;
        }
    }
    assert!(walked >= 2 * 10, "{collections:?}");
}

/// A path and its body, if any.
type Request = (String, Option<Value>);

// claim: TEN-4, KEY-1
#[tokio::test]
async fn every_route_with_an_id_answers_another_tenants_ids_like_missing_ones() {
    let app = spawn_app().await;
    let a = app.signed_in("a@example.com").await;
    let b = app.signed_in("b@example.com").await;
    let (_, invitation) = invite(&app, &a, "guest@example.com", "member").await;
    let (_, custom) = send(
        &app,
        reqwest::Method::POST,
        "/api/v1/custom-roles",
        &a.access,
        Some(json!({"name": "Auditor", "actions": ["members.read"]})),
    )
    .await;
    let (_, application) = send(
        &app,
        reqwest::Method::POST,
        "/api/v1/applications",
        &a.access,
        Some(json!({"name": "Billing sync"})),
    )
    .await;
    let (_, a_key) = send(
        &app,
        reqwest::Method::POST,
        "/api/v1/api-keys",
        &a.access,
        Some(json!({"name": "CI", "role": "admin"})),
    )
    .await;
    let (_, b_key) = send(
        &app,
        reqwest::Method::POST,
        "/api/v1/api-keys",
        &b.access,
        Some(json!({"name": "CI", "role": "admin"})),
    )
    .await;
    let b_key = b_key["secret"].as_str().unwrap().to_owned();
    let (_, secret) = send(
        &app,
        reqwest::Method::POST,
        "/api/v1/secrets",
        &a.access,
        Some(json!({"name": "slack", "value": "tenant A's value"})),
    )
    .await;
    let (_, endpoint) = send(
        &app,
        reqwest::Method::POST,
        "/api/v1/webhooks/endpoints",
        &a.access,
        Some(json!({"url": "https://93.184.216.34/a", "event_types": ["member.added"]})),
    )
    .await;
    let a_me: Value = app
        .get_as("/api/v1/me", &a.access)
        .await
        .json()
        .await
        .unwrap();
    // Tenant A's real ids, by path parameter; a route with any other parameter fails here
    // until this table says which of A's ids to try.
    let real_ids = HashMap::from([
        ("user_id", a_me["user"]["id"].as_str().unwrap().to_owned()),
        (
            "session_id",
            a_me["session_id"].as_str().unwrap().to_owned(),
        ),
        (
            "invitation_id",
            invitation["id"].as_str().unwrap().to_owned(),
        ),
        ("role_id", custom["id"].as_str().unwrap().to_owned()),
        (
            "application_id",
            application["id"].as_str().unwrap().to_owned(),
        ),
        ("key_id", a_key["id"].as_str().unwrap().to_owned()),
        ("secret_id", secret["id"].as_str().unwrap().to_owned()),
        ("endpoint_id", endpoint["id"].as_str().unwrap().to_owned()),
    ]);
    let missing_ids = HashMap::from([
        ("user_id", "usr_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0"),
        ("session_id", "ses_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0"),
        ("invitation_id", "inv_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0"),
        ("role_id", "crl_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0"),
        ("application_id", "app_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0"),
        ("secret_id", "sec_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0"),
        ("key_id", "key_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0"),
        ("endpoint_id", "whk_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0"),
    ]);
    let doc: Value = app.get("/api/openapi.json").await.json().await.unwrap();
    let mut walked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let Some(start) = path.find('{') else {
            continue;
        };
        let name = &path[start + 1..path.find('}').unwrap()];
        if name == "source" {
            // An inbound source is the deployment's, named in its settings: no tenant's id.
            continue;
        }
        let real = real_ids
            .get(name)
            .unwrap_or_else(|| panic!("{path}: no tenant-A id for {{{name}}} in this test"));
        // As tenant B's member and as tenant B's admin API key (claim KEY-1: a key belongs
        // to one tenant).
        for credential in [&b.access, &b_key] {
            for method in item.as_object().unwrap().keys() {
                let mut answers = Vec::new();
                for id in [real.as_str(), missing_ids[name]] {
                    let (status, body) = send(
                        &app,
                        method.to_uppercase().parse().unwrap(),
                        &path.replace(&format!("{{{name}}}"), id),
                        credential,
                        Some(valid_body(path)),
                    )
                    .await;
                    let mut body = body;
                    body["error"]["request_id"] = Value::Null;
                    answers.push((status, body));
                }
                // A key meets a people-only route's 401 before any id is looked at.
                let refused_to_keys = credential == &b_key && answers[0].0 == 401;
                assert!(
                    answers[0].0 == 404 || refused_to_keys,
                    "{method} {path} as tenant B: {:?}",
                    answers[0]
                );
                assert_eq!(
                    answers[0], answers[1],
                    "{method} {path}: real and missing ids differ"
                );
                walked += 1;
            }
        }
    }
    assert!(walked >= 4, "walked {walked} operations");

    // The same for A's ids in bodies and queries, by the id's kind: each operation answers
    // tenant B exactly as it does for an id that exists nowhere.
    let by_kind: HashMap<&str, (String, String)> = real_ids
        .iter()
        .map(|(name, real)| {
            let kind = real.split_once('_').unwrap().0;
            (kind, (real.clone(), missing_ids[name].to_owned()))
        })
        .chain([(
            "ten",
            (
                a.tenant.clone(),
                "ten_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0".to_owned(),
            ),
        )])
        .collect();
    app.sign_up("b-member@example.com").await;
    add_membership(&app, "b-member@example.com", &b.tenant, "member").await;
    let b_members: Value = app
        .get_as("/api/v1/members", &b.access)
        .await
        .json()
        .await
        .unwrap();
    let b_member = b_members
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"] == "b-member@example.com")
        .unwrap()["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut schemas = crate::schema::Schemas::new(doc.clone());
    let kind_of = |schema: &Value| {
        let pattern = schema["pattern"].as_str()?;
        let kind = pattern.strip_prefix('^')?.split_once("_[0-9a-f]{32}")?.0;
        by_kind.contains_key(kind).then(|| kind.to_owned())
    };
    let mut in_bodies = 0;
    let mut in_queries = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        // B's own ids in the path, so the request reaches the id in its body or query.
        let concrete = path.replace("{user_id}", &b_member);
        if concrete.contains('{') {
            continue;
        }
        for (method, operation) in item.as_object().unwrap() {
            let method: reqwest::Method = method.to_uppercase().parse().unwrap();
            // What is tried, then the two requests: with A's id, and with a missing one.
            let mut trials: Vec<(String, [Request; 2])> = Vec::new();
            if let Some(schema) = schemas.body_schema(operation) {
                let valid = schemas.valid_body(&schema);
                for (name, property) in schema["properties"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default()
                {
                    let resolved = schemas.property_schema(&property).clone();
                    if let Some(kind) = kind_of(&resolved) {
                        let (real, missing) = &by_kind[kind.as_str()];
                        let (mut with_real, mut with_missing) = (valid.clone(), valid.clone());
                        with_real.insert(name.clone(), json!(real));
                        with_missing.insert(name.clone(), json!(missing));
                        trials.push((
                            format!("body.{name}"),
                            [
                                (concrete.clone(), Some(Value::Object(with_real))),
                                (concrete.clone(), Some(Value::Object(with_missing))),
                            ],
                        ));
                        in_bodies += 1;
                    }
                }
            }
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                if parameter["in"] != "query" {
                    continue;
                }
                let name = parameter["name"].as_str().unwrap();
                let schema = schemas.property_schema(&parameter["schema"]).clone();
                if !schemas.is_text(&schema)
                    || schema["pattern"].is_string() && kind_of(&schema).is_none()
                {
                    continue;
                }
                for (real, missing) in by_kind.values() {
                    trials.push((
                        format!("?{name}"),
                        [
                            (format!("{concrete}?{name}={real}"), None),
                            (format!("{concrete}?{name}={missing}"), None),
                        ],
                    ));
                    in_queries += 1;
                }
            }
            for (what, requests) in trials {
                let mut answers = Vec::new();
                for (path, body) in requests {
                    let (status, mut body) =
                        send(&app, method.clone(), &path, &b.access, body).await;
                    body["error"]["request_id"] = Value::Null;
                    answers.push((status, body));
                }
                assert!(answers[0].0 < 500, "{method} {what}: {:?}", answers[0]);
                assert_eq!(
                    answers[0], answers[1],
                    "{method} {path} {what}: A's id and a missing one differ"
                );
            }
        }
    }
    assert!(
        in_bodies >= 3 && in_queries >= 3,
        "{in_bodies} body ids, {in_queries} query ids"
    );
    // Nothing of A's was touched.
    let pending: Vec<Value> = app
        .get_as("/api/v1/invitations", &a.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(app.get_as("/api/v1/me", &a.access).await.status(), 200);
}

// claim: RBAC-2, RBAC-6
#[tokio::test]
async fn an_owner_transfers_ownership_and_stays_as_an_admin() {
    let app = spawn_app().await;
    let s = staffed_tenant(&app).await;
    let owner_id = user_id_of(&app, &s["owner"]).await;
    let member_id = user_id_of(&app, &s["member"]).await;
    let transfer = |who: &str, to: &str| {
        let access = s[who].access.clone();
        let to = to.to_owned();
        let app = &app;
        async move {
            send(
                app,
                reqwest::Method::POST,
                "/api/v1/tenant/transfer-ownership",
                &access,
                Some(json!({ "user_id": to })),
            )
            .await
            .0
        }
    };
    assert_eq!(transfer("admin", &member_id).await, 403, "Owner only");
    assert_eq!(transfer("owner", &owner_id).await, 403, "not to oneself");
    assert_eq!(
        transfer("owner", "usr_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0").await,
        404
    );
    assert_eq!(transfer("owner", &member_id).await, 204);
    let me: Value = app
        .get_as("/api/v1/me", &s["owner"].access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        me["role"], "admin",
        "the previous owner's very next request"
    );
    let me: Value = app
        .get_as("/api/v1/me", &s["member"].access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["role"], "owner");
}

// claim: RBAC-3
#[tokio::test]
async fn a_custom_role_grants_exactly_its_actions_and_never_more_than_its_giver_has() {
    let app = spawn_app().await;
    let s = staffed_tenant(&app).await;
    let member_id = user_id_of(&app, &s["member"]).await;
    let create = |who: &str, name: &str, actions: Value| {
        let access = s[who].access.clone();
        let body = json!({"name": name, "actions": actions});
        let app = &app;
        async move {
            send(
                app,
                reqwest::Method::POST,
                "/api/v1/custom-roles",
                &access,
                Some(body),
            )
            .await
        }
    };
    assert_eq!(
        create("admin", "Bad", json!(["tenant.delete"])).await.0,
        403,
        "Owner-only"
    );
    assert_eq!(
        create("admin", "Bad", json!(["no.such.action"])).await.0,
        422
    );
    assert_eq!(
        create("manager", "Bad", json!(["members.read"])).await.0,
        403,
        "roles.manage"
    );
    let (status, recruiter) = create(
        "admin",
        "Recruiter",
        json!(["members.read", "members.invite"]),
    )
    .await;
    assert_eq!(status, 201, "{recruiter}");
    assert_eq!(
        create("admin", "Recruiter", json!(["members.read"]))
            .await
            .0,
        409
    );

    let invite_as_member = || invite(&app, &s["member"], "new@example.com", "viewer");
    assert_eq!(invite_as_member().await.0, 403, "a Member may not invite");
    let assign = |role: Value| {
        let access = s["admin"].access.clone();
        let path = format!("/api/v1/members/{member_id}/custom-role");
        let app = &app;
        async move {
            send(
                app,
                reqwest::Method::PUT,
                &path,
                &access,
                Some(json!({ "custom_role_id": role })),
            )
            .await
            .0
        }
    };
    assert_eq!(assign(recruiter["id"].clone()).await, 204);
    assert_eq!(
        invite_as_member().await.0,
        201,
        "the custom role's action, on the next request"
    );

    // Deleting the role returns its holders to their built-in role at once.
    let (status, _) = send(
        &app,
        reqwest::Method::DELETE,
        &format!("/api/v1/custom-roles/{}", recruiter["id"].as_str().unwrap()),
        &s["admin"].access,
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(invite_as_member().await.0, 403);
    assert_eq!(assign(Value::Null).await, 204);

    // A member holding a custom role who becomes Owner keeps every action.
    let (_, auditor) = create("admin", "Auditor", json!(["members.read"])).await;
    assert_eq!(assign(auditor["id"].clone()).await, 204);
    let (status, _) = send(
        &app,
        reqwest::Method::POST,
        "/api/v1/tenant/transfer-ownership",
        &s["owner"].access,
        Some(json!({ "user_id": member_id })),
    )
    .await;
    assert_eq!(status, 204);
    let viewer_id = user_id_of(&app, &s["viewer"]).await;
    let (status, body) = send(
        &app,
        reqwest::Method::DELETE,
        &format!("/api/v1/members/{viewer_id}"),
        &s["member"].access,
        None,
    )
    .await;
    assert_eq!(status, 204, "{body}");
}

// claim: RBAC-6, RBAC-3
#[tokio::test]
async fn a_restricted_member_cannot_lift_a_restriction_or_grant_beyond_it() {
    let app = spawn_app().await;
    let s = staffed_tenant(&app).await;
    let admin_id = user_id_of(&app, &s["admin"]).await;
    let member_id = user_id_of(&app, &s["member"]).await;
    // The owner restricts the admin to managing roles and inviting.
    let (_, limited) = send(
        &app,
        reqwest::Method::POST,
        "/api/v1/custom-roles",
        &s["owner"].access,
        Some(json!({"name": "Limited", "actions": ["roles.manage", "members.invite", "members.read"]})),
    )
    .await;
    let (status, _) = send(
        &app,
        reqwest::Method::PUT,
        &format!("/api/v1/members/{admin_id}/custom-role"),
        &s["owner"].access,
        Some(json!({ "custom_role_id": limited["id"] })),
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = send(
        &app,
        reqwest::Method::DELETE,
        &format!("/api/v1/custom-roles/{}", limited["id"].as_str().unwrap()),
        &s["admin"].access,
        None,
    )
    .await;
    assert_eq!(status, 403, "deleting one's own restriction");
    assert_eq!(
        invite(&app, &s["admin"], "accomplice@example.com", "admin")
            .await
            .0,
        403,
        "a full Admin is more than the restricted admin may grant"
    );
    assert_eq!(
        invite(&app, &s["admin"], "helper@example.com", "viewer")
            .await
            .0,
        201
    );
    let (status, _) = send(
        &app,
        reqwest::Method::PATCH,
        &format!("/api/v1/members/{member_id}"),
        &s["admin"].access,
        Some(json!({"role": "admin"})),
    )
    .await;
    assert_eq!(status, 403);
}

// claim: RBAC-6
#[tokio::test]
async fn an_invitation_dies_when_its_inviter_could_no_longer_grant_it() {
    let app = spawn_app().await;
    let s = staffed_tenant(&app).await;
    let admin_id = user_id_of(&app, &s["admin"]).await;
    assert_eq!(
        invite(&app, &s["admin"], "grace@example.com", "admin")
            .await
            .0,
        201
    );
    let token = invitation_token(&app, "grace@example.com", 6).await;
    let (status, _) = send(
        &app,
        reqwest::Method::PATCH,
        &format!("/api/v1/members/{admin_id}"),
        &s["owner"].access,
        Some(json!({"role": "member"})),
    )
    .await;
    assert_eq!(status, 204);
    let grace = verified(&app, "grace@example.com").await;
    assert_eq!(accept(&app, &grace, &token).await.0, 404);
}

// claim: RBAC-4
#[tokio::test]
async fn applications_group_a_tenants_machine_access() {
    let app = spawn_app().await;
    let s = staffed_tenant(&app).await;
    let create = |who: &str, name: &str| {
        let access = s[who].access.clone();
        let body = json!({ "name": name });
        let app = &app;
        async move {
            send(
                app,
                reqwest::Method::POST,
                "/api/v1/applications",
                &access,
                Some(body),
            )
            .await
        }
    };
    assert_eq!(create("manager", "Sync").await.0, 403);
    let (status, created) = create("admin", "Sync").await;
    assert_eq!(status, 201, "{created}");
    assert!(created["id"].as_str().unwrap().starts_with("app_"));
    assert_eq!(create("admin", "Sync").await.0, 409);
    let (status, listed) = send(
        &app,
        reqwest::Method::GET,
        "/api/v1/applications",
        &s["viewer"].access,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let path = format!("/api/v1/applications/{}", created["id"].as_str().unwrap());
    assert_eq!(
        send(
            &app,
            reqwest::Method::DELETE,
            &path,
            &s["admin"].access,
            None
        )
        .await
        .0,
        204
    );
    assert_eq!(
        send(
            &app,
            reqwest::Method::DELETE,
            &path,
            &s["admin"].access,
            None
        )
        .await
        .0,
        404
    );
}

// claim: RBAC-6, ID-10
#[tokio::test]
async fn an_invited_person_signs_up_into_the_inviting_tenant_only() {
    let app = spawn_app().await;
    let s = staffed_tenant(&app).await;
    let (status, _) = invite(&app, &s["admin"], "grace@example.com", "manager").await;
    assert_eq!(status, 201);
    let token = invitation_token(&app, "grace@example.com", 6).await;
    let tenants_before = app.count_rows("tenants").await;
    let signup = |email: &str, token: &str| json!({"email": email, "password": PASSWORD, "invitation_token": token});

    // Another address, a tampered token, both fields or neither: refused, nothing written.
    let users_before = app.count_rows("users").await;
    for (body, status) in [
        (signup("mallory@example.com", &token), 404),
        (
            signup(
                "grace@example.com",
                &format!("{}x", &token[..token.len() - 1]),
            ),
            404,
        ),
        (signup("grace@example.com", "garbage"), 404),
        (
            json!({"email": "grace@example.com", "password": PASSWORD,
                   "invitation_token": token, "tenant_name": "Spare"}),
            422,
        ),
        (
            json!({"email": "grace@example.com", "password": PASSWORD}),
            422,
        ),
    ] {
        let refused = app.post_json("/api/v1/auth/signup", &body).await;
        assert_eq!(refused.status(), status, "{body}");
    }
    assert_eq!(app.count_rows("users").await, users_before);

    // The invitation's token: an account in that tenant, in the invited role, signed in at
    // once (the mail proved the address), and no tenant of its own.
    let joined = app
        .post_json("/api/v1/auth/signup", &signup("grace@example.com", &token))
        .await;
    assert_eq!(joined.status(), 201);
    assert_eq!(app.count_rows("tenants").await, tenants_before);
    let grace = app.login("grace@example.com").await;
    assert_eq!(grace.tenant, s["owner"].tenant);
    let me = app.me(&grace).await;
    assert_eq!(me["role"], "manager", "{me}");
    let memberships: Vec<i64> = app
        .inspect(
            "SELECT count(*) FROM memberships m JOIN users u ON u.id = m.user_id
             WHERE u.email = $1",
            Some("grace@example.com"),
        )
        .await;
    assert_eq!(memberships, [1]);
    let events: Value = app
        .get_as(
            "/api/v1/audit/events?action=members.joined",
            &s["owner"].access,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(events["events"][0]["actor_role"], "manager", "{events}");

    // Single use; and an address that already has an account is answered alike, with
    // nothing changed (its owner signs in and accepts instead).
    let again = app
        .post_json("/api/v1/auth/signup", &signup("grace@example.com", &token))
        .await;
    assert_eq!(again.status(), 201);
    assert_eq!(app.count_rows("users").await, users_before + 1);
    app.sign_up("dora@example.com").await;
    let users = app.count_rows("users").await;
    let (status, _) = invite(&app, &s["admin"], "dora@example.com", "viewer").await;
    assert_eq!(status, 201);
    let existing = invitation_token(&app, "dora@example.com", 8).await;
    let answered = app
        .post_json(
            "/api/v1/auth/signup",
            &signup("dora@example.com", &existing),
        )
        .await;
    assert_eq!(answered.status(), 201);
    assert_eq!(app.count_rows("users").await, users);
    app.stop().await;
}
