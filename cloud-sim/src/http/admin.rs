//! `/v1/admin`: fault injection and zone state. Needs an admin token when tokens are configured.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, put};
use axum::{Json, Router};
use cloud_api::{ApiErrorBody, CreateFaultRequest, FaultRule, Page, SetZoneStateRequest, Zone};

use crate::error::ApiError;
use crate::http::AppState;
use crate::http::extract::{Admin, ApiJson};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/admin/faults",
            get(list_faults).post(create_fault).delete(clear_faults),
        )
        .route("/v1/admin/faults/{id}", delete(delete_fault))
        .route("/v1/admin/zones/{zone}", put(set_zone_state))
}

#[utoipa::path(get, path = "/v1/admin/faults", tag = "admin", responses((status = 200, body = Page<FaultRule>), (status = 403, body = ApiErrorBody)))]
pub async fn list_faults(State(s): State<AppState>, _: Admin) -> Json<Page<FaultRule>> {
    Json(Page {
        items: s.cloud.faults().list(),
        next_page_token: None,
    })
}

#[utoipa::path(post, path = "/v1/admin/faults", tag = "admin", request_body = CreateFaultRequest,
    responses((status = 201, body = FaultRule), (status = 422, body = ApiErrorBody)))]
pub async fn create_fault(
    State(s): State<AppState>,
    _: Admin,
    ApiJson(req): ApiJson<CreateFaultRequest>,
) -> Result<(StatusCode, Json<FaultRule>), ApiError> {
    let zones: Vec<String> = s
        .cloud
        .config()
        .zones
        .iter()
        .map(|z| z.name.clone())
        .collect();
    let rule = s.cloud.faults().add(req, &zones)?;
    tracing::info!(fault = %rule.id, "fault rule added");
    Ok((StatusCode::CREATED, Json(rule)))
}

#[utoipa::path(delete, path = "/v1/admin/faults", tag = "admin", responses((status = 204)))]
pub async fn clear_faults(State(s): State<AppState>, _: Admin) -> StatusCode {
    s.cloud.faults().clear();
    tracing::info!("fault rules cleared");
    StatusCode::NO_CONTENT
}

#[utoipa::path(delete, path = "/v1/admin/faults/{id}", tag = "admin", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ApiErrorBody)))]
pub async fn delete_fault(
    State(s): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if s.cloud.faults().remove(&id) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("fault rule", id))
    }
}

#[utoipa::path(put, path = "/v1/admin/zones/{zone}", tag = "admin", request_body = SetZoneStateRequest, params(("zone" = String, Path)),
    responses((status = 200, body = Zone), (status = 404, body = ApiErrorBody)))]
pub async fn set_zone_state(
    State(s): State<AppState>,
    _: Admin,
    Path(zone): Path<String>,
    ApiJson(req): ApiJson<SetZoneStateRequest>,
) -> Result<Json<Zone>, ApiError> {
    Ok(Json(s.cloud.set_zone_state(&zone, req.state).await?))
}
