//! The service credential's own endpoint: `POST /api/v1/services/tenant-token` (claim
//! APP-8), a five-minute token for the app's work in one tenant.

use axum::extract::State;
use axum::http::StatusCode;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::http::auth::Service;
use crate::http::error::ApiError;
use crate::http::extract::{Json, RequestContext};
use crate::http::openapi::ErrorBody;
use crate::identity::routes::origin;
use crate::ids::{TenantId, TenantTokenId};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(tenant_token))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantTokenRequest {
    /// The tenant the app will act in.
    #[schema(value_type = String, example = "ten_0192f5c4e1a87c3b9d2e4f6a8b0c1d2e")]
    tenant_id: TenantId,
}

#[derive(Serialize, ToSchema)]
pub struct TenantTokenResponse {
    /// `pal_tt_…`: send as `Authorization: Bearer …`. Shown once; never logged.
    token: String,
    #[schema(value_type = String)]
    id: TenantTokenId,
    #[schema(value_type = String)]
    tenant_id: TenantId,
    tenant_name: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    expires_at: OffsetDateTime,
    /// Seconds the token works: 300.
    expires_in: i64,
}

/// Obtain a tenant token (claim APP-8).
///
/// Five minutes of the app's background work in one tenant (recording a `system` event,
/// and the tenant work later endpoints take it for), with no user signed in. Recorded in
/// the tenant's audit chain and the platform stream. A suspended tenant gets none, and a
/// token stops working at once when its tenant is suspended or the service credential that
/// obtained it is revoked. Called with the app's service credential.
#[utoipa::path(
    post,
    path = "/api/v1/services/tenant-token",
    tag = "access",
    security(("service" = [])),
    request_body = TenantTokenRequest,
    responses(
        (status = 201, description = "The token, shown once", body = TenantTokenResponse),
        (status = 401, description = "No valid service credential", body = ErrorBody),
        (status = 403, description = "The tenant is suspended", body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
    )
)]
async fn tenant_token(
    State(state): State<AppState>,
    Service(service): Service,
    context: RequestContext,
    Json(body): Json<TenantTokenRequest>,
) -> Result<(StatusCode, axum::Json<TenantTokenResponse>), ApiError> {
    let issued = state
        .services
        .issue_tenant_token(&service, body.tenant_id, &origin(context))
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(TenantTokenResponse {
            token: issued.token.expose_secret().to_owned(),
            id: issued.id,
            tenant_id: issued.tenant,
            tenant_name: issued.tenant_name,
            expires_at: issued.expires_at,
            expires_in: crate::services::tenant_tokens::LIFETIME.whole_seconds(),
        }),
    ))
}
