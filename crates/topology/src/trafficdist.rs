//! `spec.trafficDistribution`: the EndpointSlice controller's hints
//! (`k8s.io/endpointslice/trafficdist`, Kubernetes 1.37), ported. `PreferClose` and
//! `PreferSameZone` hint every ready endpoint with a zone to its own zone; `PreferSameNode` also
//! to its own node; anything else removes the hints. No ratios, no thresholds, no events.

use k8s_openapi::api::discovery::v1::{Endpoint, EndpointHints, EndpointSlice, ForNode, ForZone};

use crate::{PREFER_CLOSE, PREFER_SAME_NODE, PREFER_SAME_ZONE, endpoint_ready};

/// The hints `trafficDistribution` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Heuristic {
    /// Unset or not recognised: no hints.
    None,
    /// Own zone, and with `node` own node.
    Close { node: bool },
}

impl Heuristic {
    fn of(traffic_distribution: Option<&str>) -> Self {
        match traffic_distribution {
            Some(PREFER_CLOSE | PREFER_SAME_ZONE) => Self::Close { node: false },
            Some(PREFER_SAME_NODE) => Self::Close { node: true },
            _ => Self::None,
        }
    }

    fn zones(h: &Option<EndpointHints>) -> &[ForZone] {
        h.as_ref()
            .and_then(|h| h.for_zones.as_deref())
            .unwrap_or_default()
    }

    fn nodes(h: &Option<EndpointHints>) -> &[ForNode] {
        h.as_ref()
            .and_then(|h| h.for_nodes.as_deref())
            .unwrap_or_default()
    }

    fn needs_update(self, slice: &EndpointSlice) -> bool {
        match self {
            Self::None => slice.endpoints.iter().any(|e| e.hints.is_some()),
            Self::Close { node } => slice
                .endpoints
                .iter()
                .filter(|e| endpoint_ready(e))
                .any(|e| {
                    let zones = Self::zones(&e.hints);
                    let zone_wrong = match &e.zone {
                        Some(z) => zones.len() != 1 || zones[0].name != *z,
                        None => !zones.is_empty(),
                    };
                    let nodes = Self::nodes(&e.hints);
                    let node_wrong = match (&e.node_name, node) {
                        (Some(n), true) => nodes.len() != 1 || nodes[0].name != *n,
                        _ => !nodes.is_empty(),
                    };
                    zone_wrong || node_wrong
                }),
        }
    }

    fn update(self, slice: &mut EndpointSlice) {
        for e in &mut slice.endpoints {
            match self {
                Self::None => e.hints = None,
                Self::Close { node } => {
                    if !endpoint_ready(e) {
                        continue;
                    }
                    e.hints = hints_for(e, node);
                }
            }
        }
    }
}

fn hints_for(e: &Endpoint, node: bool) -> Option<EndpointHints> {
    let for_zones = e.zone.as_ref().map(|z| vec![ForZone { name: z.clone() }]);
    let for_nodes = e
        .node_name
        .as_ref()
        .filter(|_| node)
        .map(|n| vec![ForNode { name: n.clone() }]);
    (for_zones.is_some() || for_nodes.is_some()).then_some(EndpointHints {
        for_zones,
        for_nodes,
    })
}

/// Upstream's `ReconcileHints`: unchanged slices whose hints are wrong move to the updates;
/// created and updated slices get the hints.
pub fn reconcile_hints(
    traffic_distribution: Option<&str>,
    to_create: &mut [EndpointSlice],
    to_update: &mut Vec<EndpointSlice>,
    unchanged: &mut Vec<EndpointSlice>,
) {
    let h = Heuristic::of(traffic_distribution);
    let (stale, kept): (Vec<_>, Vec<_>) = std::mem::take(unchanged)
        .into_iter()
        .partition(|s| h.needs_update(s));
    *unchanged = kept;
    to_update.extend(stale);
    for s in to_create.iter_mut().chain(to_update.iter_mut()) {
        h.update(s);
    }
}
