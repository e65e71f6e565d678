//! The vault's storage, written once for both backends: tenants' wrapped data keys, their
//! secrets and each secret's sealed versions, all tenant rows (row-level security on
//! PostgreSQL). Every write is one transaction with its audit event; a value is sealed
//! inside it by the caller's closure, once the version it becomes is known.

use async_trait::async_trait;
use sqlx::Row;
use time::OffsetDateTime;

use super::keys::{Bound, VaultError, WrappedKey};
use crate::access::TenantScope;
use crate::audit::{Append, AuditRecord};
use crate::ids::{SecretId, SigningSecretId, TenantId};
use crate::store::{for_both_backends, Begin, Database, StoreError};

/// A secret's metadata, as listed: never its value.
#[derive(Clone, Debug)]
pub struct SecretRecord {
    pub id: SecretId,
    pub tenant: TenantId,
    pub name: String,
    pub description: String,
    /// The version reads and reveals use unless they name another.
    pub version: u32,
    /// The current version's last four characters, for values long enough to spare them.
    pub hint: Option<String>,
    pub expires_at: Option<OffsetDateTime>,
    /// Who made it: a user's, a key's or the app's service credential's id.
    pub created_by: String,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// One kept version of a secret.
#[derive(Clone, Debug)]
pub struct VersionRecord {
    pub version: u32,
    pub hint: Option<String>,
    pub created_at: OffsetDateTime,
}

/// A version's sealed value with what opens it: None once the tenant's key that sealed it
/// was destroyed.
pub struct SealedValue {
    pub record: SecretRecord,
    pub version: u32,
    pub data_key: Option<WrappedKey>,
    pub sealed: Vec<u8>,
}

/// One of a tenant's data keys, as the tenant sees it: never its bytes.
#[derive(Clone, Debug)]
pub struct DataKeyRecord {
    pub version: u32,
    pub kek_version: u32,
    pub created_at: OffsetDateTime,
    /// Set once destroyed (crypto-shredding): what it sealed opens no more.
    pub destroyed_at: Option<OffsetDateTime>,
    /// The values it seals: secrets' versions and webhook signing secrets.
    pub sealed_values: u64,
}

/// What one sweep of a tenant did (SEC-2).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Resealed {
    /// Values sealed again under the tenant's newest data key.
    pub values: u32,
    /// Older data keys deleted, nothing being sealed by them any more.
    pub retired: Vec<u32>,
}

/// How a write ended, when not done.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    NotFound,
    NameTaken,
    /// The version named is the current one: replace the secret or delete it whole.
    CurrentVersion,
    /// The secret keeps as many versions as it may: delete old ones first.
    TooManyVersions,
}

/// The most versions one secret keeps: a PUT beyond them is refused until old ones are
/// deleted, so neither storage nor a read of the secret grows without bound.
pub const MAX_KEPT_VERSIONS: i64 = 100;

/// Seals the value as the given version under the tenant's data key.
pub type SealAs<'a> = &'a (dyn Fn(&WrappedKey, u32) -> Result<Vec<u8>, VaultError> + Send + Sync);

/// Makes the tenant's data key of the given version, wrapped.
/// The tenant's live data key, read (or made, as its first secret's transaction makes it)
/// inside another store's transaction bound to the tenant: what a webhook endpoint's
/// signing secret is sealed by.
pub(crate) trait TenantDataKey {
    async fn tenant_data_key(
        &mut self,
        tenant: TenantId,
        new_key: NewKey<'_>,
        at: OffsetDateTime,
    ) -> Result<WrappedKey, StoreError>;
}

pub type NewKey<'a> = &'a (dyn Fn(u32) -> WrappedKey + Send + Sync);

/// A new value for a secret: its hint, its expiry, and how to seal it.
pub struct NewValue<'a> {
    pub hint: Option<&'a str>,
    pub expires_at: Option<OffsetDateTime>,
    /// Called when the tenant has no live data key (its first secret, or after its keys
    /// were destroyed), for the next version.
    pub new_key: NewKey<'a>,
    pub seal: SealAs<'a>,
    pub at: OffsetDateTime,
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Vault(#[from] VaultError),
}

