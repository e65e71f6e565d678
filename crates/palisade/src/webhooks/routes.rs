//! Webhooks over HTTP (claims HOOK-1 to HOOK-4): a tenant's endpoints, their attempts,
//! replay and recovery (action `webhooks.manage`, or the app's backend under a tenant
//! token), the app's messages, and the catalogue of event types.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::inbound::Refused;
use super::store::{AttemptRecord, EndpointRecord, MessageKey, Retry};
use super::{EndpointChange, NewEndpoint, WebhookError};
use crate::access::actions::act;
use crate::app::AppState;
use crate::audit::TenantActing;
use crate::http::auth::TenantActor;
use crate::http::error::{ApiError, ErrorCode};
use crate::http::extract::{id_or_404, DigestedJson, Json, Query, RawJson, RequestContext};
use crate::http::openapi::ErrorBody;
use crate::identity::routes::origin;
use crate::ids::{AttemptId, EndpointId, MessageId};

type Manage = TenantActor<act::WebhooksManage>;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(event_types))
        .routes(routes!(list_endpoints, create_endpoint))
        .routes(routes!(get_endpoint, update_endpoint, delete_endpoint))
        .routes(routes!(rotate_secret))
        .routes(routes!(list_attempts))
        .routes(routes!(replay_message))
        .routes(routes!(recover_failed))
        .routes(routes!(send_message))
        .routes(routes!(receive_inbound))
}

impl From<WebhookError> for ApiError {
    fn from(error: WebhookError) -> Self {
        match error {
            WebhookError::Invalid(invalid) => ApiError::invalid_field(invalid.0),
            WebhookError::Url(_)
            | WebhookError::UnknownEventType(_)
            | WebhookError::NotAppEvent => ApiError::invalid_field(error.to_string()),
            WebhookError::TooManyEndpoints => {
                ApiError::coded(ErrorCode::Conflict, error.to_string())
            }
            WebhookError::NotFound | WebhookError::UnknownSource => ApiError::NotFound,
            WebhookError::Refused(Refused::NotJson) => ApiError::coded(
                ErrorCode::MalformedJson,
                "the body is not valid JSON; nothing was written",
            ),
            WebhookError::Refused(Refused::NoEventId) => ApiError::invalid_field(error.to_string()),
            WebhookError::Refused(_) => {
                ApiError::coded(ErrorCode::InvalidSignature, error.to_string())
            }
            WebhookError::InboundTooLarge => ApiError::PayloadTooLarge,
            WebhookError::KeyReused => {
                ApiError::coded(ErrorCode::IdempotencyKeyReused, error.to_string())
            }
            WebhookError::Store(error) => error.into(),
        }
    }
}

fn rfc3339_us(us: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000).ok()
}

#[derive(Serialize, ToSchema)]
pub struct EventTypeView {
    #[schema(example = "session.revoked")]
    name: String,
    description: String,
    /// `palisade` (Palisade's own), `app` (the manifest's: what the app may send) or
    /// `inbound` (a configured inbound source's events, handed on).
    #[schema(example = "palisade")]
    source: &'static str,
}

