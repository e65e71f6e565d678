//! The secrets API (claim SEC-3): a tenant's named secrets for its members (actions
//! `secrets.*`), its keys, and the app's backend under a tenant token. Values go in; only a
//! reveal, with its own action and a reason, brings one out.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::store::{DataKeyRecord, SecretRecord, VersionRecord};
use super::{NewSecret, SecretError};
use crate::access::actions::act;
use crate::app::AppState;
use crate::http::auth::TenantActor;
use crate::http::error::{ApiError, ErrorCode};
use crate::http::extract::{id_or_404, Json, Query, RequestContext};
use crate::http::openapi::ErrorBody;
use crate::identity::routes::origin;
use crate::ids::SecretId;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_secrets, create_secret))
        .routes(routes!(get_secret, replace_secret, delete_secret))
        .routes(routes!(reveal_secret))
        .routes(routes!(list_data_keys, rotate_data_key))
}

impl From<SecretError> for ApiError {
    fn from(error: SecretError) -> Self {
        match error {
            SecretError::Tenancy(error) => error.into(),
            // A stored value that does not open is the deployment's fault, never the
            // caller's; the message names nothing of it.
            SecretError::Unsealable => ApiError::internal("a stored secret failed to open"),
            SecretError::Destroyed => {
                ApiError::coded(ErrorCode::SecretDestroyed, error.to_string())
            }
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// 1 to 128 of `A-Z a-z 0-9 . _ - /`, starting with a letter or digit; unique in the
    /// tenant.
    #[schema(
        example = "slack/acme-bot-token",
        pattern = "^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$"
    )]
    name: String,
    /// The value, 1 byte to 64 KiB of text. Never shown again except by a reveal.
    #[schema(value_type = String, example = "xoxb-0123456789-abcd")]
    value: SecretString,
    /// Up to 500 characters for the people who manage it.
    #[serde(default)]
    description: Option<String>,
    /// When the value stops being good (an OAuth token's expiry): recorded, not enforced.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    expires_at: Option<OffsetDateTime>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplaceRequest {
    /// The new value: it becomes the next version; the previous one is kept until deleted.
    #[schema(value_type = String)]
    value: SecretString,
    /// The new value's expiry; omitted: none.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    expires_at: Option<OffsetDateTime>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevealRequest {
    /// Why the value is needed, 1 to 500 characters: kept in the audit log.
    #[schema(example = "re-connecting the Slack integration for ticket 4411")]
    reason: String,
    /// A kept version to reveal; omitted: the current one.
    #[serde(default)]
    #[schema(minimum = 1)]
    version: Option<u32>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// Delete only this kept version (never the current one); omitted: the whole secret.
    #[param(minimum = 1)]
    version: Option<u32>,
}

/// A secret's metadata: never its value.
#[derive(Serialize, ToSchema)]
pub struct SecretView {
    id: SecretId,
    name: String,
    description: String,
    /// The current version.
    version: u32,
    /// The value masked: `••••` and, for values of 16 characters or more, the last four.
    #[schema(example = "••••abcd")]
    masked: String,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    expires_at: Option<OffsetDateTime>,
    /// The user, key or service credential that made it.
    created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    updated_at: OffsetDateTime,
    /// Every kept version, newest first (one secret's read only).
    #[serde(skip_serializing_if = "Option::is_none")]
    versions: Option<Vec<VersionView>>,
}

#[derive(Serialize, ToSchema)]
pub struct VersionView {
    version: u32,
    masked: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
}

#[derive(Serialize, ToSchema)]
pub struct RevealedView {
    #[serde(flatten)]
    secret: SecretView,
    /// The version whose value this is.
    revealed_version: u32,
    /// The value itself.
    #[schema(value_type = String)]
    value: RevealedValue,
}

/// The revealed value, written into the answer straight from its zeroized buffer.
struct RevealedValue(SecretString);

impl Serialize for RevealedValue {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0.expose_secret())
    }
}

fn masked(hint: Option<&str>) -> String {
    format!("••••{}", hint.unwrap_or(""))
}

impl SecretView {
    pub(crate) fn new(record: SecretRecord, versions: Option<Vec<VersionRecord>>) -> Self {
        Self {
            id: record.id,
            masked: masked(record.hint.as_deref()),
            name: record.name,
            description: record.description,
            version: record.version,
            expires_at: record.expires_at,
            created_by: record.created_by,
            created_at: record.created_at,
            updated_at: record.updated_at,
            versions: versions.map(|versions| {
                versions
                    .into_iter()
                    .map(|v| VersionView {
                        version: v.version,
                        masked: masked(v.hint.as_deref()),
                        created_at: v.created_at,
                    })
                    .collect()
            }),
        }
    }
}

