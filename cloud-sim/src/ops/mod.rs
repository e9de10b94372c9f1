//! The API's operations: one method per call, composing domain rules and store functions inside a
//! transaction. Handlers parse HTTP and call these; the background worker calls the settle and
//! purge methods.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use cloud_api::{
    BackendGroup, BackendGroupId, CreateBackendGroupRequest, CreateInstanceRequest,
    CreateLoadBalancerRequest, CreateRouteRequest, EventKind, EventPage, Frontend, Instance,
    InstanceId, InstanceState, InstanceType, LoadBalancer, LoadBalancerId, LoadBalancerState, Page,
    Region, ResourceKind, Route, RouteId, RouteTable, TrafficReport, UpdateBackendGroupRequest,
    UpdateInstanceRequest, UpdateLoadBalancerRequest, Usage, Zone, ZoneState, ZoneUsage,
    route::DEFAULT_ROUTE_TABLE,
};
use ipnet::{IpNet, Ipv4Net};

use crate::config::Config;
use crate::domain::frontends;
use crate::domain::instance::{self as lifecycle, Action, Transition};
use crate::domain::net::{overlaps, parse_network, usable_range};
use crate::domain::page::{PageToken, fingerprint, page_size};
use crate::domain::validate::{self, Invalid};
use crate::error::ApiError;
use crate::faults::{Faults, Target};
use crate::store::{self, Db, NewEvent, StoredInstance, now_ms};

mod backend_groups;
mod catalog;
mod events;
mod idempotency;
mod instances;
mod load_balancers;
mod routes;
mod settle;

/// Who is calling, and which request: operations need the project for isolation and the
/// method and path for zonal fault rules.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub project: String,
    pub method: String,
    pub path: String,
}

impl Ctx {
    /// A context for callers outside HTTP (tests, the worker).
    pub fn internal(project: &str) -> Self {
        Self {
            project: project.to_owned(),
            method: "GET".into(),
            path: "/internal".into(),
        }
    }
}

/// List parameters common to every collection.
#[derive(Debug, Clone, Default)]
pub struct ListParams {
    pub page_size: Option<u32>,
    pub page_token: Option<String>,
}

type Result<T, E = ApiError> = std::result::Result<T, E>;

/// The simulated cloud's operations over its database.
#[derive(Debug, Clone)]
pub struct Cloud {
    db: Db,
    config: Arc<Config>,
    faults: Arc<Faults>,
    /// Event long polls parked waiting for an event.
    polls_waiting: Arc<std::sync::atomic::AtomicI64>,
    /// The instance types' names, read once (the catalog never changes while serving): a
    /// create checks its type without a query on the write connection.
    type_names: Arc<tokio::sync::OnceCell<HashSet<String>>>,
}

/// See [`Cloud::data_plane_view`].
#[derive(Debug, Clone)]
pub struct DataPlaneView {
    pub load_balancers: Vec<LoadBalancer>,
    pub outage: HashSet<String>,
    pub instance_zones: Vec<(Ipv4Addr, String)>,
}

/// Counts a parked long poll while it lives.
struct Parked(Arc<std::sync::atomic::AtomicI64>);

