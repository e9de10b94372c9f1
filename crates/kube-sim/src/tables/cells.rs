//! The cells of each kind's row, as kube-apiserver's printers format them.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::*;

pub(super) fn node_cells(o: &Value, now: Timestamp) -> Vec<Value> {
    let conditions = o["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut status: Vec<String> = conditions
        .iter()
        .filter(|c| c["type"] == "Ready")
        .map(|c| {
            if c["status"] == "True" {
                "Ready"
            } else {
                "NotReady"
            }
            .to_owned()
        })
        .take(1)
        .collect();
    if status.is_empty() {
        status.push("Unknown".to_owned());
    }
    if o["spec"]["unschedulable"] == true {
        status.push("SchedulingDisabled".to_owned());
    }
    let mut roles = BTreeSet::new();
    for (k, v) in o["metadata"]["labels"].as_object().into_iter().flatten() {
        if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
            if !role.is_empty() {
                roles.insert(role.to_owned());
            }
        } else if k == "kubernetes.io/role"
            && let Some(v) = v.as_str().filter(|v| !v.is_empty())
        {
            roles.insert(v.to_owned());
        }
    }
    let address = |ty: &str| {
        o["status"]["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["type"] == ty)
            .and_then(|a| a["address"].as_str())
            .unwrap_or("<none>")
            .to_owned()
    };
    let info = |f: &str| {
        let v = o["status"]["nodeInfo"][f].as_str().unwrap_or_default();
        if v.is_empty() {
            "<unknown>".to_owned()
        } else {
            v.to_owned()
        }
    };
    vec![
        name(o),
        json!(status.join(",")),
        json!(or_none(roles.into_iter().collect::<Vec<_>>().join(","))),
        age(o, now),
        s(o, "/status/nodeInfo/kubeletVersion"),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(info("osImage")),
        json!(info("kernelVersion")),
        json!(info("containerRuntimeVersion")),
    ]
}

pub(super) fn pod_cells(o: &Value, now: Timestamp) -> Vec<Value> {
    let containers = o["spec"]["containers"].as_array().map_or(0, Vec::len);
    let statuses = o["status"]["containerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ready = statuses.iter().filter(|c| c["ready"] == true).count();
    let restarts: i64 = statuses
        .iter()
        .filter_map(|c| c["restartCount"].as_i64())
        .sum();
    let mut reason = o["status"]["reason"]
        .as_str()
        .filter(|r| !r.is_empty())
        .or_else(|| o["status"]["phase"].as_str())
        .unwrap_or_default()
        .to_owned();
    for c in statuses.iter().rev() {
        if let Some(r) = c["state"]["waiting"]["reason"]
            .as_str()
            .filter(|r| !r.is_empty())
        {
            reason = r.to_owned();
        } else if let Some(r) = c["state"]["terminated"]["reason"]
            .as_str()
            .filter(|r| !r.is_empty())
        {
            reason = r.to_owned();
        }
    }
    if o["metadata"]["deletionTimestamp"].is_string() {
        reason = if o["status"]["reason"] == "NodeLost" {
            "Unknown"
        } else {
            "Terminating"
        }
        .to_owned();
    }
    let gates = o["spec"]["readinessGates"].as_array().map_or(0, Vec::len);
    let gates = if gates == 0 {
        "<none>".to_owned()
    } else {
        let met = gates_met(o);
        format!("{met}/{gates}")
    };
    let ip = o["status"]["podIP"]
        .as_str()
        .filter(|s| !s.is_empty())
        .unwrap_or("<none>");
    let node = o["spec"]["nodeName"]
        .as_str()
        .filter(|s| !s.is_empty())
        .unwrap_or("<none>");
    let nominated = o["status"]["nominatedNodeName"]
        .as_str()
        .filter(|s| !s.is_empty())
        .unwrap_or("<none>");
    vec![
        name(o),
        json!(format!("{ready}/{containers}")),
        json!(reason),
        json!(restarts.to_string()),
        age(o, now),
        json!(ip),
        json!(node),
        json!(nominated),
        json!(gates),
    ]
}

pub(super) fn gates_met(o: &Value) -> usize {
    let conditions = o["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    o["spec"]["readinessGates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|g| {
            conditions
                .iter()
                .any(|c| c["type"] == g["conditionType"] && c["status"] == "True")
        })
        .count()
}

pub(super) fn labels_string(v: &Value) -> String {
    let mut pairs: Vec<String> = v
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    pairs.sort();
    or_none(pairs.join(","))
}

pub(super) fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(str::to_owned))
        .collect()
}

