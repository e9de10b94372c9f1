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
        store::append_event(&mut tx, &e, now).await?;
        tx.commit().await?;
        tracing::info!(zone = name, state = state.as_str(), "zone state set");
        self.zone(name).await
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
