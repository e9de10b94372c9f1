//! End to end: cloud-sim and kube-sim (with its kubelets) in process, two real ccm processes.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use cloud_api::{CreateInstanceRequest, Tags};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kubelet_sim::{KubeletConfig, Kubelets};
use tokio::process::{Child, Command};

use crate::common::{client_for, initialized, wait_for};

const T: Duration = Duration::from_secs(60);

fn spawn_ccm(dir: &Path, identity: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ccm"))
        .args([
            "--cloud-provider=simcloud",
            "--secure-port=0",
            "--node-monitor-period=300ms",
            "--concurrent-node-syncs=4",
            "--cluster-cidr=10.244.0.0/16",
            "--route-reconciliation-period=1s",
        ])
        .args([
            "--leader-elect-lease-duration=2s",
            "--leader-elect-renew-deadline=1500ms",
            "--leader-elect-retry-period=300ms",
        ])
        .arg(format!("--leader-elect-identity={identity}"))
        .arg("--kubeconfig")
        .arg(dir.join("kubeconfig"))
        .arg("--cloud-config")
        .arg(dir.join("cloud.yaml"))
        .env("CCM_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ccm")
}

fn zone_of(n: &Node) -> Option<String> {
    n.metadata
        .labels
        .as_ref()?
        .get(ccm::names::LABEL_ZONE)
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_are_initialised_tainted_deleted_and_leadership_fails_over() {
    let cloud = cloud_sim::Server::start_in_memory(cloud_sim::Config::for_tests())
        .await
        .unwrap();
    let cloud_client = cloud_client::Client::new(cloud.base_url()).unwrap();
    let kube = kube_sim::Server::start(kube_sim::ServerConfig::default())
        .await
        .unwrap();
    let mut kcfg = KubeletConfig::for_tests(&cloud.base_url());
    kcfg.mark_unknown_after = Some(Duration::from_millis(500));
    let kubelets = Kubelets::start(kcfg, client_for(&kube.url())).unwrap();
    let dir: PathBuf = std::env::temp_dir().join(format!("ccm-e2e-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    kube_sim::write_kubeconfig(&dir.join("kubeconfig"), &kube.url()).unwrap();
    std::fs::write(
        dir.join("cloud.yaml"),
        format!("endpoint: {}\nregion: sim-1\n", cloud.base_url()),
    )
    .unwrap();

    let mut ccms = vec![
        ("ccm-a", spawn_ccm(&dir, "ccm-a")),
        ("ccm-b", spawn_ccm(&dir, "ccm-b")),
    ];
    let create = |name: String, zone: &'static str| {
        let c = cloud_client.clone();
        async move {
            c.create_instance(&CreateInstanceRequest {
                name,
                zone: zone.into(),
                instance_type: "sim.small".into(),
                tags: Tags::new(),
                private_ip: None,
            })
            .await
            .unwrap()
        }
    };
    let mut instances = Vec::new();
    for i in 0..6 {
        let zone = ["zone-a", "zone-b", "zone-c"][i % 3];
        instances.push(create(format!("node-{i}"), zone).await);
    }
    let client = client_for(&kube.url());
    let nodes: Api<Node> = Api::all(client.clone());
    // Every node initialised, with its instance's zone.
    for inst in &instances {
        let n = wait_for("node initialised", T, || async {
            nodes
                .get_opt(&inst.name)
                .await
                .ok()
                .flatten()
                .filter(initialized)
        })
        .await;
        assert_eq!(zone_of(&n).as_deref(), Some(inst.zone.as_str()));
        assert_eq!(
            n.spec.as_ref().unwrap().provider_id.as_deref(),
            Some(inst.provider_id.as_str())
        );
    }
    // Stop one: its node goes NotReady and gets the shutdown taint.
    cloud_client
        .stop_instance(instances[0].id.as_str())
        .await
        .unwrap();
    wait_for("shutdown taint", T, || async {
        nodes
            .get_opt("node-0")
            .await
            .ok()
            .flatten()
            .filter(ccm::node_plan::has_shutdown_taint)
    })
    .await;
    // Terminate another: its node is deleted.
    cloud_client
        .terminate_instance(instances[1].id.as_str())
        .await
        .unwrap();
    wait_for("node-1 deleted", T, || async {
        nodes
            .get_opt("node-1")
            .await
            .ok()
            .flatten()
            .is_none()
            .then_some(())
    })
    .await;
    // Kill the leader; the other replica takes over and keeps initialising nodes.
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let holder = leases
        .get("cloud-controller-manager")
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity
        .unwrap();
    let i = ccms
        .iter()
        .position(|(id, _)| *id == holder)
        .expect("the holder is one of ours");
    let (_, mut leader) = ccms.remove(i);
    leader.start_kill().unwrap();
    leader.wait().await.unwrap();
    let survivor = ccms[0].0;
    wait_for("failover", T, || async {
        let h = leases
            .get("cloud-controller-manager")
            .await
            .ok()?
            .spec?
            .holder_identity?;
        (h == survivor).then_some(())
    })
    .await;
    let late = create("node-late".into(), "zone-b").await;
    let n = wait_for("late node initialised by the new leader", T, || async {
        nodes
            .get_opt(&late.name)
            .await
            .ok()
            .flatten()
            .filter(initialized)
    })
    .await;
    assert_eq!(zone_of(&n).as_deref(), Some("zone-b"));

    // What the ccm processes asked for, leader election included, is granted by the shipped RBAC.
    let seen: Vec<serde_json::Value> = reqwest::get(format!("{}/kube-sim/requests", kube.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rbac = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/ccm/rbac.yaml"),
    )
    .unwrap();
    let role: k8s_openapi::api::rbac::v1::ClusterRole = serde_saphyr::from_multiple(&rbac)
        .unwrap()
        .into_iter()
        .find_map(|d: serde_json::Value| {
            (d["kind"] == "ClusterRole").then(|| serde_json::from_value(d).unwrap())
        })
        .unwrap();
    let rules = role.rules.unwrap_or_default();
    let mut leases = 0;
    for r in &seen {
        let s = |f: &str| r[f].as_str().unwrap_or_default();
        if s("userAgent").split_once('/').map(|(agent, _)| agent) != Some(ccm::names::USER_AGENT) {
            continue;
        }
        leases += usize::from(s("resource") == "leases");
        assert!(
            kube_sim::rbac::allows(&rules, s("verb"), s("apiGroup"), s("resource")),
            "manifests/ccm/rbac.yaml does not grant {r}"
        );
    }
    assert!(leases >= 3, "get, create and update of the Lease: {seen:?}");
    for (_, mut c) in ccms {
        let _ = c.start_kill();
        let _ = c.wait().await;
    }
    kubelets.stop().await;
    kube.shutdown().await;
    cloud.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
