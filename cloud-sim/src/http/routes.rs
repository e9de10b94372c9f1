//! `/v1/route-tables`: the project's route table and its routes.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use cloud_api::{
    ApiErrorBody, CreateRouteRequest, Page, Route, RouteTable, route::DEFAULT_ROUTE_TABLE,
};

use crate::error::ApiError;
use crate::http::AppState;
use crate::http::extract::{ApiJson, ApiQuery, IfMatch};
use crate::ops::{Ctx, ListParams, tag_filter};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/route-tables", get(list_tables))
        .route("/v1/route-tables/{table}", get(read_table))
        .route("/v1/route-tables/{table}/routes", get(list).post(create))
        .route(
            "/v1/route-tables/{table}/routes/{id}",
            get(read).delete(delete),
        )
}

#[utoipa::path(get, path = "/v1/route-tables", tag = "routes", responses((status = 200, body = Page<RouteTable>)))]
pub async fn list_tables(
    State(s): State<AppState>,
    ctx: Ctx,
) -> Result<Json<Page<RouteTable>>, ApiError> {
    let t = s.cloud.route_table(&ctx, DEFAULT_ROUTE_TABLE).await?;
    Ok(Json(Page {
        items: vec![t],
        next_page_token: None,
    }))
}

#[utoipa::path(get, path = "/v1/route-tables/{table}", tag = "routes", params(("table" = String, Path)),
    responses((status = 200, body = RouteTable), (status = 404, body = ApiErrorBody)))]
pub async fn read_table(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(table): Path<String>,
) -> Result<Json<RouteTable>, ApiError> {
    Ok(Json(s.cloud.route_table(&ctx, &table).await?))
}

#[utoipa::path(post, path = "/v1/route-tables/{table}/routes", tag = "routes", request_body = CreateRouteRequest,
    params(("table" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = Route), (status = 409, body = ApiErrorBody, description = "name in use, overlapping destination, or QUOTA_EXCEEDED"), (status = 422, body = ApiErrorBody)))]
pub async fn create(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(table): Path<String>,
    ApiJson(req): ApiJson<CreateRouteRequest>,
) -> Result<(StatusCode, Json<Route>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(s.cloud.create_route(&ctx, &table, req).await?),
    ))
}

#[utoipa::path(get, path = "/v1/route-tables/{table}/routes", tag = "routes", params(("table" = String, Path), cloud_api::ListRoutesQuery),
    responses((status = 200, body = Page<Route>), (status = 404, body = ApiErrorBody)))]
pub async fn list(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(table): Path<String>,
    ApiQuery(q): ApiQuery<cloud_api::ListRoutesQuery>,
) -> Result<Json<Page<Route>>, ApiError> {
    let params = ListParams {
        page_size: q.page_size,
        page_token: q.page_token,
    };
    Ok(Json(
        s.cloud
            .list_routes(&ctx, &table, tag_filter(q.tag.as_deref())?, &params)
            .await?,
    ))
}

#[utoipa::path(get, path = "/v1/route-tables/{table}/routes/{id}", tag = "routes", params(("table" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = Route), (status = 404, body = ApiErrorBody)))]
pub async fn read(
    State(s): State<AppState>,
    ctx: Ctx,
    Path((table, id)): Path<(String, String)>,
) -> Result<Json<Route>, ApiError> {
    Ok(Json(s.cloud.get_route(&ctx, &table, &id).await?))
}

#[utoipa::path(delete, path = "/v1/route-tables/{table}/routes/{id}", tag = "routes",
    params(("table" = String, Path), ("id" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 204), (status = 404, body = ApiErrorBody), (status = 412, body = ApiErrorBody)))]
pub async fn delete(
    State(s): State<AppState>,
    ctx: Ctx,
    Path((table, id)): Path<(String, String)>,
    if_match: IfMatch,
) -> Result<StatusCode, ApiError> {
    s.cloud
        .delete_route(&ctx, &table, &id, if_match.as_deref())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
