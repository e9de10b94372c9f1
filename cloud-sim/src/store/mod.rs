//! All SQL. Functions take a connection (or a [`Db`] for reads) and return domain values; they
//! never see axum types and never decide policy.
//!
//! SQLite allows one writer at a time, so writes go through one connection, held for the
//! database's lifetime and handed from writer to writer by a mutex ([`writer`]): transactions
//! then never fail with `SQLITE_BUSY`, and check-then-insert inside a write transaction is
//! race-free. Reads use their own pool (WAL lets them run beside the writer).
//! `sqlite::memory:` databases are read through the write connection too, since each
//! connection would otherwise see its own empty database.
//!
//! Durability is by group commit ([`durability`]): [`WriteTx::commit`] returns once the
//! transaction is on disk, and concurrent commits share one flush of the write-ahead log.
//!
//! The same SQL runs on SQLite (the default) and PostgreSQL ([`Engine`]), through sqlx's `Any`
//! driver; each engine has its own migrations (`migrations/sqlite`, `migrations/postgres`),
//! which differ only in spelling (key columns, blob type). On PostgreSQL the write connection
//! is also one per process, and the server makes commits durable itself.
//!
//! This module holds the connection handling and the helpers every table uses; one submodule per
//! resource holds its SQL (`instances`, `load_balancers`, `backend_groups`, `routes`, `events`, `catalog` for zones
//! and instance types, `idempotency`, `traffic` for reports that data planes running apart
//! publish), all re-exported here.

use std::net::Ipv4Addr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use cloud_api::{
    Backend, BackendGroupId, Event, EventKind, Frontend, HealthCheck, Instance, InstanceId,
    InstanceState, InstanceType, IpMode, Listener, LoadBalancer, LoadBalancerId, LoadBalancerState,
    ResourceKind, Route, RouteId, RouteState, Scheme, Tags, ZonePolicy, ZoneState,
};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sqlx::any::{AnyArguments, AnyPoolOptions, AnyRow};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Any, AnyConnection, AnyPool, Arguments, ConnectOptions, Connection, Execute, Executor};
use tokio::sync::Notify;

mod backend_groups;
mod catalog;
pub mod durability;
mod events;
mod idempotency;
mod instances;
mod load_balancers;
mod queued;
pub mod request;
mod routes;
mod traffic;
mod writer;

pub use backend_groups::*;
pub use catalog::*;
pub use events::*;
pub use idempotency::*;
pub use instances::*;
pub use load_balancers::*;
pub use queued::queue_tags;
pub use request::{IdempotentRequest, RequestScope};
pub use routes::*;
pub use traffic::*;

/// A failure of the database layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {url}")]
    Open {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot apply migrations")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot flush the write-ahead log to disk")]
    Sync(#[source] std::io::Error),
    #[error("database query failed")]
    Query(#[from] sqlx::Error),
    #[error("stored {what} is corrupt: {detail}")]
    Corrupt { what: &'static str, detail: String },
    /// Inside a request under an idempotency key ([`request`]): something is recorded under
    /// the key already, so the request does not run as it is.
    #[error("the idempotency key is taken")]
    KeyTaken,
}

fn corrupt(what: &'static str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what,
        detail: detail.to_string(),
    }
}

/// True when `e` is a unique-constraint violation: the database's last word on duplicates.
pub fn is_unique_violation(e: &StoreError) -> bool {
    matches!(e, StoreError::Query(sqlx::Error::Database(d)) if d.is_unique_violation())
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The database engines cloud-sim runs on, chosen by the URL's scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// `sqlite://<file>` or `sqlite::memory:`.
    Sqlite,
    /// `postgres://` or `postgresql://`.
    Postgres,
}

impl Engine {
    pub fn of_url(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else {
            None
        }
    }
}

/// `url` with its password, if any, replaced by `***`: what logs and errors may show.
pub fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        _ => url.to_owned(),
    }
}

/// The database: the write connection, a read pool (none for in-memory databases: they are read
/// through the write connection), the group commit of the writer, and a signal for new events.
#[derive(Debug, Clone)]
pub struct Db {
    engine: Engine,
    write: Arc<writer::Writer>,
    read: Option<AnyPool>,
    sync: Arc<durability::GroupSync>,
    events: Arc<Notify>,
    /// Ends the PostgreSQL change listener ([`follow_changes`]) when the database closes.
    closing: tokio_util::sync::CancellationToken,
}

