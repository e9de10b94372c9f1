//! Load balancers: create (frontends per zone, backends), reads, update, delete.

use super::*;

impl Cloud {
    /// Checks backends exist in the caller's project, each listed once. Terminated instances
    /// are accepted (they just never turn healthy): the ccm may still list a node whose instance
    /// was terminated a moment ago.
    pub(super) async fn check_backends(
        &self,
        conn: &mut sqlx::AnyConnection,
        ctx: &Ctx,
        field: &str,
        ids: &[InstanceId],
    ) -> Result<()> {
        validate::distinct(field, ids, cloud_api::MAX_BACKENDS, "instance")?;
        let wanted: Vec<&str> = ids.iter().map(InstanceId::as_str).collect();
        let found = store::instance_zones_of(conn, &ctx.project, &wanted).await?;
        validate::all_found_in_zone(field, &wanted, &found, None, "instance")?;
        Ok(())
    }

    /// Checks backend groups exist in the caller's project, each listed once.
    async fn check_groups(
        &self,
        conn: &mut sqlx::AnyConnection,
        ctx: &Ctx,
        ids: &[BackendGroupId],
    ) -> Result<()> {
        const FIELD: &str = "backend_groups";
        validate::distinct(FIELD, ids, cloud_api::MAX_BACKEND_GROUPS, "backend group")?;
        let wanted: Vec<&str> = ids.iter().map(BackendGroupId::as_str).collect();
        let found = store::group_zones(conn, &ctx.project, &wanted).await?;
        validate::all_found_in_zone(FIELD, &wanted, &found, None, "backend group")?;
        Ok(())
    }

