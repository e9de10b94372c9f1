//! `simctl up`: the local sandbox in one process, no Docker. cloud-sim keeps its state in a SQLite
//! file under the data dir, kube-sim (or, with `--control-plane real`, the real kube-apiserver,
//! kube-controller-manager and kube-scheduler of the test fixture) serves the Kubernetes API,
//! simulated kubelets register one Node per instance, and the ccm initialises the nodes. Runs
//! until Ctrl-C.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use ccm::cloud::CloudProvider;
use ccm::controllers::ControllerName;
use cloud_api::{CreateInstanceRequest, InstanceState, Tags};
use cloud_client::{Client, InstanceFilter};
use k8s_openapi::api::core::v1::Node;
use kubelet_sim::{CLUSTER_TAG_PREFIX, KubeletConfig, Kubelets};

use crate::sizing::Sizing;

/// Which Kubernetes API server the sandbox runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ControlPlaneKind {
    /// kube-sim: in memory, in this process, starts in milliseconds; no Go needed.
    KubeSim,
    /// The real etcd, kube-apiserver, kube-controller-manager and kube-scheduler built by
    /// `tests/control-plane/build.sh` (node IPAM, node lifecycle and EndpointSlices by
    /// kube-controller-manager itself).
    Real,
}

/// Where the sandbox's cloud-controller-manager runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CcmMode {
    /// In this process, with no client-side rate limit.
    InProcess,
    /// Not started: run your own (the `ccm` binary, or a build under test) against the
    /// sandbox; `simctl up` writes its cloud config and prints the command line, then waits for
    /// it to initialise the nodes.
    None,
}

#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    /// Where cloud-sim's database and the kubeconfig live (kept across runs).
    #[arg(long, env = "SIMCTL_DATA_DIR", default_value = ".simcloud")]
    pub data_dir: PathBuf,

    /// Nodes (instances) the cluster should have; missing ones are created, spread over the zones.
    #[arg(long, default_value_t = 6)]
    pub nodes: usize,

    /// Zones of the region.
    #[arg(long, value_delimiter = ',', default_value = "zone-a,zone-b,zone-c")]
    pub zones: Vec<String>,

    /// Instance type of new nodes.
    #[arg(long = "instance-type", default_value = "sim.medium")]
    pub instance_type: String,

    /// cloud-sim's API address (port 0 picks one; it is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub cloud_listen: SocketAddr,

    /// The Kubernetes API server: `kube-sim`, or `real` (the control plane built by
    /// `tests/control-plane/build.sh`, on free loopback ports).
    #[arg(long, value_enum, default_value = "kube-sim")]
    pub control_plane: ControlPlaneKind,

    /// kube-sim's API address (port 0 picks one; the kubeconfig records it). The real control
    /// plane always picks free ports.
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub kube_listen: SocketAddr,

    /// Per-zone instance subnets as `zone=cidr`, comma-separated (default: sized for the zone's
    /// nodes, 127.1.<n>.0/24 for the n-th zone up to 253 nodes, larger blocks from 127.1.0.0
    /// beyond). Nodes serve their node ports on these addresses, so a second sandbox on this
    /// machine needs subnets of its own.
    #[arg(long, value_delimiter = ',', value_parser = cloud_sim::config::parse_zone_cidr)]
    pub instance_subnets: Vec<(String, ipnet::Ipv4Net)>,

    /// Per-zone load-balancer frontend pools as `zone=cidr`, comma-separated (default
    /// 127.64.<n>.0/24: room for 253 load balancers, each taking an address in every zone).
    /// Load balancers listen on these addresses; a second sandbox on this machine needs pools
    /// of its own.
    #[arg(long, value_delimiter = ',', value_parser = cloud_sim::config::parse_zone_cidr)]
    pub lb_pools: Vec<(String, ipnet::Ipv4Net)>,

    /// The pod network: node IPAM gives each node a /--node-cidr-mask-size of it (default:
    /// 10.244.0.0/16, widened as --nodes needs, e.g. a /14 for 1,000 nodes of /24).
    #[arg(long)]
    pub cluster_cidr: Option<ipnet::Ipv4Net>,

    /// The size of each node's pod CIDR within --cluster-cidr.
    #[arg(long, default_value_t = 24)]
    pub node_cidr_mask_size: u8,

    /// Where Pods listen: a pod IP's host part within this loopback block (10.244.3.7 answers
    /// at 127.244.3.7; the API server refuses loopback addresses in EndpointSlices). At least
    /// as large as --cluster-cidr (default: 127.244.0.0/16, widened with it); a second sandbox
    /// on this machine needs a block of its own.
    #[arg(long)]
    pub pod_loopback_cidr: Option<ipnet::Ipv4Net>,

    /// Cluster name: instances are tagged `kubernetes.io/cluster/<name>`.
    #[arg(long, default_value = "simcloud")]
    pub cluster_name: String,

    /// How long new instances stay pending.
    #[arg(long, default_value = "1s", value_parser = sim_common::parse_duration)]
    pub boot_delay: Duration,

    /// How long after an instance stops its Node turns NotReady (the kubelets' grace period).
    #[arg(long, default_value = "40s", value_parser = sim_common::parse_duration)]
    pub node_monitor_grace_period: Duration,

    /// How often the ccm's node-lifecycle controller checks NotReady nodes.
    #[arg(long, default_value = "5s", value_parser = sim_common::parse_duration)]
    pub node_monitor_period: Duration,

    /// Most routes cloud-sim's route table holds; each node needs one for its pod CIDR
    /// (default: 50, or --nodes when more; below --nodes, some nodes go without, as on a cloud
    /// at its quota).
    #[arg(long)]
    pub route_quota: Option<u32>,

    /// Where the cloud-controller-manager runs.
    #[arg(long, value_enum, default_value = "in-process")]
    pub ccm: CcmMode,

    /// Serve traffic: load balancers (cloud-sim) and node ports, Pods and kube-proxy
    /// (kubelet-sim). Each node holds a listener per node port, so thousands of nodes times many
    /// Services run out of file descriptors; `--data-plane=false` keeps the control planes only.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
        require_equals = true, default_missing_value = "true")]
    pub data_plane: bool,

    /// Give up if the nodes are not all initialised within this long.
    #[arg(long, default_value = "120s", value_parser = sim_common::parse_duration)]
    pub timeout: Duration,

    /// Log filter in `tracing` syntax.
    #[arg(long, env = "SIMCTL_LOG", default_value = "warn")]
    pub log_filter: String,
}

