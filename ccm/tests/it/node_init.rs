//! The cloud-node controller with the fake provider.

use std::time::Duration;

use ccm::cloud::fake::FakeCloud;
use ccm::names;
use k8s_openapi::api::core::v1::Event;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;

use crate::common::{T, initialized, instance, start, wait_for};

#[tokio::test]
async fn initialises_nodes_as_upstream() {
    let h = start(FakeCloud::new()).await;
    h.cloud
        .set_instance("n1", instance("n1", "zone-b", "127.1.2.7"));
    h.register(
        "n1",
        json!({"metadata": {"annotations": {names::ANNOTATION_PROVIDED_NODE_IP: "127.1.2.7"}}}),
    )
    .await;
    let n = wait_for("n1 initialised with addresses", T, || async {
        let n = h.node("n1").await?;
        let has_ip = n
            .status
            .as_ref()?
            .addresses
            .as_ref()?
            .iter()
            .any(|a| a.type_ == "InternalIP");
        (initialized(&n) && has_ip).then_some(n)
    })
    .await;
    let labels = n.metadata.labels.clone().unwrap();
    assert_eq!(labels[names::LABEL_ZONE], "zone-b");
    assert_eq!(labels[names::LABEL_ZONE_BETA], "zone-b");
    assert_eq!(labels[names::LABEL_REGION], "sim-1");
    assert_eq!(labels[names::LABEL_INSTANCE_TYPE], "sim.small");
    assert_eq!(labels["simcloud.dev/instance-id"], "i-1");
    assert_eq!(
        n.spec.as_ref().unwrap().provider_id.as_deref(),
        Some("simcloud://zone-b/i-0000000000000002")
    );
    let addrs: Vec<_> = n
        .status
        .unwrap()
        .addresses
        .unwrap()
        .into_iter()
        .map(|a| (a.type_, a.address))
        .collect();
    assert_eq!(
        addrs,
        [
            ("InternalIP".to_owned(), "127.1.2.7".to_owned()),
            ("Hostname".to_owned(), "n1".to_owned())
        ]
    );
    // A Synced event on the node.
    let events: Api<Event> = Api::namespaced(h.client.clone(), "default");
    let found = wait_for("Synced event", T, || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find(|e| {
            e.reason.as_deref() == Some(names::REASON_SYNCED)
                && e.involved_object.name.as_deref() == Some("n1")
        })
    })
    .await;
    assert_eq!(found.message.as_deref(), Some("Node synced successfully"));
    assert!(h.cloud.count_calls("instance-metadata") >= 1);
    h.stop().await;
}

