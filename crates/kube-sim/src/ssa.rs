//! Server-side apply (`application/apply-patch+yaml`): field ownership per manager in
//! `metadata.managedFields` (FieldsV1), merging by the schema's list and map types
//! (`x-kubernetes-list-type` map/set/atomic, `x-kubernetes-map-type`), conflicts when an applied
//! value differs from one another manager owns (409, or taken over with `force`), and removal of
//! the fields a manager stops applying that nobody else owns. Pure: objects in, objects out.
//!
//! The subset (docs/kube-sim.md says the same): ownership is tracked from an object's first
//! apply on. An object never applied has no `managedFields`; at its first apply every field it
//! has is owned by the manager `before-first-apply` (operation Update), as kube-apiserver does
//! for objects whose managedFields were cleared, and from then on every write updates the
//! owners: the writer of an update (its `fieldManager`, else its User-Agent's product) owns what
//! it changed. `status` is not applied through the main resource.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::openapi::{ListType, SchemaNode};

/// One step of a field path, as FieldsV1 spells it: `f:name`, `k:{"name":"c"}`, `v:"x"`, `i:0`.
pub type Path = Vec<String>;
/// A set of owned fields: every member path (list items owned as a whole included).
pub type FieldSet = BTreeSet<Path>;

/// The manager of an object's fields before its first apply.
pub const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// Fields no manager owns: identity and system fields, and the type.
fn ignored(top: &str, k: &str) -> bool {
    match top {
        "" => matches!(k, "apiVersion" | "kind" | "status"),
        "metadata" => matches!(
            k,
            "name"
                | "namespace"
                | "uid"
                | "resourceVersion"
                | "generation"
                | "creationTimestamp"
                | "deletionTimestamp"
                | "deletionGracePeriodSeconds"
                | "managedFields"
                | "selfLink"
        ),
        _ => false,
    }
}

fn key_of(item: &Value, keys: &[String], node: SchemaNode) -> Option<Value> {
    let mut out = Map::new();
    for k in keys {
        let v = item.get(k).cloned().or_else(|| node.default_of(k))?;
        out.insert(k.clone(), v);
    }
    Some(Value::Object(out))
}

/// The step naming list item `item` of a list of type `lt`, if it can be named.
fn item_step(lt: &ListType, item: &Value, items: SchemaNode, index: usize) -> Option<String> {
    match lt {
        ListType::Map(keys) => key_of(item, keys, items).map(|k| format!("k:{k}")),
        ListType::Set => Some(format!("v:{item}")),
        ListType::Atomic => Some(format!("i:{index}")),
    }
}

/// The fields `v` sets, under `path`.
pub fn fields_of(node: SchemaNode, v: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    collect(node, v, &mut Vec::new(), &mut out);
    out
}

fn collect(node: SchemaNode, v: &Value, path: &mut Path, out: &mut FieldSet) {
    match v {
        Value::Object(m) if !node.is_atomic_map() && !m.is_empty() => {
            let top = match path.as_slice() {
                [] => String::new(),
                [one] => one.trim_start_matches("f:").to_owned(),
                _ => "-".to_owned(),
            };
            for (k, child) in m {
                if ignored(&top, k) {
                    continue;
                }
                path.push(format!("f:{k}"));
                let child_node = node.field(k);
                let nested = match child {
                    Value::Object(cm) => !child_node.is_atomic_map() && !cm.is_empty(),
                    Value::Array(a) => child_node.list_type() != ListType::Atomic && !a.is_empty(),
                    _ => false,
                };
                if nested {
                    collect(child_node, child, path, out);
                } else {
                    out.insert(path.clone());
                }
                path.pop();
            }
        }
        Value::Array(items) => {
            let lt = node.list_type();
            let item_node = node.items();
            for (i, item) in items.iter().enumerate() {
                let Some(step) = item_step(&lt, item, item_node, i) else {
                    continue;
                };
                path.push(step);
                out.insert(path.clone());
                if matches!(lt, ListType::Map(_)) {
                    collect(item_node, item, path, out);
                }
                path.pop();
            }
        }
        _ => {
            out.insert(path.clone());
        }
    }
}

/// FieldsV1 JSON of a set: nested `f:`/`k:`/`v:` keys; a member with members below it carries
/// `"."`.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut node = &mut root;
        for step in path {
            node = node
                .entry(step.clone())
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("FieldsV1 nodes are objects");
        }
    }
    // A member with members below it is marked with ".".
    fn mark(node: &mut Map<String, Value>, set: &FieldSet, path: &mut Path) {
        for (k, child) in node.iter_mut() {
            path.push(k.clone());
            if let Value::Object(c) = child
                && !c.is_empty()
            {
                if set.contains(path) {
                    c.insert(".".into(), json!({}));
                }
                mark(c, set, path);
            }
            path.pop();
        }
    }
    mark(&mut root, set, &mut Vec::new());
    Value::Object(root)
}