#[async_trait]
pub trait SecretStore: Send + Sync {
    async fn create(
        &self,
        scope: TenantScope,
        record: &SecretRecord,
        value: NewValue<'_>,
        event: &AuditRecord,
    ) -> Result<Result<(), Refused>, WriteError>;
    async fn list(&self, scope: TenantScope) -> Result<Vec<SecretRecord>, StoreError>;
    async fn get(
        &self,
        scope: TenantScope,
        id: SecretId,
    ) -> Result<Option<(SecretRecord, Vec<VersionRecord>)>, StoreError>;
    /// Adds the next version and makes it current; the previous ones are kept. The event
    /// gains the version's before and after.
    async fn replace(
        &self,
        scope: TenantScope,
        id: SecretId,
        value: NewValue<'_>,
        event: &AuditRecord,
    ) -> Result<Result<SecretRecord, Refused>, WriteError>;
    /// Deletes the secret and every version of it, or (`version`) one kept version, never
    /// the current one.
    async fn delete(
        &self,
        scope: TenantScope,
        id: SecretId,
        version: Option<u32>,
        event: &AuditRecord,
    ) -> Result<Result<(), Refused>, StoreError>;
    /// The sealed value of `version` (None: the current one), with what opens it.
    async fn reveal(
        &self,
        scope: TenantScope,
        id: SecretId,
        version: Option<u32>,
    ) -> Result<Option<SealedValue>, StoreError>;

    /// Adds the tenant's next data key (SEC-2): new values are sealed by it, and the sweep
    /// moves older values onto it. Its version; `event` gains the versions before and after.
    async fn rotate_data_key(
        &self,
        scope: TenantScope,
        new_key: NewKey<'_>,
        at: OffsetDateTime,
        event: &AuditRecord,
    ) -> Result<u32, StoreError>;
    /// The tenant's data keys, newest first, with how many values each seals.
    async fn data_keys(&self, scope: TenantScope) -> Result<Vec<DataKeyRecord>, StoreError>;
}

/// Seals a value again under the tenant's newer data key: (bound to, old key, new key,
/// sealed) to the new sealed bytes.
pub type Reseal<'a> = &'a (dyn Fn(Bound, &WrappedKey, &WrappedKey, &[u8]) -> Result<Vec<u8>, VaultError>
         + Send
         + Sync);

/// Re-wraps one stored data key under the active KEK.
pub type Rewrap<'a> = &'a (dyn Fn(&WrappedKey) -> Result<WrappedKey, VaultError> + Send + Sync);

/// The vault's keys across tenants (claim SEC-2): what each KEK version wraps, and the
/// re-wrap of one data key, each bound to its tenant.
#[async_trait]
pub trait DataKeyStore: Send + Sync {
    /// How many live data keys each KEK version wraps.
    async fn kek_usage(&self) -> Result<std::collections::BTreeMap<u32, u64>, StoreError>;
    /// Up to `limit` live data keys wrapped by a version below `active`: (tenant, version);
    /// no tenant: the platform's own.
    async fn wrapped_below(
        &self,
        active: u32,
        limit: u32,
    ) -> Result<Vec<(Option<TenantId>, u32)>, StoreError>;
    /// Re-wraps the tenant's (or the platform's) data key `version` with `rewrap`, unless
    /// another instance did first or it was destroyed; whether this call moved it.
    async fn rewrap(
        &self,
        tenant: Option<TenantId>,
        version: u32,
        rewrap: Rewrap<'_>,
    ) -> Result<bool, WriteError>;
    /// How many tenants hold a live data key older than their newest (the sweep's work).
    async fn superseded_count(&self) -> Result<u64, StoreError>;
    /// Up to `limit` of those tenants.
    async fn superseded(&self, limit: u32) -> Result<Vec<TenantId>, StoreError>;
    /// Seals up to `limit` of the tenant's values that a live data key older than its newest
    /// seals (secrets' versions and webhook signing secrets) again under the newest, in one
    /// transaction. When none is left and the newest was made before `retire_before` (so
    /// every write that took an older key as the newest has long committed), deletes the
    /// older keys nothing seals, recording `event` with their versions.
    async fn reseal(
        &self,
        tenant: TenantId,
        limit: u32,
        reseal: Reseal<'_>,
        retire_before: OffsetDateTime,
        event: &AuditRecord,
    ) -> Result<Resealed, WriteError>;
}

/// Palisade's own data key (the platform's), deployment-wide.
#[async_trait]
pub trait PlatformKeyStore: Send + Sync {
    /// The newest platform data key; made with `new_key` (version 1) on the first start.
    async fn platform_key(
        &self,
        new_key: NewKey<'_>,
        at: OffsetDateTime,
    ) -> Result<WrappedKey, StoreError>;
}

pub fn platform_keys_for_database(db: &Database) -> std::sync::Arc<dyn PlatformKeyStore> {
    match db {
        Database::Sqlite(pool) => std::sync::Arc::new(SqlSecretStore(pool.clone())),
        Database::Postgres(pool) => std::sync::Arc::new(SqlSecretStore(pool.clone())),
    }
}

