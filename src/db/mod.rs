//! Persistence: diesel over PostgreSQL or SQLite through one code path (a
//! `MultiConnection`), pooled with r2d2, and always run on tokio's blocking
//! pool so a query never stalls the async runtime.
//!
//! Every command is one transaction ([`Store::write`]). On SQLite, commands
//! queue for one writer connection that commits them in groups, each in a
//! savepoint of its own ([`writer`]), instead of waiting for the write lock
//! in SQLite's busy handler; reads keep using the pool beside it (WAL). On
//! PostgreSQL, writes take pooled connections and commit in parallel, with
//! no lock shared by the cluster: what needs an order gets it after commit
//! (the audit sequencer) or per key ([`key_lock`]).

pub mod batch;
pub mod flush;
pub mod gauges;
pub mod liveness;
pub mod notify;
mod openssl_exit;
pub mod pipeline;
pub mod prepared;
pub mod schema;
pub mod statements;
mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::SharedClock;
use crate::error::{Error, Result};
use diesel::connection::{SimpleConnection, TransactionManager};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::r2d2::{self, ManageConnection, Pool, PooledConnection};
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// Advisory lock key that serialises maintenance batches ([`chain_lock`]).
const CHAIN_LOCK_KEY: i64 = 0x7072_6f63_0001;
/// Advisory lock key that lets one replica at a time run migrations.
const MIGRATION_LOCK_KEY: i64 = 0x7072_6f63_0002;

/// One connection to either backend; queries written once against it run on
/// both.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    /// Production backend.
    Pg(PgConnection),
    /// Embedded default.
    Sqlite(SqliteConnection),
}

/// Which backend a URL selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbUrl {
    /// `postgres://` or `postgresql://`, passed to libpq as it is.
    Postgres(String),
    /// `sqlite://PATH` or `sqlite:PATH`: a file path.
    Sqlite(PathBuf),
}

impl DbUrl {
    /// Parses a database URL by its scheme, so a mistyped URL is an error at
    /// start-up rather than a pool timeout.
    pub fn parse(url: &str) -> Result<Self> {
        if crate::config::is_postgres_url(url) {
            Ok(Self::Postgres(url.to_owned()))
        } else if let Some(p) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if p.is_empty() {
                return Err(Error::invalid("database_url", "sqlite URL names no file"));
            }
            Ok(Self::Sqlite(PathBuf::from(p)))
        } else {
            Err(Error::invalid(
                "database_url",
                "must start with postgres://, postgresql:// or sqlite://",
            ))
        }
    }

    /// `postgres` or `sqlite`, for spans and logs.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "postgresql",
            Self::Sqlite(_) => "sqlite",
        }
    }
}

/// r2d2 manager that connects by URL scheme and reports the real connection
/// error (diesel's derived establish hides it).
#[derive(Debug, Clone)]
pub struct DbManager {
    url: DbUrl,
}

impl DbManager {
    /// Opens one connection, applying per-connection settings.
    pub fn connect_url(url: &DbUrl) -> std::result::Result<DbConnection, ConnectionError> {
        match url {
            DbUrl::Postgres(u) => {
                openssl_exit::keep_openssl_state_at_exit();
                PgConnection::establish(u).map(DbConnection::Pg)
            }
            DbUrl::Sqlite(p) => {
                // The file holds personal data: private to the service's user.
                if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                    crate::private_fs::create_dir(dir).map_err(|e| {
                        ConnectionError::BadConnection(format!("cannot create {}: {e}", dir.display()))
                    })?;
                }
                crate::private_fs::create_file(p).map_err(|e| {
                    ConnectionError::BadConnection(format!("cannot create {}: {e}", p.display()))
                })?;
                let mut c = SqliteConnection::establish(&p.to_string_lossy())?;
                // The busy timeout comes first so that switching to WAL waits
                // for a connection opening beside this one instead of failing
                // with "database is locked". WAL lets readers run beside the
                // writer; FULL sync makes an acknowledged commit survive
                // power loss.
                c.batch_execute(
                    "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; \
                     PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
                )
                .map_err(ConnectionError::CouldntSetupConfiguration)?;
                Ok(DbConnection::Sqlite(c))
            }
        }
    }
}

