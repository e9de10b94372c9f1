//! `/v1/regions`, `/v1/zones`, `/v1/instance-types`: the read-only catalog; `/v1/whoami` and
//! `/v1/usage`: the caller and what their project has in each zone.

use axum::extract::{Extension, Path, State};
use axum::routing::get;
use axum::{Json, Router};
use cloud_api::{ApiErrorBody, Caller, InstanceType, Page, Region, Usage, Zone};

use crate::config::Principal;

use crate::error::ApiError;
use crate::http::AppState;
use crate::ops::Ctx;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/regions", get(regions))
        .route("/v1/zones", get(zones))
        .route("/v1/zones/{zone}", get(zone))
        .route("/v1/instance-types", get(instance_types))
        .route("/v1/whoami", get(whoami))
        .route("/v1/usage", get(usage))
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

#[utoipa::path(get, path = "/v1/whoami", tag = "account", responses((status = 200, body = Caller)))]
pub async fn whoami(Extension(p): Extension<Principal>) -> Json<Caller> {
    Json(Caller {
        project: p.project,
        admin: p.admin,
    })
}

#[utoipa::path(get, path = "/v1/usage", tag = "account", responses((status = 200, body = Usage)))]
pub async fn usage(State(s): State<AppState>, ctx: Ctx) -> Result<Json<Usage>, ApiError> {
    Ok(Json(s.cloud.usage(&ctx).await?))
}
