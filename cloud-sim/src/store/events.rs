//! The event log: appended in the transaction of every change, read by long polls.

use super::*;

/// A change to record in the event log.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    /// `None` for changes every project may see (zones).
    pub project: Option<&'a str>,
    pub resource_kind: ResourceKind,
    pub resource_id: &'a str,
    pub kind: EventKind,
    pub state: Option<&'a str>,
    pub zone: Option<&'a str>,
}

/// Appends `e` to the log with `tx`: it is written with the commit (on SQLite in the commit's
/// round trip), so an event costs no round trip of its own. Events keep their order.
pub fn append_event(tx: &mut WriteTx, e: &NewEvent<'_>, now: i64) {
    tx.queued.events.push(QueuedEvent {
        project: e.project.map(str::to_owned),
        time: now,
        resource_kind: e.resource_kind.as_str(),
        resource_id: e.resource_id.to_owned(),
        kind: e.kind.as_str(),
        state: e.state.map(str::to_owned),
        zone: e.zone.map(str::to_owned),
    });
}

/// An event waiting in its transaction for the commit.
#[derive(Debug)]
pub(super) struct QueuedEvent {
    project: Option<String>,
    time: i64,
    resource_kind: &'static str,
    resource_id: String,
    kind: &'static str,
    state: Option<String>,
    zone: Option<String>,
}

#[cfg(test)]
impl QueuedEvent {
    pub(super) fn for_tests(resource_id: &str) -> Self {
        Self {
            project: Some("p".into()),
            time: 1,
            resource_kind: ResourceKind::Instance.as_str(),
            resource_id: resource_id.into(),
            kind: EventKind::Created.as_str(),
            state: None,
            zone: None,
        }
    }
}

/// At most this many events go into one statement (7 parameters each; SQLite allows 32,766).
pub(super) const EVENTS_PER_STATEMENT: usize = 1000;

/// The insert of `n` events (at least one), its parameters numbered from `$first`.
pub(super) fn insert_events_sql(n: usize, first: usize) -> String {
    use std::fmt::Write as _;
    let mut sql = String::from(
        "INSERT INTO events (project, time, resource_kind, resource_id, kind, state, zone) VALUES ",
    );
    for i in 0..n {
        let p = first + 7 * i;
        let sep = if i == 0 { "" } else { ", " };
        write!(
            sql,
            "{sep}(${}, ${}, ${}, ${}, ${}, ${}, ${})",
            p,
            p + 1,
            p + 2,
            p + 3,
            p + 4,
            p + 5,
            p + 6
        )
        .expect("writing to a String cannot fail");
    }
    sql
}

/// `q` with the parameters of `events` bound after its own (see [`insert_events_sql`]).
pub(super) fn bind_events<'q>(
    mut q: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>,
    events: &'q [QueuedEvent],
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments> {
    for e in events {
        q = q
            .bind(e.project.as_deref())
            .bind(e.time)
            .bind(e.resource_kind)
            .bind(&e.resource_id)
            .bind(e.kind)
            .bind(e.state.as_deref())
            .bind(e.zone.as_deref());
    }
    q
}

#[derive(sqlx::FromRow)]
struct EventRow {
    seq: i64,
    time: i64,
    resource_kind: String,
    resource_id: String,
    kind: String,
    state: Option<String>,
    zone: Option<String>,
}

fn resource_kind(s: &str) -> Result<ResourceKind> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|e| corrupt("event", e))
}

fn event_kind(s: &str) -> Result<EventKind> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|e| corrupt("event", e))
}

/// Events visible to `project` with `seq > after`, oldest first.
pub async fn events_after(
    conn: &mut AnyConnection,
    project: &str,
    after: i64,
    limit: u32,
) -> Result<Vec<Event>> {
    let rows: Vec<EventRow> = sqlx::query_as(
        "SELECT seq, time, resource_kind, resource_id, kind, state, zone FROM events \
         WHERE seq > $1 AND (project = $2 OR project IS NULL) ORDER BY seq LIMIT $3",
    )
    .bind(after)
    .bind(project)
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(Event {
                seq: r.seq,
                time: ts(r.time),
                resource_kind: resource_kind(&r.resource_kind)?,
                resource_id: r.resource_id,
                kind: event_kind(&r.kind)?,
                state: r.state,
                zone: r.zone,
            })
        })
        .collect()
}

/// The latest sequence number in the log (0 when empty).
pub async fn last_event_seq(conn: &mut AnyConnection) -> Result<i64> {
    let (seq,): (Option<i64>,) = sqlx::query_as("SELECT MAX(seq) FROM events")
        .fetch_one(conn)
        .await?;
    Ok(seq.unwrap_or(0))
}