impl ManageConnection for DbManager {
    type Connection = DbConnection;
    type Error = ConnectionError;

    fn connect(&self) -> std::result::Result<DbConnection, ConnectionError> {
        Self::connect_url(&self.url)
    }

    fn is_valid(&self, conn: &mut DbConnection) -> std::result::Result<(), ConnectionError> {
        conn.batch_execute("SELECT 1")
            .map_err(ConnectionError::CouldntSetupConfiguration)
    }

    /// A connection a command lost on this thread ([`liveness`]) is
    /// dropped at checkin, not pooled again.
    fn has_broken(&self, _conn: &mut DbConnection) -> bool {
        liveness::take_lost()
    }
}

/// Pool and database settings.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Most open connections.
    pub pool_size: u32,
    /// Most write transactions at once on PostgreSQL (0: as many as the
    /// pool has connections); SQLite has its one writer.
    pub write_concurrency: u32,
    /// How long a command waits for a connection before failing UNAVAILABLE.
    pub connect_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            pool_size: 16,
            write_concurrency: 0,
            connect_timeout: Duration::from_secs(3),
        }
    }
}

/// Connection counts of a pool at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    /// Open connections waiting for a command.
    pub idle: u32,
    /// Connections a command holds right now.
    pub in_use: u32,
    /// Most connections the pool opens.
    pub max: u32,
}

/// How commands were grouped: by SQLite's one writer, into commits, or on
/// PostgreSQL, into batched statements ([`batch`]). The ratio says how many
/// commands share one `COMMIT` under the load seen so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteGroups {
    /// Groups committed.
    pub groups: u64,
    /// Commands in those groups, including ones that failed on their own.
    pub commands: u64,
}

/// Handle to the database, cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: Pool<DbManager>,
    url: Arc<DbUrl>,
    clock: SharedClock,
    /// Wakes the streams following what a committed write changed, so they
    /// answer at once instead of waiting for their poll ([`notify`]).
    hub: Arc<notify::Hub>,
    /// Statements the last round of each operation made ([`statements`]).
    statements: Arc<std::sync::Mutex<std::collections::HashMap<&'static str, u64>>>,
    /// SQLite's one writer connection and the queue feeding it (see
    /// [`writer`]); None on PostgreSQL, where writes take pooled
    /// connections and commit in parallel.
    writer: Option<Arc<writer::Writer>>,
    /// Admission for PostgreSQL write transactions: a command waits here,
    /// in proctor, for its turn, rather than as one more busy backend.
    /// None on SQLite.
    write_turns: Option<Arc<tokio::sync::Semaphore>>,
    /// Commands batched into shared statements on PostgreSQL ([`batch`]).
    batch_counts: Arc<batch::BatchCounts>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.url.backend())
            .finish()
    }
}

impl Store {
    /// Connects (one explicit connection first, for a clear error) and builds
    /// the pool.
    pub fn connect(url: &str, opts: &StoreOptions, clock: SharedClock) -> Result<Self> {
        let url = DbUrl::parse(url)?;
        DbManager::connect_url(&url)
            .map_err(|e| Error::NotReady(format!("cannot connect to {} database: {e}", url.backend())))?;
        // The writer opens before the pool starts opening connections in
        // the background, so the two do not race to set up the file.
        let writer = match &url {
            DbUrl::Sqlite(_) => Some(Arc::new(writer::Writer::start(&url)?)),
            DbUrl::Postgres(_) => None,
        };
        let write_turns = matches!(url, DbUrl::Postgres(_)).then(|| {
            let n = match opts.write_concurrency {
                0 => opts.pool_size,
                n => n.min(opts.pool_size),
            };
            Arc::new(tokio::sync::Semaphore::new(n.max(1) as usize))
        });
        let pool = Pool::builder()
            .max_size(opts.pool_size.max(1))
            // Pinged at checkout only after idling ([`checkout`]).
            .test_on_check_out(false)
            .min_idle(Some(1))
            .connection_timeout(opts.connect_timeout)
            .build_unchecked(DbManager { url: url.clone() });
        Ok(Self {
            pool,
            url: Arc::new(url),
            clock,
            hub: Arc::new(notify::Hub::default()),
            statements: Arc::default(),
            writer,
            write_turns,
            batch_counts: Arc::default(),
        })
    }

