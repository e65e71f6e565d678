//! RFC 7662 token introspection and RFC 7009 token revocation for the app's backend (claim
//! APP-6), at `/oauth/introspect` and `/oauth/revoke`: form-encoded requests, the caller
//! authenticated by the app's service credential as a bearer token.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::origin;
use crate::app::AppState;
use crate::http::auth::Service;
use crate::http::error::ApiError;
use crate::http::extract::{Form, RequestContext};
use crate::http::openapi::ErrorBody;
use crate::identity::introspection::ActiveToken;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(introspect))
        .routes(routes!(revoke))
}

/// An introspection or revocation request (`application/x-www-form-urlencoded`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenForm {
    /// The access token (introspection, revocation) or refresh token (revocation).
    #[schema(value_type = String, min_length = 1, max_length = 4096)]
    token: SecretString,
    /// Which kind of token the caller believes it holds (`access_token`, `refresh_token`): a
    /// hint only (RFC 7662 §2.1, RFC 7009 §2.1). A token not found as that kind is looked
    /// for as the other; an unknown hint is ignored.
    #[serde(default)]
    #[schema(example = "access_token", max_length = 64)]
    token_type_hint: Option<String>,
}

/// The longest token either endpoint reads: access tokens are a few hundred bytes.
const MAX_TOKEN_BYTES: usize = 4096;

impl TokenForm {
    fn token(&self) -> Result<&str, ApiError> {
        use secrecy::ExposeSecret;
        let token = self.token.expose_secret();
        if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
            return Err(ApiError::invalid_field(
                "token must be 1 to 4096 characters",
            ));
        }
        Ok(token)
    }
}

/// RFC 7662 §2.2: `active`, and for a live token what the app may rely on now. An inactive
/// token's answer is `{"active": false}` and nothing else.
#[derive(Serialize, ToSchema, Default)]
pub struct Introspection {
    active: bool,
    /// The user (`usr_…`).
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    /// The tenant the token acts in (`ten_…`).
    #[serde(skip_serializing_if = "Option::is_none")]
    tid: Option<String>,
    /// The session (`ses_…`).
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
    /// `Bearer`.
    #[serde(skip_serializing_if = "Option::is_none")]
    token_type: Option<&'static str>,
    /// The member's built-in role now.
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    /// The custom role the member holds now, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    custom_role: Option<String>,
    /// The manifest's app role the member holds now, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    app_role: Option<String>,
    /// How the session was authenticated (RFC 8176): `pwd`, and `mfa` with a second factor.
    #[serde(skip_serializing_if = "Option::is_none")]
    amr: Option<Vec<String>>,
}

impl From<ActiveToken> for Introspection {
    fn from(active: ActiveToken) -> Self {
        let claims = active.claims;
        Self {
            active: true,
            sub: Some(claims.sub.to_string()),
            tid: Some(claims.tid.to_string()),
            sid: Some(claims.sid.to_string()),
            exp: Some(claims.exp),
            iat: Some(claims.iat),
            iss: Some(claims.iss),
            aud: Some(claims.aud),
            jti: Some(claims.jti),
            token_type: Some("Bearer"),
            role: Some(active.role),
            custom_role: active.custom_role.map(|id| id.to_string()),
            app_role: active.app_role,
            amr: Some(claims.amr),
        }
    }
}

/// Answers about tokens are never cached by anyone in between (RFC 7662 §4).
fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Is this access token live right now? (RFC 7662, claim APP-6.)
///
/// A revoked, logged-out, expired, switched-away or suspended session, a removed member,
/// a token of another deployment or a malformed one: `{"active": false}`, on the next call
/// after the change on every instance. A live token: its user, tenant, session, times and
/// how it signed in, with the member's role as it is now.
#[utoipa::path(
    post,
    path = "/oauth/introspect",
    tag = "access",
    security(("service" = [])),
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Whether the token is live, and for a live one what it says now", body = Introspection),
        (status = 401, description = "No valid service credential", body = ErrorBody),
    )
)]
async fn introspect(
    State(state): State<AppState>,
    _service: Service,
    Form(form): Form<TokenForm>,
) -> Result<Response, ApiError> {
    let answer = match state.identity.introspect(form.token()?).await? {
        Some(active) => Introspection::from(active),
        None => Introspection::default(),
    };
    Ok(no_store(axum::Json(answer).into_response()))
}

/// End the session behind an access or refresh token (RFC 7009, claim APP-6).
///
/// Always 200 with an empty body once the caller is authenticated, whether or not the token
/// named a live session (RFC 7009 §2.2): the answer tells nothing about the token. The
/// session's end is audited in its tenant as the app's (`service`).
#[utoipa::path(
    post,
    path = "/oauth/revoke",
    tag = "access",
    security(("service" = [])),
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The token's session, if it had one, has ended"),
        (status = 401, description = "No valid service credential", body = ErrorBody),
    )
)]
async fn revoke(
    State(state): State<AppState>,
    Service(service): Service,
    context: RequestContext,
    Form(form): Form<TokenForm>,
) -> Result<Response, ApiError> {
    form.token()?;
    let refresh_first = form.token_type_hint.as_deref() == Some("refresh_token");
    state
        .identity
        .revoke_for_app(&form.token, refresh_first, service.id(), &origin(context))
        .await?;
    Ok(no_store(axum::http::StatusCode::OK.into_response()))
}
