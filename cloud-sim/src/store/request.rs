//! A request under an idempotency key, written as one transaction.
//!
//! A create under a key used to take three: the key's claim, the create, and the stored
//! response, each a turn of the write connection and a commit to the log. Inside [`scoped`]:
//!
//! - the first [`Db::begin`] claims the key in the transaction it opens (on SQLite in the same
//!   round trip as `BEGIN`); a key with something recorded under it already is refused
//!   ([`StoreError::KeyTaken`]) and [`RequestScope::refused`] says so, so the caller can decide
//!   what the request gets instead (`domain::idempotency::decide`);
//! - the operation's [`WriteTx::commit`] leaves its transaction open (parked in the scope);
//! - [`Db::finish_request`] records the response in it and commits (on SQLite the record, the
//!   operation's queued events and the `COMMIT` are one round trip), then waits for the disk.
//!
//! Claim, change and response so reach the log together or not at all, and another request
//! with the same key, which waits for the write connection, finds either nothing or the
//! recorded response. A request dropped before it finishes (its client went away) drops the
//! parked transaction, which the connection's next holder rolls back: nothing was answered, so
//! nothing is lost.
//!
//! What an operation sees does not change: anything that must see the parked changes or needs
//! the write connection (a second `begin`, a read) commits them first, the claim with them, and
//! the response is then recorded in a transaction of its own. No operation does that today.

use std::cell::RefCell;
use std::sync::Arc;

use super::*;

/// A POST under an `Idempotency-Key`: what its key is recorded with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotentRequest {
    pub project: String,
    pub key: String,
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
}

/// The writes of one request so far; see the module documentation.
#[derive(Debug)]
pub struct RequestScope {
    request: Arc<IdempotentRequest>,
    /// When the request arrived (its claim's time).
    now: i64,
    /// The operation's committed transaction, still open.
    parked: Option<Parked>,
    /// The claim is committed: it must be completed or released. False while it rides in an
    /// open transaction, and when none was made.
    claim_committed: bool,
    /// The key was claimed here at least once (the claim may have been rolled back since).
    claimed: bool,
    refused: bool,
    /// The number of the last commit made in the scope (0: none).
    last_commit: u64,
}

#[derive(Debug)]
struct Parked {
    tx: WriteTx,
    /// The commit would have woken event-log waiters.
    wake: bool,
}

impl RequestScope {
    /// A scope for `request`, arriving at `now`; `claimed`: its claim is committed already.
    pub fn new(request: Arc<IdempotentRequest>, now: i64, claimed: bool) -> Self {
        Self {
            request,
            now,
            parked: None,
            claim_committed: claimed,
            claimed,
            refused: false,
            last_commit: 0,
        }
    }

    /// The claim was refused: something is recorded under the key already.
    pub fn refused(&self) -> bool {
        self.refused
    }

    /// The key was claimed in the scope: when the request failed without, nothing says
    /// whether something is recorded under the key (a request that fails before it writes
    /// never claims).
    pub fn claimed(&self) -> bool {
        self.claimed
    }

    /// The claim is committed apart from the response, so a request dropped now leaves it
    /// behind (see [`Db::finish_request`]).
    pub fn claim_committed(&self) -> bool {
        self.claim_committed
    }
}

tokio::task_local! {
    static SCOPE: RefCell<Option<RequestScope>>;
}

/// Runs `f` (the request's handler) in `scope`; returns its output and the scope, to pass to
/// [`Db::finish_request`].
pub async fn scoped<F: Future>(scope: RequestScope, f: F) -> (F::Output, RequestScope) {
    SCOPE
        .scope(RefCell::new(Some(scope)), async move {
            let out = f.await;
            let scope = SCOPE.with(|s| s.borrow_mut().take());
            (out, scope.expect("the scope is taken only here"))
        })
        .await
}

/// Runs `f` on the current task's scope, if it is in one.
fn with_scope<T>(f: impl FnOnce(&mut RequestScope) -> T) -> Option<T> {
    SCOPE
        .try_with(|s| s.borrow_mut().as_mut().map(f))
        .ok()
        .flatten()
}

