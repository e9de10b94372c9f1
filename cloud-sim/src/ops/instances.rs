//! Instances: create (address allocation, idempotent names), reads, tags, actions, delete.

use std::collections::HashMap;

use super::*;

impl Cloud {
    pub async fn create_instance(&self, ctx: &Ctx, req: CreateInstanceRequest) -> Result<Instance> {
        let (zone, address) = self.check_create(&req).await?;
        self.zonal_faults(ctx, &zone.name).await?;
        let now = now_ms();
        let n = self.new_instance(ctx, req, &zone, address, now);
        // The transaction begins with the insert: one round trip to the database for both.
        let (mut tx, inserted) =
            match store::begin_inserting_instance(&self.db, &self.config.region, &n, now).await {
                Ok(begun) => begun,
                Err(e) => return Err(self.insert_failed(ctx, &n, e).await),
            };
        let Some(created) = inserted else {
            tx.rollback().await?;
            return Err(self.subnet_full(&n));
        };
        let created = self.queue_created(&mut tx, ctx, &n, created, now);
        tx.commit().await?;
        tracing::info!(instance = %created.id, name = %created.name, zone = %created.zone, ip = %created.private_ip, state = %created.state, "instance created");
        Ok(created)
    }

    /// Creates every instance of `reqs` in one transaction, or none: the first that cannot be
    /// made fails the batch, its error naming it (`instances[i]`). The writer is held for one
    /// insert per instance plus a few statements, against three round trips and a wait for
    /// the disk per instance when they come one by one.
    pub async fn batch_create_instances(
        &self,
        ctx: &Ctx,
        reqs: Vec<CreateInstanceRequest>,
    ) -> Result<Vec<Instance>> {
        check_batch(&reqs)?;
        let mut checked = Vec::with_capacity(reqs.len());
        for (i, req) in reqs.iter().enumerate() {
            checked.push(self.check_create(req).await.map_err(within(i))?);
        }
        // A zone's fault rules apply once per request that touches it, not once per instance
        // (a latency rule would otherwise sleep a hundred times for a batch of a hundred).
        let zones: std::collections::BTreeSet<&str> =
            checked.iter().map(|(z, _)| z.name.as_str()).collect();
        for zone in zones {
            self.zonal_faults(ctx, zone).await?;
        }
        let now = now_ms();
        let mut tx = self.db.begin().await?;
        let news: Vec<store::NewInstance> = reqs
            .into_iter()
            .zip(checked)
            .map(|(req, (zone, address))| self.new_instance(ctx, req, &zone, address, now))
            .collect();
        let mut created = Vec::with_capacity(news.len());
        for (i, n) in news.iter().enumerate() {
            match store::insert_instance_row(&mut tx, &self.config.region, n, now).await {
                Ok(Some(made)) => created.push(self.queue_created(&mut tx, ctx, n, made, now)),
                Ok(None) => {
                    tx.rollback().await?;
                    return Err(within(i)(self.subnet_full(n)));
                }
                Err(e) => {
                    tx.rollback().await?;
                    return Err(within(i)(self.insert_failed(ctx, n, e).await));
                }
            }
        }
        tx.commit().await?;
        tracing::info!(
            count = created.len(),
            first = %created[0].name,
            last = %created[created.len() - 1].name,
            "instances created in a batch"
        );
        Ok(created)
    }

    /// What a create needs checked before the store sees it (name, zone, tags, type, a chosen
    /// address's place): its zone and the address it is to take.
    async fn check_create(
        &self,
        req: &CreateInstanceRequest,
    ) -> Result<(crate::config::ZoneConfig, store::NewAddress)> {
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
        let address = match req.private_ip {
            Some(ip) => {
                self.check_chosen_ip(ip, &zone.name)?;
                store::NewAddress::Chosen(ip)
            }
            None => {
                let (lo, hi) = usable_range(zone.instance_subnet);
                store::NewAddress::FirstFreeIn { lo, hi }
            }
        };
        Ok((zone, address))
    }

    fn new_instance(
        &self,
        ctx: &Ctx,
        req: CreateInstanceRequest,
        zone: &crate::config::ZoneConfig,
        private_ip: store::NewAddress,
        now: i64,
    ) -> store::NewInstance {
        let boot = deadline(self.config.instance_boot_delay, now);
        store::NewInstance {
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
        }
    }

