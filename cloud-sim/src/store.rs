//! All SQL. Functions take a connection (or a [`Db`] for reads) and return domain values; they
//! never see axum types and never decide policy.
//!
//! SQLite allows one writer at a time, so writes go through a pool of exactly one connection:
//! transactions then never fail with `SQLITE_BUSY`, and check-then-insert inside a write
//! transaction is race-free. Reads use their own pool (WAL lets them run beside the writer).
//! `sqlite::memory:` databases use one connection for both, since each connection would
//! otherwise see its own empty database.

use std::net::Ipv4Addr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use cloud_api::{
    Backend, Event, EventKind, Frontend, HealthCheck, Instance, InstanceId, InstanceState,
    InstanceType, IpMode, Listener, LoadBalancer, LoadBalancerId, LoadBalancerState, ResourceKind,
    Route, RouteId, RouteState, Scheme, Tags, ZonePolicy, ZoneState,
};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqliteConnection, SqlitePool, Transaction};
use tokio::sync::Notify;

/// A failure of the database layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {url}")]
    Open {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot apply migrations")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database query failed")]
    Query(#[from] sqlx::Error),
    #[error("stored {what} is corrupt: {detail}")]
    Corrupt { what: &'static str, detail: String },
}

fn corrupt(what: &'static str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what,
        detail: detail.to_string(),
    }
}

/// True when `e` is a unique-constraint violation: the database's last word on duplicates.
pub fn is_unique_violation(e: &StoreError) -> bool {
    matches!(e, StoreError::Query(sqlx::Error::Database(d)) if d.is_unique_violation())
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The database: a single-connection write pool, a read pool, and a signal for new events.
#[derive(Debug, Clone)]
pub struct Db {
    write: SqlitePool,
    read: SqlitePool,
    events: Arc<Notify>,
}

/// Current time in Unix milliseconds.
pub fn now_ms() -> i64 {
    Timestamp::now().as_millisecond()
}

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn ip_to_db(ip: Ipv4Addr) -> i64 {
    i64::from(u32::from(ip))
}

fn ip_from_db(v: i64) -> Result<Ipv4Addr> {
    u32::try_from(v)
        .map(Ipv4Addr::from)
        .map_err(|_| corrupt("address", v))
}

fn parse<T: FromStr>(what: &'static str, s: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e| corrupt(what, e))
}

fn from_json<T: serde::de::DeserializeOwned>(what: &'static str, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| corrupt(what, e))
}

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data serializes")
}

impl Db {
    /// Opens (creating if needed) the database at `url` and applies migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        let open = |source| StoreError::Open {
            url: url.to_owned(),
            source,
        };
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(open)?
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let memory = url.contains(":memory:") || url.contains("mode=memory");
        let (write, read) = if memory {
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(opts)
                .await
                .map_err(open)?;
            (pool.clone(), pool)
        } else {
            // FULL: a commit is on disk before the client hears 2xx, even across power loss.
            let opts = opts
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full);
            let write = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(opts.clone())
                .await
                .map_err(open)?;
            let read = SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(opts.read_only(true))
                .await
                .map_err(open)?;
            (write, read)
        };
        sqlx::migrate!("./migrations").run(&write).await?;
        Ok(Self {
            write,
            read,
            events: Arc::new(Notify::new()),
        })
    }

    /// Starts a write transaction. Commit it with [`WriteTx::commit`].
    pub async fn begin(&self) -> Result<WriteTx> {
        Ok(WriteTx {
            tx: self.write.begin().await?,
            events: self.events.clone(),
        })
    }

    /// A connection for reads.
    pub async fn reader(&self) -> Result<sqlx::pool::PoolConnection<Sqlite>> {
        Ok(self.read.acquire().await?)
    }

    /// Resolves when events may have been appended since the future was enabled.
    pub fn events_signal(&self) -> &Notify {
        &self.events
    }

    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }
}

/// A write transaction; committing it wakes event-log waiters.
pub struct WriteTx {
    tx: Transaction<'static, Sqlite>,
    events: Arc<Notify>,
}

impl WriteTx {
    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        self.events.notify_waiters();
        Ok(())
    }

    /// Commits without waking event-log waiters: for writes that append no events and change
    /// nothing the data plane or the worker follow (idempotency records).
    pub async fn commit_quiet(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }

    /// Undoes the transaction without waking anyone.
    pub async fn rollback(self) -> Result<()> {
        self.tx.rollback().await?;
        Ok(())
    }
}

