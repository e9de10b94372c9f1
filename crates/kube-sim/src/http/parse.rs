//! Reading a request: the path into a [`Target`], the query string, bodies by content type,
//! patch types, field managers, and strict field validation.

use super::*;

/// The parsed query string (form-urlencoded; empty pairs and unknown keys ignored).
#[derive(Debug, Default)]
pub(super) struct Query(pub(super) Vec<(String, String)>);

impl Query {
    pub(super) fn parse(q: Option<&str>) -> Self {
        Self(
            form_urlencoded::parse(q.unwrap_or("").as_bytes())
                .filter(|(k, _)| !k.is_empty())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub(super) fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1"))
    }
}

/// Resolves an API path to a resource target.
pub(super) fn resolve(path: &str) -> Result<Target, StatusError> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => {
            return Err(StatusError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ));
        }
    };
    let not_found = || {
        StatusError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    };
    let def = |plural: &str| resources::lookup(group, version, plural).ok_or_else(not_found);
    let ns_def = || resources::lookup("", "v1", "namespaces").expect("namespaces are served");
    let t =
        |def: &'static ResourceDef, ns: Option<&str>, name: Option<&str>, status: bool| Target {
            def,
            namespace: ns.map(str::to_owned),
            name: name.map(str::to_owned),
            status,
            manager: String::new(),
        };
    match rest {
        [plural] => Ok(t(def(plural)?, None, None, false)),
        ["namespaces", name, "status"] if group.is_empty() => {
            Ok(t(ns_def(), None, Some(name), true))
        }
        ["namespaces", ns, plural] => {
            let d = def(plural)?;
            if !d.namespaced {
                return Err(not_found());
            }
            Ok(t(d, Some(ns), None, false))
        }
        [plural, name] => {
            let d = def(plural)?;
            if d.namespaced {
                return Err(not_found());
            }
            Ok(t(d, None, Some(name), false))
        }
        [plural, name, "status"] => {
            let d = def(plural)?;
            if d.namespaced || !d.status {
                return Err(not_found());
            }
            Ok(t(d, None, Some(name), true))
        }
        ["namespaces", ns, plural, name] => {
            let d = def(plural)?;
            if !d.namespaced {
                return Err(not_found());
            }
            Ok(t(d, Some(ns), Some(name), false))
        }
        ["namespaces", ns, plural, name, "status"] => {
            let d = def(plural)?;
            if !d.namespaced || !d.status {
                return Err(not_found());
            }
            Ok(t(d, Some(ns), Some(name), true))
        }
        _ => Err(not_found()),
    }
}

pub(super) fn list_query(def: &ResourceDef, q: &Query) -> Result<ListQuery, StatusError> {
    let labels = LabelSelector::parse(q.get("labelSelector").unwrap_or(""))
        .map_err(StatusError::bad_request)?;
    let fields = FieldSelector::parse(q.get("fieldSelector").unwrap_or(""), |f| {
        def.supports_field(f)
    })
    .map_err(StatusError::bad_request)?;
    let limit = match q.get("limit") {
        None | Some("") => None,
        Some(l) => Some(
            l.parse::<usize>()
                .map_err(|_| StatusError::bad_request(format!("invalid limit {l:?}")))?,
        ),
    };
    if q.get("continue").is_some_and(|c| !c.is_empty())
        && q.get("resourceVersion")
            .is_some_and(|rv| !rv.is_empty() && rv != "0")
    {
        return Err(StatusError::bad_request(
            "specifying resource version is not allowed when using continue",
        ));
    }
    Ok(ListQuery {
        labels,
        fields,
        limit,
        continue_token: q.get("continue").map(str::to_owned),
    })
}

pub(super) async fn read_body(body: Body) -> Result<Bytes, StatusError> {
    axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        StatusError::new(
            413,
            "RequestEntityTooLarge",
            "the request body is too large",
        )
    })
}

pub(super) fn parse_json_body(bytes: &[u8]) -> Result<Value, StatusError> {
    if bytes.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| StatusError::bad_request(format!("the request body is not valid JSON: {e}")))
}

/// Server-side field validation (`fieldValidation`): fields the kind's schema does not declare
/// are dropped (kube-apiserver's decoding drops them); `Strict` refuses the request instead,
/// `Warn` (the default, as kube-apiserver's) answers with a Warning header for each, `Ignore`
/// says nothing. Returns the warnings.
pub(super) fn check_fields(
    def: &ResourceDef,
    body: &mut Value,
    q: &Query,
) -> Result<Vec<String>, StatusError> {
    let mode = q.get("fieldValidation").unwrap_or("Warn");
    if !matches!(mode, "Strict" | "Warn" | "Ignore") {
        return Err(StatusError::new(
            422,
            "Invalid",
            format!(
                "fieldValidation: Unsupported value: {mode:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
            ),
        ));
    }
    let unknown: Vec<String> =
        crate::openapi::strip_unknown_fields(def.group, def.version, def.kind, body)
            .into_iter()
            .map(|f| format!("unknown field {f:?}"))
            .collect();
    if mode == "Ignore" {
        return Ok(Vec::new());
    }
    if mode == "Strict" && !unknown.is_empty() {
        return Err(StatusError::bad_request(format!(
            "{kind} in version {version:?} cannot be handled as a {kind}: strict decoding error: {}",
            unknown.join(", "),
            kind = def.kind,
            version = def.version,
        )));
    }
    Ok(unknown)
}

/// The field manager of a write: the `fieldManager` parameter, else the product of the
/// User-Agent (`kubectl/v1.37.2 (linux/amd64) ...` is `kubectl`), as kube-apiserver defaults it.
pub(super) fn field_manager(q: &Query, headers: &axum::http::HeaderMap) -> String {
    if let Some(m) = q.get("fieldManager").filter(|m| !m.is_empty()) {
        return m.to_owned();
    }
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .filter(|p| !p.is_empty())
        .unwrap_or("unknown")
        .to_owned()
}

/// A request body as JSON: JSON as it is, Kubernetes protobuf decoded ([`crate::protobuf`]).
pub(super) async fn read_object(content_type: &str, body: Body) -> Result<Value, StatusError> {
    if crate::protobuf::is_protobuf(content_type) {
        let bytes = read_body(body).await?;
        return crate::protobuf::decode(&bytes).map_err(|e| {
            StatusError::bad_request(format!("the protobuf body cannot be decoded: {e}"))
        });
    }
    require_json(content_type)?;
    parse_json_body(&read_body(body).await?)
}

pub(super) fn require_json(ct: &str) -> Result<(), StatusError> {
    if ct.is_empty() || ct.starts_with("application/json") || ct.starts_with("*/*") {
        Ok(())
    } else {
        Err(StatusError::unsupported_media_type(ct))
    }
}

pub(super) fn patch_type(ct: &str) -> Result<PatchType, StatusError> {
    let base = ct.split(';').next().unwrap_or("").trim();
    match base {
        "application/merge-patch+json" => Ok(PatchType::Merge),
        "application/json-patch+json" => Ok(PatchType::Json),
        "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
        "application/apply-patch+yaml" => Ok(PatchType::Apply { force: false }),
        other => Err(StatusError::unsupported_media_type(other)),
    }
}
