//! Per-kind behaviour: name rules, defaulting and allocation (Service), immutable fields (Node,
//! Service), validation (Lease, events), and the two Event API forms sharing one storage.

use axum::body::Bytes;
use serde_json::{Map, Value, json};

use crate::resources::{NameRule, ResourceDef};
use crate::status::StatusError;

mod events;
mod services;
mod validation;

pub use events::*;
pub use services::*;
pub use validation::*;

pub fn validate_name(def: &ResourceDef, name: &str) -> Result<(), String> {
    let label = |l: &str, first_alpha: bool| -> bool {
        let b = l.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
            && (!first_alpha || b[0].is_ascii_lowercase())
    };
    let ok = match def.name_rule {
        NameRule::Subdomain => name.len() <= 253 && name.split('.').all(|l| label(l, false)),
        NameRule::Label1123 => label(name, false),
        NameRule::Label1035 => label(name, true),
        NameRule::PathSegment => {
            !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '%'])
        }
    };
    if ok {
        Ok(())
    } else {
        Err(match def.name_rule {
            NameRule::Subdomain => "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
            NameRule::Label1123 => "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
            NameRule::Label1035 => "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character",
            NameRule::PathSegment => "may not be '.' or '..', and may not contain '/' or '%'",
        }
        .to_owned())
    }
}

pub(super) fn str_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}

pub(super) fn obj_mut<'a>(v: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    if !v.get(key).is_some_and(Value::is_object) {
        v[key] = json!({});
    }
    v[key].as_object_mut().expect("just made an object")
}

/// The autoscaling/v1 `Scale` of an object with `spec.replicas` (a Deployment): its replicas,
/// the observed count, and its selector as a label-selector string.
pub fn scale_of(obj: &Value) -> Value {
    let m = &obj["metadata"];
    let mut metadata = serde_json::Map::new();
    for f in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if !m[f].is_null() {
            metadata.insert(f.to_owned(), m[f].clone());
        }
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {
            "replicas": obj["status"]["replicas"].as_i64().unwrap_or(0),
            "selector": selector_string(&obj["spec"]["selector"]),
        },
    })
}

/// A LabelSelector as the string form kube-apiserver prints (requirements sorted by key).
pub fn selector_string(sel: &Value) -> String {
    let mut reqs: Vec<(String, String)> = Vec::new();
    for (k, v) in sel["matchLabels"].as_object().into_iter().flatten() {
        reqs.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or_default())));
    }
    for e in sel["matchExpressions"].as_array().into_iter().flatten() {
        let key = e["key"].as_str().unwrap_or_default().to_owned();
        let mut values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        values.sort_unstable();
        let r = match e["operator"].as_str().unwrap_or_default() {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.clone(),
            "DoesNotExist" => format!("!{key}"),
            _ => continue,
        };
        reqs.push((key, r));
    }
    reqs.sort();
    reqs.into_iter()
        .map(|(_, r)| r)
        .collect::<Vec<_>>()
        .join(",")
}

/// Converts a stored object to the form `def` serves.
pub fn to_wire(def: &ResourceDef, stored: Value) -> Value {
    let mut out = if def.group == "events.k8s.io" {
        event_to_events_v1(&stored)
    } else {
        stored
    };
    if let Some(o) = out.as_object_mut() {
        o.insert("apiVersion".into(), json!(def.api_version()));
        o.insert("kind".into(), json!(def.kind));
    }
    out
}

/// [`to_wire`] as JSON text. When `def` serves the storage form (every kind but the
/// events.k8s.io view of Events), that is the stored text itself: no parse, no copy. Every
/// stored object went through [`from_wire`], so it carries its canonical apiVersion and kind.
pub fn wire_json(def: &ResourceDef, stored: &crate::store::Object) -> Bytes {
    let canonical = crate::resources::by_storage(def.storage).unwrap_or(def);
    if (canonical.group, canonical.version, canonical.kind) == (def.group, def.version, def.kind) {
        debug_assert_eq!(stored.value()["kind"], def.kind, "stored in canonical form");
        return stored.json().clone();
    }
    Bytes::from(serde_json::to_vec(&to_wire(def, stored.value())).expect("a JSON value serializes"))
}

