//! Load balancers: listeners, backends, health check, zone policy and zonal frontends.

use std::net::Ipv4Addr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::{BackendGroupId, InstanceId, LoadBalancerId, Tags};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum LoadBalancerState {
    /// Created; frontends are allocated but not serving until the provision delay has passed.
    Provisioning,
    Active,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    Tcp,
    Udp,
}

/// `external` frontends are reachable from outside the cluster's network, `internal` only inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Scheme {
    #[default]
    External,
    Internal,
}

/// How Kubernetes should treat the frontend IPs (`status.loadBalancer.ingress[].ipMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum IpMode {
    /// Traffic arrives with the VIP as destination (kube-proxy may short-circuit it).
    #[default]
    Vip,
    /// Traffic arrives from the load balancer as a proxy.
    Proxy,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Listener {
    pub protocol: Protocol,
    /// Port on the frontend IPs.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 65535))]
    pub port: u16,
    /// Port on the backends (a Service's nodePort).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 65535))]
    pub backend_port: u16,
}

/// A backend instance. Zone and address are filled in by the cloud from the instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Backend {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub instance_id: InstanceId,
    pub zone: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub private_ip: Ipv4Addr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum HealthCheckProtocol {
    #[default]
    Tcp,
    Http,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheck {
    pub protocol: HealthCheckProtocol,
    /// Port to probe; absent means each listener's backend port.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 65535))]
    pub port: Option<u16>,
    /// Path for `http` checks (required for them, refused for `tcp`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^/"))]
    pub path: Option<String>,
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 300))]
    pub interval_seconds: u32,
    /// At most `interval_seconds`.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 300))]
    pub timeout_seconds: u32,
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 10))]
    pub healthy_threshold: u32,
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 10))]
    pub unhealthy_threshold: u32,
}

impl Default for HealthCheck {
    /// Kubernetes cloud providers' usual defaults: TCP every 10 s, 2 to turn healthy, 3 to turn unhealthy.
    fn default() -> Self {
        Self {
            protocol: HealthCheckProtocol::Tcp,
            port: None,
            path: None,
            interval_seconds: 10,
            timeout_seconds: 5,
            healthy_threshold: 2,
            unhealthy_threshold: 3,
        }
    }
}

/// Where a zonal frontend may send traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum ZoneAffinity {
    /// No preference beyond `cross_zone`.
    #[default]
    None,
    /// Kubernetes' `trafficDistribution: PreferSameZone`: the client's zone while it has an
    /// eligible backend, whatever the load; otherwise every eligible backend evenly (kube-proxy's
    /// fallback).
    PreferSameZone,
    /// Never leave the client's zone.
    SameZoneOnly,
    /// Envoy's zone-aware routing: as much as possible in the client's zone while every backend
    /// gets the same load (a zone with more clients than backends spills its residual), off below
    /// Envoy's minimum cluster size (6 backends) and ignoring health below its panic threshold
    /// (50% healthy).
    Balanced,
}

/// How a connection picks among the backends of the zone chosen for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Balancing {
    /// Each backend in turn.
    #[default]
    RoundRobin,
    /// The backend with the fewest open connections (UDP: live flows); ties in turn.
    LeastConnections,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, default)]
pub struct ZonePolicy {
    /// When false (the default, as on AWS NLB), a zonal frontend sends only to its own zone's
    /// backends while any of them is healthy.
    pub cross_zone: bool,
    pub zone_affinity: ZoneAffinity,
    /// When every eligible backend is unhealthy: true sends anyway, false refuses connections.
    pub fail_open: bool,
    /// Choice among the chosen zone's backends.
    pub balancing: Balancing,
    /// `balanced` only: with fewer backends, every healthy backend evenly (Envoy's
    /// `min_cluster_size`, default 6).
    pub min_cluster_size: u32,
    /// `balanced` only: with fewer than this percentage of backends healthy, health is ignored
    /// (Envoy's `healthy_panic_threshold`, default 50; 0 turns it off).
    #[cfg_attr(feature = "openapi", schema(maximum = 100))]
    pub panic_threshold_percent: u32,
}

