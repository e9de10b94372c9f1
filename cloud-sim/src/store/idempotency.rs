//! Idempotency keys: what is recorded under a key, and the writes `domain::idempotency::decide`
//! asks for. No decisions here.

use crate::domain::idempotency::Recorded;

use super::*;

/// What is recorded under `key` in `project`, if anything.
pub async fn idempotency_key(
    conn: &mut AnyConnection,
    project: &str,
    key: &str,
) -> Result<Option<Recorded>> {
    type Row = (String, String, Vec<u8>, Option<i64>, Option<Vec<u8>>, i64);
    let row: Option<Row> = sqlx::query_as(
        "SELECT method, path, body, status, response, created_at FROM idempotency_keys WHERE project = $1 AND key = $2",
    )
    .bind(project)
    .bind(key)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|(method, path, body, status, response, claimed_at)| {
        let response = match status {
            Some(s) => Some((
                u16::try_from(s).map_err(|e| corrupt("idempotency status", e))?,
                response.unwrap_or_default(),
            )),
            None => None,
        };
        Ok(Recorded {
            method,
            path,
            body,
            response,
            claimed_at,
        })
    })
    .transpose()
}

/// Records a first claim of `key` unless something is recorded under it already; true when
/// this request claimed it (one statement, for the common case of a fresh key).
pub async fn try_claim_idempotency(
    conn: &mut AnyConnection,
    project: &str,
    key: &str,
    method: &str,
    path: &str,
    body: &[u8],
    now: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "INSERT INTO idempotency_keys (project, key, method, path, body, status, response, created_at) \
         VALUES ($1, $2, $3, $4, $5, NULL, NULL, $6) ON CONFLICT (project, key) DO NOTHING",
    )
    .bind(project)
    .bind(key)
    .bind(method)
    .bind(path)
    .bind(body)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Claims an abandoned key again, as of `now`.
pub async fn renew_idempotency_claim(
    conn: &mut AnyConnection,
    project: &str,
    key: &str,
    now: i64,
) -> Result<()> {
    sqlx::query("UPDATE idempotency_keys SET created_at = $3 WHERE project = $1 AND key = $2")
        .bind(project)
        .bind(key)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn complete_idempotency(
    conn: &mut AnyConnection,
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

pub async fn release_idempotency(conn: &mut AnyConnection, project: &str, key: &str) -> Result<()> {
    sqlx::query("DELETE FROM idempotency_keys WHERE project = $1 AND key = $2 AND status IS NULL")
        .bind(project)
        .bind(key)
        .execute(conn)
        .await?;
    Ok(())
}

/// Deletes the records created before $1 (found by `idempotency_keys_created`).
pub(super) const PURGE_IDEMPOTENCY_SQL: &str = "DELETE FROM idempotency_keys WHERE created_at < $1";

pub async fn purge_idempotency(conn: &mut AnyConnection, cutoff: i64) -> Result<u64> {
    let r = sqlx::query(PURGE_IDEMPOTENCY_SQL)
        .bind(cutoff)
        .execute(conn)
        .await?;
    Ok(r.rows_affected())
}
