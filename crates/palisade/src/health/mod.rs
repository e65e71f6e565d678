//! Health (claim OPS-2): each component with its status and response time; 503 when unhealthy.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(live))
}

#[derive(Serialize, ToSchema)]
pub struct HealthReport {
    /// `ok` when every check passes, else `unavailable`.
    #[schema(example = "ok")]
    status: &'static str,
    checks: HealthChecks,
}

#[derive(Serialize, ToSchema)]
pub struct HealthChecks {
    database: Check,
    configuration: Check,
}

#[derive(Serialize, ToSchema)]
pub struct Check {
    /// `up` or `down`.
    #[schema(example = "up")]
    status: &'static str,
    /// How long the check took, in milliseconds.
    latency_ms: f64,
    /// What the component is (`sqlite`, `postgres`), or why it is down.
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Liveness {
    #[schema(example = "ok")]
    status: &'static str,
}

/// Liveness: the process answers HTTP. Checks no dependency, so an orchestrator does not
/// restart every instance when the database blips; readiness is `/api/health`.
#[utoipa::path(
    get,
    path = "/api/health/live",
    tag = "operations",
    responses((status = 200, description = "The process is serving", body = Liveness))
)]
async fn live() -> axum::Json<Liveness> {
    axum::Json(Liveness { status: "ok" })
}

/// Health of this instance and its dependencies.
#[utoipa::path(
    get,
    path = "/api/health",
    tag = "operations",
    responses(
        (status = 200, description = "Every component is healthy", body = HealthReport),
        (status = 503, description = "A component is down", body = HealthReport),
    )
)]
async fn health(State(state): State<AppState>) -> (StatusCode, axum::Json<HealthReport>) {
    let probe = state.db.probe(state.health_timeout).await;
    let database = Check {
        status: if probe.up { "up" } else { "down" },
        latency_ms: round_ms(probe.latency),
        detail: Some(match probe.detail {
            // The cause is for the log; the page only says which backend is down.
            Some(cause) => {
                tracing::warn!(cause = %cause, "health: database down");
                format!("{} unreachable", state.db.backend_name())
            }
            None => state.db.backend_name().to_owned(),
        }),
    };
    let started = std::time::Instant::now();
    // Settings were checked at start-up; re-validating proves the live copy still is.
    let config_ok = state.settings.validate().is_ok();
    let configuration = Check {
        status: if config_ok { "up" } else { "down" },
        latency_ms: round_ms(started.elapsed()),
        detail: None,
    };
    let healthy = probe.up && config_ok;
    let report = HealthReport {
        status: if healthy { "ok" } else { "unavailable" },
        checks: HealthChecks {
            database,
            configuration,
        },
    };
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(report))
}

fn round_ms(elapsed: std::time::Duration) -> f64 {
    (elapsed.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0
}
