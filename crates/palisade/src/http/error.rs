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
    /// A refusal with its code (whose row gives the status) and a message for people.
    #[error("{message}")]
    Coded {
        code: ErrorCode,
        message: Cow<'static, str>,
    },
    #[error("authentication required")]
    Unauthenticated,
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
    pub code: ErrorCode,
    pub message: Cow<'static, str>,
}

macro_rules! error_codes {
    ($($variant:ident => $code:literal, $status:literal, $doc:literal;)*) => {
        /// Every code a client may see: the one table of codes, statuses and meanings that
        /// errors are built from and docs/errors.md is rendered from.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum ErrorCode { $(#[doc = $doc] $variant,)* }

        impl ErrorCode {
            /// Every code, in the table's order.
            pub const ALL: &[ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The stable name clients match on.
            pub fn name(self) -> &'static str {
                match self { $(Self::$variant => $code,)* }
            }

            pub fn status(self) -> StatusCode {
                let status: u16 = match self { $(Self::$variant => $status,)* };
                StatusCode::from_u16(status).expect("a valid status in the table")
            }

            pub fn description(self) -> &'static str {
                match self { $(Self::$variant => $doc,)* }
            }
        }
    };
}

error_codes! {
    MalformedJson => "malformed_json", 400, "The body is not valid JSON (syntax, encoding, nesting depth).";
    BadRequest => "bad_request", 400, "A parameter or header cannot be parsed.";
    InvalidBody => "invalid_body", 422, "The JSON does not match the operation's schema: unknown field, wrong type, missing field.";
    InvalidQuery => "invalid_query", 422, "The query string has an unknown, repeated or malformed parameter.";
    InvalidField => "invalid_field", 422, "A field breaks a rule (length, format, policy); the message names the field.";
    Unauthenticated => "unauthenticated", 401, "Credentials are missing, malformed, expired or revoked.";
    InvalidCredentials => "invalid_credentials", 401, "The email or password is incorrect (the same answer for an unknown email).";
    MfaRequired => "mfa_required", 401, "The account uses two-factor authentication: send `totp` or `recovery_code`.";
    InvalidMfaCode => "invalid_mfa_code", 401, "The two-factor code is wrong, expired or already used.";
    InvalidSignature => "invalid_signature", 400, "An inbound webhook's signature headers are missing or malformed, no signature matches the body, or the signed timestamp is more than 5 minutes from the server's clock; nothing was written.";
    InvalidToken => "invalid_token", 400, "A verification or reset link is invalid, expired or already used.";
    InvalidCode => "invalid_code", 422, "The two-factor code is wrong, expired or already used.";
    Forbidden => "forbidden", 403, "The caller's role does not allow this action.";
    MfaEnrollmentRequired => "mfa_enrollment_required", 403, "The tenant requires two-factor authentication and this session has none.";
    TenantSuspended => "tenant_suspended", 403, "The tenant is suspended by the platform operator.";
    CsrfRejected => "csrf_rejected", 403, "A request authenticated by the refresh cookie lacks the session's `X-CSRF-Token`, or comes from an origin the deployment does not trust (claim WEB-3); nothing was done.";
    InvalidSubject => "invalid_subject", 422, "The end user's credential an app's event names as its actor is not live, not of this deployment, or of another tenant than the caller's tenant token.";
    UnknownLimit => "unknown_limit", 422, "The limit's `name` is not one the operator configured under `rate_limits.named`.";
    Conflict => "conflict", 409, "The resource is not in a state that allows this action.";
    IdempotencyKeyReused => "idempotency_key_reused", 409, "This Idempotency-Key was used in the last 24 hours with another body; nothing was written.";
    RateLimited => "rate_limited", 429, "This route's request limit for your key, user or address is used up; see Retry-After and the RateLimit-* headers.";
    TooManyAttempts => "too_many_attempts", 429, "Too many failed attempts; retry after the Retry-After delay.";
    NotFound => "not_found", 404, "No such resource in the caller's tenant.";
    SecretDestroyed => "secret_destroyed", 410, "The tenant's data key that sealed this secret was destroyed (crypto-shredding): it can no longer be read.";
    MethodNotAllowed => "method_not_allowed", 405, "The path exists but not with this method.";
    Timeout => "timeout", 408, "The request was not completed within the request deadline.";
    PayloadTooLarge => "payload_too_large", 413, "The body exceeds the configured limit.";
    UriTooLong => "uri_too_long", 414, "The request target is longer than 8 KiB.";
    HeadersTooLarge => "headers_too_large", 431, "The request's headers are larger than 32 KiB in all.";
    UnsupportedMediaType => "unsupported_media_type", 415, "The operation takes application/json.";
    Overloaded => "overloaded", 503, "A bounded queue is full; retry after the Retry-After delay.";
    Unavailable => "unavailable", 503, "The database cannot be reached; retry later.";
    StorageFull => "storage_full", 507, "The server's storage is full: writes are refused until an operator frees space; reads still work.";
    Internal => "internal", 500, "An unexpected error; the cause is logged with the request id.";
}

