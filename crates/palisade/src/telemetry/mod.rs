//! Logs and metrics.

pub mod logging;
pub mod metrics;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::http::error::ApiError;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(scrape))
}

/// Prometheus metrics in the text exposition format (claim OPS-6).
///
/// The scrape must present `metrics.bearer_token` as a bearer token; with no token
/// configured nobody may scrape (the figures tell an attacker about load and failures).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Metrics", content_type = "text/plain; version=0.0.4", body = String),
        (status = 401, description = "Token required", body = crate::http::openapi::ErrorBody),
    )
)]
async fn scrape(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    crate::http::auth::operator_bearer(&headers, state.settings.metrics.bearer_token.as_ref())?;
    let (size, idle) = state.db.pool_stats();
    state.metrics.set_pool(size, idle);
    let mut response = state.metrics.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}
