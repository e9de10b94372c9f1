//! What each routing mode would do with one Service, offline: where clients' requests go and
//! how evenly the endpoints are loaded, from the zones' CPU (the Auto algorithm's inputs), where
//! the clients are, and how many endpoints each zone has.
//!
//! Model (topology.md §1.7): requests leave a zone in proportion to its client share and spread
//! evenly over the endpoints kube-proxy picks in that zone: all of them without hints, those
//! hinted for the zone with Auto (the real algorithm in [`crate::auto`] makes the hints), the
//! zone's own with PreferSameZone (all of them for a zone with none, kube-proxy's fallback).
//! Every endpoint is assumed to have the same capacity.

use std::collections::BTreeMap;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;

use crate::auto::{SliceInfo, TopologyCache};

/// A routing mode to predict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No hints: every endpoint for every client.
    None,
    /// `service.kubernetes.io/topology-mode: Auto`.
    Auto,
    /// `trafficDistribution: PreferSameZone` (and `PreferClose`). `PreferSameNode` has the same
    /// zone-level outcome; which node a request stays on is not modelled here.
    PreferSameZone,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::None, Mode::Auto, Mode::PreferSameZone];

    pub fn name(self) -> &'static str {
        match self {
            Mode::None => "none",
            Mode::Auto => "Auto",
            Mode::PreferSameZone => "PreferSameZone",
        }
    }
}

/// The outcome of one mode.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Fraction of requests served in the client's zone.
    pub in_zone: f64,
    /// The busiest endpoint's load over the mean load (1.0 is perfectly even).
    pub peak_to_mean: f64,
    /// Endpoints hinted for each zone (Auto), or serving each zone's clients (the others).
    pub serving: BTreeMap<String, usize>,
    /// Why Auto removed its hints, when it did (upstream's event message).
    pub disabled: Option<String>,
}

/// Inputs of a prediction.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// Allocatable millicores per zone (what Auto reads).
    pub cpu: BTreeMap<String, u64>,
    /// Share of the clients per zone; `None`: the CPU shares (what Auto assumes).
    pub clients: Option<BTreeMap<String, f64>>,
    /// Ready endpoints per zone.
    pub endpoints: BTreeMap<String, usize>,
}

impl Inputs {
    fn client_shares(&self) -> BTreeMap<String, f64> {
        let raw: BTreeMap<String, f64> = match &self.clients {
            Some(c) => c.clone(),
            None => self
                .cpu
                .iter()
                .map(|(z, c)| (z.clone(), *c as f64))
                .collect(),
        };
        let total: f64 = raw.values().sum();
        raw.into_iter()
            .map(|(z, v)| (z, if total > 0.0 { v / total } else { 0.0 }))
            .collect()
    }

    /// The zone ratios Auto computes from the CPU.
    pub fn ratios(&self) -> Option<BTreeMap<String, f64>> {
        let total: u64 = self.cpu.values().sum();
        (total > 0 && self.cpu.len() >= 2).then(|| {
            self.cpu
                .iter()
                .map(|(z, c)| (z.clone(), *c as f64 / total as f64))
                .collect()
        })
    }
}

/// Spreads `n` endpoints over `zones` as evenly as a zone topology-spread constraint does
/// (the first zones in order get one more).
pub fn spread_evenly(zones: &[String], n: usize) -> BTreeMap<String, usize> {
    let k = zones.len().max(1);
    zones
        .iter()
        .enumerate()
        .map(|(i, z)| (z.clone(), n / k + usize::from(i < n % k)))
        .collect()
}

/// Each endpoint as (its zone, the zone it serves: `None` for every zone).
fn endpoints_for(inputs: &Inputs, mode: Mode) -> (Vec<(String, Option<String>)>, Option<String>) {
    let all: Vec<(String, Option<String>)> = inputs
        .endpoints
        .iter()
        .flat_map(|(z, n)| std::iter::repeat_n((z.clone(), None), *n))
        .collect();
    match mode {
        Mode::None => (all, None),
        Mode::PreferSameZone => (
            all.into_iter().map(|(z, _)| (z.clone(), Some(z))).collect(),
            None,
        ),
        Mode::Auto => {
            let mut cache = TopologyCache::new();
            cache.set_ratios(inputs.ratios());
            let endpoints: Vec<serde_json::Value> = all
                .iter()
                .enumerate()
                .map(|(i, (z, _))| {
                    json!({"addresses": [format!("10.0.{}.{}", i / 250, i % 250)], "zone": z,
                        "conditions": {"ready": true}})
                })
                .collect();
            let slice: EndpointSlice = serde_json::from_value(
                json!({"metadata": {}, "addressType": "IPv4", "endpoints": endpoints}),
            )
            .expect("a valid EndpointSlice");
            let mut si = SliceInfo {
                service_key: "predict".into(),
                address_type: "IPv4".into(),
                to_create: vec![slice],
                ..SliceInfo::default()
            };
            let events = cache.add_hints(&mut si);
            let disabled = events.into_iter().find(|e| e.warning).map(|e| e.message);
            let hinted = si.to_create[0]
                .endpoints
                .iter()
                .map(|e| {
                    let zone = e.zone.clone().unwrap_or_default();
                    let hint = e
                        .hints
                        .as_ref()
                        .and_then(|h| h.for_zones.as_ref())
                        .and_then(|z| z.first())
                        .map(|z| z.name.clone());
                    (zone, hint)
                })
                .collect();
            (hinted, disabled)
        }
    }
}

