//! Service controller throughput: N LoadBalancer Services ensured from a cold start, then one node
//! added, timed until every load balancer has it. Fake cloud with an injected latency, in-process
//! kube-sim.
//!
//! ```text
//! cargo bench -p ccm --bench services                  # 1,000 Services, 10 ms, 16 workers
//! cargo bench -p ccm --bench services -- 500 25 8      # Services, cloud latency ms, workers
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use ccm::cloud::fake::FakeCloud;
use ccm::controllers::ControllerName;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

#[tokio::main]
async fn main() {
    let args: Vec<u64> = sim_common::numeric_args();
    let services = usize::try_from(args.first().copied().unwrap_or(1000)).unwrap();
    let latency = Duration::from_millis(args.get(1).copied().unwrap_or(10));
    let workers = u16::try_from(args.get(2).copied().unwrap_or(16)).unwrap();
    let kube = kube_sim::Server::start(kube_sim::ServerConfig {
        history: services * 20 + 1000,
        ..Default::default()
    })
    .await
    .unwrap();
    let client = kube::Client::try_from(kube::Config::new(kube.url().parse().unwrap())).unwrap();
    let nodes: Api<Node> = Api::all(client.clone());
    for i in 0..3 {
        let n: Node = serde_json::from_value(json!({"metadata": {"name": format!("n{i}")}, "spec": {"providerID": format!("simcloud://zone-a/i-{i:016x}")}})).unwrap();
        nodes.create(&PostParams::default(), &n).await.unwrap();
    }
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    futures_util::stream::iter(0..services)
        .for_each_concurrent(64, |i| {
            let svcs = svcs.clone();
            async move {
                let s: Service = serde_json::from_value(json!({"metadata": {"name": format!("svc-{i:05}")}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}})).unwrap();
                svcs.create(&PostParams::default(), &s).await.unwrap();
            }
        })
        .await;
    let cloud = Arc::new(FakeCloud::with_delay(latency));
    let mut opts = ccm::Options::for_tests("bench");
    opts.controllers = [ControllerName::Service].into();
    opts.concurrent_service_syncs = workers;
    let stop_tx = ccm::CancellationToken::new();
    let stop = stop_tx.clone();
    let started = Instant::now();
    let mut tasks = ccm::start_controllers(
        client.clone(),
        cloud.clone(),
        Arc::new(ccm::metrics::Metrics::new()),
        &opts,
        &stop,
    );
    while cloud.lbs().len() < services || cloud.lbs().values().any(|l| l.hosts.len() != 3) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cold = started.elapsed();
    let n: Node = serde_json::from_value(json!({"metadata": {"name": "n-new"}, "spec": {"providerID": "simcloud://zone-b/i-00000000000000ff"}})).unwrap();
    let added = Instant::now();
    nodes.create(&PostParams::default(), &n).await.unwrap();
    while cloud
        .lbs()
        .values()
        .any(|l| !l.hosts.iter().any(|h| h == "n-new"))
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let spread = added.elapsed();
    println!(
        "service controller benchmark (fake cloud, {} ms latency, {workers} workers, in-process kube-sim)",
        latency.as_millis()
    );
    println!(
        "{services} LoadBalancer Services ensured from cold start in {:.2} s ({:.0} Services/s)",
        cold.as_secs_f64(),
        services as f64 / cold.as_secs_f64()
    );
    println!(
        "one node added: all {services} load balancers had it after {:.2} s ({:.0} updates/s)",
        spread.as_secs_f64(),
        services as f64 / spread.as_secs_f64()
    );
    println!(
        "cloud calls: {} ensures, {} updates",
        cloud.count_calls("ensure-lb"),
        cloud.count_calls("update-lb")
    );
    stop_tx.cancel();
    while tasks.join_next().await.is_some() {}
    kube.shutdown().await;
}