/// The tenant's secrets, masked.
///
/// Action: `secrets.read`, or the app's backend under a tenant token.
#[utoipa::path(
    get,
    path = "/api/v1/secrets",
    tag = "secrets",
    security(("bearer" = []), ("api_key" = []), ("tenant_token" = [])),
    responses(
        (status = 200, description = "Secrets, by name", body = [SecretView]),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow this action", body = ErrorBody),
    )
)]
async fn list_secrets(
    State(state): State<AppState>,
    actor: TenantActor<act::SecretsRead>,
) -> Result<axum::Json<Vec<SecretView>>, ApiError> {
    let records = state.secrets.list(actor.scope()).await?;
    Ok(axum::Json(
        records
            .into_iter()
            .map(|r| SecretView::new(r, None))
            .collect(),
    ))
}

/// Store a secret: sealed under the tenant's data key; the answer shows it masked.
///
/// Action: `secrets.write`, or the app's backend under a tenant token.
#[utoipa::path(
    post,
    path = "/api/v1/secrets",
    tag = "secrets",
    request_body = CreateRequest,
    security(("bearer" = []), ("api_key" = []), ("tenant_token" = [])),
    responses(
        (status = 201, description = "Stored", body = SecretView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow this action", body = ErrorBody),
        (status = 409, description = "A secret of that name exists in this tenant", body = ErrorBody),
        (status = 422, description = "A name that is not a name, a value over 64 KiB", body = ErrorBody),
    )
)]
async fn create_secret(
    State(state): State<AppState>,
    actor: TenantActor<act::SecretsWrite>,
    context: RequestContext,
    Json(body): Json<CreateRequest>,
) -> Result<(StatusCode, axum::Json<SecretView>), ApiError> {
    let request = NewSecret {
        name: body.name,
        description: body.description,
        value: body.value,
        expires_at: body.expires_at,
    };
    let record = state
        .secrets
        .create(&(&actor).into(), request, &origin(context))
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(SecretView::new(record, None)),
    ))
}

/// One secret, masked, with its kept versions.
///
/// Action: `secrets.read`, or the app's backend under a tenant token.
#[utoipa::path(
    get,
    path = "/api/v1/secrets/{secret_id}",
    tag = "secrets",
    security(("bearer" = []), ("api_key" = []), ("tenant_token" = [])),
    params(("secret_id" = SecretId, Path, description = "A secret of the caller's tenant")),
    responses(
        (status = 200, description = "The secret", body = SecretView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow this action", body = ErrorBody),
        (status = 404, description = "No such secret in this tenant", body = ErrorBody),
    )
)]
async fn get_secret(
    State(state): State<AppState>,
    actor: TenantActor<act::SecretsRead>,
    Path(raw): Path<String>,
) -> Result<axum::Json<SecretView>, ApiError> {
    let id: SecretId = id_or_404(&raw)?;
    let (record, versions) = state.secrets.get(actor.scope(), id).await?;
    Ok(axum::Json(SecretView::new(record, Some(versions))))
}

/// Replace a secret's value: the new value is the next version; the previous is kept (and
/// revealable) until deleted, for rotating the credential it holds.
///
/// Action: `secrets.write`, or the app's backend under a tenant token.
#[utoipa::path(
    put,
    path = "/api/v1/secrets/{secret_id}",
    tag = "secrets",
    request_body = ReplaceRequest,
    security(("bearer" = []), ("api_key" = []), ("tenant_token" = [])),
    params(("secret_id" = SecretId, Path, description = "A secret of the caller's tenant")),
    responses(
        (status = 200, description = "Replaced", body = SecretView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow this action", body = ErrorBody),
        (status = 404, description = "No such secret in this tenant", body = ErrorBody),
        (status = 409, description = "The secret keeps 100 versions already", body = ErrorBody),
        (status = 422, description = "A value over 64 KiB", body = ErrorBody),
    )
)]
async fn replace_secret(
    State(state): State<AppState>,
    actor: TenantActor<act::SecretsWrite>,
    context: RequestContext,
    Path(raw): Path<String>,
    Json(body): Json<ReplaceRequest>,
) -> Result<axum::Json<SecretView>, ApiError> {
    let id: SecretId = id_or_404(&raw)?;
    let record = state
        .secrets
        .replace(
            &(&actor).into(),
            id,
            body.value,
            body.expires_at,
            &origin(context),
        )
        .await?;
    Ok(axum::Json(SecretView::new(record, None)))
}

