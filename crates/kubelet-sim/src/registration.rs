//! The node side of the kubelets: an instance of the cluster becomes a Node (registered with
//! the uninitialized taint), posts its status and renews its Lease while it runs, goes NotReady
//! when it stops, and serves its node ports when the data plane is on.

use super::*;

/// API calls the kubelets make at once (registrations, status reports, Lease renewals).
const CONCURRENCY: usize = 16;
/// How long the pod CIDRs read from the Node watch are used before they are read again.
const CIDRS_FRESH_FOR: Duration = Duration::from_secs(1);
/// How long a registration stays pending before the watch must have shown its Node.
const PENDING_FOR: Duration = Duration::from_secs(30);

fn runs(i: &Instance) -> bool {
    matches!(i.state, InstanceState::Pending | InstanceState::Running)
}

/// A Node this simulator created (or is creating) that its watch has not shown yet.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pending {
    pub pod_cidr: Option<Ipv4Net>,
    since: Instant,
}

/// What one kubelet does in a pass: register its Node (when it has none), then report its
/// status (or only renew its Lease).
#[derive(Debug)]
struct NodeJob {
    node: String,
    ready: bool,
    register: Option<Registration>,
    /// Report the status (conditions) and renew the Lease; `false`: renew the Lease only.
    status: bool,
}

impl NodeJob {
    fn status(node: &str, ready: bool) -> Self {
        Self {
            node: node.to_owned(),
            ready,
            register: None,
            status: true,
        }
    }
}

#[derive(Debug)]
struct Registration {
    instance_id: String,
    /// The instance as just read; `None`: read it first.
    instance: Option<Instance>,
    pod_cidr: Option<Ipv4Net>,
}

