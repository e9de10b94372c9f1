//! The OpenAPI document, generated from the handlers' annotations and the `cloud-api` types.

use axum::Json;
use utoipa::OpenApi;

use super::{admin, events, instances, load_balancers, regions, routes};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "simcloud cloud-sim API",
        description = "A simulated cloud: regions, zones, instances, load balancers and route tables."
    ),
    paths(
        regions::regions,
        regions::zones,
        regions::zone,
        regions::instance_types,
        instances::create,
        instances::list,
        instances::read,
        instances::update,
        instances::delete,
        instances::start,
        instances::stop,
        instances::terminate,
        load_balancers::create,
        load_balancers::list,
        load_balancers::read,
        load_balancers::update,
        load_balancers::delete,
        load_balancers::traffic,
        routes::list_tables,
        routes::read_table,
        routes::create,
        routes::list,
        routes::read,
        routes::delete,
        events::list,
        admin::list_faults,
        admin::create_fault,
        admin::clear_faults,
        admin::delete_fault,
        admin::set_zone_state,
    ),
    components(schemas(cloud_api::ErrorCode))
)]
pub struct ApiDoc;

pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
