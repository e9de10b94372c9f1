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