impl std::ops::Deref for WriteTx {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.tx
    }
}

// ---------------------------------------------------------------------------------------------
// Tags and events (shared by every resource)

async fn replace_tags(conn: &mut SqliteConnection, resource_id: &str, tags: &Tags) -> Result<()> {
    sqlx::query("DELETE FROM tags WHERE resource_id = $1")
        .bind(resource_id)
        .execute(&mut *conn)
        .await?;
    for (k, v) in tags {
        sqlx::query("INSERT INTO tags (resource_id, key, value) VALUES ($1, $2, $3)")
            .bind(resource_id)
            .bind(k)
            .bind(v)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

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

pub async fn append_event(conn: &mut SqliteConnection, e: &NewEvent<'_>, now: i64) -> Result<()> {
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
    conn: &mut SqliteConnection,
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
pub async fn last_event_seq(conn: &mut SqliteConnection) -> Result<i64> {
    let (seq,): (Option<i64>,) = sqlx::query_as("SELECT MAX(seq) FROM events")
        .fetch_one(conn)
        .await?;
    Ok(seq.unwrap_or(0))
}

// ---------------------------------------------------------------------------------------------
// Zones and instance types

pub async fn zone_states(conn: &mut SqliteConnection) -> Result<Vec<(String, ZoneState)>> {
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT zone, state FROM zone_states")
        .fetch_all(conn)
        .await?;
    rows.into_iter()
        .map(|(z, s)| Ok((z, parse("zone state", &s)?)))
        .collect()
}

pub async fn set_zone_state(
    conn: &mut SqliteConnection,
    zone: &str,
    state: ZoneState,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO zone_states (zone, state, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (zone) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
    )
    .bind(zone)
    .bind(state.as_str())
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn instance_types(conn: &mut SqliteConnection) -> Result<Vec<InstanceType>> {
    let rows: Vec<(String, i64, i64)> =
        sqlx::query_as("SELECT name, vcpus, memory_mib FROM instance_types ORDER BY vcpus, name")
            .fetch_all(conn)
            .await?;
    rows.into_iter()
        .map(|(name, vcpus, mem)| {
            Ok(InstanceType {
                name,
                vcpus: u32::try_from(vcpus).map_err(|e| corrupt("instance type", e))?,
                memory_mib: u64::try_from(mem).map_err(|e| corrupt("instance type", e))?,
            })
        })
        .collect()
}

pub async fn instance_type(
    conn: &mut SqliteConnection,
    name: &str,
) -> Result<Option<InstanceType>> {
    Ok(instance_types(conn)
        .await?
        .into_iter()
        .find(|t| t.name == name))
}

// ---------------------------------------------------------------------------------------------
// Instances

/// An instance as stored, with the project it belongs to.
#[derive(Debug, Clone)]
pub struct StoredInstance {
    pub seq: i64,
    pub project: String,
    pub instance: Instance,
    pub version: i64,
    pub state_deadline: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct InstanceRow {
    seq: i64,
    id: String,
    project: String,
    name: String,
    zone: String,
    instance_type: String,
    state: String,
    private_ip: i64,
    tags: String,
    version: i64,
    created_at: i64,
    updated_at: i64,
    terminated_at: Option<i64>,
    state_deadline: Option<i64>,
}

const INSTANCE_COLUMNS: &str = "seq, id, project, name, zone, instance_type, state, private_ip, tags, \
     version, created_at, updated_at, terminated_at, state_deadline";

impl InstanceRow {
    fn into_stored(self, region: &str) -> Result<StoredInstance> {
        let id: InstanceId = parse("instance id", &self.id)?;
        let provider_id = cloud_api::ProviderId::new(self.zone.clone(), id.clone()).to_string();
        Ok(StoredInstance {
            seq: self.seq,
            project: self.project,
            version: self.version,
            state_deadline: self.state_deadline,
            instance: Instance {
                id,
                name: self.name,
                zone: self.zone,
                region: region.to_owned(),
                instance_type: self.instance_type,
                state: parse("instance state", &self.state)?,
                private_ip: ip_from_db(self.private_ip)?,
                provider_id,
                tags: from_json("instance tags", &self.tags)?,
                created_at: ts(self.created_at),
                updated_at: ts(self.updated_at),
                terminated_at: self.terminated_at.map(ts),
                etag: self.version.to_string(),
            },
        })
    }
}

/// What to insert for a new instance (validated by the caller).
#[derive(Debug, Clone)]
pub struct NewInstance {
    pub id: InstanceId,
    pub project: String,
    pub name: String,
    pub zone: String,
    pub instance_type: String,
    pub state: InstanceState,
    pub private_ip: Ipv4Addr,
    pub tags: Tags,
    pub state_deadline: Option<i64>,
}

pub async fn insert_instance(conn: &mut SqliteConnection, n: &NewInstance, now: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO instances (id, project, name, zone, instance_type, state, private_ip, tags, version, \
         created_at, updated_at, terminated_at, state_deadline) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $9, NULL, $10)",
    )
    .bind(n.id.as_str())
    .bind(&n.project)
    .bind(&n.name)
    .bind(&n.zone)
    .bind(&n.instance_type)
    .bind(n.state.as_str())
    .bind(ip_to_db(n.private_ip))
    .bind(to_json(&n.tags))
    .bind(now)
    .bind(n.state_deadline)
    .execute(&mut *conn)
    .await?;
    replace_tags(conn, n.id.as_str(), &n.tags).await
}

/// The instance, if it exists and belongs to `project` (`None` for any project).
pub async fn get_instance(
    conn: &mut SqliteConnection,
    region: &str,
    project: Option<&str>,
    id: &str,
) -> Result<Option<StoredInstance>> {
    let sql = format!(
        "SELECT {INSTANCE_COLUMNS} FROM instances WHERE id = $1 AND ($2 IS NULL OR project = $2)"
    );
    let row: Option<InstanceRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(project)
        .fetch_optional(conn)
        .await?;
    row.map(|r| r.into_stored(region)).transpose()
}

/// The live (not terminated) instance with this name in the project.
pub async fn live_instance_by_name(
    conn: &mut SqliteConnection,
    project: &str,
    name: &str,
) -> Result<Option<String>> {
    let row: Option<(String,)> = sqlx::query_as(
        "SELECT id FROM instances WHERE project = $1 AND name = $2 AND state <> 'terminated'",
    )
    .bind(project)
    .bind(name)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| r.0))
}

/// Filters of an instance list; all optional.
#[derive(Debug, Clone, Default)]
pub struct InstanceFilter {
    pub zone: Option<String>,
    pub state: Option<InstanceState>,
    pub name: Option<String>,
    pub tag: Option<(String, String)>,
}

/// Up to `limit` instances of `project` with `seq > after` matching `f`, in creation order.
pub async fn list_instances(
    conn: &mut SqliteConnection,
    region: &str,
    project: &str,
    f: &InstanceFilter,
    after: i64,
    limit: u32,
) -> Result<Vec<StoredInstance>> {
    let sql = format!(
        "SELECT {INSTANCE_COLUMNS} FROM instances i WHERE project = $1 AND seq > $2 \
         AND ($3 IS NULL OR zone = $3) AND ($4 IS NULL OR state = $4) AND ($5 IS NULL OR name = $5) \
         AND ($6 IS NULL OR EXISTS (SELECT 1 FROM tags t WHERE t.resource_id = i.id AND t.key = $6 AND t.value = $7)) \
         ORDER BY seq LIMIT $8"
    );
    let (tk, tv) = f.tag.clone().unzip();
    let rows: Vec<InstanceRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(project)
        .bind(after)
        .bind(&f.zone)
        .bind(f.state.map(|s| s.as_str()))
        .bind(&f.name)
        .bind(tk)
        .bind(tv)
        .bind(i64::from(limit))
        .fetch_all(conn)
        .await?;
    rows.into_iter().map(|r| r.into_stored(region)).collect()
}

/// Sets an instance's state (and the deadline at which a transitional state settles).
pub async fn set_instance_state(
    conn: &mut SqliteConnection,
    id: &str,
    state: InstanceState,
    deadline: Option<i64>,
    now: i64,
) -> Result<()> {
    let terminated_at = (state == InstanceState::Terminated).then_some(now);
    sqlx::query(
        "UPDATE instances SET state = $2, state_deadline = $3, updated_at = $4, version = version + 1, \
         terminated_at = COALESCE(terminated_at, $5) WHERE id = $1",
    )
    .bind(id)
    .bind(state.as_str())
    .bind(deadline)
    .bind(now)
    .bind(terminated_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn set_instance_tags(
    conn: &mut SqliteConnection,
    id: &str,
    tags: &Tags,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE instances SET tags = $2, updated_at = $3, version = version + 1 WHERE id = $1",
    )
    .bind(id)
    .bind(to_json(tags))
    .bind(now)
    .execute(&mut *conn)
    .await?;
    replace_tags(conn, id, tags).await
}

pub async fn delete_instance(conn: &mut SqliteConnection, id: &str) -> Result<()> {
    sqlx::query("DELETE FROM instances WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM tags WHERE resource_id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// The lowest address in `[lo, hi]` no live instance holds, found in SQL (one row back, whatever
/// the number of instances): the candidates are `lo` and the address after each live one.
pub async fn first_free_instance_ip(
    conn: &mut SqliteConnection,
    lo: u32,
    hi: u32,
) -> Result<Option<u32>> {
    let row: Option<(i64,)> = sqlx::query_as(
        "SELECT c FROM (SELECT $1 AS c UNION ALL SELECT private_ip + 1 FROM instances \
         WHERE state <> 'terminated' AND private_ip BETWEEN $1 AND $2) \
         WHERE c <= $2 AND NOT EXISTS (SELECT 1 FROM instances i \
         WHERE i.state <> 'terminated' AND i.private_ip = c) \
         ORDER BY c LIMIT 1",
    )
    .bind(i64::from(lo))
    .bind(i64::from(hi))
    .fetch_optional(conn)
    .await?;
    row.map(|(v,)| u32::try_from(v).map_err(|e| corrupt("address", e)))
        .transpose()
}

/// Whether a live instance holds `ip`.
pub async fn instance_ip_in_use(conn: &mut SqliteConnection, ip: u32) -> Result<bool> {
    let row: Option<(i64,)> = sqlx::query_as(
        "SELECT 1 FROM instances WHERE state <> 'terminated' AND private_ip = $1 LIMIT 1",
    )
    .bind(i64::from(ip))
    .fetch_optional(conn)
    .await?;
    Ok(row.is_some())
}

/// Instances whose transitional state is due to settle at `now`, with their projects.
pub async fn due_instances(
    conn: &mut SqliteConnection,
    now: i64,
) -> Result<Vec<(String, String, String, InstanceState)>> {
    let rows: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT id, project, zone, state FROM instances WHERE state_deadline IS NOT NULL AND state_deadline <= $1 ORDER BY state_deadline",
    )
    .bind(now)
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|(id, p, z, s)| Ok((id, p, z, parse("instance state", &s)?)))
        .collect()
}

/// The earliest pending deadline of any instance or load balancer.
pub async fn next_deadline(conn: &mut SqliteConnection) -> Result<Option<i64>> {
    let (a,): (Option<i64>,) = sqlx::query_as(
        "SELECT MIN(state_deadline) FROM instances WHERE state_deadline IS NOT NULL",
    )
    .fetch_one(&mut *conn)
    .await?;
    let (b,): (Option<i64>,) = sqlx::query_as(
        "SELECT MIN(state_deadline) FROM load_balancers WHERE state_deadline IS NOT NULL",
    )
    .fetch_one(conn)
    .await?;
    Ok(a.into_iter().chain(b).min())
}

/// Deletes terminated instances whose retention ended before `cutoff`; returns how many.
pub async fn purge_terminated(conn: &mut SqliteConnection, cutoff: i64) -> Result<u64> {
    sqlx::query("DELETE FROM tags WHERE resource_id IN (SELECT id FROM instances WHERE terminated_at IS NOT NULL AND terminated_at < $1)")
        .bind(cutoff)
        .execute(&mut *conn)
        .await?;
    let r =
        sqlx::query("DELETE FROM instances WHERE terminated_at IS NOT NULL AND terminated_at < $1")
            .bind(cutoff)
            .execute(conn)
            .await?;
    Ok(r.rows_affected())
}

// ---------------------------------------------------------------------------------------------
// Load balancers

/// The parts of a load balancer stored as one JSON document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LbSpec {
    pub scheme: Scheme,
    pub ip_mode: IpMode,
    pub listeners: Vec<Listener>,
    pub health_check: HealthCheck,
    pub zone_policy: ZonePolicy,
}

#[derive(Debug, Clone)]
pub struct StoredLb {
    pub seq: i64,
    pub project: String,
    pub lb: LoadBalancer,
    pub version: i64,
}

#[derive(sqlx::FromRow)]
struct LbRow {
    seq: i64,
    id: String,
    project: String,
    name: String,
    state: String,
    spec: String,
    tags: String,
    version: i64,
    created_at: i64,
    updated_at: i64,
}

const LB_COLUMNS: &str =
    "seq, id, project, name, state, spec, tags, version, created_at, updated_at";

async fn hydrate_lb(conn: &mut SqliteConnection, region: &str, r: LbRow) -> Result<StoredLb> {
    let spec: LbSpec = from_json("load balancer spec", &r.spec)?;
    let frontends: Vec<(String, i64)> =
        sqlx::query_as("SELECT zone, ip FROM lb_frontends WHERE lb_id = $1 ORDER BY zone")
            .bind(&r.id)
            .fetch_all(&mut *conn)
            .await?;
    let backends: Vec<(String, Option<String>, Option<i64>)> = sqlx::query_as(
        "SELECT b.instance_id, i.zone, i.private_ip FROM lb_backends b \
         LEFT JOIN instances i ON i.id = b.instance_id WHERE b.lb_id = $1 ORDER BY b.position",
    )
    .bind(&r.id)
    .fetch_all(&mut *conn)
    .await?;
    let state: LoadBalancerState =
        serde_json::from_value(serde_json::Value::String(r.state.clone()))
            .map_err(|e| corrupt("load balancer state", e))?;
    Ok(StoredLb {
        seq: r.seq,
        project: r.project,
        version: r.version,
        lb: LoadBalancer {
            id: parse("load balancer id", &r.id)?,
            name: r.name,
            region: region.to_owned(),
            state,
            scheme: spec.scheme,
            ip_mode: spec.ip_mode,
            listeners: spec.listeners,
            // A backend whose instance was deleted keeps its place but has no address; it
            // simply never turns healthy. Dropping it silently would hide the caller's mistake.
            backends: backends
                .into_iter()
                .map(|(id, zone, ip)| {
                    Ok(Backend {
                        instance_id: parse("instance id", &id)?,
                        zone: zone.unwrap_or_default(),
                        private_ip: ip
                            .map(ip_from_db)
                            .transpose()?
                            .unwrap_or(Ipv4Addr::UNSPECIFIED),
                    })
                })
                .collect::<Result<_>>()?,
            health_check: spec.health_check,
            zone_policy: spec.zone_policy,
            frontends: frontends
                .into_iter()
                .map(|(zone, ip)| {
                    Ok(Frontend {
                        zone,
                        ip: ip_from_db(ip)?,
                    })
                })
                .collect::<Result<_>>()?,
            tags: from_json("load balancer tags", &r.tags)?,
            created_at: ts(r.created_at),
            updated_at: ts(r.updated_at),
            etag: r.version.to_string(),
        },
    })
}

pub fn lb_state_str(s: LoadBalancerState) -> &'static str {
    match s {
        LoadBalancerState::Provisioning => "provisioning",
        LoadBalancerState::Active => "active",
    }
}

