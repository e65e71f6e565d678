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
use super::{IssuedKey, Issuer, NewKey};
use crate::access::actions::act;
use crate::access::Role;
use crate::app::AppState;
use crate::http::auth::{MemberOrApp, Permitted, PermittedPerson};
use crate::http::error::ApiError;
use crate::http::extract::whole_number;
use crate::http::extract::{id_or_404, Json, RequestContext};
use crate::http::openapi::ErrorBody;
use crate::identity::routes::origin;
use crate::ids::{ApiKeyId, ApplicationId, ServiceId, UserId};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_keys, create_key))
        .routes(routes!(revoke_key))
        .routes(routes!(rotate_key))
        .routes(routes!(verify_key))
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
    /// Your own data about the key (a customer id, a plan): an object of at most 16 keys and
    /// 1 KiB, returned by `POST /api/v1/keys/verify`. Never put a secret here.
    #[serde(default)]
    #[schema(value_type = Option<Object>, example = json!({"customer": "cus_123", "plan": "pro"}))]
    meta: Option<serde_json::Map<String, serde_json::Value>>,
    /// The key's own rate limit, applied by `POST /api/v1/keys/verify` when the app names
    /// none.
    #[serde(default)]
    ratelimit: Option<KeyLimitView>,
}

/// A key's own rate limit: requests per window.
#[derive(Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyLimitView {
    /// 1 to 1,000,000.
    #[schema(example = 100, minimum = 1, maximum = 1_000_000)]
    limit: u32,
    /// 1 to 86,400.
    #[schema(example = 60, minimum = 1, maximum = 86_400)]
    window_seconds: u32,
}

impl From<KeyLimitView> for super::KeyLimit {
    fn from(view: KeyLimitView) -> Self {
        Self {
            limit: view.limit,
            window_seconds: view.window_seconds,
        }
    }
}

impl From<super::KeyLimit> for KeyLimitView {
    fn from(limit: super::KeyLimit) -> Self {
        Self {
            limit: limit.limit,
            window_seconds: limit.window_seconds,
        }
    }
}

/// Stored metadata as the JSON object it was given as.
fn meta_json(text: Option<&str>) -> Option<Box<serde_json::value::RawValue>> {
    text.and_then(|text| serde_json::value::RawValue::from_string(text.to_owned()).ok())
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
    /// The member who made it; null when the app's backend made it (`created_by_service`).
    created_by: Option<UserId>,
    /// The app's service credential, when its backend made the key under a tenant token.
    #[serde(skip_serializing_if = "Option::is_none")]
    created_by_service: Option<ServiceId>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    meta: Option<Box<serde_json::value::RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ratelimit: Option<KeyLimitView>,
}

