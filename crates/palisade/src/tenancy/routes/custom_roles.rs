//! A tenant's custom roles and their assignment to members.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::access::actions::act;
use crate::app::AppState;
use crate::http::auth::Permitted;
use crate::http::error::ApiError;
use crate::http::extract::{id_or_404, Json, RequestContext};
use crate::http::openapi::ErrorBody;
use crate::identity::routes::origin;
use crate::ids::{CustomRoleId, UserId};

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

impl From<crate::tenancy::store::CustomRoleRecord> for CustomRoleView {
    fn from(record: crate::tenancy::store::CustomRoleRecord) -> Self {
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
pub(super) async fn list_custom_roles(
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
pub(super) async fn create_custom_role(
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
pub(super) async fn delete_custom_role(
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
pub(super) async fn assign_custom_role(
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
