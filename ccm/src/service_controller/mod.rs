//! The `service` controller: cloud load balancers for `type: LoadBalancer` Services, as upstream's
//! service controller, with its finalizer-first ordering, events, retries and backend predicates.
//!
//! One kube-runtime `Controller` over Services, and one Node reflector whose store the reconciles
//! read: a node event that alters the backend set (a node added or deleted, also outright, or
//! changing its predicates or provider ID; [`BackendTracker`]) triggers the Services, whose
//! reconcile then updates only the backends of the load balancers whose set changed. Because both paths run inside the Service's reconcile, an ensure and a node-driven
//! update of one Service never race. A Service whose relevant fields did not change since its
//! last successful ensure (a fingerprint of upstream's `needsUpdate` fields) causes no cloud call.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{LoadBalancerStatus, Node, Service};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::cloud::{CloudError, HasLoadBalancers};
use crate::event_recorder::Recorder;
use crate::metrics::Metrics;
use crate::names;
use crate::service_plan::{self, Decision};

mod backends;
mod ensure;
mod gc;

pub use backends::BackendTracker;
use ensure::*;
pub use gc::{GcError, collect_garbage};

/// Queue name in metrics.
pub const QUEUE: &str = "service";
/// Upstream's `minRetryDelay` / `maxRetryDelay`.
pub const MIN_RETRY: Duration = Duration::from_secs(5);
pub const MAX_RETRY: Duration = Duration::from_secs(300);
/// Node names listed in events at most (upstream's `maxNodeNamesToLog`).
const MAX_NODE_NAMES: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("syncing load balancer for {service}")]
    Cloud {
        service: String,
        #[source]
        source: CloudError,
    },
    #[error("writing service {service}")]
    Kube {
        service: String,
        #[source]
        source: kube::Error,
    },
}

impl ServiceError {
    fn retry_after(&self) -> Option<Duration> {
        match self {
            ServiceError::Cloud { source, .. } => source.retry_after(),
            ServiceError::Kube { .. } => None,
        }
    }
}

/// Retry delay after `failures` consecutive failures: 5 s doubling to 300 s.
pub fn backoff(failures: u32) -> Duration {
    MIN_RETRY
        .saturating_mul(2u32.saturating_pow(failures.min(16)))
        .min(MAX_RETRY)
}

type NodeSet = BTreeMap<String, String>;

/// What the controller remembers about a Service it synced. The node set is shared with every
/// other Service synced to the same backends (10,000 nodes x 1,000 Services would otherwise be
/// ten million entries).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Synced {
    fingerprint: u64,
    nodes: Arc<NodeSet>,
}

/// The backend nodes (sorted by name) and their set, computed once per change of the backend
/// set and shared by every Service's sync until the next.
#[derive(Debug, Default)]
struct Backends {
    nodes: crate::cloud::BackendNodes,
    set: Arc<NodeSet>,
}

pub struct ServiceContext {
    pub client: kube::Client,
    pub cloud: HasLoadBalancers,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    pub cluster: String,
    /// Handle Services of this `loadBalancerClass` instead of class-less ones.
    pub class: Option<String>,
    nodes: Mutex<Option<Store<Node>>>,
    synced: Mutex<HashMap<String, Synced>>,
    failures: Mutex<HashMap<String, u32>>,
    /// After a failure: the Service's fingerprint then, and when to try again. Changes that do
    /// not alter the fingerprint (our own finalizer patch, say) do not cut the wait short.
    retry_at: Mutex<HashMap<String, (u64, Instant)>>,
    queue: Arc<crate::metrics::WorkQueue>,
    nodesync: Mutex<NodeSync>,
    /// Bumped on every change of the backend set (by the node informer, after the node store has
    /// it); `backends` holds the generation it was computed at.
    backend_generation: std::sync::atomic::AtomicU64,
    backends: Mutex<Option<(u64, Arc<Backends>)>>,
}

/// `service_controller_nodesync_latency_seconds`: from a change of the backend set to the last
/// load balancer carrying it. A change while a sync is still out keeps the earlier start (the
/// figure covers the whole burst) and waits for the Services the newer change needs. Pure.
#[derive(Debug, Default)]
pub struct NodeSync {
    since: Option<Instant>,
    pending: std::collections::HashSet<String>,
}

impl NodeSync {
    /// The backend set changed at `now`; `services` are the keys whose load balancers follow it.
    pub fn begin(&mut self, services: impl IntoIterator<Item = String>, now: Instant) {
        self.pending = services.into_iter().collect();
        if self.pending.is_empty() {
            self.since = None;
        } else if self.since.is_none() {
            self.since = Some(now);
        }
    }

