//! Authentication extractors. A handler names what it needs in its signature:
//! [`Permitted<A>`] (a member's session or an API key allowed action `A`: every tenant
//! route), [`PermittedPerson<A>`] (a session allowed a people-only action `A`),
//! [`Authenticated`] (a live session whose tenant's MFA policy is met) or
//! [`AnySession`] (also a session still waiting for MFA enrolment: the enrolment and
//! self-service routes). The tenant comes from the credential only (claim TEN-1).
//!
//! An API key arrives as `X-Api-Key: pal_…` or `Authorization: Bearer pal_…` (claim KEY-3);
//! a request carrying two credentials is refused rather than guessed at.

use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};

use super::error::{ApiError, ErrorCode};
use crate::access::{Action, AnyCredential, Caller, PeopleOnly, PrincipalKind, Subject};
use crate::app::AppState;
use crate::identity::service::IdentityError;
use crate::identity::sessions::Principal;
use crate::keys::{self, KeyPrincipal};
use crate::services::tenant_tokens::{looks_like_tenant_token, TenantTokenPrincipal};
use crate::services::{looks_like_service_credential, ServicePrincipal};

/// A live session, MFA policy met.
pub struct Authenticated(pub Principal);

/// A live session, possibly one the tenant's MFA policy still restricts to enrolment.
pub struct AnySession(pub Principal);

/// A member's session (as [`Authenticated`]) or an API key, allowed action `A` (claims
/// RBAC-1, KEY-5): the handler names its action in its signature, so it cannot run without
/// the check.
pub struct Permitted<A> {
    pub caller: Caller,
    action: PhantomData<A>,
}

/// A member's session allowed the people-only action `A`: never an API key, whatever its
/// role (claim KEY-5). It yields the person, for what only a person's session carries.
pub struct PermittedPerson<A> {
    pub person: Principal,
    pub caller: Caller,
    action: PhantomData<A>,
}

impl<A: AnyCredential> FromRequestParts<AppState> for Permitted<A> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = if let Some(VerifiedKey(key)) = parts.extensions.remove::<VerifiedKey>() {
            key.caller()
        } else {
            match credential(&parts.headers)? {
                Credential::ApiKey(key) => state.keys.authenticate(key).await?.caller(),
                Credential::Session(_) => Authenticated::from_request_parts(parts, state)
                    .await?
                    .0
                    .caller(),
                Credential::Service(_) | Credential::TenantToken(_) => {
                    return Err(service_not_here())
                }
            }
        };
        allowed(&caller, A::ACTION)?;
        Ok(Self {
            caller,
            action: PhantomData,
        })
    }
}

impl<A: PeopleOnly> FromRequestParts<AppState> for PermittedPerson<A> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // A key (verified by the rate limiter or not) meets `session_required` there.
        let Authenticated(person) = Authenticated::from_request_parts(parts, state).await?;
        let caller = person.caller();
        allowed(&caller, A::ACTION)?;
        Ok(Self {
            person,
            caller,
            action: PhantomData,
        })
    }
}

/// A people-only action `A` by a member's session, or the app's backend under a tenant
/// token, on the few tenant routes the app also takes (creating its customers' keys, claim
/// APP-5); what the app may do there is the domain's rule.
pub enum MemberOrApp<A> {
    Member(Box<PermittedPerson<A>>),
    App(TenantTokenPrincipal),
}

impl<A: PeopleOnly> FromRequestParts<AppState> for MemberOrApp<A> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(token) = tenant_token(parts, state).await {
            return token.map(Self::App);
        }
        PermittedPerson::from_request_parts(parts, state)
            .await
            .map(|person| Self::Member(Box::new(person)))
    }
}

/// A tenant action `A` by a member or key allowed it, or by the app's backend under a tenant
/// token (the routes that keep the app's data in one tenant: the vault).
pub enum TenantActor<A> {
    Caller(Permitted<A>),
    App(TenantTokenPrincipal),
}

impl<A> TenantActor<A> {
    pub fn scope(&self) -> crate::access::TenantScope {
        match self {
            TenantActor::Caller(permitted) => permitted.caller.scope(),
            TenantActor::App(token) => token.scope(),
        }
    }

    pub fn acting(&self) -> crate::audit::Acting {
        match self {
            TenantActor::Caller(permitted) => crate::audit::Acting::from(&permitted.caller),
            TenantActor::App(token) => crate::audit::Acting::from(token),
        }
    }
}

impl<A> From<&TenantActor<A>> for crate::audit::TenantActing {
    fn from(actor: &TenantActor<A>) -> Self {
        Self {
            scope: actor.scope(),
            acting: actor.acting(),
        }
    }
}

