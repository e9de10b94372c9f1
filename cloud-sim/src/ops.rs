//! The API's operations: one method per call, composing domain rules and store functions inside a
//! transaction. Handlers parse HTTP and call these; the background worker calls the settle and
//! purge methods.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use cloud_api::{
    CreateInstanceRequest, CreateLoadBalancerRequest, CreateRouteRequest, EventKind, EventPage,
    Frontend, Instance, InstanceId, InstanceState, InstanceType, LoadBalancer, LoadBalancerId,
    LoadBalancerState, Page, Region, ResourceKind, Route, RouteId, RouteTable,
    UpdateInstanceRequest, UpdateLoadBalancerRequest, Zone, ZoneState, route::DEFAULT_ROUTE_TABLE,
};
use ipnet::{IpNet, Ipv4Net};

use crate::config::Config;
use crate::domain::instance::{self as lifecycle, Action, Transition};
use crate::domain::net::{first_free, overlaps, parse_network, usable_range};
use crate::domain::page::{PageToken, fingerprint, page_size};
use crate::domain::validate::{self, Invalid};
use crate::error::ApiError;
use crate::faults::{Faults, Target};
use crate::store::{self, Db, NewEvent, StoredInstance, now_ms};

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
    pub db: Db,
    pub config: Arc<Config>,
    pub faults: Arc<Faults>,
    /// Event long polls parked waiting for an event.
    polls_waiting: Arc<std::sync::atomic::AtomicI64>,
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