/// Node names `simctl up` manages: `node-1` .. `node-N`.
pub fn node_names(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("node-{i}")).collect()
}

/// How long the node count may stand still before the wait says what it is waiting for.
pub const STALL: Duration = Duration::from_secs(5);

/// The zone of the i-th node (0-based): round robin.
pub fn zone_for(i: usize, zones: &[String]) -> &str {
    &zones[i % zones.len()]
}

/// What [`node_states`] reads of a Node is its name and taints: the wait's store keeps only
/// those (at 10,000 Nodes the rest would be tens of MiB of the sandbox's memory).
fn trim_for_wait(n: &mut Node) {
    *n = Node {
        metadata: kube::api::ObjectMeta {
            name: n.metadata.name.take(),
            resource_version: n.metadata.resource_version.take(),
            ..Default::default()
        },
        spec: n.spec.take().map(|s| k8s_openapi::api::core::v1::NodeSpec {
            taints: s.taints,
            ..Default::default()
        }),
        status: None,
    };
}

/// The Nodes as they are: (registered, initialised) names, from a watch-fed store (a list of
/// every Node four times a second would cost more than the nodes' own registration at 10,000).
fn node_states(
    nodes: &kube::runtime::reflector::Store<Node>,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut registered = BTreeSet::new();
    let mut initialised = BTreeSet::new();
    for n in nodes.state() {
        let done = !ccm::node_plan::has_uninitialized_taint(&n);
        if let Some(name) = n.metadata.name.clone() {
            if done {
                initialised.insert(name.clone());
            }
            registered.insert(name);
        }
    }
    (registered, initialised)
}

