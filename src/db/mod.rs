//! Storage: one code base over SQLite (the embedded default) and PostgreSQL
//! (several stateless nodes sharing one database), through diesel and r2d2.
//!
//! Diesel is blocking, so every call goes through [`Db::run`], which moves it
//! to a blocking thread; no query ever runs on an async worker.

pub mod schema;

use crate::config::{DatabaseSettings, Secret};
use crate::error::{ApiError, ErrorCode};
use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel::{ExpressionMethods, QueryDsl, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use std::time::Duration;

pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// One connection to either backend.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Sqlite(diesel::SqliteConnection),
    Postgres(diesel::PgConnection),
}

pub use crate::config::{Backend, DatabaseUrl};

#[derive(Debug)]
struct ConnectionSetup {
    backend: Backend,
    busy_timeout_ms: u64,
    synchronous: crate::config::SqliteSynchronous,
}

impl CustomizeConnection<DbConnection, diesel::r2d2::Error> for ConnectionSetup {
    fn on_acquire(&self, conn: &mut DbConnection) -> Result<(), diesel::r2d2::Error> {
        if self.backend == Backend::Sqlite {
            let synchronous = match self.synchronous {
                crate::config::SqliteSynchronous::Normal => "NORMAL",
                crate::config::SqliteSynchronous::Full => "FULL",
            };
            let pragmas = format!(
                "PRAGMA busy_timeout = {}; PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;",
                self.busy_timeout_ms
            );
            conn.batch_execute(&pragmas).map_err(diesel::r2d2::Error::QueryError)?;
        }
        Ok(())
    }
}

pub type DbPool = Pool<ConnectionManager<DbConnection>>;
pub type PooledConn = PooledConnection<ConnectionManager<DbConnection>>;

/// Errors of the storage layer, as the HTTP layer sees them.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("no database connection available: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Unavailable(cause) => {
                tracing::warn!(%cause, "database unavailable");
                ApiError::new(ErrorCode::DatabaseUnavailable, "The database is unavailable or busy; retry shortly.")
                    .with_retry_after(1)
            }
            DbError::Query(diesel::result::Error::NotFound) => ApiError::not_found("No such record."),
            // SQLite's lock held by another writer past busy_timeout: the
            // database is busy, not broken.
            DbError::Query(diesel::result::Error::DatabaseError(_, info))
                if info.message().contains("database is locked") || info.message().contains("database is busy") =>
            {
                tracing::warn!(cause = info.message(), "database busy");
                ApiError::new(ErrorCode::DatabaseUnavailable, "The database is unavailable or busy; retry shortly.")
                    .with_retry_after(1)
            }
            DbError::Query(e) => ApiError::internal(e),
        }
    }
}

/// The pool, and which backend it speaks to.
#[derive(Clone)]
pub struct Db {
    pub pool: DbPool,
    pub backend: Backend,
}

impl Db {
    /// Builds the pool without connecting (so a server can start, report
    /// not-ready, and recover when the database comes back).
    pub fn new(url: &Secret, settings: &DatabaseSettings) -> anyhow::Result<Db> {
        let parsed = DatabaseUrl::parse(url.expose()).map_err(|e| anyhow::anyhow!(e))?;
        let manager = ConnectionManager::<DbConnection>::new(parsed.connect.clone());
        let max = match parsed.backend {
            Backend::Sqlite if parsed.connect == ":memory:" => 1,
            _ => settings.max_connections.max(1),
        };
        let pool = Pool::builder()
            .max_size(max)
            .min_idle(Some(0))
            .connection_timeout(Duration::from_millis(settings.acquire_timeout_ms.max(1)))
            .connection_customizer(Box::new(ConnectionSetup {
                backend: parsed.backend,
                busy_timeout_ms: settings.sqlite_busy_timeout_ms,
                synchronous: settings.sqlite_synchronous,
            }))
            .error_handler(Box::new(diesel::r2d2::LoggingErrorHandler))
            .build_unchecked(manager);
        Ok(Db { pool, backend: parsed.backend })
    }

