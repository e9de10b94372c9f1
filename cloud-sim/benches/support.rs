//! What the API benchmarks share: concurrent timed runs, their statistics, the server config.
//! Each benchmark uses a part of it.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use cloud_sim::Config;
use tokio::sync::Semaphore;

pub const CONCURRENCY: usize = 8;

pub struct Stats {
    pub name: &'static str,
    pub latencies: Vec<Duration>,
    pub wall: Duration,
}

impl Stats {
    pub fn pct(&self, p: f64) -> Duration {
        let mut v = self.latencies.clone();
        v.sort_unstable();
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v[i]
    }

    pub fn ops_per_sec(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64()
    }
}

pub async fn timed<F, Fut>(name: &'static str, count: usize, concurrency: usize, op: F) -> Stats
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let sem = Arc::new(Semaphore::new(concurrency));
    let started = Instant::now();
    let mut handles = Vec::with_capacity(count);
    for i in 0..count {
        let permit = sem.clone().acquire_owned().await.unwrap();
        let op = op.clone();
        handles.push(tokio::spawn(async move {
            let t = Instant::now();
            op(i).await;
            drop(permit);
            t.elapsed()
        }));
    }
    let mut latencies = Vec::with_capacity(count);
    for h in handles {
        latencies.push(h.await.unwrap());
    }
    Stats {
        name,
        latencies,
        wall: started.elapsed(),
    }
}

/// Three zones with /18 instance subnets: room for any run.
pub fn config() -> Config {
    let zones: Vec<String> = ["zone-a", "zone-b", "zone-c"].map(String::from).to_vec();
    let subnets = [
        ("zone-a", "127.16.0.0/18"),
        ("zone-b", "127.17.0.0/18"),
        ("zone-c", "127.18.0.0/18"),
    ]
    .map(|(z, n)| (z.to_owned(), n.parse().unwrap()))
    .to_vec();
    Config::build(
        "sim-1",
        "127.0.0.0/8".parse().unwrap(),
        &zones,
        &subnets,
        &[],
    )
    .unwrap()
}

/// `GET <base>/healthz` `n` times: the HTTP round trip with no database work, the baseline the
/// other figures are compared with.
pub async fn baseline(name: &'static str, base: &str, n: usize) -> Stats {
    let http = reqwest::Client::new();
    let health = format!("{base}/healthz");
    timed(name, n, CONCURRENCY, move |_| {
        let (http, health) = (http.clone(), health.clone());
        async move {
            http.get(&health)
                .send()
                .await
                .unwrap()
                .error_for_status()
                .unwrap();
        }
    })
    .await
}

/// The `i`-th instance a benchmark creates: `bench-<i>`, zones in turn.
/// The `i`th route: `10.<i / 256>.<i % 256>.0/24` to `instance`, tagged as the ccm tags its own.
pub fn route(i: usize, instance: &str) -> cloud_api::CreateRouteRequest {
    cloud_api::CreateRouteRequest {
        name: format!("bench-route-{i:05}"),
        destination_cidr: format!("10.{}.{}.0/24", (i / 256) % 256, i % 256),
        target_instance_id: instance.parse().unwrap(),
        tags: [
            ("kubernetes.io/cluster/bench".to_owned(), "owned".to_owned()),
            ("simcloud.dev/route-node".to_owned(), format!("node-{i}")),
        ]
        .into(),
    }
}

pub fn instance(i: usize) -> cloud_api::CreateInstanceRequest {
    cloud_api::CreateInstanceRequest {
        name: format!("bench-{i:05}"),
        zone: ["zone-a", "zone-b", "zone-c"][i % 3].into(),
        instance_type: "sim.small".into(),
        // The tag every instance of a cluster carries (`simctl up`'s, kind's).
        tags: [("kubernetes.io/cluster/bench".to_owned(), "owned".to_owned())].into(),
        private_ip: None,
    }
}
