//! The `cloud-node` controller: initialises nodes carrying the uninitialized taint (provider ID,
//! zone / region / instance-type labels, addresses, taint removal, `Synced` event), reconciles
//! GA labels from their beta twins on initialised nodes, and refreshes addresses periodically.
//!
//! Observe (the Node, the cloud's metadata), plan ([`crate::node_plan`]), act (one `PUT` of the
//! Node retried on conflicts, then a status patch of the addresses), as upstream does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Event, EventType};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::Instrument as _;

use crate::cloud::{CloudError, HasInstances, NodeAddress, is_ours};
use crate::event_recorder::Recorder;
use crate::informer::NodeEvents;
use crate::metrics::Metrics;
use crate::names;
use crate::node_plan::{self, PlanError};

/// Queue name in metrics (upstream's).
pub const QUEUE: &str = "Nodes";
/// Upstream `UpdateNodeSpecBackoff`: conflict retries of the initialising update.
const UPDATE_ATTEMPTS: u32 = 20;
const UPDATE_BACKOFF: Duration = Duration::from_millis(50);

/// What a node sync can fail on; the node is retried with back-off.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("getting instance metadata for node {node}")]
    Metadata {
        node: String,
        #[source]
        source: CloudError,
    },
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("writing node {node}")]
    Kube {
        node: String,
        #[source]
        source: kube::Error,
    },
    #[error("node {0} kept conflicting after {UPDATE_ATTEMPTS} attempts")]
    Conflicts(String),
}

impl NodeError {
    fn retry_after(&self) -> Option<Duration> {
        match self {
            NodeError::Metadata { source, .. } => source.retry_after(),
            _ => None,
        }
    }
}

/// Shared state of the node controllers.
pub struct NodeContext {
    pub client: kube::Client,
    pub cloud: HasInstances,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    failures: Mutex<HashMap<String, u32>>,
    queue: Arc<crate::metrics::WorkQueue>,
}

impl NodeContext {
    pub fn new(
        client: kube::Client,
        cloud: HasInstances,
        metrics: Arc<Metrics>,
        identity: &str,
    ) -> Self {
        let recorder = crate::recorder(&client, names::NODE_CONTROLLER, identity);
        let queue = metrics.queue(QUEUE);
        Self {
            client,
            cloud,
            metrics,
            recorder,
            failures: Mutex::default(),
            queue,
        }
    }

    fn nodes(&self) -> Api<Node> {
        Api::all(self.client.clone())
    }
}

/// Upstream's per-item limiter: 5 ms doubling to 1000 s.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_millis(5)
        .saturating_mul(2u32.saturating_pow(failures.min(24)))
        .min(Duration::from_secs(1000))
}

fn seconds_since_creation(node: &Node) -> f64 {
    node.metadata.creation_timestamp.as_ref().map_or(0.0, |t| {
        (jiff::Timestamp::now() - t.0)
            .total(jiff::Unit::Second)
            .unwrap_or(0.0)
            .max(0.0)
    })
}

async fn reconcile(node: Arc<Node>, ctx: Arc<NodeContext>) -> Result<Action, NodeError> {
    ctx.queue.start(&node.name_any());
    let result = sync(&node, &ctx).await;
    ctx.queue.done(&node.name_any());
    if result.is_ok() {
        ctx.failures
            .lock()
            .expect("failures lock")
            .remove(&node.name_any());
    }
    result
}

fn error_policy(node: Arc<Node>, err: &NodeError, ctx: Arc<NodeContext>) -> Action {
    let name = node.name_any();
    let n = {
        let mut f = ctx.failures.lock().expect("failures lock");
        let n = f.entry(name.clone()).or_insert(0);
        *n += 1;
        *n
    };
    let delay = err.retry_after().unwrap_or_else(|| backoff(n - 1));
    tracing::warn!(node = %name, error = %crate::error_chain(err), retry_in = ?delay, "node sync failed");
    ctx.queue.retry(&name, delay);
    Action::requeue(delay)
}

