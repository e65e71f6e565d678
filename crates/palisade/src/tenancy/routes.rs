//! Tenancy's HTTP surface: the published role table and member management. Each guarded
//! operation names its action in its signature (`Permitted<act::…>`) and in its
//! description ("Action: `…`"), which the isolation and permission suites read.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::members::TenancyError;
use crate::access::actions::act;
use crate::access::ActionRow;
use crate::access::{PrincipalKind, Role, Subject};
use crate::app::AppState;
use crate::http::auth::{AnySession, Permitted, PermittedPerson};
use crate::http::error::{ApiError, ErrorCode};
use crate::http::extract::{id_or_404, Json, RequestContext};
use crate::http::openapi::ErrorBody;
use crate::identity::routes::origin;
use crate::ids::{ApiKeyId, ApplicationId, CustomRoleId, InvitationId, TenantId, UserId};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(roles))
        .routes(routes!(current_tenant))
        .routes(routes!(list_members))
        .routes(routes!(change_role, remove_member))
        .routes(routes!(invite, list_invitations))
        .routes(routes!(revoke_invitation))
        .routes(routes!(accept_invitation))
        .routes(routes!(transfer_ownership))
        .routes(routes!(list_custom_roles, create_custom_role))
        .routes(routes!(delete_custom_role))
        .routes(routes!(assign_custom_role))
        .routes(routes!(list_applications, create_application))
        .routes(routes!(delete_application))
}

