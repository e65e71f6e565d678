//! The service credentials' table: read by the server, written by the operator's CLI
//! through the platform credential, every write with its platform-stream event. And the
//! tenant tokens the server issues to a credential, each with its events in the tenant's
//! chain and the platform stream.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::access::TenantScope;
use crate::audit::{Append, AuditRecord};
use crate::ids::{ServiceId, TenantId, TenantTokenId};
use crate::store::{for_both_backends, Begin, Database, Presented, StoreError};

/// A tenant token as stored, with what its checks need of its credential and tenant as
/// they were when it was read.
#[derive(Clone, Debug)]
pub struct TenantTokenRecord {
    pub id: TenantTokenId,
    pub service: ServiceId,
    pub tenant: TenantId,
    pub tenant_name: String,
    /// SHA-256 of the whole token text.
    pub secret_hash: Vec<u8>,
    pub issued_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub service_revoked: bool,
    pub tenant_suspended: bool,
}

/// Whether a tenant token was issued.
#[derive(Debug, PartialEq, Eq)]
pub enum TokenGrant {
    /// Issued, in the tenant of this name.
    Issued {
        tenant_name: String,
    },
    NoSuchTenant,
    Suspended,
}

#[derive(Clone, Debug)]
pub struct ServiceRecord {
    pub id: ServiceId,
    pub name: String,
    /// The operator who created it.
    pub created_by: String,
    pub created_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
    /// SHA-256 of the whole credential text.
    pub secret_hash: Vec<u8>,
}

#[async_trait]
pub trait ServiceStore: Send + Sync {
    /// The credential a client presented, by its public id.
    async fn presented(&self, id: ServiceId) -> Result<Option<ServiceRecord>, StoreError>;
    async fn create(&self, record: &ServiceRecord, event: &AuditRecord) -> Result<(), StoreError>;
    async fn list(&self, event: &AuditRecord) -> Result<Vec<ServiceRecord>, StoreError>;
    /// Revokes a live credential; false when there is none by that id. Moves the auth
    /// epoch, so no instance keeps a cached copy.
    async fn revoke(
        &self,
        id: ServiceId,
        at: OffsetDateTime,
        event: &AuditRecord,
    ) -> Result<bool, StoreError>;
    /// Stores a tenant token with its events (the tenant's, then the platform's), unless
    /// the tenant is unknown or suspended; drops tokens expired before `forget_before`.
    async fn issue_tenant_token(
        &self,
        record: &TenantTokenRecord,
        events: [&AuditRecord; 2],
        forget_before: OffsetDateTime,
    ) -> Result<TokenGrant, StoreError>;
    /// The tenant token a client presented, by its public id.
    async fn presented_tenant_token(
        &self,
        id: TenantTokenId,
    ) -> Result<Option<TenantTokenRecord>, StoreError>;
}

pub fn for_database(db: &Database) -> std::sync::Arc<dyn ServiceStore> {
    match db {
        Database::Sqlite(pool) => std::sync::Arc::new(SqlServiceStore(pool.clone())),
        Database::Postgres(pool) => std::sync::Arc::new(SqlServiceStore(pool.clone())),
    }
}

struct SqlServiceStore<P>(P);

type Row = (
    ServiceId,
    String,
    String,
    OffsetDateTime,
    Option<OffsetDateTime>,
    Vec<u8>,
);

fn record_from(row: Row) -> ServiceRecord {
    ServiceRecord {
        id: row.0,
        name: row.1,
        created_by: row.2,
        created_at: row.3,
        revoked_at: row.4,
        secret_hash: row.5,
    }
}

