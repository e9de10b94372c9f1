//! `/v1/backend-groups`: create, get, list, update (members, tags), delete.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use cloud_api::{
    ApiErrorBody, BackendGroup, CreateBackendGroupRequest, Page, UpdateBackendGroupRequest,
};

use crate::error::ApiError;
use crate::http::AppState;
use crate::http::extract::{ApiJson, ApiQuery, IfMatch};
use crate::ops::{Ctx, ListParams, tag_filter};
use crate::store::NameTagFilter;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/backend-groups", post(create).get(list))
        .route(
            "/v1/backend-groups/{id}",
            get(read).patch(update).delete(delete),
        )
}

#[utoipa::path(post, path = "/v1/backend-groups", tag = "backend-groups", request_body = CreateBackendGroupRequest,
    params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = BackendGroup), (status = 409, body = ApiErrorBody), (status = 422, body = ApiErrorBody)))]
pub async fn create(
    State(s): State<AppState>,
    ctx: Ctx,
    ApiJson(req): ApiJson<CreateBackendGroupRequest>,
) -> Result<(StatusCode, Json<BackendGroup>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(s.cloud.create_backend_group(&ctx, req).await?),
    ))
}

#[utoipa::path(get, path = "/v1/backend-groups", tag = "backend-groups", params(cloud_api::ListBackendGroupsQuery),
    responses((status = 200, body = Page<BackendGroup>), (status = 400, body = ApiErrorBody)))]
pub async fn list(
    State(s): State<AppState>,
    ctx: Ctx,
    ApiQuery(q): ApiQuery<cloud_api::ListBackendGroupsQuery>,
) -> Result<Json<Page<BackendGroup>>, ApiError> {
    let filter = NameTagFilter {
        name: q.name,
        tag: tag_filter(q.tag.as_deref())?,
    };
    let params = ListParams {
        page_size: q.page_size,
        page_token: q.page_token,
    };
    Ok(Json(
        s.cloud.list_backend_groups(&ctx, filter, &params).await?,
    ))
}

#[utoipa::path(get, path = "/v1/backend-groups/{id}", tag = "backend-groups", params(("id" = String, Path)),
    responses((status = 200, body = BackendGroup), (status = 404, body = ApiErrorBody)))]
pub async fn read(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Json<BackendGroup>, ApiError> {
    Ok(Json(s.cloud.get_backend_group(&ctx, &id).await?))
}

#[utoipa::path(patch, path = "/v1/backend-groups/{id}", tag = "backend-groups", request_body = UpdateBackendGroupRequest,
    params(("id" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, body = BackendGroup), (status = 404, body = ApiErrorBody), (status = 412, body = ApiErrorBody), (status = 422, body = ApiErrorBody)))]
pub async fn update(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    if_match: IfMatch,
    ApiJson(req): ApiJson<UpdateBackendGroupRequest>,
) -> Result<Json<BackendGroup>, ApiError> {
    Ok(Json(
        s.cloud
            .update_backend_group(&ctx, &id, if_match.as_deref(), req)
            .await?,
    ))
}

#[utoipa::path(delete, path = "/v1/backend-groups/{id}", tag = "backend-groups",
    params(("id" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 204), (status = 404, body = ApiErrorBody), (status = 409, body = ApiErrorBody, description = "CONFLICT: a load balancer uses the group"), (status = 412, body = ApiErrorBody)))]
pub async fn delete(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    if_match: IfMatch,
) -> Result<StatusCode, ApiError> {
    s.cloud
        .delete_backend_group(&ctx, &id, if_match.as_deref())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
