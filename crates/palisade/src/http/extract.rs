//! Extractors whose rejections are `ApiError`s (claim WEB-4): bodies and request context.
//!
//! Handlers use these instead of axum's own, so a malformed body, an unknown field, a wrong
//! type, bad UTF-8, a wrong content type or an oversize body is always a 4xx in our shape,
//! and no error message ever echoes a value the client sent.

use std::net::IpAddr;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::error::Category;

use super::error::{ApiError, ErrorCode};
use super::frame::{ClientIp, RequestId};

/// A JSON body parsed into `T`; `T` should be `#[serde(deny_unknown_fields)]`.
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        parse_json(&json_body(req, state).await?).map(Json)
    }
}

/// The body of a request that says it is JSON.
async fn json_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    if !is_json(req.headers()) {
        return Err(ApiError::UnsupportedMediaType);
    }
    body_bytes(req, state).await
}

/// [`Json`], with the SHA-256 of the body as sent: what an idempotency key is checked
/// against (the same key with another body is refused).
pub struct DigestedJson<T> {
    pub value: T,
    pub sha256: [u8; 32],
}

impl<T, S> FromRequest<S> for DigestedJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = json_body(req, state).await?;
        Ok(Self {
            value: parse_json(&bytes)?,
            sha256: crate::crypto::sha256(&bytes),
        })
    }
}

/// A JSON body's exact bytes, unparsed: what a webhook's sender signed.
pub struct RawJson(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawJson {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        json_body(req, state).await.map(RawJson)
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    has_media_type(headers, "application/json")
}

fn has_media_type(headers: &HeaderMap, media_type: &str) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case(media_type)
}

/// A form-encoded body (`application/x-www-form-urlencoded`, as OAuth's token endpoints
/// take) parsed into `T`; `T` should be `#[serde(deny_unknown_fields)]`. A repeated,
/// unknown or missing field is a 400 naming no value.
pub struct Form<T>(pub T);

impl<T, S> FromRequest<S> for Form<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !has_media_type(req.headers(), "application/x-www-form-urlencoded") {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = body_bytes(req, state).await?;
        serde_urlencoded::from_bytes(&bytes).map(Form).map_err(|_| {
            ApiError::bad_request("the form has an unknown, repeated, missing or malformed field")
        })
    }
}

async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state)
        .await
        .map_err(|rejection| match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            _ => ApiError::bad_request("the request body could not be read"),
        })
}

/// A query string parsed into `T`; `T` should be `#[serde(deny_unknown_fields)]`. The
/// error names no value the client sent.
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|_| {
                ApiError::coded(
                    ErrorCode::InvalidQuery,
                    "the query string has an unknown, repeated or malformed parameter",
                )
            })
    }
}

/// Parses a whole body; trailing data after the value is refused too.
/// A path id of a tenant resource. A malformed id answers the same 404 as a missing one,
/// and as another tenant's (claim TEN-4).
pub fn id_or_404<T: std::str::FromStr>(raw: &str) -> Result<T, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound)
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed = T::deserialize(&mut deserializer).and_then(|value| {
        deserializer.end()?;
        Ok(value)
    });
    parsed.map_err(|error| match error.classify() {
        Category::Data => ApiError::coded(ErrorCode::InvalidBody, describe_data_error(&error)),
        Category::Syntax | Category::Eof | Category::Io => ApiError::coded(
            ErrorCode::MalformedJson,
            format!(
                "the request body is not valid JSON (line {}, column {})",
                error.line(),
                error.column()
            ),
        ),
    })
}

