//! Server-side tables (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`), which is what
//! `kubectl get` asks for: kube-apiserver's columns and cell formats for every served kind
//! (`pkg/printers/internalversion/printers.go`), the wide (priority 1) columns included as the
//! server always does, and a generic name-and-creation table for the rest. Pure: objects and
//! the time in, a `meta.k8s.io/v1` Table out. The columns of each kind are here; the cells of
//! each kind, in `cells.rs`.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde_json::{Value, json};

mod cells;
use cells::*;

/// Whether an `Accept` header asks for a Table (kubectl lists it first, JSON after).
pub fn wants_table(accept: &str) -> bool {
    accept.split(',').any(|media| {
        let params: Vec<&str> = media.split(';').map(str::trim).collect();
        params.first() == Some(&"application/json")
            && params.contains(&"as=Table")
            && params.contains(&"g=meta.k8s.io")
            && (params.contains(&"v=v1") || params.contains(&"v=v1beta1"))
    })
}

/// What each row carries besides its cells (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    None,
    /// The default: a `PartialObjectMetadata` per row.
    Metadata,
    Object,
}

impl Include {
    pub fn parse(v: Option<&str>) -> Result<Self, String> {
        match v.unwrap_or("") {
            "" | "Metadata" => Ok(Self::Metadata),
            "None" => Ok(Self::None),
            "Object" => Ok(Self::Object),
            other => Err(format!(
                "includeObject: unsupported value {other:?}; must be None, Metadata or Object"
            )),
        }
    }
}

struct Column {
    name: &'static str,
    ty: &'static str,
    format: &'static str,
    priority: u8,
    description: &'static str,
}

const fn col(name: &'static str, ty: &'static str, description: &'static str) -> Column {
    Column {
        name,
        ty,
        format: "",
        priority: 0,
        description,
    }
}

const fn wide(c: Column) -> Column {
    Column { priority: 1, ..c }
}

const NAME: Column = Column {
    format: "name",
    ..col("Name", "string", "Name must be unique within a namespace.")
};
const AGE: Column = col(
    "Age",
    "string",
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
);

type Cells = fn(&Value, Timestamp) -> Vec<Value>;