#[tokio::test]
async fn cloud_errors_keep_the_taint_and_are_retried() {
    let h = start(FakeCloud::new()).await;
    h.cloud
        .set_instance("flaky", instance("flaky", "zone-a", "127.1.1.9"));
    h.cloud.fail_node("flaky", "cloud unavailable");
    h.register("flaky", json!({})).await;
    wait_for("several failed attempts", T, || async {
        (h.cloud.count_calls("instance-metadata") >= 3).then_some(())
    })
    .await;
    assert!(
        !initialized(&h.node("flaky").await.unwrap()),
        "the taint stays while the cloud fails"
    );
    h.cloud.heal_node("flaky");
    wait_for("initialised after the cloud recovers", T, || async {
        h.node("flaky").await.filter(initialized)
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn no_metadata_means_skip_and_no_provider_id_is_an_error() {
    let h = start(FakeCloud::new()).await;
    // Metadata None: skipped, taint stays, no retry storm.
    h.cloud
        .set_instance("skipped", instance("skipped", "zone-a", "127.1.1.3"));
    h.cloud.set_metadata_none(true);
    h.register("skipped", json!({})).await;
    wait_for("metadata asked", T, || async {
        (h.cloud.count_calls("instance-metadata") >= 1).then_some(())
    })
    .await;
    // The controller is done with the node (nothing waits for a retry): it was skipped, not
    // postponed.
    let queue = h.metrics.queue(ccm::node_controller::QUEUE);
    wait_for("the node controller is idle", T, || {
        let queue = queue.clone();
        async move { queue.idle().then_some(()) }
    })
    .await;
    assert!(!initialized(&h.node("skipped").await.unwrap()));
    assert!(
        h.cloud.count_calls("instance-metadata") <= 2,
        "a skip is not retried: {:?}",
        h.cloud.calls()
    );
    h.cloud.set_metadata_none(false);
    // Metadata without a provider ID on a node without one: the taint stays.
    let mut no_pid = instance("nopid", "zone-a", "127.1.1.4");
    no_pid.metadata.provider_id.clear();
    h.cloud.set_instance("nopid", no_pid);
    h.register("nopid", json!({})).await;
    wait_for("retried", T, || async {
        (h.cloud
            .calls()
            .iter()
            .filter(|c| *c == "instance-metadata:nopid")
            .count()
            >= 3)
            .then_some(())
    })
    .await;
    assert!(!initialized(&h.node("nopid").await.unwrap()));
    // ... but is fine when the node already has one (kubelet --provider-id).
    let mut no_pid2 = instance("haspid", "zone-c", "127.1.3.4");
    no_pid2.metadata.provider_id.clear();
    h.cloud.set_instance("haspid", no_pid2);
    h.register(
        "haspid",
        json!({"spec": {"providerID": "simcloud://zone-c/i-00000000000000aa"}}),
    )
    .await;
    let n = wait_for("haspid initialised", T, || async {
        h.node("haspid").await.filter(initialized)
    })
    .await;
    assert_eq!(
        n.spec.unwrap().provider_id.as_deref(),
        Some("simcloud://zone-c/i-00000000000000aa")
    );
    h.stop().await;
}

#[tokio::test]
async fn foreign_nodes_are_never_touched() {
    let h = start(FakeCloud::new()).await;
    h.register(
        "aws-node",
        json!({"spec": {"providerID": "aws:///us-east-1a/i-0abc"}}),
    )
    .await;
    h.cloud
        .set_instance("ours", instance("ours", "zone-a", "127.1.1.5"));
    h.register("ours", json!({})).await;
    wait_for("ours initialised", T, || async {
        h.node("ours").await.filter(initialized)
    })
    .await;
    assert!(!initialized(&h.node("aws-node").await.unwrap()));
    assert!(
        !h.cloud.calls().iter().any(|c| c.ends_with(":aws-node")),
        "{:?}",
        h.cloud.calls()
    );
    h.stop().await;
}

#[tokio::test]
async fn concurrent_writes_during_initialisation_are_kept() {
    let h = start(FakeCloud::with_delay(Duration::from_millis(400))).await;
    h.cloud
        .set_instance("busy", instance("busy", "zone-a", "127.1.1.6"));
    h.register("busy", json!({})).await;
    // While the controller waits for the (slow) cloud, someone else labels the node.
    wait_for("metadata call started", T, || async {
        (h.cloud.count_calls("instance-metadata") >= 1).then_some(())
    })
    .await;
    h.nodes
        .patch(
            "busy",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"team": "edge"}}})),
        )
        .await
        .unwrap();
    let n = wait_for("busy initialised", T, || async {
        h.node("busy").await.filter(initialized)
    })
    .await;
    let labels = n.metadata.labels.unwrap();
    assert_eq!(labels["team"], "edge", "the concurrent label survives");
    assert_eq!(labels[names::LABEL_ZONE], "zone-a");
    h.stop().await;
}

#[tokio::test]
async fn initialised_nodes_get_ga_labels_from_beta() {
    let h = start(FakeCloud::new()).await;
    let n = serde_json::from_value(
        json!({"metadata": {"name": "old", "labels": {names::LABEL_ZONE_BETA: "zone-c"}}}),
    )
    .unwrap();
    h.nodes.create(&Default::default(), &n).await.unwrap();
    let n = wait_for("GA zone label", T, || async {
        let n = h.node("old").await?;
        (n.metadata.labels.as_ref()?.get(names::LABEL_ZONE)? == "zone-c").then_some(n)
    })
    .await;
    assert!(initialized(&n));
    assert_eq!(
        h.cloud.count_calls("instance-metadata"),
        0,
        "label reconciliation needs no cloud call"
    );
    h.stop().await;
}