    /// `postgresql` or `sqlite`.
    pub fn backend(&self) -> &'static str {
        self.url.backend()
    }

    /// Connections of this replica's pool, read without touching the
    /// database (for the pool gauges).
    pub fn pool_status(&self) -> PoolStatus {
        let s = self.pool.state();
        PoolStatus {
            idle: s.idle_connections,
            in_use: s.connections.saturating_sub(s.idle_connections),
            max: self.pool.max_size(),
        }
    }

    /// What SQLite's writer committed so far (None on PostgreSQL, which
    /// has no single writer), read without touching the database.
    pub fn write_groups(&self) -> Option<WriteGroups> {
        self.writer.as_ref().map(|w| WriteGroups {
            groups: w.stats.groups.load(std::sync::atomic::Ordering::Relaxed),
            commands: w.stats.commands.load(std::sync::atomic::Ordering::Relaxed),
        })
    }

    /// What PostgreSQL's batched commands ran in so far (None on SQLite,
    /// whose writer groups every command: [`Self::write_groups`]).
    pub fn batched_writes(&self) -> Option<WriteGroups> {
        self.write_turns.as_ref().map(|_| self.batch_counts.read())
    }

    /// The clock commands read "now" from.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// Follows `topic`: the follower wakes after each committed write on
    /// this replica that changed it (see [`notify`]).
    pub fn follow(&self, topic: notify::Topic) -> notify::Follower {
        self.hub.follow(topic)
    }

    /// The followers of this replica's streams, for tests and gauges.
    pub fn hub(&self) -> &Arc<notify::Hub> {
        &self.hub
    }

    /// Applies pending migrations; on PostgreSQL one replica at a time.
    pub async fn migrate(&self) -> Result<Vec<String>> {
        self.blocking("db.migrate", |conn| {
            let applied = match conn {
                DbConnection::Pg(c) => {
                    diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})")).execute(c)?;
                    let r = c
                        .run_pending_migrations(PG_MIGRATIONS)
                        .map(|v| v.iter().map(ToString::to_string).collect::<Vec<_>>());
                    diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))
                        .execute(c)?;
                    r
                }
                DbConnection::Sqlite(c) => c
                    .run_pending_migrations(SQLITE_MIGRATIONS)
                    .map(|v| v.iter().map(ToString::to_string).collect()),
            };
            applied.map_err(|e| Error::Unexpected(format!("migration failed: {e}")))
        })
        .await
    }

    /// True when every embedded migration has been applied.
    pub async fn migrations_current(&self) -> Result<bool> {
        self.blocking("db.migrations_check", |conn| {
            let pending = match conn {
                DbConnection::Pg(c) => c.pending_migrations(PG_MIGRATIONS).map(|v| v.len()),
                DbConnection::Sqlite(c) => c.pending_migrations(SQLITE_MIGRATIONS).map(|v| v.len()),
            };
            pending
                .map(|n| n == 0)
                .map_err(|e| Error::NotReady(format!("cannot read migrations: {e}")))
        })
        .await
    }

    /// Answers when the database does (health checks).
    pub async fn ping(&self) -> Result<()> {
        self.blocking("db.ping", |conn| {
            conn.batch_execute("SELECT 1").map_err(Error::from)
        })
        .await
    }

    /// Statements the last round of `op` made on this replica (checkout to
    /// commit, transaction control included): what `docs/BENCHMARKS.md`
    /// reports per command, and what tests hold commands to.
    pub fn statements_of(&self, op: &str) -> Option<u64> {
        self.statements
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(op)
            .copied()
    }

    /// Runs a read on the blocking pool, in one transaction (a consistent
    /// view across its queries).
    pub async fn read<T, F>(&self, op: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection, &SharedClock) -> Result<T> + Send + 'static,
    {
        let clock = self.clock.clone();
        self.blocking(op, move |conn| conn.transaction(|c| f(c, &clock)))
            .await
    }

    /// Runs a command as one write transaction: all of it commits or none
    /// of it does, and it answers only once committed. On PostgreSQL it
    /// runs on the blocking pool; on SQLite it queues for the one writer,
    /// which commits it in a group with its neighbours, in a savepoint of
    /// its own (see [`writer`]).
    pub async fn write<T, F>(&self, op: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection, &SharedClock) -> Result<T> + Send + 'static,
    {
        let clock = self.clock.clone();
        if let Some(w) = &self.writer {
            let span = tracing::info_span!(
                "db.query",
                db.system = self.backend(),
                db.operation = op,
                db.statements = tracing::field::Empty
            );
            let counts = self.statements.clone();
            // Counted inside the command's savepoint: the group's BEGIN and
            // COMMIT are shared by its commands.
            let counted = move |c: &mut DbConnection| {
                let (out, n) = statements::counted(|| f(c, &clock));
                tracing::Span::current().record("db.statements", n);
                counts
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(op, n);
                out
            };
            let (cmd, answer) = writer::Typed::boxed(counted, span);
            w.send(cmd).await?;
            let (out, topics) = answer
                .await
                .map_err(|_| Error::Unexpected("the database writer dropped a command".into()))??;
            self.hub.notify(&topics);
            return Ok(out);
        }
        self.write_pg(op, f).await
    }

    /// A write transaction on the blocking pool, in turn with the others
    /// (`--db-write-concurrency`); what it committed wakes its followers.
    async fn write_pg<T, F>(&self, op: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection, &SharedClock) -> Result<T> + Send + 'static,
    {
        let clock = self.clock.clone();
        // Held until the transaction ends; closed only if the store is.
        let _turn = self.write_turn().await?;
        let (out, topics) = self
            .blocking(op, move |conn| {
                let (out, topics) = notify::collect(|| write_transaction(conn, |c| f(c, &clock)));
                out.map(|v| (v, topics))
            })
            .await?;
        self.hub.notify(&topics);
        Ok(out)
    }

    /// Waits for a write turn on PostgreSQL (`--db-write-concurrency`);
    /// None on SQLite, whose one writer needs none.
    async fn write_turn(&self) -> Result<Option<tokio::sync::OwnedSemaphorePermit>> {
        match &self.write_turns {
            Some(turns) => {
                Ok(Some(turns.clone().acquire_owned().await.map_err(|_| {
                    Error::NotReady("the database writer is closed".into())
                })?))
            }
            None => Ok(None),
        }
    }

    async fn blocking<T, F>(&self, op: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T> + Send + 'static,
    {
        let pool = self.pool.clone();
        let counts = self.statements.clone();
        let span = tracing::info_span!(
            "db.query",
            db.system = self.backend(),
            db.operation = op,
            db.statements = tracing::field::Empty
        );
        tokio::task::spawn_blocking(move || on_pooled(&pool, &counts, op, &span, f))
            .await
            .map_err(|e| Error::Unexpected(format!("database task failed: {e}")))?
    }
}

