//! The kubelet simulator against an in-process cloud-sim, with kube-sim and (control-plane tier)
//! with the real kube-apiserver and kube-controller-manager.

use std::time::Duration;

use cloud_api::{CreateInstanceRequest, Instance, Tags};
use cloud_client::Client;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_kube_sim() {
    let cloud = cloud_sim::Server::start_in_memory(cloud_sim::Config::for_tests())
        .await
        .unwrap();
    let client = Client::new(cloud.base_url()).unwrap();
    let kube = kube_sim::Server::start(kube_sim::ServerConfig::default())
        .await
        .unwrap();
    let kc = kube::Client::try_from(kube::Config::new(kube.url().parse().unwrap())).unwrap();
    nodes_follow_their_instances(kc, KubeletConfig::for_tests(&cloud.base_url()), &client).await;
    kube.shutdown().await;
    cloud.shutdown().await.unwrap();
}

/// Control-plane tier: pod CIDRs come from kube-controller-manager's node IPAM, and its
/// node-lifecycle controller turns a silent kubelet's Node Unknown (from the Lease and status
/// heartbeats) and taints it unreachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_real_control_plane_too() {
    let Some(bins) = control_plane::binaries_for_test() else {
        return;
    };
    let cp = control_plane::ControlPlane::start_with(bins, control_plane::Options::for_tests())
        .await
        .unwrap();
    let cloud = cloud_sim::Server::start_in_memory(cloud_sim::Config::for_tests())
        .await
        .unwrap();
    let client = Client::new(cloud.base_url()).unwrap();
    let kube = cp.client().await.unwrap();
    let config = KubeletConfig {
        status_interval: Duration::from_millis(500),
        ..KubeletConfig::with_controller_manager(&cloud.base_url())
    };
    nodes_follow_their_instances(kube.clone(), config, &client).await;
    // kube-controller-manager tainted the silent node as unreachable.
    let nodes: Api<Node> = Api::all(kube);
    node_with(&nodes, "node-b", "unreachable taint", |n| {
        n.spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .is_some_and(|ts| ts.iter().any(|t| t.key == "node.kubernetes.io/unreachable"))
    })
    .await;
    cloud.shutdown().await.unwrap();
}
