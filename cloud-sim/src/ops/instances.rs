//! Instances: create (address allocation, idempotent names), reads, tags, actions, delete.

use super::*;

impl Cloud {
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
        if !self.is_instance_type(&req.instance_type).await? {
            return Err(Invalid::new(
                "instance_type",
                format!(
                    "{:?} is not an instance type (see /v1/instance-types)",
                    req.instance_type
                ),
            )
            .into());
        }
        let now = now_ms();
        let mut tx = self.db.begin().await?;
        let private_ip = match req.private_ip {
            Some(ip) => {
                self.check_chosen_ip(ip, &zone.name)?;
                if store::ip_in_use(&mut tx, store::INSTANCE_ADDRESSES, u32::from(ip)).await? {
                    return Err(ApiError::AlreadyExists(format!(
                        "private IP {ip} is in use by another instance"
                    )));
                }
                store::NewAddress::Chosen(ip)
            }
            None => {
                let (lo, hi) = usable_range(zone.instance_subnet);
                store::NewAddress::FirstFreeIn { lo, hi }
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
        // A live name is unique by index: the insert finds a clash without a query before it.
        let created = match store::insert_instance(&mut tx, &self.config.region, &n, now).await {
            Ok(Some(created)) => created.instance,
            Ok(None) => {
                return Err(ApiError::QuotaExceeded(format!(
                    "subnet {} of {} has no free address",
                    zone.instance_subnet, zone.name
                )));
            }
            Err(e) if store::is_unique_violation(&e) => {
                // PostgreSQL refuses every statement of a transaction after an error: end it,
                // and name the holder from a reader (it is committed, so readers see it).
                tx.rollback().await?;
                let mut conn = self.db.reader().await?;
                let existing =
                    store::live_instance_by_name(&mut conn, &ctx.project, &n.name).await?;
                return Err(ApiError::AlreadyExists(match existing {
                    Some(id) => format!("instance name {:?} is in use by {id}", n.name),
                    None => match private_ip {
                        store::NewAddress::Chosen(ip) => {
                            format!("private IP {ip} is in use by another instance")
                        }
                        store::NewAddress::FirstFreeIn { .. } => {
                            "the free address found was taken meanwhile; retry".to_owned()
                        }
                    },
                }));
            }
            Err(e) => return Err(e.into()),
        };
        store::append_event(
            &mut tx,
            &instance_event(&ctx.project, &n.id, &n.zone, EventKind::Created, n.state),
            now,
        );
        tx.commit().await?;
        tracing::info!(instance = %created.id, name = %created.name, zone = %created.zone, ip = %created.private_ip, state = %created.state, "instance created");
        Ok(created)
    }

    /// A caller-chosen address must be in the region network, outside every LB pool, and, if it
    /// falls in a zone subnet, in the instance's own zone and not a reserved address.
    pub(super) fn check_chosen_ip(&self, ip: Ipv4Addr, zone: &str) -> Result<()> {
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

    pub(super) async fn load_instance(
        &self,
        conn: &mut sqlx::AnyConnection,
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
        );
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
        );
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
            store::append_event(&mut tx, &e, now);
        }
        store::delete_instance(&mut tx, i.id.as_str()).await?;
        let e = instance_event(
            &ctx.project,
            &i.id,
            &i.zone,
            EventKind::Deleted,
            InstanceState::Terminated,
        );
        store::append_event(&mut tx, &e, now);
        tx.commit().await?;
        tracing::info!(instance = %i.id, "instance deleted");
        Ok(())
    }
}
