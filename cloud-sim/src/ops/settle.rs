//! Delayed transitions the worker settles, and when the next one is due.

use super::*;

impl Cloud {
    /// Moves every due transitional state on (pending -> running, stopping -> stopped,
    /// provisioning -> active). Returns how many resources changed.
    pub async fn settle_due(&self) -> Result<usize> {
        let now = now_ms();
        // Look with a reader first, so the single writer is not taken for nothing (the worker
        // calls this only when it saw something due, but another replica may have settled it
        // since; one that gets here anyway reads nothing due in its transaction below).
        if self.next_deadline().await?.is_none_or(|at| at > now) {
            return Ok(0);
        }
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
            store::append_event(&mut tx, &e, now);
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
            store::append_event(&mut tx, &e, now);
            tracing::debug!(lb = %id, "load balancer active");
            changed += 1;
        }
        if changed == 0 {
            // Committing wakes every waiter on the event signal, this worker among them: an
            // empty pass must not, or the worker and the data plane spin.
            tx.rollback().await?;
            return Ok(0);
        }
        tx.commit().await?;
        Ok(changed)
    }

    /// Deletes terminated instances past their retention and idempotency records past theirs
    /// (both found by index). The worker calls it about once a second, not on every wake-up.
    pub async fn purge_expired(&self) -> Result<()> {
        let now = now_ms();
        let retention =
            i64::try_from(self.config.terminated_retention.as_millis()).unwrap_or(i64::MAX / 2);
        let mut tx = self.db.begin().await?;
        let purged = store::purge_terminated(&mut tx, now - retention).await?;
        let expired =
            store::purge_idempotency(&mut tx, now - crate::domain::idempotency::RETENTION_MS)
                .await?;
        if purged == 0 && expired == 0 {
            tx.rollback().await?;
            return Ok(());
        }
        // Quiet: a purge appends no events (a purged instance was terminated long before).
        tx.commit_quiet().await?;
        if purged > 0 {
            tracing::info!(purged, "purged terminated instances past retention");
        }
        Ok(())
    }

    /// When the next transitional state is due, if any.
    pub async fn next_deadline(&self) -> Result<Option<i64>> {
        let mut conn = self.db.reader().await?;
        Ok(store::next_deadline(&mut conn).await?)
    }
}
