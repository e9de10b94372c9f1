//! How a Service maps to a simcloud load balancer (pure): name, listeners, backends, health check,
//! zone policy from `spec.trafficDistribution` and `simcloud.dev/` annotations, tags; what an
//! existing load balancer needs (nothing, an update, or re-creation); and the Service status.
//!
//! Backends are the cluster's backend groups, one per zone, holding every backend node's
//! instance (GCE's instance groups): load balancers reference the groups, so a node joining or
//! leaving changes one group instead of every load balancer.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use cloud_api::{
    BackendGroup, BackendGroupId, Balancing, CreateLoadBalancerRequest, HealthCheck,
    HealthCheckProtocol, InstanceId, IpMode, Listener, LoadBalancer, Protocol, ProviderId, Scheme,
    Tags, UpdateLoadBalancerRequest, ZoneAffinity, ZonePolicy,
};
use k8s_openapi::api::core::v1::{
    LoadBalancerIngress, LoadBalancerStatus, Node, PortStatus, Service,
};

use crate::names;
use crate::service_plan::parse_bool;

/// Upstream's `DefaultLoadBalancerName`: `a` + the Service UID without dashes, at most 32 characters.
pub fn lb_name(svc: &Service) -> String {
    let uid: String = svc
        .metadata
        .uid
        .as_deref()
        .unwrap_or("")
        .chars()
        .filter(|c| *c != '-')
        .collect();
    let mut name = format!("a{}", uid.to_ascii_lowercase());
    name.truncate(32);
    name
}

fn annotation<'a>(svc: &'a Service, key: &str) -> Option<&'a str> {
    svc.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
        .map(str::trim)
}

fn bool_annotation(svc: &Service, key: &str) -> Result<Option<bool>, String> {
    annotation(svc, key)
        .map(|v| parse_bool(v).ok_or_else(|| format!("annotation {key}: {v:?} is not a boolean")))
        .transpose()
}

fn u32_annotation(svc: &Service, key: &str) -> Result<Option<u32>, String> {
    annotation(svc, key)
        .map(|v| {
            v.parse::<u32>()
                .map_err(|_| format!("annotation {key}: {v:?} is not a whole number"))
        })
        .transpose()
}

/// The instance IDs of the simcloud nodes (others cannot be backends) by zone, from their
/// provider IDs, each once, in ID order.
pub fn zone_members(nodes: &[Arc<Node>]) -> BTreeMap<String, Vec<InstanceId>> {
    let mut out: BTreeMap<String, Vec<InstanceId>> = BTreeMap::new();
    for n in nodes {
        if let Some(pid) = crate::cloud::provider_id(n).and_then(|p| p.parse::<ProviderId>().ok()) {
            out.entry(pid.zone).or_default().push(pid.instance_id);
        }
    }
    for ids in out.values_mut() {
        ids.sort_unstable();
        ids.dedup();
    }
    out
}

