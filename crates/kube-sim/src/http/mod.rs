//! HTTP: the router, path and query parsing, content types, and the test-control endpoints
//! under `/kube-sim/`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::api::{Api, ListQuery, PatchType, Target};
use crate::discovery;
use crate::faults::{FailRule, Faults};
use crate::resources::{self, ResourceDef};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::status::StatusError;
use crate::watch::{self, WatchControl, WatchParams};

mod control;
mod parse;

use control::*;
use parse::*;

/// Largest accepted request body.
pub const MAX_BODY: usize = 3 << 20;
/// Watch length when the client gives no `timeoutSeconds` (the real server picks 30-60 min).
pub const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

#[derive(Debug, Clone)]
pub struct AppState {
    pub api: Arc<Api>,
    pub faults: Arc<Faults>,
    pub bookmark_every: Duration,
    /// `host:port` clients use, for `/api`'s serverAddressByClientCIDRs.
    pub address: String,
    /// Every distinct (user agent, verb, resource) served and how often, for
    /// `GET /kube-sim/requests`: what a client needs RBAC for, and what it costs the server.
    pub requests: Arc<std::sync::Mutex<std::collections::BTreeMap<RequestRecord, u64>>>,
}

/// One kind of API request a client made, in RBAC terms.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestRecord {
    pub user_agent: String,
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete` or `deletecollection`.
    pub verb: String,
    /// API group; empty for core.
    pub api_group: String,
    /// Plural, with `/status` for the status subresource.
    pub resource: String,
}

/// A [`RequestRecord`] and how many such requests were served.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RequestCount {
    #[serde(flatten)]
    pub record: RequestRecord,
    pub count: u64,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/version",
            get(|| async { axum::Json(discovery::version()) }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route(
            "/api",
            get(|State(s): State<AppState>| async move {
                axum::Json(discovery::api_versions(&s.address))
            }),
        )
        .route(
            "/apis",
            get(|| async { axum::Json(discovery::api_groups()) }),
        )
        .route("/kube-sim/faults", post(add_fault).delete(clear_faults))
        .route("/kube-sim/watches/{action}", post(control_watches))
        .route("/kube-sim/compact", post(compact))
        .route(
            "/kube-sim/requests",
            get(|State(s): State<AppState>| async move {
                let seen: Vec<RequestCount> = s
                    .requests
                    .lock()
                    .expect("requests lock")
                    .iter()
                    .map(|(record, count)| RequestCount {
                        record: record.clone(),
                        count: *count,
                    })
                    .collect();
                axum::Json(seen)
            }),
        )
        .fallback(dispatch)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            inject_faults,
        ))
        .layer(axum::middleware::from_fn(log_request))
        .with_state(state)
}

fn json_response(code: u16, v: &Value) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    (status, axum::Json(v)).into_response()
}

async fn dispatch(State(s): State<AppState>, req: Request) -> Response {
    match handle(&s, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn handle(s: &AppState, req: Request) -> Result<Response, StatusError> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    if let Some(rest) = path.strip_prefix("/openapi/") {
        return openapi_response(rest, &parts.headers);
    }
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    // Group-version discovery.
    if parts.method == Method::GET {
        let listing = match segs.as_slice() {
            ["api", v] => Some(("", *v)),
            ["apis", g, v] => Some((*g, *v)),
            _ => None,
        };
        if let Some((g, v)) = listing {
            return discovery::resource_list(g, v)
                .map(|l| json_response(200, &l))
                .ok_or_else(|| {
                    StatusError::new(
                        404,
                        "NotFound",
                        "the server could not find the requested resource",
                    )
                });
        }
    }
    let (path, scale) = match path.strip_suffix("/scale") {
        Some(parent) => (parent.to_owned(), true),
        None => (path, false),
    };
    let (path, binding) = match path.strip_suffix("/binding") {
        Some(parent) => (parent.to_owned(), true),
        None => (path, false),
    };
    let mut t = resolve(&path)?;
    if (scale && (!t.def.scale || t.name.is_none() || t.status))
        || (binding && (t.def.storage != crate::resources::PODS || t.name.is_none() || t.status))
    {
        return Err(StatusError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ));
    }
    let q = Query::parse(parts.uri.query());
    t.manager = field_manager(&q, &parts.headers);
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let dry_run = q.get("dryRun").is_some();
    let verb = match (&parts.method, t.name.is_some()) {
        (&Method::GET, true) => "get",
        (&Method::GET, false) if q.flag("watch") => "watch",
        (&Method::GET, false) => "list",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => "",
    };
    if !verb.is_empty() {
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let resource = if t.status {
            format!("{}/status", t.def.plural)
        } else if scale {
            format!("{}/scale", t.def.plural)
        } else if binding {
            format!("{}/binding", t.def.plural)
        } else {
            t.def.plural.to_owned()
        };
        *s.requests
            .lock()
            .expect("requests lock")
            .entry(RequestRecord {
                user_agent,
                verb: verb.to_owned(),
                api_group: t.def.group.to_owned(),
                resource,
            })
            .or_default() += 1;
    }
    let api = &s.api;
    if scale {
        return match parts.method {
            Method::GET => Ok(json_response(200, &api.get_scale(&t)?)),
            Method::PUT => {
                let body = read_object(&content_type, body).await?;
                let (code, obj) = api.write_scale(&t, None, body, dry_run)?;
                Ok(json_response(code, &obj))
            }
            Method::PATCH => {
                let ty = patch_type(&content_type)?;
                let body = parse_json_body(&read_body(body).await?)?;
                let (code, obj) = api.write_scale(&t, Some(ty), body, dry_run)?;
                Ok(json_response(code, &obj))
            }
            m => Err(StatusError::method_not_allowed(format!(
                "{m} is not supported on the scale subresource"
            ))),
        };
    }
    if binding {
        if parts.method != Method::POST {
            return Err(StatusError::method_not_allowed(format!(
                "{} is not supported on the binding subresource",
                parts.method
            )));
        }
        let body = read_object(&content_type, body).await?;
        let (code, obj) = api.bind(&t, &body, dry_run)?;
        return Ok(json_response(code, &obj));
    }
    if t.def.review {
        if parts.method != Method::POST || t.name.is_some() {
            return Err(StatusError::method_not_allowed(format!(
                "{} only supports create",
                t.def.qualified_plural()
            )));
        }
        let body = read_object(&content_type, body).await?;
        let who = crate::rbac::Requester::from_headers(&parts.headers);
        let (code, obj) = api.review(t.def, body, &who)?;
        return Ok(json_response(code, &obj));
    }
    let table = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(crate::tables::wants_table);
    // Only Table answers read includeObject.
    let include = if table {
        crate::tables::Include::parse(q.get("includeObject")).map_err(StatusError::bad_request)?
    } else {
        crate::tables::Include::Metadata
    };
    let as_table = |items: &[Value], meta: Value| -> Result<Response, StatusError> {
        Ok(json_response(
            200,
            &crate::tables::table_for(t.def, items, meta, include, jiff::Timestamp::now()),
        ))
    };
    match (parts.method.clone(), t.name.is_some()) {
        (Method::GET, true) if table && !t.status => {
            let obj = api.get(&t)?;
            let meta = json!({"resourceVersion": obj["metadata"]["resourceVersion"]});
            as_table(&[obj], meta)
        }
        (Method::GET, true) => Ok(json_response(200, &api.get(&t)?)),
        (Method::GET, false) if q.flag("watch") => {
            watch_response(s, t, &q, table.then_some(include))
        }
        (Method::GET, false) if table => {
            let lq = list_query(t.def, &q)?;
            let mut list = api.list(&t, &lq)?;
            let items = list["items"].as_array().cloned().unwrap_or_default();
            as_table(&items, list["metadata"].take())
        }
        (Method::GET, false) => {
            let lq = list_query(t.def, &q)?;
            Ok(json_response(200, &api.list(&t, &lq)?))
        }
        (Method::POST, false) => {
            let mut body = read_object(&content_type, body).await?;
            let warnings = check_fields(t.def, &mut body, &q)?;
            let (code, obj) = api.create(&t, body, dry_run)?;
            Ok(with_warnings(json_response(code, &obj), &warnings))
        }
        (Method::PUT, true) => {
            let mut body = read_object(&content_type, body).await?;
            let warnings = check_fields(t.def, &mut body, &q)?;
            let (code, obj) = api.update(&t, body, dry_run)?;
            Ok(with_warnings(json_response(code, &obj), &warnings))
        }
        (Method::PATCH, true) => {
            let ty = match patch_type(&content_type)? {
                PatchType::Apply { .. } => PatchType::Apply {
                    force: q.flag("force"),
                },
                other => other,
            };
            if matches!(ty, PatchType::Apply { .. })
                && q.get("fieldManager").is_none_or(str::is_empty)
            {
                // An apply names its manager; there is no default.
                t.manager.clear();
            }
            let bytes = read_body(body).await?;
            let mut body: Value = match ty {
                // An applied configuration is YAML (JSON is YAML too).
                PatchType::Apply { .. } => serde_json::from_slice(&bytes).or_else(|_| {
                    serde_saphyr::from_slice(&bytes).map_err(|e| {
                        StatusError::bad_request(format!(
                            "the applied configuration is not valid YAML: {e}"
                        ))
                    })
                })?,
                _ => serde_json::from_slice(&bytes).map_err(|e| {
                    StatusError::bad_request(format!("the patch is not valid JSON: {e}"))
                })?,
            };
            // A JSON patch names paths, not fields: only merge patches are checked.
            let warnings = if ty == PatchType::Json {
                Vec::new()
            } else {
                check_fields(t.def, &mut body, &q)?
            };
            let (code, obj) = api.patch(&t, ty, body, dry_run)?;
            Ok(with_warnings(json_response(code, &obj), &warnings))
        }
        (Method::DELETE, true) => {
            let opts = parse_json_body(&read_body(body).await?)?;
            let (code, obj) = api.delete(&t, &opts)?;
            Ok(json_response(code, &obj))
        }
        (Method::DELETE, false) => {
            let lq = list_query(t.def, &q)?;
            let (code, obj) = api.delete_collection(&t, &lq)?;
            Ok(json_response(code, &obj))
        }
        (m, _) => Err(StatusError::method_not_allowed(format!(
            "{m} is not supported on {path}"
        ))),
    }
}

/// Adds an HTTP `Warning: 299 - "..."` header per warning, as kube-apiserver does.
fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    for w in warnings {
        if let Ok(v) = axum::http::HeaderValue::from_str(&format!("299 - {w:?}")) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

/// `/openapi/v3` and its documents, and `/openapi/v2` (protobuf when asked for, as kubectl
/// does; JSON otherwise).
fn openapi_response(rest: &str, headers: &HeaderMap) -> Result<Response, StatusError> {
    let not_found = |what: &str| StatusError::new(404, "NotFound", what.to_owned());
    match rest.trim_end_matches('/') {
        "v3" => Ok(json_response(200, &crate::openapi::index())),
        "v2" => {
            let doc = crate::swagger::document();
            let protobuf = headers
                .get_all(header::ACCEPT)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(crate::swagger::wants_protobuf);
            let (content_type, body) = if protobuf {
                (crate::swagger::PROTOBUF, doc.protobuf.as_slice())
            } else {
                ("application/json", doc.json.as_slice())
            };
            Ok((
                [(header::CONTENT_TYPE, content_type)],
                Bytes::from_static(body),
            )
                .into_response())
        }
        other => {
            let doc = other
                .strip_prefix("v3/")
                .and_then(crate::openapi::document)
                .ok_or_else(|| not_found("the server could not find the requested resource"))?;
            Ok((
                [
                    (header::CONTENT_TYPE, "application/json"),
                    (header::CACHE_CONTROL, "public, immutable"),
                ],
                Bytes::from_static(doc.json.as_slice()),
            )
                .into_response())
        }
    }
}

fn watch_response(
    s: &AppState,
    t: Target,
    q: &Query,
    table: Option<crate::tables::Include>,
) -> Result<Response, StatusError> {
    if q.flag("sendInitialEvents") {
        return Err(StatusError::new(
            422,
            "Invalid",
            "sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled",
        ));
    }
    let lq = list_query(t.def, q)?;
    let resource_version = match q.get("resourceVersion") {
        None | Some("") | Some("0") => None,
        Some(rv) => Some(
            rv.parse::<u64>()
                .map_err(|_| StatusError::bad_request(format!("invalid resourceVersion {rv:?}")))?,
        ),
    };
    let timeout = match q.get("timeoutSeconds") {
        None | Some("") => DEFAULT_WATCH_TIMEOUT,
        Some(t) => Duration::from_secs(
            t.parse()
                .map_err(|_| StatusError::bad_request(format!("invalid timeoutSeconds {t:?}")))?,
        ),
    };
    let params = WatchParams {
        resource_version,
        timeout,
        bookmarks: q.flag("allowWatchBookmarks"),
        labels: lq.labels,
        fields: lq.fields,
        table,
    };
    let body = watch::stream(
        s.api.store.clone(),
        t,
        params,
        s.faults.subscribe_watches(),
        s.bookmark_every,
    );
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .expect("static response parts are valid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_to_targets() {
        let cases = [
            ("/api/v1/nodes", "Node", None, None, false),
            ("/api/v1/nodes/n1", "Node", None, Some("n1"), false),
            ("/api/v1/nodes/n1/status", "Node", None, Some("n1"), true),
            ("/api/v1/services", "Service", None, None, false),
            (
                "/api/v1/namespaces/default/services",
                "Service",
                Some("default"),
                None,
                false,
            ),
            (
                "/api/v1/namespaces/default/services/web/status",
                "Service",
                Some("default"),
                Some("web"),
                true,
            ),
            ("/api/v1/namespaces", "Namespace", None, None, false),
            (
                "/api/v1/namespaces/kube-system",
                "Namespace",
                None,
                Some("kube-system"),
                false,
            ),
            (
                "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/ccm",
                "Lease",
                Some("kube-system"),
                Some("ccm"),
                false,
            ),
            (
                "/apis/discovery.k8s.io/v1/endpointslices",
                "EndpointSlice",
                None,
                None,
                false,
            ),
        ];
        for (path, kind, ns, name, status) in cases {
            let t = resolve(path).unwrap();
            assert_eq!(
                (
                    t.def.kind,
                    t.namespace.as_deref(),
                    t.name.as_deref(),
                    t.status
                ),
                (kind, ns, name, status),
                "{path}"
            );
        }
        for bad in [
            "/api/v1/namespaces/x/nodes",
            "/api/v1/services/web",
            "/api/v1/widgets",
            "/apis/coordination.k8s.io/v1/leases/x/status",
            "/x",
        ] {
            assert_eq!(resolve(bad).unwrap_err().code, 404, "{bad}");
        }
    }

    #[test]
    fn queries_decode_like_forms() {
        let q = Query::parse(Some(
            "&labelSelector=a+in+%28b%2C+c%29%2C%21d&limit=500&watch=1",
        ));
        assert_eq!(q.get("labelSelector"), Some("a in (b, c),!d"));
        assert!(q.flag("watch"));
        assert_eq!(q.get("missing"), None);
    }

    #[test]
    fn patch_content_types() {
        assert_eq!(
            patch_type("application/merge-patch+json").unwrap(),
            PatchType::Merge
        );
        assert_eq!(
            patch_type("application/strategic-merge-patch+json; charset=utf-8").unwrap(),
            PatchType::Strategic
        );
        assert_eq!(
            patch_type("application/apply-patch+yaml").unwrap(),
            PatchType::Apply { force: false }
        );
        assert_eq!(
            patch_type("application/apply-patch+cbor").unwrap_err().code,
            415
        );
        assert_eq!(
            patch_type("application/vnd.kubernetes.protobuf")
                .unwrap_err()
                .code,
            415
        );
        assert_eq!(
            require_json("application/vnd.kubernetes.protobuf")
                .unwrap_err()
                .code,
            415
        );
    }
}
