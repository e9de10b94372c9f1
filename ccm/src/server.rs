//! What the serving port answers: `/healthz` (the leader-election check), `/readyz`, `/livez`
//! and `/metrics`. [`crate::serving`] puts it behind TLS and [`crate::delegation`] decides who
//! may ask.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;

/// How overdue a lease renewal may be before `/healthz` fails (upstream's 20 s).
pub const LEADER_HEALTH_TIMEOUT: Duration = Duration::from_secs(20);

/// Health state shared with the leader elector.
#[derive(Debug, Default)]
pub struct Health {
    leading: AtomicBool,
    last_renew: Mutex<Option<Instant>>,
    started: AtomicBool,
    /// Renew deadline; a leader whose last renewal is older than this plus the timeout is unhealthy.
    renew_deadline: Mutex<Duration>,
}

impl Health {
    pub fn new(renew_deadline: Duration) -> Self {
        let h = Self::default();
        *h.renew_deadline.lock().expect("health lock") = renew_deadline;
        h
    }

    pub fn set_leading(&self, leading: bool) {
        self.leading.store(leading, Ordering::SeqCst);
        if leading {
            self.renewed();
        }
    }

    pub fn renewed(&self) {
        *self.last_renew.lock().expect("health lock") = Some(Instant::now());
    }

    pub fn set_started(&self) {
        self.started.store(true, Ordering::SeqCst);
    }

    pub fn is_leading(&self) -> bool {
        self.leading.load(Ordering::SeqCst)
    }

    /// `Err` with the failing check's name when unhealthy.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.is_leading() {
            let overdue = self
                .last_renew
                .lock()
                .expect("health lock")
                .is_none_or(|t| {
                    t.elapsed()
                        > *self.renew_deadline.lock().expect("health lock") + LEADER_HEALTH_TIMEOUT
                });
            if overdue {
                return Err("leaderElection");
            }
        }
        Ok(())
    }
}

#[derive(Clone)]
struct AppState {
    health: Arc<Health>,
    metrics: Arc<Metrics>,
}

pub fn router(health: Arc<Health>, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(AppState { health, metrics })
}

async fn healthz(State(s): State<AppState>) -> impl IntoResponse {
    match s.health.check() {
        Ok(()) => (StatusCode::OK, "ok".to_owned()),
        Err(check) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "[-]{check} failed: the leader lease was not renewed in time\nhealthz check failed"
            ),
        ),
    }
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    if s.health.started.load(Ordering::SeqCst) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}

async fn metrics_text(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}

/// The router behind delegated authentication and authorization, served over TLS in the
/// background; returns the bound address.
pub async fn spawn(
    opts: &crate::serving::ServingOptions,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    delegation: Arc<crate::delegation::Delegation>,
) -> Result<SocketAddr, crate::serving::ServingError> {
    let app = router(health, metrics).layer(axum::middleware::from_fn_with_state(
        delegation,
        crate::delegation::filter,
    ));
    crate::serving::spawn(opts, app).await
}
