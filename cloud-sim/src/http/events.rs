//! `/v1/events`: the event log, with long polling.

use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use cloud_api::{ApiErrorBody, EventPage};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::ApiError;
use crate::http::AppState;
use crate::http::extract::ApiQuery;
use crate::ops::Ctx;

/// Longest a long poll may wait.
pub const MAX_WAIT_SECONDS: u64 = 60;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/events", get(list))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Return events with a greater sequence number (default 0: from the start).
    after: Option<i64>,
    /// Most events to return (1-1000, default 100; any 32-bit count is clamped to that range).
    #[param(value_type = Option<u64>, maximum = 4294967295_u64)]
    limit: Option<u32>,
    /// When there are no such events yet, wait up to this many seconds (0-60) for one.
    wait_seconds: Option<u64>,
}

#[utoipa::path(get, path = "/v1/events", tag = "events", params(EventsQuery),
    responses((status = 200, body = EventPage), (status = 400, body = ApiErrorBody)))]
pub async fn list(
    State(s): State<AppState>,
    ctx: Ctx,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Json<EventPage>, ApiError> {
    let wait = q.wait_seconds.unwrap_or(0);
    if wait > MAX_WAIT_SECONDS {
        return Err(ApiError::BadRequest(format!(
            "wait_seconds must be at most {MAX_WAIT_SECONDS}"
        )));
    }
    let after = q.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::BadRequest("after must not be negative".into()));
    }
    Ok(Json(
        s.cloud
            .events(
                &ctx,
                after,
                q.limit.unwrap_or(100),
                Duration::from_secs(wait),
            )
            .await?,
    ))
}