/// The columns and the row function of `kind`; `None` for kinds with no printer.
fn printer(kind: &str) -> Option<(Vec<Column>, Cells)> {
    Some(match kind {
        "Node" => (
            vec![
                NAME,
                col("Status", "string", "The status of the node"),
                col("Roles", "string", "The roles of the node"),
                AGE,
                col("Version", "string", "Kubelet Version reported by the node."),
                wide(col(
                    "Internal-IP",
                    "string",
                    "List of internal IPs for the node.",
                )),
                wide(col(
                    "External-IP",
                    "string",
                    "List of external IPs for the node.",
                )),
                wide(col(
                    "OS-Image",
                    "string",
                    "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
                )),
                wide(col(
                    "Kernel-Version",
                    "string",
                    "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
                )),
                wide(col(
                    "Container-Runtime",
                    "string",
                    "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
                )),
            ],
            node_cells,
        ),
        "Pod" => (
            vec![
                NAME,
                col(
                    "Ready",
                    "string",
                    "The aggregate readiness state of this pod for accepting traffic.",
                ),
                col(
                    "Status",
                    "string",
                    "The aggregate status of the containers in this pod.",
                ),
                col(
                    "Restarts",
                    "string",
                    "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
                ),
                AGE,
                wide(col(
                    "IP",
                    "string",
                    "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
                )),
                wide(col(
                    "Node",
                    "string",
                    "NodeName is a request to schedule this pod onto a specific node. If it is non-empty, the scheduler simply schedules this pod onto that node, assuming that it fits resource requirements.",
                )),
                wide(col(
                    "Nominated Node",
                    "string",
                    "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods. This field does not guarantee that the pod will be scheduled on this node. Scheduler may decide to place the pod elsewhere if other nodes become available sooner. Scheduler may also decide to give the resources on this node to a higher priority pod that is created after preemption. As a result, this field may be different than PodSpec.nodeName when the pod is scheduled.",
                )),
                wide(col(
                    "Readiness Gates",
                    "string",
                    "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to \"True\" More info: https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates",
                )),
            ],
            pod_cells,
        ),
        "Service" => (
            vec![
                NAME,
                col(
                    "Type",
                    "string",
                    "type determines how the Service is exposed.",
                ),
                col(
                    "Cluster-IP",
                    "string",
                    "clusterIP is the IP address of the service.",
                ),
                col(
                    "External-IP",
                    "string",
                    "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
                ),
                col(
                    "Port(s)",
                    "string",
                    "The ports that are exposed by this service.",
                ),
                AGE,
                wide(col(
                    "Selector",
                    "string",
                    "Route service traffic to pods with label keys and values matching this selector.",
                )),
            ],
            service_cells,
        ),
        "Event" => (
            vec![
                col(
                    "Last Seen",
                    "string",
                    "The time at which the most recent occurrence of this event was recorded.",
                ),
                col(
                    "Type",
                    "string",
                    "Type of this event (Normal, Warning), new types could be added in the future.",
                ),
                col(
                    "Reason",
                    "string",
                    "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
                ),
                col("Object", "string", "The object that this event is about."),
                wide(col(
                    "Subobject",
                    "string",
                    "The subobject that this event is about.",
                )),
                wide(col(
                    "Source",
                    "string",
                    "The component reporting this event. Should be a short machine understandable string.",
                )),
                col(
                    "Message",
                    "string",
                    "A human-readable description of the status of this operation.",
                ),
                wide(col(
                    "First Seen",
                    "string",
                    "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
                )),
                wide(col(
                    "Count",
                    "string",
                    "The number of times this event has occurred.",
                )),
                wide(Column {
                    format: "name",
                    ..NAME
                }),
            ],
            event_cells,
        ),
        "Namespace" => (
            vec![
                NAME,
                col("Status", "string", "The status of the namespace"),
                AGE,
            ],
            |o, now| vec![name(o), s(o, "/status/phase"), age(o, now)],
        ),
        "Deployment" => (
            vec![
                NAME,
                col("Ready", "string", "Number of the pod with ready state"),
                col(
                    "Up-to-date",
                    "string",
                    "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
                ),
                col(
                    "Available",
                    "string",
                    "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
                ),
                AGE,
                wide(col(
                    "Containers",
                    "string",
                    "Names of each container in the template.",
                )),
                wide(col(
                    "Images",
                    "string",
                    "Images referenced by each container in the template.",
                )),
                wide(col(
                    "Selector",
                    "string",
                    "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.",
                )),
            ],
            deployment_cells,
        ),
        "EndpointSlice" => (
            vec![
                NAME,
                col(
                    "AddressType",
                    "string",
                    "The IP protocol family for this EndpointSlice.",
                ),
                col(
                    "Ports",
                    "string",
                    "The ports contained in this EndpointSlice.",
                ),
                col(
                    "Endpoints",
                    "string",
                    "The endpoints contained in this EndpointSlice.",
                ),
                AGE,
            ],
            endpoint_slice_cells,
        ),
        "Lease" => (
            vec![
                NAME,
                col("Holder", "string", "The holder of the lease."),
                AGE,
            ],
            |o, now| vec![name(o), s(o, "/spec/holderIdentity"), age(o, now)],
        ),
        "ConfigMap" => (
            vec![
                NAME,
                col("Data", "string", "Data contains the configuration data."),
                AGE,
            ],
            |o, now| {
                let n = count(&o["data"]) + count(&o["binaryData"]);
                vec![name(o), json!(n), age(o, now)]
            },
        ),
        "Secret" => (
            vec![
                NAME,
                col(
                    "Type",
                    "string",
                    "Used to facilitate programmatic handling of secret data.",
                ),
                col("Data", "string", "Data contains the secret data."),
                AGE,
            ],
            |o, now| {
                vec![
                    name(o),
                    s(o, "/type"),
                    json!(count(&o["data"])),
                    age(o, now),
                ]
            },
        ),
        "ServiceAccount" => (vec![NAME, AGE], |o, now| vec![name(o), age(o, now)]),
        "ClusterRole" | "Role" => (
            vec![
                NAME,
                col(
                    "Created At",
                    "date",
                    "CreationTimestamp is a timestamp representing the server time when this object was created.",
                ),
            ],
            |o, _| vec![name(o), s(o, "/metadata/creationTimestamp")],
        ),
        "ClusterRoleBinding" | "RoleBinding" => (
            vec![
                NAME,
                col("Role", "string", "RoleRef references a role."),
                AGE,
                wide(col("Users", "string", "Users in the binding")),
                wide(col("Groups", "string", "Groups in the binding")),
                wide(col(
                    "ServiceAccounts",
                    "string",
                    "ServiceAccounts in the binding",
                )),
            ],
            binding_cells,
        ),
        _ => return None,
    })
}

