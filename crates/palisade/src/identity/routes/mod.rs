//! Identity's HTTP surface: parse, call the `Identity` service, answer. No rules live here.
//! The refresh cookie's shape (claim ID-3) is decided here, since cookies are HTTP.

mod account;
mod mfa;
mod oauth;
mod sessions;

use axum::http::{header, HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use utoipa_axum::router::OpenApiRouter;

use super::service::Origin;
use crate::app::AppState;
use crate::config::AuthSettings;
use crate::http::extract::RequestContext;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(account::router())
        .merge(sessions::router())
        .merge(mfa::router())
        .merge(oauth::router())
}

/// Who is asking, for audit records: shared by every capability's routes.
pub fn origin(context: RequestContext) -> Origin {
    Origin {
        request_id: context.request_id.to_string(),
        ip: context.ip,
        user_agent: context.user_agent,
    }
}

/// Only the auth routes (refresh, logout) ever receive the cookie.
const COOKIE_PATH: &str = "/api/v1/auth";

/// `__Secure-` makes browsers refuse the cookie unless it is Secure and set over HTTPS.
fn cookie_name(settings: &AuthSettings) -> &'static str {
    if settings.cookie_secure {
        "__Secure-palisade_refresh"
    } else {
        "palisade_refresh"
    }
}

fn refresh_cookie(settings: &AuthSettings, token: &SecretString, max_age: u64) -> HeaderValue {
    let secure = if settings.cookie_secure {
        "; Secure"
    } else {
        ""
    };
    let text = format!(
        "{}={}; Max-Age={max_age}; Path={COOKIE_PATH}; HttpOnly; SameSite=Strict{secure}",
        cookie_name(settings),
        token.expose_secret(),
    );
    let mut value = HeaderValue::from_str(&text).expect("a token is base64url");
    value.set_sensitive(true);
    value
}

fn cleared_cookie(settings: &AuthSettings) -> HeaderValue {
    let secure = if settings.cookie_secure {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{}=; Max-Age=0; Path={COOKIE_PATH}; HttpOnly; SameSite=Strict{secure}",
        cookie_name(settings)
    ))
    .expect("a static cookie")
}

/// The refresh token from the request's cookies, if present and of plausible length.
fn read_refresh_cookie(headers: &HeaderMap, settings: &AuthSettings) -> Option<SecretString> {
    let name = cookie_name(settings);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, value)| *key == name && value.len() <= 128)
        .map(|(_, value)| SecretString::from(value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // claim: ID-3
    #[test]
    fn the_refresh_cookie_is_httponly_secure_strict_and_path_bound() {
        let settings = AuthSettings::default();
        let token = SecretString::from("abc".to_owned());
        let cookie = refresh_cookie(&settings, &token, 60);
        let text = cookie.to_str().unwrap();
        assert!(text.starts_with("__Secure-palisade_refresh=abc;"), "{text}");
        for attribute in [
            "HttpOnly",
            "Secure",
            "SameSite=Strict",
            "Path=/api/v1/auth",
            "Max-Age=60",
        ] {
            assert!(text.contains(attribute), "{attribute} in {text}");
        }
        assert!(cookie.is_sensitive());
    }

    #[test]
    fn the_cookie_is_read_among_others_and_by_its_exact_name() {
        let settings = AuthSettings::default();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static(
                "a=1; palisade_refresh=wrong; __Secure-palisade_refresh=right",
            ),
        );
        let token = read_refresh_cookie(&headers, &settings).unwrap();
        assert_eq!(token.expose_secret(), "right");
        headers.insert(header::COOKIE, HeaderValue::from_static("x=1"));
        assert!(read_refresh_cookie(&headers, &settings).is_none());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Cookie names and values as browsers send them: no `;`, `=` or spaces.
        fn cookie_text() -> impl Strategy<Value = String> {
            proptest::collection::vec(proptest::char::range('!', '~'), 1..40).prop_map(|chars| {
                chars
                    .into_iter()
                    .filter(|c| !matches!(c, ';' | '=' | ','))
                    .collect()
            })
        }

        proptest! {
            // claim: ID-3
            #[test]
            fn the_refresh_cookie_is_found_by_its_exact_name_wherever_it_is(
                others in proptest::collection::vec((cookie_text(), cookie_text()), 0..6),
                position in 0usize..7,
                token in proptest::collection::vec(proptest::char::range('A', 'z'), 1..=128),
            ) {
                let settings = AuthSettings::default();
                let name = cookie_name(&settings);
                let token: String = token.into_iter().filter(|c| c.is_ascii_alphanumeric()).collect();
                prop_assume!(!token.is_empty());
                let mut pairs: Vec<String> = others
                    .iter()
                    .filter(|(key, _)| key.as_str() != name && !key.is_empty())
                    .map(|(key, value)| format!("{key}={value}"))
                    .collect();
                let at = position.min(pairs.len());
                pairs.insert(at, format!("{name}={token}"));
                let mut headers = HeaderMap::new();
                headers.insert(header::COOKIE, HeaderValue::from_str(&pairs.join("; ")).unwrap());
                let found = read_refresh_cookie(&headers, &settings);
                prop_assert_eq!(found.map(|t| t.expose_secret().to_owned()), Some(token));
            }

            /// A name that merely contains, prefixes or extends ours is another cookie; a
            /// value past the longest token is not read at all.
            #[test]
            fn near_names_and_oversized_values_are_not_the_refresh_cookie(
                affix in cookie_text(),
                before in any::<bool>(),
                long in 129usize..600,
            ) {
                let settings = AuthSettings::default();
                let name = cookie_name(&settings);
                prop_assume!(!affix.is_empty());
                let near = if before { format!("{affix}{name}") } else { format!("{name}{affix}") };
                let text = format!("{near}=token; {name}={}", "a".repeat(long));
                let mut headers = HeaderMap::new();
                headers.insert(header::COOKIE, HeaderValue::from_str(&text).unwrap());
                prop_assert!(read_refresh_cookie(&headers, &settings).is_none());
            }

            #[test]
            fn arbitrary_cookie_headers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
                if let Ok(value) = HeaderValue::from_bytes(&bytes) {
                    let mut headers = HeaderMap::new();
                    headers.insert(header::COOKIE, value);
                    let _ = read_refresh_cookie(&headers, &AuthSettings::default());
                }
            }
        }
    }
}
