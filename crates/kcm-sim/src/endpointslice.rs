//! The EndpointSlice controller's stand-in, pure: the slices a Service's Pods make, matched to
//! the existing ones, with hints from `crates/topology` exactly as upstream's reconciler
//! decides them (Auto via the topology cache and its events, else `trafficDistribution`).
//!
//! Endpoints follow upstream's `podToEndpoint`: `serving` is the Pod's Ready condition,
//! `terminating` its deletion, `ready` is serving and not terminating (or
//! `publishNotReadyAddresses`); the zone comes from the Pod's Node. Pods without an IP or that
//! finished are left out. Endpoints with the same resolved ports share slices of at most 100,
//! IPv4 only.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use topology::auto::{Event, SliceInfo, TopologyCache};

/// `endpointslice.kubernetes.io/managed-by` of the slices this controller owns.
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
pub const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// Upstream's `--max-endpoints-per-slice` default.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
const ADDRESS_TYPE: &str = "IPv4";

/// What to write for one Service.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SlicePlan {
    pub create: Vec<EndpointSlice>,
    pub update: Vec<EndpointSlice>,
    /// Names of slices to delete.
    pub delete: Vec<String>,
    /// Events for the Service (the topology cache's).
    pub events: Vec<Event>,
}

/// Whether the controller manages slices for `svc`: it has a selector and is not ExternalName.
pub fn manages(svc: &Service) -> bool {
    let Some(spec) = &svc.spec else { return false };
    spec.type_.as_deref() != Some("ExternalName")
        && spec.selector.as_ref().is_some_and(|s| !s.is_empty())
}

fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Upstream's `FindPort`: a number is itself; a name is looked up in the Pod's containers.
fn find_port(pod: &Pod, target: &IntOrString) -> Option<i32> {
    match target {
        IntOrString::Int(n) => Some(*n),
        IntOrString::String(name) => pod
            .spec
            .iter()
            .flat_map(|s| &s.containers)
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port),
    }
}

