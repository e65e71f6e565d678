//! `ApiError`: every failure a client can see, with its status and stable code.
//!
//! A handler returns `ApiError`; its response carries an [`ErrorReport`] and no body yet.
//! The request frame (`http::frame`) renders the one body shape, adding the request id:
//! `{"error":{"code":"…","message":"…","request_id":"…"}}`. Responses made by axum or
//! tower without a report (405, for one) are given the same shape from their status.

use std::borrow::Cow;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON, or a parameter cannot be parsed (400).
    #[error("{message}")]
    BadRequest {
        code: &'static str,
        message: Cow<'static, str>,
    },
    /// Well-formed input that breaks the schema or a domain rule (422).
    #[error("{message}")]
    Invalid {
        code: &'static str,
        message: Cow<'static, str>,
    },
    #[error("authentication required")]
    Unauthenticated,
    /// A refusal with its own status and code (401, 403, 409); the code is in ERROR_CODES.
    #[error("{message}")]
    Refused {
        status: StatusCode,
        code: &'static str,
        message: Cow<'static, str>,
    },
    /// Too many attempts of one kind (failed sign-ins); retry after the delay.
    #[error("too many attempts; retry later")]
    TooManyAttempts { retry_after_secs: u64 },
    /// Missing, or belonging to another tenant: the two are indistinguishable (claim TEN-4).
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("the request body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("the request body is larger than allowed")]
    PayloadTooLarge,
    #[error("the request took too long")]
    Timeout,
    /// Queues are full (password hashing, connections); the client should retry later.
    #[error("the server is busy, retry later")]
    Overloaded { retry_after_secs: u64 },
    /// The database cannot be reached; fail fast rather than hang.
    #[error("a dependency is unavailable, retry later")]
    Unavailable,
    /// The database's disk is full: writes are refused, reads go on.
    #[error("the server's storage is full; writes are refused until space is freed")]
    StorageFull,
    /// The cause is logged, never shown.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The parts of an error the frame needs to render the body, carried as a response extension.
#[derive(Clone, Debug)]
pub struct ErrorReport {
    pub code: &'static str,
    pub message: Cow<'static, str>,
}

/// Every code a client may see, with its status: the table the docs and OpenAPI describe.
pub const ERROR_CODES: &[(&str, u16, &str)] = &[
    (
        "malformed_json",
        400,
        "The body is not valid JSON (syntax, encoding, nesting depth).",
    ),
    (
        "bad_request",
        400,
        "A parameter or header cannot be parsed.",
    ),
    (
        "invalid_body",
        422,
        "The JSON does not match the operation's schema: unknown field, wrong type, missing field.",
    ),
    (
        "invalid_query",
        422,
        "The query string has an unknown, repeated or malformed parameter.",
    ),
    (
        "invalid_field",
        422,
        "A field breaks a rule (length, format, policy); the message names the field.",
    ),
    (
        "unauthenticated",
        401,
        "Credentials are missing, malformed, expired or revoked.",
    ),
    (
        "invalid_credentials",
        401,
        "The email or password is incorrect (the same answer for an unknown email).",
    ),
    (
        "mfa_required",
        401,
        "The account uses two-factor authentication: send `totp` or `recovery_code`.",
    ),
    (
        "invalid_mfa_code",
        401,
        "The two-factor code is wrong, expired or already used.",
    ),
    (
        "invalid_token",
        400,
        "A verification or reset link is invalid, expired or already used.",
    ),
    (
        "invalid_code",
        422,
        "The two-factor code is wrong, expired or already used.",
    ),
    (
        "forbidden",
        403,
        "The caller's role does not allow this action.",
    ),
    (
        "mfa_enrollment_required",
        403,
        "The tenant requires two-factor authentication and this session has none.",
    ),
    (
        "tenant_suspended",
        403,
        "The tenant is suspended by the platform operator.",
    ),
    (
        "conflict",
        409,
        "The resource is not in a state that allows this action.",
    ),
    (
        "rate_limited",
        429,
        "This route's request limit for your key, user or address is used up; see Retry-After and the RateLimit-* headers.",
    ),
    (
        "too_many_attempts",
        429,
        "Too many failed attempts; retry after the Retry-After delay.",
    ),
    ("not_found", 404, "No such resource in the caller's tenant."),
    (
        "method_not_allowed",
        405,
        "The path exists but not with this method.",
    ),
    (
        "timeout",
        408,
        "The request was not completed within the request deadline.",
    ),
    (
        "payload_too_large",
        413,
        "The body exceeds the configured limit.",
    ),
    (
        "uri_too_long",
        414,
        "The request target is longer than 8 KiB.",
    ),
    (
        "headers_too_large",
        431,
        "The request's headers are larger than 32 KiB in all.",
    ),
    (
        "unsupported_media_type",
        415,
        "The operation takes application/json.",
    ),
    (
        "overloaded",
        503,
        "A bounded queue is full; retry after the Retry-After delay.",
    ),
    (
        "unavailable",
        503,
        "The database cannot be reached; retry later.",
    ),
    (
        "storage_full",
        507,
        "The server's storage is full: writes are refused until an operator frees space; reads still work.",
    ),
    (
        "internal",
        500,
        "An unexpected error; the cause is logged with the request id.",
    ),
];

impl ApiError {
    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::BadRequest {
            code: "bad_request",
            message: message.into(),
        }
    }

    pub fn invalid_field(message: impl Into<Cow<'static, str>>) -> Self {
        Self::Invalid {
            code: "invalid_field",
            message: message.into(),
        }
    }

    pub fn refused(
        status: StatusCode,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::Refused {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn internal(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Internal(error.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Refused { status, .. } => *status,
            Self::TooManyAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Timeout => StatusCode::REQUEST_TIMEOUT,
            Self::Overloaded { .. } | Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::StorageFull => StatusCode::INSUFFICIENT_STORAGE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { code, .. }
            | Self::Invalid { code, .. }
            | Self::Refused { code, .. } => code,
            Self::Unauthenticated => "unauthenticated",
            Self::TooManyAttempts { .. } => "too_many_attempts",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::PayloadTooLarge => "payload_too_large",
            Self::Timeout => "timeout",
            Self::Overloaded { .. } => "overloaded",
            Self::Unavailable => "unavailable",
            Self::StorageFull => "storage_full",
            Self::Internal(_) => "internal",
        }
    }

    /// The error a bare response of this status stands for, when axum or tower made it.
    pub fn from_status(status: StatusCode) -> Self {
        match status {
            StatusCode::NOT_FOUND => Self::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => Self::MethodNotAllowed,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType,
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge,
            StatusCode::REQUEST_TIMEOUT => Self::Timeout,
            StatusCode::UNAUTHORIZED => Self::Unauthenticated,
            StatusCode::SERVICE_UNAVAILABLE => Self::Unavailable,
            StatusCode::INSUFFICIENT_STORAGE => Self::StorageFull,
            s if s.is_client_error() => Self::bad_request("the request was refused"),
            _ => Self::internal(format!("unexpected bare {status} response")),
        }
    }

    pub fn report(&self) -> ErrorReport {
        let message = match self {
            Self::BadRequest { message, .. }
            | Self::Invalid { message, .. }
            | Self::Refused { message, .. } => message.clone(),
            other => Cow::Owned(other.to_string()),
        };
        ErrorReport {
            code: self.code(),
            message,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            Self::Internal(cause) => tracing::error!(error = %cause, "internal error"),
            // The cause was logged where the store error was converted.
            other => tracing::debug!(code = other.code(), message = %other, "request refused"),
        }
        let mut response = status.into_response();
        if let Self::Overloaded { retry_after_secs } | Self::TooManyAttempts { retry_after_secs } =
            &self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            // RFC 6750 §3: a bearer-protected resource names its scheme.
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"palisade\""),
            );
        }
        response.extensions_mut().insert(self.report());
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "database unavailable");
                Self::Unavailable
            }
            StoreError::Full(cause) => {
                tracing::error!(error = %cause, "database storage full: writes refused");
                Self::StorageFull
            }
            StoreError::Other(cause) => Self::Internal(cause),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_an_error_can_produce_is_in_the_table_with_its_status() {
        let samples = [
            ApiError::bad_request("x"),
            ApiError::BadRequest {
                code: "malformed_json",
                message: "x".into(),
            },
            ApiError::Invalid {
                code: "invalid_body",
                message: "x".into(),
            },
            ApiError::invalid_field("x"),
            ApiError::Unauthenticated,
            ApiError::TooManyAttempts {
                retry_after_secs: 1,
            },
            ApiError::NotFound,
            ApiError::MethodNotAllowed,
            ApiError::UnsupportedMediaType,
            ApiError::PayloadTooLarge,
            ApiError::Timeout,
            ApiError::Overloaded {
                retry_after_secs: 1,
            },
            ApiError::Unavailable,
            ApiError::StorageFull,
            ApiError::internal("boom"),
        ];
        for error in samples {
            let row = ERROR_CODES
                .iter()
                .find(|(code, _, _)| *code == error.code())
                .unwrap_or_else(|| panic!("{} missing from ERROR_CODES", error.code()));
            assert_eq!(row.1, error.status().as_u16(), "{}", error.code());
        }
    }

    #[test]
    fn internal_errors_never_show_their_cause() {
        let report = ApiError::internal("connection string postgres://u:pw@h").report();
        assert_eq!(report.message, "internal error");
    }
}
