//! Pure rules of the service controller: which Services it handles, when they need cleanup, which
//! Nodes are backends (KEP-3458: readiness ignored), and when a Service change needs a sync.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use k8s_openapi::api::core::v1::{LoadBalancerStatus, Node, Service};

use crate::names;

fn spec_type(svc: &Service) -> &str {
    svc.spec
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("ClusterIP")
}

/// True for `type: LoadBalancer` Services with no `loadBalancerClass`, or with exactly `class`
/// when the ccm was told to handle one.
pub fn wants_load_balancer(svc: &Service, class: Option<&str>) -> bool {
    spec_type(svc) == "LoadBalancer"
        && svc
            .spec
            .as_ref()
            .and_then(|s| s.load_balancer_class.as_deref())
            == class
}

pub fn has_finalizer(svc: &Service) -> bool {
    svc.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x == names::LB_FINALIZER))
}

/// Has our finalizer and is being deleted or is no longer a LoadBalancer.
pub fn needs_cleanup(svc: &Service) -> bool {
    has_finalizer(svc)
        && (svc.metadata.deletion_timestamp.is_some() || spec_type(svc) != "LoadBalancer")
}

/// What the controller should do with a Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Not ours and nothing to clean up.
    Ignore,
    Ensure,
    Delete,
}

pub fn decide(svc: &Service, class: Option<&str>) -> Decision {
    let svc_class = svc
        .spec
        .as_ref()
        .and_then(|s| s.load_balancer_class.as_deref());
    // A LoadBalancer of another class is another controller's, whatever finalizers it carries:
    // upstream ignores every Service with a class. (A type change away from LoadBalancer clears
    // the class, so those are still cleaned up below.)
    if spec_type(svc) == "LoadBalancer" && svc_class != class {
        return Decision::Ignore;
    }
    let wants = wants_load_balancer(svc, class);
    if needs_cleanup(svc) || (!wants && has_finalizer(svc)) {
        Decision::Delete
    } else if wants {
        Decision::Ensure
    } else {
        Decision::Ignore
    }
}

/// Upstream's backend predicates: not deleting, not excluded by label (ParseBool true or
/// unparsable), not tainted `ToBeDeletedByClusterAutoscaler`. Readiness does not matter.
pub fn is_backend(node: &Node) -> bool {
    if node.metadata.deletion_timestamp.is_some() {
        return false;
    }
    if let Some(v) = node
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(names::LABEL_EXCLUDE_FROM_LB))
    {
        match parse_bool(v) {
            Some(false) => {}
            _ => return false,
        }
    }
    !node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|t| t.iter().any(|t| t.key == names::TAINT_TO_BE_DELETED))
}

