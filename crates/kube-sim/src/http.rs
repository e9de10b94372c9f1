//! HTTP: the router, path and query parsing, content types, and the test-control endpoints
//! under `/kube-sim/`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{Method, StatusCode, header};
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
    /// Every distinct (user agent, verb, resource) served, for `GET /kube-sim/requests`: what a
    /// client needs RBAC for.
    pub requests: Arc<std::sync::Mutex<std::collections::BTreeSet<RequestRecord>>>,
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
                let seen: Vec<RequestRecord> = s
                    .requests
                    .lock()
                    .expect("requests lock")
                    .iter()
                    .cloned()
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

async fn log_request(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let uri = req.uri().clone();
    let resp = next.run(req).await;
    tracing::debug!(%method, %uri, status = resp.status().as_u16(), "request");
    resp
}

async fn inject_faults(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if path.starts_with("/api")
        && let Some(e) = s.faults.check(req.method().as_str(), path)
    {
        return e.into_response();
    }
    next.run(req).await
}

async fn add_fault(State(s): State<AppState>, body: Bytes) -> Response {
    match serde_json::from_slice::<FailRule>(&body) {
        Ok(rule) => match s.faults.add(rule) {
            Ok(()) => StatusCode::CREATED.into_response(),
            Err(e) => StatusError::new(422, "Invalid", e).into_response(),
        },
        Err(e) => StatusError::bad_request(e.to_string()).into_response(),
    }
}

async fn clear_faults(State(s): State<AppState>) -> StatusCode {
    s.faults.clear();
    StatusCode::NO_CONTENT
}

async fn control_watches(State(s): State<AppState>, Path(action): Path<String>) -> Response {
    let ctl = match action.as_str() {
        "expire" => WatchControl::Expire,
        "cut" => WatchControl::Cut,
        _ => {
            return StatusError::new(
                404,
                "NotFound",
                "use /kube-sim/watches/expire or /kube-sim/watches/cut",
            )
            .into_response();
        }
    };
    let n = s.faults.control_watches(ctl);
    axum::Json(json!({"watches": n})).into_response()
}

async fn compact(State(s): State<AppState>) -> Response {
    s.api.store.compact();
    axum::Json(json!({"oldestResourceVersion": s.api.store.oldest_watchable().to_string()}))
        .into_response()
}

/// The parsed query string (form-urlencoded; empty pairs and unknown keys ignored).
#[derive(Debug, Default)]
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Self {
        Self(
            form_urlencoded::parse(q.unwrap_or("").as_bytes())
                .filter(|(k, _)| !k.is_empty())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1"))
    }
}

/// Resolves an API path to a resource target.
fn resolve(path: &str) -> Result<Target, StatusError> {
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

fn json_response(code: u16, v: &Value) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    (status, axum::Json(v)).into_response()
}

fn list_query(def: &ResourceDef, q: &Query) -> Result<ListQuery, StatusError> {
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

async fn read_body(body: Body) -> Result<Bytes, StatusError> {
    axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        StatusError::new(
            413,
            "RequestEntityTooLarge",
            "the request body is too large",
        )
    })
}

fn parse_json_body(bytes: &[u8]) -> Result<Value, StatusError> {
    if bytes.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| StatusError::bad_request(format!("the request body is not valid JSON: {e}")))
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
        return openapi_response(rest);
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
        s.requests
            .lock()
            .expect("requests lock")
            .insert(RequestRecord {
                user_agent,
                verb: verb.to_owned(),
                api_group: t.def.group.to_owned(),
                resource,
            });
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

/// Server-side field validation (`fieldValidation`): fields the kind's schema does not declare
/// are dropped (kube-apiserver's decoding drops them); `Strict` refuses the request instead,
/// `Warn` (the default, as kube-apiserver's) answers with a Warning header for each, `Ignore`
/// says nothing. Returns the warnings.
fn check_fields(
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

/// Adds an HTTP `Warning: 299 - "..."` header per warning, as kube-apiserver does.
fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    for w in warnings {
        if let Ok(v) = axum::http::HeaderValue::from_str(&format!("299 - {w:?}")) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

/// `/openapi/v3` and its documents; v2 is not served (kubectl uses v3 when it is there).
fn openapi_response(rest: &str) -> Result<Response, StatusError> {
    let not_found = |what: &str| StatusError::new(404, "NotFound", what.to_owned());
    match rest.trim_end_matches('/') {
        "v3" => Ok(json_response(200, &crate::openapi::index())),
        "v2" => Err(not_found(
            "kube-sim serves OpenAPI v3 only (/openapi/v3), which kubectl prefers",
        )),
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

/// The field manager of a write: the `fieldManager` parameter, else the product of the
/// User-Agent (`kubectl/v1.37.2 (linux/amd64) ...` is `kubectl`), as kube-apiserver defaults it.
fn field_manager(q: &Query, headers: &axum::http::HeaderMap) -> String {
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
async fn read_object(content_type: &str, body: Body) -> Result<Value, StatusError> {
    if crate::protobuf::is_protobuf(content_type) {
        let bytes = read_body(body).await?;
        return crate::protobuf::decode(&bytes).map_err(|e| {
            StatusError::bad_request(format!("the protobuf body cannot be decoded: {e}"))
        });
    }
    require_json(content_type)?;
    parse_json_body(&read_body(body).await?)
}

fn require_json(ct: &str) -> Result<(), StatusError> {
    if ct.is_empty() || ct.starts_with("application/json") || ct.starts_with("*/*") {
        Ok(())
    } else {
        Err(StatusError::unsupported_media_type(ct))
    }
}

fn patch_type(ct: &str) -> Result<PatchType, StatusError> {
    let base = ct.split(';').next().unwrap_or("").trim();
    match base {
        "application/merge-patch+json" => Ok(PatchType::Merge),
        "application/json-patch+json" => Ok(PatchType::Json),
        "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
        "application/apply-patch+yaml" => Ok(PatchType::Apply { force: false }),
        other => Err(StatusError::unsupported_media_type(other)),
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