/// The PostgreSQL advisory lock every write transaction takes first, so that writes from every
/// cloud-sim on one database are serialised as SQLite serialises one process's: a check and the
/// insert it allows (a free address, a unique name, a quota) cannot interleave with another's.
const WRITE_LOCK: i64 = 0x5349_4d43_4c44_0001;

/// The PostgreSQL notification channel a commit that changed something announces itself on, so
/// that every cloud-sim on the database wakes its long polls, worker and data plane.
const CHANGES_CHANNEL: &str = "cloudsim_changes";

/// Current time in Unix milliseconds.
pub fn now_ms() -> i64 {
    Timestamp::now().as_millisecond()
}

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn ip_to_db(ip: Ipv4Addr) -> i64 {
    i64::from(u32::from(ip))
}

fn ip_from_db(v: i64) -> Result<Ipv4Addr> {
    u32::try_from(v)
        .map(Ipv4Addr::from)
        .map_err(|_| corrupt("address", v))
}

fn parse<T: FromStr>(what: &'static str, s: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e| corrupt(what, e))
}

fn from_json<T: serde::de::DeserializeOwned>(what: &'static str, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| corrupt(what, e))
}

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data serializes")
}

impl Db {
    /// Opens (creating if needed) the database at `url` and applies migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        match Engine::of_url(url) {
            Some(Engine::Sqlite) => Self::connect_sqlite(url).await,
            Some(Engine::Postgres) => Self::connect_postgres(url).await,
            None => Err(StoreError::Open {
                url: redacted_url(url),
                source: sqlx::Error::Configuration(
                    "the database URL must start with sqlite: or postgres://".into(),
                ),
            }),
        }
    }

    async fn connect_sqlite(url: &str) -> Result<Self> {
        let open = |source| StoreError::Open {
            url: url.to_owned(),
            source,
        };
        let memory = url.contains(":memory:") || url.contains("mode=memory");
        // Every connection: wait out a locked database rather than fail, enforce foreign keys.
        // NORMAL: a commit writes the log without waiting for the disk; a write is acknowledged
        // only after `GroupSync` has flushed the log, so it is on disk before the client hears
        // 2xx, even across power loss. The writer never closes while the database is open, so
        // the log it writes is the file that gets flushed.
        // The writer copies the log into the database (a checkpoint: the last version of each
        // page, and two flushes to disk) in the commit that takes the log past
        // `wal_autocheckpoint` pages, holding the write connection meanwhile. SQLite's default
        // of 1,000 pages is about 60 instance creates (some 15 pages each): a checkpoint of
        // several milliseconds every 60 creates was the slowest 1% of commits. At 10,000 the
        // pages written over and over (index leaves) are copied once for ten times as many
        // commits; the log tops out near 40 MiB.
        let pragmas = if memory {
            "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;"
        } else {
            concat!(
                "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; PRAGMA synchronous = NORMAL; ",
                "PRAGMA wal_autocheckpoint = 10000;"
            )
        };
        let pool = |max: u32| {
            AnyPoolOptions::new()
                .max_connections(max)
                // Readers are local connections to a file: no liveness check on every checkout.
                .test_before_acquire(false)
                .after_connect(move |conn, _| {
                    Box::pin(async move {
                        conn.execute(pragmas).await?;
                        Ok(())
                    })
                })
        };
        let file = if memory {
            None
        } else {
            // Create the file and switch it to write-ahead logging (a property of the file) with
            // the native driver, which knows how; the pools then open an existing database.
            let opts = SqliteConnectOptions::from_str(url)
                .map_err(open)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal);
            opts.connect()
                .await
                .map_err(open)?
                .close()
                .await
                .map_err(open)?;
            Some(opts.get_filename().to_owned())
        };
        // The write connection is held for the database's lifetime (an in-memory database lives
        // as long as it); the pool only opens it.
        let write = pool(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect(url)
            .await
            .map_err(open)?;
        let read = if memory {
            None
        } else {
            let sep = if url.contains('?') { '&' } else { '?' };
            let read = pool(4)
                .connect(&format!("{url}{sep}mode=ro"))
                .await
                .map_err(open)?;
            Some(read)
        };
        sqlx::migrate!("./migrations/sqlite").run(&write).await?;
        let wal = file.map(|file| {
            let mut wal = file.into_os_string();
            wal.push("-wal");
            std::path::PathBuf::from(wal)
        });
        if let Some(dir) = wal.as_deref().and_then(std::path::Path::parent) {
            // The migrations created the log: make its directory entry durable once.
            durability::sync_dir(if dir.as_os_str().is_empty() {
                std::path::Path::new(".")
            } else {
                dir
            })
            .map_err(StoreError::Sync)?;
        }
        let write = Arc::new(writer::Writer::new(write));
        // Taken now: an in-memory database must not be dropped between uses.
        write.acquire().await?.done();
        Ok(Self {
            engine: Engine::Sqlite,
            write,
            read,
            sync: Arc::new(durability::GroupSync::new(wal)),
            events: Arc::new(Notify::new()),
            closing: tokio_util::sync::CancellationToken::new(),
        })
    }

    async fn connect_postgres(url: &str) -> Result<Self> {
        let open = |source| StoreError::Open {
            url: redacted_url(url),
            source,
        };
        let write = AnyPoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect(url)
            .await
            .map_err(open)?;
        let read = AnyPoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .connect(url)
            .await
            .map_err(open)?;
        sqlx::migrate!("./migrations/postgres").run(&write).await?;
        let listener = sqlx::postgres::PgListener::connect(url)
            .await
            .map_err(open)?;
        let events = Arc::new(Notify::new());
        let closing = tokio_util::sync::CancellationToken::new();
        tokio::spawn(follow_changes(listener, events.clone(), closing.clone()));
        Ok(Self {
            engine: Engine::Postgres,
            write: Arc::new(writer::Writer::new(write)),
            read: Some(read),
            // PostgreSQL's commit returns once its log is on disk (synchronous_commit = on, the
            // default): nothing is left to flush here.
            sync: Arc::new(durability::GroupSync::new(None)),
            events,
            closing,
        })
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Starts a write transaction. Commit it with [`WriteTx::commit`]. Inside a request under an
    /// idempotency key it also claims the key, see [`request`].
    pub async fn begin(&self) -> Result<WriteTx> {
        Ok(self.begin_first(None).await?.0)
    }

    /// [`Db::begin`], with `first` as the transaction's first statement: gives its rows too. On
    /// SQLite the `BEGIN`, a request's key claim and `first` go to the database in one round
    /// trip, where [`Db::begin`] and a statement take two. When `first` fails the transaction
    /// is ended and its error returned (a unique violation is the caller's to explain).
    pub(super) async fn begin_with(
        &self,
        first: FirstStatement<'_>,
    ) -> Result<(WriteTx, Vec<AnyRow>)> {
        self.begin_first(Some(first)).await
    }

    async fn begin_first(
        &self,
        first: Option<FirstStatement<'_>>,
    ) -> Result<(WriteTx, Vec<AnyRow>)> {
        if request::in_scope() {
            return self.begin_in_request(first).await;
        }
        Ok(self.open(None, first).await?.expect("nothing to refuse"))
    }

    /// Takes the write connection and begins a transaction, running `first` in it if given; with
    /// `claim`, claims the key first, or gives `None` (nothing open) when something is recorded
    /// under the key already.
    async fn open(
        &self,
        claim: Option<(&IdempotentRequest, i64)>,
        first: Option<FirstStatement<'_>>,
    ) -> Result<Option<(WriteTx, Vec<AnyRow>)>> {
        let writing = self.sync.writing();
        let mut conn = self.write.acquire().await?;
        let opened = match self.engine {
            Engine::Sqlite => open_sqlite(&mut conn, claim, first).await,
            Engine::Postgres => open_postgres(&mut conn, claim, first).await,
        };
        let rows = match opened {
            Ok(rows) => rows,
            Err(e) => {
                // Ends the transaction if `BEGIN` ran; if this fails too, the connection stays
                // unsettled and its next holder checks it.
                if conn.execute("ROLLBACK").await.is_ok() {
                    conn.done();
                }
                return Err(e);
            }
        };
        let Some(rows) = rows else {
            conn.execute("ROLLBACK").await?;
            conn.done();
            return Ok(None);
        };
        let tx = WriteTx {
            conn,
            engine: self.engine,
            sync: self.sync.clone(),
            events: self.events.clone(),
            _writing: writing,
            in_request: false,
            claims: false,
            queued: queued::Queued::default(),
        };
        Ok(Some((tx, rows)))
    }

    /// Returns once commit `n` (a number [`durability::GroupSync::committed`] gave) is on disk.
    pub async fn sync(&self, n: u64) -> Result<()> {
        self.sync.sync(n).await.map_err(StoreError::Sync)
    }

    /// Flushes of the write-ahead log so far (each makes every earlier commit durable).
    pub fn log_flushes(&self) -> u64 {
        self.sync.flushes()
    }

    /// How long the write connection has been held so far: every write waits for it, so
    /// against wall time this is how close writes are to their ceiling.
    pub fn writer_busy(&self) -> Duration {
        self.write.busy()
    }

    /// A connection for reads: from the read pool, or the write connection for an in-memory
    /// database.
    pub async fn reader(&self) -> Result<Reader> {
        // A request's parked changes are committed first: it reads what it wrote, and an
        // in-memory database's reader is the write connection.
        self.commit_parked().await?;
        Ok(match &self.read {
            Some(pool) => Reader(Held::Pool(pool.acquire().await?)),
            None => {
                let mut conn = self.write.acquire().await?;
                // Reads leave nothing open: the next writer need not check the connection.
                conn.done();
                Reader(Held::Writer(conn))
            }
        })
    }

    /// Resolves when events may have been appended since the future was enabled.
    pub fn events_signal(&self) -> &Notify {
        &self.events
    }

    pub async fn close(&self) {
        self.closing.cancel();
        self.write.close().await;
        if let Some(read) = &self.read {
            read.close().await;
        }
    }
}