#[derive(Debug, Clone)]
pub struct NewLb {
    pub id: LoadBalancerId,
    pub project: String,
    pub name: String,
    pub state: LoadBalancerState,
    pub spec: LbSpec,
    pub backends: Vec<InstanceId>,
    pub frontends: Vec<Frontend>,
    pub tags: Tags,
    pub state_deadline: Option<i64>,
}

pub async fn insert_lb(conn: &mut SqliteConnection, n: &NewLb, now: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO load_balancers (id, project, name, state, spec, tags, version, created_at, updated_at, state_deadline) \
         VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $7, $8)",
    )
    .bind(n.id.as_str())
    .bind(&n.project)
    .bind(&n.name)
    .bind(lb_state_str(n.state))
    .bind(to_json(&n.spec))
    .bind(to_json(&n.tags))
    .bind(now)
    .bind(n.state_deadline)
    .execute(&mut *conn)
    .await?;
    for f in &n.frontends {
        sqlx::query("INSERT INTO lb_frontends (lb_id, zone, ip) VALUES ($1, $2, $3)")
            .bind(n.id.as_str())
            .bind(&f.zone)
            .bind(ip_to_db(f.ip))
            .execute(&mut *conn)
            .await?;
    }
    set_lb_backends(conn, n.id.as_str(), &n.backends).await?;
    replace_tags(conn, n.id.as_str(), &n.tags).await
}

