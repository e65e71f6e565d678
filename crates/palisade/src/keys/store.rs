//! API keys' storage, written once for both backends. Tenant-scoped methods take a
//! [`TenantScope`]; only [`KeyStore::presented`] reads before the tenant is known, and then
//! only the one key whose id the client presented.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::access::actions::Entitlement;
use crate::access::Role;
use crate::access::TenantScope;
use crate::audit::{Append, AuditRecord};
use crate::ids::{ApiKeyId, ApplicationId, ServiceId, TenantId, UserId};
use crate::store::{
    for_both_backends, stored_role, Begin, Database, Guarded, MayActOn, Presented, StoreError,
};
use crate::tenancy::store::LOCK_APPLICATION;

#[derive(Clone, Debug)]
pub struct KeyRecord {
    pub id: ApiKeyId,
    pub tenant: TenantId,
    pub application: Option<ApplicationId>,
    pub name: String,
    pub role: Role,
    /// Action names, space-separated; None: everything the role allows.
    pub scopes: Option<String>,
    pub secret_hash: Vec<u8>,
    pub previous_secret_hash: Option<Vec<u8>>,
    pub previous_expires_at: Option<OffsetDateTime>,
    pub expires_at: Option<OffsetDateTime>,
    pub created_by: KeyCreator,
    pub created_at: OffsetDateTime,
    pub rotated_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
    pub last_used_at: Option<OffsetDateTime>,
    /// The owner's metadata, as the JSON object text it was given in.
    pub meta: Option<String>,
    /// The limit verification applies when the app names none.
    pub ratelimit: Option<KeyLimit>,
}

/// Who made a key: a member, or the app's backend under a tenant token (claim APP-5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyCreator {
    Member(UserId),
    Service(ServiceId),
}

impl KeyCreator {
    pub fn member(self) -> Option<UserId> {
        match self {
            KeyCreator::Member(user) => Some(user),
            KeyCreator::Service(_) => None,
        }
    }

    pub fn service(self) -> Option<ServiceId> {
        match self {
            KeyCreator::Service(service) => Some(service),
            KeyCreator::Member(_) => None,
        }
    }
}

/// A key's own rate limit: requests per window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyLimit {
    pub limit: u32,
    pub window_seconds: u32,
}

