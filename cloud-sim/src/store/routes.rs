//! Routes of the route tables.

use super::*;

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

/// Inserts the route (its target, in state `target_state`, checked by the caller) and returns
/// it as stored.
pub async fn insert_route(
    tx: &mut WriteTx,
    n: &NewRoute,
    target_state: InstanceState,
    now: i64,
) -> Result<StoredRoute> {
    // RETURNING: the stored row comes back with the insert (no read after it).
    let row: RouteRow = sqlx::query_as(
        "INSERT INTO routes (id, project, route_table, name, destination_cidr, target_instance_id, tags, version, created_at, dest_first, dest_last) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $9, $10) \
         RETURNING seq, id, route_table, name, destination_cidr, target_instance_id, tags, version, created_at, \
         CAST($11 AS TEXT) AS target_state",
    )
    .bind(n.id.as_str())
    .bind(&n.project)
    .bind(&n.route_table)
    .bind(&n.name)
    .bind(n.destination_cidr.to_string())
    .bind(n.target_instance_id.as_str())
    .bind(to_json(&n.tags))
    .bind(now)
    .bind(v4_range(&n.destination_cidr).map(|r| i64::from(r.0)))
    .bind(v4_range(&n.destination_cidr).map(|r| i64::from(r.1)))
    .bind(target_state.as_str())
    .fetch_one(&mut **tx)
    .await?;
    queue_tags(tx, n.id.as_str(), &n.tags);
    row.into_stored()
}

/// First and last address of an IPv4 network.
fn v4_range(net: &ipnet::IpNet) -> Option<(u32, u32)> {
    match net {
        ipnet::IpNet::V4(n) => Some((u32::from(n.network()), u32::from(n.broadcast()))),
        ipnet::IpNet::V6(_) => None,
    }
}

pub async fn get_route(
    conn: &mut AnyConnection,
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
    conn: &mut AnyConnection,
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

/// What creating a route checks before it writes, read in one statement (one round trip on the
/// single writer, where three separate reads were): the target instance's state, the route that
/// already holds the name, and the routes whose destination may overlap the new one's.
#[derive(Debug, Default)]
pub struct RouteCreateChecks {
    /// `None`: no instance with the target ID in the project.
    pub target_state: Option<InstanceState>,
    /// The ID of the route in the table that has the name already.
    pub name_taken_by: Option<String>,
    /// `(id, name, destination)` of the routes that may overlap, which the caller checks by
    /// parsing (see [`ROUTE_CREATE_CHECKS_SQL`]).
    pub near: Vec<(String, String, String)>,
}

/// Begins the write transaction that creates a route named `name` to `dest` via instance
/// `target`, reading its [`RouteCreateChecks`] as its first statement ([`Db::begin_with`]: one
/// round trip with the `BEGIN` on SQLite).
pub async fn begin_route_create(
    db: &Db,
    project: &str,
    table: &str,
    name: &str,
    target: &str,
    dest: &ipnet::IpNet,
) -> Result<(WriteTx, RouteCreateChecks)> {
    let checks = sqlx::query(ROUTE_CREATE_CHECKS_SQL)
        .bind(project)
        .bind(table)
        .bind(v4_range(dest).map(|r| i64::from(r.1)))
        .bind(target)
        .bind(name);
    let (tx, rows) = db.begin_with(checks).await?;
    let mut out = RouteCreateChecks::default();
    for row in &rows {
        let (what, a, b, c): (String, String, Option<String>, Option<String>) =
            sqlx::FromRow::from_row(row)?;
        match (what.as_str(), b, c) {
            ("target", _, _) => out.target_state = Some(parse("instance state", &a)?),
            ("taken", _, _) => out.name_taken_by = Some(a),
            ("near", Some(name), Some(cidr)) => out.near.push((a, name, cidr)),
            _ => {
                return Err(corrupt(
                    "route create checks",
                    format!("unexpected row {what:?}"),
                ));
            }
        }
    }
    Ok((tx, out))
}

/// Binds project, table, `dest`'s last IPv4 address (NULL for IPv6: no IPv4 route overlaps it),
/// the target instance ID, the route's name. Rows are `(what, a, b, c)`: `('target', state)`,
/// `('taken', route id)`, `('near', id, name, destination)`.
///
/// The routes that may overlap `dest` are those without a stored range (IPv6, or stored before
/// ranges were), and of the IPv4 ones the one starting last at or before `dest`'s end. The
/// stored IPv4 ranges of a table never overlap (a create that would is refused), so if that one
/// ends before `dest` starts, so does every one before it: two index lookups, where testing
/// every range that starts before `dest` ends read the whole table for each new route.
/// Filtering the nearest on its end too would walk the index past every route that ends before
/// `dest`: the caller checks the one it gets.
pub(super) const ROUTE_CREATE_CHECKS_SQL: &str = "\
     SELECT 'target' AS what, state AS a, CAST(NULL AS TEXT) AS b, CAST(NULL AS TEXT) AS c \
       FROM instances WHERE id = $4 AND project = $1 \
     UNION ALL \
     SELECT 'taken', id, NULL, NULL FROM routes \
       WHERE project = $1 AND route_table = $2 AND name = $5 \
     UNION ALL \
     SELECT 'near', id, name, destination_cidr FROM routes \
       WHERE project = $1 AND route_table = $2 AND dest_first IS NULL \
     UNION ALL \
     SELECT * FROM (SELECT 'near', id, name, destination_cidr FROM routes \
       WHERE project = $1 AND route_table = $2 AND dest_first <= $3 \
       ORDER BY dest_first DESC LIMIT 1) AS nearest";

pub async fn count_routes(conn: &mut AnyConnection, project: &str, table: &str) -> Result<u32> {
    let n: Option<(i64,)> =
        sqlx::query_as("SELECT routes FROM route_counts WHERE project = $1 AND route_table = $2")
            .bind(project)
            .bind(table)
            .fetch_optional(conn)
            .await?;
    u32::try_from(n.map_or(0, |n| n.0)).map_err(|e| corrupt("route count", e))
}

/// Counts one more route in the table unless it holds `quota` already; whether it did. Part of
/// creating a route: in the same transaction as the insert.
pub async fn take_route_place(
    conn: &mut AnyConnection,
    project: &str,
    table: &str,
    quota: u32,
) -> Result<bool> {
    if quota == 0 {
        return Ok(false);
    }
    let r = sqlx::query(
        "INSERT INTO route_counts (project, route_table, routes) VALUES ($1, $2, 1) \
         ON CONFLICT (project, route_table) DO UPDATE SET routes = route_counts.routes + 1 \
         WHERE route_counts.routes < $3",
    )
    .bind(project)
    .bind(table)
    .bind(i64::from(quota))
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn delete_route(
    conn: &mut AnyConnection,
    project: &str,
    table: &str,
    id: &str,
) -> Result<()> {
    let r = sqlx::query("DELETE FROM routes WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "UPDATE route_counts SET routes = routes - $3 WHERE project = $1 AND route_table = $2",
    )
    .bind(project)
    .bind(table)
    .bind(i64::try_from(r.rows_affected()).unwrap_or(0))
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM tags WHERE resource_id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}
