//! The one declarative table of actions, the weakest built-in role allowed each, and who
//! may take it: anyone the role allows, or people only (claims RBAC-1, RBAC-2, KEY-5). It
//! is enforced by the `Permitted<A>` and `PermittedPerson<A>` extractors; with the app's
//! manifest it makes the deployment's `ActionTable`, published by `GET /api/v1/roles` and
//! rendered into docs/rbac.md (a test keeps the file in step).

use super::Role;

/// Implemented by the type-level name of each action (`act::MembersInvite`, …), so a
/// handler states the action it needs in its signature.
pub trait ActionMarker: Send + Sync + 'static {
    const ACTION: Action;
}

/// An action any credential may take when its role and scopes allow: a handler for it
/// takes `Permitted<A>`.
pub trait AnyCredential: ActionMarker {}

/// An action only a person may take, never an API key whatever its role: a handler for it
/// takes `PermittedPerson<A>`, which yields the person, so no handler re-checks.
pub trait PeopleOnly: ActionMarker {}

/// Which marker trait a row's `who` column gives its action.
macro_rules! who_marker {
    (anyone, $marker:ident) => {
        impl super::AnyCredential for $marker {}
    };
    (people, $marker:ident) => {
        impl super::PeopleOnly for $marker {}
    };
}

macro_rules! is_people {
    (anyone) => {
        false
    };
    (people) => {
        true
    };
}

macro_rules! actions {
    ($($marker:ident => $name:literal, $role:ident, $who:ident, $doc:literal;)*) => {
        /// Everything a member may be allowed to do in a tenant.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Action { $($marker,)* }

        /// Every action, in the table's order.
        pub const ACTIONS: &[Action] = &[$(Action::$marker,)*];

        impl Action {
            /// The stable name (`members.invite`).
            pub fn name(self) -> &'static str {
                match self { $(Self::$marker => $name,)* }
            }

            /// The weakest built-in role allowed; every stronger role is allowed too.
            pub fn minimum_role(self) -> Role {
                match self { $(Self::$marker => Role::$role,)* }
            }

            pub fn description(self) -> &'static str {
                match self { $(Self::$marker => $doc,)* }
            }

            pub fn from_name(name: &str) -> Option<Self> {
                match name { $($name => Some(Self::$marker),)* _ => None }
            }

            /// Whether only a person (never an API key) may take this action.
            pub fn people_only(self) -> bool {
                match self { $(Self::$marker => is_people!($who),)* }
            }
        }

        /// Type-level names of the actions, for `Permitted<act::…>`.
        pub mod act {
            $(
                #[doc = $doc]
                pub struct $marker;
                impl super::ActionMarker for $marker {
                    const ACTION: super::Action = super::Action::$marker;
                }
                who_marker!($who, $marker);
            )*
        }
    };
}

// Destructive actions need Manager or above, member management Admin, and billing,
// ownership and deletion Owner (claim RBAC-2). People only: a leaked key must not mint more
// keys, invite people in, or change who owns the tenant or its security.
actions! {
    TenantRead => "tenant.read", Viewer, anyone, "See the tenant the credential acts in: its id, its name and the caller's role (never removed by a custom role or scopes).";
    MembersRead => "members.read", Viewer, anyone, "List the tenant's members and their roles.";
    MembersInvite => "members.invite", Admin, people, "Invite people by email, with at most the inviter's role.";
    MembersUpdateRole => "members.update_role", Admin, anyone, "Change a member's role, never above one's own.";
    MembersRemove => "members.remove", Admin, anyone, "Remove a member; never the last Owner.";
    RolesManage => "roles.manage", Admin, anyone, "Create and delete the tenant's custom roles.";
    ApplicationsManage => "applications.manage", Admin, anyone, "Create and delete applications, the groupings Agents and API keys belong to.";
    TenantUpdateSecurity => "tenant.update_security", Admin, people, "Change the tenant's security policy (MFA for every member).";
    TenantTransferOwnership => "tenant.transfer_ownership", Owner, people, "Make another member an Owner.";
    TenantExport => "tenant.export", Owner, people, "Export everything the tenant holds as one JSON document, with every hash and secret stripped.";
    TenantDelete => "tenant.delete", Owner, people, "Delete the tenant and all its data.";
    BillingManage => "billing.manage", Owner, people, "Manage the tenant's plan and billing.";
    KeysRead => "keys.read", Manager, anyone, "List the tenant's API keys (never their secrets).";
    KeysCreate => "keys.create", Manager, people, "Create and rotate API keys.";
    KeysRevoke => "keys.revoke", Manager, people, "Revoke API keys.";
    AuditRead => "audit.read", Admin, anyone, "Read the tenant's audit log.";
    AuditExport => "audit.export", Admin, anyone, "Export the audit log with its verification trailer.";
    WebhooksManage => "webhooks.manage", Admin, anyone, "Create, change and delete webhook endpoints.";
    SecretsRead => "secrets.read", Member, anyone, "Read the tenant's stored secrets and files.";
    SecretsWrite => "secrets.write", Manager, anyone, "Create and replace stored secrets and files.";
    SecretsDelete => "secrets.delete", Manager, anyone, "Delete stored secrets and files.";
    SecretsReveal => "secrets.reveal", Admin, anyone, "Reveal a stored secret's value, with a reason the audit log keeps.";
    VaultRotateKey => "vault.rotate_key", Admin, anyone, "Give the tenant a new data key: new secrets are sealed by it, and upkeep moves the stored ones onto it.";
}

