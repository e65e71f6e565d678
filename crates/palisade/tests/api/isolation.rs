//! Tenant isolation, layer 2: PostgreSQL row-level security holds even for a query that
//! forgets its tenant filter, checked as the runtime role the server uses.
//! On SQLite the second layer does not exist yet (docs/claims.md says so); these tests
//! then check the first layer's precondition only and say that they did.

use sqlx::{Connection, PgConnection, Row};

use crate::helpers::{spawn_app, TEST_APP};

const TENANT_TABLES: &[&str] = &["tenants", "memberships", "audit_events"];

async fn tenant_ids(app: &crate::helpers::TestApp) -> Vec<String> {
    let owner = app.db.inspector_pool().await;
    let ids: Vec<String> = sqlx::query_scalar("SELECT id::text FROM tenants ORDER BY created_at")
        .fetch_all(&owner)
        .await
        .unwrap();
    owner.close().await;
    ids
}

// claim: TEN-3
#[tokio::test]
async fn unfiltered_queries_as_the_runtime_role_see_only_the_bound_tenant() {
    let app = spawn_app().await;
    app.sign_up("a@example.com").await;
    app.sign_up("b@example.com").await;
    let Some(pg) = app.db.as_postgres() else {
        eprintln!("sqlite backend: row-level security is PostgreSQL-only (docs/claims.md, TEN-3)");
        return;
    };
    let ids = tenant_ids(&app).await;
    assert_eq!(ids.len(), 2);
    let (tenant_a, tenant_b) = (&ids[0], &ids[1]);
    let mut conn = PgConnection::connect(&pg.direct_url(TEST_APP))
        .await
        .unwrap();

    for table in TENANT_TABLES {
        let column = if *table == "tenants" {
            "id"
        } else {
            "tenant_id"
        };
        let mut tx = conn.begin().await.unwrap();
        sqlx::query("SELECT set_config('palisade.tenant_id', $1, true)")
            .bind(tenant_b)
            .execute(&mut *tx)
            .await
            .unwrap();
        let rows = sqlx::query(&format!("SELECT {column}::text AS tenant FROM {table}"))
            .fetch_all(&mut *tx)
            .await
            .unwrap();
        assert!(!rows.is_empty(), "{table}: tenant B sees its own rows");
        for row in rows {
            let tenant: String = row.get("tenant");
            assert_eq!(&tenant, tenant_b, "{table}: tenant A's row leaked to B");
        }
        tx.rollback().await.unwrap();

        // The binding is transaction-local: outside it, and with it unset, nothing is visible.
        let unbound: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(unbound, 0, "{table}: rows visible with no tenant bound");
        let _ = tenant_a;
    }
    conn.close().await.unwrap();
    app.stop().await;
}

// claim: TEN-3
#[tokio::test]
async fn the_runtime_role_cannot_disable_rls_write_into_another_tenant_or_read_past_it() {
    let app = spawn_app().await;
    app.sign_up("a@example.com").await;
    app.sign_up("b@example.com").await;
    let Some(pg) = app.db.as_postgres() else {
        eprintln!("sqlite backend: row-level security is PostgreSQL-only (docs/claims.md, TEN-3)");
        return;
    };
    let ids = tenant_ids(&app).await;
    let (tenant_a, tenant_b) = (&ids[0], &ids[1]);
    let mut conn = PgConnection::connect(&pg.direct_url(TEST_APP))
        .await
        .unwrap();
    for statement in [
        "ALTER TABLE memberships DISABLE ROW LEVEL SECURITY",
        "ALTER TABLE memberships NO FORCE ROW LEVEL SECURITY",
        "DROP POLICY tenant_isolation ON memberships",
        "CREATE TABLE sneaky (id int)",
        "UPDATE audit_events SET action = 'edited'",
        "DELETE FROM audit_events",
    ] {
        let mut tx = conn.begin().await.unwrap();
        sqlx::query("SELECT set_config('palisade.tenant_id', $1, true)")
            .bind(tenant_b)
            .execute(&mut *tx)
            .await
            .unwrap();
        let outcome = sqlx::query(statement).execute(&mut *tx).await;
        assert!(outcome.is_err(), "the runtime role could run: {statement}");
        tx.rollback().await.unwrap();
    }
    // row_security = off makes a query that RLS would filter fail instead of bypass it.
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("SET LOCAL row_security = off")
        .execute(&mut *tx)
        .await
        .unwrap();
    assert!(sqlx::query("SELECT * FROM memberships")
        .fetch_all(&mut *tx)
        .await
        .is_err());
    tx.rollback().await.unwrap();
    // Bound to B, writing a row for A is refused by the policy's WITH CHECK.
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("SELECT set_config('palisade.tenant_id', $1, true)")
        .bind(tenant_b)
        .execute(&mut *tx)
        .await
        .unwrap();
    let forged = sqlx::query(
        "INSERT INTO audit_events (id, tenant_id, occurred_at, action, target_type, target_id, outcome, request_id)
         VALUES (gen_random_uuid(), $1::uuid, now(), 'forged', 'x', 'x', 'success', 'x')",
    )
    .bind(tenant_a)
    .execute(&mut *tx)
    .await;
    assert!(
        forged.is_err(),
        "a row for tenant A was written while bound to B"
    );
    tx.rollback().await.unwrap();
    conn.close().await.unwrap();
    app.stop().await;
}

// claim: TEN-3
#[tokio::test]
async fn the_server_refuses_to_start_as_a_role_that_bypasses_rls() {
    let Some(pg) = crate::helpers::TestDatabase::create()
        .await
        .as_postgres()
        .map(|pg| pg.superuser_url())
    else {
        eprintln!("sqlite backend: no database roles to check");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut settings = crate::helpers::settings_in(dir.path());
    settings.database.url = Some(pg.into());
    let error = palisade::app::App::build(settings)
        .await
        .err()
        .expect("start-up is refused");
    let text = error.to_string();
    assert!(
        text.contains("superuser")
            || text.contains("BYPASSRLS")
            || text.contains("palisade_runtime"),
        "{text}"
    );
    assert!(
        !text.contains("postgres://"),
        "the URL is not echoed: {text}"
    );
}
