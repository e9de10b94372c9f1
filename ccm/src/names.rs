//! Every name the cluster or the cloud sees from the ccm, in one place.

/// `--cloud-provider` value and provider-ID scheme.
pub const PROVIDER_NAME: &str = cloud_api::ids::PROVIDER_NAME;

/// Taint kubelets add with `--cloud-provider=external`; removed once the node is initialised.
pub const TAINT_UNINITIALIZED: &str = "node.cloudprovider.kubernetes.io/uninitialized";
/// Taint (no value, `NoSchedule`) on nodes whose instance is shut down.
pub const TAINT_SHUTDOWN: &str = "node.cloudprovider.kubernetes.io/shutdown";
/// Annotation kubelets set from `--node-ip`.
pub const ANNOTATION_PROVIDED_NODE_IP: &str = "alpha.kubernetes.io/provided-node-ip";

pub const LABEL_ZONE: &str = "topology.kubernetes.io/zone";
pub const LABEL_REGION: &str = "topology.kubernetes.io/region";
pub const LABEL_INSTANCE_TYPE: &str = "node.kubernetes.io/instance-type";
pub const LABEL_ZONE_BETA: &str = "failure-domain.beta.kubernetes.io/zone";
pub const LABEL_REGION_BETA: &str = "failure-domain.beta.kubernetes.io/region";
pub const LABEL_INSTANCE_TYPE_BETA: &str = "beta.kubernetes.io/instance-type";

/// Our own label and annotation prefix.
pub const PREFIX: &str = "simcloud.dev/";
/// Label with the node's instance ID (an additional label from instance metadata).
pub const LABEL_INSTANCE_ID: &str = "simcloud.dev/instance-id";

/// Leader-election Lease.
pub const LEASE_NAMESPACE: &str = "kube-system";
pub const LEASE_NAME: &str = "cloud-controller-manager";

/// User agent and field manager.
pub const USER_AGENT: &str = "cloud-controller-manager";

/// Event reporters (the `reportingController` of events).
pub const NODE_CONTROLLER: &str = "cloud-node-controller";
pub const NODE_LIFECYCLE_CONTROLLER: &str = "cloud-node-lifecycle-controller";

/// Event reasons.
pub const REASON_SYNCED: &str = "Synced";
pub const REASON_DELETING_NODE: &str = "DeletingNode";
pub const REASON_DELETING_NODE_FAILED: &str = "DeletingNodeFailed";

/// Default serving port (`CloudControllerManagerPort`).
pub const DEFAULT_PORT: u16 = 10258;

/// Tag prefix of cloud resources the ccm creates: `kubernetes.io/cluster/<cluster-name>=owned`.
pub const TAG_CLUSTER_PREFIX: &str = "kubernetes.io/cluster/";
/// Value of the cluster tag.
pub const TAG_OWNED: &str = "owned";
/// Tag on routes naming the node they serve.
pub const TAG_ROUTE_NODE: &str = "simcloud.dev/node";

/// The cluster tag key for `cluster`.
pub fn cluster_tag(cluster: &str) -> String {
    format!("{TAG_CLUSTER_PREFIX}{cluster}")
}

/// Route controller event reason and `NetworkUnavailable` condition values.
pub const ROUTE_CONTROLLER: &str = "route-controller";
pub const REASON_FAILED_TO_CREATE_ROUTE: &str = "FailedToCreateRoute";
pub const CONDITION_NETWORK_UNAVAILABLE: &str = "NetworkUnavailable";
pub const REASON_ROUTE_CREATED: &str = "RouteCreated";
pub const REASON_NO_ROUTE_CREATED: &str = "NoRouteCreated";
pub const MESSAGE_ROUTE_CREATED: &str = "RouteController created a route";
pub const MESSAGE_NO_ROUTE_CREATED: &str = "RouteController failed to create a route";
