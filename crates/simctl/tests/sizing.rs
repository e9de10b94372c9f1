//! `simctl up` past the sizes that used to stop it: 300 nodes need more than the default /16 of
//! /24 pod CIDRs (256) and more routes than the default quota (50). The sandbox sizes both, and
//! every node comes up initialised with its own pod CIDR and route.

mod common;

use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use simctl::up::{NodeSpec, Sandbox, UpArgs};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_nodes_come_up_sized_to_fit() {
    let dir = std::env::temp_dir().join(format!("simctl-sizing-{}", std::process::id()));
    // Blocks of this test's own: instances 127.241.x, pools 127.242.x; the pod network and its
    // loopback block are sized by the sandbox (a /15 each for 300 nodes of /24), placed at
    // 127.246.0.0/15 here so they do not meet another sandbox's default 127.244.0.0/16.
    let args = UpArgs {
        nodes: 300,
        pod_loopback_cidr: Some("127.246.0.0/15".parse().unwrap()),
        timeout: Duration::from_secs(240),
        ..common::up_args(&dir, 241)
    };
    let nodes: Vec<NodeSpec> = simctl::up::default_nodes(&args);
    assert_eq!(nodes.len(), 300);
    // Start returns once every node is initialised (or fails naming what it waited for).
    let sandbox = Sandbox::start(&args, &nodes)
        .await
        .expect("300 nodes come up");
    let kube = kube::Client::try_from(sandbox.kube_config.clone()).unwrap();
    let all = kube::Api::<Node>::all(kube)
        .list(&Default::default())
        .await
        .unwrap()
        .items;
    assert_eq!(all.len(), 300);
    let cluster: ipnet::Ipv4Net = "10.244.0.0/15".parse().unwrap();
    let mut cidrs = std::collections::BTreeSet::new();
    for n in &all {
        let spec = n.spec.as_ref().unwrap();
        let cidr: ipnet::Ipv4Net = spec
            .pod_cidr
            .as_deref()
            .expect("a pod CIDR")
            .parse()
            .unwrap();
        assert!(cluster.contains(&cidr), "{cidr} outside {cluster}");
        assert!(cidrs.insert(cidr), "{cidr} given twice");
    }
    // Every node got its route: the quota was sized to 300 (the default 50 would stop at 50).
    let routes = sandbox
        .cloud
        .list_all_routes(cloud_client::DEFAULT_ROUTE_TABLE)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut count = routes.len();
    while count < 300 {
        assert!(
            std::time::Instant::now() < deadline,
            "only {count} routes of 300"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        count = sandbox
            .cloud
            .list_all_routes(cloud_client::DEFAULT_ROUTE_TABLE)
            .await
            .unwrap()
            .len();
    }
    assert_eq!(count, 300);
    sandbox.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}
