//! Command line of the `kube-sim` binary; every flag has a `KUBE_SIM_*` environment twin.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// An in-memory Kubernetes API server for tests and the local sandbox, with simulated kubelets.
#[derive(Debug, Parser)]
#[command(name = "kube-sim", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the Kubernetes API (plain HTTP, no authentication) and optionally run kubelets.
    Serve(ServeArgs),
}

pub use sim_common::LogFormat;

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to serve on (port 0 picks a free one; the kubeconfig records it).
    #[arg(long, env = "KUBE_SIM_LISTEN", default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,

    /// Where to write a kubeconfig for kubectl and kube clients.
    #[arg(
        long,
        env = "KUBE_SIM_KUBECONFIG",
        default_value = "kube-sim.kubeconfig"
    )]
    pub kubeconfig: PathBuf,

    /// Changes kept for watch replay; watches from older resourceVersions get 410 Expired.
    #[arg(long, env = "KUBE_SIM_HISTORY", default_value_t = 10_000)]
    pub history: usize,

    /// Interval of watch bookmarks (for watches that ask for them).
    #[arg(long, env = "KUBE_SIM_BOOKMARK_INTERVAL", default_value = "60s", value_parser = sim_common::parse_duration)]
    pub bookmark_interval: Duration,

    /// cloud-sim URL: when set, run a kubelet for every instance of the cloud.
    #[arg(long, env = "KUBE_SIM_CLOUD_URL")]
    pub cloud_url: Option<String>,

    /// Bearer token for cloud-sim, when it runs with a tokens file.
    #[arg(long, env = "KUBE_SIM_CLOUD_TOKEN", hide_env_values = true)]
    pub cloud_token: Option<String>,

    /// Only instances tagged `kubernetes.io/cluster/<name>` (any value) become Nodes; all
    /// instances when unset.
    #[arg(long, env = "KUBE_SIM_CLUSTER_NAME")]
    pub cluster_name: Option<String>,

    /// Pod network; each Node gets a /24 from it, as kube-controller-manager's node IPAM does.
    #[arg(long, env = "KUBE_SIM_CLUSTER_CIDR", default_value = "10.244.0.0/16")]
    pub cluster_cidr: ipnet::Ipv4Net,

    /// How often simulated kubelets post Ready heartbeats.
    #[arg(long, env = "KUBE_SIM_NODE_STATUS_INTERVAL", default_value = "10s", value_parser = sim_common::parse_duration)]
    pub node_status_interval: Duration,

    /// How long after a kubelet stops reporting its Node's Ready condition turns Unknown
    /// (kube-controller-manager's --node-monitor-grace-period).
    #[arg(long, env = "KUBE_SIM_NODE_MONITOR_GRACE_PERIOD", default_value = "40s", value_parser = sim_common::parse_duration)]
    pub node_monitor_grace_period: Duration,

    /// Run the data plane: Pods answer on their containers' ports, each running node routes its
    /// node ports and (as an HTTP CONNECT proxy on port 15001) ClusterIPs to endpoints as
    /// kube-proxy would, and serves healthCheckNodePort.
    #[arg(long, env = "KUBE_SIM_DATA_PLANE", default_value_t = true, action = clap::ArgAction::Set)]
    pub data_plane: bool,

    /// Where Pods listen: a pod IP's host part within this loopback block (10.244.3.7 answers
    /// at 127.244.3.7). At least as large as --cluster-cidr.
    #[arg(
        long,
        env = "KUBE_SIM_POD_LOOPBACK_CIDR",
        default_value = "127.244.0.0/16"
    )]
    pub pod_loopback_cidr: ipnet::Ipv4Net,

    /// Run the stand-ins for kube-scheduler and kube-controller-manager's Deployment and
    /// EndpointSlice controllers (with topology hints), so Deployments get Pods on Nodes and
    /// Services get EndpointSlices.
    #[arg(long, env = "KUBE_SIM_CONTROLLERS", default_value_t = true, action = clap::ArgAction::Set)]
    pub controllers: bool,

    /// Log filter in `tracing` syntax.
    #[arg(long, env = "KUBE_SIM_LOG", default_value = "info")]
    pub log_filter: String,

    #[arg(long, env = "KUBE_SIM_LOG_FORMAT", value_enum, default_value = "plain")]
    pub log_format: LogFormat,
}

impl ServeArgs {
    /// The simulated kubelets' settings: kube-sim has no kube-controller-manager, so they also
    /// allocate pod CIDRs and mark silent Nodes `Unknown`.
    pub fn kubelet_config(&self, cloud_url: &str) -> kubelet_sim::KubeletConfig {
        kubelet_sim::KubeletConfig {
            cloud_token: self.cloud_token.clone(),
            cluster_name: self.cluster_name.clone(),
            status_interval: self.node_status_interval,
            data_plane: self.data_plane.then_some(self.pod_loopback_cidr),
            ..kubelet_sim::KubeletConfig::standalone(
                cloud_url,
                self.cluster_cidr,
                self.node_monitor_grace_period,
            )
        }
    }
}