impl Parked {
    fn new(counter: &Arc<std::sync::atomic::AtomicI64>) -> Self {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self(counter.clone())
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

fn deadline(delay: Duration, now: i64) -> Option<i64> {
    (!delay.is_zero()).then(|| now + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2))
}

/// `PRECONDITION_FAILED` unless `If-Match` lets the change through (`domain::etag`).
fn check_etag(if_match: Option<&str>, current: &str) -> Result<()> {
    if crate::domain::etag::matches(if_match, current) {
        return Ok(());
    }
    Err(ApiError::PreconditionFailed {
        given: if_match.unwrap_or_default().to_owned(),
        current: current.to_owned(),
    })
}

fn decode_token(params: &ListParams, fp: u64) -> Result<i64> {
    match params.page_token.as_deref() {
        None | Some("") => Ok(0),
        Some(t) => PageToken::decode(t, fp)
            .map(|t| t.after)
            .map_err(|e| ApiError::BadRequest(e.to_string())),
    }
}

/// Cuts a fetched batch of `size + 1` rows into a page.
fn paginate<S, T>(
    mut rows: Vec<S>,
    size: u32,
    fp: u64,
    seq: impl Fn(&S) -> i64,
    item: impl Fn(S) -> T,
) -> Page<T> {
    let more = rows.len() > size as usize;
    rows.truncate(size as usize);
    let next_page_token = more.then(|| {
        PageToken {
            after: rows.last().map(&seq).unwrap_or(0),
            fingerprint: fp,
        }
        .encode()
    });
    Page {
        items: rows.into_iter().map(item).collect(),
        next_page_token,
    }
}

fn random_bits() -> u64 {
    rand::random()
}

impl Cloud {
    pub fn new(db: Db, config: Arc<Config>, faults: Arc<Faults>) -> Self {
        Self {
            db,
            config,
            faults,
            polls_waiting: Arc::default(),
            type_names: Arc::default(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Notified after every committed change (the worker and the data plane wake on it).
    pub fn changes(&self) -> &tokio::sync::Notify {
        self.db.events_signal()
    }

    /// Closes the database (at shutdown, after every task has stopped).
    pub async fn close(&self) {
        self.db.close().await;
    }

    /// What the data plane serves, read together: every load balancer (its backends include its
    /// groups' members), the zones in outage, and
    /// the `(address, zone)` of every live instance (to place clients in zones).
    pub async fn data_plane_view(&self) -> store::Result<DataPlaneView> {
        let mut conn = self.db.reader().await?;
        let members = store::all_group_members(&mut conn).await?;
        let load_balancers = store::all_lbs(&mut conn, &self.config.region)
            .await?
            .into_iter()
            .map(|s| load_balancers::with_group_members(s.lb, &members))
            .collect();
        let outage = store::zone_states(&mut conn)
            .await?
            .into_iter()
            .filter(|(_, s)| *s == ZoneState::Outage)
            .map(|(z, _)| z)
            .collect();
        let instance_zones = store::live_instance_zones(&mut conn).await?;
        Ok(DataPlaneView {
            load_balancers,
            outage,
            instance_zones,
        })
    }

    /// How long the database's write connection has been held so far.
    pub fn writer_busy(&self) -> Duration {
        self.db.writer_busy()
    }

    /// Flushes of the write-ahead log so far.
    pub fn log_flushes(&self) -> u64 {
        self.db.log_flushes()
    }

    /// Event long polls waiting for an event right now.
    pub fn event_polls_waiting(&self) -> i64 {
        self.polls_waiting
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn zonal_faults(&self, ctx: &Ctx, zone: &str) -> Result<()> {
        let (delay, failure) = self.faults.evaluate(Target {
            method: &ctx.method,
            path: &ctx.path,
            zone: Some(zone),
            project: &ctx.project,
        });
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        failure.map_or(Ok(()), Err)
    }

    /// Zone faults of an existing instance, applied before a write transaction begins: a latency
    /// rule sleeps, and sleeping inside the transaction would hold the single write connection
    /// every zone shares. The zone comes from a read beside the writer; an instance never changes
    /// zone, and if it is deleted meanwhile the load inside the transaction says so.
    async fn instance_faults(&self, ctx: &Ctx, id: &str) -> Result<()> {
        let mut conn = self.db.reader().await?;
        let found = self.load_instance(&mut conn, ctx, id).await?;
        drop(conn);
        self.zonal_faults(ctx, &found.instance.zone).await
    }
}

fn parse_id<T: std::str::FromStr<Err = cloud_api::IdError>>(s: &str) -> Result<T> {
    s.parse()
        .map_err(|e: cloud_api::IdError| ApiError::BadRequest(e.to_string()))
}

fn instance_event<'a>(
    project: &'a str,
    id: &'a InstanceId,
    zone: &'a str,
    kind: EventKind,
    state: InstanceState,
) -> NewEvent<'a> {
    NewEvent {
        project: Some(project),
        resource_kind: ResourceKind::Instance,
        resource_id: id.as_str(),
        kind,
        state: Some(state.as_str()),
        zone: Some(zone),
    }
}

fn lb_event<'a>(
    project: &'a str,
    id: &'a LoadBalancerId,
    kind: EventKind,
    state: LoadBalancerState,
) -> NewEvent<'a> {
    NewEvent {
        project: Some(project),
        resource_kind: ResourceKind::LoadBalancer,
        resource_id: id.as_str(),
        kind,
        state: Some(store::lb_state_str(state)),
        zone: None,
    }
}

/// An `ids` list filter (none: every ID).
pub fn ids_filter(s: Option<&str>) -> Result<Vec<String>> {
    Ok(s.map(validate::ids_filter)
        .transpose()
        .map_err(|e| ApiError::BadRequest(e.reason))?
        .unwrap_or_default())
}

/// Tags as a `key=value` filter, validated.
pub fn tag_filter(s: Option<&str>) -> Result<Option<(String, String)>> {
    s.map(validate::tag_filter)
        .transpose()
        .map_err(|e| ApiError::BadRequest(e.reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_carry_a_token_only_when_more_rows_exist() {
        let p = paginate(vec![1, 2, 3], 2, 9, |r| i64::from(*r), |r| r * 10);
        assert_eq!(p.items, vec![10, 20]);
        let t = PageToken::decode(p.next_page_token.as_deref().unwrap(), 9).unwrap();
        assert_eq!(t.after, 2);
        let p = paginate(vec![1, 2], 2, 9, |r| i64::from(*r), |r| r * 10);
        assert_eq!(p.next_page_token, None);
    }
}
