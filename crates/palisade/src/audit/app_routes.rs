//! The app's events, over HTTP (claim APP-4): `POST /api/v1/audit/events` (one) and
//! `POST /api/v1/audit/events/batch` (up to 100, one transaction), called with the app's
//! service credential or a tenant token. Each event's actor is proven here, from the
//! credential the app forwards; the tenant is the actor's (or the tenant token's).

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::app::{ActorClaim, AppEventRequest, Appended, IdempotencyKey, Recorded, MAX_BATCH};
use super::{Acting, Actor, AuditRecord};
use crate::app::AppState;
use crate::http::auth::AppCaller;
use crate::http::error::{ApiError, ErrorCode};
use crate::http::extract::{DigestedJson, RequestContext};
use crate::http::openapi::ErrorBody;
use crate::identity::service::IdentityError;
use crate::ids::TenantId;

const IDEMPOTENCY_KEY: &str = "idempotency-key";

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// 1 to 100 events, appended together or not at all.
    #[schema(min_items = 1, max_items = 100)]
    events: Vec<AppEventRequest>,
}

#[derive(Serialize, ToSchema)]
pub struct BatchResponse {
    /// Where each event landed, in the order sent.
    events: Vec<Appended>,
}

/// Record one of the app's events in the tenant's audit chain (claim APP-4).
///
/// The actor is proven by the credential the app forwards: the end user's access token,
/// the customer's API key, or `system` under a tenant token. The event sits in the
/// tenant's chain beside Palisade's own, and is listed, exported, verified and pruned like
/// them. With an `Idempotency-Key`, the same key and body within 24 hours answer the first
/// write's event again (`Idempotent-Replayed: true`), and another body is a 409.
#[utoipa::path(
    post,
    path = "/api/v1/audit/events",
    tag = "audit",
    security(("service" = []), ("tenant_token" = [])),
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "1-255 visible ASCII characters; honoured for 24 hours")),
    request_body = AppEventRequest,
    responses(
        (status = 201, description = "The event, appended", body = Appended),
        (status = 200, description = "A retry with the same Idempotency-Key and body: the first write's event", body = Appended),
        (status = 401, description = "No valid service credential or tenant token", body = ErrorBody),
        (status = 409, description = "The Idempotency-Key was used with another body", body = ErrorBody),
        (status = 422, description = "An undeclared action, a field out of bounds, or an actor credential that is not live", body = ErrorBody),
    )
)]
pub async fn record_event(
    State(state): State<AppState>,
    caller: AppCaller,
    context: RequestContext,
    headers: HeaderMap,
    body: DigestedJson<AppEventRequest>,
) -> Result<Response, ApiError> {
    let events = std::slice::from_ref(&body.value);
    let (status, mut appended) =
        record(&state, &caller, &context, &headers, events, body.sha256).await?;
    let one = appended
        .pop()
        .ok_or_else(|| ApiError::internal("no event was appended"))?;
    Ok(answer(status, one))
}

/// Record up to 100 of the app's events in one transaction (claim APP-4).
///
/// As `POST /api/v1/audit/events`, for many at once: every event is checked first, and
/// either all are appended or none (the first refusal names the event's index).
#[utoipa::path(
    post,
    path = "/api/v1/audit/events/batch",
    tag = "audit",
    security(("service" = []), ("tenant_token" = [])),
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "1-255 visible ASCII characters; honoured for 24 hours")),
    request_body = BatchRequest,
    responses(
        (status = 201, description = "The events, appended", body = BatchResponse),
        (status = 200, description = "A retry with the same Idempotency-Key and body: the first write's events", body = BatchResponse),
        (status = 401, description = "No valid service credential or tenant token", body = ErrorBody),
        (status = 409, description = "The Idempotency-Key was used with another body", body = ErrorBody),
        (status = 422, description = "An event breaks a rule; nothing was written", body = ErrorBody),
    )
)]
pub async fn record_batch(
    State(state): State<AppState>,
    caller: AppCaller,
    context: RequestContext,
    headers: HeaderMap,
    body: DigestedJson<BatchRequest>,
) -> Result<Response, ApiError> {
    let events = &body.value.events;
    if events.is_empty() || events.len() > MAX_BATCH {
        return Err(ApiError::invalid_field("events must hold 1 to 100 events"));
    }
    let (status, appended) =
        record(&state, &caller, &context, &headers, events, body.sha256).await?;
    Ok(answer(status, BatchResponse { events: appended }))
}

