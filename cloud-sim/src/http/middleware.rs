//! Request middleware: request IDs, metrics and access logs; authentication; fault injection;
//! idempotency keys.

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, to_bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cloud_api::{DEFAULT_PROJECT, IDEMPOTENCY_KEY_HEADER, REQUEST_ID_HEADER};
use futures_util::FutureExt as _;
use tracing::Instrument as _;

use crate::config::Principal;
use crate::domain::idempotency::{self, Decision};
use crate::error::ApiError;
use crate::faults::Target;
use crate::http::AppState;
use crate::ops::Cloud;
use crate::store::{self, IdempotentRequest, RequestScope};

/// Largest request body accepted (and buffered for idempotency checks).
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Header set on responses replayed from an idempotency key.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The ID of the request being served (empty outside a request).
pub fn current_request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_default()
}

fn new_request_id() -> String {
    format!("req-{:016x}", rand::random::<u64>())
}

/// Assigns the request ID (keeping a sane one the client sent), records metrics and logs the
/// request when it completes.
pub async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(new_request_id, str::to_owned);
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |m| m.as_str())
        .to_owned();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let started = Instant::now();
    // Every log line of the request (handlers, operations, the store) carries its ID.
    let span = tracing::info_span!("request", request_id = %id, %method, path);
    let run = async move {
        // A panicking handler (a bug) still answers, with a 500 that carries the request ID.
        match std::panic::AssertUnwindSafe(next.run(req))
            .catch_unwind()
            .await
        {
            Ok(resp) => resp,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                ApiError::Panicked(what).into_response()
            }
        }
    };
    let mut resp = REQUEST_ID.scope(id.clone(), run).instrument(span).await;
    let elapsed = started.elapsed();
    let status = resp.status().as_u16();
    state
        .metrics
        .observe_request(&route, method.as_str(), status, elapsed);
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    let ms = elapsed.as_secs_f64() * 1000.0;
    if status >= 500 {
        tracing::warn!(request_id = %id, %method, path, status, ms, "request served");
    } else if route.starts_with("/v1/") && method != Method::GET {
        tracing::info!(request_id = %id, %method, path, status, ms, "request served");
    } else {
        tracing::debug!(request_id = %id, %method, path, status, ms, "request served");
    }
    resp
}

/// Maps the bearer token to a [`Principal`]; without a tokens file everyone is the admin of the
/// `default` project.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let principal = match &state.cloud.config().tokens {
        None => Principal {
            project: DEFAULT_PROJECT.to_owned(),
            admin: true,
        },
        Some(tokens) => {
            let token = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim);
            match token.and_then(|t| tokens.get(t)) {
                Some(p) => p.clone(),
                None => {
                    let mut resp = ApiError::Unauthenticated.into_response();
                    resp.headers_mut()
                        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                    return resp;
                }
            }
        }
    };
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// Applies the fault rules that match on method and path (zonal rules are applied by operations).
pub async fn inject_faults(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let project = req
        .extensions()
        .get::<Principal>()
        .map_or("", |p| p.project.as_str())
        .to_owned();
    let (delay, failure) = state.cloud.faults().evaluate(Target {
        method: req.method().as_str(),
        path: req.uri().path(),
        zone: None,
        project: &project,
    });
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(e) = failure {
        return e.into_response();
    }
    next.run(req).await
}

/// `Idempotency-Key` on POST: the first request runs and its successful response is stored; a
/// retry with the same key and body gets that response again; a different body is a 409.
pub async fn idempotency(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let Some(key) = req.headers().get(IDEMPOTENCY_KEY_HEADER) else {
        return next.run(req).await;
    };
    let key = match key.to_str() {
        Ok(k) if idempotency::is_valid_key(k.as_bytes()) => k.to_owned(),
        _ => {
            return ApiError::BadRequest(format!(
                "Idempotency-Key must be 1-{} visible ASCII characters",
                cloud_api::MAX_IDEMPOTENCY_KEY
            ))
            .into_response();
        }
    };
    match run_idempotent(&state, key, req, next).await {
        Ok(resp) | Err(resp) => resp,
    }
}

