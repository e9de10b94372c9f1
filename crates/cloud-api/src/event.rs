//! The event log: every state change, in order.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    Instance,
    LoadBalancer,
    BackendGroup,
    Route,
    Zone,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Instance => "instance",
            ResourceKind::LoadBalancer => "load_balancer",
            ResourceKind::BackendGroup => "backend_group",
            ResourceKind::Route => "route",
            ResourceKind::Zone => "zone",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Created,
    Updated,
    /// The resource's `state` changed; the event's `state` says to what.
    StateChanged,
    Deleted,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Created => "created",
            EventKind::Updated => "updated",
            EventKind::StateChanged => "state_changed",
            EventKind::Deleted => "deleted",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    /// Strictly increasing; pass the last one seen as `after` to continue.
    pub seq: i64,
    pub time: Timestamp,
    pub resource_kind: ResourceKind,
    pub resource_id: String,
    pub kind: EventKind,
    /// The resource's state after the change, where it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Zone of the resource, where it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
}

/// Events after a sequence number. `last_seq` is where to continue from; when `events` is empty
/// it is the newest sequence number in the log (so `after=<huge>` finds the head).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventPage {
    pub events: Vec<Event>,
    pub last_seq: i64,
}
