//! An Owner deletes the tenant (claim OPS-5; action `tenant.delete`), in one transaction:
//! every row the tenant holds is deleted, its data keys with them — what the vault sealed
//! under them, backups included, can no longer be opened (crypto-shredding) — its sessions
//! end, and its audit chain is closed by a signed anchor at its last event, `tenant.deleted`,
//! with every event up to it deleted. The tenant's row stays as a nameless, suspended
//! tombstone (sessions and the chain's head name it), and the platform stream records the
//! deletion with the anchor, so the end of the chain stays provable.

use time::OffsetDateTime;

use super::members::{Tenancy, TenancyError};
use crate::access::TenantScope;
use crate::audit::signing::LogSigner;
use crate::audit::store::{micros, Chain};
use crate::audit::{Append, AuditRecord, Forget};
use crate::identity::service::Origin;
use crate::identity::sessions::Principal;
use crate::store::{for_both_backends, StoreError};

/// Every table with a tenant's rows, children before parents (a webhook endpoint's or
/// message's deliveries, subscriptions and signing secrets go by their foreign keys'
/// cascade). A test reads the schema and fails when a table with a `tenant_id` is missing
/// (tests/api/privacy.rs).
const FORGET_TENANT: [&str; 15] = [
    "DELETE FROM webhook_attempts WHERE tenant_id = $1",
    "DELETE FROM webhook_inbound_events WHERE tenant_id = $1",
    "DELETE FROM webhook_messages WHERE tenant_id = $1",
    "DELETE FROM webhook_endpoints WHERE tenant_id = $1",
    "DELETE FROM secret_versions WHERE tenant_id = $1",
    "DELETE FROM secrets WHERE tenant_id = $1",
    "DELETE FROM tenant_data_keys WHERE tenant_id = $1",
    "DELETE FROM relations WHERE tenant_id = $1",
    "DELETE FROM relation_revisions WHERE tenant_id = $1",
    "DELETE FROM tenant_tokens WHERE tenant_id = $1",
    "DELETE FROM api_keys WHERE tenant_id = $1",
    "DELETE FROM invitations WHERE tenant_id = $1",
    "DELETE FROM memberships WHERE tenant_id = $1",
    "DELETE FROM custom_roles WHERE tenant_id = $1",
    "DELETE FROM applications WHERE tenant_id = $1",
];

/// Deletes a tenant inside the caller's transaction, bound to it: `deleted` is appended to
/// the tenant's chain as its last event. Returns the platform stream's record of the
/// deletion, for the caller to append: `deleted` again, with the closing anchor.
pub(crate) trait DeleteTenant {
    async fn delete_tenant(
        &mut self,
        scope: TenantScope,
        deleted: &AuditRecord,
        signer: &LogSigner,
    ) -> Result<AuditRecord, StoreError>;
}

for_both_backends! {
    impl DeleteTenant for sqlx::Transaction<'static, Db> {
        async fn delete_tenant(
            &mut self,
            scope: TenantScope,
            deleted: &AuditRecord,
            signer: &LogSigner,
        ) -> Result<AuditRecord, StoreError> {
            let tenant = scope.tenant();
            let at = deleted.occurred_at;
            for statement in FORGET_TENANT {
                sqlx::query(statement).bind(tenant).execute(&mut **self).await?;
            }
            sqlx::query(
                "UPDATE sessions SET revoked_at = COALESCE(revoked_at, $2),
                     revoked_reason = COALESCE(revoked_reason, 'tenant_deleted')
                 WHERE tenant_id = $1",
            )
            .bind(tenant)
            .bind(at)
            .execute(&mut **self)
            .await?;
            sqlx::query(
                "UPDATE tenants SET name = '', deleted_at = $2,
                     suspended_at = COALESCE(suspended_at, $2)
                 WHERE id = $1",
            )
            .bind(tenant)
            .bind(at)
            .execute(&mut **self)
            .await?;
            self.append(deleted).await?;
            let (seq, hash) = self
                .forget_chain(Chain::of(scope), signer, micros(at))
                .await?
                .ok_or_else(|| StoreError::Other("the deletion's own event has no head".into()))?;
            let mut on_platform = deleted.clone();
            on_platform.tenant_id = None;
            Ok(on_platform.changed(
                "closing_anchor",
                serde_json::Value::Null,
                serde_json::json!({"seq": seq, "hash": hex::encode(hash)}),
            ))
        }
    }
}

impl Tenancy {
    /// Deletes the Owner's tenant and everything it holds.
    pub async fn delete_tenant(
        &self,
        principal: &Principal,
        origin: &Origin,
        signer: &LogSigner,
    ) -> Result<(), TenancyError> {
        let now: OffsetDateTime = self.clock.now();
        let deleted = origin
            .event("tenant.deleted", "success", now)
            .in_tenant(principal.tenant())
            .by(principal)
            .on("tenant", principal.tenant());
        self.store
            .delete_tenant(principal.scope(), &deleted, signer)
            .await?;
        self.changed();
        Ok(())
    }
}
