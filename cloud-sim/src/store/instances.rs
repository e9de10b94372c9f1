//! Instances: rows, address allocation queries, lifecycle deadlines.

use super::*;

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
    pub private_ip: NewAddress,
    pub tags: Tags,
    pub state_deadline: Option<i64>,
}

/// The address of a new instance.
#[derive(Debug, Clone, Copy)]
pub enum NewAddress {
    /// The caller's (the index of live addresses refuses one in use).
    Chosen(Ipv4Addr),
    /// The lowest free one of the subnet `[lo, hi]`, found by the insert itself.
    FirstFreeIn { lo: u32, hi: u32 },
}

/// Inserts the instance's row, not its tags' index rows (the caller queues them:
/// [`queue_tags`]); `None` when it was to take a free address of a subnet that has none. The
/// row comes back with the insert (RETURNING: no read after it), and a free address is found
/// by the insert too (one statement, [`FIRST_FREE_INSTANCE_IP_SQL`]). A name or address in use
/// is a unique violation ([`is_unique_violation`]).
pub async fn insert_instance_row(
    tx: &mut WriteTx,
    region: &str,
    n: &NewInstance,
    now: i64,
) -> Result<Option<StoredInstance>> {
    let row = insert_instance_query(n, now)
        .fetch_optional(&mut **tx)
        .await?;
    instance_inserted(tx, region, n, row.as_ref()).await
}

/// Begins a write transaction with the insert of [`insert_instance_row`] as its first statement
/// ([`Db::begin_with`]: one round trip on SQLite). On an error the transaction is rolled back
/// (at once, or by the write connection's next holder); on `None` (no free address) the caller
/// ends it.
pub async fn begin_inserting_instance(
    db: &Db,
    region: &str,
    n: &NewInstance,
    now: i64,
) -> Result<(WriteTx, Option<StoredInstance>)> {
    let (mut tx, rows) = db.begin_with(insert_instance_query(n, now)).await?;
    let created = instance_inserted(&mut tx, region, n, rows.first()).await?;
    Ok((tx, created))
}

/// The insert of `n`: see [`insert_instance_row`].
fn insert_instance_query(n: &NewInstance, now: i64) -> FirstStatement<'_> {
    const COLUMNS: &str = "id, project, name, zone, instance_type, state, private_ip, tags, version, \
                           created_at, updated_at, terminated_at, state_deadline";
    let (sql, ip, range) = match n.private_ip {
        NewAddress::Chosen(ip) => (
            format!(
                "INSERT INTO instances ({COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $9, NULL, $10) RETURNING {INSTANCE_COLUMNS}"
            ),
            Some(ip_to_db(ip)),
            None,
        ),
        NewAddress::FirstFreeIn { lo, hi } => (
            format!(
                "WITH free (floor_ip, ip) AS ({FIRST_FREE_INSTANCE_IP_SQL}) \
                 INSERT INTO instances ({COLUMNS}) \
                 SELECT $1, $2, $3, $4, $5, $6, free.ip, $8, 1, $9, $9, NULL, $10 FROM free \
                 WHERE free.ip <= $12 RETURNING {INSTANCE_COLUMNS}"
            ),
            None,
            Some((i64::from(lo), i64::from(hi))),
        ),
    };
    let insert = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(n.id.as_str())
        .bind(&n.project)
        .bind(&n.name)
        .bind(&n.zone)
        .bind(&n.instance_type)
        .bind(n.state.as_str())
        .bind(ip)
        .bind(to_json(&n.tags))
        .bind(now)
        .bind(n.state_deadline);
    match range {
        Some((lo, hi)) => insert.bind(lo).bind(hi),
        None => insert,
    }
}

/// What the insert of `n` returned, as stored; raises the subnet's free-address floor when the
/// address taken was on a step of it.
async fn instance_inserted(
    tx: &mut WriteTx,
    region: &str,
    n: &NewInstance,
    row: Option<&AnyRow>,
) -> Result<Option<StoredInstance>> {
    let Some(row) = row else {
        return Ok(None);
    };
    let row: InstanceRow = sqlx::FromRow::from_row(row)?;
    if let NewAddress::FirstFreeIn { lo, hi } = n.private_ip
        && (row.private_ip - i64::from(lo)) % FLOOR_STEP == 0
    {
        raise_ip_floor(tx, (i64::from(lo), i64::from(hi)), row.private_ip).await?;
    }
    row.into_stored(region).map(Some)
}

/// The instance, if it exists and belongs to `project` (`None` for any project).
pub async fn get_instance(
    conn: &mut AnyConnection,
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
    conn: &mut AnyConnection,
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
    /// Only these IDs (empty: any).
    pub ids: Vec<String>,
}