    /// Service `key` is in sync (or gone) at `now`; the latency when it was the last one.
    pub fn synced(&mut self, key: &str, now: Instant) -> Option<Duration> {
        if !self.pending.remove(key) || !self.pending.is_empty() {
            return None;
        }
        self.since
            .take()
            .map(|since| now.saturating_duration_since(since))
    }
}

impl ServiceContext {
    /// Service `k` is in sync with the current backend set (or gone).
    fn node_synced(&self, k: &str) {
        let latency = self
            .nodesync
            .lock()
            .expect("nodesync lock")
            .synced(k, Instant::now());
        if let Some(d) = latency {
            self.metrics.nodesync_latency.observe(d.as_secs_f64());
        }
    }

    /// Records that the Service's load balancer now matches `fingerprint` over `nodes`.
    fn mark_synced(&self, key: &str, fingerprint: u64, nodes: Arc<NodeSet>) {
        self.synced
            .lock()
            .expect("synced lock")
            .insert(key.to_owned(), Synced { fingerprint, nodes });
    }

    pub fn new(
        client: kube::Client,
        cloud: HasLoadBalancers,
        metrics: Arc<Metrics>,
        identity: &str,
        cluster: &str,
        class: Option<String>,
    ) -> Self {
        let recorder = crate::recorder(&client, names::SERVICE_CONTROLLER, identity);
        Self {
            client,
            cloud,
            recorder,
            cluster: cluster.to_owned(),
            class,
            nodes: Mutex::default(),
            synced: Mutex::default(),
            failures: Mutex::default(),
            retry_at: Mutex::default(),
            queue: metrics.queue(QUEUE),
            nodesync: Mutex::default(),
            backend_generation: Default::default(),
            backends: Mutex::default(),
            metrics,
        }
    }

    /// The backend set changed (the node store already shows it).
    fn backends_changed(&self) {
        self.backend_generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// The current backends: computed from the node store after a change of the backend set,
    /// then shared. (Node fields that do not decide the set may be older than the store's.)
    fn backends(&self) -> Arc<Backends> {
        use std::sync::atomic::Ordering::SeqCst;
        // Read before the store: a value is never older than the generation it is filed under.
        let generation = self.backend_generation.load(SeqCst);
        if let Some((g, b)) = &*self.backends.lock().expect("backends lock")
            && *g == generation
        {
            return b.clone();
        }
        let store = self.nodes.lock().expect("nodes lock").clone();
        let mut nodes: Vec<Arc<Node>> = store
            .map(|s| s.state())
            .unwrap_or_default()
            .into_iter()
            .filter(|n| service_plan::is_backend(n))
            .collect();
        nodes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let set = Arc::new(service_plan::node_set(nodes.iter().map(|n| &**n)));
        let b = Arc::new(Backends {
            nodes: nodes.into(),
            set,
        });
        let mut cached = self.backends.lock().expect("backends lock");
        if self.backend_generation.load(SeqCst) == generation {
            *cached = Some((generation, b.clone()));
        }
        b
    }

    /// Reports a failed cloud call on the Service as a Warning event and returns its error.
    async fn cloud_failed(
        &self,
        svc: &Service,
        service: String,
        reason: &str,
        note: String,
        source: CloudError,
    ) -> ServiceError {
        self.event(svc, EventType::Warning, reason, note).await;
        ServiceError::Cloud { service, source }
    }

    /// Upstream's Warning for any failed step of a Service's sync (`processServiceCreateOrUpdate`):
    /// `SyncLoadBalancerFailed` "Error syncing load balancer: <what>: <why>".
    async fn sync_failed(&self, svc: &Service, what: &str, why: &str) {
        let detail = if what.is_empty() {
            why.to_owned()
        } else {
            format!("{what}: {why}")
        };
        self.event(
            svc,
            EventType::Warning,
            names::REASON_SYNC_LB_FAILED,
            format!("Error syncing load balancer: {detail}"),
        )
        .await;
    }

    /// A failed write to the Service during a sync, reported as upstream does.
    async fn kube_failed(&self, svc: &Service, what: &str, source: kube::Error) -> ServiceError {
        self.sync_failed(svc, what, &source.to_string()).await;
        ServiceError::Kube {
            service: key(svc),
            source,
        }
    }

    /// Upstream's warning when a load balancer has no backend nodes.
    async fn no_nodes_event(&self, svc: &Service) {
        self.event(
            svc,
            EventType::Warning,
            names::REASON_UNAVAILABLE_LB,
            "There are no available nodes for LoadBalancer".into(),
        )
        .await;
    }

    async fn event(&self, svc: &Service, type_: EventType, reason: &str, note: String) {
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note.chars().take(1000).collect()),
            action: reason.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &svc.object_ref(&())).await {
            tracing::warn!(service = %key(svc), reason, error = %e, "cannot publish event");
        }
    }
}

