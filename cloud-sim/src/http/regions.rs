//! `/v1/regions`, `/v1/zones`, `/v1/instance-types`: the read-only catalog.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use cloud_api::{ApiErrorBody, InstanceType, Page, Region, Zone};

use crate::error::ApiError;
use crate::http::AppState;
use crate::ops::Ctx;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/regions", get(regions))
        .route("/v1/zones", get(zones))
        .route("/v1/zones/{zone}", get(zone))
        .route("/v1/instance-types", get(instance_types))
}

#[utoipa::path(get, path = "/v1/regions", tag = "catalog", responses((status = 200, body = Page<Region>)))]
pub async fn regions(State(s): State<AppState>, _ctx: Ctx) -> Result<Json<Page<Region>>, ApiError> {
    Ok(Json(Page {
        items: vec![s.cloud.region().await?],
        next_page_token: None,
    }))
}

#[utoipa::path(get, path = "/v1/zones", tag = "catalog", responses((status = 200, body = Page<Zone>)))]
pub async fn zones(State(s): State<AppState>, _ctx: Ctx) -> Result<Json<Page<Zone>>, ApiError> {
    Ok(Json(Page {
        items: s.cloud.region().await?.zones,
        next_page_token: None,
    }))
}

#[utoipa::path(get, path = "/v1/zones/{zone}", tag = "catalog", params(("zone" = String, Path)),
    responses((status = 200, body = Zone), (status = 404, body = ApiErrorBody)))]
pub async fn zone(
    State(s): State<AppState>,
    _ctx: Ctx,
    Path(zone): Path<String>,
) -> Result<Json<Zone>, ApiError> {
    Ok(Json(s.cloud.zone(&zone).await?))
}

#[utoipa::path(get, path = "/v1/instance-types", tag = "catalog", responses((status = 200, body = Page<InstanceType>)))]
pub async fn instance_types(
    State(s): State<AppState>,
    _ctx: Ctx,
) -> Result<Json<Page<InstanceType>>, ApiError> {
    Ok(Json(Page {
        items: s.cloud.instance_types().await?,
        next_page_token: None,
    }))
}