/// Up to `limit` instances of `project` with `seq > after` matching `f`, in creation order.
pub async fn list_instances(
    conn: &mut AnyConnection,
    region: &str,
    project: &str,
    f: &InstanceFilter,
    after: i64,
    limit: u32,
) -> Result<Vec<StoredInstance>> {
    let sql = list_instances_sql(f.name.is_some(), f.ids.len());
    let (tk, tv) = f.tag.clone().unzip();
    let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(project)
        .bind(after)
        .bind(&f.zone)
        .bind(f.state.map(|s| s.as_str()))
        .bind(&f.name)
        .bind(tk)
        .bind(tv)
        .bind(i64::from(limit));
    for id in &f.ids {
        q = q.bind(id);
    }
    let rows: Vec<InstanceRow> = q.fetch_all(conn).await?;
    rows.into_iter().map(|r| r.into_stored(region)).collect()
}

/// The list query: binds project, after, zone, state, name, tag key, tag value, limit, then
/// `ids` IDs.
pub(super) fn list_instances_sql(by_name: bool, ids: usize) -> String {
    // The name spelled out when there is one (as in `list_named`): `($5 IS NULL OR name = $5)`
    // reads every instance of the project instead of the `instances_name` index.
    let by_name = if by_name { "name = $5" } else { "$5 IS NULL" };
    // IDs spelled out too, each a lookup in the unique index of IDs. SQLite's planner would
    // rather walk the (project, seq) index in the order asked for, reading every instance of
    // the project: `|| ''` and `+ 0` keep it off that index (on both engines they change no value).
    let (by_ids, project, seq) = if ids == 0 {
        (String::new(), "project", "seq")
    } else {
        let params: Vec<String> = (9..9 + ids).map(|i| format!("${i}")).collect();
        (
            format!("AND id IN ({}) ", params.join(", ")),
            "project || ''",
            "seq + 0",
        )
    };
    format!(
        "SELECT {INSTANCE_COLUMNS} FROM instances i WHERE {project} = $1 AND {seq} > $2 \
         AND ($3 IS NULL OR zone = $3) AND ($4 IS NULL OR state = $4) AND {by_name} \
         AND ($6 IS NULL OR EXISTS (SELECT 1 FROM tags t WHERE t.resource_id = i.id AND t.key = $6 AND t.value = $7)) \
         {by_ids}ORDER BY seq LIMIT $8"
    )
}

