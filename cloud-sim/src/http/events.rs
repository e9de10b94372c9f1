//! `/v1/events`: the event log, with long polling.

use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use cloud_api::{ApiErrorBody, EventPage};

use crate::error::ApiError;
use crate::http::AppState;
use crate::http::extract::ApiQuery;
use crate::ops::Ctx;

/// Longest a long poll may wait.
pub const MAX_WAIT_SECONDS: u64 = 60;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/events", get(list))
}

#[utoipa::path(get, path = "/v1/events", tag = "events", params(cloud_api::EventsQuery),
    responses((status = 200, body = EventPage), (status = 400, body = ApiErrorBody)))]
pub async fn list(
    State(s): State<AppState>,
    ctx: Ctx,
    ApiQuery(q): ApiQuery<cloud_api::EventsQuery>,
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
