//! kube-scheduler's stand-in, pure: which node a pending Pod goes to, or why none fits.
//!
//! Filters, in kube-scheduler's terms: NodeUnschedulable, TaintToleration (a node that is not
//! Ready counts as tainted `node.kubernetes.io/not-ready`, as the node-lifecycle controller
//! would taint it), NodeAffinity (`spec.nodeSelector` only), NodeResourcesFit (pods and CPU
//! requests against allocatable) and PodTopologySpread (`DoNotSchedule` constraints). Among
//! the nodes that pass, the one whose topology domains hold the fewest matching Pods wins, then
//! the one with the fewest Pods, then the first by name: deterministic, and it spreads as the
//! default scheduler profile does. Node affinity terms, pod (anti-)affinity and preemption are
//! not modelled.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// The taint the node-lifecycle controller puts on a node that is not Ready.
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// Pods a node takes when its status does not say (the kubelet's `maxPods` default).
pub const DEFAULT_MAX_PODS: u64 = 110;
/// kube-scheduler's name; Pods naming another scheduler are left alone.
pub const SCHEDULER_NAME: &str = "default-scheduler";

/// Whether this scheduler places `pod`: not yet bound, not being deleted, not finished, and
/// for the default scheduler.
pub fn wants_scheduling(pod: &Pod) -> bool {
    let Some(spec) = &pod.spec else { return false };
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    spec.node_name.as_deref().unwrap_or("").is_empty()
        && pod.metadata.deletion_timestamp.is_none()
        && !matches!(phase, Some("Succeeded" | "Failed"))
        && spec.scheduler_name.as_deref().unwrap_or(SCHEDULER_NAME) == SCHEDULER_NAME
}

/// Node `Ready` condition is `True`.
pub fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Trims a Node to what this crate reads of one (the scheduler and the endpoint-slice
/// controller): its name, labels and spec, its allocatable resources and whether it is Ready.
/// kcm-sim keeps every Node in a watch-fed store and never writes one back, so the rest (node
/// info, addresses, managed fields, annotations, the other conditions and every condition's
/// prose and times) is memory for nothing: about half of a kubelet's Node, times 10,000.
pub fn slim_node(n: &mut Node) {
    n.metadata.annotations = None;
    n.metadata.managed_fields = None;
    if let Some(s) = n.status.as_mut() {
        *s = k8s_openapi::api::core::v1::NodeStatus {
            allocatable: s.allocatable.take(),
            conditions: s.conditions.take().map(|cs| {
                cs.into_iter()
                    .filter(|c| c.type_ == "Ready")
                    .map(|c| k8s_openapi::api::core::v1::NodeCondition {
                        type_: c.type_,
                        status: c.status,
                        ..Default::default()
                    })
                    .collect()
            }),
            ..Default::default()
        };
    }
}

fn tolerates(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| {
        let effect_ok = t.effect.as_deref().unwrap_or("").is_empty()
            || t.effect.as_deref() == Some(taint.effect.as_str());
        let key = t.key.as_deref().unwrap_or("");
        let exists = t.operator.as_deref() == Some("Exists");
        let key_ok = (key.is_empty() && exists) || key == taint.key;
        let value_ok =
            exists || t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("");
        effect_ok && key_ok && value_ok
    })
}

/// The node's taints that keep new Pods off, with `not-ready` added when it is not Ready.
fn scheduling_taints(n: &Node) -> Vec<Taint> {
    let mut out: Vec<Taint> = n
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .collect();
    if !node_ready(n) && !out.iter().any(|t| t.key == TAINT_NOT_READY) {
        out.push(Taint {
            key: TAINT_NOT_READY.to_owned(),
            effect: "NoSchedule".to_owned(),
            ..Default::default()
        });
    }
    out
}

fn allocatable(n: &Node, resource: &str) -> Option<u64> {
    let q = n.status.as_ref()?.allocatable.as_ref()?.get(resource)?;
    match resource {
        "cpu" => topology::auto::milli_cpu(&q.0),
        _ => q.0.parse().ok(),
    }
}

/// The CPU the Pod's containers request, in millicores.
pub fn cpu_request(p: &Pod) -> u64 {
    p.spec
        .iter()
        .flat_map(|s| &s.containers)
        .filter_map(|c| c.resources.as_ref()?.requests.as_ref()?.get("cpu"))
        .filter_map(|q| topology::auto::milli_cpu(&q.0))
        .sum()
}

