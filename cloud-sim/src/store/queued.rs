//! Writes a transaction queues for its commit: event-log rows ([`append_event`]) and tag-index
//! rows ([`queue_tags`]). On SQLite the last statement's worth of each goes in the round trip
//! that carries the `COMMIT` (and a request's recorded response), so a create that appends an
//! event and tags its resource spends no round trip of its own on either.
//!
//! Only what nothing in the transaction reads back is queued: the event log is read by long
//! polls and the worker, the tag index by list filters, all outside the writing transaction.

use super::*;

/// A tag-index row waiting in its transaction for the commit.
#[derive(Debug)]
pub(super) struct QueuedTag {
    resource_id: String,
    key: String,
    value: String,
}

/// Queues the tag-index rows of a resource that has none yet; they are written with the
/// commit. (The resource's own row carries its tags too; the index serves tag filters.)
pub fn queue_tags(tx: &mut WriteTx, resource_id: &str, tags: &Tags) {
    tx.queued.tags.extend(tags.iter().map(|(k, v)| QueuedTag {
        resource_id: resource_id.to_owned(),
        key: k.clone(),
        value: v.clone(),
    }));
}

/// Rows of one tag insert at most (3 parameters each). With a full statement of events
/// ([`EVENTS_PER_STATEMENT`], 7 each) and a recorded response in the same round trip, well under
/// SQLite's 32,766 parameters per statement.
const TAGS_PER_STATEMENT: usize = 2_000;

/// What a transaction has queued: see the module documentation.
#[derive(Debug, Default)]
pub(super) struct Queued {
    pub(super) events: Vec<QueuedEvent>,
    tags: Vec<QueuedTag>,
}

impl Queued {
    pub(super) fn is_empty(&self) -> bool {
        self.events.is_empty() && self.tags.is_empty()
    }

    /// Takes all but the last statement's worth of each kind out into `full`, leaving the rest:
    /// the caller writes `full` statement by statement and sends the rest with its last.
    pub(super) fn split_off_full(&mut self) -> Queued {
        fn full<T>(rows: &mut Vec<T>, per: usize) -> Vec<T> {
            let keep = rows.len().saturating_sub(1) / per * per;
            let rest = rows.split_off(keep);
            std::mem::replace(rows, rest)
        }
        Queued {
            events: full(&mut self.events, EVENTS_PER_STATEMENT),
            tags: full(&mut self.tags, TAGS_PER_STATEMENT),
        }
    }

    /// The inserts of what is queued, one per statement's worth, each numbering its
    /// parameters from 1: for engines that take one statement per round trip.
    pub(super) async fn write_each(&self, conn: &mut AnyConnection) -> Result<()> {
        for chunk in self.events.chunks(EVENTS_PER_STATEMENT) {
            let sql = insert_events_sql(chunk.len(), 1);
            bind_events(sqlx::query(sqlx::AssertSqlSafe(sql)), chunk)
                .execute(&mut *conn)
                .await?;
        }
        for chunk in self.tags.chunks(TAGS_PER_STATEMENT) {
            let sql = insert_tags_sql(chunk.len(), 1);
            bind_tags(sqlx::query(sqlx::AssertSqlSafe(sql)), chunk)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    /// The inserts of what is queued (at most a statement's worth of each kind: see
    /// [`Queued::split_off_full`]), numbering their parameters from `first`, to send after
    /// other statements in one round trip; bind with [`Queued::bind`].
    pub(super) fn statements(&self, first: usize) -> Vec<String> {
        debug_assert!(
            self.events.len() <= EVENTS_PER_STATEMENT && self.tags.len() <= TAGS_PER_STATEMENT
        );
        let mut out = Vec::new();
        if !self.events.is_empty() {
            out.push(insert_events_sql(self.events.len(), first));
        }
        if !self.tags.is_empty() {
            out.push(insert_tags_sql(
                self.tags.len(),
                first + 7 * self.events.len(),
            ));
        }
        out
    }

    /// `q` with the parameters of [`Queued::statements`] bound after its own.
    pub(super) fn bind<'q>(
        &'q self,
        q: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>,
    ) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments> {
        bind_tags(bind_events(q, &self.events), &self.tags)
    }
}

/// The insert of `n` tag-index rows (at least one), its parameters numbered from `$first`.
fn insert_tags_sql(n: usize, first: usize) -> String {
    let rows: Vec<String> = (0..n)
        .map(|i| {
            let p = first + 3 * i;
            format!("(${}, ${}, ${})", p, p + 1, p + 2)
        })
        .collect();
    format!(
        "INSERT INTO tags (resource_id, key, value) VALUES {}",
        rows.join(", ")
    )
}

fn bind_tags<'q>(
    mut q: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>,
    tags: &'q [QueuedTag],
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments> {
    for t in tags {
        q = q.bind(&t.resource_id).bind(&t.key).bind(&t.value);
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(events: usize, tags: usize) -> Queued {
        let event = || QueuedEvent::for_tests("i-1");
        let tag = |i: usize| QueuedTag {
            resource_id: "i-1".into(),
            key: format!("k{i}"),
            value: "v".into(),
        };
        Queued {
            events: (0..events).map(|_| event()).collect(),
            tags: (0..tags).map(tag).collect(),
        }
    }

    /// What is split off is whole statements; what stays is 1 to a statement's worth of each
    /// kind that has any.
    #[test]
    fn the_last_statement_of_each_kind_stays() {
        let (e, t) = (EVENTS_PER_STATEMENT, TAGS_PER_STATEMENT);
        for (events, tags, full, kept) in [
            (0, 0, (0, 0), (0, 0)),
            (1, 2, (0, 0), (1, 2)),
            (e, t, (0, 0), (e, t)),
            (e + 1, t + 1, (e, t), (1, 1)),
            (2 * e, 0, (e, 0), (e, 0)),
            (3, 2 * t + 5, (0, 2 * t), (3, 5)),
        ] {
            let mut q = queued(events, tags);
            let split = q.split_off_full();
            assert_eq!(
                (split.events.len(), split.tags.len()),
                full,
                "{events} events, {tags} tags"
            );
            assert_eq!((q.events.len(), q.tags.len()), kept);
        }
    }

    /// The tags' parameters follow the events', which follow the caller's.
    #[test]
    fn statements_number_their_parameters_on() {
        let q = queued(2, 2);
        let s = q.statements(9);
        assert_eq!(s.len(), 2);
        assert!(
            s[0].contains("($9, $10,") && s[0].ends_with("$21, $22)"),
            "{}",
            s[0]
        );
        assert_eq!(
            s[1],
            "INSERT INTO tags (resource_id, key, value) VALUES ($23, $24, $25), ($26, $27, $28)"
        );
        assert!(queued(0, 0).statements(1).is_empty());
        assert_eq!(queued(0, 1).statements(1)[0].matches('$').count(), 3);
    }
}
