//! The node side of the kubelets: an instance of the cluster becomes a Node (registered with
//! the uninitialized taint), posts its status and renews its Lease while it runs, goes NotReady
//! when it stops, and serves its node ports when the data plane is on.

use super::*;

impl Sim {
    /// The data plane's listeners for the running nodes and Pods (kube-proxy's and the
    /// Pods' part, see [`dataplane`]).
    pub(crate) fn sync_data_plane(&mut self) {
        let Some(view) = self.view.clone() else {
            return;
        };
        let services: Vec<Service> = view
            .services
            .state()
            .iter()
            .map(|s| (**s).clone())
            .collect();
        let running: HashMap<&str, &Kubelet> = self
            .nodes
            .values()
            .filter(|k| k.running)
            .map(|k| (k.node.as_str(), k))
            .collect();
        let nodes: Vec<dataplane::NodeEndpoint> = running
            .values()
            .map(|k| dataplane::NodeEndpoint {
                name: k.node.clone(),
                ip: k.ip,
                zone: k.zone.clone(),
            })
            .collect();
        let pods: Vec<dataplane::PodEndpoint> = self
            .pods
            .iter()
            .filter(|(_, w)| w.running && !w.ports.is_empty())
            .filter_map(|((_, name), w)| {
                let k = running.get(w.node.as_str())?;
                Some(dataplane::PodEndpoint {
                    name: name.clone(),
                    ip: dataplane::on_loopback(w.ip?, view.loopback),
                    ports: w.ports.clone(),
                    node: w.node.clone(),
                    zone: k.zone.clone(),
                })
            })
            .collect();
        let want = dataplane::desired(&services, &nodes, &pods);
        self.listeners.sync(&view, want);
    }

    pub(crate) fn member(&self, i: &Instance) -> bool {
        match &self.config.cluster_name {
            None => true,
            Some(c) => i.tags.contains_key(&format!("{CLUSTER_TAG_PREFIX}{c}")),
        }
    }

    pub(crate) async fn reconcile(&mut self, i: &Instance) {
        if !self.member(i) {
            return;
        }
        let runs = matches!(i.state, InstanceState::Pending | InstanceState::Running);
        let id = i.id.to_string();
        let was_running = self.nodes.get(&id).is_some_and(|k| k.running);
        let was_ready = self.nodes.get(&id).is_some_and(|k| k.ready);
        if runs {
            let ready = i.state == InstanceState::Running;
            if !self.node_exists(&i.name).await {
                if let Err(e) = self.register(i).await {
                    tracing::warn!(node = %i.name, error = %e, "kubelet: registration failed");
                    return;
                }
                tracing::info!(node = %i.name, instance = %id, ip = %i.private_ip, "kubelet: node registered");
            }
            let k = self.nodes.entry(id.clone()).or_insert_with(|| Kubelet {
                instance_id: id.clone(),
                node: i.name.clone(),
                ip: i.private_ip,
                zone: i.zone.clone(),
                running: true,
                ready,
                last_heartbeat: Instant::now(),
                marked_unknown: false,
            });
            k.running = true;
            k.ready = ready;
            k.last_heartbeat = Instant::now();
            k.marked_unknown = false;
            let name = i.name.clone();
            if ready && !(was_running && was_ready) {
                // A kubelet whose node is (again) up and Ready reports the Pods bound to it.
                let due = Instant::now() + self.config.pod_start_delay;
                for w in self.pods.values_mut().filter(|w| w.node == name) {
                    if w.due.is_none() {
                        w.due = Some((due, PodAction::Start));
                    }
                }
            }
            self.post_status(&name, ready).await;
        } else if let Some(k) = self.nodes.get_mut(&id) {
            if was_running {
                tracing::info!(node = %k.node, instance = %id, state = %i.state, "kubelet: stopped with its instance");
            }
            k.running = false;
        }
    }

    pub(crate) fn instance_gone(&mut self, id: &str) {
        if let Some(k) = self.nodes.get_mut(id) {
            k.running = false;
        }
    }

    pub(crate) async fn node_exists(&self, name: &str) -> bool {
        // An API error counts as "exists": registering again would only fail with a conflict.
        !matches!(self.nodes_api.get_opt(name).await, Ok(None))
    }

    /// The first pod CIDR of the cluster CIDR that no Node has (node IPAM's stand-in).
    pub(crate) async fn next_pod_cidr(&self, cidr: Ipv4Net, size: u8) -> Result<String, String> {
        let list = self
            .nodes_api
            .list(&ListParams::default())
            .await
            .map_err(|e| format!("cannot list Nodes: {e}"))?;
        let used: BTreeSet<String> = list
            .items
            .into_iter()
            .filter_map(|n| n.spec?.pod_cidr)
            .collect();
        cidr.subnets(size)
            .map_err(|e| e.to_string())?
            .find(|s| !used.contains(&s.to_string()))
            .map(|s| s.to_string())
            .ok_or_else(|| format!("the cluster CIDR {cidr} has no free /{size} left"))
    }

