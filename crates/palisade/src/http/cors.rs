//! Cross-origin access for the app's own pages (`http.cors_origins`): a listed origin is
//! echoed with credentials allowed and its preflights are answered by the frame; any other
//! origin gets no CORS header at all, so the browser keeps its page out. There is no
//! wildcard: credentials and `*` never go together.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};

/// Request headers a page may send: its bearer token, a key, JSON, an idempotency key, the
/// session's CSRF token.
const ALLOWED_HEADERS: &str =
    "authorization, content-type, x-api-key, idempotency-key, x-csrf-token";
const ALLOWED_METHODS: &str = "GET, POST, PUT, PATCH, DELETE";
/// What a page may read of an answer beyond the simple headers.
const EXPOSED_HEADERS: &str =
    "x-request-id, retry-after, ratelimit-limit, ratelimit-remaining, ratelimit-reset, idempotent-replayed";
/// How long a browser may reuse a preflight's answer, in seconds.
const MAX_AGE: &str = "600";

/// Whether `text` is an origin as browsers send it: `http` or `https`, a host, an
/// optional port, nothing else, in lower case.
pub fn is_origin(text: &str) -> bool {
    let Some(rest) = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
    else {
        return false;
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || rest.starts_with('[') => (host, Some(port)),
        _ => (rest, None),
    };
    let host_ok = !host.is_empty()
        && host.bytes().all(|b| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || matches!(b, b'.' | b'-' | b'[' | b']' | b':')
        });
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

/// The origins the deployment lists, as the header values they are echoed as.
pub struct CorsOrigins(Vec<HeaderValue>);

impl CorsOrigins {
    pub fn new(origins: &[String]) -> Self {
        Self(
            origins
                .iter()
                .filter_map(|origin| HeaderValue::from_str(origin).ok())
                .collect(),
        )
    }

    /// The request's `Origin`, when it is one of the listed.
    pub fn allowed(&self, request: &HeaderMap) -> Option<HeaderValue> {
        if self.0.is_empty() {
            return None;
        }
        let origin = request.get(header::ORIGIN)?;
        self.0.iter().find(|listed| *listed == origin).cloned()
    }

    pub fn any(&self) -> bool {
        !self.0.is_empty()
    }
}

/// Whether a request is a CORS preflight.
pub fn is_preflight(method: &Method, request: &HeaderMap) -> bool {
    method == Method::OPTIONS && request.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The answer to a listed origin's preflight: no body, what it may send.
pub fn preflight() -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(ALLOWED_METHODS),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(ALLOWED_HEADERS),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(MAX_AGE),
    );
    response
}

/// Marks an answer for a listed origin (`Some`), and, whenever origins are listed, as
/// varying by `Origin`, so no cache hands one origin's answer to another.
pub fn mark(headers: &mut HeaderMap, origins: &CorsOrigins, allowed: Option<HeaderValue>) {
    if !origins.any() {
        return;
    }
    headers.append(header::VARY, HeaderValue::from_static("origin"));
    let Some(origin) = allowed else { return };
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSED_HEADERS),
    );
}

#[cfg(test)]
mod tests {
    use super::is_origin;

    #[test]
    fn only_bare_lower_case_origins_are_origins() {
        for good in [
            "https://app.example.com",
            "http://localhost:3000",
            "https://[::1]:8443",
        ] {
            assert!(is_origin(good), "{good}");
        }
        for bad in [
            "*",
            "app.example.com",
            "https://app.example.com/",
            "https://app.example.com/path",
            "https://App.example.com",
            "ftp://example.com",
            "https://",
            "https://example.com:",
            "https://example.com:99999x",
            "null",
        ] {
            assert!(!is_origin(bad), "{bad}");
        }
    }
}
