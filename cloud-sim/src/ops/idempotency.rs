//! Idempotency keys: claim (by `domain::idempotency::decide`), complete, release. The HTTP
//! middleware calls these; it opens no transaction itself.

use crate::domain::idempotency::{Decision, decide};

use super::*;

impl Cloud {
    /// Claims `key` for this request, or says what it gets instead. `Decision::Claim` and
    /// `Decision::TakeOver` mean the caller runs the request and then completes or releases.
    pub async fn claim_idempotency(
        &self,
        project: &str,
        key: &str,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<Decision> {
        let now = now_ms();
        // A fresh key (nearly every request) is claimed by one statement; a key seen before is
        // decided on in a transaction.
        let fresh = self
            .db
            .autocommit(false, async |conn| {
                store::try_claim_idempotency(conn, project, key, method, path, body, now).await
            })
            .await?;
        if fresh {
            return Ok(Decision::Claim);
        }
        let mut tx = self.db.begin().await?;
        let recorded = store::idempotency_key(&mut tx, project, key).await?;
        let decision = decide(recorded.as_ref(), method, path, body, now);
        match decision {
            Decision::Claim => {
                // Released since the first statement: nothing recorded, so this claims it.
                store::try_claim_idempotency(&mut tx, project, key, method, path, body, now)
                    .await?;
            }
            Decision::TakeOver => {
                store::renew_idempotency_claim(&mut tx, project, key, now).await?
            }
            Decision::Replay { .. } | Decision::Mismatch | Decision::InFlight => {}
        }
        tx.commit_unsynced().await?;
        Ok(decision)
    }

    /// Records the successful response of the request that claimed `key`.
    pub async fn complete_idempotency(
        &self,
        project: &str,
        key: &str,
        status: u16,
        body: &[u8],
    ) -> Result<()> {
        self.db
            .autocommit(true, async |conn| {
                store::complete_idempotency(conn, project, key, status, body).await
            })
            .await?;
        Ok(())
    }

    /// Forgets an unanswered claim (the request failed or its client left), so a retry runs.
    pub async fn release_idempotency(&self, project: &str, key: &str) -> Result<()> {
        let mut tx = self.db.begin().await?;
        store::release_idempotency(&mut tx, project, key).await?;
        tx.commit_quiet().await?;
        Ok(())
    }
}