impl KeyView {
    pub(crate) fn new(record: KeyRecord, now: OffsetDateTime) -> Self {
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
            scopes: record.scopes.as_deref().map(scope_names),
            application_id: record.application,
            status,
            created_by: record.created_by.member(),
            created_by_service: record.created_by.service(),
            created_at: record.created_at,
            expires_at: record.expires_at,
            rotated_at: record.rotated_at,
            previous_secret_expires_at: record.previous_expires_at.filter(|at| now < *at),
            revoked_at: record.revoked_at,
            last_used_at: record.last_used_at,
            meta: meta_json(record.meta.as_deref()),
            ratelimit: record.ratelimit.map(KeyLimitView::from),
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
/// Action: `keys.create` (people only), or the app's backend under a tenant token, for a key
/// scoped to the manifest's actions only (claim APP-5).
#[utoipa::path(
    post,
    path = "/api/v1/api-keys",
    tag = "api-keys",
    request_body = KeyRequest,
    security(("bearer" = []), ("tenant_token" = [])),
    responses(
        (status = 201, description = "Created; `secret` is shown only now", body = IssuedKeyView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow this action or this role", body = ErrorBody),
        (status = 422, description = "Invalid body", body = ErrorBody),
    )
)]
async fn create_key(
    State(state): State<AppState>,
    caller: MemberOrApp<act::KeysCreate>,
    context: RequestContext,
    Json(body): Json<KeyRequest>,
) -> Result<(StatusCode, axum::Json<IssuedKeyView>), ApiError> {
    let request = NewKey {
        name: body.name,
        role: body.role,
        scopes: body.scopes,
        application: body.application_id,
        expires_in_days: body.expires_in_days,
        meta: body.meta,
        ratelimit: body.ratelimit.map(Into::into),
    };
    let issuer = match &caller {
        MemberOrApp::Member(permitted) => Issuer::Member(&permitted.person),
        MemberOrApp::App(token) => Issuer::App(token),
    };
    let key = state
        .keys
        .create(&issuer, request, &origin(context))
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

/// The app's backend verifying a key its customer presented (claim APP-5).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// The key as the customer sent it (`pal_live_…`).
    #[schema(value_type = String, min_length = 1, max_length = 512)]
    key: secrecy::SecretString,
    /// An action the key must allow (Palisade's or the manifest's): `forbidden` if not.
    #[serde(default)]
    #[schema(example = "workorder.read")]
    action: Option<String>,
    /// A limit to charge this use of the key to, counted per key: `rate_limited` when over.
    /// Omitted: the key's own limit, if its owner set one.
    #[serde(default)]
    ratelimit: Option<crate::ratelimit::routes::LimitSpec>,
}

/// The verdict: always 200 once the caller is the app's backend.
#[derive(Serialize, ToSchema)]
pub struct VerifyResponse {
    valid: bool,
    /// `valid`, `not_found` (malformed, unknown or a wrong secret), `revoked`, `expired`,
    /// `disabled` (the key's tenant is suspended), `forbidden` (the action is not the
    /// key's), `rate_limited`.
    #[schema(example = "valid")]
    code: &'static str,
    /// The key, once its secret is right and it is live.
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<VerifiedKeyView>,
    /// The limit's decision, when the request named one and the key is otherwise valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    ratelimit: Option<crate::ratelimit::routes::CheckResponse>,
}

#[derive(Serialize, ToSchema)]
pub struct VerifiedKeyView {
    id: ApiKeyId,
    tenant_id: crate::ids::TenantId,
    #[schema(value_type = Option<String>)]
    application_id: Option<ApplicationId>,
    #[schema(value_type = String, example = "member")]
    role: Role,
    /// The key's scopes (action names), or none: its role's actions.
    #[serde(skip_serializing_if = "Option::is_none")]
    scopes: Option<Vec<String>>,
    /// The metadata its owner stored with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    meta: Option<Box<serde_json::value::RawValue>>,
}

impl VerifyResponse {
    fn refused(code: &'static str) -> Self {
        Self {
            valid: false,
            code,
            key: None,
            ratelimit: None,
        }
    }
}

/// Verify a customer's API key in one call (claim APP-5).
///
/// Always 200 with `valid` and a `code`: the key's id, tenant, application, role and scopes
/// when it is live; `forbidden` when it may not take `action`; `rate_limited` when
/// `ratelimit` is named and this use is over it (counted per key; a refused use is not
/// charged). A revocation, expiry or the end of a rotation's overlap holds on the next call
/// on every instance. Called with the app's service credential.
#[utoipa::path(
    post,
    path = "/api/v1/keys/verify",
    tag = "access",
    security(("service" = [])),
    request_body = VerifyRequest,
    responses(
        (status = 200, description = "The verdict on the key", body = VerifyResponse),
        (status = 401, description = "No valid service credential", body = ErrorBody),
        (status = 422, description = "An unknown action or a limit out of bounds", body = ErrorBody),
    )
)]
async fn verify_key(
    State(state): State<AppState>,
    _service: crate::http::auth::Service,
    Json(body): Json<VerifyRequest>,
) -> Result<axum::Json<VerifyResponse>, ApiError> {
    let action = match &body.action {
        None => None,
        Some(name) => Some(
            state
                .access
                .find(name)
                .ok_or_else(|| ApiError::invalid_field("action is not in GET /api/v1/roles"))?,
        ),
    };
    let key = match state.keys.verify(body.key.expose_secret()).await? {
        Ok(key) => key,
        Err(refusal) => return Ok(axum::Json(VerifyResponse::refused(refusal.code()))),
    };
    let view = VerifiedKeyView {
        id: key.id(),
        tenant_id: key.tenant(),
        application_id: key.application(),
        role: key.role(),
        scopes: key.stored_scopes().map(scope_names),
        meta: meta_json(key.meta()),
    };
    let mut answer = VerifyResponse {
        valid: true,
        code: "valid",
        key: Some(view),
        ratelimit: None,
    };
    if action.is_some_and(|row| !key.caller().may_row(row)) {
        answer.valid = false;
        answer.code = "forbidden";
        return Ok(axum::Json(answer));
    }
    let own = key
        .ratelimit()
        .map(|own| crate::ratelimit::routes::LimitSpec::per_window(own.limit, own.window_seconds));
    if let Some(spec) = body.ratelimit.as_ref().or(own.as_ref()) {
        let decision =
            crate::ratelimit::routes::charge(&state, "api_key", &key.id().to_string(), spec)
                .await?;
        if !decision.allowed() {
            answer.valid = false;
            answer.code = "rate_limited";
        }
        answer.ratelimit = Some(decision);
    }
    Ok(axum::Json(answer))
}

/// Stored scopes (space-separated action names) as the list the API shows.
fn scope_names(stored: &str) -> Vec<String> {
    stored.split_whitespace().map(str::to_owned).collect()
}
