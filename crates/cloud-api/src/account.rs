//! Who is calling, and what their project holds: the calls a console starts from.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ZoneState;

/// `GET /v1/whoami`: the identity the bearer token maps to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Caller {
    pub project: String,
    /// Whether the caller may use `/v1/admin` (fault rules, zone states).
    pub admin: bool,
}

/// `GET /v1/usage`: what the caller's project has in each zone of the region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Usage {
    /// Every zone of the region, in the region's order.
    pub zones: Vec<ZoneUsage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ZoneUsage {
    pub zone: String,
    pub state: ZoneState,
    /// Instances by state (`running`, `stopped`, ...); terminated ones not yet purged included.
    pub instances: BTreeMap<String, u64>,
    /// Load-balancer backends in this zone: an instance behind two load balancers counts twice.
    pub backends: u64,
    /// Load-balancer frontends (zonal addresses) in this zone.
    pub frontends: u64,
}
