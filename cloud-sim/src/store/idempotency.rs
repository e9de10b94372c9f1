//! Idempotency keys: what is recorded under a key, and the writes `domain::idempotency::decide`
//! asks for. No decisions here.

use crate::domain::idempotency::Recorded;

use super::request::IdempotentRequest;

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

/// The claim of a key nothing is recorded under yet ($1 project, $2 key, $3 method, $4 path,
/// $5 body, $6 time); returns a row if it claimed. On SQLite a request's first transaction
/// claims with [`strict_claim_sql`] instead, in the round trip that begins it.
macro_rules! claim_sql {
    () => {
        "INSERT INTO idempotency_keys (project, key, method, path, body, status, response, created_at) \
         VALUES ($1, $2, $3, $4, $5, NULL, NULL, $6) ON CONFLICT (project, key) DO NOTHING RETURNING 1"
    };
}

/// The response of a request ($6 status, $7 body), recorded over its claim or, if it made
/// none (it wrote nothing else), as a new record; binds as [`claim_sql`] otherwise, $8 time
/// (8 parameters: [`RECORD_RESPONSE_PARAMS`]).
macro_rules! record_response_sql {
    () => {
        "INSERT INTO idempotency_keys (project, key, method, path, body, status, response, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (project, key) DO UPDATE SET status = excluded.status, response = excluded.response"
    };
}

pub(super) const CLAIM_SQL: &str = claim_sql!();

/// The claim as [`claim_sql`] makes it, its parameters numbered from `first` (for a round trip
/// with other statements), refused with a unique violation ([`is_claim_refusal`]) instead of an
/// empty result; bind with [`add_claim_args`].
pub(super) fn strict_claim_sql(first: usize) -> String {
    let p: Vec<String> = (first..first + 6).map(|i| format!("${i}")).collect();
    format!(
        "INSERT INTO idempotency_keys (project, key, method, path, body, status, response, created_at) \
         VALUES ({}, {}, {}, {}, {}, NULL, NULL, {})",
        p[0], p[1], p[2], p[3], p[4], p[5]
    )
}

/// Adds the values of [`strict_claim_sql`]'s parameters to `args`.
pub(super) fn add_claim_args(
    args: &mut sqlx::any::AnyArguments,
    (request, now): (&IdempotentRequest, i64),
) -> Result<(), sqlx::error::BoxDynError> {
    use sqlx::Arguments;
    args.add(request.project.as_str())?;
    args.add(request.key.as_str())?;
    args.add(request.method.as_str())?;
    args.add(request.path.as_str())?;
    args.add(request.body.as_slice())?;
    args.add(now)
}

/// True when `e` is [`strict_claim_sql`] refused: the key's row exists. (SQLite names the
/// columns of the violated key in its message; the rows of no other table are keyed so.)
pub(super) fn is_claim_refusal(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d)
        if d.is_unique_violation() && d.message().contains("idempotency_keys."))
}

pub(super) const RECORD_RESPONSE_SQL: &str = record_response_sql!();
/// The parameters of [`RECORD_RESPONSE_SQL`]; statements sent after it number theirs on.
pub(super) const RECORD_RESPONSE_PARAMS: usize = 8;

/// `sql` (one of the claim statements) bound for `request` claiming its key at `now`.
pub(super) fn claim_query<'q>(
    sql: &'static str,
    (request, now): (&'q IdempotentRequest, i64),
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments> {
    bind_request(sqlx::query(sql), request).bind(now)
}

/// `sql` ([`RECORD_RESPONSE_SQL`], perhaps with statements after it) bound for `request`'s
/// response.
pub(super) fn record_response<'q>(
    sql: impl sqlx::SqlSafeStr,
    (request, status, body, now): (&'q IdempotentRequest, u16, &'q [u8], i64),
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments> {
    bind_request(sqlx::query(sql), request)
        .bind(i64::from(status))
        .bind(body)
        .bind(now)
}

/// `q` with the request's key and what identifies the request bound as $1 to $5.
fn bind_request<'q>(
    q: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>,
    request: &'q IdempotentRequest,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments> {
    q.bind(&request.project)
        .bind(&request.key)
        .bind(&request.method)
        .bind(&request.path)
        .bind(&request.body)
}

/// Records a first claim of `request`'s key unless something is recorded under it already;
/// true when this claimed it.
pub async fn try_claim_idempotency(
    conn: &mut AnyConnection,
    request: &IdempotentRequest,
    now: i64,
) -> Result<bool> {
    let claimed = claim_query(CLAIM_SQL, (request, now))
        .fetch_optional(conn)
        .await?;
    Ok(claimed.is_some())
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
