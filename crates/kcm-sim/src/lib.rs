//! Stand-ins for the parts of kube-controller-manager and kube-scheduler that make workloads
//! run, for an API server that runs without them (kube-sim): a scheduler, the Deployment
//! controller and the EndpointSlice controller (with Topology Aware Routing and
//! `trafficDistribution` hints from `crates/topology`). A kube-rs client of any API server, like
//! kubelet-sim; against the real control plane they stay off, since the real ones run there.
//!
//! Each part is a pure planner ([`scheduler`], [`deployment`], [`endpointslice`]) and this
//! module acts on its plans. One task watches Nodes, Pods, Services, Deployments and the
//! controller's EndpointSlices into caches and runs a pass whenever something changed (and at
//! least every [`Config::resync`]).
//!
//! The EndpointSlice controller reconciles a Service when the Service, its Pods or its slices
//! changed, and on Node changes only the Services the topology cache finds overloaded, as
//! upstream does; so hints Auto removed come back only with an endpoint change (the gap the
//! reference calls "never restored").

use std::collections::{HashMap, HashSet};
use std::hash::{Hash as _, Hasher as _};
use std::time::Duration;

use futures_util::FutureExt as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Api, Resource as _, ResourceExt as _};
use serde_json::{Value, json};
use sim_common::reflect;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub mod deployment;
pub mod endpointslice;
pub mod scheduler;

/// Field manager and user agent of the stand-ins' writes.
pub const FIELD_MANAGER: &str = "kcm-sim";

/// Which stand-ins run.
#[derive(Debug, Clone)]
pub struct Config {
    pub scheduler: bool,
    pub deployments: bool,
    pub endpoint_slices: bool,
    /// The longest time between two passes.
    pub resync: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            scheduler: true,
            deployments: true,
            endpoint_slices: true,
            resync: Duration::from_secs(1),
        }
    }
}

/// The running stand-ins.
pub struct Controllers {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Controllers {
    pub fn start(kube: kube::Client, config: Config) -> Self {
        let stop = CancellationToken::new();
        let rx = stop.clone();
        let task = tokio::spawn(run(kube, config, rx));
        Self { stop, task }
    }

    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }

    /// The stop token and the task, for a caller that supervises its tasks together
    /// ([`sim_common::Supervised::adopt`]).
    pub fn into_task(self) -> (CancellationToken, JoinHandle<()>) {
        (self.stop, self.task)
    }
}

struct Sim {
    kube: kube::Client,
    config: Config,
    nodes: Store<Node>,
    pods: Store<Pod>,
    services: Store<Service>,
    deployments: Store<Deployment>,
    slices: Store<EndpointSlice>,
    topology: topology::auto::TopologyCache,
    /// Per Service key, the fingerprint of what its slices were last computed from.
    reconciled: HashMap<String, u64>,
    /// Fingerprint of the Nodes when the topology cache last saw them.
    nodes_seen: u64,
    /// The Nodes' zones as of `nodes_seen` (recomputed only when that fingerprint changes).
    node_zones: endpointslice::NodeZones,
    /// Last scheduling failure reported per Pod UID (reported again only when it changes).
    unschedulable: HashMap<String, String>,
    /// Last planning error reported per Deployment UID.
    deployment_errors: HashMap<String, String>,
    slice_events: Recorder,
    scheduler_events: Recorder,
    deployment_events: Recorder,
}

fn recorder(kube: &kube::Client, controller: &str) -> Recorder {
    Recorder::new(
        kube.clone(),
        Reporter {
            controller: controller.to_owned(),
            instance: None,
        },
    )
}

