//! Wire types of the simcloud cloud API.
//!
//! Layout: [`ids`] holds the resource ID newtypes and the provider ID that Kubernetes nodes carry,
//! [`error`] the one error body every endpoint returns, and one module per resource family
//! ([`account`], [`region`], [`instance`], [`backend_group`], [`load_balancer`], [`route`], [`event`], [`fault`]);
//! [`tags`] holds the rules every resource's tags follow.
//! [`page`] is the list envelope shared by every collection.
//!
//! This crate does no I/O: it is the contract between `cloud-sim` (the server) and `cloud-client`
//! (the client), so every `Serialize` type here changes deliberately. With the `openapi` feature
//! the types also derive `utoipa::ToSchema`, which is how cloud-sim's `/openapi.json` is generated.

pub mod account;
pub mod backend_group;
pub mod error;
pub mod event;
pub mod fault;
pub mod ids;
pub mod instance;
pub mod list;
pub mod load_balancer;
pub mod page;
pub mod region;
pub mod route;
pub mod tags;
pub mod traffic;

pub use account::{Caller, Usage, ZoneUsage};
pub use backend_group::{
    BackendGroup, CreateBackendGroupRequest, MAX_GROUP_MEMBERS, UpdateBackendGroupRequest,
};
pub use error::{ApiErrorBody, ErrorCode, ErrorDetail};
pub use event::{Event, EventKind, EventPage, ResourceKind};
pub use fault::{
    CreateFaultRequest, FaultEffect, FaultRule, MAX_FAULT_LATENCY_MS, MAX_FAULT_TTL_SECONDS,
    SetZoneStateRequest,
};
pub use ids::{
    BackendGroupId, IdError, InstanceId, LoadBalancerId, ProviderId, ProviderIdError, RouteId,
};
pub use instance::{
    BatchCreateInstancesRequest, BatchCreateInstancesResponse, CreateInstanceRequest, Instance,
    InstanceState, InstanceType, MAX_BATCH_CREATE, UpdateInstanceRequest,
};
pub use list::{
    EventsQuery, ListBackendGroupsQuery, ListInstancesQuery, ListLoadBalancersQuery,
    ListRoutesQuery, MAX_LIST_IDS,
};
pub use load_balancer::{
    Backend, Balancing, CreateLoadBalancerRequest, Frontend, HealthCheck, HealthCheckProtocol,
    IpMode, Listener, LoadBalancer, LoadBalancerState, MAX_BACKEND_GROUPS, MAX_BACKENDS,
    MAX_LISTENERS, Protocol, Scheme, UpdateLoadBalancerRequest, ZoneAffinity, ZonePolicy,
};
pub use page::Page;
pub use region::{Region, Zone, ZoneState};
pub use route::{CreateRouteRequest, Route, RouteState, RouteTable};
pub use traffic::{BackendHealth, TrafficReport, TrafficRow};

#[cfg(feature = "openapi")]
pub use tags::TagsSchema;
pub use tags::{MAX_TAG_KEY, MAX_TAG_VALUE, MAX_TAGS, TAG_PATTERN, Tags};

/// Header carrying the request ID on every response (and accepted on requests).
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Header that makes a mutating POST idempotent.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// The longest `Idempotency-Key`: keys are 1 to this many visible ASCII characters (`!` to `~`).
pub const MAX_IDEMPOTENCY_KEY: usize = 255;
/// The same rule as a pattern, for the OpenAPI document.
pub const IDEMPOTENCY_KEY_PATTERN: &str = "^[!-~]{1,255}$";
/// The project used when cloud-sim runs without a tokens file.
pub const DEFAULT_PROJECT: &str = "default";
/// Default and maximum `page_size` of list calls.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// Larger `page_size` values are coerced down to this.
pub const MAX_PAGE_SIZE: u32 = 500;
