//! Workloads in the kube-sim sandbox as a user drives them with kubectl: a Deployment spread
//! over the zones by kcm-sim's scheduler, `kubectl scale` and `kubectl rollout status`,
//! EndpointSlices with zones, nodes and Auto hints (and their event), an unschedulable Pod
//! reported, and a request through a node's kube-proxy answered by a Pod.

mod common;

use std::time::Duration;

use common::kubectl;
use simctl::up::{ControlPlaneKind, NodeSpec, Sandbox, UpArgs};

fn args(dir: &std::path::Path) -> UpArgs {
    let block = |b: u8| -> Vec<(String, ipnet::Ipv4Net)> {
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
    };
    UpArgs {
        data_dir: dir.to_owned(),
        nodes: 0,
        zones: ["zone-a", "zone-b", "zone-c"].map(String::from).to_vec(),
        instance_type: "sim.large".into(),
        cloud_listen: "127.0.0.1:0".parse().unwrap(),
        control_plane: ControlPlaneKind::KubeSim,
        kube_listen: "127.0.0.1:0".parse().unwrap(),
        instance_subnets: block(170),
        lb_pools: block(171),
        cluster_cidr: "10.244.0.0/16".parse().unwrap(),
        pod_loopback_cidr: "127.172.0.0/16".parse().unwrap(),
        cluster_name: "simcloud".into(),
        boot_delay: Duration::ZERO,
        node_monitor_grace_period: Duration::from_secs(1),
        node_monitor_period: Duration::from_millis(300),
        route_quota: 100,
        timeout: Duration::from_secs(60),
        log_filter: "warn".into(),
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
    let dir = std::env::temp_dir().join(format!("simctl-workloads-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let a = args(&dir);
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
    for n in 0..4 {
        let s = simctl::traffic::request(&entry, "zone-b", n).await;
        assert_eq!(s.error, None);
        assert_eq!(
            s.pod.as_ref().map(|p| p.2.as_str()),
            Some("zone-b"),
            "{s:?}"
        );
    }
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
    sandbox.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
