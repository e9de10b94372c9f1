//! Simulated kubelets: one per cloud-sim instance, a client of any Kubernetes API server
//! (kube-sim, or the real kube-apiserver of the control-plane fixture) over HTTP.
//!
//! Each behaves as a kubelet started with `--cloud-provider=external`:
//! - an instance that is pending or running gets a Node named after it, tainted
//!   `node.cloudprovider.kubernetes.io/uninitialized`, with only a `Hostname` address, the
//!   `alpha.kubernetes.io/provided-node-ip` annotation (as `--node-ip` sets it), capacity from the
//!   instance type, and no zone labels or provider ID: initialising it is the ccm's job;
//! - while its instance runs it renews its Lease in `kube-node-lease` and posts Ready heartbeats;
//!   when the instance stops or is terminated it falls silent, and the Node stays for the ccm's
//!   node-lifecycle controller to delete; a Node deleted under a running kubelet is registered
//!   again;
//! - it runs the Pods bound to its node: after [`KubeletConfig::pod_start_delay`] each is
//!   Running and Ready with an IP from the node's pod CIDR (host-network Pods have the node's);
//!   a deleted Pod's containers stop within its grace period ([`KubeletConfig::pod_stop_delay`]
//!   at most) and the kubelet removes it, as a real one deletes with grace period 0.
//!
//! Two parts of kube-controller-manager have stand-ins here, for API servers that run without
//! one (kube-sim): node IPAM ([`KubeletConfig::allocate_pod_cidrs`]) and marking a silent
//! kubelet's Node `Unknown`, and its Pods not Ready ([`KubeletConfig::mark_unknown_after`]). Against the real control
//! plane both stay off: kube-controller-manager does them.
//!
//! Changes are followed through cloud-sim's event log (long polling), not by re-listing.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::time::Duration;

use futures_util::StreamExt as _;

use cloud_api::{Instance, InstanceState, InstanceType};
use cloud_client::{Client, InstanceFilter};
use ipnet::Ipv4Net;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::watcher;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub mod dataplane;
pub mod node;
pub mod pods;

pub use node::{
    KUBELET_VERSION, NODE_LEASE_NAMESPACE, PROVIDED_NODE_IP_ANNOTATION, UNINITIALIZED_TAINT,
    provided_ip,
};

/// Tag prefix that marks an instance as a member of a cluster.
pub const CLUSTER_TAG_PREFIX: &str = "kubernetes.io/cluster/";
/// Field manager and user agent of the simulator's writes.
pub const FIELD_MANAGER: &str = "kubelet-sim";

#[derive(Debug, Clone)]
pub struct KubeletConfig {
    pub cloud_url: String,
    pub cloud_token: Option<String>,
    /// Only instances tagged `kubernetes.io/cluster/<name>` become Nodes; all when `None`.
    pub cluster_name: Option<String>,
    /// How often running kubelets post Ready and renew their Lease (a kubelet's
    /// `nodeStatusUpdateFrequency`, 10 s by default).
    pub status_interval: Duration,
    /// `leaseDurationSeconds` of the node Leases (a kubelet's default is 40).
    pub lease_duration: Duration,
    /// Stand-in for node IPAM: give each Node a pod CIDR of this size (prefix length) from this
    /// range at registration. `None` where kube-controller-manager allocates them.
    pub allocate_pod_cidrs: Option<(Ipv4Net, u8)>,
    /// Stand-in for the node-lifecycle controller: turn a silent kubelet's Node conditions
    /// `Unknown` after this long. `None` where kube-controller-manager does it.
    pub mark_unknown_after: Option<Duration>,
    /// Run the sandbox's data plane (see [`dataplane`]): Pods answer on this loopback block (a
    /// pod IP's host part within it, see [`dataplane::on_loopback`]), nodes route node ports and
    /// ClusterIPs as kube-proxy would. `None`: no data plane.
    pub data_plane: Option<ipnet::Ipv4Net>,
    /// How long a Pod bound to a running node takes to be Running and Ready.
    pub pod_start_delay: Duration,
    /// How long a deleted Pod's containers take to stop (never longer than its grace period).
    pub pod_stop_delay: Duration,
}

