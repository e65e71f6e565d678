//! Session routes: sign-in, refresh, logout, the caller, their sessions and tenants, tenant
//! switching, revoke-all, and the JWKS that verifies access tokens.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{cleared_cookie, origin, read_refresh_cookie, refresh_cookie};
use crate::access::Role;
use crate::app::AppState;
use crate::http::auth::{bearer, AnySession};
use crate::http::error::ApiError;
use crate::http::extract::{Json, RequestContext};
use crate::http::openapi::ErrorBody;
use crate::identity::sessions::{LoginInput, SessionTokens};
use crate::identity::tokens::IssuedToken;
use crate::ids::{SessionId, TenantId, UserId};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(my_tenants))
        .routes(routes!(list_sessions))
        .routes(routes!(revoke_session))
        .routes(routes!(switch_tenant))
        .routes(routes!(revoke_all))
        .routes(routes!(jwks))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(example = "ada@example.com", max_length = 254, format = Email)]
    email: String,
    #[schema(value_type = String, min_length = 1, max_length = 128, format = Password)]
    password: SecretString,
    /// The tenant to act in; default: the user's oldest membership.
    tenant_id: Option<TenantId>,
    /// A current TOTP code, when the account uses two-factor authentication.
    #[schema(value_type = Option<String>, example = "123456", pattern = "^[0-9]{6}$")]
    totp: Option<SecretString>,
    /// One of the account's recovery codes, instead of `totp`; each works once.
    #[schema(value_type = Option<String>)]
    recovery_code: Option<SecretString>,
}

#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    /// An EdDSA-signed JWT; verify it with `/.well-known/jwks.json`.
    access_token: String,
    #[schema(example = "Bearer")]
    token_type: &'static str,
    /// Seconds until the access token expires.
    #[schema(example = 900)]
    expires_in: u64,
    tenant_id: TenantId,
    /// Send it as `X-CSRF-Token` with the refresh cookie (`/api/v1/auth/refresh`,
    /// `/logout`): the cookie alone is refused (claim WEB-3). It changes with every refresh;
    /// a tenant switch, which keeps the refresh token, keeps it too and leaves it out.
    #[serde(skip_serializing_if = "Option::is_none")]
    csrf_token: Option<String>,
}

impl TokenResponse {
    fn new(access: IssuedToken, tenant: TenantId, refresh: Option<&SecretString>) -> Self {
        Self {
            access_token: access.token,
            token_type: "Bearer",
            expires_in: access.expires_in,
            tenant_id: tenant,
            csrf_token: refresh.map(crate::http::csrf::token_for),
        }
    }
}

fn with_refresh_cookie(state: &AppState, tokens: SessionTokens) -> Response {
    let cookie = refresh_cookie(
        state.identity.settings(),
        &tokens.refresh,
        tokens.refresh_max_age,
    );
    let body = TokenResponse::new(tokens.access, tokens.tenant, Some(&tokens.refresh));
    ([(header::SET_COOKIE, cookie)], axum::Json(body)).into_response()
}

/// Sign in. Answers with an access token and sets the rotating refresh cookie.
///
/// An unknown email and a wrong password get the same answer. After 5 failures in 15
/// minutes for one email from one address (or more from one address) the answer is 429.
#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    tag = "identity",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in; the refresh cookie is set", body = TokenResponse),
        (status = 401, description = "Wrong credentials, or a second factor is needed or wrong", body = ErrorBody),
        (status = 403, description = "The account belongs to no tenant", body = ErrorBody),
        (status = 404, description = "Not a member of the requested tenant", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody),
        (status = 429, description = "Too many failed sign-ins", body = ErrorBody),
        (status = 503, description = "Busy or database unavailable", body = ErrorBody),
    )
)]
async fn login(
    State(state): State<AppState>,
    context: RequestContext,
    Json(body): Json<LoginRequest>,
) -> Result<Response, ApiError> {
    let input = LoginInput {
        email: body.email,
        password: body.password,
        tenant: body.tenant_id,
        totp: body.totp,
        recovery_code: body.recovery_code,
    };
    let tokens = state.identity.login(input, &origin(context)).await?;
    Ok(with_refresh_cookie(&state, tokens))
}

