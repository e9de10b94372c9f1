//! Instances and instance types.

use std::net::Ipv4Addr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::{InstanceId, ProviderId, Tags};

/// A machine size from the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstanceType {
    pub name: String,
    pub vcpus: u32,
    pub memory_mib: u64,
}

/// Lifecycle of an instance, as on EC2:
/// `pending -> running -> stopping -> stopped -> pending -> ...`; `terminated` is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    Pending,
    Running,
    Stopping,
    Stopped,
    Terminated,
}

impl InstanceState {
    pub const ALL: [InstanceState; 5] = [
        InstanceState::Pending,
        InstanceState::Running,
        InstanceState::Stopping,
        InstanceState::Stopped,
        InstanceState::Terminated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Pending => "pending",
            InstanceState::Running => "running",
            InstanceState::Stopping => "stopping",
            InstanceState::Stopped => "stopped",
            InstanceState::Terminated => "terminated",
        }
    }
}

impl std::fmt::Display for InstanceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for InstanceState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        InstanceState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!("unknown instance state {s:?} (expected pending, running, stopping, stopped or terminated)")
            })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Instance {
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "i-0f3c2a9b7d1e4c55"))]
    pub id: InstanceId,
    /// DNS-1123 hostname; unique among the project's instances that are not terminated.
    pub name: String,
    pub zone: String,
    pub region: String,
    pub instance_type: String,
    pub state: InstanceState,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "127.1.1.4"))]
    pub private_ip: Ipv4Addr,
    /// `simcloud://<zone>/<id>`, what the ccm writes into `Node.spec.providerID`.
    pub provider_id: String,
    #[cfg_attr(feature = "openapi", schema(value_type = crate::TagsSchema))]
    pub tags: Tags,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminated_at: Option<Timestamp>,
    /// Changes on every update; send it back in `If-Match`.
    pub etag: String,
}

impl Instance {
    pub fn provider_id(&self) -> ProviderId {
        ProviderId::new(self.zone.clone(), self.id.clone())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateInstanceRequest {
    pub name: String,
    pub zone: String,
    pub instance_type: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = crate::TagsSchema))]
    pub tags: Tags,
    /// Register an existing machine (a kind node, say) at this address. It must lie in the
    /// region's network CIDR and not be in use. Omit it to allocate from the zone's subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Ipv4))]
    pub private_ip: Option<Ipv4Addr>,
}

/// Creates several instances in one request, all or none (Google's AIP-233 batch create;
/// EC2's `RunInstances` with a count and GCE's `instances.bulkInsert` serve the same need). The
/// response lists the instances in the order asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BatchCreateInstancesRequest {
    /// At most 500 creates (`MAX_BATCH_CREATE`), each as `POST /v1/instances` takes it; no
    /// name twice.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 500))]
    pub instances: Vec<CreateInstanceRequest>,
}

/// The most instances one batch create makes.
pub const MAX_BATCH_CREATE: usize = 500;
// The request schema states the same bound (`max_items`), which takes only a literal.
const _: () = assert!(MAX_BATCH_CREATE == 500);

/// What a batch create made, in the order asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchCreateInstancesResponse {
    pub instances: Vec<Instance>,
}

/// Replaces the instance's tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateInstanceRequest {
    #[cfg_attr(feature = "openapi", schema(value_type = crate::TagsSchema))]
    pub tags: Tags,
}
