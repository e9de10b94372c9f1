//! A failed API call, carrying the API's error code so callers match on codes, never on
//! messages.

use std::time::Duration;

use cloud_api::ErrorCode;
use reqwest::{Method, StatusCode};

/// A failed API call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid base URL {url:?}")]
    BaseUrl { url: String },
    #[error("cannot build HTTP client")]
    Build(#[source] reqwest::Error),
    #[error("{method} {path}: request failed")]
    Send {
        method: Method,
        path: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{method} {path}: no response within {timeout:?}")]
    Timeout {
        method: Method,
        path: String,
        timeout: Duration,
    },
    #[error("{method} {path}: cannot decode response ({status})")]
    Decode {
        method: Method,
        path: String,
        status: StatusCode,
        #[source]
        source: serde_json::Error,
    },
    /// The server answered with an error.
    #[error(transparent)]
    Api(Box<ApiFailure>),
}

/// An error the API answered with: its status, code and message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{method} {path}: {status} {code}: {message} (request {request_id})")]
pub struct ApiFailure {
    pub method: Method,
    pub path: String,
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    pub request_id: String,
    pub field: Option<String>,
    pub retry_after: Option<Duration>,
}

impl Error {
    /// The API error code, for errors the server answered.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Api(f) => Some(f.code),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Error::Api(f) => Some(f.status),
            Error::Decode { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// For validation errors: the offending field.
    pub fn field(&self) -> Option<&str> {
        match self {
            Error::Api(f) => f.field.as_deref(),
            _ => None,
        }
    }

    /// What the server asked the client to wait before retrying.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Api(f) => f.retry_after,
            _ => None,
        }
    }

    /// True for failures that may go away on their own: throttling, 5xx, timeouts, transport.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Api(f) => {
                f.status == StatusCode::TOO_MANY_REQUESTS || f.status.is_server_error()
            }
            Error::Timeout { .. } | Error::Send { .. } => true,
            _ => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
