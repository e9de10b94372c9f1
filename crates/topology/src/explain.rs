//! Why a Service is routed as it is: the zones' CPU ratios the EndpointSlice controller
//! computes, its allocation per zone, whether Auto keeps hints (or upstream's reason), the hints
//! the Service's slices carry next to the hints [`crate::auto`] gives, and [`crate::predict`]'s
//! figures per mode. Pure: the Service, Nodes and EndpointSlices in, an [`Explanation`] out.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::Serialize;

use crate::auto::{NodeCpu, SliceInfo, TopologyCache, node_cpu};
use crate::predict::{self, Inputs, Mode};

/// One zone in an explanation.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ZoneRow {
    pub zone: String,
    /// Eligible nodes (Ready, not control-plane) and their allocatable millicores.
    pub nodes: usize,
    pub milli_cpu: u64,
    pub ratio: Option<f64>,
    /// Ready endpoints whose pod runs in the zone.
    pub endpoints: usize,
    pub minimum: Option<usize>,
    pub maximum: Option<usize>,
    /// Endpoints the Service's slices hint for the zone now.
    pub hinted_now: usize,
    /// Endpoints upstream's algorithm hints for the zone (Auto).
    pub hinted_auto: Option<usize>,
}

/// What `topology explain` reports.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Explanation {
    pub service: String,
    /// `Auto` (annotation), the `trafficDistribution` value, or `none`.
    pub mode: String,
    pub zones: Vec<ZoneRow>,
    /// `None` when Auto would keep hints; else upstream's reason.
    pub auto_disabled: Option<String>,
    /// In-zone fraction and peak-to-mean per predicted mode.
    pub predictions: BTreeMap<&'static str, (f64, f64)>,
}

fn zone_row<'a>(zones: &'a mut BTreeMap<String, ZoneRow>, z: &str) -> &'a mut ZoneRow {
    zones.entry(z.to_owned()).or_insert_with(|| ZoneRow {
        zone: z.to_owned(),
        nodes: 0,
        milli_cpu: 0,
        ratio: None,
        endpoints: 0,
        minimum: None,
        maximum: None,
        hinted_now: 0,
        hinted_auto: None,
    })
}

/// Explains `ns/name` from what `nodes`, the Service and its `slices` hold (pure).
pub fn explain(service: &Service, nodes: &[Node], slices: &[EndpointSlice]) -> Explanation {
    let ns = service.metadata.namespace.clone().unwrap_or_default();
    let name = service.metadata.name.clone().unwrap_or_default();
    let annotations = service.metadata.annotations.clone().unwrap_or_default();
    let auto_mode = crate::hints_enabled(&annotations);
    let mode = if auto_mode {
        "Auto".to_owned()
    } else {
        service
            .spec
            .as_ref()
            .and_then(|s| s.traffic_distribution.clone())
            .unwrap_or_else(|| "none".to_owned())
    };
    let mut cache = TopologyCache::new();
    cache.set_nodes(nodes);
    let ipv4: Vec<_> = slices
        .iter()
        .filter(|s| s.address_type == "IPv4")
        .cloned()
        .collect();
    let mut zones: BTreeMap<String, ZoneRow> = BTreeMap::new();
    for n in nodes {
        if let NodeCpu::Counted { zone, milli_cpu } = node_cpu(n) {
            let r = zone_row(&mut zones, &zone);
            r.nodes += 1;
            r.milli_cpu += milli_cpu;
        }
    }
    for e in ipv4
        .iter()
        .flat_map(|s| &s.endpoints)
        .filter(|e| crate::endpoint_ready(e))
    {
        let r = zone_row(&mut zones, e.zone.as_deref().unwrap_or("(none)"));
        r.endpoints += 1;
        let hinted: Vec<String> = e
            .hints
            .iter()
            .flat_map(|h| h.for_zones.iter().flatten())
            .map(|z| z.name.clone())
            .collect();
        for z in hinted {
            zone_row(&mut zones, &z).hinted_now += 1;
        }
    }
    let total: usize = zones.values().map(|z| z.endpoints).sum();
    let allocations = cache.allocations(total);
    if let Some(ratios) = cache.ratios() {
        for (z, r) in ratios {
            zone_row(&mut zones, z).ratio = Some(*r);
        }
    }
    if let Ok(a) = &allocations {
        for (z, a) in a {
            let r = zone_row(&mut zones, z);
            r.minimum = Some(a.minimum);
            r.maximum = Some(a.maximum);
        }
    }
    let mut fresh = ipv4.clone();
    for s in &mut fresh {
        for e in &mut s.endpoints {
            e.hints = None;
        }
    }
    let mut si = SliceInfo {
        service_key: format!("{ns}/{name}"),
        address_type: "IPv4".into(),
        to_create: fresh,
        ..SliceInfo::default()
    };
    let events = cache.add_hints(&mut si);
    let auto_disabled = events.iter().find(|e| e.warning).map(|e| e.message.clone());
    if auto_disabled.is_none()
        && let Some(by_zone) = cache
            .hints_of(&format!("{ns}/{name}"))
            .and_then(|h| h.get("IPv4"))
    {
        for (z, n) in by_zone {
            zone_row(&mut zones, z).hinted_auto = Some(*n);
        }
    }
    let inputs = Inputs {
        cpu: zones
            .values()
            .filter(|z| z.milli_cpu > 0)
            .map(|z| (z.zone.clone(), z.milli_cpu))
            .collect(),
        clients: None,
        endpoints: zones
            .values()
            .filter(|z| z.endpoints > 0)
            .map(|z| (z.zone.clone(), z.endpoints))
            .collect(),
    };
    let predictions = Mode::ALL
        .into_iter()
        .map(|m| {
            let p = predict::predict(&inputs, m);
            (m.name(), (p.in_zone, p.peak_to_mean))
        })
        .collect();
    Explanation {
        service: format!("{ns}/{name}"),
        mode,
        zones: zones.into_values().collect(),
        auto_disabled,
        predictions,
    }
}
