//! The ccm's Kubernetes client: `--kube-api-qps`/`--kube-api-burst` are enforced.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::ListParams;

#[tokio::test]
async fn requests_beyond_the_burst_wait_for_qps() {
    let kube = kube_sim::Server::start(kube_sim::ServerConfig::default())
        .await
        .unwrap();
    let cfg = || kube::Config::new(kube.url().parse().unwrap());
    // 2 at once, then 10 a second: 12 requests need at least a second.
    let limited = ccm::client_for(cfg(), Some((10.0, 2))).unwrap();
    let nodes: Api<Node> = Api::all(limited);
    let t = Instant::now();
    for _ in 0..12 {
        nodes.list(&ListParams::default()).await.unwrap();
    }
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(990),
        "12 requests at 10 qps after a burst of 2 took {took:?}"
    );
    kube.shutdown().await;
}
