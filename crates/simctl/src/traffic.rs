//! `simctl traffic`: real requests through the sandbox's data plane, as clients in each zone
//! would make them, and what happened to them.
//!
//! Two classes of traffic (reference/topology.md §6.1):
//! - north-south: a client connects to its zone's frontend of the Service's load balancer; the
//!   node the load balancer picks answers `node=<name> zone=<zone>` and kube-proxy's choice of
//!   Pod answers `pod=<name> node=<node> zone=<zone>` (see `kubelet_sim::dataplane`);
//! - east-west: a client on a node of its zone calls the Service's ClusterIP through that
//!   node's kube-proxy (`CONNECT <clusterIP>:<port>` to the node's in-cluster port).
//!
//! Requests go at `--rate` per second for `--duration` (or `--connections` of them back to
//! back), zones interleaved by their weights. The report gives, per client zone and in total,
//! the in-zone fraction (served in the client's zone), cross-zone counts per hop (client to load
//! balancer, load balancer to node, node to pod), the load per endpoint including endpoints that
//! got nothing (peak-to-mean, overload, coefficient of variation), cross-zone bytes and their
//! cost, and the same per time window.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context as _, bail};
use cloud_api::LoadBalancer;
use cloud_client::{Client, LoadBalancerFilter};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod summary;
pub use summary::*;

/// Which path requests take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// From outside, through the Service's load balancer (frontend of the client's zone).
    NorthSouth,
    /// In the cluster: a client on a node of its zone calls the ClusterIP through that node.
    EastWest,
}

#[derive(Debug, Clone, clap::Args)]
pub struct TrafficArgs {
    /// The Service (`namespace/name`, or `name` in `default`); for north-south also a load
    /// balancer ID (`lb-...`).
    pub target: String,

    /// north-south (through the load balancer) or east-west (ClusterIP through a node of the
    /// client's zone; needs --kubeconfig).
    #[arg(long, value_enum, default_value = "north-south")]
    pub class: Class,

    /// Client zones and their weights, e.g. `zone-a=70,zone-b=15,zone-c=15`; default: every
    /// zone equally.
    #[arg(long, value_delimiter = ',', value_parser = parse_weight)]
    pub from: Vec<(String, u32)>,

    /// Requests to make back to back (without --rate).
    #[arg(long, default_value_t = 300)]
    pub connections: u32,

    /// Requests per second, all zones together (with --duration).
    #[arg(long)]
    pub rate: Option<f64>,

    /// How long to send at --rate.
    #[arg(long, default_value = "10s", value_parser = sim_common::parse_duration)]
    pub duration: Duration,

    /// Length of the report's time windows.
    #[arg(long, default_value = "1s", value_parser = sim_common::parse_duration)]
    pub window: Duration,

    /// Service (or listener) port; default the first.
    #[arg(long)]
    pub port: Option<u16>,

    /// Price of a cross-zone gigabyte, for the cost figure.
    #[arg(long, default_value_t = 0.01)]
    pub price_per_gb: f64,

    /// Kubeconfig of the cluster (east-west, and the endpoint list for skew).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<std::path::PathBuf>,
}

fn parse_weight(s: &str) -> Result<(String, u32), String> {
    let (z, w) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not zone=weight"))?;
    Ok((
        z.trim().to_owned(),
        w.trim()
            .parse()
            .map_err(|_| format!("{s:?}: the weight must be a whole number"))?,
    ))
}

/// Interleaves the per-zone counts so zones take turns (the servers see a steady mix).
pub fn schedule(alloc: &[(String, u32)]) -> Vec<String> {
    let total: u32 = alloc.iter().map(|(_, c)| c).sum();
    let mut sent: Vec<u32> = vec![0; alloc.len()];
    let mut out = Vec::with_capacity(total as usize);
    for k in 1..=total {
        // The zone furthest behind its share goes next.
        let i = (0..alloc.len())
            .filter(|&i| sent[i] < alloc[i].1)
            .max_by(|&a, &b| {
                let lag = |i: usize| {
                    f64::from(alloc[i].1) * f64::from(k) / f64::from(total) - f64::from(sent[i])
                };
                lag(a).total_cmp(&lag(b))
            })
            .expect("some zone has connections left");
        sent[i] += 1;
        out.push(alloc[i].0.clone());
    }
    out
}

