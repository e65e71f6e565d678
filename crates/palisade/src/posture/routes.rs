//! `GET /api/v1/posture`: the instance's own report, for its operator (claim OPS-7).

use axum::extract::State;
use axum::http::HeaderMap;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Report;
use crate::app::AppState;
use crate::http::error::ApiError;
use crate::http::openapi::ErrorBody;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(posture))
}

/// This instance checked against every claim of the specification, each `pass`, `fail` or
/// `not_checkable` with evidence: its settings (and every weakening logged at start-up),
/// password hashing, token and session lifetimes, the signing key's and the vault KEK's
/// ages, on PostgreSQL row-level security on every tenant table and the runtime role's
/// rights, every audit chain walked and its checkpoints checked, the newest backup and its
/// test restore. `palisade posture --url … --token …` adds what a client sees from
/// outside. Walking every chain reads the whole log: call it from a cron, not a probe.
///
/// Needs `Authorization: Bearer` with `posture.bearer_token`; unset, nobody may.
#[utoipa::path(
    get,
    path = "/api/v1/posture",
    tag = "operations",
    responses(
        (status = 200, description = "The report", body = Object),
        (status = 401, description = "Token required", body = ErrorBody),
    )
)]
async fn posture(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<axum::Json<Report>, ApiError> {
    crate::http::auth::operator_bearer(&headers, state.settings.posture.bearer_token.as_ref())?;
    let findings = super::inside::inspect(&state).await;
    let at = state
        .clock
        .now()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    Ok(axum::Json(Report::of("this instance", at, findings)))
}