impl From<TenancyError> for ApiError {
    fn from(error: TenancyError) -> Self {
        match error {
            TenancyError::NotFound => ApiError::NotFound,
            TenancyError::Forbidden(text) => ApiError::coded(ErrorCode::Forbidden, text),
            TenancyError::LastOwner => ApiError::coded(ErrorCode::Conflict, error.to_string()),
            TenancyError::Suspended => {
                ApiError::coded(ErrorCode::TenantSuspended, error.to_string())
            }
            TenancyError::Conflict(text) => ApiError::coded(ErrorCode::Conflict, text),
            TenancyError::Invalid(invalid) => ApiError::invalid_field(invalid.0),
            TenancyError::Store(store) => store.into(),
        }
    }
}

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
async fn current_tenant(permitted: Permitted<act::TenantRead>) -> axum::Json<TenantView> {
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
async fn roles(State(state): State<AppState>) -> axum::Json<AccessModelView> {
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
                    .filter(|role| *role <= row.minimum_role)
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

#[derive(Serialize, ToSchema)]
pub struct MemberView {
    user_id: UserId,
    email: String,
    /// The built-in role, or the rank of the app role the member holds.
    role: Role,
    /// The custom role of the tenant the member holds, if any.
    custom_role_id: Option<CustomRoleId>,
    /// The manifest's role the member holds, if any.
    #[schema(example = "technician")]
    app_role: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    joined_at: OffsetDateTime,
}

/// The tenant's members, strongest role first.
///
/// Action: `members.read`.
#[utoipa::path(
    get,
    path = "/api/v1/members",
    tag = "tenancy",
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Members", body = [MemberView]),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow this action", body = ErrorBody),
    )
)]
async fn list_members(
    State(state): State<AppState>,
    permitted: Permitted<act::MembersRead>,
) -> Result<axum::Json<Vec<MemberView>>, ApiError> {
    let members = state.tenancy.members(&permitted.caller).await?;
    Ok(axum::Json(
        members
            .into_iter()
            .map(|m| MemberView {
                user_id: m.user_id,
                email: m.email,
                role: m.role,
                custom_role_id: m.custom_role,
                app_role: m.app_role,
                joined_at: m.joined_at,
            })
            .collect(),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleChange {
    /// A built-in role.
    #[serde(default)]
    role: Option<Role>,
    /// A role of the app's manifest (`GET /api/v1/roles`), or null to take it away (the
    /// member keeps its rank as their built-in role). Exactly one of `role` and `app_role`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, example = "technician")]
    app_role: Option<Option<String>>,
}

/// A field that is present, even as null.
fn present<'de, D: serde::Deserializer<'de>>(field: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(field).map(Some)
}

/// Change a member's role — a built-in one (`{"role": "viewer"}`) or one of the app's
/// manifest (`{"app_role": "technician"}`, which sets the member's rank to the role's and
/// replaces their actions with its own): never one's own, never a rank or an action above
/// one's own, never a member above oneself, and never the last Owner's.
///
/// Action: `members.update_role`.
#[utoipa::path(
    patch,
    path = "/api/v1/members/{user_id}",
    tag = "tenancy",
    request_body = RoleChange,
    security(("bearer" = []), ("api_key" = [])),
    params(("user_id" = UserId, Path, description = "A member of the caller's tenant")),
    responses(
        (status = 204, description = "Changed"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not allowed (role, or escalation)", body = ErrorBody),
        (status = 404, description = "No such member in this tenant", body = ErrorBody),
        (status = 409, description = "The last Owner", body = ErrorBody),
        (status = 422, description = "Invalid body, not exactly one of role and app_role, or an unknown app role", body = ErrorBody),
    )
)]
async fn change_role(
    State(state): State<AppState>,
    permitted: Permitted<act::MembersUpdateRole>,
    context: RequestContext,
    Path(raw): Path<String>,
    Json(body): Json<RoleChange>,
) -> Result<StatusCode, ApiError> {
    let user: UserId = id_or_404(&raw)?;
    let (tenancy, caller, origin) = (&state.tenancy, &permitted.caller, origin(context));
    match (body.role, body.app_role) {
        (Some(role), None) => tenancy.change_role(caller, user, role, &origin).await?,
        (None, Some(app_role)) => {
            tenancy
                .assign_app_role(caller, user, app_role.as_deref(), &origin)
                .await?
        }
        _ => {
            return Err(ApiError::invalid_field(
                "exactly one of `role` and `app_role`",
            ))
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Remove a member; their sessions in this tenant end at once. Never the last Owner, never
/// a member above oneself.
///
/// Action: `members.remove`.
#[utoipa::path(
    delete,
    path = "/api/v1/members/{user_id}",
    tag = "tenancy",
    security(("bearer" = []), ("api_key" = [])),
    params(("user_id" = UserId, Path, description = "A member of the caller's tenant")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not allowed (role, or a member above the caller)", body = ErrorBody),
        (status = 404, description = "No such member in this tenant", body = ErrorBody),
        (status = 409, description = "The last Owner", body = ErrorBody),
    )
)]
async fn remove_member(
    State(state): State<AppState>,
    permitted: Permitted<act::MembersRemove>,
    context: RequestContext,
    Path(raw): Path<String>,
) -> Result<StatusCode, ApiError> {
    let user: UserId = id_or_404(&raw)?;
    state
        .tenancy
        .remove(&permitted.caller, user, &origin(context))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvitationRequest {
    #[schema(example = "grace@example.com", max_length = 254, format = Email)]
    email: String,
    /// At most the inviter's own role.
    role: Role,
}

#[derive(Serialize, ToSchema)]
pub struct InvitationView {
    id: InvitationId,
    email: String,
    role: Role,
    invited_by: UserId,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    expires_at: OffsetDateTime,
}

impl From<super::store::InvitationRecord> for InvitationView {
    fn from(record: super::store::InvitationRecord) -> Self {
        Self {
            id: record.id,
            email: record.email,
            role: record.role,
            invited_by: record.invited_by,
            created_at: record.created_at,
            expires_at: record.expires_at,
        }
    }
}

/// Invite someone by email; the link is mailed to them and works once, for 7 days.
///
/// Action: `members.invite`.
#[utoipa::path(
    post,
    path = "/api/v1/invitations",
    tag = "tenancy",
    request_body = InvitationRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Invited", body = InvitationView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not allowed (role, or a role above the inviter's)", body = ErrorBody),
        (status = 422, description = "Invalid body", body = ErrorBody),
    )
)]
async fn invite(
    State(state): State<AppState>,
    permitted: PermittedPerson<act::MembersInvite>,
    context: RequestContext,
    Json(body): Json<InvitationRequest>,
) -> Result<(StatusCode, axum::Json<InvitationView>), ApiError> {
    let invitation = state
        .tenancy
        .invite(&permitted.person, &body.email, body.role, &origin(context))
        .await?;
    Ok((StatusCode::CREATED, axum::Json(invitation.into())))
}

