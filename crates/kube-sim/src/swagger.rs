//! OpenAPI v2 (`/openapi/v2`), derived from the v3 documents [`crate::openapi`] serves: the same
//! schemas under `definitions`, in v2's spelling (`#/definitions/` references, a reference with
//! a description as a `$ref` beside it rather than v3's one-element `allOf`), and no paths.
//!
//! kubectl reads it for one thing kube-apiserver's v3 documents cannot answer: a file holding a
//! `kind: List` is validated on the client against v2 (`kubectl create -f list.yaml` failed with
//! "the server could not find the requested resource" while it was not served). kubectl asks
//! for gnostic's `openapi_v2.Document` in protobuf; other clients get JSON.

use std::sync::OnceLock;

use prost::encoding::{WireType, encode_key, encode_varint};
use serde_json::{Map, Value, json};

/// The protobuf media type kube-apiserver answers with.
pub const PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
/// The spelling client-go asks for (`Accept`); kube-apiserver takes both and answers
/// [`PROTOBUF`] (a media type cannot hold `@`, and client-go refuses one that does).
pub const PROTOBUF_ASKED: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

/// Whether an `Accept` header value asks for the protobuf encoding.
pub fn wants_protobuf(accept: &str) -> bool {
    accept.split(',').any(|clause| {
        let media = clause.split(';').next().unwrap_or_default().trim();
        media == PROTOBUF || media == PROTOBUF_ASKED
    })
}

/// The document in both encodings.
pub struct Document {
    pub json: Vec<u8>,
    pub protobuf: Vec<u8>,
}

/// The document, built on first use.
pub fn document() -> &'static Document {
    static DOC: OnceLock<Document> = OnceLock::new();
    DOC.get_or_init(|| {
        let doc = v2_document();
        Document {
            json: serde_json::to_vec(&doc).expect("a JSON value serialises"),
            protobuf: encode_document(&doc),
        }
    })
}

fn v2_document() -> Value {
    let definitions: Map<String, Value> = crate::openapi::all_schemas()
        .into_iter()
        .map(|(name, schema)| (name.to_owned(), to_v2(schema)))
        .collect();
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": crate::openapi::VERSION.trim()},
        "paths": {},
        "definitions": definitions,
    })
}

/// `schema` (v3) in v2's spelling; keywords v2 does not have (`nullable`, `oneOf`, `anyOf`,
/// `not`) are left out.
fn to_v2(schema: &Value) -> Value {
    let Value::Object(fields) = schema else {
        return schema.clone();
    };
    if let Some([only]) = fields
        .get("allOf")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        && let Some(reference) = only.get("$ref")
    {
        let mut out = Map::new();
        out.insert("$ref".into(), v2_ref(reference));
        if let Some(d) = fields.get("description") {
            out.insert("description".into(), d.clone());
        }
        return Value::Object(out);
    }
    let mut out = Map::new();
    for (k, v) in fields {
        let v = match k.as_str() {
            "nullable" | "oneOf" | "anyOf" | "not" | "allOf" => continue,
            "$ref" => v2_ref(v),
            "properties" => Value::Object(
                v.as_object()
                    .into_iter()
                    .flatten()
                    .map(|(name, p)| (name.clone(), to_v2(p)))
                    .collect(),
            ),
            "items" | "additionalProperties" => to_v2(v),
            _ => v.clone(),
        };
        out.insert(k.clone(), v);
    }
    Value::Object(out)
}

fn v2_ref(reference: &Value) -> Value {
    let r = reference.as_str().unwrap_or_default();
    Value::String(match r.strip_prefix("#/components/schemas/") {
        Some(name) => format!("#/definitions/{name}"),
        None => r.to_owned(),
    })
}

