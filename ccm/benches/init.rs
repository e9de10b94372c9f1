//! Node initialisation throughput: N uninitialised nodes in an in-process kube-sim, a fake cloud
//! answering after an injected latency, and the cloud-node controller with K workers. Prints
//! nodes/s beside kube-sim's raw write rate (node patches with the same parallelism) measured in
//! the same run, since the ccm can never beat the API server it writes to. Each size runs twice:
//! the controllers' client without a rate limiter, and through the `--kube-api-qps` limiter with
//! the limits raised to 1,000,000 (what the limiter itself costs; upstream's defaults of 20/30
//! would cap the run at 20 requests a second).
//!
//! ```text
//! cargo bench -p ccm --bench init                      # 1,000 and 5,000 nodes, 10 ms, 16 workers
//! cargo bench -p ccm --bench init -- 2000 25 32        # nodes, cloud latency ms, workers
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use ccm::cloud::fake::{FakeCloud, FakeInstance};
use ccm::cloud::{InstanceMetadata, NodeAddress};
use ccm::controllers::ControllerName;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

async fn one_run(nodes: usize, latency: Duration, workers: u16, limit: Option<(f32, u32)>) {
    let kube = kube_sim::Server::start(kube_sim::ServerConfig {
        history: nodes * 8 + 1000,
        ..Default::default()
    })
    .await
    .unwrap();
    let client = kube::Client::try_from(kube::Config::new(kube.url().parse().unwrap())).unwrap();
    let api: Api<Node> = Api::all(client.clone());
    let cloud = Arc::new(FakeCloud::with_delay(latency));
    let names: Vec<String> = (0..nodes).map(|i| format!("node-{i:05}")).collect();
    for (i, name) in names.iter().enumerate() {
        let zone = ["zone-a", "zone-b", "zone-c"][i % 3];
        cloud.set_instance(
            name,
            FakeInstance {
                metadata: InstanceMetadata {
                    provider_id: format!("simcloud://{zone}/i-{i:016x}"),
                    instance_type: "sim.small".into(),
                    node_addresses: vec![
                        NodeAddress::new(
                            "InternalIP",
                            format!("127.1.{}.{}", i / 250, i % 250 + 2),
                        ),
                        NodeAddress::new("Hostname", name.clone()),
                    ],
                    zone: zone.into(),
                    region: "sim-1".into(),
                    additional_labels: Default::default(),
                },
                shutdown: false,
            },
        );
    }
    // Register the nodes as kubelets do.
    futures_util::stream::iter(names.clone())
        .for_each_concurrent(64, |name| {
            let api = api.clone();
            async move {
                let n: Node = serde_json::from_value(json!({"metadata": {"name": name},
                    "spec": {"taints": [{"key": ccm::names::TAINT_UNINITIALIZED, "value": "true", "effect": "NoSchedule"}]},
                    "status": {"addresses": [{"type": "Hostname", "address": name}], "conditions": [{"type": "Ready", "status": "True"}]}}))
                .unwrap();
                api.create(&PostParams::default(), &n).await.unwrap();
            }
        })
        .await;

    // Baseline: kube-sim's raw write rate with the same parallelism (one label patch per node).
    let t = Instant::now();
    futures_util::stream::iter(names.clone())
        .for_each_concurrent(usize::from(workers), |name| {
            let api = api.clone();
            async move {
                api.patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Strategic(json!({"metadata": {"labels": {"bench": "1"}}})),
                )
                .await
                .unwrap();
            }
        })
        .await;
    let raw = nodes as f64 / t.elapsed().as_secs_f64();

    let opts = ccm::Options {
        controllers: [ControllerName::CloudNode].into(),
        identity: "bench".into(),
        concurrent_node_syncs: workers,
        concurrent_node_status_updates: workers,
        node_status_update_frequency: Duration::from_secs(3600),
        node_monitor_period: Duration::from_secs(3600),
        ..ccm::Options::for_tests("bench")
    };
    let stop_tx = ccm::CancellationToken::new();
    let stop = stop_tx.clone();
    let started = Instant::now();
    let controller_client =
        ccm::client_for(kube::Config::new(kube.url().parse().unwrap()), limit).unwrap();
    let mut tasks = ccm::start_controllers(
        controller_client,
        cloud.clone(),
        Arc::new(ccm::metrics::Metrics::new()),
        &opts,
        &stop,
    );
    loop {
        let list = api.list(&ListParams::default()).await.unwrap();
        let done = list
            .items
            .iter()
            .filter(|n| !ccm::node_plan::has_uninitialized_taint(n))
            .count();
        if done == nodes {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = started.elapsed();
    let rate = nodes as f64 / took.as_secs_f64();
    println!(
        "{nodes:>6} nodes  cloud latency {:>4} ms  {workers:>3} workers  limiter {:<11} initialised in {:>7.2} s  = {:>7.1} nodes/s   raw kube-sim writes {:>7.0}/s   ratio {:.3}",
        latency.as_millis(),
        if limit.is_some() { "1e6 qps" } else { "none" },
        took.as_secs_f64(),
        rate,
        raw,
        rate / raw
    );
    stop_tx.cancel();
    while tasks.join_next().await.is_some() {}
    kube.shutdown().await;
}

#[tokio::main]
async fn main() {
    let args: Vec<u64> = sim_common::numeric_args();
    let sizes: Vec<usize> = match args.first() {
        Some(n) => vec![usize::try_from(*n).unwrap()],
        None => vec![1000, 5000],
    };
    let latency = Duration::from_millis(args.get(1).copied().unwrap_or(10));
    let workers = u16::try_from(args.get(2).copied().unwrap_or(16)).unwrap();
    println!("ccm node initialisation benchmark (fake cloud, in-process kube-sim)");
    for n in sizes {
        one_run(n, latency, workers, None).await;
        one_run(n, latency, workers, Some((1e6, 1_000_000))).await;
    }
}
