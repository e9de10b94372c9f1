//! The sandbox at scale, through the real binaries: `simctl up --nodes N --ccm none
//! --data-plane=false` in one process (cloud-sim, kube-sim, the kubelets, kcm-sim) and the `ccm`
//! binary in another, then S `type: LoadBalancer` Services. The data plane is off: it holds a
//! listener per node and node port (N x S sockets, 100,000 at 1,000 nodes and 100 Services) and
//! health-checks every backend of every load balancer; this measures the control planes. For each N it prints the time until every node is initialised
//! and until every Service has its ingress, each process's peak RSS and CPU seconds, and the API
//! requests per node and per Service by client; next to kube-sim's raw write rate measured in
//! this run (50 clients creating ConfigMaps in an in-process kube-sim), as a ratio that travels
//! between machines. Asserts nothing: these machines are shared and noisy.
//!
//! ```text
//! cargo build --release -p ccm                                   # the ccm process
//! cargo bench -p simctl --bench sandbox                          # 1,000 nodes, 100 Services
//! cargo bench -p simctl --bench sandbox -- 1000 5000 10000 --services 1000
//! cargo bench -p simctl --bench sandbox -- 1000 --real      # the real control plane
//! ```
//!
//! `--real` runs the sandbox on the real kube-apiserver, kube-controller-manager and scheduler
//! (`tests/control-plane/build.sh` builds them); the ccm's client-side rate limit is raised to
//! 1,000,000 requests a second either way (`--kube-api-qps`, `--kube-api-burst`), so the figures
//! are the servers', not upstream's default 20 qps. Requests by client are counted by kube-sim
//! only.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::json;

/// API clients at once when the benchmark itself writes (the baseline, the Services).
const CLIENTS: usize = 50;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut sizes = Vec::new();
    let mut services = 100usize;
    let mut real = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--real" {
            real = true;
        } else if a == "--services" {
            services = it.next().and_then(|s| s.parse().ok()).unwrap_or(services);
        } else if let Ok(n) = a.parse::<usize>() {
            sizes.push(n);
        }
    }
    if sizes.is_empty() {
        sizes.push(1000);
    }
    let simctl = PathBuf::from(env!("CARGO_BIN_EXE_simctl"));
    let ccm = simctl.with_file_name("ccm");
    anyhow::ensure!(
        ccm.exists(),
        "{} is missing: build it first with `cargo build --release -p ccm`",
        ccm.display()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let raw = rt.block_on(raw_write_rate(5000))?;
    println!(
        "kube-sim raw write rate (in process, {CLIENTS} clients creating ConfigMaps): {raw:.0} writes/s\n"
    );
    for n in sizes {
        let r = rt.block_on(one_run(&simctl, &ccm, n, services, real))?;
        r.print(raw);
    }
    Ok(())
}

/// Frontend pools for up to 1,021 load balancers (the data plane is off: nothing listens there).
const LB_POOLS: &str = "zone-a=127.72.0.0/22,zone-b=127.72.4.0/22,zone-c=127.72.8.0/22";

/// Creates per second an in-process kube-sim takes from `CLIENTS` concurrent clients.
async fn raw_write_rate(count: usize) -> anyhow::Result<f64> {
    let server = kube_sim::Server::start(kube_sim::ServerConfig {
        listen: "127.0.0.1:0".parse()?,
        ..Default::default()
    })
    .await?;
    let client = kube::Client::try_from(kube::Config::new(server.url().parse()?))?;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let t = Instant::now();
    run_concurrent(count, |i| {
        let api = api.clone();
        async move {
            let cm: ConfigMap = serde_json::from_value(json!({
                "metadata": {"name": format!("baseline-{i}")},
                "data": {"k": "v"},
            }))?;
            api.create(&PostParams::default(), &cm).await?;
            Ok(())
        }
    })
    .await?;
    let rate = count as f64 / t.elapsed().as_secs_f64();
    server.shutdown().await;
    Ok(rate)
}

async fn run_concurrent<F, Fut>(count: usize, op: F) -> anyhow::Result<()>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    use futures_util::StreamExt as _;
    let results: Vec<anyhow::Result<()>> = futures_util::stream::iter(0..count)
        .map(op)
        .buffer_unordered(CLIENTS)
        .collect()
        .await;
    results.into_iter().collect()
}