/// Every event type an endpoint may subscribe to: Palisade's own and the manifest's.
///
/// Action: `webhooks.manage`, or the app's backend under a tenant token.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks/event-types",
    tag = "webhooks",
    security(("bearer" = []), ("api_key" = []), ("tenant_token" = [])),
    responses(
        (status = 200, description = "The catalogue", body = [EventTypeView]),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow this action", body = ErrorBody),
    )
)]
async fn event_types(
    State(state): State<AppState>,
    _actor: Manage,
) -> axum::Json<Vec<EventTypeView>> {
    let own = crate::access::events::OWN_EVENTS
        .iter()
        .map(|e| EventTypeView {
            name: e.name.to_owned(),
            description: e.description.to_owned(),
            source: "palisade",
        });
    let app = state.access.app_events().iter().map(|e| EventTypeView {
        name: e.name.to_string(),
        description: e.description.to_string(),
        source: "app",
    });
    let inbound = state
        .webhooks
        .inbound_event_types()
        .map(|name| EventTypeView {
            name: name.to_owned(),
            description: "A verified webhook of this inbound source, handed on".to_owned(),
            source: "inbound",
        });
    axum::Json(own.chain(app).chain(inbound).collect())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpointRequest {
    /// An https URL whose host resolves to public addresses only (unless the operator's
    /// `webhooks.allowed_networks` names them); checked again at every delivery.
    #[schema(example = "https://hooks.example.com/palisade")]
    url: String,
    /// 1 to 64 event types (`GET /api/v1/webhooks/event-types`).
    #[schema(example = json!(["session.revoked", "member.removed"]))]
    event_types: Vec<String>,
    /// Up to 500 characters.
    #[serde(default)]
    description: Option<String>,
    /// Default true.
    #[serde(default)]
    enabled: Option<bool>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateEndpointRequest {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    event_types: Option<Vec<String>>,
    #[serde(default)]
    description: Option<String>,
    /// Enabling an endpoint disabled for failing starts its count of failures afresh;
    /// what failed meanwhile is sent again by `…/recover`.
    #[serde(default)]
    enabled: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct EndpointView {
    id: EndpointId,
    url: String,
    description: String,
    event_types: Vec<String>,
    enabled: bool,
    /// Why it is disabled: `manual`, or `failing` (every attempt failed for
    /// `webhooks.disable_after_days`).
    #[serde(skip_serializing_if = "Option::is_none")]
    disabled_reason: Option<String>,
    /// When its current run of failed attempts began.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    failing_since: Option<OffsetDateTime>,
    created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    updated_at: OffsetDateTime,
}

impl From<EndpointRecord> for EndpointView {
    fn from(record: EndpointRecord) -> Self {
        Self {
            id: record.id,
            url: record.url,
            description: record.description,
            event_types: record.event_types,
            enabled: record.enabled,
            disabled_reason: record.disabled_reason,
            failing_since: record.failing_since_us.and_then(rfc3339_us),
            created_by: record.created_by,
            created_at: record.created_at,
            updated_at: record.updated_at,
        }
    }
}

/// An endpoint with its signing secret, which only this answer shows.
#[derive(Serialize, ToSchema)]
pub struct CreatedEndpointView {
    #[serde(flatten)]
    endpoint: EndpointView,
    /// `whsec_…`: configure the receiver's Standard Webhooks verifier with it. Shown once.
    #[schema(value_type = String, example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    secret: String,
}

/// The tenant's webhook endpoints.
///
/// Action: `webhooks.manage`, or the app's backend under a tenant token.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks/endpoints",
    tag = "webhooks",
    security(("bearer" = []), ("api_key" = []), ("tenant_token" = [])),
    responses(
        (status = 200, description = "Endpoints, oldest first", body = [EndpointView]),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow this action", body = ErrorBody),
    )
)]
async fn list_endpoints(
    State(state): State<AppState>,
    actor: Manage,
) -> Result<axum::Json<Vec<EndpointView>>, ApiError> {
    let endpoints = state.webhooks.endpoints(actor.scope()).await?;
    Ok(axum::Json(endpoints.into_iter().map(Into::into).collect()))
}

/// Register an endpoint; the answer carries its signing secret, shown this once.
///
/// Action: `webhooks.manage`, or the app's backend under a tenant token.
#[utoipa::path(
    post,
    path = "/api/v1/webhooks/endpoints",
    tag = "webhooks",
    request_body = CreateEndpointRequest,
    security(("bearer" = []), ("api_key" = []), ("tenant_token" = [])),
    responses(
        (status = 201, description = "Registered", body = CreatedEndpointView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow this action", body = ErrorBody),
        (status = 409, description = "The tenant has 50 endpoints", body = ErrorBody),
        (status = 422, description = "Not https, a private or unresolvable host, an unknown event type", body = ErrorBody),
    )
)]
async fn create_endpoint(
    State(state): State<AppState>,
    actor: Manage,
    context: RequestContext,
    Json(body): Json<CreateEndpointRequest>,
) -> Result<(StatusCode, axum::Json<CreatedEndpointView>), ApiError> {
    let request = NewEndpoint {
        url: body.url,
        description: body.description,
        event_types: body.event_types,
        enabled: body.enabled.unwrap_or(true),
    };
    let (record, secret) = state
        .webhooks
        .create_endpoint(&TenantActing::from(&actor), request, &origin(context))
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedEndpointView {
            endpoint: record.into(),
            secret: secret.to_string(),
        }),
    ))
}

