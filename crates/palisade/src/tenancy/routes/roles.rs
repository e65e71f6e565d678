//! The published access model (`GET /api/v1/roles`: actions, roles, resource types) and
//! the tenant the credential acts in (`GET /api/v1/tenant`).

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::access::actions::act;
use crate::access::ActionRow;
use crate::access::{PrincipalKind, Role, Subject};
use crate::app::AppState;
use crate::http::auth::Permitted;
use crate::http::openapi::ErrorBody;
use crate::ids::{ApiKeyId, ApplicationId, TenantId};

#[derive(Serialize, ToSchema)]
pub struct ActionView {
    #[schema(example = "members.invite")]
    action: String,
    description: String,
    /// The built-in roles allowed, strongest first.
    roles: Vec<Role>,
    /// `palisade` for Palisade's own actions, `app` for the manifest's.
    #[schema(example = "palisade")]
    source: &'static str,
    /// What it applies to: `tenant` for Palisade's own, a manifest resource type otherwise.
    #[schema(example = "tenant")]
    resource_type: String,
    /// Only a person may take it, never an API key.
    people_only: bool,
    /// Declared destructive (the manifest's actions; needs manager or stronger).
    destructive: bool,
}

#[derive(Serialize, ToSchema)]
pub struct RoleView {
    #[schema(example = "technician")]
    name: String,
    #[schema(example = "Technician")]
    title: String,
    /// `palisade` for the five built-in roles, `app` for the manifest's.
    source: &'static str,
    /// The built-in role it ranks as for the no-escalation rules (itself when built in).
    rank: Role,
    /// Held by people outside the organization: they act only on the app's resources
    /// assigned to them, never on Palisade's own.
    external: bool,
    description: String,
    /// Every action it allows, Palisade's and the app's.
    actions: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ResourceTypeView {
    #[schema(example = "workorder")]
    name: String,
    description: String,
    /// The relations a subject may have to a resource of this type.
    relations: Vec<String>,
}

/// The deployment's access model: every action with the roles allowed it, every role (the
/// built-in five and the manifest's), and the manifest's resource types.
#[derive(Serialize, ToSchema)]
pub struct AccessModelView {
    actions: Vec<ActionView>,
    roles: Vec<RoleView>,
    resource_types: Vec<ResourceTypeView>,
}

fn source(app: bool) -> &'static str {
    if app {
        "app"
    } else {
        "palisade"
    }
}

#[derive(Serialize, ToSchema)]
pub struct TenantView {
    id: TenantId,
    name: String,
    /// The caller's built-in role (a key's role, for an API key).
    role: Role,
    /// `session` or `api_key`.
    credential: &'static str,
    /// The key's public id, when the credential is an API key.
    api_key_id: Option<ApiKeyId>,
    /// The application whose Agent the key is, if any.
    application_id: Option<ApplicationId>,
}

/// The tenant the credential acts in, and the caller's standing in it: what an integration
/// asks first ("which tenant is this key for?"). Served from the verified credential.
///
/// Action: `tenant.read`.
#[utoipa::path(
    get,
    path = "/api/v1/tenant",
    tag = "tenancy",
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The caller's tenant", body = TenantView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow this action", body = ErrorBody),
    )
)]
pub(super) async fn current_tenant(
    permitted: Permitted<act::TenantRead>,
) -> axum::Json<TenantView> {
    let caller = &permitted.caller;
    let (credential, api_key_id, application_id) = match (caller.subject(), caller.kind()) {
        (Subject::Key { id }, PrincipalKind::Agent { application }) => {
            ("api_key", Some(id), Some(application))
        }
        (Subject::Key { id }, _) => ("api_key", Some(id), None),
        (Subject::Person { .. }, _) => ("session", None, None),
    };
    axum::Json(TenantView {
        id: caller.tenant(),
        name: caller.tenant_name().to_owned(),
        role: caller.role(),
        credential,
        api_key_id,
        application_id,
    })
}

/// The action table — Palisade's actions and the app's manifest — with the roles allowed
/// each, every role, and the app's resource types (claims RBAC-1, APP-1).
#[utoipa::path(
    get,
    path = "/api/v1/roles",
    tag = "tenancy",
    responses((status = 200, description = "The access model", body = AccessModelView))
)]
pub(super) async fn roles(State(state): State<AppState>) -> axum::Json<AccessModelView> {
    let table = &state.access;
    let names =
        |rows: &mut dyn Iterator<Item = &ActionRow>| rows.map(|r| r.name.to_string()).collect();
    let builtin = Role::ALL.into_iter().map(|role| RoleView {
        name: role.as_str().to_owned(),
        title: role.title().to_owned(),
        source: source(false),
        rank: role,
        external: false,
        description: String::new(),
        actions: names(&mut table.allowed_to(role)),
    });
    let app = table.roles().iter().map(|role| RoleView {
        name: role.name.to_string(),
        title: role.title.to_string(),
        source: source(true),
        rank: role.rank,
        external: role.external,
        description: role.description.to_string(),
        actions: names(&mut role.actions.iter().map(|id| table.row(id))),
    });
    axum::Json(AccessModelView {
        actions: table
            .rows()
            .iter()
            .map(|row| ActionView {
                action: row.name.to_string(),
                description: row.description.to_string(),
                roles: Role::ALL
                    .into_iter()
                    .filter(|role| row.allowed_to(*role))
                    .collect(),
                source: source(row.is_app()),
                resource_type: row.resource_type.to_string(),
                people_only: row.people_only,
                destructive: row.destructive,
            })
            .collect(),
        roles: builtin.chain(app).collect(),
        resource_types: table
            .resource_types()
            .iter()
            .map(|t| ResourceTypeView {
                name: t.name.to_string(),
                description: t.description.to_string(),
                relations: t.relations.iter().map(|r| r.to_string()).collect(),
            })
            .collect(),
    })
}
