//! Data-plane benchmark: one backend, one load generator, three paths: direct, HAProxy (`mode
//! tcp`, if installed) and a cloud-sim load balancer, both proxies running as their own processes.
//! Each request is a new TCP connection (what an L4 load balancer sees): connect, send a small
//! HTTP request, read the response until the backend closes. The two proxies run in rounds,
//! alternating which goes first; prints requests/s and p50/p99 latency per run, cloud-sim's
//! ratios to HAProxy per round and their medians.
//! Run through `cloud-sim/benches/lb-vs-haproxy.sh`, which installs HAProxy.
//!
//! The backend, the proxies and the load generator share this machine's cores, so the figures are
//! comparable within one run, not across machines.

use std::net::{Ipv4Addr, SocketAddr};

use std::time::{Duration, Instant};

use cloud_api::{
    CreateInstanceRequest, CreateLoadBalancerRequest, HealthCheck, Listener, Protocol, Tags,
    ZonePolicy,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nConnection: close\r\n\r\nhello, world\n";
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n";

async fn backend(addr: SocketAddr) {
    let l = TcpListener::bind(addr).await.expect("bind backend");
    loop {
        let Ok((mut s, _)) = l.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let mut seen = Vec::new();
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            let _ = s.write_all(RESPONSE).await;
            let _ = s.shutdown().await;
        });
    }
}

async fn one(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return false;
    };
    if s.write_all(REQUEST).await.is_err() {
        return false;
    }
    let mut out = Vec::with_capacity(128);
    s.read_to_end(&mut out).await.is_ok() && out.starts_with(b"HTTP/1.1 200")
}

struct Result {
    name: &'static str,
    rps: f64,
    p50: Duration,
    p99: Duration,
    errors: usize,
}

async fn load(name: &'static str, addr: SocketAddr, concurrency: usize, secs: u64) -> Result {
    // Warm up.
    let warm = Instant::now() + Duration::from_millis(500);
    while Instant::now() < warm {
        one(addr).await;
    }
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            while Instant::now() < deadline {
                let t = Instant::now();
                if one(addr).await {
                    lat.push(t.elapsed());
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let started = Instant::now();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.expect("load task");
        all.extend(l);
        errors += e;
    }
    let took = started.elapsed();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or_default()
    };
    Result {
        name,
        rps: all.len() as f64 / took.as_secs_f64(),
        p50: pct(0.5),
        p99: pct(0.99),
        errors,
    }
}