/// One endpoint.
///
/// Action: `webhooks.manage`, or the app's backend under a tenant token.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks/endpoints/{endpoint_id}",
    tag = "webhooks",
    security(("bearer" = []), ("api_key" = []), ("tenant_token" = [])),
    params(("endpoint_id" = EndpointId, Path, description = "An endpoint of the caller's tenant")),
    responses(
        (status = 200, description = "The endpoint", body = EndpointView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow this action", body = ErrorBody),
        (status = 404, description = "No such endpoint in this tenant", body = ErrorBody),
    )
)]
async fn get_endpoint(
    State(state): State<AppState>,
    actor: Manage,
    Path(raw): Path<String>,
) -> Result<axum::Json<EndpointView>, ApiError> {
    let id: EndpointId = id_or_404(&raw)?;
    Ok(axum::Json(
        state.webhooks.endpoint(actor.scope(), id).await?.into(),
    ))
}

/// Change an endpoint's url, subscriptions, description or enabled state.
///
/// Action: `webhooks.manage`, or the app's backend under a tenant token.
#[utoipa::path(
    patch,
    path = "/api/v1/webhooks/endpoints/{endpoint_id}",
    tag = "webhooks",
    request_body = UpdateEndpointRequest,
    security(("bearer" = []), ("api_key" = []), ("tenant_token" = [])),
    params(("endpoint_id" = EndpointId, Path, description = "An endpoint of the caller's tenant")),
    responses(
        (status = 200, description = "Changed", body = EndpointView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow this action", body = ErrorBody),
        (status = 404, description = "No such endpoint in this tenant", body = ErrorBody),
        (status = 422, description = "Not https, a private host, an unknown event type", body = ErrorBody),
    )
)]
async fn update_endpoint(
    State(state): State<AppState>,
    actor: Manage,
    context: RequestContext,
    Path(raw): Path<String>,
    Json(body): Json<UpdateEndpointRequest>,
) -> Result<axum::Json<EndpointView>, ApiError> {
    let id: EndpointId = id_or_404(&raw)?;
    let change = EndpointChange {
        url: body.url,
        description: body.description,
        event_types: body.event_types,
        enabled: body.enabled,
    };
    let record = state
        .webhooks
        .update_endpoint(&TenantActing::from(&actor), id, change, &origin(context))
        .await?;
    Ok(axum::Json(record.into()))
}