/// Pending invitations (neither accepted, revoked nor expired), newest first.
///
/// Action: `members.invite`.
#[utoipa::path(
    get,
    path = "/api/v1/invitations",
    tag = "tenancy",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Pending invitations", body = [InvitationView]),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow this action", body = ErrorBody),
    )
)]
async fn list_invitations(
    State(state): State<AppState>,
    permitted: PermittedPerson<act::MembersInvite>,
) -> Result<axum::Json<Vec<InvitationView>>, ApiError> {
    let pending = state.tenancy.pending_invitations(&permitted.person).await?;
    Ok(axum::Json(pending.into_iter().map(Into::into).collect()))
}

/// Revoke a pending invitation.
///
/// Action: `members.invite`.
#[utoipa::path(
    delete,
    path = "/api/v1/invitations/{invitation_id}",
    tag = "tenancy",
    security(("bearer" = [])),
    params(("invitation_id" = InvitationId, Path, description = "A pending invitation of the caller's tenant")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow this action", body = ErrorBody),
        (status = 404, description = "No such pending invitation in this tenant", body = ErrorBody),
    )
)]
async fn revoke_invitation(
    State(state): State<AppState>,
    permitted: PermittedPerson<act::MembersInvite>,
    context: RequestContext,
    Path(raw): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id: InvitationId = id_or_404(&raw)?;
    state
        .tenancy
        .revoke_invitation(&permitted.person, id, &origin(context))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptRequest {
    /// The token from the invitation link.
    #[schema(value_type = String, pattern = "^[A-Za-z0-9_-]{43}$")]
    token: secrecy::SecretString,
}

#[derive(Serialize, ToSchema)]
pub struct Joined {
    /// Switch to it with `POST /api/v1/auth/switch-tenant`.
    tenant_id: TenantId,
    role: Role,
}

/// Accept an invitation addressed to the signed-in user's email.
#[utoipa::path(
    post,
    path = "/api/v1/invitations/accept",
    tag = "tenancy",
    request_body = AcceptRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Joined", body = Joined),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No live invitation with this token for this user", body = ErrorBody),
        (status = 409, description = "Already a member", body = ErrorBody),
        (status = 422, description = "Invalid body", body = ErrorBody),
    )
)]
async fn accept_invitation(
    State(state): State<AppState>,
    AnySession(principal): AnySession,
    context: RequestContext,
    Json(body): Json<AcceptRequest>,
) -> Result<axum::Json<Joined>, ApiError> {
    let (tenant_id, role) = state
        .tenancy
        .accept_invitation(&principal, &body.token, &origin(context))
        .await?;
    Ok(axum::Json(Joined { tenant_id, role }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OwnershipTransfer {
    /// The member who becomes Owner; the caller becomes an Admin.
    user_id: UserId,
}

/// Hand the tenant to another member: they become Owner, the caller an Admin.
///
/// Action: `tenant.transfer_ownership`.
#[utoipa::path(
    post,
    path = "/api/v1/tenant/transfer-ownership",
    tag = "tenancy",
    request_body = OwnershipTransfer,
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Transferred"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an Owner", body = ErrorBody),
        (status = 404, description = "No such member in this tenant", body = ErrorBody),
        (status = 422, description = "Invalid body", body = ErrorBody),
    )
)]
async fn transfer_ownership(
    State(state): State<AppState>,
    permitted: PermittedPerson<act::TenantTransferOwnership>,
    context: RequestContext,
    Json(body): Json<OwnershipTransfer>,
) -> Result<StatusCode, ApiError> {
    state
        .tenancy
        .transfer_ownership(&permitted.person, body.user_id, &origin(context))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomRoleRequest {
    #[schema(
        example = "Auditor",
        min_length = 1,
        max_length = 64,
        pattern = "^[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]([^\\u0000-\\u001f\\u007f-\\u009f]*[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000])?$"
    )]
    name: String,
    /// Action names from `GET /api/v1/roles`; no Owner-only action.
    #[schema(example = json!(["audit.read", "members.read"]), value_type = Vec<crate::access::actions::CustomRoleActionName>, min_items = 1)]
    actions: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CustomRoleView {
    id: CustomRoleId,
    name: String,
    actions: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
}

