//! Backend groups: a named set of one zone's instances that load balancers send to by reference.
//!
//! As GCE's instance groups: a cluster keeps one group per zone with its nodes' instances, and each
//! load balancer references the groups instead of listing every node. A node joining or leaving
//! then changes one group, not every load balancer (N nodes x S Services backends otherwise).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::{Backend, BackendGroupId, InstanceId, Tags};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BackendGroup {
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "bg-0f3c2a9b7d1e4c55"))]
    pub id: BackendGroupId,
    /// Unique within the project.
    pub name: String,
    pub region: String,
    /// Every member is an instance of this zone.
    pub zone: String,
    /// The member instances, in the order they were added. Zone and address are the instance's.
    pub members: Vec<Backend>,
    pub tags: Tags,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub etag: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateBackendGroupRequest {
    pub name: String,
    pub zone: String,
    /// Instances of `zone` in the caller's project, each at most once.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub members: Vec<InstanceId>,
    #[serde(default)]
    pub tags: Tags,
}

/// Every field is optional; present fields replace the current value whole.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateBackendGroupRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<String>>))]
    pub members: Option<Vec<InstanceId>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
}
