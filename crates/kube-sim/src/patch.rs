//! Patches: JSON merge (RFC 7386), JSON Patch (RFC 6902) and strategic merge, with the list
//! semantics of the real types (merge keys, sets, atomic lists) and its `$patch`,
//! `$retainKeys`, `$deleteFromPrimitiveList` and `$setElementOrder` directives.

use serde_json::{Map, Value};

/// How a list field merges under a strategic merge patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListStrategy {
    /// The patch's list replaces the stored one (no `patchStrategy`: the default, and taints).
    Atomic,
    /// A set of primitives: the patch's values are added.
    Set,
    /// A list of objects merged by this key.
    MergeKey(&'static str),
}

/// The strategy of the list at `path` (field names from the root, list indices omitted) in `kind`.
pub fn list_strategy(kind: &str, path: &[&str]) -> ListStrategy {
    use ListStrategy::*;
    // A Deployment's pod template merges as a Pod does.
    if let ("Deployment", ["spec", "template", rest @ ..]) = (kind, path) {
        return list_strategy("Pod", rest);
    }
    match (kind, path) {
        ("Deployment", ["status", "conditions"]) => MergeKey("type"),
        (_, ["metadata", "finalizers"]) => Set,
        (_, ["metadata", "ownerReferences"]) => MergeKey("uid"),
        ("Node", ["spec", "podCIDRs"]) => Set,
        ("Node", ["status", "conditions"]) | ("Node", ["status", "addresses"]) => MergeKey("type"),
        ("Service", ["spec", "ports"]) => MergeKey("port"),
        ("Service" | "Namespace" | "Pod", ["status", "conditions"]) => MergeKey("type"),
        ("Pod", ["spec", "containers" | "initContainers" | "volumes"]) => MergeKey("name"),
        ("Pod", ["spec", "containers" | "initContainers", "env"]) => MergeKey("name"),
        ("Pod", ["spec", "containers" | "initContainers", "ports"]) => MergeKey("containerPort"),
        _ => Atomic,
    }
}

/// Why a patch could not be applied (a 422 upstream, unless noted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    #[error("the patch is not valid JSON: {0}")]
    Syntax(String),
    #[error("{0}")]
    Invalid(String),
}

/// RFC 7386: objects merge recursively, `null` removes, lists are replaced.
pub fn merge(target: &Value, patch: &Value) -> Value {
    let mut out = target.clone();
    json_patch::merge(&mut out, patch);
    out
}

/// RFC 6902, including `test`. A failing operation fails the whole patch.
///
/// As in kube-apiserver's JSON-patch library, `test` with value `null` succeeds on a missing
/// path: kube-runtime's finalizer helper relies on it (`test /metadata/finalizers == null`).
pub fn json(target: &Value, ops: &Value) -> Result<Value, PatchError> {
    let ops: json_patch::Patch =
        serde_json::from_value(ops.clone()).map_err(|e| PatchError::Syntax(e.to_string()))?;
    let mut out = target.clone();
    for op in ops.0 {
        if let json_patch::PatchOperation::Test(t) = &op
            && t.value.is_null()
        {
            match out.pointer(t.path.as_str()) {
                None | Some(Value::Null) => continue,
                Some(other) => {
                    return Err(PatchError::Invalid(format!(
                        "test failed at {}: {other} is not null",
                        t.path
                    )));
                }
            }
        }
        json_patch::patch(&mut out, &[op]).map_err(|e| PatchError::Invalid(e.to_string()))?;
    }
    Ok(out)
}

/// A strategic merge patch of `target` (an object of `kind`).
pub fn strategic(kind: &str, target: &Value, patch: &Value) -> Result<Value, PatchError> {
    if !patch.is_object() {
        return Err(PatchError::Syntax(
            "a strategic merge patch must be a JSON object".into(),
        ));
    }
    let mut path = Vec::new();
    match merge_map(kind, target, patch, &mut path)? {
        Some(v) => Ok(v),
        None => Err(PatchError::Invalid(
            "$patch: delete is not allowed on the whole object".into(),
        )),
    }
}