/// Where a class's requests go.
#[derive(Debug, Clone)]
pub enum Entry {
    /// The load balancer's frontend per zone, and the listener port.
    NorthSouth {
        frontends: BTreeMap<String, Ipv4Addr>,
        port: u16,
    },
    /// Node IPs per zone (clients' nodes), and the Service's ClusterIP and port.
    EastWest {
        nodes: BTreeMap<String, Vec<(String, Ipv4Addr)>>,
        cluster_ip: Ipv4Addr,
        port: u16,
    },
}

impl Entry {
    pub fn zones(&self) -> Vec<String> {
        match self {
            Entry::NorthSouth { frontends, .. } => frontends.keys().cloned().collect(),
            Entry::EastWest { nodes, .. } => nodes
                .iter()
                .filter(|(_, n)| !n.is_empty())
                .map(|(z, _)| z.clone())
                .collect(),
        }
    }
}

/// One request and what answered it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Sample {
    /// Seconds since the run started.
    pub at: f64,
    pub client_zone: String,
    /// The frontend's zone (north-south).
    pub lb_zone: Option<String>,
    /// The node the request went through: the load balancer's backend, or the client's node.
    pub node: Option<(String, String)>,
    /// The Pod that answered: name, node, zone.
    pub pod: Option<(String, String, String)>,
    /// Bytes of the answer.
    pub bytes: usize,
    pub error: Option<String>,
}

impl Sample {
    /// The zone that served it: the Pod's, or with no Pod the node's.
    pub fn served_zone(&self) -> Option<&str> {
        self.pod
            .as_ref()
            .map(|p| p.2.as_str())
            .or(self.node.as_ref().map(|n| n.1.as_str()))
    }
}

fn parse_answer(text: &str, s: &mut Sample) {
    for line in text.lines() {
        let kv: BTreeMap<&str, &str> = line
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .collect();
        match (kv.get("pod"), kv.get("node"), kv.get("zone")) {
            (Some(p), Some(n), Some(z)) => {
                s.pod = Some(((*p).to_owned(), (*n).to_owned(), (*z).to_owned()));
            }
            (None, Some(n), Some(z)) if s.node.is_none() => {
                s.node = Some(((*n).to_owned(), (*z).to_owned()));
            }
            _ => {}
        }
    }
}

async fn read_all(s: &mut TcpStream) -> Result<String, String> {
    let mut out = Vec::new();
    match tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await {
        Ok(Ok(_)) => Ok(String::from_utf8_lossy(&out).into_owned()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out reading the answer".into()),
    }
}

async fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    match tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(addr)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(format!("{addr}: {e}")),
        Err(_) => Err(format!("{addr}: connect timed out")),
    }
}

/// Makes one request from `zone` (the `n`-th from that zone picks its node round robin).
pub async fn request(entry: &Entry, zone: &str, n: usize) -> Sample {
    let mut s = Sample {
        client_zone: zone.to_owned(),
        ..Default::default()
    };
    let result: Result<(), String> = async {
        match entry {
            Entry::NorthSouth { frontends, port } => {
                let ip = frontends
                    .get(zone)
                    .ok_or_else(|| format!("no frontend in {zone}"))?;
                s.lb_zone = Some(zone.to_owned());
                let mut c = connect(SocketAddr::from((*ip, *port))).await?;
                let text = read_all(&mut c).await?;
                s.bytes = text.len();
                parse_answer(&text, &mut s);
            }
            Entry::EastWest {
                nodes,
                cluster_ip,
                port,
            } => {
                let in_zone = nodes
                    .get(zone)
                    .filter(|n| !n.is_empty())
                    .ok_or_else(|| format!("no running node in {zone}"))?;
                let (name, ip) = &in_zone[n % in_zone.len()];
                s.node = Some((name.clone(), zone.to_owned()));
                let mut c = connect(SocketAddr::from((
                    *ip,
                    kubelet_sim::dataplane::IN_CLUSTER_PORT,
                )))
                .await?;
                c.write_all(
                    format!(
                        "CONNECT {cluster_ip}:{port} HTTP/1.1\r\nHost: {cluster_ip}:{port}\r\n\r\n"
                    )
                    .as_bytes(),
                )
                .await
                .map_err(|e| e.to_string())?;
                let text = read_all(&mut c).await?;
                let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
                if !head.starts_with("HTTP/1.1 200") {
                    return Err(format!(
                        "{name}: {}",
                        head.lines().next().unwrap_or("no answer")
                    ));
                }
                s.bytes = body.len();
                parse_answer(body, &mut s);
            }
        }
        if s.pod.is_none() && s.node.is_none() {
            return Err("nothing answered".into());
        }
        Ok(())
    }
    .await;
    s.error = result.err();
    s
}

