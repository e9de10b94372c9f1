//! The generic request logic: get, list, create, update, patch, delete, each applying the
//! per-kind rules of [`crate::resources`] and [`crate::kinds`]. HTTP parsing lives in
//! [`crate::http`]; this module only sees parsed requests. Reads and creates are here; writes to
//! existing objects in `update`, deletes in `delete`, subresources and reviews in `subresources`.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::kinds::{self, Allocations};
use crate::patch::{self, PatchError};
use crate::resources::{self, ResourceDef};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::status::{self, StatusError};
use crate::store::{Expired, Key, Store, Write, Written, resource_version};

mod delete;
mod subresources;
mod update;

/// Cluster IP of the `default/kubernetes` Service (the first of the service range).
pub const KUBERNETES_SERVICE_IP: &str = "10.96.0.1";

/// Namespaces that exist from the start and cannot be deleted.
pub const SYSTEM_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

/// What a request addresses.
#[derive(Debug, Clone)]
pub struct Target {
    pub def: &'static ResourceDef,
    /// `None` for cluster-scoped kinds and for all-namespace lists and watches.
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// `status` for the status subresource.
    pub status: bool,
    /// Who writes (the `fieldManager` parameter, else the User-Agent's product), for
    /// `managedFields`.
    pub manager: String,
}

impl Target {
    fn key(&self) -> Result<Key, StatusError> {
        let name = self
            .name
            .clone()
            .ok_or_else(|| StatusError::method_not_allowed("a name is required"))?;
        Ok(Key::new(
            self.def.storage,
            self.namespace.clone().unwrap_or_default(),
            name,
        ))
    }

    fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }

    /// The subresource written, as `managedFields` names it.
    fn subresource(&self) -> &'static str {
        if self.status { "status" } else { "" }
    }
}

/// Patch flavours kube-sim understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Json,
    Strategic,
    /// Server-side apply, with `force` to take conflicting fields over.
    Apply {
        force: bool,
    },
}

/// Parsed list parameters.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
}

/// The API server's state and logic.
#[derive(Debug)]
pub struct Api {
    pub store: Arc<Store>,
    /// Serialises Service writes so node ports and cluster IPs are never handed out twice.
    service_alloc: Mutex<()>,
}

/// RFC 3339 at second precision, as `creationTimestamp` and `deletionTimestamp` are.
pub fn now_seconds() -> String {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second())
        .unwrap_or(now)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn new_uid() -> String {
    let b: [u8; 16] = rand::random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-4{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[16..20],
        &h[20..32]
    )
}

fn generate_suffix() -> String {
    // The alphabet kube-apiserver uses for generateName (no vowels, no look-alikes).
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| char::from(ALPHABET[rand::random_range(0..ALPHABET.len())]))
        .collect()
}

fn meta(v: &Value) -> Option<&serde_json::Map<String, Value>> {
    v.get("metadata").and_then(Value::as_object)
}

fn meta_mut(v: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !v.get("metadata").is_some_and(Value::is_object) {
        v["metadata"] = json!({});
    }
    v["metadata"]
        .as_object_mut()
        .expect("metadata is an object")
}

