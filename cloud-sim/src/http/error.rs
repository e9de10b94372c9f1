//! How [`ApiError`] becomes a response: the JSON error body with the request ID, the status, and
//! `Retry-After` where the client should wait.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cloud_api::{ApiErrorBody, ErrorDetail};

use crate::error::ApiError;
use crate::http::middleware::current_request_id;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let request_id = current_request_id();
        let message = if status.is_server_error() && !matches!(self, ApiError::Injected { .. }) {
            // The detail goes to the log, not to the client.
            tracing::error!(request_id = %request_id, error = %error_chain(&self), "request failed");
            "internal error; see the server log for this request ID".to_owned()
        } else {
            self.to_string()
        };
        let body = ApiErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message,
                request_id,
                field: self.field().map(str::to_owned),
            },
        };
        let mut resp = (status, axum::Json(body)).into_response();
        if let Some(after) = self.retry_after() {
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        resp
    }
}

pub use sim_common::error_chain;

pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::UnknownPath(uri.path().to_owned())
}

pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} is not allowed on {}", uri.path()))
}
