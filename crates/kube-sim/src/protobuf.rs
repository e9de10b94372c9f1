//! Request bodies in Kubernetes protobuf (`application/vnd.kubernetes.protobuf`), which
//! client-go's typed clients send (`kubectl create deployment`, `kubectl auth can-i`): the
//! `k8s\0` envelope around a `runtime.Unknown`, whose `raw` is the object in the message of its
//! kind, decoded with the definitions of the pinned release (`proto/`, compiled by build.rs)
//! into the JSON kube-apiserver would have read. Answers stay JSON: every client that sends
//! protobuf accepts JSON back.
//!
//! The JSON follows Go's encoding of the same object: empty strings, objects and lists are left
//! out (the fields are `omitempty`, and Go's protobuf writes its zero values), times become
//! RFC 3339 (the zero time is left out), and the wrapper types (`IntOrString`, `Quantity`,
//! `RawExtension`, `FieldsV1`, `Duration`, the `items` lists) are unwrapped.

use std::sync::OnceLock;

use base64::Engine as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MapKey, ReflectMessage as _, Value as Pb};
use serde_json::{Map, Value, json};

/// The media type of protobuf bodies.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";
const MAGIC: &[u8] = b"k8s\0";
/// Go's zero `time.Time` in Unix seconds (January 1, year 1).
const ZERO_TIME: i64 = -62_135_596_800;

fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(include_bytes!(concat!(env!("OUT_DIR"), "/k8s.bin")).as_ref())
            .expect("build.rs wrote a valid descriptor set")
    })
}

/// Whether a Content-Type is Kubernetes protobuf.
pub fn is_protobuf(content_type: &str) -> bool {
    content_type.split(';').next().map(str::trim) == Some(MEDIA_TYPE)
}

/// The protobuf package of an API group version (`apps/v1` → `k8s.io.api.apps.v1`).
fn package(api_version: &str) -> Option<String> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let dir = match group {
        "" => "core",
        "rbac.authorization.k8s.io" => "rbac",
        g => g.split('.').next()?,
    };
    Some(format!("k8s.io.api.{dir}.{version}"))
}

/// Decodes a protobuf request body into the JSON form of the object.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let raw = body
        .strip_prefix(MAGIC)
        .ok_or("the body does not start with the Kubernetes protobuf prefix")?;
    let unknown = pool()
        .get_message_by_name("k8s.io.apimachinery.pkg.runtime.Unknown")
        .expect("runtime.Unknown is in the descriptor set");
    let envelope = DynamicMessage::decode(unknown, raw).map_err(|e| e.to_string())?;
    let type_meta = match envelope.get_field_by_name("typeMeta").as_deref() {
        Some(Pb::Message(m)) => message_json(m),
        _ => Value::Null,
    };
    let api_version = type_meta["apiVersion"].as_str().unwrap_or_default();
    let kind = type_meta["kind"].as_str().unwrap_or_default();
    let encoding = envelope
        .get_field_by_name("contentEncoding")
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    if !encoding.is_empty() {
        return Err(format!("content encoding {encoding:?} is not supported"));
    }
    let name = format!(
        "{}.{kind}",
        package(api_version).ok_or_else(|| format!("unknown apiVersion {api_version:?}"))?
    );
    let desc = pool()
        .get_message_by_name(&name)
        .ok_or_else(|| format!("no protobuf definition of {kind} in {api_version:?}"))?;
    let object = match envelope.get_field_by_name("raw").as_deref() {
        Some(Pb::Bytes(b)) => b.clone(),
        _ => Default::default(),
    };
    let msg = DynamicMessage::decode(desc, object).map_err(|e| e.to_string())?;
    let mut out = message_json(&msg);
    if let Value::Object(m) = &mut out {
        m.insert("apiVersion".into(), json!(api_version));
        m.insert("kind".into(), json!(kind));
    }
    Ok(out)
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

fn int_field(m: &DynamicMessage, name: &str) -> i64 {
    match m.get_field_by_name(name).as_deref() {
        Some(Pb::I64(n)) => *n,
        Some(Pb::I32(n)) => i64::from(*n),
        _ => 0,
    }
}

fn bytes_field(m: &DynamicMessage, name: &str) -> Vec<u8> {
    match m.get_field_by_name(name).as_deref() {
        Some(Pb::Bytes(b)) => b.to_vec(),
        _ => Vec::new(),
    }
}