pub async fn set_lb_backends(
    conn: &mut SqliteConnection,
    id: &str,
    backends: &[InstanceId],
) -> Result<()> {
    sqlx::query("DELETE FROM lb_backends WHERE lb_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    for (pos, b) in backends.iter().enumerate() {
        sqlx::query("INSERT INTO lb_backends (lb_id, position, instance_id) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(i64::try_from(pos).unwrap_or(i64::MAX))
            .bind(b.as_str())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

pub async fn update_lb(
    conn: &mut SqliteConnection,
    id: &str,
    spec: &LbSpec,
    tags: &Tags,
    now: i64,
) -> Result<()> {
    sqlx::query("UPDATE load_balancers SET spec = $2, tags = $3, updated_at = $4, version = version + 1 WHERE id = $1")
        .bind(id)
        .bind(to_json(spec))
        .bind(to_json(tags))
        .bind(now)
        .execute(&mut *conn)
        .await?;
    replace_tags(conn, id, tags).await
}

pub async fn set_lb_state(
    conn: &mut SqliteConnection,
    id: &str,
    state: LoadBalancerState,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE load_balancers SET state = $2, state_deadline = NULL, updated_at = $3, version = version + 1 WHERE id = $1",
    )
    .bind(id)
    .bind(lb_state_str(state))
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn get_lb(
    conn: &mut SqliteConnection,
    region: &str,
    project: &str,
    id: &str,
) -> Result<Option<StoredLb>> {
    let sql = format!("SELECT {LB_COLUMNS} FROM load_balancers WHERE id = $1 AND project = $2");
    let row: Option<LbRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(project)
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(r) => Ok(Some(hydrate_lb(conn, region, r).await?)),
        None => Ok(None),
    }
}

pub async fn lb_id_by_name(
    conn: &mut SqliteConnection,
    project: &str,
    name: &str,
) -> Result<Option<String>> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT id FROM load_balancers WHERE project = $1 AND name = $2")
            .bind(project)
            .bind(name)
            .fetch_optional(conn)
            .await?;
    Ok(row.map(|r| r.0))
}

#[derive(Debug, Clone, Default)]
pub struct LbFilter {
    pub name: Option<String>,
    pub tag: Option<(String, String)>,
}

pub async fn list_lbs(
    conn: &mut SqliteConnection,
    region: &str,
    project: &str,
    f: &LbFilter,
    after: i64,
    limit: u32,
) -> Result<Vec<StoredLb>> {
    let sql = format!(
        "SELECT {LB_COLUMNS} FROM load_balancers l WHERE project = $1 AND seq > $2 AND ($3 IS NULL OR name = $3) \
         AND ($4 IS NULL OR EXISTS (SELECT 1 FROM tags t WHERE t.resource_id = l.id AND t.key = $4 AND t.value = $5)) \
         ORDER BY seq LIMIT $6"
    );
    let (tk, tv) = f.tag.clone().unzip();
    let rows: Vec<LbRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(project)
        .bind(after)
        .bind(&f.name)
        .bind(tk)
        .bind(tv)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(hydrate_lb(conn, region, r).await?);
    }
    Ok(out)
}

