//! Workloads in the kube-sim sandbox as a user drives them with kubectl: a Deployment spread
//! over the zones by kcm-sim's scheduler, `kubectl scale` and `kubectl rollout status`,
//! EndpointSlices with zones, nodes and Auto hints (and their event), an unschedulable Pod
//! reported, and a request through a node's kube-proxy answered by a Pod; on kube-sim (kcm-sim)
//! and on the real control plane.

mod common;

use std::time::Duration;

use common::kubectl;
use simctl::up::{ControlPlaneKind, NodeSpec, Sandbox, UpArgs};

fn args(dir: &std::path::Path, control_plane: ControlPlaneKind, b: u8) -> UpArgs {
    UpArgs {
        instance_type: "sim.large".into(),
        control_plane,
        cluster_cidr: Some("10.244.0.0/16".parse().unwrap()),
        // kube-controller-manager wants a few seconds; kube-sim's stand-in is quick.
        node_monitor_grace_period: Duration::from_secs(match control_plane {
            ControlPlaneKind::KubeSim => 1,
            ControlPlaneKind::Real => 6,
        }),
        node_monitor_period: Duration::from_millis(300),
        route_quota: Some(100),
        timeout: Duration::from_secs(60),
        ..common::up_args(dir, b)
    }
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      topologySpreadConstraints:
        - {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: web}}}
      containers:
        - {name: web, image: simcloud.dev/echo, ports: [{name: http, containerPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata:
  name: web
  annotations: {service.kubernetes.io/topology-mode: Auto}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_scale_roll_out_and_get_slices_with_hints() {
    workloads(ControlPlaneKind::KubeSim, 170).await;
}

/// Control-plane tier: the same with the real kube-scheduler and kube-controller-manager.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_real_control_plane() {
    if control_plane::binaries_for_test().is_none() {
        return;
    }
    workloads(ControlPlaneKind::Real, 174).await;
}

async fn workloads(control_plane: ControlPlaneKind, block: u8) {
    let kube_sim = control_plane == ControlPlaneKind::KubeSim;
    let dir = std::env::temp_dir().join(format!(
        "simctl-workloads-{}-{}",
        if kube_sim { "kube-sim" } else { "real" },
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let a = args(&dir, control_plane, block);
    let nodes: Vec<NodeSpec> = a
        .zones
        .iter()
        .enumerate()
        .map(|(i, z)| NodeSpec {
            name: format!("node-{}", i + 1),
            zone: z.clone(),
            instance_type: "sim.large".into(),
        })
        .collect();
    let sandbox = Sandbox::start(&a, &nodes).await.unwrap();
    let manifest = dir.join("web.yaml");
    std::fs::write(&manifest, DEPLOYMENT).unwrap();
    kubectl(&dir, &["apply", "-f", manifest.to_str().unwrap()]).await;
    kubectl(
        &dir,
        &["rollout", "status", "deployment/web", "--timeout=30s"],
    )
    .await;
    // One Pod per zone: the spread constraint holds.
    let zones_of_pods = async || {
        let out = kubectl(
            &dir,
            &[
                "get",
                "pods",
                "-l",
                "app=web",
                "-o",
                "jsonpath={range .items[*]}{.spec.nodeName} {end}",
            ],
        )
        .await;
        let mut n: Vec<String> = out.split_whitespace().map(String::from).collect();
        n.sort();
        n
    };
    assert_eq!(zones_of_pods().await, ["node-1", "node-2", "node-3"]);
    // kubectl scale, then rollout status again: 6 Ready, two per node.
    kubectl(&dir, &["scale", "deployment/web", "--replicas=6"]).await;
    kubectl(
        &dir,
        &["rollout", "status", "deployment/web", "--timeout=30s"],
    )
    .await;
    assert_eq!(zones_of_pods().await.len(), 6);
    let ready = kubectl(
        &dir,
        &[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.status.readyReplicas}/{.status.updatedReplicas}",
        ],
    )
    .await;
    assert_eq!(ready, "6/6");
    // The slice names zones and nodes, and Auto hints every endpoint to its zone (2/2/2).
    eventually("six hinted endpoints", async || {
        let out = kubectl(&dir, &["get", "endpointslices", "-l", "kubernetes.io/service-name=web", "-o",
            "jsonpath={range .items[*].endpoints[*]}{.zone}/{.hints.forZones[0].name}/{.nodeName} {end}"]).await;
        let eps: Vec<&str> = out.split_whitespace().collect();
        eps.len() == 6 && eps.iter().all(|e| {
            let p: Vec<&str> = e.split('/').collect();
            p.len() == 3 && p[0] == p[1] && p[2].starts_with("node-")
        })
    })
    .await;
    let events = kubectl(
        &dir,
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=web",
            "-o",
            "jsonpath={.items[*].reason}",
        ],
    )
    .await;
    assert!(events.contains("TopologyAwareHintsEnabled"), "{events}");
    // A request from zone-b through node-2's kube-proxy stays in zone-b.
    let kube = sandbox.kube().unwrap();
    let entry = simctl::traffic::cluster_entry(&kube, "web", None)
        .await
        .unwrap();
    // As upstream's e2e checks it: kube-proxy catches up with the slices, then 5 requests in a
    // row stay in the client's zone.
    let mut n = 0;
    eventually("5 consecutive answers from zone-b", async || {
        for _ in 0..5 {
            let s = simctl::traffic::request(&entry, "zone-b", n).await;
            n += 1;
            if s.error.is_some() || s.pod.as_ref().map(|p| p.2.as_str()) != Some("zone-b") {
                return false;
            }
        }
        true
    })
    .await;
    // A Pod nothing can hold is reported, not left pending in silence.
    kubectl(
        &dir,
        &[
            "run",
            "huge",
            "--image=simcloud.dev/echo",
            "--overrides",
            r#"{"spec": {"nodeSelector": {"topology.kubernetes.io/zone": "zone-x"}}}"#,
        ],
    )
    .await;
    eventually("the scheduler's reason", async || {
        let out = kubectl(
            &dir,
            &[
                "get",
                "pod",
                "huge",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].message}",
            ],
        )
        .await;
        out.contains("0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector")
    })
    .await;
    if kube_sim {
        // kcm-sim's per-zone split (an experiment knob the real Deployment controller does not
        // have): weights 2:1 over zone-a and zone-b, the unpinned Pods replaced.
        kubectl(
            &dir,
            &[
                "annotate",
                "deployment",
                "web",
                "simcloud.dev/replicas-per-zone=zone-a=2,zone-b=1",
            ],
        )
        .await;
        eventually("Pods pinned 4/2 to zone-a and zone-b", async || {
            let all = zones_of_pods().await;
            let count = |n: &str| all.iter().filter(|x| *x == n).count();
            count("node-1") == 4 && count("node-2") == 2 && all.len() == 6
        })
        .await;
    }
    sandbox.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
