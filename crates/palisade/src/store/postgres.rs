//! The scale-out backend: PostgreSQL, connected as a runtime role that owns nothing and
//! cannot bypass row-level security (claim TEN-3). Every tenant-scoped transaction binds
//! the tenant with a transaction-local setting that the RLS policies read.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};

use super::{StartupError, StoreError};
use crate::config::Settings;

/// The group role every runtime login role belongs to; migrations grant to it.
pub const RUNTIME_GROUP_ROLE: &str = "palisade_runtime";

/// The setting RLS policies compare `tenant_id` with; set per transaction, never per session.
pub const TENANT_SETTING: &str = "palisade.tenant_id";

pub fn options(url: &SecretString) -> Result<PgConnectOptions, StartupError> {
    url.expose_secret()
        .parse::<PgConnectOptions>()
        // sqlx's parse errors can quote the URL, password included: say only that it failed.
        .map_err(|_| StartupError::Connect("the PostgreSQL URL cannot be parsed".into()))
}

pub async fn connect(url: &SecretString, settings: &Settings) -> Result<PgPool, StartupError> {
    let options = options(url)?.application_name("palisade");
    PgPoolOptions::new()
        .max_connections(settings.database.max_connections)
        .acquire_timeout(Duration::from_millis(settings.database.acquire_timeout_ms))
        .connect_with(options)
        .await
        .map_err(|e| StartupError::Connect(describe_connect_error(&e)))
}

/// Connection errors name the host and the cause; they never contain the password.
pub fn describe_connect_error(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(db) => format!("PostgreSQL refused: {}", db.message()),
        sqlx::Error::Io(io) => format!("network error: {io}"),
        sqlx::Error::PoolTimedOut => "timed out".into(),
        other => format!("{other}"),
    }
}

/// The setting that lets a user's own memberships be read across tenants.
pub const USER_SETTING: &str = "palisade.user_id";

/// The setting that lets the one API key a client presented be read before its tenant is
/// known (through the view `presented_api_keys`).
pub const KEY_SETTING: &str = "palisade.api_key_id";

/// The setting that lets the one tenant token a client presented be read before its
/// tenant is known.
pub const TENANT_TOKEN_SETTING: &str = "palisade.tenant_token_id";

/// Begins a transaction with `setting` bound to `id` for its duration only.
pub async fn begin_bound(
    pool: &PgPool,
    setting: &'static str,
    id: uuid::Uuid,
) -> Result<Transaction<'static, Postgres>, StoreError> {
    let mut tx = pool.begin().await?;
    bind(&mut tx, setting, id).await?;
    Ok(tx)
}

/// Sets `setting` to `id` until the transaction ends.
pub async fn bind(
    tx: &mut Transaction<'static, Postgres>,
    setting: &'static str,
    id: uuid::Uuid,
) -> Result<(), StoreError> {
    // set_config(..., true) is SET LOCAL with a bind parameter: it ends with the transaction.
    sqlx::query("SELECT set_config($1, $2, true)")
        .bind(setting)
        .bind(id.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub async fn probe(pool: &PgPool) -> Result<(), String> {
    sqlx::query("SELECT 1")
        .execute(pool)
        .await
        .map(|_| ())
        .map_err(|e| describe_connect_error(&e))
}

/// Refuses to serve as a role that would make row-level security meaningless.
pub async fn check_runtime_role(pool: &PgPool) -> Result<(), StartupError> {
    // Ownership and privilege count through membership too: a role that can SET ROLE to an
    // owner, a superuser or a BYPASSRLS role can switch row-level security off.
    let row: (String, bool, bool, bool, i64) = sqlx::query_as(
        "SELECT current_user::text,
                EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolsuper
                        AND pg_has_role(current_user, r.oid, 'MEMBER')),
                EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolbypassrls
                        AND pg_has_role(current_user, r.oid, 'MEMBER')),
                pg_has_role(current_user, $1, 'MEMBER'),
                (SELECT count(*) FROM pg_class c
                   WHERE c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
                     AND pg_has_role(current_user, c.relowner, 'MEMBER'))
              + (SELECT count(*) FROM pg_namespace n
                   WHERE n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'
                     AND pg_has_role(current_user, n.nspowner, 'MEMBER'))
              + (SELECT count(*) FROM pg_database d
                   WHERE d.datname = current_database()
                     AND pg_has_role(current_user, d.datdba, 'MEMBER'))",
    )
    .bind(RUNTIME_GROUP_ROLE)
    .fetch_one(pool)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(db) if db.message().contains("does not exist") => StartupError::Role(
            format!("role {RUNTIME_GROUP_ROLE} does not exist; see docs/postgres.md"),
        ),
        _ => StartupError::Connect(describe_connect_error(&e)),
    })?;
    let (user, superuser, bypass_rls, member, owned) = row;
    let mut problems = Vec::new();
    if superuser {
        problems.push("is (or can become) a superuser");
    }
    if bypass_rls {
        problems.push("has (or can gain) BYPASSRLS");
    }
    if !member {
        problems.push("is not a member of palisade_runtime");
    }
    if owned > 0 {
        problems.push("owns (or can act as the owner of) tables, schemas or the database");
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(StartupError::Role(format!(
            "database.url connects as {user}, which {}; row-level security (claim TEN-3) needs \
             a runtime role that owns nothing and cannot bypass it (docs/postgres.md)",
            problems.join(", ")
        )))
    }
}