async fn run(kube: kube::Client, config: Config, stop: CancellationToken) {
    let changed = std::sync::Arc::new(Notify::new());
    let managed = watcher::Config::default().labels(&format!(
        "{}={}",
        endpointslice::LABEL_MANAGED_BY,
        endpointslice::MANAGED_BY
    ));
    let (nodes, t1) = sim_common::reflect_trimmed(
        Api::all(kube.clone()),
        Default::default(),
        Some(changed.clone()),
        scheduler::slim_node,
    );
    let (pods, t2) = reflect(
        Api::all(kube.clone()),
        Default::default(),
        Some(changed.clone()),
    );
    let (services, t3) = reflect(
        Api::all(kube.clone()),
        Default::default(),
        Some(changed.clone()),
    );
    let (deployments, t4) = reflect(
        Api::all(kube.clone()),
        Default::default(),
        Some(changed.clone()),
    );
    let (slices, t5) = reflect(Api::all(kube.clone()), managed, Some(changed.clone()));
    let tasks = [t1, t2, t3, t4, t5];
    let mut sim = Sim {
        slice_events: recorder(&kube, "endpointslice-controller"),
        scheduler_events: recorder(&kube, "default-scheduler"),
        deployment_events: recorder(&kube, "deployment-controller"),
        kube,
        config,
        nodes,
        pods,
        services,
        deployments,
        slices,
        topology: topology::auto::TopologyCache::new(),
        reconciled: HashMap::new(),
        nodes_seen: 0,
        node_zones: Default::default(),
        unschedulable: HashMap::new(),
        deployment_errors: HashMap::new(),
    };
    // Nothing is decided from half-filled caches.
    for ready in [
        sim.nodes.wait_until_ready().boxed(),
        sim.pods.wait_until_ready().boxed(),
        sim.services.wait_until_ready().boxed(),
        sim.deployments.wait_until_ready().boxed(),
        sim.slices.wait_until_ready().boxed(),
    ] {
        tokio::select! {
            _ = ready => {}
            _ = stop.cancelled() => {
                tasks.iter().for_each(JoinHandle::abort);
                return;
            }
        }
    }
    let mut last_pass = Duration::ZERO;
    loop {
        tokio::select! {
            _ = changed.notified() => {
                // Let a burst of events land before planning; a pass reads every cached object,
                // so with thousands of Nodes changing the passes space out (a pass's time at
                // most a fifth of the wall clock) instead of running back to back.
                tokio::time::sleep((last_pass * 4).clamp(SETTLE, MAX_SETTLE)).await;
            }
            _ = tokio::time::sleep(sim.config.resync) => {}
            _ = stop.cancelled() => break,
        }
        let t = tokio::time::Instant::now();
        sim.pass().await;
        last_pass = t.elapsed();
    }
    tasks.iter().for_each(JoinHandle::abort);
}

fn all<K>(s: &Store<K>) -> Vec<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    s.state().iter().map(|o| (**o).clone()).collect()
}

/// The shortest wait between a change and the pass that follows it.
const SETTLE: Duration = Duration::from_millis(20);
/// The longest (when passes are slow).
const MAX_SETTLE: Duration = Duration::from_secs(1);

fn fingerprint(values: impl IntoIterator<Item = Value>) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for v in values {
        v.to_string().hash(&mut h);
    }
    h.finish()
}

fn pp() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..Default::default()
    }
}

fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..Default::default()
    }
}

impl Sim {
    async fn pass(&mut self) {
        if self.config.scheduler {
            self.schedule().await;
        }
        if self.config.deployments {
            self.deployments().await;
        }
        if self.config.endpoint_slices {
            self.endpoint_slices().await;
        }
    }