/// A transaction's first statement for [`Db::begin_with`]: a query numbering its parameters
/// from `$1`, as built for the connection.
pub(super) type FirstStatement<'q> = sqlx::query::Query<'q, Any, AnyArguments>;

/// `BEGIN`, the claim and the first statement on SQLite (see [`Db::open`]): `None` when the
/// claim was refused, else the first statement's rows.
async fn open_sqlite(
    conn: &mut AnyConnection,
    claim: Option<(&IdempotentRequest, i64)>,
    first: Option<FirstStatement<'_>>,
) -> Result<Option<Vec<AnyRow>>> {
    if claim.is_none() && first.is_none() {
        conn.execute("BEGIN").await?;
        return Ok(Some(Vec::new()));
    }
    let (first_sql, mut args) = match first {
        Some(mut first) => {
            let args = first
                .take_arguments()
                .map_err(sqlx::Error::Encode)?
                .unwrap_or_default();
            (Some(first.sql().as_str().to_owned()), args)
        }
        None => (None, AnyArguments::default()),
    };
    let mut sql = String::from("BEGIN");
    if let Some(claim) = claim {
        // Numbered on from the first statement's parameters; run before it, and refused with an
        // error (which ends the round trip there) rather than by an empty result, since the
        // rows that come back are all the first statement's.
        sql.push_str("; ");
        sql.push_str(&strict_claim_sql(args.len() + 1));
        add_claim_args(&mut args, claim).map_err(sqlx::Error::Encode)?;
    }
    if let Some(first) = first_sql {
        sql.push_str("; ");
        sql.push_str(&first);
    }
    match sqlx::query_with(sqlx::AssertSqlSafe(sql), args)
        .fetch_all(conn)
        .await
    {
        Ok(rows) => Ok(Some(rows)),
        Err(e) if claim.is_some() && is_claim_refusal(&e) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// `BEGIN`, the write lock, the claim and the first statement on PostgreSQL, one statement per
/// round trip (it prepares one at a time); as [`open_sqlite`].
async fn open_postgres(
    conn: &mut AnyConnection,
    claim: Option<(&IdempotentRequest, i64)>,
    first: Option<FirstStatement<'_>>,
) -> Result<Option<Vec<AnyRow>>> {
    conn.execute("BEGIN").await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(WRITE_LOCK)
        .execute(&mut *conn)
        .await?;
    if let Some(claim) = claim
        && claim_query(CLAIM_SQL, claim)
            .fetch_optional(&mut *conn)
            .await?
            .is_none()
    {
        return Ok(None);
    }
    Ok(Some(match first {
        Some(first) => first.fetch_all(conn).await?,
        None => Vec::new(),
    }))
}

/// A connection to read from (see [`Db::reader`]).
pub struct Reader(Held);

enum Held {
    Pool(PoolConnection<Any>),
    Writer(writer::WriteConn),
}

impl std::ops::Deref for Reader {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        match &self.0 {
            Held::Pool(c) => c,
            Held::Writer(c) => c,
        }
    }
}

impl std::ops::DerefMut for Reader {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match &mut self.0 {
            Held::Pool(c) => c,
            Held::Writer(c) => c,
        }
    }
}