impl KubeletConfig {
    /// For an API server without kube-controller-manager (kube-sim): the simulator allocates
    /// `/24` pod CIDRs from `cluster_cidr` and marks silent Nodes `Unknown` after `grace`.
    pub fn standalone(cloud_url: &str, cluster_cidr: Ipv4Net, grace: Duration) -> Self {
        Self {
            cloud_url: cloud_url.to_owned(),
            cloud_token: None,
            cluster_name: None,
            status_interval: Duration::from_secs(10),
            lease_duration: Duration::from_secs(40),
            allocate_pod_cidrs: Some((cluster_cidr, 24)),
            mark_unknown_after: Some(grace),
            data_plane: None,
            pod_start_delay: Duration::from_secs(1),
            pod_stop_delay: Duration::from_secs(1),
        }
    }

    /// For the real control plane: kube-controller-manager allocates pod CIDRs and watches
    /// heartbeats.
    pub fn with_controller_manager(cloud_url: &str) -> Self {
        Self {
            allocate_pod_cidrs: None,
            mark_unknown_after: None,
            ..Self::standalone(cloud_url, Ipv4Net::default(), Duration::ZERO)
        }
    }

    /// Defaults for tests against kube-sim: quick heartbeats and a one-second grace period.
    pub fn for_tests(cloud_url: &str) -> Self {
        Self {
            status_interval: Duration::from_millis(200),
            pod_start_delay: Duration::from_millis(200),
            pod_stop_delay: Duration::from_millis(200),
            ..Self::standalone(
                cloud_url,
                "10.244.0.0/16".parse().expect("valid CIDR"),
                Duration::from_secs(1),
            )
        }
    }
}

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot build the cloud client for {url}: {message}")]
    Cloud { url: String, message: String },
    #[error(
        "the data plane's block {block} is smaller than the cluster CIDR {cidr}: pods would share addresses"
    )]
    LoopbackTooSmall { block: Ipv4Net, cidr: Ipv4Net },
    #[error("the data plane's block {block} is not on loopback (127.0.0.0/8)")]
    NotLoopback { block: Ipv4Net },
    #[error("pod CIDRs of /{size} do not fit in the cluster CIDR {cidr}")]
    PodCidrSize { cidr: Ipv4Net, size: u8 },
}