/// Exchange the refresh cookie for a new access token and a new refresh cookie.
///
/// Each refresh token works once: presenting a used one ends its whole session. The
/// cookie needs the session's `X-CSRF-Token` (from the last sign-in or refresh), and a
/// browser's `Origin` must be the deployment's or one of `http.cors_origins` (403
/// `csrf_rejected`, the token left unspent).
#[utoipa::path(
    post,
    path = "/api/v1/auth/refresh",
    tag = "identity",
    responses(
        (status = 200, description = "Rotated; a new refresh cookie is set", body = TokenResponse),
        (status = 401, description = "Missing, used, revoked or expired refresh token", body = ErrorBody),
        (status = 403, description = "No or a wrong X-CSRF-Token, or an untrusted Origin", body = ErrorBody),
    )
)]
async fn refresh(
    State(state): State<AppState>,
    context: RequestContext,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let settings = state.identity.settings();
    let Some(token) = read_refresh_cookie(&headers, settings) else {
        return Err(ApiError::Unauthenticated);
    };
    crate::http::csrf::check(&headers, &token, &state.settings)?;
    match state.identity.refresh(&token, &origin(context)).await {
        Ok(tokens) => Ok(with_refresh_cookie(&state, tokens)),
        Err(error) => {
            let mut response = ApiError::from(error).into_response();
            response
                .headers_mut()
                .insert(header::SET_COOKIE, cleared_cookie(settings));
            Ok(response)
        }
    }
}

/// Sign out: the session ends at once, its refresh token and access tokens included. With
/// the access token as bearer; or with the refresh cookie, which needs the session's
/// `X-CSRF-Token` and a trusted `Origin`, as for a refresh.
#[utoipa::path(
    post,
    path = "/api/v1/auth/logout",
    tag = "identity",
    responses(
        (status = 204, description = "Signed out (also when already signed out)"),
        (status = 403, description = "The cookie without its X-CSRF-Token, or an untrusted Origin", body = ErrorBody),
    ),
)]
async fn logout(
    State(state): State<AppState>,
    context: RequestContext,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let settings = state.identity.settings();
    // A bad or expired access token still lets the cookie end its session.
    let principal = match bearer(&headers) {
        Some(token) => state.identity.authenticate(token).await.ok(),
        None => None,
    };
    // The cookie counts only with its CSRF token; a bearer alone needs none.
    let cookie = read_refresh_cookie(&headers, settings);
    if let Some(cookie) = &cookie {
        crate::http::csrf::check(&headers, cookie, &state.settings)?;
    }
    state
        .identity
        .logout(principal.as_ref(), cookie.as_ref(), &origin(context))
        .await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, cleared_cookie(settings));
    Ok(response)
}

#[derive(Serialize, ToSchema)]
pub struct MeResponse {
    user: UserView,
    tenant: TenantView,
    role: Role,
    session_id: SessionId,
    /// The session used a second factor.
    mfa: bool,
    /// The tenant requires MFA and this session has none: enrol to continue.
    mfa_enrollment_required: bool,
    /// Every action of `GET /api/v1/roles` this session may take now, Palisade's and the
    /// app's: the role's, or the custom or app role's if one is held (empty while MFA
    /// enrolment is required).
    #[schema(example = json!(["tenant.read", "members.read"]))]
    actions: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct UserView {
    id: UserId,
    email: String,
    email_verified: bool,
}

#[derive(Serialize, ToSchema)]
pub struct TenantView {
    id: TenantId,
    name: String,
}

/// The caller: user, the tenant the token acts in, and the role held there.
#[utoipa::path(
    get,
    path = "/api/v1/me",
    tag = "identity",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = MeResponse),
        (status = 401, description = "Not signed in", body = ErrorBody),
    )
)]
async fn me(AnySession(principal): AnySession) -> axum::Json<MeResponse> {
    let role = principal.role();
    let actions = if principal.mfa_pending() {
        Vec::new()
    } else {
        principal
            .grants()
            .allowed()
            .map(|row| row.name.to_string())
            .collect()
    };
    axum::Json(MeResponse {
        user: UserView {
            id: principal.user,
            email: principal.email,
            email_verified: principal.email_verified,
        },
        tenant: TenantView {
            id: principal.tenant,
            name: principal.tenant_name.to_string(),
        },
        role,
        session_id: principal.session,
        mfa: principal.mfa,
        mfa_enrollment_required: principal.mfa_pending,
        actions,
    })
}

#[derive(Serialize, ToSchema)]
pub struct MembershipView {
    tenant: TenantView,
    role: Role,
    require_mfa: bool,
}