/// Sends `plan` (client zones in order): back to back, or spread evenly at `rate` per second.
pub async fn drive(entry: &Entry, plan: &[String], rate: Option<f64>) -> Vec<Sample> {
    let start = tokio::time::Instant::now();
    let mut per_zone: BTreeMap<String, usize> = BTreeMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    let mut out = Vec::with_capacity(plan.len());
    for (i, zone) in plan.iter().enumerate() {
        let n = per_zone.entry(zone.clone()).or_default();
        let k = *n;
        *n += 1;
        match rate {
            Some(r) if r > 0.0 => {
                tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / r)).await;
                let (entry, zone) = (entry.clone(), zone.clone());
                tasks.spawn(async move {
                    let at = start.elapsed().as_secs_f64();
                    let mut s = request(&entry, &zone, k).await;
                    s.at = at;
                    s
                });
            }
            _ => {
                let at = start.elapsed().as_secs_f64();
                let mut s = request(entry, zone, k).await;
                s.at = at;
                out.push(s);
            }
        }
    }
    while let Some(r) = tasks.join_next().await {
        if let Ok(s) = r {
            out.push(s);
        }
    }
    out.sort_by(|a, b| a.at.total_cmp(&b.at));
    out
}

/// The traffic report of `simctl traffic`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TrafficResult {
    pub service: String,
    pub class: Class,
    pub load_balancer: Option<String>,
    pub port: u16,
    #[serde(flatten)]
    pub total: Summary,
    pub windows: Vec<Window>,
}

/// The load balancer `target` names: an ID (`lb-...`), or the Service it serves (`namespace/name`,
/// or `name` in `default`).
pub async fn find(client: &Client, target: &str) -> anyhow::Result<LoadBalancer> {
    if target.starts_with("lb-") {
        return client
            .get_load_balancer(target)
            .await?
            .with_context(|| format!("no load balancer {target}"));
    }
    let svc = service_key(target);
    let filter = LoadBalancerFilter {
        name: None,
        tag: Some((ccm::names::TAG_SERVICE_NAME.into(), svc.clone())),
    };
    client
        .list_all_load_balancers(&filter)
        .await?
        .into_iter()
        .next()
        .with_context(|| format!("no load balancer serves Service {svc}"))
}

/// `namespace/name` of a target given as either that or a bare name (in `default`).
pub fn service_key(target: &str) -> String {
    if target.contains('/') {
        target.to_owned()
    } else {
        format!("default/{target}")
    }
}

/// The north-south entry of a load balancer.
pub fn lb_entry(lb: &LoadBalancer, port: Option<u16>) -> anyhow::Result<Entry> {
    let port = match port {
        Some(p) => p,
        None => lb
            .listeners
            .first()
            .map(|l| l.port)
            .context("the load balancer has no listeners")?,
    };
    Ok(Entry::NorthSouth {
        frontends: lb
            .frontends
            .iter()
            .map(|f| (f.zone.clone(), f.ip))
            .collect(),
        port,
    })
}

