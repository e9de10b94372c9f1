//! Services: defaulting, cluster IP and node port allocation, and their immutable fields.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde_json::{Value, json};

use super::*;

/// The Service cluster IP range (as kube-apiserver's `--service-cluster-ip-range` default in kind).
pub const SERVICE_CIDR: &str = "10.96.0.0/12";
/// The NodePort range.
pub const NODE_PORT_RANGE: (u16, u16) = (30000, 32767);

/// Everything already allocated to Services, read before a Service write.
#[derive(Debug, Default, Clone)]
pub struct Allocations {
    pub cluster_ips: BTreeSet<Ipv4Addr>,
    pub node_ports: BTreeSet<u16>,
}

impl Allocations {
    /// Collects allocations from stored Services, skipping the one being written (`skip`: ns,
    /// name). Every Service write reads every Service: only the fields allocation needs are
    /// deserialized, not whole objects.
    pub fn from_services<'a>(
        services: impl Iterator<Item = &'a crate::store::Object>,
        skip: (&str, &str),
    ) -> Self {
        /// What allocation reads of a Service; serde skips the rest without building it.
        #[derive(serde::Deserialize, Default)]
        #[serde(default)]
        struct Allocated {
            metadata: AllocatedMeta,
            spec: Option<AllocatedSpec>,
        }
        #[derive(serde::Deserialize, Default)]
        #[serde(default)]
        struct AllocatedMeta {
            namespace: String,
            name: String,
        }
        #[derive(serde::Deserialize, Default)]
        #[serde(default, rename_all = "camelCase")]
        struct AllocatedSpec {
            #[serde(rename = "clusterIP")]
            cluster_ip: Value,
            ports: Option<Vec<AllocatedPort>>,
            health_check_node_port: Value,
        }
        #[derive(serde::Deserialize, Default)]
        #[serde(default, rename_all = "camelCase")]
        struct AllocatedPort {
            node_port: Value,
        }
        let node_port = |v: &Value| v.as_u64().and_then(|n| u16::try_from(n).ok());
        let mut a = Self::default();
        for s in services {
            // Stored Services went through validation; one that does not read is skipped.
            let Ok(s) = serde_json::from_slice::<Allocated>(s.json()) else {
                continue;
            };
            if (s.metadata.namespace.as_str(), s.metadata.name.as_str()) == skip {
                continue;
            }
            let Some(spec) = s.spec else { continue };
            if let Some(ip) = spec.cluster_ip.as_str().and_then(|s| s.parse().ok()) {
                a.cluster_ips.insert(ip);
            }
            let ports = spec.ports.iter().flatten();
            a.node_ports
                .extend(ports.filter_map(|p| node_port(&p.node_port)));
            a.node_ports.extend(node_port(&spec.health_check_node_port));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Object;

    #[test]
    fn allocations_are_read_from_stored_services() {
        let svc = |ns: &str, name: &str, spec: Value| {
            Object::new(
                &json!({"metadata": {"namespace": ns, "name": name}, "spec": spec,
                "status": {"loadBalancer": {}}}),
            )
        };
        let stored = [
            svc(
                "default",
                "lb",
                json!({"clusterIP": "10.96.0.10", "healthCheckNodePort": 32000,
                    "ports": [{"port": 80, "nodePort": 30080}, {"port": 81}]}),
            ),
            svc(
                "default",
                "headless",
                json!({"clusterIP": "None", "ports": null}),
            ),
            svc(
                "other",
                "being-written",
                json!({"clusterIP": "10.96.0.11", "ports": [{"nodePort": 30081}]}),
            ),
            Object::new(&json!({"metadata": {"name": "no-spec"}})),
        ];
        let a = Allocations::from_services(stored.iter(), ("other", "being-written"));
        assert_eq!(
            a.cluster_ips,
            BTreeSet::from(["10.96.0.10".parse::<Ipv4Addr>().unwrap()])
        );
        assert_eq!(a.node_ports, BTreeSet::from([30080, 32000]));
    }
}
