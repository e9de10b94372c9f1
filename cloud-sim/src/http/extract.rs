//! Extractors whose rejections use the API's error body: JSON bodies (422 naming the field),
//! query strings (400), `If-Match`, and the caller's context.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::config::Principal;
use crate::error::ApiError;
use crate::ops::Ctx;

/// A JSON body. Unreadable JSON is a 400; JSON of the wrong shape is a 422 naming the field.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|ct| ct.starts_with("application/json") || ct.contains("+json"));
        if !is_json {
            return Err(ApiError::UnsupportedMediaType(
                "request bodies must be application/json".into(),
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::BadRequest(format!("cannot read request body: {e}"))
            }
        })?;
        // Every request body is an object; serde would also read a struct from an array
        // (`[null, null]` as an empty update), which the OpenAPI schema does not allow.
        if bytes.trim_ascii_start().first().is_some_and(|b| *b != b'{') {
            return Err(ApiError::Invalid {
                field: "body".into(),
                reason: "must be a JSON object".into(),
            });
        }
        parse_json(&bytes).map(ApiJson)
    }
}

/// Deserializes a body, naming the offending field on shape errors.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => ApiError::Invalid {
                field: if path == "." { "body".into() } else { path },
                reason: strip_position(&inner.to_string()),
            },
            _ => ApiError::BadRequest(format!("request body is not valid JSON: {inner}")),
        }
    })
}

/// serde_json appends "at line 1 column 42"; the field path says more.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// Query parameters; a bad one is a 400 that names it.
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let q = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(q.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(ApiQuery)
            .map_err(|e| {
                ApiError::BadRequest(format!(
                    "invalid query parameter {}: {}",
                    e.path(),
                    e.inner()
                ))
            })
    }
}

/// The `If-Match` header, if any.
#[derive(Debug, Clone)]
pub struct IfMatch(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match parts.headers.get(header::IF_MATCH) {
            None => Ok(IfMatch(None)),
            Some(v) => v
                .to_str()
                .map(|s| IfMatch(Some(s.to_owned())))
                .map_err(|_| ApiError::BadRequest("If-Match is not valid ASCII".into())),
        }
    }
}

impl IfMatch {
    pub fn as_deref(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let principal = parts
            .extensions
            .get::<Principal>()
            .ok_or(ApiError::Unauthenticated)?;
        Ok(Ctx {
            project: principal.project.clone(),
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
        })
    }
}

/// Requires an admin principal.
#[derive(Debug, Clone)]
pub struct Admin;

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match parts.extensions.get::<Principal>() {
            Some(p) if p.admin => Ok(Admin),
            Some(_) => Err(ApiError::PermissionDenied),
            None => Err(ApiError::Unauthenticated),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloud_api::CreateInstanceRequest;

    #[test]
    fn shape_errors_name_the_field() {
        let e = parse_json::<CreateInstanceRequest>(
            br#"{"name":"a","zone":"zone-a","instance_type":5}"#,
        )
        .unwrap_err();
        assert_eq!(e.field(), Some("instance_type"));
        let e = parse_json::<CreateInstanceRequest>(
            br#"{"name":"a","zone":"zone-a","instance_type":"x","private_ip":"1.2.3"}"#,
        )
        .unwrap_err();
        assert_eq!(e.field(), Some("private_ip"));
        let e = parse_json::<CreateInstanceRequest>(br#"{"zone":"zone-a","instance_type":"x"}"#)
            .unwrap_err();
        assert_eq!(e.field(), Some("body"));
        assert!(e.to_string().contains("name"), "{e}");
        let e = parse_json::<CreateInstanceRequest>(b"{not json").unwrap_err();
        assert!(matches!(e, ApiError::BadRequest(_)));
    }
}