impl Action {
    /// Whether every member and key may take this action whatever a custom role or scopes
    /// say: seeing which tenant one acts in narrows nothing.
    pub fn always_allowed(self) -> bool {
        self == Action::TenantRead
    }
}

/// What an object hands to whoever holds or uses it: an API key (its role, narrowed by
/// scopes), an invitation (a role), a custom role (its actions). Acting on such an object —
/// creating, rotating, revoking, deleting it — needs the caller to be able to grant all of
/// it (claim RBAC-6, `Grants::may_act_on`): otherwise a Manager could rotate an Admin's
/// key and take its secret.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entitlement {
    pub role: Option<Role>,
    /// Space-separated action names as stored, Palisade's or the app's; None: everything
    /// `role` allows.
    pub actions: Option<Box<str>>,
}

impl Entitlement {
    pub fn role(role: Role) -> Self {
        Self {
            role: Some(role),
            actions: None,
        }
    }

    /// A key's grant: its role, narrowed by its scopes.
    pub fn key(role: Role, scopes: Option<&str>) -> Self {
        Self {
            role: Some(role),
            actions: scopes.map(Box::from),
        }
    }

    /// A custom role's actions, as stored.
    pub fn actions(names: &str) -> Self {
        Self {
            role: None,
            actions: Some(Box::from(names)),
        }
    }

    /// An app role's: its rank and exactly its actions.
    pub fn ranked(rank: Role, names: String) -> Self {
        Self {
            role: Some(rank),
            actions: Some(names.into_boxed_str()),
        }
    }
}

impl Role {
    /// Whether this built-in role may do `action`.
    pub fn may(self, action: Action) -> bool {
        self <= action.minimum_role()
    }
}

/// The action names a custom role may hold (none Owner-only), as the request schema
/// enumerates them.
pub struct CustomRoleActionName;

/// The action names a key's scopes may hold (none for people only).
pub struct KeyScopeName;

/// The names of the manifest's roles. These three schemas list Palisade's own actions and no
/// app role here; the served document lists the deployment's table (`http::openapi::render`).
pub struct AppRoleName;

impl utoipa::PartialSchema for AppRoleName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .into()
    }
}

impl utoipa::ToSchema for AppRoleName {}

fn action_names(
    keep: impl Fn(Action) -> bool,
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    let names: Vec<&str> = ACTIONS
        .iter()
        .copied()
        .filter(|a| keep(*a))
        .map(Action::name)
        .collect();
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(names))
        .into()
}

impl utoipa::PartialSchema for CustomRoleActionName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        action_names(|a| a.minimum_role() != Role::Owner)
    }
}

impl utoipa::ToSchema for CustomRoleActionName {}

impl utoipa::PartialSchema for KeyScopeName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        action_names(|a| !a.people_only())
    }
}

impl utoipa::ToSchema for KeyScopeName {}

#[cfg(test)]
mod tests {
    use super::*;

    // claim: RBAC-1
    #[test]
    fn the_docs_render_the_enforced_table() {
        crate::generated_docs::assert_in_step(
            "rbac.md",
            &super::super::ActionTable::builtin().render_markdown(),
        );
    }

    // claim: RBAC-2
    #[test]
    fn destructive_member_and_owner_actions_need_the_roles_the_policy_names() {
        let at_least = |name: &str, role: Role| {
            let action = ACTIONS.iter().find(|a| a.name() == name).unwrap();
            assert!(action.minimum_role() <= role, "{name}");
        };
        for destructive in [
            "members.remove",
            "keys.revoke",
            "secrets.delete",
            "tenant.delete",
        ] {
            at_least(destructive, Role::Manager);
        }
        for members in ["members.invite", "members.update_role", "members.remove"] {
            at_least(members, Role::Admin);
        }
        for owner in [
            "billing.manage",
            "tenant.transfer_ownership",
            "tenant.delete",
        ] {
            at_least(owner, Role::Owner);
        }
        let names: std::collections::HashSet<_> = ACTIONS.iter().map(|a| a.name()).collect();
        assert_eq!(names.len(), ACTIONS.len(), "names are unique");
    }
}