/// Sets an instance's state (and the deadline at which a transitional state settles).
pub async fn set_instance_state(
    conn: &mut AnyConnection,
    id: &str,
    state: InstanceState,
    deadline: Option<i64>,
    now: i64,
) -> Result<()> {
    let terminated_at = (state == InstanceState::Terminated).then_some(now);
    if terminated_at.is_some() {
        release_instance_ip(&mut *conn, id).await?;
    }
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
    conn: &mut AnyConnection,
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

pub async fn delete_instance(conn: &mut AnyConnection, id: &str) -> Result<()> {
    release_instance_ip(&mut *conn, id).await?;
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

/// Where addresses are held: a table, its address column, and which rows hold theirs.
#[derive(Debug, Clone, Copy)]
pub struct AddressSpace {
    table: &'static str,
    column: &'static str,
    /// A condition on the table's own columns, unqualified (it is also used as `a.<live>`).
    live: &'static str,
}

/// Instances' private addresses (a terminated instance releases its own).
pub const INSTANCE_ADDRESSES: AddressSpace = AddressSpace {
    table: "instances",
    column: "private_ip",
    live: "state <> 'terminated'",
};

/// Load-balancer frontend addresses (every row holds one; the condition is there to be
/// prefixed with a table alias like the instances' one).
pub const FRONTEND_ADDRESSES: AddressSpace = AddressSpace {
    table: "lb_frontends",
    column: "ip",
    live: "ip IS NOT NULL",
};

/// A create whose address is this many past the subnet's first (0, 32, 64, ...) raises the
/// floor to it: one statement every so many creates, and the walk from the floor stays short.
const FLOOR_STEP: i64 = 32;

/// The floor of the instance subnet starting at $11 (that address when it has none yet) and
/// the lowest free address in `[floor, $12]`: `(floor, address)`, the address $12 + 1 when the
/// subnet is full. Walks the address index from the floor, which the creates keep close to
/// the end of the packed addresses. Numbered to follow the instance insert's parameters.
pub(super) const FIRST_FREE_INSTANCE_IP_SQL: &str = "\
    WITH start (floor_ip) AS (SELECT COALESCE(\
        (SELECT floor_ip FROM instance_ip_floors WHERE range_first = $11), $11)) \
    SELECT floor_ip, floor_ip FROM start WHERE NOT EXISTS (SELECT 1 FROM instances \
        WHERE state <> 'terminated' AND private_ip = start.floor_ip) \
    UNION ALL \
    SELECT * FROM (SELECT start.floor_ip, a.private_ip + 1 FROM instances a, start \
        WHERE a.state <> 'terminated' AND a.private_ip BETWEEN start.floor_ip AND $12 \
        AND NOT EXISTS (SELECT 1 FROM instances b \
            WHERE b.state <> 'terminated' AND b.private_ip = a.private_ip + 1) \
        ORDER BY a.private_ip LIMIT 1) AS gap \
    LIMIT 1";

/// Raises the floor of the subnet `range` to `ip`, an address just taken as its lowest free
/// one: every address below it is held then.
async fn raise_ip_floor(conn: &mut AnyConnection, range: (i64, i64), ip: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO instance_ip_floors (range_first, range_last, floor_ip) VALUES ($1, $2, $3) \
         ON CONFLICT (range_first) DO UPDATE SET floor_ip = excluded.floor_ip, range_last = excluded.range_last",
    )
    .bind(range.0)
    .bind(range.1)
    .bind(ip)
    .execute(conn)
    .await?;
    Ok(())
}

/// Lowers the floor of the subnet holding instance `id`'s address to it: the address is being
/// released (the instance terminates or goes).
async fn release_instance_ip(conn: &mut AnyConnection, id: &str) -> Result<()> {
    sqlx::query(
        "UPDATE instance_ip_floors SET floor_ip = i.private_ip FROM instances i \
         WHERE i.id = $1 AND i.private_ip BETWEEN range_first AND range_last AND i.private_ip < floor_ip",
    )
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// The lowest address in `[lo, hi]` nothing in `space` holds (the rule of
/// `domain::net::first_free`), answered by the database without reading every address out:
/// when the held addresses are packed from `lo` (the common case: nothing released) it is the
/// one after the highest; otherwise the first gap, found by walking the address index from `lo`.
pub async fn first_free_ip(
    conn: &mut AnyConnection,
    space: AddressSpace,
    lo: u32,
    hi: u32,
) -> Result<Option<u32>> {
    let AddressSpace {
        table,
        column: ip,
        live,
    } = space;
    let (count, max): (i64, Option<i64>) = sqlx::query_as(sqlx::AssertSqlSafe(held_sql(space)))
        .bind(i64::from(lo))
        .bind(i64::from(hi))
        .fetch_one(&mut *conn)
        .await?;
    let candidate = match max {
        None => i64::from(lo),
        Some(max) if max - i64::from(lo) + 1 == count => max + 1,
        Some(_) => {
            let gap: Option<(i64,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT $1 WHERE NOT EXISTS (SELECT 1 FROM {table} WHERE {live} AND {ip} = $1) \
                 UNION ALL \
                 SELECT * FROM (SELECT a.{ip} + 1 FROM {table} a \
                   WHERE a.{live} AND a.{ip} BETWEEN $1 AND $2 \
                   AND NOT EXISTS (SELECT 1 FROM {table} b WHERE b.{live} AND b.{ip} = a.{ip} + 1) \
                   ORDER BY a.{ip} LIMIT 1) AS gap \
                 LIMIT 1"
            )))
            .bind(i64::from(lo))
            .bind(i64::from(hi))
            .fetch_optional(&mut *conn)
            .await?;
            gap.map_or(i64::from(hi) + 1, |(g,)| g)
        }
    };
    Ok(u32::try_from(candidate).ok().filter(|c| *c <= hi))
}

/// The count and highest of the addresses held in `space` between $1 and $2.
pub(super) fn held_sql(space: AddressSpace) -> String {
    let AddressSpace {
        table,
        column,
        live,
    } = space;
    format!(
        "SELECT COUNT(*), MAX({column}) FROM {table} WHERE {live} AND {column} BETWEEN $1 AND $2"
    )
}

/// Whether something in `space` holds `ip`.
pub async fn ip_in_use(conn: &mut AnyConnection, space: AddressSpace, ip: u32) -> Result<bool> {
    let AddressSpace {
        table,
        column,
        live,
    } = space;
    let row: Option<(i64,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT 1 FROM {table} WHERE {live} AND {column} = $1 LIMIT 1"
    )))
    .bind(i64::from(ip))
    .fetch_optional(conn)
    .await?;
    Ok(row.is_some())
}

/// Instances whose transitional state is due to settle at `now`, with their projects.
pub async fn due_instances(
    conn: &mut AnyConnection,
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
pub async fn next_deadline(conn: &mut AnyConnection) -> Result<Option<i64>> {
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
pub async fn purge_terminated(conn: &mut AnyConnection, cutoff: i64) -> Result<u64> {
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

/// `(address, zone)` of every live instance of every project (for the data plane's client zones).
pub async fn live_instance_zones(conn: &mut AnyConnection) -> Result<Vec<(Ipv4Addr, String)>> {
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT private_ip, zone FROM instances WHERE state <> 'terminated'")
            .fetch_all(conn)
            .await?;
    rows.into_iter()
        .map(|(ip, z)| Ok((ip_from_db(ip)?, z)))
        .collect()
}
