//! Applications, the groupings Agents and API keys belong to.

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
use crate::ids::ApplicationId;

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

impl From<crate::tenancy::store::ApplicationRecord> for ApplicationView {
    fn from(record: crate::tenancy::store::ApplicationRecord) -> Self {
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
pub(super) async fn list_applications(
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
pub(super) async fn create_application(
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
pub(super) async fn delete_application(
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
