//! A fake provider for controller tests: instances keyed by node name, every call recorded, and
//! failures that can be scripted.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, Node, Service};

use super::{
    CloudError, CloudProvider, CloudRoute, InstanceMetadata, InstancesV2, LoadBalancer,
    OwnedLoadBalancer, RouteSpec, Routes,
};

/// A fake instance.
#[derive(Debug, Clone, Default)]
pub struct FakeInstance {
    pub metadata: InstanceMetadata,
    pub shutdown: bool,
}

#[derive(Debug, Default)]
struct State {
    /// By node name.
    instances: HashMap<String, FakeInstance>,
    calls: Vec<String>,
    /// The next N calls (any method) fail with this message.
    failures: Option<(u32, String)>,
    /// Calls for nodes in this set fail (by node name) until cleared.
    failing_nodes: HashMap<String, String>,
    metadata_none: bool,
    /// Routes by ID.
    routes: Vec<CloudRoute>,
    next_route: u64,
    /// Creating more routes than this fails (a quota).
    route_quota: Option<usize>,
    /// Load balancers by `namespace/name` of their Service.
    lbs: HashMap<String, FakeLb>,
    /// The next N load-balancer calls fail with a retry-after delay.
    lb_retry_after: Option<(u32, Duration)>,
}

/// A fake load balancer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeLb {
    pub service_uid: String,
    /// Backend node names, in the order the controller passed them.
    pub hosts: Vec<String>,
    pub ip: String,
}

fn svc_key(svc: &Service) -> String {
    format!(
        "{}/{}",
        svc.metadata.namespace.as_deref().unwrap_or("default"),
        svc.metadata.name.as_deref().unwrap_or("")
    )
}

/// The fake provider. Cheap to share behind an `Arc`.
#[derive(Debug, Default)]
pub struct FakeCloud {
    state: Mutex<State>,
    /// Added before every call (to test concurrency and measure throughput).
    pub delay: Duration,
}

impl FakeCloud {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_delay(delay: Duration) -> Self {
        Self {
            state: Mutex::default(),
            delay,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("fake cloud lock")
    }

    /// Adds (or replaces) the instance behind node `name`.
    pub fn set_instance(&self, name: &str, instance: FakeInstance) {
        self.state().instances.insert(name.to_owned(), instance);
    }

    pub fn remove_instance(&self, name: &str) {
        self.state().instances.remove(name);
    }

    pub fn set_shutdown(&self, name: &str, shutdown: bool) {
        if let Some(i) = self.state().instances.get_mut(name) {
            i.shutdown = shutdown;
        }
    }

    /// The next `n` calls fail with `message`.
    pub fn fail_next(&self, n: u32, message: &str) {
        self.state().failures = Some((n, message.to_owned()));
    }

    /// Every call about node `name` fails until [`FakeCloud::heal_node`].
    pub fn fail_node(&self, name: &str, message: &str) {
        self.state()
            .failing_nodes
            .insert(name.to_owned(), message.to_owned());
    }

    pub fn heal_node(&self, name: &str) {
        self.state().failing_nodes.remove(name);
    }

    /// `instance_metadata` answers `Ok(None)` ("skip") while set.
    pub fn set_metadata_none(&self, none: bool) {
        self.state().metadata_none = none;
    }

    /// Routes the fake cloud holds.
    pub fn routes_snapshot(&self) -> Vec<CloudRoute> {
        self.state().routes.clone()
    }

    /// Adds a route as if someone else created it.
    pub fn insert_route(&self, route: CloudRoute) {
        self.state().routes.push(route);
    }

    /// Marks the routes to `node` as blackholes (its instance went away).
    pub fn blackhole_routes_to(&self, node: &str) {
        for r in self
            .state()
            .routes
            .iter_mut()
            .filter(|r| r.target_node == node)
        {
            r.blackhole = true;
        }
    }

    pub fn set_route_quota(&self, quota: Option<usize>) {
        self.state().route_quota = quota;
    }

    fn enter_route(&self, method: &str, what: &str) -> Result<(), CloudError> {
        let mut s = self.state();
        s.calls.push(format!("{method}:{what}"));
        if let Some((n, msg)) = s.failures.as_mut() {
            let msg = msg.clone();
            *n -= 1;
            if *n == 0 {
                s.failures = None;
            }
            return Err(CloudError::Fake(msg));
        }
        if let Some(msg) = s.failing_nodes.get(what) {
            return Err(CloudError::Fake(msg.clone()));
        }
        Ok(())
    }

