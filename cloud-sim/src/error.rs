//! The one error type of cloud-sim's API. Each variant maps to exactly one error code and status
//! (the mapping to HTTP lives in `http::error`).

use std::time::Duration;

use cloud_api::ErrorCode;

use crate::domain::validate::Invalid;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    /// No route serves the path: not a resource's absence.
    #[error("no API endpoint at {0}")]
    UnknownPath(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    IncorrectState(String),
    #[error("{0}")]
    QuotaExceeded(String),
    #[error("idempotency key {0:?} was already used with a different request")]
    IdempotencyKeyReused(String),
    #[error("etag {given} does not match the current etag {current}")]
    PreconditionFailed { given: String, current: String },
    #[error("request body is too large")]
    PayloadTooLarge,
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("missing or unknown bearer token")]
    Unauthenticated,
    #[error("this token may not use the admin API")]
    PermissionDenied,
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("request rate exceeded; retry after {} ms", retry_after.as_millis())]
    Throttled { retry_after: Duration },
    /// An injected fault; `status` is what the fault rule asked for.
    #[error("injected fault: {status}")]
    Injected {
        status: u16,
        retry_after: Option<Duration>,
    },
    #[error("storage failure")]
    Store(#[from] StoreError),
    /// A handler panicked: a bug. The client gets a 500 with the request ID, not a dropped
    /// connection; the log gets the panic.
    #[error("the handler panicked: {0}")]
    Panicked(String),
}

impl ApiError {
    pub fn not_found(kind: &'static str, id: impl std::fmt::Display) -> Self {
        ApiError::NotFound {
            kind,
            id: id.to_string(),
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::NotFound { .. } => ErrorCode::NotFound,
            ApiError::UnknownPath(_) => ErrorCode::UnknownPath,
            ApiError::BadRequest(_) => ErrorCode::InvalidArgument,
            ApiError::Invalid { .. } => ErrorCode::ValidationFailed,
            ApiError::AlreadyExists(_) => ErrorCode::AlreadyExists,
            ApiError::Conflict(_) => ErrorCode::Conflict,
            ApiError::IncorrectState(_) => ErrorCode::IncorrectState,
            ApiError::QuotaExceeded(_) => ErrorCode::QuotaExceeded,
            ApiError::IdempotencyKeyReused(_) => ErrorCode::IdempotencyKeyReused,
            ApiError::PreconditionFailed { .. } => ErrorCode::PreconditionFailed,
            ApiError::PayloadTooLarge => ErrorCode::PayloadTooLarge,
            ApiError::UnsupportedMediaType(_) => ErrorCode::UnsupportedMediaType,
            ApiError::Unauthenticated => ErrorCode::Unauthenticated,
            ApiError::PermissionDenied => ErrorCode::PermissionDenied,
            ApiError::MethodNotAllowed(_) => ErrorCode::MethodNotAllowed,
            ApiError::Throttled { .. } => ErrorCode::Throttled,
            ApiError::Injected { status, .. } => ErrorCode::from_http_status(*status),
            // Only inside a request under an idempotency key, whose middleware answers instead.
            ApiError::Store(StoreError::KeyTaken) => ErrorCode::Conflict,
            ApiError::Store(_) | ApiError::Panicked(_) => ErrorCode::Internal,
        }
    }

    /// The HTTP status (injected faults keep the exact status they asked for).
    pub fn status(&self) -> u16 {
        match self {
            ApiError::Injected { status, .. } => *status,
            other => other.code().http_status(),
        }
    }

    pub fn field(&self) -> Option<&str> {
        match self {
            ApiError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::Throttled { retry_after } => Some(*retry_after),
            ApiError::Injected { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        ApiError::Invalid {
            field: e.field,
            reason: e.reason,
        }
    }
}
