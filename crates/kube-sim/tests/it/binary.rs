//! The `kube-sim serve` binary as a user runs it: it writes a kubeconfig that kubectl can use, and
//! with `--cloud-url` its kubelets register the cloud's instances.

use std::process::Stdio;
use std::time::Duration;

use cloud_api::{CreateInstanceRequest, Tags};
use tokio::process::Command;

use crate::common::wait_for;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_writes_a_kubeconfig_and_runs_kubelets() {
    let cloud = cloud_sim::Server::start_in_memory(cloud_sim::Config::for_tests_isolated())
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!("kube-sim-bin-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kube-sim"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--node-status-interval",
            "200ms",
        ])
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--cloud-url")
        .arg(cloud.base_url())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let k = kubeconfig.clone();
    wait_for("kubeconfig", Duration::from_secs(30), || {
        let k = k.clone();
        async move {
            std::fs::read_to_string(&k)
                .ok()
                .filter(|s| s.contains("server: http://127.0.0.1:"))
        }
    })
    .await;
    let kubectl = |args: &'static [&'static str]| {
        let mut c = Command::new("kubectl");
        c.arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--cache-dir")
            .arg(dir.join("cache"))
            .args(args)
            .env_remove("KUBECONFIG");
        c
    };
    let out = kubectl(&["get", "namespaces", "-o", "name"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names = String::from_utf8(out.stdout).unwrap();
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(names.contains(&format!("namespace/{ns}")), "{names}");
    }
    let client = cloud_client::Client::new(cloud.base_url()).unwrap();
    let req = CreateInstanceRequest {
        name: "worker-1".into(),
        zone: "zone-c".into(),
        instance_type: "sim.small".into(),
        tags: Tags::new(),
        private_ip: None,
    };
    client.create_instance(&req).await.unwrap();
    wait_for(
        "node worker-1 in kubectl",
        Duration::from_secs(30),
        || async {
            let out = kubectl(&["get", "nodes", "-o", "name"])
                .output()
                .await
                .ok()?;
            String::from_utf8_lossy(&out.stdout)
                .contains("node/worker-1")
                .then_some(())
        },
    )
    .await;
    // SIGTERM ends it cleanly.
    sim_common::signal_and_expect_clean_exit(&mut child, "TERM").await;
    let _ = std::fs::remove_dir_all(&dir);
    cloud.shutdown().await.unwrap();
}
