//! Writes to existing objects: update (PUT), patch (merge, JSON, strategic), server-side apply,
//! all through one optimistic, retried `guaranteed_update`.

use serde_json::{Value, json};

use super::*;

impl Api {
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
        if !self.store.contains(&key) {
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
        if !self.store.contains(&t.key()?) {
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
    pub(super) fn guaranteed_update(
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
            let old_wire = kinds::to_wire(def, old.clone());
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
        let wire = match (sent, dry_run) {
            (Some(sent), true) => kinds::to_wire(def, sent),
            _ => kinds::to_wire(def, written.into_object()),
        };
        Ok((200, wire))
    }
}
