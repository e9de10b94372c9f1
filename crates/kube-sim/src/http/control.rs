//! kube-sim's own test controls under `/kube-sim/`: faults, watch expiry and cuts, compaction,
//! and the request log.

use super::*;

pub(super) async fn log_request(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let uri = req.uri().clone();
    let resp = next.run(req).await;
    tracing::debug!(%method, %uri, status = resp.status().as_u16(), "request");
    resp
}

pub(super) async fn inject_faults(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if path.starts_with("/api")
        && let Some(e) = s.faults.check(req.method().as_str(), path)
    {
        return e.into_response();
    }
    next.run(req).await
}

pub(super) async fn add_fault(State(s): State<AppState>, body: Bytes) -> Response {
    match serde_json::from_slice::<FailRule>(&body) {
        Ok(rule) => match s.faults.add(rule) {
            Ok(()) => StatusCode::CREATED.into_response(),
            Err(e) => StatusError::new(422, "Invalid", e).into_response(),
        },
        Err(e) => StatusError::bad_request(e.to_string()).into_response(),
    }
}

pub(super) async fn clear_faults(State(s): State<AppState>) -> StatusCode {
    s.faults.clear();
    StatusCode::NO_CONTENT
}

pub(super) async fn control_watches(
    State(s): State<AppState>,
    Path(action): Path<String>,
) -> Response {
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

pub(super) async fn compact(State(s): State<AppState>) -> Response {
    s.api.store.compact();
    axum::Json(json!({"oldestResourceVersion": s.api.store.oldest_watchable().to_string()}))
        .into_response()
}