/// Go's `strconv.ParseBool`.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// The backend set as upstream compares it: node name to provider ID.
pub fn node_set<'a>(nodes: impl IntoIterator<Item = &'a Node>) -> BTreeMap<String, String> {
    nodes
        .into_iter()
        .filter(|n| is_backend(n))
        .map(|n| {
            (
                n.metadata.name.clone().unwrap_or_default(),
                crate::cloud::provider_id(n).unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// A fingerprint of everything upstream's `needsUpdate` looks at (ports, session affinity,
/// `loadBalancerIP`, external IPs, annotations, UID, external traffic policy, health-check node
/// port, IP families, source ranges) plus what this ccm maps (`trafficDistribution`): equal
/// fingerprints need no cloud call.
pub fn fingerprint(svc: &Service, class: Option<&str>) -> u64 {
    let mut h = DefaultHasher::new();
    wants_load_balancer(svc, class).hash(&mut h);
    svc.metadata.uid.hash(&mut h);
    let ann: BTreeMap<_, _> = svc
        .metadata
        .annotations
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    ann.hash(&mut h);
    if let Some(s) = &svc.spec {
        serde_json::to_string(&s.ports)
            .unwrap_or_default()
            .hash(&mut h);
        s.session_affinity.hash(&mut h);
        serde_json::to_string(&s.session_affinity_config)
            .unwrap_or_default()
            .hash(&mut h);
        s.load_balancer_ip.hash(&mut h);
        s.external_ips.hash(&mut h);
        s.external_traffic_policy.hash(&mut h);
        s.health_check_node_port.hash(&mut h);
        s.ip_families.as_ref().map(Vec::len).hash(&mut h);
        s.load_balancer_source_ranges.hash(&mut h);
        s.traffic_distribution.hash(&mut h);
    }
    h.finish()
}

/// Semantic equality of load-balancer statuses (the API server adds `ipMode: VIP` to IPs, so a
/// missing mode equals VIP).
pub fn status_equal(a: &LoadBalancerStatus, b: &LoadBalancerStatus) -> bool {
    let norm = |s: &LoadBalancerStatus| {
        let mut v = serde_json::to_value(s.ingress.clone().unwrap_or_default()).unwrap_or_default();
        if let Some(items) = v.as_array_mut() {
            for i in items.iter_mut().filter_map(|i| i.as_object_mut()) {
                if i.contains_key("ip") && !i.contains_key("ipMode") {
                    i.insert("ipMode".into(), "VIP".into());
                }
            }
        }
        v
    };
    norm(a) == norm(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(v: serde_json::Value) -> Service {
        serde_json::from_value(v).unwrap()
    }

    fn node(v: serde_json::Value) -> Node {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn decisions() {
        let lb = json!({"metadata": {"name": "s", "uid": "u"}, "spec": {"type": "LoadBalancer"}});
        let table: Vec<(serde_json::Value, Option<&str>, Decision)> = vec![
            (lb.clone(), None, Decision::Ensure),
            (
                json!({"metadata": {"name": "s"}, "spec": {"type": "ClusterIP"}}),
                None,
                Decision::Ignore,
            ),
            (
                json!({"metadata": {"name": "s"}, "spec": {"type": "LoadBalancer", "loadBalancerClass": "other"}}),
                None,
                Decision::Ignore,
            ),
            (
                json!({"metadata": {"name": "s"}, "spec": {"type": "LoadBalancer", "loadBalancerClass": "simcloud.dev/lb"}}),
                Some("simcloud.dev/lb"),
                Decision::Ensure,
            ),
            (
                json!({"metadata": {"name": "s"}, "spec": {"type": "LoadBalancer"}}),
                Some("simcloud.dev/lb"),
                Decision::Ignore,
            ),
            (
                json!({"metadata": {"name": "s", "finalizers": [names::LB_FINALIZER]}, "spec": {"type": "ClusterIP"}}),
                None,
                Decision::Delete,
            ),
            (
                json!({"metadata": {"name": "s", "finalizers": [names::LB_FINALIZER], "deletionTimestamp": "2026-01-01T00:00:00Z"}, "spec": {"type": "LoadBalancer"}}),
                None,
                Decision::Delete,
            ),
            // Another class's Service is never touched, even with the shared finalizer, even
            // while it is deleted (upstream ignores any Service with a class).
            (
                json!({"metadata": {"name": "s", "finalizers": [names::LB_FINALIZER]}, "spec": {"type": "LoadBalancer", "loadBalancerClass": "x"}}),
                None,
                Decision::Ignore,
            ),
            (
                json!({"metadata": {"name": "s", "finalizers": [names::LB_FINALIZER], "deletionTimestamp": "2026-01-01T00:00:00Z"}, "spec": {"type": "LoadBalancer", "loadBalancerClass": "x"}}),
                Some("simcloud.dev/lb"),
                Decision::Ignore,
            ),
            // With a class of our own, class-less LoadBalancers belong to the default provider...
            (
                json!({"metadata": {"name": "s", "finalizers": [names::LB_FINALIZER], "deletionTimestamp": "2026-01-01T00:00:00Z"}, "spec": {"type": "LoadBalancer"}}),
                Some("simcloud.dev/lb"),
                Decision::Ignore,
            ),
            // ... but ours that turned ClusterIP (the API clears the class then) are cleaned up.
            (
                json!({"metadata": {"name": "s", "finalizers": [names::LB_FINALIZER]}, "spec": {"type": "ClusterIP"}}),
                Some("simcloud.dev/lb"),
                Decision::Delete,
            ),
            (
                json!({"metadata": {"name": "s", "finalizers": [names::LB_FINALIZER]}, "spec": {"type": "LoadBalancer"}}),
                None,
                Decision::Ensure,
            ),
        ];
        for (v, class, want) in table {
            assert_eq!(decide(&svc(v.clone()), class), want, "{v}");
        }
    }

    #[test]
    fn backend_predicates() {
        let table = [
            (json!({"metadata": {"name": "n"}}), true),
            (
                json!({"metadata": {"name": "n"}, "status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
                true,
            ),
            (
                json!({"metadata": {"name": "n"}, "spec": {"taints": [{"key": names::TAINT_UNINITIALIZED, "effect": "NoSchedule"}]}}),
                true,
            ),
            (
                json!({"metadata": {"name": "n", "deletionTimestamp": "2026-01-01T00:00:00Z"}}),
                false,
            ),
            (
                json!({"metadata": {"name": "n", "labels": {names::LABEL_EXCLUDE_FROM_LB: "true"}}}),
                false,
            ),
            (
                json!({"metadata": {"name": "n", "labels": {names::LABEL_EXCLUDE_FROM_LB: "false"}}}),
                true,
            ),
            (
                json!({"metadata": {"name": "n", "labels": {names::LABEL_EXCLUDE_FROM_LB: ""}}}),
                false,
            ),
            (
                json!({"metadata": {"name": "n", "labels": {names::LABEL_EXCLUDE_FROM_LB: "yes"}}}),
                false,
            ),
            (
                json!({"metadata": {"name": "n"}, "spec": {"taints": [{"key": names::TAINT_TO_BE_DELETED, "effect": "NoSchedule"}]}}),
                false,
            ),
        ];
        for (v, want) in table {
            assert_eq!(is_backend(&node(v.clone())), want, "{v}");
        }
    }

    #[test]
    fn fingerprint_follows_needs_update() {
        let base = json!({"metadata": {"name": "s", "uid": "u", "labels": {"a": "1"}}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "nodePort": 30080}], "selector": {"app": "x"}}});
        let fp = |v: &serde_json::Value| fingerprint(&svc(v.clone()), None);
        let f0 = fp(&base);
        let same = [
            json!({"metadata": {"labels": {"a": "2"}}}),
            json!({"spec": {"selector": {"app": "y"}}}),
            json!({"status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}}),
        ];
        for patch in same {
            let mut v = base.clone();
            json_patch::merge(&mut v, &patch);
            assert_eq!(fp(&v), f0, "{patch} must not trigger a sync");
        }
        let differs = [
            json!({"metadata": {"annotations": {"x": "y"}}}),
            json!({"spec": {"ports": [{"port": 81, "nodePort": 30080}]}}),
            json!({"spec": {"externalTrafficPolicy": "Local"}}),
            json!({"spec": {"trafficDistribution": "PreferSameZone"}}),
            json!({"spec": {"type": "ClusterIP"}}),
            json!({"metadata": {"uid": "v"}}),
        ];
        for patch in differs {
            let mut v = base.clone();
            json_patch::merge(&mut v, &patch);
            assert_ne!(fp(&v), f0, "{patch} must trigger a sync");
        }
    }

    #[test]
    fn statuses_compare_semantically() {
        let a: LoadBalancerStatus =
            serde_json::from_value(json!({"ingress": [{"ip": "127.64.1.2"}]})).unwrap();
        let b: LoadBalancerStatus =
            serde_json::from_value(json!({"ingress": [{"ip": "127.64.1.2", "ipMode": "VIP"}]}))
                .unwrap();
        let c: LoadBalancerStatus =
            serde_json::from_value(json!({"ingress": [{"ip": "127.64.1.2", "ipMode": "Proxy"}]}))
                .unwrap();
        assert!(status_equal(&a, &b));
        assert!(!status_equal(&a, &c));
        assert!(status_equal(
            &LoadBalancerStatus::default(),
            &serde_json::from_value(json!({"ingress": []})).unwrap()
        ));
    }

    #[test]
    fn node_sets_compare_name_and_provider_id() {
        let a = node(
            json!({"metadata": {"name": "a"}, "spec": {"providerID": "simcloud://zone-a/i-0000000000000001"}}),
        );
        let b = node(json!({"metadata": {"name": "b"}}));
        let x = node(
            json!({"metadata": {"name": "x", "labels": {names::LABEL_EXCLUDE_FROM_LB: "true"}}}),
        );
        let set = node_set([&a, &b, &x]);
        assert_eq!(set.len(), 2);
        assert_eq!(set["a"], "simcloud://zone-a/i-0000000000000001");
        assert_eq!(set["b"], "");
    }
}