/// serde's messages quote the offending value ("invalid type: string \"…\""); a value may be
/// a password, so only the shape of the problem is kept: the expectation, or a field name.
fn describe_data_error(error: &serde_json::Error) -> String {
    let full = error.to_string();
    let text = full.split(" at line ").next().unwrap_or(&full);
    let position = format!(" (line {}, column {})", error.line(), error.column());
    if let Some(rest) = text
        .strip_prefix("invalid type: ")
        .or_else(|| text.strip_prefix("invalid value: "))
        .or_else(|| text.strip_prefix("invalid length "))
    {
        let expected = rest
            .rsplit_once(", expected ")
            .map_or("a different value", |(_, e)| e);
        return format!("a value has the wrong type or form: expected {expected}{position}");
    }
    for prefix in ["unknown field ", "missing field ", "duplicate field "] {
        if let Some(rest) = text.strip_prefix(prefix) {
            let name = rest.split('`').nth(1).unwrap_or("");
            let name: String = name
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect();
            return format!("{}`{name}`{position}", prefix);
        }
    }
    if text.starts_with("unknown variant ") {
        let expected = text.split_once(", expected ").map_or("", |(_, e)| e);
        return format!("unknown variant, expected {expected}{position}");
    }
    format!("the request body does not match the schema{position}")
}

/// Who is asking and through which request: what audit events and logs record.
#[derive(Clone, Debug)]
pub struct RequestContext {
    pub request_id: RequestId,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::of(parts))
    }
}

impl RequestContext {
    /// The context of a request whose parts a middleware holds.
    pub fn of(parts: &Parts) -> Self {
        let request_id = parts
            .extensions
            .get::<RequestId>()
            .cloned()
            .unwrap_or_default();
        let ip = parts.extensions.get::<ClientIp>().map(|ClientIp(ip)| *ip);
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect());
        Self {
            request_id,
            ip,
            user_agent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        count: u32,
    }

    fn message(input: &str) -> (&'static str, String) {
        let error = parse_json::<Body>(input.as_bytes()).unwrap_err();
        let report = error.report();
        (report.code.name(), report.message.into_owned())
    }

    #[test]
    fn values_the_client_sent_never_appear_in_error_messages() {
        for (input, code) in [
            (r#"{"name": 987654321, "count": 1}"#, "invalid_body"),
            (
                r#"{"name": "x", "count": "hunter2-secret"}"#,
                "invalid_body",
            ),
            (r#"{"name": "x", "count": -987654321}"#, "invalid_body"),
            (
                r#"{"name": "x", "count": 1, "sneaky\"`value": 1}"#,
                "invalid_body",
            ),
            (r#"{"name": "hunter2-secret""#, "malformed_json"),
        ] {
            let (got_code, text) = message(input);
            assert_eq!(got_code, code, "{input}");
            for secret in ["987654321", "hunter2-secret", "sneaky\"`value"] {
                assert!(!text.contains(secret), "{input} -> {text}");
            }
        }
    }

    #[test]
    fn field_names_are_kept_so_the_client_can_fix_its_request() {
        let (_, text) = message(r#"{"name": "x", "count": 1, "colour": 2}"#);
        assert!(text.contains("unknown field `colour`"), "{text}");
        let (_, text) = message(r#"{"name": "x"}"#);
        assert!(text.contains("missing field `count`"), "{text}");
    }

    #[test]
    fn json_content_type_allows_parameters_and_any_case() {
        let mut headers = HeaderMap::new();
        for (value, ok) in [
            ("application/json", true),
            ("Application/JSON; charset=utf-8", true),
            ("text/plain", false),
            ("application/jsonx", false),
        ] {
            headers.insert(header::CONTENT_TYPE, value.parse().unwrap());
            assert_eq!(is_json(&headers), ok, "{value}");
        }
    }
}

/// Integer fields of request bodies. JSON Schema counts `43.0` as the integer 43 and so do
/// schema-driven clients; serde alone would refuse it. A fraction is still refused.
pub mod whole_number {
    use serde::de::{Deserialize, Deserializer, Error};

    fn whole<E: Error>(number: serde_json::Number) -> Result<i64, E> {
        if let Some(n) = number.as_i64() {
            return Ok(n);
        }
        match number.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(f as i64),
            _ => Err(E::custom("expected a whole number")),
        }
    }

    pub fn required<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        whole(serde_json::Number::deserialize(d)?)
    }

    /// A number or null. With `#[serde(default)]` the field may also be left out;
    /// without it, it must be sent.
    pub fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        Option::<serde_json::Number>::deserialize(d)?
            .map(whole)
            .transpose()
    }
}
