//! What a kubelet reports about the Pods bound to its node, as pure functions: the status of a
//! started Pod, of one whose node stopped, and the pod IP it gets from the node's pod CIDR.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

/// Where a Pod stands for its kubelet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodPhase {
    /// Bound to a node, not started yet.
    Starting,
    /// Running and Ready.
    Running,
    /// Being deleted: its containers are stopping.
    Terminating,
    /// Succeeded or Failed: nothing more to do.
    Finished,
}

/// The phase a Pod is in, from what the API server says of it.
pub fn phase(pod: &Pod) -> PodPhase {
    if pod.metadata.deletion_timestamp.is_some() {
        return PodPhase::Terminating;
    }
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Running") => PodPhase::Running,
        Some("Succeeded" | "Failed") => PodPhase::Finished,
        _ => PodPhase::Starting,
    }
}

/// The first free address of `cidr` for a pod, skipping the network address and `.1` (the
/// node's bridge, as most CNI plugins take it) and the broadcast address.
pub fn next_pod_ip(cidr: Ipv4Net, used: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    let first = u32::from(cidr.network()).checked_add(2)?;
    let last = u32::from(cidr.broadcast()).checked_sub(1)?;
    (first..=last)
        .map(Ipv4Addr::from)
        .find(|ip| !used.contains(ip))
}

fn condition(ty: &str, status: bool, now: &str) -> Value {
    json!({"type": ty, "status": if status { "True" } else { "False" }, "lastTransitionTime": now, "lastProbeTime": null})
}

/// The status a kubelet posts once every container of the Pod runs and is ready.
pub fn running_status(pod: &Pod, host_ip: Ipv4Addr, pod_ip: Ipv4Addr, now: &str) -> Value {
    let host_network = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    let ip = if host_network { host_ip } else { pod_ip };
    let containers: Vec<Value> = pod
        .spec
        .iter()
        .flat_map(|s| &s.containers)
        .map(|c| {
            json!({
                "name": c.name,
                "image": c.image.clone().unwrap_or_default(),
                "imageID": "",
                "containerID": format!("kubelet-sim://{}-{}", pod.metadata.uid.as_deref().unwrap_or(""), c.name),
                "ready": true,
                "started": true,
                "restartCount": 0,
                "state": {"running": {"startedAt": now}},
            })
        })
        .collect();
    json!({"status": {
        "phase": "Running",
        "hostIP": host_ip.to_string(),
        "hostIPs": [{"ip": host_ip.to_string()}],
        "podIP": ip.to_string(),
        "podIPs": [{"ip": ip.to_string()}],
        "startTime": now,
        "conditions": [
            condition("PodReadyToStartContainers", true, now),
            condition("Initialized", true, now),
            condition("Ready", true, now),
            condition("ContainersReady", true, now),
            condition("PodScheduled", true, now),
        ],
        "containerStatuses": containers,
    }})
}

/// Ready and ContainersReady turned False, as the node-lifecycle controller marks the Pods of a
/// node that stopped reporting.
pub fn not_ready_status(now: &str) -> Value {
    json!({"status": {"conditions": [
        condition("Ready", false, now),
        condition("ContainersReady", false, now),
    ]}})
}

/// The Pod's own IP, if it has one.
pub fn pod_ip(pod: &Pod) -> Option<Ipv4Addr> {
    pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()
}

/// The TCP ports the Pod's containers declare (where it answers); none for host-network Pods,
/// whose ports are the node's.
pub fn tcp_ports(pod: &Pod) -> Vec<u16> {
    let Some(spec) = &pod.spec else {
        return Vec::new();
    };
    if spec.host_network == Some(true) {
        return Vec::new();
    }
    let mut out: Vec<u16> = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
        .filter_map(|p| u16::try_from(p.container_port).ok())
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(v: Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn tcp_ports_skip_udp_and_host_network() {
        let p = pod(json!({"spec": {"containers": [
            {"name": "a", "ports": [{"containerPort": 8080}, {"containerPort": 53, "protocol": "UDP"}]},
            {"name": "b", "ports": [{"containerPort": 8080}, {"containerPort": 9090, "protocol": "TCP"}]}]}}));
        assert_eq!(tcp_ports(&p), vec![8080, 9090]);
        let h = pod(
            json!({"spec": {"hostNetwork": true, "containers": [{"name": "a", "ports": [{"containerPort": 8080}]}]}}),
        );
        assert!(tcp_ports(&h).is_empty());
    }

    #[test]
    fn pod_ips_skip_network_bridge_and_broadcast() {
        let cidr: Ipv4Net = "10.244.3.0/30".parse().unwrap();
        let mut used = BTreeSet::new();
        assert_eq!(
            next_pod_ip(cidr, &used),
            Some("10.244.3.2".parse().unwrap())
        );
        used.insert("10.244.3.2".parse().unwrap());
        assert_eq!(next_pod_ip(cidr, &used), None, "a /30 has room for one pod");
        let wide: Ipv4Net = "10.244.0.0/24".parse().unwrap();
        let used: BTreeSet<Ipv4Addr> = ["10.244.0.2", "10.244.0.4"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(
            next_pod_ip(wide, &used),
            Some("10.244.0.3".parse().unwrap())
        );
    }

    #[test]
    fn phases() {
        let cases = [
            (json!({"metadata": {"name": "p"}}), PodPhase::Starting),
            (
                json!({"metadata": {"name": "p"}, "status": {"phase": "Pending"}}),
                PodPhase::Starting,
            ),
            (
                json!({"metadata": {"name": "p"}, "status": {"phase": "Running"}}),
                PodPhase::Running,
            ),
            (
                json!({"metadata": {"name": "p"}, "status": {"phase": "Succeeded"}}),
                PodPhase::Finished,
            ),
            (
                json!({"metadata": {"name": "p", "deletionTimestamp": "2026-01-01T00:00:00Z"}, "status": {"phase": "Running"}}),
                PodPhase::Terminating,
            ),
        ];
        for (p, want) in cases {
            assert_eq!(phase(&pod(p.clone())), want, "{p}");
        }
    }

    #[test]
    fn a_running_status_reports_every_container_ready() {
        let p = pod(json!({"metadata": {"name": "p", "uid": "u1"},
            "spec": {"containers": [{"name": "a", "image": "img:1"}, {"name": "b"}]}}));
        let s = running_status(
            &p,
            "127.1.1.2".parse().unwrap(),
            "10.244.0.2".parse().unwrap(),
            "t0",
        );
        assert_eq!(s["status"]["phase"], "Running");
        assert_eq!(s["status"]["podIP"], "10.244.0.2");
        assert_eq!(s["status"]["hostIP"], "127.1.1.2");
        let cs = s["status"]["containerStatuses"].as_array().unwrap();
        assert_eq!(cs.len(), 2);
        assert!(cs.iter().all(|c| c["ready"] == true));
        assert_eq!(cs[0]["containerID"], "kubelet-sim://u1-a");
        let ready = s["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        assert_eq!(ready["status"], "True");
        // Host-network pods have the node's address.
        let hn = pod(
            json!({"metadata": {"name": "h"}, "spec": {"hostNetwork": true, "containers": []}}),
        );
        let s = running_status(
            &hn,
            "127.1.1.2".parse().unwrap(),
            "10.244.0.2".parse().unwrap(),
            "t0",
        );
        assert_eq!(s["status"]["podIP"], "127.1.1.2");
    }
}
