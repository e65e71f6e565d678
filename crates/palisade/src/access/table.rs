//! The one action table a deployment enforces (claims RBAC-1, APP-1): Palisade's own
//! actions, then the app's from its manifest, each with its weakest built-in role and who
//! may take it; the app's resource types and its deployment-wide roles. Built once at
//! start-up and shared; sets of actions (a custom role's, a key's scopes, an app role's)
//! are bit sets over its rows.

use std::collections::HashMap;
use std::sync::Arc;

use super::actions::{Action, ACTIONS};
use super::role::HeldRole;
use super::Role;

/// A row of the table: Palisade's actions first, in their table's order, then the app's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ActionId(u16);

/// The most rows a table holds (Palisade's and the app's).
pub const MAX_ROWS: usize = 1024;

impl ActionId {
    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    /// The action's own row when it is one of Palisade's.
    pub fn own(self) -> Option<Action> {
        ACTIONS.get(self.index()).copied()
    }
}

impl From<Action> for ActionId {
    fn from(action: Action) -> Self {
        // The enum's order is the table's (`ACTIONS` lists every variant in order).
        ActionId(action as u16)
    }
}

/// What the permission rule needs to know of a row.
#[derive(Clone, Debug)]
pub struct ActionRow {
    pub id: ActionId,
    pub name: Arc<str>,
    pub description: Arc<str>,
    pub minimum_role: Role,
    pub people_only: bool,
    /// Declared destructive by the manifest (Palisade's own are marked by their role).
    pub destructive: bool,
    /// The resource type it applies to: `tenant` for Palisade's own.
    pub resource_type: Arc<str>,
}

impl ActionRow {
    /// Whether the built-in `role` allows it: the row's weakest role or a stronger one.
    pub fn allowed_to(&self, role: Role) -> bool {
        role <= self.minimum_role
    }

    /// Whether every member and key may take it, whatever a custom role or scopes say.
    pub fn always_allowed(&self) -> bool {
        self.own().is_some_and(Action::always_allowed)
    }

    pub fn own(&self) -> Option<Action> {
        self.id.own()
    }

    pub fn is_app(&self) -> bool {
        self.own().is_none()
    }
}

/// A resource type the app declares, with the relations a subject may have to one.
#[derive(Clone, Debug)]
pub struct ResourceType {
    pub name: Arc<str>,
    pub description: Arc<str>,
    pub relations: Vec<Arc<str>>,
}

/// A deployment-wide role the manifest declares beyond the five built-in ones: ranked as a
/// built-in role for the no-escalation rules, allowed exactly its actions (as a custom role
/// is).
#[derive(Clone, Debug)]
pub struct AppRole {
    pub name: Arc<str>,
    pub title: Arc<str>,
    pub description: Arc<str>,
    pub rank: Role,
    /// Held by people outside the organization: only the app's actions, and only on the
    /// resources assigned to them (claim RBAC-5).
    pub external: bool,
    pub actions: Arc<ActionSet>,
}

/// A set of rows of one table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ActionSet {
    words: Box<[u64]>,
}

impl ActionSet {
    pub fn contains(&self, id: ActionId) -> bool {
        let (word, bit) = (id.index() / 64, id.index() % 64);
        self.words.get(word).is_some_and(|w| w & (1 << bit) != 0)
    }

    pub fn insert(&mut self, id: ActionId) {
        let (word, bit) = (id.index() / 64, id.index() % 64);
        if self.words.len() <= word {
            let mut words = self.words.to_vec();
            words.resize(word + 1, 0);
            self.words = words.into_boxed_slice();
        }
        self.words[word] |= 1 << bit;
    }

    pub fn extend(&mut self, other: &ActionSet) {
        for id in other.iter() {
            self.insert(id);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|w| *w == 0)
    }

    pub fn iter(&self) -> impl Iterator<Item = ActionId> + '_ {
        self.words.iter().enumerate().flat_map(|(word, bits)| {
            (0..64)
                .filter(move |bit| bits & (1u64 << bit) != 0)
                .map(move |bit| ActionId((word * 64 + bit) as u16))
        })
    }
}

