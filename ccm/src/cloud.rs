//! The provider interface, mirroring upstream `k8s.io/cloud-provider` (`InstancesV2`, `Routes`,
//! `LoadBalancer`), and its
//! implementations: [`simcloud`] over cloud-client, and [`fake`] for controller tests.
//!
//! Controllers reach the cloud only through these traits; only [`simcloud`] imports cloud-client.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{LoadBalancerStatus, Node, Service};

/// The nodes a load balancer sends to, as upstream passes them to `EnsureLoadBalancer`, shared:
/// the service controller hands the same list to every Service until the backend set changes,
/// so a provider may work out what it derives from them once per list (same list:
/// [`Arc::ptr_eq`]; a `Weak` of it keeps its address from being reused).
pub type BackendNodes = Arc<[Arc<Node>]>;

pub mod fake;
pub mod simcloud;
pub mod simcloud_lb;

/// One node address (`status.addresses[]`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeAddress {
    /// `InternalIP`, `ExternalIP`, `Hostname`, ...
    pub kind: String,
    pub address: String,
}

impl NodeAddress {
    pub fn new(kind: &str, address: impl Into<String>) -> Self {
        Self {
            kind: kind.to_owned(),
            address: address.into(),
        }
    }
}

/// What initialising a node needs (`cloudprovider.InstanceMetadata`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceMetadata {
    pub provider_id: String,
    pub instance_type: String,
    pub node_addresses: Vec<NodeAddress>,
    pub zone: String,
    pub region: String,
    pub additional_labels: BTreeMap<String, String>,
}

/// A failed cloud call. Never a stand-in for "does not exist": absence is `Ok(false)`/`Ok(None)`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CloudError {
    /// The cloud API failed (unreachable, 5xx, throttled, ...).
    #[error("cloud API call failed")]
    Api {
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
        /// How long the cloud asked us to wait (`Retry-After`), as the provider read it.
        retry_after: Option<Duration>,
    },
    /// The node's provider ID belongs to another provider; we never act on such nodes.
    #[error("node {node} has provider ID {provider_id:?}, which is not a simcloud provider ID")]
    ForeignNode { node: String, provider_id: String },
    /// The node's provider ID uses our scheme but is malformed.
    #[error("node {node} has a malformed provider ID")]
    BadProviderId {
        node: String,
        #[source]
        source: cloud_api::ProviderIdError,
    },
    /// The instance backing the node does not exist (only where absence is an error, as for metadata).
    #[error("no instance backs node {0}")]
    InstanceNotFound(String),
    /// The Service asks for something the cloud cannot do (bad annotation, SCTP, no node ports).
    #[error("{0}")]
    Unsupported(String),
    /// The load balancer to update does not exist.
    #[error("load balancer {0} does not exist")]
    LoadBalancerNotFound(String),
    /// Try again after this long (upstream's `api.RetryError`): a fixed delay, not back-off.
    #[error("{message} (retry in {after:?})")]
    RetryAfter { message: String, after: Duration },
    /// The cloud is not the one the cloud config describes (another region, say).
    #[error("{0}")]
    Mismatch(String),
    /// A scripted failure of the fake provider.
    #[error("{0}")]
    Fake(String),
}

impl CloudError {
    /// How long the cloud asked us to wait before retrying, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CloudError::Api { retry_after, .. } => *retry_after,
            CloudError::RetryAfter { after, .. } => Some(*after),
            _ => None,
        }
    }
}

/// Instance lookups for nodes (upstream `InstancesV2`).
#[async_trait]
pub trait InstancesV2: Send + Sync {
    /// True if the instance backing `node` exists (stopped instances exist; terminated ones do
    /// not). `Ok(false)` makes the node-lifecycle controller delete the Node.
    async fn instance_exists(&self, node: &Node) -> Result<bool, CloudError>;

    /// True if the instance is shut down (stopped or stopping).
    async fn instance_shutdown(&self, node: &Node) -> Result<bool, CloudError>;

    /// Everything needed to initialise the node. `Ok(None)` means "skip for now".
    async fn instance_metadata(&self, node: &Node) -> Result<Option<InstanceMetadata>, CloudError>;
}

/// A route as the cloud reports it (upstream `cloudprovider.Route`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudRoute {
    /// The provider's ID of the route (what deleting it needs).
    pub id: String,
    pub name: String,
    /// Name of the node the route sends to; empty when the target is gone.
    pub target_node: String,
    pub destination_cidr: String,
    /// The target no longer exists (or is terminated): the route drops traffic.
    pub blackhole: bool,
}

/// What a new route needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    pub target_node: String,
    /// The target node's provider ID, when it has one (the provider's fastest way to the instance).
    pub target_provider_id: Option<String>,
    pub destination_cidr: String,
}

/// Pod-CIDR routes (upstream `Routes`).
#[async_trait]
pub trait Routes: Send + Sync {
    /// Every route this cluster manages.
    async fn list_routes(&self, cluster: &str) -> Result<Vec<CloudRoute>, CloudError>;

