//! Account routes: sign-up, email verification, password reset and change.

use axum::extract::State;
use axum::http::StatusCode;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::origin;
use crate::app::AppState;
use crate::http::auth::Authenticated;
use crate::http::error::ApiError;
use crate::http::extract::{Json, RequestContext};
use crate::http::openapi::ErrorBody;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(signup))
        .routes(routes!(request_verification))
        .routes(routes!(verify_email))
        .routes(routes!(request_password_reset))
        .routes(routes!(reset_password))
        .routes(routes!(change_password))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    #[schema(example = "ada@example.com", max_length = 254, format = Email)]
    email: String,
    /// 12 to 128 characters.
    #[schema(value_type = String, min_length = 12, max_length = 128, format = Password)]
    password: SecretString,
    /// The new tenant, of which the user becomes the Owner. Exactly one of `tenant_name`
    /// and `invitation_token`.
    #[serde(default)]
    #[schema(
        example = "Acme",
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]([^\\u0000-\\u001f\\u007f-\\u009f]*[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000])?$"
    )]
    tenant_name: Option<String>,
    /// The token of an invitation mailed to `email`: the account joins that tenant, with
    /// the invited role, and no other; the link proved the address, so it signs in at once.
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = "^ten_[0-9a-f]{32}\\.[A-Za-z0-9_-]{43}$")]
    invitation_token: Option<SecretString>,
}

#[derive(Serialize, ToSchema)]
pub struct Accepted {
    /// Always `accepted`: the answer does not reveal whether the email is registered.
    #[schema(example = "accepted")]
    status: &'static str,
}

const ACCEPTED: Accepted = Accepted { status: "accepted" };

/// Sign up: create a user and a new tenant with that user as Owner, or, with an
/// invitation's token, a user who joins the inviting tenant in the invited role and no
/// other.
///
/// The answer is the same whether or not the email is already registered; a new account
/// of its own tenant is sent a verification link (an invited one was proven by the
/// invitation's mail and signs in at once). An invitation token that is unknown, spent,
/// expired or for another address is a 404.
#[utoipa::path(
    post,
    path = "/api/v1/auth/signup",
    tag = "identity",
    request_body = SignupRequest,
    responses(
        (status = 201, description = "Accepted", body = Accepted),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 403, description = "The inviting tenant is suspended", body = ErrorBody),
        (status = 404, description = "No live invitation with this token for this address", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody),
        (status = 503, description = "Busy or database unavailable", body = ErrorBody),
    )
)]
async fn signup(
    State(state): State<AppState>,
    context: RequestContext,
    Json(body): Json<SignupRequest>,
) -> Result<(StatusCode, axum::Json<Accepted>), ApiError> {
    match (&body.tenant_name, &body.invitation_token) {
        (Some(tenant_name), None) => {
            state
                .identity
                .sign_up(&body.email, body.password, tenant_name, &origin(context))
                .await?;
        }
        (None, Some(token)) => {
            state
                .tenancy
                .sign_up_invited(
                    &state.identity,
                    &body.email,
                    body.password,
                    token,
                    &origin(context),
                )
                .await?;
        }
        _ => {
            return Err(ApiError::invalid_field(
                "send exactly one of tenant_name (a new tenant) and invitation_token (join the inviting one)",
            ))
        }
    }
    Ok((StatusCode::CREATED, axum::Json(ACCEPTED)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailRequest {
    #[schema(example = "ada@example.com", max_length = 254, format = Email)]
    email: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The token from the mailed link.
    #[schema(value_type = String, pattern = "^[A-Za-z0-9_-]{43}$")]
    token: SecretString,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    #[schema(value_type = String, pattern = "^[A-Za-z0-9_-]{43}$")]
    token: SecretString,
    #[schema(value_type = String, min_length = 12, max_length = 128, format = Password)]
    new_password: SecretString,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    #[schema(value_type = String, min_length = 1, max_length = 128, format = Password)]
    current_password: SecretString,
    #[schema(value_type = String, min_length = 12, max_length = 128, format = Password)]
    new_password: SecretString,
}

/// Send a new email-verification link (valid 24 hours) if the address has an unverified account.
#[utoipa::path(
    post,
    path = "/api/v1/auth/verify-email/request",
    tag = "identity",
    request_body = EmailRequest,
    responses(
        (status = 202, description = "Accepted, whether or not the email is registered", body = Accepted),
        (status = 422, description = "Invalid field", body = ErrorBody),
    )
)]
async fn request_verification(
    State(state): State<AppState>,
    context: RequestContext,
    Json(body): Json<EmailRequest>,
) -> Result<(StatusCode, axum::Json<Accepted>), ApiError> {
    state
        .identity
        .request_verification(&body.email, &origin(context))?;
    Ok((StatusCode::ACCEPTED, axum::Json(ACCEPTED)))
}

/// Confirm an email address with the token from the link. Single use.
#[utoipa::path(
    post,
    path = "/api/v1/auth/verify-email",
    tag = "identity",
    request_body = TokenRequest,
    responses(
        (status = 204, description = "Verified"),
        (status = 400, description = "Invalid, expired or used token", body = ErrorBody),
        (status = 422, description = "Invalid body", body = ErrorBody),
    )
)]
async fn verify_email(
    State(state): State<AppState>,
    context: RequestContext,
    Json(body): Json<TokenRequest>,
) -> Result<StatusCode, ApiError> {
    state
        .identity
        .verify_email(&body.token, &origin(context))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Send a password-reset link (valid 30 minutes) if the address has an account.
#[utoipa::path(
    post,
    path = "/api/v1/auth/password-reset/request",
    tag = "identity",
    request_body = EmailRequest,
    responses(
        (status = 202, description = "Accepted, whether or not the email is registered", body = Accepted),
        (status = 422, description = "Invalid field", body = ErrorBody),
    )
)]
async fn request_password_reset(
    State(state): State<AppState>,
    context: RequestContext,
    Json(body): Json<EmailRequest>,
) -> Result<(StatusCode, axum::Json<Accepted>), ApiError> {
    state
        .identity
        .request_password_reset(&body.email, &origin(context))?;
    Ok((StatusCode::ACCEPTED, axum::Json(ACCEPTED)))
}

/// Set a new password with the token from a reset link. Every session of the user ends.
#[utoipa::path(
    post,
    path = "/api/v1/auth/password-reset",
    tag = "identity",
    request_body = ResetRequest,
    responses(
        (status = 204, description = "Password changed; sign in again"),
        (status = 400, description = "Invalid, expired or used token", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody),
        (status = 503, description = "Busy or database unavailable", body = ErrorBody),
    )
)]
async fn reset_password(
    State(state): State<AppState>,
    context: RequestContext,
    Json(body): Json<ResetRequest>,
) -> Result<StatusCode, ApiError> {
    state
        .identity
        .reset_password(&body.token, body.new_password, &origin(context))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Change the caller's password. Every session of the user ends, this one included.
#[utoipa::path(
    post,
    path = "/api/v1/auth/password",
    tag = "identity",
    request_body = ChangePasswordRequest,
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Password changed; sign in again"),
        (status = 401, description = "Not signed in, or the current password is wrong", body = ErrorBody),
        (status = 403, description = "MFA enrolment required", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody),
        (status = 429, description = "Too many failed attempts", body = ErrorBody),
    )
)]
async fn change_password(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    context: RequestContext,
    Json(body): Json<ChangePasswordRequest>,
) -> Result<StatusCode, ApiError> {
    state
        .identity
        .change_password(
            &principal,
            body.current_password,
            body.new_password,
            &origin(context),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
