//! The one error body every endpoint returns.

use serde::{Deserialize, Serialize};

/// `{"error": {...}}`, sent with the matching HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// Human-readable explanation; says what failed and why.
    pub message: String,
    /// The request's `x-request-id`, for correlating with server logs.
    pub request_id: String,
    /// For validation errors: the offending field, as a JSON path (`listeners[0].port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Machine-readable error codes. Clients match on these, never on messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// 400: malformed request (bad query parameter, bad path, unreadable body).
    InvalidArgument,
    /// 401: missing or unknown bearer token.
    Unauthenticated,
    /// 403: the token may not use this API (admin endpoints).
    PermissionDenied,
    /// 404: no such resource in this project. Only this code means "absent".
    NotFound,
    /// 404: nothing serves this path (a wrong base URL, an old server, a proxy in the way). Never
    /// a resource's absence: clients must not read it as one.
    UnknownPath,
    /// 405: the path exists but not with this method.
    MethodNotAllowed,
    /// 409: a resource with this name (or address) already exists.
    AlreadyExists,
    /// 409: the request conflicts with current state (overlapping route, request in flight).
    Conflict,
    /// 409: the resource is not in a state that allows the operation (stop a pending instance).
    IncorrectState,
    /// 409: a quota (routes per table, addresses in a pool) is exhausted.
    QuotaExceeded,
    /// 409: the idempotency key was used before with a different request.
    IdempotencyKeyReused,
    /// 412: `If-Match` did not match the resource's etag.
    PreconditionFailed,
    /// 413: the request body is too large.
    PayloadTooLarge,
    /// 415: the request body is not JSON.
    UnsupportedMediaType,
    /// 422: the body parsed but a field is invalid; `field` names it.
    ValidationFailed,
    /// 429: throttled; honour `Retry-After`.
    Throttled,
    /// 500: a bug or a storage failure; the message is generic, the log has the detail.
    Internal,
    /// 503: the service (or an injected fault) says try again later.
    Unavailable,
    /// Any code this client version does not know.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The HTTP status this code is sent with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidArgument => 400,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::PermissionDenied => 403,
            ErrorCode::NotFound | ErrorCode::UnknownPath => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::AlreadyExists
            | ErrorCode::Conflict
            | ErrorCode::IncorrectState
            | ErrorCode::QuotaExceeded
            | ErrorCode::IdempotencyKeyReused => 409,
            ErrorCode::PreconditionFailed => 412,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::ValidationFailed => 422,
            ErrorCode::Throttled => 429,
            ErrorCode::Internal | ErrorCode::Unknown => 500,
            ErrorCode::Unavailable => 503,
        }
    }

    /// The code a bare HTTP status maps to, for injected faults that give only a status.
    pub fn from_http_status(status: u16) -> Self {
        match status {
            400 => ErrorCode::InvalidArgument,
            401 => ErrorCode::Unauthenticated,
            403 => ErrorCode::PermissionDenied,
            404 => ErrorCode::NotFound,
            405 => ErrorCode::MethodNotAllowed,
            409 => ErrorCode::Conflict,
            412 => ErrorCode::PreconditionFailed,
            413 => ErrorCode::PayloadTooLarge,
            415 => ErrorCode::UnsupportedMediaType,
            422 => ErrorCode::ValidationFailed,
            429 => ErrorCode::Throttled,
            503 => ErrorCode::Unavailable,
            _ => ErrorCode::Internal,
        }
    }

    /// The wire spelling, e.g. `NOT_FOUND`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "INVALID_ARGUMENT",
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::PermissionDenied => "PERMISSION_DENIED",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::UnknownPath => "UNKNOWN_PATH",
            ErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ErrorCode::AlreadyExists => "ALREADY_EXISTS",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::IncorrectState => "INCORRECT_STATE",
            ErrorCode::QuotaExceeded => "QUOTA_EXCEEDED",
            ErrorCode::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            ErrorCode::PreconditionFailed => "PRECONDITION_FAILED",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ErrorCode::ValidationFailed => "VALIDATION_FAILED",
            ErrorCode::Throttled => "THROTTLED",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Unknown => "UNKNOWN",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_use_their_wire_spelling() {
        for code in [
            ErrorCode::NotFound,
            ErrorCode::UnknownPath,
            ErrorCode::IdempotencyKeyReused,
            ErrorCode::QuotaExceeded,
        ] {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
        let unknown: ErrorCode = serde_json::from_str("\"SOMETHING_NEW\"").unwrap();
        assert_eq!(unknown, ErrorCode::Unknown);
    }

    #[test]
    fn status_mapping_round_trips_for_fault_statuses() {
        for status in [400, 404, 409, 412, 422, 429, 500, 503] {
            assert_eq!(ErrorCode::from_http_status(status).http_status(), status);
        }
    }
}
