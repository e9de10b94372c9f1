//! `simctl topology`: what Kubernetes' topology-aware routing modes would do, offline, from
//! `crates/topology` (the upstream algorithms, ported).

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use clap::{Args, Subcommand};
use serde::Serialize;
use topology::predict::{self, Inputs, Mode};

#[derive(Debug, Subcommand)]
pub enum TopologyCmd {
    /// One Service on a running cluster (the sandbox, or any kubeconfig): the zones' CPU ratios
    /// the EndpointSlice controller computes, its allocation per zone, whether Auto keeps hints
    /// (and upstream's reason if not), the hints the slices carry next to the hints upstream's
    /// algorithm gives, and the predicted in-zone fraction and peak-to-mean of each mode.
    Explain(ExplainArgs),
    /// For each endpoint count, spread evenly over the zones: whether Auto keeps its hints (and
    /// why not), the hints per zone, and the predicted in-zone fraction and peak-to-mean load of
    /// no hints, Auto and PreferSameZone.
    Sweep(SweepArgs),
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The Service, `NAME` or `NAMESPACE/NAME`.
    pub service: String,

    /// Kubeconfig of the cluster [default: $KUBECONFIG, else ~/.kube/config; the sandbox writes
    /// .simcloud/kubeconfig].
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<std::path::PathBuf>,
}

/// Reads the Service, the Nodes and the Service's EndpointSlices and explains them.
pub async fn explain(args: &ExplainArgs) -> anyhow::Result<topology::explain::Explanation> {
    use anyhow::Context as _;
    use k8s_openapi::api::core::v1::{Node, Service};
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use kube::api::{Api, ListParams};
    let client = crate::kube_client(args.kubeconfig.as_deref()).await?;
    let key = crate::traffic::service_key(&args.service);
    let (ns, name) = key.split_once('/').expect("namespace/name");
    let svc = Api::<Service>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .with_context(|| format!("cannot read Service {ns}/{name}"))?;
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .context("cannot list Nodes")?
        .items;
    let slices = Api::<EndpointSlice>::namespaced(client, ns)
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={name}")))
        .await
        .context("cannot list the Service's EndpointSlices")?
        .items;
    Ok(topology::explain::explain(&svc, &nodes, &slices))
}

/// An explanation as text.
pub fn explain_text(e: &topology::explain::Explanation) -> String {
    let opt = |v: Option<usize>| v.map_or("-".to_owned(), |n| n.to_string());
    let rows: Vec<Vec<String>> = e
        .zones
        .iter()
        .map(|z| {
            vec![
                z.zone.clone(),
                z.nodes.to_string(),
                format!("{}m", z.milli_cpu),
                z.ratio.map_or("-".into(), |r| format!("{r:.3}")),
                z.endpoints.to_string(),
                opt(z.minimum),
                opt(z.maximum),
                z.hinted_now.to_string(),
                opt(z.hinted_auto),
            ]
        })
        .collect();
    let mut out = format!("Service {} (routing: {})\n\n", e.service, e.mode);
    out.push_str(&crate::table::render(
        &[
            "ZONE",
            "NODES",
            "CPU",
            "RATIO",
            "ENDPOINTS",
            "MIN",
            "MAX",
            "HINTED NOW",
            "HINTED BY AUTO",
        ],
        &rows,
    ));
    out.push('\n');
    match &e.auto_disabled {
        None => out.push_str("Auto: keeps hints\n"),
        Some(r) => out.push_str(&format!("Auto: removes hints: {r}\n")),
    }
    out.push_str("\nPredicted (clients where the CPU is):\n");
    let rows: Vec<Vec<String>> = e
        .predictions
        .iter()
        .map(|(m, (in_zone, peak))| {
            vec![
                (*m).to_owned(),
                format!("{:.0}%", in_zone * 100.0),
                format!("{peak:.2}"),
            ]
        })
        .collect();
    out.push_str(&crate::table::render(
        &["MODE", "IN-ZONE", "PEAK/MEAN"],
        &rows,
    ));
    out
}

#[derive(Debug, Args)]
pub struct SweepArgs {
    /// Allocatable CPU per zone, in cores or millicores: `zone-a=20,zone-b=16,zone-c=14500m`.
    #[arg(long, value_parser = parse_cpu)]
    pub cpu: ZoneCpu,

    /// Ready endpoints: `N` or `FROM..TO`.
    #[arg(long, default_value = "1..30", value_parser = parse_range)]
    pub endpoints: RangeInclusive<usize>,

