//! Claim WEB-3: a state-changing request authenticated by cookie needs the session's CSRF
//! token and, from a browser, an origin the deployment trusts. The refresh cookie is the
//! one cookie Palisade reads (`POST /api/v1/auth/refresh` and `/logout`); bearer tokens
//! and API keys are exempt, since a browser never attaches them on its own.
//!
//! The token is SHA-256 of a domain label and the session's current refresh token,
//! base64url: it rotates with the refresh token, it is answered only in the body of a
//! sign-in or refresh (which CORS keeps from other origins' pages), and it needs no
//! storage, because the cookie it is checked against carries the refresh token itself. A
//! cross-site form cannot send a header, and no page of another origin can read the token.

use axum::http::{header, HeaderMap};
use secrecy::{ExposeSecret, SecretString};

use super::error::{ApiError, ErrorCode};
use crate::config::Settings;

/// The request header that carries the token.
pub const CSRF_HEADER: &str = "x-csrf-token";

const DOMAIN: &[u8] = b"palisade.csrf.v1\0";

/// The CSRF token that goes with `refresh`.
pub fn token_for(refresh: &SecretString) -> String {
    let mut input = Vec::with_capacity(DOMAIN.len() + 64);
    input.extend_from_slice(DOMAIN);
    input.extend_from_slice(refresh.expose_secret().as_bytes());
    let digest = crate::crypto::sha256(&input);
    crate::crypto::base64url(&digest)
}

/// Checks a request authenticated by the refresh cookie `refresh`: the token in
/// [`CSRF_HEADER`], and when a browser says where the request comes from (`Origin`, or
/// `Sec-Fetch-Site`), that it is the deployment itself or one of `http.cors_origins`.
/// A client that is not a browser sends neither, and the token alone suffices: the attack
/// this stops needs a browser.
pub fn check(
    headers: &HeaderMap,
    refresh: &SecretString,
    settings: &Settings,
) -> Result<(), ApiError> {
    let refused = |why: &'static str| ApiError::coded(ErrorCode::CsrfRejected, why);
    match headers
        .get(header::ORIGIN)
        .map(|v| v.to_str().unwrap_or(""))
    {
        Some(origin) if !trusted(origin, settings) => {
            return Err(refused(
                "the request's Origin is not one this deployment trusts",
            ));
        }
        Some(_) => {}
        None => {
            let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
            if site.is_some_and(|site| site != "same-origin" && site != "none") {
                return Err(refused("a cross-site request with the session's cookie"));
            }
        }
    }
    let presented = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if crate::crypto::constant_time_eq(presented.as_bytes(), token_for(refresh).as_bytes()) {
        Ok(())
    } else {
        Err(refused("X-CSRF-Token is missing or not this session's"))
    }
}

/// The deployment's own origin (that of `mail.link_base_url`, where its pages are) or one
/// of `http.cors_origins`.
fn trusted(origin: &str, settings: &Settings) -> bool {
    let own = own_origin(&settings.mail.link_base_url);
    origin == own
        || settings
            .http
            .cors_origins
            .iter()
            .any(|listed| listed == origin)
}

/// `scheme://host[:port]` of a URL.
fn own_origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(end) => &url[..after_scheme + end],
        None => url,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_bound_to_its_refresh_token_and_the_own_origin_is_the_pages() {
        let one = token_for(&SecretString::from("refresh-one".to_owned()));
        let two = token_for(&SecretString::from("refresh-two".to_owned()));
        assert_ne!(one, two);
        assert_eq!(one.len(), 43);
        assert_eq!(
            own_origin("https://id.example.com/pages"),
            "https://id.example.com"
        );
        assert_eq!(own_origin("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
    }
}