/// The most listeners one load balancer has.
pub const MAX_LISTENERS: usize = 50;
/// The most instances one load balancer lists one by one (`backends`).
pub const MAX_BACKENDS: usize = 5000;
/// The most backend groups one load balancer refers to.
pub const MAX_BACKEND_GROUPS: usize = 50;
// The request schemas state the same bounds (`max_items`), which take only literals.
const _: () = assert!(MAX_LISTENERS == 50 && MAX_BACKENDS == 5000 && MAX_BACKEND_GROUPS == 50);

/// Envoy's defaults for [`ZonePolicy::min_cluster_size`] and
/// [`ZonePolicy::panic_threshold_percent`].
pub const DEFAULT_MIN_CLUSTER_SIZE: u32 = 6;
pub const DEFAULT_PANIC_THRESHOLD_PERCENT: u32 = 50;

impl Default for ZonePolicy {
    fn default() -> Self {
        Self {
            cross_zone: false,
            zone_affinity: ZoneAffinity::None,
            fail_open: true,
            balancing: Balancing::RoundRobin,
            min_cluster_size: DEFAULT_MIN_CLUSTER_SIZE,
            panic_threshold_percent: DEFAULT_PANIC_THRESHOLD_PERCENT,
        }
    }
}

/// One frontend address per zone the load balancer serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Frontend {
    pub zone: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "127.64.1.10"))]
    pub ip: Ipv4Addr,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoadBalancer {
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "lb-0f3c2a9b7d1e4c55"))]
    pub id: LoadBalancerId,
    /// Unique within the project.
    pub name: String,
    pub region: String,
    pub state: LoadBalancerState,
    pub scheme: Scheme,
    pub ip_mode: IpMode,
    pub listeners: Vec<Listener>,
    /// Instances listed one by one.
    pub backends: Vec<Backend>,
    /// Groups whose members are backends too (read a group for its members; the traffic report
    /// lists every backend with its health).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub backend_groups: Vec<BackendGroupId>,
    pub health_check: HealthCheck,
    pub zone_policy: ZonePolicy,
    pub frontends: Vec<Frontend>,
    #[cfg_attr(feature = "openapi", schema(value_type = crate::TagsSchema))]
    pub tags: Tags,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub etag: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateLoadBalancerRequest {
    pub name: String,
    #[serde(default)]
    pub scheme: Scheme,
    #[serde(default)]
    pub ip_mode: IpMode,
    /// 1 to 50 listeners (`MAX_LISTENERS`), no protocol and port twice.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 50))]
    pub listeners: Vec<Listener>,
    /// At most 5,000 instances (`MAX_BACKENDS`) of the caller's project, each at most once.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>, max_items = 5000))]
    pub backends: Vec<InstanceId>,
    /// At most 50 backend groups (`MAX_BACKEND_GROUPS`) of the caller's project whose members
    /// are backends too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>, max_items = 50))]
    pub backend_groups: Vec<BackendGroupId>,
    #[serde(default)]
    pub health_check: HealthCheck,
    #[serde(default)]
    pub zone_policy: ZonePolicy,
    /// Zones to put frontends in; absent means every zone of the region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zones: Option<Vec<String>>,
    /// Specific frontend addresses to use, at most one per zone, each inside its zone's pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>, format = Ipv4))]
    pub requested_ips: Vec<Ipv4Addr>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = crate::TagsSchema))]
    pub tags: Tags,
}

/// Every field is optional; present fields replace the current value whole (lists included).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateLoadBalancerRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_mode: Option<IpMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 50))]
    pub listeners: Option<Vec<Listener>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = Option<Vec<String>>, max_items = 5000)
    )]
    pub backends: Option<Vec<InstanceId>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = Option<Vec<String>>, max_items = 50)
    )]
    pub backend_groups: Option<Vec<BackendGroupId>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_policy: Option<ZonePolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::TagsSchema>))]
    pub tags: Option<Tags>,
}
