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
//!   again.
//!
//! Two parts of kube-controller-manager have stand-ins here, for API servers that run without
//! one (kube-sim): node IPAM ([`KubeletConfig::allocate_pod_cidrs`]) and marking a silent
//! kubelet's Node `Unknown` ([`KubeletConfig::mark_unknown_after`]). Against the real control
//! plane both stay off: kube-controller-manager does them.
//!
//! Changes are followed through cloud-sim's event log (long polling), not by re-listing.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::time::Duration;

use cloud_api::{Instance, InstanceState, InstanceType};
use cloud_client::{Client, InstanceFilter};
use ipnet::Ipv4Net;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Service};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub mod node;
pub mod node_ports;

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
    /// Answer on node ports as kube-proxy and a pod would (see [`node_ports`]).
    pub serve_node_ports: bool,
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
            serve_node_ports: false,
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
    #[error("pod CIDRs of /{size} do not fit in the cluster CIDR {cidr}")]
    PodCidrSize { cidr: Ipv4Net, size: u8 },
}

/// The running simulator.
pub struct Kubelets {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Kubelets {
    /// Starts kubelets that write to the API server `kube` talks to.
    pub fn start(config: KubeletConfig, kube: kube::Client) -> Result<Self, Error> {
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
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(run(
            Sim {
                nodes_api: Api::all(kube.clone()),
                leases: Api::namespaced(kube.clone(), NODE_LEASE_NAMESPACE),
                kube,
                config,
                client,
                nodes: HashMap::new(),
                types: HashMap::new(),
                ports: Default::default(),
            },
            rx,
        ));
        Ok(Self { stop, task })
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
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
    ports: node_ports::NodePorts,
}

async fn run(mut sim: Sim, mut stop: watch::Receiver<bool>) {
    // Start following the log before listing, so nothing between the two is missed.
    let head = loop {
        match sim.client.event_head().await {
            Ok(h) => break h,
            Err(e) => {
                tracing::warn!(error = %e, "kubelets: cloud not reachable yet; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.changed() => return,
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
    loop {
        tokio::select! {
            id = changed.recv() => {
                let Some(id) = id else { break };
                match sim.client.get_instance(&id).await {
                    Ok(Some(i)) => sim.reconcile(&i).await,
                    Ok(None) => sim.instance_gone(&id),
                    Err(e) => tracing::warn!(instance = %id, error = %e, "kubelets: cannot read instance"),
                }
            }
            _ = tick.tick() => sim.heartbeats().await,
            _ = ports_tick.tick(), if sim.config.serve_node_ports => sim.sync_node_ports().await,
            _ = stop.changed() => break,
        }
    }
    sim.ports.stop();
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
    /// Node ports for every NodePort/LoadBalancer Service on every running node.
    async fn sync_node_ports(&mut self) {
        let services = match Api::<Service>::all(self.kube.clone())
            .list(&ListParams::default())
            .await
        {
            Ok(l) => l.items,
            Err(e) => {
                tracing::debug!(error = %e, "node ports: cannot list Services");
                return;
            }
        };
        let nodes: Vec<node_ports::NodeEndpoint> = self
            .nodes
            .values()
            .filter(|k| k.running)
            .map(|k| node_ports::NodeEndpoint {
                name: k.node.clone(),
                ip: k.ip,
                zone: k.zone.clone(),
            })
            .collect();
        let want = node_ports::desired(&services, &nodes);
        self.ports.sync(&self.kube, want);
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
        }
    }
}
