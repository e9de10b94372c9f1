//! kube-sim throughput: 5,000 Nodes created over HTTP by 50 concurrent clients, listed whole and
//! page by page, then patched by 50 concurrent clients while 10 watchers follow every change.
//! Prints rates next to a `GET /healthz` baseline measured in the same run. Later benchmarks use
//! the patch rate as the ceiling for the ccm.
//!
//! ```text
//! cargo bench -p kube-sim --bench api            # 5,000 nodes, 10,000 patches
//! cargo bench -p kube-sim --bench api -- 1000 2000
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube_sim::{Server, ServerConfig};
use serde_json::json;
use tokio::sync::Semaphore;

const CLIENTS: usize = 50;
const WATCHERS: usize = 10;

async fn run_concurrent<F, Fut>(count: usize, op: F) -> Duration
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let sem = Arc::new(Semaphore::new(CLIENTS));
    let started = Instant::now();
    let mut handles = Vec::with_capacity(count);
    for i in 0..count {
        let permit = sem.clone().acquire_owned().await.unwrap();
        let op = op.clone();
        handles.push(tokio::spawn(async move {
            op(i).await;
            drop(permit);
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    started.elapsed()
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = sim_common::numeric_args();
    let nodes = args.first().copied().unwrap_or(5000);
    let patches = args.get(1).copied().unwrap_or(10_000);
    let server = Server::start(ServerConfig {
        history: patches + nodes + 100,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let base = server.url();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .unwrap();
    println!(
        "kube-sim benchmark: {nodes} nodes, {patches} patches, {CLIENTS} concurrent clients, {WATCHERS} watchers"
    );

    let (h, b) = (http.clone(), base.clone());
    let baseline = run_concurrent(nodes, move |_| {
        let (h, b) = (h.clone(), b.clone());
        async move {
            h.get(format!("{b}/healthz"))
                .send()
                .await
                .unwrap()
                .error_for_status()
                .unwrap();
        }
    })
    .await;

    let (h, b) = (http.clone(), base.clone());
    let create = run_concurrent(nodes, move |i| {
        let (h, b) = (h.clone(), b.clone());
        async move {
            let zone = ["zone-a", "zone-b", "zone-c"][i % 3];
            let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": format!("node-{i:05}"), "labels": {"topology.kubernetes.io/zone": zone}},
                "spec": {"taints": [{"key": "node.cloudprovider.kubernetes.io/uninitialized", "value": "true", "effect": "NoSchedule"}]},
                "status": {"conditions": [{"type": "Ready", "status": "True"}], "addresses": [{"type": "Hostname", "address": format!("node-{i:05}")}]}});
            h.post(format!("{b}/api/v1/nodes")).json(&node).send().await.unwrap().error_for_status().unwrap();
        }
    })
    .await;

    let t = Instant::now();
    let all: serde_json::Value = http
        .get(format!("{base}/api/v1/nodes"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let list_all = t.elapsed();
    assert_eq!(all["items"].as_array().unwrap().len(), nodes);
    let list_rv = all["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let t = Instant::now();
    let mut pages = 0;
    let mut token: Option<String> = None;
    loop {
        let mut url = format!("{base}/api/v1/nodes?limit=500");
        if let Some(c) = &token {
            url.push_str(&format!("&continue={c}"));
        }
        let page: serde_json::Value = http.get(url).send().await.unwrap().json().await.unwrap();
        pages += 1;
        match page["metadata"]["continue"].as_str() {
            Some(c) => token = Some(c.to_owned()),
            None => break,
        }
    }
    let list_paged = t.elapsed();

    // Watchers from the list's resourceVersion; each counts MODIFIED events until it has seen all.
    let mut watchers = Vec::new();
    for _ in 0..WATCHERS {
        let resp = http
            .get(format!(
                "{base}/api/v1/nodes?watch=true&resourceVersion={list_rv}"
            ))
            .send()
            .await
            .unwrap();
        watchers.push(tokio::spawn(async move {
            let mut resp = resp;
            let mut seen = 0usize;
            while seen < patches {
                let Some(chunk) = resp.chunk().await.unwrap() else {
                    break;
                };
                seen += chunk.iter().filter(|b| **b == b'\n').count();
            }
            (seen, Instant::now())
        }));
    }
    let (h, b) = (http.clone(), base.clone());
    let patch_started = Instant::now();
    let patch = run_concurrent(patches, move |i| {
        let (h, b) = (h.clone(), b.clone());
        async move {
            let body = json!({"metadata": {"labels": {"bench/round": i.to_string()}}});
            h.patch(format!("{b}/api/v1/nodes/node-{:05}", i % nodes))
                .header("content-type", "application/strategic-merge-patch+json")
                .body(body.to_string())
                .send()
                .await
                .unwrap()
                .error_for_status()
                .unwrap();
        }
    })
    .await;
    let mut last = patch_started;
    for w in watchers {
        let (seen, done) = w.await.unwrap();
        assert_eq!(seen, patches, "every watcher sees every change");
        last = last.max(done);
    }
    let fanout = last - patch_started;

    let base_rate = rate(nodes, baseline);
    println!();
    println!(
        "{:<40} {:>12} {:>16}",
        "measure", "rate (/s)", "vs baseline"
    );
    println!(
        "{:<40} {:>12.0} {:>15.2}x",
        "baseline GET /healthz", base_rate, 1.0
    );
    println!(
        "{:<40} {:>12.0} {:>15.2}x",
        "create Node",
        rate(nodes, create),
        rate(nodes, create) / base_rate
    );
    println!(
        "{:<40} {:>12.0} {:>15.2}x",
        "strategic patch Node",
        rate(patches, patch),
        rate(patches, patch) / base_rate
    );
    println!(
        "{:<40} {:>12.0} {:>16}",
        "watch events delivered (10 watchers)",
        rate(patches * WATCHERS, fanout),
        ""
    );
    println!();
    println!(
        "list {nodes} nodes in one response: {:.1} ms",
        list_all.as_secs_f64() * 1e3
    );
    println!(
        "list {nodes} nodes in {pages} pages of 500: {:.1} ms",
        list_paged.as_secs_f64() * 1e3
    );
    println!(
        "all {WATCHERS} watchers caught up {:.1} ms after the first patch (patching took {:.1} ms)",
        fanout.as_secs_f64() * 1e3,
        patch.as_secs_f64() * 1e3
    );
    server.shutdown().await;
}
