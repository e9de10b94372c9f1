//! The kubelet simulator: one simulated kubelet per cloud-sim instance, behaving as kubelets
//! started with `--cloud-provider=external` do, plus the parts of kube-controller-manager a ccm
//! test needs (node IPAM, and marking Nodes `Unknown` when their kubelet goes quiet).
//!
//! - An instance that is pending or running gets a Node named after it, tainted
//!   `node.cloudprovider.kubernetes.io/uninitialized`, with only a `Hostname` address, the
//!   `alpha.kubernetes.io/provided-node-ip` annotation (as `--node-ip` sets it), capacity from the
//!   instance type, a `/24` pod CIDR, and no zone labels: initialising it is the ccm's job.
//! - A running instance's kubelet reports Ready; a stopped or terminated one stops reporting, and
//!   after the grace period its Node's conditions turn `Unknown`. The Node is left in place for the
//!   ccm's node-lifecycle controller to delete.
//! - Changes are followed through cloud-sim's event log (long polling), not by re-listing.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use cloud_api::{Instance, InstanceState, InstanceType};
use cloud_client::{Client, InstanceFilter};
use ipnet::Ipv4Net;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::api::{Api, PatchType, Target};
use crate::resources;

/// Taint kubelets with `--cloud-provider=external` register with.
pub const UNINITIALIZED_TAINT: &str = "node.cloudprovider.kubernetes.io/uninitialized";
/// Annotation kubelets set from `--node-ip` when the cloud provider is external.
pub const PROVIDED_NODE_IP_ANNOTATION: &str = "alpha.kubernetes.io/provided-node-ip";
/// Tag prefix that marks an instance as a member of a cluster.
pub const CLUSTER_TAG_PREFIX: &str = "kubernetes.io/cluster/";
/// Version string simulated kubelets report.
pub const KUBELET_VERSION: &str = "v1.33.0-kube-sim";

#[derive(Debug, Clone)]
pub struct KubeletConfig {
    pub cloud_url: String,
    pub cloud_token: Option<String>,
    pub cluster_name: Option<String>,
    pub cluster_cidr: Ipv4Net,
    pub status_interval: Duration,
    pub grace_period: Duration,
    /// Answer on node ports as kube-proxy and a pod would (see [`crate::node_ports`]).
    pub serve_node_ports: bool,
}

impl KubeletConfig {
    pub fn from_args(args: &crate::config::ServeArgs, url: &str) -> Result<Self, String> {
        if args.cluster_cidr.prefix_len() > 24 {
            return Err(format!(
                "--cluster-cidr {} is smaller than one /24 per node",
                args.cluster_cidr
            ));
        }
        Ok(Self {
            cloud_url: url.to_owned(),
            cloud_token: args.cloud_token.clone(),
            cluster_name: args.cluster_name.clone(),
            cluster_cidr: args.cluster_cidr,
            status_interval: args.node_status_interval,
            grace_period: args.node_monitor_grace_period,
            serve_node_ports: args.serve_node_ports,
        })
    }

    /// Defaults for tests: quick heartbeats and a short grace period.
    pub fn for_tests(cloud_url: &str) -> Self {
        Self {
            cloud_url: cloud_url.to_owned(),
            cloud_token: None,
            cluster_name: None,
            cluster_cidr: "10.244.0.0/16".parse().expect("valid CIDR"),
            status_interval: Duration::from_millis(200),
            grace_period: Duration::from_secs(1),
            // Off in tests: parallel tests would fight over the same node addresses and ports.
            serve_node_ports: false,
        }
    }
}