    /// Share of the clients per zone, e.g. `zone-a=70,zone-b=15,zone-c=15` [default: the CPU
    /// shares, which is what Auto assumes].
    #[arg(long, value_parser = parse_shares)]
    pub clients: Option<ZoneShares>,
}

/// CPU per zone in millicores (a newtype so clap takes the whole list as one value).
#[derive(Debug, Clone)]
pub struct ZoneCpu(pub BTreeMap<String, u64>);

/// Client shares per zone.
#[derive(Debug, Clone)]
pub struct ZoneShares(pub BTreeMap<String, f64>);

fn pairs(s: &str) -> Result<Vec<(String, String)>, String> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            p.split_once('=')
                .map(|(z, v)| (z.trim().to_owned(), v.trim().to_owned()))
                .filter(|(z, v)| !z.is_empty() && !v.is_empty())
                .ok_or_else(|| format!("{p:?} is not ZONE=VALUE"))
        })
        .collect()
}

fn parse_cpu(s: &str) -> Result<ZoneCpu, String> {
    let mut out = BTreeMap::new();
    for (zone, v) in pairs(s)? {
        let m = topology::auto::milli_cpu(&v)
            .filter(|m| *m > 0)
            .ok_or_else(|| {
                format!("{zone}: {v:?} is not a CPU quantity above zero (e.g. 4, 1500m)")
            })?;
        out.insert(zone, m);
    }
    if out.len() < 2 {
        return Err("give at least two zones (topology hints need two)".into());
    }
    Ok(ZoneCpu(out))
}

fn parse_shares(s: &str) -> Result<ZoneShares, String> {
    let mut out = BTreeMap::new();
    for (zone, v) in pairs(s)? {
        let share: f64 = v
            .parse()
            .ok()
            .filter(|x: &f64| x.is_finite() && *x >= 0.0)
            .ok_or_else(|| format!("{zone}: {v:?} is not a non-negative number"))?;
        out.insert(zone, share);
    }
    if out.values().sum::<f64>() <= 0.0 {
        return Err("the client shares add up to zero".into());
    }
    Ok(ZoneShares(out))
}

fn parse_range(s: &str) -> Result<RangeInclusive<usize>, String> {
    let num = |x: &str| {
        x.trim()
            .parse::<usize>()
            .map_err(|_| format!("{x:?} is not a count"))
    };
    let r = match s.split_once("..") {
        Some((a, b)) => num(a)?..=num(b.trim_start_matches('='))?,
        None => {
            let n = num(s)?;
            n..=n
        }
    };
    if r.is_empty() || *r.start() == 0 {
        return Err(format!("{s:?}: give N or FROM..TO with 1 <= FROM <= TO"));
    }
    Ok(r)
}

/// One row of the sweep.
#[derive(Debug, Clone, Serialize)]
pub struct SweepRow {
    pub endpoints: usize,
    /// Endpoints per zone.
    pub spread: BTreeMap<String, usize>,
    /// `None` when Auto keeps hints; else upstream's reason.
    pub auto_disabled: Option<String>,
    /// Endpoints hinted for each zone (Auto).
    pub auto_hints: BTreeMap<String, usize>,
    /// In-zone fraction per mode (`none`, `Auto`, `PreferSameZone`).
    pub in_zone: BTreeMap<&'static str, f64>,
    /// Peak-to-mean endpoint load per mode.
    pub peak_to_mean: BTreeMap<&'static str, f64>,
}

/// The sweep's rows (pure).
pub fn sweep(args: &SweepArgs) -> Vec<SweepRow> {
    let zones: Vec<String> = args.cpu.0.keys().cloned().collect();
    args.endpoints
        .clone()
        .map(|n| {
            let inputs = Inputs {
                cpu: args.cpu.0.clone(),
                clients: args.clients.as_ref().map(|c| c.0.clone()),
                endpoints: predict::spread_evenly(&zones, n),
            };
            let mut row = SweepRow {
                endpoints: n,
                spread: inputs.endpoints.clone(),
                auto_disabled: None,
                auto_hints: BTreeMap::new(),
                in_zone: BTreeMap::new(),
                peak_to_mean: BTreeMap::new(),
            };
            for mode in Mode::ALL {
                let p = predict::predict(&inputs, mode);
                if mode == Mode::Auto {
                    row.auto_disabled = p.disabled.clone();
                    if p.disabled.is_none() {
                        row.auto_hints = p.serving.clone();
                    }
                }
                row.in_zone.insert(mode.name(), p.in_zone);
                row.peak_to_mean.insert(mode.name(), p.peak_to_mean);
            }
            row
        })
        .collect()
}