/// The east-west entry of a Service: its ClusterIP and port, and the Ready nodes per zone.
pub async fn cluster_entry(
    kube: &kube::Client,
    service: &str,
    port: Option<u16>,
) -> anyhow::Result<Entry> {
    use k8s_openapi::api::core::v1::{Node, Service};
    let key = service_key(service);
    let (ns, name) = key.split_once('/').expect("namespace/name");
    let svc = kube::Api::<Service>::namespaced(kube.clone(), ns)
        .get_opt(name)
        .await?
        .with_context(|| format!("no Service {key}"))?;
    let spec = svc.spec.clone().unwrap_or_default();
    let cluster_ip: Ipv4Addr = spec
        .cluster_ip
        .as_deref()
        .and_then(|ip| ip.parse().ok())
        .with_context(|| format!("Service {key} has no IPv4 ClusterIP"))?;
    let port = match port {
        Some(p) => p,
        None => spec
            .ports
            .iter()
            .flatten()
            .next()
            .and_then(|p| u16::try_from(p.port).ok())
            .with_context(|| format!("Service {key} has no ports"))?,
    };
    let mut nodes: BTreeMap<String, Vec<(String, Ipv4Addr)>> = BTreeMap::new();
    for n in kube::Api::<Node>::all(kube.clone())
        .list(&Default::default())
        .await?
        .items
    {
        if !kcm_sim::scheduler::node_ready(&n) {
            continue;
        }
        let zone = n
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(topology::LABEL_ZONE))
            .cloned();
        let ip = n
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
            .and_then(|a| a.address.parse().ok());
        if let (Some(z), Some(ip)) = (zone, ip) {
            nodes
                .entry(z)
                .or_default()
                .push((n.metadata.name.unwrap_or_default(), ip));
        }
    }
    Ok(Entry::EastWest {
        nodes,
        cluster_ip,
        port,
    })
}

/// The EndpointSlices of a Service (`namespace/name` or `name`).
pub async fn slices(
    kube: &kube::Client,
    service: &str,
) -> anyhow::Result<Vec<k8s_openapi::api::discovery::v1::EndpointSlice>> {
    let key = service_key(service);
    let (ns, name) = key.split_once('/').expect("namespace/name");
    let lp = kube::api::ListParams::default().labels(&format!("kubernetes.io/service-name={name}"));
    Ok(kube::Api::namespaced(kube.clone(), ns)
        .list(&lp)
        .await?
        .items)
}

/// The Service's ready endpoints as `pod (zone)`, from its EndpointSlices.
pub fn endpoint_names(slices: &[k8s_openapi::api::discovery::v1::EndpointSlice]) -> Vec<String> {
    slices
        .iter()
        .flat_map(|s| &s.endpoints)
        .filter(|e| topology::endpoint_ready(e))
        .filter_map(|e| {
            let pod = e.target_ref.as_ref()?.name.clone()?;
            Some(format!("{pod} ({})", e.zone.clone().unwrap_or_default()))
        })
        .collect()
}

/// The zones and weights to send from: `--from`, or every zone of the entry equally.
pub fn weights(entry: &Entry, from: &[(String, u32)]) -> anyhow::Result<Vec<(String, u32)>> {
    let zones = entry.zones();
    if from.is_empty() {
        return Ok(zones.into_iter().map(|z| (z, 1)).collect());
    }
    for (z, _) in from {
        if !zones.contains(z) {
            bail!("no way in from {z}: the traffic's entry has zones {zones:?}");
        }
    }
    Ok(from.to_vec())
}

/// How many requests, in which order: `--connections` back to back, or `rate x duration`.
pub fn plan(
    weights: &[(String, u32)],
    connections: u32,
    rate: Option<f64>,
    duration: Duration,
) -> Vec<String> {
    let n = match rate {
        Some(r) => (r * duration.as_secs_f64()).round().max(1.0) as u32,
        None => connections,
    };
    schedule(&sim_common::split_by_weight(n, weights))
}

