//! Backend groups: rows, their members (one row per instance), and which load balancers use them.
//!
//! Membership changes are written as differences in multi-row statements: a node joining a
//! 3,000-member group costs one insert, not 3,000.

use std::collections::{HashMap, HashSet};

use cloud_api::BackendGroup;

use super::*;

/// Rows per multi-row statement: far below either engine's limit on bound parameters.
const CHUNK: usize = 500;

#[derive(Debug, Clone)]
pub struct StoredGroup {
    pub seq: i64,
    pub group: BackendGroup,
}

#[derive(sqlx::FromRow)]
struct GroupRow {
    seq: i64,
    id: String,
    name: String,
    zone: String,
    tags: String,
    version: i64,
    created_at: i64,
    updated_at: i64,
}

const GROUP_COLUMNS: &str = "seq, id, name, zone, tags, version, created_at, updated_at";

type MemberRow = (String, String, Option<String>, Option<i64>);

fn member(row: MemberRow) -> Result<Backend> {
    let (_, id, zone, ip) = row;
    Ok(Backend {
        instance_id: parse("instance id", &id)?,
        zone: zone.unwrap_or_default(),
        // A member whose instance was deleted has no address; it never turns healthy.
        private_ip: ip
            .map(ip_from_db)
            .transpose()?
            .unwrap_or(Ipv4Addr::UNSPECIFIED),
    })
}

/// `$first, $first+1, ...`: `n` numbered placeholders.
fn marks(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Members of the groups `ids` (every group's when `None`), by group ID, in instance-ID order.
async fn members_of(
    conn: &mut AnyConnection,
    ids: Option<&[String]>,
) -> Result<HashMap<String, Vec<Backend>>> {
    let filter = match ids {
        None => String::new(),
        Some(ids) => format!("WHERE m.group_id IN ({})", marks(1, ids.len())),
    };
    let sql = format!(
        "SELECT m.group_id, m.instance_id, i.zone, i.private_ip FROM backend_group_members m \
         LEFT JOIN instances i ON i.id = m.instance_id {filter} ORDER BY m.group_id, m.instance_id"
    );
    let mut q = sqlx::query_as::<_, MemberRow>(sqlx::AssertSqlSafe(sql));
    for id in ids.unwrap_or_default() {
        q = q.bind(id);
    }
    let mut out: HashMap<String, Vec<Backend>> = HashMap::new();
    for row in q.fetch_all(&mut *conn).await? {
        out.entry(row.0.clone()).or_default().push(member(row)?);
    }
    Ok(out)
}

async fn hydrate_groups(
    conn: &mut AnyConnection,
    region: &str,
    rows: Vec<GroupRow>,
) -> Result<Vec<StoredGroup>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    let mut members = members_of(conn, Some(&ids)).await?;
    rows.into_iter()
        .map(|r| {
            Ok(StoredGroup {
                seq: r.seq,
                group: BackendGroup {
                    id: parse("backend group id", &r.id)?,
                    members: members.remove(&r.id).unwrap_or_default(),
                    name: r.name,
                    region: region.to_owned(),
                    zone: r.zone,
                    tags: from_json("backend group tags", &r.tags)?,
                    created_at: ts(r.created_at),
                    updated_at: ts(r.updated_at),
                    etag: r.version.to_string(),
                },
            })
        })
        .collect()
}

#[derive(Debug, Clone)]
pub struct NewGroup {
    pub id: BackendGroupId,
    pub project: String,
    pub name: String,
    pub zone: String,
    pub members: Vec<InstanceId>,
    pub tags: Tags,
}

pub async fn insert_group(conn: &mut AnyConnection, n: &NewGroup, now: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO backend_groups (id, project, name, zone, tags, version, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 1, $6, $6)",
    )
    .bind(n.id.as_str())
    .bind(&n.project)
    .bind(&n.name)
    .bind(&n.zone)
    .bind(to_json(&n.tags))
    .bind(now)
    .execute(&mut *conn)
    .await?;
    let ids: Vec<&str> = n.members.iter().map(InstanceId::as_str).collect();
    insert_members(conn, n.id.as_str(), &ids).await?;
    insert_tags(conn, n.id.as_str(), &n.tags).await
}