/// The set a FieldsV1 value describes.
pub fn from_fields_v1(v: &Value) -> FieldSet {
    fn walk(v: &Value, path: &mut Path, out: &mut FieldSet) {
        let Some(m) = v.as_object() else { return };
        if (m.is_empty() || m.contains_key(".")) && !path.is_empty() {
            out.insert(path.clone());
        }
        for (k, child) in m {
            if k == "." {
                continue;
            }
            path.push(k.clone());
            walk(child, path, out);
            path.pop();
        }
    }
    let mut out = FieldSet::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

/// The value at `path` in `obj`, if any.
pub fn value_at<'a>(node: SchemaNode, obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let Some((step, rest)) = path.split_first() else {
        return Some(obj);
    };
    if let Some(k) = step.strip_prefix("f:") {
        return value_at(node.field(k), obj.get(k)?, rest);
    }
    let items = obj.as_array()?;
    let lt = node.list_type();
    let item_node = node.items();
    let found = items
        .iter()
        .enumerate()
        .find(|(i, item)| item_step(&lt, item, item_node, *i).as_deref() == Some(step.as_str()))?
        .1;
    value_at(item_node, found, rest)
}

/// Removes the field at `path` from `obj` (nothing if it is not there).
fn remove_at(node: SchemaNode, obj: &mut Value, path: &[String]) {
    let Some((step, rest)) = path.split_first() else {
        return;
    };
    if let Some(k) = step.strip_prefix("f:") {
        let Some(m) = obj.as_object_mut() else { return };
        if rest.is_empty() {
            m.remove(k);
        } else if let Some(child) = m.get_mut(k) {
            remove_at(node.field(k), child, rest);
        }
        return;
    }
    let lt = node.list_type();
    let item_node = node.items();
    let Some(items) = obj.as_array_mut() else {
        return;
    };
    let Some(i) = (0..items.len())
        .find(|i| item_step(&lt, &items[*i], item_node, *i).as_deref() == Some(step.as_str()))
    else {
        return;
    };
    if rest.is_empty() {
        items.remove(i);
    } else {
        remove_at(item_node, &mut items[i], rest);
    }
}

/// `applied` merged into `live` by the schema's merge types.
pub fn merge(node: SchemaNode, live: Option<&Value>, applied: &Value) -> Value {
    match (live, applied) {
        (Some(Value::Object(l)), Value::Object(a)) if !node.is_atomic_map() => {
            let mut out = l.clone();
            for (k, av) in a {
                let merged = merge(node.field(k), l.get(k), av);
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Some(Value::Array(l)), Value::Array(a)) => match node.list_type() {
            ListType::Atomic => applied.clone(),
            ListType::Set => {
                let mut out = l.clone();
                for item in a {
                    if !out.contains(item) {
                        out.push(item.clone());
                    }
                }
                Value::Array(out)
            }
            ListType::Map(keys) => {
                let item_node = node.items();
                let mut out = l.clone();
                for item in a {
                    let key = key_of(item, &keys, item_node);
                    match out
                        .iter()
                        .position(|x| key.is_some() && key_of(x, &keys, item_node) == key)
                    {
                        Some(i) => out[i] = merge(item_node, Some(&out[i]), item),
                        None => out.push(item.clone()),
                    }
                }
                Value::Array(out)
            }
        },
        _ => applied.clone(),
    }
}

/// A `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Manager {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: String,
    pub fields: FieldSet,
}

impl Manager {
    fn same(&self, other: &Manager) -> bool {
        self.manager == other.manager
            && self.operation == other.operation
            && self.subresource == other.subresource
    }
}

/// The entries of `metadata.managedFields`.
pub fn managers_of(obj: &Value) -> Vec<Manager> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            Manager {
                manager: s("manager"),
                operation: s("operation"),
                api_version: s("apiVersion"),
                time: s("time"),
                subresource: s("subresource"),
                fields: from_fields_v1(&e["fieldsV1"]),
            }
        })
        .collect()
}

/// Writes `managers` (those that own anything) into `obj`'s metadata.
pub fn set_managers(obj: &mut Value, managers: &[Manager]) {
    let entries: Vec<Value> = managers
        .iter()
        .filter(|m| !m.fields.is_empty())
        .map(|m| {
            let mut e = json!({"manager": m.manager, "operation": m.operation,
                "apiVersion": m.api_version, "time": m.time,
                "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(&m.fields)});
            if !m.subresource.is_empty() {
                e["subresource"] = json!(m.subresource);
            }
            e
        })
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("managedFields".into(), Value::Array(entries));
    }
}

/// A field another manager owns with a different value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub manager: String,
    pub api_version: String,
    pub path: Path,
}

