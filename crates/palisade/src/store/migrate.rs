//! Embedded migrations, one list per backend, applied in order and never edited once shipped.
//!
//! Each applied migration is recorded with a SHA-256 of its text; a database whose record
//! disagrees with the binary (an edited migration, or a newer schema) is refused.

use sqlx::{PgPool, SqlitePool};

use super::{Database, StartupError};

pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

macro_rules! migrations {
    ($backend:literal: $($version:literal $name:literal),* $(,)?) => {
        &[$(Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!("../../migrations/", $backend, "/", $name, ".sql")),
        }),*]
    };
}

pub const SQLITE: &[Migration] = migrations!("sqlite":
    1 "0001_foundation",
    2 "0002_no_public_create",
    3 "0003_sessions",
    4 "0004_invitations",
    5 "0005_platform",
    6 "0006_custom_roles",
    7 "0007_applications",
    8 "0008_user_scope_view",
    9 "0009_api_keys",
    10 "0010_audit_log",
    11 "0011_review_fixes",
    12 "0012_service_credentials",
    13 "0013_app_roles",
    14 "0014_relations",
    15 "0015_app_events",
    16 "0016_key_meta",
    17 "0017_app_made_keys",
    18 "0018_vault",
    19 "0019_webhooks",
    20 "0020_inbound_webhooks",
    21 "0021_data_key_rotation",
    22 "0022_webhook_retention",
    23 "0023_erasure",
);
pub const POSTGRES: &[Migration] = migrations!("postgres":
    1 "0001_foundation",
    2 "0002_no_public_create",
    3 "0003_sessions",
    4 "0004_invitations",
    5 "0005_platform",
    6 "0006_custom_roles",
    7 "0007_applications",
    8 "0008_user_scope_view",
    9 "0009_api_keys",
    10 "0010_audit_log",
    11 "0011_review_fixes",
    12 "0012_service_credentials",
    13 "0013_app_roles",
    14 "0014_relations",
    15 "0015_app_events",
    16 "0016_key_meta",
    17 "0017_app_made_keys",
    18 "0018_vault",
    19 "0019_webhooks",
    20 "0020_inbound_webhooks",
    21 "0021_data_key_rotation",
    22 "0022_webhook_retention",
    23 "0023_erasure",
);

/// Serialises migrators across instances sharing one PostgreSQL database.
const PG_MIGRATION_LOCK: i64 = 0x5041_4c49_5341_4445; // "PALISADE"

const CREATE_LEDGER: &str = "CREATE TABLE IF NOT EXISTS palisade_migrations (
    version BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at TEXT NOT NULL
)";

fn checksum(sql: &str) -> String {
    hex::encode(crate::crypto::sha256(sql.as_bytes()))
}

/// Applies pending migrations; returns the names of those applied now.
pub async fn apply(db: &Database) -> Result<Vec<&'static str>, StartupError> {
    match db {
        Database::Sqlite(pool) => apply_sqlite(pool).await,
        Database::Postgres(pool) => apply_postgres(pool).await,
    }
}

fn schema_error(context: &str, error: sqlx::Error) -> StartupError {
    StartupError::Schema(format!(
        "{context}: {}",
        super::postgres::describe_connect_error(&error)
    ))
}

fn compare(
    migrations: &'static [Migration],
    applied: &[(i64, String)],
) -> Result<Vec<&'static Migration>, StartupError> {
    for (version, recorded) in applied {
        match migrations.iter().find(|m| m.version == *version) {
            Some(m) if checksum(m.sql) == *recorded => {}
            Some(m) => {
                return Err(StartupError::Schema(format!(
                    "migration {} differs from the one applied to this database; shipped migrations must never be edited",
                    m.name
                )))
            }
            None => {
                return Err(StartupError::Schema(format!(
                    "the database has migration {version}, which this binary does not know: it is newer than this binary"
                )))
            }
        }
    }
    Ok(migrations
        .iter()
        .filter(|m| !applied.iter().any(|(v, _)| *v == m.version))
        .collect())
}

async fn apply_sqlite(pool: &SqlitePool) -> Result<Vec<&'static str>, StartupError> {
    let mut conn = pool
        .acquire()
        .await
        .map_err(|e| schema_error("connect", e))?;
    sqlx::query(CREATE_LEDGER)
        .execute(&mut *conn)
        .await
        .map_err(|e| schema_error("create migration ledger", e))?;
    // The write lock is held from the first read of the ledger, so two processes on one
    // data directory cannot both apply the same migration.
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut *conn)
        .await
        .map_err(|e| schema_error("lock", e))?;
    let result = async {
        let applied: Vec<(i64, String)> =
            sqlx::query_as("SELECT version, checksum FROM palisade_migrations ORDER BY version")
                .fetch_all(&mut *conn)
                .await
                .map_err(|e| schema_error("read migration ledger", e))?;
        let mut done = Vec::new();
        for m in compare(SQLITE, &applied)? {
            sqlx::raw_sql(m.sql)
                .execute(&mut *conn)
                .await
                .map_err(|e| schema_error(m.name, e))?;
            sqlx::query("INSERT INTO palisade_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, datetime('now'))")
                .bind(m.version)
                .bind(m.name)
                .bind(checksum(m.sql))
                .execute(&mut *conn)
                .await
                .map_err(|e| schema_error(m.name, e))?;
            done.push(m.name);
        }
        Ok(done)
    }
    .await;
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    sqlx::query(end)
        .execute(&mut *conn)
        .await
        .map_err(|e| schema_error(end, e))?;
    result
}