/// The Table of `objects` in the wire form of `def`: events.k8s.io Events are printed from their
/// core form, as kube-apiserver (one type inside) does.
pub fn table_for(
    def: &crate::resources::ResourceDef,
    objects: &[Value],
    list_meta: Value,
    include: Include,
    now: Timestamp,
) -> Value {
    if def.group == "events.k8s.io" {
        let core: Vec<Value> = objects
            .iter()
            .map(crate::kinds::event_from_events_v1)
            .collect();
        let mut t = table(def.kind, &core, list_meta, Include::None, now);
        attach(&mut t, objects, include);
        t
    } else {
        table(def.kind, objects, list_meta, include, now)
    }
}

/// Sets each row's `object` from `objects` as `include` says.
fn attach(t: &mut Value, objects: &[Value], include: Include) {
    for (row, o) in t["rows"].as_array_mut().into_iter().flatten().zip(objects) {
        match include {
            Include::None => {}
            Include::Metadata => {
                row["object"] = json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]});
            }
            Include::Object => row["object"] = o.clone(),
        }
    }
}

/// The Table of `objects` (wire form) of `kind`, with `list_meta` (`resourceVersion`,
/// `continue`), at time `now`.
pub fn table(
    kind: &str,
    objects: &[Value],
    list_meta: Value,
    include: Include,
    now: Timestamp,
) -> Value {
    let (columns, cells) = printer(kind).unwrap_or_else(|| {
        (
            vec![
                NAME,
                col("Created At", "date", "CreationTimestamp is a timestamp representing the server time when this object was created."),
            ],
            |o: &Value, _: Timestamp| vec![name(o), s(o, "/metadata/creationTimestamp")],
        )
    });
    let definitions: Vec<Value> = columns
        .iter()
        .map(|c| {
            json!({"name": c.name, "type": c.ty, "format": c.format, "description": c.description, "priority": c.priority})
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| json!({"cells": cells(o, now)}))
        .collect();
    let mut t = json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta, "columnDefinitions": definitions, "rows": rows});
    attach(&mut t, objects, include);
    t
}

fn s(o: &Value, ptr: &str) -> Value {
    json!(o.pointer(ptr).and_then(Value::as_str).unwrap_or_default())
}

fn name(o: &Value) -> Value {
    s(o, "/metadata/name")
}

fn count(v: &Value) -> usize {
    v.as_object().map_or(0, serde_json::Map::len)
}

fn or_none(v: String) -> String {
    if v.is_empty() { "<none>".to_owned() } else { v }
}

fn timestamp(v: &Value) -> Option<Timestamp> {
    v.as_str().and_then(|t| t.parse().ok())
}

fn age(o: &Value, now: Timestamp) -> Value {
    json!(since(timestamp(&o["metadata"]["creationTimestamp"]), now))
}