fn answer(status: StatusCode, body: impl Serialize) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    if status == StatusCode::OK {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// Proves each event's actor, builds its record and appends them all: 201 with where they
/// landed, or 200 with the first write's answer for a retried key.
async fn record(
    state: &AppState,
    caller: &AppCaller,
    context: &RequestContext,
    headers: &HeaderMap,
    events: &[AppEventRequest],
    body_sha256: [u8; 32],
) -> Result<(StatusCode, Vec<Appended>), ApiError> {
    let key = match headers.get(IDEMPOTENCY_KEY) {
        None => None,
        Some(value) => {
            let text = value
                .to_str()
                .map_err(|_| ApiError::bad_request("Idempotency-Key is not visible ASCII"))?;
            Some(
                IdempotencyKey::parse(caller.service(), text, body_sha256)
                    .map_err(|refused| ApiError::bad_request(refused.0))?,
            )
        }
    };
    let now = state.audit.now();
    let request_id = context.request_id.to_string();
    let mut records: Vec<AuditRecord> = Vec::with_capacity(events.len());
    // A batch is mostly one actor's: each distinct credential is proven once.
    let mut proven: Vec<(&ActorClaim, (TenantId, Acting))> = Vec::new();
    for (at, event) in events.iter().enumerate() {
        let in_batch = |message: String| {
            if events.len() > 1 {
                format!("events[{at}]: {message}")
            } else {
                message
            }
        };
        let claim = event.actor();
        let (tenant, actor) = match proven.iter().find(|(seen, _)| seen.same_as(claim)) {
            Some((_, known)) => known.clone(),
            None => {
                let known = proven_actor(state, caller, claim)
                    .await
                    .map_err(|error| error.map_message(in_batch))?;
                proven.push((claim, known.clone()));
                known
            }
        };
        let record = event
            .record(
                &state.access,
                caller.service(),
                tenant,
                actor,
                &request_id,
                now,
            )
            .map_err(|refused| ApiError::invalid_field(in_batch(refused.0)))?;
        records.push(record);
    }
    match state
        .audit
        .record_app_events(&records, key.as_ref())
        .await?
    {
        Recorded::Appended(appended) => Ok((StatusCode::CREATED, appended)),
        Recorded::Replayed(appended) => Ok((StatusCode::OK, appended)),
        Recorded::KeyReused => Err(ApiError::coded(
            ErrorCode::IdempotencyKeyReused,
            "this Idempotency-Key was used in the last 24 hours with another body; nothing was written",
        )),
    }
}

/// The tenant an event belongs to and who acted, from the credential the app forwards.
async fn proven_actor(
    state: &AppState,
    caller: &AppCaller,
    claim: &ActorClaim,
) -> Result<(TenantId, Acting), ApiError> {
    let (tenant, actor) = match claim {
        ActorClaim::System => match caller {
            AppCaller::Tenant(token) => (token.tenant(), Acting::from(token)),
            AppCaller::Service(_) => {
                return Err(ApiError::invalid_field(
                    "a system actor needs a tenant token (POST /api/v1/services/tenant-token): the service credential names no tenant",
                ))
            }
        },
        ActorClaim::AccessToken(token) => {
            let principal = match state.identity.authenticate(token.expose_secret()).await {
                Ok(principal) if !principal.mfa_pending() => principal,
                Ok(_) => return Err(not_live("actor.access_token", "waiting for MFA enrolment")),
                Err(IdentityError::Store(error)) => return Err(error.into()),
                Err(IdentityError::TenantSuspended) => {
                    return Err(IdentityError::TenantSuspended.into())
                }
                Err(_) => return Err(not_live("actor.access_token", "not live")),
            };
            (
                principal.tenant(),
                Acting::Principal(Actor::User(principal.user()), principal.role().as_str()),
            )
        }
        ActorClaim::ApiKey(text) => match state.keys.verify(text.expose_secret()).await? {
            Ok(key) => (
                key.tenant(),
                Acting::Principal(Actor::ApiKey(key.id()), key.role().as_str()),
            ),
            Err(refusal) => return Err(not_live("actor.api_key", refusal.code())),
        },
    };
    if let AppCaller::Tenant(token) = caller {
        if token.tenant() != tenant {
            return Err(ApiError::coded(
                ErrorCode::InvalidSubject,
                "the actor is of another tenant than the tenant token's",
            ));
        }
    }
    Ok((tenant, actor))
}

fn not_live(field: &str, why: &str) -> ApiError {
    ApiError::coded(ErrorCode::InvalidSubject, format!("{field} is {why}"))
}
