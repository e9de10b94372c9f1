//! Prometheus metrics with upstream's names: the node controller's delays, running controllers,
//! leader status, and workqueue-style counters per controller queue.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub manager: String,
    pub name: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    pub name: String,
}

fn delay_histogram() -> Histogram {
    // Upstream: exponential buckets 1, x4, 6 buckets.
    Histogram::new(exponential_buckets(1.0, 4.0, 6))
}

fn work_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_01, 10.0, 10))
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub taint_removal_delay: Histogram,
    pub initial_node_sync_delay: Histogram,
    pub running_controllers: Family<ControllerLabels, Gauge>,
    pub leader: Family<QueueLabels, Gauge>,
    pub queue_adds: Family<QueueLabels, Counter>,
    pub queue_retries: Family<QueueLabels, Counter>,
    pub queue_in_flight: Family<QueueLabels, Gauge>,
    pub queue_work_duration: Family<QueueLabels, Histogram, fn() -> Histogram>,
    pub route_syncs: Counter,
    pub lb_syncs: Counter,
    pub nodesync_errors: Counter,
    pub update_host_latency: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let taint_removal_delay = delay_histogram();
        let initial_node_sync_delay = delay_histogram();
        registry.register(
            "node_controller_cloud_provider_taint_removal_delay_seconds",
            "Seconds from node creation to removal of the uninitialized taint",
            taint_removal_delay.clone(),
        );
        registry.register(
            "node_controller_initial_node_sync_delay_seconds",
            "Seconds from node creation to its first successful sync",
            initial_node_sync_delay.clone(),
        );
        let running_controllers = Family::<ControllerLabels, Gauge>::default();
        registry.register(
            "running_managed_controllers",
            "Controllers this manager runs (1) by name",
            running_controllers.clone(),
        );
        let leader = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "leader_election_master_status",
            "1 while this replica holds the leader lease",
            leader.clone(),
        );
        let queue_adds = Family::<QueueLabels, Counter>::default();
        registry.register(
            "workqueue_adds",
            "Items a controller started to reconcile",
            queue_adds.clone(),
        );
        let queue_retries = Family::<QueueLabels, Counter>::default();
        registry.register(
            "workqueue_retries",
            "Items requeued after an error",
            queue_retries.clone(),
        );
        let queue_in_flight = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "workqueue_in_flight",
            "Items being reconciled right now",
            queue_in_flight.clone(),
        );
        let queue_work_duration =
            Family::<QueueLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                work_histogram as fn() -> Histogram,
            );
        registry.register(
            "workqueue_work_duration_seconds",
            "Seconds one reconcile took",
            queue_work_duration.clone(),
        );
        let route_syncs = Counter::default();
        registry.register(
            "route_controller_route_sync",
            "Route controller reconciliation passes",
            route_syncs.clone(),
        );
        let lb_syncs = Counter::default();
        registry.register(
            "service_controller_loadbalancer_sync",
            "UpdateLoadBalancer calls from node changes",
            lb_syncs.clone(),
        );
        let nodesync_errors = Counter::default();
        registry.register(
            "service_controller_nodesync_error",
            "Failed node-driven load-balancer updates",
            nodesync_errors.clone(),
        );
        let update_host_latency = Histogram::new(exponential_buckets(1.0, 2.0, 15));
        registry.register(
            "service_controller_update_loadbalancer_host_latency_seconds",
            "Seconds one node-driven load-balancer update took",
            update_host_latency.clone(),
        );
        Self {
            lb_syncs,
            nodesync_errors,
            update_host_latency,
            route_syncs,
            registry,
            taint_removal_delay,
            initial_node_sync_delay,
            running_controllers,
            leader,
            queue_adds,
            queue_retries,
            queue_in_flight,
            queue_work_duration,
        }
    }

    pub fn set_running(&self, name: &str, running: bool) {
        self.running_controllers
            .get_or_create(&ControllerLabels {
                manager: crate::names::USER_AGENT.into(),
                name: name.into(),
            })
            .set(i64::from(running));
    }

    /// Records a reconcile of queue `name`: call `start` before, then `finish` with the outcome.
    pub fn start(&self, name: &str) {
        let l = QueueLabels { name: name.into() };
        self.queue_adds.get_or_create(&l).inc();
        self.queue_in_flight.get_or_create(&l).inc();
    }

    pub fn finish(&self, name: &str, took: Duration, failed: bool) {
        let l = QueueLabels { name: name.into() };
        self.queue_in_flight.get_or_create(&l).dec();
        self.queue_work_duration
            .get_or_create(&l)
            .observe(took.as_secs_f64());
        if failed {
            self.queue_retries.get_or_create(&l).inc();
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
