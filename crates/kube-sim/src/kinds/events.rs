//! Events: validation, and the two API forms (core/v1 stored, events.k8s.io/v1 converted).

use serde_json::{Map, Value, json};

use super::*;

/// events.k8s.io/v1 create validation (the rules the Recorder's events must pass).
pub fn validate_new_event(def: &ResourceDef, name: &str, ev: &Value) -> Result<(), StatusError> {
    let invalid = |f: &str, m: &str| Err(StatusError::invalid(def, name, f, m));
    if ev.get("eventTime").is_none_or(Value::is_null) {
        return invalid("eventTime", "Required value");
    }
    match str_at(ev, "/type") {
        Some("Normal" | "Warning") => {}
        _ => {
            return invalid(
                "type",
                "Unsupported value: supported values: \"Normal\", \"Warning\"",
            );
        }
    }
    for f in [
        "reportingController",
        "reportingInstance",
        "action",
        "reason",
    ] {
        match str_at(ev, &format!("/{f}")) {
            Some(s) if !s.is_empty() && s.len() <= 128 => {}
            _ => return invalid(f, "Required value"),
        }
    }
    if str_at(ev, "/note").is_some_and(|n| n.len() > 1024) {
        return invalid("note", "Too long: may not be more than 1024 bytes");
    }
    Ok(())
}

/// Where an Event may live, checked on its storage (core/v1) form as kube-apiserver's
/// `ValidateEventCreate` does: an Event about a cluster-scoped object goes in `default` (or, for
/// new-style Events with an `eventTime`, `kube-system`); one about a namespaced object, in that
/// object's namespace (old-style Events; new-style ones are not checked for that).
pub fn validate_event_namespace(
    def: &ResourceDef,
    name: &str,
    namespace: &str,
    core: &Value,
) -> Result<(), StatusError> {
    let involved = str_at(core, "/involvedObject/namespace").unwrap_or("");
    let new_style = core.get("eventTime").is_some_and(|t| !t.is_null());
    let ok = match (involved.is_empty(), new_style) {
        (true, false) => namespace.is_empty() || namespace == "default",
        (true, true) => namespace == "default" || namespace == "kube-system",
        (false, false) => namespace == involved,
        (false, true) => true,
    };
    if ok {
        return Ok(());
    }
    Err(StatusError::invalid(
        def,
        name,
        "involvedObject.namespace",
        format!("Invalid value: {involved:?}: does not match event.namespace"),
    ))
}

/// Fields that are the same data in the two Event APIs: (core/v1 name, events.k8s.io/v1 name).
const EVENT_FIELDS: [(&str, &str); 14] = [
    ("metadata", "metadata"),
    ("eventTime", "eventTime"),
    ("action", "action"),
    ("reason", "reason"),
    ("type", "type"),
    ("involvedObject", "regarding"),
    ("related", "related"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("reportingInstance", "reportingInstance"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("source", "deprecatedSource"),
    ("series", "series"),
];

/// Copies the shared fields of `from` into a new Event of `api_version`, renaming them with `name`.
pub(super) fn copy_event_fields(
    from: &Value,
    api_version: &str,
    name: impl Fn(&(&'static str, &'static str)) -> (&'static str, &'static str),
) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!(api_version));
    out.insert("kind".into(), json!("Event"));
    for pair in &EVENT_FIELDS {
        let (src, dst) = name(pair);
        if let Some(v) = from.get(src).filter(|v| !v.is_null()) {
            out.insert(dst.into(), v.clone());
        }
    }
    out
}

/// core/v1 Event (storage form) to events.k8s.io/v1.
pub fn event_to_events_v1(core: &Value) -> Value {
    let mut out = copy_event_fields(core, "events.k8s.io/v1", |&(c, e)| (c, e));
    if !out.contains_key("series")
        && let Some(c) = core.get("count").and_then(Value::as_i64).filter(|c| *c > 1)
    {
        out.insert("deprecatedCount".into(), json!(c));
    }
    Value::Object(out)
}

/// events.k8s.io/v1 Event to the core/v1 storage form.
pub fn event_from_events_v1(ev: &Value) -> Value {
    let mut out = copy_event_fields(ev, "v1", |&(c, e)| (e, c));
    let count = ev
        .pointer("/series/count")
        .and_then(Value::as_i64)
        .or_else(|| ev.get("deprecatedCount").and_then(Value::as_i64))
        .unwrap_or(1);
    out.insert("count".into(), json!(count));
    out.entry("involvedObject").or_insert_with(|| json!({}));
    Value::Object(out)
}