/// A write transaction; committing it wakes event-log waiters.
pub struct WriteTx {
    /// Inside `BEGIN`; dropped without [`WriteTx::commit`] or [`WriteTx::rollback`], the
    /// transaction is rolled back by the connection's next holder.
    conn: writer::WriteConn,
    engine: Engine,
    sync: Arc<durability::GroupSync>,
    events: Arc<Notify>,
    _writing: durability::Writing,
    /// Begun inside a request's scope: a commit parks it there ([`request`]).
    in_request: bool,
    /// It holds the claim of the request's idempotency key.
    claims: bool,
    /// Events and tag-index rows written with the commit ([`queued`]).
    queued: queued::Queued,
}

impl std::fmt::Debug for WriteTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteTx")
            .field("in_request", &self.in_request)
            .field("claims", &self.claims)
            .finish_non_exhaustive()
    }
}

impl WriteTx {
    /// Commits, wakes event-log waiters, and returns once the transaction is on disk (inside a
    /// request's scope: leaves it open for the request's response, see [`request`]).
    pub async fn commit(self) -> Result<()> {
        self.end(true, true).await
    }

    /// Commits durably without waking event-log waiters: for writes that append no events and
    /// change nothing the data plane or the worker follow.
    pub async fn commit_quiet(self) -> Result<()> {
        self.end(false, true).await
    }