/// Runs `f` on a connection checked out of `pool`, on this (blocking-pool)
/// thread, inside `span`, counting its statements as `op`'s.
fn on_pooled<T>(
    pool: &Pool<DbManager>,
    counts: &std::sync::Mutex<std::collections::HashMap<&'static str, u64>>,
    op: &'static str,
    span: &tracing::Span,
    f: impl FnOnce(&mut DbConnection) -> Result<T>,
) -> Result<T> {
    // Database rounds are bulk work: on full cores a woken request
    // thread (a check answered from memory) runs before them.
    crate::priority::lower_this_thread_once("database");
    let _entered = span.enter();
    let mut conn = checkout(pool)?;
    conn.set_instrumentation(statements::CountStatements);
    let (out, n) = statements::counted(|| f(&mut conn));
    // A lost connection keeps its mark and is dropped at checkin,
    // right below.
    if !liveness::is_lost() {
        PooledConnection::extensions_mut(&mut conn).insert(liveness::LastUsed(std::time::Instant::now()));
    }
    span.record("db.statements", n);
    counts
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(op, n);
    out
}

/// A pooled connection that answers: one used within
/// [`liveness::TRUSTED_FOR`] as it is, any other after a ping; each that
/// fails its ping is dropped and the next one tried (at most the pool's
/// size, then a new connection, which r2d2 waits for up to its timeout).
fn checkout(pool: &Pool<DbManager>) -> Result<PooledConnection<DbManager>> {
    // A mark left on this thread by an earlier command is not this one's.
    liveness::take_lost();
    for _ in 0..=pool.max_size() {
        let mut conn = pool
            .get()
            .map_err(|e: r2d2::PoolError| Error::NotReady(format!("database unavailable: {e}")))?;
        let trusted = PooledConnection::extensions(&conn)
            .get::<liveness::LastUsed>()
            .is_some_and(|u| u.trusted());
        if trusted || conn.batch_execute("SELECT 1").is_ok() {
            return Ok(conn);
        }
        liveness::lost();
        drop(conn);
    }
    Err(Error::NotReady(
        "database unavailable: no pooled connection answers".into(),
    ))
}