/// A path as kube-apiserver prints it: `.spec.containers[name="c"].image`.
pub fn path_string(path: &[String]) -> String {
    let mut out = String::new();
    for step in path {
        if let Some(f) = step.strip_prefix("f:") {
            out.push('.');
            out.push_str(f);
        } else if let Some(k) = step.strip_prefix("k:") {
            let keys: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let parts: Vec<String> = keys.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = step.strip_prefix("v:") {
            out.push_str(&format!("[={v}]"));
        } else if let Some(i) = step.strip_prefix("i:") {
            out.push_str(&format!("[{i}]"));
        }
    }
    out
}

/// The 409 message of `conflicts`, as kube-apiserver words it.
pub fn conflict_message(conflicts: &[Conflict]) -> String {
    let n = conflicts.len();
    if n == 1 {
        let c = &conflicts[0];
        return format!(
            "Apply failed with 1 conflict: conflict with {:?} using {}: {}",
            c.manager,
            c.api_version,
            path_string(&c.path)
        );
    }
    let mut by_manager: Vec<(String, String, Vec<String>)> = Vec::new();
    for c in conflicts {
        let p = path_string(&c.path);
        match by_manager
            .iter_mut()
            .find(|(m, v, _)| *m == c.manager && *v == c.api_version)
        {
            Some((_, _, ps)) => ps.push(p),
            None => by_manager.push((c.manager.clone(), c.api_version.clone(), vec![p])),
        }
    }
    let parts: Vec<String> = by_manager
        .iter()
        .map(|(m, v, ps)| {
            let lines: Vec<String> = ps.iter().map(|p| format!("- {p}")).collect();
            format!("conflicts with {m:?} using {v}:\n{}", lines.join("\n"))
        })
        .collect();
    format!("Apply failed with {n} conflicts: {}", parts.join("\n"))
}

/// Applies `applied` (the configuration of `manager`) to `live` (`None`: the object is new).
/// `live`'s managers are its `managedFields` (every field goes to [`BEFORE_FIRST_APPLY`] if it
/// has none). Conflicts are an error unless `force`, which takes the fields over.
pub fn apply(
    node: SchemaNode,
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    api_version: &str,
    now: &str,
    force: bool,
) -> Result<Value, Vec<Conflict>> {
    let applied_set = fields_of(node, applied);
    let mut managers = match live {
        None => Vec::new(),
        Some(l) => {
            let m = managers_of(l);
            if m.is_empty() {
                vec![Manager {
                    manager: BEFORE_FIRST_APPLY.to_owned(),
                    operation: "Update".to_owned(),
                    api_version: api_version.to_owned(),
                    time: now.to_owned(),
                    subresource: String::new(),
                    fields: fields_of(node, l),
                }]
            } else {
                m
            }
        }
    };
    let me = Manager {
        manager: manager.to_owned(),
        operation: "Apply".to_owned(),
        api_version: api_version.to_owned(),
        time: now.to_owned(),
        subresource: String::new(),
        fields: applied_set.clone(),
    };
    // Conflicts: a leaf someone else owns, with another value now.
    let leaves: Vec<&Path> = applied_set
        .iter()
        .filter(|p| {
            !applied_set
                .iter()
                .any(|q| q.len() > p.len() && q.starts_with(p))
        })
        .collect();
    let mut conflicts = Vec::new();
    if let Some(l) = live {
        for m in managers.iter().filter(|m| !m.same(&me)) {
            for p in &leaves {
                if m.fields.contains(*p) && value_at(node, l, p) != value_at(node, applied, p) {
                    conflicts.push(Conflict {
                        manager: m.manager.clone(),
                        api_version: m.api_version.clone(),
                        path: (*p).clone(),
                    });
                }
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    for c in &conflicts {
        for m in managers.iter_mut().filter(|m| m.manager == c.manager) {
            m.fields.remove(&c.path);
        }
    }
    let previous = managers
        .iter()
        .position(|m| m.same(&me))
        .map(|i| managers.remove(i));
    let mut object = match live {
        Some(l) => merge(node, Some(l), applied),
        None => applied.clone(),
    };
    // What this manager applied before and no longer does goes, unless someone else owns it.
    if let Some(prev) = previous {
        let mut dropped: Vec<&Path> = prev
            .fields
            .iter()
            .filter(|p| !applied_set.contains(*p))
            .filter(|p| !managers.iter().any(|m| m.fields.contains(*p)))
            .collect();
        dropped.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in dropped {
            remove_at(node, &mut object, p);
        }
    }
    managers.push(me);
    set_managers(&mut object, &managers);
    Ok(object)
}

/// After an ordinary write by `manager` (an object that has managedFields), `manager` owns the
/// fields the write changed and nobody else does.
pub fn record_update(
    node: SchemaNode,
    old: &Value,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    subresource: &str,
    now: &str,
) {
    let mut managers = managers_of(old);
    if managers.is_empty() {
        return;
    }
    let old_set = fields_of(node, old);
    let new_set = fields_of(node, new);
    // Added members, and leaves whose value changed (a list item whose field changed is not
    // itself changed).
    let is_leaf = |p: &Path| {
        !new_set
            .iter()
            .any(|q| q.len() > p.len() && q.starts_with(p))
    };
    let changed: FieldSet = new_set
        .iter()
        .filter(|p| {
            !old_set.contains(*p)
                || (is_leaf(p) && value_at(node, old, p) != value_at(node, new, p))
        })
        .cloned()
        .collect();
    let gone: FieldSet = old_set.difference(&new_set).cloned().collect();
    for m in &mut managers {
        m.fields
            .retain(|p| !changed.contains(p) && !gone.contains(p));
    }
    if !changed.is_empty() {
        let me = Manager {
            manager: manager.to_owned(),
            operation: "Update".to_owned(),
            api_version: api_version.to_owned(),
            time: now.to_owned(),
            subresource: subresource.to_owned(),
            fields: FieldSet::new(),
        };
        let i = match managers.iter().position(|m| m.same(&me)) {
            Some(i) => i,
            None => {
                managers.push(me);
                managers.len() - 1
            }
        };
        managers[i].fields.extend(changed);
        managers[i].time = now.to_owned();
    }
    set_managers(new, &managers);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy_node() -> SchemaNode {
        SchemaNode::of_kind("apps", "v1", "Deployment")
    }

    fn paths(set: &FieldSet) -> Vec<String> {
        set.iter().map(|p| path_string(p)).collect()
    }

    #[test]
    fn field_sets_follow_the_list_types() {
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}, "finalizers": ["x"]},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [{"name": "c", "image": "nginx", "args": ["a", "b"],
                    "ports": [{"containerPort": 80}]}]}}}});
        let set = fields_of(deploy_node(), &d);
        assert_eq!(
            paths(&set),
            [
                ".metadata.finalizers[=\"x\"]",
                ".metadata.labels.app",
                ".spec.replicas",
                ".spec.selector",
                ".spec.template.spec.containers[name=\"c\"]",
                ".spec.template.spec.containers[name=\"c\"].args",
                ".spec.template.spec.containers[name=\"c\"].image",
                ".spec.template.spec.containers[name=\"c\"].name",
                ".spec.template.spec.containers[name=\"c\"].ports[containerPort=80,protocol=\"TCP\"]",
                ".spec.template.spec.containers[name=\"c\"].ports[containerPort=80,protocol=\"TCP\"].containerPort",
            ]
        );
        // FieldsV1 round trip, with "." on owned list items.
        let v1 = to_fields_v1(&set);
        assert!(
            v1["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"]["."]
                .is_object()
        );
        assert_eq!(from_fields_v1(&v1), set);
    }

    #[test]
    fn apply_merges_conflicts_and_forgets() {
        let node = deploy_node();
        let first = json!({"metadata": {"name": "web", "labels": {"a": "1"}},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "c", "image": "v1"}]}}}});
        let obj = apply(node, None, &first, "alice", "apps/v1", "t0", false).unwrap();
        // Bob changes the image with an update: he owns it now.
        let mut updated = obj.clone();
        updated["spec"]["template"]["spec"]["containers"][0]["image"] = json!("v2");
        record_update(node, &obj, &mut updated, "bob", "apps/v1", "", "t1");
        // Alice applies her old image again: a conflict with bob.
        let e = apply(
            node,
            Some(&updated),
            &first,
            "alice",
            "apps/v1",
            "t2",
            false,
        )
        .unwrap_err();
        assert_eq!(
            conflict_message(&e),
            "Apply failed with 1 conflict: conflict with \"bob\" using apps/v1: .spec.template.spec.containers[name=\"c\"].image"
        );
        // Alice applies without the label and the image: the label goes, bob's image stays.
        let second = json!({"metadata": {"name": "web"},
            "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "c"}]}}}});
        let obj = apply(
            node,
            Some(&updated),
            &second,
            "alice",
            "apps/v1",
            "t3",
            false,
        )
        .unwrap();
        assert!(obj["metadata"]["labels"].get("a").is_none(), "{obj}");
        assert_eq!(obj["spec"]["replicas"], 3);
        assert_eq!(
            obj["spec"]["template"]["spec"]["containers"][0]["image"],
            "v2"
        );
        // Forced, the conflicting image is alice's.
        let obj = apply(node, Some(&obj), &first, "alice", "apps/v1", "t4", true).unwrap();
        assert_eq!(
            obj["spec"]["template"]["spec"]["containers"][0]["image"],
            "v1"
        );
        let bob = managers_of(&obj).into_iter().find(|m| m.manager == "bob");
        assert!(bob.is_none(), "bob owns nothing any more");
    }
}