/// The running simulator.
pub struct Kubelets {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Kubelets {
    pub fn start(config: KubeletConfig, api: Arc<Api>) -> Result<Self, String> {
        let mut b = Client::builder(&config.cloud_url).user_agent("kube-sim-kubelet");
        if let Some(t) = &config.cloud_token {
            b = b.token(t);
        }
        let client = b
            .build()
            .map_err(|e| format!("cannot build cloud client: {e}"))?;
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(run(
            Sim {
                config,
                api,
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
    ip: std::net::Ipv4Addr,
    zone: String,
    /// The kubelet runs while its instance is pending or running.
    running: bool,
    last_heartbeat: Instant,
    /// Conditions already set to Unknown after the kubelet went quiet.
    marked_unknown: bool,
}

struct Sim {
    config: KubeletConfig,
    api: Arc<Api>,
    client: Client,
    /// By instance ID.
    nodes: HashMap<String, Kubelet>,
    types: HashMap<String, InstanceType>,
    ports: crate::node_ports::NodePorts,
}

fn nodes_target(name: Option<&str>, status: bool) -> Target {
    Target {
        def: resources::by_storage(resources::NODES).expect("nodes are served"),
        namespace: None,
        name: name.map(str::to_owned),
        status,
    }
}

fn now_rfc3339() -> String {
    crate::api::now_seconds()
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
                sim.reconcile(&i);
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
                    Ok(Some(i)) => sim.reconcile(&i),
                    Ok(None) => sim.instance_gone(&id),
                    Err(e) => tracing::warn!(instance = %id, error = %e, "kubelets: cannot read instance"),
                }
            }
            _ = tick.tick() => sim.heartbeats().await,
            _ = ports_tick.tick(), if sim.config.serve_node_ports => sim.sync_node_ports(),
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

impl Sim {
    /// Node ports for every NodePort/LoadBalancer Service on every running node.
    fn sync_node_ports(&mut self) {
        let t = Target {
            def: resources::by_storage(resources::SERVICES).expect("services are served"),
            namespace: None,
            name: None,
            status: false,
        };
        let services = self
            .api
            .list(&t, &Default::default())
            .map(|l| l["items"].as_array().cloned().unwrap_or_default())
            .unwrap_or_default();
        let nodes: Vec<crate::node_ports::NodeEndpoint> = self
            .nodes
            .values()
            .filter(|k| k.running)
            .map(|k| crate::node_ports::NodeEndpoint {
                name: k.node.clone(),
                ip: k.ip,
                zone: k.zone.clone(),
            })
            .collect();
        let want = crate::node_ports::desired(&services, &nodes);
        self.ports.sync(&self.api, want);
    }

    fn member(&self, i: &Instance) -> bool {
        match &self.config.cluster_name {
            None => true,
            Some(c) => i.tags.contains_key(&format!("{CLUSTER_TAG_PREFIX}{c}")),
        }
    }

    fn reconcile(&mut self, i: &Instance) {
        if !self.member(i) {
            return;
        }
        let runs = matches!(i.state, InstanceState::Pending | InstanceState::Running);
        let id = i.id.to_string();
        let was_running = self.nodes.get(&id).is_some_and(|k| k.running);
        if runs {
            if !self.node_exists(&i.name) {
                if let Err(e) = self.register(i) {
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
                last_heartbeat: Instant::now(),
                marked_unknown: false,
            });
            k.running = true;
            k.last_heartbeat = Instant::now();
            k.marked_unknown = false;
            let ready = i.state == InstanceState::Running;
            let name = i.name.clone();
            self.post_status(&name, ready);
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

    fn node_exists(&self, name: &str) -> bool {
        self.api.get(&nodes_target(Some(name), false)).is_ok()
    }

    /// The first /24 of the cluster CIDR no Node has.
    fn next_pod_cidr(&self) -> Option<Ipv4Net> {
        let list = self
            .api
            .list(&nodes_target(None, false), &Default::default())
            .ok()?;
        let used: BTreeSet<String> = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| {
                n.pointer("/spec/podCIDR")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .collect();
        self.config
            .cluster_cidr
            .subnets(24)
            .ok()?
            .find(|s| !used.contains(&s.to_string()))
    }

    fn register(&self, i: &Instance) -> Result<(), String> {
        let (cpu, mem_mib) = self
            .types
            .get(&i.instance_type)
            .map_or((2, 4096), |t| (t.vcpus, t.memory_mib));
        let capacity = json!({"cpu": cpu.to_string(), "memory": format!("{}Ki", mem_mib * 1024), "pods": "110", "ephemeral-storage": "20Gi"});
        let pod_cidr = self
            .next_pod_cidr()
            .ok_or("the cluster CIDR has no free /24 left")?
            .to_string();
        let now = now_rfc3339();
        let node = json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": i.name,
                "labels": {
                    "kubernetes.io/hostname": i.name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "beta.kubernetes.io/os": "linux",
                    "beta.kubernetes.io/arch": "amd64",
                },
                "annotations": {PROVIDED_NODE_IP_ANNOTATION: i.private_ip.to_string()},
            },
            "spec": {
                "podCIDR": pod_cidr,
                "podCIDRs": [pod_cidr],
                "taints": [{"key": UNINITIALIZED_TAINT, "value": "true", "effect": "NoSchedule"}],
            },
            "status": {
                "capacity": capacity,
                "allocatable": capacity,
                "addresses": [{"type": "Hostname", "address": i.name}],
                "conditions": conditions(i.state == InstanceState::Running, &now, &now),
                "nodeInfo": {
                    "machineID": i.id.to_string(),
                    "systemUUID": i.id.to_string(),
                    "bootID": "",
                    "kernelVersion": "6.1.0-kube-sim",
                    "osImage": "kube-sim",
                    "containerRuntimeVersion": "kube-sim://1.0",
                    "kubeletVersion": KUBELET_VERSION,
                    "kubeProxyVersion": KUBELET_VERSION,
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                },
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            },
        });
        self.api
            .create(&nodes_target(None, false), node, false)
            .map(|_| ())
            .map_err(|e| e.message)
    }

    /// Sets the Ready condition (and the pressure conditions) as a running kubelet reports them.
    fn post_status(&self, node: &str, ready: bool) {
        let t = nodes_target(Some(node), true);
        let Ok(current) = self.api.get(&t) else {
            return;
        };
        let now = now_rfc3339();
        let want = if ready { "True" } else { "False" };
        let transition = current["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
            .filter(|c| c["status"] == want)
            .and_then(|c| c["lastTransitionTime"].as_str().map(str::to_owned))
            .unwrap_or_else(|| now.clone());
        let patch = json!({"status": {"conditions": conditions(ready, &now, &transition)}});
        if let Err(e) = self.api.patch(&t, PatchType::Strategic, patch, false) {
            tracing::warn!(node, error = %e.message, "kubelet: status update failed");
        }
    }

    /// Running kubelets heartbeat; quiet ones turn Unknown after the grace period.
    async fn heartbeats(&mut self) {
        let grace = self.config.grace_period;
        let mut beat = Vec::new();
        let mut unknown = Vec::new();
        for k in self.nodes.values_mut() {
            if k.running {
                if k.last_heartbeat.elapsed() >= self.config.status_interval {
                    k.last_heartbeat = Instant::now();
                    beat.push(k.node.clone());
                }
            } else if !k.marked_unknown && k.last_heartbeat.elapsed() >= grace {
                k.marked_unknown = true;
                unknown.push((k.node.clone(), k.instance_id.clone()));
            }
        }
        for node in beat {
            if self.node_exists(&node) {
                self.post_status(&node, true);
            } else if let Some(k) = self.nodes.values().find(|k| k.node == node) {
                // The Node was deleted under a running kubelet: it registers again, as a real one does.
                let id = k.instance_id.clone();
                tracing::info!(
                    node,
                    "kubelet: node object gone while running; re-registering"
                );
                if let Ok(Some(i)) = self.client.get_instance(&id).await
                    && let Err(e) = self.register(&i)
                {
                    tracing::warn!(node, error = %e, "kubelet: re-registration failed");
                }
            }
        }
        for (node, id) in unknown {
            let t = nodes_target(Some(&node), true);
            let Ok(current) = self.api.get(&t) else {
                continue;
            };
            let now = now_rfc3339();
            let conds: Vec<Value> = current["status"]["conditions"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|mut c| {
                    c["status"] = json!("Unknown");
                    c["reason"] = json!("NodeStatusUnknown");
                    c["message"] = json!("Kubelet stopped posting node status.");
                    c["lastTransitionTime"] = json!(now);
                    c
                })
                .collect();
            match self.api.patch(
                &t,
                PatchType::Strategic,
                json!({"status": {"conditions": conds}}),
                false,
            ) {
                Ok(_) => {
                    tracing::info!(node, instance = %id, "node status unknown: kubelet stopped posting")
                }
                Err(e) => tracing::warn!(node, error = %e.message, "cannot mark node unknown"),
            }
        }
    }
}

/// The conditions a kubelet reports.
fn conditions(ready: bool, heartbeat: &str, transition: &str) -> Value {
    let pressure = |ty: &str, reason: &str, msg: &str| json!({"type": ty, "status": "False", "reason": reason, "message": msg, "lastHeartbeatTime": heartbeat, "lastTransitionTime": transition});
    json!([
        pressure(
            "MemoryPressure",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available"
        ),
        pressure(
            "DiskPressure",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure"
        ),
        pressure(
            "PIDPressure",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available"
        ),
        if ready {
            json!({"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status", "lastHeartbeatTime": heartbeat, "lastTransitionTime": transition})
        } else {
            json!({"type": "Ready", "status": "False", "reason": "KubeletNotReady", "message": "instance is booting", "lastHeartbeatTime": heartbeat, "lastTransitionTime": transition})
        },
    ])
}

/// Parses an instance IP for tests that check the annotation.
pub fn provided_ip(node: &Value) -> Option<Ipv4Addr> {
    node.pointer(&format!(
        "/metadata/annotations/{}",
        PROVIDED_NODE_IP_ANNOTATION.replace('/', "~1")
    ))?
    .as_str()?
    .parse()
    .ok()
}