/// Label selector match (`matchLabels` and `matchExpressions`).
pub fn selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let exprs_ok = sel.match_expressions.iter().flatten().all(|e| {
        let values = e.values.clone().unwrap_or_default();
        let have = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => have.is_some_and(|v| values.contains(v)),
            "NotIn" => have.is_none_or(|v| !values.contains(v)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            _ => false,
        }
    });
    labels_ok && exprs_ok
}

fn labels_of(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> BTreeMap<String, String> {
    meta.labels.clone().unwrap_or_default()
}

/// Why a node did not fit, in kube-scheduler's words (the diagnosis of a failed attempt).
fn misfit(pod: &Pod, node: &Node, on_node: &[&Pod]) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        return Some("node(s) were unschedulable".to_owned());
    }
    let tolerations = spec.tolerations.clone().unwrap_or_default();
    if let Some(t) = scheduling_taints(node)
        .into_iter()
        .find(|t| !tolerates(&tolerations, t))
    {
        return Some(format!(
            "node(s) had untolerated taint {{{}: {}}}",
            t.key,
            t.value.unwrap_or_default()
        ));
    }
    let node_labels = labels_of(&node.metadata);
    if !spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| node_labels.get(k) == Some(v))
    {
        return Some("node(s) didn't match Pod's node affinity/selector".to_owned());
    }
    if on_node.len() as u64 >= allocatable(node, "pods").unwrap_or(DEFAULT_MAX_PODS) {
        return Some("Too many pods".to_owned());
    }
    let cpu = cpu_request(pod);
    if cpu > 0 {
        let used: u64 = on_node.iter().map(|p| cpu_request(p)).sum();
        if used + cpu > allocatable(node, "cpu").unwrap_or(0) {
            return Some("Insufficient cpu".to_owned());
        }
    }
    None
}

/// Pods counting against each node: bound to it and not finished.
fn active_by_node(pods: &[Pod]) -> HashMap<&str, Vec<&Pod>> {
    let mut out: HashMap<&str, Vec<&Pod>> = HashMap::new();
    for p in pods {
        let finished = matches!(
            p.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        if let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.as_deref())
            && !finished
        {
            out.entry(node).or_default().push(p);
        }
    }
    out
}

/// Matching Pods per value of `key` over `nodes` (every domain of those nodes, zero included).
fn domain_counts(
    key: &str,
    selector: Option<&LabelSelector>,
    namespace: &str,
    nodes: &[&Node],
    by_node: &HashMap<&str, Vec<&Pod>>,
) -> BTreeMap<String, usize> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for n in nodes {
        let Some(domain) = labels_of(&n.metadata).get(key).cloned() else {
            continue;
        };
        let name = n.metadata.name.as_deref().unwrap_or("");
        let matching = by_node
            .get(name)
            .into_iter()
            .flatten()
            .filter(|p| p.metadata.namespace.as_deref().unwrap_or("default") == namespace)
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| selector.is_some_and(|s| selector_matches(s, &labels_of(&p.metadata))))
            .count();
        *counts.entry(domain).or_default() += matching;
    }
    counts
}

