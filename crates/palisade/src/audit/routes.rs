//! The audit log's HTTP surface: query (AUD-6), verify (AUD-3), export (AUD-4), retention
//! (AUD-5) and the published checkpoint key. A tenant sees only its own chain: the stream
//! comes from the credential.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::chain::ChainedEvent;
use super::export::Format;
use super::service::{RetentionChange, Verification};
use super::store::{micros, Chain, EventFilter};
use crate::access::actions::act;
use crate::access::Role;
use crate::app::AppState;
use crate::http::auth::{Permitted, PermittedPerson};
use crate::http::error::{ApiError, ErrorCode};
use crate::http::extract::{Json, Query, RequestContext};
use crate::http::openapi::ErrorBody;
use crate::identity::routes::origin;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_events, super::app_routes::record_event))
        .routes(routes!(super::app_routes::record_batch))
        .routes(routes!(verify))
        .routes(routes!(export))
        .routes(routes!(get_retention, set_retention))
        .routes(routes!(checkpoint_key))
}

const MAX_PAGE: i64 = 500;

/// Filters of `GET /api/v1/audit/events`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Only events by this actor (`usr_…`, `key_…`, or an operator's name).
    actor: Option<String>,
    /// Only events of this action, e.g. `members.role_changed`.
    action: Option<String>,
    /// Only events on this kind of target, e.g. `user`.
    target_type: Option<String>,
    /// Only events on this target id (with or without `target_type`).
    target_id: Option<String>,
    /// Events at or after this time (RFC 3339).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    from: Option<OffsetDateTime>,
    /// Events before this time (RFC 3339).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    to: Option<OffsetDateTime>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^c[1-9][0-9]{0,17}$")]
    cursor: Option<String>,
    /// Events per page, 1 to 500; default 50.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct EventPage {
    /// Newest first.
    #[schema(value_type = Vec<Object>)]
    events: Vec<Listed>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    next_cursor: Option<String>,
}

fn too_long(value: &Option<String>) -> bool {
    value.as_ref().is_some_and(|v| v.len() > 200)
}

/// The tenant's audit events, newest first, filtered, a page at a time.
///
/// Action: `audit.read`.
#[utoipa::path(
    get,
    path = "/api/v1/audit/events",
    tag = "audit",
    params(EventQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "A page of events", body = EventPage),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow this action", body = ErrorBody),
        (status = 422, description = "Invalid filter or cursor", body = ErrorBody),
    )
)]
async fn list_events(
    State(state): State<AppState>,
    permitted: Permitted<act::AuditRead>,
    Query(query): Query<EventQuery>,
) -> Result<axum::Json<EventPage>, ApiError> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid_field("limit must be 1 to 500"));
    }
    if [
        &query.actor,
        &query.action,
        &query.target_type,
        &query.target_id,
    ]
    .into_iter()
    .any(too_long)
    {
        return Err(ApiError::invalid_field(
            "a filter is longer than 200 characters",
        ));
    }
    let before = match query.cursor.as_deref() {
        None => None,
        Some(cursor) => Some(parse_cursor(cursor)?),
    };
    let filter = EventFilter {
        actor: query.actor,
        action: query.action,
        target_type: query.target_type,
        target_id: query.target_id,
        from_us: query.from.map(micros),
        to_us: query.to.map(micros),
        before,
        // One more than the page: whether there is a next page, without a count.
        limit: limit + 1,
    };
    let chain = Chain::of(permitted.caller.scope());
    let mut events = state.audit.search(chain, &filter).await?;
    let next_cursor = if events.len() as i64 > limit {
        events.truncate(limit as usize);
        events.last().map(|e| cursor_for(e.seq))
    } else {
        None
    };
    Ok(axum::Json(EventPage {
        events: events.into_iter().map(Listed).collect(),
        next_cursor,
    }))
}

/// An event as the API lists it: every field of the chain, with `changes` and an app's
/// `app` part as JSON objects (the export keeps the exact text the chain hashes).
pub struct Listed(pub ChainedEvent);

