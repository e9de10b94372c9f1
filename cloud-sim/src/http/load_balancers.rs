//! `/v1/load-balancers`: create, get, list, update, delete.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use cloud_api::{
    ApiErrorBody, CreateLoadBalancerRequest, LoadBalancer, Page, TrafficReport,
    UpdateLoadBalancerRequest,
};

use crate::error::ApiError;
use crate::http::AppState;
use crate::http::extract::{ApiJson, ApiQuery, IfMatch};
use crate::ops::{Ctx, ListParams, tag_filter};
use crate::store::NameTagFilter;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/load-balancers", post(create).get(list))
        .route(
            "/v1/load-balancers/{id}",
            get(read).patch(update).delete(delete),
        )
        .route("/v1/load-balancers/{id}/traffic", get(traffic))
}

#[utoipa::path(post, path = "/v1/load-balancers", tag = "load-balancers", request_body = CreateLoadBalancerRequest,
    params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = LoadBalancer), (status = 409, body = ApiErrorBody), (status = 422, body = ApiErrorBody)))]
pub async fn create(
    State(s): State<AppState>,
    ctx: Ctx,
    ApiJson(req): ApiJson<CreateLoadBalancerRequest>,
) -> Result<(StatusCode, Json<LoadBalancer>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(s.cloud.create_load_balancer(&ctx, req).await?),
    ))
}

#[utoipa::path(get, path = "/v1/load-balancers", tag = "load-balancers", params(cloud_api::ListLoadBalancersQuery),
    responses((status = 200, body = Page<LoadBalancer>), (status = 400, body = ApiErrorBody)))]
pub async fn list(
    State(s): State<AppState>,
    ctx: Ctx,
    ApiQuery(q): ApiQuery<cloud_api::ListLoadBalancersQuery>,
) -> Result<Json<Page<LoadBalancer>>, ApiError> {
    let filter = NameTagFilter {
        name: q.name,
        tag: tag_filter(q.tag.as_deref())?,
    };
    let params = ListParams {
        page_size: q.page_size,
        page_token: q.page_token,
    };
    Ok(Json(
        s.cloud.list_load_balancers(&ctx, filter, &params).await?,
    ))
}

#[utoipa::path(get, path = "/v1/load-balancers/{id}", tag = "load-balancers", params(("id" = String, Path)),
    responses((status = 200, body = LoadBalancer), (status = 404, body = ApiErrorBody)))]
pub async fn read(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Json<LoadBalancer>, ApiError> {
    Ok(Json(s.cloud.get_load_balancer(&ctx, &id).await?))
}

#[utoipa::path(patch, path = "/v1/load-balancers/{id}", tag = "load-balancers", request_body = UpdateLoadBalancerRequest,
    params(("id" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, body = LoadBalancer), (status = 404, body = ApiErrorBody), (status = 412, body = ApiErrorBody), (status = 422, body = ApiErrorBody)))]
pub async fn update(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    if_match: IfMatch,
    ApiJson(req): ApiJson<UpdateLoadBalancerRequest>,
) -> Result<Json<LoadBalancer>, ApiError> {
    Ok(Json(
        s.cloud
            .update_load_balancer(&ctx, &id, if_match.as_deref(), req)
            .await?,
    ))
}

#[utoipa::path(delete, path = "/v1/load-balancers/{id}", tag = "load-balancers",
    params(("id" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 204), (status = 404, body = ApiErrorBody), (status = 412, body = ApiErrorBody)))]
pub async fn delete(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    if_match: IfMatch,
) -> Result<StatusCode, ApiError> {
    s.cloud
        .delete_load_balancer(&ctx, &id, if_match.as_deref())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/load-balancers/{id}/traffic", tag = "load-balancers", params(("id" = String, Path)),
    responses((status = 200, body = TrafficReport, description = "connections and bytes per port, frontend zone and backend; backend health; in-zone fraction"), (status = 404, body = ApiErrorBody)))]
pub async fn traffic(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Json<TrafficReport>, ApiError> {
    let lb = s.cloud.get_load_balancer(&ctx, &id).await?;
    if s.cloud.config().data_plane {
        Ok(Json(s.dataplane.report(&lb)))
    } else {
        // The data plane runs apart (`cloud-sim data-plane`), or nowhere: what it publishes.
        Ok(Json(s.cloud.published_traffic(&lb).await?))
    }
}
