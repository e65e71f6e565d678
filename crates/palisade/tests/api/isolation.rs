//! Tenant isolation, layer 2: PostgreSQL row-level security holds even for a query that
//! forgets its tenant filter, checked as the runtime role the server uses.
//! On SQLite the second layer does not exist yet (docs/claims.md says so); there these tests
//! print that they checked nothing.

use sqlx::{Connection, PgConnection, Postgres, Row, Transaction};

use crate::helpers::{spawn_app, TestApp, TEST_APP};

const TENANT_TABLES: &[&str] = &[
    "tenants",
    "memberships",
    "audit_events",
    "invitations",
    "custom_roles",
    "applications",
    "api_keys",
    "relations",
    "relation_revisions",
];

/// Two tenants made through the API, and a connection as the server's runtime role.
struct TwoTenants {
    app: TestApp,
    a: String,
    b: String,
    runtime: PgConnection,
}

async fn two_tenants() -> Option<TwoTenants> {
    let app = crate::manifest::with_workorders().await;
    let (_, service) = crate::access::service_credential(&app).await;
    // Each tenant gets rows in every tenant table: the sign-up, an invitation, a custom role,
    // an application, a key, an assignment.
    for owner in ["a@example.com", "b@example.com"] {
        let session = app.signed_in(owner).await;
        let user = crate::tenancy::user_id_of(&app, &session).await;
        let assignment = serde_json::json!({"tenant_id": session.tenant, "relations": [{
            "resource": {"type": "workorder", "id": "wo_1"},
            "relation": "assignee",
            "subject": {"type": "user", "id": user},
        }]});
        let (status, answer) = crate::access::post_with_method(
            &app,
            reqwest::Method::PUT,
            "/access/v1/relations",
            &service,
            &assignment,
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        let invited = app
            .post_as(
                "/api/v1/invitations",
                &session.access,
                Some(&serde_json::json!({"email": "guest@example.com", "role": "member"})),
            )
            .await;
        assert_eq!(invited.status(), 201);
        let role = app
            .post_as(
                "/api/v1/custom-roles",
                &session.access,
                Some(&serde_json::json!({"name": "Auditor", "actions": ["members.read"]})),
            )
            .await;
        assert_eq!(role.status(), 201);
        let application = app
            .post_as(
                "/api/v1/applications",
                &session.access,
                Some(&serde_json::json!({"name": "Sync"})),
            )
            .await;
        assert_eq!(application.status(), 201);
        let key = app
            .post_as(
                "/api/v1/api-keys",
                &session.access,
                Some(&serde_json::json!({"name": "CI", "role": "viewer"})),
            )
            .await;
        assert_eq!(key.status(), 201);
    }
    let Some(pg) = app.db.as_postgres() else {
        crate::helpers::skipped("row-level security is PostgreSQL-only (docs/claims.md, TEN-3)");
        return None;
    };
    let runtime = PgConnection::connect(&pg.direct_url(TEST_APP))
        .await
        .unwrap();
    let inspector = app.db.inspector_pool().await;
    let ids: Vec<String> = sqlx::query_scalar("SELECT id::text FROM tenants ORDER BY created_at")
        .fetch_all(&inspector)
        .await
        .unwrap();
    inspector.close().await;
    assert_eq!(ids.len(), 2);
    Some(TwoTenants {
        a: ids[0].clone(),
        b: ids[1].clone(),
        app,
        runtime,
    })
}

/// A transaction bound to `tenant` exactly as the server binds one.
async fn bound_to<'c>(conn: &'c mut PgConnection, tenant: &str) -> Transaction<'c, Postgres> {
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("SELECT set_config('palisade.tenant_id', $1, true)")
        .bind(tenant)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx
}

