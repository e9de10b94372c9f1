//! The Deployment controller's stand-in, pure: the Pods a Deployment should have, which to make
//! and which to delete, and the status `kubectl rollout status` reads.
//!
//! Unlike kube-controller-manager there are no ReplicaSets: Pods are owned by the Deployment
//! directly and carry the `pod-template-hash` of the template they were made from. A template
//! change rolls with `maxUnavailable: 0`: new Pods are made at once, and an old one goes for
//! every new one that is Ready. For experiments, the annotation
//! `simcloud.dev/replicas-per-zone: zone-a=2,zone-b=4,zone-c=4` splits `spec.replicas` over
//! those zones in that proportion (largest remainders), each Pod pinned to its zone with a
//! `topology.kubernetes.io/zone` node selector.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

/// Deployment annotation: weights of the zones its replicas are split over.
pub const ANNOTATION_REPLICAS_PER_ZONE: &str = "simcloud.dev/replicas-per-zone";
/// Pod label: the hash of the template the Pod was made from.
pub const LABEL_POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// What to do for one Deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Pods to create (`generateName` set, no name).
    pub create: Vec<Value>,
    /// Names of Pods to delete.
    pub delete: Vec<String>,
    /// The status to write (a `DeploymentStatus`), when it differs from the current one.
    pub status: Option<Value>,
}

/// Parses the per-zone annotation: `zone=weight` pairs, comma-separated.
pub fn parse_replicas_per_zone(s: &str) -> Result<Vec<(String, u32)>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (z, w) = p
                .split_once('=')
                .ok_or_else(|| format!("{p:?} is not zone=weight"))?;
            let w = w
                .trim()
                .parse()
                .map_err(|_| format!("{p:?}: the weight must be a whole number"))?;
            Ok((z.trim().to_owned(), w))
        })
        .collect()
}

/// kube-controller-manager's alphabet for hashes in names (no vowels, no look-alikes).
const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The template hash: FNV-1a over the template's JSON, spelt in the safe alphabet.
pub fn template_hash(template: &Value) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in template.to_string().bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let mut out = String::new();
    while h > 0 || out.is_empty() {
        out.push(char::from(SAFE[(h % SAFE.len() as u32) as usize]));
        h /= SAFE.len() as u32;
    }
    out
}

fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn pod_zone(p: &Pod) -> Option<String> {
    p.spec
        .as_ref()?
        .node_selector
        .as_ref()?
        .get(topology::LABEL_ZONE)
        .cloned()
}

fn hash_of(p: &Pod) -> Option<&str> {
    p.metadata
        .labels
        .as_ref()?
        .get(LABEL_POD_TEMPLATE_HASH)
        .map(String::as_str)
}

/// Which of `pods` to delete first: unscheduled, then not Ready, then the newest.
fn deletion_order(pods: &mut [&Pod]) {
    pods.sort_by_key(|p| {
        let bound = p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
        let created = p
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| std::cmp::Reverse(t.0))
            .unwrap_or(std::cmp::Reverse(jiff::Timestamp::MAX));
        (bound, pod_ready(p), created, p.metadata.name.clone())
    });
}