/// Merges a patch map into `orig`; `None` means "delete this map".
fn merge_map(
    kind: &str,
    orig: &Value,
    patch: &Value,
    path: &mut Vec<String>,
) -> Result<Option<Value>, PatchError> {
    let Some(p) = patch.as_object() else {
        return Ok(Some(strip(patch)));
    };
    match p.get("$patch").and_then(Value::as_str) {
        Some("replace") => return Ok(Some(strip(patch))),
        Some("delete") => return Ok(None),
        Some("merge") | None => {}
        Some(other) => {
            return Err(PatchError::Invalid(format!(
                "unknown patch directive $patch: {other}"
            )));
        }
    }
    let mut out: Map<String, Value> = orig.as_object().cloned().unwrap_or_default();
    if let Some(keep) = p.get("$retainKeys") {
        let keep: Vec<&str> = keep
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        out.retain(|k, _| keep.contains(&k.as_str()) || p.contains_key(k));
    }
    for (k, v) in p {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            let remove: Vec<&Value> = v.as_array().map(|a| a.iter().collect()).unwrap_or_default();
            if let Some(list) = out.get_mut(field).and_then(Value::as_array_mut) {
                list.retain(|x| !remove.contains(&x));
            }
            continue;
        }
        if k.starts_with('$') {
            // $patch, $retainKeys handled above; $setElementOrder only orders, which we leave as is.
            continue;
        }
        path.push(k.clone());
        match v {
            Value::Null => {
                out.remove(k);
            }
            Value::Object(_) => {
                let cur = out.get(k).cloned().unwrap_or(Value::Object(Map::new()));
                match merge_map(kind, &cur, v, path)? {
                    Some(merged) => {
                        out.insert(k.clone(), merged);
                    }
                    None => {
                        out.remove(k);
                    }
                }
            }
            Value::Array(items) => {
                let names: Vec<&str> = path.iter().map(String::as_str).collect();
                let cur = out
                    .get(k)
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let merged = merge_list(kind, list_strategy(kind, &names), &cur, items, path)?;
                out.insert(k.clone(), Value::Array(merged));
            }
            scalar => {
                out.insert(k.clone(), scalar.clone());
            }
        }
        path.pop();
    }
    Ok(Some(Value::Object(out)))
}

fn is_directive(v: &Value, directive: &str) -> bool {
    v.get("$patch").and_then(Value::as_str) == Some(directive)
}

fn merge_list(
    kind: &str,
    strategy: ListStrategy,
    cur: &[Value],
    patch: &[Value],
    path: &mut Vec<String>,
) -> Result<Vec<Value>, PatchError> {
    let replace = patch.iter().any(|v| is_directive(v, "replace"));
    let items: Vec<&Value> = patch
        .iter()
        .filter(|v| !is_directive(v, "replace"))
        .collect();
    if replace {
        return Ok(items.into_iter().map(strip).collect());
    }
    match strategy {
        ListStrategy::Atomic => Ok(items.into_iter().map(strip).collect()),
        ListStrategy::Set => {
            let mut out = cur.to_vec();
            for v in items {
                if !out.contains(v) {
                    out.push(v.clone());
                }
            }
            Ok(out)
        }
        ListStrategy::MergeKey(key) => {
            let mut out = cur.to_vec();
            for v in items {
                let Some(kv) = v.get(key) else {
                    return Err(PatchError::Invalid(format!(
                        "{}: every element must have the merge key {key:?}",
                        path.join(".")
                    )));
                };
                let pos = out.iter().position(|o| o.get(key) == Some(kv));
                if is_directive(v, "delete") {
                    if let Some(i) = pos {
                        out.remove(i);
                    }
                    continue;
                }
                match pos {
                    Some(i) => {
                        if let Some(merged) = merge_map(kind, &out[i], v, path)? {
                            out[i] = merged;
                        }
                    }
                    None => out.push(strip(v)),
                }
            }
            Ok(out)
        }
    }
}

