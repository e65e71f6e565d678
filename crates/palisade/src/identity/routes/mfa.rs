//! Two-factor routes: TOTP enrolment, confirmation and removal, and the tenant's policy.

use axum::extract::State;
use axum::http::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::origin;
use crate::access::actions::act;
use crate::app::AppState;
use crate::http::auth::{AnySession, Authenticated, PermittedPerson};
use crate::http::error::ApiError;
use crate::http::extract::{Json, RequestContext};
use crate::http::openapi::ErrorBody;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(enrol))
        .routes(routes!(confirm))
        .routes(routes!(disable))
        .routes(routes!(tenant_policy))
}

#[derive(Serialize, ToSchema)]
pub struct EnrolmentResponse {
    /// The shared secret, base32: shown this once.
    secret: String,
    /// For a QR code: `otpauth://totp/…`.
    otpauth_uri: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrolRequest {
    /// The current password, asked again before a factor is bound to the account.
    #[schema(value_type = String, min_length = 1, max_length = 128, format = Password)]
    password: SecretString,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    /// A current 6-digit code from the authenticator.
    #[schema(value_type = String, example = "123456", pattern = "^[0-9]{6}$")]
    code: SecretString,
}

#[derive(Serialize, ToSchema)]
pub struct RecoveryCodes {
    /// Ten single-use codes, shown this once; each can replace a TOTP code at sign-in.
    recovery_codes: Vec<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaPolicy {
    /// Every member must sign in with a second factor.
    required: bool,
}

/// Start TOTP enrolment: a new secret, to be confirmed with a code.
#[utoipa::path(
    post,
    path = "/api/v1/auth/mfa/totp",
    tag = "identity",
    request_body = EnrolRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Secret to add to an authenticator", body = EnrolmentResponse),
        (status = 401, description = "Not signed in, or the password is wrong", body = ErrorBody),
        (status = 409, description = "TOTP is already on", body = ErrorBody),
        (status = 422, description = "Invalid body", body = ErrorBody),
        (status = 429, description = "Too many failed attempts", body = ErrorBody),
    )
)]
async fn enrol(
    State(state): State<AppState>,
    AnySession(principal): AnySession,
    context: RequestContext,
    Json(body): Json<EnrolRequest>,
) -> Result<axum::Json<EnrolmentResponse>, ApiError> {
    let enrolment = state
        .identity
        .enrol_totp(&principal, body.password, &origin(context))
        .await?;
    Ok(axum::Json(EnrolmentResponse {
        secret: enrolment.secret.expose_secret().to_owned(),
        otpauth_uri: enrolment.otpauth_uri.expose_secret().to_owned(),
    }))
}

/// Confirm TOTP enrolment with a code; answers with the recovery codes.
#[utoipa::path(
    post,
    path = "/api/v1/auth/mfa/totp/confirm",
    tag = "identity",
    request_body = CodeRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "TOTP is on", body = RecoveryCodes),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 409, description = "No enrolment waiting", body = ErrorBody),
        (status = 422, description = "Wrong code", body = ErrorBody),
    )
)]
async fn confirm(
    State(state): State<AppState>,
    AnySession(principal): AnySession,
    context: RequestContext,
    Json(body): Json<CodeRequest>,
) -> Result<axum::Json<RecoveryCodes>, ApiError> {
    let codes = state
        .identity
        .confirm_totp(&principal, &body.code, &origin(context))
        .await?;
    Ok(axum::Json(RecoveryCodes {
        recovery_codes: codes.iter().map(|c| c.expose_secret().to_owned()).collect(),
    }))
}

/// Turn TOTP off, with a fresh code.
#[utoipa::path(
    post,
    path = "/api/v1/auth/mfa/totp/disable",
    tag = "identity",
    request_body = CodeRequest,
    security(("bearer" = [])),
    responses(
        (status = 204, description = "TOTP is off; recovery codes are void"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "MFA enrolment required", body = ErrorBody),
        (status = 409, description = "TOTP is not on", body = ErrorBody),
        (status = 422, description = "Wrong or reused code", body = ErrorBody),
    )
)]
async fn disable(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    context: RequestContext,
    Json(body): Json<CodeRequest>,
) -> Result<StatusCode, ApiError> {
    state
        .identity
        .disable_totp(&principal, &body.code, &origin(context))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Require (or stop requiring) MFA of every member of the caller's tenant, from a session
/// that used a second factor.
///
/// Action: `tenant.update_security`.
#[utoipa::path(
    put,
    path = "/api/v1/tenant/mfa-policy",
    tag = "identity",
    request_body = MfaPolicy,
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Policy set"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an Owner or Admin", body = ErrorBody),
        (status = 409, description = "The caller's own session has no second factor", body = ErrorBody),
        (status = 422, description = "Invalid body", body = ErrorBody),
    )
)]
async fn tenant_policy(
    State(state): State<AppState>,
    permitted: PermittedPerson<act::TenantUpdateSecurity>,
    context: RequestContext,
    Json(body): Json<MfaPolicy>,
) -> Result<StatusCode, ApiError> {
    state
        .identity
        .set_tenant_mfa(&permitted.person, body.required, &origin(context))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