impl Serialize for Listed {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let event = &self.0;
        let mut out = s.serialize_struct("Event", 19)?;
        out.serialize_field("stream", &event.stream)?;
        out.serialize_field("seq", &event.seq)?;
        out.serialize_field("id", &event.id)?;
        out.serialize_field("occurred_at_us", &event.occurred_at_us)?;
        out.serialize_field("actor_type", &event.actor_type)?;
        out.serialize_field("actor_id", &event.actor_id)?;
        out.serialize_field("actor_role", &event.actor_role)?;
        out.serialize_field("action", &event.action)?;
        out.serialize_field("target_type", &event.target_type)?;
        out.serialize_field("target_id", &event.target_id)?;
        out.serialize_field("outcome", &event.outcome)?;
        out.serialize_field("ip", &event.ip)?;
        out.serialize_field("user_agent", &event.user_agent)?;
        out.serialize_field("request_id", &event.request_id)?;
        out.serialize_field("changes", &as_json(&event.changes))?;
        if let Some(app) = &event.app {
            out.serialize_field("app", &as_json(app))?;
        }
        out.serialize_field("prev_hash", &hex::encode(event.prev_hash))?;
        out.serialize_field("hash", &hex::encode(event.hash))?;
        if let Some(redaction) = &event.redaction {
            out.serialize_field("redaction", &as_json(redaction))?;
        }
        out.end()
    }
}

/// Stored JSON text as JSON; text that is not JSON (an edited row) stays a string, for
/// `GET /api/v1/audit/verify` to name.
fn as_json(text: &str) -> JsonOrText<'_> {
    match serde_json::from_str::<&serde_json::value::RawValue>(text) {
        Ok(raw) => JsonOrText::Json(raw),
        Err(_) => JsonOrText::Text(text),
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum JsonOrText<'a> {
    Json(&'a serde_json::value::RawValue),
    Text(&'a str),
}

/// Cursors are opaque to clients: `c` and the sequence number the next page starts below.
fn cursor_for(seq: i64) -> String {
    format!("c{seq}")
}

fn parse_cursor(cursor: &str) -> Result<i64, ApiError> {
    // Exactly the documented shape: `c`, then 1 to 18 digits without a leading zero.
    cursor
        .strip_prefix('c')
        .filter(|digits| {
            (1..=18).contains(&digits.len())
                && !digits.starts_with('0')
                && digits.bytes().all(|b| b.is_ascii_digit())
        })
        .and_then(|digits| digits.parse::<i64>().ok())
        .ok_or_else(|| ApiError::invalid_field("cursor is not one this API returned"))
}

/// Verify the tenant's hash chain and signed checkpoints: OK, or the first bad event and
/// why (edited, missing, inserted, reordered, checkpoint signature or mismatch).
///
/// Action: `audit.read`.
#[utoipa::path(
    get,
    path = "/api/v1/audit/verify",
    tag = "audit",
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The verdict", body = Object),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow this action", body = ErrorBody),
    )
)]
async fn verify(
    State(state): State<AppState>,
    permitted: Permitted<act::AuditRead>,
) -> Result<axum::Json<Verification>, ApiError> {
    let chain = Chain::of(permitted.caller.scope());
    Ok(axum::Json(state.audit.verify(chain).await?))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// Events at or after this time (RFC 3339); omitted: from the first.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    from: Option<OffsetDateTime>,
    /// Events before this time (RFC 3339); omitted: up to the export's start.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    to: Option<OffsetDateTime>,
    /// `csv` or `ndjson` (default).
    #[param(pattern = "^(csv|ndjson)$")]
    format: Option<String>,
}

/// Export the tenant's audit events of a time range, streamed, with the range's signed
/// checkpoints first and a signed trailer line last (count, first and last sequence
/// numbers, last hash). `palisade audit verify-export FILE` checks it offline. The export
/// itself is audited.
///
/// Action: `audit.export`.
#[utoipa::path(
    get,
    path = "/api/v1/audit/export",
    tag = "audit",
    params(ExportQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The export (NDJSON or CSV)", content((String = "application/x-ndjson"), (String = "text/csv"))),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow this action", body = ErrorBody),
        (status = 422, description = "Invalid range or format", body = ErrorBody),
    )
)]
async fn export(
    State(state): State<AppState>,
    permitted: Permitted<act::AuditExport>,
    context: RequestContext,
    Query(query): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    let format: Format = match query.format.as_deref() {
        None => Format::Ndjson,
        Some(text) => text
            .parse()
            .map_err(|()| ApiError::invalid_field("format must be csv or ndjson"))?,
    };
    let now = state.clock.now();
    let from_us = query.from.map(micros);
    let to_us = Some(query.to.map_or_else(|| micros(now) + 1, micros));
    // `from` at or after `to` is an empty range: an export of no events, still signed.
    let caller = &permitted.caller;
    let chain = Chain::of(caller.scope());
    // The range is fixed before the export's own event is written, which it does not hold.
    let range = state.audit.seq_range(chain, from_us, to_us).await?;
    let event = origin(context)
        .event("audit.exported", "success", now)
        .in_tenant(caller.tenant())
        .by(caller)
        .on("audit_log", caller.tenant())
        .changed("range", serde_json::Value::Null, range.map(|(a, b)| [a, b]));
    state.audit.record(event).await?;
    let (chunks, body) = mpsc::channel(4);
    let audit = state.audit.clone();
    tokio::spawn(async move {
        if let Err(error) = audit
            .export(chain, range, (from_us, to_us), format, chunks)
            .await
        {
            // The client sees no trailer: a truncated export, which it detects.
            tracing::warn!(%error, "audit export ended early");
        }
    });
    Ok(crate::http::streamed(body, format.content_type()))
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Days of history kept (1 to 36500); null keeps everything. Required.
    #[serde(deserialize_with = "crate::http::extract::whole_number::optional")]
    #[schema(minimum = 1, maximum = 36500, required = true)]
    days: Option<i64>,
}

