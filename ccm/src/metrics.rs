//! Prometheus metrics with upstream's names: the node controller's delays, running controllers,
//! leader status, the service controller's node-sync figures, and client-go's workqueue metrics
//! per controller queue ([`WorkQueue`] keeps the state they are read from).

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// client-go's workqueue buckets: 10 ns to 10 s, x10.
fn queue_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1e-8, 10.0, 10))
}

/// Upstream's node-sync buckets: 1 s to 16384 s, x2.
fn nodesync_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 15))
}

type FloatGauge = Gauge<f64, AtomicU64>;

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub taint_removal_delay: Histogram,
    pub initial_node_sync_delay: Histogram,
    pub running_controllers: Family<ControllerLabels, Gauge>,
    pub leader: Family<QueueLabels, Gauge>,
    queue_adds: Family<QueueLabels, Counter>,
    queue_retries: Family<QueueLabels, Counter>,
    queue_depth: Family<QueueLabels, Gauge>,
    queue_duration: Family<QueueLabels, Histogram, fn() -> Histogram>,
    queue_work_duration: Family<QueueLabels, Histogram, fn() -> Histogram>,
    queue_unfinished: Family<QueueLabels, FloatGauge>,
    queue_longest: Family<QueueLabels, FloatGauge>,
    /// Queues whose gauges are refreshed at each scrape.
    queues: Mutex<Vec<Arc<WorkQueue>>>,
    pub route_syncs: Counter,
    pub lb_syncs: Counter,
    pub nodesync_errors: Counter,
    pub nodesync_latency: Histogram,
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
            "Total number of adds handled by workqueue",
            queue_adds.clone(),
        );
        let queue_retries = Family::<QueueLabels, Counter>::default();
        registry.register(
            "workqueue_retries",
            "Total number of retries handled by workqueue",
            queue_retries.clone(),
        );
        let queue_depth = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "workqueue_depth",
            "Current depth of workqueue",
            queue_depth.clone(),
        );
        let histogram_family = || {
            Family::<QueueLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                queue_histogram as fn() -> Histogram,
            )
        };
        let queue_duration = histogram_family();
        registry.register(
            "workqueue_queue_duration_seconds",
            "How long in seconds an item stays in workqueue before being requested",
            queue_duration.clone(),
        );
        let queue_work_duration = histogram_family();
        registry.register(
            "workqueue_work_duration_seconds",
            "How long in seconds processing an item from workqueue takes",
            queue_work_duration.clone(),
        );
        let queue_unfinished = Family::<QueueLabels, FloatGauge>::default();
        registry.register(
            "workqueue_unfinished_work_seconds",
            "How many seconds of work has been done that is in progress and hasn't been observed by work_duration",
            queue_unfinished.clone(),
        );
        let queue_longest = Family::<QueueLabels, FloatGauge>::default();
        registry.register(
            "workqueue_longest_running_processor_seconds",
            "How many seconds has the longest running processor for workqueue been running",
            queue_longest.clone(),
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
        let nodesync_latency = nodesync_histogram();
        registry.register(
            "service_controller_nodesync_latency_seconds",
            "Seconds from a change of the load-balancer backend set to every load balancer carrying it",
            nodesync_latency.clone(),
        );
        let update_host_latency = nodesync_histogram();
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
            queue_depth,
            queue_duration,
            queue_work_duration,
            queue_unfinished,
            queue_longest,
            queues: Mutex::new(Vec::new()),
            nodesync_latency,
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

    /// The workqueue metrics of queue `name` (one per name: a second call returns the first).
    pub fn queue(&self, name: &str) -> Arc<WorkQueue> {
        let mut queues = self.queues.lock().expect("queues lock");
        if let Some(q) = queues.iter().find(|q| q.labels.name == name) {
            return q.clone();
        }
        let labels = QueueLabels { name: name.into() };
        let q = Arc::new(WorkQueue {
            adds: self.queue_adds.get_or_create(&labels).clone(),
            retries: self.queue_retries.get_or_create(&labels).clone(),
            depth: self.queue_depth.get_or_create(&labels).clone(),
            queue_duration: self.queue_duration.get_or_create(&labels).clone(),
            work_duration: self.queue_work_duration.get_or_create(&labels).clone(),
            unfinished: self.queue_unfinished.get_or_create(&labels).clone(),
            longest: self.queue_longest.get_or_create(&labels).clone(),
            labels,
            state: Mutex::new(QueueState::default()),
        });
        queues.push(q.clone());
        q
    }

    pub fn encode(&self) -> String {
        for q in self.queues.lock().expect("queues lock").iter() {
            q.refresh();
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
/// The one work item of controllers that run in periodic passes (route, node lifecycle).
pub const PASS: &str = "pass";

/// What a controller's work queue holds, kept as client-go's workqueue counts it: an item added
/// while it already waits is one item; it waits from when it is ready (now, or after a retry's
/// back-off) until a worker takes it; it is unfinished while a worker runs it. Pure: every call
/// takes the time, so it is tested without a clock.
#[derive(Debug, Default)]
pub struct QueueState {
    /// Item -> when it is (or becomes) ready.
    waiting: HashMap<String, Instant>,
    /// Item -> when its worker started.
    running: HashMap<String, Instant>,
}

impl QueueState {
    /// Queues `key`, ready at `ready`; false when it already waited (the earlier time stays).
    pub fn add(&mut self, key: &str, ready: Instant) -> bool {
        match self.waiting.get_mut(key) {
            Some(at) => {
                *at = (*at).min(ready);
                false
            }
            None => {
                self.waiting.insert(key.to_owned(), ready);
                true
            }
        }
    }

    /// A worker takes `key`; returns how long it waited since it was ready (zero when it was
    /// not known to wait: a controller may reconcile what it was never told about).
    pub fn start(&mut self, key: &str, now: Instant) -> Duration {
        self.running.insert(key.to_owned(), now);
        self.waiting
            .remove(key)
            .map_or(Duration::ZERO, |at| now.saturating_duration_since(at))
    }

    /// The worker is done with `key`; returns how long it worked.
    pub fn done(&mut self, key: &str, now: Instant) -> Duration {
        self.running
            .remove(key)
            .map_or(Duration::ZERO, |at| now.saturating_duration_since(at))
    }

    /// `key` will not be worked on (its object is gone).
    pub fn forget(&mut self, key: &str) {
        self.waiting.remove(key);
    }

    /// (depth: items ready and waiting, seconds of unfinished work, longest-running seconds).
    pub fn gauges(&self, now: Instant) -> (usize, f64, f64) {
        let depth = self.waiting.values().filter(|at| **at <= now).count();
        let ages = self
            .running
            .values()
            .map(|at| now.saturating_duration_since(*at).as_secs_f64());
        let (sum, max) = ages.fold((0.0, 0.0_f64), |(s, m), a| (s + a, m.max(a)));
        (depth, sum, max)
    }
}

/// One controller queue's metrics and the [`QueueState`] they come from.
#[derive(Debug)]
pub struct WorkQueue {
    labels: QueueLabels,
    adds: Counter,
    retries: Counter,
    depth: Gauge,
    queue_duration: Histogram,
    work_duration: Histogram,
    unfinished: FloatGauge,
    longest: FloatGauge,
    state: Mutex<QueueState>,
}

impl WorkQueue {
    fn state(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().expect("queue state lock")
    }

    /// Items ever added (an add of an item already waiting does not count).
    pub fn adds(&self) -> u64 {
        self.adds.get()
    }

    /// Nothing waits (now or after a back-off) and nothing runs: every item added so far has been
    /// worked on. Tests use it to know a controller has handled an event before asserting that
    /// handling it did nothing.
    pub fn idle(&self) -> bool {
        let state = self.state();
        state.waiting.is_empty() && state.running.is_empty()
    }

    /// `key` needs work now.
    pub fn add(&self, key: &str) {
        if self.state().add(key, Instant::now()) {
            self.adds.inc();
        }
    }

    /// `key` failed and comes back after `delay` (client-go's `AddRateLimited`).
    pub fn retry(&self, key: &str, delay: Duration) {
        self.retries.inc();
        if self.state().add(key, Instant::now() + delay) {
            self.adds.inc();
        }
    }

    /// A worker takes `key`.
    pub fn start(&self, key: &str) {
        let waited = self.state().start(key, Instant::now());
        self.queue_duration.observe(waited.as_secs_f64());
    }

    /// The worker is done with `key`.
    pub fn done(&self, key: &str) {
        let took = self.state().done(key, Instant::now());
        self.work_duration.observe(took.as_secs_f64());
    }

    /// `key` will not be worked on.
    pub fn forget(&self, key: &str) {
        self.state().forget(key);
    }

    /// `key` is not taken now after all: it comes back after `delay` (not a retry: nothing
    /// failed).
    pub fn postpone(&self, key: &str, delay: Duration) {
        let mut state = self.state();
        state.forget(key);
        state.add(key, Instant::now() + delay);
    }

    /// A periodic pass failed; the next one comes on the timer.
    pub fn failed(&self) {
        self.retries.inc();
    }

    fn refresh(&self) {
        let (depth, unfinished, longest) = self.state().gauges(Instant::now());
        self.depth.set(i64::try_from(depth).unwrap_or(i64::MAX));
        self.unfinished.set(unfinished);
        self.longest.set(longest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_state_counts_as_client_go_does() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut q = QueueState::default();
        // Two adds of one item before a worker takes it: one item, waiting since the first.
        assert!(q.add("a", at(0)));
        assert!(!q.add("a", at(5)));
        assert!(q.add("b", at(0)));
        // A retry waiting out its back-off is not in the depth until it is due.
        assert!(q.add("c", at(1_000)));
        assert_eq!(q.gauges(at(10)), (2, 0.0, 0.0));
        assert_eq!(q.start("a", at(10)), Duration::from_millis(10));
        assert_eq!(q.start("b", at(30)), Duration::from_millis(30));
        let (depth, unfinished, longest) = q.gauges(at(50));
        assert_eq!(depth, 0);
        assert!(
            (unfinished - 0.060).abs() < 1e-9,
            "40 ms + 20 ms: {unfinished}"
        );
        assert!((longest - 0.040).abs() < 1e-9, "{longest}");
        assert_eq!(q.done("a", at(70)), Duration::from_millis(60));
        // Added again while being worked on: waits again.
        assert!(q.add("b", at(80)));
        assert_eq!(q.done("b", at(90)), Duration::from_millis(60));
        assert_eq!(q.gauges(at(1_000)).0, 2, "b again, and c now due");
        // Queue time counts from when an item is due; an unknown item waited zero.
        assert_eq!(q.start("c", at(1_500)), Duration::from_millis(500));
        assert_eq!(q.start("x", at(1_500)), Duration::ZERO);
        q.forget("b");
        assert_eq!(q.gauges(at(2_000)).0, 0);
    }

    #[test]
    fn work_queue_metrics_are_exposed_with_upstream_names_and_buckets() {
        let m = Metrics::new();
        let q = m.queue("service");
        assert!(Arc::ptr_eq(&q, &m.queue("service")), "one queue per name");
        q.add("ns/a");
        q.add("ns/b");
        q.start("ns/a");
        q.retry("ns/a", Duration::from_secs(60));
        let text = m.encode();
        for line in [
            r#"workqueue_depth{name="service"} 1"#,
            // The retry adds "ns/a" again, as client-go's AddRateLimited does.
            r#"workqueue_adds_total{name="service"} 3"#,
            r#"workqueue_retries_total{name="service"} 1"#,
            r#"workqueue_queue_duration_seconds_bucket{le="1e-8",name="service"}"#,
            r#"workqueue_queue_duration_seconds_bucket{le="10.0",name="service"}"#,
            r#"workqueue_unfinished_work_seconds{name="service"}"#,
            r#"workqueue_longest_running_processor_seconds{name="service"}"#,
            "service_controller_nodesync_latency_seconds_bucket{le=\"16384.0\"}",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
