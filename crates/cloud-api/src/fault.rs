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
        #[cfg_attr(feature = "openapi", schema(minimum = 400, maximum = 599))]
        status: u16,
        /// Sent as `Retry-After` (seconds) with the error, if set.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_seconds: Option<u32>,
    },
    /// Delay the request, then run it.
    Latency {
        /// At most 600,000 (ten minutes, `MAX_FAULT_LATENCY_MS`).
        #[cfg_attr(feature = "openapi", schema(maximum = 600000))]
        millis: u64,
    },
    /// A token bucket per project: `rate_per_second` refill, `burst` capacity; an empty bucket gives
    /// 429 with `Retry-After`.
    Throttle {
        #[cfg_attr(feature = "openapi", schema(exclusive_minimum = 0))]
        rate_per_second: f64,
        #[cfg_attr(feature = "openapi", schema(minimum = 1))]
        burst: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateFaultRequest {
    /// HTTP method to match (`GET`, `POST`, `PUT`, `PATCH` or `DELETE`, in any case); absent
    /// matches all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            pattern = "^([Gg][Ee][Tt]|[Pp][Oo][Ss][Tt]|[Pp][Uu][Tt]|[Pp][Aa][Tt][Cc][Hh]|[Dd][Ee][Ll][Ee][Tt][Ee])$"
        )
    )]
    pub method: Option<String>,
    /// Path prefix to match (`/v1/instances`); absent matches all of `/v1/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^/"))]
    pub path_prefix: Option<String>,
    /// Only requests about resources in this zone (instance creates and per-instance calls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    pub effect: FaultEffect,
    /// Chance in [0, 1] that a matching request is affected; default 1.
    #[serde(default = "one")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 1))]
    pub probability: f64,
    /// Remove the rule after it has affected this many requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub count: Option<u64>,
    /// Remove the rule after this many seconds, at most 31,536,000 (a year,
    /// `MAX_FAULT_TTL_SECONDS`); absent keeps it until it is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(maximum = 31536000))]
    pub ttl_seconds: Option<u64>,
}

/// The longest delay a latency rule adds.
pub const MAX_FAULT_LATENCY_MS: u64 = 600_000;
/// The longest a rule may be set to live (a year).
pub const MAX_FAULT_TTL_SECONDS: u64 = 365 * 24 * 3600;
// The request schema states the same bounds (`maximum`), which take only literals.
const _: () = assert!(MAX_FAULT_LATENCY_MS == 600_000 && MAX_FAULT_TTL_SECONDS == 31_536_000);

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
