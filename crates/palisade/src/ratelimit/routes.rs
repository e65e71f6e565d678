//! Limits for the app's own routes (claim APP-7): `POST /api/v1/ratelimit/check`, called by
//! the app's backend with its service credential. The same GCRA and the same sharing across
//! instances as Palisade's own limits (WEB-5): on PostgreSQL every instance charges one row.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use std::collections::BTreeMap;

use super::{BucketName, Quota};
use crate::app::AppState;
use crate::config::NamedLimit;
use crate::http::auth::Service;
use crate::http::error::{ApiError, ErrorCode};
use crate::http::extract::Json;
use crate::http::openapi::ErrorBody;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(check))
}

const MAX_LIMIT: u64 = 1_000_000;
const MAX_WINDOW_SECONDS: u64 = 86_400;

/// One request of the app's, to count against a limit: the numbers, or the name of a limit
/// the operator configured (`rate_limits.named`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    /// What is limited, in the app's words: 1–64 of `a-z`, `0-9`, `.`, `_`, `-`.
    #[schema(example = "workorders.export", pattern = "^[a-z0-9._-]{1,64}$")]
    namespace: String,
    /// Who is limited: a user id, a key id, an address… 1–256 printable characters.
    #[schema(
        example = "usr_0192f5c4e1a87c3b9d2e4f6a8b0c1d2e",
        min_length = 1,
        max_length = 256
    )]
    identifier: String,
    /// Requests allowed per window: 1–1,000,000. Not with `name`.
    #[serde(default)]
    #[schema(example = 100, minimum = 1, maximum = 1_000_000)]
    limit: Option<u64>,
    /// The window in seconds: 1–86,400. Not with `name`.
    #[serde(default)]
    #[schema(example = 60, minimum = 1, maximum = 86_400)]
    window_seconds: Option<u64>,
    /// A limit configured under `rate_limits.named`, instead of `limit` and `window_seconds`.
    #[serde(default)]
    #[schema(example = "workorders.export")]
    name: Option<String>,
    /// Units this request uses, 1 to the limit (default 1).
    #[serde(default)]
    #[schema(minimum = 1)]
    cost: Option<u64>,
}

/// The decision, with what `RateLimit-*` headers would say.
#[derive(Serialize, ToSchema)]
pub struct CheckResponse {
    allowed: bool,
    limit: u32,
    /// Units still available now.
    remaining: u32,
    /// Seconds until the bucket is full again.
    reset: u64,
    /// When refused: seconds until this request's cost would fit.
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after: Option<u64>,
}

impl CheckResponse {
    pub fn allowed(&self) -> bool {
        self.allowed
    }
}

/// A limit for one check: `limit` and `window_seconds`, or the `name` of a configured limit;
/// and this request's cost.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitSpec {
    /// Requests allowed per window: 1–1,000,000. Not with `name`.
    #[serde(default)]
    #[schema(example = 100, minimum = 1, maximum = 1_000_000)]
    limit: Option<u64>,
    /// The window in seconds: 1–86,400. Not with `name`.
    #[serde(default)]
    #[schema(example = 60, minimum = 1, maximum = 86_400)]
    window_seconds: Option<u64>,
    /// A limit configured under `rate_limits.named`, instead of `limit` and `window_seconds`.
    #[serde(default)]
    #[schema(example = "workorders.export")]
    name: Option<String>,
    /// Units this request uses, 1 to the limit (default 1).
    #[serde(default)]
    #[schema(minimum = 1)]
    cost: Option<u64>,
}

impl LimitSpec {
    /// `limit` units per `window_seconds`, one unit a use (a key's own limit).
    pub(crate) fn per_window(limit: u32, window_seconds: u32) -> Self {
        Self {
            limit: Some(u64::from(limit)),
            window_seconds: Some(u64::from(window_seconds)),
            name: None,
            cost: None,
        }
    }