    pub fn conn(&self) -> Result<PooledConn, DbError> {
        self.pool.get().map_err(|e| DbError::Unavailable(e.to_string()))
    }

    /// Runs `f` with a connection on a blocking thread.
    pub async fn run<T, F>(&self, f: F) -> Result<T, DbError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, DbError> + Send + 'static,
        T: Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = db.conn()?;
            f(&mut conn)
        })
        .await
        .map_err(|e| DbError::Unavailable(format!("blocking task failed: {e}")))?
    }

    /// Applies pending migrations (and, on SQLite, switches the file to WAL).
    pub fn migrate(&self) -> anyhow::Result<Vec<String>> {
        let mut conn = self.conn()?;
        let applied = match &mut *conn {
            DbConnection::Sqlite(c) => {
                c.batch_execute("PRAGMA journal_mode = WAL;")?;
                if !sqlite_plans_are_stable(c) {
                    tracing::warn!(
                        "SQLite was built without SQLITE_ENABLE_QPSG (set in .cargo/config.toml): \
                         every query with a LIMIT is compiled again each time it runs"
                    );
                }
                apply_pending(c, SQLITE_MIGRATIONS)
            }
            DbConnection::Postgres(c) => apply_pending(c, POSTGRES_MIGRATIONS),
        }
        .map_err(|e| anyhow::anyhow!("migration failed: {e}"))?;
        Ok(applied)
    }

    /// A cheap query that touches a table: the database is reachable and migrated.
    pub fn ping(conn: &mut DbConnection) -> Result<(), DbError> {
        schema::catalog_version::table.select(schema::catalog_version::version).first::<i64>(conn)?;
        Ok(())
    }
}

/// Whether the linked SQLite keeps a prepared statement's plan whatever
/// values are bound (`SQLITE_ENABLE_QPSG`, set for the bundled build in
/// `.cargo/config.toml`). Without it, every statement whose LIMIT is a bound
/// parameter (diesel's `.limit(n)` and `.first()`) is compiled again on each
/// run, and the statement cache does not help them.
fn sqlite_plans_are_stable(conn: &mut diesel::SqliteConnection) -> bool {
    #[derive(diesel::QueryableByName)]
    struct CompileOption {
        #[diesel(sql_type = diesel::sql_types::Text)]
        compile_options: String,
    }
    diesel::sql_query("PRAGMA compile_options")
        .load::<CompileOption>(conn)
        .map(|opts| opts.iter().any(|o| o.compile_options == "ENABLE_QPSG"))
        .unwrap_or(false)
}

/// Runs the migrations of `source` not yet applied, and returns their
/// versions. They are named in the log before they run: one that rebuilds a
/// table (the audit trail's on SQLite) takes minutes on a trail of millions of
/// records, and /readyz answers 503 until it is done.
fn apply_pending<B: diesel::backend::Backend>(
    conn: &mut impl MigrationHarness<B>,
    source: EmbeddedMigrations,
) -> diesel::migration::Result<Vec<String>> {
    let pending = conn.pending_migrations(source)?;
    if !pending.is_empty() {
        let names: Vec<String> = pending.iter().map(|m| m.name().to_string()).collect();
        tracing::info!(pending = ?names, "applying migrations; not ready until they are done");
    }
    pending.iter().map(|m| conn.run_migration(&**m).map(|v| v.to_string())).collect()
}