// Protobuf, as gnostic's openapiv2/OpenAPIv2.proto numbers the fields used here.
const DOCUMENT_SWAGGER: u32 = 1;
const DOCUMENT_INFO: u32 = 2;
const DOCUMENT_DEFINITIONS: u32 = 9;
const INFO_TITLE: u32 = 1;
const INFO_VERSION: u32 = 2;
/// `Definitions` and `Properties`: `repeated NamedSchema additional_properties = 1`.
const NAMED_SCHEMAS: u32 = 1;
const NAMED_NAME: u32 = 1;
const NAMED_VALUE: u32 = 2;
const SCHEMA_REF: u32 = 1;
const SCHEMA_FORMAT: u32 = 2;
const SCHEMA_TITLE: u32 = 3;
const SCHEMA_DESCRIPTION: u32 = 4;
const SCHEMA_DEFAULT: u32 = 5;
const SCHEMA_REQUIRED: u32 = 19;
const SCHEMA_ENUM: u32 = 20;
const SCHEMA_ADDITIONAL_PROPERTIES: u32 = 21;
const SCHEMA_TYPE: u32 = 22;
const SCHEMA_ITEMS: u32 = 23;
const SCHEMA_PROPERTIES: u32 = 25;
const SCHEMA_VENDOR_EXTENSION: u32 = 31;
/// `AdditionalPropertiesItem`: `oneof { Schema schema = 1; bool boolean = 2; }`.
const ADDITIONAL_SCHEMA: u32 = 1;
const ADDITIONAL_BOOLEAN: u32 = 2;
/// `TypeItem.value`, `ItemsItem.schema`: field 1.
const ITEM_VALUES: u32 = 1;
/// `Any.yaml`: a value as YAML text (JSON is YAML).
const ANY_YAML: u32 = 2;

fn len_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    encode_key(field, WireType::LengthDelimited, out);
    encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

fn message(out: &mut Vec<u8>, field: u32, write: impl FnOnce(&mut Vec<u8>)) {
    let mut body = Vec::new();
    write(&mut body);
    len_field(out, field, &body);
}

fn string(out: &mut Vec<u8>, field: u32, v: &Value) {
    if let Some(s) = v.as_str() {
        len_field(out, field, s.as_bytes());
    }
}

fn any(out: &mut Vec<u8>, field: u32, v: &Value) {
    message(out, field, |m| {
        len_field(m, ANY_YAML, v.to_string().as_bytes())
    });
}

fn encode_document(doc: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    string(&mut out, DOCUMENT_SWAGGER, &doc["swagger"]);
    message(&mut out, DOCUMENT_INFO, |m| {
        string(m, INFO_TITLE, &doc["info"]["title"]);
        string(m, INFO_VERSION, &doc["info"]["version"]);
    });
    message(&mut out, DOCUMENT_DEFINITIONS, |m| {
        named_schemas(m, &doc["definitions"]);
    });
    out
}

/// A `repeated NamedSchema` of the map `schemas`.
fn named_schemas(out: &mut Vec<u8>, schemas: &Value) {
    for (name, schema) in schemas.as_object().into_iter().flatten() {
        message(out, NAMED_SCHEMAS, |m| {
            len_field(m, NAMED_NAME, name.as_bytes());
            message(m, NAMED_VALUE, |s| encode_schema(s, schema));
        });
    }
}

