//! The pod side: Pods bound to our Nodes are started (an address from the node's pod CIDR),
//! turned ready, and let go when they are deleted or their node stops.

use super::*;

impl Sim {
    /// A Pod changed: note it if it is bound to one of our nodes, and plan its next step.
    pub(crate) fn pod_seen(&mut self, p: &Pod) {
        let (Some(ns), Some(name), Some(uid)) = (
            p.metadata.namespace.clone(),
            p.metadata.name.clone(),
            p.metadata.uid.clone(),
        ) else {
            return;
        };
        let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            return;
        };
        let Some(kubelet) = self.nodes.values().find(|k| k.node == node) else {
            return;
        };
        // A kubelet acts for its Pods while its node runs and is Ready (not while booting).
        let running = kubelet.running && kubelet.ready;
        let grace = p
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| p.spec.as_ref()?.termination_grace_period_seconds)
            .unwrap_or(30);
        let key = (ns, name);
        let fresh = || PodWork {
            uid: uid.clone(),
            node: node.clone(),
            ip: None,
            ports: pods::tcp_ports(p),
            running: false,
            ready: false,
            grace: Duration::ZERO,
            due: None,
        };
        let w = self.pods.entry(key).or_insert_with(fresh);
        if w.uid != uid {
            // The same name again: a new Pod.
            *w = fresh();
        }
        w.ready = p
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        w.grace = Duration::from_secs(u64::try_from(grace).unwrap_or(0));
        w.running = pods::phase(p) == pods::PodPhase::Running
            || pods::phase(p) == pods::PodPhase::Terminating;
        if let Some(ip) = pods::pod_ip(p) {
            w.ip = Some(ip);
        }
        let now = Instant::now();
        match pods::phase(p) {
            pods::PodPhase::Starting if running && w.due.is_none() => {
                w.due = Some((now + self.config.pod_start_delay, PodAction::Start));
            }
            pods::PodPhase::Terminating
                if running && !matches!(w.due, Some((_, PodAction::Remove))) =>
            {
                let stop = self.config.pod_stop_delay.min(w.grace);
                w.due = Some((now + stop, PodAction::Remove));
            }
            // Someone else (the node-lifecycle controller, while it still saw the node NotReady)
            // marked a running Pod not Ready: its kubelet reports the truth again, as a real
            // kubelet's status manager does.
            pods::PodPhase::Running if running && !w.ready && w.due.is_none() => {
                w.due = Some((now + self.config.pod_start_delay, PodAction::Start));
            }
            pods::PodPhase::Running if w.ready && matches!(w.due, Some((_, PodAction::Start))) => {
                w.due = None;
            }
            _ => {}
        }
    }

    pub(crate) fn pod_gone(&mut self, p: &Pod) {
        if let (Some(ns), Some(name)) = (p.metadata.namespace.clone(), p.metadata.name.clone()) {
            self.pods.remove(&(ns, name));
        }
    }

    /// Does what is due: starts Pods, removes the ones whose containers stopped.
    pub(crate) async fn pod_work(&mut self) {
        let now = Instant::now();
        let due: Vec<((String, String), PodAction)> = self
            .pods
            .iter()
            .filter_map(|(k, w)| match w.due {
                Some((at, action)) if at <= now => Some((k.clone(), action)),
                _ => None,
            })
            .collect();
        for (key, action) in due {
            let Some(w) = self.pods.get(&key).cloned() else {
                continue;
            };
            let up = self
                .nodes
                .values()
                .any(|k| k.node == w.node && k.running && k.ready);
            if !up {
                // A dead or booting kubelet does nothing yet; the work waits for it.
                continue;
            }
            if let Some(p) = self.pods.get_mut(&key) {
                p.due = None;
            }
            let api: Api<Pod> = Api::namespaced(self.kube.clone(), &key.0);
            match action {
                PodAction::Start => self.start_pod(&api, &key, &w).await,
                PodAction::Remove => {
                    let dp = DeleteParams {
                        grace_period_seconds: Some(0),
                        preconditions: Some(Preconditions {
                            uid: Some(w.uid.clone()),
                            resource_version: None,
                        }),
                        ..Default::default()
                    };
                    match api.delete(&key.1, &dp).await {
                        Ok(_) => {
                            tracing::debug!(pod = %key.1, namespace = %key.0, "kubelet: pod stopped and removed")
                        }
                        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                        Err(e) => {
                            tracing::warn!(pod = %key.1, error = %e, "kubelet: cannot remove pod")
                        }
                    }
                }
            }
        }
    }

    /// Posts Running and Ready with an IP from the node's pod CIDR.
    pub(crate) async fn start_pod(&mut self, api: &Api<Pod>, key: &(String, String), w: &PodWork) {
        let retry = |sim: &mut Self| {
            if let Some(w) = sim.pods.get_mut(key) {
                w.due = Some((
                    Instant::now() + Duration::from_millis(500),
                    PodAction::Start,
                ));
            }
        };
        let Ok(Some(pod)) = api.get_opt(&key.1).await else {
            return;
        };
        if pod.metadata.uid.as_deref() != Some(w.uid.as_str())
            || pods::phase(&pod) == pods::PodPhase::Terminating
        {
            return;
        }
        let Some(host_ip) = self.nodes.values().find(|k| k.node == w.node).map(|k| k.ip) else {
            return;
        };
        let ip = match w.ip {
            Some(ip) => ip,
            None => {
                let Some(cidr) = self.pod_cidr_of(&w.node) else {
                    // No pod CIDR yet (node IPAM has not reached this node): try again soon.
                    retry(self);
                    return;
                };
                let used: BTreeSet<Ipv4Addr> = self
                    .pods
                    .values()
                    .filter(|o| o.node == w.node)
                    .filter_map(|o| o.ip)
                    .collect();
                let Some(ip) = pods::next_pod_ip(cidr, &used) else {
                    tracing::warn!(node = %w.node, %cidr, "kubelet: the node's pod CIDR is full");
                    retry(self);
                    return;
                };
                ip
            }
        };
        if let Some(me) = self.pods.get_mut(key) {
            me.ip = Some(ip);
        }
        let status = pods::running_status(&pod, host_ip, ip, &node::now_time());
        let pp = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..Default::default()
        };
        match api.patch_status(&key.1, &pp, &strategic(status)).await {
            Ok(_) => tracing::debug!(pod = %key.1, namespace = %key.0, %ip, "kubelet: pod running"),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                tracing::warn!(pod = %key.1, error = %e, "kubelet: cannot report the pod running");
                retry(self);
            }
        }
    }

    /// The node stopped reporting: its Pods are not Ready (the node-lifecycle controller's
    /// job; only where the simulator stands in for it).
    pub(crate) async fn mark_pods_not_ready(&mut self, node: &str) {
        let on_node: Vec<(String, String)> = self
            .pods
            .iter()
            .filter(|(_, w)| w.node == node)
            .map(|(k, _)| k.clone())
            .collect();
        let patch = pods::not_ready_status(&node::now_time());
        for (ns, name) in on_node {
            let api: Api<Pod> = Api::namespaced(self.kube.clone(), &ns);
            if let Err(e) = api
                .patch_status(&name, &PatchParams::default(), &strategic(patch.clone()))
                .await
            {
                tracing::debug!(pod = %name, error = %e, "cannot mark pod not ready");
            }
        }
    }
}