/// The four controllers share one Node watch (upstream: one shared informer): a client that
/// counts the ccm's requests sees one list and one watch of Nodes, where each controller used to
/// open its own, while all four do their work (a node initialised and routed, a Service given a
/// load balancer, the lifecycle controller's taint on a stopped instance).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controllers_share_one_node_watch() {
    use std::sync::{Arc, Mutex};

    use k8s_openapi::api::core::v1::Service;
    use kube::api::PostParams;

    let mut opts = ccm::Options::for_tests("test");
    opts.controllers = [
        ccm::controllers::ControllerName::CloudNode,
        ccm::controllers::ControllerName::CloudNodeLifecycle,
        ccm::controllers::ControllerName::Route,
        ccm::controllers::ControllerName::Service,
    ]
    .into();
    let kube = kube_sim::Server::start(kube_sim::ServerConfig::default())
        .await
        .unwrap();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = {
        let seen = seen.clone();
        tower::util::MapRequestLayer::new(move |req: axum::http::Request<kube::client::Body>| {
            seen.lock()
                .unwrap()
                .push(format!("{} {}", req.method(), req.uri()));
            req
        })
    };
    let counting =
        kube::client::ClientBuilder::try_from(kube::Config::new(kube.url().parse().unwrap()))
            .unwrap()
            .with_layer(&record)
            .build();
    let admin = crate::common::client_for(&kube.url());
    let cloud = std::sync::Arc::new(FakeCloud::new());
    let stop = ccm::CancellationToken::new();
    let rx = stop.clone();
    let mut tasks = ccm::start_controllers(
        counting,
        cloud.clone(),
        std::sync::Arc::new(ccm::metrics::Metrics::new()),
        &opts,
        &rx,
    );
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(admin.clone());
    let mut stopped = instance("n1", "zone-a", "127.1.2.8");
    stopped.shutdown = true;
    cloud.set_instance("n1", stopped);
    let node = json!({"metadata": {"name": "n1"},
        "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"],
            "taints": [{"key": names::TAINT_UNINITIALIZED, "value": "true", "effect": "NoSchedule"}]},
        "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(node).unwrap(),
        )
        .await
        .unwrap();
    let svc = json!({"metadata": {"name": "web", "namespace": "default"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}});
    Api::<Service>::namespaced(admin.clone(), "default")
        .create(
            &PostParams::default(),
            &serde_json::from_value(svc).unwrap(),
        )
        .await
        .unwrap();
    wait_for(
        "node initialised, routed and tainted as shut down",
        T,
        || async {
            let n = nodes.get("n1").await.ok()?;
            let shut = n
                .spec
                .as_ref()?
                .taints
                .as_ref()?
                .iter()
                .any(|t| t.key == names::TAINT_SHUTDOWN);
            let routed = !cloud.routes_snapshot().is_empty();
            (initialized(&n) && shut && routed).then_some(())
        },
    )
    .await;
    wait_for("the Service's load balancer", T, || async {
        let s = Api::<Service>::namespaced(admin.clone(), "default")
            .get("web")
            .await
            .ok()?;
        s.status?.load_balancer?.ingress.filter(|i| !i.is_empty())
    })
    .await;
    let node_reads: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.starts_with("GET /api/v1/nodes?"))
        .cloned()
        .collect();
    let watches = node_reads
        .iter()
        .filter(|r| r.contains("watch=true"))
        .count();
    let lists = node_reads.len() - watches;
    assert_eq!((lists, watches), (1, 1), "{node_reads:#?}");
    stop.cancel();
    while tasks.join_next().await.is_some() {}
    kube.shutdown().await;
}
