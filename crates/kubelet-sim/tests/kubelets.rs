//! The kubelet simulator against an in-process cloud-sim, with kube-sim and (control-plane tier)
//! with the real kube-apiserver and kube-controller-manager.

use std::time::Duration;

use cloud_api::{CreateInstanceRequest, Instance, Tags};
use cloud_client::Client;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use kubelet_sim::{KubeletConfig, Kubelets, NODE_LEASE_NAMESPACE, UNINITIALIZED_TAINT};
use sim_common::wait_for;

const T: Duration = Duration::from_secs(60);

fn ready(node: &Node) -> Option<String> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone())
}

fn mebibytes(q: &str) -> u64 {
    let (n, unit) = q.split_at(q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len()));
    let n: u64 = n.parse().unwrap();
    match unit {
        "Ki" => n / 1024,
        "Mi" => n,
        "Gi" => n * 1024,
        _ => panic!("unexpected memory quantity {q}"),
    }
}

fn req(name: &str, zone: &str, ty: &str) -> CreateInstanceRequest {
    CreateInstanceRequest {
        name: name.into(),
        zone: zone.into(),
        instance_type: ty.into(),
        tags: Tags::new(),
        private_ip: None,
    }
}

async fn node_with<F: Fn(&Node) -> bool>(nodes: &Api<Node>, name: &str, what: &str, f: F) -> Node {
    wait_for(&format!("{name}: {what}"), T, || async {
        nodes.get_opt(name).await.ok().flatten().filter(|n| f(n))
    })
    .await
}

/// Registration as kubelet `--cloud-provider=external` does it, and what the API server made of
/// it: tainted, hostname address only, provided IP, no zone, capacity from the instance type.
fn assert_registered(n: &Node, inst: &Instance) {
    let spec = n.spec.as_ref().unwrap();
    assert_eq!(spec.taints.as_ref().unwrap()[0].key, UNINITIALIZED_TAINT);
    let status = n.status.as_ref().unwrap();
    let addrs = status.addresses.as_ref().unwrap();
    assert_eq!(addrs.len(), 1);
    assert_eq!(
        (addrs[0].type_.as_str(), addrs[0].address.as_str()),
        ("Hostname", inst.name.as_str())
    );
    let v = serde_json::to_value(n).unwrap();
    assert_eq!(kubelet_sim::provided_ip(&v), Some(inst.private_ip));
    let labels = n.metadata.labels.as_ref().unwrap();
    assert!(!labels.contains_key("topology.kubernetes.io/zone"));
    assert!(spec.provider_id.is_none());
}

