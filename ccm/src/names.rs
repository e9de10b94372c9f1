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
/// Labels every kubelet sets that no controller of this ccm reads: the shared Node informer
/// drops them before storing a Node (five of a kubelet's twelve labels, ~0.9 KiB per stored Node).
pub const KUBELET_LABELS_UNREAD: [&str; 5] = [
    "kubernetes.io/arch",
    "kubernetes.io/os",
    "kubernetes.io/hostname",
    "beta.kubernetes.io/arch",
    "beta.kubernetes.io/os",
];

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
/// Name prefix of the cluster's backend groups (one per zone; see `simcloud_lb::group_name`).
pub const BACKEND_GROUP_PREFIX: &str = "k8s-bg-";
/// Tag on routes naming the node they serve.
pub const TAG_ROUTE_NODE: &str = "simcloud.dev/node";

/// The cluster tag key for `cluster`.
pub fn cluster_tag(cluster: &str) -> String {
    format!("{TAG_CLUSTER_PREFIX}{cluster}")
}

/// Route controller event reason and `NetworkUnavailable` condition values.
pub const ROUTE_CONTROLLER: &str = "route-controller";
/// The route controller's event source component: upstream spells it with an underscore.
pub const ROUTE_EVENT_SOURCE: &str = "route_controller";
pub const REASON_FAILED_TO_CREATE_ROUTE: &str = "FailedToCreateRoute";
pub const CONDITION_NETWORK_UNAVAILABLE: &str = "NetworkUnavailable";
pub const REASON_ROUTE_CREATED: &str = "RouteCreated";
pub const REASON_NO_ROUTE_CREATED: &str = "NoRouteCreated";
pub const MESSAGE_ROUTE_CREATED: &str = "RouteController created a route";
pub const MESSAGE_NO_ROUTE_CREATED: &str = "RouteController failed to create a route";

/// Finalizer of LoadBalancer Services (upstream's, so clusters stay portable).
pub const LB_FINALIZER: &str = "service.kubernetes.io/load-balancer-cleanup";
/// Nodes labelled with this (ParseBool true, or unparsable) are not load-balancer backends.
pub const LABEL_EXCLUDE_FROM_LB: &str = "node.kubernetes.io/exclude-from-external-load-balancers";
/// Nodes with this taint key are not load-balancer backends.
pub const TAINT_TO_BE_DELETED: &str = "ToBeDeletedByClusterAutoscaler";
/// Tags on load balancers naming their Service.
pub const TAG_SERVICE_NAME: &str = "kubernetes.io/service-name";
pub const TAG_SERVICE_UID: &str = "kubernetes.io/service-uid";

pub const SERVICE_CONTROLLER: &str = "service-controller";
pub const REASON_ENSURING_LB: &str = "EnsuringLoadBalancer";
pub const REASON_ENSURED_LB: &str = "EnsuredLoadBalancer";
pub const REASON_UNAVAILABLE_LB: &str = "UnAvailableLoadBalancer";
pub const REASON_SYNC_LB_FAILED: &str = "SyncLoadBalancerFailed";
pub const REASON_DELETING_LB: &str = "DeletingLoadBalancer";
pub const REASON_DELETED_LB: &str = "DeletedLoadBalancer";
pub const REASON_DELETE_LB_FAILED: &str = "DeleteLoadBalancerFailed";
pub const REASON_UPDATED_LB: &str = "UpdatedLoadBalancer";
pub const REASON_UPDATE_LB_FAILED: &str = "UpdateLoadBalancerFailed";
/// Warning: `spec.loadBalancerIP` lies in no zone's frontend pool, so it was not used (ours).
pub const REASON_LB_IP_NOT_IN_POOL: &str = "LoadBalancerIPNotInPool";

/// Service annotations (all under `simcloud.dev/`); see docs/ccm.md for the table.
pub const ANN_CROSS_ZONE: &str = "simcloud.dev/load-balancer-cross-zone";
pub const ANN_ZONE_AFFINITY: &str = "simcloud.dev/load-balancer-zone-affinity";
pub const ANN_FAIL_OPEN: &str = "simcloud.dev/load-balancer-fail-open";
pub const ANN_BALANCING: &str = "simcloud.dev/load-balancer-balancing";
pub const ANN_MIN_CLUSTER_SIZE: &str = "simcloud.dev/load-balancer-min-cluster-size";
pub const ANN_PANIC_THRESHOLD: &str = "simcloud.dev/load-balancer-panic-threshold";
pub const ANN_INTERNAL: &str = "simcloud.dev/load-balancer-internal";
pub const ANN_IP_MODE: &str = "simcloud.dev/load-balancer-ip-mode";
pub const ANN_IPS: &str = "simcloud.dev/load-balancer-ips";
pub const ANN_ZONES: &str = "simcloud.dev/load-balancer-zones";
pub const ANN_HC_PROTOCOL: &str = "simcloud.dev/load-balancer-healthcheck-protocol";
pub const ANN_HC_PORT: &str = "simcloud.dev/load-balancer-healthcheck-port";
pub const ANN_HC_PATH: &str = "simcloud.dev/load-balancer-healthcheck-path";
pub const ANN_HC_INTERVAL: &str = "simcloud.dev/load-balancer-healthcheck-interval";
pub const ANN_HC_TIMEOUT: &str = "simcloud.dev/load-balancer-healthcheck-timeout";
pub const ANN_HC_HEALTHY: &str = "simcloud.dev/load-balancer-healthcheck-healthy-threshold";
pub const ANN_HC_UNHEALTHY: &str = "simcloud.dev/load-balancer-healthcheck-unhealthy-threshold";

/// Environment variables that configure the cloud when `--cloud-config` is not given.
pub const ENV_ENDPOINT: &str = "SIMCLOUD_ENDPOINT";
pub const ENV_PROJECT: &str = "SIMCLOUD_PROJECT";
pub const ENV_TOKEN_FILE: &str = "SIMCLOUD_TOKEN_FILE";
pub const ENV_REGION: &str = "SIMCLOUD_REGION";

/// Namespace of the controllers' service accounts (`--use-service-account-credentials`).
pub const SA_NAMESPACE: &str = "kube-system";
/// Upstream's client names, which are also the service accounts' names: both node controllers
/// share one.
pub const SA_NODE_CONTROLLER: &str = "node-controller";
pub const SA_ROUTE_CONTROLLER: &str = "route-controller";
pub const SA_SERVICE_CONTROLLER: &str = "service-controller";
