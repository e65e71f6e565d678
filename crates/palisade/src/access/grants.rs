//! The one permission rule (claims RBAC-1, RBAC-3, RBAC-4, RBAC-6, KEY-5): what a caller may
//! do, from its built-in role, the custom role a person holds, the scopes a key carries and
//! the kind of principal it is; and what it may hand to others.

use std::sync::Arc;

use super::actions::{Action, Entitlement};
use super::caller::PrincipalKind;
use super::role::HeldRole;
use super::table::{ActionId, ActionRow, ActionSet, ActionTable};
use super::Role;
use crate::ids::ApplicationId;

/// Everything that decides whether a caller may take an action.
#[derive(Clone, Debug)]
pub struct Grants {
    role: Role,
    kind: PrincipalKind,
    /// A custom role's or an app role's actions, which replace the built-in role's (claims
    /// RBAC-3, APP-1).
    custom: Option<Arc<ActionSet>>,
    /// A key's scopes, which narrow its role (claim KEY-5).
    scopes: Option<Arc<ActionSet>>,
    /// The deployment's table: what a built-in role allows of the app's actions.
    table: Arc<ActionTable>,
    /// An external member (claim RBAC-5): the app's actions only on assigned resources.
    external: bool,
}

impl Grants {
    /// A signed-in person in `role`, restricted by the custom or app role they hold, if any.
    pub fn person(role: Role, held: &HeldRole, table: Arc<ActionTable>) -> Self {
        Self {
            role,
            kind: PrincipalKind::Member,
            custom: table.replacing(held),
            scopes: None,
            external: table.is_external(held),
            table,
        }
    }

    /// An API key in `role`, narrowed by its scopes; an Agent's when it belongs to an
    /// application (claim RBAC-4).
    pub fn key(
        role: Role,
        application: Option<ApplicationId>,
        scopes: Option<Arc<ActionSet>>,
        table: Arc<ActionTable>,
    ) -> Self {
        Self {
            role,
            kind: match application {
                Some(application) => PrincipalKind::Agent { application },
                None => PrincipalKind::TenantKey,
            },
            custom: None,
            scopes,
            table,
            external: false,
        }
    }

    /// The SCIM provisioning identity: no tenant action at all.
    pub fn scim(table: Arc<ActionTable>) -> Self {
        Self {
            role: Role::Viewer,
            kind: PrincipalKind::Scim,
            custom: None,
            scopes: Some(Arc::default()),
            table,
            external: false,
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn kind(&self) -> PrincipalKind {
        self.kind
    }

    pub fn table(&self) -> &ActionTable {
        &self.table
    }

    /// An external member: acts only on the app's resources assigned to it (claim RBAC-5).
    pub fn is_external(&self) -> bool {
        self.external
    }

    /// Whether the caller may take one of Palisade's own actions.
    pub fn may(&self, action: Action) -> bool {
        self.allows(
            action.into(),
            action.minimum_role(),
            action.people_only(),
            action.always_allowed(),
        )
    }

    /// Whether the caller may take any action of the table, Palisade's or the app's.
    pub fn may_row(&self, row: &ActionRow) -> bool {
        self.allows(
            row.id,
            row.minimum_role,
            row.people_only,
            row.always_allowed(),
        )
    }

    /// The one rule: never for SCIM; always for what narrows nothing; never a people-only
    /// action without a person; else the custom or app role's actions if one is held (an
    /// Owner keeps every action, whatever a stale assignment says), or the built-in
    /// role's, within the key's scopes if any.
    fn allows(&self, id: ActionId, minimum_role: Role, people_only: bool, always: bool) -> bool {
        if self.kind == PrincipalKind::Scim {
            return false;
        }
        if always {
            return true;
        }
        if people_only && self.kind != PrincipalKind::Member {
            return false;
        }
        let by_role = match &self.custom {
            Some(actions) if self.role != Role::Owner => actions.contains(id),
            _ => self.role <= minimum_role,
        };
        by_role
            && self
                .scopes
                .as_ref()
                .is_none_or(|scopes| scopes.contains(id))
    }

    /// Every action of the table the caller may take.
    pub fn allowed(&self) -> impl Iterator<Item = &ActionRow> {
        self.table.rows().iter().filter(|row| self.may_row(row))
    }

    /// Whether the caller may give someone `role`: not above their own rank, and no action
    /// of it beyond their own (claim RBAC-6).
    pub fn may_grant(&self, role: Role) -> bool {
        self.may_act_on(&Entitlement::role(role))
    }

    /// Whether the caller may create, change or end an object that hands out `entitlement`
    /// (claim RBAC-6): not above their own rank, and no action of it beyond their own.
    pub fn may_act_on(&self, entitlement: &Entitlement) -> bool {
        let grants_role = |role: Role| {
            role >= self.role && self.table.allowed_to(role).all(|row| self.may_row(row))
        };
        entitlement.role.is_none_or(grants_role)
            && entitlement.actions.as_deref().is_none_or(|names| {
                self.table
                    .parse_set(names)
                    .iter()
                    .all(|id| self.may_row(self.table.row(id)))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::ACTIONS;

    fn set<const N: usize>(actions: [Action; N]) -> Arc<ActionSet> {
        Arc::new(actions.into_iter().collect())
    }

    // claim: RBAC-4
    #[test]
    fn a_scim_identity_may_do_no_tenant_action_and_an_agent_only_its_scopes() {
        let scim = Grants::scim(ActionTable::builtin());
        assert!(ACTIONS.iter().all(|a| !scim.may(*a)));
        let agent = Grants::key(
            Role::Owner,
            Some(ApplicationId::generate()),
            Some(set([Action::KeysRead, Action::MembersInvite])),
            ActionTable::builtin(),
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
        let custom = HeldRole::Custom("audit.read".into());
        let member = Grants::person(Role::Member, &custom, ActionTable::builtin());
        assert!(member.may(Action::AuditRead));
        assert!(
            !member.may(Action::SecretsRead),
            "the role's own actions go"
        );
        assert!(member.may(Action::TenantRead), "what narrows nothing stays");
        let owner = Grants::person(Role::Owner, &custom, ActionTable::builtin());
        assert!(owner.may(Action::TenantDelete));
    }

    // claim: RBAC-6
    #[test]
    fn nobody_grants_a_role_above_their_own_or_beyond_their_custom_role() {
        let admin = Grants::person(Role::Admin, &HeldRole::Builtin, ActionTable::builtin());
        assert!(admin.may_grant(Role::Admin));
        assert!(!admin.may_grant(Role::Owner));
        let narrowed = Grants::person(
            Role::Admin,
            &HeldRole::Custom("members.read".into()),
            ActionTable::builtin(),
        );
        assert!(
            narrowed.may_grant(Role::Viewer),
            "a Viewer reads members only"
        );
        assert!(!narrowed.may_grant(Role::Member), "Member reads secrets");
    }
}