/// Runs the shared scenario; `grace` is how long until a silent kubelet's node turns Unknown.
async fn nodes_follow_their_instances(kube: kube::Client, config: KubeletConfig, cloud: &Client) {
    let nodes: Api<Node> = Api::all(kube.clone());
    // One instance exists before the kubelets start, one is created after.
    let a = cloud
        .create_instance(&req("node-a", "zone-a", "sim.medium"))
        .await
        .unwrap();
    let kubelets = Kubelets::start(config, kube.clone()).unwrap();
    let b = cloud
        .create_instance(&req("node-b", "zone-b", "sim.small"))
        .await
        .unwrap();
    let mut cidrs = Vec::new();
    for inst in [&a, &b] {
        let n = node_with(&nodes, &inst.name, "Ready with a pod CIDR", |n| {
            ready(n).as_deref() == Some("True")
                && n.spec.as_ref().is_some_and(|s| s.pod_cidr.is_some())
        })
        .await;
        assert_registered(&n, inst);
        let cidr = n.spec.unwrap().pod_cidr.unwrap();
        assert!(cidr.starts_with("10.244."), "{cidr}");
        cidrs.push(cidr);
    }
    assert_ne!(cidrs[0], cidrs[1]);
    let a_node = nodes.get("node-a").await.unwrap();
    let cap = a_node.status.unwrap().capacity.unwrap();
    assert_eq!(cap["cpu"].0, "2", "capacity from sim.medium");
    // kube-apiserver stores quantities in canonical form (4194304Ki is 4Gi); kube-sim as sent.
    assert_eq!(mebibytes(&cap["memory"].0), 4096, "{:?}", cap["memory"]);
    // The heartbeat Lease, owned by the Node.
    let leases: Api<Lease> = Api::namespaced(kube.clone(), NODE_LEASE_NAMESPACE);
    let lease = wait_for("node-a's Lease", T, || async {
        leases.get_opt("node-a").await.ok().flatten()
    })
    .await;
    assert_eq!(
        lease.spec.as_ref().unwrap().holder_identity.as_deref(),
        Some("node-a")
    );
    assert_eq!(
        lease.metadata.owner_references.as_ref().unwrap()[0].uid,
        a_node.metadata.uid.unwrap()
    );

    // Stop: the kubelet goes quiet and, after the grace period, Ready turns Unknown.
    cloud.stop_instance(a.id.as_str()).await.unwrap();
    let n = node_with(&nodes, "node-a", "Ready Unknown", |n| {
        ready(n).as_deref() == Some("Unknown")
    })
    .await;
    let r = n
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(r.reason.as_deref(), Some("NodeStatusUnknown"));
    // Start again: Ready.
    cloud.start_instance(a.id.as_str()).await.unwrap();
    node_with(&nodes, "node-a", "Ready again", |n| {
        ready(n).as_deref() == Some("True")
    })
    .await;
    // A Lease deleted under a running kubelet is made again at its next renewal.
    let old = leases.get("node-a").await.unwrap().metadata.uid;
    leases.delete("node-a", &Default::default()).await.unwrap();
    let lease = wait_for("node-a's Lease made again", T, || async {
        leases
            .get_opt("node-a")
            .await
            .ok()
            .flatten()
            .filter(|l| l.metadata.uid != old)
    })
    .await;
    assert_eq!(
        lease.spec.as_ref().unwrap().holder_identity.as_deref(),
        Some("node-a")
    );
    // Terminate: the Node stays (for the ccm to delete), Unknown.
    cloud.terminate_instance(b.id.as_str()).await.unwrap();
    node_with(&nodes, "node-b", "Ready Unknown", |n| {
        ready(n).as_deref() == Some("Unknown")
    })
    .await;
    // A Node deleted under a running kubelet is registered again.
    let uid = nodes.get("node-a").await.unwrap().metadata.uid;
    nodes.delete("node-a", &Default::default()).await.unwrap();
    node_with(&nodes, "node-a", "registered again", |n| {
        n.metadata.uid != uid
    })
    .await;
    kubelets.stop().await;
}

fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn in_cidr(ip: &str, cidr: &str) -> bool {
    let ip: std::net::Ipv4Addr = ip.parse().unwrap();
    cidr.parse::<ipnet::Ipv4Net>().unwrap().contains(&ip)
}

