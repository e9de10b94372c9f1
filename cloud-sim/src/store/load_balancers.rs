//! Load balancers: rows with their listeners, frontends, backends and backend groups.

use std::collections::HashMap;

use super::*;

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

/// Which load balancers' frontends and backends to read.
enum Parts<'a> {
    /// Every load balancer's (the data plane's full read).
    All,
    /// These IDs' (a page, or one).
    Of(&'a [String]),
}

type FrontendRow = (String, String, i64);
type BackendRow = (String, String, Option<String>, Option<i64>);
type GroupRefRow = (String, String);

/// The rows that make up load balancers besides their own, by load balancer ID in order.
#[derive(Default)]
struct LbParts {
    frontends: HashMap<String, Vec<FrontendRow>>,
    backends: HashMap<String, Vec<BackendRow>>,
    groups: HashMap<String, Vec<GroupRefRow>>,
}

/// Frontends, backends and groups of `which`, in three queries whatever their number (a page of
/// load balancers used to cost queries each).
async fn lb_parts(conn: &mut AnyConnection, which: Parts<'_>) -> Result<LbParts> {
    let filter = match &which {
        Parts::All => String::new(),
        Parts::Of(ids) => {
            let marks: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
            format!("WHERE lb_id IN ({})", marks.join(", "))
        }
    };
    let frontends_sql =
        format!("SELECT lb_id, zone, ip FROM lb_frontends {filter} ORDER BY lb_id, zone");
    let backends_sql = format!(
        "SELECT b.lb_id, b.instance_id, i.zone, i.private_ip FROM lb_backends b \
         LEFT JOIN instances i ON i.id = b.instance_id {} ORDER BY b.lb_id, b.position",
        filter.replace("lb_id", "b.lb_id")
    );
    let ids: &[String] = match which {
        Parts::All => &[],
        Parts::Of(ids) => ids,
    };
    let mut q = sqlx::query_as::<_, FrontendRow>(sqlx::AssertSqlSafe(frontends_sql));
    for id in ids {
        q = q.bind(id);
    }
    let mut frontends: HashMap<String, Vec<FrontendRow>> = HashMap::new();
    for row in q.fetch_all(&mut *conn).await? {
        frontends.entry(row.0.clone()).or_default().push(row);
    }
    let mut q = sqlx::query_as::<_, BackendRow>(sqlx::AssertSqlSafe(backends_sql));
    for id in ids {
        q = q.bind(id);
    }
    let mut backends: HashMap<String, Vec<BackendRow>> = HashMap::new();
    for row in q.fetch_all(&mut *conn).await? {
        backends.entry(row.0.clone()).or_default().push(row);
    }
    let groups_sql =
        format!("SELECT lb_id, group_id FROM lb_backend_groups {filter} ORDER BY lb_id, position");
    let mut q = sqlx::query_as::<_, GroupRefRow>(sqlx::AssertSqlSafe(groups_sql));
    for id in ids {
        q = q.bind(id);
    }
    let mut groups: HashMap<String, Vec<GroupRefRow>> = HashMap::new();
    for row in q.fetch_all(&mut *conn).await? {
        groups.entry(row.0.clone()).or_default().push(row);
    }
    Ok(LbParts {
        frontends,
        backends,
        groups,
    })
}

/// Load balancer rows with their frontends, backends and groups (read in three more queries in
/// all).
async fn hydrate_lbs(
    conn: &mut AnyConnection,
    region: &str,
    rows: Vec<LbRow>,
    which: Parts<'_>,
) -> Result<Vec<StoredLb>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut parts = lb_parts(conn, which).await?;
    rows.into_iter()
        .map(|r| {
            let f = parts.frontends.remove(&r.id).unwrap_or_default();
            let b = parts.backends.remove(&r.id).unwrap_or_default();
            let g = parts.groups.remove(&r.id).unwrap_or_default();
            hydrate_lb(region, r, f, b, g)
        })
        .collect()
}

