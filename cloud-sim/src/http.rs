//! The HTTP layer: router, middleware and thin handlers, one module per resource.
//!
//! Middleware, outermost first: request ID + metrics + access log ([`middleware::observe`]),
//! authentication ([`middleware::authenticate`]), fault injection ([`middleware::inject_faults`]),
//! idempotency keys ([`middleware::idempotency`]). Handlers parse the request, call one
//! [`crate::ops::Cloud`] method and serialize its result. The console's static files
//! ([`console`]) sit outside authentication and faults, beside `/healthz` and `/metrics`.

use std::sync::Arc;

use axum::Router;
use axum::routing::get;

use crate::metrics::Metrics;
use crate::ops::Cloud;

pub mod admin;
pub mod backend_groups;
pub mod console;
pub mod error;
pub mod events;
pub mod extract;
pub mod instances;
pub mod load_balancers;
pub mod middleware;
pub mod openapi;
pub mod regions;
pub mod routes;

/// Shared state of every handler.
#[derive(Debug, Clone)]
pub struct AppState {
    pub cloud: Cloud,
    pub metrics: Arc<Metrics>,
    pub dataplane: Arc<crate::dataplane::DataPlane>,
}

/// What a data plane running apart serves: `/healthz` and `/metrics`.
pub fn data_plane_app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(crate::metrics::serve))
        .fallback(error::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::observe,
        ))
        .with_state(state)
}

/// The whole API as a router.
pub fn app(state: AppState) -> Router {
    let api = Router::new()
        .merge(regions::router())
        .merge(instances::router())
        .merge(load_balancers::router())
        .merge(backend_groups::router())
        .merge(routes::router())
        .merge(events::router())
        .merge(admin::router())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::idempotency,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::inject_faults,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::authenticate,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(crate::metrics::serve))
        .route("/openapi.json", get(openapi::serve))
        .merge(console::router())
        .merge(api)
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::observe,
        ))
        .with_state(state)
}