    /// Commits without waiting for the disk or waking anyone: for records whose loss in a
    /// power cut loses nothing acknowledged (an idempotency claim: its request has not been
    /// answered yet, and a retry after the crash runs it again). A crash keeps the log's commits
    /// in order, so a later durable commit makes this one durable too.
    pub async fn commit_unsynced(self) -> Result<()> {
        self.end(false, false).await
    }

    async fn end(self, wake: bool, durable: bool) -> Result<()> {
        let tx = if self.in_request {
            match request::park(self, wake) {
                Ok(()) => return Ok(()),
                Err(tx) => tx,
            }
        } else {
            self
        };
        let sync = tx.sync.clone();
        let n = tx.commit_now(wake).await?;
        if durable {
            sync.sync(n).await.map_err(StoreError::Sync)?;
        }
        Ok(())
    }

    /// Commits and wakes waiters if asked; returns the commit's number for
    /// [`durability::GroupSync::sync`].
    async fn commit_now(mut self, wake: bool) -> Result<u64> {
        if wake && self.engine == Engine::Postgres {
            // Delivered to every listener when (and only if) the transaction commits.
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(CHANGES_CHANNEL)
                .execute(&mut *self.conn)
                .await?;
        }
        let last = self.write_queued_but_the_last().await?;
        if last.is_empty() {
            self.conn.execute("COMMIT").await?;
        } else if self.engine == Engine::Sqlite {
            // The last of the queued writes and the COMMIT in one round trip.
            let mut sql = last.statements(1);
            sql.push("COMMIT".to_owned());
            last.bind(sqlx::query(sqlx::AssertSqlSafe(sql.join("; "))))
                .execute(&mut *self.conn)
                .await?;
        } else {
            last.write_each(&mut self.conn).await?;
            self.conn.execute("COMMIT").await?;
        }
        Ok(self.committed(wake))
    }

    /// Writes the queued writes but the last statement's worth of each kind, which it returns
    /// for the caller to send with its last statements.
    async fn write_queued_but_the_last(&mut self) -> Result<queued::Queued> {
        let full = self.queued.split_off_full();
        full.write_each(&mut self.conn).await?;
        Ok(std::mem::take(&mut self.queued))
    }

