//! Route tables and their routes.

use super::*;

impl Cloud {
    pub(super) fn check_table(table: &str) -> Result<()> {
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
        let (mut tx, checks) = store::begin_route_create(
            &self.db,
            &ctx.project,
            table,
            &req.name,
            req.target_instance_id.as_str(),
            &dest,
        )
        .await?;
        let target_state = match checks.target_state {
            Some(state) if lifecycle::is_live(state) => state,
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
        };
        if let Some(id) = checks.name_taken_by {
            return Err(ApiError::AlreadyExists(format!(
                "route name {:?} is in use by {id}",
                req.name
            )));
        }
        let quota = self.config.route_quota;
        if !store::take_route_place(&mut tx, &ctx.project, table, quota).await? {
            return Err(ApiError::QuotaExceeded(format!(
                "route table {table} holds its quota of {quota} routes"
            )));
        }
        // Only the routes the index finds near `dest` (a table of 10,000 routes used to be read
        // whole, inside the write transaction, for every new route).
        for (id, name, cidr) in &checks.near {
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
        let out = store::insert_route(&mut tx, &n, target_state, now)
            .await?
            .route;
        let e = NewEvent {
            project: Some(&ctx.project),
            resource_kind: ResourceKind::Route,
            resource_id: n.id.as_str(),
            kind: EventKind::Created,
            state: None,
            zone: None,
        };
        store::append_event(&mut tx, &e, now);
        tx.commit().await?;
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
        store::delete_route(&mut tx, &ctx.project, table, id.as_str()).await?;
        let e = NewEvent {
            project: Some(&ctx.project),
            resource_kind: ResourceKind::Route,
            resource_id: id.as_str(),
            kind: EventKind::Deleted,
            state: None,
            zone: None,
        };
        store::append_event(&mut tx, &e, now);
        tx.commit().await?;
        tracing::info!(route = %id, "route deleted");
        Ok(())
    }
}