/// How long the tenant keeps its audit history.
///
/// Action: `audit.read`.
#[utoipa::path(
    get,
    path = "/api/v1/audit/retention",
    tag = "audit",
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The retention", body = Retention),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow this action", body = ErrorBody),
    )
)]
async fn get_retention(
    State(state): State<AppState>,
    permitted: Permitted<act::AuditRead>,
) -> Result<axum::Json<Retention>, ApiError> {
    let days = state
        .audit
        .retention(Chain::of(permitted.caller.scope()))
        .await?;
    Ok(axum::Json(Retention {
        days: days.map(i64::from),
    }))
}

/// Set how long the tenant keeps its audit history. Pruning runs hourly from the oldest
/// event and leaves a signed anchor, so the rest of the chain still verifies. Never below
/// the deployment's floor (`audit.retention_floor_days`, 30 days by default), and only an
/// Owner shortens it; Admins may lengthen it.
///
/// Action: `tenant.update_security` (people only).
#[utoipa::path(
    put,
    path = "/api/v1/audit/retention",
    tag = "audit",
    request_body = Retention,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Set", body = Retention),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow this action", body = ErrorBody),
        (status = 422, description = "Invalid body", body = ErrorBody),
    )
)]
async fn set_retention(
    State(state): State<AppState>,
    permitted: PermittedPerson<act::TenantUpdateSecurity>,
    context: RequestContext,
    Json(body): Json<Retention>,
) -> Result<axum::Json<Retention>, ApiError> {
    let days = match body.days {
        None => None,
        Some(days @ 1..=36_500) => Some(days as i32),
        Some(_) => return Err(ApiError::invalid_field("days must be 1 to 36500, or null")),
    };
    let member = &permitted.person;
    let tenant = member.scope().tenant();
    let event = origin(context)
        .event("audit.retention_changed", "success", state.clock.now())
        .in_tenant(tenant)
        .by(member)
        .on("audit_log", tenant);
    let by_owner = member.role() == Role::Owner;
    match state
        .audit
        .set_retention(Chain::of(member.scope()), days, by_owner, event)
        .await?
    {
        RetentionChange::Set => Ok(axum::Json(body)),
        RetentionChange::BelowFloor => Err(ApiError::invalid_field(
            "days must be at least the deployment's floor (audit.retention_floor_days)",
        )),
        RetentionChange::OwnerOnly => Err(ApiError::coded(
            ErrorCode::Forbidden,
            "only an Owner shortens the audit history kept",
        )),
    }
}

#[derive(Serialize, ToSchema)]
pub struct CheckpointKeyView {
    /// Names the key in checkpoints and export trailers.
    key_id: String,
    /// Always `Ed25519`.
    algorithm: &'static str,
    /// The 32-byte public key, base64url without padding.
    public_key: String,
}

/// The public key that signs audit checkpoints, anchors and export trailers, for
/// verifying an export offline.
#[utoipa::path(
    get,
    path = "/api/v1/audit/checkpoint-key",
    tag = "audit",
    responses((status = 200, description = "The key", body = CheckpointKeyView))
)]
async fn checkpoint_key(State(state): State<AppState>) -> impl IntoResponse {
    let key = state.audit.public_key();
    (
        StatusCode::OK,
        axum::Json(CheckpointKeyView {
            key_id: key.key_id().to_owned(),
            algorithm: "Ed25519",
            public_key: key.encoded(),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        // claim: AUD-6
        #[test]
        fn a_cursor_reads_back_its_position_and_no_text_makes_a_bad_one(
            seq in 1i64..1_000_000_000_000_000_000,
            text in proptest::collection::vec(any::<char>(), 0..24),
        ) {
            prop_assert_eq!(parse_cursor(&cursor_for(seq)).ok(), Some(seq));
            let text: String = text.into_iter().collect();
            if let Ok(position) = parse_cursor(&text) {
                prop_assert!(position > 0);
            }
        }
    }
}