/// A stable 64-bit FNV-1a hash of `parts` joined by NULs, for names that must survive restarts
/// (and upgrades: route names depend on it).
pub fn stable_hash(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, part) in parts.iter().enumerate() {
        let sep: &[u8] = if i == 0 { &[] } else { &[0] };
        for b in sep.iter().chain(part.as_bytes()) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The name of the cluster's backend group in `zone`: the prefix and a hash of both, so it is a
/// valid name whatever their length (the group's zone and cluster tag say what it is).
pub fn group_name(cluster: &str, zone: &str) -> String {
    format!(
        "{}{:016x}",
        names::BACKEND_GROUP_PREFIX,
        stable_hash(&[cluster, zone])
    )
}

/// Whether the group's members differ from `want` (in any order).
pub fn members_differ(group: &BackendGroup, want: &[InstanceId]) -> bool {
    let mut have: Vec<&InstanceId> = group.members.iter().map(|m| &m.instance_id).collect();
    have.sort_unstable();
    let mut wanted: Vec<&InstanceId> = want.iter().collect();
    wanted.sort_unstable();
    have != wanted
}

/// The backends update a load balancer needs to send to exactly `groups` (and no instance listed
/// one by one, as earlier versions did), if any.
pub fn backends_change(
    existing: &LoadBalancer,
    groups: &[BackendGroupId],
) -> Option<UpdateLoadBalancerRequest> {
    let mut u = UpdateLoadBalancerRequest::default();
    if !existing.backends.is_empty() {
        u.backends = Some(Vec::new());
    }
    if existing.backend_groups != groups {
        u.backend_groups = Some(groups.to_vec());
    }
    (u != UpdateLoadBalancerRequest::default()).then_some(u)
}

/// The load balancer the Service should have, sending to `groups`.
pub fn desired(
    cluster: &str,
    svc: &Service,
    groups: &[BackendGroupId],
) -> Result<CreateLoadBalancerRequest, String> {
    let spec = svc.spec.clone().unwrap_or_default();
    let mut listeners = Vec::new();
    for p in spec.ports.as_deref().unwrap_or_default() {
        let protocol = match p.protocol.as_deref().unwrap_or("TCP") {
            "TCP" => Protocol::Tcp,
            "UDP" => Protocol::Udp,
            other => {
                return Err(format!(
                    "port {}: protocol {other} is not supported by simcloud load balancers",
                    p.port
                ));
            }
        };
        let node_port = p.node_port.ok_or_else(|| {
            format!(
                "port {} has no nodePort (simcloud load balancers send to node ports)",
                p.port
            )
        })?;
        let port = u16::try_from(p.port).map_err(|_| format!("port {} is out of range", p.port))?;
        let backend_port = u16::try_from(node_port)
            .map_err(|_| format!("nodePort {node_port} is out of range"))?;
        listeners.push(Listener {
            protocol,
            port,
            backend_port,
        });
    }
    if listeners.is_empty() {
        return Err("the Service has no ports".into());
    }
    // Every invalid annotation is reported at once, not only the first.
    let mut errs: Vec<String> = Vec::new();
    let mut ok = |r: Result<Option<u32>, String>| {
        r.unwrap_or_else(|e| {
            errs.push(e);
            None
        })
    };
    let hc_port = ok(u32_annotation(svc, names::ANN_HC_PORT));
    let intervals = [
        names::ANN_HC_INTERVAL,
        names::ANN_HC_TIMEOUT,
        names::ANN_HC_HEALTHY,
        names::ANN_HC_UNHEALTHY,
    ]
    .map(|key| ok(u32_annotation(svc, key)));
    let min_cluster_size = ok(u32_annotation(svc, names::ANN_MIN_CLUSTER_SIZE));
    let panic_threshold = ok(u32_annotation(svc, names::ANN_PANIC_THRESHOLD));
    let mut okb = |r: Result<Option<bool>, String>| {
        r.unwrap_or_else(|e| {
            errs.push(e);
            None
        })
    };
    let cross_zone = okb(bool_annotation(svc, names::ANN_CROSS_ZONE));
    let fail_open = okb(bool_annotation(svc, names::ANN_FAIL_OPEN));
    let internal = okb(bool_annotation(svc, names::ANN_INTERNAL));

    let mut health_check = HealthCheck::default();
    if spec.external_traffic_policy.as_deref() == Some("Local")
        && let Some(p) = spec
            .health_check_node_port
            .and_then(|p| u16::try_from(p).ok())
    {
        health_check = HealthCheck {
            protocol: HealthCheckProtocol::Http,
            port: Some(p),
            path: Some("/healthz".into()),
            ..health_check
        };
    }
    if let Some(v) = annotation(svc, names::ANN_HC_PROTOCOL) {
        match v.to_ascii_lowercase().as_str() {
            "tcp" => {
                health_check.protocol = HealthCheckProtocol::Tcp;
                health_check.path = None;
            }
            "http" => health_check.protocol = HealthCheckProtocol::Http,
            _ => errs.push(format!(
                "annotation {}: {v:?} is not tcp or http",
                names::ANN_HC_PROTOCOL
            )),
        }
    }
    if let Some(p) = hc_port {
        match u16::try_from(p).ok().filter(|p| *p > 0) {
            Some(p) => health_check.port = Some(p),
            None => errs.push(format!(
                "annotation {}: {p} is not a port",
                names::ANN_HC_PORT
            )),
        }
    }
    if let Some(path) = annotation(svc, names::ANN_HC_PATH) {
        health_check.path = Some(path.to_owned());
    }
    if health_check.protocol == HealthCheckProtocol::Http && health_check.path.is_none() {
        health_check.path = Some("/healthz".into());
    }
    for (field, v) in [
        &mut health_check.interval_seconds,
        &mut health_check.timeout_seconds,
        &mut health_check.healthy_threshold,
        &mut health_check.unhealthy_threshold,
    ]
    .into_iter()
    .zip(intervals)
    {
        if let Some(v) = v {
            *field = v;
        }
    }
    let mut zone_policy = ZonePolicy::default();
    if matches!(
        spec.traffic_distribution.as_deref(),
        Some("PreferSameZone" | "PreferClose")
    ) {
        zone_policy.zone_affinity = ZoneAffinity::PreferSameZone;
    }
    if let Some(v) = annotation(svc, names::ANN_ZONE_AFFINITY) {
        match v {
            "none" => zone_policy.zone_affinity = ZoneAffinity::None,
            "prefer-same-zone" => zone_policy.zone_affinity = ZoneAffinity::PreferSameZone,
            "same-zone-only" => zone_policy.zone_affinity = ZoneAffinity::SameZoneOnly,
            "balanced" => zone_policy.zone_affinity = ZoneAffinity::Balanced,
            _ => errs.push(format!(
                "annotation {}: {v:?} is not none, prefer-same-zone, same-zone-only or balanced",
                names::ANN_ZONE_AFFINITY
            )),
        }
    }
    if let Some(n) = min_cluster_size {
        zone_policy.min_cluster_size = n;
    }
    match panic_threshold {
        Some(p) if p > 100 => errs.push(format!(
            "annotation {}: {p} is not a percentage (0 to 100)",
            names::ANN_PANIC_THRESHOLD
        )),
        Some(p) => zone_policy.panic_threshold_percent = p,
        None => {}
    }
    if let Some(b) = cross_zone {
        zone_policy.cross_zone = b;
    }
    if let Some(b) = fail_open {
        zone_policy.fail_open = b;
    }
    if let Some(v) = annotation(svc, names::ANN_BALANCING) {
        match v {
            "round-robin" => zone_policy.balancing = Balancing::RoundRobin,
            "least-connections" => zone_policy.balancing = Balancing::LeastConnections,
            _ => errs.push(format!(
                "annotation {}: {v:?} is not round-robin or least-connections",
                names::ANN_BALANCING
            )),
        }
    }
    let scheme = if internal.unwrap_or(false) {
        Scheme::Internal
    } else {
        Scheme::External
    };
    let ip_mode = match annotation(svc, names::ANN_IP_MODE)
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("vip") => IpMode::Vip,
        Some("proxy") => IpMode::Proxy,
        Some(v) => {
            errs.push(format!(
                "annotation {}: {v:?} is not VIP or Proxy",
                names::ANN_IP_MODE
            ));
            IpMode::Vip
        }
    };
    let list = |key: &str| -> Vec<String> {
        annotation(svc, key)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut requested_ips = Vec::new();
    for ip in list(names::ANN_IPS) {
        match ip.parse::<Ipv4Addr>() {
            Ok(ip) => requested_ips.push(ip),
            Err(_) => errs.push(format!(
                "annotation {}: {ip:?} is not an IPv4 address",
                names::ANN_IPS
            )),
        }
    }
    if !errs.is_empty() {
        return Err(errs.join("; "));
    }
    let zones = Some(list(names::ANN_ZONES)).filter(|z| !z.is_empty());
    let mut tags = Tags::new();
    tags.insert(names::cluster_tag(cluster), names::TAG_OWNED.into());
    let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
    tags.insert(
        names::TAG_SERVICE_NAME.into(),
        format!("{ns}/{}", svc.metadata.name.as_deref().unwrap_or("")),
    );
    tags.insert(
        names::TAG_SERVICE_UID.into(),
        svc.metadata.uid.clone().unwrap_or_default(),
    );
    Ok(CreateLoadBalancerRequest {
        name: lb_name(svc),
        scheme,
        ip_mode,
        listeners,
        backends: Vec::new(),
        backend_groups: groups.to_vec(),
        health_check,
        zone_policy,
        zones,
        requested_ips,
        tags,
    })
}

/// The Service's `spec.loadBalancerIP`, when set (deprecated since Kubernetes 1.24, still in
/// many manifests).
pub fn spec_load_balancer_ip(svc: &Service) -> Option<&str> {
    svc.spec
        .as_ref()?
        .load_balancer_ip
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// `spec.loadBalancerIP` as a requested frontend address: used when it lies in one zone's pool
/// (`pools`: zone and pool), else a warning that names the pools (the load balancer then gets
/// ordinary addresses). The `simcloud.dev/load-balancer-ips` annotation takes precedence.
pub fn load_balancer_ip(
    svc: &Service,
    pools: &[(String, ipnet::Ipv4Net)],
) -> Result<Option<Ipv4Addr>, String> {
    let Some(raw) = spec_load_balancer_ip(svc) else {
        return Ok(None);
    };
    let listed = || {
        pools
            .iter()
            .map(|(z, p)| format!("{z} {p}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let ip: Ipv4Addr = raw.parse().map_err(|_| {
        format!(
            "spec.loadBalancerIP {raw:?} is not an IPv4 address; not used (frontend pools: {})",
            listed()
        )
    })?;
    if pools.iter().any(|(_, p)| p.contains(&ip)) {
        Ok(Some(ip))
    } else {
        Err(format!(
            "spec.loadBalancerIP {ip} is in no zone's frontend pool, so the load balancer gets ordinary addresses (frontend pools: {})",
            listed()
        ))
    }
}

/// What an existing load balancer needs to match the desired one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    None,
    Update(Box<UpdateLoadBalancerRequest>),
    /// An immutable property differs (scheme, zones, requested addresses): delete and create.
    Recreate(String),
}

pub fn change(existing: &LoadBalancer, want: &CreateLoadBalancerRequest) -> Change {
    if existing.scheme != want.scheme {
        return Change::Recreate("the scheme (internal/external) changed".into());
    }
    if let Some(zones) = &want.zones {
        let mut have: Vec<&str> = existing.frontends.iter().map(|f| f.zone.as_str()).collect();
        let mut wanted: Vec<&str> = zones.iter().map(String::as_str).collect();
        have.sort_unstable();
        wanted.sort_unstable();
        if have != wanted {
            return Change::Recreate("the frontend zones changed".into());
        }
    }
    if !want
        .requested_ips
        .iter()
        .all(|ip| existing.frontends.iter().any(|f| f.ip == *ip))
    {
        return Change::Recreate("the requested frontend addresses changed".into());
    }
    let mut u = backends_change(existing, &want.backend_groups).unwrap_or_default();
    if existing.listeners != want.listeners {
        u.listeners = Some(want.listeners.clone());
    }
    if existing.health_check != want.health_check {
        u.health_check = Some(want.health_check.clone());
    }
    if existing.zone_policy != want.zone_policy {
        u.zone_policy = Some(want.zone_policy);
    }
    if existing.ip_mode != want.ip_mode {
        u.ip_mode = Some(want.ip_mode);
    }
    if existing.tags != want.tags {
        u.tags = Some(want.tags.clone());
    }
    if u == UpdateLoadBalancerRequest::default() {
        Change::None
    } else {
        Change::Update(Box::new(u))
    }
}

/// The Service status of a load balancer: one ingress per zonal frontend, with `ipMode` and ports.
pub fn status(lb: &LoadBalancer) -> LoadBalancerStatus {
    let mode = match lb.ip_mode {
        IpMode::Vip => "VIP",
        IpMode::Proxy => "Proxy",
    };
    let ports: Vec<PortStatus> = lb
        .listeners
        .iter()
        .map(|l| PortStatus {
            port: i32::from(l.port),
            protocol: match l.protocol {
                Protocol::Tcp => "TCP",
                Protocol::Udp => "UDP",
            }
            .into(),
            error: None,
        })
        .collect();
    let ingress = lb
        .frontends
        .iter()
        .map(|f| LoadBalancerIngress {
            ip: Some(f.ip.to_string()),
            ip_mode: Some(mode.into()),
            ports: Some(ports.clone()),
            hostname: None,
        })
        .collect();
    LoadBalancerStatus {
        ingress: Some(ingress),
    }
}

/// The tags that identify a Service's load balancer, for garbage collection.
pub fn owner(tags: &Tags) -> (String, String) {
    (
        tags.get(names::TAG_SERVICE_NAME)
            .cloned()
            .unwrap_or_default(),
        tags.get(names::TAG_SERVICE_UID)
            .cloned()
            .unwrap_or_default(),
    )
}

/// Annotation keys this provider reads, for docs and validation.
pub fn annotations() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([
        (
            names::ANN_CROSS_ZONE,
            "true/false: let zonal frontends use other zones' backends (default false)",
        ),
        (
            names::ANN_ZONE_AFFINITY,
            "none, prefer-same-zone (Kubernetes' PreferSameZone: strict), same-zone-only, or balanced (Envoy's zone-aware routing: spills to keep backends evenly loaded) (default prefer-same-zone with spec.trafficDistribution PreferSameZone or PreferClose, else none)",
        ),
        (
            names::ANN_MIN_CLUSTER_SIZE,
            "balanced only: fewer backends than this route to every healthy backend evenly (Envoy's min_cluster_size, default 6)",
        ),
        (
            names::ANN_PANIC_THRESHOLD,
            "balanced only: below this percentage of healthy backends, health is ignored (Envoy's healthy_panic_threshold, default 50)",
        ),
        (
            names::ANN_FAIL_OPEN,
            "true/false: send to unhealthy backends when none is healthy (default true)",
        ),
        (
            names::ANN_BALANCING,
            "round-robin or least-connections: choice within the chosen zone (default round-robin)",
        ),
        (
            names::ANN_INTERNAL,
            "true: internal load balancer (default external)",
        ),
        (
            names::ANN_IP_MODE,
            "VIP or Proxy: the ingress ipMode (default VIP)",
        ),
        (
            names::ANN_IPS,
            "comma-separated frontend addresses to use, at most one per zone",
        ),
        (
            names::ANN_ZONES,
            "comma-separated zones to put frontends in (default all)",
        ),
        (names::ANN_HC_PROTOCOL, "tcp or http"),
        (
            names::ANN_HC_PORT,
            "health-check port (default the node port, or healthCheckNodePort for Local)",
        ),
        (
            names::ANN_HC_PATH,
            "health-check path for http (default /healthz)",
        ),
        (
            names::ANN_HC_INTERVAL,
            "seconds between checks (default 10)",
        ),
        (names::ANN_HC_TIMEOUT, "seconds per check (default 5)"),
        (
            names::ANN_HC_HEALTHY,
            "successes to turn healthy (default 2)",
        ),
        (
            names::ANN_HC_UNHEALTHY,
            "failures to turn unhealthy (default 3)",
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(extra: serde_json::Value) -> Service {
        let mut v = json!({"metadata": {"name": "web", "namespace": "shop", "uid": "0f3c2a9b-7d1e-4c55-9a8b-123456789abc"},
            "spec": {"type": "LoadBalancer", "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}]}});
        json_patch::merge(&mut v, &extra);
        serde_json::from_value(v).unwrap()
    }

    fn node(name: &str, pid: Option<&str>) -> Arc<Node> {
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"providerID": pid}}))
            .unwrap()
    }

    fn group(n: u64) -> BackendGroupId {
        BackendGroupId::from_bits(n)
    }

    #[test]
    fn zone_members_are_sorted_and_distinct_and_group_names_valid() {
        let nodes = [
            node("c", Some("simcloud://zone-a/i-0000000000000003")),
            node("a", Some("simcloud://zone-a/i-0000000000000001")),
            node("a2", Some("simcloud://zone-a/i-0000000000000001")),
        ];
        let m = zone_members(&nodes);
        assert_eq!(
            m["zone-a"]
                .iter()
                .map(InstanceId::as_str)
                .collect::<Vec<_>>(),
            ["i-0000000000000001", "i-0000000000000003"]
        );
        let name = group_name("kubernetes", "zone-a");
        assert_eq!(name, group_name("kubernetes", "zone-a"));
        assert_ne!(name, group_name("kubernetes", "zone-b"));
        assert_ne!(name, group_name("other", "zone-a"));
        let long = group_name(&"c".repeat(300), &"z".repeat(63));
        assert_eq!(long.len(), names::BACKEND_GROUP_PREFIX.len() + 16);
        assert!(
            long.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        );
    }

    #[test]
    fn members_and_backends_changes() {
        let g: BackendGroup = serde_json::from_value(json!({
            "id": "bg-0000000000000001", "name": "g", "region": "sim-1", "zone": "zone-a",
            "members": [{"instance_id": "i-0000000000000002", "zone": "zone-a", "private_ip": "127.1.1.3"},
                        {"instance_id": "i-0000000000000001", "zone": "zone-a", "private_ip": "127.1.1.2"}],
            "tags": {}, "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z", "etag": "1"
        }))
        .unwrap();
        let id = |n: u64| InstanceId::from_bits(n);
        assert!(!members_differ(&g, &[id(1), id(2)]));
        assert!(members_differ(&g, &[id(1)]));
        assert!(members_differ(&g, &[]));
        assert!(members_differ(&g, &[id(1), id(2), id(3)]));
        let mut lb = existing(&desired("c", &svc(json!({})), &[group(1)]).unwrap());
        assert_eq!(backends_change(&lb, &[group(1)]), None);
        let u = backends_change(&lb, &[group(1), group(2)]).unwrap();
        assert_eq!(
            (u.backend_groups, u.backends),
            (Some(vec![group(1), group(2)]), None)
        );
        // A load balancer an earlier version gave instances one by one moves to groups.
        lb.backends = g.members.clone();
        let u = backends_change(&lb, &[group(1)]).unwrap();
        assert_eq!((u.backend_groups, u.backends), (None, Some(vec![])));
    }

    #[test]
    fn names_follow_upstream() {
        assert_eq!(lb_name(&svc(json!({}))), "a0f3c2a9b7d1e4c559a8b123456789ab");
        assert_eq!(lb_name(&svc(json!({}))).len(), 32);
    }

    #[test]
    fn defaults_map_ports_backends_and_tags() {
        let nodes = [
            node("a", Some("simcloud://zone-a/i-0000000000000001")),
            node("b", Some("simcloud://zone-b/i-0000000000000002")),
            node("kind", Some("kind://docker/kind/kind")),
            node("bare", None),
        ];
        let members = zone_members(&nodes);
        assert_eq!(
            members
                .iter()
                .map(|(z, ids)| (z.as_str(), ids.iter().map(InstanceId::as_str).collect()))
                .collect::<Vec<(&str, Vec<&str>)>>(),
            [
                ("zone-a", vec!["i-0000000000000001"]),
                ("zone-b", vec!["i-0000000000000002"])
            ]
        );
        let d = desired("demo", &svc(json!({})), &[group(1)]).unwrap();
        assert_eq!(
            d.listeners,
            vec![Listener {
                protocol: Protocol::Tcp,
                port: 80,
                backend_port: 30080
            }]
        );
        assert_eq!(
            (d.backends.len(), d.backend_groups.clone()),
            (0, vec![group(1)])
        );
        assert_eq!(d.health_check, HealthCheck::default());
        assert_eq!(d.zone_policy, ZonePolicy::default());
        assert_eq!((d.scheme, d.ip_mode), (Scheme::External, IpMode::Vip));
        assert_eq!(d.tags["kubernetes.io/cluster/demo"], "owned");
        assert_eq!(d.tags[names::TAG_SERVICE_NAME], "shop/web");
        assert_eq!(
            d.tags[names::TAG_SERVICE_UID],
            "0f3c2a9b-7d1e-4c55-9a8b-123456789abc"
        );
    }

    #[test]
    fn traffic_distribution_local_policy_and_annotations() {
        let s = svc(
            json!({"spec": {"trafficDistribution": "PreferSameZone", "externalTrafficPolicy": "Local", "healthCheckNodePort": 32001}}),
        );
        let d = desired("c", &s, &[]).unwrap();
        assert_eq!(d.zone_policy.zone_affinity, ZoneAffinity::PreferSameZone);
        assert_eq!(
            (
                d.health_check.protocol,
                d.health_check.port,
                d.health_check.path.as_deref()
            ),
            (HealthCheckProtocol::Http, Some(32001), Some("/healthz"))
        );
        assert_eq!(
            desired(
                "c",
                &svc(json!({"spec": {"trafficDistribution": "PreferClose"}})),
                &[]
            )
            .unwrap()
            .zone_policy
            .zone_affinity,
            ZoneAffinity::PreferSameZone
        );
        let s = svc(json!({"metadata": {"annotations": {
            names::ANN_CROSS_ZONE: "true", names::ANN_ZONE_AFFINITY: "same-zone-only", names::ANN_FAIL_OPEN: "false",
            names::ANN_BALANCING: "least-connections", names::ANN_INTERNAL: "true", names::ANN_IP_MODE: "Proxy", names::ANN_IPS: "127.64.1.9, 127.64.2.9",
            names::ANN_ZONES: "zone-a,zone-b", names::ANN_HC_PROTOCOL: "http", names::ANN_HC_PATH: "/ready", names::ANN_HC_INTERVAL: "3"}},
            "spec": {"trafficDistribution": "PreferSameZone"}}));
        let d = desired("c", &s, &[]).unwrap();
        assert_eq!(
            d.zone_policy,
            ZonePolicy {
                cross_zone: true,
                zone_affinity: ZoneAffinity::SameZoneOnly,
                fail_open: false,
                balancing: Balancing::LeastConnections,
                ..ZonePolicy::default()
            }
        );
        // Envoy's zone-aware routing is an explicit opt-in, with its thresholds.
        let s = svc(json!({"metadata": {"annotations": {
            names::ANN_ZONE_AFFINITY: "balanced", names::ANN_MIN_CLUSTER_SIZE: "1", names::ANN_PANIC_THRESHOLD: "0"}},
            "spec": {"trafficDistribution": "PreferSameZone"}}));
        let p = desired("c", &s, &[]).unwrap().zone_policy;
        assert_eq!(
            (
                p.zone_affinity,
                p.min_cluster_size,
                p.panic_threshold_percent
            ),
            (ZoneAffinity::Balanced, 1, 0)
        );
        let s = svc(json!({"metadata": {"annotations": {names::ANN_PANIC_THRESHOLD: "150"}}}));
        assert!(
            desired("c", &s, &[])
                .unwrap_err()
                .contains("150 is not a percentage")
        );
        assert_eq!((d.scheme, d.ip_mode), (Scheme::Internal, IpMode::Proxy));
        assert_eq!(d.requested_ips.len(), 2);
        assert_eq!(d.zones, Some(vec!["zone-a".into(), "zone-b".into()]));
        assert_eq!(
            (
                d.health_check.protocol,
                d.health_check.path.as_deref(),
                d.health_check.interval_seconds
            ),
            (HealthCheckProtocol::Http, Some("/ready"), 3)
        );
    }

    #[test]
    fn bad_services_are_errors_that_name_the_cause() {
        let cases = [
            (
                json!({"spec": {"ports": [{"port": 80, "protocol": "SCTP", "nodePort": 30080}]}}),
                "SCTP",
            ),
            (json!({"spec": {"ports": [{"port": 80}]}}), "no nodePort"),
            (json!({"spec": {"ports": []}}), "no ports"),
            (
                json!({"metadata": {"annotations": {names::ANN_CROSS_ZONE: "maybe"}}}),
                names::ANN_CROSS_ZONE,
            ),
            (
                json!({"metadata": {"annotations": {names::ANN_ZONE_AFFINITY: "nearby"}}}),
                names::ANN_ZONE_AFFINITY,
            ),
            (
                json!({"metadata": {"annotations": {names::ANN_IPS: "not-an-ip"}}}),
                names::ANN_IPS,
            ),
            (
                json!({"metadata": {"annotations": {names::ANN_HC_PORT: "70000"}}}),
                names::ANN_HC_PORT,
            ),
        ];
        for (extra, want) in cases {
            let e = desired("c", &svc(extra.clone()), &[]).unwrap_err();
            assert!(e.contains(want), "{extra}: {e}");
        }
    }

    fn existing(d: &CreateLoadBalancerRequest) -> LoadBalancer {
        serde_json::from_value(json!({
            "id": "lb-0000000000000001", "name": d.name, "region": "sim-1", "state": "active", "scheme": d.scheme, "ip_mode": d.ip_mode,
            "listeners": d.listeners, "backends": [], "backend_groups": d.backend_groups,
            "health_check": d.health_check, "zone_policy": d.zone_policy,
            "frontends": [{"zone": "zone-a", "ip": "127.64.1.2"}, {"zone": "zone-b", "ip": "127.64.2.2"}],
            "tags": d.tags, "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z", "etag": "1"
        }))
        .unwrap()
    }

    #[test]
    fn change_table() {
        let nodes = [group(1)];
        let d = desired("c", &svc(json!({})), &nodes).unwrap();
        let lb = existing(&d);
        assert_eq!(change(&lb, &d), Change::None);
        let more = desired("c", &svc(json!({})), &[group(1), group(2)]).unwrap();
        match change(&lb, &more) {
            Change::Update(u) => assert_eq!(
                (u.backend_groups.map(|g| g.len()), u.listeners.is_none()),
                (Some(2), true)
            ),
            other => panic!("{other:?}"),
        }
        let internal = desired(
            "c",
            &svc(json!({"metadata": {"annotations": {names::ANN_INTERNAL: "true"}}})),
            &nodes,
        )
        .unwrap();
        assert!(matches!(change(&lb, &internal), Change::Recreate(_)));
        let zones = desired(
            "c",
            &svc(json!({"metadata": {"annotations": {names::ANN_ZONES: "zone-a"}}})),
            &nodes,
        )
        .unwrap();
        assert!(matches!(change(&lb, &zones), Change::Recreate(_)));
        let pinned = desired(
            "c",
            &svc(json!({"metadata": {"annotations": {names::ANN_IPS: "127.64.1.2"}}})),
            &nodes,
        )
        .unwrap();
        assert_eq!(change(&lb, &pinned), Change::None);
    }

    #[test]
    fn status_has_one_ingress_per_frontend_with_ip_mode_and_ports() {
        let d = desired(
            "c",
            &svc(json!({"metadata": {"annotations": {names::ANN_IP_MODE: "Proxy"}}})),
            &[],
        )
        .unwrap();
        let s = status(&existing(&d));
        let ingress = s.ingress.unwrap();
        assert_eq!(ingress.len(), 2);
        assert_eq!(ingress[0].ip.as_deref(), Some("127.64.1.2"));
        assert_eq!(ingress[0].ip_mode.as_deref(), Some("Proxy"));
        assert_eq!(ingress[0].ports.as_ref().unwrap()[0].port, 80);
    }

    #[test]
    fn every_invalid_annotation_is_reported_at_once() {
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "annotations": {
                names::ANN_CROSS_ZONE: "maybe",
                names::ANN_HC_INTERVAL: "soon",
                names::ANN_BALANCING: "random",
                names::ANN_IPS: "10.0.0.1,not-an-ip",
            }},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "nodePort": 30080}]},
        }))
        .unwrap();
        let e = desired("c", &svc, &[]).unwrap_err();
        for key in [
            names::ANN_CROSS_ZONE,
            names::ANN_HC_INTERVAL,
            names::ANN_BALANCING,
            names::ANN_IPS,
        ] {
            assert!(e.contains(key), "{key} missing from {e}");
        }
        assert_eq!(e.matches("; ").count(), 3, "{e}");
    }

    #[test]
    fn spec_load_balancer_ip_is_honoured_inside_a_pool_only() {
        let pools: Vec<(String, ipnet::Ipv4Net)> = vec![
            ("zone-a".into(), "127.64.1.0/24".parse().unwrap()),
            ("zone-b".into(), "127.64.2.0/24".parse().unwrap()),
        ];
        let svc = |ip: Option<&str>| -> Service {
            serde_json::from_value(serde_json::json!({"metadata": {"name": "s"},
                "spec": {"type": "LoadBalancer", "loadBalancerIP": ip}}))
            .unwrap()
        };
        /// The address used, or text the warning must contain.
        type Want = Result<Option<&'static str>, &'static str>;
        let table: Vec<(Option<&str>, Want)> = vec![
            (None, Ok(None)),
            (Some(""), Ok(None)),
            (Some("127.64.2.7"), Ok(Some("127.64.2.7"))),
            (
                Some("8.8.8.8"),
                Err("zone-a 127.64.1.0/24, zone-b 127.64.2.0/24"),
            ),
            (Some("nope"), Err("is not an IPv4 address")),
        ];
        for (ip, want) in table {
            let got = load_balancer_ip(&svc(ip), &pools);
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w.map(|w| w.parse().unwrap()), "{ip:?}"),
                (Err(g), Err(w)) => assert!(g.contains(w), "{ip:?}: {g}"),
                (g, w) => panic!("{ip:?}: got {g:?}, want {w:?}"),
            }
        }
    }
}