pub fn data_keys_for_database(db: &Database) -> std::sync::Arc<dyn DataKeyStore> {
    match db {
        Database::Sqlite(pool) => std::sync::Arc::new(SqlSecretStore(pool.clone())),
        Database::Postgres(pool) => std::sync::Arc::new(SqlSecretStore(pool.clone())),
    }
}

pub fn for_database(db: &Database) -> std::sync::Arc<dyn SecretStore> {
    match db {
        Database::Sqlite(pool) => std::sync::Arc::new(SqlSecretStore(pool.clone())),
        Database::Postgres(pool) => std::sync::Arc::new(SqlSecretStore(pool.clone())),
    }
}

struct SqlSecretStore<P>(P);

/// A secret's columns with its current version's hint (`v`).
macro_rules! secret_columns {
    () => {
        "s.id, s.tenant_id, s.name, s.description, s.version, s.expires_at, s.created_by,
         s.created_at, s.updated_at, v.hint"
    };
}

const LIST: &str = concat!(
    "SELECT ",
    secret_columns!(),
    " FROM secrets s
     JOIN secret_versions v ON v.secret_id = s.id AND v.version = s.version
     WHERE s.tenant_id = $1 ORDER BY s.name"
);

const ONE: &str = concat!(
    "SELECT ",
    secret_columns!(),
    " FROM secrets s
     JOIN secret_versions v ON v.secret_id = s.id AND v.version = s.version
     WHERE s.tenant_id = $1 AND s.id = $2"
);

/// The secret with `$3`'s version (NULL: the current one), its sealed value and the
/// tenant's data key.
const SEALED: &str = concat!(
    "SELECT ",
    secret_columns!(),
    ", w.version AS revealed, w.sealed, w.dek_version, d.kek_version, d.wrapped
     FROM secrets s
     JOIN secret_versions v ON v.secret_id = s.id AND v.version = s.version
     JOIN secret_versions w ON w.secret_id = s.id AND w.version = coalesce($3, s.version)
     JOIN tenant_data_keys d ON d.tenant_id = s.tenant_id AND d.version = w.dek_version
     WHERE s.tenant_id = $1 AND s.id = $2"
);

/// The tenant's newest data key (destroyed: `wrapped` is NULL).
const DATA_KEY: &str = "SELECT version, kek_version, wrapped, created_at FROM tenant_data_keys
     WHERE tenant_id = $1 ORDER BY version DESC LIMIT 1";
const STORE_DATA_KEY: &str =
    "INSERT INTO tenant_data_keys (tenant_id, version, kek_version, wrapped, created_at)
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, version) DO NOTHING";
const INSERT_VERSION: &str = "INSERT INTO secret_versions
         (tenant_id, secret_id, version, dek_version, sealed, hint, created_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// The tenant's data keys with how many values each seals.
const DATA_KEYS: &str = "SELECT k.version, k.kek_version, k.created_at, k.destroyed_at,
         (SELECT count(*) FROM secret_versions v
          WHERE v.tenant_id = k.tenant_id AND v.dek_version = k.version)
       + (SELECT count(*) FROM webhook_signing_secrets w
          WHERE w.tenant_id = k.tenant_id AND w.dek_version = k.version) AS sealed_values
     FROM tenant_data_keys k WHERE k.tenant_id = $1 ORDER BY k.version DESC";

/// Tenants with more than one live data key: older ones still seal values, or await their
/// retirement.
macro_rules! superseded {
    () => {
        "SELECT tenant_id FROM vault_data_keys WHERE tenant_id IS NOT NULL
         GROUP BY tenant_id HAVING count(*) > 1"
    };
}
const SUPERSEDED_COUNT: &str = concat!("SELECT count(*) FROM (", superseded!(), ") t");
const SUPERSEDED: &str = concat!(superseded!(), " ORDER BY tenant_id LIMIT $1");

/// Up to `$3` of the tenant's secrets' versions sealed by a live key older than `$2`.
const SECRETS_UNDER_OLDER_KEYS: &str =
    "SELECT v.secret_id, v.version, v.sealed, k.version AS dek_version, k.kek_version, k.wrapped
     FROM secret_versions v
     JOIN tenant_data_keys k ON k.tenant_id = v.tenant_id AND k.version = v.dek_version
     WHERE v.tenant_id = $1 AND v.dek_version < $2 AND k.wrapped IS NOT NULL
     ORDER BY v.secret_id, v.version LIMIT $3";
const RESEAL_SECRET: &str = "UPDATE secret_versions SET sealed = $4, dek_version = $5
     WHERE tenant_id = $1 AND secret_id = $2 AND version = $3 AND dek_version = $6";
const SIGNING_SECRETS_UNDER_OLDER_KEYS: &str =
    "SELECT s.id, s.sealed, k.version AS dek_version, k.kek_version, k.wrapped
     FROM webhook_signing_secrets s
     JOIN tenant_data_keys k ON k.tenant_id = s.tenant_id AND k.version = s.dek_version
     WHERE s.tenant_id = $1 AND s.dek_version < $2 AND k.wrapped IS NOT NULL
     ORDER BY s.id LIMIT $3";
const RESEAL_SIGNING_SECRET: &str =
    "UPDATE webhook_signing_secrets SET sealed = $3, dek_version = $4
     WHERE tenant_id = $1 AND id = $2 AND dek_version = $5";
/// The tenant's live keys older than `$2` that seal nothing.
const RETIRE_OLDER_KEYS: &str = "DELETE FROM tenant_data_keys
     WHERE tenant_id = $1 AND version < $2 AND wrapped IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM secret_versions v
                       WHERE v.tenant_id = $1 AND v.dek_version = tenant_data_keys.version)
       AND NOT EXISTS (SELECT 1 FROM webhook_signing_secrets w
                       WHERE w.tenant_id = $1 AND w.dek_version = tenant_data_keys.version)
     RETURNING version";

