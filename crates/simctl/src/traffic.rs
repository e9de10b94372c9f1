//! `simctl traffic`: real connections through a load balancer's zonal frontends, as clients in
//! each zone would make them, and what happened to them: per client zone the in-zone fraction, per
//! backend node its share, the peak-to-mean ratio over backends, and errors.
//!
//! Each connection goes to the frontend of the client's zone; the node that answers names itself
//! and its zone (`node=<name> zone=<zone>`, as kube-sim's node ports do).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use cloud_api::LoadBalancer;
use cloud_client::{Client, LoadBalancerFilter};
use serde::Serialize;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

#[derive(Debug, Clone, clap::Args)]
pub struct TrafficArgs {
    /// The load balancer: an ID (`lb-...`), or the Service it serves (`namespace/name`, or `name` in
    /// `default`).
    pub target: String,

    /// Client zones and their weights, e.g. `zone-a=70,zone-b=15,zone-c=15`; default: every
    /// frontend zone equally.
    #[arg(long, value_delimiter = ',', value_parser = parse_weight)]
    pub from: Vec<(String, u32)>,

    /// Connections to make.
    #[arg(long, default_value_t = 300)]
    pub connections: u32,

    /// Listener port; default the first listener's.
    #[arg(long)]
    pub port: Option<u16>,
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

#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct ZoneResult {
    pub connections: u32,
    pub in_zone: u32,
    pub errors: u32,
    pub in_zone_fraction: f64,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct TrafficResult {
    pub load_balancer: String,
    pub port: u16,
    pub by_client_zone: BTreeMap<String, ZoneResult>,
    /// Connections per backend node (`name (zone)`).
    pub by_backend: BTreeMap<String, u32>,
    pub in_zone_fraction: f64,
    /// The busiest backend's connections over the mean (1.0 is perfectly even).
    pub peak_to_mean: f64,
    pub errors: u32,
}

/// Interleaves the per-zone counts so zones take turns (the load balancer sees a steady mix).
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

/// The load balancer `target` names: an ID (`lb-...`), or the Service it serves (`namespace/name`,
/// or `name` in `default`).
pub async fn find(client: &Client, target: &str) -> anyhow::Result<LoadBalancer> {
    if target.starts_with("lb-") {
        return client
            .get_load_balancer(target)
            .await?
            .with_context(|| format!("no load balancer {target}"));
    }
    let svc = if target.contains('/') {
        target.to_owned()
    } else {
        format!("default/{target}")
    };
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

async fn one(addr: SocketAddr) -> Option<(String, String)> {
    let mut s = tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(3), s.read_to_string(&mut out))
        .await
        .ok()?
        .ok()?;
    let mut node = None;
    let mut zone = None;
    for kv in out.split_whitespace() {
        match kv.split_once('=') {
            Some(("node", v)) => node = Some(v.to_owned()),
            Some(("zone", v)) => zone = Some(v.to_owned()),
            _ => {}
        }
    }
    Some((node?, zone?))
}

pub async fn run(client: &Client, args: &TrafficArgs) -> anyhow::Result<TrafficResult> {
    let lb = find(client, &args.target).await?;
    let port = match args.port {
        Some(p) => p,
        None => lb
            .listeners
            .first()
            .map(|l| l.port)
            .context("the load balancer has no listeners")?,
    };
    let frontends: BTreeMap<String, std::net::Ipv4Addr> = lb
        .frontends
        .iter()
        .map(|f| (f.zone.clone(), f.ip))
        .collect();
    let weights: Vec<(String, u32)> = if args.from.is_empty() {
        frontends.keys().map(|z| (z.clone(), 1)).collect()
    } else {
        args.from.clone()
    };
    for (z, _) in &weights {
        if !frontends.contains_key(z) {
            bail!(
                "the load balancer has no frontend in {z} (it has {:?})",
                frontends.keys().collect::<Vec<_>>()
            );
        }
    }
    let plan = schedule(&sim_common::split_by_weight(args.connections, &weights));
    let mut r = TrafficResult {
        load_balancer: lb.id.to_string(),
        port,
        ..Default::default()
    };
    for zone in plan {
        let z = r.by_client_zone.entry(zone.clone()).or_default();
        z.connections += 1;
        match one(SocketAddr::from((frontends[&zone], port))).await {
            Some((node, node_zone)) => {
                if node_zone == zone {
                    z.in_zone += 1;
                }
                *r.by_backend
                    .entry(format!("{node} ({node_zone})"))
                    .or_default() += 1;
            }
            None => {
                z.errors += 1;
                r.errors += 1;
            }
        }
    }
    let mut total = 0;
    let mut local = 0;
    for z in r.by_client_zone.values_mut() {
        let ok = z.connections - z.errors;
        z.in_zone_fraction = if ok > 0 {
            f64::from(z.in_zone) / f64::from(ok)
        } else {
            0.0
        };
        total += ok;
        local += z.in_zone;
    }
    r.in_zone_fraction = if total > 0 {
        f64::from(local) / f64::from(total)
    } else {
        0.0
    };
    let counts: Vec<u32> = r.by_backend.values().copied().collect();
    if !counts.is_empty() {
        let mean = f64::from(counts.iter().sum::<u32>()) / counts.len() as f64;
        r.peak_to_mean = f64::from(*counts.iter().max().unwrap_or(&0)) / mean;
    }
    Ok(r)
}

/// The human report.
pub fn render(r: &TrafficResult) -> String {
    let mut out = format!("load balancer {} port {}\n\n", r.load_balancer, r.port);
    let rows: Vec<Vec<String>> = r
        .by_client_zone
        .iter()
        .map(|(z, x)| {
            vec![
                z.clone(),
                x.connections.to_string(),
                format!("{:.3}", x.in_zone_fraction),
                x.errors.to_string(),
            ]
        })
        .collect();
    out.push_str(&crate::table::render(
        &["CLIENT ZONE", "CONNECTIONS", "IN-ZONE", "ERRORS"],
        &rows,
    ));
    out.push('\n');
    let rows: Vec<Vec<String>> = r
        .by_backend
        .iter()
        .map(|(b, c)| vec![b.clone(), c.to_string()])
        .collect();
    out.push_str(&crate::table::render(&["BACKEND", "CONNECTIONS"], &rows));
    out.push_str(&format!(
        "\nin-zone fraction {:.3}, peak-to-mean {:.2}, errors {}\n",
        r.in_zone_fraction, r.peak_to_mean, r.errors
    ));
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
}