fn key(svc: &Service) -> String {
    format!("{}/{}", svc.namespace().unwrap_or_default(), svc.name_any())
}

/// Upstream's `loggableNodeNames` as Go's `%v` prints it: `[a b c]`, at most 20 names.
fn node_names(nodes: &[Arc<Node>]) -> String {
    let names: Vec<String> = nodes
        .iter()
        .take(MAX_NODE_NAMES)
        .map(|n| n.name_any())
        .collect();
    format!("[{}]", names.join(" "))
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<ServiceContext>) -> Result<Action, ServiceError> {
    let k = key(&svc);
    if service_plan::decide(&svc, ctx.class.as_deref()) == Decision::Ensure {
        let fp = service_plan::fingerprint(&svc, ctx.class.as_deref());
        let wait = ctx
            .retry_at
            .lock()
            .expect("retry lock")
            .get(&k)
            .and_then(|(f, at)| (*f == fp).then(|| at.saturating_duration_since(Instant::now())));
        if let Some(wait) = wait.filter(|w| !w.is_zero()) {
            ctx.queue.postpone(&k, wait);
            return Ok(Action::requeue(wait));
        }
    }
    ctx.queue.start(&k);
    let result = sync(&svc, &ctx).await;
    ctx.queue.done(&k);
    if result.is_ok() {
        ctx.failures.lock().expect("failures lock").remove(&k);
        ctx.retry_at.lock().expect("retry lock").remove(&k);
        ctx.node_synced(&k);
    }
    result
}

fn error_policy(svc: Arc<Service>, err: &ServiceError, ctx: Arc<ServiceContext>) -> Action {
    let k = key(&svc);
    let delay = match err.retry_after() {
        // A cloud that says when to come back gets exactly that, without growing back-off.
        Some(after) => after,
        None => {
            let mut f = ctx.failures.lock().expect("failures lock");
            let n = f.entry(k.clone()).or_insert(0);
            let d = backoff(*n);
            *n += 1;
            d
        }
    };
    let fp = service_plan::fingerprint(&svc, ctx.class.as_deref());
    ctx.retry_at
        .lock()
        .expect("retry lock")
        .insert(k.clone(), (fp, Instant::now() + delay));
    tracing::warn!(service = %k, error = %crate::error_chain(err), retry_in = ?delay, "service sync failed");
    ctx.queue.retry(&k, delay);
    Action::requeue(delay)
}

/// Reconciles one Service.
pub async fn sync(svc: &Service, ctx: &ServiceContext) -> Result<Action, ServiceError> {
    let k = key(svc);
    match service_plan::decide(svc, ctx.class.as_deref()) {
        Decision::Ignore => Ok(Action::await_change()),
        Decision::Delete => delete(svc, ctx).await,
        Decision::Ensure => {
            let fingerprint = service_plan::fingerprint(svc, ctx.class.as_deref());
            let backends = ctx.backends();
            let last = ctx.synced.lock().expect("synced lock").get(&k).cloned();
            match last {
                Some(l) if l.fingerprint == fingerprint && service_plan::has_finalizer(svc) => {
                    if !Arc::ptr_eq(&l.nodes, &backends.set) && l.nodes != backends.set {
                        update_hosts(svc, ctx, &backends, fingerprint).await?;
                    }
                    Ok(Action::await_change())
                }
                _ => ensure(svc, ctx, &backends, fingerprint).await,
            }
        }
    }
}