    async fn schedule(&mut self) {
        // Most passes follow Node heartbeats with nothing to schedule: look before copying.
        if !self
            .pods
            .state()
            .iter()
            .any(|p| scheduler::wants_scheduling(p))
        {
            return;
        }
        let nodes = all(&self.nodes);
        let mut pods = all(&self.pods);
        let mut pending: Vec<Pod> = pods
            .iter()
            .filter(|p| scheduler::wants_scheduling(p))
            .cloned()
            .collect();
        pending.sort_by_key(|p| {
            (
                p.metadata.creation_timestamp.clone().map(|t| t.0),
                p.name_any(),
            )
        });
        for pod in pending {
            let ns = pod.namespace().unwrap_or_else(|| "default".into());
            let name = pod.name_any();
            let uid = pod.uid().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(self.kube.clone(), &ns);
            match scheduler::schedule(&pod, &nodes, &pods) {
                Ok(node) => {
                    let binding = json!({"apiVersion": "v1", "kind": "Binding",
                        "metadata": {"name": name, "namespace": ns},
                        "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
                    match api
                        .create_subresource::<Value, Value>("binding", &name, &pp(), &binding)
                        .await
                    {
                        Ok(_) => {
                            tracing::debug!(pod = %name, namespace = %ns, %node, "scheduled");
                            self.unschedulable.remove(&uid);
                            let mut bound = pod.clone();
                            if let Some(s) = bound.spec.as_mut() {
                                s.node_name = Some(node.clone());
                            }
                            pods.push(bound);
                            let ev = Event {
                                type_: EventType::Normal,
                                reason: "Scheduled".into(),
                                note: Some(format!("Successfully assigned {ns}/{name} to {node}")),
                                action: "Binding".into(),
                                secondary: None,
                            };
                            let _ = self
                                .scheduler_events
                                .publish(&ev, &pod.object_ref(&()))
                                .await;
                        }
                        Err(e) => {
                            tracing::debug!(pod = %name, error = %e, "binding failed; next pass retries")
                        }
                    }
                }
                Err(message) => {
                    if self.unschedulable.get(&uid) == Some(&message) {
                        continue;
                    }
                    tracing::info!(pod = %name, namespace = %ns, %message, "pod unschedulable");
                    let patch = json!({"status": {"conditions": [{"type": "PodScheduled", "status": "False",
                        "reason": "Unschedulable", "message": message, "lastProbeTime": null,
                        "lastTransitionTime": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()}]}});
                    if let Err(e) = api
                        .patch_status(&name, &patch_params(), &Patch::Strategic(patch))
                        .await
                    {
                        tracing::debug!(pod = %name, error = %e, "cannot report unschedulable");
                        continue;
                    }
                    let ev = Event {
                        type_: EventType::Warning,
                        reason: "FailedScheduling".into(),
                        note: Some(message.clone()),
                        action: "Scheduling".into(),
                        secondary: None,
                    };
                    let _ = self
                        .scheduler_events
                        .publish(&ev, &pod.object_ref(&()))
                        .await;
                    self.unschedulable.insert(uid, message);
                }
            }
        }
    }

    async fn deployments(&mut self) {
        let pods = all(&self.pods);
        let now = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        for d in all(&self.deployments) {
            let uid = d.uid().unwrap_or_default();
            let ns = d.namespace().unwrap_or_else(|| "default".into());
            let name = d.name_any();
            if d.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let owned: Vec<Pod> = pods
                .iter()
                .filter(|p| {
                    p.owner_references()
                        .iter()
                        .any(|o| o.controller == Some(true) && o.uid == uid)
                })
                .cloned()
                .collect();
            let plan = match deployment::plan(&d, &owned, &now) {
                Ok(p) => p,
                Err(message) => {
                    if self.deployment_errors.get(&uid) != Some(&message) {
                        tracing::warn!(deployment = %name, namespace = %ns, %message, "cannot plan deployment");
                        let ev = Event {
                            type_: EventType::Warning,
                            reason: "InvalidSpec".into(),
                            note: Some(message.clone()),
                            action: "Plan".into(),
                            secondary: None,
                        };
                        let _ = self
                            .deployment_events
                            .publish(&ev, &d.object_ref(&()))
                            .await;
                        self.deployment_errors.insert(uid, message);
                    }
                    continue;
                }
            };
            self.deployment_errors.remove(&uid);
            let api: Api<Pod> = Api::namespaced(self.kube.clone(), &ns);
            for body in plan.create {
                let pod: Pod = match serde_json::from_value(body) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(deployment = %name, error = %e, "pod template does not decode");
                        break;
                    }
                };
                if let Err(e) = api.create(&pp(), &pod).await {
                    tracing::warn!(deployment = %name, error = %e, "cannot create pod");
                    break;
                }
            }
            for p in plan.delete {
                match api.delete(&p, &DeleteParams::default()).await {
                    Ok(_) => tracing::debug!(deployment = %name, pod = %p, "pod deleted"),
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => {
                        tracing::warn!(deployment = %name, pod = %p, error = %e, "cannot delete pod")
                    }
                }
            }
            if let Some(mut status) = plan.status {
                // Counts that dropped to zero are removed (a merge patch keeps absent fields).
                for k in [
                    "replicas",
                    "updatedReplicas",
                    "readyReplicas",
                    "availableReplicas",
                    "unavailableReplicas",
                ] {
                    if status.get(k).is_none() {
                        status[k] = Value::Null;
                    }
                }
                let dapi: Api<Deployment> = Api::namespaced(self.kube.clone(), &ns);
                if let Err(e) = dapi
                    .patch_status(
                        &name,
                        &patch_params(),
                        &Patch::Merge(json!({"status": status})),
                    )
                    .await
                {
                    tracing::debug!(deployment = %name, error = %e, "cannot write status; next pass retries");
                }
            }
        }
    }