/// A Pod bound to a node runs there with an IP from the node's pod CIDR, turns not Ready when
/// its node stops, and is removed by its kubelet after deletion (within its grace period).
async fn pods_run_on_their_nodes(kube: kube::Client, config: KubeletConfig, cloud: &Client) {
    let nodes: Api<Node> = Api::all(kube.clone());
    let pods: Api<Pod> = Api::namespaced(kube.clone(), "default");
    let inst = cloud
        .create_instance(&req("pod-node", "zone-c", "sim.small"))
        .await
        .unwrap();
    let kubelets = Kubelets::start(config, kube.clone()).unwrap();
    let node = node_with(&nodes, "pod-node", "Ready with a pod CIDR", |n| {
        ready(n).as_deref() == Some("True") && n.spec.as_ref().is_some_and(|s| s.pod_cidr.is_some())
    })
    .await;
    let cidr = node.spec.unwrap().pod_cidr.unwrap();
    let pod = |name: &str| -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"nodeName": "pod-node", "terminationGracePeriodSeconds": 30,
                "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]},
        }))
        .unwrap()
    };
    for name in ["p1", "p2"] {
        pods.create(&PostParams::default(), &pod(name))
            .await
            .unwrap();
    }
    let mut ips = Vec::new();
    for name in ["p1", "p2"] {
        let p = wait_for(&format!("{name} running and ready"), T, || async {
            pods.get_opt(name).await.ok().flatten().filter(pod_ready)
        })
        .await;
        let st = p.status.unwrap();
        assert_eq!(st.phase.as_deref(), Some("Running"));
        assert_eq!(
            st.host_ip.as_deref(),
            Some(inst.private_ip.to_string().as_str())
        );
        let ip = st.pod_ip.unwrap();
        assert!(in_cidr(&ip, &cidr), "{ip} in {cidr}");
        ips.push(ip);
    }
    assert_ne!(ips[0], ips[1]);
    // Deleted with a 30 s grace period: the containers stop sooner and the kubelet removes it.
    pods.delete("p1", &DeleteParams::default()).await.unwrap();
    wait_for("p1 removed by its kubelet", T, || async {
        pods.get_opt("p1")
            .await
            .ok()
            .flatten()
            .is_none()
            .then_some(())
    })
    .await;
    // The node stops: its Pods are no longer Ready.
    cloud.stop_instance(inst.id.as_str()).await.unwrap();
    wait_for("p2 not ready", T, || async {
        pods.get_opt("p2")
            .await
            .ok()
            .flatten()
            .filter(|p| !pod_ready(p))
    })
    .await;
    // Started again: its kubelet reports the Pod Ready again, with the same IP.
    cloud.start_instance(inst.id.as_str()).await.unwrap();
    let p2 = wait_for("p2 ready again", T, || async {
        pods.get_opt("p2").await.ok().flatten().filter(pod_ready)
    })
    .await;
    assert_eq!(p2.status.unwrap().pod_ip.as_ref(), Some(&ips[1]));
    pods.delete("p2", &DeleteParams::default()).await.unwrap();
    kubelets.stop().await;
}

/// cloud-sim with a client, and kube-sim with a client, in process.
struct OnKubeSim {
    cloud: cloud_sim::Server,
    client: Client,
    kube: kube_sim::Server,
    kc: kube::Client,
}

impl OnKubeSim {
    async fn start() -> Self {
        let cloud = cloud_sim::Server::start_in_memory(cloud_sim::Config::for_tests_isolated())
            .await
            .unwrap();
        let client = Client::new(cloud.base_url()).unwrap();
        let kube = kube_sim::Server::start(kube_sim::ServerConfig::default())
            .await
            .unwrap();
        let kc = kube::Client::try_from(kube::Config::new(kube.url().parse().unwrap())).unwrap();
        Self {
            cloud,
            client,
            kube,
            kc,
        }
    }

    fn kubelets(&self) -> KubeletConfig {
        KubeletConfig::for_tests(&self.cloud.base_url())
    }

    async fn stop(self) {
        self.kube.shutdown().await;
        self.cloud.shutdown().await.unwrap();
    }
}

/// The real control plane and an in-process cloud-sim (control-plane tier); `None` when the
/// fixture is absent and skipping was asked for.
struct OnRealControlPlane {
    cp: control_plane::ControlPlane,
    cloud: cloud_sim::Server,
    client: Client,
    kc: kube::Client,
}

impl OnRealControlPlane {
    async fn start() -> Option<Self> {
        let bins = control_plane::binaries_for_test()?;
        let cp = control_plane::ControlPlane::start_with(bins, control_plane::Options::for_tests())
            .await
            .unwrap();
        let cloud = cloud_sim::Server::start_in_memory(cloud_sim::Config::for_tests_isolated())
            .await
            .unwrap();
        let client = Client::new(cloud.base_url()).unwrap();
        let kc = cp.client().await.unwrap();
        Some(Self {
            cp,
            cloud,
            client,
            kc,
        })
    }

