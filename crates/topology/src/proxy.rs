//! kube-proxy's choice of endpoints for one Service port on one node (`pkg/proxy/topology.go`,
//! `CategorizeEndpoints`, Kubernetes 1.37, where same-node hints are always honoured), ported.
//!
//! The topology mode comes from the ready endpoints' hints only: same node when every ready
//! endpoint has a node hint and one names this node; else same zone when every one has a zone
//! hint and one names this node's zone; else none. One ready endpoint without a hint turns
//! filtering off everywhere. Cluster endpoints fall back to serving-and-terminating ones;
//! `…TrafficPolicy: Local` uses this node's endpoints and never hints.

use std::collections::BTreeSet;

use k8s_openapi::api::discovery::v1::EndpointSlice;

/// One endpoint as kube-proxy sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ProxyEndpoint {
    /// `ip:port` or any identity; endpoints are told apart by it.
    pub id: String,
    pub node_name: String,
    pub zone_hints: BTreeSet<String>,
    pub node_hints: BTreeSet<String>,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    /// On the node kube-proxy runs on.
    pub local: bool,
}

impl ProxyEndpoint {
    /// The endpoints of `slices` for `node` (ready defaults to true, serving to ready,
    /// terminating to false, as the API documents the unset conditions).
    pub fn from_slices(slices: &[EndpointSlice], node: &str) -> Vec<Self> {
        let mut out = Vec::new();
        for s in slices {
            for e in &s.endpoints {
                let c = e.conditions.clone().unwrap_or_default();
                let ready = c.ready.unwrap_or(true);
                let hints = e.hints.clone().unwrap_or_default();
                let node_name = e.node_name.clone().unwrap_or_default();
                for addr in &e.addresses {
                    out.push(Self {
                        id: addr.clone(),
                        node_name: node_name.clone(),
                        zone_hints: hints
                            .for_zones
                            .iter()
                            .flatten()
                            .map(|z| z.name.clone())
                            .collect(),
                        node_hints: hints
                            .for_nodes
                            .iter()
                            .flatten()
                            .map(|n| n.name.clone())
                            .collect(),
                        ready,
                        serving: c.serving.unwrap_or(ready),
                        terminating: c.terminating.unwrap_or(false),
                        local: !node_name.is_empty() && node_name == node,
                    });
                }
            }
        }
        out
    }
}

/// Which endpoint sets a Service port uses (`externalTrafficPolicy` / `internalTrafficPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policies {
    /// Some traffic goes to cluster endpoints (a policy is `Cluster`).
    pub uses_cluster: bool,
    /// Some traffic goes to local endpoints (a policy is `Local`).
    pub uses_local: bool,
}

/// The topology mode kube-proxy picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    None,
    SameNode,
    SameZone,
}

/// What [`categorize`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Categorized {
    pub cluster: Vec<ProxyEndpoint>,
    pub local: Vec<ProxyEndpoint>,
    pub all_reachable: Vec<ProxyEndpoint>,
    pub has_any: bool,
}

/// Upstream's `topologyModeFromHints`.
pub fn mode_from_hints(endpoints: &[ProxyEndpoint], node: &str, zone: &str) -> Mode {
    let mut any_ready = false;
    let (mut for_node, mut all_node_hints) = (false, true);
    let (mut for_zone, mut all_zone_hints) = (false, true);
    for e in endpoints.iter().filter(|e| e.ready) {
        any_ready = true;
        if e.node_hints.is_empty() {
            all_node_hints = false;
        } else if e.node_hints.contains(node) {
            for_node = true;
        }
        if e.zone_hints.is_empty() {
            all_zone_hints = false;
        } else if e.zone_hints.contains(zone) {
            for_zone = true;
        }
    }
    if !any_ready {
        Mode::None
    } else if all_node_hints && for_node {
        Mode::SameNode
    } else if all_zone_hints && for_zone {
        Mode::SameZone
    } else {
        Mode::None
    }
}

fn available(e: &ProxyEndpoint, mode: Mode, node: &str, zone: &str) -> bool {
    match mode {
        Mode::None => true,
        Mode::SameNode => e.node_hints.contains(node),
        Mode::SameZone => e.zone_hints.contains(zone),
    }
}

/// Upstream's `CategorizeEndpoints` for node `node` in zone `zone` (empty: the node has no
/// zone label).
pub fn categorize(
    endpoints: &[ProxyEndpoint],
    policies: Policies,
    node: &str,
    zone: &str,
) -> Categorized {
    let mut out = Categorized::default();
    if endpoints.is_empty() {
        return out;
    }
    let mut mode = Mode::None;
    let filter = |p: &dyn Fn(&ProxyEndpoint) -> bool| -> Vec<ProxyEndpoint> {
        endpoints.iter().filter(|e| p(e)).cloned().collect()
    };
    if policies.uses_cluster {
        mode = mode_from_hints(endpoints, node, zone);
        out.cluster = filter(&|e| e.ready && available(e, mode, node, zone));
        if out.cluster.is_empty() {
            out.cluster = filter(&|e| e.serving && e.terminating);
        }
        out.has_any = !out.cluster.is_empty();
    }
    if !policies.uses_local {
        out.all_reachable = out.cluster.clone();
        return out;
    }
    let (mut local_ready, mut local_terminating) = (false, false);
    for e in endpoints {
        if e.ready {
            out.has_any = true;
            local_ready |= e.local;
        } else if e.serving && e.terminating {
            out.has_any = true;
            local_terminating |= e.local;
        }
    }
    let mut serving_terminating = false;
    if local_ready {
        out.local = filter(&|e| e.local && e.ready);
    } else if local_terminating {
        serving_terminating = true;
        out.local = filter(&|e| e.local && e.serving && e.terminating);
    }
    if !policies.uses_cluster {
        out.all_reachable = out.local.clone();
        return out;
    }
    if mode == Mode::None && !serving_terminating {
        out.all_reachable = out.cluster.clone();
        return out;
    }
    let union: BTreeSet<ProxyEndpoint> = out.cluster.iter().chain(&out.local).cloned().collect();
    out.all_reachable = union.into_iter().collect();
    out
}
