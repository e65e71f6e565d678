//! The one permission rule (claims RBAC-1, RBAC-3, RBAC-4, RBAC-6, KEY-5): what a caller may
//! do, from its built-in role, the custom role a person holds, the scopes a key carries and
//! the kind of principal it is; and what it may hand to others.

use std::sync::Arc;

use super::actions::{Action, Entitlement};
use super::caller::PrincipalKind;
use super::Role;
use crate::ids::ApplicationId;

/// Everything that decides whether a caller may take an action.
#[derive(Clone, Debug)]
pub struct Grants {
    role: Role,
    kind: PrincipalKind,
    /// A custom role's actions, which replace the built-in role's (claim RBAC-3).
    custom: Option<Arc<[Action]>>,
    /// A key's scopes, which narrow its role (claim KEY-5).
    scopes: Option<Arc<[Action]>>,
}

impl Grants {
    /// A signed-in person in `role`, restricted by a custom role's actions if they hold one.
    pub fn person(role: Role, custom: Option<Arc<[Action]>>) -> Self {
        Self {
            role,
            kind: PrincipalKind::Member,
            custom,
            scopes: None,
        }
    }

    /// An API key in `role`, narrowed by its scopes; an Agent's when it belongs to an
    /// application (claim RBAC-4).
    pub fn key(
        role: Role,
        application: Option<ApplicationId>,
        scopes: Option<Arc<[Action]>>,
    ) -> Self {
        Self {
            role,
            kind: match application {
                Some(application) => PrincipalKind::Agent { application },
                None => PrincipalKind::TenantKey,
            },
            custom: None,
            scopes,
        }
    }

    /// The SCIM provisioning identity: no tenant action at all.
    pub fn scim() -> Self {
        Self {
            role: Role::Viewer,
            kind: PrincipalKind::Scim,
            custom: None,
            scopes: Some(Arc::from([])),
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn kind(&self) -> PrincipalKind {
        self.kind
    }

    /// Whether the caller may take `action`: never for SCIM; always for what narrows
    /// nothing; never a people-only action without a person; else the custom role's
    /// actions if one is held (an Owner keeps every action, whatever a stale assignment
    /// says), or the built-in role's, within the key's scopes if any.
    pub fn may(&self, action: Action) -> bool {
        if self.kind == PrincipalKind::Scim {
            return false;
        }
        if action.always_allowed() {
            return true;
        }
        if action.people_only() && self.kind != PrincipalKind::Member {
            return false;
        }
        let by_role = match &self.custom {
            Some(actions) if self.role != Role::Owner => actions.contains(&action),
            _ => self.role.may(action),
        };
        by_role
            && self
                .scopes
                .as_ref()
                .is_none_or(|scopes| scopes.contains(&action))
    }

    /// Whether the caller may give someone `role`: not above their own rank, and no action
    /// of it beyond their own (claim RBAC-6).
    pub fn may_grant(&self, role: Role) -> bool {
        self.may_act_on(&Entitlement::role(role))
    }

    /// Whether the caller may create, change or end an object that hands out `entitlement`
    /// (claim RBAC-6).
    pub fn may_act_on(&self, entitlement: &Entitlement) -> bool {
        entitlement.within(self.role, |action| self.may(action))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::ACTIONS;

    // claim: RBAC-4
    #[test]
    fn a_scim_identity_may_do_no_tenant_action_and_an_agent_only_its_scopes() {
        let scim = Grants::scim();
        assert!(ACTIONS.iter().all(|a| !scim.may(*a)));
        let agent = Grants::key(
            Role::Owner,
            Some(ApplicationId::generate()),
            Some(Arc::from([Action::KeysRead, Action::MembersInvite])),
        );
        assert!(agent.may(Action::KeysRead));
        assert!(
            !agent.may(Action::SecretsRead),
            "only its scopes, not its role's"
        );
        assert!(
            !agent.may(Action::MembersInvite),
            "never a people-only action"
        );
    }

    // claim: RBAC-3
    #[test]
    fn a_custom_role_replaces_the_built_in_role_except_for_an_owner() {
        let custom = Some(Arc::from([Action::AuditRead]));
        let member = Grants::person(Role::Member, custom.clone());
        assert!(member.may(Action::AuditRead));
        assert!(
            !member.may(Action::SecretsRead),
            "the role's own actions go"
        );
        assert!(member.may(Action::TenantRead), "what narrows nothing stays");
        let owner = Grants::person(Role::Owner, custom);
        assert!(owner.may(Action::TenantDelete));
    }

    // claim: RBAC-6
    #[test]
    fn nobody_grants_a_role_above_their_own_or_beyond_their_custom_role() {
        let admin = Grants::person(Role::Admin, None);
        assert!(admin.may_grant(Role::Admin));
        assert!(!admin.may_grant(Role::Owner));
        let narrowed = Grants::person(Role::Admin, Some(Arc::from([Action::MembersRead])));
        assert!(
            narrowed.may_grant(Role::Viewer),
            "a Viewer reads members only"
        );
        assert!(!narrowed.may_grant(Role::Member), "Member reads secrets");
    }
}