pub(super) fn in_scope() -> bool {
    with_scope(|_| ()).is_some()
}

/// Parks `tx`, committed by its operation, in the current scope; gives it back outside one.
pub(super) fn park(tx: WriteTx, wake: bool) -> Result<(), WriteTx> {
    let mut tx = Some(tx);
    with_scope(|s| {
        debug_assert!(s.parked.is_none(), "one transaction is open at a time");
        s.parked = tx.take().map(|tx| Parked { tx, wake });
    });
    tx.map_or(Ok(()), Err)
}

impl Db {
    /// Commits the parked transaction, if any, without waiting for the disk (the request's
    /// last commit will): before anything that must see it or needs the write connection.
    pub(super) async fn commit_parked(&self) -> Result<()> {
        let Some(Parked { tx, wake }) = with_scope(|s| s.parked.take()).flatten() else {
            return Ok(());
        };
        let claims = tx.claims;
        let n = tx.commit_now(wake).await?;
        with_scope(|s| {
            s.last_commit = n;
            s.claim_committed |= claims;
        });
        Ok(())
    }

    /// [`Db::begin`] (or [`Db::begin_with`]) inside a scope: claims the key with the first
    /// transaction.
    pub(super) async fn begin_in_request(
        &self,
        first: Option<super::FirstStatement<'_>>,
    ) -> Result<(WriteTx, Vec<sqlx::any::AnyRow>)> {
        self.commit_parked().await?;
        let (request, now, claimed) = with_scope(|s| (s.request.clone(), s.now, s.claim_committed))
            .expect("called in a scope");
        let claim = (!claimed).then_some((&*request, now));
        match self.open(claim, first).await? {
            Some((mut tx, rows)) => {
                tx.in_request = true;
                tx.claims = claim.is_some();
                with_scope(|s| s.claimed |= tx.claims);
                Ok((tx, rows))
            }
            None => {
                with_scope(|s| s.refused = true);
                Err(StoreError::KeyTaken)
            }
        }
    }

