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

use super::actions::{act, ACTIONS};
use super::members::TenancyError;
use super::Role;
use crate::app::AppState;
use crate::http::auth::Permitted;
use crate::http::error::ApiError;
use crate::http::extract::{Json, RequestContext};
use crate::http::openapi::ErrorBody;
use crate::ids::UserId;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(roles))
        .routes(routes!(list_members))
        .routes(routes!(change_role, remove_member))
}

impl From<TenancyError> for ApiError {
    fn from(error: TenancyError) -> Self {
        match error {
            TenancyError::NotFound => ApiError::NotFound,
            TenancyError::Forbidden(text) => {
                ApiError::refused(StatusCode::FORBIDDEN, "forbidden", text)
            }
            TenancyError::LastOwner => {
                ApiError::refused(StatusCode::CONFLICT, "conflict", error.to_string())
            }
            TenancyError::Store(store) => store.into(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ActionView {
    #[schema(example = "members.invite")]
    action: &'static str,
    description: &'static str,
    /// The built-in roles allowed, strongest first.
    roles: Vec<Role>,
}

/// The action table: every action and the built-in roles allowed to do it.
#[utoipa::path(
    get,
    path = "/api/v1/roles",
    tag = "tenancy",
    responses((status = 200, description = "The action table", body = [ActionView]))
)]
async fn roles() -> axum::Json<Vec<ActionView>> {
    axum::Json(
        ACTIONS
            .iter()
            .map(|action| ActionView {
                action: action.name(),
                description: action.description(),
                roles: Role::ALL
                    .into_iter()
                    .filter(|role| role.may(*action))
                    .collect(),
            })
            .collect(),
    )
}

#[derive(Serialize, ToSchema)]
pub struct MemberView {
    user_id: UserId,
    email: String,
    role: Role,
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
    security(("bearer" = [])),
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
    let members = state.tenancy.members(&permitted.principal).await?;
    Ok(axum::Json(
        members
            .into_iter()
            .map(|m| MemberView {
                user_id: m.user_id,
                email: m.email,
                role: m.role,
                joined_at: m.joined_at,
            })
            .collect(),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleChange {
    role: Role,
}

fn user_id(raw: &str) -> Result<UserId, ApiError> {
    // A malformed id is as absent as another tenant's (claim TEN-4).
    raw.parse().map_err(|_| ApiError::NotFound)
}

/// Change a member's role: never one's own, never above one's own, never a member above
/// oneself, and never the last Owner's.
///
/// Action: `members.update_role`.
#[utoipa::path(
    patch,
    path = "/api/v1/members/{user_id}",
    tag = "tenancy",
    request_body = RoleChange,
    security(("bearer" = [])),
    params(("user_id" = UserId, Path, description = "A member of the caller's tenant")),
    responses(
        (status = 204, description = "Changed"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not allowed (role, or escalation)", body = ErrorBody),
        (status = 404, description = "No such member in this tenant", body = ErrorBody),
        (status = 409, description = "The last Owner", body = ErrorBody),
        (status = 422, description = "Invalid body", body = ErrorBody),
    )
)]
async fn change_role(
    State(state): State<AppState>,
    permitted: Permitted<act::MembersUpdateRole>,
    context: RequestContext,
    Path(raw): Path<String>,
    Json(body): Json<RoleChange>,
) -> Result<StatusCode, ApiError> {
    let user = user_id(&raw)?;
    state
        .tenancy
        .change_role(
            &permitted.principal,
            user,
            body.role,
            &crate::identity::routes::origin(context),
        )
        .await?;
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
    security(("bearer" = [])),
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
    let user = user_id(&raw)?;
    state
        .tenancy
        .remove(
            &permitted.principal,
            user,
            &crate::identity::routes::origin(context),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
