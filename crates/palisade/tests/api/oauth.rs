//! The app trusting sessions it was handed (claim APP-6): RFC 7662 introspection and RFC
//! 7009 revocation under the app's service credential, on both backends.

use serde_json::{json, Value};

use crate::access::service_credential;
use crate::helpers::{spawn_app, TestApp, PASSWORD};
use crate::platform::{after_external_change, as_operator};
use crate::tenancy::{staffed_tenant, user_id_of};

/// Posts a form to `path` with `credential` as the bearer: the status and the JSON answer.
async fn form_as(
    app_base: &str,
    client: &reqwest::Client,
    path: &str,
    credential: &str,
    form: &[(&str, &str)],
) -> (u16, Value) {
    let response = client
        .post(format!("{app_base}{path}"))
        .bearer_auth(credential)
        .form(form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn introspect(app: &TestApp, service: &str, token: &str) -> Value {
    let (status, answer) = form_as(
        &app.base,
        &app.client,
        "/oauth/introspect",
        service,
        &[("token", token)],
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    answer
}

fn inactive() -> Value {
    json!({"active": false})
}

// claim: APP-6
#[tokio::test]
async fn introspection_describes_a_live_token_and_goes_inactive_on_the_next_call_after_each_end() {
    let app = spawn_app().await;
    let staff = staffed_tenant(&app).await;
    let (_, service) = service_credential(&app).await;
    let owner = &staff["owner"];

    // A live token: who, where, which session, when, how, and the role held now.
    let admin = &staff["admin"];
    let admin_id = user_id_of(&app, admin).await;
    let answer = introspect(&app, &service, &admin.access).await;
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["sub"], admin_id.as_str());
    assert_eq!(answer["tid"], owner.tenant.as_str());
    assert!(
        answer["sid"].as_str().unwrap().starts_with("ses_"),
        "{answer}"
    );
    assert_eq!(answer["role"], "admin");
    assert_eq!(answer["amr"], json!(["pwd"]));
    assert_eq!(answer["token_type"], "Bearer");
    let (iat, exp) = (
        answer["iat"].as_i64().unwrap(),
        answer["exp"].as_i64().unwrap(),
    );
    assert!(iat < exp, "{answer}");

    // The role is the member's role now, not the token's.
    let status = app
        .client
        .patch(app.url(&format!("/api/v1/members/{admin_id}")))
        .bearer_auth(&owner.access)
        .json(&json!({"role": "viewer"}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 204);
    assert_eq!(
        introspect(&app, &service, &admin.access).await["role"],
        "viewer"
    );

    // Logout, seen at once on every instance (PostgreSQL: a second server).
    let sibling = match app.db.as_postgres() {
        Some(_) => Some(app.spawn_sibling().await),
        None => None,
    };
    if let Some(sibling) = &sibling {
        let (_, answer) = form_as(
            &sibling.base,
            &sibling.client,
            "/oauth/introspect",
            &service,
            &[("token", &admin.access)],
        )
        .await;
        assert_eq!(answer["active"], true);
    }
    let logout = app
        .post_as("/api/v1/auth/logout", &admin.access, None)
        .await;
    assert_eq!(logout.status(), 204);
    assert_eq!(introspect(&app, &service, &admin.access).await, inactive());
    if let Some(sibling) = sibling {
        let (_, answer) = form_as(
            &sibling.base,
            &sibling.client,
            "/oauth/introspect",
            &service,
            &[("token", &admin.access)],
        )
        .await;
        assert_eq!(answer, inactive(), "the other instance at once");
        sibling.stop().await;
    }

    // Revoke-all.
    let member = &staff["member"];
    assert_eq!(
        introspect(&app, &service, &member.access).await["active"],
        true
    );
    let response = app
        .post_as("/api/v1/auth/revoke-all", &member.access, None)
        .await;
    assert_eq!(response.status(), 204);
    assert_eq!(introspect(&app, &service, &member.access).await, inactive());

    // A password change ends the user's other sessions.
    let manager = &staff["manager"];
    let other = app.login("manager@example.com").await;
    assert_eq!(
        introspect(&app, &service, &other.access).await["active"],
        true
    );
    let changed = app
        .post_as(
            "/api/v1/auth/password",
            &manager.access,
            Some(&json!({"current_password": PASSWORD, "new_password": "a brand new passphrase here"})),
        )
        .await;
    assert!(changed.status().is_success(), "{}", changed.status());
    assert_eq!(introspect(&app, &service, &other.access).await, inactive());

    // A removal.
    let viewer = &staff["viewer"];
    let viewer_id = user_id_of(&app, viewer).await;
    assert_eq!(
        introspect(&app, &service, &viewer.access).await["active"],
        true
    );
    let removed = app
        .client
        .delete(app.url(&format!("/api/v1/members/{viewer_id}")))
        .bearer_auth(&owner.access)
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 204);
    assert_eq!(introspect(&app, &service, &viewer.access).await, inactive());

    // A suspension by the operator.
    assert_eq!(
        introspect(&app, &service, &owner.access).await["active"],
        true
    );
    let (ok, output) = as_operator(&app, "admin", &["tenants", "suspend", &owner.tenant]).await;
    assert!(ok, "{output}");
    after_external_change(&app).await;
    assert_eq!(introspect(&app, &service, &owner.access).await, inactive());
}

// claim: APP-6
#[tokio::test]
async fn introspection_takes_only_a_service_credential_and_a_well_formed_form() {
    let app = spawn_app().await;
    let owner = app.signed_in("owner@example.com").await;
    let (_, service) = service_credential(&app).await;
    let token = owner.access.as_str();

    // The caller must be the app's backend.
    let anonymous = app
        .client
        .post(app.url("/oauth/introspect"))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let (status, _) = form_as(
        &app.base,
        &app.client,
        "/oauth/introspect",
        token,
        &[("token", token)],
    )
    .await;
    assert_eq!(
        status, 401,
        "a user's own token is not a service credential"
    );

    // The form: exactly a token and an optional registered hint.
    let json_body = app
        .client
        .post(app.url("/oauth/introspect"))
        .bearer_auth(&service)
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_body.status(), 415);
    for form in [
        vec![],
        vec![("token", token), ("scope", "all")],
        vec![("token", token), ("token", token)],
        vec![("token", "")],
    ] {
        let (status, answer) =
            form_as(&app.base, &app.client, "/oauth/introspect", &service, &form).await;
        assert!(
            status == 400 || status == 422,
            "{form:?}: {status} {answer}"
        );
        assert!(answer["error"]["code"].is_string(), "{answer}");
    }
    let (status, _) = form_as(
        &app.base,
        &app.client,
        "/oauth/introspect",
        &service,
        &[("token", token), ("token_type_hint", "access_token")],
    )
    .await;
    assert_eq!(status, 200);
    // An unknown hint is ignored, as the RFCs ask.
    let (status, answer) = form_as(
        &app.base,
        &app.client,
        "/oauth/introspect",
        &service,
        &[("token", token), ("token_type_hint", "id_token")],
    )
    .await;
    assert_eq!((status, answer["active"].clone()), (200, json!(true)));

    // Tokens that are not live here say nothing more than that.
    let other_deployment = spawn_app().await;
    let stranger = other_deployment.signed_in("owner@example.com").await;
    let mut tampered = owner.access.clone();
    tampered.pop();
    tampered.push(if owner.access.ends_with('A') {
        'B'
    } else {
        'A'
    });
    for not_live in [
        stranger.access.as_str(),
        tampered.as_str(),
        "not-a-token",
        owner.refresh.as_str(),
    ] {
        assert_eq!(
            introspect(&app, &service, not_live).await,
            inactive(),
            "{not_live}"
        );
    }
    let response = app
        .client
        .post(app.url("/oauth/introspect"))
        .bearer_auth(&service)
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["cache-control"], "no-store");
    other_deployment.stop().await;
}

