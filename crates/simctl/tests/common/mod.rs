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

/// Every rule the shipped ccm manifests grant (its ClusterRole, and its Role in kube-system).
#[allow(dead_code)] // Not every test binary that includes this module uses it.
pub fn ccm_rbac_rules() -> Vec<k8s_openapi::api::rbac::v1::PolicyRule> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../manifests/ccm/rbac.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).unwrap();
    kube_sim::rbac::rules_of(&docs)
}
