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
    #[cfg_attr(feature = "openapi", schema(value_type = crate::TagsSchema))]
    pub tags: Tags,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub etag: String,
}

/// The most members one backend group has (GCE allows 2,000 per instance group; a sandbox zone
/// may hold more nodes than that).
pub const MAX_GROUP_MEMBERS: usize = 20_000;
// The request schemas state the same bound (`max_items`), which takes only a literal.
const _: () = assert!(MAX_GROUP_MEMBERS == 20_000);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateBackendGroupRequest {
    pub name: String,
    pub zone: String,
    /// At most 20,000 instances (`MAX_GROUP_MEMBERS`) of `zone` in the caller's project, each
    /// at most once.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>, max_items = 20000))]
    pub members: Vec<InstanceId>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = crate::TagsSchema))]
    pub tags: Tags,
}

/// Every field is optional; present fields replace the current value whole.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateBackendGroupRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = Option<Vec<String>>, max_items = 20000)
    )]
    pub members: Option<Vec<InstanceId>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::TagsSchema>))]
    pub tags: Option<Tags>,
}
