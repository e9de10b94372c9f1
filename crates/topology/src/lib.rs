//! Topology-aware routing as Kubernetes 1.37 does it, ported without I/O so that the testbed can
//! run it, predict with it and check the real controllers against it:
//!
//! - [`auto`]: the EndpointSlice controller's `topology-mode: Auto` hints
//!   (`k8s.io/endpointslice/topologycache`): zone CPU ratios, allocations under the 20% overload
//!   threshold, keeping valid hints, same-zone hints, redistribution, the events.
//! - [`trafficdist`]: its `spec.trafficDistribution` hints (`k8s.io/endpointslice/trafficdist`).
//! - [`proxy`]: kube-proxy's choice of endpoints (`pkg/proxy/topology.go`, CategorizeEndpoints).
//! - [`explain`]: one Service's zones, allocation and hints, now and as upstream would set them.
//! - [`predict`]: what each mode does with one Service (in-zone fraction, peak-to-mean), offline.
//!
//! Where Go iterates a map (random order), this port iterates zones in sorted order, so its
//! answers are deterministic and one of those Go could give.
//!
//! Objects are k8s-openapi's `Node` and `EndpointSlice`, so the same code runs on what kube-sim
//! and a real API server hold.

pub mod auto;
pub mod explain;
pub mod predict;
pub mod proxy;
pub mod trafficdist;

use k8s_openapi::api::discovery::v1::Endpoint;

/// The Node label naming its zone.
pub const LABEL_ZONE: &str = "topology.kubernetes.io/zone";
/// Service annotation enabling Auto hints (1.27 on).
pub const ANNOTATION_TOPOLOGY_MODE: &str = "service.kubernetes.io/topology-mode";
/// The deprecated annotation; read too, and it wins when both are set.
pub const ANNOTATION_TOPOLOGY_AWARE_HINTS: &str = "service.kubernetes.io/topology-aware-hints";

/// `spec.trafficDistribution` values.
pub const PREFER_CLOSE: &str = "PreferClose";
pub const PREFER_SAME_ZONE: &str = "PreferSameZone";
pub const PREFER_SAME_NODE: &str = "PreferSameNode";

/// Whether a Service's annotations ask for Auto hints (upstream's `hintsEnabled`: the deprecated
/// annotation wins when both are set; `Auto` or `auto`).
pub fn hints_enabled(annotations: &std::collections::BTreeMap<String, String>) -> bool {
    annotations
        .get(ANNOTATION_TOPOLOGY_AWARE_HINTS)
        .or_else(|| annotations.get(ANNOTATION_TOPOLOGY_MODE))
        .is_some_and(|v| v == "Auto" || v == "auto")
}

/// Whether an endpoint counts as ready (the condition is set and true).
pub fn endpoint_ready(e: &Endpoint) -> bool {
    e.conditions.as_ref().and_then(|c| c.ready) == Some(true)
}