pub async fn run(client: &Client, args: &TrafficArgs) -> anyhow::Result<TrafficResult> {
    let kube = match &args.kubeconfig {
        Some(path) => Some(crate::kube_client(Some(path)).await?),
        None => None,
    };
    let (entry, lb) = match args.class {
        Class::NorthSouth => {
            let lb = find(client, &args.target).await?;
            (lb_entry(&lb, args.port)?, Some(lb.id.to_string()))
        }
        Class::EastWest => {
            let kube = kube
                .as_ref()
                .context("east-west traffic needs --kubeconfig (or KUBECONFIG)")?;
            (cluster_entry(kube, &args.target, args.port).await?, None)
        }
    };
    let eps = match (&kube, args.target.starts_with("lb-")) {
        (Some(k), false) => endpoint_names(&slices(k, &args.target).await?),
        _ => Vec::new(),
    };
    let w = weights(&entry, &args.from)?;
    let order = plan(&w, args.connections, args.rate, args.duration);
    let samples = drive(&entry, &order, args.rate).await;
    let port = match &entry {
        Entry::NorthSouth { port, .. } | Entry::EastWest { port, .. } => *port,
    };
    Ok(TrafficResult {
        service: service_key(&args.target),
        class: args.class,
        load_balancer: lb,
        port,
        total: summarize(&samples, &eps, args.price_per_gb),
        windows: windows(&samples, args.window.as_secs_f64(), &eps, args.price_per_gb),
    })
}