    async fn endpoint_slices(&mut self) {
        // No Service with endpoints to manage and no slices of ours: nothing to compute (a
        // sandbox of many nodes and no workloads would otherwise hash every Node on every pass,
        // and every sandbox has `default/kubernetes`, whose endpoints are not ours).
        if !self
            .services
            .state()
            .iter()
            .any(|s| endpointslice::manages(s))
            && self.slices.state().is_empty()
        {
            return;
        }
        let node_refs = self.nodes.state();
        // What the topology cache and the endpoints read of a Node: zone label, allocatable CPU,
        // readiness (not the heartbeat times, which change every few seconds). Hashed in place:
        // this runs over every Node on every pass.
        let nodes_now = {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            for n in &node_refs {
                n.metadata.name.hash(&mut h);
                n.metadata.labels.hash(&mut h);
                let allocatable = n.status.as_ref().and_then(|s| s.allocatable.as_ref());
                for (k, v) in allocatable.into_iter().flatten() {
                    (k, &v.0).hash(&mut h);
                }
                scheduler::node_ready(n).hash(&mut h);
            }
            h.finish()
        };
        let mut requeue: Vec<String> = Vec::new();
        if nodes_now != self.nodes_seen {
            self.nodes_seen = nodes_now;
            self.node_zones = endpointslice::node_zones(node_refs.iter().map(|n| &**n));
            self.topology.set_nodes(node_refs.iter().map(|n| &**n));
            requeue = self.topology.overloaded_services();
        }
        let pods = all(&self.pods);
        let slices = all(&self.slices);
        let services = all(&self.services);
        // Indexed once per pass: with S Services, filtering every slice and Pod per Service
        // made a pass O(S x (slices + Pods)).
        let mut slices_of: HashMap<(String, String), Vec<EndpointSlice>> = HashMap::new();
        for s in &slices {
            if let Some(svc) = s.labels().get(endpointslice::LABEL_SERVICE_NAME) {
                slices_of
                    .entry((s.namespace().unwrap_or_default(), svc.clone()))
                    .or_default()
                    .push(s.clone());
            }
        }
        let mut pods_in: HashMap<String, Vec<&Pod>> = HashMap::new();
        for p in &pods {
            pods_in
                .entry(p.namespace().unwrap_or_else(|| "default".into()))
                .or_default()
                .push(p);
        }
        let mut live: HashSet<String> = HashSet::new();
        for svc in &services {
            let ns = svc.namespace().unwrap_or_else(|| "default".into());
            let key = format!("{ns}/{}", svc.name_any());
            let mine: Vec<EndpointSlice> = slices_of
                .remove(&(ns.clone(), svc.name_any()))
                .unwrap_or_default();
            if !endpointslice::manages(svc) || svc.metadata.deletion_timestamp.is_some() {
                continue;
            }
            live.insert(key.clone());
            // Only the Pods it selects: another Pod's change does not touch this Service.
            let ns_pods: Vec<Pod> = pods_in
                .get(&ns)
                .into_iter()
                .flatten()
                .filter(|p| endpointslice::selected(svc, p))
                .map(|p| (*p).clone())
                .collect();
            let print = fingerprint(
                std::iter::once(json!([
                    svc.metadata.uid,
                    svc.metadata.labels,
                    svc.metadata.annotations,
                    svc.spec
                ]))
                .chain(ns_pods.iter().map(|p| {
                    json!([
                        p.metadata.uid,
                        p.metadata.labels,
                        p.metadata.deletion_timestamp,
                        p.spec.as_ref().map(|s| &s.node_name),
                        p.status
                    ])
                }))
                .chain(
                    mine.iter()
                        .map(|s| json!([s.metadata.name, s.metadata.resource_version])),
                ),
            );
            if self.reconciled.get(&key) == Some(&print) && !requeue.contains(&key) {
                continue;
            }
            let plan =
                endpointslice::plan(svc, &ns_pods, &self.node_zones, &mine, &mut self.topology);
            if self.apply_slices(&ns, svc, plan).await {
                self.reconciled.insert(key, print);
            } else {
                self.reconciled.remove(&key);
            }
        }
        // Slices of Services that are gone or no longer have a selector.
        for s in &slices {
            let ns = s.namespace().unwrap_or_default();
            let Some(svc) = s.labels().get(endpointslice::LABEL_SERVICE_NAME) else {
                continue;
            };
            if live.contains(&format!("{ns}/{svc}")) {
                continue;
            }
            let api: Api<EndpointSlice> = Api::namespaced(self.kube.clone(), &ns);
            match api.delete(&s.name_any(), &DeleteParams::default()).await {
                Ok(_) | Err(kube::Error::Api(_)) => {}
                Err(e) => {
                    tracing::debug!(slice = %s.name_any(), error = %e, "cannot delete orphaned slice")
                }
            }
        }
        self.reconciled.retain(|k, _| live.contains(k));
    }

