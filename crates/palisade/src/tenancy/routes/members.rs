//! Members: the list, role changes (built-in or an app role), removal and the transfer of
//! ownership.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::access::actions::act;
use crate::access::Role;
use crate::app::AppState;
use crate::http::auth::{Permitted, PermittedPerson};
use crate::http::error::ApiError;
use crate::http::extract::{id_or_404, Json, RequestContext};
use crate::http::openapi::ErrorBody;
use crate::identity::routes::origin;
use crate::ids::{CustomRoleId, UserId};
use crate::tenancy::store::MemberRecord;

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

impl From<MemberRecord> for MemberView {
    fn from(member: MemberRecord) -> Self {
        Self {
            user_id: member.user_id,
            email: member.email,
            role: member.role,
            custom_role_id: member.custom_role,
            app_role: member.app_role,
            joined_at: member.joined_at,
        }
    }
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
pub(super) async fn list_members(
    State(state): State<AppState>,
    permitted: Permitted<act::MembersRead>,
) -> Result<axum::Json<Vec<MemberView>>, ApiError> {
    let members = state.tenancy.members(&permitted.caller).await?;
    Ok(axum::Json(
        members.into_iter().map(MemberView::from).collect(),
    ))
}

/// A built-in role for the member.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BuiltinRoleChange {
    role: Role,
}

/// One of the app's roles for the member, or null to take it away (the member keeps its
/// rank as their built-in role).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppRoleChange {
    /// A role of the app's manifest (`GET /api/v1/roles`), or null.
    #[serde(deserialize_with = "present")]
    #[schema(required = true, value_type = Option<crate::access::actions::AppRoleName>)]
    app_role: Option<String>,
}

/// A field that must be present, even as null.
fn present<'de, D: serde::Deserializer<'de>>(field: D) -> Result<Option<String>, D::Error> {
    Option::<String>::deserialize(field)
}

/// Exactly one of a built-in role and an app role.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum RoleChange {
    Builtin(BuiltinRoleChange),
    App(AppRoleChange),
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
pub(super) async fn change_role(
    State(state): State<AppState>,
    permitted: Permitted<act::MembersUpdateRole>,
    context: RequestContext,
    Path(raw): Path<String>,
    Json(body): Json<RoleChange>,
) -> Result<StatusCode, ApiError> {
    let user: UserId = id_or_404(&raw)?;
    let (tenancy, caller, origin) = (&state.tenancy, &permitted.caller, origin(context));
    match body {
        RoleChange::Builtin(change) => {
            tenancy
                .change_role(caller, user, change.role, &origin)
                .await?
        }
        RoleChange::App(change) => {
            tenancy
                .assign_app_role(caller, user, change.app_role.as_deref(), &origin)
                .await?
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
pub(super) async fn remove_member(
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
pub(super) async fn transfer_ownership(
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