for_both_backends! {
    #[async_trait]
    impl ServiceStore for SqlServiceStore<Pool> {
        async fn presented(&self, id: ServiceId) -> Result<Option<ServiceRecord>, StoreError> {
            let row: Option<Row> = sqlx::query_as(
                "SELECT id, name, created_by, created_at, revoked_at, secret_hash
                 FROM service_credentials WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&self.0)
            .await?;
            Ok(row.map(record_from))
        }

        async fn create(
            &self,
            record: &ServiceRecord,
            event: &AuditRecord,
        ) -> Result<(), StoreError> {
            let mut tx = self.0.write().await?;
            sqlx::query(
                "INSERT INTO service_credentials (id, name, secret_hash, created_by, created_at)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(record.id)
            .bind(&record.name)
            .bind(&record.secret_hash)
            .bind(&record.created_by)
            .bind(record.created_at)
            .execute(&mut *tx)
            .await?;
            tx.commit_with(event).await?;
            Ok(())
        }

        async fn list(&self, event: &AuditRecord) -> Result<Vec<ServiceRecord>, StoreError> {
            let mut tx = self.0.write().await?;
            let rows: Vec<Row> = sqlx::query_as(
                "SELECT id, name, created_by, created_at, revoked_at, secret_hash
                 FROM service_credentials ORDER BY created_at, id",
            )
            .fetch_all(&mut *tx)
            .await?;
            tx.commit_with(event).await?;
            Ok(rows.into_iter().map(record_from).collect())
        }

        async fn revoke(
            &self,
            id: ServiceId,
            at: OffsetDateTime,
            event: &AuditRecord,
        ) -> Result<bool, StoreError> {
            let mut tx = self.0.write().await?;
            let revoked = sqlx::query(
                "UPDATE service_credentials SET revoked_at = $2
                 WHERE id = $1 AND revoked_at IS NULL",
            )
            .bind(id)
            .bind(at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if revoked == 0 {
                return Ok(false);
            }
            tx.commit_narrowing(event).await?;
            Ok(true)
        }

        async fn issue_tenant_token(
            &self,
            record: &TenantTokenRecord,
            [in_tenant, in_platform]: [&AuditRecord; 2],
            forget_before: OffsetDateTime,
        ) -> Result<TokenGrant, StoreError> {
            // The service names the tenant; the token is what a later request presents.
            let mut tx = self.0.tenant(TenantScope::named_by_service(record.tenant)).await?;
            let tenant: Option<(String, Option<OffsetDateTime>)> =
                sqlx::query_as("SELECT name, suspended_at FROM tenants WHERE id = $1")
                    .bind(record.tenant)
                    .fetch_optional(&mut *tx)
                    .await?;
            let tenant_name = match tenant {
                None => return Ok(TokenGrant::NoSuchTenant),
                Some((_, Some(_))) => return Ok(TokenGrant::Suspended),
                Some((name, None)) => name,
            };
            sqlx::query("DELETE FROM tenant_tokens WHERE tenant_id = $1 AND expires_at < $2")
                .bind(record.tenant)
                .bind(forget_before)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO tenant_tokens (id, service_id, tenant_id, secret_hash, issued_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(record.id)
            .bind(record.service)
            .bind(record.tenant)
            .bind(&record.secret_hash)
            .bind(record.issued_at)
            .bind(record.expires_at)
            .execute(&mut *tx)
            .await?;
            tx.append(in_tenant).await?;
            tx.commit_with(in_platform).await?;
            Ok(TokenGrant::Issued { tenant_name })
        }

        async fn presented_tenant_token(
            &self,
            id: TenantTokenId,
        ) -> Result<Option<TenantTokenRecord>, StoreError> {
            type TokenRow = (ServiceId, TenantId, Vec<u8>, OffsetDateTime, OffsetDateTime, bool);
            let mut tx = self.0.presented_read(Presented::TenantToken(id)).await?;
            let row: Option<TokenRow> = sqlx::query_as(
                "SELECT t.service_id, t.tenant_id, t.secret_hash, t.issued_at, t.expires_at,
                        s.revoked_at IS NOT NULL
                 FROM tenant_tokens t JOIN service_credentials s ON s.id = t.service_id
                 WHERE t.id = $1",
            )
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            tx.commit().await?;
            let Some((service, tenant, secret_hash, issued_at, expires_at, service_revoked)) = row
            else {
                return Ok(None);
            };
            // The token's row names its tenant, read as a presented key's is: the server
            // checks the secret before anything acts in that tenant.
            let mut reader = self.0.tenant_reader(TenantScope::for_system(tenant)).await?;
            let state: Option<(String, bool)> = sqlx::query_as(
                "SELECT name, suspended_at IS NOT NULL FROM tenants WHERE id = $1",
            )
            .bind(tenant)
            .fetch_optional(&mut *reader)
            .await?;
            <Pool as Begin>::end_read(reader).await?;
            let Some((tenant_name, tenant_suspended)) = state else {
                return Ok(None);
            };
            Ok(Some(TenantTokenRecord {
                id,
                service,
                tenant,
                tenant_name,
                secret_hash,
                issued_at,
                expires_at,
                service_revoked,
                tenant_suspended,
            }))
        }
    }
}