struct Run {
    control_plane: &'static str,
    nodes: usize,
    services: usize,
    nodes_ready: Duration,
    services_ready: Option<Duration>,
    /// (name, peak RSS in bytes, CPU seconds)
    processes: Vec<(String, u64, f64)>,
    /// Requests kube-sim served, by user agent.
    kube_requests: BTreeMap<String, u64>,
    cloud_requests: u64,
}

impl Run {
    fn print(&self, raw: f64) {
        let (n, s) = (self.nodes, self.services);
        println!(
            "== {n} nodes, {s} LoadBalancer Services, on {}",
            self.control_plane
        );
        let rate = n as f64 / self.nodes_ready.as_secs_f64();
        println!(
            "nodes initialised:   {:>8.1} s  ({rate:.0} nodes/s, {:.3} of kube-sim's raw write rate)",
            self.nodes_ready.as_secs_f64(),
            rate / raw
        );
        match self.services_ready {
            Some(d) => println!(
                "services with ingress: {:>6.1} s  ({:.0} Services/s)",
                d.as_secs_f64(),
                s as f64 / d.as_secs_f64()
            ),
            None if s == 0 => {}
            None => println!("services with ingress: not all within the deadline"),
        }
        let mut total = 0;
        for (name, rss, cpu) in &self.processes {
            total += rss;
            println!(
                "{name:<24} peak RSS {:>7.1} MiB   CPU {cpu:>7.1} s",
                *rss as f64 / (1 << 20) as f64
            );
        }
        println!(
            "{:<24} peak RSS {:>7.1} MiB (sum of the peaks)",
            "all",
            total as f64 / (1 << 20) as f64
        );
        let objects = (n + s) as f64;
        for (agent, count) in &self.kube_requests {
            println!(
                "kube API requests by {agent:<32} {count:>9}  ({:.1} per node or Service)",
                *count as f64 / objects
            );
        }
        println!(
            "cloud API requests (all clients)         {:>9}  ({:.1} per node or Service)\n",
            self.cloud_requests,
            self.cloud_requests as f64 / objects
        );
    }
}

