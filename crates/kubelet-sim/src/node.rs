//! What a kubelet writes about its node, as pure functions: the Node it registers, the
//! conditions it reports, the Lease it renews, and the conditions the node-lifecycle controller
//! sets when a kubelet goes quiet.

use std::net::Ipv4Addr;

use cloud_api::Instance;
use serde_json::{Value, json};

/// Taint kubelets with `--cloud-provider=external` register with.
pub const UNINITIALIZED_TAINT: &str = "node.cloudprovider.kubernetes.io/uninitialized";
/// Annotation kubelets set from `--node-ip` when the cloud provider is external.
pub const PROVIDED_NODE_IP_ANNOTATION: &str = "alpha.kubernetes.io/provided-node-ip";
/// Namespace of the kubelets' heartbeat Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// Version string simulated kubelets report.
pub const KUBELET_VERSION: &str = "v1.37.2-kubelet-sim";

/// Capacity of a node: vCPUs and memory in MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    pub cpu: u32,
    pub memory_mib: u64,
}

/// A timestamp as the API's `Time` fields take it (whole seconds, UTC).
pub fn now_time() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// A timestamp as the API's `MicroTime` fields take it.
pub fn now_micro_time() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S.%6fZ")
        .to_string()
}

/// The Node a kubelet with `--cloud-provider=external` registers for `instance`: tainted
/// uninitialized, only a `Hostname` address, the provided-node-ip annotation, no provider ID
/// and no zone labels (initialising it is the ccm's job). `pod_cidr` is set only where no
/// node IPAM runs (kube-sim).
pub fn registration(i: &Instance, cap: Capacity, pod_cidr: Option<&str>, now: &str) -> Value {
    let capacity = json!({
        "cpu": cap.cpu.to_string(),
        "memory": format!("{}Ki", cap.memory_mib * 1024),
        "pods": "110",
        "ephemeral-storage": "20Gi",
    });
    let mut spec = json!({
        "taints": [{"key": UNINITIALIZED_TAINT, "value": "true", "effect": "NoSchedule"}],
    });
    if let Some(c) = pod_cidr {
        spec["podCIDR"] = json!(c);
        spec["podCIDRs"] = json!([c]);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": i.name,
            "labels": {
                "kubernetes.io/hostname": i.name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": "amd64",
            },
            "annotations": {PROVIDED_NODE_IP_ANNOTATION: i.private_ip.to_string()},
        },
        "spec": spec,
        "status": {
            "capacity": capacity,
            "allocatable": capacity,
            "addresses": [{"type": "Hostname", "address": i.name}],
            "conditions": conditions(i.state == cloud_api::InstanceState::Running, now, now),
            "nodeInfo": {
                "machineID": i.id.to_string(),
                "systemUUID": i.id.to_string(),
                "bootID": "",
                "kernelVersion": "6.1.0-kubelet-sim",
                "osImage": "kubelet-sim",
                "containerRuntimeVersion": "kubelet-sim://1.0",
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        },
    })
}

/// The conditions a running kubelet reports; `ready` is false while its instance boots.
pub fn conditions(ready: bool, heartbeat: &str, transition: &str) -> Value {
    let ok = |ty: &str, reason: &str, msg: &str| {
        json!({"type": ty, "status": "False", "reason": reason, "message": msg,
            "lastHeartbeatTime": heartbeat, "lastTransitionTime": transition})
    };
    let (status, reason, message) = if ready {
        ("True", "KubeletReady", "kubelet is posting ready status")
    } else {
        ("False", "KubeletNotReady", "instance is booting")
    };
    json!([
        ok(
            "MemoryPressure",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available"
        ),
        ok(
            "DiskPressure",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure"
        ),
        ok(
            "PIDPressure",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available"
        ),
        {"type": "Ready", "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": heartbeat, "lastTransitionTime": transition},
    ])
}

/// The Ready condition's `lastTransitionTime` to report: kept while the status is unchanged.
pub fn ready_transition(node: &Value, ready: bool, now: &str) -> String {
    let want = if ready { "True" } else { "False" };
    node.pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .filter(|c| c["status"] == want)
        .and_then(|c| c["lastTransitionTime"].as_str())
        .unwrap_or(now)
        .to_owned()
}

