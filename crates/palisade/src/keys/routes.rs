//! API keys' HTTP surface (claims KEY-1 to KEY-5). A key's text appears in exactly two
//! responses, creation and rotation, and never again.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::store::KeyRecord;
use super::{IssuedKey, NewKey};
use crate::access::actions::act;
use crate::access::Role;
use crate::app::AppState;
use crate::http::auth::{Permitted, PermittedPerson};
use crate::http::error::ApiError;
use crate::http::extract::whole_number;
use crate::http::extract::{id_or_404, Json, RequestContext};
use crate::http::openapi::ErrorBody;
use crate::identity::routes::origin;
use crate::ids::{ApiKeyId, ApplicationId, UserId};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_keys, create_key))
        .routes(routes!(revoke_key))
        .routes(routes!(rotate_key))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyRequest {
    /// What the key is for, 1 to 100 characters.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]([^\\u0000-\\u001f\\u007f-\\u009f]*[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000])?$"
    )]
    name: String,
    /// At most the creator's role; never `owner`.
    role: Role,
    /// Narrows the role to these actions (`GET /api/v1/roles` lists them); omitted: all
    /// the role allows, except the people-only actions.
    #[serde(default)]
    #[schema(value_type = Option<Vec<crate::access::actions::KeyScopeName>>, min_items = 1, max_items = 100)]
    scopes: Option<Vec<String>>,
    /// Makes the key an Agent of this application.
    #[serde(default)]
    application_id: Option<ApplicationId>,
    /// Lifetime in days (1 to 3650); omitted: until revoked.
    #[serde(default, deserialize_with = "whole_number::optional")]
    #[schema(minimum = 1, maximum = 3650)]
    expires_in_days: Option<i64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    /// Seconds the old secret keeps working (0 to 604800); omitted or 0: it dies now.
    #[serde(default, deserialize_with = "whole_number::required")]
    #[schema(minimum = 0, maximum = 604800)]
    overlap_seconds: i64,
}

#[derive(Serialize, ToSchema)]
pub struct KeyView {
    /// The public id, also inside the key text.
    id: ApiKeyId,
    name: String,
    role: Role,
    scopes: Option<Vec<String>>,
    application_id: Option<ApplicationId>,
    /// `active`, `expired` or `revoked`.
    status: &'static str,
    created_by: UserId,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    rotated_at: Option<OffsetDateTime>,
    /// Until when the secret replaced by the last rotation still works.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    previous_secret_expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    revoked_at: Option<OffsetDateTime>,
    /// Coarse: recorded at most about once a minute.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    last_used_at: Option<OffsetDateTime>,
}

impl KeyView {
    fn new(record: KeyRecord, now: OffsetDateTime) -> Self {
        let status = if record.revoked_at.is_some() {
            "revoked"
        } else if record.expires_at.is_some_and(|at| now >= at) {
            "expired"
        } else {
            "active"
        };
        Self {
            id: record.id,
            name: record.name,
            role: record.role,
            scopes: record
                .scopes
                .map(|s| s.split_whitespace().map(str::to_owned).collect()),
            application_id: record.application,
            status,
            created_by: record.created_by,
            created_at: record.created_at,
            expires_at: record.expires_at,
            rotated_at: record.rotated_at,
            previous_secret_expires_at: record.previous_expires_at.filter(|at| now < *at),
            revoked_at: record.revoked_at,
            last_used_at: record.last_used_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct IssuedKeyView {
    #[serde(flatten)]
    key: KeyView,
    /// The key itself. Shown only now: store it; it cannot be shown again.
    #[schema(example = "pal_live_0192…")]
    secret: String,
}

fn issued(issued: IssuedKey, now: OffsetDateTime) -> IssuedKeyView {
    IssuedKeyView {
        secret: issued.key.expose_secret().to_owned(),
        key: KeyView::new(issued.record, now),
    }
}

/// The tenant's API keys (never their secrets); an application's key sees its own
/// application's keys only.
///
/// Action: `keys.read`.
#[utoipa::path(
    get,
    path = "/api/v1/api-keys",
    tag = "api-keys",
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Keys", body = [KeyView]),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow this action", body = ErrorBody),
    )
)]
async fn list_keys(
    State(state): State<AppState>,
    permitted: Permitted<act::KeysRead>,
) -> Result<axum::Json<Vec<KeyView>>, ApiError> {
    let keys = state.keys.list(&permitted.caller).await?;
    let now = state.clock.now();
    Ok(axum::Json(
        keys.into_iter().map(|k| KeyView::new(k, now)).collect(),
    ))
}

/// Create an API key: its text is in this response only.
///
/// Action: `keys.create` (people only).
#[utoipa::path(
    post,
    path = "/api/v1/api-keys",
    tag = "api-keys",
    request_body = KeyRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created; `secret` is shown only now", body = IssuedKeyView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow this action or this role", body = ErrorBody),
        (status = 422, description = "Invalid body", body = ErrorBody),
    )
)]
async fn create_key(
    State(state): State<AppState>,
    permitted: PermittedPerson<act::KeysCreate>,
    context: RequestContext,
    Json(body): Json<KeyRequest>,
) -> Result<(StatusCode, axum::Json<IssuedKeyView>), ApiError> {
    let request = NewKey {
        name: body.name,
        role: body.role,
        scopes: body.scopes,
        application: body.application_id,
        expires_in_days: body.expires_in_days,
    };
    let key = state
        .keys
        .create(&permitted.person, request, &origin(context))
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(issued(key, state.clock.now())),
    ))
}

/// Revoke an API key: it fails on the very next request, on every instance.
///
/// Action: `keys.revoke` (people only).
#[utoipa::path(
    delete,
    path = "/api/v1/api-keys/{key_id}",
    tag = "api-keys",
    security(("bearer" = [])),
    params(("key_id" = ApiKeyId, Path, description = "A key of the caller's tenant")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow this action", body = ErrorBody),
        (status = 404, description = "No live key of that id in this tenant", body = ErrorBody),
    )
)]
async fn revoke_key(
    State(state): State<AppState>,
    permitted: PermittedPerson<act::KeysRevoke>,
    context: RequestContext,
    Path(raw): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id: ApiKeyId = id_or_404(&raw)?;
    state
        .keys
        .revoke(&permitted.person, id, &origin(context))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Rotate an API key: a new secret now; the old one works for the overlap, then dies.
///
/// Action: `keys.create` (people only).
#[utoipa::path(
    post,
    path = "/api/v1/api-keys/{key_id}/rotate",
    tag = "api-keys",
    request_body = RotateRequest,
    security(("bearer" = [])),
    params(("key_id" = ApiKeyId, Path, description = "A key of the caller's tenant")),
    responses(
        (status = 200, description = "Rotated; `secret` is shown only now", body = IssuedKeyView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow this action", body = ErrorBody),
        (status = 404, description = "No live key of that id in this tenant", body = ErrorBody),
        (status = 422, description = "Invalid body", body = ErrorBody),
    )
)]
async fn rotate_key(
    State(state): State<AppState>,
    permitted: PermittedPerson<act::KeysCreate>,
    context: RequestContext,
    Path(raw): Path<String>,
    Json(body): Json<RotateRequest>,
) -> Result<axum::Json<IssuedKeyView>, ApiError> {
    let id: ApiKeyId = id_or_404(&raw)?;
    let key = state
        .keys
        .rotate(
            &permitted.person,
            id,
            body.overlap_seconds,
            &origin(context),
        )
        .await?;
    Ok(axum::Json(issued(key, state.clock.now())))
}