/// What the wait is still waiting for, in words: nodes without a Node yet (their instance is
/// pending, or the kubelet has not registered it) and Nodes the ccm has not initialised, with the
/// first few names of each.
pub fn waiting_for(
    want: &BTreeSet<String>,
    registered: &BTreeSet<String>,
    initialised: &BTreeSet<String>,
) -> String {
    let names = |set: Vec<&String>| {
        let mut s: Vec<&str> = set.iter().take(3).map(|n| n.as_str()).collect();
        if set.len() > 3 {
            s.push("...");
        }
        s.join(", ")
    };
    let unregistered: Vec<&String> = want.difference(registered).collect();
    let uninitialised: Vec<&String> = want
        .intersection(registered)
        .filter(|n| !initialised.contains(*n))
        .collect();
    let mut parts = Vec::new();
    if !unregistered.is_empty() {
        parts.push(format!(
            "{} without a Node yet (instance pending, or the kubelet has not registered it: {})",
            unregistered.len(),
            names(unregistered)
        ));
    }
    if !uninitialised.is_empty() {
        parts.push(format!(
            "{} Nodes the ccm has not initialised (still tainted uninitialized: {})",
            uninitialised.len(),
            names(uninitialised)
        ));
    }
    if parts.is_empty() {
        "nothing".into()
    } else {
        parts.join("; ")
    }
}

/// The Kubernetes side of the sandbox.
enum Cluster {
    KubeSim(kube_sim::Server),
    Real(Box<control_plane::ControlPlane>),
}

impl Cluster {
    async fn start(
        args: &UpArgs,
        size: &Sizing,
        bins: Option<control_plane::Binaries>,
        kubeconfig: &std::path::Path,
    ) -> anyhow::Result<Self> {
        match bins {
            None => {
                eprintln!("starting kube-sim ...");
                let server = kube_sim::Server::start(kube_sim::ServerConfig {
                    listen: args.kube_listen,
                    kubeconfig: Some(kubeconfig.to_owned()),
                    ..Default::default()
                })
                .await
                .context("starting kube-sim")?;
                Ok(Self::KubeSim(server))
            }
            Some(bins) => {
                eprintln!(
                    "starting the real control plane ({}) from {} ...",
                    control_plane::VERSION,
                    bins.dir().display()
                );
                // Fresh certificates and etcd each run (the cloud's state is what persists);
                // an absolute path, since the kubeconfig names its certificate files.
                let dir = std::path::absolute(args.data_dir.join("control-plane"))?;
                if dir.exists() {
                    std::fs::remove_dir_all(&dir)
                        .with_context(|| format!("cannot clear {}", dir.display()))?;
                }
                let opts = control_plane::Options {
                    node_monitor_grace_period: args.node_monitor_grace_period,
                    cluster_cidr: size.cluster_cidr.to_string(),
                    node_cidr_mask_size: size.node_cidr_mask_size,
                    node_monitor_period: Duration::from_secs(1),
                    dir: Some(dir),
                    ..Default::default()
                };
                let cp = control_plane::ControlPlane::start_with(bins, opts).await?;
                std::fs::copy(cp.kubeconfig(), kubeconfig)
                    .with_context(|| format!("cannot write {}", kubeconfig.display()))?;
                eprintln!("control plane ready in {:.1}s", cp.started_in.as_secs_f64());
                Ok(Self::Real(Box::new(cp)))
            }
        }
    }

    fn url(&self) -> String {
        match self {
            Self::KubeSim(s) => s.url(),
            Self::Real(cp) => cp.url().to_owned(),
        }
    }

    async fn config(&self) -> anyhow::Result<kube::Config> {
        Ok(match self {
            Self::KubeSim(s) => kube::Config::new(s.url().parse()?),
            Self::Real(cp) => {
                let kc = kube::config::Kubeconfig::read_from(cp.kubeconfig())?;
                kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?
            }
        })
    }

    /// The kubelets' settings: kube-sim needs their stand-ins for node IPAM and node
    /// lifecycle; kube-controller-manager does both itself.
    fn kubelets(&self, cloud_url: &str, args: &UpArgs, size: &Sizing) -> KubeletConfig {
        let base = match self {
            Self::KubeSim(_) => KubeletConfig {
                allocate_pod_cidrs: Some((size.cluster_cidr, size.node_cidr_mask_size)),
                ..KubeletConfig::standalone(
                    cloud_url,
                    size.cluster_cidr,
                    args.node_monitor_grace_period,
                )
            },
            Self::Real(_) => KubeletConfig::with_controller_manager(cloud_url),
        };
        KubeletConfig {
            cluster_name: Some(args.cluster_name.clone()),
            data_plane: args.data_plane.then_some(size.pod_loopback_cidr),
            // Well within the grace period, so a running node never looks silent.
            status_interval: (args.node_monitor_grace_period / 4)
                .clamp(Duration::from_millis(200), Duration::from_secs(10)),
            ..base
        }
    }