pub async fn delete_lb(conn: &mut SqliteConnection, id: &str) -> Result<()> {
    sqlx::query("DELETE FROM lb_frontends WHERE lb_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM lb_backends WHERE lb_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM load_balancers WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM tags WHERE resource_id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Frontend addresses in use in `[lo, hi]`, ascending.
pub async fn used_frontend_ips(conn: &mut SqliteConnection, lo: u32, hi: u32) -> Result<Vec<u32>> {
    let rows: Vec<(i64,)> =
        sqlx::query_as("SELECT ip FROM lb_frontends WHERE ip BETWEEN $1 AND $2 ORDER BY ip")
            .bind(i64::from(lo))
            .bind(i64::from(hi))
            .fetch_all(conn)
            .await?;
    rows.into_iter()
        .map(|(v,)| u32::try_from(v).map_err(|e| corrupt("address", e)))
        .collect()
}

/// Load balancers whose provisioning is due to finish at `now`: `(id, project)`.
pub async fn due_lbs(conn: &mut SqliteConnection, now: i64) -> Result<Vec<(String, String)>> {
    Ok(sqlx::query_as(
        "SELECT id, project FROM load_balancers WHERE state_deadline IS NOT NULL AND state_deadline <= $1 ORDER BY state_deadline",
    )
    .bind(now)
    .fetch_all(conn)
    .await?)
}

// ---------------------------------------------------------------------------------------------
// Routes

#[derive(sqlx::FromRow)]
struct RouteRow {
    seq: i64,
    id: String,
    route_table: String,
    name: String,
    destination_cidr: String,
    target_instance_id: String,
    tags: String,
    version: i64,
    created_at: i64,
    /// State of the target instance (NULL when the instance is gone).
    target_state: Option<String>,
}

#[derive(Debug, Clone)]
pub struct StoredRoute {
    pub seq: i64,
    pub route: Route,
}

impl RouteRow {
    fn into_stored(self) -> Result<StoredRoute> {
        let state = match self.target_state.as_deref() {
            None | Some("terminated") => RouteState::Blackhole,
            Some(_) => RouteState::Active,
        };
        Ok(StoredRoute {
            seq: self.seq,
            route: Route {
                id: parse("route id", &self.id)?,
                route_table: self.route_table,
                name: self.name,
                destination_cidr: parse("route destination", &self.destination_cidr)?,
                target_instance_id: parse("instance id", &self.target_instance_id)?,
                state,
                tags: from_json("route tags", &self.tags)?,
                created_at: ts(self.created_at),
                etag: self.version.to_string(),
            },
        })
    }
}

const ROUTE_SELECT: &str = "SELECT r.seq, r.id, r.route_table, r.name, r.destination_cidr, r.target_instance_id, r.tags, \
     r.version, r.created_at, i.state AS target_state FROM routes r LEFT JOIN instances i ON i.id = r.target_instance_id";

#[derive(Debug, Clone)]
pub struct NewRoute {
    pub id: RouteId,
    pub project: String,
    pub route_table: String,
    pub name: String,
    pub destination_cidr: ipnet::IpNet,
    pub target_instance_id: InstanceId,
    pub tags: Tags,
}

pub async fn insert_route(conn: &mut SqliteConnection, n: &NewRoute, now: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO routes (id, project, route_table, name, destination_cidr, target_instance_id, tags, version, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8)",
    )
    .bind(n.id.as_str())
    .bind(&n.project)
    .bind(&n.route_table)
    .bind(&n.name)
    .bind(n.destination_cidr.to_string())
    .bind(n.target_instance_id.as_str())
    .bind(to_json(&n.tags))
    .bind(now)
    .execute(&mut *conn)
    .await?;
    replace_tags(conn, n.id.as_str(), &n.tags).await
}

pub async fn get_route(
    conn: &mut SqliteConnection,
    project: &str,
    table: &str,
    id: &str,
) -> Result<Option<StoredRoute>> {
    let sql = format!("{ROUTE_SELECT} WHERE r.id = $1 AND r.project = $2 AND r.route_table = $3");
    let row: Option<RouteRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(project)
        .bind(table)
        .fetch_optional(conn)
        .await?;
    row.map(RouteRow::into_stored).transpose()
}

pub async fn list_routes(
    conn: &mut SqliteConnection,
    project: &str,
    table: &str,
    tag: Option<&(String, String)>,
    after: i64,
    limit: u32,
) -> Result<Vec<StoredRoute>> {
    let sql = format!(
        "{ROUTE_SELECT} WHERE r.project = $1 AND r.route_table = $2 AND r.seq > $3 \
         AND ($4 IS NULL OR EXISTS (SELECT 1 FROM tags t WHERE t.resource_id = r.id AND t.key = $4 AND t.value = $5)) \
         ORDER BY r.seq LIMIT $6"
    );
    let rows: Vec<RouteRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(project)
        .bind(table)
        .bind(after)
        .bind(tag.map(|t| t.0.as_str()))
        .bind(tag.map(|t| t.1.as_str()))
        .bind(i64::from(limit))
        .fetch_all(conn)
        .await?;
    rows.into_iter().map(RouteRow::into_stored).collect()
}

/// `(id, name, destination)` of every route in the table.
pub async fn route_destinations(
    conn: &mut SqliteConnection,
    project: &str,
    table: &str,
) -> Result<Vec<(String, String, String)>> {
    Ok(sqlx::query_as(
        "SELECT id, name, destination_cidr FROM routes WHERE project = $1 AND route_table = $2",
    )
    .bind(project)
    .bind(table)
    .fetch_all(conn)
    .await?)
}

pub async fn count_routes(conn: &mut SqliteConnection, project: &str, table: &str) -> Result<u32> {
    let (n,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM routes WHERE project = $1 AND route_table = $2")
            .bind(project)
            .bind(table)
            .fetch_one(conn)
            .await?;
    u32::try_from(n).map_err(|e| corrupt("route count", e))
}

pub async fn delete_route(conn: &mut SqliteConnection, id: &str) -> Result<()> {
    sqlx::query("DELETE FROM routes WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM tags WHERE resource_id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Idempotency keys

/// How long a claimed key may stay without a response before another request may take it over
/// (the first one is assumed to have died with its server).
pub const IDEMPOTENCY_CLAIM_TIMEOUT_MS: i64 = 60_000;
/// How long completed keys are kept.
pub const IDEMPOTENCY_RETENTION_MS: i64 = 24 * 3600 * 1000;

/// The result of claiming an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// First use: run the request, then [`complete_idempotency`] or [`release_idempotency`].
    New,
    /// Same request seen before: send this response again.
    Replay { status: u16, body: Vec<u8> },
    /// The key was used with a different method, path or body.
    Mismatch,
    /// The first request with this key is still running.
    InFlight,
}

pub async fn claim_idempotency(
    conn: &mut SqliteConnection,
    project: &str,
    key: &str,
    method: &str,
    path: &str,
    body: &[u8],
    now: i64,
) -> Result<Claim> {
    type Row = (String, String, Vec<u8>, Option<i64>, Option<Vec<u8>>, i64);
    let row: Option<Row> = sqlx::query_as(
        "SELECT method, path, body, status, response, created_at FROM idempotency_keys WHERE project = $1 AND key = $2",
    )
    .bind(project)
    .bind(key)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        None => {
            sqlx::query(
                "INSERT INTO idempotency_keys (project, key, method, path, body, status, response, created_at) \
                 VALUES ($1, $2, $3, $4, $5, NULL, NULL, $6)",
            )
            .bind(project)
            .bind(key)
            .bind(method)
            .bind(path)
            .bind(body)
            .bind(now)
            .execute(conn)
            .await?;
            Ok(Claim::New)
        }
        Some((m, p, b, _, _, _)) if m != method || p != path || b != body => Ok(Claim::Mismatch),
        Some((_, _, _, Some(status), response, _)) => Ok(Claim::Replay {
            status: u16::try_from(status).map_err(|e| corrupt("idempotency status", e))?,
            body: response.unwrap_or_default(),
        }),
        Some((_, _, _, None, _, created)) if now - created > IDEMPOTENCY_CLAIM_TIMEOUT_MS => {
            sqlx::query(
                "UPDATE idempotency_keys SET created_at = $3 WHERE project = $1 AND key = $2",
            )
            .bind(project)
            .bind(key)
            .bind(now)
            .execute(conn)
            .await?;
            Ok(Claim::New)
        }
        Some(_) => Ok(Claim::InFlight),
    }
}

pub async fn complete_idempotency(
    conn: &mut SqliteConnection,
    project: &str,
    key: &str,
    status: u16,
    body: &[u8],
) -> Result<()> {
    sqlx::query(
        "UPDATE idempotency_keys SET status = $3, response = $4 WHERE project = $1 AND key = $2",
    )
    .bind(project)
    .bind(key)
    .bind(i64::from(status))
    .bind(body)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn release_idempotency(
    conn: &mut SqliteConnection,
    project: &str,
    key: &str,
) -> Result<()> {
    sqlx::query("DELETE FROM idempotency_keys WHERE project = $1 AND key = $2 AND status IS NULL")
        .bind(project)
        .bind(key)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn purge_idempotency(conn: &mut SqliteConnection, cutoff: i64) -> Result<u64> {
    let r = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
        .bind(cutoff)
        .execute(conn)
        .await?;
    Ok(r.rows_affected())
}

/// Every load balancer of every project (for the data plane), in creation order.
pub async fn all_lbs(conn: &mut SqliteConnection, region: &str) -> Result<Vec<StoredLb>> {
    let sql = format!("SELECT {LB_COLUMNS} FROM load_balancers ORDER BY seq");
    let rows: Vec<LbRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_all(&mut *conn)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(hydrate_lb(conn, region, r).await?);
    }
    Ok(out)
}

/// `(address, zone)` of every live instance of every project (for the data plane's client zones).
pub async fn live_instance_zones(conn: &mut SqliteConnection) -> Result<Vec<(Ipv4Addr, String)>> {
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT private_ip, zone FROM instances WHERE state <> 'terminated'")
            .fetch_all(conn)
            .await?;
    rows.into_iter()
        .map(|(ip, z)| Ok((ip_from_db(ip)?, z)))
        .collect()
}