    /// Creates a route; `name_hint` is the node's UID (the provider picks the name). Creating a
    /// route that already exists with the same destination and target succeeds.
    async fn create_route(
        &self,
        cluster: &str,
        name_hint: &str,
        route: &RouteSpec,
    ) -> Result<(), CloudError>;

    /// Deletes a route returned by [`Routes::list_routes`]; deleting a missing route succeeds.
    async fn delete_route(&self, cluster: &str, route: &CloudRoute) -> Result<(), CloudError>;
}

/// A load balancer this cluster owns, found by its tags (for garbage collection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedLoadBalancer {
    pub id: String,
    pub name: String,
    /// `namespace/name` of the Service it was made for.
    pub service: String,
    pub service_uid: String,
}

/// What ensuring a load balancer gave.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ensured {
    pub status: LoadBalancerStatus,
    /// (event reason, message) for each setting of the Service that was not honoured.
    pub warnings: Vec<(&'static str, String)>,
}

/// Load balancers for `type: LoadBalancer` Services (upstream `LoadBalancer`). Services and
/// Nodes are read-only arguments.
#[async_trait]
pub trait LoadBalancer: Send + Sync {
    /// The status of the Service's load balancer, or `None` if it has none.
    async fn get_load_balancer(
        &self,
        cluster: &str,
        svc: &Service,
    ) -> Result<Option<LoadBalancerStatus>, CloudError>;

    /// The name the provider gives the Service's load balancer.
    fn get_load_balancer_name(&self, cluster: &str, svc: &Service) -> String;

    /// Creates or updates the load balancer; the status goes into `.status.loadBalancer`, and
    /// any warnings (settings of the Service the provider could not honour) into events.
    async fn ensure_load_balancer(
        &self,
        cluster: &str,
        svc: &Service,
        nodes: &BackendNodes,
    ) -> Result<Ensured, CloudError>;

    /// Updates the backends only.
    async fn update_load_balancer(
        &self,
        cluster: &str,
        svc: &Service,
        nodes: &BackendNodes,
    ) -> Result<(), CloudError>;

    /// Deletes the load balancer; succeeds if there is none.
    async fn ensure_load_balancer_deleted(
        &self,
        cluster: &str,
        svc: &Service,
    ) -> Result<(), CloudError>;

    /// Every load balancer tagged as owned by this cluster (not in upstream's interface: used to
    /// collect load balancers whose Service is gone, which upstream leaks).
    async fn list_owned(&self, cluster: &str) -> Result<Vec<OwnedLoadBalancer>, CloudError>;

    /// Deletes one owned load balancer by ID; succeeds if it is already gone.
    async fn delete_owned(&self, cluster: &str, lb: &OwnedLoadBalancer) -> Result<(), CloudError>;
}

/// A cloud provider (upstream `cloudprovider.Interface`).
#[async_trait]
pub trait CloudProvider: Send + Sync {
    /// The provider name, also the provider-ID scheme.
    fn provider_name(&self) -> &'static str;

    /// Called once after winning leader election, before controllers start.
    async fn initialize(&self) -> Result<(), CloudError>;

    /// Instance lookups, if supported.
    fn instances_v2(&self) -> Option<&dyn InstancesV2>;

    /// Pod-CIDR routes, if supported.
    fn routes(&self) -> Option<&dyn Routes>;

    /// Load balancers, if supported.
    fn load_balancer(&self) -> Option<&dyn LoadBalancer>;
}

/// A provider checked, once, to have one of the optional interfaces: the controller that needs
/// it takes this handle, so it cannot be built without the interface and never asks again.
macro_rules! capability {
    ($(#[$doc:meta])* $name:ident, $iface:ident, $getter:ident) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name(Arc<dyn CloudProvider>);

        impl $name {
            /// The handle, if `provider` has the interface.
            pub fn of(provider: &Arc<dyn CloudProvider>) -> Option<Self> {
                provider.$getter().map(|_| Self(provider.clone()))
            }

            /// The interface.
            pub fn get(&self) -> &dyn $iface {
                // `of` made this handle only for a provider that has the interface.
                self.0
                    .$getter()
                    .expect(concat!("checked by ", stringify!($name), "::of"))
            }
        }
    };
}

capability!(
    /// [`InstancesV2`] of a provider that has it (node and node-lifecycle controllers).
    HasInstances,
    InstancesV2,
    instances_v2
);
capability!(
    /// [`Routes`] of a provider that has them (route controller).
    HasRoutes,
    Routes,
    routes
);
capability!(
    /// [`LoadBalancer`] of a provider that has it (service controller).
    HasLoadBalancers,
    LoadBalancer,
    load_balancer
);

/// The provider ID of a node, if it has one.
pub fn provider_id(node: &Node) -> Option<&str> {
    node.spec
        .as_ref()
        .and_then(|s| s.provider_id.as_deref())
        .filter(|p| !p.is_empty())
}

/// True unless the node's provider ID names another provider. Controllers never touch such nodes.
pub fn is_ours(node: &Node) -> bool {
    provider_id(node).is_none_or(cloud_api::ProviderId::is_ours)
}