    async fn shutdown(self) {
        match self {
            Self::KubeSim(s) => s.shutdown().await,
            Self::Real(cp) => drop(cp),
        }
    }
}

/// One node of the sandbox: its instance's name, zone and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    pub name: String,
    pub zone: String,
    pub instance_type: String,
}

/// The nodes `--nodes`, `--zones` and `--instance-type` ask for.
pub fn default_nodes(args: &UpArgs) -> Vec<NodeSpec> {
    node_names(args.nodes)
        .into_iter()
        .enumerate()
        .map(|(i, name)| NodeSpec {
            name,
            zone: zone_for(i, &args.zones).to_owned(),
            instance_type: args.instance_type.clone(),
        })
        .collect()
}

/// The addressing `nodes` need (`crate::sizing`), from what the flags fix.
fn sizing_for(args: &UpArgs, zones: &[String], nodes: &[NodeSpec]) -> anyhow::Result<Sizing> {
    let per_zone: Vec<(String, usize)> = zones
        .iter()
        .map(|z| (z.clone(), nodes.iter().filter(|n| &n.zone == z).count()))
        .collect();
    let given = crate::sizing::Given {
        cluster_cidr: args.cluster_cidr,
        node_cidr_mask_size: args.node_cidr_mask_size,
        pod_loopback_cidr: args.pod_loopback_cidr,
        route_quota: args.route_quota,
        instance_subnets: args.instance_subnets.clone(),
    };
    let size = crate::sizing::plan(&per_zone, &given)?;
    for w in &size.warnings {
        eprintln!("warning: {w}");
    }
    Ok(size)
}

/// Creates the instances of `nodes` the cluster lacks, in batches of [`BATCH`] (one request and
/// one transaction each; one by one, 10,000 nodes were 10,000 requests and as many turns of
/// the cloud's single writer), [`BATCHES_AT_ONCE`] at a time, and starts the stopped ones.
async fn ensure_instances(
    client: &Client,
    args: &UpArgs,
    nodes: &[NodeSpec],
) -> anyhow::Result<()> {
    use futures_util::StreamExt as _;
    let tag = format!("{CLUSTER_TAG_PREFIX}{}", args.cluster_name);
    let existing = client
        .list_all_instances(&InstanceFilter {
            tag: Some((tag.clone(), "owned".into())),
            ..Default::default()
        })
        .await?;
    let live: std::collections::HashMap<&str, &cloud_api::Instance> = existing
        .iter()
        .filter(|x| x.state != InstanceState::Terminated)
        .map(|x| (x.name.as_str(), x))
        .collect();
    let stopped = nodes
        .iter()
        .filter_map(|n| live.get(n.name.as_str()))
        .filter(|x| x.state == InstanceState::Stopped);
    futures_util::stream::iter(stopped)
        .map(|x| async move {
            client
                .start_instance(x.id.as_str())
                .await
                .with_context(|| format!("starting instance {}", x.name))
        })
        .buffer_unordered(STARTS_AT_ONCE)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()?;
    let missing: Vec<CreateInstanceRequest> = nodes
        .iter()
        .filter(|n| !live.contains_key(n.name.as_str()))
        .map(|n| CreateInstanceRequest {
            name: n.name.clone(),
            zone: n.zone.clone(),
            instance_type: n.instance_type.clone(),
            tags: Tags::from([(tag.clone(), "owned".to_owned())]),
            private_ip: None,
        })
        .collect();
    let mut results = futures_util::stream::iter(missing.chunks(BATCH))
        .map(|batch| async move {
            client.batch_create_instances(batch).await.with_context(|| {
                format!(
                    "creating instances {} to {}",
                    batch[0].name,
                    batch[batch.len() - 1].name
                )
            })
        })
        .buffer_unordered(BATCHES_AT_ONCE);
    // Thousands of creates take a while: say how far they are, about once a second.
    let (mut done, mut told) = (0, Instant::now());
    while let Some(made) = results.next().await {
        done += made?.len();
        if told.elapsed() >= Duration::from_secs(1) && done < missing.len() {
            eprintln!("creating instances: {done}/{}", missing.len());
            told = Instant::now();
        }
    }
    Ok(())
}

