//! The foundation's audit trail: one row per state-changing action, written in the same
//! transaction as the change it records, never updated or deleted. The hash-chained,
//! exportable log replaces this module's storage; its callers keep the same shape.
//! Events that belong to no tenant go to the platform's security stream.

use std::net::IpAddr;

use sqlx::Transaction;
use time::OffsetDateTime;

use crate::ids::{ApiKeyId, EventId, TenantId, UserId};
use crate::store::{for_both_backends, StoreError};

/// Who acted: a person, or an API key by its id (never its secret, claim KEY-3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Actor {
    User(UserId),
    ApiKey(ApiKeyId),
}

impl From<UserId> for Actor {
    fn from(user: UserId) -> Self {
        Actor::User(user)
    }
}

impl From<ApiKeyId> for Actor {
    fn from(key: ApiKeyId) -> Self {
        Actor::ApiKey(key)
    }
}

/// One event, as the caller describes it. Secrets never go in here.
#[derive(Clone, Debug)]
pub struct AuditRecord {
    /// None: an event of no tenant (an unknown email's failed sign-in), kept in the
    /// platform's security stream.
    pub tenant_id: Option<TenantId>,
    pub actor: Option<Actor>,
    pub action: &'static str,
    pub target_type: &'static str,
    pub target_id: String,
    pub outcome: &'static str,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub request_id: String,
    pub occurred_at: OffsetDateTime,
}

impl AuditRecord {
    /// An event of no tenant yet, with no actor or target; the builders below add them.
    pub fn new(
        action: &'static str,
        outcome: &'static str,
        occurred_at: OffsetDateTime,
        request_id: String,
        ip: Option<IpAddr>,
        user_agent: Option<String>,
    ) -> Self {
        Self {
            tenant_id: None,
            actor: None,
            action,
            target_type: "none",
            target_id: String::new(),
            outcome,
            ip,
            user_agent,
            request_id,
            occurred_at,
        }
    }

    pub fn in_tenant(mut self, tenant: TenantId) -> Self {
        self.tenant_id = Some(tenant);
        self
    }

    pub fn by(mut self, actor: impl Into<Actor>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    pub fn on(mut self, target_type: &'static str, target_id: impl ToString) -> Self {
        self.target_type = target_type;
        self.target_id = target_id.to_string();
        self
    }
}

/// Appends an event inside the caller's transaction. Tenant events go to the tenant's
/// trail (the transaction must be bound to that tenant on PostgreSQL); events without a
/// tenant go to the platform's security stream.
pub(crate) trait Append: Sized {
    async fn append(&mut self, event: &AuditRecord) -> Result<(), StoreError>;

    /// Appends `event` and commits: the change and its record land together or not at all.
    async fn commit_with(self, event: &AuditRecord) -> Result<(), StoreError>;

    /// As [`Append::commit_with`], for a change that narrows what sessions may do: bumps the
    /// auth epoch in the same transaction, so cached principals are re-read
    /// (`identity::principals`).
    async fn commit_narrowing(self, event: &AuditRecord) -> Result<(), StoreError>;
}

for_both_backends! {
    impl Append for Transaction<'static, Db> {
        async fn append(&mut self, event: &AuditRecord) -> Result<(), StoreError> {
            let ip = event.ip.map(|ip| ip.to_string());
            match event.tenant_id {
                Some(tenant) => sqlx::query(
                    "INSERT INTO audit_events (id, tenant_id, occurred_at, actor_user_id,
                         actor_key_id, action, target_type, target_id, outcome, ip, user_agent,
                         request_id)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                )
                .bind(EventId::generate())
                .bind(tenant)
                .bind(event.occurred_at)
                .bind(match event.actor {
                    Some(Actor::User(user)) => Some(user),
                    _ => None,
                })
                .bind(match event.actor {
                    Some(Actor::ApiKey(key)) => Some(key),
                    _ => None,
                })
                .bind(event.action)
                .bind(event.target_type)
                .bind(&event.target_id)
                .bind(event.outcome)
                .bind(ip)
                .bind(&event.user_agent)
                .bind(&event.request_id)
                .execute(&mut **self)
                .await?,
                None => sqlx::query(
                    "INSERT INTO security_events (id, occurred_at, action, target_type, target_id,
                         outcome, ip, user_agent, request_id)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(EventId::generate())
                .bind(event.occurred_at)
                .bind(event.action)
                .bind(event.target_type)
                .bind(&event.target_id)
                .bind(event.outcome)
                .bind(ip)
                .bind(&event.user_agent)
                .bind(&event.request_id)
                .execute(&mut **self)
                .await?,
            };
            Ok(())
        }

        async fn commit_with(mut self, event: &AuditRecord) -> Result<(), StoreError> {
            self.append(event).await?;
            self.commit().await?;
            Ok(())
        }

        async fn commit_narrowing(mut self, event: &AuditRecord) -> Result<(), StoreError> {
            sqlx::query(BUMP_AUTH_EPOCH).execute(&mut *self).await?;
            self.commit_with(event).await
        }
    }
}

/// Run inside every transaction that narrows (or changes) what a cached principal says.
const BUMP_AUTH_EPOCH: &str = "UPDATE auth_epoch SET epoch = epoch + 1 WHERE id = 1";