/// The first `count` subnets of size `size` in `cidr` that `used` does not hold (fewer when
/// `cidr` runs out).
fn free_subnets(cidr: Ipv4Net, size: u8, used: &HashSet<Ipv4Net>, count: usize) -> Vec<Ipv4Net> {
    cidr.subnets(size)
        .into_iter()
        .flatten()
        .filter(|s| !used.contains(s))
        .take(count)
        .collect()
}

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

    /// Instances changed (or were listed at start): kubelets start, stop, register their Nodes
    /// and report their status, [`CONCURRENCY`] API calls at a time.
    pub(crate) async fn reconcile_all(&mut self, instances: Vec<Instance>) {
        self.settle_pending();
        let members: Vec<Instance> = instances.into_iter().filter(|i| self.member(i)).collect();
        let unregistered = members
            .iter()
            .filter(|i| runs(i) && !self.node_known(&i.name))
            .count();
        let mut cidrs = self.allocate_pod_cidrs(unregistered).into_iter();
        let mut jobs = Vec::new();
        for i in members {
            let id = i.id.to_string();
            let was = self.nodes.get(&id).map(|k| (k.running, k.ready));
            if !runs(&i) {
                if let Some(k) = self.nodes.get_mut(&id) {
                    if k.running {
                        tracing::info!(node = %k.node, instance = %id, state = %i.state, "kubelet: stopped with its instance");
                    }
                    k.running = false;
                }
                continue;
            }
            let ready = i.state == InstanceState::Running;
            let k = self.nodes.entry(id.clone()).or_insert_with(|| Kubelet {
                instance_id: id.clone(),
                node: i.name.clone(),
                ip: i.private_ip,
                zone: i.zone.clone(),
                running: true,
                ready,
                last_heartbeat: Instant::now(),
                last_report: Instant::now(),
                marked_unknown: false,
            });
            k.running = true;
            k.ready = ready;
            k.last_heartbeat = Instant::now();
            k.last_report = Instant::now();
            k.marked_unknown = false;
            if ready && was != Some((true, true)) {
                // A kubelet whose node is (again) up and Ready reports the Pods bound to it.
                let due = Instant::now() + self.config.pod_start_delay;
                for w in self.pods.values_mut().filter(|w| w.node == i.name) {
                    if w.due.is_none() {
                        w.due = Some((due, PodAction::Start));
                    }
                }
            }
            let register = !self.node_known(&i.name);
            if !register {
                jobs.push(NodeJob::status(&i.name, ready));
            } else if let Some(job) =
                self.plan_registration(&i.name.clone(), id, Some(i), ready, &mut cidrs)
            {
                jobs.push(job);
            }
        }
        self.run_jobs(jobs).await;
    }

    /// A registration job for node `node` of instance `instance_id` (`instance`: as just read,
    /// or `None` to read it first) with the next of the allocated pod CIDRs (where the simulator
    /// allocates them), recorded as pending; `None` when the CIDRs ran out.
    fn plan_registration(
        &mut self,
        node: &str,
        instance_id: String,
        instance: Option<Instance>,
        ready: bool,
        cidrs: &mut impl Iterator<Item = Ipv4Net>,
    ) -> Option<NodeJob> {
        let pod_cidr = match self.config.allocate_pod_cidrs {
            None => None,
            Some((cidr, size)) => match cidrs.next() {
                Some(c) => Some(c),
                None => {
                    tracing::warn!(
                        node,
                        "kubelet: registration failed: the cluster CIDR {cidr} has no free /{size} left"
                    );
                    return None;
                }
            },
        };
        self.pending.insert(
            node.to_owned(),
            Pending {
                pod_cidr,
                since: Instant::now(),
            },
        );
        Some(NodeJob {
            register: Some(Registration {
                instance_id,
                instance,
                pod_cidr,
            }),
            ..NodeJob::status(node, ready)
        })
    }

    /// Runs `jobs` concurrently and forgets the pending registrations that failed (a running
    /// kubelet tries again at its next heartbeat).
    async fn run_jobs(&mut self, jobs: Vec<NodeJob>) {
        let failed: Vec<String> = futures_util::stream::iter(jobs)
            .map(|j| self.run_job(j))
            .buffer_unordered(CONCURRENCY)
            .filter_map(|r| async move { r.err() })
            .collect()
            .await;
        for node in failed {
            self.pending.remove(&node);
        }
    }

    /// One node's registration (when it has one) and status report or Lease renewal; the
    /// node's name when its registration failed.
    async fn run_job(&self, job: NodeJob) -> Result<(), String> {
        if let Some(r) = job.register {
            let registered = match r.instance {
                Some(i) => self.register(&i, r.pod_cidr).await,
                // Re-registration after the Node was deleted: as the instance is now.
                None => match self.client.get_instance(&r.instance_id).await {
                    Ok(Some(i)) => self.register(&i, r.pod_cidr).await,
                    Ok(None) => Err("its instance is gone".to_owned()),
                    Err(e) => Err(format!("cannot read its instance: {e}")),
                },
            };
            match registered {
                Ok(created) => {
                    tracing::info!(node = %job.node, instance = %r.instance_id, pod_cidr = ?r.pod_cidr, "kubelet: node registered");
                    // Just created: its status and its (new) Lease follow from the Node the
                    // create returned, without reading it back or trying to renew first. The
                    // create carried the conditions (as a kubelet's does), so a status report
                    // follows only if the instance changed state meanwhile.
                    if let Some(node) = created {
                        if !node::reports_ready_as(&node, job.ready) {
                            self.report_status(&node, job.ready).await;
                        }
                        let uid = node.metadata.uid.unwrap_or_default();
                        self.create_lease(&job.node, &uid, &node::now_micro_time())
                            .await;
                        return Ok(());
                    }
                }
                Err(e) => {
                    tracing::warn!(node = %job.node, error = %e, "kubelet: registration failed");
                    return Err(job.node);
                }
            }
        }
        // A Lease renewal needs the Node's UID (the Lease is owned by it); a Node the watch has
        // not shown yet gets the full status post, which reads it.
        let uid = self
            .node_store
            .get(&ObjectRef::new(&job.node))
            .and_then(|n| n.metadata.uid.clone());
        match uid {
            Some(uid) if !job.status => self.renew_lease(&job.node, &uid).await,
            _ => self.post_status(&job.node, job.ready).await,
        }
        Ok(())
    }

    pub(crate) fn instance_gone(&mut self, id: &str) {
        if let Some(k) = self.nodes.get_mut(id) {
            k.running = false;
        }
    }

    /// The Node exists (the watch shows it) or this simulator has just created it.
    fn node_known(&self, name: &str) -> bool {
        self.pending.contains_key(name) || self.node_store.get(&ObjectRef::new(name)).is_some()
    }

    /// Forgets the registrations the watch has caught up with, and those so old that their
    /// Node must have been deleted before the watch saw it.
    fn settle_pending(&mut self) {
        let store = &self.node_store;
        self.pending.retain(|name, p| {
            p.since.elapsed() < PENDING_FOR && store.get(&ObjectRef::new(name)).is_none()
        });
    }

    /// The pod CIDR of `node`: from the watch, or from its pending registration.
    pub(crate) fn pod_cidr_of(&self, node: &str) -> Option<Ipv4Net> {
        if let Some(p) = self.pending.get(node).and_then(|p| p.pod_cidr) {
            return Some(p);
        }
        self.node_store
            .get(&ObjectRef::new(node))?
            .spec
            .as_ref()?
            .pod_cidr
            .as_deref()?
            .parse()
            .ok()
    }

    /// Up to `count` pod CIDRs no Node has and no pending registration holds (node IPAM's
    /// stand-in); fewer when the cluster CIDR runs out, none where kube-controller-manager
    /// allocates them.
    ///
    /// The taken CIDRs are read from the watch at most once a second ([`CIDRS_FRESH_FOR`]):
    /// instances arrive a few at a time, and re-reading thousands of Nodes for each few made
    /// registration quadratic. In between, what this simulator allocates is added to the set
    /// (it is the only allocator where it allocates at all); a deleted Node's CIDR is free again
    /// at the next read.
    fn allocate_pod_cidrs(&mut self, count: usize) -> Vec<Ipv4Net> {
        let Some((cidr, size)) = self.config.allocate_pod_cidrs else {
            return Vec::new();
        };
        if count == 0 {
            return Vec::new();
        }
        let stale = self
            .taken_cidrs
            .as_ref()
            .is_none_or(|(at, _)| at.elapsed() >= CIDRS_FRESH_FOR);
        if stale {
            let mut taken: HashSet<Ipv4Net> = self
                .node_store
                .state()
                .iter()
                .filter_map(|n| n.spec.as_ref()?.pod_cidr.as_deref()?.parse().ok())
                .collect();
            taken.extend(self.pending.values().filter_map(|p| p.pod_cidr));
            self.taken_cidrs = Some((Instant::now(), taken));
        }
        let (_, taken) = self.taken_cidrs.as_mut().expect("filled above");
        let out = free_subnets(cidr, size, taken, count);
        taken.extend(out.iter().copied());
        out
    }

    /// Creates the Node of instance `i`; the created Node, or `None` when it already existed.
    pub(crate) async fn register(
        &self,
        i: &Instance,
        pod_cidr: Option<Ipv4Net>,
    ) -> Result<Option<Node>, String> {
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
        let pod_cidr = pod_cidr.map(|c| c.to_string());
        let body = node::registration(i, cap, pod_cidr.as_deref(), &node::now_time());
        let n: Node = serde_json::from_value(body).map_err(|e| e.to_string())?;
        let pp = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..Default::default()
        };
        match self.nodes_api.create(&pp, &n).await {
            Ok(created) => Ok(Some(created)),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Posts the Ready condition (and the pressure conditions) and renews the node's Lease.
    pub(crate) async fn post_status(&self, node: &str, ready: bool) {
        let Ok(Some(current)) = self.nodes_api.get_opt(node).await else {
            return;
        };
        self.report_status(&current, ready).await;
        let uid = current.metadata.uid.unwrap_or_default();
        self.renew_lease(node, &uid).await;
    }

    /// Patches the Ready condition (and the pressure conditions) of `current`, as read.
    async fn report_status(&self, current: &Node, ready: bool) {
        let node = current.metadata.name.as_deref().unwrap_or_default();
        let now = node::now_time();
        let current_json = serde_json::to_value(current).unwrap_or_default();
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
    }

    /// Renews the Lease of `node`, making it again (owned by the Node with UID `uid`) when it
    /// is gone.
    pub(crate) async fn renew_lease(&self, node: &str, uid: &str) {
        let renew = node::now_micro_time();
        match self.patch_lease(node, &renew).await {
            Ok(()) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => self.create_lease(node, uid, &renew).await,
            Err(e) => tracing::warn!(node, error = %e, "kubelet: cannot renew its Lease"),
        }
    }

    /// Sets the Lease of `node` renewed at `renew`.
    async fn patch_lease(&self, node: &str, renew: &str) -> Result<(), kube::Error> {
        let pp = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..Default::default()
        };
        let patch = json!({"spec": {
            "renewTime": renew,
            "holderIdentity": node,
            "leaseDurationSeconds": self.lease_seconds(),
        }});
        self.leases
            .patch(node, &pp, &Patch::Merge(patch))
            .await
            .map(drop)
    }

    fn lease_seconds(&self) -> i64 {
        i64::try_from(self.config.lease_duration.as_secs()).unwrap_or(40)
    }

    /// Creates the Lease of `node` (owned by the Node with UID `uid`), renewed at `renew`; one
    /// that exists already is renewed instead (once: a Lease that vanishes again is the next
    /// heartbeat's business).
    async fn create_lease(&self, node: &str, uid: &str, renew: &str) {
        let lease = node::lease(node, uid, self.lease_seconds(), renew);
        let lease = match serde_json::from_value::<Lease>(lease) {
            Ok(lease) => lease,
            Err(e) => {
                tracing::error!(node, error = %e, "kubelet: its Lease does not decode (a bug)");
                return;
            }
        };
        let pp = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..Default::default()
        };
        let made = match self.leases.create(&pp, &lease).await {
            // Left from an earlier Node of the same name (the garbage collector had not got to
            // it): renew it.
            Err(kube::Error::Api(s)) if s.code == 409 => self.patch_lease(node, renew).await,
            other => other.map(drop),
        };
        if let Err(e) = made {
            tracing::warn!(node, error = %e, "kubelet: cannot create its Lease, or renew the one there");
        }
    }

    /// Running kubelets renew their Leases (and report their status every
    /// [`KubeletConfig::status_report_interval`]; a Node deleted under a running kubelet is
    /// registered again); quiet ones turn Unknown after the grace period (where the simulator
    /// stands in for the node-lifecycle controller).
    pub(crate) async fn heartbeats(&mut self) {
        self.settle_pending();
        let mut beat = Vec::new();
        let mut unknown = Vec::new();
        for k in self.nodes.values_mut() {
            if k.running {
                if k.last_heartbeat.elapsed() >= self.config.status_interval {
                    k.last_heartbeat = Instant::now();
                    let report = k.last_report.elapsed() >= self.config.status_report_interval;
                    if report {
                        k.last_report = Instant::now();
                    }
                    beat.push((k.node.clone(), k.instance_id.clone(), k.ready, report));
                }
            } else if let Some(grace) = self.config.mark_unknown_after
                && !k.marked_unknown
                && k.last_heartbeat.elapsed() >= grace
            {
                k.marked_unknown = true;
                unknown.push((k.node.clone(), k.instance_id.clone()));
            }
        }
        let gone = beat.iter().filter(|b| !self.node_known(&b.0)).count();
        let mut cidrs = self.allocate_pod_cidrs(gone).into_iter();
        let mut jobs = Vec::new();
        for (node, id, ready, report) in beat {
            if self.node_known(&node) {
                jobs.push(NodeJob {
                    status: report,
                    ..NodeJob::status(&node, ready)
                });
                continue;
            }
            // The Node was deleted under a running kubelet: it registers again, as a real one
            // does.
            tracing::info!(
                node,
                "kubelet: node object gone while running; re-registering"
            );
            jobs.extend(self.plan_registration(&node, id, None, ready, &mut cidrs));
        }
        self.run_jobs(jobs).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn free_subnets_skip_the_used_ones_in_order() {
        let cidr = net("10.244.0.0/22");
        let cases: [(&[&str], usize, &[&str]); 4] = [
            (&[], 2, &["10.244.0.0/24", "10.244.1.0/24"]),
            (
                &["10.244.0.0/24", "10.244.2.0/24"],
                2,
                &["10.244.1.0/24", "10.244.3.0/24"],
            ),
            // Fewer than asked when the range runs out.
            (
                &["10.244.1.0/24"],
                5,
                &["10.244.0.0/24", "10.244.2.0/24", "10.244.3.0/24"],
            ),
            (
                &[
                    "10.244.0.0/24",
                    "10.244.1.0/24",
                    "10.244.2.0/24",
                    "10.244.3.0/24",
                ],
                1,
                &[],
            ),
        ];
        for (used, count, want) in cases {
            let used: HashSet<Ipv4Net> = used.iter().map(|s| net(s)).collect();
            let got = free_subnets(cidr, 24, &used, count);
            let want: Vec<Ipv4Net> = want.iter().map(|s| net(s)).collect();
            assert_eq!(got, want, "used {used:?}, count {count}");
        }
    }

    #[test]
    fn a_size_larger_than_the_range_gives_nothing() {
        assert!(free_subnets(net("10.244.0.0/24"), 16, &HashSet::new(), 1).is_empty());
    }
}