    /// What follows a `COMMIT` (sent by [`WriteTx::commit_now`] or at the end of a batch):
    /// hands the connection on, counts the commit, wakes waiters if asked.
    fn committed(self, wake: bool) -> u64 {
        let Self {
            mut conn,
            sync,
            events,
            _writing,
            ..
        } = self;
        conn.done();
        // The next writer goes ahead while this one waits for the disk.
        drop(conn);
        let n = sync.committed();
        drop(_writing);
        if wake {
            events.notify_waiters();
        }
        n
    }

    /// Undoes the transaction without waking anyone.
    pub async fn rollback(mut self) -> Result<()> {
        self.conn.execute("ROLLBACK").await?;
        self.conn.done();
        Ok(())
    }
}

impl std::ops::Deref for WriteTx {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.conn
    }
}

/// Wakes `events` on every change any cloud-sim commits to the PostgreSQL database, until
/// `closing`. A lost connection is re-established (a wake-up is sent then, since changes made
/// meanwhile went unannounced; long polls and the worker re-read the database anyway).
async fn follow_changes(
    mut listener: sqlx::postgres::PgListener,
    events: Arc<Notify>,
    closing: tokio_util::sync::CancellationToken,
) {
    if let Err(e) = listener.listen(CHANGES_CHANNEL).await {
        tracing::warn!(error = %e, "cannot listen for other replicas' changes; they show within a second");
        return;
    }
    loop {
        tokio::select! {
            () = closing.cancelled() => return,
            n = listener.try_recv() => match n {
                Ok(Some(_)) => events.notify_waiters(),
                // The connection dropped; `try_recv` reconnects on the next call.
                Ok(None) => events.notify_waiters(),
                Err(e) => {
                    tracing::warn!(error = %e, "listening for changes failed; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
        }
    }
}

// Tags, shared by every resource.

/// A list filter by name and by one `key=value` tag (load balancers, backend groups).
#[derive(Debug, Clone, Default)]
pub struct NameTagFilter {
    pub name: Option<String>,
    pub tag: Option<(String, String)>,
}

/// The ID of `table`'s resource named `name` in `project`, if any. `table` is one of ours.
async fn id_by_name(
    conn: &mut AnyConnection,
    table: &'static str,
    project: &str,
    name: &str,
) -> Result<Option<String>> {
    let row: Option<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id FROM {table} WHERE project = $1 AND name = $2"
    )))
    .bind(project)
    .bind(name)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| r.0))
}

/// Up to `limit` rows (`columns`) of `table` in `project` with `seq > after` matching `f`, in
/// creation order. `table` is one of ours, never a caller's string.
async fn list_named<R>(
    conn: &mut AnyConnection,
    table: &'static str,
    columns: &str,
    project: &str,
    f: &NameTagFilter,
    after: i64,
    limit: u32,
) -> Result<Vec<R>>
where
    R: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + Send + Unpin,
{
    // Spelled out rather than `($3 IS NULL OR name = $3)`, which no planner turns into a lookup
    // by the (project, name) index: the ccm finds every load balancer by name.
    let by_name = if f.name.is_some() {
        "name = $3"
    } else {
        "$3 IS NULL"
    };
    let sql = format!(
        "SELECT {columns} FROM {table} r WHERE project = $1 AND seq > $2 AND {by_name} \
         AND ($4 IS NULL OR EXISTS (SELECT 1 FROM tags t WHERE t.resource_id = r.id AND t.key = $4 AND t.value = $5)) \
         ORDER BY seq LIMIT $6"
    );
    let (tk, tv) = f.tag.clone().unzip();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(project)
        .bind(after)
        .bind(&f.name)
        .bind(tk)
        .bind(tv)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?)
}

async fn replace_tags(conn: &mut AnyConnection, resource_id: &str, tags: &Tags) -> Result<()> {
    sqlx::query("DELETE FROM tags WHERE resource_id = $1")
        .bind(resource_id)
        .execute(&mut *conn)
        .await?;
    insert_tags(conn, resource_id, tags).await
}

