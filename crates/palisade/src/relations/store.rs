//! The relations table: written by the app's backend in batches, each with its audit event
//! and a move of the tenant's revision; read by decisions and the resource search.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::{Relation, Revision};
use crate::access::TenantScope;
use crate::audit::{Append, AuditRecord};
use crate::ids::UserId;
use crate::store::{for_both_backends, membership_lock, Begin, Database, StoreError};

/// How a batch of writes ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    Done(Revision),
    /// A relation names a user who is not a member of the tenant; nothing was written.
    NotAMember(UserId),
    /// No tenant of that id; nothing was written.
    NoSuchTenant,
}

#[async_trait]
pub trait RelationStore: Send + Sync {
    /// Adds (`put`) or removes the relations in one transaction with `event`; adding one
    /// that exists, or removing one that does not, changes nothing but is no error.
    async fn write(
        &self,
        scope: TenantScope,
        relations: &[Relation],
        put: bool,
        at: OffsetDateTime,
        event: &AuditRecord,
    ) -> Result<Written, StoreError>;
    /// Whether `user` has any relation to the resource.
    async fn related(
        &self,
        scope: TenantScope,
        user: UserId,
        resource_type: &str,
        resource_id: &str,
    ) -> Result<bool, StoreError>;
    /// The ids of resources of `resource_type` that `user` has a relation to, in id order,
    /// after `after`, at most `limit`.
    async fn related_ids(
        &self,
        scope: TenantScope,
        user: UserId,
        resource_type: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<String>, StoreError>;
    async fn revision(&self, scope: TenantScope) -> Result<Revision, StoreError>;
}

pub fn for_database(db: &Database) -> std::sync::Arc<dyn RelationStore> {
    match db {
        Database::Sqlite(pool) => std::sync::Arc::new(SqlRelationStore(pool.clone())),
        Database::Postgres(pool) => std::sync::Arc::new(SqlRelationStore(pool.clone())),
    }
}

struct SqlRelationStore<P>(P);

const ADD: &str = "INSERT INTO relations
         (tenant_id, resource_type, resource_id, relation, user_id, created_at)
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING";
const REMOVE: &str = "DELETE FROM relations WHERE tenant_id = $1 AND resource_type = $2
     AND resource_id = $3 AND relation = $4 AND user_id = $5";
/// Moves the tenant's relation revision by one (every relation write, and a member's
/// removal, which removes its relations).
pub const NEXT_REVISION: &str =
    "INSERT INTO relation_revisions (tenant_id, revision) VALUES ($1, 1)
     ON CONFLICT (tenant_id) DO UPDATE SET revision = relation_revisions.revision + 1
     RETURNING revision";

for_both_backends! {
    #[async_trait]
    impl RelationStore for SqlRelationStore<Pool> {
        async fn write(
            &self,
            scope: TenantScope,
            relations: &[Relation],
            put: bool,
            at: OffsetDateTime,
            event: &AuditRecord,
        ) -> Result<Written, StoreError> {
            let tenant = scope.tenant();
            let mut tx = self.0.tenant(scope).await?;
            // A member's removal takes the same lock: it cannot slip between the check
            // below and the insert, leaving a relation for someone no longer a member.
            <Pool as Begin>::lock_until_commit(&mut tx, membership_lock(tenant)).await?;
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tenants WHERE id = $1)")
                    .bind(tenant)
                    .fetch_one(&mut *tx)
                    .await?;
            if !exists {
                return Ok(Written::NoSuchTenant);
            }
            for relation in relations {
                if put {
                    let member: bool = sqlx::query_scalar(
                        "SELECT EXISTS (SELECT 1 FROM memberships
                                        WHERE tenant_id = $1 AND user_id = $2)",
                    )
                    .bind(tenant)
                    .bind(relation.user)
                    .fetch_one(&mut *tx)
                    .await?;
                    if !member {
                        return Ok(Written::NotAMember(relation.user));
                    }
                }
                let query = if put {
                    sqlx::query(ADD)
                } else {
                    sqlx::query(REMOVE)
                };
                // ADD's last parameter is the time; REMOVE has none.
                let query = query
                    .bind(tenant)
                    .bind(&*relation.resource_type)
                    .bind(&relation.resource_id)
                    .bind(&*relation.relation)
                    .bind(relation.user);
                let query = if put { query.bind(at) } else { query };
                query.execute(&mut *tx).await?;
            }
            let revision: i64 = sqlx::query_scalar(NEXT_REVISION)
                .bind(tenant)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit_with(event).await?;
            Ok(Written::Done(Revision(revision)))
        }

        async fn related(
            &self,
            scope: TenantScope,
            user: UserId,
            resource_type: &str,
            resource_id: &str,
        ) -> Result<bool, StoreError> {
            let tenant = scope.tenant();
            let mut reader = self.0.tenant_reader(scope).await?;
            let found: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM relations WHERE tenant_id = $1 AND user_id = $2
                                AND resource_type = $3 AND resource_id = $4)",
            )
            .bind(tenant)
            .bind(user)
            .bind(resource_type)
            .bind(resource_id)
            .fetch_one(&mut *reader)
            .await?;
            <Pool as Begin>::end_read(reader).await?;
            Ok(found)
        }

        async fn related_ids(
            &self,
            scope: TenantScope,
            user: UserId,
            resource_type: &str,
            after: &str,
            limit: u32,
        ) -> Result<Vec<String>, StoreError> {
            let tenant = scope.tenant();
            let mut reader = self.0.tenant_reader(scope).await?;
            let ids: Vec<String> = sqlx::query_scalar(
                "SELECT DISTINCT resource_id FROM relations
                 WHERE tenant_id = $1 AND user_id = $2 AND resource_type = $3
                     AND resource_id > $4
                 ORDER BY resource_id LIMIT $5",
            )
            .bind(tenant)
            .bind(user)
            .bind(resource_type)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&mut *reader)
            .await?;
            <Pool as Begin>::end_read(reader).await?;
            Ok(ids)
        }

        async fn revision(&self, scope: TenantScope) -> Result<Revision, StoreError> {
            let tenant = scope.tenant();
            let mut reader = self.0.tenant_reader(scope).await?;
            let revision: Option<i64> = sqlx::query_scalar(
                "SELECT revision FROM relation_revisions WHERE tenant_id = $1",
            )
            .bind(tenant)
            .fetch_optional(&mut *reader)
            .await?;
            <Pool as Begin>::end_read(reader).await?;
            Ok(Revision(revision.unwrap_or(0)))
        }
    }
}
