//! Per-kind behaviour: name rules, defaulting and allocation (Service), immutable fields (Node,
//! Service), validation (Lease, events), and the two Event API forms sharing one storage.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde_json::{Map, Value, json};

use crate::resources::{NameRule, ResourceDef};
use crate::status::StatusError;

/// The Service cluster IP range (as kube-apiserver's `--service-cluster-ip-range` default in kind).
pub const SERVICE_CIDR: &str = "10.96.0.0/12";
/// The NodePort range.
pub const NODE_PORT_RANGE: (u16, u16) = (30000, 32767);

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

fn str_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}

/// Everything already allocated to Services, read before a Service write.
#[derive(Debug, Default, Clone)]
pub struct Allocations {
    pub cluster_ips: BTreeSet<Ipv4Addr>,
    pub node_ports: BTreeSet<u16>,
}

impl Allocations {
    /// Collects allocations from `services`, skipping the one being written (`skip`: ns, name).
    pub fn from_services<'a>(
        services: impl Iterator<Item = &'a Value>,
        skip: (&str, &str),
    ) -> Self {
        let mut a = Self::default();
        for s in services {
            if (
                str_at(s, "/metadata/namespace").unwrap_or(""),
                str_at(s, "/metadata/name").unwrap_or(""),
            ) == skip
            {
                continue;
            }
            if let Some(ip) = str_at(s, "/spec/clusterIP").and_then(|s| s.parse().ok()) {
                a.cluster_ips.insert(ip);
            }
            for p in s
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(n) = p
                    .get("nodePort")
                    .and_then(Value::as_u64)
                    .and_then(|n| u16::try_from(n).ok())
                {
                    a.node_ports.insert(n);
                }
            }
            if let Some(n) = s
                .pointer("/spec/healthCheckNodePort")
                .and_then(Value::as_u64)
                .and_then(|n| u16::try_from(n).ok())
            {
                a.node_ports.insert(n);
            }
        }
        a
    }

    fn next_ip(&mut self) -> Option<Ipv4Addr> {
        let net: ipnet::Ipv4Net = SERVICE_CIDR.parse().expect("valid service CIDR");
        // .1 is the `kubernetes` Service's address in a real cluster; start after it.
        let ip = net
            .hosts()
            .skip(1)
            .find(|ip| !self.cluster_ips.contains(ip))?;
        self.cluster_ips.insert(ip);
        Some(ip)
    }

    fn next_port(&mut self) -> Option<u16> {
        let p = (NODE_PORT_RANGE.0..=NODE_PORT_RANGE.1).find(|p| !self.node_ports.contains(p))?;
        self.node_ports.insert(p);
        Some(p)
    }
}

fn obj_mut<'a>(v: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    if !v.get(key).is_some_and(Value::is_object) {
        v[key] = json!({});
    }
    v[key].as_object_mut().expect("just made an object")
}

