//! Group commit: one `fsync` of the write-ahead log makes every transaction committed before it
//! durable, so concurrent writers share the cost of reaching the disk.
//!
//! The write connection runs with `synchronous=NORMAL`: in WAL mode a commit then writes its
//! frames to the log (they reach the OS at once, so `kill -9` of the process loses nothing) but
//! does not wait for the disk. A write that is about to be acknowledged calls [`GroupSync::sync`],
//! which `fdatasync`s the log unless a sync that started after its commit has already finished.
//! While one sync runs, the commits behind it queue for the next one, and that next one covers
//! them all: with eight concurrent clients one disk flush acknowledges several writes.
//!
//! A flush does not start the moment someone needs one: writers that are in the middle of a
//! transaction (or queued for the write connection) commit within a fraction of a millisecond,
//! so the flush first waits for them, up to [`GATHER`], and then covers them too. Without that
//! pause, a commit appended while a flush runs waits for the flush's pages to reach the disk,
//! each flush ends up covering one commit, and eight clients get no more than one.
//!
//! A request under an idempotency key commits once, at its end, with its recorded response
//! (`store::request`); it waits for the disk then.
//!
//! SQLite itself syncs the log before a checkpoint copies it into the database file and syncs
//! the database file after, so frames that leave the log stay durable.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, Notify};

/// Longest a flush waits for writers in the middle of a transaction before it starts.
pub const GATHER: Duration = Duration::from_micros(300);

/// Durability of the commits of one write connection.
#[derive(Debug)]
pub struct GroupSync {
    /// The write-ahead log; `None` for databases that are not files (nothing to sync).
    wal: Option<PathBuf>,
    /// Commits counted so far (a commit counts after SQLite has written its frames).
    committed: AtomicU64,
    /// How many commits the last finished sync covers; held while a sync runs.
    synced: Mutex<u64>,
    /// Disk flushes performed, for the metrics and the benchmark.
    flushes: AtomicU64,
    /// Write transactions begun (or waiting for the write connection) and not yet ended.
    writing: AtomicUsize,
    /// Rung whenever a write transaction ends.
    ended: Notify,
}

impl GroupSync {
    pub fn new(wal: Option<PathBuf>) -> Self {
        Self {
            wal,
            committed: AtomicU64::new(0),
            synced: Mutex::new(0),
            flushes: AtomicU64::new(0),
            writing: AtomicUsize::new(0),
            ended: Notify::new(),
        }
    }

    /// A write transaction is starting; it counts until the returned guard drops.
    pub fn writing(self: &std::sync::Arc<Self>) -> Writing {
        self.writing.fetch_add(1, Ordering::AcqRel);
        Writing(self.clone())
    }

    /// Waits (at most [`GATHER`]) until no write transaction is in progress.
    async fn gather(&self) {
        let until = tokio::time::Instant::now() + GATHER;
        loop {
            let ended = self.ended.notified();
            if self.writing.load(Ordering::Acquire) == 0 {
                return;
            }
            if tokio::time::timeout_at(until, ended).await.is_err() {
                return;
            }
        }
    }

    /// Counts a commit that has just returned; pass the result to [`GroupSync::sync`].
    pub fn committed(&self) -> u64 {
        self.committed.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Returns once commit number `commit` (from [`GroupSync::committed`]) is on disk.
    pub async fn sync(&self, commit: u64) -> std::io::Result<()> {
        let Some(wal) = &self.wal else {
            return Ok(());
        };
        let mut synced = self.synced.lock().await;
        if *synced >= commit {
            // A flush that started after this commit covered it while we queued.
            return Ok(());
        }
        self.gather().await;
        // Every commit counted by now has written its frames: one flush covers them all.
        let covers = self.committed.load(Ordering::Acquire);
        let wal = wal.clone();
        // The log is opened for each flush: SQLite may delete and recreate it (when its last
        // connection closes), and a descriptor kept open would flush a deleted file.
        tokio::task::spawn_blocking(move || std::fs::File::open(&wal)?.sync_data())
            .await
            .map_err(std::io::Error::other)??;
        self.flushes.fetch_add(1, Ordering::Relaxed);
        *synced = covers;
        Ok(())
    }

    /// Commits counted so far.
    pub fn commits(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// Disk flushes so far.
    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }
}

/// Counts a write transaction in progress while it lives (see [`GroupSync::writing`]).
#[derive(Debug)]
pub struct Writing(std::sync::Arc<GroupSync>);

impl Drop for Writing {
    fn drop(&mut self) {
        self.0.writing.fetch_sub(1, Ordering::AcqRel);
        self.0.ended.notify_waiters();
    }
}

/// Flushes a directory, so a file just created in it survives a power loss.
pub fn sync_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in log file, unique to the test.
    fn log(test: &str, exists: bool) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("group-sync-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let wal = dir.join("db-wal");
        if exists {
            std::fs::write(&wal, b"frames").unwrap();
        }
        wal
    }

    #[tokio::test]
    async fn a_flush_covers_every_commit_counted_before_it() {
        let g = GroupSync::new(Some(log("covers", true)));
        let (a, b) = (g.committed(), g.committed());
        g.sync(b).await.unwrap();
        assert_eq!(g.flushes(), 1);
        // `a` was committed before the flush for `b` started: already durable.
        g.sync(a).await.unwrap();
        assert_eq!(g.flushes(), 1);
        let c = g.committed();
        g.sync(c).await.unwrap();
        assert_eq!(g.flushes(), 2);
    }

    #[tokio::test]
    async fn concurrent_waiters_share_flushes() {
        let g = std::sync::Arc::new(GroupSync::new(Some(log("share", true))));
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let g = g.clone();
            tasks.push(tokio::spawn(async move {
                let n = g.committed();
                g.sync(n).await.unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        // On a current-thread runtime the first task flushes for its own commit alone; the 31
        // others commit while that flush runs and share the second.
        assert_eq!(g.flushes(), 2);
    }

    #[tokio::test]
    async fn a_missing_log_is_an_error_not_a_silent_success() {
        let g = GroupSync::new(Some(log("missing", false)));
        let n = g.committed();
        assert!(g.sync(n).await.is_err());
    }

    #[tokio::test]
    async fn a_flush_waits_for_the_writer_in_progress_and_covers_it() {
        let g = std::sync::Arc::new(GroupSync::new(Some(log("gather", true))));
        let first = g.committed();
        let writer = g.writing();
        let g2 = g.clone();
        let flush = tokio::spawn(async move { g2.sync(first).await.unwrap() });
        tokio::task::yield_now().await;
        // The writer commits while the flush waits for it ...
        let second = g.committed();
        drop(writer);
        flush.await.unwrap();
        // ... so the one flush covered both.
        g.sync(second).await.unwrap();
        assert_eq!(g.flushes(), 1);
    }

    #[tokio::test]
    async fn a_writer_that_takes_long_does_not_hold_up_the_flush() {
        let g = std::sync::Arc::new(GroupSync::new(Some(log("slow", true))));
        let _writer = g.writing();
        let n = g.committed();
        g.sync(n).await.unwrap();
        assert_eq!(g.flushes(), 1);
    }

    #[tokio::test]
    async fn memory_databases_have_nothing_to_flush() {
        let g = GroupSync::new(None);
        let n = g.committed();
        g.sync(n).await.unwrap();
        assert_eq!(g.flushes(), 0);
    }
}