/// Predicts `mode` for `inputs`.
pub fn predict(inputs: &Inputs, mode: Mode) -> Prediction {
    let (endpoints, disabled) = endpoints_for(inputs, mode);
    let clients = inputs.client_shares();
    let n = endpoints.len();
    let hinted = endpoints.iter().any(|(_, h)| h.is_some());
    let mut load = vec![0.0; n];
    let mut in_zone = 0.0;
    let mut serving = BTreeMap::new();
    for (zone, share) in &clients {
        // kube-proxy in this zone: the endpoints hinted for it, else (no hints at all, or
        // none for this zone) every endpoint.
        let mut picked: Vec<usize> = if hinted {
            (0..n)
                .filter(|i| endpoints[*i].1.as_deref() == Some(zone.as_str()))
                .collect()
        } else {
            Vec::new()
        };
        if picked.is_empty() {
            picked = (0..n).collect();
        }
        serving.insert(zone.clone(), picked.len());
        if picked.is_empty() {
            continue;
        }
        let each = share / picked.len() as f64;
        for i in &picked {
            load[*i] += each;
            if endpoints[*i].0 == *zone {
                in_zone += each;
            }
        }
    }
    let mean = if n == 0 { 0.0 } else { 1.0 / n as f64 };
    let peak = load.iter().copied().fold(0.0, f64::max);
    Prediction {
        in_zone,
        peak_to_mean: if mean > 0.0 { peak / mean } else { 0.0 },
        serving,
        disabled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kep() -> Inputs {
        let z = |v: &[(&str, u64)]| v.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect();
        let e = |v: &[(&str, usize)]| v.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect();
        Inputs {
            cpu: z(&[("a", 20_000), ("b", 16_000), ("c", 14_000)]),
            clients: None,
            endpoints: e(&[("a", 2), ("b", 4), ("c", 4)]),
        }
    }

    /// topology.md §1.7's table: none 0.32 in zone (0.68 cross), peak 1.00; Auto 0.80 in zone,
    /// peak 1.067; PreferSameZone 1.00 in zone, peak 2.00.
    #[test]
    fn the_keps_cpu_example_in_three_modes() {
        let none = predict(&kep(), Mode::None);
        assert!((none.in_zone - 0.32).abs() < 1e-9, "{none:?}");
        assert!((none.peak_to_mean - 1.0).abs() < 1e-9);
        let auto = predict(&kep(), Mode::Auto);
        assert!((auto.in_zone - 0.80).abs() < 1e-9, "{auto:?}");
        assert!((auto.peak_to_mean - 1.0667).abs() < 1e-3, "{auto:?}");
        assert_eq!(auto.serving["a"], 4);
        assert_eq!(auto.disabled, None);
        let same = predict(&kep(), Mode::PreferSameZone);
        assert!((same.in_zone - 1.0).abs() < 1e-9);
        assert!((same.peak_to_mean - 2.0).abs() < 1e-9, "{same:?}");
    }

    #[test]
    fn infeasible_auto_is_no_hints_with_the_reason() {
        let mut i = kep();
        i.endpoints = spread_evenly(&["a".into(), "b".into(), "c".into()], 4);
        let auto = predict(&i, Mode::Auto);
        assert!(
            auto.disabled
                .as_deref()
                .unwrap()
                .starts_with("Unable to allocate"),
            "{auto:?}"
        );
        assert_eq!(
            auto,
            Prediction {
                disabled: auto.disabled.clone(),
                ..predict(&i, Mode::None)
            }
        );
        // A zone without endpoints falls back to all of them under PreferSameZone.
        i.endpoints = [("a".to_owned(), 3), ("b".to_owned(), 3)].into();
        let same = predict(&i, Mode::PreferSameZone);
        assert_eq!(same.serving["c"], 6);
        assert!((same.in_zone - (0.40 + 0.32)).abs() < 1e-9, "{same:?}");
    }

    #[test]
    fn even_spread() {
        let zones: Vec<String> = ["a", "b", "c"].iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(
            spread_evenly(&zones, 7).into_values().collect::<Vec<_>>(),
            [3, 2, 2]
        );
    }
}
