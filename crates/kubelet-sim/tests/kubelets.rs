//! The kubelet simulator against an in-process cloud-sim.

use std::time::Duration;

use cloud_api::{CreateInstanceRequest, Tags};
use cloud_client::Client;
use kube_sim::api::Target;
use kube_sim::kubelet::{KubeletConfig, Kubelets, UNINITIALIZED_TAINT, provided_ip};
use kube_sim::resources;
use serde_json::Value;

use crate::common::{start, wait_for};

const T: Duration = Duration::from_secs(20);

fn node_target(name: &str) -> Target {
    Target {
        def: resources::by_storage(resources::NODES).unwrap(),
        namespace: None,
        name: Some(name.to_owned()),
        status: false,
    }
}

fn ready(node: &Value) -> Option<String> {
    node["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
        .and_then(|c| c["status"].as_str().map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_follow_their_instances() {
    let cloud = cloud_sim::Server::start_in_memory(cloud_sim::Config::for_tests())
        .await
        .unwrap();
    let client = Client::new(cloud.base_url()).unwrap();
    let kube = start().await;
    let req = |name: &str, zone: &str, ty: &str| CreateInstanceRequest {
        name: name.into(),
        zone: zone.into(),
        instance_type: ty.into(),
        tags: Tags::new(),
        private_ip: None,
    };
    // One instance exists before the kubelets start, one is created after.
    let a = client
        .create_instance(&req("node-a", "zone-a", "sim.medium"))
        .await
        .unwrap();
    let kubelets = Kubelets::start(
        KubeletConfig::for_tests(&cloud.base_url()),
        kube.server.api().clone(),
    )
    .unwrap();
    let b = client
        .create_instance(&req("node-b", "zone-b", "sim.small"))
        .await
        .unwrap();
    let api = kube.server.api().clone();
    for (name, inst) in [("node-a", &a), ("node-b", &b)] {
        let node = wait_for("node registered", T, || {
            let api = api.clone();
            async move { api.get(&node_target(name)).ok() }
        })
        .await;
        // Registered as kubelet --cloud-provider=external does: tainted, hostname only, no zone.
        assert_eq!(node["spec"]["taints"][0]["key"], UNINITIALIZED_TAINT);
        assert_eq!(
            node["status"]["addresses"],
            serde_json::json!([{"type": "Hostname", "address": name}])
        );
        assert_eq!(provided_ip(&node), Some(inst.private_ip));
        assert!(
            node["metadata"]["labels"]
                .get("topology.kubernetes.io/zone")
                .is_none()
        );
        assert!(node["spec"].get("providerID").is_none());
        assert!(
            node["spec"]["podCIDR"]
                .as_str()
                .unwrap()
                .starts_with("10.244.")
        );
        assert_eq!(ready(&node).as_deref(), Some("True"));
    }
    let a_node = api.get(&node_target("node-a")).unwrap();
    let b_node = api.get(&node_target("node-b")).unwrap();
    assert_eq!(
        a_node["status"]["capacity"]["cpu"], "2",
        "capacity from sim.medium"
    );
    assert_eq!(a_node["status"]["capacity"]["memory"], "4194304Ki");
    assert_ne!(a_node["spec"]["podCIDR"], b_node["spec"]["podCIDR"]);

    // Stop: the kubelet goes quiet and, after the grace period, Ready turns Unknown.
    client.stop_instance(a.id.as_str()).await.unwrap();
    wait_for("node-a Unknown", T, || {
        let api = api.clone();
        async move { (ready(&api.get(&node_target("node-a")).ok()?)? == "Unknown").then_some(()) }
    })
    .await;
    let n = api.get(&node_target("node-a")).unwrap();
    let r = n["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    assert_eq!(r["reason"], "NodeStatusUnknown");
    // Start again: Ready.
    client.start_instance(a.id.as_str()).await.unwrap();
    wait_for("node-a Ready", T, || {
        let api = api.clone();
        async move { (ready(&api.get(&node_target("node-a")).ok()?)? == "True").then_some(()) }
    })
    .await;
    // Terminate: the Node stays (for the ccm to delete), NotReady.
    client.terminate_instance(b.id.as_str()).await.unwrap();
    wait_for("node-b Unknown", T, || {
        let api = api.clone();
        async move { (ready(&api.get(&node_target("node-b")).ok()?)? == "Unknown").then_some(()) }
    })
    .await;
    assert!(api.get(&node_target("node-b")).is_ok());
    kubelets.stop().await;
    cloud.shutdown().await.unwrap();
}
