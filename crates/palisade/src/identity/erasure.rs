//! A person erases their account (claim OPS-5). The password is asked again, as for every
//! change a stolen access token alone must not make. A tenant is never left without an
//! Owner: one others belong to must pass to someone first (or be deleted), while one whose
//! only member the person is (the tenant every sign-up makes) is deleted with the account.
//! What remains is an id, so the keys and events that name it still read, and nothing
//! personal: the email becomes `usr_…@erased.invalid`, the password a hash nobody knows,
//! and the person's address, user agent and email leave every event of their tenants and
//! the platform stream, each such event signed as redacted (`audit::redaction`), so every
//! chain still verifies.

use secrecy::SecretString;

use super::service::{Identity, IdentityError, Origin};
use super::sessions::Principal;
use super::store::{AccountErasure, Erased, Leaving};
use crate::access::Role;
use crate::audit::redaction::ErasedPerson;
use crate::audit::signing::LogSigner;
use crate::audit::AuditRecord;

/// Where erased accounts' addresses live: `.invalid` is reserved (RFC 2606), so no mail
/// is ever sent to one and no person can own one.
const ERASED_DOMAIN: &str = "erased.invalid";

impl Identity {
    /// Erases the caller's account, and each tenant they are the only member of.
    pub async fn erase_account(
        &self,
        principal: &Principal,
        password: SecretString,
        origin: &Origin,
        signer: &LogSigner,
    ) -> Result<Erased, IdentityError> {
        let attempt = self.check_password(principal, password, origin).await?;
        let outcome = self.erase(principal, origin, signer).await;
        self.settle(&attempt, &outcome, false).await;
        if outcome.is_ok() {
            self.principals.changed();
        }
        outcome
    }

    async fn erase(
        &self,
        principal: &Principal,
        origin: &Origin,
        signer: &LogSigner,
    ) -> Result<Erased, IdentityError> {
        let memberships = self.store.memberships(principal.user).await?;
        let now = self.now();
        // The records of the erasure carry no address or user agent: they would be the
        // very data being erased.
        let record = |action: &'static str| {
            AuditRecord::new(
                action,
                "success",
                now,
                origin.request_id.clone(),
                None,
                None,
            )
            .by(principal)
        };
        let tenants: Vec<Leaving> = memberships
            .iter()
            .map(|m| Leaving {
                tenant: m.tenant_id,
                owner: m.role == Role::Owner,
                left: record("members.erased")
                    .in_tenant(m.tenant_id)
                    .on("user", principal.user),
                deleted: record("tenant.deleted")
                    .in_tenant(m.tenant_id)
                    .on("tenant", m.tenant_id),
            })
            .collect();
        let actor_id = principal.user.to_string();
        let erased_email = format!("{actor_id}@{ERASED_DOMAIN}");
        let erasure = AccountErasure {
            user: principal.user,
            person: ErasedPerson {
                actor_id: &actor_id,
                email: &principal.email,
            },
            erased_email: &erased_email,
            password_hash: &self.decoy_hash,
            tenants: &tenants,
            recorded: &record("account.erased").on("user", principal.user),
            at: now,
        };
        match self.store.erase_account(&erasure, signer).await? {
            Erased::OwnsTenant(_) => Err(IdentityError::Conflict(
                "an Owner of a tenant others belong to must transfer ownership (or delete the tenant) before erasing the account",
            )),
            done => Ok(done),
        }
    }
}
