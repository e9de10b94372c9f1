//! Subresources and reviews: `scale`, `pods/binding`, SelfSubjectAccessReview and
//! SelfSubjectRulesReview.

use serde_json::{Value, json};

use super::*;

impl Api {
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
                .objects(storage, None)
                .iter()
                .filter_map(|(_, o)| serde_json::from_slice(o.json()).ok())
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
}