    /// Heartbeats well within the fixture's 6 s grace period; quick pods.
    fn kubelets(&self) -> KubeletConfig {
        KubeletConfig {
            status_interval: Duration::from_millis(500),
            pod_start_delay: Duration::from_millis(200),
            pod_stop_delay: Duration::from_millis(200),
            ..KubeletConfig::with_controller_manager(&self.cloud.base_url())
        }
    }

    async fn stop(self) {
        self.cloud.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_with_kube_sim() {
    let k = OnKubeSim::start().await;
    pods_run_on_their_nodes(k.kc.clone(), k.kubelets(), &k.client).await;
    k.stop().await;
}

/// Control-plane tier: the same Pods next to kube-controller-manager, and a Deployment whose
/// Pods the real scheduler places on the simulated nodes, with ready endpoints in the
/// EndpointSlice kube-controller-manager makes for its Service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_with_the_real_control_plane_too() {
    let Some(r) = OnRealControlPlane::start().await else {
        return;
    };
    let (client, kube, config) = (&r.client, r.kc.clone(), r.kubelets());
    pods_run_on_their_nodes(kube.clone(), config.clone(), client).await;

    for i in 0..2 {
        client
            .create_instance(&req(&format!("w{i}"), "zone-a", "sim.small"))
            .await
            .unwrap();
    }
    let kubelets = Kubelets::start(config, kube.clone()).unwrap();
    let apply = |y: &str| {
        let out =
            r.cp.kubectl()
                .args(["apply", "-f", "-"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .and_then(|mut c| {
                    use std::io::Write as _;
                    c.stdin.take().unwrap().write_all(y.as_bytes())?;
                    c.wait_with_output()
                })
                .unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    // Tolerates everything: no ccm runs here, so the nodes keep their uninitialized taint.
    apply(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: default}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      tolerations: [{operator: Exists}]\n      containers: [{name: app, image: registry.k8s.io/pause:3.10}]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec:\n  selector: {app: web}\n  ports: [{port: 80}]\n",
    );
    let slices: Api<EndpointSlice> = Api::namespaced(kube.clone(), "default");
    let lp = ListParams::default().labels("kubernetes.io/service-name=web");
    wait_for("two ready endpoints for web", T, || async {
        let list = slices.list(&lp).await.ok()?;
        let ready = list
            .items
            .iter()
            .flat_map(|s| &s.endpoints)
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
            .count();
        (ready == 2).then_some(())
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(kube, "default");
    let placed = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    assert!(
        placed.items.iter().all(|p| p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some()),
        "the scheduler bound every pod"
    );
    kubelets.stop().await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_kube_sim() {
    let k = OnKubeSim::start().await;
    nodes_follow_their_instances(k.kc.clone(), k.kubelets(), &k.client).await;
    k.stop().await;
}

/// Control-plane tier: pod CIDRs come from kube-controller-manager's node IPAM, and its
/// node-lifecycle controller turns a silent kubelet's Node Unknown (from the Lease and status
/// heartbeats) and taints it unreachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_real_control_plane_too() {
    let Some(r) = OnRealControlPlane::start().await else {
        return;
    };
    let kube = r.kc.clone();
    nodes_follow_their_instances(kube.clone(), r.kubelets(), &r.client).await;
    // kube-controller-manager tainted the silent node as unreachable.
    let nodes: Api<Node> = Api::all(kube);
    node_with(&nodes, "node-b", "unreachable taint", |n| {
        n.spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .is_some_and(|ts| ts.iter().any(|t| t.key == "node.kubernetes.io/unreachable"))
    })
    .await;
    r.stop().await;
}