impl FromIterator<ActionId> for ActionSet {
    fn from_iter<I: IntoIterator<Item = ActionId>>(ids: I) -> Self {
        let mut set = ActionSet::default();
        for id in ids {
            set.insert(id);
        }
        set
    }
}

impl FromIterator<Action> for ActionSet {
    fn from_iter<I: IntoIterator<Item = Action>>(actions: I) -> Self {
        actions.into_iter().map(ActionId::from).collect()
    }
}

/// The table: every row, found by name, and the app's resource types and roles.
#[derive(Debug)]
pub struct ActionTable {
    rows: Vec<ActionRow>,
    by_name: HashMap<Arc<str>, ActionId>,
    resource_types: Vec<ResourceType>,
    roles: Vec<AppRole>,
    /// The app's webhook event types (its manifest's `[[events]]`).
    events: Vec<super::events::AppEvent>,
}

/// Palisade's own actions apply to this resource type.
pub const TENANT_RESOURCE: &str = "tenant";

impl ActionTable {
    /// Palisade's own actions alone: the table of a deployment without a manifest.
    pub fn builtin() -> Arc<Self> {
        Arc::new(Self::with_own_rows())
    }

    fn with_own_rows() -> Self {
        let tenant: Arc<str> = Arc::from(TENANT_RESOURCE);
        let rows: Vec<ActionRow> = ACTIONS
            .iter()
            .map(|action| ActionRow {
                id: ActionId::from(*action),
                name: Arc::from(action.name()),
                description: Arc::from(action.description()),
                minimum_role: action.minimum_role(),
                people_only: action.people_only(),
                destructive: false,
                resource_type: tenant.clone(),
            })
            .collect();
        let by_name = rows.iter().map(|row| (row.name.clone(), row.id)).collect();
        Self {
            rows,
            by_name,
            resource_types: Vec::new(),
            roles: Vec::new(),
            events: Vec::new(),
        }
    }

    /// The built-in table, to which `manifest::load` appends what it has validated.
    pub(super) fn for_manifest() -> Self {
        Self::with_own_rows()
    }

    /// Appends an app action (its `id` is assigned here) and returns its row's id.
    pub(super) fn push_action(&mut self, mut row: ActionRow) -> ActionId {
        let id = ActionId(self.rows.len() as u16);
        row.id = id;
        self.by_name.insert(row.name.clone(), id);
        self.rows.push(row);
        id
    }

    pub(super) fn push_resource_type(&mut self, resource_type: ResourceType) {
        self.resource_types.push(resource_type);
    }

    pub(super) fn push_event(&mut self, event: super::events::AppEvent) {
        self.events.push(event);
    }

    /// The app's event types, in the manifest's order.
    pub fn app_events(&self) -> &[super::events::AppEvent] {
        &self.events
    }

    /// Whether an endpoint may subscribe to `name` and a message may carry it: one of
    /// Palisade's event types or the manifest's.
    pub fn is_event_type(&self, name: &str) -> bool {
        super::events::own_event(name).is_some() || self.is_app_event(name)
    }

    /// Whether the manifest declares `name`: what the app may send itself.
    pub fn is_app_event(&self, name: &str) -> bool {
        self.events.iter().any(|event| &*event.name == name)
    }

    pub(super) fn push_role(&mut self, role: AppRole) {
        self.roles.push(role);
    }

    pub fn rows(&self) -> &[ActionRow] {
        &self.rows
    }

    pub fn row(&self, id: ActionId) -> &ActionRow {
        &self.rows[id.index()]
    }

    pub fn find(&self, name: &str) -> Option<&ActionRow> {
        self.by_name.get(name).map(|id| self.row(*id))
    }

    pub fn resource_types(&self) -> &[ResourceType] {
        &self.resource_types
    }

    pub fn resource_type(&self, name: &str) -> Option<&ResourceType> {
        self.resource_types.iter().find(|t| &*t.name == name)
    }

    pub fn roles(&self) -> &[AppRole] {
        &self.roles
    }

    pub fn role(&self, name: &str) -> Option<&AppRole> {
        self.roles.iter().find(|r| &*r.name == name)
    }

