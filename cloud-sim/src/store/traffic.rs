//! Traffic reports that data planes running apart from the API publish for it.

use super::*;

/// Replaces what `data_plane` has published: one report per load balancer it serves now; rows
/// of load balancers it no longer serves go.
pub async fn publish_traffic(
    conn: &mut AnyConnection,
    data_plane: &str,
    reports: &[cloud_api::TrafficReport],
    now: i64,
) -> Result<()> {
    sqlx::query("DELETE FROM published_traffic WHERE data_plane = $1")
        .bind(data_plane)
        .execute(&mut *conn)
        .await?;
    for report in reports {
        sqlx::query(
            "INSERT INTO published_traffic (lb_id, data_plane, report, updated_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(&report.load_balancer_id)
        .bind(data_plane)
        .bind(to_json(report))
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// The reports published for `lb_id` at or after `since` (one per data plane serving it).
pub async fn published_traffic(
    conn: &mut AnyConnection,
    lb_id: &str,
    since: i64,
) -> Result<Vec<cloud_api::TrafficReport>> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT report FROM published_traffic WHERE lb_id = $1 AND updated_at >= $2 \
         ORDER BY data_plane",
    )
    .bind(lb_id)
    .bind(since)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|(r,)| from_json("published traffic report", r))
        .collect()
}
