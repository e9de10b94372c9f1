//! The route controller: with the fake provider, and against cloud-sim's route-table quota.

use std::time::Duration;

use ccm::cloud::CloudRoute;
use ccm::cloud::fake::FakeCloud;
use ccm::controllers::ControllerName;
use ccm::{Options, names};
use cloud_api::{CreateInstanceRequest, Tags};
use k8s_openapi::api::core::v1::{Event, Node};
use kube::Api;
use kube::api::ListParams;
use kubelet_sim::{KubeletConfig, Kubelets};
use serde_json::json;

use crate::common::{T, client_for, start_with, wait_for};

fn route_opts() -> Options {
    let mut o = Options::for_tests("test");
    o.controllers = [ControllerName::Route].into();
    o
}

/// `NetworkUnavailable` as (status, reason).
fn network(n: &Node) -> Option<(String, String)> {
    let c = n
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == names::CONDITION_NETWORK_UNAVAILABLE)?;
    Some((c.status.clone(), c.reason.clone().unwrap_or_default()))
}

fn initialised(pid: &str, cidr: &str) -> serde_json::Value {
    json!({"spec": {"taints": [], "providerID": pid, "podCIDR": cidr, "podCIDRs": [cidr]}})
}

#[tokio::test]
async fn routes_follow_pod_cidrs() {
    let h = start_with(FakeCloud::new(), route_opts()).await;
    h.cloud.insert_route(CloudRoute {
        id: "rt-out".into(),
        name: "outside".into(),
        target_node: "old".into(),
        destination_cidr: "192.168.7.0/24".into(),
        blackhole: false,
    });
    h.cloud.insert_route(CloudRoute {
        id: "rt-stale".into(),
        name: "stale".into(),
        target_node: "old".into(),
        destination_cidr: "10.244.9.0/24".into(),
        blackhole: false,
    });
    h.register(
        "a",
        initialised("simcloud://zone-a/i-0000000000000001", "10.244.1.0/24"),
    )
    .await;
    h.register(
        "b",
        initialised("simcloud://zone-b/i-0000000000000002", "10.244.2.0/24"),
    )
    .await;
    h.register(
        "no-cidr",
        json!({"spec": {"taints": [], "providerID": "simcloud://zone-c/i-0000000000000003"}}),
    )
    .await;
    let routes = wait_for("routes for a and b, stale one gone", T, || async {
        let r = h.cloud.routes_snapshot();
        let mut dests: Vec<_> = r
            .iter()
            .map(|r| format!("{}:{}", r.target_node, r.destination_cidr))
            .collect();
        dests.sort();
        (dests == ["a:10.244.1.0/24", "b:10.244.2.0/24", "old:192.168.7.0/24"]).then_some(r)
    })
    .await;
    assert!(
        routes.iter().any(|r| r.id == "rt-out"),
        "routes outside the cluster CIDR are never deleted"
    );
    for n in ["a", "b"] {
        let node = wait_for("RouteCreated", T, || async {
            h.node(n).await.filter(|n| network(n).is_some())
        })
        .await;
        assert_eq!(
            network(&node),
            Some(("False".into(), names::REASON_ROUTE_CREATED.into()))
        );
    }
    assert!(
        network(&h.node("no-cidr").await.unwrap()).is_none(),
        "nodes without pod CIDRs or routes are left alone"
    );
    // A node goes away: its route follows. A blackhole route is replaced.
    h.nodes.delete("b", &Default::default()).await.unwrap();
    h.cloud.blackhole_routes_to("a");
    wait_for("b's route deleted and a's re-created", T, || async {
        let r = h.cloud.routes_snapshot();
        let ok = !r.iter().any(|r| r.target_node == "b")
            && r.iter().any(|r| r.target_node == "a" && !r.blackhole)
            && !r.iter().any(|r| r.blackhole);
        ok.then_some(())
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn failed_creates_are_reported_and_recover() {
    let h = start_with(FakeCloud::new(), route_opts()).await;
    h.cloud.set_route_quota(Some(1));
    h.register(
        "a",
        initialised("simcloud://zone-a/i-0000000000000001", "10.244.1.0/24"),
    )
    .await;
    wait_for("a routed", T, || async {
        h.node("a")
            .await
            .filter(|n| network(n).is_some_and(|(s, _)| s == "False"))
    })
    .await;
    h.register(
        "b",
        initialised("simcloud://zone-b/i-0000000000000002", "10.244.2.0/24"),
    )
    .await;
    let b = wait_for("b NoRouteCreated", T, || async {
        h.node("b")
            .await
            .filter(|n| network(n).is_some_and(|(s, _)| s == "True"))
    })
    .await;
    assert_eq!(network(&b).unwrap().1, names::REASON_NO_ROUTE_CREATED);
    let events: Api<Event> = Api::namespaced(h.client.clone(), "default");
    let ev = wait_for("FailedToCreateRoute event", T, || async {
        events
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some(names::REASON_FAILED_TO_CREATE_ROUTE))
    })
    .await;
    assert!(ev.message.unwrap().contains("QUOTA_EXCEEDED"));
    assert_eq!(ev.type_.as_deref(), Some("Warning"));
    h.cloud.set_route_quota(None);
    wait_for("b recovers", T, || async {
        h.node("b")
            .await
            .filter(|n| network(n).is_some_and(|(s, _)| s == "False"))
    })
    .await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_sim_route_quota_is_visible_and_recovers() {
    let mut cfg = cloud_sim::Config::for_tests_isolated();
    cfg.route_quota = 2;
    let cloud = cloud_sim::Server::start_in_memory(cfg).await.unwrap();
    let cc = cloud_client::Client::new(cloud.base_url()).unwrap();
    let kube = kube_sim::Server::start(kube_sim::ServerConfig::default())
        .await
        .unwrap();
    let mut kcfg = KubeletConfig::for_tests(&cloud.base_url());
    kcfg.mark_unknown_after = Some(Duration::from_millis(300));
    let kubelets = Kubelets::start(kcfg, client_for(&kube.url())).unwrap();
    let client = client_for(&kube.url());
    let provider: std::sync::Arc<dyn ccm::cloud::CloudProvider> =
        std::sync::Arc::new(ccm::cloud::simcloud::SimCloud::new(cc.clone(), None));
    let mut opts = Options::for_tests("test");
    opts.controllers = ControllerName::ALL.into_iter().collect();
    let stop_tx = ccm::CancellationToken::new();
    let stop = stop_tx.clone();
    let metrics = std::sync::Arc::new(ccm::metrics::Metrics::new());
    let mut tasks = ccm::start_controllers(client.clone(), provider, metrics.clone(), &opts, &stop);
    let mut ids = Vec::new();
    for (n, zone) in [("r1", "zone-a"), ("r2", "zone-b"), ("r3", "zone-c")] {
        let req = CreateInstanceRequest {
            name: n.into(),
            zone: zone.into(),
            instance_type: "sim.small".into(),
            tags: Tags::new(),
            private_ip: None,
        };
        ids.push(cc.create_instance(&req).await.unwrap().id);
    }
    let nodes: Api<Node> = Api::all(client.clone());
    let states = || async {
        let list = nodes.list(&ListParams::default()).await.ok()?;
        let mut s: Vec<_> = list
            .items
            .iter()
            .filter_map(|n| Some((n.metadata.name.clone()?, network(n)?.0)))
            .collect();
        s.sort();
        Some(s)
    };
    // Two nodes get routes; the third is NoRouteCreated: the quota is visible on the node.
    let s = wait_for("quota visible", T, || async {
        let s = states().await?;
        (s.len() == 3 && s.iter().filter(|(_, st)| st == "True").count() == 1).then_some(s)
    })
    .await;
    let table = cc
        .route_table(cloud_client::DEFAULT_ROUTE_TABLE)
        .await
        .unwrap();
    assert_eq!((table.route_count, table.route_quota), (2, 2));
    // The starved node's failure is reported once (a warning event), not on every pass: let
    // three more passes run, then count.
    let starved = s.iter().find(|(_, st)| st == "True").unwrap().0.clone();
    let passes = metrics.route_syncs.get();
    wait_for("three more route passes", T, || async {
        (metrics.route_syncs.get() >= passes + 3).then_some(())
    })
    .await;
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::all(client.clone());
    let reported: Vec<_> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some(ccm::names::REASON_FAILED_TO_CREATE_ROUTE)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(starved.as_str())
        })
        .collect();
    assert_eq!(reported.len(), 1, "{reported:#?}");
    assert!(
        reported[0].series.as_ref().is_none_or(|s| s.count <= 1),
        "published again: {:?}",
        reported[0].series
    );
    // Terminate a routed node's instance: the lifecycle controller deletes the node, the route
    // controller deletes its route, and the starved node gets one.
    let routed = s.iter().find(|(_, st)| st == "False").unwrap().0.clone();
    let i = ["r1", "r2", "r3"]
        .iter()
        .position(|n| *n == routed)
        .unwrap();
    cc.terminate_instance(ids[i].as_str()).await.unwrap();
    wait_for("recovered", T, || async {
        let s = states().await?;
        (s.len() == 2 && s.iter().all(|(_, st)| st == "False")).then_some(())
    })
    .await;
    let routes = cc
        .list_all_routes(cloud_client::DEFAULT_ROUTE_TABLE)
        .await
        .unwrap();
    assert_eq!(routes.len(), 2);
    assert!(routes.iter().all(|r| {
        r.tags
            .get("kubernetes.io/cluster/kubernetes")
            .map(String::as_str)
            == Some("owned")
    }));
    stop_tx.cancel();
    while tasks.join_next().await.is_some() {}
    kubelets.stop().await;
    kube.shutdown().await;
    cloud.shutdown().await.unwrap();
}
