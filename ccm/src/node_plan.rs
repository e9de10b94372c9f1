//! Pure planning for the node controllers: what initialisation writes, which addresses a node
//! gets (with the `provided-node-ip` rules), which labels are reconciled, and the shutdown taint.
//! No I/O here; table-driven tests beside.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Node, NodeAddress as K8sAddress, Taint};

use crate::cloud::{InstanceMetadata, NodeAddress, provider_id};
use crate::names;

/// The Ready condition's status (absent counts as Unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    True,
    False,
    Unknown,
}

pub fn ready(node: &Node) -> Ready {
    let status = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.as_str());
    match status {
        Some("True") => Ready::True,
        Some("False") => Ready::False,
        _ => Ready::Unknown,
    }
}

fn taints(node: &Node) -> &[Taint] {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default()
}

/// Only the key matters (any value or effect).
pub fn has_uninitialized_taint(node: &Node) -> bool {
    taints(node)
        .iter()
        .any(|t| t.key == names::TAINT_UNINITIALIZED)
}

pub fn has_shutdown_taint(node: &Node) -> bool {
    taints(node)
        .iter()
        .any(|t| t.key == names::TAINT_SHUTDOWN && t.effect == "NoSchedule")
}

/// The taint list with the shutdown taint added, or `None` if it is already there.
pub fn taints_with_shutdown(node: &Node) -> Option<Vec<Taint>> {
    if has_shutdown_taint(node) {
        return None;
    }
    let mut out = taints(node).to_vec();
    out.push(Taint {
        key: names::TAINT_SHUTDOWN.into(),
        effect: "NoSchedule".into(),
        value: None,
        time_added: None,
    });
    Some(out)
}

/// The taint list without the shutdown taint, or `None` if it was not there.
pub fn taints_without_shutdown(node: &Node) -> Option<Vec<Taint>> {
    if !has_shutdown_taint(node) {
        return None;
    }
    Some(
        taints(node)
            .iter()
            .filter(|t| !(t.key == names::TAINT_SHUTDOWN && t.effect == "NoSchedule"))
            .cloned()
            .collect(),
    )
}

/// Why a node cannot be initialised yet (the taint stays and the node is retried).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("cloud provider does not set node provider ID for node {0}")]
    NoProviderId(String),
    #[error("provided node ip for node {node} is not valid: {reason}")]
    ProvidedNodeIp { node: String, reason: String },
}

