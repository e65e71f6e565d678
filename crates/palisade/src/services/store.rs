//! The service credentials' table: read by the server, written by the operator's CLI
//! through the platform credential, every write with its platform-stream event.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::audit::{Append, AuditRecord};
use crate::ids::ServiceId;
use crate::store::{for_both_backends, Begin, Database, StoreError};

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
    }
}
