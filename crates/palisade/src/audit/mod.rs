//! The foundation's audit trail: one row per state-changing action, written in the same
//! transaction as the change it records, never updated or deleted. The hash-chained,
//! exportable log replaces this module's storage; its callers keep the same shape.

use std::net::IpAddr;

use sqlx::{Postgres, Sqlite, Transaction};
use time::OffsetDateTime;

use crate::ids::{EventId, TenantId, UserId};
use crate::store::StoreError;

/// One event, as the caller describes it. Secrets never go in here.
#[derive(Clone, Debug)]
pub struct AuditRecord {
    pub tenant_id: TenantId,
    pub actor_user_id: Option<UserId>,
    pub action: &'static str,
    pub target_type: &'static str,
    pub target_id: String,
    pub outcome: &'static str,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub request_id: String,
    pub occurred_at: OffsetDateTime,
}

pub async fn append_sqlite(
    tx: &mut Transaction<'static, Sqlite>,
    event: &AuditRecord,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_events (id, tenant_id, occurred_at, actor_user_id, action, target_type,
             target_id, outcome, ip, user_agent, request_id)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(EventId::generate().as_uuid().hyphenated())
    .bind(event.tenant_id.as_uuid().hyphenated())
    .bind(event.occurred_at)
    .bind(event.actor_user_id.map(|u| u.as_uuid().hyphenated()))
    .bind(event.action)
    .bind(event.target_type)
    .bind(&event.target_id)
    .bind(event.outcome)
    .bind(event.ip.map(|ip| ip.to_string()))
    .bind(&event.user_agent)
    .bind(&event.request_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn append_postgres(
    tx: &mut Transaction<'static, Postgres>,
    event: &AuditRecord,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_events (id, tenant_id, occurred_at, actor_user_id, action, target_type,
             target_id, outcome, ip, user_agent, request_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(EventId::generate().as_uuid())
    .bind(event.tenant_id.as_uuid())
    .bind(event.occurred_at)
    .bind(event.actor_user_id.map(|u| u.as_uuid()))
    .bind(event.action)
    .bind(event.target_type)
    .bind(&event.target_id)
    .bind(event.outcome)
    .bind(event.ip.map(|ip| ip.to_string()))
    .bind(&event.user_agent)
    .bind(&event.request_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