/// The running simulator.
pub struct Kubelets {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Kubelets {
    /// Starts kubelets that write to the API server `kube` talks to.
    pub fn start(config: KubeletConfig, kube: kube::Client) -> Result<Self, Error> {
        if let (Some(block), Some((cidr, _))) = (config.data_plane, config.allocate_pod_cidrs)
            && block.prefix_len() > cidr.prefix_len()
        {
            return Err(Error::LoopbackTooSmall { block, cidr });
        }
        if let Some(block) = config.data_plane
            && !block.network().is_loopback()
        {
            return Err(Error::NotLoopback { block });
        }
        if let Some((cidr, size)) = config.allocate_pod_cidrs
            && (size < cidr.prefix_len() || size > 32)
        {
            return Err(Error::PodCidrSize { cidr, size });
        }
        let mut b = Client::builder(&config.cloud_url).user_agent("kubelet-sim");
        if let Some(t) = &config.cloud_token {
            b = b.token(t);
        }
        let client = b.build().map_err(|e| Error::Cloud {
            url: config.cloud_url.clone(),
            message: e.to_string(),
        })?;
        let stop = CancellationToken::new();
        let rx = stop.clone();
        let task = tokio::spawn(run(
            Sim {
                nodes_api: Api::all(kube.clone()),
                leases: Api::namespaced(kube.clone(), NODE_LEASE_NAMESPACE),
                kube,
                config,
                client,
                nodes: HashMap::new(),
                types: HashMap::new(),
                listeners: Default::default(),
                view: None,
                pods: HashMap::new(),
            },
            rx,
        ));
        Ok(Self { stop, task })
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

/// One simulated kubelet.
#[derive(Debug)]
struct Kubelet {
    instance_id: String,
    node: String,
    ip: Ipv4Addr,
    zone: String,
    /// The kubelet runs while its instance is pending or running.
    running: bool,
    /// Its instance is running (not pending): the kubelet reports Ready.
    ready: bool,
    last_heartbeat: Instant,
    /// Conditions already set to Unknown after the kubelet went quiet.
    marked_unknown: bool,
}

struct Sim {
    config: KubeletConfig,
    kube: kube::Client,
    nodes_api: Api<Node>,
    leases: Api<Lease>,
    client: Client,
    /// By instance ID.
    nodes: HashMap<String, Kubelet>,
    types: HashMap<String, InstanceType>,
    listeners: dataplane::Listeners,
    /// Services and EndpointSlices as kube-proxy watches them (with the data plane on).
    view: Option<dataplane::View>,
    /// Pods bound to our nodes, by (namespace, name).
    pods: HashMap<(String, String), PodWork>,
}

/// A Pod bound to one of our nodes, and what its kubelet is to do next.
#[derive(Debug, Clone)]
struct PodWork {
    uid: String,
    node: String,
    ip: Option<Ipv4Addr>,
    /// TCP container ports (where the Pod answers); empty for host-network Pods.
    ports: Vec<u16>,
    /// Running, as last seen.
    running: bool,
    /// Its Ready condition is True, as last seen.
    ready: bool,
    /// The deletion grace period, from the Pod.
    grace: Duration,
    due: Option<(Instant, PodAction)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PodAction {
    /// Post Running and Ready.
    Start,
    /// The containers stopped: remove the Pod (delete with grace period 0).
    Remove,
}

async fn run(mut sim: Sim, stop: CancellationToken) {
    // Start following the log before listing, so nothing between the two is missed.
    let head = loop {
        match sim.client.event_head().await {
            Ok(h) => break h,
            Err(e) => {
                tracing::warn!(error = %e, "kubelets: cloud not reachable yet; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.cancelled() => return,
                }
            }
        }
    };
    match sim.client.instance_types().await {
        Ok(types) => sim.types = types.into_iter().map(|t| (t.name.clone(), t)).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "kubelets: cannot read instance types; nodes get default capacity")
        }
    }
    match sim
        .client
        .list_all_instances(&InstanceFilter::default())
        .await
    {
        Ok(all) => {
            for i in all {
                sim.reconcile(&i).await;
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "kubelets: initial instance list failed; following events only")
        }
    }
    let (tx, mut changed) = mpsc::channel::<String>(1024);
    let poller = tokio::spawn(follow_events(sim.client.clone(), head, tx));
    let mut tick = tokio::time::interval(sim.config.status_interval.max(Duration::from_millis(50)));
    let mut ports_tick = tokio::time::interval(Duration::from_millis(500));
    let mut pod_tick = tokio::time::interval(Duration::from_millis(100));
    let mut pod_events = watcher(
        Api::<Pod>::all(sim.kube.clone()),
        watcher::Config::default(),
    )
    .boxed();
    let mut reflectors = Vec::new();
    if let Some(block) = sim.config.data_plane {
        // kube-proxy's informers.
        let (services, t1) = sim_common::reflect(
            Api::<Service>::all(sim.kube.clone()),
            Default::default(),
            None,
        );
        let (slices, t2) = sim_common::reflect(
            Api::<EndpointSlice>::all(sim.kube.clone()),
            Default::default(),
            None,
        );
        reflectors.extend([t1, t2]);
        sim.view = Some(dataplane::View::new(services, slices, block));
    }
    loop {
        tokio::select! {
            ev = pod_events.next() => match ev {
                Some(Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p))) => sim.pod_seen(&p),
                Some(Ok(watcher::Event::Delete(p))) => sim.pod_gone(&p),
                Some(Ok(_)) => {}
                Some(Err(e)) => tracing::debug!(error = %e, "kubelets: pod watch interrupted; it resumes"),
                None => break,
            },
            _ = pod_tick.tick() => sim.pod_work().await,
            id = changed.recv() => {
                let Some(id) = id else { break };
                match sim.client.get_instance(&id).await {
                    Ok(Some(i)) => sim.reconcile(&i).await,
                    Ok(None) => sim.instance_gone(&id),
                    Err(e) => tracing::warn!(instance = %id, error = %e, "kubelets: cannot read instance"),
                }
            }
            _ = tick.tick() => sim.heartbeats().await,
            _ = ports_tick.tick(), if sim.config.data_plane.is_some() => sim.sync_data_plane(),
            _ = stop.cancelled() => break,
        }
    }
    sim.listeners.stop();
    reflectors.iter().for_each(JoinHandle::abort);
    poller.abort();
}