/// RFC 3339 with seconds (`Time`) or microseconds (`MicroTime`); the zero time is null.
fn time_json(m: &DynamicMessage, micro: bool) -> Value {
    let seconds = int_field(m, "seconds");
    if seconds == ZERO_TIME
        || (seconds == 0 && int_field(m, "nanos") == 0 && !m.has_field_by_name("seconds"))
    {
        return Value::Null;
    }
    let nanos = int_field(m, "nanos");
    let Ok(t) = jiff::Timestamp::new(seconds, i32::try_from(nanos).unwrap_or(0)) else {
        return Value::Null;
    };
    if micro {
        json!(t.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string())
    } else {
        json!(t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
    }
}

/// Go's `time.Duration` string (`1h2m3s`, `1.5s`) of nanoseconds.
fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".to_owned();
    }
    let sign = if ns < 0 { "-" } else { "" };
    let ns = ns.unsigned_abs();
    let (h, rest) = (ns / 3_600_000_000_000, ns % 3_600_000_000_000);
    let (m, rest) = (rest / 60_000_000_000, rest % 60_000_000_000);
    let secs = rest as f64 / 1e9;
    let s = format!("{secs}s");
    match (h, m) {
        (0, 0) => format!("{sign}{s}"),
        (0, m) => format!("{sign}{m}m{s}"),
        (h, m) => format!("{sign}{h}h{m}m{s}"),
    }
}

fn message_json(m: &DynamicMessage) -> Value {
    let name = m.descriptor().full_name().to_owned();
    match name.as_str() {
        "k8s.io.apimachinery.pkg.apis.meta.v1.Time" => time_json(m, false),
        "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime" => time_json(m, true),
        "k8s.io.apimachinery.pkg.apis.meta.v1.Duration" => {
            json!(go_duration(int_field(m, "duration")))
        }
        "k8s.io.apimachinery.pkg.util.intstr.IntOrString" => {
            if int_field(m, "type") == 1 {
                m.get_field_by_name("strVal")
                    .and_then(|v| v.as_str().map(|s| json!(s)))
                    .unwrap_or(Value::Null)
            } else {
                json!(int_field(m, "intVal"))
            }
        }
        "k8s.io.apimachinery.pkg.api.resource.Quantity" => m
            .get_field_by_name("string")
            .and_then(|v| v.as_str().map(|s| json!(s)))
            .unwrap_or(Value::Null),
        "k8s.io.apimachinery.pkg.runtime.RawExtension" => {
            serde_json::from_slice(&bytes_field(m, "raw")).unwrap_or(Value::Null)
        }
        "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1" => {
            serde_json::from_slice(&bytes_field(m, "Raw")).unwrap_or(Value::Null)
        }
        // Named slices in Go, wrapped in a message for protobuf: JSON has the bare list.
        "k8s.io.apimachinery.pkg.apis.meta.v1.Verbs" | "k8s.io.api.authorization.v1.ExtraValue" => {
            m.get_field_by_name("items")
                .map_or(Value::Null, |v| value_json(&v))
        }
        _ => {
            let mut out = Map::new();
            for (field, value) in m.fields() {
                let v = value_json(value);
                if !is_empty(&v) {
                    out.insert(field.name().to_owned(), v);
                }
            }
            Value::Object(out)
        }
    }
}