/// Delete a secret and every version of it, or (`?version=`) one kept version.
///
/// Action: `secrets.delete`, or the app's backend under a tenant token.
#[utoipa::path(
    delete,
    path = "/api/v1/secrets/{secret_id}",
    tag = "secrets",
    security(("bearer" = []), ("api_key" = []), ("tenant_token" = [])),
    params(
        ("secret_id" = SecretId, Path, description = "A secret of the caller's tenant"),
        DeleteQuery,
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow this action", body = ErrorBody),
        (status = 404, description = "No such secret or version in this tenant", body = ErrorBody),
        (status = 409, description = "The version named is the current one", body = ErrorBody),
    )
)]
async fn delete_secret(
    State(state): State<AppState>,
    actor: TenantActor<act::SecretsDelete>,
    context: RequestContext,
    Path(raw): Path<String>,
    Query(query): Query<DeleteQuery>,
) -> Result<StatusCode, ApiError> {
    let id: SecretId = id_or_404(&raw)?;
    state
        .secrets
        .delete(&(&actor).into(), id, query.version, &origin(context))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Reveal a secret's value: recorded in the tenant's audit log with who, the reason and
/// from where before the value is sent; never cached.
///
/// Action: `secrets.reveal`, or the app's backend under a tenant token.
#[utoipa::path(
    post,
    path = "/api/v1/secrets/{secret_id}/reveal",
    tag = "secrets",
    request_body = RevealRequest,
    security(("bearer" = []), ("api_key" = []), ("tenant_token" = [])),
    params(("secret_id" = SecretId, Path, description = "A secret of the caller's tenant")),
    responses(
        (status = 200, description = "The value, with the secret's metadata", body = RevealedView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow this action", body = ErrorBody),
        (status = 404, description = "No such secret or version in this tenant", body = ErrorBody),
        (status = 410, description = "The tenant's key that sealed it was destroyed", body = ErrorBody),
        (status = 422, description = "No reason, or a reason over 500 characters", body = ErrorBody),
    )
)]
async fn reveal_secret(
    State(state): State<AppState>,
    actor: TenantActor<act::SecretsReveal>,
    context: RequestContext,
    Path(raw): Path<String>,
    Json(body): Json<RevealRequest>,
) -> Result<Response, ApiError> {
    let id: SecretId = id_or_404(&raw)?;
    let revealed = state
        .secrets
        .reveal(
            &(&actor).into(),
            id,
            body.version,
            &body.reason,
            &origin(context),
        )
        .await?;
    let view = RevealedView {
        secret: SecretView::new(revealed.record, None),
        revealed_version: revealed.version,
        value: RevealedValue(revealed.value),
    };
    let mut response = axum::Json(view).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// One of the tenant's data keys: never its bytes.
#[derive(Serialize, ToSchema)]
pub struct DataKeyView {
    /// New values are sealed by the highest version; older ones retire once they seal
    /// nothing.
    version: u32,
    /// The KEK version that wraps it.
    kek_version: u32,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
    /// Set once destroyed (crypto-shredding): what it sealed opens no more.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    destroyed_at: Option<OffsetDateTime>,
    /// The values it seals: secrets' versions and webhook signing secrets.
    sealed_values: u64,
}

fn data_key_views(records: Vec<DataKeyRecord>) -> Vec<DataKeyView> {
    records
        .into_iter()
        .map(|key| DataKeyView {
            version: key.version,
            kek_version: key.kek_version,
            created_at: key.created_at,
            destroyed_at: key.destroyed_at,
            sealed_values: key.sealed_values,
        })
        .collect()
}

/// The tenant's data keys, newest first, with how many values each seals: a rotation's
/// progress.
///
/// Action: `secrets.read`, or the app's backend under a tenant token.
#[utoipa::path(
    get,
    path = "/api/v1/vault/data-keys",
    tag = "secrets",
    security(("bearer" = []), ("api_key" = []), ("tenant_token" = [])),
    responses(
        (status = 200, description = "The data keys, newest first", body = [DataKeyView]),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow this action", body = ErrorBody),
    )
)]
async fn list_data_keys(
    State(state): State<AppState>,
    actor: TenantActor<act::SecretsRead>,
) -> Result<axum::Json<Vec<DataKeyView>>, ApiError> {
    let keys = state.secrets.data_keys(actor.scope()).await?;
    Ok(axum::Json(data_key_views(keys)))
}

/// Rotate the tenant's data key: secrets written from now on are sealed by a new key, and
/// upkeep seals the stored ones again under it (a batch at a time, each value opening
/// throughout), then deletes the old key once it seals nothing. Audited.
///
/// Action: `vault.rotate_key`, or the app's backend under a tenant token.
#[utoipa::path(
    post,
    path = "/api/v1/vault/data-keys",
    tag = "secrets",
    security(("bearer" = []), ("api_key" = []), ("tenant_token" = [])),
    responses(
        (status = 201, description = "The data keys after the rotation, the new one first", body = [DataKeyView]),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow this action", body = ErrorBody),
    )
)]
async fn rotate_data_key(
    State(state): State<AppState>,
    actor: TenantActor<act::VaultRotateKey>,
    context: RequestContext,
) -> Result<(StatusCode, axum::Json<Vec<DataKeyView>>), ApiError> {
    let keys = state
        .secrets
        .rotate_data_key(&(&actor).into(), &origin(context))
        .await?;
    Ok((StatusCode::CREATED, axum::Json(data_key_views(keys))))
}
