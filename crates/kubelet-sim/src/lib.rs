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

use std::collections::{BTreeSet, HashMap, HashSet};
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
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub mod dataplane;
pub mod node;
mod pod_lifecycle;
pub mod pods;
mod registration;

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
    /// How often running kubelets renew their Lease (the heartbeat kube-controller-manager's
    /// node-lifecycle controller follows; a kubelet renews every quarter of the Lease's
    /// duration, 10 s by default).
    pub status_interval: Duration,
    /// How often a running kubelet reports its node's status when nothing changed (a
    /// kubelet's `nodeStatusReportFrequency`, 5 min by default); a change is reported at once.
    pub status_report_interval: Duration,
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
            status_report_interval: Duration::from_secs(300),
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
        // The Nodes as a watch shows them, trimmed to names, UIDs and specs (pod CIDRs): which
        // exist, and which pod CIDRs are taken, without a request per question.
        let (node_store, node_watch) = sim_common::reflect_trimmed(
            Api::<Node>::all(kube.clone()),
            watcher::Config::default(),
            None,
            |n: &mut Node| {
                n.status = None;
                n.metadata.managed_fields = None;
                n.metadata.annotations = None;
                n.metadata.labels = None;
            },
        );
        let task = tokio::spawn(run(
            Sim {
                node_store,
                node_watch,
                pending: HashMap::new(),
                taken_cidrs: None,
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
    /// When it last reported its node's status.
    last_report: Instant,
    /// Conditions already set to Unknown after the kubelet went quiet.
    marked_unknown: bool,
}

struct Sim {
    config: KubeletConfig,
    kube: kube::Client,
    nodes_api: Api<Node>,
    /// Every Node (trimmed), from a watch.
    node_store: Store<Node>,
    node_watch: JoinHandle<()>,
    /// Nodes registered by this simulator that the watch has not shown yet, by name.
    pending: HashMap<String, registration::Pending>,
    /// Pod CIDRs taken, as last read from the watch (and when), plus those allocated since.
    taken_cidrs: Option<(Instant, HashSet<Ipv4Net>)>,
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
    // Which Nodes exist (and which pod CIDRs are taken) must be known before registering.
    tokio::select! {
        r = sim.node_store.wait_until_ready() => if r.is_err() { return },
        _ = stop.cancelled() => return,
    }
    match sim
        .client
        .list_all_instances(&InstanceFilter::default())
        .await
    {
        Ok(all) => sim.reconcile_all(all).await,
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
                // Everything queued behind it too: a thousand new instances are one pass.
                let mut ids = vec![id];
                while ids.len() < BATCH && let Ok(id) = changed.try_recv() {
                    ids.push(id);
                }
                sim.instances_changed(ids).await;
            }
            _ = tick.tick() => sim.heartbeats().await,
            _ = ports_tick.tick(), if sim.config.data_plane.is_some() => sim.sync_data_plane(),
            _ = stop.cancelled() => break,
        }
    }
    sim.listeners.stop();
    reflectors.iter().for_each(JoinHandle::abort);
    sim.node_watch.abort();
    poller.abort();
}

/// Instance changes handled in one pass at most.
const BATCH: usize = 1024;

impl Sim {
    /// Reads the instances behind `ids` (each once, [`cloud_api::MAX_LIST_IDS`] to a list
    /// request) and reconciles their kubelets.
    async fn instances_changed(&mut self, mut ids: Vec<String>) {
        ids.sort_unstable();
        ids.dedup();
        let client = &self.client;
        let chunks: Vec<Vec<String>> = ids
            .chunks(cloud_api::MAX_LIST_IDS)
            .map(<[String]>::to_vec)
            .collect();
        let read: Vec<(Vec<String>, cloud_client::Result<Vec<Instance>>)> =
            futures_util::stream::iter(chunks)
                .map(|ids| async move {
                    let filter = InstanceFilter {
                        ids,
                        ..InstanceFilter::default()
                    };
                    let r = client.list_all_instances(&filter).await;
                    (filter.ids, r)
                })
                .buffer_unordered(4)
                .collect()
                .await;
        let mut present = Vec::new();
        for (asked, r) in read {
            match r {
                Ok(found) => {
                    for id in &asked {
                        if !found.iter().any(|i| i.id.as_str() == id) {
                            self.instance_gone(id);
                        }
                    }
                    present.extend(found);
                }
                Err(e) => tracing::warn!(
                    instances = asked.len(),
                    first = %asked[0],
                    error = %e,
                    "kubelets: cannot read changed instances"
                ),
            }
        }
        self.reconcile_all(present).await;
    }
}

/// Events read per poll of the cloud's log.
const EVENTS_PER_POLL: u32 = 500;
/// After a poll that the first new events ended, how long to let more gather before the next.
const POLL_COALESCE: Duration = Duration::from_millis(20);

/// How long to wait before the next poll after one that returned `events` events. A poll returns
/// as soon as anything is logged, so under a stream of writes (900 a second at 10,000 sandbox
/// nodes) polling again at once costs a request per commit; a full page or a quiet log (the poll
/// ran to its end) means polling again at once.
fn pause_before_next_poll(events: usize) -> Duration {
    match u32::try_from(events) {
        Ok(0) => Duration::ZERO,
        Ok(n) if n < EVENTS_PER_POLL => POLL_COALESCE,
        _ => Duration::ZERO,
    }
}

/// Long-polls the event log and sends the IDs of instances that changed.
async fn follow_events(client: Client, mut after: i64, tx: mpsc::Sender<String>) {
    loop {
        match client
            .events(after, EVENTS_PER_POLL, Duration::from_secs(25))
            .await
        {
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
                tokio::time::sleep(pause_before_next_poll(page.events.len())).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poll_ended_by_new_events_lets_more_gather_before_the_next() {
        let full = usize::try_from(EVENTS_PER_POLL).unwrap();
        for (events, pause) in [
            (0, Duration::ZERO),
            (1, POLL_COALESCE),
            (full - 1, POLL_COALESCE),
            (full, Duration::ZERO),
        ] {
            assert_eq!(pause_before_next_poll(events), pause, "{events} events");
        }
    }
}