fn hydrate_lb(
    region: &str,
    r: LbRow,
    frontends: Vec<FrontendRow>,
    backends: Vec<BackendRow>,
    groups: Vec<GroupRefRow>,
) -> Result<StoredLb> {
    let spec: LbSpec = from_json("load balancer spec", &r.spec)?;
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
                .map(|(_, id, zone, ip)| {
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
            backend_groups: groups
                .into_iter()
                .map(|(_, id)| parse("backend group id", &id))
                .collect::<Result<_>>()?,
            health_check: spec.health_check,
            zone_policy: spec.zone_policy,
            frontends: frontends
                .into_iter()
                .map(|(_, zone, ip)| {
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
    pub backend_groups: Vec<BackendGroupId>,
    pub frontends: Vec<Frontend>,
    pub tags: Tags,
    pub state_deadline: Option<i64>,
}

pub async fn insert_lb(conn: &mut AnyConnection, n: &NewLb, now: i64) -> Result<()> {
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
    set_lb_groups(conn, n.id.as_str(), &n.backend_groups).await?;
    replace_tags(conn, n.id.as_str(), &n.tags).await
}

pub async fn set_lb_groups(
    conn: &mut AnyConnection,
    id: &str,
    groups: &[BackendGroupId],
) -> Result<()> {
    sqlx::query("DELETE FROM lb_backend_groups WHERE lb_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    for (pos, g) in groups.iter().enumerate() {
        sqlx::query(
            "INSERT INTO lb_backend_groups (lb_id, position, group_id) VALUES ($1, $2, $3)",
        )
        .bind(id)
        .bind(i64::try_from(pos).unwrap_or(i64::MAX))
        .bind(g.as_str())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

pub async fn set_lb_backends(
    conn: &mut AnyConnection,
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
    conn: &mut AnyConnection,
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
    conn: &mut AnyConnection,
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
    conn: &mut AnyConnection,
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
    let Some(r) = row else {
        return Ok(None);
    };
    let ids = [r.id.clone()];
    Ok(hydrate_lbs(conn, region, vec![r], Parts::Of(&ids))
        .await?
        .pop())
}

pub async fn lb_id_by_name(
    conn: &mut AnyConnection,
    project: &str,
    name: &str,
) -> Result<Option<String>> {
    id_by_name(conn, "load_balancers", project, name).await
}

pub async fn list_lbs(
    conn: &mut AnyConnection,
    region: &str,
    project: &str,
    f: &NameTagFilter,
    after: i64,
    limit: u32,
) -> Result<Vec<StoredLb>> {
    let rows: Vec<LbRow> =
        list_named(conn, "load_balancers", LB_COLUMNS, project, f, after, limit).await?;
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    hydrate_lbs(conn, region, rows, Parts::Of(&ids)).await
}

pub async fn delete_lb(conn: &mut AnyConnection, id: &str) -> Result<()> {
    sqlx::query("DELETE FROM lb_frontends WHERE lb_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM lb_backends WHERE lb_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM lb_backend_groups WHERE lb_id = $1")
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

/// Load balancers whose provisioning is due to finish at `now`: `(id, project)`.
pub async fn due_lbs(conn: &mut AnyConnection, now: i64) -> Result<Vec<(String, String)>> {
    Ok(sqlx::query_as(
        "SELECT id, project FROM load_balancers WHERE state_deadline IS NOT NULL AND state_deadline <= $1 ORDER BY state_deadline",
    )
    .bind(now)
    .fetch_all(conn)
    .await?)
}

// ---------------------------------------------------------------------------------------------

/// Every load balancer of every project (for the data plane), in creation order.
pub async fn all_lbs(conn: &mut AnyConnection, region: &str) -> Result<Vec<StoredLb>> {
    let sql = format!("SELECT {LB_COLUMNS} FROM load_balancers ORDER BY seq");
    let rows: Vec<LbRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_all(&mut *conn)
        .await?;
    hydrate_lbs(conn, region, rows, Parts::All).await
}