/// Where `pod` goes among `nodes`, given the Pods already bound (`pods`), or kube-scheduler's
/// message saying why nowhere (`0/3 nodes are available: ...`).
pub fn schedule(pod: &Pod, nodes: &[Node], pods: &[Pod]) -> Result<String, String> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let by_node = active_by_node(pods);
    let on = |name: &str| by_node.get(name).map_or(&[][..], Vec::as_slice);
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut fit: Vec<&Node> = Vec::new();
    for n in nodes {
        let name = n.metadata.name.as_deref().unwrap_or("");
        match misfit(pod, n, on(name)) {
            Some(r) => *reasons.entry(r).or_default() += 1,
            None => fit.push(n),
        }
    }
    let constraints = pod
        .spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.clone())
        .unwrap_or_default();
    // Spread constraints: the counts over the nodes that pass the Pod's node selector, as
    // kube-scheduler's PodTopologySpread counts them.
    let selector = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_selector.clone())
        .unwrap_or_default();
    let eligible: Vec<&Node> = nodes
        .iter()
        .filter(|n| {
            let l = labels_of(&n.metadata);
            selector.iter().all(|(k, v)| l.get(k) == Some(v))
        })
        .collect();
    // Matching Pods per domain, once per constraint.
    let counts: Vec<BTreeMap<String, usize>> = constraints
        .iter()
        .map(|c| {
            domain_counts(
                &c.topology_key,
                c.label_selector.as_ref(),
                namespace,
                &eligible,
                &by_node,
            )
        })
        .collect();
    let mut spread_ok: Vec<&Node> = Vec::new();
    let mut score: BTreeMap<String, usize> = BTreeMap::new();
    for n in fit {
        let name = n.metadata.name.clone().unwrap_or_default();
        let labels = labels_of(&n.metadata);
        let mut ok = true;
        let mut crowd = 0;
        for (c, counts) in constraints.iter().zip(&counts) {
            let Some(domain) = labels.get(&c.topology_key) else {
                ok = false;
                break;
            };
            let here = counts.get(domain).copied().unwrap_or(0);
            let min = counts.values().copied().min().unwrap_or(0);
            if c.when_unsatisfiable == "DoNotSchedule"
                && i64::try_from(here + 1 - min).unwrap_or(i64::MAX) > i64::from(c.max_skew)
            {
                ok = false;
                break;
            }
            crowd += here;
        }
        if ok {
            score.insert(name, crowd);
            spread_ok.push(n);
        } else {
            *reasons
                .entry("node(s) didn't match pod topology spread constraints".to_owned())
                .or_default() += 1;
        }
    }
    let best = spread_ok.into_iter().min_by_key(|n| {
        let name = n.metadata.name.clone().unwrap_or_default();
        (score[&name], on(&name).len(), name)
    });
    if let Some(n) = best {
        return Ok(n.metadata.name.clone().unwrap_or_default());
    }
    let detail: Vec<String> = reasons.iter().map(|(r, c)| format!("{c} {r}")).collect();
    Err(if detail.is_empty() {
        format!("0/{} nodes are available.", nodes.len())
    } else {
        format!(
            "0/{} nodes are available: {}.",
            nodes.len(),
            detail.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn node(name: &str, zone: &str, extra: Value) -> Node {
        let mut v = json!({"metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": zone}},
            "spec": {}, "status": {"allocatable": {"cpu": "2", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}]}});
        merge(&mut v, extra);
        serde_json::from_value(v).unwrap()
    }

    fn merge(a: &mut Value, b: Value) {
        match (a, b) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    fn pod(name: &str, on: Option<&str>, extra: Value) -> Pod {
        let mut v = json!({"metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]}});
        if let Some(n) = on {
            v["spec"]["nodeName"] = json!(n);
        }
        merge(&mut v, extra);
        serde_json::from_value(v).unwrap()
    }

    fn spread() -> Value {
        json!({"spec": {"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}}]}})
    }

    #[test]
    fn placements() {
        let three = vec![
            node("a1", "zone-a", json!({})),
            node("b1", "zone-b", json!({})),
            node("c1", "zone-c", json!({})),
        ];
        struct Case {
            name: &'static str,
            nodes: Vec<Node>,
            bound: Vec<Pod>,
            pod: Pod,
            want: Result<&'static str, &'static str>,
        }
        let cases = vec![
            Case {
                name: "fewest pods first, then by name",
                nodes: three.clone(),
                bound: vec![pod("x", Some("a1"), json!({}))],
                pod: pod("p", None, json!({})),
                want: Ok("b1"),
            },
            Case {
                name: "node selector",
                nodes: three.clone(),
                bound: vec![],
                pod: pod(
                    "p",
                    None,
                    json!({"spec": {"nodeSelector": {"topology.kubernetes.io/zone": "zone-c"}}}),
                ),
                want: Ok("c1"),
            },
            Case {
                name: "impossible selector is reported",
                nodes: three.clone(),
                bound: vec![],
                pod: pod(
                    "p",
                    None,
                    json!({"spec": {"nodeSelector": {"topology.kubernetes.io/zone": "zone-x"}}}),
                ),
                want: Err(
                    "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector.",
                ),
            },
            Case {
                name: "taints need tolerations; not-ready counts as a taint",
                nodes: vec![
                    node(
                        "a1",
                        "zone-a",
                        json!({"spec": {"taints": [{"key": "node.cloudprovider.kubernetes.io/uninitialized", "value": "true", "effect": "NoSchedule"}]}}),
                    ),
                    node(
                        "b1",
                        "zone-b",
                        json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
                    ),
                    node("c1", "zone-c", json!({"spec": {"unschedulable": true}})),
                ],
                bound: vec![],
                pod: pod("p", None, json!({})),
                want: Err(
                    "0/3 nodes are available: 1 node(s) had untolerated taint {node.cloudprovider.kubernetes.io/uninitialized: true}, 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, 1 node(s) were unschedulable.",
                ),
            },
            Case {
                name: "a toleration lets it on",
                nodes: vec![node(
                    "a1",
                    "zone-a",
                    json!({"spec": {"taints": [{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]}}),
                )],
                bound: vec![],
                pod: pod(
                    "p",
                    None,
                    json!({"spec": {"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "x"}]}}),
                ),
                want: Ok("a1"),
            },
            Case {
                name: "cpu requests against allocatable",
                nodes: vec![node("a1", "zone-a", json!({}))],
                bound: vec![pod(
                    "x",
                    Some("a1"),
                    json!({"spec": {"containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": "1500m"}}}]}}),
                )],
                pod: pod(
                    "p",
                    None,
                    json!({"spec": {"containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": "1"}}}]}}),
                ),
                want: Err("0/1 nodes are available: 1 Insufficient cpu."),
            },
            Case {
                name: "max pods",
                nodes: vec![node(
                    "a1",
                    "zone-a",
                    json!({"status": {"allocatable": {"pods": "1"}}}),
                )],
                bound: vec![pod("x", Some("a1"), json!({}))],
                pod: pod("p", None, json!({})),
                want: Err("0/1 nodes are available: 1 Too many pods."),
            },
            Case {
                name: "zone spread picks the emptiest zone even with more nodes elsewhere",
                nodes: vec![
                    node("a1", "zone-a", json!({})),
                    node("a2", "zone-a", json!({})),
                    node("b1", "zone-b", json!({})),
                ],
                bound: vec![
                    pod("x", Some("a1"), json!({})),
                    pod("y", Some("b1"), json!({})),
                ],
                pod: pod("p", None, spread()),
                want: Ok("a2"),
            },
            Case {
                name: "spread with DoNotSchedule refuses to exceed maxSkew",
                nodes: vec![
                    node("a1", "zone-a", json!({})),
                    node("b1", "zone-b", json!({"spec": {"unschedulable": true}})),
                ],
                bound: vec![pod("x", Some("a1"), json!({}))],
                pod: pod("p", None, spread()),
                want: Err(
                    "0/2 nodes are available: 1 node(s) didn't match pod topology spread constraints, 1 node(s) were unschedulable.",
                ),
            },
        ];
        for c in cases {
            let got = schedule(&c.pod, &c.nodes, &c.bound);
            assert_eq!(got.as_deref().map_err(String::as_str), c.want, "{}", c.name);
            // kcm-sim stores its Nodes slimmed: the same placements from what is left.
            let mut slimmed = c.nodes.clone();
            slimmed.iter_mut().for_each(slim_node);
            let got = schedule(&c.pod, &slimmed, &c.bound);
            assert_eq!(
                got.as_deref().map_err(String::as_str),
                c.want,
                "{} (slimmed)",
                c.name
            );
        }
    }

    #[test]
    fn slim_nodes_keep_what_scheduling_and_endpoints_read() {
        let full = node(
            "a1",
            "zone-a",
            json!({"metadata": {"annotations": {"a": "b"}, "uid": "u1"},
                "spec": {"podCIDR": "10.0.1.0/24", "taints": [{"key": "k", "effect": "NoSchedule"}]},
                "status": {"capacity": {"cpu": "2"}, "nodeInfo": {"kubeletVersion": "v1"},
                    "addresses": [{"type": "Hostname", "address": "a1"}],
                    "conditions": [
                        {"type": "MemoryPressure", "status": "False"},
                        {"type": "Ready", "status": "True", "reason": "KubeletReady",
                         "message": "ready", "lastHeartbeatTime": "2026-01-01T00:00:00Z"}]}}),
        );
        let mut slim = full.clone();
        slim_node(&mut slim);
        assert_eq!(slim.metadata.name, full.metadata.name);
        assert_eq!(slim.metadata.uid, full.metadata.uid);
        assert_eq!(slim.metadata.labels, full.metadata.labels);
        assert_eq!(slim.metadata.annotations, None);
        assert_eq!(slim.spec, full.spec);
        assert_eq!(allocatable(&slim, "cpu"), Some(2000));
        assert!(node_ready(&slim));
        let status = slim.status.unwrap();
        assert_eq!(status.node_info, None);
        assert_eq!(status.addresses, None);
        assert_eq!(status.capacity, None);
        let conditions = status.conditions.unwrap();
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].message, None);
        assert_eq!(conditions[0].last_heartbeat_time, None);
    }

    #[test]
    fn only_unbound_live_pods_of_the_default_scheduler() {
        assert!(wants_scheduling(&pod("p", None, json!({}))));
        assert!(!wants_scheduling(&pod("p", Some("a1"), json!({}))));
        assert!(!wants_scheduling(&pod(
            "p",
            None,
            json!({"spec": {"schedulerName": "other"}})
        )));
        assert!(!wants_scheduling(&pod(
            "p",
            None,
            json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}})
        )));
    }
}
