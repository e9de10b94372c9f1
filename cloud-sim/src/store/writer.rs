//! The write connection: one per process, kept behind a mutex instead of checked out of a pool
//! for every write.
//!
//! A pool checkout costs two round trips to the connection (sqlx pings a connection before
//! handing it out and again before taking it back) and a spawned task; at a few statements per
//! write that was most of the write connection's time, and every other writer queued behind it.
//! The mutex hands the connection over in FIFO order with neither. What the pool's pings were
//! for is kept where it matters: a holder that let go without ending its work cleanly (an
//! error, or a request whose client went away mid-transaction) leaves the connection marked
//! unsettled, and the next holder rolls back whatever is open and checks the connection before
//! use, replacing it from the pool if it is broken (a restarted PostgreSQL server).

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection, Executor};
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::Result;

/// The write connection and the pool it comes from (and is replaced from).
#[derive(Debug)]
pub(super) struct Writer {
    pool: AnyPool,
    slot: Arc<Mutex<Slot>>,
    /// Nanoseconds the connection has been held: against wall time, how busy the one writer is.
    busy: Arc<AtomicU64>,
}

#[derive(Debug, Default)]
struct Slot {
    conn: Option<PoolConnection<Any>>,
    /// The last holder did not say it was done: a transaction may be open, or a statement
    /// half-sent.
    unsettled: bool,
}

impl Writer {
    pub(super) fn new(pool: AnyPool) -> Self {
        Self {
            pool,
            slot: Arc::new(Mutex::new(Slot::default())),
            busy: Arc::default(),
        }
    }

    /// Waits for the write connection (callers get it in the order they asked).
    pub(super) async fn acquire(&self) -> Result<WriteConn> {
        let mut slot = self.slot.clone().lock_owned().await;
        if slot.unsettled
            && let Some(conn) = slot.conn.as_mut()
        {
            // Ends a transaction left open; an error here only means none was.
            let _ = conn.execute("ROLLBACK").await;
            if conn.ping().await.is_err() {
                tracing::warn!("the write connection is broken; opening another");
                slot.conn = None;
            }
        }
        if slot.conn.is_none() {
            slot.conn = Some(self.pool.acquire().await?);
        }
        slot.unsettled = true;
        Ok(WriteConn {
            slot,
            since: Instant::now(),
            busy: self.busy.clone(),
        })
    }

    /// How long the connection has been held, in all.
    pub(super) fn busy(&self) -> Duration {
        Duration::from_nanos(self.busy.load(Ordering::Relaxed))
    }

    /// Gives the connection back to the pool and closes the pool.
    pub(super) async fn close(&self) {
        self.slot.lock().await.conn = None;
        self.pool.close().await;
    }
}

/// The write connection, held; see [`WriteConn::done`].
#[derive(Debug)]
pub(super) struct WriteConn {
    slot: OwnedMutexGuard<Slot>,
    since: Instant,
    busy: Arc<AtomicU64>,
}

impl Drop for WriteConn {
    fn drop(&mut self) {
        let held = u64::try_from(self.since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.busy.fetch_add(held, Ordering::Relaxed);
    }
}

impl WriteConn {
    /// Says the holder ended its work cleanly (no transaction open): the next holder uses the
    /// connection as it is. Dropping without this makes the next holder check it first.
    pub(super) fn done(&mut self) {
        self.slot.unsettled = false;
    }
}

impl Deref for WriteConn {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        self.slot.conn.as_ref().expect("acquire fills the slot")
    }
}

impl DerefMut for WriteConn {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        self.slot.conn.as_mut().expect("acquire fills the slot")
    }
}