/// Instances per batch create of `simctl up`: small enough that other writers (the ccm's
/// routes) wait behind one batch only briefly, and that the first nodes register without
/// waiting for the last.
const BATCH: usize = 100;
const _: () = assert!(BATCH <= cloud_api::MAX_BATCH_CREATE);
/// Instance starts `simctl up` has in flight at once (there is no batch start).
const STARTS_AT_ONCE: usize = 8;
/// Batch creates `simctl up` has in flight at once: one is decoded and checked while another
/// holds the writer.
const BATCHES_AT_ONCE: usize = 2;

/// A running sandbox: cloud-sim, the API server, kubelets, the ccm's controllers and (on
/// kube-sim) the stand-ins for kube-scheduler and kube-controller-manager's workload
/// controllers.
pub struct Sandbox {
    pub cloud_url: String,
    pub kube_url: String,
    pub kubeconfig: PathBuf,
    pub kube_config: kube::Config,
    /// The cloud, as the sandbox's own client.
    pub cloud: Client,
    cloud_server: cloud_sim::Server,
    cluster: Cluster,
    kubelets: Kubelets,
    workloads: Option<kcm_sim::Controllers>,
    stop_tx: ccm::CancellationToken,
    controllers: ccm::Controllers,
}

impl Sandbox {
    /// Starts everything and waits until every node of `nodes` is initialised.
    pub async fn start(args: &UpArgs, nodes: &[NodeSpec]) -> anyhow::Result<Self> {
        if nodes.is_empty() {
            bail!("the sandbox needs at least one node");
        }
        std::fs::create_dir_all(&args.data_dir)
            .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
        // Before anything starts: a missing fixture is an error naming its build command.
        let bins = match args.control_plane {
            ControlPlaneKind::KubeSim => None,
            ControlPlaneKind::Real => Some(control_plane::Binaries::locate()?),
        };
        eprintln!("starting cloud-sim ...");
        let mut zones: Vec<String> = args.zones.clone();
        for n in nodes {
            if !zones.contains(&n.zone) {
                zones.push(n.zone.clone());
            }
        }
        let size = sizing_for(args, &zones, nodes)?;
        let mut cfg = cloud_sim::Config::build(
            "sim-1",
            "127.0.0.0/8".parse().expect("valid CIDR"),
            &zones,
            &size.instance_subnets,
            &args.lb_pools,
        )?;
        cfg.instance_boot_delay = args.boot_delay;
        cfg.instance_stop_delay = Duration::from_secs(1);
        cfg.lb_provision_delay = Duration::from_secs(2);
        cfg.route_quota = size.route_quota.max(1);
        cfg.data_plane = args.data_plane;
        let db = format!("sqlite://{}", args.data_dir.join("cloud-sim.db").display());
        let cloud_server = cloud_sim::Server::start(cfg, &db, args.cloud_listen)
            .await
            .context("starting cloud-sim")?;
        let cloud_url = cloud_server.base_url();

        let kubeconfig = args.data_dir.join("kubeconfig");
        let cluster = Cluster::start(args, &size, bins, &kubeconfig).await?;
        let kube_config = cluster.config().await?;
        eprintln!("starting the kubelets ...");
        let kubelets = Kubelets::start(
            cluster.kubelets(&cloud_url, args, &size),
            kube::Client::try_from(kube_config.clone())?,
        )?;
        let workloads = matches!(cluster, Cluster::KubeSim(_)).then(|| {
            kcm_sim::Controllers::start(
                kube::Client::try_from(kube_config.clone()).expect("the client was built above"),
                kcm_sim::Config::default(),
            )
        });

        let cloud = Client::builder(&cloud_url)
            .user_agent("simctl-up")
            .build()?;
        let opts = ccm_options(args, &size, nodes.len());
        let stop_tx = ccm::CancellationToken::new();
        let controllers = match args.ccm {
            CcmMode::InProcess => {
                eprintln!("starting the cloud-controller-manager ...");
                start_ccm(&cloud, &kube_config, &opts, &stop_tx).await?
            }
            CcmMode::None => {
                let command = external_ccm(&args.data_dir, &cloud_url, &kubeconfig, &opts)?;
                eprintln!(
                    "the sandbox runs no cloud-controller-manager (--ccm none); start one against it:\n  {command}"
                );
                ccm::Controllers::new()
            }
        };
        let node_api: kube::Api<Node> =
            kube::Api::all(kube::Client::try_from(kube_config.clone())?);
        let sandbox = Self {
            kube_url: cluster.url(),
            cloud_url,
            kubeconfig,
            kube_config,
            cloud,
            cloud_server,
            cluster,
            kubelets,
            workloads,
            stop_tx,
            controllers,
        };
        ensure_instances(&sandbox.cloud, args, nodes).await?;
        let want: BTreeSet<String> = nodes.iter().map(|n| n.name.clone()).collect();
        let deadline = Instant::now() + args.timeout;
        let (node_store, node_watch) =
            sim_common::reflect_trimmed(node_api.clone(), Default::default(), None, trim_for_wait);
        let mut last = usize::MAX;
        let mut moved = Instant::now();
        let mut told = Instant::now();
        loop {
            let (registered, initialised) = node_states(&node_store);
            let done = initialised.intersection(&want).count();
            if done != last {
                eprintln!("waiting for nodes: {done}/{} initialised", want.len());
                last = done;
                moved = Instant::now();
            }
            if done == want.len() {
                break;
            }
            // When the count stops moving, say what it waits for (every 10 s while it stays).
            if moved.elapsed() >= STALL && told.elapsed() >= STALL * 2 {
                eprintln!(
                    "  still waiting for {}",
                    waiting_for(&want, &registered, &initialised)
                );
                told = Instant::now();
            }
            if Instant::now() > deadline {
                node_watch.abort();
                sandbox.shutdown().await;
                bail!(
                    "only {done} of {} nodes were initialised within {:?}: waiting for {}",
                    want.len(),
                    args.timeout,
                    waiting_for(&want, &registered, &initialised)
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        node_watch.abort();
        Ok(sandbox)
    }

    /// A Kubernetes client of the sandbox's API server.
    pub fn kube(&self) -> anyhow::Result<kube::Client> {
        Ok(kube::Client::try_from(self.kube_config.clone())?)
    }

    /// Stops everything, in the reverse order of starting.
    pub async fn shutdown(mut self) {
        self.stop_tx.cancel();
        while self.controllers.join_next().await.is_some() {}
        if let Some(w) = self.workloads {
            w.stop().await;
        }
        self.kubelets.stop().await;
        self.cluster.shutdown().await;
        if let Err(e) = self.cloud_server.shutdown().await {
            tracing::warn!(error = %e, "cloud-sim did not shut down cleanly");
        }
    }
}

/// The ccm's `--concurrent-node-syncs` in a sandbox of `nodes`: 4 up to 2,500 nodes, one more
/// per 625 beyond, at most 16 (10,000 nodes), as an admin raises it with the cluster (upstream's
/// default is 1). Kubelets register as fast as the cloud makes instances (500-850 a second at
/// 10,000 nodes) and four syncs initialise ~450 a second, so the last nodes waited for them: the
/// sandbox bench at 10,000 nodes took 31.4 and 31.4 s with 4, 28.6 and 29.8 s with 16, in
/// alternating runs.
fn node_syncs(nodes: usize) -> u16 {
    u16::try_from(nodes / 625).unwrap_or(u16::MAX).clamp(4, 16)
}

/// The ccm's settings in a sandbox of `nodes`, in process or printed for one run outside.
fn ccm_options(args: &UpArgs, size: &Sizing, nodes: usize) -> ccm::Options {
    ccm::Options {
        controllers: ControllerName::ALL.into_iter().collect(),
        identity: "simctl-up".into(),
        concurrent_node_syncs: node_syncs(nodes),
        concurrent_node_status_updates: 4,
        node_status_update_frequency: Duration::from_secs(300),
        node_monitor_period: args.node_monitor_period.max(Duration::from_millis(100)),
        cluster_name: args.cluster_name.clone(),
        cluster_cidrs: vec![ipnet::IpNet::V4(size.cluster_cidr)],
        configure_cloud_routes: true,
        route_reconciliation_period: Duration::from_secs(10),
        concurrent_service_syncs: 4,
        load_balancer_class: None,
    }
}

/// Starts the ccm's controllers in this process.
async fn start_ccm(
    cloud: &Client,
    kube_config: &kube::Config,
    opts: &ccm::Options,
    stop: &ccm::CancellationToken,
) -> anyhow::Result<ccm::Controllers> {
    let provider: Arc<dyn CloudProvider> =
        Arc::new(ccm::cloud::simcloud::SimCloud::new(cloud.clone(), None));
    provider
        .initialize()
        .await
        .map_err(|e| anyhow::anyhow!("{}", ccm::error_chain(&e)))?;
    // No client-side rate limit for the sandbox's in-process ccm: it shares the process with
    // its API server, and `--nodes` in the thousands would wait minutes on upstream's 20 qps.
    let kube_client = ccm::client_for(kube_config.clone(), None)?;
    Ok(ccm::start_controllers(
        kube_client,
        provider,
        Arc::new(ccm::metrics::Metrics::new()),
        opts,
        stop,
    ))
}

/// Writes the cloud config of a ccm run outside the sandbox and returns its command line: the
/// same settings as the in-process one, with the client-side rate limit raised out of the way.
fn external_ccm(
    data_dir: &std::path::Path,
    cloud_url: &str,
    kubeconfig: &std::path::Path,
    opts: &ccm::Options,
) -> anyhow::Result<String> {
    let cloud_config = data_dir.join("cloud-config.yaml");
    std::fs::write(&cloud_config, format!("endpoint: {cloud_url}\n"))
        .with_context(|| format!("cannot write {}", cloud_config.display()))?;
    let cidrs: Vec<String> = opts.cluster_cidrs.iter().map(ToString::to_string).collect();
    Ok(format!(
        "ccm --cloud-provider={} --cloud-config={} --kubeconfig={} --cluster-name={} \
         --cluster-cidr={} --configure-cloud-routes=true --controllers=* \
         --concurrent-node-syncs={} --concurrent-node-status-updates={} \
         --concurrent-service-syncs={} --node-monitor-period={}ms \
         --route-reconciliation-period={}s --kube-api-qps=1000000 --kube-api-burst=1000000 \
         --leader-elect=false --secure-port=0",
        ccm::names::PROVIDER_NAME,
        cloud_config.display(),
        kubeconfig.display(),
        opts.cluster_name,
        cidrs.join(","),
        opts.concurrent_node_syncs,
        opts.concurrent_node_status_updates,
        opts.concurrent_service_syncs,
        opts.node_monitor_period.as_millis(),
        opts.route_reconciliation_period.as_secs(),
    ))
}

/// Logs to stderr with a `tracing` filter (once per process; later calls keep the first).
pub fn init_logging(filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .with_context(|| format!("invalid log filter {filter:?}"))?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    Ok(())
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    init_logging(&args.log_filter)?;
    if args.zones.is_empty() || args.nodes == 0 {
        bail!("--zones and --nodes must not be empty");
    }
    let started = Instant::now();
    let nodes = default_nodes(&args);
    let sandbox = Sandbox::start(&args, &nodes).await?;
    let kc = sandbox.kubeconfig.display().to_string();
    let cloud_url = sandbox.cloud_url.clone();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "\nsimcloud sandbox is up ({} nodes over {} zones, {:.1}s)",
        nodes.len(),
        args.zones.len(),
        started.elapsed().as_secs_f64()
    )?;
    writeln!(out, "  cloud-sim API:  {cloud_url}")?;
    writeln!(
        out,
        "  console:        {cloud_url}{}",
        cloud_sim::http::console::CONSOLE_PATH
    )?;
    writeln!(out, "  Kubernetes API: {}", sandbox.kube_url)?;
    writeln!(out, "  kubeconfig:     {kc}")?;
    writeln!(out, "\nTry:")?;
    writeln!(
        out,
        "  kubectl --kubeconfig {kc} get nodes -L topology.kubernetes.io/zone"
    )?;
    writeln!(out, "  simctl --cloud-url {cloud_url} instances list")?;
    writeln!(
        out,
        "  simctl --cloud-url {cloud_url} instances stop node-1     # the node gets the shutdown taint"
    )?;
    writeln!(
        out,
        "\nPress Ctrl-C to stop. State is kept in {}.",
        args.data_dir.display()
    )?;
    out.flush()?;
    drop(out);

    ccm::shutdown_signal().await;
    eprintln!("stopping ...");
    sandbox.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_wait_says_what_it_waits_for() {
        let set = |names: &[&str]| -> BTreeSet<String> {
            names.iter().map(|s| (*s).to_owned()).collect()
        };
        let want = set(&["node-1", "node-2", "node-3", "node-4", "node-5", "node-6"]);
        assert_eq!(
            waiting_for(&want, &set(&["node-1", "node-2"]), &set(&["node-1"])),
            "4 without a Node yet (instance pending, or the kubelet has not registered it: \
             node-3, node-4, node-5, ...); 1 Nodes the ccm has not initialised (still tainted \
             uninitialized: node-2)"
        );
        assert_eq!(waiting_for(&want, &want, &want), "nothing");
        assert_eq!(
            waiting_for(&set(&["node-1"]), &set(&["node-1"]), &set(&[])),
            "1 Nodes the ccm has not initialised (still tainted uninitialized: node-1)"
        );
    }

    use super::*;

    #[test]
    fn the_wait_reads_the_same_states_from_trimmed_nodes() {
        let node = |name: &str, taint: Option<&str>| -> Node {
            let taints: Vec<serde_json::Value> = taint
                .map(|k| serde_json::json!({"key": k, "effect": "NoSchedule"}))
                .into_iter()
                .collect();
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "labels": {"a": "b"}, "annotations": {"c": "d"}},
                "spec": {"podCIDR": "10.0.0.0/24", "taints": taints},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]},
            }))
            .unwrap()
        };
        let nodes = [
            node("node-1", None),
            node("node-2", Some(ccm::names::TAINT_UNINITIALIZED)),
            node("node-3", Some("other")),
        ];
        let states = |trim: bool| {
            let (store, mut writer) = kube::runtime::reflector::store();
            for n in &nodes {
                let mut n = n.clone();
                if trim {
                    trim_for_wait(&mut n);
                    assert_eq!(n.status, None);
                    assert_eq!(n.metadata.labels, None);
                }
                writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(n));
            }
            node_states(&store)
        };
        let full = states(false);
        assert_eq!(full.1.len(), 2, "node-2 is still uninitialised");
        assert_eq!(states(true), full);
    }

    /// `--ccm none` prints a command line for the `ccm` binary: it must parse and validate
    /// there, with the sandbox's settings and the cloud config just written.
    #[test]
    fn the_printed_ccm_command_line_is_one_the_ccm_accepts() {
        use clap::Parser as _;
        let dir = std::env::temp_dir().join(format!("simctl-external-ccm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        #[derive(clap::Parser)]
        struct Up {
            #[command(flatten)]
            args: UpArgs,
        }
        let args = Up::try_parse_from(["up", "--ccm", "none"]).unwrap().args;
        let size = Sizing {
            cluster_cidr: "10.244.0.0/14".parse().unwrap(),
            node_cidr_mask_size: 24,
            pod_loopback_cidr: "127.244.0.0/14".parse().unwrap(),
            route_quota: 1000,
            instance_subnets: Vec::new(),
            warnings: Vec::new(),
        };
        let opts = ccm_options(&args, &size, 10_000);
        let line =
            external_ccm(&dir, "http://127.0.0.1:9", &dir.join("kubeconfig"), &opts).unwrap();
        let args: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(args[0], "ccm");
        let parsed = ccm::config::Args::try_parse_from(&args).unwrap_or_else(|e| panic!("{e}"));
        let v = parsed.validate().unwrap();
        assert_eq!(v.cloud.endpoint, "http://127.0.0.1:9");
        assert_eq!(v.cluster_cidrs, opts.cluster_cidrs);
        assert_eq!(v.controllers, opts.controllers);
        assert!(
            v.serving.is_none(),
            "--secure-port=0: no port to collide with"
        );
        assert!(!parsed.leader_elect);
        assert_eq!(parsed.concurrent_node_syncs, opts.concurrent_node_syncs);
        assert_eq!(parsed.node_monitor_period, opts.node_monitor_period);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn node_syncs_grow_with_the_sandbox() {
        for (nodes, syncs) in [
            (1, 4),
            (2_500, 4),
            (3_125, 5),
            (5_000, 8),
            (10_000, 16),
            (100_000, 16),
        ] {
            assert_eq!(node_syncs(nodes), syncs, "{nodes} nodes");
        }
    }

    #[test]
    fn nodes_spread_round_robin() {
        let zones: Vec<String> = ["zone-a", "zone-b", "zone-c"].map(String::from).to_vec();
        let placed: Vec<_> = node_names(4)
            .iter()
            .enumerate()
            .map(|(i, n)| format!("{n}@{}", zone_for(i, &zones)))
            .collect();
        assert_eq!(
            placed,
            [
                "node-1@zone-a",
                "node-2@zone-b",
                "node-3@zone-c",
                "node-4@zone-a"
            ]
        );
    }
}
