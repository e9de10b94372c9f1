//! The launcher's error paths (with stand-in binaries, so they run anywhere) and, on the
//! control-plane tier, a real start: admin access, RBAC that denies, node IPAM.

use std::path::{Path, PathBuf};
use std::time::Duration;

use control_plane::{Binaries, ControlPlane, Error, Options};
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{ListParams, PostParams};

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cp-test-{tag}-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A directory of stand-in binaries: each runs the given shell script body.
fn stand_ins(dir: &Path, body: impl Fn(&str) -> String) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for name in control_plane::BINARIES {
        let p = bin.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{}\n", body(name))).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::write(dir.join("manifest"), "key test\n").unwrap();
    bin
}

#[test]
fn a_missing_cache_names_the_build_command() {
    let dir = temp_dir("missing").join("v1.37.2/bin");
    let e = Binaries::in_dir(dir).unwrap_err();
    assert!(matches!(e, Error::NotBuilt { .. }), "{e}");
    assert!(
        e.to_string().contains("tests/control-plane/build.sh"),
        "{e}"
    );
}

#[test]
fn a_partial_cache_is_reported_with_what_is_wrong() {
    let dir = temp_dir("partial");
    let bin = stand_ins(&dir, |_| "exit 0".into());
    // Interrupted build: no manifest.
    std::fs::remove_file(dir.join("manifest")).unwrap();
    let e = Binaries::in_dir(bin.clone()).unwrap_err();
    assert!(e.to_string().contains("no manifest"), "{e}");
    std::fs::write(dir.join("manifest"), "key test\n").unwrap();
    // A binary gone.
    std::fs::remove_file(bin.join("kube-scheduler")).unwrap();
    let e = Binaries::in_dir(bin.clone()).unwrap_err();
    assert!(matches!(e, Error::BrokenCache { .. }), "{e}");
    assert!(e.to_string().contains("kube-scheduler is missing"), "{e}");
    assert!(
        e.to_string().contains("tests/control-plane/build.sh"),
        "{e}"
    );
    // A truncated one.
    std::fs::write(bin.join("kube-scheduler"), "").unwrap();
    let e = Binaries::in_dir(bin).unwrap_err();
    assert!(e.to_string().contains("kube-scheduler is empty"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_process_that_dies_during_start_is_named_with_its_log() {
    let dir = temp_dir("dies");
    let bin = stand_ins(&dir, |name| match name {
        "etcd" => {
            "echo 'listen tcp 127.0.0.1:2379: bind: address already in use' >&2; exit 1".into()
        }
        _ => "exec sleep 600".into(),
    });
    let opts = Options {
        dir: Some(dir.join("run")),
        start_timeout: Duration::from_secs(30),
        ..Options::for_tests()
    };
    let e = ControlPlane::start_with(Binaries::in_dir(bin).unwrap(), opts)
        .await
        .err()
        .expect("etcd exits, so the start fails");
    let Error::Exited {
        process, ref tail, ..
    } = e
    else {
        panic!("expected Exited, got {e}");
    };
    assert_eq!(process, "etcd");
    assert!(tail.contains("address already in use"), "{e}");
    assert!(e.to_string().contains("etcd.log"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_process_that_never_gets_ready_is_a_timeout_not_a_hang() {
    let dir = temp_dir("hangs");
    let bin = stand_ins(&dir, |name| {
        format!("echo '{name} starting'; exec sleep 600")
    });
    let opts = Options {
        dir: Some(dir.join("run")),
        start_timeout: Duration::from_secs(2),
        ..Options::for_tests()
    };
    let e = ControlPlane::start_with(Binaries::in_dir(bin).unwrap(), opts)
        .await
        .err()
        .expect("nothing answers, so the start fails");
    assert!(
        matches!(
            e,
            Error::NotReady {
                process: "kube-apiserver",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("kube-apiserver starting"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Control-plane tier: the real processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_control_plane_serves_enforces_rbac_and_allocates_pod_cidrs() {
    let Some(bins) = control_plane::binaries_for_test() else {
        return;
    };
    let cp = ControlPlane::start_with(bins, Options::for_tests())
        .await
        .unwrap();
    eprintln!("control plane started in {:?}", cp.started_in);
    let admin = cp.client().await.unwrap();
    let nodes: Api<Node> = Api::all(admin.clone());
    let node: Node = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "fixture-node"},
    }))
    .unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    // Node IPAM in kube-controller-manager gives it a pod CIDR from the cluster CIDR.
    let cidr = sim_common::wait_for("pod CIDR", Duration::from_secs(60), || async {
        nodes.get("fixture-node").await.ok()?.spec?.pod_cidr
    })
    .await;
    assert!(cidr.starts_with("10.244."), "{cidr}");
    // A service account without bindings is denied: RBAC is enforced.
    let kc = cp
        .service_account_kubeconfig("default", "nobody")
        .await
        .unwrap();
    let nobody = control_plane::client_from(&kc).await.unwrap();
    let e = Api::<Node>::all(nobody)
        .list(&ListParams::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, kube::Error::Api(s) if s.code == 403),
        "expected 403, got {e}"
    );
    // kubectl from the same build talks to it.
    let out = cp
        .kubectl()
        .args(["get", "nodes", "-o", "name"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "node/fixture-node"
    );
}