/// Long-polls the event log and sends the IDs of instances that changed.
async fn follow_events(client: Client, mut after: i64, tx: mpsc::Sender<String>) {
    loop {
        match client.events(after, 500, Duration::from_secs(25)).await {
            Ok(page) => {
                for e in page
                    .events
                    .iter()
                    .filter(|e| e.resource_kind == cloud_api::ResourceKind::Instance)
                {
                    if tx.send(e.resource_id.clone()).await.is_err() {
                        return;
                    }
                }
                after = page.last_seq.max(after);
            }
            Err(e) => {
                tracing::warn!(error = %e, "kubelets: reading the cloud event log failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

fn strategic(v: Value) -> Patch<Value> {
    Patch::Strategic(v)
}

impl Sim {
    /// The data plane's listeners for the running nodes and Pods (kube-proxy's and the
    /// Pods' part, see [`dataplane`]).
    fn sync_data_plane(&mut self) {
        let Some(view) = self.view.clone() else {
            return;
        };
        let services: Vec<Service> = view
            .services
            .state()
            .iter()
            .map(|s| (**s).clone())
            .collect();
        let running: HashMap<&str, &Kubelet> = self
            .nodes
            .values()
            .filter(|k| k.running)
            .map(|k| (k.node.as_str(), k))
            .collect();
        let nodes: Vec<dataplane::NodeEndpoint> = running
            .values()
            .map(|k| dataplane::NodeEndpoint {
                name: k.node.clone(),
                ip: k.ip,
                zone: k.zone.clone(),
            })
            .collect();
        let pods: Vec<dataplane::PodEndpoint> = self
            .pods
            .iter()
            .filter(|(_, w)| w.running && !w.ports.is_empty())
            .filter_map(|((_, name), w)| {
                let k = running.get(w.node.as_str())?;
                Some(dataplane::PodEndpoint {
                    name: name.clone(),
                    ip: dataplane::on_loopback(w.ip?, view.loopback),
                    ports: w.ports.clone(),
                    node: w.node.clone(),
                    zone: k.zone.clone(),
                })
            })
            .collect();
        let want = dataplane::desired(&services, &nodes, &pods);
        self.listeners.sync(&view, want);
    }

    fn member(&self, i: &Instance) -> bool {
        match &self.config.cluster_name {
            None => true,
            Some(c) => i.tags.contains_key(&format!("{CLUSTER_TAG_PREFIX}{c}")),
        }
    }

    async fn reconcile(&mut self, i: &Instance) {
        if !self.member(i) {
            return;
        }
        let runs = matches!(i.state, InstanceState::Pending | InstanceState::Running);
        let id = i.id.to_string();
        let was_running = self.nodes.get(&id).is_some_and(|k| k.running);
        let was_ready = self.nodes.get(&id).is_some_and(|k| k.ready);
        if runs {
            let ready = i.state == InstanceState::Running;
            if !self.node_exists(&i.name).await {
                if let Err(e) = self.register(i).await {
                    tracing::warn!(node = %i.name, error = %e, "kubelet: registration failed");
                    return;
                }
                tracing::info!(node = %i.name, instance = %id, ip = %i.private_ip, "kubelet: node registered");
            }
            let k = self.nodes.entry(id.clone()).or_insert_with(|| Kubelet {
                instance_id: id.clone(),
                node: i.name.clone(),
                ip: i.private_ip,
                zone: i.zone.clone(),
                running: true,
                ready,
                last_heartbeat: Instant::now(),
                marked_unknown: false,
            });
            k.running = true;
            k.ready = ready;
            k.last_heartbeat = Instant::now();
            k.marked_unknown = false;
            let name = i.name.clone();
            if ready && !(was_running && was_ready) {
                // A kubelet whose node is (again) up and Ready reports the Pods bound to it.
                let due = Instant::now() + self.config.pod_start_delay;
                for w in self.pods.values_mut().filter(|w| w.node == name) {
                    if w.due.is_none() {
                        w.due = Some((due, PodAction::Start));
                    }
                }
            }
            self.post_status(&name, ready).await;
        } else if let Some(k) = self.nodes.get_mut(&id) {
            if was_running {
                tracing::info!(node = %k.node, instance = %id, state = %i.state, "kubelet: stopped with its instance");
            }
            k.running = false;
        }
    }

    fn instance_gone(&mut self, id: &str) {
        if let Some(k) = self.nodes.get_mut(id) {
            k.running = false;
        }
    }

    async fn node_exists(&self, name: &str) -> bool {
        // An API error counts as "exists": registering again would only fail with a conflict.
        !matches!(self.nodes_api.get_opt(name).await, Ok(None))
    }

    /// The first pod CIDR of the cluster CIDR that no Node has (node IPAM's stand-in).
    async fn next_pod_cidr(&self, cidr: Ipv4Net, size: u8) -> Result<String, String> {
        let list = self
            .nodes_api
            .list(&ListParams::default())
            .await
            .map_err(|e| format!("cannot list Nodes: {e}"))?;
        let used: BTreeSet<String> = list
            .items
            .into_iter()
            .filter_map(|n| n.spec?.pod_cidr)
            .collect();
        cidr.subnets(size)
            .map_err(|e| e.to_string())?
            .find(|s| !used.contains(&s.to_string()))
            .map(|s| s.to_string())
            .ok_or_else(|| format!("the cluster CIDR {cidr} has no free /{size} left"))
    }

    async fn register(&self, i: &Instance) -> Result<(), String> {
        let cap = self.types.get(&i.instance_type).map_or(
            node::Capacity {
                cpu: 2,
                memory_mib: 4096,
            },
            |t| node::Capacity {
                cpu: t.vcpus,
                memory_mib: t.memory_mib,
            },
        );
        let pod_cidr = match self.config.allocate_pod_cidrs {
            Some((cidr, size)) => Some(self.next_pod_cidr(cidr, size).await?),
            None => None,
        };
        let body = node::registration(i, cap, pod_cidr.as_deref(), &node::now_time());
        let n: Node = serde_json::from_value(body).map_err(|e| e.to_string())?;
        let pp = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..Default::default()
        };
        match self.nodes_api.create(&pp, &n).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Posts the Ready condition (and the pressure conditions) and renews the node's Lease.
    async fn post_status(&self, node: &str, ready: bool) {
        let Ok(Some(current)) = self.nodes_api.get_opt(node).await else {
            return;
        };
        let now = node::now_time();
        let current_json = serde_json::to_value(&current).unwrap_or_default();
        let transition = node::ready_transition(&current_json, ready, &now);
        let patch = json!({"status": {"conditions": node::conditions(ready, &now, &transition)}});
        let pp = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..Default::default()
        };
        if let Err(e) = self
            .nodes_api
            .patch_status(node, &pp, &strategic(patch))
            .await
        {
            tracing::warn!(node, error = %e, "kubelet: status update failed");
        }
        let uid = current.metadata.uid.unwrap_or_default();
        self.renew_lease(node, &uid).await;
    }

    async fn renew_lease(&self, node: &str, uid: &str) {
        let secs = i64::try_from(self.config.lease_duration.as_secs()).unwrap_or(40);
        let renew = node::now_micro_time();
        let pp = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..Default::default()
        };
        let patch = json!({"spec": {"renewTime": renew, "holderIdentity": node, "leaseDurationSeconds": secs}});
        match self.leases.patch(node, &pp, &Patch::Merge(patch)).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {
                let lease = node::lease(node, uid, secs, &renew);
                let Ok(lease) = serde_json::from_value::<Lease>(lease) else {
                    return;
                };
                let pp = PostParams {
                    field_manager: Some(FIELD_MANAGER.to_owned()),
                    ..Default::default()
                };
                if let Err(e) = self.leases.create(&pp, &lease).await {
                    tracing::warn!(node, error = %e, "kubelet: cannot create its Lease");
                }
            }
            Err(e) => tracing::warn!(node, error = %e, "kubelet: cannot renew its Lease"),
        }
    }

    /// Running kubelets heartbeat; quiet ones turn Unknown after the grace period (where the
    /// simulator stands in for the node-lifecycle controller).
    async fn heartbeats(&mut self) {
        let mut beat = Vec::new();
        let mut unknown = Vec::new();
        for k in self.nodes.values_mut() {
            if k.running {
                if k.last_heartbeat.elapsed() >= self.config.status_interval {
                    k.last_heartbeat = Instant::now();
                    beat.push((k.node.clone(), k.instance_id.clone(), k.ready));
                }
            } else if let Some(grace) = self.config.mark_unknown_after
                && !k.marked_unknown
                && k.last_heartbeat.elapsed() >= grace
            {
                k.marked_unknown = true;
                unknown.push((k.node.clone(), k.instance_id.clone()));
            }
        }
        for (node, id, ready) in beat {
            if self.node_exists(&node).await {
                self.post_status(&node, ready).await;
                continue;
            }
            // The Node was deleted under a running kubelet: it registers again, as a real one does.
            tracing::info!(
                node,
                "kubelet: node object gone while running; re-registering"
            );
            if let Ok(Some(i)) = self.client.get_instance(&id).await
                && let Err(e) = self.register(&i).await
            {
                tracing::warn!(node, error = %e, "kubelet: re-registration failed");
            }
        }
        for (node, id) in unknown {
            let Ok(Some(current)) = self.nodes_api.get_opt(&node).await else {
                continue;
            };
            let conds = node::unknown_conditions(
                &serde_json::to_value(&current).unwrap_or_default(),
                &node::now_time(),
            );
            let patch = json!({"status": {"conditions": conds}});
            match self
                .nodes_api
                .patch_status(&node, &PatchParams::default(), &strategic(patch))
                .await
            {
                Ok(_) => {
                    tracing::info!(node, instance = %id, "node status unknown: kubelet stopped posting")
                }
                Err(e) => tracing::warn!(node, error = %e, "cannot mark node unknown"),
            }
            self.mark_pods_not_ready(&node).await;
        }
    }

    /// A Pod changed: note it if it is bound to one of our nodes, and plan its next step.
    fn pod_seen(&mut self, p: &Pod) {
        let (Some(ns), Some(name), Some(uid)) = (
            p.metadata.namespace.clone(),
            p.metadata.name.clone(),
            p.metadata.uid.clone(),
        ) else {
            return;
        };
        let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            return;
        };
        let Some(kubelet) = self.nodes.values().find(|k| k.node == node) else {
            return;
        };
        // A kubelet acts for its Pods while its node runs and is Ready (not while booting).
        let running = kubelet.running && kubelet.ready;
        let grace = p
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| p.spec.as_ref()?.termination_grace_period_seconds)
            .unwrap_or(30);
        let key = (ns, name);
        let fresh = || PodWork {
            uid: uid.clone(),
            node: node.clone(),
            ip: None,
            ports: pods::tcp_ports(p),
            running: false,
            ready: false,
            grace: Duration::ZERO,
            due: None,
        };
        let w = self.pods.entry(key).or_insert_with(fresh);
        if w.uid != uid {
            // The same name again: a new Pod.
            *w = fresh();
        }
        w.ready = p
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        w.grace = Duration::from_secs(u64::try_from(grace).unwrap_or(0));
        w.running = pods::phase(p) == pods::PodPhase::Running
            || pods::phase(p) == pods::PodPhase::Terminating;
        if let Some(ip) = pods::pod_ip(p) {
            w.ip = Some(ip);
        }
        let now = Instant::now();
        match pods::phase(p) {
            pods::PodPhase::Starting if running && w.due.is_none() => {
                w.due = Some((now + self.config.pod_start_delay, PodAction::Start));
            }
            pods::PodPhase::Terminating
                if running && !matches!(w.due, Some((_, PodAction::Remove))) =>
            {
                let stop = self.config.pod_stop_delay.min(w.grace);
                w.due = Some((now + stop, PodAction::Remove));
            }
            // Someone else (the node-lifecycle controller, while it still saw the node NotReady)
            // marked a running Pod not Ready: its kubelet reports the truth again, as a real
            // kubelet's status manager does.
            pods::PodPhase::Running if running && !w.ready && w.due.is_none() => {
                w.due = Some((now + self.config.pod_start_delay, PodAction::Start));
            }
            pods::PodPhase::Running if w.ready && matches!(w.due, Some((_, PodAction::Start))) => {
                w.due = None;
            }
            _ => {}
        }
    }

    fn pod_gone(&mut self, p: &Pod) {
        if let (Some(ns), Some(name)) = (p.metadata.namespace.clone(), p.metadata.name.clone()) {
            self.pods.remove(&(ns, name));
        }
    }

    /// Does what is due: starts Pods, removes the ones whose containers stopped.
    async fn pod_work(&mut self) {
        let now = Instant::now();
        let due: Vec<((String, String), PodAction)> = self
            .pods
            .iter()
            .filter_map(|(k, w)| match w.due {
                Some((at, action)) if at <= now => Some((k.clone(), action)),
                _ => None,
            })
            .collect();
        for (key, action) in due {
            let Some(w) = self.pods.get(&key).cloned() else {
                continue;
            };
            let up = self
                .nodes
                .values()
                .any(|k| k.node == w.node && k.running && k.ready);
            if !up {
                // A dead or booting kubelet does nothing yet; the work waits for it.
                continue;
            }
            if let Some(p) = self.pods.get_mut(&key) {
                p.due = None;
            }
            let api: Api<Pod> = Api::namespaced(self.kube.clone(), &key.0);
            match action {
                PodAction::Start => self.start_pod(&api, &key, &w).await,
                PodAction::Remove => {
                    let dp = DeleteParams {
                        grace_period_seconds: Some(0),
                        preconditions: Some(Preconditions {
                            uid: Some(w.uid.clone()),
                            resource_version: None,
                        }),
                        ..Default::default()
                    };
                    match api.delete(&key.1, &dp).await {
                        Ok(_) => {
                            tracing::debug!(pod = %key.1, namespace = %key.0, "kubelet: pod stopped and removed")
                        }
                        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                        Err(e) => {
                            tracing::warn!(pod = %key.1, error = %e, "kubelet: cannot remove pod")
                        }
                    }
                }
            }
        }
    }

    /// Posts Running and Ready with an IP from the node's pod CIDR.
    async fn start_pod(&mut self, api: &Api<Pod>, key: &(String, String), w: &PodWork) {
        let retry = |sim: &mut Self| {
            if let Some(w) = sim.pods.get_mut(key) {
                w.due = Some((
                    Instant::now() + Duration::from_millis(500),
                    PodAction::Start,
                ));
            }
        };
        let Ok(Some(pod)) = api.get_opt(&key.1).await else {
            return;
        };
        if pod.metadata.uid.as_deref() != Some(w.uid.as_str())
            || pods::phase(&pod) == pods::PodPhase::Terminating
        {
            return;
        }
        let Some(host_ip) = self.nodes.values().find(|k| k.node == w.node).map(|k| k.ip) else {
            return;
        };
        let ip = match w.ip {
            Some(ip) => ip,
            None => {
                let cidr = match self.nodes_api.get_opt(&w.node).await {
                    Ok(Some(n)) => n.spec.and_then(|s| s.pod_cidr).and_then(|c| c.parse().ok()),
                    _ => None,
                };
                let Some(cidr) = cidr else {
                    // No pod CIDR yet (node IPAM has not reached this node): try again soon.
                    retry(self);
                    return;
                };
                let used: BTreeSet<Ipv4Addr> = self
                    .pods
                    .values()
                    .filter(|o| o.node == w.node)
                    .filter_map(|o| o.ip)
                    .collect();
                let Some(ip) = pods::next_pod_ip(cidr, &used) else {
                    tracing::warn!(node = %w.node, %cidr, "kubelet: the node's pod CIDR is full");
                    retry(self);
                    return;
                };
                ip
            }
        };
        if let Some(me) = self.pods.get_mut(key) {
            me.ip = Some(ip);
        }
        let status = pods::running_status(&pod, host_ip, ip, &node::now_time());
        let pp = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..Default::default()
        };
        match api.patch_status(&key.1, &pp, &strategic(status)).await {
            Ok(_) => tracing::debug!(pod = %key.1, namespace = %key.0, %ip, "kubelet: pod running"),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                tracing::warn!(pod = %key.1, error = %e, "kubelet: cannot report the pod running");
                retry(self);
            }
        }
    }

    /// The node stopped reporting: its Pods are not Ready (the node-lifecycle controller's
    /// job; only where the simulator stands in for it).
    async fn mark_pods_not_ready(&mut self, node: &str) {
        let on_node: Vec<(String, String)> = self
            .pods
            .iter()
            .filter(|(_, w)| w.node == node)
            .map(|(k, _)| k.clone())
            .collect();
        let patch = pods::not_ready_status(&node::now_time());
        for (ns, name) in on_node {
            let api: Api<Pod> = Api::namespaced(self.kube.clone(), &ns);
            if let Err(e) = api
                .patch_status(&name, &PatchParams::default(), &strategic(patch.clone()))
                .await
            {
                tracing::debug!(pod = %name, error = %e, "cannot mark pod not ready");
            }
        }
    }
}
