//! Who acts in a tenant: the kind of principal, the tenant its credential names, and the
//! [`Caller`] every tenant action takes. Identity and keys build callers from the
//! credentials they verify; nothing here verifies anything.

use std::sync::Arc;

use super::grants::Grants;
use super::Role;
use crate::ids::{ApiKeyId, ApplicationId, SessionId, TenantId, UserId};

/// What kind of identity a request acts as (claim RBAC-4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrincipalKind {
    /// A person, signed in with a session.
    Member,
    /// A service identity acting only through API keys scoped to one application; it never
    /// signs in and has no session routes.
    Agent { application: ApplicationId },
    /// An API key of the whole tenant, bound to no application: machine access bounded by
    /// its role and scopes, never a session.
    TenantKey,
    /// The SCIM provisioning identity: it may call only `/scim/v2/*`, no tenant action.
    Scim,
}

/// A tenant as a verified credential names it (claim TEN-2). Tenant-data stores take one,
/// so they cannot be handed a tenant from a request. It is made only where a credential
/// has just been verified, and by the named entries for work no request asks for; a tidy
/// test keeps the list of places that make one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TenantScope(TenantId);

impl TenantScope {
    /// The tenant a session or API key names, once the credential is verified.
    pub fn of_verified_credential(tenant: TenantId) -> Self {
        TenantScope(tenant)
    }

    /// Work on a tenant that no tenant credential names: background upkeep, operator
    /// commands, sign-up and sign-in, and an invitation's acceptance (its token is the
    /// proof). Each use says which it is.
    pub fn for_system(tenant: TenantId) -> Self {
        TenantScope(tenant)
    }

    /// A tenant the app's backend names (its resources' relations, a tenant token), once
    /// its service credential is verified: the deployment's most trusted caller, above any one
    /// tenant. Every user it relates must be a member of this tenant.
    pub fn named_by_service(tenant: TenantId) -> Self {
        TenantScope(tenant)
    }

    pub fn tenant(self) -> TenantId {
        self.0
    }
}

/// The person or key behind a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    Person { user: UserId, session: SessionId },
    Key { id: ApiKeyId },
}

/// Who acts in a tenant and what they may do (claims RBAC-1, KEY-5): a plain value that a
/// verified session (`Principal::caller`) or key (`KeyPrincipal::caller`) builds.
#[derive(Clone, Debug)]
pub struct Caller {
    scope: TenantScope,
    tenant_name: Arc<str>,
    subject: Subject,
    grants: Grants,
}

impl Caller {
    pub fn new(
        scope: TenantScope,
        tenant_name: Arc<str>,
        subject: Subject,
        grants: Grants,
    ) -> Self {
        Self {
            scope,
            tenant_name,
            subject,
            grants,
        }
    }

    pub fn scope(&self) -> TenantScope {
        self.scope
    }

    pub fn tenant(&self) -> TenantId {
        self.scope.tenant()
    }

    pub fn tenant_name(&self) -> &str {
        &self.tenant_name
    }

    pub fn subject(&self) -> Subject {
        self.subject
    }

    pub fn grants(&self) -> &Grants {
        &self.grants
    }

    pub fn role(&self) -> Role {
        self.grants.role()
    }

    pub fn kind(&self) -> PrincipalKind {
        self.grants.kind()
    }

    /// Whether the caller is this person (a key is nobody).
    pub fn is_user(&self, user: UserId) -> bool {
        matches!(self.subject, Subject::Person { user: own, .. } if own == user)
    }

    pub fn may(&self, action: super::Action) -> bool {
        self.grants.may(action)
    }

    pub fn may_row(&self, row: &super::ActionRow) -> bool {
        self.grants.may_row(row)
    }

    pub fn may_grant(&self, role: Role) -> bool {
        self.grants.may_grant(role)
    }

    pub fn may_act_on(&self, entitlement: &super::Entitlement) -> bool {
        self.grants.may_act_on(entitlement)
    }
}
