//! The frame every request passes through: request id, log context and access log, deadline,
//! error body rendering, security headers (claim WEB-2) and metrics.
//!
//! One middleware rather than a stack of layers: each concern is a function here, and the
//! request pays for one boxed future instead of six.

use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Response};
use axum::middleware::Next;
use axum::response::IntoResponse;

use super::error::{ApiError, ErrorCode, ErrorReport};
use crate::telemetry::logging::{self, is_sensitive_name, RequestFields, REDACTED};
use crate::telemetry::metrics::{intern_route, method_label, Metrics};

/// A server-made id for one request: returned in `X-Request-Id`, in error bodies, in logs.
/// Client-sent ids are ignored so nobody can forge or collide another request's id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(HeaderValue);

impl Default for RequestId {
    fn default() -> Self {
        let mut text = [0u8; 36];
        text[..4].copy_from_slice(b"req_");
        uuid::Uuid::new_v4().simple().encode_lower(&mut text[4..]);
        // Kept as the header value it is sent as: one allocation, shared by every clone.
        Self(HeaderValue::from_bytes(&text).unwrap_or(HeaderValue::from_static("req_unknown")))
    }
}

impl RequestId {
    pub fn as_str(&self) -> &str {
        // Visible ASCII by construction (a prefix and lower-case hex).
        self.0.to_str().unwrap_or("req_unknown")
    }

    pub fn header_value(&self) -> HeaderValue {
        self.0.clone()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the frame needs from the application, built once at start-up.
pub struct FrameConfig {
    pub request_timeout: std::time::Duration,
    pub hsts: bool,
    pub metrics: Arc<Metrics>,
    pub trusted_proxies: Vec<super::client_ip::Cidr>,
    pub body_limit_bytes: usize,
    pub cors: super::cors::CorsOrigins,
}

/// The largest body a secret's write takes: its value may be 64 KiB, which JSON's escapes
/// (`\u0000` for a control character) can make up to six times as long, plus the name,
/// description and expiry.
pub const SECRET_BODY_BYTES: usize = 6 * crate::vault::MAX_VALUE_BYTES + 8 * 1024;

/// Routes whose bodies may be larger than `http.body_limit_bytes`, and up to how large.
const LARGER_BODIES: &[(&str, usize)] = &[
    ("/api/v1/secrets", SECRET_BODY_BYTES),
    ("/api/v1/secrets/{secret_id}", SECRET_BODY_BYTES),
];

impl FrameConfig {
    /// The body limit of `route`: the setting, or a larger one the route needs.
    fn body_limit_for(&self, route: &str) -> usize {
        LARGER_BODIES
            .iter()
            .find(|(path, _)| *path == route)
            .map_or(self.body_limit_bytes, |(_, limit)| {
                (*limit).max(self.body_limit_bytes)
            })
    }

    /// The largest body any route takes: what axum's own extractors are allowed.
    pub fn largest_body_limit(body_limit_bytes: usize) -> usize {
        LARGER_BODIES
            .iter()
            .map(|(_, limit)| *limit)
            .fold(body_limit_bytes, usize::max)
    }
}

/// The client's address as resolved by the frame (see `client_ip`).
#[derive(Clone, Copy, Debug)]
pub struct ClientIp(pub std::net::IpAddr);

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Response headers of claim WEB-2, on every answer (errors and 404s included).
/// The API serves no HTML, so the policy allows nothing at all.
const SECURITY_HEADERS: &[(&str, &str)] = &[
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    (
        "permissions-policy",
        "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), payment=(), usb=()",
    ),
    ("x-frame-options", "DENY"),
    (
        "cross-origin-opener-policy",
        "same-origin",
    ),
    (
        "cross-origin-resource-policy",
        "same-origin",
    ),
];

/// One year, with subdomains and preload: the floor of claim WEB-1.
pub const HSTS: &str = "max-age=31536000; includeSubDomains; preload";

pub async fn frame(
    State(config): State<Arc<FrameConfig>>,
    mut req: Request,
    next: Next,
) -> Response<Body> {
    let started = Instant::now();
    let request_id = RequestId::default();
    req.extensions_mut().insert(request_id.clone());
    let client_ip = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| super::client_ip::resolve(info.0.ip(), req.headers(), &config.trusted_proxies));
    if let Some(ip) = client_ip {
        req.extensions_mut().insert(ClientIp(ip));
    }
    let method = method_label(req.method());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("(unmatched)", |p| intern_route(p.as_str()));
    let fields = RequestFields::new(request_id.as_str(), method, route, client_ip);
    logging::in_request(fields, async move {
        if tracing::enabled!(tracing::Level::DEBUG) {
            tracing::debug!(path = req.uri().path(), headers = ?RedactedHeaders(req.headers()), "request received");
        }
        let cors = config.cors.allowed(req.headers());
        let body_limit = config.body_limit_for(route);
        let response = if let Some(refusal) = malformed(&req, body_limit) {
            refusal.into_response()
        } else if cors.is_some() && super::cors::is_preflight(req.method(), req.headers()) {
            super::cors::preflight()
        } else {
            let handled = async move {
                match received(req, body_limit).await {
                    // Every credential the request checks reads the auth epoch once, after
                    // the whole request arrived: a change committed before that holds.
                    Ok(req) => crate::identity::principals::one_epoch_read(next.run(req)).await,
                    Err(refusal) => refusal.into_response(),
                }
            };
            match tokio::time::timeout(config.request_timeout, handled).await {
                Ok(response) => response,
                Err(_) => ApiError::Timeout.into_response(),
            }
        };
        let mut response = render_error_body(response, &request_id);
        let headers = response.headers_mut();
        add_security_headers(headers, config.hsts);
        super::cors::mark(headers, &config.cors, cors);
        headers.insert(X_REQUEST_ID, request_id.header_value());

        let elapsed = started.elapsed();
        let status = response.status();
        config
            .metrics
            .record_request(method, route, status.as_u16(), elapsed);
        let latency_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        if status.is_server_error() {
            if tracing::enabled!(target: logging::ACCESS_TARGET, tracing::Level::WARN) {
                logging::write_access_line(tracing::Level::WARN, status.as_u16(), latency_us);
            }
        } else if tracing::enabled!(target: logging::ACCESS_TARGET, tracing::Level::INFO) {
            logging::write_access_line(tracing::Level::INFO, status.as_u16(), latency_us);
        }
        response
    })
    .await
}

/// The longest request target and the most header bytes the frame takes. Both sit well
/// below hyper's own limits, so the frame (with the WEB-2 headers and the error shape)
/// answers them, not hyper's bare 414 and 431.
pub const MAX_URI_BYTES: usize = 8 * 1024;
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// What is wrong with the request's shape before any handler reads it: an HTTP/1.1
/// request needs exactly one Host header (RFC 9112 §3.2), and a declared body over the
/// limit is refused before the body is read — so a client sending `Expect: 100-continue`
/// gets its 413 instead of `100 Continue`.
fn malformed(req: &Request, body_limit: usize) -> Option<ApiError> {
    let uri_bytes = req
        .uri()
        .path_and_query()
        .map_or(0, |target| target.as_str().len());
    if uri_bytes > MAX_URI_BYTES {
        return Some(ApiError::coded(
            ErrorCode::UriTooLong,
            "the request target is longer than 8 KiB",
        ));
    }
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return Some(ApiError::coded(
            ErrorCode::HeadersTooLarge,
            "the request's headers are larger than 32 KiB",
        ));
    }
    let hosts = req.headers().get_all(header::HOST).iter().count();
    if req.version() == axum::http::Version::HTTP_11 && hosts != 1 {
        return Some(ApiError::bad_request(
            "an HTTP/1.1 request carries exactly one Host header",
        ));
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > body_limit as u64) {
        return Some(ApiError::PayloadTooLarge);
    }
    None
}