/// The work item: initialise, or reconcile labels of an initialised node.
pub async fn sync(node: &Node, ctx: &NodeContext) -> Result<Action, NodeError> {
    let name = node.name_any();
    if !is_ours(node) {
        tracing::debug!(node = %name, "not a simcloud node; leaving it alone");
        return Ok(Action::await_change());
    }
    if !node_plan::has_uninitialized_taint(node) {
        let labels = node_plan::labels_to_reconcile(node);
        if !labels.is_empty() {
            ctx.nodes()
                .patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Strategic(json!({"metadata": {"labels": labels}})),
                )
                .await
                .map_err(|source| NodeError::Kube {
                    node: name.clone(),
                    source,
                })?;
            tracing::info!(node = %name, ?labels, "reconciled node labels");
        }
        return Ok(Action::await_change());
    }
    tracing::info!(node = %name, "initializing node with cloud provider");
    let Some(md) = ctx
        .cloud
        .get()
        .instance_metadata(node)
        .await
        .map_err(|source| NodeError::Metadata {
            node: name.clone(),
            source,
        })?
    else {
        tracing::info!(node = %name, "skip sync node: the cloud returned no metadata");
        return Ok(Action::await_change());
    };
    let nodes = ctx.nodes();
    let mut attempt = 0;
    let updated = loop {
        attempt += 1;
        // Re-read so a retry after a conflict starts from the latest object.
        let current = match nodes
            .get_opt(&name)
            .await
            .map_err(|source| NodeError::Kube {
                node: name.clone(),
                source,
            })? {
            Some(n) => n,
            None => return Ok(Action::await_change()),
        };
        if !node_plan::has_uninitialized_taint(&current) {
            return Ok(Action::await_change());
        }
        let desired = node_plan::initialize(&current, &md)?;
        match nodes.replace(&name, &PostParams::default(), &desired).await {
            Ok(n) => break n,
            Err(kube::Error::Api(s)) if s.code == 409 && attempt < UPDATE_ATTEMPTS => {
                let jitter = rand::random_range(0.0..1.0);
                tokio::time::sleep(UPDATE_BACKOFF.mul_f64(1.0 + jitter)).await;
            }
            Err(kube::Error::Api(s)) if s.code == 409 => return Err(NodeError::Conflicts(name)),
            Err(source) => return Err(NodeError::Kube { node: name, source }),
        }
    };
    ctx.metrics
        .taint_removal_delay
        .observe(seconds_since_creation(&updated));
    update_addresses(ctx, &updated, &md.node_addresses).await;
    let ev = Event {
        type_: EventType::Normal,
        reason: names::REASON_SYNCED.into(),
        note: Some("Node synced successfully".into()),
        action: names::REASON_SYNCED.into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &updated.object_ref(&())).await {
        tracing::warn!(node = %name, error = %e, "cannot publish Synced event");
    }
    ctx.metrics
        .initial_node_sync_delay
        .observe(seconds_since_creation(&updated));
    let labels = updated.labels();
    tracing::info!(
        node = %name,
        provider_id = updated.spec.as_ref().and_then(|s| s.provider_id.as_deref()).unwrap_or(""),
        zone = labels.get(names::LABEL_ZONE).map(String::as_str).unwrap_or(""),
        "node initialized"
    );
    Ok(Action::await_change())
}

/// Writes the node's addresses from the cloud's when they differ (errors are logged, as upstream).
pub async fn update_addresses(ctx: &NodeContext, node: &Node, cloud: &[NodeAddress]) {
    let name = node.name_any();
    if node_plan::has_uninitialized_taint(node) {
        return;
    }
    let desired = match node_plan::desired_addresses(node, cloud) {
        Ok(Some(d)) => d,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(node = %name, error = %e, "failed to update node addresses");
            return;
        }
    };
    if !node_plan::addresses_changed(node, &desired) {
        return;
    }
    // `status.addresses` has a broken merge key: replace the list wholesale, as upstream does.
    let mut list = vec![json!({"$patch": "replace"})];
    list.extend(
        node_plan::to_k8s(&desired)
            .into_iter()
            .map(|a| json!({"type": a.type_, "address": a.address})),
    );
    let patch = json!({"status": {"addresses": list}});
    match ctx
        .nodes()
        .patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
    {
        Ok(_) => {
            tracing::info!(node = %name, addresses = ?desired.iter().map(|a| format!("{}={}", a.kind, a.address)).collect::<Vec<_>>(), "node addresses updated")
        }
        Err(e) => tracing::warn!(node = %name, error = %e, "failed to patch node addresses"),
    }
}

