//! Persistence: diesel over PostgreSQL or SQLite through one code path (a
//! `MultiConnection`), pooled with r2d2, and always run on tokio's blocking
//! pool so a query never stalls the async runtime.
//!
//! Every command is one transaction ([`Store::write`]); SQLite write
//! transactions begin `IMMEDIATE` so two writers queue on the busy timeout
//! instead of failing on a lock upgrade. On PostgreSQL, writers that extend an
//! ordered log (audit chain, inbox cursor) take one transaction-scoped
//! advisory lock first ([`chain_lock`]), so sequence order is commit order and
//! a reader following a cursor never skips a row that commits late.

pub mod gauges;
pub mod notify;
pub mod pipeline;
pub mod schema;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::SharedClock;
use crate::error::{Error, Result};
use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::r2d2::{self, ManageConnection, Pool, PooledConnection};
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// Advisory lock key that orders appends to the audit chain and the inbox.
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
            DbUrl::Postgres(u) => PgConnection::establish(u).map(DbConnection::Pg),
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
                // WAL lets readers run beside the writer; FULL sync makes an
                // acknowledged commit survive power loss; the busy timeout
                // queues writers instead of failing them.
                c.batch_execute(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                     PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
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

    fn has_broken(&self, _conn: &mut DbConnection) -> bool {
        false
    }
}

/// Pool and database settings.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Most open connections.
    pub pool_size: u32,
    /// How long a command waits for a connection before failing UNAVAILABLE.
    pub connect_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            pool_size: 16,
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

/// Handle to the database, cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: Pool<DbManager>,
    url: Arc<DbUrl>,
    clock: SharedClock,
    /// Wakes the streams following what a committed write changed, so they
    /// answer at once instead of waiting for their poll ([`notify`]).
    hub: Arc<notify::Hub>,
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
        let pool = Pool::builder()
            .max_size(opts.pool_size.max(1))
            .min_idle(Some(1))
            .connection_timeout(opts.connect_timeout)
            .build_unchecked(DbManager { url: url.clone() });
        Ok(Self {
            pool,
            url: Arc::new(url),
            clock,
            hub: Arc::new(notify::Hub::default()),
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

    /// Runs a command as one write transaction on the blocking pool: all of
    /// it commits or none of it does.
    pub async fn write<T, F>(&self, op: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection, &SharedClock) -> Result<T> + Send + 'static,
    {
        let clock = self.clock.clone();
        let (out, topics) = self
            .blocking(op, move |conn| {
                let (out, topics) = notify::collect(|| write_transaction(conn, |c| f(c, &clock)));
                out.map(|v| (v, topics))
            })
            .await?;
        self.hub.notify(&topics);
        Ok(out)
    }

    async fn blocking<T, F>(&self, op: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T> + Send + 'static,
    {
        let pool = self.pool.clone();
        let span = tracing::info_span!("db.query", db.system = self.backend(), db.operation = op);
        tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let mut conn: PooledConnection<DbManager> = pool
                .get()
                .map_err(|e: r2d2::PoolError| Error::NotReady(format!("database unavailable: {e}")))?;
            f(&mut conn)
        })
        .await
        .map_err(|e| Error::Unexpected(format!("database task failed: {e}")))?
    }
}

fn write_transaction<T>(
    conn: &mut DbConnection,
    f: impl FnOnce(&mut DbConnection) -> Result<T>,
) -> Result<T> {
    type Tm = <DbConnection as Connection>::TransactionManager;
    match conn {
        DbConnection::Sqlite(c) => AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?,
        DbConnection::Pg(_) => Tm::begin_transaction(conn)?,
    }
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

/// Serialises appends to the ordered logs on PostgreSQL until the
/// transaction ends (SQLite's `BEGIN IMMEDIATE` already serialises writers).
pub fn chain_lock(conn: &mut DbConnection) -> Result<()> {
    if let DbConnection::Pg(c) = conn {
        diesel::sql_query(format!("SELECT pg_advisory_xact_lock({CHAIN_LOCK_KEY})")).execute(c)?;
    }
    Ok(())
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
            D::DatabaseError(K::ClosedConnection, _) => Error::NotReady("database connection closed".into()),
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