fn condition(ty: &str, ok: bool, reason: &str, message: String, old: &Value, now: &str) -> Value {
    let status = if ok { "True" } else { "False" };
    let previous = old
        .get("conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == ty));
    let same_status = previous.is_some_and(|c| c["status"] == status);
    let same = previous.is_some_and(|c| c["reason"] == reason && c["message"] == message.as_str());
    let transition = match previous {
        Some(c) if same_status => c["lastTransitionTime"].clone(),
        _ => json!(now),
    };
    let update = match previous {
        Some(c) if same && same_status => c["lastUpdateTime"].clone(),
        _ => json!(now),
    };
    json!({"type": ty, "status": status, "reason": reason, "message": message,
        "lastUpdateTime": update, "lastTransitionTime": transition})
}

/// The plan for `d`, whose Pods (owned by it, terminating ones included) are `pods`. `now` is
/// the RFC 3339 time for new conditions.
pub fn plan(d: &Deployment, pods: &[Pod], now: &str) -> Result<Plan, String> {
    let name = d.metadata.name.clone().unwrap_or_default();
    let spec = d.spec.clone().unwrap_or_default();
    let replicas = u32::try_from(spec.replicas.unwrap_or(1)).unwrap_or(0);
    let template = serde_json::to_value(&spec.template).map_err(|e| e.to_string())?;
    let hash = template_hash(&template);
    let zones = match d
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_REPLICAS_PER_ZONE))
    {
        Some(a) => Some(
            parse_replicas_per_zone(a)
                .map_err(|e| format!("annotation {ANNOTATION_REPLICAS_PER_ZONE}: {e}"))?,
        ),
        None => None,
    };
    // Desired Pods of the current template per zone (`None`: anywhere).
    let want: BTreeMap<Option<String>, u32> = match &zones {
        Some(w) => sim_common::split_by_weight(replicas, w)
            .into_iter()
            .map(|(z, c)| (Some(z), c))
            .collect(),
        None => [(None, replicas)].into(),
    };
    let live: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            !matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            )
        })
        .collect();
    let (current, old): (Vec<&Pod>, Vec<&Pod>) =
        live.iter().partition(|p| hash_of(p) == Some(hash.as_str()));
    let mut create = Vec::new();
    let mut delete = Vec::new();
    let mut by_zone: BTreeMap<Option<String>, Vec<&Pod>> = BTreeMap::new();
    for p in &current {
        let key = if zones.is_some() { pod_zone(p) } else { None };
        by_zone.entry(key).or_default().push(p);
    }
    for (zone, count) in &want {
        let mut have = by_zone.remove(zone).unwrap_or_default();
        if (have.len() as u32) < *count {
            for _ in have.len() as u32..*count {
                create.push(new_pod(d, &name, &template, &hash, zone.as_deref()));
            }
        } else {
            deletion_order(&mut have);
            let excess = have.len() - *count as usize;
            delete.extend(
                have.iter()
                    .take(excess)
                    .filter_map(|p| p.metadata.name.clone()),
            );
        }
    }
    // Current-template Pods in zones no longer wanted.
    for (_, rest) in by_zone {
        delete.extend(rest.iter().filter_map(|p| p.metadata.name.clone()));
    }
    // Rolling: an old Pod goes for each Ready new one beyond what keeps `replicas` Ready.
    let ready_current = current.iter().filter(|p| pod_ready(p)).count();
    let ready_old = old.iter().filter(|p| pod_ready(p)).count();
    let mut old_sorted = old.clone();
    deletion_order(&mut old_sorted);
    let removable = old_sorted.iter().filter(|p| !pod_ready(p)).count()
        + (ready_current + ready_old)
            .saturating_sub(replicas as usize)
            .min(ready_old);
    delete.extend(
        old_sorted
            .iter()
            .take(removable)
            .filter_map(|p| p.metadata.name.clone()),
    );

    let updated = current.len() as u32;
    let total = live.len() as u32;
    let ready = live.iter().filter(|p| pod_ready(p)).count() as u32;
    let old_status = d
        .status
        .as_ref()
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or(json!({}));
    let available = ready >= replicas;
    let complete = updated == replicas && ready_current as u32 >= replicas && old.is_empty();
    let rs = format!("{name}-{hash}");
    let mut status = json!({
        "observedGeneration": d.metadata.generation.unwrap_or(0),
        "replicas": total,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": ready,
        "conditions": [
            if available {
                condition("Available", true, "MinimumReplicasAvailable", "Deployment has minimum availability.".into(), &old_status, now)
            } else {
                condition("Available", false, "MinimumReplicasUnavailable", "Deployment does not have minimum availability.".into(), &old_status, now)
            },
            if complete {
                condition("Progressing", true, "NewReplicaSetAvailable", format!("ReplicaSet \"{rs}\" has successfully progressed."), &old_status, now)
            } else {
                condition("Progressing", true, "ReplicaSetUpdated", format!("ReplicaSet \"{rs}\" is progressing."), &old_status, now)
            },
        ],
    });
    if replicas > ready {
        status["unavailableReplicas"] = json!(replicas - ready);
    }
    // Zero counts are omitted on the wire, as Go's omitempty does.
    if let Some(o) = status.as_object_mut() {
        o.retain(|k, v| k == "observedGeneration" || v != &json!(0));
    }
    let status = (status != old_status).then_some(status);
    Ok(Plan {
        create,
        delete,
        status,
    })
}