/// The tables with a `tenant_id` column that are not tenant data, so carry no row-level
/// security. A user's sessions are reached only by a secret's hash or a verified token's
/// ids. The audit chains' heads and signed checkpoints hold positions, hashes and
/// signatures, no event content, and every instance's checkpoint and retention work reads
/// all of them. The webhook delivery queue holds ids, states and times, no payload or URL,
/// and every instance's dispatcher claims from it across tenants (docs/decisions.md).
pub const TABLES_WITHOUT_RLS: [&str; 4] = [
    "sessions",
    "audit_heads",
    "audit_checkpoints",
    "webhook_deliveries",
];

/// The tenant tables (those with a `tenant_id`, but [`TABLES_WITHOUT_RLS`]) whose
/// row-level security is not both enabled and forced: (how many were checked, the names of
/// those that are not). The posture report's TEN-3.
pub async fn rls_gaps(pool: &PgPool) -> Result<(usize, Vec<String>), sqlx::Error> {
    let rows: Vec<(String, bool)> = sqlx::query_as(
        "SELECT c.relname::text, c.relrowsecurity AND c.relforcerowsecurity
         FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
         WHERE c.relkind = 'r' AND c.relnamespace = current_schema()::regnamespace
           AND a.attname = 'tenant_id' AND NOT a.attisdropped
         ORDER BY 1",
    )
    .fetch_all(pool)
    .await?;
    let tenant_tables: Vec<_> = rows
        .iter()
        .filter(|(name, _)| !TABLES_WITHOUT_RLS.contains(&name.as_str()))
        .collect();
    let gaps = tenant_tables
        .iter()
        .filter(|(_, forced)| !forced)
        .map(|(name, _)| name.clone())
        .collect();
    Ok((tenant_tables.len(), gaps))
}

/// What the runtime role may do to the audit log beyond appending and an erasure's
/// redaction (the posture report's AUD-2).
pub async fn audit_rights_beyond_append(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    let rights: Vec<(String, bool)> = sqlx::query_as(
        "SELECT 'DELETE on audit_events', has_table_privilege('audit_events', 'DELETE')
         UNION ALL SELECT 'TRUNCATE on audit_events', has_table_privilege('audit_events', 'TRUNCATE')
         UNION ALL SELECT 'UPDATE of audit_events.action',
                          has_column_privilege('audit_events', 'action', 'UPDATE')
         UNION ALL SELECT 'UPDATE of audit_events.hash',
                          has_column_privilege('audit_events', 'hash', 'UPDATE')
         UNION ALL SELECT 'UPDATE on audit_checkpoints',
                          has_table_privilege('audit_checkpoints', 'UPDATE')
         UNION ALL SELECT 'DELETE on audit_checkpoints',
                          has_table_privilege('audit_checkpoints', 'DELETE')",
    )
    .fetch_all(pool)
    .await?;
    Ok(rights
        .into_iter()
        .filter(|(_, held)| *held)
        .map(|(right, _)| right)
        .collect())
}
