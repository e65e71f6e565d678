//! Platform operations (claim TEN-6): cross-tenant commands for the deployment's operators,
//! reachable only through `palisade admin …` with a credential of the deployment's
//! environment (on PostgreSQL, `admin.database_url`: a BYPASSRLS role the server never
//! holds), never through the tenant API. Each one is written to the platform's security
//! stream. Suspending a tenant ends its sessions at once (the auth epoch moves).

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::{PgPool, SqlitePool};
use time::OffsetDateTime;

use crate::audit::{Append, AuditRecord};
use crate::clock::Clock;
use crate::config::{Backend, Settings};
use crate::ids::{TenantId, UserId};
use crate::store::{for_both_backends, Begin, Database, StartupError, StoreError};

#[derive(Debug, Clone)]
pub struct TenantSummary {
    pub id: TenantId,
    pub name: String,
    pub created_at: OffsetDateTime,
    pub members: i64,
    pub suspended_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone)]
pub struct UserSummary {
    pub id: UserId,
    pub email: String,
    pub email_verified: bool,
    /// (tenant, tenant name, role)
    pub memberships: Vec<(TenantId, String, String)>,
}

#[async_trait]
trait PlatformStore: Send + Sync {
    async fn tenants(&self, event: &AuditRecord) -> Result<Vec<TenantSummary>, StoreError>;
    async fn set_suspended(
        &self,
        tenant: TenantId,
        suspended: bool,
        event: &AuditRecord,
    ) -> Result<bool, StoreError>;
    async fn find_user(
        &self,
        email: &str,
        event: &AuditRecord,
    ) -> Result<Option<UserSummary>, StoreError>;
    /// Destroys every live data key of `tenant`, recording `in_tenant` in its chain and
    /// `event` in the platform stream; None: no such tenant.
    async fn destroy_data_keys(
        &self,
        tenant: TenantId,
        in_tenant: &AuditRecord,
        event: &AuditRecord,
    ) -> Result<Option<u64>, StoreError>;
}

struct SqlPlatformStore<P>(P);

