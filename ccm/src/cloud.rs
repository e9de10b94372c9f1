//! The provider interface, mirroring upstream `k8s.io/cloud-provider` (`InstancesV2` and `Routes`;
//! the `LoadBalancer` half arrives with the service controller), and its
//! implementations: [`simcloud`] over cloud-client, and [`fake`] for controller tests.
//!
//! Controllers reach the cloud only through these traits; only [`simcloud`] imports cloud-client.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Node;

pub mod fake;
pub mod simcloud;

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
    Api(#[source] Box<dyn std::error::Error + Send + Sync>),
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
    /// A scripted failure of the fake provider.
    #[error("{0}")]
    Fake(String),
}

impl CloudError {
    /// How long the cloud asked us to wait before retrying, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CloudError::Api(e) => e
                .downcast_ref::<cloud_client::Error>()
                .and_then(cloud_client::Error::retry_after),
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
}

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