    /// Writes a Service's slice plan; false when a write failed (the next pass retries).
    async fn apply_slices(
        &mut self,
        ns: &str,
        svc: &Service,
        plan: endpointslice::SlicePlan,
    ) -> bool {
        let api: Api<EndpointSlice> = Api::namespaced(self.kube.clone(), ns);
        let mut ok = true;
        for s in &plan.create {
            if let Err(e) = api.create(&pp(), s).await {
                tracing::warn!(service = %svc.name_any(), error = %e, "cannot create EndpointSlice");
                ok = false;
            }
        }
        for s in &plan.update {
            if let Err(e) = api.replace(&s.name_any(), &pp(), s).await {
                tracing::debug!(service = %svc.name_any(), error = %e, "EndpointSlice update failed; retrying");
                ok = false;
            }
        }
        for name in &plan.delete {
            match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => {
                    tracing::debug!(service = %svc.name_any(), error = %e, "cannot delete EndpointSlice");
                    ok = false;
                }
            }
        }
        for e in plan.events {
            tracing::info!(service = %svc.name_any(), namespace = ns, reason = e.reason, message = %e.message, "topology hints");
            let ev = Event {
                type_: if e.warning {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                reason: e.reason.into(),
                note: Some(e.message),
                action: "UpdateHints".into(),
                secondary: None,
            };
            let _ = self.slice_events.publish(&ev, &svc.object_ref(&())).await;
        }
        ok
    }
}
