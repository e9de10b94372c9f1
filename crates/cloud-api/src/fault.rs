//! Fault injection (admin API).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::ZoneState;

/// What a matching rule does to a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultEffect {
    /// Answer with this status (and the matching error code) instead of running the request.
    Error {
        status: u16,
        /// Sent as `Retry-After` (seconds) with the error, if set.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_seconds: Option<u32>,
    },
    /// Delay the request, then run it.
    Latency { millis: u64 },
    /// A token bucket per project: `rate_per_second` refill, `burst` capacity; an empty bucket gives
    /// 429 with `Retry-After`.
    Throttle { rate_per_second: f64, burst: u32 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateFaultRequest {
    /// HTTP method to match (`GET`, `POST`, ...); absent matches all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Path prefix to match (`/v1/instances`); absent matches all of `/v1/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// Only requests about resources in this zone (instance creates and per-instance calls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    pub effect: FaultEffect,
    /// Chance in [0, 1] that a matching request is affected; default 1.
    #[serde(default = "one")]
    pub probability: f64,
    /// Remove the rule after it has affected this many requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Remove the rule after this many seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
}

fn one() -> f64 {
    1.0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FaultRule {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    pub effect: FaultEffect,
    pub probability: f64,
    /// How many more requests the rule may affect; absent means unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// Requests this rule has affected so far.
    pub hits: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SetZoneStateRequest {
    pub state: ZoneState,
}