    /// The quota, its window in seconds and this use's cost: the numbers given, or those
    /// the operator configured under the name.
    fn resolved(
        &self,
        named: &BTreeMap<String, NamedLimit>,
    ) -> Result<(Quota, u64, u32), ApiError> {
        let (limit, window_seconds) = match (&self.name, self.limit, self.window_seconds) {
            (Some(name), None, None) => match named.get(name) {
                Some(found) => (u64::from(found.limit), u64::from(found.window_seconds)),
                None => {
                    return Err(ApiError::coded(
                        ErrorCode::UnknownLimit,
                        "name: no limit of that name is configured (rate_limits.named)",
                    ))
                }
            },
            (None, Some(limit), Some(window_seconds)) => (limit, window_seconds),
            (Some(_), _, _) => {
                return Err(ApiError::invalid_field(
                    "name: give either name or limit and window_seconds, not both",
                ))
            }
            (None, _, _) => {
                return Err(ApiError::invalid_field(
                    "limit and window_seconds: both are needed unless a name is given",
                ))
            }
        };
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::invalid_field("limit must be 1 to 1000000"));
        }
        if !(1..=MAX_WINDOW_SECONDS).contains(&window_seconds) {
            return Err(ApiError::invalid_field("window_seconds must be 1 to 86400"));
        }
        let cost = self.cost.unwrap_or(1);
        if !(1..=limit).contains(&cost) {
            return Err(ApiError::invalid_field("cost must be 1 to limit"));
        }
        let quota = Quota {
            limit: limit as u32,
            period_us: window_seconds as i64 * 1_000_000,
        };
        Ok((quota, window_seconds, cost as u32))
    }
}

/// A namespace or a limit's name: 1–64 of `a-z`, `0-9`, `.`, `_`, `-`.
pub(crate) fn is_limit_name(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
}

/// Charges one check of `spec` to the app's bucket `namespace`/`identifier` (already
/// validated), shared by the limit check and key verification.
pub(crate) async fn charge(
    state: &AppState,
    namespace: &str,
    identifier: &str,
    spec: &LimitSpec,
) -> Result<CheckResponse, ApiError> {
    let (quota, window_seconds, cost) = spec.resolved(&state.settings.rate_limits.named)?;
    let bucket = AppBucket {
        namespace,
        identifier,
        quota: (quota.limit, window_seconds),
    };
    let now_us = crate::audit::store::micros(state.clock.now());
    let decision = state
        .limiter
        .check_quota(&bucket, quota, cost, now_us)
        .await?;
    Ok(CheckResponse {
        allowed: decision.allowed,
        limit: decision.limit,
        remaining: decision.remaining,
        reset: decision.reset_secs,
        retry_after: (!decision.allowed).then_some(decision.retry_after_secs),
    })
}

/// A bucket of the app's: a limit's namespace and window with one identifier. The limit is
/// part of the name, so changing it starts a fresh bucket rather than misreading an old one.
#[derive(Hash)]
struct AppBucket<'a> {
    namespace: &'a str,
    identifier: &'a str,
    quota: (u32, u64),
}

impl BucketName for AppBucket<'_> {
    /// `app|namespace|limit/window|identifier` — never a Palisade route's `METHOD /…|…`.
    fn name(&self) -> String {
        let (limit, window) = self.quota;
        format!(
            "app|{}|{limit}/{window}|{}",
            self.namespace, self.identifier
        )
    }
}

impl CheckRequest {
    /// The request's bucket and its limit, once the bucket's names are valid.
    fn validated(self) -> Result<(String, String, LimitSpec), ApiError> {
        if !is_limit_name(&self.namespace) {
            return Err(ApiError::invalid_field(
                "namespace must be 1 to 64 of a-z, 0-9, '.', '_' and '-'",
            ));
        }
        let identifier_ok = (1..=256).contains(&self.identifier.chars().count())
            && !self.identifier.chars().any(char::is_control);
        if !identifier_ok {
            return Err(ApiError::invalid_field(
                "identifier must be 1 to 256 characters without control characters",
            ));
        }
        let spec = LimitSpec {
            limit: self.limit,
            window_seconds: self.window_seconds,
            name: self.name,
            cost: self.cost,
        };
        Ok((self.namespace, self.identifier, spec))
    }
}

/// Count one request of the app's against a limit (claim APP-7).
///
/// Allows `limit` units in a burst, then one per `window_seconds / limit`, with no window
/// edges to game (GCRA); a refused check charges nothing. On PostgreSQL every instance
/// shares the bucket.
#[utoipa::path(
    post,
    path = "/api/v1/ratelimit/check",
    tag = "access",
    security(("service" = [])),
    request_body = CheckRequest,
    responses(
        (status = 200, description = "Whether the request is within the limit", body = CheckResponse),
        (status = 401, description = "No valid service credential", body = ErrorBody),
        (status = 422, description = "A namespace, identifier, limit, window or cost out of bounds, or an unknown limit name", body = ErrorBody),
    )
)]
async fn check(
    State(state): State<AppState>,
    _service: Service,
    Json(body): Json<CheckRequest>,
) -> Result<axum::Json<CheckResponse>, ApiError> {
    let (namespace, identifier, spec) = body.validated()?;
    let answer = charge(&state, &namespace, &identifier, &spec).await?;
    Ok(axum::Json(answer))
}
