//! `simctl topology sweep` as a user runs it.

use std::process::Command;

fn simctl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_simctl"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn sweep_prints_the_keps_example_and_refuses_bad_input() {
    let out = simctl(&[
        "topology",
        "sweep",
        "--cpu",
        "zone-a=20,zone-b=16,zone-c=14",
        "--endpoints",
        "10",
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{out:?}");
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = &rows[0];
    // Spread 4/3/3 evenly, the KEP's ratios: Auto keeps hints, all three modes predicted.
    assert_eq!(
        row["spread"],
        serde_json::json!({"zone-a": 4, "zone-b": 3, "zone-c": 3})
    );
    assert!(row["auto_disabled"].is_null(), "{row}");
    for mode in ["none", "Auto", "PreferSameZone"] {
        assert!(row["in_zone"][mode].is_number(), "{row}");
    }
    let out = simctl(&["topology", "sweep", "--cpu", "zone-a=20"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--cpu") && err.contains("two zones"), "{err}");
    let out = simctl(&[
        "topology",
        "sweep",
        "--cpu",
        "a=1,b=1",
        "--endpoints",
        "9..3",
    ]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("FROM <= TO"),
        "{out:?}"
    );
}

/// `simctl topology explain` on a cluster (kube-sim here): the zones' CPU ratios from the Nodes,
/// the endpoints and hints of the Service's slices, and what upstream's algorithm would hint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_reads_the_cluster() {
    use kube::Api;
    use kube::api::PostParams;
    use serde_json::json;

    let dir = std::env::temp_dir().join(format!("simctl-explain-{:016x}", rand_u64()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    let kube = kube_sim::Server::start(kube_sim::ServerConfig {
        kubeconfig: Some(kubeconfig.clone()),
        ..kube_sim::ServerConfig::default()
    })
    .await
    .unwrap();
    let client = kube::Client::try_from(kube::Config::new(kube.url().parse().unwrap())).unwrap();
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    // CPU 2:2:1 over three zones, and a control-plane node that does not count.
    for (i, (zone, cp)) in [
        ("zone-a", false),
        ("zone-a", false),
        ("zone-b", false),
        ("zone-b", false),
        ("zone-c", false),
        ("zone-c", true),
    ]
    .iter()
    .enumerate()
    {
        let mut labels = json!({"topology.kubernetes.io/zone": zone});
        if *cp {
            labels["node-role.kubernetes.io/control-plane"] = json!("");
        }
        let n = json!({"metadata": {"name": format!("n{i}"), "labels": labels},
            "status": {"allocatable": {"cpu": "2"}, "conditions": [{"type": "Ready", "status": "True"}]}});
        nodes
            .create(&PostParams::default(), &serde_json::from_value(n).unwrap())
            .await
            .unwrap();
    }
    let svc = json!({"metadata": {"name": "web", "annotations": {"service.kubernetes.io/topology-mode": "Auto"}},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}});
    Api::<k8s_openapi::api::core::v1::Service>::namespaced(client.clone(), "default")
        .create(
            &PostParams::default(),
            &serde_json::from_value(svc).unwrap(),
        )
        .await
        .unwrap();
    // Ten ready endpoints placed 4/3/3, hinted to their own zones.
    let endpoints: Vec<_> = [
        "zone-a", "zone-a", "zone-a", "zone-a", "zone-b", "zone-b", "zone-b", "zone-c", "zone-c",
        "zone-c",
    ]
    .iter()
    .enumerate()
    .map(|(i, z)| {
        json!({"addresses": [format!("10.244.0.{i}")], "zone": z, "conditions": {"ready": true},
            "hints": {"forZones": [{"name": z}]}})
    })
    .collect();
    let slice = json!({"metadata": {"name": "web-1", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4", "endpoints": endpoints, "ports": [{"port": 80}]});
    Api::<k8s_openapi::api::discovery::v1::EndpointSlice>::namespaced(client, "default")
        .create(
            &PostParams::default(),
            &serde_json::from_value(slice).unwrap(),
        )
        .await
        .unwrap();

    // The kube-sim server runs on the other worker thread while simctl blocks this one.
    let kc = kubeconfig.to_str().unwrap();
    let out = simctl(&[
        "topology",
        "explain",
        "web",
        "--kubeconfig",
        kc,
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{out:?}");
    let e: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(e["mode"], "Auto");
    assert!(e["auto_disabled"].is_null(), "{e}");
    let zone = |z: &str| {
        e["zones"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["zone"] == z)
            .unwrap()
            .clone()
    };
    assert_eq!(
        zone("zone-c")["nodes"],
        1,
        "the control-plane node does not count"
    );
    assert!((zone("zone-a")["ratio"].as_f64().unwrap() - 0.4).abs() < 1e-9);
    assert_eq!(
        ["zone-a", "zone-b", "zone-c"].map(|z| (
            zone(z)["hinted_now"].as_u64(),
            zone(z)["hinted_auto"].as_u64()
        )),
        [(Some(4), Some(4)), (Some(3), Some(4)), (Some(3), Some(2))]
    );
    let out = simctl(&["topology", "explain", "default/web", "--kubeconfig", kc]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("HINTED BY AUTO") && text.contains("Auto: keeps hints"),
        "{text}"
    );
    kube.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

fn rand_u64() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        ^ u64::from(std::process::id())
}