async fn apply_postgres(pool: &PgPool) -> Result<Vec<&'static str>, StartupError> {
    let mut tx = pool.begin().await.map_err(|e| schema_error("connect", e))?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(PG_MIGRATION_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(|e| schema_error("lock", e))?;
    sqlx::query(CREATE_LEDGER)
        .execute(&mut *tx)
        .await
        .map_err(|e| schema_error("create migration ledger", e))?;
    sqlx::query(&format!(
        "GRANT SELECT ON palisade_migrations TO {}",
        super::postgres::RUNTIME_GROUP_ROLE
    ))
    .execute(&mut *tx)
    .await
    .map_err(|e| schema_error("grant on migration ledger", e))?;
    let applied: Vec<(i64, String)> =
        sqlx::query_as("SELECT version, checksum FROM palisade_migrations ORDER BY version")
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| schema_error("read migration ledger", e))?;
    let mut done = Vec::new();
    for m in compare(POSTGRES, &applied)? {
        sqlx::raw_sql(m.sql)
            .execute(&mut *tx)
            .await
            .map_err(|e| schema_error(m.name, e))?;
        sqlx::query("INSERT INTO palisade_migrations (version, name, checksum, applied_at) VALUES ($1, $2, $3, now()::text)")
            .bind(m.version)
            .bind(m.name)
            .bind(checksum(m.sql))
            .execute(&mut *tx)
            .await
            .map_err(|e| schema_error(m.name, e))?;
        done.push(m.name);
    }
    tx.commit().await.map_err(|e| schema_error("commit", e))?;
    Ok(done)
}

/// For a runtime role that may not migrate: the schema must already be exactly current.
pub async fn ensure_current(db: &Database) -> Result<(), StartupError> {
    let (migrations, applied): (&'static [Migration], Vec<(i64, String)>) = match db {
        Database::Sqlite(pool) => (
            SQLITE,
            sqlx::query_as("SELECT version, checksum FROM palisade_migrations ORDER BY version")
                .fetch_all(pool)
                .await
                .map_err(|e| schema_error("read migration ledger", e))?,
        ),
        Database::Postgres(pool) => (
            POSTGRES,
            sqlx::query_as("SELECT version, checksum FROM palisade_migrations ORDER BY version")
                .fetch_all(pool)
                .await
                .map_err(|e| match &e {
                    sqlx::Error::Database(db) if db.code().as_deref() == Some("42P01") => {
                        StartupError::Schema(
                            "the schema is not installed; run `palisade migrate` with database.migrate_url"
                                .into(),
                        )
                    }
                    _ => schema_error("read migration ledger", e),
                })?,
        ),
    };
    let pending = compare(migrations, &applied)?;
    if pending.is_empty() {
        Ok(())
    } else {
        Err(StartupError::Schema(format!(
            "{} migration(s) pending; run `palisade migrate` with database.migrate_url, or set it for `serve`",
            pending.len()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_file_is_embedded_in_order() {
        for (backend, list) in [("sqlite", SQLITE), ("postgres", POSTGRES)] {
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/");
            let mut files: Vec<String> = std::fs::read_dir(format!("{dir}{backend}"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            files.sort();
            let embedded: Vec<String> = list.iter().map(|m| format!("{}.sql", m.name)).collect();
            assert_eq!(files, embedded, "{backend}");
            for (i, m) in list.iter().enumerate() {
                assert_eq!(m.version, i as i64 + 1, "{}", m.name);
            }
        }
    }

    #[test]
    fn both_backends_have_the_same_migrations() {
        let names = |l: &[Migration]| l.iter().map(|m| m.name).collect::<Vec<_>>();
        assert_eq!(names(SQLITE), names(POSTGRES));
    }

    #[test]
    fn an_edited_migration_is_refused() {
        let applied = vec![(1, "0".repeat(64))];
        assert!(matches!(
            compare(SQLITE, &applied),
            Err(StartupError::Schema(_))
        ));
        let applied = vec![(99, "x".into())];
        assert!(matches!(
            compare(SQLITE, &applied),
            Err(StartupError::Schema(_))
        ));
    }
}