impl From<super::store::CustomRoleRecord> for CustomRoleView {
    fn from(record: super::store::CustomRoleRecord) -> Self {
        Self {
            id: record.id,
            name: record.name,
            actions: record
                .actions
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            created_at: record.created_at,
        }
    }
}

/// The tenant's custom roles.
///
/// Action: `members.read`.
#[utoipa::path(
    get,
    path = "/api/v1/custom-roles",
    tag = "tenancy",
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Custom roles", body = [CustomRoleView]),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow this action", body = ErrorBody),
    )
)]
async fn list_custom_roles(
    State(state): State<AppState>,
    permitted: Permitted<act::MembersRead>,
) -> Result<axum::Json<Vec<CustomRoleView>>, ApiError> {
    let roles = state.tenancy.custom_roles(&permitted.caller).await?;
    Ok(axum::Json(roles.into_iter().map(Into::into).collect()))
}

/// Create a custom role from actions the caller may do (never Owner-only ones).
///
/// Action: `roles.manage`.
#[utoipa::path(
    post,
    path = "/api/v1/custom-roles",
    tag = "tenancy",
    request_body = CustomRoleRequest,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 201, description = "Created", body = CustomRoleView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not allowed (role, or an action beyond the caller's)", body = ErrorBody),
        (status = 409, description = "A role of that name exists", body = ErrorBody),
        (status = 422, description = "Invalid body", body = ErrorBody),
    )
)]
async fn create_custom_role(
    State(state): State<AppState>,
    permitted: Permitted<act::RolesManage>,
    context: RequestContext,
    Json(body): Json<CustomRoleRequest>,
) -> Result<(StatusCode, axum::Json<CustomRoleView>), ApiError> {
    let role = state
        .tenancy
        .create_custom_role(
            &permitted.caller,
            &body.name,
            &body.actions,
            &origin(context),
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(role.into())))
}

