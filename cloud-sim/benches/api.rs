//! API benchmark: create N instances, list them all page by page, get each one, create a route
//! to each (as the ccm's route controller does: a /24 per node, two tags), then N instances
//! more in batch creates of 100 (as `simctl up` makes its nodes).
//!
//! Prints operations per second and p50/p99 latency per operation, next to a baseline measured in
//! the same run (`GET /healthz`: the HTTP round trip with no database work), so the figures can be
//! compared across machines as ratios. Run with:
//!
//! ```text
//! cargo bench -p cloud-sim --bench api              # 5,000 instances, file-backed SQLite
//! cargo bench -p cloud-sim --bench api -- 1000 memory
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloud_client::{Client, InstanceFilter, PageRequest, RetryPolicy};
use cloud_sim::Server;

#[path = "support.rs"]
mod support;

use support::{CONCURRENCY, Stats, baseline, config, instance, route, timed};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let n: usize = args.first().and_then(|s| s.parse().ok()).unwrap_or(5000);
    let memory = args.get(1).is_some_and(|s| s == "memory");
    let dir = std::env::temp_dir().join(format!("cloud-sim-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = if memory {
        "sqlite::memory:".to_owned()
    } else {
        format!("sqlite://{}", dir.join("bench.db").display())
    };
    let mut cfg = config();
    cfg.route_quota = u32::try_from(n).unwrap();
    let server = Server::start(cfg, &url, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let client = Client::builder(server.base_url())
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    println!(
        "cloud-sim API benchmark: {n} instances, {CONCURRENCY} concurrent clients, database {}",
        if memory {
            "in memory"
        } else {
            "SQLite file (WAL, group commit: a 2xx waits for the log's flush)"
        }
    );

    let (http_metrics, metrics_url) = (
        reqwest::Client::new(),
        format!("{}/metrics", server.base_url()),
    );
    let baseline = baseline("baseline GET /healthz", &server.base_url(), n).await;

    let flushes_before = log_flushes(&http_metrics, &metrics_url).await;
    let busy_before = writer_busy(&http_metrics, &metrics_url).await;
    let cpu_before = (process_cpu(), threads_cpu(SQLITE_THREAD));
    let c = client.clone();
    let create = timed("create instance", n, CONCURRENCY, move |i| {
        let c = c.clone();
        async move {
            c.create_instance(&instance(i)).await.unwrap();
        }
    })
    .await;

    let create_cpu = (
        process_cpu().zip(cpu_before.0).map(|(b, a)| b - a),
        threads_cpu(SQLITE_THREAD)
            .zip(cpu_before.1)
            .map(|(b, a)| b - a),
    );
    let create_flushes = log_flushes(&http_metrics, &metrics_url).await - flushes_before;
    let create_busy = writer_busy(&http_metrics, &metrics_url).await - busy_before;

    // List page by page (sequential by nature: each page needs the previous token).
    let mut list_lat = Vec::new();
    let mut ids = Vec::with_capacity(n);
    let started = Instant::now();
    let mut page = PageRequest {
        page_size: Some(500),
        page_token: None,
    };
    loop {
        let t = Instant::now();
        let p = client
            .list_instances(&InstanceFilter::default(), &page)
            .await
            .unwrap();
        list_lat.push(t.elapsed());
        ids.extend(p.items.into_iter().map(|i| i.id.to_string()));
        match p.next_page_token {
            Some(tok) => page.page_token = Some(tok),
            None => break,
        }
    }
    let list = Stats {
        name: "list page (500 items)",
        latencies: list_lat,
        wall: started.elapsed(),
    };
    assert_eq!(ids.len(), n, "listing returned every instance exactly once");

    let ids = Arc::new(ids);
    let c = client.clone();
    let get_ids = ids.clone();
    let get = timed("get instance", n, CONCURRENCY, move |i| {
        let (c, ids) = (c.clone(), get_ids.clone());
        async move {
            assert!(c.get_instance(&ids[i]).await.unwrap().is_some());
        }
    })
    .await;

    let busy_before = writer_busy(&http_metrics, &metrics_url).await;
    let c = client.clone();
    let routes = timed("create route", n, CONCURRENCY, move |i| {
        let (c, ids) = (c.clone(), ids.clone());
        async move {
            c.create_route(cloud_client::DEFAULT_ROUTE_TABLE, &route(i, &ids[i]))
                .await
                .unwrap();
        }
    })
    .await;
    let route_busy = writer_busy(&http_metrics, &metrics_url).await - busy_before;

    // The same number of instances again, BATCH to a batch create.
    let busy_before = writer_busy(&http_metrics, &metrics_url).await;
    let c = client.clone();
    let batches = timed(
        "batch create (100 each)",
        n.div_ceil(BATCH),
        CONCURRENCY,
        move |b| {
            let c = c.clone();
            async move {
                let reqs: Vec<_> = (n + b * BATCH..(n + (b + 1) * BATCH).min(2 * n))
                    .map(instance)
                    .collect();
                c.batch_create_instances(&reqs).await.unwrap();
            }
        },
    )
    .await;
    let batch_busy = writer_busy(&http_metrics, &metrics_url).await - busy_before;

    let base_p50 = baseline.pct(0.5).as_secs_f64();
    println!();
    println!(
        "{:<24} {:>7} {:>10} {:>10} {:>10} {:>14}",
        "operation", "count", "ops/s", "p50 ms", "p99 ms", "p50 / baseline"
    );
    for s in [&baseline, &create, &list, &get, &routes, &batches] {
        println!(
            "{:<24} {:>7} {:>10.0} {:>10.2} {:>10.2} {:>13.1}x",
            s.name,
            s.latencies.len(),
            s.ops_per_sec(),
            s.pct(0.5).as_secs_f64() * 1e3,
            s.pct(0.99).as_secs_f64() * 1e3,
            s.pct(0.5).as_secs_f64() / base_p50
        );
    }
    if !memory {
        println!(
            "\ncreates: {create_flushes} log flushes for {n} durable creates ({:.1} creates per flush: group commit)",
            n as f64 / create_flushes.max(1) as f64
        );
    }
    println!(
        "creates: the write connection was held {:.0}% of the time, {:.0} us per create \
         (writes are serialised on it: at 100% it is the ceiling)",
        100.0 * create_busy / create.wall.as_secs_f64(),
        create_busy * 1e6 / n as f64
    );
    if let (Some(all), Some(sqlite)) = create_cpu {
        // Where the time goes: a create's SQLite work against everything else (HTTP, JSON,
        // the client). Waiting for a core does not count here, but a busy machine (shared
        // caches, another VM) inflates these too.
        println!(
            "creates: {:.0} us of CPU per create (the whole process: clients, server, SQLite), \
             {:.0} us of it on SQLite's connection threads",
            all.as_secs_f64() * 1e6 / n as f64,
            sqlite.as_secs_f64() * 1e6 / n as f64
        );
    }
    println!(
        "routes: the write connection was held {:.0}% of the time, {:.0} us per create",
        100.0 * route_busy / routes.wall.as_secs_f64(),
        route_busy * 1e6 / n as f64
    );
    let batched = n as f64 / batches.wall.as_secs_f64();
    println!(
        "batch creates: {batched:.0} instances/s ({:.1}x one by one), the write connection held \
         {:.0}% of the time, {:.0} us per instance",
        batched / create.ops_per_sec(),
        100.0 * batch_busy / batches.wall.as_secs_f64(),
        batch_busy * 1e6 / n as f64
    );
    println!(
        "\nfull listing of {n} instances: {:.1} ms over {} pages",
        list.wall.as_secs_f64() * 1e3,
        list.latencies.len()
    );
    // Idle: with the instances in place and no requests, the worker and the data plane should
    // only wake once a second (a worker that woke itself used to spin at 100% of a core).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (cpu0, t0) = (process_cpu(), Instant::now());
    tokio::time::sleep(Duration::from_secs(3)).await;
    if let (Some(a), Some(b)) = (cpu0, process_cpu()) {
        println!(
            "idle CPU with {n} instances: {:.2}% of a core (one worker and one data-plane pass a second; a spinning loop shows as ~100%)",
            (b - a).as_secs_f64() / t0.elapsed().as_secs_f64() * 100.0
        );
    }
    server.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Instances per batch create, as `simctl up` sends them.
const BATCH: usize = 100;

/// `cloudsim_db_log_flushes_total` as `/metrics` reports it.
async fn log_flushes(http: &reqwest::Client, url: &str) -> u64 {
    metric(http, url, "cloudsim_db_log_flushes_total").await as u64
}

async fn writer_busy(http: &reqwest::Client, url: &str) -> f64 {
    metric(http, url, "cloudsim_db_writer_busy_seconds_total").await
}

/// The value of the metric `name` (a counter: one line, no labels).
async fn metric(http: &reqwest::Client, url: &str, name: &str) -> f64 {
    let text = http.get(url).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("cloud-sim reports {name}"))
}

/// The name sqlx gives the thread of each SQLite connection (`sqlx-sqlite-worker-<n>`), as the
/// kernel keeps it (15 characters).
const SQLITE_THREAD: &str = "sqlx-sqlite-wor";

/// CPU time this process has used (user + system), from `/proc/self/stat` (Linux; the kernel
/// reports it in USER_HZ = 100 ticks per second).
fn process_cpu() -> Option<Duration> {
    stat_cpu(Path::new("/proc/self/stat"))
}

/// CPU time of this process's threads whose names start with `prefix`, from
/// `/proc/self/task/<tid>/stat`.
fn threads_cpu(prefix: &str) -> Option<Duration> {
    let tasks = std::fs::read_dir("/proc/self/task").ok()?;
    let mut total = Duration::ZERO;
    for task in tasks.flatten().map(|t| t.path()) {
        let named = std::fs::read_to_string(task.join("comm"))
            .is_ok_and(|comm| comm.trim_end().starts_with(prefix));
        if named {
            total += stat_cpu(&task.join("stat"))?;
        }
    }
    Some(total)
}

/// utime + stime of a `stat` file of `/proc`.
fn stat_cpu(path: &Path) -> Option<Duration> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}