/// Checks `If-Match` against the current etag; `*` matches anything that exists.
fn check_etag(if_match: Option<&str>, current: &str) -> Result<()> {
    match if_match {
        None => Ok(()),
        Some(given) => {
            let ok = given.split(',').map(str::trim).any(|tag| {
                let tag = tag.trim_start_matches("W/").trim_matches('"');
                tag == "*" || tag == current
            });
            if ok {
                Ok(())
            } else {
                Err(ApiError::PreconditionFailed {
                    given: given.to_owned(),
                    current: current.to_owned(),
                })
            }
        }
    }
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
        }
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

    // -- regions, zones, instance types -----------------------------------------------------

    pub async fn region(&self) -> Result<Region> {
        let mut conn = self.db.reader().await.map_err(ApiError::from)?;
        let states = store::zone_states(&mut conn).await?;
        let zones = self
            .config
            .zones
            .iter()
            .map(|z| Zone {
                name: z.name.clone(),
                region: self.config.region.clone(),
                state: states
                    .iter()
                    .find(|(n, _)| *n == z.name)
                    .map_or(ZoneState::Available, |(_, s)| *s),
                instance_subnet: z.instance_subnet,
                lb_pool: z.lb_pool,
            })
            .collect();
        Ok(Region {
            name: self.config.region.clone(),
            network_cidr: self.config.network_cidr,
            zones,
        })
    }

    pub async fn zone(&self, name: &str) -> Result<Zone> {
        self.region()
            .await?
            .zones
            .into_iter()
            .find(|z| z.name == name)
            .ok_or_else(|| ApiError::not_found("zone", name))
    }

    pub async fn set_zone_state(&self, name: &str, state: ZoneState) -> Result<Zone> {
        if self.config.zone(name).is_none() {
            return Err(ApiError::not_found("zone", name));
        }
        let now = now_ms();
        let mut tx = self.db.begin().await?;
        store::set_zone_state(&mut tx, name, state, now).await?;
        let e = NewEvent {
            project: None,
            resource_kind: ResourceKind::Zone,
            resource_id: name,
            kind: EventKind::StateChanged,
            state: Some(state.as_str()),
            zone: Some(name),
        };
        store::append_event(&mut tx, &e, now).await?;
        tx.commit().await?;
        tracing::info!(zone = name, state = state.as_str(), "zone state set");
        self.zone(name).await
    }

    pub async fn instance_types(&self) -> Result<Vec<InstanceType>> {
        let mut conn = self.db.reader().await.map_err(ApiError::from)?;
        Ok(store::instance_types(&mut conn).await?)
    }

    // -- instances ----------------------------------------------------------------------------

    pub async fn create_instance(&self, ctx: &Ctx, req: CreateInstanceRequest) -> Result<Instance> {
        validate::dns1123_subdomain("name", &req.name)?;
        let zone = self
            .config
            .zone(&req.zone)
            .ok_or_else(|| {
                Invalid::new(
                    "zone",
                    format!(
                        "{:?} is not a zone of region {}",
                        req.zone, self.config.region
                    ),
                )
            })?
            .clone();
        validate::tags("tags", &req.tags)?;
        self.zonal_faults(ctx, &zone.name).await?;
        let now = now_ms();
        let mut tx = self.db.begin().await?;
        if store::instance_type(&mut tx, &req.instance_type)
            .await?
            .is_none()
        {
            return Err(Invalid::new(
                "instance_type",
                format!(
                    "{:?} is not an instance type (see /v1/instance-types)",
                    req.instance_type
                ),
            )
            .into());
        }
        if let Some(existing) =
            store::live_instance_by_name(&mut tx, &ctx.project, &req.name).await?
        {
            return Err(ApiError::AlreadyExists(format!(
                "instance name {:?} is in use by {existing}",
                req.name
            )));
        }
        let private_ip = match req.private_ip {
            Some(ip) => {
                self.check_chosen_ip(ip, &zone.name)?;
                if store::instance_ip_in_use(&mut tx, u32::from(ip)).await? {
                    return Err(ApiError::AlreadyExists(format!(
                        "private IP {ip} is in use by another instance"
                    )));
                }
                ip
            }
            None => {
                let (lo, hi) = usable_range(zone.instance_subnet);
                let free = store::first_free_instance_ip(&mut tx, lo, hi).await?;
                free.map(Ipv4Addr::from).ok_or_else(|| {
                    ApiError::QuotaExceeded(format!(
                        "subnet {} of {} has no free address",
                        zone.instance_subnet, zone.name
                    ))
                })?
            }
        };
        let boot = deadline(self.config.instance_boot_delay, now);
        let n = store::NewInstance {
            id: InstanceId::from_bits(random_bits()),
            project: ctx.project.clone(),
            name: req.name,
            zone: zone.name.clone(),
            instance_type: req.instance_type,
            state: if boot.is_some() {
                InstanceState::Pending
            } else {
                InstanceState::Running
            },
            private_ip,
            tags: req.tags,
            state_deadline: boot,
        };
        store::insert_instance(&mut tx, &n, now)
            .await
            .map_err(|e| {
                if store::is_unique_violation(&e) {
                    ApiError::AlreadyExists(format!(
                        "instance name {:?} or address {private_ip} is in use",
                        n.name
                    ))
                } else {
                    e.into()
                }
            })?;
        store::append_event(
            &mut tx,
            &instance_event(&ctx.project, &n.id, &n.zone, EventKind::Created, n.state),
            now,
        )
        .await?;
        let created =
            store::get_instance(&mut tx, &self.config.region, None, n.id.as_str()).await?;
        tx.commit().await?;
        let created = created
            .ok_or_else(|| ApiError::not_found("instance", &n.id))?
            .instance;
        tracing::info!(instance = %created.id, name = %created.name, zone = %created.zone, ip = %created.private_ip, state = %created.state, "instance created");
        Ok(created)
    }

    /// A caller-chosen address must be in the region network, outside every LB pool, and, if it
    /// falls in a zone subnet, in the instance's own zone and not a reserved address.
    fn check_chosen_ip(&self, ip: Ipv4Addr, zone: &str) -> Result<()> {
        let field = "private_ip";
        if !self.config.network_cidr.contains(&ip) {
            return Err(Invalid::new(
                field,
                format!(
                    "{ip} is outside the region network {}",
                    self.config.network_cidr
                ),
            )
            .into());
        }
        for z in &self.config.zones {
            if z.lb_pool.contains(&ip) {
                return Err(Invalid::new(
                    field,
                    format!("{ip} is in the load-balancer pool of {}", z.name),
                )
                .into());
            }
            if z.instance_subnet.contains(&ip) {
                if z.name != zone {
                    return Err(Invalid::new(
                        field,
                        format!("{ip} is in the subnet of {}, not {zone}", z.name),
                    )
                    .into());
                }
                let (lo, hi) = usable_range(z.instance_subnet);
                if !(lo..=hi).contains(&u32::from(ip)) {
                    return Err(Invalid::new(
                        field,
                        format!("{ip} is a reserved address of subnet {}", z.instance_subnet),
                    )
                    .into());
                }
            }
        }
        Ok(())
    }

    async fn load_instance(
        &self,
        conn: &mut sqlx::SqliteConnection,
        ctx: &Ctx,
        id: &str,
    ) -> Result<StoredInstance> {
        let id = parse_id::<InstanceId>(id)?;
        store::get_instance(conn, &self.config.region, Some(&ctx.project), id.as_str())
            .await?
            .ok_or_else(|| ApiError::not_found("instance", id))
    }

    pub async fn get_instance(&self, ctx: &Ctx, id: &str) -> Result<Instance> {
        let mut conn = self.db.reader().await?;
        let found = self.load_instance(&mut conn, ctx, id).await?;
        drop(conn);
        self.zonal_faults(ctx, &found.instance.zone).await?;
        Ok(found.instance)
    }

    pub async fn list_instances(
        &self,
        ctx: &Ctx,
        filter: store::InstanceFilter,
        params: &ListParams,
    ) -> Result<Page<Instance>> {
        let size = page_size(params.page_size);
        let state = filter.state.map(InstanceState::as_str);
        let tag = filter.tag.as_ref().map(|(k, v)| format!("{k}={v}"));
        let fp = fingerprint(&[
            Some("instances"),
            filter.zone.as_deref(),
            state,
            filter.name.as_deref(),
            tag.as_deref(),
        ]);
        let after = decode_token(params, fp)?;
        let mut conn = self.db.reader().await?;
        let rows = store::list_instances(
            &mut conn,
            &self.config.region,
            &ctx.project,
            &filter,
            after,
            size + 1,
        )
        .await?;
        Ok(paginate(rows, size, fp, |r| r.seq, |r| r.instance))
    }

    pub async fn update_instance(
        &self,
        ctx: &Ctx,
        id: &str,
        if_match: Option<&str>,
        req: UpdateInstanceRequest,
    ) -> Result<Instance> {
        validate::tags("tags", &req.tags)?;
        self.instance_faults(ctx, id).await?;
        let now = now_ms();
        let mut tx = self.db.begin().await?;
        let cur = self.load_instance(&mut tx, ctx, id).await?;
        check_etag(if_match, &cur.instance.etag)?;
        if cur.instance.tags == req.tags {
            return Ok(cur.instance);
        }
        let i = &cur.instance;
        store::set_instance_tags(&mut tx, i.id.as_str(), &req.tags, now).await?;
        store::append_event(
            &mut tx,
            &instance_event(&ctx.project, &i.id, &i.zone, EventKind::Updated, i.state),
            now,
        )
        .await?;
        let out = self.load_instance(&mut tx, ctx, id).await?;
        tx.commit().await?;
        Ok(out.instance)
    }

    /// Start, stop or terminate. No-op transitions return the instance unchanged.
    pub async fn instance_action(
        &self,
        ctx: &Ctx,
        id: &str,
        if_match: Option<&str>,
        action: Action,
    ) -> Result<Instance> {
        self.instance_faults(ctx, id).await?;
        let now = now_ms();
        let mut tx = self.db.begin().await?;
        let cur = self.load_instance(&mut tx, ctx, id).await?;
        check_etag(if_match, &cur.instance.etag)?;
        let i = &cur.instance;
        let target = match lifecycle::apply(i.state, action) {
            Ok(Transition::NoOp) => return Ok(cur.instance),
            Ok(Transition::To(s)) => s,
            Err(e) => return Err(ApiError::IncorrectState(format!("{e} ({})", i.id))),
        };
        let delay = match target {
            InstanceState::Pending => self.config.instance_boot_delay,
            InstanceState::Stopping => self.config.instance_stop_delay,
            _ => Duration::ZERO,
        };
        let (state, dl) = match deadline(delay, now) {
            Some(d) => (target, Some(d)),
            None => (lifecycle::settle(target).unwrap_or(target), None),
        };
        store::set_instance_state(&mut tx, i.id.as_str(), state, dl, now).await?;
        store::append_event(
            &mut tx,
            &instance_event(&ctx.project, &i.id, &i.zone, EventKind::StateChanged, state),
            now,
        )
        .await?;
        let out = self.load_instance(&mut tx, ctx, id).await?;
        tx.commit().await?;
        tracing::info!(instance = %i.id, action = action.as_str(), from = %i.state, to = %state, "instance state changed");
        Ok(out.instance)
    }

    /// Removes the instance record now (terminating it first if needed).
    pub async fn delete_instance(&self, ctx: &Ctx, id: &str, if_match: Option<&str>) -> Result<()> {
        self.instance_faults(ctx, id).await?;
        let now = now_ms();
        let mut tx = self.db.begin().await?;
        let cur = self.load_instance(&mut tx, ctx, id).await?;
        check_etag(if_match, &cur.instance.etag)?;
        let i = &cur.instance;
        if i.state != InstanceState::Terminated {
            let e = instance_event(
                &ctx.project,
                &i.id,
                &i.zone,
                EventKind::StateChanged,
                InstanceState::Terminated,
            );
            store::append_event(&mut tx, &e, now).await?;
        }
        store::delete_instance(&mut tx, i.id.as_str()).await?;
        let e = instance_event(
            &ctx.project,
            &i.id,
            &i.zone,
            EventKind::Deleted,
            InstanceState::Terminated,
        );
        store::append_event(&mut tx, &e, now).await?;
        tx.commit().await?;
        tracing::info!(instance = %i.id, "instance deleted");
        Ok(())
    }

    // -- load balancers -----------------------------------------------------------------------

    /// Checks backends exist in the caller's project; returns them de-duplicated in order.
    async fn check_backends(
        &self,
        conn: &mut sqlx::SqliteConnection,
        ctx: &Ctx,
        field: &str,
        ids: &[InstanceId],
    ) -> Result<()> {
        if ids.len() > validate::MAX_BACKENDS {
            return Err(Invalid::new(
                field,
                format!("at most {} backends are allowed", validate::MAX_BACKENDS),
            )
            .into());
        }
        let mut seen = HashSet::new();
        for (i, id) in ids.iter().enumerate() {
            if !seen.insert(id) {
                return Err(Invalid::new(
                    format!("{field}[{i}]"),
                    format!("instance {id} is listed twice"),
                )
                .into());
            }
            // Terminated instances are accepted (they just never turn healthy): the ccm may still
            // list a node whose instance was terminated a moment ago.
            if store::get_instance(conn, &self.config.region, Some(&ctx.project), id.as_str())
                .await?
                .is_none()
            {
                return Err(Invalid::new(
                    format!("{field}[{i}]"),
                    format!("instance {id} does not exist in this project"),
                )
                .into());
            }
        }
        Ok(())
    }

    pub async fn create_load_balancer(
        &self,
        ctx: &Ctx,
        req: CreateLoadBalancerRequest,
    ) -> Result<LoadBalancer> {
        validate::dns1123_label("name", &req.name)?;
        if req.listeners.is_empty() {
            return Err(Invalid::new("listeners", "at least one listener is required").into());
        }
        validate::listeners("listeners", &req.listeners)?;
        validate::health_check("health_check", &req.health_check)?;
        validate::zone_policy("zone_policy", &req.zone_policy)?;
        validate::tags("tags", &req.tags)?;
        let zones: Vec<String> = match &req.zones {
            None => self.config.zones.iter().map(|z| z.name.clone()).collect(),
            Some(zs) if zs.is_empty() => {
                return Err(Invalid::new("zones", "must name at least one zone").into());
            }
            Some(zs) => {
                for (i, z) in zs.iter().enumerate() {
                    if self.config.zone(z).is_none() {
                        return Err(Invalid::new(
                            format!("zones[{i}]"),
                            format!("{z:?} is not a zone of this region"),
                        )
                        .into());
                    }
                    if zs[..i].contains(z) {
                        return Err(Invalid::new(
                            format!("zones[{i}]"),
                            format!("{z:?} is listed twice"),
                        )
                        .into());
                    }
                }
                zs.clone()
            }
        };
        let pools: Vec<(String, Ipv4Net)> = zones
            .iter()
            .map(|z| {
                (
                    z.clone(),
                    self.config.zone(z).expect("checked above").lb_pool,
                )
            })
            .collect();
        let mut requested: Vec<(String, Ipv4Addr)> = Vec::new();
        for (i, ip) in req.requested_ips.iter().enumerate() {
            let field = format!("requested_ips[{i}]");
            let Some((zone, pool)) = pools.iter().find(|(_, p)| p.contains(ip)) else {
                return Err(Invalid::new(
                    field,
                    format!("{ip} is not in the load-balancer pool of any of the zones {zones:?}"),
                )
                .into());
            };
            let (lo, hi) = usable_range(*pool);
            if !(lo..=hi).contains(&u32::from(*ip)) {
                return Err(Invalid::new(
                    field,
                    format!("{ip} is a reserved address of pool {pool}"),
                )
                .into());
            }
            if requested.iter().any(|(z, _)| z == zone) {
                return Err(Invalid::new(
                    field,
                    format!("more than one address requested in {zone}"),
                )
                .into());
            }
            requested.push((zone.clone(), *ip));
        }
        let now = now_ms();
        let mut tx = self.db.begin().await?;
        self.check_backends(&mut tx, ctx, "backends", &req.backends)
            .await?;
        if let Some(existing) = store::lb_id_by_name(&mut tx, &ctx.project, &req.name).await? {
            return Err(ApiError::AlreadyExists(format!(
                "load balancer name {:?} is in use by {existing}",
                req.name
            )));
        }
        let mut frontends = Vec::new();
        for (zone, pool) in &pools {
            let (lo, hi) = usable_range(*pool);
            let used = store::used_frontend_ips(&mut tx, lo, hi).await?;
            let ip = match requested.iter().find(|(z, _)| z == zone) {
                Some((_, ip)) => {
                    if used.binary_search(&u32::from(*ip)).is_ok() {
                        return Err(ApiError::AlreadyExists(format!(
                            "frontend address {ip} is in use by another load balancer"
                        )));
                    }
                    *ip
                }
                None => first_free(*pool, &used).ok_or_else(|| {
                    ApiError::QuotaExceeded(format!(
                        "load-balancer pool {pool} of {zone} has no free address"
                    ))
                })?,
            };
            frontends.push(Frontend {
                zone: zone.clone(),
                ip,
            });
        }
        let provision = deadline(self.config.lb_provision_delay, now);
        let n = store::NewLb {
            id: LoadBalancerId::from_bits(random_bits()),
            project: ctx.project.clone(),
            name: req.name,
            state: if provision.is_some() {
                LoadBalancerState::Provisioning
            } else {
                LoadBalancerState::Active
            },
            spec: store::LbSpec {
                scheme: req.scheme,
                ip_mode: req.ip_mode,
                listeners: req.listeners,
                health_check: req.health_check,
                zone_policy: req.zone_policy,
            },
            backends: req.backends,
            frontends,
            tags: req.tags,
            state_deadline: provision,
        };
        store::insert_lb(&mut tx, &n, now).await.map_err(|e| {
            if store::is_unique_violation(&e) {
                ApiError::AlreadyExists(format!(
                    "load balancer name {:?} or a frontend address is in use",
                    n.name
                ))
            } else {
                e.into()
            }
        })?;
        store::append_event(
            &mut tx,
            &lb_event(&ctx.project, &n.id, EventKind::Created, n.state),
            now,
        )
        .await?;
        let out = store::get_lb(&mut tx, &self.config.region, &ctx.project, n.id.as_str()).await?;
        tx.commit().await?;
        let out = out
            .ok_or_else(|| ApiError::not_found("load balancer", &n.id))?
            .lb;
        tracing::info!(lb = %out.id, name = %out.name, frontends = out.frontends.len(), backends = out.backends.len(), "load balancer created");
        Ok(out)
    }

    async fn load_lb(
        &self,
        conn: &mut sqlx::SqliteConnection,
        ctx: &Ctx,
        id: &str,
    ) -> Result<store::StoredLb> {
        let id = parse_id::<LoadBalancerId>(id)?;
        store::get_lb(conn, &self.config.region, &ctx.project, id.as_str())
            .await?
            .ok_or_else(|| ApiError::not_found("load balancer", id))
    }

    pub async fn get_load_balancer(&self, ctx: &Ctx, id: &str) -> Result<LoadBalancer> {
        let mut conn = self.db.reader().await?;
        Ok(self.load_lb(&mut conn, ctx, id).await?.lb)
    }

    pub async fn list_load_balancers(
        &self,
        ctx: &Ctx,
        filter: store::LbFilter,
        params: &ListParams,
    ) -> Result<Page<LoadBalancer>> {
        let size = page_size(params.page_size);
        let tag = filter.tag.as_ref().map(|(k, v)| format!("{k}={v}"));
        let fp = fingerprint(&[
            Some("load-balancers"),
            filter.name.as_deref(),
            tag.as_deref(),
        ]);
        let after = decode_token(params, fp)?;
        let mut conn = self.db.reader().await?;
        let rows = store::list_lbs(
            &mut conn,
            &self.config.region,
            &ctx.project,
            &filter,
            after,
            size + 1,
        )
        .await?;
        Ok(paginate(rows, size, fp, |r| r.seq, |r| r.lb))
    }

    pub async fn update_load_balancer(
        &self,
        ctx: &Ctx,
        id: &str,
        if_match: Option<&str>,
        req: UpdateLoadBalancerRequest,
    ) -> Result<LoadBalancer> {
        if let Some(l) = &req.listeners {
            if l.is_empty() {
                return Err(Invalid::new("listeners", "at least one listener is required").into());
            }
            validate::listeners("listeners", l)?;
        }
        if let Some(hc) = &req.health_check {
            validate::health_check("health_check", hc)?;
        }
        if let Some(zp) = &req.zone_policy {
            validate::zone_policy("zone_policy", zp)?;
        }
        if let Some(t) = &req.tags {
            validate::tags("tags", t)?;
        }
        let now = now_ms();
        let mut tx = self.db.begin().await?;
        let cur = self.load_lb(&mut tx, ctx, id).await?;
        check_etag(if_match, &cur.lb.etag)?;
        let lb = &cur.lb;
        let spec = store::LbSpec {
            scheme: lb.scheme,
            ip_mode: req.ip_mode.unwrap_or(lb.ip_mode),
            listeners: req.listeners.unwrap_or_else(|| lb.listeners.clone()),
            health_check: req.health_check.unwrap_or_else(|| lb.health_check.clone()),
            zone_policy: req.zone_policy.unwrap_or(lb.zone_policy),
        };
        let tags = req.tags.unwrap_or_else(|| lb.tags.clone());
        let current_backends: Vec<InstanceId> =
            lb.backends.iter().map(|b| b.instance_id.clone()).collect();
        let spec_changed = spec.ip_mode != lb.ip_mode
            || spec.listeners != lb.listeners
            || spec.health_check != lb.health_check
            || spec.zone_policy != lb.zone_policy
            || tags != lb.tags;
        let backends_changed = req
            .backends
            .as_ref()
            .is_some_and(|b| *b != current_backends);
        if !spec_changed && !backends_changed {
            return Ok(cur.lb);
        }
        if let Some(b) = &req.backends {
            self.check_backends(&mut tx, ctx, "backends", b).await?;
            store::set_lb_backends(&mut tx, lb.id.as_str(), b).await?;
        }
        store::update_lb(&mut tx, lb.id.as_str(), &spec, &tags, now).await?;
        store::append_event(
            &mut tx,
            &lb_event(&ctx.project, &lb.id, EventKind::Updated, lb.state),
            now,
        )
        .await?;
        let out = self.load_lb(&mut tx, ctx, id).await?;
        tx.commit().await?;
        tracing::info!(lb = %out.lb.id, backends = out.lb.backends.len(), "load balancer updated");
        Ok(out.lb)
    }

    pub async fn delete_load_balancer(
        &self,
        ctx: &Ctx,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<()> {
        let now = now_ms();
        let mut tx = self.db.begin().await?;
        let cur = self.load_lb(&mut tx, ctx, id).await?;
        check_etag(if_match, &cur.lb.etag)?;
        store::delete_lb(&mut tx, cur.lb.id.as_str()).await?;
        store::append_event(
            &mut tx,
            &lb_event(&ctx.project, &cur.lb.id, EventKind::Deleted, cur.lb.state),
            now,
        )
        .await?;
        tx.commit().await?;
        tracing::info!(lb = %cur.lb.id, "load balancer deleted");
        Ok(())
    }

    // -- route tables -------------------------------------------------------------------------

    fn check_table(table: &str) -> Result<()> {
        if table == DEFAULT_ROUTE_TABLE {
            Ok(())
        } else {
            Err(ApiError::not_found("route table", table))
        }
    }

    pub async fn route_table(&self, ctx: &Ctx, table: &str) -> Result<RouteTable> {
        Self::check_table(table)?;
        let mut conn = self.db.reader().await?;
        let count = store::count_routes(&mut conn, &ctx.project, table).await?;
        Ok(RouteTable {
            id: table.to_owned(),
            region: self.config.region.clone(),
            route_quota: self.config.route_quota,
            route_count: count,
        })
    }

    pub async fn create_route(
        &self,
        ctx: &Ctx,
        table: &str,
        req: CreateRouteRequest,
    ) -> Result<Route> {
        Self::check_table(table)?;
        validate::dns1123_subdomain("name", &req.name)?;
        let dest = parse_network(&req.destination_cidr)
            .map_err(|r| Invalid::new("destination_cidr", r))?;
        validate::tags("tags", &req.tags)?;
        let now = now_ms();
        let mut tx = self.db.begin().await?;
        let target = store::get_instance(
            &mut tx,
            &self.config.region,
            Some(&ctx.project),
            req.target_instance_id.as_str(),
        )
        .await?;
        match target {
            Some(t) if lifecycle::is_live(t.instance.state) => {}
            Some(_) => {
                return Err(Invalid::new(
                    "target_instance_id",
                    format!("instance {} is terminated", req.target_instance_id),
                )
                .into());
            }
            None => {
                return Err(Invalid::new(
                    "target_instance_id",
                    format!(
                        "instance {} does not exist in this project",
                        req.target_instance_id
                    ),
                )
                .into());
            }
        }
        let existing = store::route_destinations(&mut tx, &ctx.project, table).await?;
        if let Some((id, _, _)) = existing.iter().find(|(_, name, _)| *name == req.name) {
            return Err(ApiError::AlreadyExists(format!(
                "route name {:?} is in use by {id}",
                req.name
            )));
        }
        let quota = self.config.route_quota as usize;
        if existing.len() >= quota {
            return Err(ApiError::QuotaExceeded(format!(
                "route table {table} holds its quota of {quota} routes"
            )));
        }
        for (id, name, cidr) in &existing {
            let other: IpNet = cidr.parse().map_err(|e| store::StoreError::Corrupt {
                what: "route destination",
                detail: format!("{e}"),
            })?;
            if overlaps(&dest, &other) {
                return Err(ApiError::Conflict(format!(
                    "destination {dest} overlaps route {name} ({id}, {other})"
                )));
            }
        }
        let n = store::NewRoute {
            id: RouteId::from_bits(random_bits()),
            project: ctx.project.clone(),
            route_table: table.to_owned(),
            name: req.name,
            destination_cidr: dest,
            target_instance_id: req.target_instance_id,
            tags: req.tags,
        };
        store::insert_route(&mut tx, &n, now).await?;
        let e = NewEvent {
            project: Some(&ctx.project),
            resource_kind: ResourceKind::Route,
            resource_id: n.id.as_str(),
            kind: EventKind::Created,
            state: None,
            zone: None,
        };
        store::append_event(&mut tx, &e, now).await?;
        let out = store::get_route(&mut tx, &ctx.project, table, n.id.as_str()).await?;
        tx.commit().await?;
        let out = out
            .ok_or_else(|| ApiError::not_found("route", &n.id))?
            .route;
        tracing::info!(route = %out.id, destination = %out.destination_cidr, target = %out.target_instance_id, "route created");
        Ok(out)
    }

    pub async fn get_route(&self, ctx: &Ctx, table: &str, id: &str) -> Result<Route> {
        Self::check_table(table)?;
        let id = parse_id::<RouteId>(id)?;
        let mut conn = self.db.reader().await?;
        store::get_route(&mut conn, &ctx.project, table, id.as_str())
            .await?
            .map(|r| r.route)
            .ok_or_else(|| ApiError::not_found("route", id))
    }

    pub async fn list_routes(
        &self,
        ctx: &Ctx,
        table: &str,
        tag: Option<(String, String)>,
        params: &ListParams,
    ) -> Result<Page<Route>> {
        Self::check_table(table)?;
        let size = page_size(params.page_size);
        let tag_s = tag.as_ref().map(|(k, v)| format!("{k}={v}"));
        let fp = fingerprint(&[Some("routes"), Some(table), tag_s.as_deref()]);
        let after = decode_token(params, fp)?;
        let mut conn = self.db.reader().await?;
        let rows = store::list_routes(
            &mut conn,
            &ctx.project,
            table,
            tag.as_ref(),
            after,
            size + 1,
        )
        .await?;
        Ok(paginate(rows, size, fp, |r| r.seq, |r| r.route))
    }

    pub async fn delete_route(
        &self,
        ctx: &Ctx,
        table: &str,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<()> {
        Self::check_table(table)?;
        let id = parse_id::<RouteId>(id)?;
        let now = now_ms();
        let mut tx = self.db.begin().await?;
        let cur = store::get_route(&mut tx, &ctx.project, table, id.as_str())
            .await?
            .ok_or_else(|| ApiError::not_found("route", &id))?;
        check_etag(if_match, &cur.route.etag)?;
        store::delete_route(&mut tx, id.as_str()).await?;
        let e = NewEvent {
            project: Some(&ctx.project),
            resource_kind: ResourceKind::Route,
            resource_id: id.as_str(),
            kind: EventKind::Deleted,
            state: None,
            zone: None,
        };
        store::append_event(&mut tx, &e, now).await?;
        tx.commit().await?;
        tracing::info!(route = %id, "route deleted");
        Ok(())
    }

    // -- events -------------------------------------------------------------------------------

    /// Events after `after`; waits up to `wait` for the first one if there are none yet.
    pub async fn events(
        &self,
        ctx: &Ctx,
        after: i64,
        limit: u32,
        wait: Duration,
    ) -> Result<EventPage> {
        let limit = limit.clamp(1, 1000);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.db.events_signal().notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let mut conn = self.db.reader().await?;
            let events = store::events_after(&mut conn, &ctx.project, after, limit).await?;
            if !events.is_empty() {
                let last_seq = events.last().map_or(after, |e| e.seq);
                return Ok(EventPage { events, last_seq });
            }
            // With nothing new, report the head of the log: continuing from it skips events of
            // other projects, and a caller that passes a huge `after` learns where the log ends.
            let last_seq = store::last_event_seq(&mut conn).await?;
            drop(conn);
            let _parked = Parked::new(&self.polls_waiting);
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(EventPage { events, last_seq });
            }
        }
    }

    // -- background settling ------------------------------------------------------------------

    /// Moves every due transitional state on (pending -> running, stopping -> stopped,
    /// provisioning -> active) and purges expired records. Returns how many resources changed.
    pub async fn settle_due(&self) -> Result<usize> {
        let now = now_ms();
        let mut tx = self.db.begin().await?;
        let mut changed = 0;
        for (id, project, zone, state) in store::due_instances(&mut tx, now).await? {
            let Some(next) = lifecycle::settle(state) else {
                store::set_instance_state(&mut tx, &id, state, None, now).await?;
                continue;
            };
            store::set_instance_state(&mut tx, &id, next, None, now).await?;
            let e = NewEvent {
                project: Some(&project),
                resource_kind: ResourceKind::Instance,
                resource_id: &id,
                kind: EventKind::StateChanged,
                state: Some(next.as_str()),
                zone: Some(&zone),
            };
            store::append_event(&mut tx, &e, now).await?;
            tracing::debug!(instance = %id, state = %next, "instance settled");
            changed += 1;
        }
        for (id, project) in store::due_lbs(&mut tx, now).await? {
            store::set_lb_state(&mut tx, &id, LoadBalancerState::Active, now).await?;
            let e = NewEvent {
                project: Some(&project),
                resource_kind: ResourceKind::LoadBalancer,
                resource_id: &id,
                kind: EventKind::StateChanged,
                state: Some("active"),
                zone: None,
            };
            store::append_event(&mut tx, &e, now).await?;
            tracing::debug!(lb = %id, "load balancer active");
            changed += 1;
        }
        let retention =
            i64::try_from(self.config.terminated_retention.as_millis()).unwrap_or(i64::MAX / 2);
        let purged = store::purge_terminated(&mut tx, now - retention).await?;
        let expired =
            store::purge_idempotency(&mut tx, now - store::IDEMPOTENCY_RETENTION_MS).await?;
        if changed == 0 && purged == 0 && expired == 0 {
            // Committing wakes every waiter on the event signal, this worker among them: an
            // empty pass must not, or the worker and the data plane spin.
            tx.rollback().await?;
            return Ok(0);
        }
        tx.commit().await?;
        if purged > 0 {
            tracing::info!(purged, "purged terminated instances past retention");
        }
        Ok(changed)
    }

    /// When the next transitional state is due, if any.
    pub async fn next_deadline(&self) -> Result<Option<i64>> {
        let mut conn = self.db.reader().await?;
        Ok(store::next_deadline(&mut conn).await?)
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
    fn etag_matching() {
        assert!(check_etag(None, "3").is_ok());
        assert!(check_etag(Some("\"3\""), "3").is_ok());
        assert!(check_etag(Some("3"), "3").is_ok());
        assert!(check_etag(Some("W/\"3\""), "3").is_ok());
        assert!(check_etag(Some("\"1\", \"3\""), "3").is_ok());
        assert!(check_etag(Some("*"), "3").is_ok());
        assert!(matches!(
            check_etag(Some("\"2\""), "3"),
            Err(ApiError::PreconditionFailed { .. })
        ));
    }

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