fn write_transaction<T>(
    conn: &mut DbConnection,
    f: impl FnOnce(&mut DbConnection) -> Result<T>,
) -> Result<T> {
    type Tm = <DbConnection as Connection>::TransactionManager;
    // SQLite writes never come here: they go to the one writer, which
    // begins its groups `IMMEDIATE` itself.
    Tm::begin_transaction(conn)?;
    match f(conn) {
        Ok(v) => {
            Tm::commit_transaction(conn)?;
            Ok(v)
        }
        Err(e) => {
            if let Err(rb) = Tm::rollback_transaction(conn) {
                tracing::error!(error = %rb, "rollback failed");
            }
            Err(e)
        }
    }
}

/// Serialises maintenance batches (`keys reseal`) with each other on
/// PostgreSQL until the transaction ends. Commands never take it: what they
/// must order is locked per key ([`key_lock`]).
pub fn chain_lock(conn: &mut DbConnection) -> Result<()> {
    if let DbConnection::Pg(c) = conn {
        diesel::sql_query(format!("SELECT pg_advisory_xact_lock({CHAIN_LOCK_KEY})")).execute(c)?;
    }
    Ok(())
}

/// Locks `key` of `scope` until the transaction ends, on PostgreSQL (SQLite's
/// one writer already serialises every write): commands on the same key (a
/// tenant's idempotency key, a screened party, a recipient's inbox) run one
/// after the other, commands on different keys in parallel. The lock id is
/// a 64-bit hash of both, so scopes never collide by accident.
pub fn key_lock(conn: &mut DbConnection, scope: &str, key: &str) -> Result<()> {
    if let DbConnection::Pg(c) = conn {
        // A bound parameter in a static statement: prepared once per
        // connection and reused, where a lock id formatted into the text
        // made PostgreSQL parse and plan every lock anew.
        diesel::select(pg_sql::pg_advisory_xact_lock(key_lock_id(scope, key))).execute(c)?;
    }
    Ok(())
}

/// PostgreSQL functions the write path calls, declared so that diesel
/// prepares the statements calling them once per connection (a raw
/// `sql_query` is never cached).
mod pg_sql {
    use diesel::sql_types::{BigInt, Text};

    diesel::define_sql_function! {
        /// Takes a transaction-scoped advisory lock. PostgreSQL returns
        /// `void`, which the callers never read; declared as a nullable
        /// integer for diesel's type checking only.
        fn pg_advisory_xact_lock(key: BigInt) -> diesel::sql_types::Nullable<diesel::sql_types::Integer>;
    }

    diesel::define_sql_function! {
        /// Draws the next value of a sequence.
        fn nextval(sequence: Text) -> BigInt;
    }
}

/// The PostgreSQL advisory lock id [`key_lock`] takes for `key` of
/// `scope`: what an operator looks for in `pg_locks` when a command waits.
pub fn key_lock_id(scope: &str, key: &str) -> i64 {
    use sha2::Digest;
    let h = sha2::Sha256::new()
        .chain_update(scope.as_bytes())
        .chain_update([0u8])
        .chain_update(key.as_bytes())
        .finalize();
    i64::from_be_bytes(h[..8].try_into().expect("a SHA-256 has 8 bytes"))
}