for_both_backends! {
    #[async_trait]
    impl PlatformStore for SqlPlatformStore<Pool> {
        async fn tenants(&self, event: &AuditRecord) -> Result<Vec<TenantSummary>, StoreError> {
            let mut tx = self.0.write().await?;
            let rows: Vec<(TenantId, String, OffsetDateTime, i64, Option<OffsetDateTime>)> =
                sqlx::query_as(
                    "SELECT t.id, t.name, t.created_at,
                            (SELECT count(*) FROM memberships m WHERE m.tenant_id = t.id),
                            t.suspended_at
                     FROM tenants t ORDER BY t.created_at, t.id",
                )
                .fetch_all(&mut *tx)
                .await?;
            tx.commit_with(event).await?;
            Ok(rows
                .into_iter()
                .map(|r| TenantSummary {
                    id: r.0,
                    name: r.1,
                    created_at: r.2,
                    members: r.3,
                    suspended_at: r.4,
                })
                .collect())
        }

        async fn set_suspended(
            &self,
            tenant: TenantId,
            suspended: bool,
            event: &AuditRecord,
        ) -> Result<bool, StoreError> {
            let mut tx = self.0.write().await?;
            let changed = sqlx::query("UPDATE tenants SET suspended_at = $1 WHERE id = $2")
                .bind(suspended.then_some(event.occurred_at))
                .bind(tenant)
                .execute(&mut *tx)
                .await?;
            if changed.rows_affected() != 1 {
                return Ok(false);
            }
            tx.commit_narrowing(event).await?;
            Ok(true)
        }

        async fn destroy_data_keys(
            &self,
            tenant: TenantId,
            in_tenant: &AuditRecord,
            event: &AuditRecord,
        ) -> Result<Option<u64>, StoreError> {
            let mut tx = self.0.write().await?;
            let exists: Option<TenantId> = sqlx::query_scalar("SELECT id FROM tenants WHERE id = $1")
                .bind(tenant)
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_none() {
                return Ok(None);
            }
            let destroyed = sqlx::query(
                "UPDATE tenant_data_keys SET wrapped = NULL, destroyed_at = $2
                 WHERE tenant_id = $1 AND wrapped IS NOT NULL",
            )
            .bind(tenant)
            .bind(event.occurred_at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.append(in_tenant).await?;
            tx.commit_with(event).await?;
            Ok(Some(destroyed))
        }

        async fn find_user(
            &self,
            email: &str,
            event: &AuditRecord,
        ) -> Result<Option<UserSummary>, StoreError> {
            let mut tx = self.0.write().await?;
            let user: Option<(UserId, String, Option<OffsetDateTime>)> = sqlx::query_as(
                "SELECT id, email, email_verified_at FROM users WHERE email = $1",
            )
            .bind(email)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((id, email, verified)) = user else {
                tx.commit_with(event).await?;
                return Ok(None);
            };
            let memberships: Vec<(TenantId, String, String)> = sqlx::query_as(
                "SELECT m.tenant_id, t.name, m.role FROM memberships m
                 JOIN tenants t ON t.id = m.tenant_id WHERE m.user_id = $1
                 ORDER BY m.created_at",
            )
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
            tx.commit_with(event).await?;
            Ok(Some(UserSummary {
                id,
                email,
                email_verified: verified.is_some(),
                memberships,
            }))
        }
    }
}

// Both pool types are stamped above; naming them keeps the imports honest.
#[allow(dead_code)]
type Stamped = (SqlPlatformStore<SqlitePool>, SqlPlatformStore<PgPool>);

#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no such tenant")]
    NoSuchTenant,
    #[error("no live service credential with that id")]
    NoSuchService,
    #[error("platform commands on PostgreSQL need admin.database_url (PALISADE_ADMIN__DATABASE_URL): the operator's own BYPASSRLS role, not the server's, see docs/postgres.md")]
    NoCredential,
    #[error("{0}")]
    Invalid(String),
}

/// The platform operator's view of the deployment, for one command.
pub struct Platform {
    store: Arc<dyn PlatformStore>,
    db: Database,
    clock: Arc<dyn Clock>,
    operator: String,
}

