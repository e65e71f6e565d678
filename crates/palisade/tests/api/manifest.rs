//! The app's manifest (claim APP-1): its resource types, actions and roles join Palisade's
//! one action table — published, enforced in decisions, usable in custom roles, app roles
//! and key scopes — and a bad manifest refuses the start, naming every problem.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{json, Value};

use crate::access::{
    denied, effective_actions, evaluate, service_credential, user_subject, ALLOWED,
};
use crate::helpers::{settings_in, spawn_app, spawn_app_with, TestApp};
use crate::keys::create_key;
use crate::tenancy::{send, staffed_tenant, user_id_of};

/// The work-order app's manifest (the example app's, and docs/integration.md's).
pub fn workorders_manifest() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/workorders-manifest.toml")
}

pub async fn with_workorders() -> TestApp {
    spawn_app_with(|settings| settings.access.manifest = Some(workorders_manifest())).await
}

/// The access model `GET /api/v1/roles` publishes.
async fn model(app: &TestApp) -> Value {
    let response = app.get("/api/v1/roles").await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// The action rows of `GET /api/v1/roles`.
pub async fn action_rows(app: &TestApp) -> Vec<Value> {
    model(app).await["actions"].as_array().unwrap().clone()
}

fn names(values: &Value) -> BTreeSet<String> {
    values
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// A question about one of the app's resources, in `tenant`.
pub fn about(subject: Value, action: &str, resource_type: &str, tenant: &str) -> Value {
    json!({
        "subject": subject,
        "action": {"name": action},
        "resource": {"type": resource_type, "id": "wo_123", "properties": {"tenant_id": tenant}},
    })
}

pub async fn assign_app_role(app: &TestApp, access: &str, user: &str, role: Value) -> (u16, Value) {
    send(
        app,
        Method::PATCH,
        &format!("/api/v1/members/{user}"),
        access,
        Some(json!({"app_role": role})),
    )
    .await
}

/// Creates a custom role of `actions` and gives it to `member`; the role as created.
async fn give_custom_role(
    app: &TestApp,
    owner: &str,
    member: &str,
    name: &str,
    actions: Value,
) -> Value {
    let body = json!({"name": name, "actions": actions});
    let (status, role) = send(app, Method::POST, "/api/v1/custom-roles", owner, Some(body)).await;
    assert_eq!(status, 201, "{role}");
    let (status, _) = set_custom_role(app, owner, member, role["id"].clone()).await;
    assert_eq!(status, 204);
    role
}

async fn set_custom_role(app: &TestApp, owner: &str, member: &str, id: Value) -> (u16, Value) {
    let path = format!("/api/v1/members/{member}/custom-role");
    send(
        app,
        Method::PUT,
        &path,
        owner,
        Some(json!({"custom_role_id": id})),
    )
    .await
}

/// The member's row of `GET /api/v1/members`.
async fn member_row(app: &TestApp, owner: &str, member: &str) -> Value {
    let (_, members) = send(app, Method::GET, "/api/v1/members", owner, None).await;
    members
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["user_id"] == member)
        .unwrap()
        .clone()
}

// claim: APP-1, RBAC-1
#[tokio::test]
async fn the_manifest_joins_the_one_table_and_each_app_role_does_exactly_its_actions() {
    let app = with_workorders().await;
    let staff = staffed_tenant(&app).await;
    let (owner, member) = (&staff["owner"], &staff["member"]);
    let member_id = user_id_of(&app, member).await;
    let (_, service) = service_credential(&app).await;
    let model = model(&app).await;
    let actions = model["actions"].as_array().unwrap();
    let delete = actions
        .iter()
        .find(|a| a["action"] == "workorder.delete")
        .expect("the app's actions are published");
    assert_eq!(delete["source"], "app");
    assert_eq!(delete["resource_type"], "workorder");
    assert_eq!(delete["destructive"], true);
    assert_eq!(delete["roles"], json!(["owner", "admin", "manager"]));
    let own = actions
        .iter()
        .find(|a| a["action"] == "members.read")
        .unwrap();
    assert_eq!(
        (&own["source"], &own["resource_type"]),
        (&json!("palisade"), &json!("tenant"))
    );
    let roles = model["roles"].as_array().unwrap();
    let app_roles: Vec<&Value> = roles.iter().filter(|r| r["source"] == "app").collect();
    let titles: Vec<&str> = app_roles
        .iter()
        .map(|r| r["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        [
            "Auditor",
            "Requester",
            "Technician",
            "Scheduler",
            "Coordinator",
            "Inventory Manager",
            "Vendor"
        ],
        "with the built-in Admin and Manager: the work-order app's nine"
    );
    assert_eq!(model["resource_types"][0]["relations"], json!(["assignee"]));
    let app_actions: Vec<(&str, &str)> = actions
        .iter()
        .filter(|a| a["source"] == "app")
        .map(|a| {
            (
                a["action"].as_str().unwrap(),
                a["resource_type"].as_str().unwrap(),
            )
        })
        .collect();

    for role in app_roles {
        let name = role["name"].as_str().unwrap();
        let (status, body) = assign_app_role(&app, &owner.access, &member_id, json!(name)).await;
        assert_eq!(status, 204, "{name}: {body}");
        let mut expected = names(&role["actions"]);
        // Seeing which tenant one acts in is never taken away.
        expected.insert("tenant.read".to_owned());
        let effective: BTreeSet<String> =
            effective_actions(&app, member).await.into_iter().collect();
        assert_eq!(effective, expected, "{name} may do exactly its actions");
        for (action, resource_type) in &app_actions {
            let question = about(
                user_subject(&member_id, member),
                action,
                resource_type,
                &owner.tenant,
            );
            let verdict = evaluate(&app, &service, &question).await;
            let holds = role["actions"].as_array().unwrap().contains(&json!(action));
            // An external role's actions apply only to what is assigned (none here).
            let expected = match (holds, role["external"] == true) {
                (false, _) => denied("role"),
                (true, true) => denied("not_assigned"),
                (true, false) => ALLOWED,
            };
            assert_eq!(verdict, expected, "{name} {action}");
        }
        let row = member_row(&app, &owner.access, &member_id).await;
        assert_eq!(
            (&row["app_role"], &row["role"]),
            (&json!(name), &role["rank"])
        );
    }
    // Taking away a custom role the member does not hold leaves the app role alone.
    let (status, _) = set_custom_role(&app, &owner.access, &member_id, Value::Null).await;
    assert_eq!(status, 204);
    let row = member_row(&app, &owner.access, &member_id).await;
    assert_eq!(row["app_role"], "vendor");
    // Taken away, the member keeps the last role's rank as their built-in role.
    let (status, _) = assign_app_role(&app, &owner.access, &member_id, Value::Null).await;
    assert_eq!(status, 204);
    let verdict = evaluate(
        &app,
        &service,
        &about(
            user_subject(&member_id, member),
            "workorder.update",
            "workorder",
            &owner.tenant,
        ),
    )
    .await;
    assert_eq!(
        verdict,
        denied("role"),
        "a Viewer (the Vendor's rank) may not update"
    );
    let events: Vec<String> = app
        .inspect(
            "SELECT action FROM audit_events WHERE action = 'members.app_role_changed'",
            None,
        )
        .await;
    assert_eq!(events.len(), 8, "every assignment is audited");
}

// claim: APP-1, RBAC-3, KEY-5
#[tokio::test]
async fn app_actions_work_in_custom_roles_and_key_scopes() {
    let app = with_workorders().await;
    let staff = staffed_tenant(&app).await;
    let (owner, member) = (&staff["owner"], &staff["member"]);
    let member_id = user_id_of(&app, member).await;
    let (_, service) = service_credential(&app).await;
    give_custom_role(
        &app,
        &owner.access,
        &member_id,
        "cleanup",
        json!(["workorder.delete", "workorder.read"]),
    )
    .await;
    let subject = user_subject(&member_id, member);
    let ask = |action: &str| about(subject.clone(), action, "workorder", &owner.tenant);
    assert_eq!(
        evaluate(&app, &service, &ask("workorder.delete")).await,
        ALLOWED
    );
    assert_eq!(
        evaluate(&app, &service, &ask("workorder.update")).await,
        denied("role"),
        "the custom role replaces the Member's own actions"
    );
    let (status, body) = send(
        &app,
        Method::POST,
        "/api/v1/custom-roles",
        &owner.access,
        Some(json!({"name": "flying", "actions": ["workorder.fly"]})),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (422, &json!("invalid_field")),
        "{body}"
    );

    let (view, key) = create_key(
        &app,
        owner,
        json!({"name": "sync", "role": "member", "scopes": ["workorder.read"]}),
    )
    .await;
    assert_eq!(view["scopes"], json!(["workorder.read"]));
    let key_subject = json!({"type": "api_key", "id": view["id"], "properties": {"api_key": key}});
    let by_key = |action: &str| about(key_subject.clone(), action, "workorder", &owner.tenant);
    assert_eq!(
        evaluate(&app, &service, &by_key("workorder.read")).await,
        ALLOWED
    );
    assert_eq!(
        evaluate(&app, &service, &by_key("workorder.update")).await,
        denied("role")
    );
    for (scopes, why) in [
        (json!(["settings.update"]), "people only"),
        (json!(["workorder.delete"]), "above the key's role"),
        (json!(["workorder.fly"]), "unknown"),
    ] {
        let (status, body) = send(
            &app,
            Method::POST,
            "/api/v1/api-keys",
            &owner.access,
            Some(json!({"name": "bad", "role": "member", "scopes": scopes})),
        )
        .await;
        assert_eq!(status, 422, "{why}: {body}");
    }
}

// claim: APP-1, APP-3, TEN-1
#[tokio::test]
async fn a_question_about_an_app_resource_names_its_type_and_tenant() {
    let app = with_workorders().await;
    let owner = app.signed_in("owner@example.com").await;
    let other = app.signed_in("other@example.com").await;
    let owner_id = user_id_of(&app, &owner).await;
    let (_, service) = service_credential(&app).await;
    let subject = user_subject(&owner_id, &owner);
    let delete_in = |tenant: &str| about(subject.clone(), "workorder.delete", "workorder", tenant);
    assert_eq!(
        evaluate(&app, &service, &delete_in(&owner.tenant)).await,
        ALLOWED
    );
    assert_eq!(
        evaluate(&app, &service, &delete_in(&other.tenant)).await,
        denied("not_a_member"),
        "a work order of another tenant is not the subject's"
    );
    let mut no_tenant = about(
        subject.clone(),
        "workorder.read",
        "workorder",
        &owner.tenant,
    );
    no_tenant["resource"]["properties"] = json!({});
    let mut blank_id = about(
        subject.clone(),
        "workorder.read",
        "workorder",
        &owner.tenant,
    );
    blank_id["resource"]["id"] = json!("");
    for (body, why) in [
        (
            about(subject.clone(), "workorder.read", "asset", &owner.tenant),
            "another type",
        ),
        (
            about(subject.clone(), "workorder.read", "tenant", &owner.tenant),
            "not the tenant",
        ),
        (
            about(subject.clone(), "workorder.fly", "workorder", &owner.tenant),
            "unknown action",
        ),
        (
            about(subject.clone(), "members.read", "workorder", &owner.tenant),
            "own action",
        ),
        (no_tenant, "no tenant"),
        (blank_id, "blank id"),
    ] {
        let (status, answer) =
            crate::access::post_with(&app, "/access/v1/evaluation", &service, &body).await;
        assert_eq!(
            (status, &answer["error"]["code"]),
            (422, &json!("invalid_field")),
            "{why}: {answer}"
        );
    }
}

// claim: APP-1, RBAC-6, TEN-4
#[tokio::test]
async fn nobody_gives_an_app_role_beyond_their_own_or_to_themselves() {
    let app = with_workorders().await;
    let staff = staffed_tenant(&app).await;
    let other = app.signed_in("other@example.com").await;
    let other_id = user_id_of(&app, &other).await;
    let id = |who: &str| {
        let app = &app;
        let session = staff[who].clone();
        async move { user_id_of(app, &session).await }
    };
    let (owner_id, admin_id, member_id) =
        (id("owner").await, id("admin").await, id("member").await);
    let admin = &staff["admin"].access;
    let before = app.table_counts().await;
    for (access, user, role, status, why) in [
        (
            admin,
            &owner_id,
            json!("auditor"),
            403,
            "an Owner is above an Admin",
        ),
        (
            admin,
            &admin_id,
            json!("auditor"),
            403,
            "nobody changes their own role",
        ),
        (
            &staff["manager"].access,
            &member_id,
            json!("requester"),
            403,
            "a Manager changes no role",
        ),
        (
            admin,
            &member_id,
            json!("superhero"),
            422,
            "not a role of the manifest",
        ),
        (
            admin,
            &member_id,
            json!("admin"),
            422,
            "a built-in role goes through the role route",
        ),
        (
            admin,
            &other_id,
            json!("auditor"),
            404,
            "a member of another tenant is not found",
        ),
    ] {
        let (answer, body) = assign_app_role(&app, access, user, role).await;
        assert_eq!(answer, status, "{why}: {body}");
    }
    for body in [json!({}), json!({"role": "viewer", "app_role": "auditor"})] {
        let (status, answer) = send(
            &app,
            Method::PATCH,
            &format!("/api/v1/members/{member_id}"),
            admin,
            Some(body),
        )
        .await;
        assert_eq!(status, 422, "exactly one of role and app_role: {answer}");
    }
    assert_eq!(app.table_counts().await, before, "nothing was written");
    // A Coordinator (rank Manager, no `members.update_role`) cannot hand roles on.
    let (status, _) = assign_app_role(&app, admin, &member_id, json!("coordinator")).await;
    assert_eq!(status, 204);
    let (status, _) = assign_app_role(
        &app,
        &staff["member"].access,
        &id("viewer").await,
        json!("requester"),
    )
    .await;
    assert_eq!(status, 403);
}

// claim: APP-1
#[tokio::test]
async fn a_bad_manifest_refuses_the_start_naming_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("app.toml");
    std::fs::write(
        &manifest,
        "[[actions]]\nname = \"members.read\"\nrole = \"viewer\"\n\n[[roles]]\nname = \"x\"\nrank = \"member\"\nactions = [\"nothing.here\"]\n",
    )
    .unwrap();
    let mut settings = settings_in(dir.path());
    settings.access.manifest = Some(manifest);
    let refused = palisade::app::App::build(settings)
        .await
        .err()
        .expect("refused");
    let text = refused.to_string();
    for problem in [
        "action `members.read`: the name is Palisade's own",
        "role `x`: `nothing.here` is not an action of the table",
    ] {
        assert!(text.contains(problem), "{problem:?} not in {text}");
    }
    let mut settings = settings_in(dir.path());
    settings.access.manifest = Some(dir.path().join("missing.toml"));
    let refused = palisade::app::App::build(settings)
        .await
        .err()
        .expect("refused");
    assert!(refused.to_string().contains("cannot read"), "{refused}");
}