/// The human report.
pub fn render(r: &TrafficResult) -> String {
    let via = r
        .load_balancer
        .as_ref()
        .map(|l| format!(" via load balancer {l}"))
        .unwrap_or_default();
    let class = match r.class {
        Class::NorthSouth => "north-south",
        Class::EastWest => "east-west",
    };
    let mut out = format!("{class} traffic to {} port {}{via}\n\n", r.service, r.port);
    let t = &r.total;
    let rows: Vec<Vec<String>> = t
        .by_client_zone
        .iter()
        .map(|(z, x)| {
            vec![
                z.clone(),
                x.requests.to_string(),
                format!("{:.3}", x.in_zone_fraction),
                x.errors.to_string(),
            ]
        })
        .collect();
    out.push_str(&crate::table::render(
        &["CLIENT ZONE", "REQUESTS", "IN-ZONE", "ERRORS"],
        &rows,
    ));
    out.push('\n');
    let rows: Vec<Vec<String>> = t
        .by_endpoint
        .iter()
        .map(|(b, c)| vec![b.clone(), c.to_string()])
        .collect();
    out.push_str(&crate::table::render(&["ENDPOINT", "REQUESTS"], &rows));
    out.push_str(&format!(
        "\nin-zone fraction {:.3}, peak-to-mean {:.2} (overload {:+.0}%, cv {:.2}), errors {}\n\
         cross-zone hops: client->lb {}, lb->node {}, node->pod {}; {} cross-zone bytes, cost {:.6}\n",
        t.in_zone_fraction,
        t.peak_to_mean,
        t.overload * 100.0,
        t.coefficient_of_variation,
        t.errors,
        t.cross_zone_hops.client_to_lb,
        t.cross_zone_hops.lb_to_node,
        t.cross_zone_hops.node_to_pod,
        t.cross_zone_bytes,
        t.cost,
    ));
    if r.windows.len() > 1 {
        out.push('\n');
        let rows: Vec<Vec<String>> = r
            .windows
            .iter()
            .map(|w| {
                vec![
                    format!("{:.0}-{:.0}s", w.start, w.end),
                    w.summary.requests.to_string(),
                    format!("{:.3}", w.summary.in_zone_fraction),
                    format!("{:.2}", w.summary.peak_to_mean),
                    w.summary.errors.to_string(),
                ]
            })
            .collect();
        out.push_str(&crate::table::render(
            &["WINDOW", "REQUESTS", "IN-ZONE", "PEAK/MEAN", "ERRORS"],
            &rows,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(spec: &[(&str, u32)]) -> Vec<(String, u32)> {
        spec.iter().map(|(z, x)| ((*z).to_owned(), *x)).collect()
    }

    #[test]
    fn schedule_interleaves_zones() {
        let s = schedule(&w(&[("a", 2), ("b", 2)]));
        assert_eq!(s.len(), 4);
        assert_ne!(s[0], s[1], "{s:?}");
        let s = schedule(&w(&[("a", 7), ("b", 3)]));
        assert_eq!(s.iter().filter(|z| *z == "a").count(), 7);
    }

    fn sample(
        at: f64,
        client: &str,
        lb: Option<&str>,
        node: (&str, &str),
        pod: Option<(&str, &str)>,
    ) -> Sample {
        Sample {
            at,
            client_zone: client.into(),
            lb_zone: lb.map(Into::into),
            node: Some((node.0.into(), node.1.into())),
            pod: pod.map(|(p, z)| (p.into(), node.0.into(), z.into())),
            bytes: 100,
            error: None,
        }
    }

    #[test]
    fn answers_name_the_node_then_the_pod() {
        let mut s = Sample::default();
        parse_answer(
            "node=n1 zone=zone-a\npod=web-1 node=n2 zone=zone-b\n",
            &mut s,
        );
        assert_eq!(s.node, Some(("n1".into(), "zone-a".into())));
        assert_eq!(s.pod, Some(("web-1".into(), "n2".into(), "zone-b".into())));
        assert_eq!(s.served_zone(), Some("zone-b"));
    }

    #[test]
    fn summary_counts_hops_skew_and_idle_endpoints() {
        let samples = vec![
            sample(
                0.1,
                "zone-a",
                Some("zone-a"),
                ("n1", "zone-a"),
                Some(("p1", "zone-a")),
            ),
            sample(
                0.2,
                "zone-a",
                Some("zone-a"),
                ("n2", "zone-b"),
                Some(("p1", "zone-a")),
            ),
            sample(
                0.3,
                "zone-b",
                Some("zone-b"),
                ("n2", "zone-b"),
                Some(("p2", "zone-b")),
            ),
            sample(
                1.1,
                "zone-b",
                Some("zone-b"),
                ("n2", "zone-b"),
                Some(("p1", "zone-a")),
            ),
            Sample {
                at: 1.2,
                client_zone: "zone-b".into(),
                error: Some("refused".into()),
                ..Default::default()
            },
        ];
        let eps: Vec<String> = ["p1 (zone-a)", "p2 (zone-b)", "p3 (zone-c)"]
            .map(String::from)
            .to_vec();
        let s = summarize(&samples, &eps, 10.0);
        assert_eq!((s.requests, s.errors), (5, 1));
        assert_eq!(s.in_zone_fraction, 0.75);
        assert_eq!(s.by_client_zone["zone-b"].in_zone_fraction, 0.5);
        // Two crossings on one request (lb->node and node->pod) count once in bytes.
        assert_eq!(
            s.cross_zone_hops,
            Hops {
                client_to_lb: 0,
                lb_to_node: 1,
                node_to_pod: 2
            }
        );
        assert_eq!(s.cross_zone_bytes, 200);
        assert!((s.cost - 200.0 / 1e9 * 10.0).abs() < 1e-15);
        // p3 got nothing and still counts: loads 3, 1, 0 -> mean 4/3, peak 3.
        assert_eq!(s.by_endpoint["p3 (zone-c)"], 0);
        assert!((s.peak_to_mean - 2.25).abs() < 1e-9, "{}", s.peak_to_mean);
        let ws = windows(&samples, 1.0, &eps, 10.0);
        assert_eq!(ws.len(), 2);
        assert_eq!(ws[0].summary.requests, 3);
        assert_eq!(ws[1].summary.errors, 1);
    }

    #[test]
    fn without_pods_the_nodes_are_the_endpoints() {
        let samples = vec![
            sample(0.0, "zone-a", Some("zone-a"), ("n1", "zone-a"), None),
            sample(0.0, "zone-a", Some("zone-a"), ("n1", "zone-a"), None),
            sample(0.0, "zone-b", Some("zone-b"), ("n2", "zone-b"), None),
        ];
        let s = summarize(&samples, &[], 0.0);
        assert_eq!(s.in_zone_fraction, 1.0);
        assert_eq!(s.by_endpoint.len(), 2);
        assert!((s.peak_to_mean - 4.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn plans_rate_times_duration_or_a_count() {
        let w = w(&[("a", 1), ("b", 1)]);
        assert_eq!(plan(&w, 7, None, Duration::ZERO).len(), 7);
        assert_eq!(plan(&w, 7, Some(50.0), Duration::from_secs(2)).len(), 100);
    }
}
