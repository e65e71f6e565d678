//! Acting on objects that carry a grant (claims RBAC-4, RBAC-6): a key, an invitation, a
//! custom role, a member, an application and its Agents. Whoever could not grant what an
//! object carries may not rotate, revoke, give, change or delete it either — otherwise a
//! Manager rotates an Admin's key, keeps the new secret, and acts as an Admin.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, Session, TestApp};
use crate::tenancy::{staffed_tenant, user_id_of};

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    access: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut request = app
        .client
        .request(method, app.url(path))
        .bearer_auth(access);
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn created(app: &TestApp, owner: &Session, path: &str, body: Value) -> Value {
    let (status, view) = send(app, Method::POST, path, &owner.access, Some(&body)).await;
    assert_eq!(status, 201, "{path}: {view}");
    view
}

async fn status_with_key(app: &TestApp, path: &str, key: &str) -> u16 {
    app.client
        .get(app.url(path))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Everything the owner can see of the tenant's grant-carrying objects.
async fn snapshot(app: &TestApp, owner: &Session) -> Vec<Value> {
    let mut state = Vec::new();
    for path in [
        "/api/v1/api-keys",
        "/api/v1/invitations",
        "/api/v1/custom-roles",
        "/api/v1/applications",
        "/api/v1/members",
    ] {
        let (status, body) = send(app, Method::GET, path, &owner.access, None).await;
        assert_eq!(status, 200, "{path}");
        state.push(body);
    }
    state
}

// claim: RBAC-6, KEY-5
#[tokio::test]
async fn a_manager_cannot_take_over_an_admin_key_by_rotating_it() {
    let app = spawn_app().await;
    let staff = staffed_tenant(&app).await;
    let owner = &staff["owner"];
    let manager = &staff["manager"];
    let key = created(
        &app,
        owner,
        "/api/v1/api-keys",
        json!({"name": "ci", "role": "admin"}),
    )
    .await;
    let id = key["id"].as_str().unwrap();
    let secret = key["secret"].as_str().unwrap();
    let (audit, _) = send(
        &app,
        Method::GET,
        "/api/v1/audit/events",
        &manager.access,
        None,
    )
    .await;
    assert_eq!(audit, 403, "the Manager may not read the audit log");
    let before = snapshot(&app, owner).await;
    let (rotated, answer) = send(
        &app,
        Method::POST,
        &format!("/api/v1/api-keys/{id}/rotate"),
        &manager.access,
        Some(&json!({"overlap_seconds": 604800})),
    )
    .await;
    assert_eq!(rotated, 403, "{answer}");
    assert!(answer.get("secret").is_none());
    let (revoked, _) = send(
        &app,
        Method::DELETE,
        &format!("/api/v1/api-keys/{id}"),
        &manager.access,
        None,
    )
    .await;
    assert_eq!(revoked, 403);
    assert_eq!(snapshot(&app, owner).await, before, "nothing changed");
    assert_eq!(
        status_with_key(&app, "/api/v1/audit/events", secret).await,
        200
    );
    // A Manager still rotates and revokes the keys they could have made.
    let own = created(
        &app,
        owner,
        "/api/v1/api-keys",
        json!({"name": "deploy", "role": "manager"}),
    )
    .await;
    let own = own["id"].as_str().unwrap();
    let path = format!("/api/v1/api-keys/{own}/rotate");
    let body = json!({"overlap_seconds": 0});
    let (status, _) = send(&app, Method::POST, &path, &manager.access, Some(&body)).await;
    assert_eq!(status, 200);
    let path = format!("/api/v1/api-keys/{own}");
    let (status, _) = send(&app, Method::DELETE, &path, &manager.access, None).await;
    assert_eq!(status, 204);
}

/// The operations on grant-carrying objects, in an order the allowed caller can run them
/// one after the other: (method, path, body), with `{key}`, `{invitation}`, `{role}`,
/// `{user}`, `{member}`, `{application}` filled in.
const GUARDED: &[(&str, &str, Option<&str>)] = &[
    (
        "post",
        "/api/v1/api-keys/{key_id}/rotate",
        Some(r#"{"overlap_seconds": 604800}"#),
    ),
    ("delete", "/api/v1/api-keys/{key_id}", None),
    ("delete", "/api/v1/invitations/{invitation_id}", None),
    (
        "put",
        "/api/v1/members/{user_id}/custom-role",
        Some(r#"{"custom_role_id": "{role}"}"#),
    ),
    ("delete", "/api/v1/custom-roles/{role_id}", None),
    (
        "patch",
        "/api/v1/members/{user_id}",
        Some(r#"{"role": "viewer"}"#),
    ),
    ("delete", "/api/v1/members/{user_id}", None),
    ("delete", "/api/v1/applications/{application_id}", None),
];

// claim: RBAC-6, RBAC-4
#[tokio::test]
async fn every_operation_on_a_grant_carrying_object_refuses_whoever_could_not_grant_it() {
    let app = spawn_app().await;
    let staff = staffed_tenant(&app).await;
    let owner = &staff["owner"];

    // The walk covers every operation of the document on such an object.
    let doc: Value = app.get("/api/openapi.json").await.json().await.unwrap();
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let carries = [
            "{key_id}",
            "{invitation_id}",
            "{role_id}",
            "{application_id}",
        ]
        .iter()
        .any(|p| path.contains(p))
            || path.starts_with("/api/v1/members/{user_id}");
        if carries {
            for method in item.as_object().unwrap().keys() {
                documented.push((method.clone(), path.clone()));
            }
        }
    }
    documented.sort();
    let mut walked: Vec<_> = GUARDED
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    walked.sort();
    assert_eq!(
        walked, documented,
        "every operation on a grant-carrying object is walked"
    );

    // Objects that each carry an Admin's grant (or an action only Admins have).
    let key = created(
        &app,
        owner,
        "/api/v1/api-keys",
        json!({"name": "ci", "role": "admin"}),
    )
    .await;
    let invitation = created(
        &app,
        owner,
        "/api/v1/invitations",
        json!({"email": "new-admin@example.com", "role": "admin"}),
    )
    .await;
    let auditor = created(
        &app,
        owner,
        "/api/v1/custom-roles",
        json!({"name": "Auditor", "actions": ["audit.read"]}),
    )
    .await;
    let application = created(
        &app,
        owner,
        "/api/v1/applications",
        json!({"name": "Billing"}),
    )
    .await;
    let application_id = application["id"].as_str().unwrap();
    let agent = created(
        &app,
        owner,
        "/api/v1/api-keys",
        json!({"name": "agent", "role": "admin", "application_id": application_id}),
    )
    .await;
    let admin_user = user_id_of(&app, &staff["admin"]).await;
    let viewer_user = user_id_of(&app, &staff["viewer"]).await;

    // A Member whose custom role holds every action but the audit log's: it may manage
    // keys, invitations, roles, members and applications, yet not grant an Admin's all.
    let delegate_actions: Vec<String> = {
        let table = crate::manifest::action_rows(&app).await;
        table
            .iter()
            .filter(|row| row["roles"].as_array().unwrap().len() > 1)
            .map(|row| row["action"].as_str().unwrap().to_owned())
            .filter(|a| !a.starts_with("audit."))
            .collect()
    };
    let delegate_role = created(
        &app,
        owner,
        "/api/v1/custom-roles",
        json!({"name": "Delegate", "actions": delegate_actions}),
    )
    .await;
    let member_user = user_id_of(&app, &staff["member"]).await;
    let (status, _) = send(
        &app,
        Method::PUT,
        &format!("/api/v1/members/{member_user}/custom-role"),
        &owner.access,
        Some(&json!({"custom_role_id": delegate_role["id"]})),
    )
    .await;
    assert_eq!(status, 204);

    let fill = |text: &str, target_user: &str| {
        text.replace("{key_id}", key["id"].as_str().unwrap())
            .replace("{invitation_id}", invitation["id"].as_str().unwrap())
            .replace("{role_id}", auditor["id"].as_str().unwrap())
            .replace("{role}", auditor["id"].as_str().unwrap())
            .replace("{application_id}", application_id)
            .replace("{user_id}", target_user)
    };
    let target_of = |path: &str| {
        // The custom role is given to the Viewer; the member operations act on the Admin.
        if path.ends_with("/custom-role") {
            viewer_user.clone()
        } else {
            admin_user.clone()
        }
    };
    let before = snapshot(&app, owner).await;
    let mut refused = 0;
    for caller in ["manager", "member", "viewer"] {
        let session = &staff[caller];
        for (method, path, body) in GUARDED {
            let target = target_of(path);
            let url = fill(path, &target);
            let body: Option<Value> =
                body.map(|b| serde_json::from_str(&fill(b, &target)).unwrap());
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let (status, answer) = send(&app, method, &url, &session.access, body.as_ref()).await;
            assert_eq!(status, 403, "{caller} {path}: {answer}");
            assert!(answer.get("secret").is_none());
            refused += 1;
        }
    }
    assert_eq!(refused, 3 * GUARDED.len());
    assert_eq!(snapshot(&app, owner).await, before, "nothing changed");
    let key_secret = key["secret"].as_str().unwrap();
    let agent_secret = agent["secret"].as_str().unwrap();
    assert_eq!(
        status_with_key(&app, "/api/v1/audit/events", key_secret).await,
        200
    );
    assert_eq!(
        status_with_key(&app, "/api/v1/api-keys", agent_secret).await,
        200
    );

    // Whoever could grant it may do each of them.
    for (method, path, body) in GUARDED {
        let target = target_of(path);
        let url = fill(path, &target);
        let body: Option<Value> = body.map(|b| serde_json::from_str(&fill(b, &target)).unwrap());
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let (status, answer) = send(&app, method, &url, &owner.access, body.as_ref()).await;
        assert!(
            (200..300).contains(&status),
            "owner {path}: {status} {answer}"
        );
    }
    // The revocation ended the key (and its overlap); the deletion ended the Agent.
    assert_eq!(
        status_with_key(&app, "/api/v1/tenant", key_secret).await,
        401
    );
    assert_eq!(
        status_with_key(&app, "/api/v1/tenant", agent_secret).await,
        401
    );
}

// claim: RBAC-4, KEY-2
#[tokio::test]
async fn an_agent_cannot_escape_its_application_by_deleting_it() {
    let app = spawn_app().await;
    let owner = app.signed_in("owner@example.com").await;
    let application = created(
        &app,
        &owner,
        "/api/v1/applications",
        json!({"name": "Billing"}),
    )
    .await;
    let id = application["id"].as_str().unwrap();
    let agent = created(
        &app,
        &owner,
        "/api/v1/api-keys",
        json!({"name": "agent", "role": "admin", "application_id": id}),
    )
    .await;
    let agent = agent["secret"].as_str().unwrap();
    let response = app
        .client
        .delete(app.url(&format!("/api/v1/applications/{id}")))
        .header("x-api-key", agent)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let seen: Value = app
        .client
        .get(app.url("/api/v1/tenant"))
        .header("x-api-key", agent)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["application_id"], id, "still confined");

    // An Admin deleting the application ends its Agents at once, on the very next request.
    let other = created(
        &app,
        &owner,
        "/api/v1/api-keys",
        json!({"name": "tenant-wide", "role": "viewer"}),
    )
    .await;
    let (status, _) = send(
        &app,
        Method::DELETE,
        &format!("/api/v1/applications/{id}"),
        &owner.access,
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(status_with_key(&app, "/api/v1/tenant", agent).await, 401);
    let other = other["secret"].as_str().unwrap();
    assert_eq!(
        status_with_key(&app, "/api/v1/tenant", other).await,
        200,
        "others live"
    );
    let keys: Vec<Value> = app
        .get_as("/api/v1/api-keys", &owner.access)
        .await
        .json()
        .await
        .unwrap();
    let ended = keys.iter().find(|k| k["name"] == "agent").unwrap();
    assert_eq!(ended["status"], "revoked");
}