/// Delete a custom role; its holders fall back to their built-in role at once.
///
/// Action: `roles.manage`.
#[utoipa::path(
    delete,
    path = "/api/v1/custom-roles/{role_id}",
    tag = "tenancy",
    security(("bearer" = []), ("api_key" = [])),
    params(("role_id" = CustomRoleId, Path, description = "A custom role of the caller's tenant")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow this action", body = ErrorBody),
        (status = 404, description = "No such custom role in this tenant", body = ErrorBody),
    )
)]
async fn delete_custom_role(
    State(state): State<AppState>,
    permitted: Permitted<act::RolesManage>,
    context: RequestContext,
    Path(raw): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id: CustomRoleId = id_or_404(&raw)?;
    state
        .tenancy
        .delete_custom_role(&permitted.caller, id, &origin(context))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomRoleAssignment {
    /// A custom role of the tenant, or null to return to the built-in role's actions.
    custom_role_id: Option<CustomRoleId>,
}

/// Give a member a custom role (or take it away): never to oneself, an Owner, or a member
/// above oneself, and never a role holding an action the caller may not do.
///
/// Action: `members.update_role`.
#[utoipa::path(
    put,
    path = "/api/v1/members/{user_id}/custom-role",
    tag = "tenancy",
    request_body = CustomRoleAssignment,
    security(("bearer" = []), ("api_key" = [])),
    params(("user_id" = UserId, Path, description = "A member of the caller's tenant")),
    responses(
        (status = 204, description = "Changed"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 404, description = "No such member or custom role in this tenant", body = ErrorBody),
        (status = 422, description = "Invalid body", body = ErrorBody),
    )
)]
async fn assign_custom_role(
    State(state): State<AppState>,
    permitted: Permitted<act::MembersUpdateRole>,
    context: RequestContext,
    Path(raw): Path<String>,
    Json(body): Json<CustomRoleAssignment>,
) -> Result<StatusCode, ApiError> {
    let user: UserId = id_or_404(&raw)?;
    state
        .tenancy
        .assign_custom_role(
            &permitted.caller,
            user,
            body.custom_role_id,
            &origin(context),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplicationRequest {
    #[schema(
        example = "Billing sync",
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]([^\\u0000-\\u001f\\u007f-\\u009f]*[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000])?$"
    )]
    name: String,
}

#[derive(Serialize, ToSchema)]
pub struct ApplicationView {
    id: ApplicationId,
    name: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
}

impl From<super::store::ApplicationRecord> for ApplicationView {
    fn from(record: super::store::ApplicationRecord) -> Self {
        Self {
            id: record.id,
            name: record.name,
            created_at: record.created_at,
        }
    }
}

/// The tenant's applications: the groupings Agents and API keys belong to.
///
/// Action: `members.read`.
#[utoipa::path(
    get,
    path = "/api/v1/applications",
    tag = "tenancy",
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Applications", body = [ApplicationView]),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow this action", body = ErrorBody),
    )
)]
async fn list_applications(
    State(state): State<AppState>,
    permitted: Permitted<act::MembersRead>,
) -> Result<axum::Json<Vec<ApplicationView>>, ApiError> {
    let applications = state.tenancy.applications(&permitted.caller).await?;
    Ok(axum::Json(
        applications.into_iter().map(Into::into).collect(),
    ))
}

/// Create an application.
///
/// Action: `applications.manage`.
#[utoipa::path(
    post,
    path = "/api/v1/applications",
    tag = "tenancy",
    request_body = ApplicationRequest,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 201, description = "Created", body = ApplicationView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow this action", body = ErrorBody),
        (status = 409, description = "An application of that name exists", body = ErrorBody),
        (status = 422, description = "Invalid body", body = ErrorBody),
    )
)]
async fn create_application(
    State(state): State<AppState>,
    permitted: Permitted<act::ApplicationsManage>,
    context: RequestContext,
    Json(body): Json<ApplicationRequest>,
) -> Result<(StatusCode, axum::Json<ApplicationView>), ApiError> {
    let application = state
        .tenancy
        .create_application(&permitted.caller, &body.name, &origin(context))
        .await?;
    Ok((StatusCode::CREATED, axum::Json(application.into())))
}

/// Delete an application.
///
/// Action: `applications.manage`.
#[utoipa::path(
    delete,
    path = "/api/v1/applications/{application_id}",
    tag = "tenancy",
    security(("bearer" = []), ("api_key" = [])),
    params(("application_id" = ApplicationId, Path, description = "An application of the caller's tenant")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow this action", body = ErrorBody),
        (status = 404, description = "No such application in this tenant", body = ErrorBody),
    )
)]
async fn delete_application(
    State(state): State<AppState>,
    permitted: Permitted<act::ApplicationsManage>,
    context: RequestContext,
    Path(raw): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id: ApplicationId = id_or_404(&raw)?;
    state
        .tenancy
        .delete_application(&permitted.caller, id, &origin(context))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