    /// Space-separated action names as stored (a custom role's, a key's scopes); names no
    /// longer in the table (a manifest that dropped them) are dropped, so what was granted
    /// can only shrink.
    pub fn parse_set(&self, names: &str) -> ActionSet {
        names
            .split_whitespace()
            .filter_map(|name| self.by_name.get(name).copied())
            .collect()
    }

    /// The names of a set, space-separated, in the table's order: how sets are stored.
    pub fn names(&self, set: &ActionSet) -> String {
        set.iter()
            .filter_map(|id| self.rows.get(id.index()))
            .map(|row| &*row.name)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The actions that replace a member's built-in role's, if any. An app role the
    /// manifest no longer declares allows nothing: a dropped role fails closed.
    pub fn replacing(&self, held: &HeldRole) -> Option<Arc<ActionSet>> {
        match held {
            HeldRole::Builtin => None,
            HeldRole::Custom(names) => Some(Arc::new(self.parse_set(names))),
            HeldRole::App(name) => Some(
                self.role(name)
                    .map_or_else(Arc::default, |role| role.actions.clone()),
            ),
        }
    }

    /// Whether a member holding `held` is external (a vendor). An app role the manifest no
    /// longer declares counts as external: it fails closed.
    pub fn is_external(&self, held: &HeldRole) -> bool {
        match held {
            HeldRole::App(name) => self.role(name).is_none_or(|role| role.external),
            _ => false,
        }
    }

    /// Every row a built-in role allows.
    pub fn allowed_to(&self, role: Role) -> impl Iterator<Item = &ActionRow> {
        self.rows.iter().filter(move |row| row.allowed_to(role))
    }
}

impl ActionTable {
    /// The table as docs/rbac.md (and `palisade access table`) shows it: every action and
    /// the built-in roles allowed it, then the app's roles and their actions.
    pub fn render_markdown(&self) -> String {
        use std::fmt::Write;
        let roles = Role::ALL;
        let mut out = String::from(
            "# Roles and actions\n\nGenerated from `crates/palisade/src/access/actions.rs` (the table the server \
             enforces and `GET /api/v1/roles` publishes); a test fails when this file is out of step.\n\n| Action |",
        );
        for role in roles {
            let _ = write!(out, " {} |", role.title());
        }
        out.push_str(" API keys | What it allows |\n|---|");
        for _ in roles {
            out.push_str("---|");
        }
        out.push_str("---|---|\n");
        for row in &self.rows {
            let _ = write!(out, "| `{}` |", row.name);
            for role in roles {
                out.push_str(if row.allowed_to(role) { " ✓ |" } else { " |" });
            }
            let keys = if row.people_only { "never" } else { "by role" };
            let _ = writeln!(out, " {keys} | {} |", row.description);
        }
        if !self.roles.is_empty() {
            out.push_str("\n## The app's roles\n\n| Role | Ranks as | Actions |\n|---|---|---|\n");
            for role in &self.roles {
                let actions: Vec<String> = role
                    .actions
                    .iter()
                    .map(|id| format!("`{}`", self.row(id).name))
                    .collect();
                let _ = writeln!(
                    out,
                    "| {} (`{}`) | {} | {} |",
                    role.title,
                    role.name,
                    role.rank.title(),
                    actions.join(", ")
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_rows_keep_their_order_and_sets_hold_what_was_put_in() {
        let table = ActionTable::builtin();
        for action in ACTIONS {
            assert_eq!(table.row((*action).into()).name.as_ref(), action.name());
            assert_eq!(table.find(action.name()).unwrap().own(), Some(*action));
        }
        let set = table.parse_set("keys.read audit.read gone.action keys.read");
        assert!(set.contains(Action::KeysRead.into()));
        assert!(set.contains(Action::AuditRead.into()));
        assert!(!set.contains(Action::SecretsRead.into()));
        assert_eq!(table.names(&set), "keys.read audit.read");
        let mut far = ActionSet::default();
        far.insert(ActionId(130));
        assert!(far.contains(ActionId(130)) && !far.contains(ActionId(2)));
        assert_eq!(far.iter().collect::<Vec<_>>(), vec![ActionId(130)]);
    }
}
