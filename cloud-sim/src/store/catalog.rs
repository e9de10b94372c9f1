//! Zone states and instance types.

use super::*;

pub async fn zone_states(conn: &mut AnyConnection) -> Result<Vec<(String, ZoneState)>> {
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT zone, state FROM zone_states")
        .fetch_all(conn)
        .await?;
    rows.into_iter()
        .map(|(z, s)| Ok((z, parse("zone state", &s)?)))
        .collect()
}

pub async fn set_zone_state(
    conn: &mut AnyConnection,
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

pub async fn instance_types(conn: &mut AnyConnection) -> Result<Vec<InstanceType>> {
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

/// What one project has in each zone; zones with nothing of a kind are absent from its list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZoneCounts {
    /// `(zone, instance state, count)`.
    pub instances: Vec<(String, String, i64)>,
    /// `(zone, load-balancer backends on instances there)`; a zone may appear twice (backends
    /// listed one by one, and members of groups): add them up.
    pub backends: Vec<(String, i64)>,
    /// `(zone, load-balancer frontends there)`.
    pub frontends: Vec<(String, i64)>,
}

pub async fn zone_counts(conn: &mut AnyConnection, project: &str) -> Result<ZoneCounts> {
    let instances = sqlx::query_as(
        "SELECT zone, state, COUNT(*) FROM instances WHERE project = $1 GROUP BY zone, state",
    )
    .bind(project)
    .fetch_all(&mut *conn)
    .await?;
    let mut backends: Vec<(String, i64)> = sqlx::query_as(
        "SELECT i.zone, COUNT(*) FROM lb_backends b \
         JOIN load_balancers l ON l.id = b.lb_id JOIN instances i ON i.id = b.instance_id \
         WHERE l.project = $1 GROUP BY i.zone",
    )
    .bind(project)
    .fetch_all(&mut *conn)
    .await?;
    // Members of the groups load balancers use, counted once per load balancer (groups are
    // zonal), without joining every member to every load balancer.
    backends.extend(
        sqlx::query_as::<_, (String, i64)>(
            "SELECT bg.zone, CAST(SUM(c.n) AS BIGINT) FROM lb_backend_groups g \
             JOIN load_balancers l ON l.id = g.lb_id JOIN backend_groups bg ON bg.id = g.group_id \
             JOIN (SELECT group_id, COUNT(*) AS n FROM backend_group_members GROUP BY group_id) c \
               ON c.group_id = g.group_id \
             WHERE l.project = $1 GROUP BY bg.zone",
        )
        .bind(project)
        .fetch_all(&mut *conn)
        .await?,
    );
    let frontends = sqlx::query_as(
        "SELECT f.zone, COUNT(*) FROM lb_frontends f JOIN load_balancers l ON l.id = f.lb_id \
         WHERE l.project = $1 GROUP BY f.zone",
    )
    .bind(project)
    .fetch_all(&mut *conn)
    .await?;
    Ok(ZoneCounts {
        instances,
        backends,
        frontends,
    })
}