fn version_of(stored: i32) -> Result<u32, StoreError> {
    u32::try_from(stored).map_err(|_| StoreError::Other("a stored version is out of range".into()))
}

fn stored_version(version: u32) -> i32 {
    // Versions count writes of one secret; bounded far below i32::MAX by the API.
    i32::try_from(version).unwrap_or(i32::MAX)
}

for_both_backends! {
    fn secret_from(row: &DbRow) -> Result<SecretRecord, StoreError> {
        Ok(SecretRecord {
            id: row.try_get("id")?,
            tenant: row.try_get("tenant_id")?,
            name: row.try_get("name")?,
            description: row.try_get("description")?,
            version: version_of(row.try_get("version")?)?,
            hint: row.try_get("hint")?,
            expires_at: row.try_get("expires_at")?,
            created_by: row.try_get("created_by")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }

    /// A stored data key; None when it was destroyed.
    fn key_from(row: &DbRow, version: &str) -> Result<Option<WrappedKey>, StoreError> {
        let out_of_range = || StoreError::Other("a stored key version is out of range".into());
        let wrapped: Option<Vec<u8>> = row.try_get("wrapped")?;
        let Some(wrapped) = wrapped else {
            return Ok(None);
        };
        Ok(Some(WrappedKey {
            version: u32::try_from(row.try_get::<i32, _>(version)?).map_err(|_| out_of_range())?,
            kek_version: u32::try_from(row.try_get::<i32, _>("kek_version")?)
                .map_err(|_| out_of_range())?,
            wrapped,
        }))
    }

    /// The tenant's live data key; made with `new_key` as the next version when it has
    /// none (its first secret) or its newest was destroyed.
    async fn data_key(
        conn: &mut <Db as sqlx::Database>::Connection,
        tenant: TenantId,
        new_key: NewKey<'_>,
        at: OffsetDateTime,
    ) -> Result<WrappedKey, StoreError> {
        let next = match sqlx::query(DATA_KEY).bind(tenant).fetch_optional(&mut *conn).await? {
            None => 1,
            Some(row) => match key_from(&row, "version")? {
                Some(live) => return Ok(live),
                None => row.try_get::<i32, _>("version")? + 1,
            },
        };
        store_data_key(&mut *conn, tenant, next, new_key, at).await?;
        // Ours, or a concurrent first secret's: whichever the row holds.
        let row = sqlx::query(DATA_KEY).bind(tenant).fetch_one(&mut *conn).await?;
        key_from(&row, "version")?
            .ok_or_else(|| StoreError::Other("a data key was destroyed as it was made".into()))
    }

    /// Makes the tenant's data key `version` with `new_key` and stores it, unless a
    /// concurrent request stored that version first.
    async fn store_data_key(
        conn: &mut <Db as sqlx::Database>::Connection,
        tenant: TenantId,
        version: i32,
        new_key: NewKey<'_>,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let fresh = new_key(version_of(version)?);
        sqlx::query(STORE_DATA_KEY)
            .bind(tenant)
            .bind(version)
            .bind(stored_version(fresh.kek_version))
            .bind(&fresh.wrapped)
            .bind(at)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    impl TenantDataKey for sqlx::Transaction<'static, Db> {
        async fn tenant_data_key(
            &mut self,
            tenant: TenantId,
            new_key: NewKey<'_>,
            at: OffsetDateTime,
        ) -> Result<WrappedKey, StoreError> {
            data_key(self, tenant, new_key, at).await
        }
    }

    async fn insert_version(
        conn: &mut <Db as sqlx::Database>::Connection,
        tenant: TenantId,
        id: SecretId,
        version: u32,
        value: &NewValue<'_>,
    ) -> Result<(), WriteError> {
        let key = data_key(&mut *conn, tenant, value.new_key, value.at).await?;
        let sealed = (value.seal)(&key, version)?;
        sqlx::query(INSERT_VERSION)
            .bind(tenant)
            .bind(id)
            .bind(stored_version(version))
            .bind(stored_version(key.version))
            .bind(sealed)
            .bind(value.hint)
            .bind(value.at)
            .execute(&mut *conn)
            .await
            .map_err(StoreError::from)?;
        Ok(())
    }

    #[async_trait]
    impl SecretStore for SqlSecretStore<Pool> {
        async fn create(
            &self,
            scope: TenantScope,
            record: &SecretRecord,
            value: NewValue<'_>,
            event: &AuditRecord,
        ) -> Result<Result<(), Refused>, WriteError> {
            let tenant = scope.tenant();
            let mut tx = self.0.tenant(scope).await?;
            let inserted = sqlx::query(
                "INSERT INTO secrets (id, tenant_id, name, description, version, expires_at,
                     created_by, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, 1, $5, $6, $7, $7)
                 ON CONFLICT (tenant_id, name) DO NOTHING",
            )
            .bind(record.id)
            .bind(tenant)
            .bind(&record.name)
            .bind(&record.description)
            .bind(record.expires_at)
            .bind(&record.created_by)
            .bind(record.created_at)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
            if inserted.rows_affected() != 1 {
                return Ok(Err(Refused::NameTaken));
            }
            insert_version(&mut tx, tenant, record.id, 1, &value).await?;
            tx.commit_with(event).await?;
            Ok(Ok(()))
        }

        async fn list(&self, scope: TenantScope) -> Result<Vec<SecretRecord>, StoreError> {
            let mut reader = self.0.tenant_reader(scope).await?;
            let rows = sqlx::query(LIST)
            .bind(scope.tenant())
            .fetch_all(&mut *reader)
            .await?;
            <Pool as Begin>::end_read(reader).await?;
            rows.iter().map(secret_from).collect()
        }

        async fn get(
            &self,
            scope: TenantScope,
            id: SecretId,
        ) -> Result<Option<(SecretRecord, Vec<VersionRecord>)>, StoreError> {
            let tenant = scope.tenant();
            let mut reader = self.0.tenant_reader(scope).await?;
            let row = sqlx::query(ONE)
            .bind(tenant)
            .bind(id)
            .fetch_optional(&mut *reader)
            .await?;
            let Some(row) = row else {
                <Pool as Begin>::end_read(reader).await?;
                return Ok(None);
            };
            let versions = sqlx::query(
                "SELECT version, hint, created_at FROM secret_versions
                 WHERE tenant_id = $1 AND secret_id = $2 ORDER BY version DESC",
            )
            .bind(tenant)
            .bind(id)
            .fetch_all(&mut *reader)
            .await?;
            <Pool as Begin>::end_read(reader).await?;
            let versions = versions
                .iter()
                .map(|row| {
                    Ok(VersionRecord {
                        version: version_of(row.try_get("version")?)?,
                        hint: row.try_get("hint")?,
                        created_at: row.try_get("created_at")?,
                    })
                })
                .collect::<Result<_, StoreError>>()?;
            Ok(Some((secret_from(&row)?, versions)))
        }

        async fn replace(
            &self,
            scope: TenantScope,
            id: SecretId,
            value: NewValue<'_>,
            event: &AuditRecord,
        ) -> Result<Result<SecretRecord, Refused>, WriteError> {
            let tenant = scope.tenant();
            let mut tx = self.0.tenant(scope).await?;
            let kept: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM secret_versions WHERE tenant_id = $1 AND secret_id = $2",
            )
            .bind(tenant)
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::from)?;
            if kept >= MAX_KEPT_VERSIONS {
                return Ok(Err(Refused::TooManyVersions));
            }
            // The newest version kept, not the current one: a deleted newer version's
            // number is never reused.
            let moved = sqlx::query(
                "UPDATE secrets SET
                     version = (SELECT max(version) FROM secret_versions
                                WHERE tenant_id = $1 AND secret_id = $2) + 1,
                     expires_at = $3, updated_at = $4
                 WHERE tenant_id = $1 AND id = $2 RETURNING version",
            )
            .bind(tenant)
            .bind(id)
            .bind(value.expires_at)
            .bind(value.at)
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::from)?;
            let Some(moved) = moved else {
                return Ok(Err(Refused::NotFound));
            };
            let version = version_of(moved.try_get("version").map_err(StoreError::from)?)?;
            insert_version(&mut tx, tenant, id, version, &value).await?;
            let row = sqlx::query(ONE)
            .bind(tenant)
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::from)?;
            let record = secret_from(&row)?;
            let event = event.clone().changed("version", version - 1, version);
            tx.commit_with(&event).await?;
            Ok(Ok(record))
        }

        async fn delete(
            &self,
            scope: TenantScope,
            id: SecretId,
            version: Option<u32>,
            event: &AuditRecord,
        ) -> Result<Result<(), Refused>, StoreError> {
            let tenant = scope.tenant();
            let mut tx = self.0.tenant(scope).await?;
            let current: Option<i32> =
                sqlx::query_scalar("SELECT version FROM secrets WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant)
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some(current) = current else {
                return Ok(Err(Refused::NotFound));
            };
            let deleted = match version {
                Some(version) if version_of(current)? == version => {
                    return Ok(Err(Refused::CurrentVersion))
                }
                Some(version) => sqlx::query(
                    "DELETE FROM secret_versions
                     WHERE tenant_id = $1 AND secret_id = $2 AND version = $3",
                )
                .bind(tenant)
                .bind(id)
                .bind(stored_version(version))
                .execute(&mut *tx)
                .await?
                .rows_affected(),
                None => {
                    sqlx::query(
                        "DELETE FROM secret_versions WHERE tenant_id = $1 AND secret_id = $2",
                    )
                    .bind(tenant)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query("DELETE FROM secrets WHERE tenant_id = $1 AND id = $2")
                        .bind(tenant)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected()
                }
            };
            if deleted != 1 {
                return Ok(Err(Refused::NotFound));
            }
            tx.commit_with(event).await?;
            Ok(Ok(()))
        }

        async fn reveal(
            &self,
            scope: TenantScope,
            id: SecretId,
            version: Option<u32>,
        ) -> Result<Option<SealedValue>, StoreError> {
            let tenant = scope.tenant();
            let mut reader = self.0.tenant_reader(scope).await?;
            let row = sqlx::query(SEALED)
                .bind(tenant)
                .bind(id)
                .bind(version.map(stored_version))
                .fetch_optional(&mut *reader)
                .await?;
            <Pool as Begin>::end_read(reader).await?;
            let Some(row) = row else {
                return Ok(None);
            };
            Ok(Some(SealedValue {
                record: secret_from(&row)?,
                version: version_of(row.try_get("revealed")?)?,
                data_key: key_from(&row, "dek_version")?,
                sealed: row.try_get("sealed")?,
            }))
        }

        async fn rotate_data_key(
            &self,
            scope: TenantScope,
            new_key: NewKey<'_>,
            at: OffsetDateTime,
            event: &AuditRecord,
        ) -> Result<u32, StoreError> {
            let tenant = scope.tenant();
            let mut tx = self.0.tenant(scope).await?;
            let newest: Option<i32> = sqlx::query_scalar(
                "SELECT max(version) FROM tenant_data_keys WHERE tenant_id = $1",
            )
            .bind(tenant)
            .fetch_one(&mut *tx)
            .await?;
            let next = newest.unwrap_or(0) + 1;
            store_data_key(&mut tx, tenant, next, new_key, at).await?;
            let event = event.clone().changed("data_key_version", newest, next);
            tx.commit_with(&event).await?;
            version_of(next)
        }

        async fn data_keys(&self, scope: TenantScope) -> Result<Vec<DataKeyRecord>, StoreError> {
            let mut reader = self.0.tenant_reader(scope).await?;
            let rows = sqlx::query(DATA_KEYS)
                .bind(scope.tenant())
                .fetch_all(&mut *reader)
                .await?;
            <Pool as Begin>::end_read(reader).await?;
            rows.iter()
                .map(|row| {
                    Ok(DataKeyRecord {
                        version: version_of(row.try_get("version")?)?,
                        kek_version: version_of(row.try_get("kek_version")?)?,
                        created_at: row.try_get("created_at")?,
                        destroyed_at: row.try_get("destroyed_at")?,
                        sealed_values: row.try_get::<i64, _>("sealed_values")?.max(0) as u64,
                    })
                })
                .collect()
        }
    }

    #[async_trait]
    impl DataKeyStore for SqlSecretStore<Pool> {
        async fn kek_usage(&self) -> Result<std::collections::BTreeMap<u32, u64>, StoreError> {
            let mut conn = self.0.acquire().await?;
            let rows: Vec<(i32, i64)> = sqlx::query_as(
                "SELECT kek_version, count(*) FROM vault_data_keys GROUP BY kek_version",
            )
            .fetch_all(&mut *conn)
            .await?;
            rows.into_iter()
                .map(|(version, count)| Ok((version_of(version)?, count.max(0) as u64)))
                .collect()
        }

        async fn wrapped_below(
            &self,
            active: u32,
            limit: u32,
        ) -> Result<Vec<(Option<TenantId>, u32)>, StoreError> {
            let mut conn = self.0.acquire().await?;
            let rows: Vec<(Option<TenantId>, i32)> = sqlx::query_as(
                "SELECT tenant_id, version FROM vault_data_keys WHERE kek_version < $1
                 ORDER BY tenant_id, version LIMIT $2",
            )
            .bind(stored_version(active))
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?;
            rows.into_iter()
                .map(|(tenant, version)| Ok((tenant, version_of(version)?)))
                .collect()
        }

        async fn rewrap(
            &self,
            tenant: Option<TenantId>,
            version: u32,
            rewrap: Rewrap<'_>,
        ) -> Result<bool, WriteError> {
            let Some(tenant) = tenant else {
                return rewrap_platform_key(&self.0, version, rewrap).await;
            };
            let mut tx = self.0.tenant(TenantScope::for_system(tenant)).await?;
            let row = sqlx::query(
                "SELECT version, kek_version, wrapped FROM tenant_data_keys
                 WHERE tenant_id = $1 AND version = $2",
            )
            .bind(tenant)
            .bind(stored_version(version))
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::from)?;
            let Some(stored) = row.map(|row| key_from(&row, "version")).transpose()?.flatten() else {
                return Ok(false);
            };
            let moved = rewrap(&stored)?;
            // Only from the version read: a concurrent re-wrap or destruction wins.
            let updated = sqlx::query(
                "UPDATE tenant_data_keys SET kek_version = $3, wrapped = $4
                 WHERE tenant_id = $1 AND version = $2 AND kek_version = $5
                   AND wrapped IS NOT NULL",
            )
            .bind(tenant)
            .bind(stored_version(version))
            .bind(stored_version(moved.kek_version))
            .bind(&moved.wrapped)
            .bind(stored_version(stored.kek_version))
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
            tx.commit().await.map_err(StoreError::from)?;
            Ok(updated.rows_affected() == 1)
        }

        async fn superseded_count(&self) -> Result<u64, StoreError> {
            let mut conn = self.0.acquire().await?;
            let count: i64 = sqlx::query_scalar(SUPERSEDED_COUNT)
            .fetch_one(&mut *conn)
            .await?;
            Ok(count.max(0) as u64)
        }

        async fn superseded(&self, limit: u32) -> Result<Vec<TenantId>, StoreError> {
            let mut conn = self.0.acquire().await?;
            Ok(sqlx::query_scalar(SUPERSEDED)
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?)
        }

        async fn reseal(
            &self,
            tenant: TenantId,
            limit: u32,
            reseal: Reseal<'_>,
            retire_before: OffsetDateTime,
            event: &AuditRecord,
        ) -> Result<Resealed, WriteError> {
            let mut tx = self.0.tenant(TenantScope::for_system(tenant)).await?;
            let newest = sqlx::query(DATA_KEY)
                .bind(tenant)
                .fetch_optional(&mut *tx)
                .await
                .map_err(StoreError::from)?;
            let Some((newest, created_at)) = newest
                .map(|row| {
                    let created: OffsetDateTime = row.try_get("created_at")?;
                    Ok::<_, StoreError>(key_from(&row, "version")?.map(|key| (key, created)))
                })
                .transpose()?
                .flatten()
            else {
                return Ok(Resealed::default());
            };
            let below = stored_version(newest.version);
            let mut done = Resealed::default();
            let rows = sqlx::query(SECRETS_UNDER_OLDER_KEYS)
                .bind(tenant)
                .bind(below)
                .bind(i64::from(limit))
                .fetch_all(&mut *tx)
                .await
                .map_err(StoreError::from)?;
            for row in &rows {
                let old = key_from(row, "dek_version")?
                    .ok_or_else(|| StoreError::Other("a live key read as destroyed".into()))?;
                let secret: SecretId = row.try_get("secret_id").map_err(StoreError::from)?;
                let version = version_of(row.try_get("version").map_err(StoreError::from)?)?;
                let sealed: Vec<u8> = row.try_get("sealed").map_err(StoreError::from)?;
                let again = reseal(Bound::Secret { secret, version }, &old, &newest, &sealed)?;
                sqlx::query(RESEAL_SECRET)
                    .bind(tenant)
                    .bind(secret)
                    .bind(stored_version(version))
                    .bind(again)
                    .bind(below)
                    .bind(stored_version(old.version))
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::from)?;
                done.values += 1;
            }
            let rows = sqlx::query(SIGNING_SECRETS_UNDER_OLDER_KEYS)
                .bind(tenant)
                .bind(below)
                .bind(i64::from(limit - done.values))
                .fetch_all(&mut *tx)
                .await
                .map_err(StoreError::from)?;
            for row in &rows {
                let old = key_from(row, "dek_version")?
                    .ok_or_else(|| StoreError::Other("a live key read as destroyed".into()))?;
                let id: SigningSecretId = row.try_get("id").map_err(StoreError::from)?;
                let sealed: Vec<u8> = row.try_get("sealed").map_err(StoreError::from)?;
                let again = reseal(Bound::SigningSecret(id), &old, &newest, &sealed)?;
                sqlx::query(RESEAL_SIGNING_SECRET)
                    .bind(tenant)
                    .bind(id)
                    .bind(again)
                    .bind(below)
                    .bind(stored_version(old.version))
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::from)?;
                done.values += 1;
            }
            if done.values < limit && created_at <= retire_before {
                let retired: Vec<i32> = sqlx::query_scalar(RETIRE_OLDER_KEYS)
                    .bind(tenant)
                    .bind(below)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(StoreError::from)?;
                done.retired = retired.into_iter().map(version_of).collect::<Result<_, _>>()?;
                done.retired.sort_unstable();
            }
            if done.retired.is_empty() {
                tx.commit().await.map_err(StoreError::from)?;
            } else {
                let event = event.clone().changed(
                    "retired_data_key_versions",
                    None::<u32>,
                    &done.retired,
                );
                tx.commit_with(&event).await?;
            }
            Ok(done)
        }
    }

    async fn rewrap_platform_key(
        pool: &Pool,
        version: u32,
        rewrap: Rewrap<'_>,
    ) -> Result<bool, WriteError> {
        let mut tx = pool.write().await?;
        let row = sqlx::query(
            "SELECT version, kek_version, wrapped FROM platform_data_keys WHERE version = $1",
        )
        .bind(stored_version(version))
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::from)?;
        let Some(stored) = row.map(|row| key_from(&row, "version")).transpose()?.flatten() else {
            return Ok(false);
        };
        let moved = rewrap(&stored)?;
        let updated = sqlx::query(
            "UPDATE platform_data_keys SET kek_version = $2, wrapped = $3
             WHERE version = $1 AND kek_version = $4",
        )
        .bind(stored_version(version))
        .bind(stored_version(moved.kek_version))
        .bind(&moved.wrapped)
        .bind(stored_version(stored.kek_version))
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from)?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(updated.rows_affected() == 1)
    }

    #[async_trait]
    impl PlatformKeyStore for SqlSecretStore<Pool> {
        async fn platform_key(
            &self,
            new_key: NewKey<'_>,
            at: OffsetDateTime,
        ) -> Result<WrappedKey, StoreError> {
            const NEWEST: &str = "SELECT version, kek_version, wrapped FROM platform_data_keys
                 ORDER BY version DESC LIMIT 1";
            let mut tx = self.0.write().await?;
            if let Some(row) = sqlx::query(NEWEST).fetch_optional(&mut *tx).await? {
                if let Some(key) = key_from(&row, "version")? {
                    return Ok(key);
                }
            }
            let fresh = new_key(1);
            sqlx::query(
                "INSERT INTO platform_data_keys (version, kek_version, wrapped, created_at)
                 VALUES (1, $1, $2, $3) ON CONFLICT (version) DO NOTHING",
            )
            .bind(stored_version(fresh.kek_version))
            .bind(&fresh.wrapped)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            let row = sqlx::query(NEWEST).fetch_one(&mut *tx).await?;
            tx.commit().await?;
            key_from(&row, "version")?
                .ok_or_else(|| StoreError::Other("the platform's data key is missing".into()))
        }
    }
}