/// The table as docs/errors.md shows it.
pub fn render_markdown() -> String {
    let mut out = String::from(
        "# Error codes\n\nGenerated from `crates/palisade/src/http/error.rs` (the table every error \
         is built from); a test fails when this file is out of step. Every error body is \
         `{\"error\":{\"code\",\"message\",\"request_id\"}}`.\n\n| Code | Status | Meaning |\n|---|---|---|\n",
    );
    for code in ErrorCode::ALL {
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            code.name(),
            code.status().as_u16(),
            code.description()
        ));
    }
    out
}

impl ApiError {
    /// An error of `code`, its status from the table.
    pub fn coded(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self::Coded {
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::coded(ErrorCode::BadRequest, message)
    }

    pub fn invalid_field(message: impl Into<Cow<'static, str>>) -> Self {
        Self::coded(ErrorCode::InvalidField, message)
    }

    pub fn internal(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Internal(error.into())
    }

    /// A coded refusal with its message reworded (a batch names the item it refuses);
    /// any other error unchanged.
    pub fn map_message(self, reword: impl FnOnce(String) -> String) -> Self {
        match self {
            Self::Coded { code, message } => Self::coded(code, reword(message.into_owned())),
            other => other,
        }
    }

    pub fn status(&self) -> StatusCode {
        self.code().status()
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Coded { code, .. } => *code,
            Self::Unauthenticated => ErrorCode::Unauthenticated,
            Self::TooManyAttempts { .. } => ErrorCode::TooManyAttempts,
            Self::NotFound => ErrorCode::NotFound,
            Self::MethodNotAllowed => ErrorCode::MethodNotAllowed,
            Self::UnsupportedMediaType => ErrorCode::UnsupportedMediaType,
            Self::PayloadTooLarge => ErrorCode::PayloadTooLarge,
            Self::Timeout => ErrorCode::Timeout,
            Self::Overloaded { .. } => ErrorCode::Overloaded,
            Self::Unavailable => ErrorCode::Unavailable,
            Self::StorageFull => ErrorCode::StorageFull,
            Self::Internal(_) => ErrorCode::Internal,
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
            Self::Coded { message, .. } => message.clone(),
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
            other => {
                tracing::debug!(code = other.code().name(), message = %other, "request refused")
            }
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
    fn the_docs_render_the_table_errors_are_built_from() {
        crate::generated_docs::assert_in_step("errors.md", &render_markdown());
        let names: std::collections::HashSet<_> = ErrorCode::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), ErrorCode::ALL.len(), "codes are unique");
    }

    #[test]
    fn internal_errors_never_show_their_cause() {
        let report = ApiError::internal("connection string postgres://u:pw@h").report();
        assert_eq!(report.message, "internal error");
    }
}