/// A table whose rows are numbered by [`next_seq`]. The rows every audited
/// write inserts (audit events, envelopes, subject requests and their
/// tasks) are not here: they draw their number in the insert itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Numbered {
    /// The decision change log.
    DecisionChanges,
    /// The sub-processor registry.
    SubProcessors,
    /// Change notices.
    SubProcessorNotices,
    /// Authorisation-mode changes.
    SubProcessorModes,
    /// Sanctions list versions.
    ListVersions,
    /// Screening cases.
    ScreeningCases,
    /// Export chunks.
    ExportChunks,
    /// Subject flag changes.
    SubjectFlagChanges,
    /// Breaches.
    Breaches,
    /// Requests from public authorities.
    AuthorityRequests,
    /// Webhook deliveries (their listing order).
    WebhookDeliveries,
}

impl Numbered {
    /// (table, numbered column): the sequence is named `{table}_{column}`.
    fn table(self) -> (&'static str, &'static str) {
        match self {
            Self::DecisionChanges => ("decision_changes", "seq"),
            Self::SubProcessors => ("sub_processors", "seq"),
            Self::SubProcessorNotices => ("sub_processor_notices", "seq"),
            Self::SubProcessorModes => ("sub_processor_modes", "seq"),
            Self::ListVersions => ("screening_list_versions", "seq"),
            Self::ScreeningCases => ("screening_cases", "seq"),
            Self::ExportChunks => ("subject_export_chunks", "seq"),
            Self::SubjectFlagChanges => ("subject_flags", "change_seq"),
            Self::Breaches => ("breaches", "seq"),
            Self::AuthorityRequests => ("authority_requests", "seq"),
            Self::WebhookDeliveries => ("webhook_deliveries", "seq"),
        }
    }
}

#[derive(diesel::QueryableByName)]
struct Next {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// The next row number of `t`: from its sequence on PostgreSQL, so
/// concurrent commands draw distinct numbers without waiting for each other
/// (numbers are unique and increasing per session, not in commit order, and
/// a rolled-back command leaves a gap); `MAX + 1` on SQLite, whose one
/// writer makes that safe.
pub fn next_seq(conn: &mut DbConnection, t: Numbered) -> Result<i64> {
    let (table, column) = t.table();
    match conn {
        DbConnection::Pg(c) => {
            Ok(diesel::select(pg_sql::nextval(format!("{table}_{column}"))).get_result(c)?)
        }
        DbConnection::Sqlite(c) => {
            let sql = format!("SELECT COALESCE(MAX({column}), 0) + 1 AS n FROM {table}");
            let row: Next = diesel::sql_query(sql).get_result(c)?;
            Ok(row.n)
        }
    }
}

impl From<diesel::result::Error> for Error {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind as K, Error as D};
        match e {
            D::NotFound => Error::Missing("no such record".into()),
            D::DatabaseError(K::UniqueViolation, info) => {
                Error::Duplicate(info.constraint_name().unwrap_or("record").to_owned())
            }
            D::DatabaseError(K::SerializationFailure, _) => {
                Error::Conflict("concurrent update; retry".into())
            }
            D::DatabaseError(K::ClosedConnection | K::UnableToSendCommand, _) => {
                // The connection is gone: not pooled again.
                liveness::lost();
                Error::NotReady("database connection lost".into())
            }
            // PostgreSQL refuses NUL in text (SQLite stores it): the caller
            // sent it, so it is their error on both backends, not ours.
            D::DatabaseError(_, info) if info.message().contains("0x00") => {
                Error::invalid("request", "text fields must not contain NUL characters")
            }
            D::DatabaseError(_, info) if info.message().contains("database is locked") => {
                Error::Conflict("database busy; retry".into())
            }
            other => Error::Unexpected(format!("database: {other}")),
        }
    }
}

/// Microseconds since the epoch, as every time column stores it.
pub fn to_us(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_micros()
}

/// The inverse of [`to_us`].
pub fn from_us(us: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_micros(us).unwrap_or_default()
}

/// A list of strings as the JSON text a list column stores (both backends
/// keep lists as text, so one form serves both).
pub fn to_json_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

/// The inverse of [`to_json_list`]; unreadable text is an empty list.
pub fn from_json_list(s: &str) -> Vec<String> {
    serde_json::from_str(s).unwrap_or_default()
}
