//! Authentication extractors. A handler names what it needs in its signature:
//! [`Authenticated`] (a live session whose tenant's MFA policy is met: nearly every route)
//! or [`AnySession`] (also a session still waiting for MFA enrolment: the enrolment and
//! self-service routes). The tenant comes from the token only (claim TEN-1).

use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};

use super::error::ApiError;
use crate::app::AppState;
use crate::identity::service::IdentityError;
use crate::identity::sessions::{Principal, PrincipalKind};
use crate::tenancy::actions::ActionMarker;

/// A live session, MFA policy met.
pub struct Authenticated(pub Principal);

/// A live session, possibly one the tenant's MFA policy still restricts to enrolment.
pub struct AnySession(pub Principal);

/// `Authenticated`, and the member's role allows action `A` (claim RBAC-1): the handler names
/// its action in its signature, so it cannot run without the check.
pub struct Permitted<A> {
    pub principal: Principal,
    action: PhantomData<A>,
}

impl<A: ActionMarker> FromRequestParts<AppState> for Permitted<A> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Authenticated(principal) = Authenticated::from_request_parts(parts, state).await?;
        if !principal.may(A::ACTION) {
            return Err(ApiError::refused(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("your role does not allow {}", A::ACTION.name()),
            ));
        }
        Ok(Self {
            principal,
            action: PhantomData,
        })
    }
}

/// The bearer token of `Authorization: Bearer …`, if the header has that form.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

async fn principal(parts: &Parts, state: &AppState) -> Result<Principal, ApiError> {
    let token = bearer(&parts.headers).ok_or(ApiError::Unauthenticated)?;
    let principal = state
        .identity
        .authenticate(token)
        .await
        .map_err(ApiError::from)?;
    // Session routes are for people; service identities (claim RBAC-4) have none.
    if principal.kind() != PrincipalKind::Member {
        return Err(ApiError::refused(
            StatusCode::FORBIDDEN,
            "forbidden",
            "service identities have no session routes",
        ));
    }
    Ok(principal)
}

impl FromRequestParts<AppState> for AnySession {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        principal(parts, state).await.map(Self)
    }
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let principal = principal(parts, state).await?;
        if principal.mfa_pending() {
            return Err(IdentityError::MfaEnrollmentRequired.into());
        }
        Ok(Self(principal))
    }
}

impl From<IdentityError> for ApiError {
    fn from(error: IdentityError) -> Self {
        use IdentityError as E;
        let message = error.to_string();
        match error {
            E::Invalid(invalid) => ApiError::invalid_field(invalid.0),
            E::InvalidCredentials => {
                ApiError::refused(StatusCode::UNAUTHORIZED, "invalid_credentials", message)
            }
            E::MfaRequired => ApiError::refused(StatusCode::UNAUTHORIZED, "mfa_required", message),
            E::MfaRejected => {
                ApiError::refused(StatusCode::UNAUTHORIZED, "invalid_mfa_code", message)
            }
            E::MfaEnrollmentRequired => {
                ApiError::refused(StatusCode::FORBIDDEN, "mfa_enrollment_required", message)
            }
            E::TenantSuspended => {
                ApiError::refused(StatusCode::FORBIDDEN, "tenant_suspended", message)
            }
            E::Throttled { retry_after_secs } => ApiError::TooManyAttempts { retry_after_secs },
            E::Unauthenticated(reason) => {
                tracing::debug!(reason, "credential refused");
                ApiError::Unauthenticated
            }
            E::NotFound => ApiError::NotFound,
            E::InvalidToken => ApiError::BadRequest {
                code: "invalid_token",
                message: message.into(),
            },
            E::InvalidCode => ApiError::Invalid {
                code: "invalid_code",
                message: message.into(),
            },
            E::Conflict(text) => ApiError::refused(StatusCode::CONFLICT, "conflict", text),
            E::Forbidden(text) => ApiError::refused(StatusCode::FORBIDDEN, "forbidden", text),
            E::Hash(crate::identity::password::HashError::Overloaded) => ApiError::Overloaded {
                retry_after_secs: 1,
            },
            E::Hash(other) => ApiError::internal(other),
            E::Store(store) => store.into(),
            E::Token(token) => ApiError::internal(token),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::error::ERROR_CODES;

    #[test]
    fn every_identity_refusal_has_a_listed_code_and_status() {
        use IdentityError as E;
        for error in [
            E::InvalidCredentials,
            E::MfaRequired,
            E::MfaRejected,
            E::MfaEnrollmentRequired,
            E::TenantSuspended,
            E::Throttled {
                retry_after_secs: 3,
            },
            E::Unauthenticated("x"),
            E::NotFound,
            E::InvalidToken,
            E::InvalidCode,
            E::Conflict("x"),
            E::Forbidden("x"),
        ] {
            let api = ApiError::from(error);
            let row = ERROR_CODES
                .iter()
                .find(|(code, _, _)| *code == api.code())
                .unwrap_or_else(|| panic!("{} missing from ERROR_CODES", api.code()));
            assert_eq!(row.1, api.status().as_u16(), "{}", api.code());
        }
    }
}
