//! Zone states and instance types.

use super::*;

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