/// The request with its whole body in memory (at most `body_limit` bytes), so what the
/// request checks and does happens after it arrived, however slowly its body came.
async fn received(req: Request, body_limit: usize) -> Result<Request, ApiError> {
    use http_body_util::{BodyExt, LengthLimitError, Limited};
    use hyper::body::Body as _;
    if req.body().is_end_stream() {
        return Ok(req);
    }
    let (parts, body) = req.into_parts();
    let bytes = match Limited::new(body, body_limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<LengthLimitError>() => return Err(ApiError::PayloadTooLarge),
        Err(_) => return Err(ApiError::bad_request("the request body could not be read")),
    };
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// Gives any 4xx/5xx response the error body shape, with this request's id.
fn render_error_body(mut response: Response<Body>, request_id: &RequestId) -> Response<Body> {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let report = match response.extensions_mut().remove::<ErrorReport>() {
        Some(report) => report,
        // A body someone else rendered deliberately is left alone.
        None if response.headers().contains_key(header::CONTENT_TYPE) => return response,
        None => {
            let error = ApiError::from_status(status);
            if let ApiError::Internal(cause) = &error {
                tracing::error!(error = %cause, "internal error");
            }
            error.report()
        }
    };
    let body = serde_json::json!({
        "error": {
            "code": report.code.name(),
            "message": report.message,
            "request_id": request_id.as_str(),
        }
    });
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.remove(header::CONTENT_LENGTH);
    *response.body_mut() = Body::from(bytes);
    response
}

fn add_security_headers(headers: &mut HeaderMap, hsts: bool) {
    static PARSED: LazyLock<Vec<(HeaderName, HeaderValue)>> = LazyLock::new(|| {
        SECURITY_HEADERS
            .iter()
            .map(|(name, value)| {
                (
                    HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                )
            })
            .collect()
    });
    // One growth of the map instead of several as the headers go in.
    headers.reserve(PARSED.len() + 2);
    for (name, value) in PARSED.iter() {
        headers.insert(name.clone(), value.clone());
    }
    // Nothing an API answers should sit in a shared cache; a route may opt in explicitly.
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    if hsts {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
}

/// Debug view of request headers with credentials replaced (claim OPS-1).
struct RedactedHeaders<'a>(&'a HeaderMap);

impl fmt::Debug for RedactedHeaders<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (name, value) in self.0 {
            if is_sensitive_name(name.as_str()) {
                map.entry(&name.as_str(), &REDACTED);
            } else {
                map.entry(&name.as_str(), &value.to_str().unwrap_or("(binary)"));
            }
        }
        map.finish()
    }
}

/// Answers `404` in the error shape for paths no route matches.
pub async fn not_found() -> ApiError {
    ApiError::NotFound
}
