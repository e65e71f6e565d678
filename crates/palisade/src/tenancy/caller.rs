//! Who acts in a tenant: a signed-in member, or an API key (claims RBAC-1, KEY-5). Tenant
//! actions take a [`Caller`]; what only a person may do takes a session's `Principal`.

use crate::audit::{Acting, Actor};
use crate::identity::sessions::{Principal, PrincipalKind, TenantScope};
use crate::ids::{TenantId, UserId};
use crate::keys::KeyPrincipal;
use crate::tenancy::actions::{Action, Grant};
use crate::tenancy::Role;

#[derive(Clone, Debug)]
pub enum Caller {
    Member(Principal),
    Key(KeyPrincipal),
}

impl Caller {
    pub fn scope(&self) -> TenantScope {
        match self {
            Caller::Member(principal) => principal.scope(),
            Caller::Key(key) => key.scope(),
        }
    }

    pub fn tenant(&self) -> TenantId {
        self.scope().tenant()
    }

    pub fn tenant_name(&self) -> &str {
        match self {
            Caller::Member(principal) => principal.tenant_name(),
            Caller::Key(key) => key.tenant_name(),
        }
    }

    pub fn role(&self) -> Role {
        match self {
            Caller::Member(principal) => principal.role(),
            Caller::Key(key) => key.role(),
        }
    }

    pub fn kind(&self) -> PrincipalKind {
        match self {
            Caller::Member(principal) => principal.kind(),
            Caller::Key(key) => key.kind(),
        }
    }

    /// Who the audit trail names: the person, or the key's id.
    pub fn actor(&self) -> Actor {
        match self {
            Caller::Member(principal) => Actor::User(principal.user()),
            Caller::Key(key) => Actor::ApiKey(key.id()),
        }
    }

    /// Whether the caller is this person (a key is nobody).
    pub fn is_user(&self, user: UserId) -> bool {
        matches!(self, Caller::Member(principal) if principal.user() == user)
    }

    /// The session's principal, when a person acts.
    pub fn member(&self) -> Option<&Principal> {
        match self {
            Caller::Member(principal) => Some(principal),
            Caller::Key(_) => None,
        }
    }

    pub fn may(&self, action: Action) -> bool {
        match self {
            Caller::Member(principal) => principal.may(action),
            Caller::Key(key) => key.may(action),
        }
    }

    /// Whether the caller may give someone `role`: not above their own rank, and no action
    /// of it beyond their own (claim RBAC-6).
    pub fn may_grant(&self, role: Role) -> bool {
        self.may_act_on(&Grant::role(role))
    }

    /// Whether the caller may create, change or end an object that hands out `grant`
    /// (claim RBAC-6).
    pub fn may_act_on(&self, grant: &Grant) -> bool {
        grant.within(self.role(), |action| self.may(action))
    }
}

/// The audit trail names the person or the key, in the role it acted with.
impl From<&Caller> for Acting {
    fn from(caller: &Caller) -> Self {
        Acting::Principal(caller.actor(), caller.role().as_str())
    }
}