// claim: APP-6
#[tokio::test]
async fn revocation_ends_the_session_behind_an_access_or_refresh_token_and_tells_nothing() {
    let app = spawn_app().await;
    app.sign_up("ada@example.com").await;
    let (service_id, service) = service_credential(&app).await;
    let revoke = |token: String| {
        let app = &app;
        let service = service.clone();
        async move {
            let response = app
                .client
                .post(app.url("/oauth/revoke"))
                .bearer_auth(&service)
                .form(&[("token", token.as_str())])
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };

    // By its access token: the session ends, its refresh token with it.
    let laptop = app.login("ada@example.com").await;
    let phone = app.login("ada@example.com").await;
    assert_eq!(revoke(laptop.access.clone()).await, (200, String::new()));
    assert_eq!(introspect(&app, &service, &laptop.access).await, inactive());
    assert_eq!(app.refresh(&laptop.refresh).await.status(), 401);
    assert_eq!(
        introspect(&app, &service, &phone.access).await["active"],
        true,
        "another session of the user lives on"
    );

    // By its refresh token.
    assert_eq!(revoke(phone.refresh.clone()).await, (200, String::new()));
    assert_eq!(introspect(&app, &service, &phone.access).await, inactive());

    // Tokens that name no live session get the same answer, and change nothing.
    let before = app.table_counts().await;
    for nothing in [
        laptop.access.clone(),
        "garbage".to_owned(),
        phone.refresh.clone(),
    ] {
        assert_eq!(revoke(nothing).await, (200, String::new()));
    }
    assert_eq!(app.table_counts().await, before);

    // Each end is the app's, in the user's tenant.
    let actors: Vec<String> = app
        .inspect(
            "SELECT actor_type || ' ' || actor_id FROM audit_events
             WHERE action = 'auth.session_revoked' ORDER BY seq",
            None,
        )
        .await;
    assert_eq!(actors, vec![format!("service {service_id}"); 2]);
}

// claim: APP-4, APP-5, APP-6
#[tokio::test]
async fn an_app_written_in_python_verifies_a_key_introspects_records_and_revokes_with_the_standard_library(
) {
    let app = crate::manifest::with_workorders().await;
    let owner = app.signed_in("owner@example.com").await;
    let (_, service) = service_credential(&app).await;
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/app_client.py");
    let (_, key) =
        crate::keys::create_key(&app, &owner, json!({"name": "Customer", "role": "member"})).await;
    let args = [app.base.clone(), service, owner.access.clone(), key];
    let mut python = std::process::Command::new("python3");
    python.arg(script).args(args);
    let printed = crate::helpers::run_outside(python).await;
    assert!(printed.contains("valid, then rate_limited"), "{printed}");
    assert!(printed.contains("introspected active"), "{printed}");
    assert!(
        printed.contains("with its diff and read it back"),
        "{printed}"
    );
    assert!(printed.ends_with("introspected inactive\n"), "{printed}");
}
