//! Live authorization decisions for the app beside Palisade (claim APP-3), in the shapes of
//! OpenID AuthZEN 1.0 (`routes.rs`). The caller is the app's service credential; the
//! subject is proven by its own credential — a user's access token or a customer's API key
//! — so the tenant always comes from a credential (claim TEN-1), and every decision reads
//! the subject as the very next request would: a revoked session or key, a role change, a
//! removal, a suspension or the tenant's MFA policy applies at once.
//!
//! Palisade's own actions are decided on the subject's tenant, the app's (its manifest) on
//! the app's resources, each named with the tenant it belongs to; an external member acts
//! only on the resources assigned to it (claim RBAC-5, `relations`).

pub mod routes;

use crate::access::{ActionRow, Caller, PrincipalKind, Subject};
use crate::identity::service::{Identity, IdentityError};
use crate::ids::TenantId;
use crate::keys::ApiKeys;
use crate::relations::{Relations, Revision};
use crate::store::StoreError;

/// How the subject proves who it is.
pub enum Proof<'a> {
    /// A user's access token (`subject.type = "user"`, `subject.id = "usr_…"`).
    User { id: &'a str, access_token: &'a str },
    /// A customer's API key (`subject.type = "api_key"`, `subject.id = "key_…"`).
    ApiKey { id: &'a str, api_key: &'a str },
}

/// Why a decision is a deny; the name is the AuthZEN context's `reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denial {
    /// The credential is malformed, unknown, expired, revoked or of an ended session. No
    /// finer reason is given: the end user's credential stays an oracle for nobody.
    InvalidCredential,
    /// The credential is valid but names another subject than `subject.id`.
    SubjectMismatch,
    TenantSuspended,
    /// The tenant requires two-factor authentication and the session has none.
    MfaRequired,
    /// The resource lies in a tenant the credential does not act in.
    NotAMember,
    /// The role (custom role, key scopes) does not allow the action.
    Role,
    /// An external member, and the resource is not assigned to it (claim RBAC-5).
    NotAssigned,
    /// The question asked for relations at least as fresh as a revision this tenant has
    /// not reached (a token of another tenant or deployment).
    UnknownRevision,
}

impl Denial {
    pub fn reason(self) -> &'static str {
        match self {
            Denial::InvalidCredential => "invalid_credential",
            Denial::SubjectMismatch => "subject_mismatch",
            Denial::TenantSuspended => "tenant_suspended",
            Denial::MfaRequired => "mfa_required",
            Denial::NotAMember => "not_a_member",
            Denial::Role => "role",
            Denial::NotAssigned => "not_assigned",
            Denial::UnknownRevision => "unknown_revision",
        }
    }
}

/// Decides for one request; borrows the services that verify subjects and hold relations.
pub struct Decider<'a> {
    pub identity: &'a Identity,
    pub keys: &'a ApiKeys,
    pub relations: &'a Relations,
}

/// The resource a question is about: the tenant it belongs to and, for the app's, its id.
pub struct Target<'a> {
    pub tenant: TenantId,
    pub id: &'a str,
    /// The relations must be at least this fresh.
    pub fresh: Option<Revision>,
}

impl Decider<'_> {
    /// The subject as a tenant caller, or why it cannot act at all. Only a failure to reach
    /// the database is an error.
    pub async fn subject(&self, proof: &Proof<'_>) -> Result<Result<Caller, Denial>, StoreError> {
        match proof {
            Proof::User { id, access_token } => {
                let principal = match self.identity.authenticate(access_token).await {
                    Ok(principal) => principal,
                    Err(error) => return denial_of(error),
                };
                if principal.kind() != PrincipalKind::Member {
                    return Ok(Err(Denial::InvalidCredential));
                }
                if id.parse() != Ok(principal.user()) {
                    return Ok(Err(Denial::SubjectMismatch));
                }
                if principal.mfa_pending() {
                    return Ok(Err(Denial::MfaRequired));
                }
                Ok(Ok(principal.caller()))
            }
            Proof::ApiKey { id, api_key } => {
                let key = match self.keys.authenticate(api_key).await {
                    Ok(key) => key,
                    Err(error) => return denial_of(error),
                };
                if id.parse() != Ok(key.id()) {
                    return Ok(Err(Denial::SubjectMismatch));
                }
                Ok(Ok(key.caller()))
            }
        }
    }
}

impl Decider<'_> {
    /// Whether `caller` may take `action` on `target`: in its tenant, allowed by its role,
    /// and — for an external member and an app action — on a resource assigned to it. Only
    /// a failure to reach the database is an error.
    pub async fn decide(
        &self,
        caller: &Caller,
        action: &ActionRow,
        target: &Target<'_>,
    ) -> Result<Result<(), Denial>, StoreError> {
        if caller.tenant() != target.tenant {
            return Ok(Err(Denial::NotAMember));
        }
        if !caller.may_row(action) {
            return Ok(Err(Denial::Role));
        }
        if !self.fresh_enough(caller, target.fresh).await? {
            return Ok(Err(Denial::UnknownRevision));
        }
        if action.is_app() && caller.grants().is_external() {
            let Subject::Person { user, .. } = caller.subject() else {
                return Ok(Err(Denial::NotAssigned));
            };
            let assigned = self
                .relations
                .related(caller.scope(), user, &action.resource_type, target.id)
                .await?;
            if !assigned {
                return Ok(Err(Denial::NotAssigned));
            }
        }
        Ok(Ok(()))
    }

    /// Whether the subject's tenant has reached the revision a question asks for. Every
    /// decision reads committed relations, so a revision a write of this tenant answered
    /// is always reached; one it never answered is not.
    pub async fn fresh_enough(
        &self,
        caller: &Caller,
        fresh: Option<Revision>,
    ) -> Result<bool, StoreError> {
        match fresh {
            None => Ok(true),
            Some(fresh) => Ok(self.relations.revision(caller.scope()).await? >= fresh),
        }
    }
}

/// A refused credential is a deny; a database that cannot answer is an error.
fn denial_of(error: IdentityError) -> Result<Result<Caller, Denial>, StoreError> {
    match error {
        IdentityError::TenantSuspended => Ok(Err(Denial::TenantSuspended)),
        IdentityError::Store(store) => Err(store),
        other => {
            tracing::debug!(error = %other, "subject credential refused");
            Ok(Err(Denial::InvalidCredential))
        }
    }
}