/// Delete an endpoint, its secrets and its attempts; nothing more is sent to it.
///
/// Action: `webhooks.manage`, or the app's backend under a tenant token.
#[utoipa::path(
    delete,
    path = "/api/v1/webhooks/endpoints/{endpoint_id}",
    tag = "webhooks",
    security(("bearer" = []), ("api_key" = []), ("tenant_token" = [])),
    params(("endpoint_id" = EndpointId, Path, description = "An endpoint of the caller's tenant")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow this action", body = ErrorBody),
        (status = 404, description = "No such endpoint in this tenant", body = ErrorBody),
    )
)]
async fn delete_endpoint(
    State(state): State<AppState>,
    actor: Manage,
    context: RequestContext,
    Path(raw): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id: EndpointId = id_or_404(&raw)?;
    state
        .webhooks
        .delete_endpoint(&TenantActing::from(&actor), id, &origin(context))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    /// How long the current secret keeps signing beside the new one: 0 to 604800 seconds
    /// (7 days); default 86400.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 604800)]
    overlap_seconds: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct RotatedView {
    /// The new `whsec_…` secret, shown once. Until the overlap ends, deliveries carry a
    /// signature by each live secret.
    #[schema(value_type = String)]
    secret: String,
}

/// Rotate an endpoint's signing secret, with an overlap in which both sign.
///
/// Action: `webhooks.manage`, or the app's backend under a tenant token.
#[utoipa::path(
    post,
    path = "/api/v1/webhooks/endpoints/{endpoint_id}/rotate-secret",
    tag = "webhooks",
    request_body = RotateRequest,
    security(("bearer" = []), ("api_key" = []), ("tenant_token" = [])),
    params(("endpoint_id" = EndpointId, Path, description = "An endpoint of the caller's tenant")),
    responses(
        (status = 200, description = "The new secret", body = RotatedView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow this action", body = ErrorBody),
        (status = 404, description = "No such endpoint in this tenant", body = ErrorBody),
        (status = 422, description = "An overlap out of range", body = ErrorBody),
    )
)]
async fn rotate_secret(
    State(state): State<AppState>,
    actor: Manage,
    context: RequestContext,
    Path(raw): Path<String>,
    Json(body): Json<RotateRequest>,
) -> Result<axum::Json<RotatedView>, ApiError> {
    let id: EndpointId = id_or_404(&raw)?;
    let overlap = body.overlap_seconds.map(time::Duration::seconds);
    let secret = state
        .webhooks
        .rotate_secret(&TenantActing::from(&actor), id, overlap, &origin(context))
        .await?;
    Ok(axum::Json(RotatedView {
        secret: secret.to_string(),
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AttemptsQuery {
    /// 1 to 100; default 50.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// The cursor: attempts made before this time (RFC 3339), as the last page's
    /// `attempted_at`.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    before: Option<OffsetDateTime>,
}

#[derive(Serialize, ToSchema)]
pub struct AttemptView {
    id: AttemptId,
    message_id: MessageId,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    attempted_at: OffsetDateTime,
    succeeded: bool,
    /// The receiver's HTTP status; absent when no answer came.
    #[serde(skip_serializing_if = "Option::is_none")]
    status_code: Option<i32>,
    latency_ms: i32,
    /// The answer's first KiB, or why there was none (refused address, TLS, timeout).
    response: String,
}

impl From<AttemptRecord> for AttemptView {
    fn from(record: AttemptRecord) -> Self {
        Self {
            id: record.id,
            message_id: record.message,
            attempted_at: rfc3339_us(record.attempted_us).unwrap_or(OffsetDateTime::UNIX_EPOCH),
            succeeded: record.succeeded,
            status_code: record.status_code,
            latency_ms: record.latency_ms,
            response: record.response,
        }
    }
}

/// Every delivery attempt to an endpoint, newest first.
///
/// Action: `webhooks.manage`, or the app's backend under a tenant token.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks/endpoints/{endpoint_id}/attempts",
    tag = "webhooks",
    security(("bearer" = []), ("api_key" = []), ("tenant_token" = [])),
    params(
        ("endpoint_id" = EndpointId, Path, description = "An endpoint of the caller's tenant"),
        AttemptsQuery
    ),
    responses(
        (status = 200, description = "Attempts", body = [AttemptView]),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow this action", body = ErrorBody),
        (status = 404, description = "No such endpoint in this tenant", body = ErrorBody),
    )
)]
async fn list_attempts(
    State(state): State<AppState>,
    actor: Manage,
    Path(raw): Path<String>,
    Query(query): Query<AttemptsQuery>,
) -> Result<axum::Json<Vec<AttemptView>>, ApiError> {
    let id: EndpointId = id_or_404(&raw)?;
    let attempts = state
        .webhooks
        .attempts(
            actor.scope(),
            id,
            query.before.map(crate::audit::store::micros),
            query.limit.unwrap_or(50),
        )
        .await?;
    Ok(axum::Json(attempts.into_iter().map(Into::into).collect()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// A message of the tenant's: sent to this endpoint again now (or for the first time,
    /// if it subscribed later).
    message_id: MessageId,
}

#[derive(Serialize, ToSchema)]
pub struct RequeuedView {
    /// Deliveries put back in the queue.
    requeued: u64,
}

/// Send one message to an endpoint again.
///
/// Action: `webhooks.manage`, or the app's backend under a tenant token.
#[utoipa::path(
    post,
    path = "/api/v1/webhooks/endpoints/{endpoint_id}/replay",
    tag = "webhooks",
    request_body = ReplayRequest,
    security(("bearer" = []), ("api_key" = []), ("tenant_token" = [])),
    params(("endpoint_id" = EndpointId, Path, description = "An endpoint of the caller's tenant")),
    responses(
        (status = 202, description = "Queued (0 when the message is not the tenant's)", body = RequeuedView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow this action", body = ErrorBody),
        (status = 404, description = "No such endpoint in this tenant", body = ErrorBody),
    )
)]
async fn replay_message(
    State(state): State<AppState>,
    actor: Manage,
    context: RequestContext,
    Path(raw): Path<String>,
    Json(body): Json<ReplayRequest>,
) -> Result<(StatusCode, axum::Json<RequeuedView>), ApiError> {
    requeue(
        &state,
        &actor,
        context,
        &raw,
        Retry::Message(body.message_id),
    )
    .await
}

/// Puts `which` of the endpoint `raw` back in the queue: replay and recovery alike.
async fn requeue(
    state: &AppState,
    actor: &Manage,
    context: RequestContext,
    raw: &str,
    which: Retry,
) -> Result<(StatusCode, axum::Json<RequeuedView>), ApiError> {
    let id: EndpointId = id_or_404(raw)?;
    let requeued = state
        .webhooks
        .retry(&TenantActing::from(actor), id, which, &origin(context))
        .await?;
    Ok((StatusCode::ACCEPTED, axum::Json(RequeuedView { requeued })))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoverRequest {
    /// Every message written since then (RFC 3339) not yet delivered to this endpoint —
    /// failed for good, or waiting for a retry — is sent now.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    since: OffsetDateTime,
}

/// Send now everything not yet delivered since a time: recovery after an outage.
///
/// Action: `webhooks.manage`, or the app's backend under a tenant token.
#[utoipa::path(
    post,
    path = "/api/v1/webhooks/endpoints/{endpoint_id}/recover",
    tag = "webhooks",
    request_body = RecoverRequest,
    security(("bearer" = []), ("api_key" = []), ("tenant_token" = [])),
    params(("endpoint_id" = EndpointId, Path, description = "An endpoint of the caller's tenant")),
    responses(
        (status = 202, description = "Queued", body = RequeuedView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow this action", body = ErrorBody),
        (status = 404, description = "No such endpoint in this tenant", body = ErrorBody),
    )
)]
async fn recover_failed(
    State(state): State<AppState>,
    actor: Manage,
    context: RequestContext,
    Path(raw): Path<String>,
    Json(body): Json<RecoverRequest>,
) -> Result<(StatusCode, axum::Json<RequeuedView>), ApiError> {
    let since = Retry::FailedSince(crate::audit::store::micros(body.since));
    requeue(&state, &actor, context, &raw, since).await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageRequest {
    /// An event type the manifest declares (`[[events]]`).
    #[schema(example = "workorder.status_changed")]
    event_type: String,
    /// A JSON object, at most 64 KiB: delivered as the body's `data`. Identifiers and
    /// status, not personal data: receivers fetch details over an authenticated call.
    #[schema(value_type = Object, example = json!({"workorder_id": "wo_123", "status": "done"}))]
    payload: serde_json::Value,
}

#[derive(Serialize, ToSchema)]
pub struct MessageView {
    /// The message's id: every delivery's `webhook-id`.
    id: MessageId,
}

/// Send the app's own event to every endpoint of the tenant subscribed to its type.
///
/// The body every endpoint receives is `{"type", "timestamp", "data"}`, signed the
/// Standard Webhooks way. With an `Idempotency-Key`, the same key and body answer the
/// first message again (`Idempotent-Replayed: true`), another body is a 409.
///
/// Action: `webhooks.manage`, or the app's backend under a tenant token.
#[utoipa::path(
    post,
    path = "/api/v1/webhooks/messages",
    tag = "webhooks",
    request_body = MessageRequest,
    security(("tenant_token" = []), ("bearer" = []), ("api_key" = [])),
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "1-255 visible ASCII characters")),
    responses(
        (status = 202, description = "Written to the outbox", body = MessageView),
        (status = 200, description = "A retry with the same Idempotency-Key and body: the first message", body = MessageView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow this action", body = ErrorBody),
        (status = 409, description = "The Idempotency-Key was used with another body", body = ErrorBody),
        (status = 422, description = "An event type the manifest does not declare, a payload that is not an object or is over 64 KiB", body = ErrorBody),
    )
)]
async fn send_message(
    State(state): State<AppState>,
    actor: Manage,
    context: RequestContext,
    headers: HeaderMap,
    body: DigestedJson<MessageRequest>,
) -> Result<Response, ApiError> {
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(value) => {
            let text = value
                .to_str()
                .map_err(|_| ApiError::bad_request("Idempotency-Key is not visible ASCII"))?;
            let text = crate::audit::app::IdempotencyKey::checked(text)
                .map_err(|refused| ApiError::bad_request(refused.0))?;
            Some(MessageKey {
                key: text,
                request_sha256: body.sha256,
            })
        }
    };
    let (id, replayed) = state
        .webhooks
        .send_message(
            &TenantActing::from(&actor),
            &body.value.event_type,
            &body.value.payload,
            key,
            &origin(context),
        )
        .await?;
    let status = if replayed {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let mut response = (status, axum::Json(MessageView { id })).into_response();
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

#[derive(Serialize, ToSchema)]
pub struct InboundView {
    /// The message that hands the event on: every delivery's `webhook-id`.
    message_id: MessageId,
    /// True when this event id was received before: nothing new was written.
    duplicate: bool,
}

/// Receive a webhook from a configured source (claim HOOK-5).
///
/// The operator configures each source under `webhooks.inbound.<source>`: its scheme
/// (Standard Webhooks' `webhook-id`/`webhook-timestamp`/`webhook-signature`, or
/// Stripe's `Stripe-Signature: t=…,v1=…`), its secret and its tenant. The signature is
/// checked against the raw body, with a 5-minute tolerance on its timestamp; the event
/// id (`webhook-id`, or the body's `id` for Stripe) is recorded once, and the event is
/// handed on to the tenant's endpoints subscribed to `inbound.<source>` as a message
/// signed by Palisade, its `data` being `{"source", "event_id", "payload"}`. A replay
/// of an event id is acknowledged with 200 and the first message's id.
///
/// No credential: the signature is the proof.
#[utoipa::path(
    post,
    path = "/api/v1/webhooks/inbound/{source}",
    tag = "webhooks",
    params(
        ("source" = String, Path, description = "The source's name in `webhooks.inbound`"),
        ("webhook-id" = Option<String>, Header, description = "Standard Webhooks sources: the event id"),
        ("webhook-timestamp" = Option<String>, Header, description = "Standard Webhooks sources: unix seconds"),
        ("webhook-signature" = Option<String>, Header, description = "Standard Webhooks sources: `v1,<base64>` entries"),
        ("Stripe-Signature" = Option<String>, Header, description = "Stripe-style sources: `t=<unix seconds>,v1=<hex>`"),
    ),
    request_body(content = Object, content_type = "application/json", description = "The sender's event, exactly as signed"),
    responses(
        (status = 202, description = "Verified, recorded, and handed on", body = InboundView),
        (status = 200, description = "A replay of an event already received: nothing new was written", body = InboundView),
        (status = 400, description = "A missing, forged or stale signature, or a body that is not JSON", body = ErrorBody),
        (status = 404, description = "No such source", body = ErrorBody),
        (status = 413, description = "A body over 64 KiB", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "A Stripe-style event without a string `id`", body = ErrorBody),
    )
)]
async fn receive_inbound(
    State(state): State<AppState>,
    Path(source): Path<String>,
    context: RequestContext,
    headers: HeaderMap,
    RawJson(body): RawJson,
) -> Result<Response, ApiError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (message_id, duplicate) = state
        .webhooks
        .receive(&source, header, &body, &origin(context))
        .await?;
    let status = if duplicate {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((
        status,
        axum::Json(InboundView {
            message_id,
            duplicate,
        }),
    )
        .into_response())
}