async fn run_idempotent(
    state: &AppState,
    key: String,
    req: Request,
    next: Next,
) -> Result<Response, Response> {
    let project = req
        .extensions()
        .get::<Principal>()
        .map_or("", |p| p.project.as_str())
        .to_owned();
    let (parts, body) = req.into_parts();
    let body = to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::PayloadTooLarge.into_response())?;
    let cloud = &state.cloud;
    let request = Arc::new(IdempotentRequest {
        project,
        key,
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        body: body.to_vec(),
    });
    let now = store::now_ms();
    // A claim committed apart from the response (see below) is released if this future is
    // dropped (the client went away): a retry is then not told "in progress" until the claim
    // times out.
    let mut guard = ClaimGuard {
        cloud: cloud.clone(),
        request: request.clone(),
        armed: false,
    };
    // The request runs once, claiming its key in its first transaction; a refused claim is
    // decided on and, if the request is to run after all, it runs again with its claim made.
    let mut claimed = false;
    let (resp, scope) = loop {
        let scope = RequestScope::new(request.clone(), now, claimed);
        let run = next
            .clone()
            .run(Request::from_parts(parts.clone(), Body::from(body.clone())));
        let (resp, scope) = cloud.in_request(scope, run).await;
        if !scope.refused() {
            break (resp, scope);
        }
        let decision = cloud
            .decide_idempotency(&request, now)
            .await
            .map_err(IntoResponse::into_response)?;
        if let Some(answer) = answer_instead(decision, &request.key) {
            return Ok(answer);
        }
        // The claim is committed now; a scope made with it claims nothing, so it is never
        // refused and this loop runs the request at most twice.
        debug_assert!(!claimed, "a scope with its claim made was refused");
        claimed = true;
        guard.armed = true;
    };
    guard.armed = scope.claim_committed();
    let (rparts, rbody) = resp.into_parts();
    let bytes = to_bytes(rbody, usize::MAX).await;
    let response = match &bytes {
        Ok(bytes) if rparts.status.is_success() => Some((rparts.status.as_u16(), &bytes[..])),
        _ => None,
    };
    // Records the response with what the request changed (or, for a failure, releases the
    // claim), and waits for the disk: nothing is answered before it is durable.
    let failed_unclaimed = response.is_none() && !scope.claimed();
    let finished = cloud.finish_request(scope, response).await;
    guard.armed = false;
    finished.map_err(IntoResponse::into_response)?;
    if failed_unclaimed {
        // It failed before it claimed its key (a validation error, say): if the key is in use,
        // that is the answer, as it would have been had it got as far as claiming.
        let decision = cloud
            .recorded_decision(&request, now)
            .await
            .map_err(IntoResponse::into_response)?;
        if let Some(answer) = answer_instead(decision, &request.key) {
            return Ok(answer);
        }
    }
    let bytes = bytes.map_err(|e| {
        ApiError::BadRequest(format!("cannot buffer response: {e}")).into_response()
    })?;
    Ok(Response::from_parts(rparts, Body::from(bytes)))
}

/// The response a request gets instead of running, by `decision`; `None`: it runs.
fn answer_instead(decision: Decision, key: &str) -> Option<Response> {
    Some(match decision {
        Decision::Claim | Decision::TakeOver => return None,
        Decision::Replay { status, body } => {
            let mut resp = Response::new(Body::from(body));
            *resp.status_mut() =
                axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::OK);
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp.headers_mut()
                .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
            resp
        }
        Decision::Mismatch => ApiError::IdempotencyKeyReused(key.to_owned()).into_response(),
        Decision::InFlight => ApiError::Conflict(format!(
            "a request with idempotency key {key:?} is still in progress"
        ))
        .into_response(),
    })
}

/// Releases an idempotency claim when dropped while armed.
struct ClaimGuard {
    cloud: Cloud,
    request: Arc<IdempotentRequest>,
    armed: bool,
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (cloud, request) = (self.cloud.clone(), self.request.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = cloud
                    .release_idempotency(&request.project, &request.key)
                    .await
                {
                    tracing::warn!(key = request.key, error = %crate::http::error::error_chain(&e), "cannot release abandoned idempotency key");
                }
            });
        }
    }
}