/// One pass of the periodic address refresh over initialised simcloud nodes. Each Node is read
/// from the store when its turn comes: a snapshot held for the whole pass (10,000 cloud calls)
/// would pin every version the store has since replaced.
pub async fn refresh_addresses(
    ctx: &NodeContext,
    nodes: &crate::informer::SharedNodes,
    concurrency: usize,
) {
    let started = Instant::now();
    let names: Vec<String> = nodes.state().iter().map(|n| n.name_any()).collect();
    let n = names.len();
    futures_util::stream::iter(names)
        .for_each_concurrent(concurrency.max(1), |name| {
            let span = tracing::debug_span!("refresh node addresses", node = %name);
            async move {
            let Some(node) = nodes.get(&name) else {
                return;
            };
            if !is_ours(&node) || node_plan::has_uninitialized_taint(&node) {
                return;
            }
            let md = match ctx.cloud.get().instance_metadata(&node).await {
                Ok(Some(md)) => md,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(node = %name, error = %crate::error_chain(&e), "cannot refresh node addresses");
                    return;
                }
            };
            update_addresses(ctx, &node, &md.node_addresses).await;
            }
            .instrument(span)
        })
        .await;
    tracing::debug!(nodes = n, took = ?started.elapsed(), "node status update pass");
}

/// Runs the controller until `shutdown` resolves: a work item per Node `events` (from the
/// shared informer) applies, reading its store.
pub async fn run(
    ctx: Arc<NodeContext>,
    nodes: crate::informer::SharedNodes,
    events: NodeEvents,
    concurrency: u16,
    status_every: Duration,
    status_concurrency: u16,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let queue = ctx.queue.clone();
    let trigger = events.filter_map(move |e| {
        futures_util::future::ready(match &*e {
            watcher::Event::Apply(n) | watcher::Event::InitApply(n) => {
                queue.add(&n.name_any());
                Some(Ok(Node::clone(n)))
            }
            watcher::Event::Delete(n) => {
                queue.forget(&n.name_any());
                None
            }
            watcher::Event::Init | watcher::Event::InitDone => None,
        })
    });
    let controller = Controller::for_stream(trigger, nodes.store())
        .with_config(ControllerConfig::default().concurrency(concurrency));
    let refresher = {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            // Upstream runs a pass at start; wait for the first list so it sees every node.
            nodes.ready().await;
            loop {
                refresh_addresses(&ctx, &nodes, usize::from(status_concurrency)).await;
                tokio::time::sleep(status_every).await;
            }
        })
    };
    ctx.metrics
        .set_running(crate::controllers::ControllerName::CloudNode.as_str(), true);
    let queue = ctx.queue.clone();
    controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|r| {
            // A node deleted before its turn is not worked on.
            if let Err(kube::runtime::controller::Error::ObjectNotFound(o)) = r {
                queue.forget(&o.name);
            }
            futures_util::future::ready(())
        })
        .await;
    refresher.abort();
    ctx.metrics.set_running(
        crate::controllers::ControllerName::CloudNode.as_str(),
        false,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_matches_upstream_limiter() {
        assert_eq!(backoff(0), Duration::from_millis(5));
        assert_eq!(backoff(1), Duration::from_millis(10));
        assert_eq!(backoff(10), Duration::from_millis(5120));
        assert_eq!(backoff(30), Duration::from_secs(1000));
    }
}