    pub(crate) async fn register(&self, i: &Instance) -> Result<(), String> {
        let cap = self.types.get(&i.instance_type).map_or(
            node::Capacity {
                cpu: 2,
                memory_mib: 4096,
            },
            |t| node::Capacity {
                cpu: t.vcpus,
                memory_mib: t.memory_mib,
            },
        );
        let pod_cidr = match self.config.allocate_pod_cidrs {
            Some((cidr, size)) => Some(self.next_pod_cidr(cidr, size).await?),
            None => None,
        };
        let body = node::registration(i, cap, pod_cidr.as_deref(), &node::now_time());
        let n: Node = serde_json::from_value(body).map_err(|e| e.to_string())?;
        let pp = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..Default::default()
        };
        match self.nodes_api.create(&pp, &n).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Posts the Ready condition (and the pressure conditions) and renews the node's Lease.
    pub(crate) async fn post_status(&self, node: &str, ready: bool) {
        let Ok(Some(current)) = self.nodes_api.get_opt(node).await else {
            return;
        };
        let now = node::now_time();
        let current_json = serde_json::to_value(&current).unwrap_or_default();
        let transition = node::ready_transition(&current_json, ready, &now);
        let patch = json!({"status": {"conditions": node::conditions(ready, &now, &transition)}});
        let pp = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..Default::default()
        };
        if let Err(e) = self
            .nodes_api
            .patch_status(node, &pp, &strategic(patch))
            .await
        {
            tracing::warn!(node, error = %e, "kubelet: status update failed");
        }
        let uid = current.metadata.uid.unwrap_or_default();
        self.renew_lease(node, &uid).await;
    }

    pub(crate) async fn renew_lease(&self, node: &str, uid: &str) {
        let secs = i64::try_from(self.config.lease_duration.as_secs()).unwrap_or(40);
        let renew = node::now_micro_time();
        let pp = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..Default::default()
        };
        let patch = json!({"spec": {"renewTime": renew, "holderIdentity": node, "leaseDurationSeconds": secs}});
        match self.leases.patch(node, &pp, &Patch::Merge(patch)).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {
                let lease = node::lease(node, uid, secs, &renew);
                let Ok(lease) = serde_json::from_value::<Lease>(lease) else {
                    return;
                };
                let pp = PostParams {
                    field_manager: Some(FIELD_MANAGER.to_owned()),
                    ..Default::default()
                };
                if let Err(e) = self.leases.create(&pp, &lease).await {
                    tracing::warn!(node, error = %e, "kubelet: cannot create its Lease");
                }
            }
            Err(e) => tracing::warn!(node, error = %e, "kubelet: cannot renew its Lease"),
        }
    }

    /// Running kubelets heartbeat; quiet ones turn Unknown after the grace period (where the
    /// simulator stands in for the node-lifecycle controller).
    pub(crate) async fn heartbeats(&mut self) {
        let mut beat = Vec::new();
        let mut unknown = Vec::new();
        for k in self.nodes.values_mut() {
            if k.running {
                if k.last_heartbeat.elapsed() >= self.config.status_interval {
                    k.last_heartbeat = Instant::now();
                    beat.push((k.node.clone(), k.instance_id.clone(), k.ready));
                }
            } else if let Some(grace) = self.config.mark_unknown_after
                && !k.marked_unknown
                && k.last_heartbeat.elapsed() >= grace
            {
                k.marked_unknown = true;
                unknown.push((k.node.clone(), k.instance_id.clone()));
            }
        }
        for (node, id, ready) in beat {
            if self.node_exists(&node).await {
                self.post_status(&node, ready).await;
                continue;
            }
            // The Node was deleted under a running kubelet: it registers again, as a real one does.
            tracing::info!(
                node,
                "kubelet: node object gone while running; re-registering"
            );
            if let Ok(Some(i)) = self.client.get_instance(&id).await
                && let Err(e) = self.register(&i).await
            {
                tracing::warn!(node, error = %e, "kubelet: re-registration failed");
            }
        }
        for (node, id) in unknown {
            let Ok(Some(current)) = self.nodes_api.get_opt(&node).await else {
                continue;
            };
            let conds = node::unknown_conditions(
                &serde_json::to_value(&current).unwrap_or_default(),
                &node::now_time(),
            );
            let patch = json!({"status": {"conditions": conds}});
            match self
                .nodes_api
                .patch_status(&node, &PatchParams::default(), &strategic(patch))
                .await
            {
                Ok(_) => {
                    tracing::info!(node, instance = %id, "node status unknown: kubelet stopped posting")
                }
                Err(e) => tracing::warn!(node, error = %e, "cannot mark node unknown"),
            }
            self.mark_pods_not_ready(&node).await;
        }
    }
}