// claim: TEN-3
#[tokio::test]
async fn unfiltered_queries_as_the_runtime_role_see_only_the_bound_tenant() {
    let Some(TwoTenants {
        app,
        a,
        b,
        mut runtime,
    }) = two_tenants().await
    else {
        return;
    };
    for table in TENANT_TABLES {
        let column = if *table == "tenants" {
            "id"
        } else {
            "tenant_id"
        };
        let mut tx = bound_to(&mut runtime, &b).await;
        let rows = sqlx::query(&format!("SELECT {column}::text AS tenant FROM {table}"))
            .fetch_all(&mut *tx)
            .await
            .unwrap();
        assert!(!rows.is_empty(), "{table}: tenant B sees its own rows");
        for row in rows {
            let tenant: String = row.get("tenant");
            assert_ne!(tenant, a, "{table}: tenant A's row leaked to B");
            assert_eq!(tenant, b, "{table}");
        }
        tx.rollback().await.unwrap();

        // The binding is transaction-local: outside it, with nothing bound, nothing is visible.
        let unbound: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&mut runtime)
            .await
            .unwrap();
        assert_eq!(unbound, 0, "{table}: rows visible with no tenant bound");
    }
    runtime.close().await.unwrap();
    app.stop().await;
}

// claim: TEN-3
#[tokio::test]
async fn a_user_bound_read_sees_only_that_users_memberships_and_no_tenant_table() {
    let Some(TwoTenants {
        app, mut runtime, ..
    }) = two_tenants().await
    else {
        return;
    };
    let inspector = app.db.inspector_pool().await;
    let owner_a: String =
        sqlx::query_scalar("SELECT id::text FROM users WHERE email = 'a@example.com'")
            .fetch_one(&inspector)
            .await
            .unwrap();
    inspector.close().await;
    let mut tx = runtime.begin().await.unwrap();
    sqlx::query("SELECT set_config('palisade.user_id', $1, true)")
        .bind(&owner_a)
        .execute(&mut *tx)
        .await
        .unwrap();
    let seen: Vec<String> = sqlx::query_scalar("SELECT user_id::text FROM user_memberships")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(
        seen,
        vec![owner_a.clone()],
        "only the bound user's own membership"
    );
    // The user binding opens nothing else: the tables themselves stay closed to it.
    for table in TENANT_TABLES {
        let visible: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert_eq!(visible, 0, "{table}: visible to a user-bound transaction");
    }
    tx.rollback().await.unwrap();
    let unbound: i64 = sqlx::query_scalar("SELECT count(*) FROM user_memberships")
        .fetch_one(&mut runtime)
        .await
        .unwrap();
    assert_eq!(unbound, 0, "nothing through the view with no user bound");
    runtime.close().await.unwrap();
    app.stop().await;
}

// claim: TEN-3
#[tokio::test]
async fn the_runtime_role_cannot_disable_rls_write_into_another_tenant_or_read_past_it() {
    let Some(TwoTenants {
        app,
        a,
        b,
        mut runtime,
    }) = two_tenants().await
    else {
        return;
    };
    let forge_for_a = format!(
        "INSERT INTO audit_events (id, tenant_id, occurred_at, action, target_type, target_id, outcome, request_id)
         VALUES (gen_random_uuid(), '{a}'::uuid, now(), 'forged', 'x', 'x', 'success', 'x')"
    );
    for statement in [
        "ALTER TABLE memberships DISABLE ROW LEVEL SECURITY",
        "ALTER TABLE memberships NO FORCE ROW LEVEL SECURITY",
        "DROP POLICY tenant_isolation ON memberships",
        "CREATE TABLE sneaky (id int)",
        "UPDATE audit_events SET action = 'edited'",
        "DELETE FROM audit_events",
        // Bound to B, a row for A breaks the policy's WITH CHECK.
        forge_for_a.as_str(),
    ] {
        let mut tx = bound_to(&mut runtime, &b).await;
        let outcome = sqlx::query(statement).execute(&mut *tx).await;
        assert!(outcome.is_err(), "the runtime role could run: {statement}");
        tx.rollback().await.unwrap();
    }
    // row_security = off makes a query that RLS would filter fail instead of bypassing it.
    let mut tx = runtime.begin().await.unwrap();
    sqlx::query("SET LOCAL row_security = off")
        .execute(&mut *tx)
        .await
        .unwrap();
    assert!(sqlx::query("SELECT * FROM memberships")
        .fetch_all(&mut *tx)
        .await
        .is_err());
    tx.rollback().await.unwrap();
    runtime.close().await.unwrap();
    app.stop().await;
}