/// Inserts the tags of a resource that has none yet, at once (in a create, [`queue_tags`]
/// sends them with the commit instead).
async fn insert_tags(conn: &mut AnyConnection, resource_id: &str, tags: &Tags) -> Result<()> {
    if tags.is_empty() {
        return Ok(());
    }
    let rows: Vec<String> = (0..tags.len())
        .map(|i| format!("($1, ${}, ${})", 2 * i + 2, 2 * i + 3))
        .collect();
    let sql = format!(
        "INSERT INTO tags (resource_id, key, value) VALUES {}",
        rows.join(", ")
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(resource_id);
    for (k, v) in tags {
        q = q.bind(k).bind(v);
    }
    q.execute(&mut *conn).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password_and_nothing_else() {
        for (url, shown) in [
            (
                "postgres://app:s3cret@db.internal:5432/cloud?sslmode=disable",
                "postgres://app:***@db.internal:5432/cloud?sslmode=disable",
            ),
            (
                "postgres://app:p@ss@db/cloud",
                "postgres://app:***@db/cloud",
            ),
            ("postgres://app@db/cloud", "postgres://app@db/cloud"),
            ("postgresql://db/cloud", "postgresql://db/cloud"),
            ("sqlite://data/cloud-sim.db", "sqlite://data/cloud-sim.db"),
            ("sqlite::memory:", "sqlite::memory:"),
        ] {
            assert_eq!(redacted_url(url), shown, "{url}");
        }
    }

    /// How SQLite runs `sql` (`EXPLAIN QUERY PLAN`'s details, one per line).
    async fn plan(db: &Db, sql: &str) -> String {
        let mut conn = db.reader().await.unwrap();
        let rows: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                .fetch_all(&mut *conn)
                .await
                .unwrap();
        rows.into_iter().map(|r| r.3).collect::<Vec<_>>().join("\n")
    }

    /// The queries made once per instance or route created, or node registered, and the
    /// worker's purge stay index lookups: as scans they made bringing up 10,000 nodes quadratic.
    #[tokio::test]
    async fn per_create_queries_are_answered_from_indexes() {
        let db = Db::connect("sqlite::memory:").await.unwrap();
        let by_name = plan(&db, &instances::list_instances_sql(true, 0)).await;
        assert!(
            by_name.contains("USING INDEX instances_name (project=? AND name=?"),
            "{by_name}"
        );
        let by_ids = plan(&db, &instances::list_instances_sql(false, 3)).await;
        assert!(
            by_ids.contains("USING INDEX sqlite_autoindex_instances_1 (id=?)"),
            "{by_ids}"
        );
        let free = plan(&db, instances::FIRST_FREE_INSTANCE_IP_SQL).await;
        assert!(
            free.contains("USING COVERING INDEX instances_live_ip_state")
                && !free.contains("SCAN instances")
                && !free.contains("SCAN instance_ip_floors"),
            "{free}"
        );
        let held = plan(&db, &instances::held_sql(FRONTEND_ADDRESSES)).await;
        assert!(held.contains("USING COVERING INDEX"), "{held}");
        let overlap = plan(&db, routes::ROUTE_CREATE_CHECKS_SQL).await;
        assert!(
            overlap
                .contains("USING INDEX routes_dest (project=? AND route_table=? AND dest_first<?)")
                && !overlap.contains("SCAN routes")
                && !overlap.contains("SCAN instances")
                && !overlap.contains("TEMP B-TREE"),
            "{overlap}"
        );
        let purge = plan(&db, idempotency::PURGE_IDEMPOTENCY_SQL).await;
        assert!(
            purge.contains("USING INDEX idempotency_keys_created"),
            "{purge}"
        );
    }

    #[test]
    fn the_engine_is_the_urls_scheme() {
        assert_eq!(Engine::of_url("sqlite::memory:"), Some(Engine::Sqlite));
        assert_eq!(Engine::of_url("sqlite://x.db"), Some(Engine::Sqlite));
        assert_eq!(Engine::of_url("postgres://h/d"), Some(Engine::Postgres));
        assert_eq!(Engine::of_url("postgresql://h/d"), Some(Engine::Postgres));
        assert_eq!(Engine::of_url("mysql://h/d"), None);
        assert_eq!(Engine::of_url("cloud-sim.db"), None);
    }
}