/// Service defaulting, allocation and validation, on create (`old` = None) and update.
pub fn prepare_service(
    def: &ResourceDef,
    name: &str,
    old: Option<&Value>,
    new: &mut Value,
    alloc: &mut Allocations,
) -> Result<(), StatusError> {
    let invalid = |field: &str, msg: &str| StatusError::invalid(def, name, field, msg);
    let spec = obj_mut(new, "spec");
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_owned();
    if !["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"].contains(&ty.as_str()) {
        return Err(invalid(
            "spec.type",
            "Unsupported value: supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
        ));
    }
    spec.insert("type".into(), json!(ty));
    spec.entry("sessionAffinity").or_insert(json!("None"));
    let external = ty == "NodePort" || ty == "LoadBalancer";
    let old_spec = old.and_then(|o| o.get("spec"));
    // Keep what was allocated before when the writer left it out (kube-apiserver's patchAllocatedValues).
    if let Some(os) = old_spec {
        for f in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            if !spec.contains_key(f)
                && let Some(v) = os.get(f)
            {
                spec.insert(f.into(), v.clone());
            }
        }
        if let Some(old_ip) = os.get("clusterIP")
            && spec.get("clusterIP") != Some(old_ip)
            && ty != "ExternalName"
            && os.get("type").and_then(Value::as_str) != Some("ExternalName")
        {
            // kube-apiserver names the primary of the clusterIPs list.
            return Err(invalid(
                "spec.clusterIPs[0]",
                &format!(
                    "Invalid value: {}: may not change once set",
                    spec.get("clusterIPs").unwrap_or(&Value::Null)
                ),
            ));
        }
    }
    // Drop fields the new type does not have (dropTypeDependentFields).
    if !external {
        spec.remove("externalTrafficPolicy");
        spec.remove("healthCheckNodePort");
        if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
            for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                p.remove("nodePort");
            }
        }
    }
    if ty != "LoadBalancer" {
        spec.remove("allocateLoadBalancerNodePorts");
        spec.remove("loadBalancerClass");
    }
    if ty == "ExternalName" {
        spec.remove("clusterIP");
        spec.remove("clusterIPs");
        return Ok(());
    }
    if external {
        spec.entry("externalTrafficPolicy")
            .or_insert(json!("Cluster"));
    }
    spec.entry("internalTrafficPolicy")
        .or_insert(json!("Cluster"));
    if ty == "LoadBalancer" {
        spec.entry("allocateLoadBalancerNodePorts")
            .or_insert(json!(true));
    }
    let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
    // Ports: defaults, validation, node ports.
    let allocate_node_ports = external
        && spec
            .get("allocateLoadBalancerNodePorts")
            .and_then(Value::as_bool)
            != Some(false);
    let old_ports: Vec<Value> = old_spec
        .and_then(|s| s.get("ports"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let ports = spec.entry("ports").or_insert(json!([]));
    let Some(ports) = ports.as_array_mut() else {
        return Err(invalid("spec.ports", "must be a list"));
    };
    if ports.is_empty() && !headless {
        return Err(invalid("spec.ports", "Required value"));
    }
    let mut seen = BTreeSet::new();
    for (i, p) in ports.iter_mut().enumerate() {
        let Some(p) = p.as_object_mut() else {
            return Err(invalid(&format!("spec.ports[{i}]"), "must be an object"));
        };
        let port = p
            .get("port")
            .and_then(Value::as_u64)
            .filter(|n| (1..=65535).contains(n));
        let Some(port) = port else {
            return Err(invalid(
                &format!("spec.ports[{i}].port"),
                "Invalid value: must be between 1 and 65535, inclusive",
            ));
        };
        p.entry("protocol").or_insert(json!("TCP"));
        p.entry("targetPort").or_insert(json!(port));
        let proto = p
            .get("protocol")
            .and_then(Value::as_str)
            .unwrap_or("TCP")
            .to_owned();
        if !seen.insert((port, proto.clone())) {
            return Err(invalid(&format!("spec.ports[{i}]"), "Duplicate value"));
        }
        if allocate_node_ports {
            let kept = old_ports
                .iter()
                .find(|o| {
                    o.get("port").and_then(Value::as_u64) == Some(port)
                        && o.get("protocol").and_then(Value::as_str).unwrap_or("TCP") == proto
                })
                .and_then(|o| o.get("nodePort").cloned());
            match p.get("nodePort").and_then(Value::as_u64) {
                Some(n) => {
                    let Some(n) = u16::try_from(n)
                        .ok()
                        .filter(|n| (NODE_PORT_RANGE.0..=NODE_PORT_RANGE.1).contains(n))
                    else {
                        return Err(invalid(
                            &format!("spec.ports[{i}].nodePort"),
                            "Invalid value: provided port is not in the valid range. The range of valid ports is 30000-32767",
                        ));
                    };
                    let was_ours = kept.as_ref().and_then(Value::as_u64) == Some(u64::from(n));
                    if !was_ours && !alloc.node_ports.insert(n) {
                        return Err(invalid(
                            &format!("spec.ports[{i}].nodePort"),
                            &format!("Invalid value: {n}: provided port is already allocated"),
                        ));
                    }
                }
                None => {
                    let n = match kept {
                        Some(k) => k,
                        None => json!(
                            alloc
                                .next_port()
                                .ok_or_else(|| StatusError::internal("no free node ports"))?
                        ),
                    };
                    p.insert("nodePort".into(), n);
                }
            }
        }
    }
    if ports.len() > 1 && ports.iter().any(|p| p.get("name").is_none()) {
        return Err(invalid("spec.ports[0].name", "Required value"));
    }
    // Health check node port for externalTrafficPolicy: Local load balancers.
    let local_lb = ty == "LoadBalancer"
        && spec.get("externalTrafficPolicy").and_then(Value::as_str) == Some("Local");
    if local_lb {
        if spec.get("healthCheckNodePort").is_none() {
            let kept = old_spec.and_then(|s| s.get("healthCheckNodePort")).cloned();
            let n = match kept {
                Some(k) => k,
                None => json!(
                    alloc
                        .next_port()
                        .ok_or_else(|| StatusError::internal("no free node ports"))?
                ),
            };
            spec.insert("healthCheckNodePort".into(), n);
        }
    } else {
        spec.remove("healthCheckNodePort");
    }
    // Cluster IP.
    if !headless && spec.get("clusterIP").is_none() {
        let ip = alloc
            .next_ip()
            .ok_or_else(|| StatusError::internal("no free cluster IPs"))?;
        spec.insert("clusterIP".into(), json!(ip.to_string()));
    }
    if let Some(ip) = spec.get("clusterIP").cloned() {
        spec.entry("clusterIPs").or_insert(json!([ip]));
    }
    spec.entry("ipFamilies").or_insert(json!(["IPv4"]));
    spec.entry("ipFamilyPolicy").or_insert(json!("SingleStack"));
    default_ingress_ip_mode(new);
    Ok(())
}

/// Every `status.loadBalancer.ingress[]` with an IP and no `ipMode` gets `ipMode: VIP`.
pub fn default_ingress_ip_mode(svc: &mut Value) {
    if let Some(ingress) = svc
        .pointer_mut("/status/loadBalancer/ingress")
        .and_then(Value::as_array_mut)
    {
        for i in ingress.iter_mut().filter_map(Value::as_object_mut) {
            if i.contains_key("ip") && !i.contains_key("ipMode") {
                i.insert("ipMode".into(), json!("VIP"));
            }
        }
    }
}

/// Node fields that may only go from empty to a value.
pub fn check_node_immutables(
    def: &ResourceDef,
    name: &str,
    old: &Value,
    new: &Value,
) -> Result<(), StatusError> {
    let old_pid = str_at(old, "/spec/providerID").unwrap_or("");
    let new_pid = str_at(new, "/spec/providerID").unwrap_or("");
    if !old_pid.is_empty() && old_pid != new_pid {
        return Err(StatusError::invalid(
            def,
            name,
            "spec.providerID",
            "Forbidden: node updates may not change providerID except from \"\" to valid",
        ));
    }
    let old_cidrs = old
        .pointer("/spec/podCIDRs")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty());
    if let Some(oc) = old_cidrs
        && new.pointer("/spec/podCIDRs").and_then(Value::as_array) != Some(oc)
    {
        return Err(StatusError::invalid(
            def,
            name,
            "spec.podCIDRs",
            "Forbidden: node updates may not change podCIDR except from \"\" to valid",
        ));
    }
    let old_cidr = str_at(old, "/spec/podCIDR").unwrap_or("");
    if !old_cidr.is_empty() && str_at(new, "/spec/podCIDR").unwrap_or("") != old_cidr {
        return Err(StatusError::invalid(
            def,
            name,
            "spec.podCIDR",
            "Forbidden: node updates may not change podCIDR except from \"\" to valid",
        ));
    }
    Ok(())
}