    /// Load balancers the fake cloud holds, by `namespace/name` of their Service.
    pub fn lbs(&self) -> HashMap<String, FakeLb> {
        self.state().lbs.clone()
    }

    /// Adds a load balancer as if an earlier ccm had made it.
    pub fn insert_lb(&self, service: &str, lb: FakeLb) {
        self.state().lbs.insert(service.to_owned(), lb);
    }

    /// The next `n` load-balancer calls fail asking for a retry after `after`.
    pub fn lb_retry_after(&self, n: u32, after: Duration) {
        self.state().lb_retry_after = Some((n, after));
    }

    fn enter_lb(&self, method: &str, key: &str) -> Result<(), CloudError> {
        let mut s = self.state();
        s.calls.push(format!("{method}:{key}"));
        if let Some((n, after)) = s.lb_retry_after.as_mut() {
            let after = *after;
            *n -= 1;
            if *n == 0 {
                s.lb_retry_after = None;
            }
            return Err(CloudError::RetryAfter {
                message: "throttled".into(),
                after,
            });
        }
        if let Some((n, msg)) = s.failures.as_mut() {
            let msg = msg.clone();
            *n -= 1;
            if *n == 0 {
                s.failures = None;
            }
            return Err(CloudError::Fake(msg));
        }
        Ok(())
    }

    /// Recorded calls, as `method:node`.
    pub fn calls(&self) -> Vec<String> {
        self.state().calls.clone()
    }

    pub fn count_calls(&self, method: &str) -> usize {
        self.state()
            .calls
            .iter()
            .filter(|c| c.split(':').next() == Some(method))
            .count()
    }

    async fn enter(&self, method: &str, node: &Node) -> Result<Option<FakeInstance>, CloudError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let name = node.metadata.name.clone().unwrap_or_default();
        let mut s = self.state();
        s.calls.push(format!("{method}:{name}"));
        if let Some((n, msg)) = s.failures.as_mut() {
            let msg = msg.clone();
            *n -= 1;
            if *n == 0 {
                s.failures = None;
            }
            return Err(CloudError::Fake(msg));
        }
        if let Some(msg) = s.failing_nodes.get(&name) {
            return Err(CloudError::Fake(msg.clone()));
        }
        Ok(s.instances.get(&name).cloned())
    }
}

#[async_trait]
impl InstancesV2 for FakeCloud {
    async fn instance_exists(&self, node: &Node) -> Result<bool, CloudError> {
        Ok(self.enter("instance-exists", node).await?.is_some())
    }

    async fn instance_shutdown(&self, node: &Node) -> Result<bool, CloudError> {
        Ok(self
            .enter("instance-shutdown", node)
            .await?
            .is_some_and(|i| i.shutdown))
    }

    async fn instance_metadata(&self, node: &Node) -> Result<Option<InstanceMetadata>, CloudError> {
        let found = self.enter("instance-metadata", node).await?;
        if self.state().metadata_none {
            return Ok(None);
        }
        match found {
            Some(i) => Ok(Some(i.metadata)),
            None => Err(CloudError::InstanceNotFound(
                node.metadata.name.clone().unwrap_or_default(),
            )),
        }
    }
}

#[async_trait]
impl Routes for FakeCloud {
    async fn list_routes(&self, _cluster: &str) -> Result<Vec<CloudRoute>, CloudError> {
        self.enter_route("list-routes", "")?;
        Ok(self.state().routes.clone())
    }

    async fn create_route(
        &self,
        cluster: &str,
        name_hint: &str,
        route: &RouteSpec,
    ) -> Result<(), CloudError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        self.enter_route("create-route", &route.target_node)?;
        let mut s = self.state();
        if s.routes.iter().any(|r| {
            r.target_node == route.target_node && r.destination_cidr == route.destination_cidr
        }) {
            return Ok(());
        }
        if s.route_quota.is_some_and(|q| s.routes.len() >= q) {
            return Err(CloudError::Fake(
                "QUOTA_EXCEEDED: the route table is full".into(),
            ));
        }
        s.next_route += 1;
        let id = format!("rt-{:016x}", s.next_route);
        s.routes.push(CloudRoute {
            id,
            name: format!("{cluster}-{name_hint}"),
            target_node: route.target_node.clone(),
            destination_cidr: route.destination_cidr.clone(),
            blackhole: false,
        });
        Ok(())
    }

    async fn delete_route(&self, _cluster: &str, route: &CloudRoute) -> Result<(), CloudError> {
        self.enter_route("delete-route", &route.target_node)?;
        self.state().routes.retain(|r| r.id != route.id);
        Ok(())
    }
}

