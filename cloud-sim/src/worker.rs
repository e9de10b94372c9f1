//! The background worker: settles transitional states when their delay has passed and purges
//! expired records (every [`PURGE_EVERY`]). It sleeps until the next deadline (at most
//! [`MAX_IDLE`]) and is woken early by any write, since a write may have set a nearer deadline;
//! a wake-up with nothing due reads two indexes and takes no write lock. A wake-up by a write
//! waits [`WRITE_COALESCE`] first, so a burst of writes costs one pass, not one each.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::ops::Cloud;
use crate::store::now_ms;

/// Longest the worker sleeps without looking.
pub const MAX_IDLE: Duration = Duration::from_secs(1);

/// After a write wakes it, how long the worker waits for more before its pass. At 10,000
/// sandbox nodes the cloud commits ~900 writes a second; a pass per write read the deadline
/// index ~1,800 times a second and settled the instances due one transaction each.
pub const WRITE_COALESCE: Duration = Duration::from_millis(10);

/// After a failed settle, how long before the worker tries again.
pub const RETRY_AFTER: Duration = Duration::from_millis(100);

/// How often expired records are purged.
pub const PURGE_EVERY: Duration = Duration::from_secs(1);

/// Runs until `shutdown` is cancelled.
pub async fn run(cloud: Cloud, shutdown: CancellationToken) {
    let mut purged_at: Option<tokio::time::Instant> = None;
    loop {
        let notified = cloud.changes().notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if purged_at.is_none_or(|at| at.elapsed() >= PURGE_EVERY) {
            purged_at = Some(tokio::time::Instant::now());
            if let Err(e) = cloud.purge_expired().await {
                tracing::warn!(error = %crate::http::error::error_chain(&e), "purging expired records failed; will retry");
            }
        }
        // One read of the deadline index per pass; settling (which reads it again, under its
        // transaction) only when something is due, then a fresh look.
        let sleep = match cloud.next_deadline().await {
            Ok(Some(at)) if at <= now_ms() => match cloud.settle_due().await {
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(error = %crate::http::error::error_chain(&e), "settling due resources failed; will retry");
                    RETRY_AFTER
                }
            },
            Ok(Some(at)) => {
                Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0)).min(MAX_IDLE)
            }
            Ok(None) => MAX_IDLE,
            Err(e) => {
                tracing::warn!(error = %crate::http::error::error_chain(&e), "reading deadlines failed");
                MAX_IDLE
            }
        };
        let written = tokio::select! {
            _ = tokio::time::sleep(sleep) => false,
            _ = &mut notified => true,
            _ = shutdown.cancelled() => return,
        };
        if written {
            tokio::select! {
                _ = tokio::time::sleep(WRITE_COALESCE) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }
}
