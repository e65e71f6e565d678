//! Identity's HTTP surface: parse, call the service, answer. No rules live here.

use axum::extract::State;
use axum::http::StatusCode;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::password::HashError;
use super::service::{self, Origin, SignupError, SignupInput};
use crate::app::AppState;
use crate::http::error::ApiError;
use crate::http::extract::{Json, RequestContext};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(signup))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    #[schema(example = "ada@example.com", max_length = 254)]
    email: String,
    /// 12 to 128 characters.
    #[schema(value_type = String, min_length = 12, max_length = 128, format = Password)]
    password: SecretString,
    #[schema(example = "Acme", min_length = 1, max_length = 100)]
    tenant_name: String,
}

#[derive(Serialize, ToSchema)]
pub struct SignupResponse {
    /// Always `accepted`: the answer does not reveal whether the email was already in use.
    #[schema(example = "accepted")]
    status: &'static str,
}

/// Sign up: create a user and a new tenant with that user as Owner.
///
/// The answer is the same whether or not the email is already registered.
#[utoipa::path(
    post,
    path = "/api/v1/auth/signup",
    tag = "identity",
    request_body = SignupRequest,
    responses(
        (status = 201, description = "Accepted", body = SignupResponse),
        (status = 400, description = "Malformed JSON", body = crate::http::openapi::ErrorBody),
        (status = 413, description = "Body too large", body = crate::http::openapi::ErrorBody),
        (status = 415, description = "Not JSON", body = crate::http::openapi::ErrorBody),
        (status = 422, description = "Invalid field", body = crate::http::openapi::ErrorBody),
        (status = 503, description = "Busy or database unavailable", body = crate::http::openapi::ErrorBody),
    )
)]
async fn signup(
    State(state): State<AppState>,
    context: RequestContext,
    Json(body): Json<SignupRequest>,
) -> Result<(StatusCode, axum::Json<SignupResponse>), ApiError> {
    let input = SignupInput {
        email: body.email,
        password: body.password,
        tenant_name: body.tenant_name,
    };
    let origin = Origin {
        request_id: context.request_id.to_string(),
        ip: context.ip,
        user_agent: context.user_agent,
    };
    service::sign_up(
        state.identity.as_ref(),
        &state.passwords,
        state.clock.as_ref(),
        input,
        origin,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(SignupResponse { status: "accepted" }),
    ))
}

impl From<SignupError> for ApiError {
    fn from(error: SignupError) -> Self {
        match error {
            SignupError::Invalid(invalid) => ApiError::invalid_field(invalid.0),
            SignupError::Hash(HashError::Overloaded) => ApiError::Overloaded {
                retry_after_secs: 1,
            },
            SignupError::Hash(other) => ApiError::internal(other),
            SignupError::Store(store) => store.into(),
        }
    }
}
