//! Idempotency keys: claim, complete, release, purge.

use super::*;

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