fn fake_status(lb: &FakeLb) -> LoadBalancerStatus {
    LoadBalancerStatus {
        ingress: Some(vec![LoadBalancerIngress {
            ip: Some(lb.ip.clone()),
            ip_mode: Some("VIP".into()),
            ..Default::default()
        }]),
    }
}

fn host_names(nodes: &[Arc<Node>]) -> Vec<String> {
    nodes
        .iter()
        .map(|n| n.metadata.name.clone().unwrap_or_default())
        .collect()
}

#[async_trait]
impl LoadBalancer for FakeCloud {
    async fn get_load_balancer(
        &self,
        _cluster: &str,
        svc: &Service,
    ) -> Result<Option<LoadBalancerStatus>, CloudError> {
        Ok(self.state().lbs.get(&svc_key(svc)).map(fake_status))
    }

    fn get_load_balancer_name(&self, _cluster: &str, svc: &Service) -> String {
        svc_key(svc)
    }

    async fn ensure_load_balancer(
        &self,
        _cluster: &str,
        svc: &Service,
        nodes: &super::BackendNodes,
    ) -> Result<crate::cloud::Ensured, CloudError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let key = svc_key(svc);
        self.enter_lb("ensure-lb", &key)?;
        let mut s = self.state();
        let n = s.lbs.len();
        let lb = s.lbs.entry(key).or_insert_with(|| FakeLb {
            service_uid: svc.metadata.uid.clone().unwrap_or_default(),
            hosts: vec![],
            ip: format!("127.64.1.{}", n + 2),
        });
        lb.hosts = host_names(nodes);
        Ok(crate::cloud::Ensured {
            status: fake_status(lb),
            warnings: Vec::new(),
        })
    }

    async fn update_load_balancer(
        &self,
        _cluster: &str,
        svc: &Service,
        nodes: &super::BackendNodes,
    ) -> Result<(), CloudError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let key = svc_key(svc);
        self.enter_lb("update-lb", &key)?;
        match self.state().lbs.get_mut(&key) {
            Some(lb) => {
                lb.hosts = host_names(nodes);
                Ok(())
            }
            None => Err(CloudError::LoadBalancerNotFound(key)),
        }
    }

    async fn ensure_load_balancer_deleted(
        &self,
        _cluster: &str,
        svc: &Service,
    ) -> Result<(), CloudError> {
        let key = svc_key(svc);
        self.enter_lb("delete-lb", &key)?;
        self.state().lbs.remove(&key);
        Ok(())
    }

    async fn list_owned(&self, _cluster: &str) -> Result<Vec<OwnedLoadBalancer>, CloudError> {
        Ok(self
            .state()
            .lbs
            .iter()
            .map(|(k, lb)| OwnedLoadBalancer {
                id: k.clone(),
                name: k.clone(),
                service: k.clone(),
                service_uid: lb.service_uid.clone(),
            })
            .collect())
    }

    async fn delete_owned(&self, _cluster: &str, lb: &OwnedLoadBalancer) -> Result<(), CloudError> {
        self.enter_lb("delete-lb", &lb.service)?;
        self.state().lbs.remove(&lb.service);
        Ok(())
    }
}

#[async_trait]
impl CloudProvider for FakeCloud {
    fn provider_name(&self) -> &'static str {
        crate::names::PROVIDER_NAME
    }

    async fn initialize(&self) -> Result<(), CloudError> {
        Ok(())
    }

    fn instances_v2(&self) -> Option<&dyn InstancesV2> {
        Some(self)
    }

    fn routes(&self) -> Option<&dyn Routes> {
        Some(self)
    }

    fn load_balancer(&self) -> Option<&dyn LoadBalancer> {
        Some(self)
    }
}