impl<A: AnyCredential> FromRequestParts<AppState> for TenantActor<A> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(token) = tenant_token(parts, state).await {
            return token.map(Self::App);
        }
        Permitted::from_request_parts(parts, state)
            .await
            .map(Self::Caller)
    }
}

/// The request's tenant token, verified (by the rate limiter already, or now), when it
/// carries one; None: another credential or none.
async fn tenant_token(
    parts: &mut Parts,
    state: &AppState,
) -> Option<Result<TenantTokenPrincipal, ApiError>> {
    if let Some(VerifiedTenantToken(token)) = parts.extensions.remove::<VerifiedTenantToken>() {
        return Some(Ok(token));
    }
    match credential(&parts.headers) {
        Ok(Credential::TenantToken(text)) => Some(
            state
                .services
                .authenticate_tenant_token(text)
                .await
                .map_err(ApiError::from),
        ),
        _ => None,
    }
}

/// The one check both extractors make, with a refusal that says whose grant fell short.
fn allowed(caller: &Caller, action: Action) -> Result<(), ApiError> {
    if caller.may(action) {
        return Ok(());
    }
    let whose = match caller.subject() {
        Subject::Person { .. } => "your role",
        Subject::Key { .. } => "this API key",
    };
    Err(ApiError::coded(
        ErrorCode::Forbidden,
        format!("{whose} does not allow {}", action.name()),
    ))
}

/// The credential a request carries.
pub enum Credential<'a> {
    Session(&'a str),
    ApiKey(&'a str),
    /// The app's service credential: good for the integration endpoints only (claim APP-2).
    Service(&'a str),
    /// A tenant token the service credential obtained (claim APP-8): the integration
    /// endpoints that work in one tenant.
    TenantToken(&'a str),
}

/// The one credential of a request: an API key (either header) or a session's bearer token.
pub fn credential(headers: &HeaderMap) -> Result<Credential<'_>, ApiError> {
    let api_key_header = match headers.get(API_KEY_HEADER) {
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| ApiError::Unauthenticated)?
                .trim(),
        ),
        None => None,
    };
    match (api_key_header, bearer(headers)) {
        (Some(_), Some(_)) => Err(ApiError::Unauthenticated),
        (Some(key), None) => Ok(Credential::ApiKey(key)),
        (None, Some(token)) if keys::secret::looks_like_key(token) => Ok(Credential::ApiKey(token)),
        (None, Some(token)) if looks_like_service_credential(token) => {
            Ok(Credential::Service(token))
        }
        (None, Some(token)) if looks_like_tenant_token(token) => Ok(Credential::TenantToken(token)),
        (None, Some(token)) => Ok(Credential::Session(token)),
        (None, None) => Err(ApiError::Unauthenticated),
    }
}

pub const API_KEY_HEADER: &str = "x-api-key";

/// The app's backend, by its service credential: the integration endpoints' caller
/// (claim APP-2). Nothing else is accepted there.
pub struct Service(pub ServicePrincipal);

impl FromRequestParts<AppState> for Service {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(VerifiedService(service)) = parts.extensions.remove::<VerifiedService>() {
            return Ok(Self(service));
        }
        match credential(&parts.headers)? {
            Credential::Service(text) => Ok(Self(state.services.authenticate(text).await?)),
            Credential::Session(_) | Credential::ApiKey(_) | Credential::TenantToken(_) => {
                Err(service_required())
            }
        }
    }
}

fn service_required() -> ApiError {
    ApiError::coded(
        ErrorCode::Unauthenticated,
        "this endpoint takes the app's service credential (Authorization: Bearer pal_svc_…)",
    )
}

/// The app's backend on an endpoint that works in one tenant (claims APP-4, APP-8): by its
/// service credential, the tenant then coming from the end user's credential the request
/// names, or by a tenant token, which names the tenant itself.
pub enum AppCaller {
    Service(ServicePrincipal),
    Tenant(TenantTokenPrincipal),
}

impl AppCaller {
    pub fn service(&self) -> crate::ids::ServiceId {
        match self {
            AppCaller::Service(service) => service.id(),
            AppCaller::Tenant(token) => token.service(),
        }
    }
}

