//! The SQLite backend: the embedded default store, one database file.
//!
//! Opened with WAL journaling and `synchronous=FULL` (a commit is on disk
//! when it returns), `foreign_keys=ON` (cascading deletes), a 5 s busy
//! timeout, and the migrations in `migrations/sqlite` applied at open.
//! Write transactions start with `BEGIN IMMEDIATE`, taking the write lock
//! up front so concurrent writers wait their turn instead of failing with
//! `SQLITE_BUSY` halfway through. A database file this opens is created
//! with mode 0600 (on Unix); SQLite gives its `-wal`/`-shm` files the same
//! mode. Every trait body is the shared SQL of [`crate::sql`].

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use crate::sql::{db_err, impl_store, migrate_err};
use crate::traits::{StoreError, StoreResult};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// How long a connection waits for another writer before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A store in one SQLite database file. Cloning shares the connection pool.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens the database at `path`, creating the file (mode 0600) if it is
    /// missing, and applies pending migrations. The parent directory must
    /// exist.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        create_private(path).map_err(|e| {
            StoreError::Backend(format!("create database file {}: {e}", path.display()))
        })?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .map_err(db_err)?;
        MIGRATOR.run(&pool).await.map_err(migrate_err)?;
        Ok(Self { pool })
    }

    /// Closes every connection, waiting for those in use to come back. Call
    /// before exit so the WAL is checkpointed; the store is unusable after.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// A write transaction holding the database write lock from its start.
    async fn write_tx(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_err)
    }
}

/// Creates an empty database file readable by its owner only; an existing
/// file is left as it is.
fn create_private(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

impl_store!(SqliteStore, Sqlite, "sqlite");
