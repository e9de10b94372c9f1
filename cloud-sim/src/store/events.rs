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

pub async fn append_event(conn: &mut AnyConnection, e: &NewEvent<'_>, now: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO events (project, time, resource_kind, resource_id, kind, state, zone) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(e.project)
    .bind(now)
    .bind(e.resource_kind.as_str())
    .bind(e.resource_id)
    .bind(e.kind.as_str())
    .bind(e.state)
    .bind(e.zone)
    .execute(conn)
    .await?;
    Ok(())
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
