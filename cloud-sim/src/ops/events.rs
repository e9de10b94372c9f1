//! The event log, with long polls.

use super::*;

impl Cloud {
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
}