/// Runs `f` in a transaction that writes: on SQLite one that takes the write
/// lock at its start (`BEGIN IMMEDIATE`, waiting up to `busy_timeout` for
/// it), so that it never fails at once for having read first while another
/// connection wrote; on PostgreSQL an ordinary one.
pub fn write_transaction<T>(
    c: &mut DbConnection,
    f: impl FnOnce(&mut DbConnection) -> Result<T, DbError>,
) -> Result<T, DbError> {
    if !matches!(c, DbConnection::Sqlite(_)) {
        return diesel::Connection::transaction(c, f);
    }
    c.batch_execute("BEGIN IMMEDIATE")?;
    match f(c) {
        Ok(v) => match c.batch_execute("COMMIT") {
            Ok(()) => Ok(v),
            Err(e) => {
                let _ = c.batch_execute("ROLLBACK");
                Err(e.into())
            }
        },
        Err(e) => {
            let _ = c.batch_execute("ROLLBACK");
            Err(e)
        }
    }
}

/// Current time as microseconds since the Unix epoch (how timestamps are stored).
pub fn now_micros() -> i64 {
    jiff::Timestamp::now().as_microsecond()
}

/// Writes a consistent copy of the SQLite database to `path` while lgsp runs
/// on it (`VACUUM INTO`, inside one read transaction, so the copy holds whole
/// audit batches and a chain that verifies). Copying the file itself could
/// catch it between a commit and its checkpoint. PostgreSQL has `pg_dump`.
pub fn backup_sqlite(conn: &mut DbConnection, path: &std::path::Path) -> anyhow::Result<()> {
    let DbConnection::Sqlite(c) = conn else {
        anyhow::bail!("lgsp backup copies the embedded SQLite database; back up PostgreSQL with pg_dump");
    };
    anyhow::ensure!(!path.exists(), "{} already exists; lgsp backup does not overwrite a file", path.display());
    let target = path.to_str().ok_or_else(|| anyhow::anyhow!("{} is not a UTF-8 path", path.display()))?;
    diesel::sql_query("VACUUM INTO ?").bind::<diesel::sql_types::Text, _>(target).execute(c)?;
    Ok(())
}

/// A stored timestamp as RFC 3339.
pub fn micros_to_rfc3339(us: i64) -> String {
    jiff::Timestamp::from_microsecond(us).map(|t| t.to_string()).unwrap_or_default()
}

/// Bumps the catalogue version so that every node reloads.
pub fn bump_catalog(conn: &mut DbConnection) -> Result<(), DbError> {
    use schema::catalog_version::dsl;
    diesel::update(dsl::catalog_version.filter(dsl::id.eq(1))).set(dsl::version.eq(dsl::version + 1)).execute(conn)?;
    Ok(())
}

pub fn catalog_version(conn: &mut DbConnection) -> Result<i64, DbError> {
    Ok(schema::catalog_version::table.select(schema::catalog_version::version).first::<i64>(conn)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_is_chosen_from_the_scheme() {
        assert_eq!(DatabaseUrl::parse("sqlite://lgsp.db").map(|u| u.backend), Ok(Backend::Sqlite));
        assert_eq!(DatabaseUrl::parse("sqlite:///var/lib/lgsp.db").map(|u| u.connect), Ok("/var/lib/lgsp.db".into()));
        assert_eq!(DatabaseUrl::parse("postgres://u@h/db").map(|u| u.backend), Ok(Backend::Postgres));
        assert_eq!(DatabaseUrl::parse("postgresql://u@h/db").map(|u| u.backend), Ok(Backend::Postgres));
        let err = DatabaseUrl::parse("mysql://u@h/db").map(|u| u.backend).unwrap_err();
        assert!(err.contains("\"mysql\" is not supported"), "{err}");
        assert!(DatabaseUrl::parse("lgsp.db").is_err());
        assert!(DatabaseUrl::parse("sqlite://").is_err());
    }

    #[test]
    fn the_bundled_sqlite_keeps_plans_whatever_is_bound() {
        use diesel::Connection;
        let mut conn = diesel::SqliteConnection::establish(":memory:").unwrap_or_else(|e| panic!("{e}"));
        assert!(
            sqlite_plans_are_stable(&mut conn),
            "SQLite lacks SQLITE_ENABLE_QPSG: is LIBSQLITE3_FLAGS in .cargo/config.toml still read?"
        );
    }
}
