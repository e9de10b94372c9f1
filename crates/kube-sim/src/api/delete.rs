//! Deletes: graceful with finalizers, namespaces that drain before they go, and collections.

use serde_json::{Value, json};

use super::*;

impl Api {
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
            other => Ok((200, kinds::to_wire(def, other.into_object()))),
        }
    }

    /// Deleting a namespace marks it `Terminating` (new content is refused with 403), then does
    /// what kube-controller-manager's namespace controller does, at once: deletes everything in
    /// it (objects with finalizers wait for them), and removes the namespace when it is empty.
    /// The system namespaces cannot be deleted.
    pub(super) fn delete_namespace(
        &self,
        t: &Target,
        name: &str,
    ) -> Result<(u16, Value), StatusError> {
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
        let answer = kinds::to_wire(t.def, marked.into_object());
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

    pub(super) fn namespace_terminating(&self, ns: &str) -> bool {
        !ns.is_empty()
            && self
                .store
                .get(&Key::new(resources::NAMESPACES, "", ns))
                .is_some_and(|n| deleting(&n))
    }

    /// Removes a terminating namespace once nothing is left in it.
    pub(super) fn finish_namespace_if_drained(&self, ns: &str) {
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
}