async fn wait_port(addr: SocketAddr) -> bool {
    for _ in 0..200 {
        if one(addr).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// HAProxy in `mode tcp` in front of `backend`, as its own process; `None` if it is not installed
/// or did not start.
async fn start_haproxy(
    addr: SocketAddr,
    backend: SocketAddr,
    cfg: &std::path::Path,
) -> Option<std::process::Child> {
    std::fs::write(
        cfg,
        format!(
            "global\n  maxconn 4000\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\nfrontend fe\n  bind {addr}\n  default_backend be\nbackend be\n  server b1 {backend}\n"
        ),
    )
    .expect("write haproxy config");
    let child = std::process::Command::new("haproxy")
        .arg("-f")
        .arg(cfg)
        .arg("-db")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    match child {
        Ok(mut child) => {
            if wait_port(addr).await {
                Some(child)
            } else {
                println!("HAProxy did not start; skipping it");
                let _ = child.kill();
                None
            }
        }
        Err(e) => {
            println!(
                "HAProxy not found ({e}); run cloud-sim/benches/lb-vs-haproxy.sh to install it"
            );
            None
        }
    }
}

/// cloud-sim as its own process (as HAProxy is) with one instance at the backend's address and one
/// load balancer in zone-a; returns the process and the load balancer's frontend address.
async fn start_cloud_sim(
    api_addr: SocketAddr,
    backend: SocketAddr,
    dir: &std::path::Path,
) -> (std::process::Child, SocketAddr) {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_cloud-sim"))
        .args([
            "serve",
            "--database-url",
            "sqlite::memory:",
            "--instance-boot-delay",
            "0",
            "--lb-provision-delay",
            "0",
            "--log-filter",
            "warn",
        ])
        .arg("--listen")
        .arg(api_addr.to_string())
        .arg("--data-dir")
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn cloud-sim");
    let client = cloud_client::Client::new(format!("http://{api_addr}")).expect("client");
    let mut up = false;
    for _ in 0..200 {
        if client.zones().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "cloud-sim did not start");
    let std::net::IpAddr::V4(backend_ip) = backend.ip() else {
        panic!("the backend has an IPv4 address");
    };
    let inst = client
        .create_instance(&CreateInstanceRequest {
            name: "bench".into(),
            zone: "zone-a".into(),
            instance_type: "sim.small".into(),
            tags: Tags::new(),
            private_ip: Some(backend_ip),
        })
        .await
        .expect("create instance");
    let lb = client
        .create_load_balancer(&CreateLoadBalancerRequest {
            name: "bench".into(),
            scheme: Default::default(),
            ip_mode: Default::default(),
            listeners: vec![Listener {
                protocol: Protocol::Tcp,
                port: 18082,
                backend_port: backend.port(),
            }],
            backends: vec![inst.id.clone()],
            backend_groups: vec![],
            health_check: HealthCheck {
                interval_seconds: 1,
                timeout_seconds: 1,
                healthy_threshold: 1,
                ..HealthCheck::default()
            },
            zone_policy: ZonePolicy::default(),
            zones: Some(vec!["zone-a".into()]),
            requested_ips: vec![],
            tags: Tags::new(),
        })
        .await
        .expect("create load balancer");
    let lb_addr = SocketAddr::from((lb.frontends[0].ip, 18082));
    assert!(
        wait_port(lb_addr).await,
        "cloud-sim load balancer did not start"
    );
    (child, lb_addr)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

#[tokio::main]
async fn main() {
    let args: Vec<u64> = sim_common::numeric_args();
    let secs = args.first().copied().unwrap_or(5);
    let concurrency = usize::try_from(args.get(1).copied().unwrap_or(32)).unwrap_or(32);
    let rounds = usize::try_from(args.get(2).copied().unwrap_or(3))
        .unwrap_or(3)
        .max(1);
    let backend_addr = SocketAddr::from((Ipv4Addr::new(127, 2, 0, 1), 18080));
    tokio::spawn(backend(backend_addr));
    assert!(wait_port(backend_addr).await, "backend did not start");
    println!(
        "data-plane benchmark: new TCP connection per request, {concurrency} concurrent clients, \
         {secs} s per path, {rounds} rounds alternating which proxy goes first"
    );

    let haproxy_addr = SocketAddr::from((Ipv4Addr::new(127, 2, 0, 2), 18081));
    let cfg = std::env::temp_dir().join(format!("haproxy-bench-{}.cfg", std::process::id()));
    let mut haproxy = start_haproxy(haproxy_addr, backend_addr, &cfg).await;
    let dir = std::env::temp_dir().join(format!("cloud-sim-proxy-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let api_addr = SocketAddr::from((Ipv4Addr::new(127, 2, 0, 3), 18083));
    let (mut sim, lb_addr) = start_cloud_sim(api_addr, backend_addr, &dir).await;

    let mut results = vec![load("direct to backend", backend_addr, concurrency, secs).await];
    let mut ratios = Vec::new();
    for round in 0..rounds {
        // Alternate the order so neither proxy always runs on the other's leftovers (TIME_WAIT
        // sockets, warm caches).
        let h_first = round % 2 == 0;
        let mut pair = Vec::new();
        for h in [h_first, !h_first] {
            if h {
                if haproxy.is_some() {
                    pair.push(load("HAProxy (mode tcp)", haproxy_addr, concurrency, secs).await);
                }
            } else {
                pair.push(load("cloud-sim load balancer", lb_addr, concurrency, secs).await);
            }
        }
        pair.sort_by_key(|r| r.name);
        if let [h, c] = &pair[..] {
            ratios.push((c.rps / h.rps, c.p99.as_secs_f64() / h.p99.as_secs_f64()));
        }
        results.extend(pair);
    }

    println!();
    println!(
        "{:<26} {:>10} {:>10} {:>10} {:>8}",
        "path", "req/s", "p50 ms", "p99 ms", "errors"
    );
    for r in &results {
        println!(
            "{:<26} {:>10.0} {:>10.2} {:>10.2} {:>8}",
            r.name,
            r.rps,
            r.p50.as_secs_f64() * 1e3,
            r.p99.as_secs_f64() * 1e3,
            r.errors
        );
    }
    if !ratios.is_empty() {
        println!();
        for (i, (t, p)) in ratios.iter().enumerate() {
            println!(
                "round {}: cloud-sim / HAProxy throughput {t:.2}x, p99 {p:.2}x",
                i + 1
            );
        }
        println!(
            "cloud-sim / HAProxy (median of {} rounds): throughput {:.2}x (target >= 0.9x), p99 {:.2}x (target <= 1.2x)",
            ratios.len(),
            median(ratios.iter().map(|r| r.0).collect()),
            median(ratios.iter().map(|r| r.1).collect()),
        );
    }
    let direct = &results[0];
    let sim_rps: Vec<f64> = results
        .iter()
        .filter(|r| r.name.starts_with("cloud-sim"))
        .map(|r| r.rps)
        .collect();
    println!(
        "cloud-sim / direct: throughput {:.2}x (median)",
        median(sim_rps) / direct.rps
    );
    if let Some(c) = haproxy.as_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
    let _ = std::fs::remove_file(&cfg);
    let _ = sim.kill();
    let _ = sim.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
