//! Route tables and routes.

use ipnet::IpNet;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::{InstanceId, RouteId, Tags};

/// The ID of the one route table each project has in the region.
pub const DEFAULT_ROUTE_TABLE: &str = "default";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RouteTable {
    pub id: String,
    pub region: String,
    /// Most routes the table may hold; creating one more fails with `QUOTA_EXCEEDED`.
    pub route_quota: u32,
    pub route_count: u32,
}

/// `active` routes forward; `blackhole` routes point at an instance that is gone or terminated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RouteState {
    Active,
    Blackhole,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Route {
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "rt-0f3c2a9b7d1e4c55"))]
    pub id: RouteId,
    pub route_table: String,
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "10.244.1.0/24"))]
    pub destination_cidr: IpNet,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub target_instance_id: InstanceId,
    pub state: RouteState,
    #[cfg_attr(feature = "openapi", schema(value_type = crate::TagsSchema))]
    pub tags: Tags,
    pub created_at: Timestamp,
    pub etag: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateRouteRequest {
    /// Unique within the table.
    pub name: String,
    /// Must be a network address (no host bits set) and overlap no other route in the table.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "10.244.1.0/24"))]
    pub destination_cidr: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub target_instance_id: InstanceId,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = crate::TagsSchema))]
    pub tags: Tags,
}
