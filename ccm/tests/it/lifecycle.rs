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