/// `translateTimestampSince`: `<unknown>` without a time, else its human age.
fn since(t: Option<Timestamp>, now: Timestamp) -> String {
    match t {
        None => "<unknown>".to_owned(),
        Some(t) => human_duration((now - t).total(jiff::Unit::Second).unwrap_or(0.0)),
    }
}

/// `big` units and, when not zero, `small` units (`2m5s`, `3h`).
fn two_units(big: i64, big_unit: &str, small: i64, small_unit: &str) -> String {
    if small == 0 {
        format!("{big}{big_unit}")
    } else {
        format!("{big}{big_unit}{small}{small_unit}")
    }
}

/// apimachinery's `duration.HumanDuration`.
pub fn human_duration(seconds: f64) -> String {
    let secs = seconds as i64;
    let (minutes, hours) = (secs / 60, secs / 3600);
    let days = hours / 24;
    match () {
        _ if secs < -1 => "<invalid>".to_owned(),
        _ if secs < 0 => "0s".to_owned(),
        _ if secs < 120 => format!("{secs}s"),
        _ if minutes < 10 => two_units(minutes, "m", secs % 60, "s"),
        _ if minutes < 180 => format!("{minutes}m"),
        _ if hours < 8 => two_units(hours, "h", minutes % 60, "m"),
        _ if hours < 48 => format!("{hours}h"),
        _ if hours < 24 * 8 => two_units(days, "d", hours % 24, "h"),
        _ if hours < 24 * 365 * 2 => format!("{days}d"),
        _ if hours < 24 * 365 * 8 => two_units(days / 365, "y", days % 365, "d"),
        _ => format!("{}y", days / 365),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_as_apimachinery() {
        for (secs, want) in [
            (-5.0, "<invalid>"),
            (-1.0, "0s"),
            (59.0, "59s"),
            (119.0, "119s"),
            (120.0, "2m"),
            (125.0, "2m5s"),
            (600.0, "10m"),
            (3.0 * 3600.0, "3h"),
            (3.0 * 3600.0 + 60.0, "3h1m"),
            (30.0 * 3600.0, "30h"),
            (50.0 * 3600.0, "2d2h"),
            (10.0 * 86400.0, "10d"),
            (800.0 * 86400.0, "2y70d"),
            (9.0 * 365.0 * 86400.0, "9y"),
        ] {
            assert_eq!(human_duration(secs), want, "{secs}");
        }
    }

    #[test]
    fn accept_headers() {
        assert!(wants_table(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
        ));
        assert!(!wants_table("application/json"));
        assert!(!wants_table(
            "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io"
        ));
    }

    #[test]
    fn node_and_service_rows() {
        let now: Timestamp = "2026-01-01T01:00:00Z".parse().unwrap();
        let node = json!({"metadata": {"name": "n1", "creationTimestamp": "2026-01-01T00:55:00Z",
                "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/worker": ""}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "False"}],
                "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
                "nodeInfo": {"kubeletVersion": "v1.37.2"}}});
        let t = table("Node", &[node], json!({}), Include::None, now);
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "n1",
                "NotReady,SchedulingDisabled",
                "control-plane,worker",
                "5m",
                "v1.37.2",
                "10.0.0.1",
                "<none>",
                "<unknown>",
                "<unknown>",
                "<unknown>"
            ])
        );
        assert_eq!(t["columnDefinitions"][5]["priority"], 1);
        let svc = json!({"metadata": {"name": "web"},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.10", "selector": {"b": "2", "a": "1"},
                "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "127.64.0.1"}, {"hostname": "lb.example"}]}}});
        let t = table("Service", &[svc], json!({}), Include::Metadata, now);
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "web",
                "LoadBalancer",
                "10.96.0.10",
                "127.64.0.1,lb.example",
                "80:30080/TCP,53/UDP",
                "<unknown>",
                "a=1,b=2"
            ])
        );
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    }
}