fn endpoint_ports(svc: &Service, pod: &Pod) -> Vec<EndpointPort> {
    svc.spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .filter_map(|sp| {
            let target = sp.target_port.clone().unwrap_or(IntOrString::Int(sp.port));
            Some(EndpointPort {
                name: Some(sp.name.clone().unwrap_or_default()),
                port: Some(find_port(pod, &target)?),
                protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect()
}

/// Zone of each Node that has one, by Node name: what planning reads of Nodes.
pub type NodeZones = HashMap<String, String>;

pub fn node_zones<'a>(nodes: impl IntoIterator<Item = &'a Node>) -> NodeZones {
    nodes
        .into_iter()
        .filter_map(|n| {
            let zone = n.metadata.labels.as_ref()?.get(topology::LABEL_ZONE)?;
            Some((n.metadata.name.clone()?, zone.clone()))
        })
        .collect()
}

/// The endpoint of `pod` for `svc` (upstream's `podToEndpoint`), or `None` when the Pod is not
/// in the Service's endpoints (no IP, or finished).
pub fn pod_endpoint(svc: &Service, pod: &Pod, zones: &NodeZones) -> Option<Endpoint> {
    let status = pod.status.as_ref()?;
    let ip = status.pod_ip.clone().filter(|ip| !ip.is_empty())?;
    if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return None;
    }
    let serving = pod_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let publish = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    Some(Endpoint {
        addresses: vec![ip],
        conditions: Some(EndpointConditions {
            ready: Some(publish || (serving && !terminating)),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        zone: node.as_deref().and_then(|n| zones.get(n).cloned()),
        node_name: node,
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Whether the Service's selector picks the Pod (same namespace).
pub fn selected(svc: &Service, pod: &Pod) -> bool {
    let sel = svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default();
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    pod.metadata.namespace == svc.metadata.namespace
        && !sel.is_empty()
        && sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    labels.insert(
        LABEL_SERVICE_NAME.into(),
        svc.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(LABEL_MANAGED_BY.into(), MANAGED_BY.into());
    if svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None") {
        labels.insert("service.kubernetes.io/headless".into(), String::new());
    }
    labels
}

fn new_slice(svc: &Service, ports: Vec<EndpointPort>, endpoints: Vec<Endpoint>) -> EndpointSlice {
    let name = svc.metadata.name.clone().unwrap_or_default();
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: svc.metadata.namespace.clone(),
            labels: Some(slice_labels(svc)),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Service".into(),
                name,
                uid: svc.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        address_type: ADDRESS_TYPE.into(),
        endpoints,
        ports: Some(ports),
    }
}

fn without_hints(endpoints: &[Endpoint]) -> Vec<Endpoint> {
    let mut out = endpoints.to_vec();
    for e in &mut out {
        e.hints = None;
    }
    out.sort_by(|a, b| a.addresses.cmp(&b.addresses));
    out
}

/// Whether `svc` uses `trafficDistribution` (a value this release knows, and no Auto annotation).
fn uses_traffic_distribution(svc: &Service, auto: bool) -> bool {
    let td = svc
        .spec
        .as_ref()
        .and_then(|s| s.traffic_distribution.as_deref());
    !auto
        && matches!(
            td,
            Some(topology::PREFER_CLOSE | topology::PREFER_SAME_ZONE | topology::PREFER_SAME_NODE)
        )
}

/// The plan for `svc`, given every Pod of its namespace, the Nodes, and the slices this
/// controller already has for it. `cache` is the controller's topology cache (its nodes set).
pub fn plan(
    svc: &Service,
    pods: &[Pod],
    zones: &NodeZones,
    existing: &[EndpointSlice],
    cache: &mut TopologyCache,
) -> SlicePlan {
    // Desired endpoints, grouped by their port set.
    let mut groups: BTreeMap<String, (Vec<EndpointPort>, Vec<Endpoint>)> = BTreeMap::new();
    for pod in pods.iter().filter(|p| selected(svc, p)) {
        let Some(ep) = pod_endpoint(svc, pod, zones) else {
            continue;
        };
        let ports = endpoint_ports(svc, pod);
        let key = serde_json::to_string(&ports).unwrap_or_default();
        groups
            .entry(key)
            .or_insert_with(|| (ports, Vec::new()))
            .1
            .push(ep);
    }
    let labels = slice_labels(svc);
    let mut unused: Vec<&EndpointSlice> = existing.iter().collect();
    let (mut to_create, mut to_update, mut unchanged) = (Vec::new(), Vec::new(), Vec::new());
    for (key, (ports, mut endpoints)) in groups {
        endpoints.sort_by(|a, b| a.addresses.cmp(&b.addresses));
        for chunk in endpoints.chunks(MAX_ENDPOINTS_PER_SLICE) {
            let reuse = unused.iter().position(|s| {
                serde_json::to_string(s.ports.as_deref().unwrap_or_default()).unwrap_or_default()
                    == key
            });
            match reuse.map(|i| unused.remove(i)) {
                Some(old) => {
                    let same = without_hints(&old.endpoints) == without_hints(chunk)
                        && old.metadata.labels.as_ref() == Some(&labels);
                    if same {
                        unchanged.push(old.clone());
                    } else {
                        let mut s = old.clone();
                        s.endpoints = chunk.to_vec();
                        s.metadata.labels = Some(labels.clone());
                        to_update.push(s);
                    }
                }
                None => to_create.push(new_slice(svc, ports.clone(), chunk.to_vec())),
            }
        }
    }
    let delete: Vec<String> = unused
        .iter()
        .filter_map(|s| s.metadata.name.clone())
        .collect();

    let key = format!(
        "{}/{}",
        svc.metadata.namespace.as_deref().unwrap_or("default"),
        svc.metadata.name.as_deref().unwrap_or("")
    );
    let mut si = SliceInfo {
        service_key: key.clone(),
        address_type: ADDRESS_TYPE.into(),
        to_create,
        to_update,
        unchanged,
    };
    let auto = topology::hints_enabled(&svc.metadata.annotations.clone().unwrap_or_default());
    let td = uses_traffic_distribution(svc, auto);
    let mut events = Vec::new();
    if auto {
        events = cache.add_hints(&mut si);
    } else {
        if cache.has_populated_hints(&key) {
            events.push(Event::disabled(topology::auto::with_address_type(
                topology::auto::HINTS_DISABLED,
                ADDRESS_TYPE,
            )));
        }
        cache.remove_hints(&key, ADDRESS_TYPE);
        if !td {
            topology::auto::remove_hints_from_slices(&mut si);
        }
    }
    if td {
        topology::trafficdist::reconcile_hints(
            svc.spec
                .as_ref()
                .and_then(|s| s.traffic_distribution.as_deref()),
            &mut si.to_create,
            &mut si.to_update,
            &mut si.unchanged,
        );
    }
    // An update that ends up as the slice already is needs no write.
    let update = si
        .to_update
        .into_iter()
        .filter(|s| existing.iter().find(|o| o.metadata.name == s.metadata.name) != Some(s))
        .collect();
    SlicePlan {
        create: si.to_create,
        update,
        delete,
        events,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn service(extra: Value) -> Service {
        let mut v = json!({"metadata": {"name": "web", "namespace": "default", "uid": "s-1"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}});
        if let Value::Object(m) = extra {
            for (k, x) in m {
                if let (Some(Value::Object(a)), Value::Object(b)) = (v.get_mut(&k), &x) {
                    for (kk, vv) in b {
                        a.insert(kk.clone(), vv.clone());
                    }
                } else {
                    v[&k] = x;
                }
            }
        }
        serde_json::from_value(v).unwrap()
    }

    fn node(name: &str, zone: &str) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": zone}},
            "status": {"allocatable": {"cpu": "4"}, "conditions": [{"type": "Ready", "status": "True"}]}}))
        .unwrap()
    }

    fn pod(name: &str, node: &str, ip: &str, ready: bool) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "default", "uid": format!("u-{name}"), "labels": {"app": "web"}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i", "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}}))
        .unwrap()
    }

    fn nodes() -> Vec<Node> {
        vec![
            node("a1", "zone-a"),
            node("b1", "zone-b"),
            node("c1", "zone-c"),
        ]
    }

    fn zones() -> NodeZones {
        node_zones(&nodes())
    }

    fn pods() -> Vec<Pod> {
        vec![
            pod("p1", "a1", "127.128.0.2", true),
            pod("p2", "b1", "127.128.1.2", true),
            pod("p3", "c1", "127.128.2.2", true),
            pod("p4", "c1", "127.128.2.3", false),
        ]
    }

    fn cache() -> TopologyCache {
        let mut c = TopologyCache::new();
        c.set_nodes(&nodes());
        c
    }

    #[test]
    fn endpoints_carry_zone_node_conditions_and_resolved_ports() {
        let p = plan(&service(json!({})), &pods(), &zones(), &[], &mut cache());
        assert_eq!(p.create.len(), 1);
        let s = &p.create[0];
        assert_eq!(s.metadata.generate_name.as_deref(), Some("web-"));
        let labels = s.metadata.labels.clone().unwrap();
        assert_eq!(labels[LABEL_MANAGED_BY], MANAGED_BY);
        assert_eq!(labels[LABEL_SERVICE_NAME], "web");
        assert_eq!(s.ports.as_ref().unwrap()[0].port, Some(8080));
        assert_eq!(s.endpoints.len(), 4);
        let p4 = s
            .endpoints
            .iter()
            .find(|e| e.addresses[0] == "127.128.2.3")
            .unwrap();
        assert_eq!(p4.zone.as_deref(), Some("zone-c"));
        assert_eq!(p4.node_name.as_deref(), Some("c1"));
        let c = p4.conditions.clone().unwrap();
        assert_eq!(
            (c.ready, c.serving, c.terminating),
            (Some(false), Some(false), Some(false))
        );
        assert!(s.endpoints.iter().all(|e| e.hints.is_none()));
        assert!(p.events.is_empty());
    }

    #[test]
    fn unchanged_slices_are_not_written_and_gone_ones_deleted() {
        let svc = service(json!({}));
        let mut first = plan(&svc, &pods(), &zones(), &[], &mut cache()).create;
        first[0].metadata.name = Some("web-abcde".into());
        let again = plan(&svc, &pods(), &zones(), &first, &mut cache());
        assert_eq!(again, SlicePlan::default());
        // One Pod fewer: the slice is updated in place.
        let fewer = plan(&svc, &pods()[..3], &zones(), &first, &mut cache());
        assert_eq!(fewer.update.len(), 1);
        assert_eq!(fewer.update[0].metadata.name.as_deref(), Some("web-abcde"));
        assert_eq!(fewer.update[0].endpoints.len(), 3);
        // No Pods: the slice goes.
        let none = plan(&svc, &[], &zones(), &first, &mut cache());
        assert_eq!(none.delete, vec!["web-abcde".to_owned()]);
    }

    #[test]
    fn prefer_same_zone_hints_ready_endpoints_to_their_zone() {
        let svc = service(json!({"spec": {"trafficDistribution": "PreferSameZone"}}));
        let p = plan(&svc, &pods(), &zones(), &[], &mut cache());
        for e in &p.create[0].endpoints {
            let hint = e.hints.as_ref().and_then(|h| h.for_zones.clone());
            if e.conditions.as_ref().unwrap().ready == Some(true) {
                assert_eq!(hint.unwrap()[0].name, e.zone.clone().unwrap());
            } else {
                assert!(hint.is_none());
            }
        }
    }

    #[test]
    fn auto_enables_with_an_event_and_disables_when_the_annotation_goes() {
        let auto = service(
            json!({"metadata": {"annotations": {"service.kubernetes.io/topology-mode": "Auto"}}}),
        );
        let mut c = cache();
        let three_each: Vec<Pod> = (0..9)
            .map(|i| {
                let (n, z) = [("a1", 0), ("b1", 1), ("c1", 2)][i % 3];
                pod(&format!("p{i}"), n, &format!("127.128.{z}.{}", 2 + i), true)
            })
            .collect();
        let p = plan(&auto, &three_each, &zones(), &[], &mut c);
        assert_eq!(p.events.len(), 1, "{:?}", p.events);
        assert_eq!(p.events[0].reason, topology::auto::REASON_ENABLED);
        assert!(p.create[0].endpoints.iter().all(|e| e.hints.is_some()));
        let mut slices = p.create;
        slices[0].metadata.name = Some("web-x".into());
        let plain = service(json!({}));
        let p = plan(&plain, &three_each, &zones(), &slices, &mut c);
        assert_eq!(p.events.len(), 1);
        assert_eq!(p.events[0].reason, topology::auto::REASON_DISABLED);
        assert!(p.update[0].endpoints.iter().all(|e| e.hints.is_none()));
    }

    #[test]
    fn only_selector_services_and_terminating_pods_flagged() {
        assert!(!manages(&service(json!({"spec": {"selector": {}}}))));
        assert!(!manages(&service(
            json!({"spec": {"type": "ExternalName"}})
        )));
        let mut p = pod("p1", "a1", "127.128.0.2", true);
        p.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            jiff::Timestamp::UNIX_EPOCH,
        ));
        let e = pod_endpoint(&service(json!({})), &p, &zones()).unwrap();
        let c = e.conditions.unwrap();
        assert_eq!(
            (c.ready, c.serving, c.terminating),
            (Some(false), Some(true), Some(true))
        );
    }
}