// claim: APP-1
#[tokio::test]
async fn without_a_manifest_the_table_is_palisades_own() {
    let app = spawn_app().await;
    let model = model(&app).await;
    assert!(model["actions"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["source"] == "palisade"));
    let roles: Vec<&str> = model["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["owner", "admin", "manager", "member", "viewer"]);
    assert_eq!(model["resource_types"], json!([]));
}

/// The claims of an access token.
fn claims_of(token: &str) -> Value {
    crate::sessions::jwt_part(token, 1)
}

// claim: APP-3, ID-3
#[tokio::test]
async fn the_access_token_carries_how_it_was_authenticated_and_the_role_held() {
    let app = with_workorders().await;
    let staff = staffed_tenant(&app).await;
    let (owner, member) = (&staff["owner"], &staff["member"]);
    let member_id = user_id_of(&app, member).await;
    let claims = claims_of(&owner.access);
    assert_eq!(claims["amr"], json!(["pwd"]));
    assert!(claims.get("custom_role").is_none() && claims.get("app_role").is_none());

    let role = give_custom_role(
        &app,
        &owner.access,
        &member_id,
        "reader",
        json!(["workorder.read"]),
    )
    .await;
    let refreshed =
        crate::helpers::Session::from_response(app.refresh(&member.refresh).await).await;
    assert_eq!(claims_of(&refreshed.access)["custom_role"], role["id"]);

    let (status, _) = assign_app_role(&app, &owner.access, &member_id, json!("technician")).await;
    assert_eq!(status, 204);
    let again = crate::helpers::Session::from_response(app.refresh(&refreshed.refresh).await).await;
    let claims = claims_of(&again.access);
    assert_eq!(
        (&claims["app_role"], &claims["role"]),
        (&json!("technician"), &json!("member"))
    );
    assert!(
        claims.get("custom_role").is_none(),
        "an app role replaces the custom role"
    );

    crate::mfa::enable_totp(&app, owner).await;
    let second_factor =
        crate::helpers::Session::from_response(app.refresh(&owner.refresh).await).await;
    assert_eq!(
        claims_of(&second_factor.access)["amr"],
        json!(["pwd", "mfa"])
    );
}
