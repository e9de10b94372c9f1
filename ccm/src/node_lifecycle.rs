//! The `cloud-node-lifecycle` controller: every `--node-monitor-period`, for NotReady and Unknown
//! simcloud nodes only, deletes the Node when its instance is definitely gone and taints it
//! `node.cloudprovider.kubernetes.io/shutdown` when the instance is shut down; Ready nodes lose
//! that taint. A cloud error never deletes anything.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::Instrument as _;

use crate::cloud::{HasInstances, is_ours};
use crate::event_recorder::Recorder;
use crate::metrics::Metrics;
use crate::names;
use crate::node_plan::{self, Ready};

pub struct LifecycleContext {
    pub client: kube::Client,
    pub cloud: HasInstances,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
}

impl LifecycleContext {
    pub fn new(
        client: kube::Client,
        cloud: HasInstances,
        metrics: Arc<Metrics>,
        identity: &str,
    ) -> Self {
        let recorder = crate::recorder(&client, names::NODE_LIFECYCLE_CONTROLLER, identity);
        Self {
            client,
            cloud,
            metrics,
            recorder,
        }
    }
}

/// What a pass decided for one node (for logs and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Skipped,
    Untainted,
    Deleted,
    Tainted,
    Unchanged,
    CloudError,
}

/// Tries of a taint write that meets a conflict, and the pause between them (upstream's
/// `updateTaintBackoff`: 5 steps of 100 ms, jittered).
const TAINT_TRIES: u32 = 5;
const TAINT_RETRY: Duration = Duration::from_millis(100);

/// Reads the Node, applies `change` to what it holds now, and writes the taints with its
/// resourceVersion as a precondition, retrying on a conflict, as upstream's `PatchNodeTaints`
/// does. kube-controller-manager adds and removes `not-ready`/`unreachable` NoExecute taints on
/// the same Nodes; writing the list from a cached copy would drop or resurrect them. Returns
/// whether anything was written (`change` returns `None` when there is nothing to do).
async fn update_taints(
    api: &Api<Node>,
    name: &str,
    change: impl Fn(&Node) -> Option<Vec<k8s_openapi::api::core::v1::Taint>>,
) -> Result<bool, kube::Error> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let node = api.get(name).await?;
        let Some(taints) = change(&node) else {
            return Ok(false);
        };
        // Taints are an atomic list: a strategic patch replaces it whole, hence the precondition.
        let patch = json!({
            "metadata": {"resourceVersion": node.resource_version()},
            "spec": {"taints": taints},
        });
        match api
            .patch(name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
        {
            Ok(_) => return Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 && attempt < TAINT_TRIES => {
                let jitter = rand::random::<f64>();
                tokio::time::sleep(TAINT_RETRY.mul_f64(1.0 + jitter)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Handles one node.
pub async fn monitor_node(ctx: &LifecycleContext, node: &Node) -> Outcome {
    let name = node.name_any();
    if !is_ours(node) {
        return Outcome::Skipped;
    }
    let api: Api<Node> = Api::all(ctx.client.clone());
    let instances = ctx.cloud.get();
    if node_plan::ready(node) == Ready::True {
        if node_plan::has_shutdown_taint(node) {
            match update_taints(&api, &name, node_plan::taints_without_shutdown).await {
                Ok(true) => {
                    tracing::info!(node = %name, "node is Ready again; removed the shutdown taint");
                    return Outcome::Untainted;
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(node = %name, error = %e, "cannot remove the shutdown taint")
                }
            }
        }
        return Outcome::Unchanged;
    }
    let exists = match instances.instance_exists(node).await {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(node = %name, error = %crate::error_chain(&e), "cannot check the node's instance; keeping the node");
            return Outcome::CloudError;
        }
    };
    if !exists {
        let reference = node.object_ref(&());
        let note = format!("Deleting node {name} because it does not exist in the cloud provider");
        let ev = Event {
            type_: EventType::Normal,
            reason: names::REASON_DELETING_NODE.into(),
            note: Some(note.clone()),
            action: "DeleteNode".into(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&ev, &reference).await {
            tracing::warn!(node = %name, error = %e, "cannot publish DeletingNode event");
        }
        tracing::info!(node = %name, "{note}");
        return match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => Outcome::Deleted,
            Err(e) => {
                let ev = Event {
                    type_: EventType::Warning,
                    reason: names::REASON_DELETING_NODE_FAILED.into(),
                    note: Some(format!("Failed deleting node {name}: {e}")),
                    action: "DeleteNode".into(),
                    secondary: None,
                };
                let _ = ctx.recorder.publish(&ev, &reference).await;
                tracing::warn!(node = %name, error = %e, "deleting node failed");
                Outcome::CloudError
            }
        };
    }
    match instances.instance_shutdown(node).await {
        Ok(true) if node_plan::has_shutdown_taint(node) => Outcome::Unchanged,
        Ok(true) => match update_taints(&api, &name, node_plan::taints_with_shutdown).await {
            Ok(true) => {
                tracing::info!(node = %name, "instance is shut down; tainted the node");
                Outcome::Tainted
            }
            Ok(false) => Outcome::Unchanged,
            Err(e) => {
                tracing::warn!(node = %name, error = %e, "cannot add the shutdown taint");
                Outcome::Unchanged
            }
        },
        Ok(false) => Outcome::Unchanged,
        Err(e) => {
            tracing::warn!(node = %name, error = %crate::error_chain(&e), "cannot check whether the instance is shut down");
            Outcome::CloudError
        }
    }
}

/// One pass over every node in the cache.
pub async fn monitor_nodes(ctx: &LifecycleContext, nodes: &[Arc<Node>]) -> Vec<(String, Outcome)> {
    let mut out = Vec::with_capacity(nodes.len());
    for n in nodes {
        let name = n.name_any();
        let span = tracing::debug_span!("monitor node", node = %name);
        out.push((name, monitor_node(ctx, n).instrument(span).await));
    }
    out
}

/// Runs passes every `period` (sliding: counted from the end of the previous pass) over the
/// shared informer's `nodes` until `shutdown` resolves.
pub async fn run(
    ctx: Arc<LifecycleContext>,
    nodes: crate::informer::SharedNodes,
    period: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let name = crate::controllers::ControllerName::CloudNodeLifecycle.as_str();
    let queue = ctx.metrics.queue(name);
    ctx.metrics.set_running(name, true);
    let passes = async {
        nodes.ready().await;
        loop {
            // One work item per pass (upstream runs this on a timer, without a queue).
            queue.add(crate::metrics::PASS);
            queue.start(crate::metrics::PASS);
            let outcomes = monitor_nodes(&ctx, &nodes.state()).await;
            queue.done(crate::metrics::PASS);
            if outcomes.iter().any(|(_, o)| *o == Outcome::CloudError) {
                queue.failed();
            }
            tokio::time::sleep(period).await;
        }
    };
    tokio::select! {
        _ = passes => {}
        _ = shutdown => {}
    }
    ctx.metrics.set_running(name, false);
}