impl Platform {
    /// Connects with the platform credential: on PostgreSQL `admin.database_url` (never the
    /// server's runtime role); on SQLite the data directory's database file.
    pub async fn connect(
        settings: &Settings,
        operator: String,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, PlatformError> {
        let db = match settings.backend() {
            Backend::Sqlite { .. } => crate::app::open_database(settings).await?,
            Backend::Postgres { .. } => {
                let url = settings
                    .admin
                    .database_url
                    .as_ref()
                    .ok_or(PlatformError::NoCredential)?;
                let pool = crate::store::postgres::connect(url, settings).await?;
                // A role that cannot see across tenants would list nothing and suspend
                // nothing, silently; the server's runtime role must never be used here.
                let (bypass, runtime): (bool, bool) = sqlx::query_as(
                    "SELECT r.rolbypassrls, pg_has_role(current_user, $1, 'MEMBER')
                     FROM pg_roles r WHERE r.rolname = current_user",
                )
                .bind(crate::store::postgres::RUNTIME_GROUP_ROLE)
                .fetch_one(&pool)
                .await
                .map_err(StoreError::from)?;
                if !bypass || runtime {
                    return Err(PlatformError::NoCredential);
                }
                Database::Postgres(pool)
            }
        };
        let store: Arc<dyn PlatformStore> = match &db {
            Database::Sqlite(pool) => Arc::new(SqlPlatformStore(pool.clone())),
            Database::Postgres(pool) => Arc::new(SqlPlatformStore(pool.clone())),
        };
        Ok(Self {
            store,
            db,
            clock,
            operator,
        })
    }

    /// The platform credential's database, for the audit commands.
    pub fn database(&self) -> &Database {
        &self.db
    }

    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    fn event(
        &self,
        action: &'static str,
        target_type: &'static str,
        target: String,
    ) -> AuditRecord {
        // The operator's name stands where a request's user agent would.
        AuditRecord::new(
            action,
            "success",
            self.clock.now(),
            "cli".to_owned(),
            None,
            Some(format!("palisade admin ({})", self.operator)),
        )
        .by(crate::audit::Acting::Operator(self.operator.clone()))
        .on(target_type, target)
    }

    pub async fn tenants(&self) -> Result<Vec<TenantSummary>, PlatformError> {
        let event = self.event("platform.tenants_listed", "deployment", String::new());
        Ok(self.store.tenants(&event).await?)
    }

    pub async fn set_suspended(
        &self,
        tenant: TenantId,
        suspended: bool,
    ) -> Result<(), PlatformError> {
        let action = if suspended {
            "platform.tenant_suspended"
        } else {
            "platform.tenant_unsuspended"
        };
        let event = self.event(action, "tenant", tenant.to_string());
        if self.store.set_suspended(tenant, suspended, &event).await? {
            Ok(())
        } else {
            Err(PlatformError::NoSuchTenant)
        }
    }

    /// Crypto-shredding: destroys the tenant's data keys, so every secret they sealed is
    /// unreadable at once, by the API or by anyone holding the database and the KEK. New
    /// secrets get a new key. Returns how many keys were destroyed.
    pub async fn destroy_data_keys(&self, tenant: TenantId) -> Result<u64, PlatformError> {
        let event = self.event(
            "platform.tenant_keys_destroyed",
            "tenant",
            tenant.to_string(),
        );
        let in_tenant = self
            .event("vault.keys_destroyed", "tenant", tenant.to_string())
            .in_tenant(tenant);
        self.store
            .destroy_data_keys(tenant, &in_tenant, &event)
            .await?
            .ok_or(PlatformError::NoSuchTenant)
    }

    pub async fn find_user(&self, email: &str) -> Result<Option<UserSummary>, PlatformError> {
        let email = crate::identity::domain::Email::parse(email)
            .map_err(|e| PlatformError::Invalid(e.to_string()))?;
        let event = self.event(
            "platform.user_looked_up",
            "email",
            email.as_str().to_owned(),
        );
        Ok(self.store.find_user(email.as_str(), &event).await?)
    }

    /// A new service credential for the app's backend (claim APP-2): the text is shown
    /// once and never stored.
    pub async fn create_service(
        &self,
        name: &str,
    ) -> Result<crate::services::IssuedService, PlatformError> {
        let name = crate::identity::domain::display_name(
            name,
            100,
            "name: 1 to 100 characters, no control characters or surrounding spaces",
        )
        .map_err(|e| PlatformError::Invalid(e.to_string()))?;
        let issued = crate::services::issue(name, &self.operator, self.clock.now());
        let event = self
            .event(
                "platform.service_created",
                "service",
                issued.record.id.to_string(),
            )
            .changed("name", None::<&str>, name);
        self.services().create(&issued.record, &event).await?;
        Ok(issued)
    }

    pub async fn list_services(
        &self,
    ) -> Result<Vec<crate::services::store::ServiceRecord>, PlatformError> {
        let event = self.event("platform.services_listed", "deployment", String::new());
        Ok(self.services().list(&event).await?)
    }

    /// Revokes a service credential: refused from the next request on every instance.
    pub async fn revoke_service(&self, id: crate::ids::ServiceId) -> Result<(), PlatformError> {
        let event = self.event("platform.service_revoked", "service", id.to_string());
        if self.services().revoke(id, self.clock.now(), &event).await? {
            Ok(())
        } else {
            Err(PlatformError::NoSuchService)
        }
    }

    fn services(&self) -> Arc<dyn crate::services::store::ServiceStore> {
        crate::services::store::for_database(&self.db)
    }

    pub async fn close(self) {
        self.db.close().await;
    }
}
