//! Regions and zones.

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// The region cloud-sim simulates, with its zones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Region {
    pub name: String,
    /// Caller-chosen instance addresses must lie inside this network.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "127.0.0.0/8"))]
    pub network_cidr: Ipv4Net,
    pub zones: Vec<Zone>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Zone {
    pub name: String,
    pub region: String,
    pub state: ZoneState,
    /// Instance private IPs are allocated from this subnet.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "127.1.1.0/24"))]
    pub instance_subnet: Ipv4Net,
    /// Load-balancer frontend IPs in this zone are allocated from this pool.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "127.64.1.0/24"))]
    pub lb_pool: Ipv4Net,
}

/// Health of a zone. `outage` makes the zone's instances unhealthy for load balancers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ZoneState {
    Available,
    Impaired,
    Outage,
}

impl ZoneState {
    pub fn as_str(self) -> &'static str {
        match self {
            ZoneState::Available => "available",
            ZoneState::Impaired => "impaired",
            ZoneState::Outage => "outage",
        }
    }
}

impl std::str::FromStr for ZoneState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "available" => Ok(ZoneState::Available),
            "impaired" => Ok(ZoneState::Impaired),
            "outage" => Ok(ZoneState::Outage),
            other => Err(format!(
                "unknown zone state {other:?} (expected available, impaired or outage)"
            )),
        }
    }
}