    /// Ends a request's scope: with `response` (status and body of a success) records it and
    /// commits what the request changed with it; without (a failure, which is not recorded so
    /// that a retry runs) commits the changes and releases a committed claim. Returns once
    /// all of it is on disk.
    pub async fn finish_request(
        &self,
        scope: RequestScope,
        response: Option<(u16, &[u8])>,
    ) -> Result<()> {
        let RequestScope {
            request,
            now,
            parked,
            claim_committed,
            last_commit,
            ..
        } = scope;
        let n = match (response, parked) {
            (Some((status, body)), parked) => {
                let (mut tx, wake) = match parked {
                    Some(Parked { tx, wake }) => (tx, wake),
                    None => (
                        self.open(None, None).await?.expect("nothing to refuse").0,
                        false,
                    ),
                };
                let record = (&*request, status, body, now);
                if self.engine == Engine::Sqlite {
                    // The record, the last of the operation's queued writes and the COMMIT in
                    // one round trip.
                    let last = tx.write_queued_but_the_last().await?;
                    let mut sql = vec![RECORD_RESPONSE_SQL.to_owned()];
                    sql.extend(last.statements(RECORD_RESPONSE_PARAMS + 1));
                    sql.push("COMMIT".to_owned());
                    let sql = sql.join("; ");
                    last.bind(record_response(sqlx::AssertSqlSafe(sql), record))
                        .execute(&mut *tx.conn)
                        .await?;
                    tx.committed(wake)
                } else {
                    record_response(RECORD_RESPONSE_SQL, record)
                        .execute(&mut *tx.conn)
                        .await?;
                    tx.commit_now(wake).await?
                }
            }
            (None, Some(Parked { mut tx, wake })) => {
                // The operation committed and its response still failed. A failure is not
                // recorded (the client may fix the cause and retry with the key): the claim goes.
                if tx.claims || claim_committed {
                    release_idempotency(&mut tx, &request.project, &request.key).await?;
                }
                tx.commit_now(wake).await?
            }
            (None, None) if claim_committed => {
                let mut tx = self.open(None, None).await?.expect("nothing to refuse").0;
                release_idempotency(&mut tx, &request.project, &request.key).await?;
                tx.commit_now(false).await?
            }
            (None, None) => last_commit,
        };
        if n == 0 {
            return Ok(());
        }
        self.sync(n).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(key: &str) -> Arc<IdempotentRequest> {
        Arc::new(IdempotentRequest {
            project: "p".into(),
            key: key.into(),
            method: "POST".into(),
            path: "/v1/things".into(),
            body: b"{}".to_vec(),
        })
    }

    /// An operation's write: one event, committed.
    async fn operation(db: &Db, id: &str) -> Result<()> {
        let mut tx = db.begin().await?;
        let e = NewEvent {
            project: Some("p"),
            resource_kind: ResourceKind::Instance,
            resource_id: id,
            kind: EventKind::Created,
            state: None,
            zone: None,
        };
        append_event(&mut tx, &e, 1);
        tx.commit().await
    }

    async fn events_of(db: &Db, id: &str) -> i64 {
        let mut conn = db.reader().await.unwrap();
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM events WHERE resource_id = $1")
            .bind(id)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        n
    }

    async fn recorded(db: &Db, key: &str) -> Option<crate::domain::idempotency::Recorded> {
        let mut conn = db.reader().await.unwrap();
        idempotency_key(&mut conn, "p", key).await.unwrap()
    }

    #[tokio::test]
    async fn claim_change_and_response_are_one_commit() {
        let db = Db::connect("sqlite::memory:").await.unwrap();
        let before = db.sync.commits();
        let scope = RequestScope::new(request("k1"), 5, false);
        let (out, scope) = scoped(scope, operation(&db, "i-1")).await;
        out.unwrap();
        assert!(scope.claimed() && !scope.refused() && !scope.claim_committed());
        db.finish_request(scope, Some((201, b"{\"id\":\"i-1\"}")))
            .await
            .unwrap();
        assert_eq!(
            db.sync.commits() - before,
            1,
            "the request made exactly one commit"
        );
        assert_eq!(events_of(&db, "i-1").await, 1);
        let r = recorded(&db, "k1").await.unwrap();
        assert_eq!(r.response, Some((201, b"{\"id\":\"i-1\"}".to_vec())));
        assert_eq!(r.claimed_at, 5);
    }

    /// The first statement of [`Db::begin_with`]: an insert that returns what it inserted
    /// (a unique violation when `zone` is there already).
    fn insert_zone(zone: &str) -> super::super::FirstStatement<'_> {
        sqlx::query(
            "INSERT INTO zone_states (zone, state, updated_at) VALUES ($1, 'up', 1) RETURNING zone",
        )
        .bind(zone)
    }

    async fn zones(db: &Db) -> Vec<String> {
        let mut conn = db.reader().await.unwrap();
        sqlx::query_as::<_, (String,)>("SELECT zone FROM zone_states ORDER BY zone")
            .fetch_all(&mut *conn)
            .await
            .unwrap()
            .into_iter()
            .map(|(z,)| z)
            .collect()
    }

    fn zone_of(rows: &[sqlx::any::AnyRow]) -> Vec<String> {
        use sqlx::Row;
        rows.iter().map(|r| r.get::<String, _>(0)).collect()
    }

