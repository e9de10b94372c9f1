//! `metav1.Status` errors, with the codes and reasons kube-rs and kubectl branch on.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::resources::ResourceDef;

/// A failed request, rendered as a Status object.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct StatusError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
    /// Sent as `Retry-After` (seconds) when set.
    pub retry_after: Option<u64>,
}

impl StatusError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn not_found(def: &ResourceDef, name: &str) -> Self {
        let mut e = Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", def.qualified_plural()),
        );
        e.details = Some(json!({"name": name, "group": def.group, "kind": def.plural}));
        e
    }

    pub fn namespace_not_found(ns: &str) -> Self {
        let mut e = Self::new(404, "NotFound", format!("namespaces \"{ns}\" not found"));
        e.details = Some(json!({"name": ns, "kind": "namespaces"}));
        e
    }

    /// Creating in a namespace that is being deleted (the NamespaceLifecycle admission plugin).
    pub fn namespace_terminating(def: &ResourceDef, name: &str, ns: &str) -> Self {
        let mut e = Self::new(
            403,
            "Forbidden",
            format!(
                "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                def.qualified_plural()
            ),
        );
        e.details = Some(json!({"name": name, "group": def.group, "kind": def.plural,
            "causes": [{"reason": "NamespaceTerminating", "message": format!("namespace {ns} is being terminated"), "field": "metadata.namespace"}]}));
        e
    }

    pub fn already_exists(def: &ResourceDef, name: &str) -> Self {
        let mut e = Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", def.qualified_plural()),
        );
        e.details = Some(json!({"name": name, "group": def.group, "kind": def.plural}));
        e
    }

    pub fn conflict(def: &ResourceDef, name: &str) -> Self {
        let mut e = Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                def.qualified_plural()
            ),
        );
        e.details = Some(json!({"name": name, "group": def.group, "kind": def.plural}));
        e
    }

    /// 422 with one cause naming the field.
    pub fn invalid(def: &ResourceDef, name: &str, field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        let mut e = Self::new(
            422,
            "Invalid",
            format!("{} \"{name}\" is invalid: {field}: {message}", def.kind),
        );
        e.details = Some(json!({
            "name": name,
            "group": def.group,
            "kind": def.kind,
            "causes": [{"reason": "FieldValueInvalid", "message": message, "field": field}]
        }));
        e
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    pub fn unsupported_media_type(ct: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/vnd.kubernetes.protobuf, application/merge-patch+json, application/strategic-merge-patch+json, application/json-patch+json (got {ct:?})"
            ),
        )
    }

    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// The Status object.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        if let Some(secs) = self.retry_after {
            if !s["details"].is_object() {
                s["details"] = json!({});
            }
            s["details"]["retryAfterSeconds"] = json!(secs);
        }
        s
    }
}

impl IntoResponse for StatusError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, axum::Json(self.to_status())).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// The Status a successful delete answers with (Node, Lease, ...).
pub fn delete_success(def: &ResourceDef, name: &str, uid: Option<&str>) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": name, "group": def.group, "kind": def.plural, "uid": uid},
    })
}
