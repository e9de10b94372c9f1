//! Idempotency keys. A request under a key runs in a request scope (`store::request`): its
//! first transaction claims the key and its response is recorded in that same transaction. A
//! claim that is refused (something is recorded under the key) is decided on here, by
//! `domain::idempotency::decide`. The HTTP middleware calls these; it opens no transaction
//! itself.

use crate::domain::idempotency::{Decision, decide};
use crate::store::{IdempotentRequest, RequestScope};

use super::*;

impl Cloud {
    /// Runs `f` (the request's handler) in `scope`; returns its output and the scope for
    /// [`Cloud::finish_request`].
    pub async fn in_request<F: Future>(
        &self,
        scope: RequestScope,
        f: F,
    ) -> (F::Output, RequestScope) {
        store::request::scoped(scope, f).await
    }

    /// Records the response of a request (its status and body, if it succeeded) with what it
    /// changed; returns once that is on disk.
    pub async fn finish_request(
        &self,
        scope: RequestScope,
        response: Option<(u16, &[u8])>,
    ) -> Result<()> {
        Ok(self.db.finish_request(scope, response).await?)
    }

    /// What a request whose claim was refused gets. `Decision::Claim` and `Decision::TakeOver`
    /// mean its claim is now committed: run it (again) in a scope made with `claimed`.
    pub async fn decide_idempotency(
        &self,
        request: &IdempotentRequest,
        now: i64,
    ) -> Result<Decision> {
        let mut tx = self.db.begin().await?;
        let recorded = store::idempotency_key(&mut tx, &request.project, &request.key).await?;
        let decision = decide(
            recorded.as_ref(),
            &request.method,
            &request.path,
            &request.body,
            now,
        );
        match decision {
            Decision::Claim => {
                // Released since the claim was refused: nothing recorded, so this claims it.
                store::try_claim_idempotency(&mut tx, request, now).await?;
            }
            Decision::TakeOver => {
                store::renew_idempotency_claim(&mut tx, &request.project, &request.key, now).await?
            }
            Decision::Replay { .. } | Decision::Mismatch | Decision::InFlight => {}
        }
        tx.commit_unsynced().await?;
        Ok(decision)
    }

    /// What is recorded under a request's key says about it, read without claiming anything:
    /// for a request that failed before it claimed its key, which gets the recorded answer
    /// (or the mismatch) rather than its own failure if something is recorded.
    pub async fn recorded_decision(
        &self,
        request: &IdempotentRequest,
        now: i64,
    ) -> Result<Decision> {
        let mut conn = self.db.reader().await?;
        let recorded = store::idempotency_key(&mut conn, &request.project, &request.key).await?;
        Ok(decide(
            recorded.as_ref(),
            &request.method,
            &request.path,
            &request.body,
            now,
        ))
    }

    /// Forgets an unanswered claim (its request's client left), so a retry runs.
    pub async fn release_idempotency(&self, project: &str, key: &str) -> Result<()> {
        let mut tx = self.db.begin().await?;
        store::release_idempotency(&mut tx, project, key).await?;
        tx.commit_quiet().await?;
        Ok(())
    }
}
