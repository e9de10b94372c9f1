//! `/v1/instances`: create, get, list, update tags, start, stop, terminate, delete.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use cloud_api::{
    ApiErrorBody, BatchCreateInstancesRequest, BatchCreateInstancesResponse, CreateInstanceRequest,
    Instance, InstanceState, Page, UpdateInstanceRequest,
};

use crate::domain::instance::Action;
use crate::error::ApiError;
use crate::http::AppState;
use crate::http::extract::{ApiJson, ApiQuery, IfMatch};
use crate::ops::{Ctx, ListParams, ids_filter, tag_filter};
use crate::store::InstanceFilter;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/instances", post(create).get(list))
        .route("/v1/instances:batchCreate", post(batch_create))
        .route("/v1/instances/{id}", get(read).patch(update).delete(delete))
        .route("/v1/instances/{id}/start", post(start))
        .route("/v1/instances/{id}/stop", post(stop))
        .route("/v1/instances/{id}/terminate", post(terminate))
}

#[utoipa::path(post, path = "/v1/instances", tag = "instances", request_body = CreateInstanceRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes the create safe to retry")),
    responses((status = 201, body = Instance), (status = 409, body = ApiErrorBody, description = "the name or address in use, or the zone's subnet full (QUOTA_EXCEEDED)"), (status = 422, body = ApiErrorBody)))]
pub async fn create(
    State(s): State<AppState>,
    ctx: Ctx,
    ApiJson(req): ApiJson<CreateInstanceRequest>,
) -> Result<(StatusCode, Json<Instance>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(s.cloud.create_instance(&ctx, req).await?),
    ))
}

/// All or none: the first create that cannot be made fails the batch, naming it
/// (`instances[i]`).
#[utoipa::path(post, path = "/v1/instances:batchCreate", tag = "instances", request_body = BatchCreateInstancesRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes the batch safe to retry")),
    responses((status = 201, body = BatchCreateInstancesResponse), (status = 409, body = ApiErrorBody, description = "a name or address in use, or a zone's subnet full (QUOTA_EXCEEDED); nothing was made"), (status = 422, body = ApiErrorBody, description = "a bad member, named in the error's field (instances[i].name)")))]
pub async fn batch_create(
    State(s): State<AppState>,
    ctx: Ctx,
    ApiJson(req): ApiJson<BatchCreateInstancesRequest>,
) -> Result<(StatusCode, Json<BatchCreateInstancesResponse>), ApiError> {
    let instances = s.cloud.batch_create_instances(&ctx, req.instances).await?;
    Ok((
        StatusCode::CREATED,
        Json(BatchCreateInstancesResponse { instances }),
    ))
}

#[utoipa::path(get, path = "/v1/instances", tag = "instances", params(cloud_api::ListInstancesQuery),
    responses((status = 200, body = Page<Instance>), (status = 400, body = ApiErrorBody)))]
pub async fn list(
    State(s): State<AppState>,
    ctx: Ctx,
    ApiQuery(q): ApiQuery<cloud_api::ListInstancesQuery>,
) -> Result<Json<Page<Instance>>, ApiError> {
    let state = q
        .state
        .as_deref()
        .map(str::parse::<InstanceState>)
        .transpose()
        .map_err(ApiError::BadRequest)?;
    let filter = InstanceFilter {
        zone: q.zone,
        state,
        name: q.name,
        tag: tag_filter(q.tag.as_deref())?,
        ids: ids_filter(q.ids.as_deref())?,
    };
    let params = ListParams {
        page_size: q.page_size,
        page_token: q.page_token,
    };
    Ok(Json(s.cloud.list_instances(&ctx, filter, &params).await?))
}

#[utoipa::path(get, path = "/v1/instances/{id}", tag = "instances", params(("id" = String, Path)),
    responses((status = 200, body = Instance), (status = 404, body = ApiErrorBody)))]
pub async fn read(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Json<Instance>, ApiError> {
    Ok(Json(s.cloud.get_instance(&ctx, &id).await?))
}

#[utoipa::path(patch, path = "/v1/instances/{id}", tag = "instances", request_body = UpdateInstanceRequest,
    params(("id" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, body = Instance), (status = 404, body = ApiErrorBody), (status = 412, body = ApiErrorBody)))]
pub async fn update(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    if_match: IfMatch,
    ApiJson(req): ApiJson<UpdateInstanceRequest>,
) -> Result<Json<Instance>, ApiError> {
    Ok(Json(
        s.cloud
            .update_instance(&ctx, &id, if_match.as_deref(), req)
            .await?,
    ))
}

#[utoipa::path(delete, path = "/v1/instances/{id}", tag = "instances",
    params(("id" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 204), (status = 404, body = ApiErrorBody), (status = 412, body = ApiErrorBody)))]
pub async fn delete(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    if_match: IfMatch,
) -> Result<StatusCode, ApiError> {
    s.cloud
        .delete_instance(&ctx, &id, if_match.as_deref())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/instances/{id}/start", tag = "instances", params(("id" = String, Path)),
    responses((status = 200, body = Instance), (status = 409, body = ApiErrorBody)))]
pub async fn start(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    if_match: IfMatch,
) -> Result<Json<Instance>, ApiError> {
    Ok(Json(
        s.cloud
            .instance_action(&ctx, &id, if_match.as_deref(), Action::Start)
            .await?,
    ))
}

#[utoipa::path(post, path = "/v1/instances/{id}/stop", tag = "instances", params(("id" = String, Path)),
    responses((status = 200, body = Instance), (status = 409, body = ApiErrorBody)))]
pub async fn stop(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    if_match: IfMatch,
) -> Result<Json<Instance>, ApiError> {
    Ok(Json(
        s.cloud
            .instance_action(&ctx, &id, if_match.as_deref(), Action::Stop)
            .await?,
    ))
}

#[utoipa::path(post, path = "/v1/instances/{id}/terminate", tag = "instances", params(("id" = String, Path)),
    responses((status = 200, body = Instance), (status = 404, body = ApiErrorBody)))]
pub async fn terminate(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    if_match: IfMatch,
) -> Result<Json<Instance>, ApiError> {
    Ok(Json(
        s.cloud
            .instance_action(&ctx, &id, if_match.as_deref(), Action::Terminate)
            .await?,
    ))
}