pub fn validate_lease(def: &ResourceDef, name: &str, obj: &Value) -> Result<(), StatusError> {
    if let Some(d) = obj
        .pointer("/spec/leaseDurationSeconds")
        .and_then(Value::as_i64)
        && d <= 0
    {
        return Err(StatusError::invalid(
            def,
            name,
            "spec.leaseDurationSeconds",
            "Invalid value: must be greater than 0",
        ));
    }
    if let Some(t) = obj
        .pointer("/spec/leaseTransitions")
        .and_then(Value::as_i64)
        && t < 0
    {
        return Err(StatusError::invalid(
            def,
            name,
            "spec.leaseTransitions",
            "Invalid value: must be greater than or equal to 0",
        ));
    }
    Ok(())
}

/// EndpointSlice address validation (`discovery/validation`): IPv4 addresses must not be
/// unspecified, loopback, link-local or multicast, as kube-apiserver refuses them.
pub fn validate_endpoint_slice(
    def: &ResourceDef,
    name: &str,
    obj: &Value,
) -> Result<(), StatusError> {
    if obj.get("addressType").and_then(Value::as_str) != Some("IPv4") {
        return Ok(());
    }
    let endpoints = obj.get("endpoints").and_then(Value::as_array);
    for (i, e) in endpoints.into_iter().flatten().enumerate() {
        let addrs = e.get("addresses").and_then(Value::as_array);
        for (j, a) in addrs.into_iter().flatten().enumerate() {
            let text = a.as_str().unwrap_or("");
            let field = format!("endpoints[{i}].addresses[{j}]");
            let why = match text.parse::<std::net::Ipv4Addr>() {
                Err(_) => Some("must be a valid IPv4 address"),
                Ok(ip) if ip.is_unspecified() => Some("may not be unspecified (0.0.0.0)"),
                Ok(ip) if ip.is_loopback() => {
                    Some("may not be in the loopback range (127.0.0.0/8, ::1/128)")
                }
                Ok(ip) if ip.is_link_local() => {
                    Some("may not be in the link-local range (169.254.0.0/16, fe80::/10)")
                }
                Ok(ip) if ip.is_multicast() => {
                    Some("may not be in the multicast range (224.0.0.0/4, ff00::/8)")
                }
                Ok(_) => None,
            };
            if let Some(why) = why {
                return Err(StatusError::invalid(
                    def,
                    name,
                    &field,
                    format!("Invalid value: {text:?}: {why}"),
                ));
            }
        }
    }
    Ok(())
}