/// Every tenant the caller belongs to, oldest membership first.
#[utoipa::path(
    get,
    path = "/api/v1/me/tenants",
    tag = "identity",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Memberships", body = [MembershipView]),
        (status = 401, description = "Not signed in", body = ErrorBody),
    )
)]
async fn my_tenants(
    State(state): State<AppState>,
    AnySession(principal): AnySession,
) -> Result<axum::Json<Vec<MembershipView>>, ApiError> {
    let memberships = state.identity.tenants_of(&principal).await?;
    Ok(axum::Json(
        memberships
            .into_iter()
            .map(|m| MembershipView {
                tenant: TenantView {
                    id: m.tenant_id,
                    name: m.tenant_name,
                },
                role: m.role,
                require_mfa: m.require_mfa,
            })
            .collect(),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct SessionView {
    id: SessionId,
    tenant_id: TenantId,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    last_refreshed_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    expires_at: OffsetDateTime,
    ip: Option<String>,
    user_agent: Option<String>,
    mfa: bool,
    /// The session this request was made with.
    current: bool,
}

/// The caller's live sessions, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/auth/sessions",
    tag = "identity",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Live sessions", body = [SessionView]),
        (status = 401, description = "Not signed in", body = ErrorBody),
    )
)]
async fn list_sessions(
    State(state): State<AppState>,
    AnySession(principal): AnySession,
) -> Result<axum::Json<Vec<SessionView>>, ApiError> {
    let sessions = state.identity.sessions(&principal).await?;
    Ok(axum::Json(
        sessions
            .into_iter()
            .map(|s| SessionView {
                current: s.id == principal.session,
                id: s.id,
                tenant_id: s.tenant_id,
                created_at: s.created_at,
                last_refreshed_at: s.last_refreshed_at,
                expires_at: s.absolute_expires_at,
                ip: s.ip,
                user_agent: s.user_agent,
                mfa: s.mfa,
            })
            .collect(),
    ))
}

/// End one of the caller's sessions. Another user's session id is 404.
#[utoipa::path(
    delete,
    path = "/api/v1/auth/sessions/{session_id}",
    tag = "identity",
    security(("bearer" = [])),
    params(("session_id" = SessionId, Path, description = "A session of the caller")),
    responses(
        (status = 204, description = "Ended"),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such live session of the caller", body = ErrorBody),
    )
)]
async fn revoke_session(
    State(state): State<AppState>,
    AnySession(principal): AnySession,
    context: RequestContext,
    Path(session_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let session: SessionId = session_id
        .parse()
        .map_err(|_| ApiError::bad_request("session_id: expected a ses_ id"))?;
    state
        .identity
        .revoke_session(&principal, session, &origin(context))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SwitchTenantRequest {
    tenant_id: TenantId,
}

/// Act in another of the caller's tenants: a new access token for it. The session's
/// refresh cookie follows the switch; the previous access token stops working.
#[utoipa::path(
    post,
    path = "/api/v1/auth/switch-tenant",
    tag = "identity",
    request_body = SwitchTenantRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A token for the tenant", body = TokenResponse),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "Not a member of that tenant", body = ErrorBody),
        (status = 422, description = "Invalid body", body = ErrorBody),
    )
)]
async fn switch_tenant(
    State(state): State<AppState>,
    AnySession(principal): AnySession,
    context: RequestContext,
    Json(body): Json<SwitchTenantRequest>,
) -> Result<axum::Json<TokenResponse>, ApiError> {
    let access = state
        .identity
        .switch_tenant(&principal, body.tenant_id, &origin(context))
        .await?;
    Ok(axum::Json(TokenResponse::new(access, body.tenant_id, None)))
}

/// End every session and invalidate every token of the caller, on every device.
#[utoipa::path(
    post,
    path = "/api/v1/auth/revoke-all",
    tag = "identity",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Every token issued before now is refused"),
        (status = 401, description = "Not signed in", body = ErrorBody),
    )
)]
async fn revoke_all(
    State(state): State<AppState>,
    AnySession(principal): AnySession,
    context: RequestContext,
) -> Result<StatusCode, ApiError> {
    state
        .identity
        .revoke_all(&principal, &origin(context))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The public keys that verify access tokens (RFC 7517), retired ones included until the
/// tokens they signed have expired.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "identity",
    responses((status = 200, description = "JSON Web Key Set", content_type = "application/json", body = Object))
)]
async fn jwks(State(state): State<AppState>) -> Response {
    let identity = &state.identity;
    let mut response = axum::Json(identity.tokens().jwks(identity.now())).into_response();
    // Short, so a rotation reaches verifiers quickly; they also refetch on an unknown kid.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    response
}
