//! OpenAPI v3 as kube-apiserver serves it: `/openapi/v3` lists a document per group version,
//! `/openapi/v3/<path>` is that document. The documents are kube-apiserver's own, from the
//! pinned Kubernetes release (`openapi/update.sh` copies them, gzipped, for the group versions
//! kube-sim serves), so `kubectl apply` validates and `kubectl explain` answers as on a cluster.
//! OpenAPI v2 is derived from them ([`crate::swagger`]).

use std::collections::{BTreeMap, HashMap};
use std::io::Read as _;
use std::sync::OnceLock;

use serde_json::{Value, json};

/// The Kubernetes release the documents come from.
pub const VERSION: &str = include_str!("../openapi/v3/VERSION");

macro_rules! docs {
    ($($path:literal => $file:literal),* $(,)?) => {
        &[$(($path, include_bytes!(concat!("../openapi/v3/", $file, "_openapi.json.gz")))),*]
    };
}

/// (path below `/openapi/v3/`, gzipped document).
const DOCS: &[(&str, &[u8])] = docs![
    "api" => "api",
    "api/v1" => "api__v1",
    "apis/apps" => "apis__apps",
    "apis/apps/v1" => "apis__apps__v1",
    "apis/authorization.k8s.io" => "apis__authorization.k8s.io",
    "apis/authorization.k8s.io/v1" => "apis__authorization.k8s.io__v1",
    "apis/coordination.k8s.io" => "apis__coordination.k8s.io",
    "apis/coordination.k8s.io/v1" => "apis__coordination.k8s.io__v1",
    "apis/discovery.k8s.io" => "apis__discovery.k8s.io",
    "apis/discovery.k8s.io/v1" => "apis__discovery.k8s.io__v1",
    "apis/events.k8s.io" => "apis__events.k8s.io",
    "apis/events.k8s.io/v1" => "apis__events.k8s.io__v1",
    "apis/rbac.authorization.k8s.io" => "apis__rbac.authorization.k8s.io",
    "apis/rbac.authorization.k8s.io/v1" => "apis__rbac.authorization.k8s.io__v1",
];

/// A document and the hash its URL carries (clients cache by URL).
pub struct Document {
    pub hash: String,
    pub json: Vec<u8>,
}

fn documents() -> &'static BTreeMap<&'static str, Document> {
    static DOCUMENTS: OnceLock<BTreeMap<&'static str, Document>> = OnceLock::new();
    DOCUMENTS.get_or_init(|| {
        DOCS.iter()
            .map(|(path, gz)| {
                let mut json = Vec::new();
                flate2::read::GzDecoder::new(*gz)
                    .read_to_end(&mut json)
                    .expect("the embedded OpenAPI documents are valid gzip");
                (
                    *path,
                    Document {
                        hash: fnv1a_hex(&json),
                        json,
                    },
                )
            })
            .collect()
    })
}

/// 64-bit FNV-1a, upper-case hex: stable, and enough to tell documents apart.
fn fnv1a_hex(bytes: &[u8]) -> String {
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{h:016X}")
}

/// The `/openapi/v3` index.
pub fn index() -> Value {
    let paths: serde_json::Map<String, Value> = documents()
        .iter()
        .map(|(path, d)| {
            (
                (*path).to_owned(),
                json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={}", d.hash)}),
            )
        })
        .collect();
    json!({ "paths": paths })
}

/// The document at `/openapi/v3/<path>`.
pub fn document(path: &str) -> Option<&'static Document> {
    documents().get(path)
}

/// The paths documents are served for (for tests: they must cover the served group versions).
pub fn paths() -> Vec<&'static str> {
    DOCS.iter().map(|(p, _)| *p).collect()
}

/// Every schema of the served documents by name, and the schema name of each
/// (group, version, kind), parsed on first use.
struct Schemas {
    by_name: HashMap<String, Value>,
    by_kind: HashMap<(String, String, String), String>,
}

fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let mut by_name = HashMap::new();
        let mut by_kind = HashMap::new();
        for d in documents().values() {
            let mut doc: Value = serde_json::from_slice(&d.json).expect("embedded OpenAPI is JSON");
            let Some(Value::Object(all)) = doc.pointer_mut("/components/schemas").map(Value::take)
            else {
                continue;
            };
            for (name, schema) in all {
                for gvk in schema["x-kubernetes-group-version-kind"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    let s = |k: &str| gvk[k].as_str().unwrap_or_default().to_owned();
                    by_kind.insert((s("group"), s("version"), s("kind")), name.clone());
                }
                by_name.insert(name, schema);
            }
        }
        Schemas { by_name, by_kind }
    })
}

/// Every schema of the served documents, by name (for [`crate::swagger`]).
pub(crate) fn all_schemas() -> BTreeMap<&'static str, &'static Value> {
    schemas()
        .by_name
        .iter()
        .map(|(name, schema)| (name.as_str(), schema))
        .collect()
}

/// Removes the fields of `obj` (a `group`/`version` `kind`) that its schema does not declare
/// (kube-apiserver drops them when it decodes) and returns them as its field validation names
/// them (`spec.ports[0].nodePortt`). Kinds without a schema are left as they are.
pub fn strip_unknown_fields(
    group: &str,
    version: &str,
    kind: &str,
    obj: &mut Value,
) -> Vec<String> {
    let s = schemas();
    let key = (group.to_owned(), version.to_owned(), kind.to_owned());
    let Some(schema) = s.by_kind.get(&key).and_then(|n| s.by_name.get(n)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    walk(s, schema, obj, &mut String::new(), &mut out);
    out
}

/// [`strip_unknown_fields`] without changing `obj`.
pub fn unknown_fields(group: &str, version: &str, kind: &str, obj: &Value) -> Vec<String> {
    strip_unknown_fields(group, version, kind, &mut obj.clone())
}

/// Patch directives of strategic merge patches, which no schema declares.
fn is_directive(key: &str) -> bool {
    key.starts_with('$')
}

/// Strips what `schema` does not declare from `v`. `path` is where `v` is (a buffer shared by
/// the whole walk, restored on return: this runs on every write, over every field).
fn walk(s: &Schemas, schema: &Value, v: &mut Value, path: &mut String, out: &mut Vec<String>) {
    let schema = resolve(s, schema);
    if schema["x-kubernetes-preserve-unknown-fields"] == Value::Bool(true) {
        return;
    }
    let len = path.len();
    let enter = |path: &mut String, k: &str| {
        if len > 0 {
            path.push('.');
        }
        path.push_str(k);
    };
    match v {
        Value::Object(fields) => {
            if let Some(Value::Object(props)) = schema.get("properties") {
                fields.retain(|k, val| {
                    let keep = match props.get(k) {
                        Some(p) => {
                            enter(path, k);
                            walk(s, p, val, path, out);
                            true
                        }
                        None if is_directive(k) => return true,
                        None => {
                            enter(path, k);
                            out.push(path.clone());
                            false
                        }
                    };
                    path.truncate(len);
                    keep
                });
            } else if let Some(items) = schema.get("additionalProperties").filter(|a| a.is_object())
            {
                for (k, val) in fields.iter_mut() {
                    enter(path, k);
                    walk(s, items, val, path, out);
                    path.truncate(len);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = schema.get("items") {
                for (i, val) in items.iter_mut().enumerate() {
                    use std::fmt::Write as _;
                    let _ = write!(path, "[{i}]");
                    walk(s, item, val, path, out);
                    path.truncate(len);
                }
            }
        }
        _ => {}
    }
}

/// Follows `$ref` (also inside a one-element `allOf`, as the documents wrap references).
fn resolve<'a>(s: &'a Schemas, schema: &'a Value) -> &'a Value {
    let reference = schema["$ref"].as_str().or_else(|| {
        schema["allOf"]
            .as_array()
            .and_then(|a| a.iter().find_map(|x| x["$ref"].as_str()))
    });
    reference
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
        .and_then(|name| s.by_name.get(name))
        .map_or(schema, |target| resolve(s, target))
}

/// How a list merges (`x-kubernetes-list-type`; lists without it are atomic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListType {
    Atomic,
    Set,
    /// Items are identified by these fields.
    Map(Vec<String>),
}

/// A place in a kind's schema, for server-side apply; an unknown place (no schema) behaves as
/// a granular map with atomic lists.
#[derive(Debug, Clone, Copy)]
pub struct SchemaNode(Option<&'static Value>);

impl SchemaNode {
    /// The schema of a kind, if it has one.
    pub fn of_kind(group: &str, version: &str, kind: &str) -> Self {
        let s = schemas();
        let key = (group.to_owned(), version.to_owned(), kind.to_owned());
        Self(s.by_kind.get(&key).and_then(|n| s.by_name.get(n)))
    }

    fn schema(self) -> Option<&'static Value> {
        self.0.map(|v| resolve(schemas(), v))
    }

    /// The schema of field `k` of an object here.
    pub fn field(self, k: &str) -> Self {
        let Some(s) = self.schema() else {
            return Self(None);
        };
        Self(
            s.get("properties")
                .and_then(|p| p.get(k))
                .or_else(|| s.get("additionalProperties").filter(|a| a.is_object())),
        )
    }

    /// The schema of a list's items.
    pub fn items(self) -> Self {
        Self(self.schema().and_then(|s| s.get("items")))
    }

    pub fn list_type(self) -> ListType {
        let Some(s) = self.schema().or(self.0) else {
            return ListType::Atomic;
        };
        match s["x-kubernetes-list-type"].as_str() {
            Some("set") => ListType::Set,
            Some("map") => ListType::Map(
                s["x-kubernetes-list-map-keys"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|k| k.as_str().map(str::to_owned))
                    .collect(),
            ),
            _ => ListType::Atomic,
        }
    }

    /// An object replaced whole rather than merged field by field.
    pub fn is_atomic_map(self) -> bool {
        [self.0, self.schema()]
            .into_iter()
            .flatten()
            .any(|s| s["x-kubernetes-map-type"] == "atomic")
    }

    /// The schema default of field `k` of this object (list-map keys default so, e.g. a port's
    /// protocol).
    pub fn default_of(self, k: &str) -> Option<Value> {
        let f = self.field(k);
        [f.0, f.schema()]
            .into_iter()
            .flatten()
            .find_map(|s| s.get("default").cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_cover_the_served_group_versions() {
        let mut want = vec!["api".to_owned(), "api/v1".to_owned()];
        for (g, v) in crate::resources::groups() {
            want.push(format!("apis/{g}"));
            want.push(format!("apis/{g}/{v}"));
        }
        want.sort();
        let mut have: Vec<String> = paths().into_iter().map(str::to_owned).collect();
        have.sort();
        assert_eq!(
            have, want,
            "run crates/kube-sim/openapi/update.sh after changing the served group versions"
        );
        for p in paths() {
            let d = document(p).unwrap();
            let v: Value = serde_json::from_slice(&d.json).unwrap();
            assert!(v["openapi"].as_str().unwrap().starts_with("3."), "{p}");
        }
        assert_eq!(VERSION.trim(), "v1.37.2");
    }

    #[test]
    fn unknown_fields_are_named_by_path() {
        let svc = serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "x", "labels": {"any": "thing"}, "nmae": "typo"},
            "spec": {"ports": [{"port": 80}, {"port": 81, "nodePortt": 3}], "selector": {"app": "x"}},
            "extra": true,
        });
        assert_eq!(
            unknown_fields("", "v1", "Service", &svc),
            ["extra", "metadata.nmae", "spec.ports[1].nodePortt"]
        );
        // Strategic-merge directives are not fields; kinds without a schema pass.
        let patch = serde_json::json!({"metadata": {"$patch": "replace"}, "spec": {"$setElementOrder/ports": []}});
        assert!(unknown_fields("", "v1", "Service", &patch).is_empty());
        assert!(unknown_fields("example.com", "v1", "Thing", &svc).is_empty());
        // A Deployment's pod template is checked all the way down.
        let d = serde_json::json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "imagee": "x"}]}}}});
        assert_eq!(
            unknown_fields("apps", "v1", "Deployment", &d),
            ["spec.template.spec.containers[0].imagee"]
        );
    }
}
