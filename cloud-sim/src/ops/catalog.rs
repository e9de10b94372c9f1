//! The region, its zones (and their state) and instance types.

use super::*;

impl Cloud {
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
        store::append_event(&mut tx, &e, now);
        tx.commit().await?;
        tracing::info!(zone = name, state = state.as_str(), "zone state set");
        self.zone(name).await
    }

    /// What the caller's project has in each zone (`GET /v1/usage`).
    pub async fn usage(&self, ctx: &Ctx) -> Result<Usage> {
        let region = self.region().await?;
        let mut conn = self.db.reader().await.map_err(ApiError::from)?;
        let counts = store::zone_counts(&mut conn, &ctx.project).await?;
        Ok(usage(&region.zones, &counts))
    }

    pub async fn instance_types(&self) -> Result<Vec<InstanceType>> {
        let mut conn = self.db.reader().await.map_err(ApiError::from)?;
        Ok(store::instance_types(&mut conn).await?)
    }

    /// Whether `name` is an instance type.
    pub(super) async fn is_instance_type(&self, name: &str) -> Result<bool> {
        let names = self
            .type_names
            .get_or_try_init(|| async {
                let types = self.instance_types().await?;
                Ok::<_, ApiError>(types.into_iter().map(|t| t.name).collect())
            })
            .await?;
        Ok(names.contains(name))
    }
}

/// Folds per-zone counts into one [`ZoneUsage`] per zone of the region, in its order.
fn usage(zones: &[Zone], counts: &store::ZoneCounts) -> Usage {
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    let zones = zones
        .iter()
        .map(|z| {
            let sum = |rows: &[(String, i64)]| {
                rows.iter()
                    .filter(|(zone, _)| *zone == z.name)
                    .map(|(_, n)| count(*n))
                    .sum()
            };
            ZoneUsage {
                zone: z.name.clone(),
                state: z.state,
                instances: counts
                    .instances
                    .iter()
                    .filter(|(zone, _, _)| *zone == z.name)
                    .map(|(_, state, n)| (state.clone(), count(*n)))
                    .collect(),
                backends: sum(&counts.backends),
                frontends: sum(&counts.frontends),
            }
        })
        .collect();
    Usage { zones }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(name: &str, state: ZoneState) -> Zone {
        Zone {
            name: name.into(),
            region: "r".into(),
            state,
            instance_subnet: "127.1.1.0/24".parse().unwrap(),
            lb_pool: "127.64.1.0/24".parse().unwrap(),
        }
    }

    #[test]
    fn usage_has_every_zone_in_region_order_with_its_own_counts() {
        let zones = [
            zone("zone-b", ZoneState::Available),
            zone("zone-a", ZoneState::Outage),
            zone("zone-c", ZoneState::Impaired),
        ];
        let counts = store::ZoneCounts {
            instances: vec![
                ("zone-a".into(), "running".into(), 3),
                ("zone-a".into(), "stopped".into(), 1),
                ("zone-b".into(), "running".into(), 2),
                ("zone-x".into(), "running".into(), 9),
            ],
            backends: vec![("zone-a".into(), 4), ("zone-b".into(), 2)],
            frontends: vec![("zone-b".into(), 5)],
        };
        let u = usage(&zones, &counts);
        let names: Vec<_> = u.zones.iter().map(|z| z.zone.as_str()).collect();
        assert_eq!(names, ["zone-b", "zone-a", "zone-c"]);
        let a = &u.zones[1];
        assert_eq!(a.state, ZoneState::Outage);
        assert_eq!(a.instances.get("running"), Some(&3));
        assert_eq!(a.instances.get("stopped"), Some(&1));
        assert_eq!((a.backends, a.frontends), (4, 0));
        let c = &u.zones[2];
        assert!(c.instances.is_empty());
        assert_eq!((c.backends, c.frontends), (0, 0));
        assert_eq!(u.zones[0].frontends, 5);
    }
}
