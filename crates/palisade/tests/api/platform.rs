//! Platform operations (claim TEN-6): `palisade admin …` with the deployment's own
//! credential lists tenants, looks users up and suspends tenants, each audited in the
//! platform stream; the tenant API has no way to reach them.

use serde_json::Value;

use crate::helpers::{backend, spawn_app, Backend, TestApp};
use crate::import::palisade_command;

/// An operator's command (`palisade GROUP --operator alice ARGS…`): success and output.
pub async fn as_operator(app: &TestApp, group: &str, args: &[&str]) -> (bool, String) {
    let mut full = vec![group, "--operator", "alice"];
    full.extend_from_slice(args);
    palisade_command(app, &full).await
}

async fn admin(app: &TestApp, args: &[&str]) -> String {
    let (ok, output) = as_operator(app, "admin", args).await;
    assert!(ok, "{args:?}: {output}");
    output
}

/// A change made by another process reaches a SQLite server at its once-a-second poll
/// (run at once here); PostgreSQL servers read the auth epoch on every request.
pub async fn after_external_change(app: &TestApp) {
    if backend() == Backend::Sqlite {
        app.state.identity.poll().await.unwrap();
    }
}

// claim: TEN-6
#[tokio::test]
async fn operators_list_tenants_and_find_users_across_tenants_and_are_audited() {
    let app = spawn_app().await;
    let a = app.signed_in("a@example.com").await;
    let b = app.signed_in("b@example.com").await;
    let listed = admin(&app, &["tenants", "list"]).await;
    assert!(
        listed.contains(&a.tenant) && listed.contains(&b.tenant),
        "{listed}"
    );
    let found = admin(&app, &["find-user", "B@example.com"]).await;
    assert!(
        found.contains("b@example.com") && found.contains(&b.tenant),
        "{found}"
    );
    assert!(!found.contains(&a.tenant));
    let actions: Vec<String> = app
        .inspect(
            "SELECT action FROM audit_events WHERE action LIKE 'platform.%'",
            None,
        )
        .await;
    assert_eq!(
        actions,
        vec!["platform.tenants_listed", "platform.user_looked_up"]
    );
    let operators: Vec<Option<String>> = app
        .inspect(
            "SELECT user_agent FROM audit_events WHERE action LIKE 'platform.%'",
            None,
        )
        .await;
    assert!(operators
        .iter()
        .all(|o| o.as_deref() == Some("palisade admin (alice)")));
}

// claim: TEN-6
#[tokio::test]
async fn a_suspended_tenants_sessions_stop_at_once_and_resume_when_lifted() {
    let app = spawn_app().await;
    let a = app.signed_in("a@example.com").await;
    let b = app.signed_in("b@example.com").await;
    let key: Value = app
        .post_as(
            "/api/v1/api-keys",
            &a.access,
            Some(&serde_json::json!({"name": "CI", "role": "viewer"})),
        )
        .await
        .json()
        .await
        .unwrap();
    let key = key["secret"].as_str().unwrap().to_owned();
    assert_eq!(app.get_as("/api/v1/me", &a.access).await.status(), 200);
    assert_eq!(app.get_as("/api/v1/tenant", &key).await.status(), 200);
    admin(&app, &["tenants", "suspend", &a.tenant]).await;
    after_external_change(&app).await;
    let refused = app.get_as("/api/v1/me", &a.access).await;
    assert_eq!(refused.status(), 403);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "tenant_suspended");
    let refused = app.get_as("/api/v1/tenant", &key).await;
    assert_eq!(refused.status(), 403, "the tenant's API keys stop too");
    assert_ne!(
        app.refresh(&a.refresh).await.status(),
        200,
        "no refresh either"
    );
    let login = app
        .post_json(
            "/api/v1/auth/login",
            &serde_json::json!({"email": "a@example.com", "password": crate::helpers::PASSWORD}),
        )
        .await;
    assert_eq!(login.status(), 403, "nor a new sign-in");
    assert_eq!(
        app.get_as("/api/v1/me", &b.access).await.status(),
        200,
        "other tenants are untouched"
    );

    admin(&app, &["tenants", "unsuspend", &a.tenant]).await;
    after_external_change(&app).await;
    assert_eq!(app.get_as("/api/v1/me", &a.access).await.status(), 200);
    assert_eq!(app.get_as("/api/v1/tenant", &key).await.status(), 200);
    let actions: Vec<String> = app
        .inspect(
            "SELECT action FROM audit_events WHERE target_id = $1",
            Some(&a.tenant),
        )
        .await;
    assert_eq!(
        actions,
        vec!["platform.tenant_suspended", "platform.tenant_unsuspended"]
    );
}

// claim: TEN-6
#[tokio::test]
async fn the_tenant_api_exposes_no_platform_operation() {
    let app = spawn_app().await;
    let doc: Value = app.get("/api/openapi.json").await.json().await.unwrap();
    for path in doc["paths"].as_object().unwrap().keys() {
        assert!(
            !path.contains("admin") && !path.contains("platform") && !path.contains("suspend"),
            "{path}"
        );
    }
    if backend() == Backend::Postgres {
        // Without the operator's credential the commands refuse to run, even with the
        // server's own database settings at hand.
        let env: Vec<(String, String)> = app
            .db
            .env()
            .into_iter()
            .filter(|(k, _)| k != "PALISADE_ADMIN__DATABASE_URL")
            .collect();
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
            .args(["admin", "tenants", "list"])
            .arg("--data-dir")
            .arg(app.sqlite_path().parent().unwrap())
            .env_remove("PALISADE_ADMIN__DATABASE_URL")
            .envs(env)
            .output()
            .unwrap();
        assert!(!output.status.success());
        assert!(String::from_utf8_lossy(&output.stderr).contains("admin.database_url"));
    }
}