/// Parses `alpha.kubernetes.io/provided-node-ip`: one IP, or a dual-stack pair (one IPv4 and one
/// IPv6, neither unspecified).
pub fn parse_node_ip_annotation(s: &str) -> Result<Vec<IpAddr>, String> {
    let ips = s
        .split(',')
        .map(|p| {
            p.parse::<IpAddr>()
                .map_err(|_| format!("could not parse {p:?} as an IP address"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    match ips.as_slice() {
        [_] => Ok(ips),
        [a, b] => {
            if a.is_ipv4() == b.is_ipv4() {
                return Err("a dual-stack pair needs one IPv4 and one IPv6 address".into());
            }
            if a.is_unspecified() || b.is_unspecified() {
                return Err("a dual-stack pair may not contain an unspecified address".into());
            }
            Ok(ips)
        }
        _ => Err(format!(
            "expected one IP or a dual-stack pair, got {}",
            ips.len()
        )),
    }
}

/// Upstream's `GetNodeAddressesFromNodeIP`: cloud addresses equal to each node IP first, then the
/// cloud's other addresses whose type was not matched (so siblings of a matched type are dropped).
pub fn addresses_for_node_ips(
    node_ips: &[IpAddr],
    cloud: &[NodeAddress],
) -> Result<Vec<NodeAddress>, String> {
    let mut out = Vec::new();
    let mut matched_types: Vec<&str> = Vec::new();
    for ip in node_ips {
        let mut found = false;
        for a in cloud {
            if a.address.parse::<IpAddr>().is_ok_and(|x| x == *ip) {
                found = true;
                if !out.contains(a) {
                    out.push(a.clone());
                }
                matched_types.push(&a.kind);
            }
        }
        if !found {
            return Err(format!(
                "failed to get node address from cloud provider that matches ip: {ip}"
            ));
        }
    }
    out.extend(
        cloud
            .iter()
            .filter(|a| !matched_types.contains(&a.kind.as_str()))
            .cloned(),
    );
    Ok(out)
}

/// The addresses a node should have given the cloud's, or `None` to leave them alone (the cloud
/// returned none). Keeps the kubelet's Hostname when the cloud reports no Hostname, and applies
/// the provided-node-ip rules.
pub fn desired_addresses(
    node: &Node,
    cloud: &[NodeAddress],
) -> Result<Option<Vec<NodeAddress>>, String> {
    if cloud.is_empty() {
        return Ok(None);
    }
    let mut addrs = cloud.to_vec();
    if !addrs.iter().any(|a| a.kind == "Hostname") {
        addrs.extend(
            current_addresses(node)
                .into_iter()
                .filter(|a| a.kind == "Hostname"),
        );
    }
    if let Some(ann) = node
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(names::ANNOTATION_PROVIDED_NODE_IP))
    {
        let ips = parse_node_ip_annotation(ann)?;
        addrs = addresses_for_node_ips(&ips, &addrs)?;
    }
    Ok(Some(addrs))
}

pub fn current_addresses(node: &Node) -> Vec<NodeAddress> {
    node.status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .map(|v| {
            v.iter()
                .map(|a| NodeAddress {
                    kind: a.type_.clone(),
                    address: a.address.clone(),
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn to_k8s(addrs: &[NodeAddress]) -> Vec<K8sAddress> {
    addrs
        .iter()
        .map(|a| K8sAddress {
            type_: a.kind.clone(),
            address: a.address.clone(),
        })
        .collect()
}

/// True when the node's addresses differ from `desired`. Deliberately stricter than upstream's
/// per-type map (which reports a change on every pass for nodes with two addresses of one type):
/// any difference in content or order is a change, and equal lists never cause a write.
pub fn addresses_changed(node: &Node, desired: &[NodeAddress]) -> bool {
    current_addresses(node) != desired
}

/// True for label keys in the `kubernetes.io` / `k8s.io` namespaces, which cloud metadata may not set.
fn reserved_label(key: &str) -> bool {
    let prefix = key.split_once('/').map_or("", |(p, _)| p);
    ["kubernetes.io", "k8s.io"]
        .iter()
        .any(|ns| prefix == *ns || prefix.ends_with(&format!(".{ns}")))
}

/// The node after initialisation: provider ID (only if it had none), GA and beta zone, region and
/// instance-type labels, additional labels (never overwriting, never reserved namespaces), and the
/// uninitialized taint removed. Validates `provided-node-ip` against the cloud's addresses.
pub fn initialize(node: &Node, md: &InstanceMetadata) -> Result<Node, PlanError> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let mut out = node.clone();
    if md.provider_id.is_empty() && provider_id(node).is_none() {
        return Err(PlanError::NoProviderId(name));
    }
    if let Some(ann) = node
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(names::ANNOTATION_PROVIDED_NODE_IP))
    {
        parse_node_ip_annotation(ann)
            .and_then(|ips| addresses_for_node_ips(&ips, &md.node_addresses))
            .map_err(|reason| PlanError::ProvidedNodeIp {
                node: name.clone(),
                reason,
            })?;
    }
    let spec = out.spec.get_or_insert_with(Default::default);
    if spec.provider_id.as_deref().unwrap_or("").is_empty() && !md.provider_id.is_empty() {
        spec.provider_id = Some(md.provider_id.clone());
    }
    if let Some(t) = spec.taints.as_mut() {
        t.retain(|t| t.key != names::TAINT_UNINITIALIZED);
    }
    let labels = out.metadata.labels.get_or_insert_with(BTreeMap::new);
    let mut set = |keys: [&str; 2], value: &str| {
        if !value.is_empty() {
            for k in keys {
                labels.insert(k.to_owned(), value.to_owned());
            }
        }
    };
    set(
        [names::LABEL_INSTANCE_TYPE_BETA, names::LABEL_INSTANCE_TYPE],
        &md.instance_type,
    );
    set([names::LABEL_ZONE_BETA, names::LABEL_ZONE], &md.zone);
    set([names::LABEL_REGION_BETA, names::LABEL_REGION], &md.region);
    for (k, v) in &md.additional_labels {
        if reserved_label(k) {
            tracing::warn!(node = %name, label = %k, "discarding node label with kubernetes namespace");
            continue;
        }
        match labels.get(k) {
            Some(existing) if existing != v => {
                tracing::warn!(node = %name, label = %k, existing = %existing, cloud = %v, "not overwriting existing node label");
            }
            Some(_) => {}
            None => {
                labels.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(out)
}

/// For initialised nodes: GA labels that must be set from their beta twin (beta is the source of
/// truth, as upstream).
pub fn labels_to_reconcile(node: &Node) -> BTreeMap<String, String> {
    let Some(labels) = node.metadata.labels.as_ref() else {
        return BTreeMap::new();
    };
    [
        (names::LABEL_ZONE_BETA, names::LABEL_ZONE),
        (names::LABEL_REGION_BETA, names::LABEL_REGION),
        (names::LABEL_INSTANCE_TYPE_BETA, names::LABEL_INSTANCE_TYPE),
    ]
    .into_iter()
    .filter_map(|(beta, ga)| {
        let v = labels.get(beta)?;
        (labels.get(ga) != Some(v)).then(|| (ga.to_owned(), v.clone()))
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(v: serde_json::Value) -> Node {
        serde_json::from_value(v).unwrap()
    }

    fn md() -> InstanceMetadata {
        InstanceMetadata {
            provider_id: "simcloud://zone-a/i-0000000000000001".into(),
            instance_type: "sim.small".into(),
            node_addresses: vec![
                NodeAddress::new("InternalIP", "127.1.1.2"),
                NodeAddress::new("Hostname", "n1"),
            ],
            zone: "zone-a".into(),
            region: "sim-1".into(),
            additional_labels: BTreeMap::from([
                (
                    "simcloud.dev/instance-id".to_owned(),
                    "i-0000000000000001".to_owned(),
                ),
                ("node.kubernetes.io/sneaky".to_owned(), "x".to_owned()),
                ("team".to_owned(), "cloud".to_owned()),
            ]),
        }
    }

    fn uninit(extra: serde_json::Value) -> Node {
        let mut v = json!({"metadata": {"name": "n1", "labels": {"team": "mine"}},
            "spec": {"taints": [{"key": names::TAINT_UNINITIALIZED, "value": "true", "effect": "NoSchedule"}, {"key": "keep", "effect": "NoExecute"}]}});
        json_patch::merge(&mut v, &extra);
        node(v)
    }

    #[test]
    fn initialisation_writes_ids_labels_and_removes_only_the_taint() {
        let n = initialize(&uninit(json!({})), &md()).unwrap();
        let spec = n.spec.as_ref().unwrap();
        assert_eq!(
            spec.provider_id.as_deref(),
            Some("simcloud://zone-a/i-0000000000000001")
        );
        assert_eq!(
            spec.taints
                .as_ref()
                .unwrap()
                .iter()
                .map(|t| t.key.as_str())
                .collect::<Vec<_>>(),
            ["keep"]
        );
        let l = n.metadata.labels.unwrap();
        for (k, v) in [
            (names::LABEL_ZONE, "zone-a"),
            (names::LABEL_ZONE_BETA, "zone-a"),
            (names::LABEL_REGION, "sim-1"),
            (names::LABEL_REGION_BETA, "sim-1"),
            (names::LABEL_INSTANCE_TYPE, "sim.small"),
            (names::LABEL_INSTANCE_TYPE_BETA, "sim.small"),
            ("simcloud.dev/instance-id", "i-0000000000000001"),
            ("team", "mine"),
        ] {
            assert_eq!(l.get(k).map(String::as_str), Some(v), "{k}");
        }
        assert!(
            !l.contains_key("node.kubernetes.io/sneaky"),
            "reserved namespaces are dropped"
        );
    }

    #[test]
    fn provider_id_rules() {
        // An existing provider ID is never replaced.
        let n = initialize(
            &uninit(json!({"spec": {"providerID": "simcloud://zone-a/i-00000000000000ff"}})),
            &md(),
        )
        .unwrap();
        assert_eq!(
            n.spec.unwrap().provider_id.as_deref(),
            Some("simcloud://zone-a/i-00000000000000ff")
        );
        // Metadata without one is fine when the node has one, an error otherwise.
        let none = InstanceMetadata {
            provider_id: String::new(),
            ..md()
        };
        assert!(
            initialize(
                &uninit(json!({"spec": {"providerID": "simcloud://zone-a/i-00000000000000ff"}})),
                &none
            )
            .is_ok()
        );
        assert_eq!(
            initialize(&uninit(json!({})), &none).unwrap_err(),
            PlanError::NoProviderId("n1".into())
        );
    }

    #[test]
    fn provided_node_ip_must_match_a_cloud_address() {
        let ann = |ip: &str| json!({"metadata": {"annotations": {names::ANNOTATION_PROVIDED_NODE_IP: ip}}});
        assert!(initialize(&uninit(ann("127.1.1.2")), &md()).is_ok());
        assert!(matches!(
            initialize(&uninit(ann("10.0.0.9")), &md()),
            Err(PlanError::ProvidedNodeIp { .. })
        ));
        assert!(matches!(
            initialize(&uninit(ann("not-an-ip")), &md()),
            Err(PlanError::ProvidedNodeIp { .. })
        ));
    }

    #[test]
    fn node_ip_annotation_parsing() {
        assert_eq!(parse_node_ip_annotation("10.0.0.1").unwrap().len(), 1);
        assert_eq!(
            parse_node_ip_annotation("10.0.0.1,fd00::1").unwrap().len(),
            2
        );
        for bad in [
            "",
            "10.0.0.1,10.0.0.2",
            "fd00::1,fd00::2",
            "0.0.0.0,fd00::1",
            "10.0.0.1,fd00::1,10.0.0.3",
            "10.0.0.1 ",
        ] {
            assert!(parse_node_ip_annotation(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn address_selection_table() {
        let a = |k: &str, v: &str| NodeAddress::new(k, v);
        let cloud = vec![
            a("InternalIP", "10.0.0.1"),
            a("InternalIP", "10.0.0.2"),
            a("ExternalIP", "1.2.3.4"),
            a("Hostname", "n1"),
        ];
        let cases: Vec<(&str, Result<Vec<NodeAddress>, ()>)> = vec![
            // The matched InternalIP first; its sibling InternalIP dropped; other types kept.
            (
                "10.0.0.2",
                Ok(vec![
                    a("InternalIP", "10.0.0.2"),
                    a("ExternalIP", "1.2.3.4"),
                    a("Hostname", "n1"),
                ]),
            ),
            (
                "1.2.3.4",
                Ok(vec![
                    a("ExternalIP", "1.2.3.4"),
                    a("InternalIP", "10.0.0.1"),
                    a("InternalIP", "10.0.0.2"),
                    a("Hostname", "n1"),
                ]),
            ),
            ("10.9.9.9", Err(())),
        ];
        for (ip, want) in cases {
            let got = addresses_for_node_ips(&parse_node_ip_annotation(ip).unwrap(), &cloud)
                .map_err(|_| ());
            assert_eq!(got, want, "{ip}");
        }
    }

    #[test]
    fn desired_addresses_keep_the_kubelet_hostname_and_never_clear() {
        let n = node(
            json!({"metadata": {"name": "n1"}, "status": {"addresses": [{"type": "Hostname", "address": "kubelet-name"}]}}),
        );
        assert_eq!(desired_addresses(&n, &[]).unwrap(), None);
        let got = desired_addresses(&n, &[NodeAddress::new("InternalIP", "10.0.0.1")])
            .unwrap()
            .unwrap();
        assert_eq!(
            got,
            vec![
                NodeAddress::new("InternalIP", "10.0.0.1"),
                NodeAddress::new("Hostname", "kubelet-name")
            ]
        );
        // A cloud Hostname wins over the kubelet's.
        let got = desired_addresses(&n, &[NodeAddress::new("Hostname", "cloud-name")])
            .unwrap()
            .unwrap();
        assert_eq!(got, vec![NodeAddress::new("Hostname", "cloud-name")]);
        assert!(addresses_changed(&n, &got));
        assert!(!addresses_changed(
            &n,
            &[NodeAddress::new("Hostname", "kubelet-name")]
        ));
    }

    #[test]
    fn label_reconciliation_copies_beta_to_ga() {
        let n = node(json!({"metadata": {"name": "n1", "labels": {
            names::LABEL_ZONE_BETA: "zone-b", names::LABEL_ZONE: "zone-a",
            names::LABEL_REGION_BETA: "sim-1", names::LABEL_REGION: "sim-1",
            names::LABEL_INSTANCE_TYPE_BETA: "sim.large"}}}));
        let want = BTreeMap::from([
            (names::LABEL_ZONE.to_owned(), "zone-b".to_owned()),
            (
                names::LABEL_INSTANCE_TYPE.to_owned(),
                "sim.large".to_owned(),
            ),
        ]);
        assert_eq!(labels_to_reconcile(&n), want);
        assert!(labels_to_reconcile(&node(json!({"metadata": {"name": "x"}}))).is_empty());
    }

    #[test]
    fn readiness_and_shutdown_taint() {
        let with = |status: &str| {
            node(
                json!({"metadata": {"name": "n"}, "status": {"conditions": [{"type": "Ready", "status": status}]}}),
            )
        };
        assert_eq!(ready(&with("True")), Ready::True);
        assert_eq!(ready(&with("False")), Ready::False);
        assert_eq!(ready(&with("Unknown")), Ready::Unknown);
        assert_eq!(
            ready(&node(json!({"metadata": {"name": "n"}}))),
            Ready::Unknown
        );
        let n = node(
            json!({"metadata": {"name": "n"}, "spec": {"taints": [{"key": "other", "effect": "NoSchedule"}]}}),
        );
        let added = taints_with_shutdown(&n).unwrap();
        assert_eq!(added.len(), 2);
        assert_eq!(added[1].value, None, "the shutdown taint has no value");
        let tainted = node(json!({"metadata": {"name": "n"}, "spec": {"taints": added}}));
        assert!(taints_with_shutdown(&tainted).is_none());
        assert_eq!(taints_without_shutdown(&tainted).unwrap().len(), 1);
        assert!(taints_without_shutdown(&n).is_none());
    }
}
