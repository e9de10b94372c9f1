//! Backend groups: create, reads, membership and tag updates, delete (refused while in use).

use super::*;

impl Cloud {
    /// Checks members exist in the caller's project and in the group's zone, each listed once.
    /// Members in `current` (already in the group) passed these checks when they were added and
    /// are not looked up again.
    async fn check_members(
        &self,
        conn: &mut sqlx::AnyConnection,
        ctx: &Ctx,
        zone: &str,
        ids: &[InstanceId],
        current: &HashSet<&InstanceId>,
    ) -> Result<()> {
        const FIELD: &str = "members";
        validate::distinct(FIELD, ids, cloud_api::MAX_GROUP_MEMBERS, "instance")?;
        let new: Vec<&str> = ids
            .iter()
            .filter(|id| !current.contains(id))
            .map(InstanceId::as_str)
            .collect();
        let mut found = store::instance_zones_of(conn, &ctx.project, &new).await?;
        found.extend(current.iter().map(|id| (id.to_string(), zone.to_owned())));
        let wanted: Vec<&str> = ids.iter().map(InstanceId::as_str).collect();
        validate::all_found_in_zone(FIELD, &wanted, &found, Some(zone), "instance")?;
        Ok(())
    }

    pub async fn create_backend_group(
        &self,
        ctx: &Ctx,
        req: CreateBackendGroupRequest,
    ) -> Result<BackendGroup> {
        validate::dns1123_label("name", &req.name)?;
        if self.config.zone(&req.zone).is_none() {
            return Err(Invalid::new(
                "zone",
                format!(
                    "{:?} is not a zone of region {}",
                    req.zone, self.config.region
                ),
            )
            .into());
        }
        validate::tags("tags", &req.tags)?;
        let now = now_ms();
        let mut tx = self.db.begin().await?;
        self.check_members(&mut tx, ctx, &req.zone, &req.members, &HashSet::new())
            .await?;
        if let Some(existing) = store::group_id_by_name(&mut tx, &ctx.project, &req.name).await? {
            return Err(ApiError::AlreadyExists(format!(
                "backend group name {:?} is in use by {existing}",
                req.name
            )));
        }
        let n = store::NewGroup {
            id: BackendGroupId::from_bits(random_bits()),
            project: ctx.project.clone(),
            name: req.name,
            zone: req.zone,
            members: req.members,
            tags: req.tags,
        };
        store::insert_group(&mut tx, &n, now).await.map_err(|e| {
            if store::is_unique_violation(&e) {
                ApiError::AlreadyExists(format!("backend group name {:?} is in use", n.name))
            } else {
                e.into()
            }
        })?;
        store::append_event(
            &mut tx,
            &group_event(&ctx.project, &n.id, &n.zone, EventKind::Created),
            now,
        );
        let out = self.load_group(&mut tx, ctx, n.id.as_str()).await?.group;
        tx.commit().await?;
        tracing::info!(group = %out.id, name = %out.name, zone = %out.zone, members = out.members.len(), "backend group created");
        Ok(out)
    }

    async fn load_group(
        &self,
        conn: &mut sqlx::AnyConnection,
        ctx: &Ctx,
        id: &str,
    ) -> Result<store::StoredGroup> {
        let id = parse_id::<BackendGroupId>(id)?;
        store::get_group(conn, &self.config.region, &ctx.project, id.as_str())
            .await?
            .ok_or_else(|| ApiError::not_found("backend group", id))
    }

    pub async fn get_backend_group(&self, ctx: &Ctx, id: &str) -> Result<BackendGroup> {
        let mut conn = self.db.reader().await?;
        Ok(self.load_group(&mut conn, ctx, id).await?.group)
    }

    pub async fn list_backend_groups(
        &self,
        ctx: &Ctx,
        filter: store::NameTagFilter,
        params: &ListParams,
    ) -> Result<Page<BackendGroup>> {
        let size = page_size(params.page_size);
        let tag = filter.tag.as_ref().map(|(k, v)| format!("{k}={v}"));
        let fp = fingerprint(&[
            Some("backend-groups"),
            filter.name.as_deref(),
            tag.as_deref(),
        ]);
        let after = decode_token(params, fp)?;
        let mut conn = self.db.reader().await?;
        let rows = store::list_groups(
            &mut conn,
            &self.config.region,
            &ctx.project,
            &filter,
            after,
            size + 1,
        )
        .await?;
        Ok(paginate(rows, size, fp, |r| r.seq, |r| r.group))
    }

    /// Replaces the members and/or tags. Only the difference in members is written; a request
    /// that changes nothing changes nothing (not even the etag).
    pub async fn update_backend_group(
        &self,
        ctx: &Ctx,
        id: &str,
        if_match: Option<&str>,
        req: UpdateBackendGroupRequest,
    ) -> Result<BackendGroup> {
        // A malformed ID is refused (400) before the body is judged (422).
        parse_id::<BackendGroupId>(id)?;
        if let Some(t) = &req.tags {
            validate::tags("tags", t)?;
        }
        let now = now_ms();
        let mut tx = self.db.begin().await?;
        let cur = self.load_group(&mut tx, ctx, id).await?.group;
        check_etag(if_match, &cur.etag)?;
        let mut changed = false;
        if let Some(members) = &req.members {
            let have: HashSet<&InstanceId> = cur.members.iter().map(|b| &b.instance_id).collect();
            self.check_members(&mut tx, ctx, &cur.zone, members, &have)
                .await?;
            changed |= store::set_group_members(&mut tx, cur.id.as_str(), members).await?;
        }
        let tags = req.tags.unwrap_or_else(|| cur.tags.clone());
        changed |= tags != cur.tags;
        if !changed {
            return Ok(cur);
        }
        store::update_group(&mut tx, cur.id.as_str(), &tags, now).await?;
        store::append_event(
            &mut tx,
            &group_event(&ctx.project, &cur.id, &cur.zone, EventKind::Updated),
            now,
        );
        let out = self.load_group(&mut tx, ctx, id).await?.group;
        tx.commit().await?;
        tracing::info!(group = %out.id, members = out.members.len(), "backend group updated");
        Ok(out)
    }

    /// Deletes a group no load balancer uses (`409 CONFLICT` names those that do).
    pub async fn delete_backend_group(
        &self,
        ctx: &Ctx,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<()> {
        let now = now_ms();
        let mut tx = self.db.begin().await?;
        let cur = self.load_group(&mut tx, ctx, id).await?.group;
        check_etag(if_match, &cur.etag)?;
        let users = store::lbs_using_group(&mut tx, cur.id.as_str()).await?;
        if !users.is_empty() {
            return Err(ApiError::Conflict(format!(
                "backend group {} is in use by load balancer{} {}",
                cur.id,
                if users.len() == 1 { "" } else { "s" },
                users.join(", ")
            )));
        }
        store::delete_group(&mut tx, cur.id.as_str()).await?;
        store::append_event(
            &mut tx,
            &group_event(&ctx.project, &cur.id, &cur.zone, EventKind::Deleted),
            now,
        );
        tx.commit().await?;
        tracing::info!(group = %cur.id, "backend group deleted");
        Ok(())
    }
}

fn group_event<'a>(
    project: &'a str,
    id: &'a BackendGroupId,
    zone: &'a str,
    kind: EventKind,
) -> NewEvent<'a> {
    NewEvent {
        project: Some(project),
        resource_kind: ResourceKind::BackendGroup,
        resource_id: id.as_str(),
        kind,
        state: None,
        zone: Some(zone),
    }
}