/// events.k8s.io/v1 create validation (the rules the Recorder's events must pass).
pub fn validate_new_event(def: &ResourceDef, name: &str, ev: &Value) -> Result<(), StatusError> {
    let invalid = |f: &str, m: &str| Err(StatusError::invalid(def, name, f, m));
    if ev.get("eventTime").is_none_or(Value::is_null) {
        return invalid("eventTime", "Required value");
    }
    match str_at(ev, "/type") {
        Some("Normal" | "Warning") => {}
        _ => {
            return invalid(
                "type",
                "Unsupported value: supported values: \"Normal\", \"Warning\"",
            );
        }
    }
    for f in [
        "reportingController",
        "reportingInstance",
        "action",
        "reason",
    ] {
        match str_at(ev, &format!("/{f}")) {
            Some(s) if !s.is_empty() && s.len() <= 128 => {}
            _ => return invalid(f, "Required value"),
        }
    }
    if str_at(ev, "/note").is_some_and(|n| n.len() > 1024) {
        return invalid("note", "Too long: may not be more than 1024 bytes");
    }
    Ok(())
}

/// Where an Event may live, checked on its storage (core/v1) form as kube-apiserver's
/// `ValidateEventCreate` does: an Event about a cluster-scoped object goes in `default` (or, for
/// new-style Events with an `eventTime`, `kube-system`); one about a namespaced object, in that
/// object's namespace (old-style Events; new-style ones are not checked for that).
pub fn validate_event_namespace(
    def: &ResourceDef,
    name: &str,
    namespace: &str,
    core: &Value,
) -> Result<(), StatusError> {
    let involved = str_at(core, "/involvedObject/namespace").unwrap_or("");
    let new_style = core.get("eventTime").is_some_and(|t| !t.is_null());
    let ok = match (involved.is_empty(), new_style) {
        (true, false) => namespace.is_empty() || namespace == "default",
        (true, true) => namespace == "default" || namespace == "kube-system",
        (false, false) => namespace == involved,
        (false, true) => true,
    };
    if ok {
        return Ok(());
    }
    Err(StatusError::invalid(
        def,
        name,
        "involvedObject.namespace",
        format!("Invalid value: {involved:?}: does not match event.namespace"),
    ))
}

/// Fields that are the same data in the two Event APIs: (core/v1 name, events.k8s.io/v1 name).
const EVENT_FIELDS: [(&str, &str); 14] = [
    ("metadata", "metadata"),
    ("eventTime", "eventTime"),
    ("action", "action"),
    ("reason", "reason"),
    ("type", "type"),
    ("involvedObject", "regarding"),
    ("related", "related"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("reportingInstance", "reportingInstance"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("source", "deprecatedSource"),
    ("series", "series"),
];

/// Copies the shared fields of `from` into a new Event of `api_version`, renaming them with `name`.
fn copy_event_fields(
    from: &Value,
    api_version: &str,
    name: impl Fn(&(&'static str, &'static str)) -> (&'static str, &'static str),
) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!(api_version));
    out.insert("kind".into(), json!("Event"));
    for pair in &EVENT_FIELDS {
        let (src, dst) = name(pair);
        if let Some(v) = from.get(src).filter(|v| !v.is_null()) {
            out.insert(dst.into(), v.clone());
        }
    }
    out
}

/// core/v1 Event (storage form) to events.k8s.io/v1.
pub fn event_to_events_v1(core: &Value) -> Value {
    let mut out = copy_event_fields(core, "events.k8s.io/v1", |&(c, e)| (c, e));
    if !out.contains_key("series")
        && let Some(c) = core.get("count").and_then(Value::as_i64).filter(|c| *c > 1)
    {
        out.insert("deprecatedCount".into(), json!(c));
    }
    Value::Object(out)
}

/// events.k8s.io/v1 Event to the core/v1 storage form.
pub fn event_from_events_v1(ev: &Value) -> Value {
    let mut out = copy_event_fields(ev, "v1", |&(c, e)| (e, c));
    let count = ev
        .pointer("/series/count")
        .and_then(Value::as_i64)
        .or_else(|| ev.get("deprecatedCount").and_then(Value::as_i64))
        .unwrap_or(1);
    out.insert("count".into(), json!(count));
    out.entry("involvedObject").or_insert_with(|| json!({}));
    Value::Object(out)
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
pub fn to_wire(def: &ResourceDef, stored: &Value) -> Value {
    let mut out = if def.group == "events.k8s.io" {
        event_to_events_v1(stored)
    } else {
        stored.clone()
    };
    if let Some(o) = out.as_object_mut() {
        o.insert("apiVersion".into(), json!(def.api_version()));
        o.insert("kind".into(), json!(def.kind));
    }
    out
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