impl FromRequestParts<AppState> for AppCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(VerifiedService(service)) = parts.extensions.remove::<VerifiedService>() {
            return Ok(Self::Service(service));
        }
        if let Some(VerifiedTenantToken(token)) = parts.extensions.remove::<VerifiedTenantToken>() {
            return Ok(Self::Tenant(token));
        }
        match credential(&parts.headers)? {
            Credential::Service(text) => Ok(Self::Service(state.services.authenticate(text).await?)),
            Credential::TenantToken(text) => Ok(Self::Tenant(
                state.services.authenticate_tenant_token(text).await?,
            )),
            Credential::Session(_) | Credential::ApiKey(_) => Err(ApiError::coded(
                ErrorCode::Unauthenticated,
                "this endpoint takes the app's service credential or a tenant token (Authorization: Bearer pal_svc_… or pal_tt_…)",
            )),
        }
    }
}

/// A service credential the rate limiter already verified for this request.
#[derive(Clone)]
pub struct VerifiedService(pub ServicePrincipal);

/// A tenant token the rate limiter already verified for this request.
#[derive(Clone)]
pub struct VerifiedTenantToken(pub TenantTokenPrincipal);

/// A service credential on a tenant or session route: it is good for the integration
/// endpoints only, so the request lacks the credential the route takes.
fn service_not_here() -> ApiError {
    ApiError::coded(
        ErrorCode::Unauthenticated,
        "the app's credentials (service credentials, tenant tokens) are accepted on the integration endpoints (docs/integration.md) only",
    )
}

/// A key the rate limiter already verified for this request, so it is checked once.
#[derive(Clone)]
pub struct VerifiedKey(pub KeyPrincipal);

/// A route documented as bearer-only, reached with a key: the request lacks the
/// credential the route takes, so it is a 401 naming the scheme, as with none at all.
fn session_required() -> ApiError {
    ApiError::coded(ErrorCode::Unauthenticated, "this operation takes a person's session; API keys have no session routes and take no people-only action",
    )
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
    // An Agent or any other key never has a session (claim RBAC-4).
    let token = match credential(&parts.headers)? {
        Credential::Session(token) => token,
        Credential::Service(_) | Credential::TenantToken(_) => return Err(service_not_here()),
        Credential::ApiKey(_) => return Err(session_required()),
    };
    let principal = state
        .identity
        .authenticate(token)
        .await
        .map_err(ApiError::from)?;
    // Session routes are for people; service identities (claim RBAC-4) have none.
    if principal.kind() != PrincipalKind::Member {
        return Err(ApiError::coded(
            ErrorCode::Forbidden,
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
            E::InvalidCredentials => ApiError::coded(ErrorCode::InvalidCredentials, message),
            E::MfaRequired => ApiError::coded(ErrorCode::MfaRequired, message),
            E::MfaRejected => ApiError::coded(ErrorCode::InvalidMfaCode, message),
            E::MfaEnrollmentRequired => ApiError::coded(ErrorCode::MfaEnrollmentRequired, message),
            E::TenantSuspended => ApiError::coded(ErrorCode::TenantSuspended, message),
            E::Throttled { retry_after_secs } => ApiError::TooManyAttempts { retry_after_secs },
            E::Unauthenticated(reason) => {
                tracing::debug!(reason, "credential refused");
                ApiError::Unauthenticated
            }
            E::NotFound => ApiError::NotFound,
            E::InvalidToken => ApiError::coded(ErrorCode::InvalidToken, message),
            E::InvalidCode => ApiError::coded(ErrorCode::InvalidCode, message),
            E::Conflict(text) => ApiError::coded(ErrorCode::Conflict, text),
            E::Forbidden(text) => ApiError::coded(ErrorCode::Forbidden, text),
            E::Hash(crate::identity::password::HashError::Overloaded) => ApiError::Overloaded {
                retry_after_secs: 1,
            },
            E::Hash(other) => ApiError::internal(other),
            E::Store(store) => store.into(),
            E::Token(token) => ApiError::internal(token),
        }
    }
}

/// An operator's endpoint (`/metrics`, `/api/v1/posture`): the request must present the
/// configured token as a bearer token, compared in constant time; with none configured,
/// nobody may call it.
pub fn operator_bearer(
    headers: &axum::http::HeaderMap,
    expected: Option<&secrecy::SecretString>,
) -> Result<(), ApiError> {
    use secrecy::ExposeSecret;
    use subtle::ConstantTimeEq;
    let Some(expected) = expected else {
        return Err(ApiError::Unauthenticated);
    };
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let matches: bool = presented
        .as_bytes()
        .ct_eq(expected.expose_secret().as_bytes())
        .into();
    if matches {
        Ok(())
    } else {
        Err(ApiError::Unauthenticated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A refusal is the client's to fix: no identity error a client can cause is a 5xx.
    #[test]
    fn every_identity_refusal_is_a_client_error() {
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
            assert!(api.status().is_client_error(), "{}", api.code().name());
        }
    }
}