/// Short form of upstream's reason for a table cell.
fn short_reason(message: &str) -> &'static str {
    if message.starts_with(topology::auto::INSUFFICIENT_NUMBER_OF_ENDPOINTS) {
        "off: too few endpoints"
    } else if message.starts_with(topology::auto::MIN_ALLOCATION_EXCEEDS_OVERLOAD_THRESHOLD) {
        "off: overload threshold"
    } else if message.starts_with(topology::auto::INSUFFICIENT_NODE_INFO) {
        "off: node information"
    } else {
        "off"
    }
}

/// The sweep as a terminal table.
pub fn sweep_table(rows: &[SweepRow]) -> String {
    let counts = |m: &BTreeMap<String, usize>| {
        m.values()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join("/")
    };
    let pct = |x: f64| format!("{:.0}%", x * 100.0);
    let ratio = |x: f64| format!("{x:.2}");
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let m = |k: &str| (r.in_zone[k], r.peak_to_mean[k]);
            let (none, auto, same) = (m("none"), m("Auto"), m("PreferSameZone"));
            vec![
                r.endpoints.to_string(),
                counts(&r.spread),
                r.auto_disabled
                    .as_deref()
                    .map_or("on", short_reason)
                    .to_owned(),
                if r.auto_hints.is_empty() {
                    "-".into()
                } else {
                    counts(&r.auto_hints)
                },
                pct(none.0),
                pct(auto.0),
                pct(same.0),
                ratio(none.1),
                ratio(auto.1),
                ratio(same.1),
            ]
        })
        .collect();
    let zones = rows
        .first()
        .map(|r| r.spread.keys().cloned().collect::<Vec<_>>().join("/"))
        .unwrap_or_default();
    let spread = format!("SPREAD {zones}");
    render_with(&spread, &body)
}

fn render_with(spread: &str, body: &[Vec<String>]) -> String {
    crate::table::render(
        &[
            "N",
            spread,
            "AUTO",
            "HINTS",
            "IN-ZONE none",
            "Auto",
            "SameZone",
            "PEAK/MEAN none",
            "Auto",
            "SameZone",
        ],
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        assert_eq!(parse_cpu("a=20,b=1500m").unwrap().0["b"], 1500);
        assert!(parse_cpu("a=20").unwrap_err().contains("two zones"));
        assert!(parse_cpu("a=x,b=1").unwrap_err().contains("\"x\""));
        assert!(parse_cpu("a20,b=1").unwrap_err().contains("ZONE=VALUE"));
        assert_eq!(parse_range("1..30").unwrap(), 1..=30);
        assert_eq!(parse_range("7").unwrap(), 7..=7);
        assert!(parse_range("5..2").is_err());
        assert!(parse_range("0..2").is_err());
        assert!(parse_shares("a=0,b=0").is_err());
    }

    /// topology.md §1.4's table: 3 equal zones, hints at 3, 6, 7, 9, 10 and 12 up, and the
    /// reasons upstream gives below and between.
    #[test]
    fn three_equal_zones() {
        let args = SweepArgs {
            cpu: parse_cpu("zone-a=4,zone-b=4,zone-c=4").unwrap(),
            endpoints: 1..=13,
            clients: None,
        };
        let rows = sweep(&args);
        let on: Vec<usize> = rows
            .iter()
            .filter(|r| r.auto_disabled.is_none())
            .map(|r| r.endpoints)
            .collect();
        assert_eq!(on, [3, 6, 7, 9, 10, 12, 13]);
        assert!(
            rows[0]
                .auto_disabled
                .as_deref()
                .unwrap()
                .starts_with("Insufficient number")
        );
        assert!(
            rows[10]
                .auto_disabled
                .as_deref()
                .unwrap()
                .starts_with("Unable to allocate")
        );
        // Evenly spread endpoints with even clients: every mode is fully local and even at 3.
        assert!((rows[2].in_zone["PreferSameZone"] - 1.0).abs() < 1e-9);
        assert!((rows[2].peak_to_mean["Auto"] - 1.0).abs() < 1e-9);
        let table = sweep_table(&rows);
        assert!(
            table
                .lines()
                .nth(11)
                .unwrap()
                .contains("off: overload threshold"),
            "{table}"
        );
    }
}