    /// Queues the tags and the `created` event of `n`, just inserted as `created`, for the
    /// commit.
    fn queue_created(
        &self,
        tx: &mut store::WriteTx,
        ctx: &Ctx,
        n: &store::NewInstance,
        created: store::StoredInstance,
        now: i64,
    ) -> Instance {
        store::queue_tags(tx, n.id.as_str(), &n.tags);
        store::append_event(
            tx,
            &instance_event(&ctx.project, &n.id, &n.zone, EventKind::Created, n.state),
            now,
        );
        created.instance
    }

    /// The error for an instance that was to take a free address of a subnet that has none.
    fn subnet_full(&self, n: &store::NewInstance) -> ApiError {
        let zone = self.config.zone(&n.zone).expect("checked before");
        ApiError::QuotaExceeded(format!(
            "subnet {} of {} has no free address",
            zone.instance_subnet, zone.name
        ))
    }

    /// The error for an insert of `n` that failed (its transaction ended): a unique index's
    /// refusal explained, naming the instance holding the name, or the address; any other
    /// error as it is.
    async fn insert_failed(
        &self,
        ctx: &Ctx,
        n: &store::NewInstance,
        e: store::StoreError,
    ) -> ApiError {
        if !store::is_unique_violation(&e) {
            return e.into();
        }
        // Read after the end of the transaction: the holder is committed, so a reader sees it.
        let existing = match self.db.reader().await {
            Ok(mut conn) => store::live_instance_by_name(&mut conn, &ctx.project, &n.name).await,
            Err(e) => Err(e),
        };
        match existing {
            Err(e) => e.into(),
            Ok(Some(id)) => {
                ApiError::AlreadyExists(format!("instance name {:?} is in use by {id}", n.name))
            }
            Ok(None) => ApiError::AlreadyExists(match n.private_ip {
                store::NewAddress::Chosen(ip) => {
                    format!("private IP {ip} is in use by another instance")
                }
                store::NewAddress::FirstFreeIn { .. } => {
                    "the free address found was taken meanwhile; retry".to_owned()
                }
            }),
        }
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
        let ids = filter.ids.join(",");
        let fp = fingerprint(&[
            Some("instances"),
            filter.zone.as_deref(),
            state,
            filter.name.as_deref(),
            tag.as_deref(),
            (!ids.is_empty()).then_some(ids.as_str()),
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
        // A malformed ID is refused (400) before the body is judged (422).
        parse_id::<InstanceId>(id)?;
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

/// A batch's shape: 1 to [`cloud_api::MAX_BATCH_CREATE`] creates, no name or chosen address
/// twice (the second would fail on the first's row; saying so up front names both).
fn check_batch(reqs: &[CreateInstanceRequest]) -> std::result::Result<(), Invalid> {
    let max = cloud_api::MAX_BATCH_CREATE;
    if reqs.is_empty() || reqs.len() > max {
        return Err(Invalid::new(
            "instances",
            format!("a batch creates 1 to {max} instances, got {}", reqs.len()),
        ));
    }
    let (mut names, mut ips) = (HashMap::new(), HashMap::new());
    for (i, req) in reqs.iter().enumerate() {
        if let Some(first) = names.insert(req.name.as_str(), i) {
            return Err(Invalid::new(
                format!("instances[{i}].name"),
                format!("{:?} is also the name of instances[{first}]", req.name),
            ));
        }
        if let Some(ip) = req.private_ip
            && let Some(first) = ips.insert(ip, i)
        {
            return Err(Invalid::new(
                format!("instances[{i}].private_ip"),
                format!("{ip} is also the address of instances[{first}]"),
            ));
        }
    }
    Ok(())
}

/// Names the batch member an error is about: a field error's field gets `instances[i].` before
/// it; any other error is left as it is (its message names the instance or address).
fn within(i: usize) -> impl Fn(ApiError) -> ApiError {
    move |e| match e {
        ApiError::Invalid { field, reason } => ApiError::Invalid {
            field: format!("instances[{i}].{field}"),
            reason,
        },
        e => e,
    }
}
