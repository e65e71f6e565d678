//! Health (claim OPS-2): each component with its status and response time; 503 when a
//! component the instance cannot serve without is down, `degraded` (still 200) when backups
//! are stale or failed their test restore.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use std::time::{Duration, Instant};

use crate::app::AppState;
use crate::backup::BackupHealth;
use crate::config::DatabaseSettings;
use crate::store::{Database, Probe};
use crate::telemetry::metrics::Metrics;

/// Shares one database probe among the health checks of a short window.
pub struct ProbeCache {
    deadline: Duration,
    ttl: Duration,
    // An async mutex held across the probe: concurrent callers wait for the one in flight
    // instead of each taking the database's write lock.
    last: tokio::sync::Mutex<Option<(Instant, Probe)>>,
}

impl ProbeCache {
    pub fn new(settings: &DatabaseSettings) -> Self {
        Self {
            deadline: Duration::from_millis(settings.health_timeout_ms),
            ttl: Duration::from_millis(settings.health_cache_ms),
            last: tokio::sync::Mutex::new(None),
        }
    }

    pub async fn probe(&self, db: &Database, metrics: &Metrics) -> Probe {
        let mut last = self.last.lock().await;
        if let Some((at, probe)) = last.as_ref() {
            if at.elapsed() < self.ttl {
                return probe.clone();
            }
        }
        metrics.count_health_probe();
        let probe = db.probe(self.deadline).await;
        *last = Some((Instant::now(), probe.clone()));
        probe
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(live))
}

#[derive(Serialize, ToSchema)]
pub struct HealthReport {
    /// `ok` when every check passes; `degraded` (HTTP 200: the instance serves) when
    /// backups are stale or the newest failed its test restore; `unavailable` (HTTP 503)
    /// when the database or the configuration is down.
    #[schema(example = "ok")]
    status: &'static str,
    checks: HealthChecks,
}

#[derive(Serialize, ToSchema)]
pub struct HealthChecks {
    database: Check,
    configuration: Check,
    /// The vault's KEKs: the active version, and the data keys still to re-wrap onto it
    /// after a rotation (claim SEC-2), as upkeep last counted them.
    vault: Check,
    /// The newest backup's age and its test restore (claims OPS-2, OPS-3): `degraded` past
    /// `backup.stale_after_hours` or after a failed restore; `off` without
    /// `backup.recipients`.
    backups: Check,
}

#[derive(Serialize, ToSchema)]
pub struct Check {
    /// `up` or `down`; for backups also `degraded` or `off`.
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
    let probe = state.health.probe(&state.db, &state.metrics).await;
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
    let started = std::time::Instant::now();
    let active = state.key_rotation.active_kek_version();
    let vault = Check {
        // A re-wrap under way is work, not a fault: every key still opens.
        status: "up",
        latency_ms: round_ms(started.elapsed()),
        detail: Some(match state.key_rotation.last_status() {
            Some(status) => {
                let mut detail = match status.pending() {
                    0 => format!("KEK version {active}; every data key on it"),
                    left => format!("KEK version {active}; re-wrapping: {left} data keys left"),
                };
                if status.superseded > 0 {
                    detail.push_str(&format!(
                        "; {} tenant(s) moving onto a new data key",
                        status.superseded
                    ));
                }
                detail
            }
            None => format!("KEK version {active}"),
        }),
    };
    let started = std::time::Instant::now();
    let (backup_status, backup_detail) = match state.backups.health() {
        BackupHealth::Off => (
            "off",
            "backups are off: backup.recipients is not set".into(),
        ),
        BackupHealth::Up(detail) => ("up", detail),
        BackupHealth::Degraded(detail) => ("degraded", detail),
    };
    let backups = Check {
        status: backup_status,
        latency_ms: round_ms(started.elapsed()),
        detail: Some(backup_detail),
    };
    let healthy = probe.up && config_ok;
    let report = HealthReport {
        status: match (healthy, backup_status) {
            (false, _) => "unavailable",
            (true, "degraded") => "degraded",
            (true, _) => "ok",
        },
        checks: HealthChecks {
            database,
            configuration,
            vault,
            backups,
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