    pub async fn create_load_balancer(
        &self,
        ctx: &Ctx,
        req: CreateLoadBalancerRequest,
    ) -> Result<LoadBalancer> {
        validate::dns1123_label("name", &req.name)?;
        validate::listeners("listeners", &req.listeners)?;
        validate::health_check("health_check", &req.health_check)?;
        validate::zone_policy("zone_policy", &req.zone_policy)?;
        validate::tags("tags", &req.tags)?;
        let region: Vec<(String, Ipv4Net)> = self
            .config
            .zones
            .iter()
            .map(|z| (z.name.clone(), z.lb_pool))
            .collect();
        let pools = frontends::zones(req.zones.as_deref(), &region)?;
        let requested = frontends::requested(&req.requested_ips, &pools)?;
        let now = now_ms();
        let mut tx = self.db.begin().await?;
        self.check_backends(&mut tx, ctx, "backends", &req.backends)
            .await?;
        self.check_groups(&mut tx, ctx, &req.backend_groups).await?;
        if let Some(existing) = store::lb_id_by_name(&mut tx, &ctx.project, &req.name).await? {
            return Err(ApiError::AlreadyExists(format!(
                "load balancer name {:?} is in use by {existing}",
                req.name
            )));
        }
        let mut planned = Vec::new();
        for (zone, pool) in &pools {
            let (lo, hi) = usable_range(*pool);
            let wanted = requested.iter().find(|(z, _)| z == zone).map(|(_, ip)| *ip);
            let ip = match wanted {
                Some(ip) => {
                    if store::ip_in_use(&mut tx, store::FRONTEND_ADDRESSES, u32::from(ip)).await? {
                        return Err(ApiError::AlreadyExists(format!(
                            "frontend address {ip} is in use by another load balancer"
                        )));
                    }
                    ip
                }
                None => store::first_free_ip(&mut tx, store::FRONTEND_ADDRESSES, lo, hi)
                    .await?
                    .map(Ipv4Addr::from)
                    .ok_or_else(|| {
                        ApiError::QuotaExceeded(format!(
                            "load-balancer pool {pool} of {zone} has no free address"
                        ))
                    })?,
            };
            planned.push(Frontend {
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
            backend_groups: req.backend_groups,
            frontends: planned,
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
        );
        let out = store::get_lb(&mut tx, &self.config.region, &ctx.project, n.id.as_str()).await?;
        tx.commit().await?;
        let out = out
            .ok_or_else(|| ApiError::not_found("load balancer", &n.id))?
            .lb;
        tracing::info!(lb = %out.id, name = %out.name, frontends = out.frontends.len(), backends = out.backends.len(), backend_groups = out.backend_groups.len(), "load balancer created");
        Ok(out)
    }

    pub(super) async fn load_lb(
        &self,
        conn: &mut sqlx::AnyConnection,
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
        filter: store::NameTagFilter,
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
        // A malformed ID is refused (400) before the body is judged (422).
        parse_id::<LoadBalancerId>(id)?;
        if let Some(l) = &req.listeners {
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
        let groups_changed = req
            .backend_groups
            .as_ref()
            .is_some_and(|g| *g != lb.backend_groups);
        if !spec_changed && !backends_changed && !groups_changed {
            return Ok(cur.lb);
        }
        if let Some(b) = req.backends.as_ref().filter(|_| backends_changed) {
            self.check_backends(&mut tx, ctx, "backends", b).await?;
            store::set_lb_backends(&mut tx, lb.id.as_str(), b).await?;
        }
        if let Some(g) = req.backend_groups.as_ref().filter(|_| groups_changed) {
            self.check_groups(&mut tx, ctx, g).await?;
            store::set_lb_groups(&mut tx, lb.id.as_str(), g).await?;
        }
        store::update_lb(&mut tx, lb.id.as_str(), &spec, &tags, now).await?;
        store::append_event(
            &mut tx,
            &lb_event(&ctx.project, &lb.id, EventKind::Updated, lb.state),
            now,
        );
        let out = self.load_lb(&mut tx, ctx, id).await?;
        tx.commit().await?;
        tracing::info!(lb = %out.lb.id, backends = out.lb.backends.len(), backend_groups = out.lb.backend_groups.len(), "load balancer updated");
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
        );
        tx.commit().await?;
        tracing::info!(lb = %cur.lb.id, "load balancer deleted");
        Ok(())
    }

    /// Replaces the traffic reports data plane `name` publishes (see [`crate::dataplane::DataPlane::publish`]).
    /// Not durable: a report lost in a crash is replaced a second later.
    pub async fn publish_traffic(
        &self,
        name: &str,
        reports: &[TrafficReport],
    ) -> store::Result<()> {
        let mut tx = self.db.begin().await?;
        store::publish_traffic(&mut tx, name, reports, now_ms()).await?;
        tx.commit_unsynced().await
    }

    /// `lb`'s traffic as the data planes running apart publish it: their fresh reports, merged.
    pub async fn published_traffic(&self, lb: &LoadBalancer) -> Result<TrafficReport> {
        let since = now_ms() - PUBLISHED_FRESH_MS;
        let mut conn = self.db.reader().await?;
        let reports = store::published_traffic(&mut conn, lb.id.as_str(), since).await?;
        let groups: Vec<String> = lb.backend_groups.iter().map(|g| g.to_string()).collect();
        let members = store::group_members(&mut conn, &groups).await?;
        let backends: Vec<(String, String)> = with_group_members(lb.clone(), &members)
            .backends
            .iter()
            .map(|b| (b.instance_id.to_string(), b.zone.clone()))
            .collect();
        Ok(crate::domain::traffic::merge(
            lb.id.as_str(),
            &backends,
            &reports,
        ))
    }
}

/// `lb` with the members of its backend groups appended to its backends (each instance once):
/// every instance it sends to. `members` is by group ID.
pub(crate) fn with_group_members(
    mut lb: LoadBalancer,
    members: &std::collections::HashMap<String, Vec<cloud_api::Backend>>,
) -> LoadBalancer {
    if lb.backend_groups.is_empty() {
        return lb;
    }
    let mut seen: HashSet<InstanceId> = lb.backends.iter().map(|b| b.instance_id.clone()).collect();
    for g in &lb.backend_groups {
        for m in members.get(g.as_str()).into_iter().flatten() {
            if seen.insert(m.instance_id.clone()) {
                lb.backends.push(m.clone());
            }
        }
    }
    lb
}

/// A published report older than this (five missed publications) is a data plane that
/// stopped: left out.
const PUBLISHED_FRESH_MS: i64 = 5 * crate::dataplane::PUBLISH_EVERY.as_millis() as i64;