fn value_json(v: &Pb) -> Value {
    match v {
        Pb::Bool(b) => json!(b),
        Pb::I32(n) => json!(n),
        Pb::I64(n) => json!(n),
        Pb::U32(n) => json!(n),
        Pb::U64(n) => json!(n),
        Pb::F32(n) => json!(n),
        Pb::F64(n) => json!(n),
        Pb::String(s) => json!(s),
        Pb::Bytes(b) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
        Pb::EnumNumber(n) => json!(n),
        Pb::Message(m) => message_json(m),
        Pb::List(items) => Value::Array(items.iter().map(value_json).collect()),
        Pb::Map(entries) => {
            let mut out = Map::new();
            for (k, v) in entries {
                let key = match k {
                    MapKey::String(s) => s.clone(),
                    MapKey::Bool(b) => b.to_string(),
                    MapKey::I32(n) => n.to_string(),
                    MapKey::I64(n) => n.to_string(),
                    MapKey::U32(n) => n.to_string(),
                    MapKey::U64(n) => n.to_string(),
                };
                out.insert(key, value_json(v));
            }
            Value::Object(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes `object` (JSON) as client-go would: the message of its kind inside the envelope.
    fn encode(api_version: &str, kind: &str, fields: &[(&str, Pb)]) -> Vec<u8> {
        let desc = pool()
            .get_message_by_name(&format!("{}.{kind}", package(api_version).unwrap()))
            .unwrap();
        let mut msg = DynamicMessage::new(desc);
        for (name, v) in fields {
            msg.set_field_by_name(name, v.clone());
        }
        let unknown = pool()
            .get_message_by_name("k8s.io.apimachinery.pkg.runtime.Unknown")
            .unwrap();
        let tm_desc = pool()
            .get_message_by_name("k8s.io.apimachinery.pkg.runtime.TypeMeta")
            .unwrap();
        let mut tm = DynamicMessage::new(tm_desc);
        tm.set_field_by_name("apiVersion", Pb::String(api_version.into()));
        tm.set_field_by_name("kind", Pb::String(kind.into()));
        let mut env = DynamicMessage::new(unknown);
        env.set_field_by_name("typeMeta", Pb::Message(tm));
        env.set_field_by_name("raw", Pb::Bytes(prost::Message::encode_to_vec(&msg).into()));
        let mut out = MAGIC.to_vec();
        out.extend(prost::Message::encode_to_vec(&env));
        out
    }

    fn message(name: &str, fields: &[(&str, Pb)]) -> Pb {
        let mut m = DynamicMessage::new(pool().get_message_by_name(name).unwrap());
        for (n, v) in fields {
            m.set_field_by_name(n, v.clone());
        }
        Pb::Message(m)
    }

    #[test]
    fn packages_of_group_versions() {
        for (gv, want) in [
            ("v1", "k8s.io.api.core.v1"),
            ("apps/v1", "k8s.io.api.apps.v1"),
            ("rbac.authorization.k8s.io/v1", "k8s.io.api.rbac.v1"),
            ("authorization.k8s.io/v1", "k8s.io.api.authorization.v1"),
            ("discovery.k8s.io/v1", "k8s.io.api.discovery.v1"),
        ] {
            assert_eq!(package(gv).as_deref(), Some(want), "{gv}");
        }
    }

    #[test]
    fn a_service_decodes_to_the_json_go_would_write() {
        let meta = message(
            "k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            &[
                ("name", Pb::String("web".into())),
                ("namespace", Pb::String(String::new())),
                (
                    "creationTimestamp",
                    message(
                        "k8s.io.apimachinery.pkg.apis.meta.v1.Time",
                        &[("seconds", Pb::I64(ZERO_TIME))],
                    ),
                ),
            ],
        );
        let port = message(
            "k8s.io.api.core.v1.ServicePort",
            &[
                ("port", Pb::I32(80)),
                ("protocol", Pb::String("TCP".into())),
                (
                    "targetPort",
                    message(
                        "k8s.io.apimachinery.pkg.util.intstr.IntOrString",
                        &[("type", Pb::I64(1)), ("strVal", Pb::String("http".into()))],
                    ),
                ),
            ],
        );
        let spec = message(
            "k8s.io.api.core.v1.ServiceSpec",
            &[
                ("ports", Pb::List(vec![port])),
                ("type", Pb::String("LoadBalancer".into())),
            ],
        );
        let body = encode("v1", "Service", &[("metadata", meta), ("spec", spec)]);
        assert_eq!(
            decode(&body).unwrap(),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP", "targetPort": "http"}]}})
        );
    }

    #[test]
    fn wrappers_and_errors() {
        let ts = message(
            "k8s.io.apimachinery.pkg.apis.meta.v1.Time",
            &[("seconds", Pb::I64(1_767_225_600))],
        );
        let lease = encode(
            "coordination.k8s.io/v1",
            "Lease",
            &[(
                "spec",
                message(
                    "k8s.io.api.coordination.v1.LeaseSpec",
                    &[
                        ("holderIdentity", Pb::String("a".into())),
                        ("leaseDurationSeconds", Pb::I32(0)),
                    ],
                ),
            )],
        );
        assert_eq!(
            decode(&lease).unwrap()["spec"],
            json!({"holderIdentity": "a", "leaseDurationSeconds": 0})
        );
        let Pb::Message(t) = ts else { unreachable!() };
        assert_eq!(time_json(&t, false), json!("2026-01-01T00:00:00Z"));
        assert_eq!(go_duration(300_000_000_000), "5m0s");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(3_723_000_000_000), "1h2m3s");
        assert!(decode(b"{}").unwrap_err().contains("prefix"));
        let mut other = encode("v1", "Service", &[]);
        other.truncate(8);
        assert!(decode(&other).is_err());
    }
}