fn finalizers(v: &Value) -> Vec<String> {
    v.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn deleting(v: &Value) -> bool {
    v.pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
}

/// Continue tokens: the list's resourceVersion and the last key returned, hex-encoded.
fn encode_continue(rv: u64, key: &Key) -> String {
    sim_common::hex_encode(format!("{rv}\u{0}{}\u{0}{}", key.namespace, key.name).as_bytes())
}

fn decode_continue(token: &str) -> Option<(u64, String, String)> {
    let s = String::from_utf8(sim_common::hex_decode(token)?).ok()?;
    let mut parts = s.split('\u{0}');
    let rv = parts.next()?.parse().ok()?;
    Some((rv, parts.next()?.to_owned(), parts.next()?.to_owned()))
}

impl Api {
    pub fn new(store: Arc<Store>) -> Self {
        let api = Self {
            store,
            service_alloc: Mutex::new(()),
        };
        for ns in SYSTEM_NAMESPACES {
            let def = resources::by_storage(resources::NAMESPACES).expect("namespaces are served");
            let t = Target {
                def,
                namespace: None,
                name: None,
                status: false,
                manager: String::new(),
            };
            api.create(&t, json!({"metadata": {"name": ns}}), false)
                .expect("system namespaces can be created");
        }
        // The API server's own Service, as a new cluster has it (first address of the range).
        let services = Target {
            def: resources::by_storage(resources::SERVICES).expect("services are served"),
            namespace: Some("default".into()),
            name: None,
            status: false,
            manager: String::new(),
        };
        api.create(
            &services,
            json!({
                "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
                "spec": {"type": "ClusterIP", "clusterIP": KUBERNETES_SERVICE_IP,
                    "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 443}]},
            }),
            false,
        )
        .expect("the kubernetes Service can be created");
        api
    }

    /// Points the `kubernetes` Service at the API server's own address, as kube-apiserver's
    /// endpoint reconciler does: the Service's target port and the `default/kubernetes`
    /// EndpointSlice (kube-sim serves plain HTTP, so clients in a cluster cannot use it as
    /// they would a real one; it is there for what lists it).
    pub fn publish_address(&self, addr: std::net::SocketAddr) {
        let services = Target {
            def: resources::by_storage(resources::SERVICES).expect("services are served"),
            namespace: Some("default".into()),
            name: Some("kubernetes".into()),
            status: false,
            manager: String::new(),
        };
        let _ = self.patch(
            &services,
            PatchType::Merge,
            json!({"spec": {"ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": addr.port()}]}}),
            false,
        );
        let slices = Target {
            def: resources::by_storage(resources::ENDPOINTSLICES)
                .expect("endpointslices are served"),
            namespace: Some("default".into()),
            name: None,
            status: false,
            manager: String::new(),
        };
        let family = if addr.is_ipv4() { "IPv4" } else { "IPv6" };
        // Like kube-apiserver's endpoint reconciler, this write goes through validation: with a
        // loopback address (kube-sim's usual one, and the control-plane fixture's
        // `--advertise-address=127.0.0.1`) it is refused and the Service has no slice.
        let _ = self.create(
            &slices,
            json!({
                "metadata": {"name": "kubernetes", "labels": {"kubernetes.io/service-name": "kubernetes"}},
                "addressType": family,
                "endpoints": [{"addresses": [addr.ip().to_string()], "conditions": {"ready": true}}],
                "ports": [{"name": "https", "port": addr.port(), "protocol": "TCP"}],
            }),
            false,
        );
    }

    pub(super) fn namespace_exists(&self, ns: &str) -> bool {
        self.store
            .contains(&Key::new(resources::NAMESPACES, "", ns))
    }

    pub fn get(&self, t: &Target) -> Result<Value, StatusError> {
        let key = t.key()?;
        let obj = self
            .store
            .get(&key)
            .ok_or_else(|| StatusError::not_found(t.def, t.name()))?;
        Ok(kinds::to_wire(t.def, obj))
    }

    pub fn list(&self, t: &Target, q: &ListQuery) -> Result<Value, StatusError> {
        let (token_rv, after) = match q.continue_token.as_deref() {
            None | Some("") => (None, None),
            Some(tok) => {
                let (rv, ns, name) = decode_continue(tok)
                    .ok_or_else(|| StatusError::bad_request("invalid continue token"))?;
                if rv < self.store.oldest_watchable() {
                    return Err(StatusError::expired(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                    ));
                }
                (Some(rv), Some((ns, name)))
            }
        };
        let limit = q.limit.filter(|l| *l > 0);
        // The objects are taken under the store's lock (a snapshot: cheap, they share their
        // text with the store) and parsed and filtered after it. Without selectors, a page
        // and one more (which says whether a continue token is due) are enough.
        let selective = !q.labels.is_everything() || !q.fields.is_everything();
        let mut candidates = Vec::new();
        let current_rv = self.store.scan(
            t.def.storage,
            t.namespace.as_deref(),
            after
                .as_ref()
                .map(|(ns, name)| (ns.as_str(), name.as_str())),
            |_, obj| {
                candidates.push(obj.clone());
                selective || limit.is_none_or(|l| candidates.len() <= l)
            },
        );
        let mut out = Vec::new();
        let mut more = false;
        for obj in candidates {
            let wire = kinds::to_wire(t.def, obj.value());
            if !q.labels.matches(&wire) || !q.fields.matches(&wire) {
                continue;
            }
            if limit.is_some_and(|l| out.len() == l) {
                // One more match exists: the page is full and a continue token is due.
                more = true;
                break;
            }
            out.push(wire);
        }
        // Every page of one list reports the resourceVersion of its first page.
        let rv = token_rv.unwrap_or(current_rv);
        let next = more.then(|| encode_continue(rv, &last_key(&out, t)));
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if let Some(c) = next {
            metadata["continue"] = json!(c);
        }
        Ok(
            json!({"kind": t.def.list_kind(), "apiVersion": t.def.api_version(), "metadata": metadata, "items": out}),
        )
    }

    pub fn create(
        &self,
        t: &Target,
        body: Value,
        dry_run: bool,
    ) -> Result<(u16, Value), StatusError> {
        if t.status {
            return Err(StatusError::method_not_allowed(
                "create is not allowed on the status subresource",
            ));
        }
        let def = t.def;
        let mut obj = self.check_body(def, body)?;
        let m = meta_mut(&mut obj);
        let name = match m
            .get("name")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            Some(n) => n.to_owned(),
            None => match m
                .get("generateName")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
            {
                Some(prefix) => format!("{prefix}{}", generate_suffix()),
                None => {
                    return Err(StatusError::invalid(
                        def,
                        "",
                        "metadata.name",
                        "Required value: name or generateName is required",
                    ));
                }
            },
        };
        if let Some(n) = &t.name
            && *n != name
        {
            return Err(StatusError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        kinds::validate_name(def, &name).map_err(|e| {
            StatusError::invalid(
                def,
                &name,
                "metadata.name",
                format!("Invalid value: {name:?}: {e}"),
            )
        })?;
        let namespace = self.check_namespace(t, m)?;
        if self.namespace_terminating(&namespace) {
            return Err(StatusError::namespace_terminating(def, &name, &namespace));
        }
        if m.get("resourceVersion")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
        {
            return Err(StatusError::internal(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        m.insert("name".into(), json!(name));
        m.insert("uid".into(), json!(new_uid()));
        m.insert("creationTimestamp".into(), json!(now_seconds()));
        m.remove("deletionTimestamp");
        m.remove("deletionGracePeriodSeconds");
        if def.generation {
            m.insert("generation".into(), json!(1));
        } else {
            m.remove("generation");
        }
        if def.group == "events.k8s.io" {
            kinds::validate_new_event(def, &name, &obj)?;
        }
        let mut obj = kinds::from_wire(def, obj);
        match def.storage {
            // Status is the server's to fill; a new Service's is an empty load balancer.
            resources::SERVICES => obj["status"] = json!({"loadBalancer": {}}),
            resources::PODS => {
                if let Some(o) = obj.as_object_mut() {
                    o.remove("status");
                }
            }
            resources::EVENTS => {
                kinds::validate_event_namespace(def, &name, &namespace, &obj)?;
                // A struct, not a pointer, in kube-apiserver: always there, if only empty.
                obj.as_object_mut()
                    .map(|o| o.entry("source").or_insert(json!({})));
            }
            resources::NAMESPACES => {
                obj["status"] = json!({"phase": "Active"});
                obj["spec"] = json!({"finalizers": ["kubernetes"]});
            }
            resources::LEASES => kinds::validate_lease(def, &name, &obj)?,
            resources::ENDPOINTSLICES => kinds::validate_endpoint_slice(def, &name, &obj)?,
            // kube-apiserver's defaulting: a Secret without a type is Opaque.
            resources::SECRETS if obj["type"].as_str().is_none_or(str::is_empty) => {
                obj["type"] = json!("Opaque");
            }
            _ => {}
        }
        let key = Key::new(def.storage, namespace, name.clone());
        let _alloc_guard = (def.storage == resources::SERVICES)
            .then(|| self.service_alloc.lock().expect("alloc lock"));
        if def.storage == resources::SERVICES {
            let mut alloc = self.service_allocations((&key.namespace, &key.name));
            kinds::prepare_service(def, &name, None, &mut obj, &mut alloc)?;
        }
        if dry_run {
            return Ok((201, kinds::to_wire(def, obj)));
        }
        let written = self.store.write(&key, |cur| match cur {
            Some(_) => Err(StatusError::already_exists(def, &name)),
            None => Ok(Write::Put(obj)),
        })?;
        Ok((201, kinds::to_wire(def, written.into_object())))
    }

    /// Checks `apiVersion`/`kind` of a body against `def`.
    pub(super) fn check_body(&self, def: &ResourceDef, body: Value) -> Result<Value, StatusError> {
        if !body.is_object() {
            return Err(StatusError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        let api_version = def.api_version();
        for (field, want) in [("apiVersion", api_version.as_str()), ("kind", def.kind)] {
            if let Some(got) = body
                .get(field)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                && got != want
            {
                return Err(StatusError::bad_request(format!(
                    "the body's {field} {got:?} does not match the URL's {want:?}"
                )));
            }
        }
        Ok(body)
    }

    /// The namespace an object goes in, checking the body against the URL.
    pub(super) fn check_namespace(
        &self,
        t: &Target,
        m: &mut serde_json::Map<String, Value>,
    ) -> Result<String, StatusError> {
        if !t.def.namespaced {
            m.remove("namespace");
            return Ok(String::new());
        }
        let url_ns = t.namespace.clone().unwrap_or_default();
        match m
            .get("namespace")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            Some(ns) if ns != url_ns => {
                return Err(StatusError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => {}
        }
        if !self.namespace_exists(&url_ns) {
            return Err(StatusError::namespace_not_found(&url_ns));
        }
        m.insert("namespace".into(), json!(url_ns));
        Ok(url_ns)
    }

    pub(super) fn service_allocations(&self, skip: (&str, &str)) -> Allocations {
        let services = self.store.objects(resources::SERVICES, None);
        Allocations::from_services(services.iter().map(|(_, o)| o), skip)
    }

    /// Checks a watch can start at `rv`.
    pub fn check_watchable(&self, rv: u64) -> Result<(), Expired> {
        let oldest = self.store.oldest_watchable();
        if rv < oldest {
            Err(Expired {
                requested: rv,
                oldest,
            })
        } else {
            Ok(())
        }
    }
}

fn last_key(out: &[Value], t: &Target) -> Key {
    let last = out.last().cloned().unwrap_or(Value::Null);
    Key::new(
        t.def.storage,
        last.pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
        last.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
    )
}

fn patch_error(def: &ResourceDef, name: &str, e: PatchError) -> StatusError {
    match e {
        PatchError::Syntax(m) => StatusError::bad_request(m),
        PatchError::Invalid(m) => {
            let mut s = StatusError::new(
                422,
                "Invalid",
                format!("{} \"{name}\" is invalid: {m}", def.kind),
            );
            s.details = Some(json!({"name": name, "group": def.group, "kind": def.kind}));
            s
        }
    }
}

/// Used by watches: the resourceVersion of an object.
pub fn object_rv(v: &Value) -> u64 {
    resource_version(v).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip() {
        let k = Key::new("services", "default", "web");
        let t = encode_continue(1234, &k);
        assert_eq!(
            decode_continue(&t),
            Some((1234, "default".into(), "web".into()))
        );
        assert_eq!(decode_continue("zz"), None);
        assert_eq!(decode_continue("abc"), None);
        // Multi-byte characters are refused, not sliced through.
        assert_eq!(decode_continue("xænqv"), None);
    }

    #[test]
    fn uids_look_like_uuids() {
        let u = new_uid();
        assert_eq!(u.len(), 36);
        assert_eq!(u.matches('-').count(), 4);
        assert_eq!(generate_suffix().len(), 5);
    }
}
