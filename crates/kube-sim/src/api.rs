//! The generic request logic: get, list, create, update, patch, delete, each applying the
//! per-kind rules of [`crate::resources`] and [`crate::kinds`]. HTTP parsing lives in
//! [`crate::http`]; this module only sees parsed requests.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::kinds::{self, Allocations};
use crate::patch::{self, PatchError};
use crate::resources::{self, ResourceDef};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::status::{self, StatusError};
use crate::store::{Expired, Key, Store, Write, Written, resource_version};

/// Namespaces that exist from the start and cannot be deleted.
/// Cluster IP of the `default/kubernetes` Service (the first of the service range).
pub const KUBERNETES_SERVICE_IP: &str = "10.96.0.1";

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

    fn namespace_exists(&self, ns: &str) -> bool {
        self.store
            .get(&Key::new(resources::NAMESPACES, "", ns))
            .is_some()
    }

    pub fn get(&self, t: &Target) -> Result<Value, StatusError> {
        let key = t.key()?;
        let obj = self
            .store
            .get(&key)
            .ok_or_else(|| StatusError::not_found(t.def, t.name()))?;
        Ok(kinds::to_wire(t.def, &obj))
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
        let mut out = Vec::new();
        let mut more = false;
        let current_rv = self.store.scan(
            t.def.storage,
            t.namespace.as_deref(),
            after
                .as_ref()
                .map(|(ns, name)| (ns.as_str(), name.as_str())),
            |_, obj| {
                let wire = kinds::to_wire(t.def, obj);
                if !q.labels.matches(&wire) || !q.fields.matches(&wire) {
                    return true;
                }
                if limit.is_some_and(|l| out.len() == l) {
                    // One more match exists: the page is full and a continue token is due.
                    more = true;
                    return false;
                }
                out.push(wire);
                true
            },
        );
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

    /// `GET .../scale`: the object's autoscaling/v1 `Scale`.
    pub fn get_scale(&self, t: &Target) -> Result<Value, StatusError> {
        Ok(kinds::scale_of(&self.get(t)?))
    }

    /// `PUT` (`patch: None`, `body` is the new Scale) or `PATCH` of `.../scale`: sets
    /// `spec.replicas` and answers with the new Scale. A resourceVersion the Scale carries (or
    /// the patch sets) is a precondition on the object.
    pub fn write_scale(
        &self,
        t: &Target,
        patch: Option<PatchType>,
        body: Value,
        dry_run: bool,
    ) -> Result<(u16, Value), StatusError> {
        let def = t.def;
        let (code, obj) = self.guaranteed_update(t, dry_run, Some("scale"), move |current| {
            let scale = kinds::scale_of(current);
            let new_scale = match patch {
                None => body,
                // Applying a Scale is a merge here: nobody else owns a Scale's one field.
                Some(PatchType::Merge | PatchType::Apply { .. }) => patch::merge(&scale, &body),
                Some(PatchType::Json) => {
                    patch::json(&scale, &body).map_err(|e| patch_error(def, t.name(), e))?
                }
                Some(PatchType::Strategic) => patch::strategic("Scale", &scale, &body)
                    .map_err(|e| patch_error(def, t.name(), e))?,
            };
            let replicas = new_scale
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if !(0..=i64::from(i32::MAX)).contains(&replicas) {
                return Err(StatusError::new(
                    422,
                    "Invalid",
                    format!(
                        "Scale.autoscaling {:?} is invalid: spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0",
                        t.name()
                    ),
                ));
            }
            let rv = new_scale
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .filter(|rv| !rv.is_empty());
            let current_rv = current
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str);
            let precondition = rv.filter(|rv| patch.is_none() || Some(*rv) != current_rv);
            let precondition = precondition.map(str::to_owned);
            let mut new = current.clone();
            new["spec"]["replicas"] = json!(replicas);
            Ok((new, precondition))
        })?;
        Ok((code, kinds::scale_of(&obj)))
    }

    /// `POST .../pods/{name}/binding` (what a scheduler sends): sets `spec.nodeName` of a Pod
    /// not yet assigned and marks it `PodScheduled`, as kube-apiserver's `BindingREST` does.
    pub fn bind(
        &self,
        t: &Target,
        body: &Value,
        dry_run: bool,
    ) -> Result<(u16, Value), StatusError> {
        let def = t.def;
        let name = t.name().to_owned();
        let binding_name = body.pointer("/metadata/name").and_then(Value::as_str);
        if binding_name.is_some_and(|b| b != name) {
            return Err(StatusError::bad_request(
                "name in URL does not match name in Binding object",
            ));
        }
        let kind = body
            .pointer("/target/kind")
            .and_then(Value::as_str)
            .unwrap_or("");
        let node = body
            .pointer("/target/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !(kind.is_empty() || kind == "Node") || node.is_empty() {
            return Err(StatusError::invalid(
                def,
                &name,
                "target",
                format!(
                    "Invalid value: {:?}: must be a Node with a name",
                    body.get("target")
                ),
            ));
        }
        let node = node.to_owned();
        let annotations = body.pointer("/metadata/annotations").cloned();
        self.guaranteed_update(t, dry_run, Some("binding"), move |current| {
            if current.pointer("/metadata/deletionTimestamp").is_some_and(|d| !d.is_null()) {
                return Err(StatusError::new(
                    409,
                    "Conflict",
                    format!("Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is being deleted, cannot be assigned to a host"),
                ));
            }
            if let Some(on) = current
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            {
                return Err(StatusError::new(
                    409,
                    "Conflict",
                    format!("Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is already assigned to node \"{on}\""),
                ));
            }
            let mut new = current.clone();
            new["spec"]["nodeName"] = json!(node);
            if let Some(Value::Object(a)) = &annotations {
                for (k, v) in a {
                    new["metadata"]["annotations"][k] = v.clone();
                }
            }
            let mut conditions: Vec<Value> = new
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            conditions.retain(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"));
            conditions.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now_seconds()}));
            new["status"]["conditions"] = json!(conditions);
            Ok((new, None))
        })?;
        Ok((
            201,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
        ))
    }

    /// The RBAC objects stored, for the reviews.
    pub fn rbac_policy(&self) -> crate::rbac::Policy {
        fn all<T: serde::de::DeserializeOwned>(
            store: &crate::store::Store,
            storage: &'static str,
        ) -> Vec<T> {
            store
                .list(storage, None)
                .0
                .into_iter()
                .filter_map(|(_, v)| serde_json::from_value(v).ok())
                .collect()
        }
        crate::rbac::Policy {
            cluster_roles: all(&self.store, resources::CLUSTERROLES),
            cluster_role_bindings: all(&self.store, resources::CLUSTERROLEBINDINGS),
            roles: all(&self.store, resources::ROLES),
            role_bindings: all(&self.store, resources::ROLEBINDINGS),
        }
    }

    /// Answers a review (SelfSubjectAccessReview, SelfSubjectRulesReview) for `who`: the object
    /// sent back with its `status`, never stored.
    pub fn review(
        &self,
        def: &'static ResourceDef,
        mut body: Value,
        who: &crate::rbac::Requester,
    ) -> Result<(u16, Value), StatusError> {
        if body["kind"].as_str().is_some_and(|k| k != def.kind) {
            return Err(StatusError::bad_request(format!(
                "the body is a {}, expected {}",
                body["kind"], def.kind
            )));
        }
        let policy = self.rbac_policy();
        let spec = body["spec"].clone();
        let status = match def.kind {
            "SelfSubjectAccessReview" => {
                if !spec["resourceAttributes"].is_object()
                    && !spec["nonResourceAttributes"].is_object()
                {
                    return Err(StatusError::invalid(
                        def,
                        "",
                        "spec.resourceAttributes",
                        "exactly one of nonResourceAttributes or resourceAttributes must be specified",
                    ));
                }
                policy.access_review(who, &spec)
            }
            _ => policy.rules_review(who, spec["namespace"].as_str().unwrap_or_default()),
        };
        body["kind"] = json!(def.kind);
        body["apiVersion"] = json!(def.api_version());
        if !body["metadata"].is_object() {
            body["metadata"] = json!({});
        }
        body["metadata"]["creationTimestamp"] = Value::Null;
        body["status"] = status;
        Ok((201, body))
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
            return Ok((201, kinds::to_wire(def, &obj)));
        }
        let written = self.store.write(&key, |cur| match cur {
            Some(_) => Err(StatusError::already_exists(def, &name)),
            None => Ok(Write::Put(obj)),
        })?;
        Ok((201, kinds::to_wire(def, written.object())))
    }

    /// Checks `apiVersion`/`kind` of a body against `def`.
    fn check_body(&self, def: &ResourceDef, body: Value) -> Result<Value, StatusError> {
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
    fn check_namespace(
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

    fn service_allocations(&self, skip: (&str, &str)) -> Allocations {
        let (items, _) = self.store.list(resources::SERVICES, None);
        Allocations::from_services(items.iter().map(|(_, v)| v), skip)
    }

    /// PUT: replace the object (or its status) with `body`.
    pub fn update(
        &self,
        t: &Target,
        body: Value,
        dry_run: bool,
    ) -> Result<(u16, Value), StatusError> {
        let def = t.def;
        let body = self.check_body(def, body)?;
        let body_name = body
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !body_name.is_empty() && body_name != t.name() {
            return Err(StatusError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({})",
                t.name()
            )));
        }
        if def.namespaced
            && let Some(ns) = body
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
            && Some(ns) != t.namespace.as_deref()
        {
            return Err(StatusError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let key = t.key()?;
        if self.store.get(&key).is_none() {
            if def.create_on_update && !t.status {
                let mut body = body;
                if let Some(m) = body.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("resourceVersion");
                }
                return self.create(t, body, dry_run);
            }
            return Err(StatusError::not_found(def, t.name()));
        }
        let precondition = body
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        if precondition.is_none() && !def.unconditional_update {
            return Err(StatusError::invalid(
                def,
                t.name(),
                "metadata.resourceVersion",
                "Invalid value: 0: must be specified for an update",
            ));
        }
        self.guaranteed_update(t, dry_run, Some(t.subresource()), move |_current| {
            Ok((body, precondition))
        })
    }

    /// PATCH: apply the patch to the current object, atomically.
    pub fn patch(
        &self,
        t: &Target,
        ty: PatchType,
        body: Value,
        dry_run: bool,
    ) -> Result<(u16, Value), StatusError> {
        if let PatchType::Apply { force } = ty {
            return self.apply(t, body, force, dry_run);
        }
        let def = t.def;
        self.guaranteed_update(t, dry_run, Some(t.subresource()), move |current| {
            let patched = match ty {
                PatchType::Apply { .. } => unreachable!("applies return above"),
                PatchType::Merge => {
                    if !body.is_object() {
                        return Err(StatusError::bad_request(
                            "a merge patch must be a JSON object",
                        ));
                    }
                    patch::merge(current, &body)
                }
                PatchType::Json => {
                    patch::json(current, &body).map_err(|e| patch_error(def, t.name(), e))?
                }
                PatchType::Strategic => patch::strategic(def.kind, current, &body)
                    .map_err(|e| patch_error(def, t.name(), e))?,
            };
            let current_rv = current
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str);
            let patched_rv = patched
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str);
            // An RV the patch sets (or changes) is a precondition; one it inherits is not.
            let precondition =
                (patched_rv != current_rv).then(|| patched_rv.unwrap_or("").to_owned());
            if patched.pointer("/metadata/name").and_then(Value::as_str) != Some(t.name()) {
                return Err(StatusError::bad_request("the patch changes metadata.name"));
            }
            Ok((patched, precondition))
        })
    }

    /// Server-side apply of `body` by `t.manager` ([`crate::ssa`]): creates the object if it
    /// is missing (201), else merges it in (200); conflicts are 409 unless `force`.
    pub fn apply(
        &self,
        t: &Target,
        body: Value,
        force: bool,
        dry_run: bool,
    ) -> Result<(u16, Value), StatusError> {
        let def = t.def;
        if t.status {
            return Err(StatusError::new(
                415,
                "UnsupportedMediaType",
                "kube-sim applies configurations to the main resource only, not to its status",
            ));
        }
        if t.manager.is_empty() {
            return Err(StatusError::new(
                422,
                "Invalid",
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            ));
        }
        let mut body = self.check_body(def, body)?;
        for field in ["apiVersion", "kind"] {
            if body[field].as_str().is_none_or(str::is_empty) {
                return Err(StatusError::bad_request(format!(
                    "{field} must be set in an applied configuration"
                )));
            }
        }
        if body
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .is_some_and(|n| n != t.name())
        {
            return Err(StatusError::bad_request(
                "the name of the applied configuration does not match the name in the URL",
            ));
        }
        if def.status
            && let Some(o) = body.as_object_mut()
        {
            // The main resource's apply leaves status alone, as kube-apiserver resets it.
            o.remove("status");
        }
        let node = crate::openapi::SchemaNode::of_kind(def.group, def.version, def.kind);
        let api_version = def.api_version();
        let conflict = |conflicts: Vec<crate::ssa::Conflict>| {
            let mut e = StatusError::new(409, "Conflict", crate::ssa::conflict_message(&conflicts));
            e.details = Some(json!({"causes": conflicts.iter().map(|c| json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with {:?} using {}", c.manager, c.api_version),
                "field": crate::ssa::path_string(&c.path),
            })).collect::<Vec<_>>()}));
            e
        };
        let now = now_seconds();
        if self.store.get(&t.key()?).is_none() {
            let mut created =
                crate::ssa::apply(node, None, &body, &t.manager, &api_version, &now, force)
                    .map_err(conflict)?;
            created["metadata"]["name"] = json!(t.name());
            let collection = Target {
                def,
                namespace: t.namespace.clone(),
                name: None,
                status: false,
                manager: t.manager.clone(),
            };
            return self.create(&collection, created, dry_run);
        }
        let precondition = body
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .filter(|rv| !rv.is_empty())
            .map(str::to_owned);
        let manager = t.manager.clone();
        self.guaranteed_update(t, dry_run, None, move |current| {
            let applied = crate::ssa::apply(
                node,
                Some(current),
                &body,
                &manager,
                &api_version,
                &now,
                force,
            )
            .map_err(conflict)?;
            Ok((applied, precondition))
        })
    }

    /// Applies `transform` to the current object (in wire form) and commits the result with the
    /// per-kind update rules. `transform` returns the new object and an optional RV precondition.
    /// `updating` is the subresource of an ordinary write (whose writer then owns what it
    /// changed); `None` for an apply, which sets the owners itself.
    fn guaranteed_update(
        &self,
        t: &Target,
        dry_run: bool,
        updating: Option<&'static str>,
        transform: impl FnOnce(&Value) -> Result<(Value, Option<String>), StatusError>,
    ) -> Result<(u16, Value), StatusError> {
        let def = t.def;
        let key = t.key()?;
        let name = t.name().to_owned();
        // Status writes never allocate, so they skip the allocation scan (which reads every Service).
        let allocating = def.storage == resources::SERVICES && !t.status;
        let _alloc_guard = allocating.then(|| self.service_alloc.lock().expect("alloc lock"));
        let mut alloc = allocating.then(|| self.service_allocations((&key.namespace, &key.name)));
        let mut sent: Option<Value> = None;
        let decide = |cur: Option<&Value>| -> Result<Write, StatusError> {
            let Some(old) = cur else {
                return Err(StatusError::not_found(def, &name));
            };
            let old_wire = kinds::to_wire(def, old);
            let (mut new_wire, precondition) = transform(&old_wire)?;
            let has_owners = old_wire
                .pointer("/metadata/managedFields")
                .and_then(Value::as_array)
                .is_some_and(|m| !m.is_empty());
            if let Some(subresource) = updating.filter(|_| has_owners) {
                // Once an object has owners (it was applied), every write updates them.
                crate::ssa::record_update(
                    crate::openapi::SchemaNode::of_kind(def.group, def.version, def.kind),
                    &old_wire,
                    &mut new_wire,
                    if t.manager.is_empty() {
                        "unknown"
                    } else {
                        &t.manager
                    },
                    &def.api_version(),
                    subresource,
                    &now_seconds(),
                );
            }
            let new_wire = self.check_body(def, new_wire)?;
            if let Some(rv) = precondition
                && Some(rv.as_str())
                    != old
                        .pointer("/metadata/resourceVersion")
                        .and_then(Value::as_str)
            {
                return Err(StatusError::conflict(def, &name));
            }
            let mut new = kinds::from_wire(def, new_wire);
            // System fields come from the stored object.
            {
                let old_meta = meta(old).cloned().unwrap_or_default();
                let m = meta_mut(&mut new);
                for f in [
                    "uid",
                    "creationTimestamp",
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                    "generation",
                    "name",
                    "namespace",
                ] {
                    match old_meta.get(f) {
                        Some(v) => m.insert(f.into(), v.clone()),
                        None => m.remove(f),
                    };
                }
            }
            if def.status {
                if t.status {
                    // The status strategies of Node and Service only reset the spec: metadata
                    // (labels, finalizers) written through /status persists, which the upstream
                    // service controller relies on for its finalizer.
                    match old.get("spec") {
                        Some(s) => new["spec"] = s.clone(),
                        None => {
                            if let Some(o) = new.as_object_mut() {
                                o.remove("spec");
                            }
                        }
                    }
                } else if updating != Some("binding") {
                    // (A binding writes the node name and the PodScheduled condition.)
                    match old.get("status") {
                        Some(s) => new["status"] = s.clone(),
                        None => {
                            if let Some(o) = new.as_object_mut() {
                                o.remove("status");
                            }
                        }
                    }
                }
            }
            if deleting(old) {
                let before = finalizers(old);
                if finalizers(&new).iter().any(|f| !before.contains(f)) {
                    return Err(StatusError::invalid(
                        def,
                        &name,
                        "metadata.finalizers",
                        "Forbidden: no new finalizers can be added if the object is being deleted",
                    ));
                }
            }
            match def.storage {
                resources::NODES => kinds::check_node_immutables(def, &name, old, &new)?,
                resources::SERVICES => {
                    if t.status {
                        kinds::default_ingress_ip_mode(&mut new);
                    } else if let Some(a) = alloc.as_mut() {
                        kinds::prepare_service(def, &name, Some(old), &mut new, a)?;
                    }
                }
                resources::LEASES => kinds::validate_lease(def, &name, &new)?,
                resources::ENDPOINTSLICES => kinds::validate_endpoint_slice(def, &name, &new)?,
                _ => {}
            }
            if def.generation {
                let strip = |v: &Value| {
                    let mut v = v.clone();
                    let labels = v.pointer("/metadata/labels").cloned();
                    if let Some(o) = v.as_object_mut() {
                        o.remove("metadata");
                        // Status changes never bump the generation (it counts spec changes).
                        if def.status {
                            o.remove("status");
                        }
                        o.insert("labels".into(), labels.unwrap_or(Value::Null));
                    }
                    v
                };
                if strip(old) != strip(&new) {
                    let g = old
                        .pointer("/metadata/generation")
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                    meta_mut(&mut new).insert("generation".into(), json!(g + 1));
                }
            }
            sent = Some(new.clone());
            if deleting(&new) && finalizers(&new).is_empty() {
                return Ok(Write::Delete);
            }
            if dry_run {
                return Ok(Write::Put(old.clone()));
            }
            Ok(Write::Put(new))
        };
        let written = self.store.write(&key, decide)?;
        if matches!(written, Written::Deleted(_)) {
            self.finish_namespace_if_drained(&key.namespace);
        }
        let obj = match (&written, dry_run) {
            (_, true) => sent.unwrap_or_else(|| written.object().clone()),
            (Written::Deleted(v), _) => v.clone(),
            (w, _) => w.object().clone(),
        };
        Ok((200, kinds::to_wire(def, &obj)))
    }

    /// DELETE with optional `DeleteOptions`.
    pub fn delete(&self, t: &Target, options: &Value) -> Result<(u16, Value), StatusError> {
        let def = t.def;
        if t.status {
            return Err(StatusError::method_not_allowed(
                "delete is not allowed on the status subresource",
            ));
        }
        let key = t.key()?;
        let name = t.name().to_owned();
        if def.storage == resources::NAMESPACES {
            return self.delete_namespace(t, &name);
        }
        let pre_uid = options
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let pre_rv = options
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let dry_run = options
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        let written = self.store.write(&key, |cur| {
            let Some(old) = cur else {
                return Err(StatusError::not_found(def, &name));
            };
            if let Some(uid) = &pre_uid
                && old.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid.as_str())
            {
                return Err(StatusError::new(
                    409,
                    "Conflict",
                    format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        old.pointer("/metadata/uid")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                    ),
                ));
            }
            if let Some(rv) = &pre_rv
                && old
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    != Some(rv.as_str())
            {
                return Err(StatusError::conflict(def, &name));
            }
            if dry_run {
                return Ok(Write::Put(old.clone()));
            }
            if finalizers(old).is_empty() {
                return Ok(Write::Delete);
            }
            if deleting(old) {
                return Ok(Write::Put(old.clone()));
            }
            let mut new = old.clone();
            let m = meta_mut(&mut new);
            m.insert("deletionTimestamp".into(), json!(now_seconds()));
            m.insert("deletionGracePeriodSeconds".into(), json!(0));
            if let Some(g) = m
                .get("generation")
                .and_then(Value::as_i64)
                .filter(|g| *g > 0)
            {
                m.insert("generation".into(), json!(g + 1));
            }
            Ok(Write::Put(new))
        })?;
        if matches!(written, Written::Deleted(_)) {
            self.finish_namespace_if_drained(&key.namespace);
        }
        match written {
            Written::Deleted(obj) if !def.return_deleted_object => {
                let uid = obj
                    .pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                Ok((200, status::delete_success(def, &name, uid.as_deref())))
            }
            other => Ok((200, kinds::to_wire(def, other.object()))),
        }
    }

    /// Deleting a namespace marks it `Terminating` (new content is refused with 403), then does
    /// what kube-controller-manager's namespace controller does, at once: deletes everything in
    /// it (objects with finalizers wait for them), and removes the namespace when it is empty.
    /// The system namespaces cannot be deleted.
    fn delete_namespace(&self, t: &Target, name: &str) -> Result<(u16, Value), StatusError> {
        if SYSTEM_NAMESPACES.contains(&name) {
            return Err(StatusError::new(
                403,
                "Forbidden",
                format!("namespaces \"{name}\" is forbidden: this namespace may not be deleted"),
            ));
        }
        let key = t.key()?;
        let marked = self.store.write::<StatusError>(&key, |cur| {
            let Some(old) = cur else {
                return Err(StatusError::not_found(t.def, name));
            };
            let mut new = old.clone();
            if !deleting(&new) {
                meta_mut(&mut new).insert("deletionTimestamp".into(), json!(now_seconds()));
                new["status"]["phase"] = json!("Terminating");
            }
            Ok(Write::Put(new))
        })?;
        let answer = kinds::to_wire(t.def, marked.object());
        for k in self.store.keys_in_namespace(name) {
            let Some(def) = resources::by_storage(k.storage) else {
                continue;
            };
            let one = Target {
                def,
                namespace: Some(k.namespace.clone()),
                name: Some(k.name.clone()),
                status: false,
                manager: String::new(),
            };
            match self.delete(&one, &json!({})) {
                Ok(_) => {}
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        self.finish_namespace_if_drained(name);
        Ok((200, answer))
    }

    fn namespace_terminating(&self, ns: &str) -> bool {
        !ns.is_empty()
            && self
                .store
                .get(&Key::new(resources::NAMESPACES, "", ns))
                .is_some_and(|n| deleting(&n))
    }

    /// Removes a terminating namespace once nothing is left in it.
    fn finish_namespace_if_drained(&self, ns: &str) {
        if !self.namespace_terminating(ns) || !self.store.keys_in_namespace(ns).is_empty() {
            return;
        }
        let key = Key::new(resources::NAMESPACES, "", ns);
        let _ = self.store.write::<StatusError>(&key, |cur| match cur {
            Some(n) if deleting(n) => Ok(Write::Delete),
            _ => Err(StatusError::internal("namespace changed")),
        });
    }

    /// DELETE on a collection: deletes every object matching the selectors.
    pub fn delete_collection(
        &self,
        t: &Target,
        q: &ListQuery,
    ) -> Result<(u16, Value), StatusError> {
        let list = self.list(
            t,
            &ListQuery {
                limit: None,
                continue_token: None,
                ..q.clone()
            },
        )?;
        let mut deleted = Vec::new();
        for item in list["items"].as_array().cloned().unwrap_or_default() {
            let name = item
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let ns = item
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let one = Target {
                def: t.def,
                namespace: ns,
                name: Some(name),
                status: false,
                manager: String::new(),
            };
            match self.delete(&one, &json!({})) {
                Ok(_) => deleted.push(item),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let rv = self.store.current_rv().to_string();
        Ok((
            200,
            json!({"kind": t.def.list_kind(), "apiVersion": t.def.api_version(), "metadata": {"resourceVersion": rv}, "items": deleted}),
        ))
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