/// `node` already carries the Ready condition a kubelet that is (or is not) `ready` reports:
/// a Node just created from [`registration`] does, so its first status report is not needed.
pub fn reports_ready_as(node: &k8s_openapi::api::core::v1::Node, ready: bool) -> bool {
    let want = if ready { "True" } else { "False" };
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == want)
}

/// The node's heartbeat Lease in `kube-node-lease`, owned by the Node as a kubelet makes it
/// (so deleting the Node collects it).
pub fn lease(node: &str, node_uid: &str, duration_seconds: i64, renew: &str) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": node,
            "namespace": NODE_LEASE_NAMESPACE,
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid}],
        },
        "spec": {"holderIdentity": node, "leaseDurationSeconds": duration_seconds, "renewTime": renew},
    })
}

/// Every condition turned `Unknown`, as the node-lifecycle controller does when a kubelet has
/// been silent for the grace period. Only used where no kube-controller-manager runs.
pub fn unknown_conditions(node: &Value, now: &str) -> Value {
    let conds: Vec<Value> = node
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|mut c| {
            c["status"] = json!("Unknown");
            c["reason"] = json!("NodeStatusUnknown");
            c["message"] = json!("Kubelet stopped posting node status.");
            c["lastTransitionTime"] = json!(now);
            c
        })
        .collect();
    Value::Array(conds)
}

/// The IP of the provided-node-ip annotation, for tests that check it.
pub fn provided_ip(node: &Value) -> Option<Ipv4Addr> {
    node.pointer(&format!(
        "/metadata/annotations/{}",
        PROVIDED_NODE_IP_ANNOTATION.replace('/', "~1")
    ))?
    .as_str()?
    .parse()
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ready_transition_time_moves_only_when_the_status_changes() {
        let node = json!({"status": {"conditions": conditions(true, "t1", "t0")}});
        assert_eq!(ready_transition(&node, true, "t2"), "t0");
        assert_eq!(ready_transition(&node, false, "t2"), "t2");
        assert_eq!(ready_transition(&json!({}), true, "t2"), "t2");
    }

    #[test]
    fn a_node_reports_ready_as_its_ready_condition_says() {
        let node = |status: Value| -> k8s_openapi::api::core::v1::Node {
            serde_json::from_value(json!({"metadata": {"name": "n"}, "status": status})).unwrap()
        };
        let t = "2026-12-03T10:00:00Z";
        let with = |ready: bool| node(json!({"conditions": conditions(ready, t, t)}));
        let unknown = node(json!({"conditions": [{"type": "Ready", "status": "Unknown"}]}));
        let other = node(json!({"conditions": [{"type": "MemoryPressure", "status": "False"}]}));
        for (n, ready, reports) in [
            (with(true), true, true),
            (with(true), false, false),
            (with(false), false, true),
            (with(false), true, false),
            (unknown.clone(), true, false),
            (unknown, false, false),
            (other, false, false),
            (node(json!({})), true, false),
            (node(Value::Null), false, false),
        ] {
            assert_eq!(
                reports_ready_as(&n, ready),
                reports,
                "{:?} ready={ready}",
                n.status
            );
        }
    }

    #[test]
    fn unknown_conditions_keep_types_and_heartbeats() {
        let node = json!({"status": {"conditions": conditions(true, "t1", "t0")}});
        let u = unknown_conditions(&node, "t9");
        let ready = u
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        assert_eq!(ready["status"], "Unknown");
        assert_eq!(ready["reason"], "NodeStatusUnknown");
        assert_eq!(ready["lastHeartbeatTime"], "t1");
        assert_eq!(ready["lastTransitionTime"], "t9");
        assert_eq!(u.as_array().unwrap().len(), 4);
    }

    #[test]
    fn times_have_the_api_formats() {
        let t = now_time();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.ends_with('Z'));
        let m = now_micro_time();
        assert_eq!(m.len(), 27, "{m}");
    }
}