    /// `BEGIN`, the claim and the first statement go together (one round trip on SQLite): each
    /// outcome leaves the database and the key as the three sent one by one would.
    #[tokio::test]
    async fn begin_with_claims_the_key_with_its_first_statement_or_leaves_nothing() {
        let db = Db::connect("sqlite::memory:").await.unwrap();
        // Outside a request: the statement's rows, in a transaction the commit ends.
        let (tx, rows) = db.begin_with(insert_zone("z0")).await.unwrap();
        assert_eq!(zone_of(&rows), ["z0"]);
        tx.commit().await.unwrap();

        // In a request: claimed, run and recorded in one commit.
        let before = db.sync.commits();
        let (out, scope) = scoped(RequestScope::new(request("k1"), 5, false), async {
            let (tx, rows) = db.begin_with(insert_zone("z1")).await?;
            tx.commit().await?;
            Ok::<_, StoreError>(zone_of(&rows))
        })
        .await;
        assert_eq!(out.unwrap(), ["z1"]);
        assert!(scope.claimed() && !scope.refused());
        db.finish_request(scope, Some((201, b"{}"))).await.unwrap();
        assert_eq!(db.sync.commits() - before, 1);
        assert_eq!(recorded(&db, "k1").await.unwrap().claimed_at, 5);

        // The key is taken: refused before the statement runs, nothing left open.
        let (out, scope) = scoped(
            RequestScope::new(request("k1"), 6, false),
            db.begin_with(insert_zone("z2")),
        )
        .await;
        assert!(matches!(out, Err(StoreError::KeyTaken)));
        assert!(scope.refused());
        db.finish_request(scope, None).await.unwrap();

        // The statement fails: its error (not a refusal), the claim undone with it.
        let (out, scope) = scoped(
            RequestScope::new(request("k2"), 7, false),
            db.begin_with(insert_zone("z1")),
        )
        .await;
        let Err(e) = out else {
            panic!("z1 is there already")
        };
        assert!(is_unique_violation(&e), "{e:?}");
        assert!(!scope.refused());
        db.finish_request(scope, None).await.unwrap();
        assert!(recorded(&db, "k2").await.is_none(), "the key is free");

        assert_eq!(zones(&db).await, ["z0", "z1"]);
        // Nothing was left open: the next transaction begins and commits.
        let (tx, _) = db.begin_with(insert_zone("z3")).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(zones(&db).await, ["z0", "z1", "z3"]);
    }

    #[tokio::test]
    async fn a_taken_key_is_refused_before_the_operation_writes() {
        let db = Db::connect("sqlite::memory:").await.unwrap();
        let (out, scope) = scoped(
            RequestScope::new(request("k1"), 5, false),
            operation(&db, "i-1"),
        )
        .await;
        out.unwrap();
        db.finish_request(scope, Some((201, b"{}"))).await.unwrap();
        let (out, scope) = scoped(
            RequestScope::new(request("k1"), 6, false),
            operation(&db, "i-2"),
        )
        .await;
        assert!(matches!(out, Err(StoreError::KeyTaken)), "{out:?}");
        assert!(scope.refused());
        db.finish_request(scope, None).await.unwrap();
        assert_eq!(
            events_of(&db, "i-2").await,
            0,
            "the refused request wrote nothing"
        );
        assert_eq!(recorded(&db, "k1").await.unwrap().claimed_at, 5);
    }

    #[tokio::test]
    async fn a_request_dropped_before_it_finishes_leaves_nothing() {
        let db = Db::connect("sqlite::memory:").await.unwrap();
        let run = scoped(RequestScope::new(request("k1"), 5, false), async {
            operation(&db, "i-1").await.unwrap();
            // Its client goes away while the response is on its way.
            std::future::pending::<()>().await;
        });
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), run)
                .await
                .is_err()
        );
        // The next writer rolls back what the dropped request left open.
        assert_eq!(events_of(&db, "i-1").await, 0);
        assert!(
            recorded(&db, "k1").await.is_none(),
            "the key is free for a retry"
        );
        let (out, scope) = scoped(
            RequestScope::new(request("k1"), 6, false),
            operation(&db, "i-1"),
        )
        .await;
        out.unwrap();
        db.finish_request(scope, Some((201, b"{}"))).await.unwrap();
        assert_eq!(events_of(&db, "i-1").await, 1);
    }

    #[tokio::test]
    async fn a_read_after_the_operation_sees_its_change_and_the_claim_is_released_on_failure() {
        let db = Db::connect("sqlite::memory:").await.unwrap();
        let (seen, scope) = scoped(RequestScope::new(request("k1"), 5, false), async {
            operation(&db, "i-1").await.unwrap();
            events_of(&db, "i-1").await
        })
        .await;
        assert_eq!(seen, 1, "read-your-writes inside the request");
        assert!(
            scope.claim_committed(),
            "the read committed the claim with the change"
        );
        // The response failed: the change stays, the claim goes, so a retry runs.
        db.finish_request(scope, None).await.unwrap();
        assert_eq!(events_of(&db, "i-1").await, 1);
        assert!(recorded(&db, "k1").await.is_none());
    }
}
