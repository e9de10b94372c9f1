//! What a run measured: per-zone results, cross-zone hops, skew over the endpoints, cost, and
//! the same per time window. Pure.

use super::*;

/// In-zone figures of one client zone.
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct ZoneResult {
    pub requests: u32,
    pub in_zone: u32,
    pub errors: u32,
    pub in_zone_fraction: f64,
}

/// Cross-zone requests per hop.
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct Hops {
    pub client_to_lb: u32,
    pub lb_to_node: u32,
    pub node_to_pod: u32,
}

/// The figures of a set of samples.
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct Summary {
    pub requests: u32,
    pub errors: u32,
    pub in_zone_fraction: f64,
    pub cross_zone_fraction: f64,
    pub by_client_zone: BTreeMap<String, ZoneResult>,
    pub cross_zone_hops: Hops,
    /// Requests per node the traffic went through (`name (zone)`).
    pub by_node: BTreeMap<String, u32>,
    /// Requests per endpoint (`pod (zone)`), zero for endpoints that got none.
    pub by_endpoint: BTreeMap<String, u32>,
    /// The busiest endpoint's load over the mean (1.0 is perfectly even).
    pub peak_to_mean: f64,
    /// peak-to-mean - 1 (KEP-2433's overload).
    pub overload: f64,
    /// Standard deviation over mean of the endpoint loads.
    pub coefficient_of_variation: f64,
    pub cross_zone_bytes: u64,
    pub cost: f64,
}

pub(super) fn ratio(a: u32, b: u32) -> f64 {
    if b == 0 {
        0.0
    } else {
        f64::from(a) / f64::from(b)
    }
}

/// Summarises `samples` (pure). `endpoints` are the Service's endpoints as `pod (zone)`, so
/// that those that got nothing count; served Pods not among them are added. With no Pod
/// answering at all, the nodes are the endpoints (a load balancer without Pods behind it).
pub fn summarize(samples: &[Sample], endpoints: &[String], price_per_gb: f64) -> Summary {
    let mut r = Summary::default();
    let any_pod = samples.iter().any(|s| s.pod.is_some());
    if any_pod {
        for e in endpoints {
            r.by_endpoint.insert(e.clone(), 0);
        }
    }
    let mut bytes = 0u64;
    for s in samples {
        r.requests += 1;
        let z = r.by_client_zone.entry(s.client_zone.clone()).or_default();
        z.requests += 1;
        if s.error.is_some() {
            z.errors += 1;
            r.errors += 1;
            continue;
        }
        if s.served_zone() == Some(s.client_zone.as_str()) {
            z.in_zone += 1;
        }
        let lb = s.lb_zone.as_deref();
        let node_zone = s.node.as_ref().map(|n| n.1.as_str());
        let mut crossed = false;
        if lb.is_some_and(|l| l != s.client_zone) {
            r.cross_zone_hops.client_to_lb += 1;
            crossed = true;
        }
        if let (Some(l), Some(n)) = (lb, node_zone)
            && l != n
        {
            r.cross_zone_hops.lb_to_node += 1;
            crossed = true;
        }
        if let (Some(n), Some(p)) = (node_zone, s.pod.as_ref())
            && n != p.2
        {
            r.cross_zone_hops.node_to_pod += 1;
            crossed = true;
        }
        if crossed {
            bytes += s.bytes as u64;
        }
        if let Some((n, nz)) = &s.node {
            *r.by_node.entry(format!("{n} ({nz})")).or_default() += 1;
        }
        let endpoint = match (&s.pod, &s.node) {
            (Some((p, _, pz)), _) => Some(format!("{p} ({pz})")),
            (None, Some((n, nz))) if !any_pod => Some(format!("{n} ({nz})")),
            _ => None,
        };
        if let Some(e) = endpoint {
            *r.by_endpoint.entry(e).or_default() += 1;
        }
    }
    let (mut ok, mut local) = (0, 0);
    for z in r.by_client_zone.values_mut() {
        z.in_zone_fraction = ratio(z.in_zone, z.requests - z.errors);
        ok += z.requests - z.errors;
        local += z.in_zone;
    }
    r.in_zone_fraction = ratio(local, ok);
    r.cross_zone_fraction = if ok == 0 {
        0.0
    } else {
        1.0 - r.in_zone_fraction
    };
    let loads: Vec<f64> = r.by_endpoint.values().map(|c| f64::from(*c)).collect();
    if !loads.is_empty() {
        let mean = loads.iter().sum::<f64>() / loads.len() as f64;
        if mean > 0.0 {
            let max = loads.iter().copied().fold(0.0, f64::max);
            r.peak_to_mean = max / mean;
            r.overload = r.peak_to_mean - 1.0;
            let var = loads.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / loads.len() as f64;
            r.coefficient_of_variation = var.sqrt() / mean;
        }
    }
    r.cross_zone_bytes = bytes;
    r.cost = bytes as f64 / 1e9 * price_per_gb;
    r
}

/// One time window's summary.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Window {
    pub start: f64,
    pub end: f64,
    #[serde(flatten)]
    pub summary: Summary,
}

/// Summaries per window of `window` seconds (pure).
pub fn windows(samples: &[Sample], window: f64, endpoints: &[String], price: f64) -> Vec<Window> {
    let last = samples.iter().map(|s| s.at).fold(0.0, f64::max);
    let w = if window > 0.0 { window } else { last.max(1.0) };
    let n = (last / w).floor() as usize + 1;
    (0..n)
        .map(|i| {
            let (start, end) = (i as f64 * w, (i + 1) as f64 * w);
            let in_window: Vec<Sample> = samples
                .iter()
                .filter(|s| s.at >= start && s.at < end)
                .cloned()
                .collect();
            Window {
                start,
                end,
                summary: summarize(&in_window, endpoints, price),
            }
        })
        .filter(|w| w.summary.requests > 0)
        .collect()
}