fn new_pod(d: &Deployment, name: &str, template: &Value, hash: &str, zone: Option<&str>) -> Value {
    let mut meta = template.get("metadata").cloned().unwrap_or(json!({}));
    meta["generateName"] = json!(format!("{name}-{hash}-"));
    meta["labels"][LABEL_POD_TEMPLATE_HASH] = json!(hash);
    meta["namespace"] = json!(
        d.metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into())
    );
    meta["ownerReferences"] = json!([{
        "apiVersion": "apps/v1", "kind": "Deployment", "name": name,
        "uid": d.metadata.uid.clone().unwrap_or_default(),
        "controller": true, "blockOwnerDeletion": true,
    }]);
    let mut spec = template.get("spec").cloned().unwrap_or(json!({}));
    if let Some(z) = zone {
        spec["nodeSelector"][topology::LABEL_ZONE] = json!(z);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(replicas: i32, per_zone: Option<&str>) -> Deployment {
        let mut v = json!({"metadata": {"name": "web", "namespace": "default", "uid": "d-1", "generation": 2},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        if let Some(a) = per_zone {
            v["metadata"]["annotations"] = json!({ANNOTATION_REPLICAS_PER_ZONE: a});
        }
        serde_json::from_value(v).unwrap()
    }

    fn pod_of(d: &Deployment, name: &str, hash: &str, zone: Option<&str>, ready: bool) -> Pod {
        let mut v = json!({"metadata": {"name": name, "namespace": "default", "labels": {"app": "web", LABEL_POD_TEMPLATE_HASH: hash},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": d.metadata.uid, "controller": true}]},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
        if let Some(z) = zone {
            v["spec"]["nodeSelector"] = json!({topology::LABEL_ZONE: z});
        }
        serde_json::from_value(v).unwrap()
    }

    fn current_hash(d: &Deployment) -> String {
        template_hash(&serde_json::to_value(&d.spec.as_ref().unwrap().template).unwrap())
    }

    #[test]
    fn scale_up_creates_pods_pinned_by_zone_weights() {
        let d = deployment(10, Some("zone-a=2,zone-b=4,zone-c=4"));
        let p = plan(&d, &[], "t0").unwrap();
        let zones: Vec<String> = p
            .create
            .iter()
            .map(|v| {
                v["spec"]["nodeSelector"][topology::LABEL_ZONE]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        for (z, n) in [("zone-a", 2), ("zone-b", 4), ("zone-c", 4)] {
            assert_eq!(zones.iter().filter(|x| *x == z).count(), n, "{zones:?}");
        }
        let first = &p.create[0];
        assert_eq!(
            first["metadata"]["generateName"],
            format!("web-{}-", current_hash(&d))
        );
        assert_eq!(first["metadata"]["ownerReferences"][0]["uid"], "d-1");
        assert_eq!(first["metadata"]["labels"]["app"], "web");
        let s = p.status.unwrap();
        assert_eq!(s["observedGeneration"], 2);
        assert_eq!(s["unavailableReplicas"], 10);
        assert_eq!(s["conditions"][0]["status"], "False");
    }

    #[test]
    fn scale_down_deletes_not_ready_first_and_reports_complete() {
        let d = deployment(2, None);
        let h = current_hash(&d);
        let pods = vec![
            pod_of(&d, "a", &h, None, true),
            pod_of(&d, "b", &h, None, false),
            pod_of(&d, "c", &h, None, true),
        ];
        let p = plan(&d, &pods, "t0").unwrap();
        assert!(p.create.is_empty());
        assert_eq!(p.delete, vec!["b".to_owned()]);
        let done = plan(&d, &[pods[0].clone(), pods[2].clone()], "t0").unwrap();
        let s = done.status.unwrap();
        assert_eq!(s["replicas"], 2);
        assert_eq!(s["updatedReplicas"], 2);
        assert_eq!(s["availableReplicas"], 2);
        assert_eq!(s["conditions"][1]["reason"], "NewReplicaSetAvailable");
        assert!(s.get("unavailableReplicas").is_none());
    }

    #[test]
    fn rollout_keeps_replicas_ready() {
        let d = deployment(2, None);
        let h = current_hash(&d);
        let old = vec![
            pod_of(&d, "o1", "old", None, true),
            pod_of(&d, "o2", "old", None, true),
        ];
        // Nothing new yet: two to create, no old one goes.
        let p = plan(&d, &old, "t0").unwrap();
        assert_eq!(p.create.len(), 2);
        assert!(p.delete.is_empty());
        // One new Pod Ready: one old one goes.
        let mut pods = old.clone();
        pods.push(pod_of(&d, "n1", &h, None, true));
        pods.push(pod_of(&d, "n2", &h, None, false));
        let p = plan(&d, &pods, "t0").unwrap();
        assert_eq!(p.delete.len(), 1, "{:?}", p.delete);
        assert_eq!(
            p.status.unwrap()["conditions"][1]["reason"],
            "ReplicaSetUpdated"
        );
    }

    #[test]
    fn condition_times_stay_while_nothing_changes() {
        let d = deployment(1, None);
        let h = current_hash(&d);
        let pods = vec![pod_of(&d, "a", &h, None, true)];
        let s = plan(&d, &pods, "2026-12-02T00:00:00Z")
            .unwrap()
            .status
            .unwrap();
        let mut d2 = d.clone();
        d2.status = Some(serde_json::from_value(s).unwrap());
        assert_eq!(
            plan(&d2, &pods, "2026-12-02T00:01:00Z").unwrap().status,
            None
        );
    }

    #[test]
    fn bad_annotation_is_an_error_naming_it() {
        let d = deployment(3, Some("zone-a:2"));
        let e = plan(&d, &[], "t0").unwrap_err();
        assert!(
            e.contains(ANNOTATION_REPLICAS_PER_ZONE) && e.contains("zone-a:2"),
            "{e}"
        );
    }
}