/// Stops the child when dropped (a failed run leaves nothing behind): SIGTERM first, because
/// `simctl up --control-plane real` stops its etcd and API servers on it (a SIGKILL would leave
/// them running), then SIGKILL if it has not exited within 15 s.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if !matches!(self.0.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn one_run(
    simctl: &Path,
    ccm: &Path,
    nodes: usize,
    services: usize,
    real: bool,
) -> anyhow::Result<Run> {
    let dir = std::env::temp_dir().join(format!(
        "simctl-sandbox-bench-{}-{nodes}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let started = Instant::now();
    let mut up = Proc(
        Command::new(simctl)
            .args([
                "up",
                "--ccm",
                "none",
                "--data-plane=false",
                "--boot-delay",
                "0s",
            ])
            .args(["--timeout", "900s"])
            .args([
                "--cloud-listen",
                "127.0.0.1:0",
                "--kube-listen",
                "127.0.0.1:0",
            ])
            .args(["--control-plane", if real { "real" } else { "kube-sim" }])
            // A load balancer takes an address in every zone's pool; the default /24s hold 253.
            .args(["--lb-pools", LB_POOLS])
            .arg("--nodes")
            .arg(nodes.to_string())
            .arg("--data-dir")
            .arg(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?,
    );
    // stderr: the ccm command line; stdout: the URLs once every node is initialised.
    let (tx, rx) = mpsc::channel::<(bool, String)>();
    for (is_out, pipe) in [
        (
            false,
            Box::new(up.0.stderr.take().expect("piped")) as Box<dyn std::io::Read + Send>,
        ),
        (true, Box::new(up.0.stdout.take().expect("piped"))),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if tx.send((is_out, line)).is_err() {
                    return;
                }
            }
        });
    }
    let mut ccm_proc = None;
    let mut cloud_url = None;
    let mut kube_url = None;
    let deadline = Instant::now() + Duration::from_secs(900);
    let nodes_ready = loop {
        let (is_out, line) = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .map_err(|_| anyhow::anyhow!("simctl up did not finish within 900 s"))?;
        if !is_out {
            if let Some(cmd) = line.strip_prefix("  ccm ") {
                ccm_proc = Some(Proc(
                    Command::new(ccm)
                        .args(cmd.split_whitespace())
                        .env("CCM_LOG", "warn")
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()?,
                ));
            } else if line.to_ascii_lowercase().starts_with("error") {
                anyhow::bail!("simctl up: {line}");
            }
            continue;
        }
        if let Some(u) = line.trim().strip_prefix("cloud-sim API:") {
            cloud_url = Some(u.trim().to_owned());
        }
        if let Some(u) = line.trim().strip_prefix("Kubernetes API:") {
            kube_url = Some(u.trim().to_owned());
        }
        if line.starts_with("Press Ctrl-C") {
            break started.elapsed();
        }
    };
    let (Some(cloud_url), Some(kube_url), Some(ccm_proc)) = (cloud_url, kube_url, ccm_proc) else {
        anyhow::bail!("simctl up did not print its URLs and the ccm command line");
    };
    let kubeconfig = kube::config::Kubeconfig::read_from(dir.join("kubeconfig"))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    let client = kube::Client::try_from(config)?;

    let services_ready = if services == 0 {
        None
    } else {
        let api: Api<Service> = Api::namespaced(client.clone(), "default");
        let t = Instant::now();
        run_concurrent(services, |i| {
            let api = api.clone();
            async move {
                let svc: Service = serde_json::from_value(json!({
                    "metadata": {"name": format!("lb-{i}")},
                    "spec": {"type": "LoadBalancer", "selector": {"app": format!("lb-{i}")},
                             "ports": [{"port": 80, "targetPort": 8080}]},
                }))?;
                api.create(&PostParams::default(), &svc).await?;
                Ok(())
            }
        })
        .await?;
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let list = api.list(&ListParams::default()).await?;
            let done = list
                .items
                .iter()
                .filter(|s| {
                    s.status
                        .as_ref()
                        .and_then(|st| st.load_balancer.as_ref())
                        .and_then(|lb| lb.ingress.as_ref())
                        .is_some_and(|i| !i.is_empty())
                })
                .count();
            if done >= services {
                break Some(t.elapsed());
            }
            if Instant::now() > deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };

    let mut processes = vec![
        (
            "simctl up".to_owned(),
            peak_rss(up.0.id()),
            cpu_seconds(up.0.id()),
        ),
        (
            "ccm".to_owned(),
            peak_rss(ccm_proc.0.id()),
            cpu_seconds(ccm_proc.0.id()),
        ),
    ];
    // The real control plane's processes are simctl's children.
    for pid in children(up.0.id()) {
        let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        processes.push((
            format!("  {}", name.trim()),
            peak_rss(pid),
            cpu_seconds(pid),
        ));
    }
    let http = reqwest::Client::new();
    let seen: Vec<serde_json::Value> = if real {
        Vec::new()
    } else {
        http.get(format!("{kube_url}/kube-sim/requests"))
            .send()
            .await?
            .json()
            .await?
    };
    let mut kube_requests = BTreeMap::new();
    for r in &seen {
        let agent = r["userAgent"].as_str().unwrap_or("?");
        let agent = match agent.split('/').next().unwrap_or(agent) {
            // The sandbox's own in-process clients send no user agent.
            "" => "the kubelets and kcm-sim".to_owned(),
            a => a.to_owned(),
        };
        *kube_requests.entry(agent).or_default() += r["count"].as_u64().unwrap_or(0);
    }
    let metrics = http
        .get(format!("{cloud_url}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let cloud_requests = metrics
        .lines()
        .filter(|l| l.starts_with("cloudsim_http_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64;
    drop(ccm_proc);
    drop(up);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Run {
        control_plane: if real {
            "the real control plane"
        } else {
            "kube-sim"
        },
        nodes,
        services,
        nodes_ready,
        services_ready,
        processes,
        kube_requests,
        cloud_requests,
    })
}

/// Processes whose parent is `pid`.
fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = &s[s.rfind(')')? + 2..];
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// Peak resident set of a process (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// CPU time (user + system) a process has used, in seconds (USER_HZ = 100).
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / 100.0
}