fn encode_schema(out: &mut Vec<u8>, schema: &Value) {
    let Some(fields) = schema.as_object() else {
        return;
    };
    for (k, v) in fields {
        match k.as_str() {
            "$ref" => string(out, SCHEMA_REF, v),
            "format" => string(out, SCHEMA_FORMAT, v),
            "title" => string(out, SCHEMA_TITLE, v),
            "description" => string(out, SCHEMA_DESCRIPTION, v),
            "default" => any(out, SCHEMA_DEFAULT, v),
            "required" => {
                for r in v.as_array().into_iter().flatten() {
                    string(out, SCHEMA_REQUIRED, r);
                }
            }
            "enum" => {
                for e in v.as_array().into_iter().flatten() {
                    any(out, SCHEMA_ENUM, e);
                }
            }
            "additionalProperties" => message(out, SCHEMA_ADDITIONAL_PROPERTIES, |m| match v {
                Value::Bool(b) => prost::encoding::bool::encode(ADDITIONAL_BOOLEAN, b, m),
                _ => message(m, ADDITIONAL_SCHEMA, |s| encode_schema(s, v)),
            }),
            "type" => message(out, SCHEMA_TYPE, |m| match v {
                Value::Array(types) => types.iter().for_each(|t| string(m, ITEM_VALUES, t)),
                _ => string(m, ITEM_VALUES, v),
            }),
            "items" => message(out, SCHEMA_ITEMS, |m| match v {
                Value::Array(items) => items
                    .iter()
                    .for_each(|i| message(m, ITEM_VALUES, |s| encode_schema(s, i))),
                _ => message(m, ITEM_VALUES, |s| encode_schema(s, v)),
            }),
            "properties" => message(out, SCHEMA_PROPERTIES, |m| named_schemas(m, v)),
            x if x.starts_with("x-") => message(out, SCHEMA_VENDOR_EXTENSION, |m| {
                len_field(m, NAMED_NAME, x.as_bytes());
                any(m, NAMED_VALUE, v);
            }),
            // Not read from v2 by any client kube-sim serves (kubectl validates types,
            // fields and required fields).
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                    out.push(r);
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    /// kubectl's reader of v2 (kube-openapi's `proto.NewOpenAPIData`) refuses the whole
    /// document over one reference that is not to a definition, one it does not have, or a
    /// reference beside a type or properties.
    #[test]
    fn every_reference_is_to_a_definition_and_stands_alone() {
        let doc = v2_document();
        let defs = doc["definitions"].as_object().unwrap();
        assert!(defs.len() > 100, "{} definitions", defs.len());
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(all.len() > 100);
        for r in all {
            let name = r
                .strip_prefix("#/definitions/")
                .unwrap_or_else(|| panic!("{r}"));
            assert!(defs.contains_key(name), "dangling reference {r}");
        }
        let text = doc.to_string();
        assert!(!text.contains("allOf") && !text.contains("#/components/"));
    }

    #[test]
    fn kinds_carry_their_group_version_kind_and_fields() {
        let doc = v2_document();
        let svc = &doc["definitions"]["io.k8s.api.core.v1.Service"];
        assert_eq!(
            svc["x-kubernetes-group-version-kind"],
            json!([{"group": "", "kind": "Service", "version": "v1"}])
        );
        assert_eq!(
            svc["properties"]["spec"]["$ref"],
            "#/definitions/io.k8s.api.core.v1.ServiceSpec"
        );
        let port = &doc["definitions"]["io.k8s.api.core.v1.ServicePort"];
        assert_eq!(port["required"], json!(["port"]));
        assert_eq!(port["properties"]["port"]["type"], "integer");
    }

    #[test]
    fn protobuf_is_served_to_who_asks_for_it_in_either_spelling() {
        assert!(wants_protobuf(PROTOBUF_ASKED));
        assert!(wants_protobuf(&format!(
            "application/json;q=0.9, {PROTOBUF}"
        )));
        assert!(!wants_protobuf("application/json"));
        assert!(!wants_protobuf("*/*"));
    }

    #[test]
    fn protobuf_fields_are_numbered_and_sized_as_gnostic_reads_them() {
        // swagger = 1 ("2.0"), then info = 2 (title = 1, version = 2).
        let pb = &document().protobuf;
        assert_eq!(&pb[..5], b"\x0a\x032.0");
        assert_eq!(pb[5], 0x12);
        // A field above 15 takes a two-byte key: vendor_extension = 31, length-delimited.
        let mut out = Vec::new();
        encode_schema(&mut out, &json!({"x-a": 1}));
        assert_eq!(&out[..2], [0xfa, 0x01]);
    }
}