/// Runs the controller until `shutdown` resolves. Node changes come from the shared informer
/// (`events`, applied to the store of `nodes` before they arrive, so a reconcile they trigger reads at least
/// that state).
pub async fn run(
    ctx: Arc<ServiceContext>,
    nodes: crate::informer::SharedNodes,
    mut events: crate::informer::NodeEvents,
    concurrency: u16,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    use futures_util::TryStreamExt as _;
    use kube::runtime::WatchStreamExt as _;
    *ctx.nodes.lock().expect("nodes lock") = Some(nodes.store());
    let (services, writer) = kube::runtime::reflector::store::<Service>();
    let queue = ctx.queue.clone();
    let service_events = kube::runtime::reflector::reflector(
        writer,
        watcher(
            Api::<Service>::all(ctx.client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .applied_objects()
    .inspect_ok(move |svc| queue.add(&key(svc)));
    let (trigger, triggered) = tokio::sync::mpsc::channel::<()>(1);
    let informer = {
        let ctx = ctx.clone();
        let services = services.clone();
        tokio::spawn(async move {
            let mut backends = BackendTracker::default();
            while let Some(e) = events.next().await {
                if !backends.changed(&e) {
                    continue;
                }
                ctx.backends_changed();
                // Every Service is reconciled; those with load balancers must follow.
                let mut following = Vec::new();
                for svc in services.state() {
                    let k = key(&svc);
                    ctx.queue.add(&k);
                    if service_plan::decide(&svc, ctx.class.as_deref()) == Decision::Ensure {
                        following.push(k);
                    }
                }
                ctx.nodesync
                    .lock()
                    .expect("nodesync lock")
                    .begin(following, Instant::now());
                // A full channel already holds a pending trigger: bursts coalesce.
                let _ = trigger.try_send(());
            }
        })
    };
    // A change of the backend set (a node added, deleted, or changing predicate or provider ID)
    // triggers every Service; their reconciles update only the load balancers whose set changed
    // and return at once for the rest.
    let controller = Controller::for_stream(service_events, services)
        .with_config(ControllerConfig::default().concurrency(concurrency))
        .reconcile_all_on(tokio_stream::wrappers::ReceiverStream::new(triggered));
    let gc = {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            match collect_garbage(&ctx).await {
                Ok(n) => tracing::info!(deleted = n, "load-balancer garbage collection done"),
                Err(e) => {
                    tracing::warn!(error = %crate::error_chain(&e), "load-balancer garbage collection failed")
                }
            }
        })
    };
    nodes.ready().await;
    let name = crate::controllers::ControllerName::Service.as_str();
    ctx.metrics.set_running(name, true);
    controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|r| {
            // A Service deleted before its turn is not worked on.
            if let Err(kube::runtime::controller::Error::ObjectNotFound(o)) = r {
                let k = format!("{}/{}", o.namespace.as_deref().unwrap_or_default(), o.name);
                ctx.queue.forget(&k);
                ctx.node_synced(&k);
            }
            futures_util::future::ready(())
        })
        .await;
    gc.abort();
    informer.abort();
    ctx.metrics.set_running(name, false);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodesync_latency_spans_a_change_to_its_last_load_balancer() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let keys = |k: &[&str]| k.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let mut ns = NodeSync::default();
        ns.begin(keys(&["a/x", "a/y"]), at(0));
        assert_eq!(ns.synced("a/x", at(1)), None, "a/y still out");
        assert_eq!(ns.synced("other", at(1)), None, "not part of the sync");
        assert_eq!(ns.synced("a/y", at(3)), Some(Duration::from_secs(3)));
        assert_eq!(ns.synced("a/y", at(4)), None, "observed once");
        // A second change before the first is done: measured from the first.
        ns.begin(keys(&["a/x", "a/y"]), at(10));
        assert_eq!(ns.synced("a/x", at(11)), None);
        ns.begin(keys(&["a/x", "a/y"]), at(12));
        assert_eq!(ns.synced("a/x", at(13)), None);
        assert_eq!(ns.synced("a/y", at(15)), Some(Duration::from_secs(5)));
        // No load balancers: nothing to measure.
        ns.begin(Vec::new(), at(20));
        assert_eq!(ns.synced("a/x", at(21)), None);
    }

    fn node(name: &str, pid: &str, excluded: bool) -> Node {
        let mut v = serde_json::json!({"metadata": {"name": name}, "spec": {"providerID": pid}});
        if excluded {
            v["metadata"]["labels"] = json!({names::LABEL_EXCLUDE_FROM_LB: "true"});
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn the_backend_set_changes_on_add_delete_predicate_and_provider_id() {
        use watcher::Event as E;
        let a = node("a", "simcloud://zone-a/i-1", false);
        let b = node("b", "simcloud://zone-b/i-2", false);
        let mut t = BackendTracker::default();
        let steps: Vec<(&str, E<Node>, bool)> = vec![
            ("initial list", E::Init, false),
            ("a listed", E::InitApply(a.clone()), true),
            ("b listed", E::InitApply(b.clone()), true),
            ("list done", E::InitDone, false),
            ("a unchanged", E::Apply(a.clone()), false),
            (
                "a excluded",
                E::Apply(node("a", "simcloud://zone-a/i-1", true)),
                true,
            ),
            ("a included", E::Apply(a.clone()), true),
            (
                "a new provider ID",
                E::Apply(node("a", "simcloud://zone-a/i-9", false)),
                true,
            ),
            ("b hard-deleted", E::Delete(b.clone()), true),
            ("b deleted again", E::Delete(b.clone()), false),
            ("b back", E::Apply(b.clone()), true),
            ("relist", E::Init, false),
            (
                "only a is there",
                E::InitApply(node("a", "simcloud://zone-a/i-9", false)),
                false,
            ),
            ("b vanished during the gap", E::InitDone, true),
        ];
        for (what, event, want) in steps {
            assert_eq!(t.changed(&event), want, "{what}");
        }
    }

    #[test]
    fn backoff_is_five_seconds_doubling_to_five_minutes() {
        let got: Vec<u64> = (0..8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(got, [5, 10, 20, 40, 80, 160, 300, 300]);
    }
}