/// Converts an object in the form `def` serves to the storage form.
pub fn from_wire(def: &ResourceDef, wire: Value) -> Value {
    let mut out = if def.group == "events.k8s.io" {
        event_from_events_v1(&wire)
    } else {
        wire
    };
    // The storage form always carries the canonical apiVersion and kind, so equal content
    // compares equal whatever the writer sent.
    let canonical = crate::resources::by_storage(def.storage).unwrap_or(def);
    if let Some(o) = out.as_object_mut() {
        o.insert("apiVersion".into(), json!(canonical.api_version()));
        o.insert("kind".into(), json!(canonical.kind));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::lookup;

    fn svc_def() -> &'static ResourceDef {
        lookup("", "v1", "services").unwrap()
    }

    #[test]
    fn names() {
        let svc = svc_def();
        let node = lookup("", "v1", "nodes").unwrap();
        assert!(validate_name(svc, "web").is_ok());
        assert!(
            validate_name(svc, "1web").is_err(),
            "Services need a leading letter"
        );
        assert!(validate_name(svc, "web.x").is_err());
        assert!(validate_name(node, "ip-10-0-0-1.ec2.internal").is_ok());
        assert!(validate_name(node, "Node").is_err());
        let role = lookup("rbac.authorization.k8s.io", "v1", "clusterroles").unwrap();
        for ok in ["system:cloud-controller-manager", "Admin", "a.b"] {
            assert!(validate_name(role, ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "50%"] {
            assert!(validate_name(role, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn load_balancer_services_get_defaults_and_allocations() {
        let mut alloc = Allocations::default();
        let mut svc = json!({"metadata": {"name": "web"}, "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local",
            "ports": [{"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "127.64.1.2"}, {"hostname": "lb.example"}]}}});
        prepare_service(svc_def(), "web", None, &mut svc, &mut alloc).unwrap();
        let s = &svc["spec"];
        assert_eq!(s["clusterIP"], "10.96.0.2");
        assert_eq!(s["clusterIPs"], json!(["10.96.0.2"]));
        assert_eq!(s["ports"][0]["protocol"], "TCP");
        assert_eq!(s["ports"][0]["targetPort"], 80);
        assert_eq!(s["ports"][0]["nodePort"], 30000);
        assert_eq!(s["ports"][1]["nodePort"], 30001);
        assert_eq!(s["healthCheckNodePort"], 30002);
        assert_eq!(s["allocateLoadBalancerNodePorts"], true);
        assert_eq!(s["sessionAffinity"], "None");
        assert_eq!(s["internalTrafficPolicy"], "Cluster");
        assert_eq!(svc["status"]["loadBalancer"]["ingress"][0]["ipMode"], "VIP");
        assert!(
            svc["status"]["loadBalancer"]["ingress"][1]
                .get("ipMode")
                .is_none()
        );

        // Switching to ClusterIP drops node ports and the health check port, keeps the cluster IP.
        let old = svc.clone();
        let mut to_cluster_ip = old.clone();
        to_cluster_ip["spec"]["type"] = json!("ClusterIP");
        prepare_service(
            svc_def(),
            "web",
            Some(&old),
            &mut to_cluster_ip,
            &mut Allocations::default(),
        )
        .unwrap();
        assert!(to_cluster_ip["spec"]["ports"][0].get("nodePort").is_none());
        assert!(to_cluster_ip["spec"].get("healthCheckNodePort").is_none());
        assert!(to_cluster_ip["spec"].get("externalTrafficPolicy").is_none());
        assert_eq!(to_cluster_ip["spec"]["clusterIP"], "10.96.0.2");
    }

    #[test]
    fn service_validation() {
        let def = svc_def();
        let cases = [
            (json!({"spec": {"ports": []}}), "spec.ports"),
            (
                json!({"spec": {"ports": [{"port": 0}]}}),
                "spec.ports[0].port",
            ),
            (
                json!({"spec": {"type": "Weird", "ports": [{"port": 80}]}}),
                "spec.type",
            ),
            (
                json!({"spec": {"ports": [{"port": 80}, {"port": 81}]}}),
                "spec.ports[0].name",
            ),
            (
                json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]}}),
                "spec.ports[0].nodePort",
            ),
        ];
        for (mut svc, field) in cases {
            let e =
                prepare_service(def, "s", None, &mut svc, &mut Allocations::default()).unwrap_err();
            assert_eq!(e.code, 422);
            assert_eq!(
                e.details.as_ref().unwrap()["causes"][0]["field"],
                field,
                "{e:?}"
            );
        }
        // A node port in use by another Service.
        let mut alloc = Allocations::default();
        alloc.node_ports.insert(30080);
        let mut svc =
            json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}});
        assert!(
            prepare_service(def, "s", None, &mut svc, &mut alloc)
                .unwrap_err()
                .message
                .contains("already allocated")
        );
        // The cluster IP is immutable.
        let old = json!({"spec": {"clusterIP": "10.96.0.9", "ports": [{"port": 80}]}});
        let mut new = json!({"spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80}]}});
        assert!(
            prepare_service(def, "s", Some(&old), &mut new, &mut Allocations::default())
                .unwrap_err()
                .message
                .contains("may not change once set")
        );
    }

    #[test]
    fn node_immutables() {
        let def = lookup("", "v1", "nodes").unwrap();
        let empty = json!({"spec": {}});
        let set = json!({"spec": {"providerID": "simcloud://zone-a/i-1", "podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]}});
        assert!(check_node_immutables(def, "n", &empty, &set).is_ok());
        assert!(check_node_immutables(def, "n", &set, &set).is_ok());
        let mut changed = set.clone();
        changed["spec"]["providerID"] = json!("simcloud://zone-b/i-2");
        assert!(
            check_node_immutables(def, "n", &set, &changed)
                .unwrap_err()
                .message
                .contains("providerID")
        );
        let mut changed = set.clone();
        changed["spec"]["podCIDRs"] = json!(["10.244.2.0/24"]);
        assert!(check_node_immutables(def, "n", &set, &changed).is_err());
    }

    #[test]
    fn events_round_trip_between_api_forms() {
        let v1 = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "n1.abc", "namespace": "default"},
            "eventTime": "2026-01-01T00:00:00.000000Z", "type": "Normal", "reason": "Synced", "action": "Sync",
            "note": "Node synced successfully", "reportingController": "cloud-node-controller", "reportingInstance": "ccm-1",
            "regarding": {"kind": "Node", "name": "n1"}, "series": {"count": 3, "lastObservedTime": "2026-01-01T00:01:00.000000Z"}});
        let core = event_from_events_v1(&v1);
        assert_eq!(core["message"], "Node synced successfully");
        assert_eq!(core["involvedObject"]["name"], "n1");
        assert_eq!(core["reportingComponent"], "cloud-node-controller");
        assert_eq!(core["count"], 3);
        let back = event_to_events_v1(&core);
        for f in [
            "note",
            "regarding",
            "reason",
            "action",
            "type",
            "reportingController",
            "reportingInstance",
            "eventTime",
            "series",
        ] {
            assert_eq!(back[f], v1[f], "{f}");
        }
        let def = lookup("events.k8s.io", "v1", "events").unwrap();
        assert!(validate_new_event(def, "n1.abc", &v1).is_ok());
        let mut bad = v1.clone();
        bad["type"] = json!("Info");
        assert!(validate_new_event(def, "n1.abc", &bad).is_err());
    }
}
