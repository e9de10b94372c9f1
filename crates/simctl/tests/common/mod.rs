//! Helpers shared by simctl's integration tests.

use std::path::Path;
use std::time::Duration;

use tokio::process::Command;

/// Runs kubectl with `dir/kubeconfig` (and a cache in `dir`), asserts success, returns stdout.
pub async fn kubectl(dir: &Path, args: &[&str]) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(dir.join("kubeconfig"))
            .arg("--cache-dir")
            .arg(dir.join("kubectl-cache"))
            .args(args)
            .env_remove("KUBECONFIG")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("kubectl timed out")
    .unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The ClusterRole the shipped ccm manifests grant.
#[allow(dead_code)] // Not every test binary that includes this module uses it.
pub fn ccm_cluster_role() -> k8s_openapi::api::rbac::v1::ClusterRole {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../manifests/ccm/rbac.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).unwrap();
    let role = docs
        .into_iter()
        .find(|d| d["kind"] == "ClusterRole")
        .expect("rbac.yaml has a ClusterRole");
    serde_json::from_value(role).unwrap()
}