pub(super) fn service_cells(o: &Value, now: Timestamp) -> Vec<Value> {
    let spec = &o["spec"];
    let ty = spec["type"].as_str().unwrap_or("ClusterIP");
    let external_ips = strings(&spec["externalIPs"]);
    let external = match ty {
        "ClusterIP" | "NodePort" => or_none(external_ips.join(",")),
        "LoadBalancer" => {
            let mut ips: Vec<String> = o["status"]["loadBalancer"]["ingress"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| {
                    i["ip"]
                        .as_str()
                        .filter(|s| !s.is_empty())
                        .or_else(|| i["hostname"].as_str().filter(|s| !s.is_empty()))
                        .map(str::to_owned)
                })
                .collect();
            ips.extend(external_ips);
            if ips.is_empty() {
                "<pending>".to_owned()
            } else {
                ips.join(",")
            }
        }
        "ExternalName" => spec["externalName"].as_str().unwrap_or_default().to_owned(),
        _ => "<unknown>".to_owned(),
    };
    let ports: Vec<String> = spec["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let protocol = p["protocol"].as_str().unwrap_or("TCP");
            match p["nodePort"].as_i64().filter(|n| *n > 0) {
                Some(np) => format!("{}:{np}/{protocol}", p["port"]),
                None => format!("{}/{protocol}", p["port"]),
            }
        })
        .collect();
    let cluster_ip = spec["clusterIP"]
        .as_str()
        .filter(|s| !s.is_empty())
        .unwrap_or("<none>");
    vec![
        name(o),
        json!(ty),
        json!(cluster_ip),
        json!(external),
        json!(or_none(ports.join(","))),
        age(o, now),
        json!(labels_string(&spec["selector"])),
    ]
}

pub(super) fn event_cells(o: &Value, now: Timestamp) -> Vec<Value> {
    let series_last = timestamp(&o["series"]["lastObservedTime"]);
    let last = series_last
        .or_else(|| timestamp(&o["lastTimestamp"]))
        .or_else(|| timestamp(&o["eventTime"]));
    let first = timestamp(&o["firstTimestamp"]).or_else(|| timestamp(&o["eventTime"]));
    let non_empty = |a: &Value, b: &Value| {
        a.as_str()
            .filter(|s| !s.is_empty())
            .or_else(|| b.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let component = non_empty(&o["source"]["component"], &o["reportingComponent"]);
    let instance = non_empty(&o["source"]["host"], &o["reportingInstance"]);
    let source = match (component.is_empty(), instance.is_empty()) {
        (true, _) => "<unknown>".to_owned(),
        (false, true) => component,
        (false, false) => format!("{component}, {instance}"),
    };
    let count = o["series"]["count"]
        .as_i64()
        .or_else(|| o["count"].as_i64())
        .unwrap_or(0);
    let involved = &o["involvedObject"];
    vec![
        json!(since(last, now)),
        s(o, "/type"),
        s(o, "/reason"),
        json!(format!(
            "{}/{}",
            involved["kind"].as_str().unwrap_or_default().to_lowercase(),
            involved["name"].as_str().unwrap_or_default()
        )),
        s(o, "/involvedObject/fieldPath"),
        json!(source),
        s(o, "/message"),
        json!(since(first, now)),
        json!(count),
        name(o),
    ]
}

pub(super) fn deployment_cells(o: &Value, now: Timestamp) -> Vec<Value> {
    let st = &o["status"];
    let n = |v: &Value| v.as_i64().unwrap_or(0);
    let containers = o["spec"]["template"]["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let names: Vec<&str> = containers
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    let images: Vec<&str> = containers
        .iter()
        .filter_map(|c| c["image"].as_str())
        .collect();
    vec![
        name(o),
        json!(format!(
            "{}/{}",
            n(&st["readyReplicas"]),
            o["spec"]["replicas"].as_i64().unwrap_or(1)
        )),
        json!(n(&st["updatedReplicas"])),
        json!(n(&st["availableReplicas"])),
        age(o, now),
        json!(names.join(",")),
        json!(images.join(",")),
        json!(crate::kinds::selector_string(&o["spec"]["selector"])),
    ]
}

pub(super) fn endpoint_slice_cells(o: &Value, now: Timestamp) -> Vec<Value> {
    let ports: Vec<String> = o["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            p["port"]
                .as_i64()
                .map_or_else(|| "<unset>".to_owned(), |p| p.to_string())
        })
        .collect();
    let ports = if o["ports"].is_array() && !ports.is_empty() {
        ports.join(",")
    } else {
        "<unset>".to_owned()
    };
    let addresses: Vec<String> = o["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|e| strings(&e["addresses"]))
        .collect();
    let endpoints = match addresses.len() {
        0 => "<unset>".to_owned(),
        n if n > 3 => format!("{} + {} more...", addresses[..3].join(","), n - 3),
        _ => addresses.join(","),
    };
    vec![
        name(o),
        s(o, "/addressType"),
        json!(ports),
        json!(endpoints),
        age(o, now),
    ]
}

pub(super) fn binding_cells(o: &Value, now: Timestamp) -> Vec<Value> {
    let mut users = Vec::new();
    let mut groups = Vec::new();
    let mut accounts = Vec::new();
    for subject in o["subjects"].as_array().into_iter().flatten() {
        let n = subject["name"].as_str().unwrap_or_default();
        match subject["kind"].as_str().unwrap_or_default() {
            "User" => users.push(n.to_owned()),
            "Group" => groups.push(n.to_owned()),
            "ServiceAccount" => accounts.push(format!(
                "{}/{n}",
                subject["namespace"].as_str().unwrap_or_default()
            )),
            _ => {}
        }
    }
    vec![
        name(o),
        json!(format!(
            "{}/{}",
            o["roleRef"]["kind"].as_str().unwrap_or_default(),
            o["roleRef"]["name"].as_str().unwrap_or_default()
        )),
        age(o, now),
        json!(users.join(", ")),
        json!(groups.join(", ")),
        json!(accounts.join(", ")),
    ]
}