// claim: TEN-3
#[tokio::test]
async fn the_server_refuses_to_start_as_a_role_that_bypasses_rls() {
    let database = crate::helpers::TestDatabase::create().await;
    let Some(superuser) = database.as_postgres().map(|pg| pg.superuser_url()) else {
        crate::helpers::skipped("no database roles to check");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut settings = crate::helpers::settings_in(dir.path());
    settings.database.url = Some(superuser.into());
    let error = palisade::app::App::build(settings)
        .await
        .err()
        .expect("start-up is refused");
    let text = error.to_string();
    assert!(text.contains("superuser"), "{text}");
    assert!(
        !text.contains("postgres://"),
        "the URL is not echoed: {text}"
    );
}

// claim: TEN-3
#[tokio::test]
async fn the_server_refuses_a_role_that_can_become_the_owner_or_bypass_rls() {
    let app = spawn_app().await;
    let Some(pg) = app.db.as_postgres() else {
        crate::helpers::skipped("no database roles to check");
        return;
    };
    let mut admin = PgConnection::connect(&pg.superuser_url()).await.unwrap();
    for (role, grant, refusal) in [
        (
            "palisade_test_bypass",
            "BYPASSRLS IN ROLE palisade_runtime",
            "BYPASSRLS",
        ),
        (
            "palisade_test_ownerish",
            "IN ROLE palisade_runtime, palisade_test_owner",
            "owner",
        ),
    ] {
        let created = sqlx::query(&format!("CREATE ROLE {role} LOGIN {grant}"))
            .execute(&mut admin)
            .await;
        if let Err(e) = created {
            assert!(e.to_string().contains("already exists"), "{e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let mut settings = crate::helpers::settings_in(dir.path());
        settings.database.url = Some(pg.direct_url(role).into());
        let error = palisade::app::App::build(settings)
            .await
            .err()
            .expect("start-up is refused");
        assert!(error.to_string().contains(refusal), "{role}: {error}");
    }
    admin.close().await.unwrap();
    app.stop().await;
}

// claim: TEN-3
#[tokio::test]
async fn every_table_with_a_tenant_column_has_forced_row_level_security() {
    let app = spawn_app().await;
    if app.db.as_postgres().is_none() {
        crate::helpers::skipped("row-level security is PostgreSQL-only (docs/claims.md, TEN-3)");
        return;
    }
    let inspector = app.db.inspector_pool().await;
    let tables: Vec<(String, bool, bool)> = sqlx::query_as(
        "SELECT c.relname::text, c.relrowsecurity, c.relforcerowsecurity
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relkind = 'r'
           AND EXISTS (SELECT 1 FROM pg_attribute a
                       WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)",
    )
    .fetch_all(&inspector)
    .await
    .unwrap();
    inspector.close().await;
    let mut checked = Vec::new();
    for (table, enabled, forced) in tables {
        // Not tenant data, each for its reason (in the one list the posture report reads).
        if palisade::store::postgres::TABLES_WITHOUT_RLS.contains(&table.as_str()) {
            continue;
        }
        assert!(
            enabled && forced,
            "{table}: row-level security enabled and forced"
        );
        checked.push(table);
    }
    for table in TENANT_TABLES.iter().filter(|t| **t != "tenants") {
        assert!(checked.iter().any(|c| c == table), "{table} was checked");
    }
}