async fn insert_members(conn: &mut AnyConnection, group: &str, ids: &[&str]) -> Result<()> {
    for chunk in ids.chunks(CHUNK) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| format!("($1, ${})", i + 2))
            .collect();
        let sql = format!(
            "INSERT INTO backend_group_members (group_id, instance_id) VALUES {}",
            values.join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(group);
        for id in chunk {
            q = q.bind(*id);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Makes the group's members exactly `want`, writing only the difference. Returns whether
/// anything changed.
pub async fn set_group_members(
    conn: &mut AnyConnection,
    group: &str,
    want: &[InstanceId],
) -> Result<bool> {
    let have: HashSet<String> = sqlx::query_as::<_, (String,)>(
        "SELECT instance_id FROM backend_group_members WHERE group_id = $1",
    )
    .bind(group)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|(id,)| id)
    .collect();
    let want_set: HashSet<&str> = want.iter().map(InstanceId::as_str).collect();
    let gone: Vec<&str> = have
        .iter()
        .map(String::as_str)
        .filter(|id| !want_set.contains(id))
        .collect();
    let added: Vec<&str> = want
        .iter()
        .map(InstanceId::as_str)
        .filter(|id| !have.contains(*id))
        .collect();
    for chunk in gone.chunks(CHUNK) {
        let sql = format!(
            "DELETE FROM backend_group_members WHERE group_id = $1 AND instance_id IN ({})",
            marks(2, chunk.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(group);
        for id in chunk {
            q = q.bind(*id);
        }
        q.execute(&mut *conn).await?;
    }
    insert_members(conn, group, &added).await?;
    Ok(!gone.is_empty() || !added.is_empty())
}

/// Bumps the group's version (its etag) and replaces its tags.
pub async fn update_group(conn: &mut AnyConnection, id: &str, tags: &Tags, now: i64) -> Result<()> {
    sqlx::query(
        "UPDATE backend_groups SET tags = $2, updated_at = $3, version = version + 1 WHERE id = $1",
    )
    .bind(id)
    .bind(to_json(tags))
    .bind(now)
    .execute(&mut *conn)
    .await?;
    replace_tags(conn, id, tags).await
}

pub async fn get_group(
    conn: &mut AnyConnection,
    region: &str,
    project: &str,
    id: &str,
) -> Result<Option<StoredGroup>> {
    let sql = format!("SELECT {GROUP_COLUMNS} FROM backend_groups WHERE id = $1 AND project = $2");
    let row: Option<GroupRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(project)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(match row {
        Some(r) => hydrate_groups(conn, region, vec![r]).await?.pop(),
        None => None,
    })
}

pub async fn group_id_by_name(
    conn: &mut AnyConnection,
    project: &str,
    name: &str,
) -> Result<Option<String>> {
    id_by_name(conn, "backend_groups", project, name).await
}

/// The zones of the groups `ids` that exist in `project`, by ID.
pub async fn group_zones(
    conn: &mut AnyConnection,
    project: &str,
    ids: &[&str],
) -> Result<HashMap<String, String>> {
    zones_by_id(conn, "backend_groups", project, ids).await
}

/// The zones of the instances `ids` that exist in `project`, by ID.
pub async fn instance_zones_of(
    conn: &mut AnyConnection,
    project: &str,
    ids: &[&str],
) -> Result<HashMap<String, String>> {
    zones_by_id(conn, "instances", project, ids).await
}

async fn zones_by_id(
    conn: &mut AnyConnection,
    table: &'static str,
    project: &str,
    ids: &[&str],
) -> Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    for chunk in ids.chunks(CHUNK) {
        let sql = format!(
            "SELECT id, zone FROM {table} WHERE project = $1 AND id IN ({})",
            marks(2, chunk.len())
        );
        let mut q = sqlx::query_as::<_, (String, String)>(sqlx::AssertSqlSafe(sql)).bind(project);
        for id in chunk {
            q = q.bind(*id);
        }
        out.extend(q.fetch_all(&mut *conn).await?);
    }
    Ok(out)
}

/// Up to `limit` groups of `project` with `seq > after`, optionally by name or tag, in creation
/// order.
pub async fn list_groups(
    conn: &mut AnyConnection,
    region: &str,
    project: &str,
    f: &NameTagFilter,
    after: i64,
    limit: u32,
) -> Result<Vec<StoredGroup>> {
    let rows: Vec<GroupRow> = list_named(
        conn,
        "backend_groups",
        GROUP_COLUMNS,
        project,
        f,
        after,
        limit,
    )
    .await?;
    hydrate_groups(conn, region, rows).await
}

/// Names of the load balancers that use group `id`, in creation order.
pub async fn lbs_using_group(conn: &mut AnyConnection, id: &str) -> Result<Vec<String>> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT l.name FROM lb_backend_groups g JOIN load_balancers l ON l.id = g.lb_id \
         WHERE g.group_id = $1 ORDER BY l.seq",
    )
    .bind(id)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

pub async fn delete_group(conn: &mut AnyConnection, id: &str) -> Result<()> {
    sqlx::query("DELETE FROM backend_group_members WHERE group_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM backend_groups WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM tags WHERE resource_id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// The members of the groups `ids`, by group ID.
pub async fn group_members(
    conn: &mut AnyConnection,
    ids: &[String],
) -> Result<HashMap<String, Vec<Backend>>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    members_of(conn, Some(ids)).await
}

/// Every group's members (for the data plane), by group ID.
pub async fn all_group_members(conn: &mut AnyConnection) -> Result<HashMap<String, Vec<Backend>>> {
    members_of(conn, None).await
}
