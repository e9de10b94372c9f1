//! Helpers shared by simctl's integration tests.

use std::path::Path;
use std::time::Duration;

use tokio::process::Command;

/// Runs kubectl with `dir/kubeconfig` (and a cache in `dir`), asserts success, returns stdout.
#[allow(dead_code)] // Not every test binary that includes this module uses it.
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

/// A /24 per zone in the loopback block 127.`b`.0.0/16: `zone-a` gets 127.`b`.1.0/24, and so on.
/// Each test sandbox takes blocks no other test uses.
#[allow(dead_code)]
pub fn zone_blocks(b: u8) -> Vec<(String, ipnet::Ipv4Net)> {
    ["zone-a", "zone-b", "zone-c"]
        .iter()
        .enumerate()
        .map(|(i, z)| {
            (
                (*z).to_owned(),
                format!("127.{b}.{}.0/24", i + 1).parse().unwrap(),
            )
        })
        .collect()
}

/// `simctl up`'s options for a test sandbox on kube-sim with its own blocks: instances in
/// 127.`b`.x, load-balancer pools in 127.`b+1`.x, pods in 127.`b+2`.0.0/16; three zones, no boot
/// delay, the ccm in process. Tests change what they need with `..common::up_args(..)`.
#[allow(dead_code)]
pub fn up_args(dir: &Path, b: u8) -> simctl::up::UpArgs {
    simctl::up::UpArgs {
        data_dir: dir.to_owned(),
        nodes: 0,
        zones: ["zone-a", "zone-b", "zone-c"].map(String::from).to_vec(),
        instance_type: "sim.small".into(),
        cloud_listen: "127.0.0.1:0".parse().unwrap(),
        control_plane: simctl::up::ControlPlaneKind::KubeSim,
        kube_listen: "127.0.0.1:0".parse().unwrap(),
        instance_subnets: zone_blocks(b),
        lb_pools: zone_blocks(b + 1),
        cluster_cidr: None,
        node_cidr_mask_size: 24,
        pod_loopback_cidr: Some(format!("127.{}.0.0/16", b + 2).parse().unwrap()),
        cluster_name: "simcloud".into(),
        boot_delay: Duration::ZERO,
        node_monitor_grace_period: Duration::from_secs(40),
        node_monitor_period: Duration::from_secs(5),
        route_quota: None,
        timeout: Duration::from_secs(120),
        ccm: simctl::up::CcmMode::InProcess,
        data_plane: true,
        log_filter: "warn".into(),
    }
}
