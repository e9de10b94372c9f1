//! Prometheus metrics of the API: requests by route, method and status, and a latency histogram.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::http::AppState;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LatencyLabels {
    route: String,
    method: String,
}

fn latency_histogram() -> Histogram {
    // 0.25 ms to ~8 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// The registry and the metric families cloud-sim records.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<LatencyLabels, Histogram, fn() -> Histogram>,
    pub lb_connections: Family<LbLabels, Counter>,
    pub lb_bytes_in: Family<LbLabels, Counter>,
    pub lb_bytes_out: Family<LbLabels, Counter>,
    pub lb_errors: Family<LbLabels, Counter>,
    pub lb_refused: Family<LbRefusedLabels, Counter>,
    /// Envoy's zone-aware routing counters for `balanced` load balancers, by name without the
    /// `cloudsim_` prefix: `lb_zone_routing_all_directly`, `lb_zone_routing_sampled`,
    /// `lb_zone_routing_cross_zone`, `lb_zone_cluster_too_small`, `lb_healthy_panic`.
    pub lb_zone_routing: Vec<(&'static str, Family<LbIdLabels, Counter>)>,
    /// Event long polls parked waiting for an event (set from the store at each scrape).
    pub event_polls_waiting: Gauge,
    /// Flushes of the database's write-ahead log (brought up to the store's count at each
    /// scrape); against the write requests it shows how many writes share a flush.
    pub db_log_flushes: Counter,
    /// Seconds the database's one write connection has been held (brought up to the store's
    /// figure at each scrape): its rate is the writer's utilisation, the ceiling of writes.
    pub db_writer_busy: Counter<f64, AtomicU64>,
}

/// Labels of the load-balancer traffic counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LbLabels {
    pub lb: String,
    pub port: u16,
    pub frontend_zone: String,
    pub backend_zone: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LbIdLabels {
    pub lb: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LbRefusedLabels {
    pub lb: String,
    pub frontend_zone: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<LatencyLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "cloudsim_http_requests",
            "HTTP requests by matched route, method and status",
            requests.clone(),
        );
        registry.register(
            "cloudsim_http_request_duration_seconds",
            "HTTP request latency by matched route and method",
            latency.clone(),
        );
        let event_polls_waiting = Gauge::default();
        registry.register(
            "cloudsim_event_polls_waiting",
            "Event long polls waiting for an event",
            event_polls_waiting.clone(),
        );
        let db_log_flushes = Counter::default();
        registry.register(
            "cloudsim_db_log_flushes",
            "Flushes of the database's write-ahead log to disk (group commit: concurrent writes share one)",
            db_log_flushes.clone(),
        );
        let db_writer_busy = Counter::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "cloudsim_db_writer_busy",
            "Time the database's write connection has been held (every write waits for it)",
            prometheus_client::registry::Unit::Seconds,
            db_writer_busy.clone(),
        );
        let lb_connections = Family::<LbLabels, Counter>::default();
        let lb_bytes_in = Family::<LbLabels, Counter>::default();
        let lb_bytes_out = Family::<LbLabels, Counter>::default();
        let lb_errors = Family::<LbLabels, Counter>::default();
        let lb_refused = Family::<LbRefusedLabels, Counter>::default();
        registry.register(
            "cloudsim_lb_connections",
            "Connections proxied, by load balancer, port, frontend zone and backend zone",
            lb_connections.clone(),
        );
        registry.register(
            "cloudsim_lb_bytes_in",
            "Bytes from clients to backends",
            lb_bytes_in.clone(),
        );
        registry.register(
            "cloudsim_lb_bytes_out",
            "Bytes from backends to clients",
            lb_bytes_out.clone(),
        );
        registry.register(
            "cloudsim_lb_errors",
            "Connections that failed to reach or talk to their backend",
            lb_errors.clone(),
        );
        registry.register(
            "cloudsim_lb_refused",
            "Connections refused because no backend was eligible",
            lb_refused.clone(),
        );
        let lb_zone_routing: Vec<(&'static str, Family<LbIdLabels, Counter>)> = [
            ("lb_zone_routing_all_directly", "Connections of balanced load balancers kept in the client's zone without sampling"),
            ("lb_zone_routing_sampled", "Connections of balanced load balancers sampled into the client's zone"),
            ("lb_zone_routing_cross_zone", "Connections of balanced load balancers sampled into another zone"),
            ("lb_zone_cluster_too_small", "Connections of balanced load balancers with too few backends for zone-aware routing"),
            ("lb_healthy_panic", "Connections of balanced load balancers below the panic threshold (health ignored)"),
        ]
        .into_iter()
        .map(|(name, help)| {
            let f = Family::<LbIdLabels, Counter>::default();
            registry.register(format!("cloudsim_{name}"), help, f.clone());
            (name, f)
        })
        .collect();
        Self {
            registry,
            event_polls_waiting,
            db_log_flushes,
            db_writer_busy,
            lb_zone_routing,
            requests,
            latency,
            lb_connections,
            lb_bytes_in,
            lb_bytes_out,
            lb_errors,
            lb_refused,
        }
    }

    /// Counts one connection under Envoy's counter `name` for load balancer `lb`.
    pub fn zone_routing(&self, name: &str, lb: &str) {
        if let Some((_, f)) = self.lb_zone_routing.iter().find(|(n, _)| *n == name) {
            f.get_or_create(&LbIdLabels { lb: lb.to_owned() }).inc();
        }
    }

    pub fn observe_request(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                method: method.to_owned(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&LatencyLabels {
                route: route.to_owned(),
                method: method.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

pub async fn serve(State(state): State<AppState>) -> impl IntoResponse {
    state
        .metrics
        .event_polls_waiting
        .set(state.cloud.event_polls_waiting());
    let flushes = &state.metrics.db_log_flushes;
    flushes.inc_by(state.cloud.log_flushes().saturating_sub(flushes.get()));
    let busy = &state.metrics.db_writer_busy;
    busy.inc_by((state.cloud.writer_busy().as_secs_f64() - busy.get()).max(0.0));
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}