/// Removes patch directives from a value that is used as is.
fn strip(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_replaces_lists_and_null_removes() {
        let t = json!({"a": {"b": 1, "c": 2}, "l": [1, 2]});
        let out = merge(&t, &json!({"a": {"b": null, "d": 3}, "l": [3]}));
        assert_eq!(out, json!({"a": {"c": 2, "d": 3}, "l": [3]}));
    }

    #[test]
    fn json_patch_with_failing_test_is_invalid() {
        let t = json!({"metadata": {"finalizers": ["a"]}});
        let ok = json(
            &t,
            &json!([{"op": "test", "path": "/metadata/finalizers/0", "value": "a"}, {"op": "remove", "path": "/metadata/finalizers/0"}]),
        );
        assert_eq!(ok.unwrap(), json!({"metadata": {"finalizers": []}}));
        let bad = json(
            &t,
            &json!([{"op": "test", "path": "/metadata/finalizers/0", "value": "b"}]),
        );
        assert!(matches!(bad, Err(PatchError::Invalid(_))));
        assert!(matches!(
            json(&t, &json!({"op": "x"})),
            Err(PatchError::Syntax(_))
        ));
        // `test == null` passes on a missing path and fails on a present one.
        let empty = json!({"metadata": {}});
        let added = json(
            &empty,
            &json!([
                {"op": "test", "path": "/metadata/finalizers", "value": null},
                {"op": "add", "path": "/metadata/finalizers", "value": ["f"]}
            ]),
        );
        assert_eq!(added.unwrap(), json!({"metadata": {"finalizers": ["f"]}}));
        assert!(
            json(
                &t,
                &json!([{"op": "test", "path": "/metadata/finalizers", "value": null}])
            )
            .is_err()
        );
    }

    #[test]
    fn deployment_pod_templates_merge_like_pods() {
        let cases: &[(&str, &[&str], ListStrategy)] = &[
            (
                "Deployment",
                &["spec", "template", "spec", "containers"],
                ListStrategy::MergeKey("name"),
            ),
            (
                "Deployment",
                &["spec", "template", "spec", "containers", "ports"],
                ListStrategy::MergeKey("containerPort"),
            ),
            (
                "Deployment",
                &["spec", "template", "metadata", "finalizers"],
                ListStrategy::Set,
            ),
            (
                "Deployment",
                &["status", "conditions"],
                ListStrategy::MergeKey("type"),
            ),
            (
                "Deployment",
                &["spec", "template", "spec", "tolerations"],
                ListStrategy::Atomic,
            ),
            (
                "Pod",
                &["spec", "template", "spec", "containers"],
                ListStrategy::Atomic,
            ),
        ];
        for (kind, path, want) in cases {
            assert_eq!(list_strategy(kind, path), *want, "{kind} {path:?}");
        }
        let d = json!({"spec": {"template": {"spec": {"containers": [{"name": "ccm", "image": "a"}, {"name": "side", "image": "b"}]}}}});
        let out = strategic("Deployment", &d, &json!({"spec": {"template": {"spec": {"containers": [{"name": "ccm", "image": "c"}]}}}})).unwrap();
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "ccm", "image": "c"}, {"name": "side", "image": "b"}])
        );
    }

    #[test]
    fn taints_are_atomic_and_finalizers_a_set() {
        let node = json!({"metadata": {"finalizers": ["a"]}, "spec": {"taints": [{"key": "x", "effect": "NoSchedule"}, {"key": "y", "effect": "NoSchedule"}]}});
        let out = strategic("Node", &node, &json!({"metadata": {"finalizers": ["b", "a"]}, "spec": {"taints": [{"key": "y", "effect": "NoSchedule"}]}})).unwrap();
        assert_eq!(
            out["spec"]["taints"],
            json!([{"key": "y", "effect": "NoSchedule"}])
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b"]));
        let out = strategic(
            "Node",
            &out,
            &json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
        )
        .unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
    }

    #[test]
    fn conditions_merge_on_type_and_honour_replace() {
        let node = json!({"status": {"conditions": [
            {"type": "Ready", "status": "True"},
            {"type": "NetworkUnavailable", "status": "True"}
        ]}});
        let out = strategic(
            "Node",
            &node,
            &json!({"status": {"conditions": [
                {"type": "NetworkUnavailable", "status": "False", "reason": "RouteCreated"},
                {"type": "MemoryPressure", "status": "False"}
            ]}}),
        )
        .unwrap();
        assert_eq!(
            out["status"]["conditions"],
            json!([
                {"type": "Ready", "status": "True"},
                {"type": "NetworkUnavailable", "status": "False", "reason": "RouteCreated"},
                {"type": "MemoryPressure", "status": "False"}
            ])
        );
        let replaced = strategic("Node", &node, &json!({"status": {"addresses": [{"$patch": "replace"}, {"type": "InternalIP", "address": "10.0.0.1"}]}})).unwrap();
        assert_eq!(
            replaced["status"]["addresses"],
            json!([{"type": "InternalIP", "address": "10.0.0.1"}])
        );
        let deleted = strategic(
            "Node",
            &node,
            &json!({"status": {"conditions": [{"type": "Ready", "$patch": "delete"}]}}),
        )
        .unwrap();
        assert_eq!(
            deleted["status"]["conditions"],
            json!([{"type": "NetworkUnavailable", "status": "True"}])
        );
    }

    #[test]
    fn service_ports_merge_on_port() {
        let svc = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080, "nodePort": 30080}, {"port": 443}]}});
        let out = strategic("Service", &svc, &json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 53, "protocol": "UDP"}]}})).unwrap();
        assert_eq!(
            out["spec"]["ports"],
            json!([{"port": 80, "targetPort": 9090, "nodePort": 30080}, {"port": 443}, {"port": 53, "protocol": "UDP"}])
        );
        assert!(
            strategic(
                "Service",
                &svc,
                &json!({"spec": {"ports": [{"name": "x"}]}})
            )
            .is_err()
        );
    }

    #[test]
    fn map_directives_and_unknown_lists() {
        let t = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"x": [1, 2]}});
        let out = strategic(
            "ConfigMap",
            &t,
            &json!({"metadata": {"labels": {"$patch": "replace", "c": "3"}}, "spec": {"x": [3]}}),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"metadata": {"labels": {"c": "3"}}, "spec": {"x": [3]}})
        );
        let out = strategic("ConfigMap", &t, &json!({"spec": {"$patch": "delete"}})).unwrap();
        assert_eq!(out, json!({"metadata": {"labels": {"a": "1", "b": "2"}}}));
        let out = strategic(
            "ConfigMap",
            &t,
            &json!({"metadata": {"labels": {"$retainKeys": ["a"], "c": "3"}}}),
        )
        .unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"a": "1", "c": "3"}));
        let out = strategic(
            "ConfigMap",
            &t,
            &json!({"metadata": {"$setElementOrder/finalizers": ["a"], "labels": {"a": null}}}),
        )
        .unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"b": "2"}));
    }
}