/// A presented key with what authenticating it needs of its tenant.
#[derive(Clone, Debug)]
pub struct PresentedRecord {
    pub key: KeyRecord,
    /// Shared, so each request's caller names the tenant without copying.
    pub tenant_name: std::sync::Arc<str>,
    pub tenant_suspended: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Creation {
    Created,
    /// The application named is not one of this tenant's.
    NoSuchApplication,
}

#[async_trait]
pub trait KeyStore: Send + Sync {
    async fn create(
        &self,
        scope: TenantScope,
        key: &KeyRecord,
        event: &AuditRecord,
    ) -> Result<Creation, StoreError>;
    async fn list(&self, scope: TenantScope) -> Result<Vec<KeyRecord>, StoreError>;
    /// Revokes a live key of the tenant the caller `may_act_on`.
    async fn revoke(
        &self,
        scope: TenantScope,
        id: ApiKeyId,
        may_act_on: MayActOn<'_>,
        at: OffsetDateTime,
        event: &AuditRecord,
    ) -> Result<Guarded<()>, StoreError>;
    /// Replaces the secret of a live key the caller `may_act_on`; the old one keeps working
    /// until `previous_until` (None: it dies now). Any older previous secret dies.
    #[allow(clippy::too_many_arguments)]
    async fn rotate(
        &self,
        scope: TenantScope,
        id: ApiKeyId,
        may_act_on: MayActOn<'_>,
        new_hash: &[u8; 32],
        previous_until: Option<OffsetDateTime>,
        at: OffsetDateTime,
        event: &AuditRecord,
    ) -> Result<Guarded<KeyRecord>, StoreError>;
    async fn presented(&self, id: ApiKeyId) -> Result<Option<PresentedRecord>, StoreError>;
    /// Records last use, one tenant per transaction; never moves a time backwards.
    async fn record_use(
        &self,
        tenant: TenantId,
        uses: &[(ApiKeyId, OffsetDateTime)],
    ) -> Result<(), StoreError>;
}

pub fn for_database(db: &Database) -> std::sync::Arc<dyn KeyStore> {
    match db {
        Database::Sqlite(pool) => std::sync::Arc::new(SqlKeyStore(pool.clone())),
        Database::Postgres(pool) => std::sync::Arc::new(SqlKeyStore(pool.clone())),
    }
}

pub struct SqlKeyStore<P>(P);

macro_rules! key_columns {
    () => {
        "id, tenant_id, application_id, name, role, scopes, secret_hash, previous_secret_hash,
         previous_expires_at, expires_at, created_by, created_at, rotated_at, revoked_at,
         last_used_at, meta, ratelimit_limit, ratelimit_window_seconds, created_by_service"
    };
}

const LIST_KEYS: &str = concat!(
    "SELECT ",
    key_columns!(),
    " FROM api_keys WHERE tenant_id = $1 ORDER BY created_at, id"
);

/// A rotation keeps the current secret as the previous one only for an overlap (`$4`).
const ROTATE_KEY: &str = concat!(
    "UPDATE api_keys SET
         previous_secret_hash = CASE WHEN $4 IS NULL THEN NULL ELSE secret_hash END,
         previous_expires_at = $4, secret_hash = $3, rotated_at = $5
     WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL
     RETURNING ",
    key_columns!()
);

/// What a live key grants (its role and scopes), read before a change to it.
const LIVE_KEY_GRANT: &str =
    "SELECT role, scopes FROM api_keys WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL";

/// A stored (role, scopes) pair as the grant it carries.
pub(crate) fn grant_from(
    (role, scopes): (String, Option<String>),
) -> Result<Entitlement, StoreError> {
    Ok(Entitlement::key(stored_role(&role)?, scopes.as_deref()))
}

const PRESENTED_KEY: &str = concat!(
    "SELECT ",
    key_columns!(),
    ", tenant_name, tenant_suspended_at FROM presented_api_keys WHERE id = $1"
);

struct KeyRow {
    id: ApiKeyId,
    tenant_id: TenantId,
    application_id: Option<ApplicationId>,
    name: String,
    role: String,
    scopes: Option<String>,
    secret_hash: Vec<u8>,
    previous_secret_hash: Option<Vec<u8>>,
    previous_expires_at: Option<OffsetDateTime>,
    expires_at: Option<OffsetDateTime>,
    created_by: Option<UserId>,
    created_by_service: Option<ServiceId>,
    created_at: OffsetDateTime,
    rotated_at: Option<OffsetDateTime>,
    revoked_at: Option<OffsetDateTime>,
    last_used_at: Option<OffsetDateTime>,
    meta: Option<String>,
    ratelimit_limit: Option<i64>,
    ratelimit_window_seconds: Option<i64>,
}

struct PresentedRow {
    key: KeyRow,
    tenant_name: String,
    tenant_suspended_at: Option<OffsetDateTime>,
}

fn key_from(row: KeyRow) -> Result<KeyRecord, StoreError> {
    let role = stored_role(&row.role)?;
    Ok(KeyRecord {
        id: row.id,
        tenant: row.tenant_id,
        application: row.application_id,
        name: row.name,
        role,
        scopes: row.scopes,
        secret_hash: row.secret_hash,
        previous_secret_hash: row.previous_secret_hash,
        previous_expires_at: row.previous_expires_at,
        expires_at: row.expires_at,
        created_by: match (row.created_by, row.created_by_service) {
            (Some(user), None) => KeyCreator::Member(user),
            (None, Some(service)) => KeyCreator::Service(service),
            _ => {
                return Err(StoreError::Other(
                    "a stored key names no single creator".into(),
                ))
            }
        },
        created_at: row.created_at,
        rotated_at: row.rotated_at,
        revoked_at: row.revoked_at,
        last_used_at: row.last_used_at,
        meta: row.meta,
        ratelimit: match (row.ratelimit_limit, row.ratelimit_window_seconds) {
            (Some(limit), Some(window)) => Some(KeyLimit {
                limit: u32::try_from(limit).map_err(|_| bad_stored_limit())?,
                window_seconds: u32::try_from(window).map_err(|_| bad_stored_limit())?,
            }),
            _ => None,
        },
    })
}

fn bad_stored_limit() -> StoreError {
    StoreError::Other("a stored key limit is out of range".into())
}

for_both_backends! {
    impl<'r> sqlx::FromRow<'r, DbRow> for KeyRow {
        fn from_row(row: &'r DbRow) -> Result<Self, sqlx::Error> {
            use sqlx::Row;
            Ok(Self {
                id: row.try_get("id")?,
                tenant_id: row.try_get("tenant_id")?,
                application_id: row.try_get("application_id")?,
                name: row.try_get("name")?,
                role: row.try_get("role")?,
                scopes: row.try_get("scopes")?,
                secret_hash: row.try_get("secret_hash")?,
                previous_secret_hash: row.try_get("previous_secret_hash")?,
                previous_expires_at: row.try_get("previous_expires_at")?,
                expires_at: row.try_get("expires_at")?,
                created_by: row.try_get("created_by")?,
                created_by_service: row.try_get("created_by_service")?,
                created_at: row.try_get("created_at")?,
                rotated_at: row.try_get("rotated_at")?,
                revoked_at: row.try_get("revoked_at")?,
                last_used_at: row.try_get("last_used_at")?,
                meta: row.try_get("meta")?,
                ratelimit_limit: row.try_get("ratelimit_limit")?,
                ratelimit_window_seconds: row.try_get("ratelimit_window_seconds")?,
            })
        }
    }

    impl<'r> sqlx::FromRow<'r, DbRow> for PresentedRow {
        fn from_row(row: &'r DbRow) -> Result<Self, sqlx::Error> {
            use sqlx::Row;
            Ok(Self {
                key: KeyRow::from_row(row)?,
                tenant_name: row.try_get("tenant_name")?,
                tenant_suspended_at: row.try_get("tenant_suspended_at")?,
            })
        }
    }

    /// Why a change to key `id` may not go on: there is no such live key, or the caller may
    /// not act on what it grants. None: it may.
    async fn refusal<T>(
        conn: &mut <Db as sqlx::Database>::Connection,
        tenant: TenantId,
        id: ApiKeyId,
        may_act_on: MayActOn<'_>,
    ) -> Result<Option<Guarded<T>>, StoreError> {
        let grant: Option<(String, Option<String>)> = sqlx::query_as(LIVE_KEY_GRANT)
            .bind(tenant)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
        Ok(match grant.map(grant_from).transpose()? {
            None => Some(Guarded::NotFound),
            Some(grant) if !may_act_on(&grant) => Some(Guarded::Forbidden),
            Some(_) => None,
        })
    }

    #[async_trait]
    impl KeyStore for SqlKeyStore<Pool> {
        async fn create(
            &self,
            scope: TenantScope,
            key: &KeyRecord,
            event: &AuditRecord,
        ) -> Result<Creation, StoreError> {
            let tenant = scope.tenant();
            let mut tx = self.0.tenant(scope).await?;
            if let Some(application) = key.application {
                // The foreign key alone would accept another tenant's application; the lock
                // keeps a concurrent deletion of it from missing this key.
                let found = sqlx::query(LOCK_APPLICATION)
                    .bind(tenant)
                    .bind(application)
                    .execute(&mut *tx)
                    .await?;
                if found.rows_affected() != 1 {
                    return Ok(Creation::NoSuchApplication);
                }
            }
            sqlx::query(
                "INSERT INTO api_keys (id, tenant_id, application_id, name, role, scopes,
                     secret_hash, expires_at, created_by, created_by_service, created_at, meta,
                     ratelimit_limit, ratelimit_window_seconds)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            )
            .bind(key.id)
            .bind(tenant)
            .bind(key.application)
            .bind(&key.name)
            .bind(key.role.as_str())
            .bind(&key.scopes)
            .bind(&key.secret_hash)
            .bind(key.expires_at)
            .bind(key.created_by.member())
            .bind(key.created_by.service())
            .bind(key.created_at)
            .bind(&key.meta)
            .bind(key.ratelimit.map(|l| i64::from(l.limit)))
            .bind(key.ratelimit.map(|l| i64::from(l.window_seconds)))
            .execute(&mut *tx)
            .await?;
            tx.commit_with(event).await?;
            Ok(Creation::Created)
        }

        async fn list(&self, scope: TenantScope) -> Result<Vec<KeyRecord>, StoreError> {
            let tenant = scope.tenant();
            let mut reader = self.0.tenant_reader(scope).await?;
            let rows: Vec<KeyRow> = sqlx::query_as(LIST_KEYS)
            .bind(tenant)
            .fetch_all(&mut *reader)
            .await?;
            <Pool as Begin>::end_read(reader).await?;
            rows.into_iter().map(key_from).collect()
        }

        async fn revoke(
            &self,
            scope: TenantScope,
            id: ApiKeyId,
            may_act_on: MayActOn<'_>,
            at: OffsetDateTime,
            event: &AuditRecord,
        ) -> Result<Guarded<()>, StoreError> {
            let tenant = scope.tenant();
            let mut tx = self.0.tenant(scope).await?;
            if let Some(refusal) = refusal(&mut tx, tenant, id, may_act_on).await? {
                return Ok(refusal);
            }
            let revoked = sqlx::query(
                "UPDATE api_keys SET revoked_at = $3, previous_secret_hash = NULL,
                     previous_expires_at = NULL
                 WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL",
            )
            .bind(tenant)
            .bind(id)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            if revoked.rows_affected() != 1 {
                return Ok(Guarded::NotFound);
            }
            tx.commit_narrowing(event).await?;
            Ok(Guarded::Done(()))
        }

        async fn rotate(
            &self,
            scope: TenantScope,
            id: ApiKeyId,
            may_act_on: MayActOn<'_>,
            new_hash: &[u8; 32],
            previous_until: Option<OffsetDateTime>,
            at: OffsetDateTime,
            event: &AuditRecord,
        ) -> Result<Guarded<KeyRecord>, StoreError> {
            let tenant = scope.tenant();
            let mut tx = self.0.tenant(scope).await?;
            if let Some(refusal) = refusal(&mut tx, tenant, id, may_act_on).await? {
                return Ok(refusal);
            }
            let row: Option<KeyRow> = sqlx::query_as(ROTATE_KEY)
            .bind(tenant)
            .bind(id)
            .bind(&new_hash[..])
            .bind(previous_until)
            .bind(at)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else {
                return Ok(Guarded::NotFound);
            };
            tx.commit_narrowing(event).await?;
            key_from(row).map(Guarded::Done)
        }

        async fn presented(&self, id: ApiKeyId) -> Result<Option<PresentedRecord>, StoreError> {
            let mut tx = self.0.presented_read(Presented::ApiKey(id)).await?;
            let row: Option<PresentedRow> = sqlx::query_as(PRESENTED_KEY)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            tx.commit().await?;
            row.map(|row| {
                Ok(PresentedRecord {
                    tenant_name: row.tenant_name.into(),
                    tenant_suspended: row.tenant_suspended_at.is_some(),
                    key: key_from(row.key)?,
                })
            })
            .transpose()
        }

        async fn record_use(
            &self,
            tenant: TenantId,
            uses: &[(ApiKeyId, OffsetDateTime)],
        ) -> Result<(), StoreError> {
            // The minute's flush of last uses: upkeep, no request.
            let mut tx = self.0.tenant(TenantScope::for_system(tenant)).await?;
            for (id, at) in uses {
                sqlx::query(
                    "UPDATE api_keys SET last_used_at = $3
                     WHERE tenant_id = $1 AND id = $2
                       AND (last_used_at IS NULL OR last_used_at < $3)",
                )
                .bind(tenant)
                .bind(id)
                .bind(at)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        }
    }
}
