//! The cloud-node-lifecycle controller with the fake provider.

use ccm::cloud::fake::FakeCloud;
use ccm::names;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::common::{T, instance, start, wait_for};

fn not_ready() -> serde_json::Value {
    json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}})
}

fn has_shutdown(n: &k8s_openapi::api::core::v1::Node) -> bool {
    ccm::node_plan::has_shutdown_taint(n)
}

#[tokio::test]
async fn gone_instances_delete_nodes_but_errors_never_do() {
    let h = start(FakeCloud::new()).await;
    // Initialised nodes (no uninitialized taint), NotReady.
    let init = |pid: &str| json!({"spec": {"taints": [], "providerID": pid}, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
    h.cloud
        .set_instance("errs", instance("errs", "zone-a", "127.1.1.2"));
    h.cloud.fail_node("errs", "cloud down");
    h.register("errs", init("simcloud://zone-a/i-0000000000000001"))
        .await;
    h.register("gone", init("simcloud://zone-a/i-0000000000000002"))
        .await;
    h.register("foreign", init("aws:///us-east-1a/i-0abc"))
        .await;
    h.register(
        "ready",
        json!({"spec": {"taints": [], "providerID": "simcloud://zone-a/i-0000000000000003"}}),
    )
    .await;
    wait_for("gone deleted", T, || async {
        h.node("gone").await.is_none().then_some(())
    })
    .await;
    // Several passes later the erroring node and the foreign one are still there.
    wait_for("more passes", T, || async {
        (h.cloud
            .calls()
            .iter()
            .filter(|c| *c == "instance-exists:errs")
            .count()
            >= 3)
            .then_some(())
    })
    .await;
    assert!(h.node("errs").await.is_some());
    assert!(h.node("foreign").await.is_some());
    assert!(!h.cloud.calls().iter().any(|c| c.ends_with(":foreign")));
    // Ready nodes are never checked against the cloud.
    assert!(!h.cloud.calls().iter().any(|c| c == "instance-exists:ready"));
    h.stop().await;
}

#[tokio::test]
async fn shutdown_taint_follows_the_instance_and_readiness() {
    let h = start(FakeCloud::new()).await;
    let mut i = instance("sleepy", "zone-b", "127.1.2.2");
    i.shutdown = true;
    h.cloud.set_instance("sleepy", i);
    let mut extra = not_ready();
    extra["spec"] = json!({"taints": [{"key": "keep", "effect": "NoExecute"}], "providerID": "simcloud://zone-b/i-0000000000000006"});
    h.register("sleepy", extra).await;
    let n = wait_for("shutdown taint", T, || async {
        h.node("sleepy").await.filter(has_shutdown)
    })
    .await;
    let taints = n.spec.unwrap().taints.unwrap();
    let t = taints
        .iter()
        .find(|t| t.key == names::TAINT_SHUTDOWN)
        .unwrap();
    assert_eq!(
        (t.effect.as_str(), t.value.as_deref()),
        ("NoSchedule", None)
    );
    assert!(
        taints.iter().any(|t| t.key == "keep"),
        "other taints survive"
    );
    // Running again but still NotReady: the taint stays until Ready.
    h.cloud.set_shutdown("sleepy", false);
    wait_for("a pass with the instance running", T, || async {
        (h.cloud
            .calls()
            .iter()
            .filter(|c| *c == "instance-shutdown:sleepy")
            .count()
            >= 3)
            .then_some(())
    })
    .await;
    assert!(has_shutdown(&h.node("sleepy").await.unwrap()));
    h.nodes
        .patch_status(
            "sleepy",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}})),
        )
        .await
        .unwrap();
    let n = wait_for("taint removed", T, || async {
        h.node("sleepy").await.filter(|n| !has_shutdown(n))
    })
    .await;
    assert!(
        n.spec
            .unwrap()
            .taints
            .unwrap()
            .iter()
            .any(|t| t.key == "keep")
    );
    h.stop().await;
}

/// kube-controller-manager writes NoExecute taints on the same Nodes. A taint it added after the
/// lifecycle controller's cache saw the Node is kept when the shutdown taint goes on, and one it
/// removed is not brought back when the shutdown taint comes off (upstream reads the Node and
/// patches with a resourceVersion precondition).
#[tokio::test]
async fn taints_other_writers_change_are_neither_lost_nor_resurrected() {
    let mut opts = ccm::Options::for_tests("test");
    opts.controllers = Default::default();
    let h = crate::common::start_with(FakeCloud::new(), opts).await;
    let mut off = instance("n", "zone-a", "127.1.1.2");
    off.shutdown = true;
    h.cloud.set_instance("n", off);
    h.register(
        "n",
        json!({"spec": {"taints": [], "providerID": "simcloud://zone-a/i-0000000000000001"},
            "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}),
    )
    .await;
    let provider: std::sync::Arc<dyn ccm::cloud::CloudProvider> = h.cloud.clone();
    let ctx = ccm::node_lifecycle::LifecycleContext::new(
        h.client.clone(),
        ccm::cloud::HasInstances::of(&provider).expect("the fake has instances"),
        std::sync::Arc::new(ccm::metrics::Metrics::new()),
        "test",
    );
    let keys = |n: &k8s_openapi::api::core::v1::Node| -> Vec<String> {
        let mut k: Vec<String> = n
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .into_iter()
            .flatten()
            .map(|t| t.key.clone())
            .collect();
        k.sort();
        k
    };
    let taint = |taints: serde_json::Value| Patch::Strategic(json!({"spec": {"taints": taints}}));
    let unreachable = json!({"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"});

    // The cache's copy predates kube-controller-manager's unreachable taint.
    let stale = h.node("n").await.unwrap();
    h.nodes
        .patch("n", &PatchParams::default(), &taint(json!([unreachable])))
        .await
        .unwrap();
    let out = ccm::node_lifecycle::monitor_node(&ctx, &stale).await;
    assert_eq!(out, ccm::node_lifecycle::Outcome::Tainted);
    assert_eq!(
        keys(&h.node("n").await.unwrap()),
        [names::TAINT_SHUTDOWN, "node.kubernetes.io/unreachable"]
    );

    // Ready again; the cache still has the unreachable taint that kube-controller-manager has
    // since removed.
    h.nodes
        .patch_status(
            "n",
            &PatchParams::default(),
            &Patch::Strategic(
                json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
            ),
        )
        .await
        .unwrap();
    let stale = h.node("n").await.unwrap();
    h.nodes
        .patch(
            "n",
            &PatchParams::default(),
            &taint(json!([{"key": names::TAINT_SHUTDOWN, "effect": "NoSchedule"}])),
        )
        .await
        .unwrap();
    let out = ccm::node_lifecycle::monitor_node(&ctx, &stale).await;
    assert_eq!(out, ccm::node_lifecycle::Outcome::Untainted);
    assert!(keys(&h.node("n").await.unwrap()).is_empty());
    h.stop().await;
}
