//! The app's manifest (claim APP-1): one TOML file declaring the app's resource types, its
//! actions (each with its weakest built-in role and its flags) and its deployment-wide
//! roles. Loaded at start-up into the one action table; every problem is named, and any
//! problem refuses the start. docs/integration.md shows a whole manifest.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use super::table::{ActionId, TENANT_RESOURCE};
use super::table::{ActionRow, ActionSet, ActionTable, AppRole, ResourceType, MAX_ROWS};
use super::{Role, ACTIONS};

/// Why a manifest was refused: every problem found, each naming what it is about.
#[derive(Debug, thiserror::Error)]
#[error("the access manifest {path} is refused:\n  - {}", problems.join("\n  - "))]
pub struct ManifestError {
    pub path: String,
    pub problems: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    #[serde(default)]
    resource_types: Vec<ResourceTypeEntry>,
    #[serde(default)]
    actions: Vec<ActionEntry>,
    #[serde(default)]
    roles: Vec<RoleEntry>,
    /// The app's webhook event types (claim HOOK-2).
    #[serde(default)]
    events: Vec<EventEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventEntry {
    /// `<resource type>.<what happened>`: `workorder.status_changed`.
    name: String,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceTypeEntry {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    relations: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionEntry {
    /// `<resource type>.<verb>`: `workorder.delete`.
    name: String,
    /// The weakest built-in role allowed.
    role: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    people_only: bool,
    #[serde(default)]
    destructive: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleEntry {
    name: String,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    description: String,
    /// The built-in role it ranks as for the no-escalation rules.
    rank: String,
    #[serde(default)]
    actions: Vec<String>,
    /// Other roles of the manifest whose actions it holds too.
    #[serde(default)]
    includes: Vec<String>,
    /// Its holders are outside the organization (vendors): they act only on the app's
    /// resources assigned to them, and never on Palisade's own (claim RBAC-5).
    #[serde(default)]
    external: bool,
}

const MAX_RESOURCE_TYPES: usize = 64;
const MAX_ROLES: usize = 64;
const MAX_EVENTS: usize = 128;
const MAX_RELATIONS: usize = 16;
const MAX_DESCRIPTION: usize = 300;

/// Reads and validates the manifest at `path` into a table.
pub fn load(path: &Path) -> Result<Arc<ActionTable>, ManifestError> {
    let refused = |problem: String| ManifestError {
        path: path.display().to_string(),
        problems: vec![problem],
    };
    let text = std::fs::read_to_string(path).map_err(|e| refused(format!("cannot read: {e}")))?;
    parse(&text).map_err(|problems| ManifestError {
        path: path.display().to_string(),
        problems,
    })
}

/// Validates a manifest's text into a table, or lists every problem.
pub fn parse(text: &str) -> Result<Arc<ActionTable>, Vec<String>> {
    let file: ManifestFile = toml::from_str(text).map_err(|e| vec![e.message().to_owned()])?;
    let mut problems = Vec::new();
    let mut table = ActionTable::for_manifest();
    let own_prefixes: HashSet<&str> = ACTIONS
        .iter()
        .filter_map(|a| a.name().split('.').next())
        .chain([TENANT_RESOURCE])
        .collect();

    if file.resource_types.len() > MAX_RESOURCE_TYPES {
        problems.push(format!("resource_types: at most {MAX_RESOURCE_TYPES}"));
    }
    let mut type_names = HashSet::new();
    for entry in &file.resource_types {
        let at = format!("resource type `{}`", entry.name);
        if !is_identifier(&entry.name) {
            problems.push(format!("{at}: a name is a lowercase letter, then up to 31 lowercase letters, digits or `_`"));
        } else if own_prefixes.contains(entry.name.as_str()) {
            problems.push(format!("{at}: the name is Palisade's own"));
        } else if !type_names.insert(entry.name.as_str()) {
            problems.push(format!("{at}: declared twice"));
        }
        check_description(&at, &entry.description, &mut problems);
        let mut relations = HashSet::new();
        if entry.relations.len() > MAX_RELATIONS {
            problems.push(format!("{at}: at most {MAX_RELATIONS} relations"));
        }
        for relation in &entry.relations {
            if !is_identifier(relation) {
                problems.push(format!(
                    "{at}: relation `{relation}` is not a name (lowercase letters, digits, `_`)"
                ));
            } else if !relations.insert(relation.as_str()) {
                problems.push(format!("{at}: relation `{relation}` declared twice"));
            }
        }
        table.push_resource_type(ResourceType {
            name: Arc::from(entry.name.as_str()),
            description: Arc::from(entry.description.as_str()),
            relations: entry
                .relations
                .iter()
                .map(|r| Arc::from(r.as_str()))
                .collect(),
        });
    }

    if ACTIONS.len() + file.actions.len() > MAX_ROWS {
        problems.push(format!("actions: at most {}", MAX_ROWS - ACTIONS.len()));
    }
    let mut action_names = HashSet::new();
    for entry in &file.actions {
        let at = format!("action `{}`", entry.name);
        let resource_type = match entry.name.split_once('.') {
            Some((resource_type, verb))
                if is_identifier(resource_type)
                    && !verb.is_empty()
                    && verb.len() <= 32
                    && verb.split('.').all(is_identifier) =>
            {
                resource_type
            }
            _ => {
                problems.push(format!(
                    "{at}: a name is `<resource type>.<verb>`, lowercase letters, digits and `_`"
                ));
                continue;
            }
        };
        if table.find(&entry.name).is_some_and(|row| !row.is_app()) {
            problems.push(format!("{at}: the name is Palisade's own"));
            continue;
        }
        if !type_names.contains(resource_type) {
            problems.push(format!(
                "{at}: `{resource_type}` is not a resource type of the manifest"
            ));
        }
        if !action_names.insert(entry.name.as_str()) {
            problems.push(format!("{at}: declared twice"));
            continue;
        }
        let Some(role) = Role::parse(&entry.role) else {
            problems.push(format!(
                "{at}: role `{}` is not a built-in role (owner, admin, manager, member, viewer)",
                entry.role
            ));
            continue;
        };
        // The same policy as Palisade's own table (claim RBAC-2).
        if entry.destructive && role > Role::Manager {
            problems.push(format!(
                "{at}: a destructive action needs manager or a stronger role"
            ));
        }
        check_description(&at, &entry.description, &mut problems);
        table.push_action(ActionRow {
            id: ActionId::from(ACTIONS[0]),
            name: Arc::from(entry.name.as_str()),
            description: Arc::from(entry.description.as_str()),
            minimum_role: role,
            people_only: entry.people_only,
            destructive: entry.destructive,
            resource_type: Arc::from(resource_type),
        });
    }

    if file.events.len() > MAX_EVENTS {
        problems.push(format!("events: at most {MAX_EVENTS}"));
    }
    let mut event_names = HashSet::new();
    for entry in &file.events {
        let at = format!("event `{}`", entry.name);
        match entry.name.split_once('.') {
            Some((resource_type, what)) if is_identifier(resource_type) && is_identifier(what) => {
                if !type_names.contains(resource_type) {
                    problems.push(format!(
                        "{at}: `{resource_type}` is not a resource type of the manifest"
                    ));
                }
            }
            _ => {
                problems.push(format!(
                    "{at}: a name is `<resource type>.<what happened>`, lowercase letters, digits and `_`"
                ));
                continue;
            }
        }
        if super::events::own_event(&entry.name).is_some() {
            problems.push(format!("{at}: the name is Palisade's own"));
        } else if !event_names.insert(entry.name.as_str()) {
            problems.push(format!("{at}: declared twice"));
        }
        check_description(&at, &entry.description, &mut problems);
        table.push_event(super::events::AppEvent {
            name: Arc::from(entry.name.as_str()),
            description: Arc::from(entry.description.as_str()),
        });
    }

    if file.roles.len() > MAX_ROLES {
        problems.push(format!("roles: at most {MAX_ROLES}"));
    }
    for (role, actions) in roles(&file.roles, &table, &mut problems) {
        table.push_role(AppRole {
            actions: Arc::new(actions),
            ..role
        });
    }
    if problems.is_empty() {
        Ok(Arc::new(table))
    } else {
        Err(problems)
    }
}

/// Each role with its whole set of actions (its own and its included roles'), in the
/// file's order; problems for bad names, unknown actions or roles, and cycles.
fn roles(
    entries: &[RoleEntry],
    table: &ActionTable,
    problems: &mut Vec<String>,
) -> Vec<(AppRole, ActionSet)> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut direct: Vec<ActionSet> = Vec::with_capacity(entries.len());
    let mut ranks = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let at = format!("role `{}`", entry.name);
        if !is_identifier(&entry.name) {
            problems.push(format!("{at}: a name is a lowercase letter, then up to 31 lowercase letters, digits or `_`"));
        } else if Role::parse(&entry.name).is_some() {
            problems.push(format!("{at}: the name is a built-in role's"));
        } else if index.insert(entry.name.as_str(), i).is_some() {
            problems.push(format!("{at}: declared twice"));
        }
        let rank = match Role::parse(&entry.rank) {
            Some(Role::Owner) | None => {
                problems.push(format!(
                    "{at}: rank `{}` must be admin, manager, member or viewer",
                    entry.rank
                ));
                Role::Viewer
            }
            Some(rank) => rank,
        };
        ranks.push(rank);
        check_description(&at, &entry.description, problems);
        let mut set = ActionSet::default();
        for name in &entry.actions {
            match table.find(name) {
                None => problems.push(format!("{at}: `{name}` is not an action of the table")),
                // As for a custom role (claim RBAC-3): an Owner's powers stay the Owner's.
                Some(row) if row.minimum_role == Role::Owner => {
                    problems.push(format!("{at}: `{name}` is for Owners only"))
                }
                Some(row) => set.insert(row.id),
            }
        }
        direct.push(set);
    }
    // Includes, followed depth-first; a role met again on its own path is a cycle.
    let mut whole: Vec<Option<ActionSet>> = vec![None; entries.len()];
    for start in 0..entries.len() {
        let mut path = Vec::new();
        resolve(
            start, entries, &index, &direct, &mut whole, &mut path, problems,
        );
    }
    entries
        .iter()
        .zip(whole)
        .zip(ranks)
        .map(|((entry, actions), rank)| {
            let actions = actions.unwrap_or_default();
            if actions.is_empty() {
                problems.push(format!("role `{}`: no action at all", entry.name));
            }
            if entry.external {
                for own in actions.iter().filter_map(|id| table.row(id).own()) {
                    problems.push(format!(
                        "role `{}`: an external role holds only the app's actions, not `{}`",
                        entry.name,
                        own.name()
                    ));
                }
            }
            let role = AppRole {
                name: Arc::from(entry.name.as_str()),
                title: Arc::from(entry.title.as_deref().unwrap_or(&entry.name)),
                description: Arc::from(entry.description.as_str()),
                rank,
                external: entry.external,
                actions: Arc::default(),
            };
            (role, actions)
        })
        .collect()
}

fn resolve(
    at: usize,
    entries: &[RoleEntry],
    index: &HashMap<&str, usize>,
    direct: &[ActionSet],
    whole: &mut [Option<ActionSet>],
    path: &mut Vec<usize>,
    problems: &mut Vec<String>,
) -> ActionSet {
    if let Some(done) = &whole[at] {
        return done.clone();
    }
    if path.contains(&at) {
        let cycle: Vec<&str> = path
            .iter()
            .skip_while(|i| **i != at)
            .chain([&at])
            .map(|i| entries[*i].name.as_str())
            .collect();
        let problem = format!("roles include each other in a cycle: {}", cycle.join(" → "));
        if !problems.contains(&problem) {
            problems.push(problem);
        }
        return ActionSet::default();
    }
    path.push(at);
    let mut set = direct[at].clone();
    for included in &entries[at].includes {
        match index.get(included.as_str()) {
            Some(&other) => set.extend(&resolve(
                other, entries, index, direct, whole, path, problems,
            )),
            None => problems.push(format!(
                "role `{}`: includes `{included}`, not a role of the manifest",
                entries[at].name
            )),
        }
    }
    path.pop();
    whole[at] = Some(set.clone());
    set
}

fn check_description(at: &str, description: &str, problems: &mut Vec<String>) {
    if description.chars().count() > MAX_DESCRIPTION || description.chars().any(char::is_control) {
        problems.push(format!(
            "{at}: a description is at most {MAX_DESCRIPTION} characters, no control characters"
        ));
    }
}

/// A lowercase ASCII letter, then up to 31 lowercase letters, digits or `_`.
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && name.len() <= 32
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Action;

    const WORKORDERS: &str = include_str!("../../tests/fixtures/workorders-manifest.toml");

    fn problems(text: &str) -> Vec<String> {
        parse(text).expect_err("refused")
    }

    // claim: APP-1
    #[test]
    fn the_work_order_manifest_loads_its_roles_and_actions_after_palisades_own() {
        let table = parse(WORKORDERS).unwrap();
        assert_eq!(
            table.roles().len(),
            7,
            "nine with the built-in admin and manager"
        );
        let delete = table.find("workorder.delete").unwrap();
        assert!(delete.is_app() && delete.destructive);
        assert_eq!(delete.minimum_role, Role::Manager);
        assert!(
            delete.id.index() >= ACTIONS.len(),
            "after Palisade's own rows"
        );
        assert_eq!(
            table.find("members.read").unwrap().own(),
            Some(Action::MembersRead)
        );
        assert!(table.role("vendor").unwrap().external);
        assert!(!table.role("technician").unwrap().external);
        let requester = table.role("requester").unwrap();
        let technician = table.role("technician").unwrap();
        assert!(
            requester
                .actions
                .iter()
                .all(|id| technician.actions.contains(id)),
            "a technician includes the requester"
        );
    }

    // claim: APP-1
    #[test]
    fn every_problem_of_a_bad_manifest_is_named() {
        let found = problems(
            r#"
            [[resource_types]]
            name = "members"
            [[resource_types]]
            name = "Work Order"
            [[resource_types]]
            name = "asset"
            relations = ["owner", "owner"]
            [[actions]]
            name = "members.read"
            role = "viewer"
            [[actions]]
            name = "asset.scrap"
            role = "member"
            destructive = true
            [[actions]]
            name = "ghost.read"
            role = "viewer"
            [[actions]]
            name = "asset.read"
            role = "superuser"
            [[actions]]
            name = "nodot"
            role = "viewer"
            [[roles]]
            name = "admin"
            rank = "admin"
            actions = ["asset.scrap"]
            [[roles]]
            name = "a"
            rank = "member"
            actions = ["asset.scrap", "asset.fly", "tenant.delete"]
            includes = ["b"]
            [[roles]]
            name = "b"
            rank = "owner"
            includes = ["a", "nobody"]
            [[roles]]
            name = "outsider"
            rank = "viewer"
            external = true
            actions = ["members.read"]
            "#,
        );
        for expected in [
            "resource type `members`: the name is Palisade's own",
            "resource type `Work Order`: a name is",
            "resource type `asset`: relation `owner` declared twice",
            "action `members.read`: the name is Palisade's own",
            "action `asset.scrap`: a destructive action needs manager",
            "action `ghost.read`: `ghost` is not a resource type",
            "action `asset.read`: role `superuser` is not a built-in role",
            "action `nodot`: a name is `<resource type>.<verb>`",
            "role `admin`: the name is a built-in role's",
            "role `a`: `asset.fly` is not an action of the table",
            "role `a`: `tenant.delete` is for Owners only",
            "role `b`: rank `owner` must be",
            "role `b`: includes `nobody`, not a role of the manifest",
            "roles include each other in a cycle: a → b → a",
            "role `outsider`: an external role holds only the app's actions, not `members.read`",
        ] {
            assert!(
                found.iter().any(|p| p.starts_with(expected)),
                "{expected:?} not in {found:#?}"
            );
        }
    }

    // claim: APP-1
    #[test]
    fn unknown_fields_and_malformed_toml_are_refused() {
        assert!(
            problems("[[actions]]\nname = \"x.y\"\nrole = \"viewer\"\nscope = 1\n")[0]
                .contains("unknown field")
        );
        assert!(!problems("[[actions]\n").is_empty());
        assert_eq!(parse("").unwrap().rows().len(), ACTIONS.len());
    }
}
