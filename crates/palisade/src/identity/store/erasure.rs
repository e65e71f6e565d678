//! A person's erasure (claim OPS-5), in one transaction: every membership and what hangs on
//! it, their data redacted from each chain that holds some (their tenants' and the
//! platform stream), their sessions, factors and tokens ended, and the account left as an
//! id with nothing personal. A crash leaves all of it or none.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::*;
use crate::audit::redaction::ErasedPerson;
use crate::audit::signing::LogSigner;
use crate::audit::{Append, AuditRecord, Redact, PLATFORM_STREAM};
use crate::ids::{TenantId, UserId};
use crate::store::{for_both_backends, membership_lock, Begin, StoreError};
use crate::tenancy::deletion::DeleteTenant;

/// What an erasure removes and records.
pub struct AccountErasure<'a> {
    pub user: UserId,
    pub person: ErasedPerson<'a>,
    /// What the account's email becomes: unique, and under the reserved `.invalid` domain.
    pub erased_email: &'a str,
    /// A hash of a password nobody knows: sign-in takes its usual time and never matches.
    pub password_hash: &'a str,
    /// Each tenant the person belongs to.
    pub tenants: &'a [Leaving],
    /// The platform stream's record of the erasure.
    pub recorded: &'a AuditRecord,
    pub at: OffsetDateTime,
}

/// A tenant the person leaves: as a member (`left` is recorded), or as its Owner and only
/// member, when the tenant is deleted with the account (`deleted` closes its chain).
pub struct Leaving {
    pub tenant: TenantId,
    pub owner: bool,
    pub left: AuditRecord,
    pub deleted: AuditRecord,
}

/// What an erasure did, or why it did nothing.
#[derive(Debug, PartialEq, Eq)]
pub enum Erased {
    /// How many audit events were redacted, and how many tenants deleted with the account.
    Done { redacted: u64, tenants_deleted: u64 },
    /// The person owns a tenant others belong to: ownership must pass first.
    OwnsTenant(TenantId),
}

#[async_trait]
pub trait ErasureStore: Send + Sync {
    async fn erase_account(
        &self,
        erasure: &AccountErasure<'_>,
        signer: &LogSigner,
    ) -> Result<Erased, StoreError>;
}

/// Everything that hangs on a membership or names the person in a tenant.
const LEAVE_TENANT: [&str; 3] = [
    "DELETE FROM relations WHERE tenant_id = $1 AND user_id = $2",
    "DELETE FROM memberships WHERE tenant_id = $1 AND user_id = $2",
    // The invitations that brought them in (or still wait for them) hold their email.
    "DELETE FROM invitations WHERE tenant_id = $1 AND email = $3",
];

for_both_backends! {
    #[async_trait]
    impl ErasureStore for SqlIdentityStore<Pool> {
        async fn erase_account(
            &self,
            erasure: &AccountErasure<'_>,
            signer: &LogSigner,
        ) -> Result<Erased, StoreError> {
            let user = erasure.user;
            let mut tx = self.0.write().await?;
            let (mut redacted, mut tenants_deleted) = (0, 0);
            // Tenants in id order, the platform stream last: each chain's head is locked in
            // the same order by every erasure.
            let mut tenants: Vec<&Leaving> = erasure.tenants.iter().collect();
            tenants.sort_by_key(|leaving| leaving.tenant);
            let mut closed = Vec::new();
            for leaving in tenants {
                let tenant = leaving.tenant;
                // The person's own verified memberships: the system entry, per tenant.
                let scope = TenantScope::for_system(tenant);
                <Pool as Begin>::rebind(&mut tx, scope).await?;
                if leaving.owner {
                    // Nobody joins while the lock is held.
                    <Pool as Begin>::lock_until_commit(&mut tx, membership_lock(tenant)).await?;
                    let members: i64 =
                        sqlx::query_scalar("SELECT count(*) FROM memberships WHERE tenant_id = $1")
                            .bind(tenant)
                            .fetch_one(&mut *tx)
                            .await?;
                    if members > 1 {
                        return Ok(Erased::OwnsTenant(tenant));
                    }
                    closed.push(tx.delete_tenant(scope, &leaving.deleted, signer).await?);
                    tenants_deleted += 1;
                    continue;
                }
                for statement in LEAVE_TENANT {
                    sqlx::query(statement)
                        .bind(tenant)
                        .bind(user)
                        .bind(erasure.person.email)
                        .execute(&mut *tx)
                        .await?;
                }
                let count = tx
                    .redact_person(tenant.as_uuid(), &erasure.person, signer)
                    .await?;
                redacted += count;
                let event = leaving.left.clone().changed("redacted_events", None::<u64>, count);
                tx.append(&event).await?;
            }
            let platform = TenantId::from_uuid(PLATFORM_STREAM);
            <Pool as Begin>::rebind(&mut tx, TenantScope::for_system(platform)).await?;
            let count = tx
                .redact_person(PLATFORM_STREAM, &erasure.person, signer)
                .await?;
            redacted += count;
            sqlx::query(
                "UPDATE sessions SET revoked_at = COALESCE(revoked_at, $2),
                     revoked_reason = COALESCE(revoked_reason, 'erased'), ip = NULL,
                     user_agent = NULL
                 WHERE user_id = $1",
            )
            .bind(user)
            .bind(erasure.at)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE refresh_tokens SET used_at = $2
                 WHERE used_at IS NULL AND session_id IN (SELECT id FROM sessions WHERE user_id = $1)",
            )
            .bind(user)
            .bind(erasure.at)
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE email_tokens SET used_at = $2 WHERE user_id = $1 AND used_at IS NULL")
                .bind(user)
                .bind(erasure.at)
                .execute(&mut *tx)
                .await?;
            for statement in [
                "DELETE FROM recovery_codes WHERE user_id = $1",
                "DELETE FROM totp_factors WHERE user_id = $1",
            ] {
                sqlx::query(statement).bind(user).execute(&mut *tx).await?;
            }
            sqlx::query(
                "UPDATE users SET email = $2, password_hash = $3, email_verified_at = NULL,
                     tokens_valid_after = $4, erased_at = $4
                 WHERE id = $1",
            )
            .bind(user)
            .bind(erasure.erased_email)
            .bind(erasure.password_hash)
            .bind(erasure.at)
            .execute(&mut *tx)
            .await?;
            for event in &closed {
                tx.append(event).await?;
            }
            let recorded = erasure
                .recorded
                .clone()
                .changed("redacted_events", None::<u64>, redacted)
                .changed("tenants_deleted", None::<u64>, tenants_deleted);
            tx.commit_narrowing(&recorded).await?;
            Ok(Erased::Done {
                redacted,
                tenants_deleted,
            })
        }
    }
}
