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
    tokio::time::sleep(Duration::from_millis(500)).await;
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
