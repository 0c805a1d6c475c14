//! The SQLite backend: the embedded default store, one database file.
//!
//! Opened with WAL journaling and `synchronous=FULL` (a commit is on disk
//! when it returns; [`SqliteDurability::Normal`] trades that for speed), `foreign_keys=ON` (cascading deletes), a 5 s busy
//! timeout, and the migrations in `migrations/sqlite` applied at open.
//! Every write goes through one dedicated connection (a pool of one), so
//! writers in this process queue in order without ever meeting
//! `SQLITE_BUSY` and its sleeping busy handler; reads use a pool of their
//! own, which WAL lets run beside the writer. Write transactions start with
//! `BEGIN IMMEDIATE`, taking the write lock up front, so a writer in another
//! process (the admin CLI) waits its turn on the busy timeout instead of
//! failing halfway through. The writes of code exchanges and refresh-token
//! rotations go through a group commit ([`crate::grant_writer`]): one task
//! commits every such step waiting, each in a savepoint of its own, in one
//! transaction and one fsync, and answers each caller after the commit.
//! A database file this opens is created
//! with mode 0600 (on Unix); SQLite gives its `-wal`/`-shm` files the same
//! mode. Every trait body is the shared SQL of [`crate::sql`].

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use crate::grant_writer::{GrantWriter, Redeemed};
use crate::records::{RefreshFamilyRecord, RefreshTokenRecord, RevokeAt};
use crate::sql::{db_err, impl_store, migrate_err};
use crate::traits::{Rotate, StoreError, StoreResult};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// How long a connection waits for another writer before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// When a commit is on disk (SQLite's `synchronous` in WAL mode).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SqliteDurability {
    /// `synchronous=FULL`, the default: every commit waits for the WAL to
    /// reach the disk (one fsync per transaction), so nothing committed is
    /// lost on a crash or a power cut.
    #[default]
    Full,
    /// `synchronous=NORMAL`: commits are not synced, only checkpoints are.
    /// A crash of mcpgate loses nothing; a power cut or an OS crash can lose
    /// the last transactions — redeemed codes may become redeemable again,
    /// and new refresh tokens, clients and consents may vanish.
    Normal,
}

/// Read connections: WAL readers never wait for the writer.
const READERS: u32 = 8;

/// A store in one SQLite database file. Cloning shares the connections.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Reads.
    pool: SqlitePool,
    /// Every write: one connection.
    writer: SqlitePool,
    /// The writes of code exchanges and rotations, committed in groups.
    grants: GrantWriter,
    /// Clients read recently ([`crate::client_cache`]).
    clients: crate::client_cache::ClientCache,
}

impl SqliteStore {
    /// Opens the database at `path`, creating the file (mode 0600) if it is
    /// missing, and applies pending migrations. The parent directory must
    /// exist.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        Self::open_with(path, SqliteDurability::Full).await
    }

    /// [`open`](Self::open) with a chosen durability.
    pub async fn open_with(path: &Path, durability: SqliteDurability) -> StoreResult<Self> {
        create_private(path).map_err(|e| {
            StoreError::Backend(format!("create database file {}: {e}", path.display()))
        })?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match durability {
                SqliteDurability::Full => SqliteSynchronous::Full,
                SqliteDurability::Normal => SqliteSynchronous::Normal,
            })
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await
            .map_err(db_err)?;
        MIGRATOR.run(&writer).await.map_err(migrate_err)?;
        let pool = SqlitePoolOptions::new()
            .max_connections(READERS)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .map_err(db_err)?;
        let grants = GrantWriter::start(writer.clone());
        Ok(Self {
            pool,
            writer,
            grants,
            clients: Default::default(),
        })
    }

    /// Closes every connection, waiting for those in use to come back. Call
    /// before exit so the WAL is checkpointed; the store is unusable after.
    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
    }

    /// SQLite has no notifications: readers poll the revision.
    async fn notify_revocations_in(
        _tx: &mut Transaction<'static, Sqlite>,
        _revision: i64,
    ) -> StoreResult<()> {
        Ok(())
    }

    async fn listen_revocations_on(
        &self,
    ) -> StoreResult<Option<crate::revocation::RevocationListener>> {
        Ok(None)
    }

    /// Now, in seconds (one value for the whole statement in SQLite).
    const DB_NOW: &'static str = "((julianday('now') - 2440587.5) * 86400.0)";
    /// A whole number of tokens from a non-negative amount (truncation).
    const FLOOR: (&'static str, &'static str) = ("CAST(", " AS INTEGER)");

    /// One node: every round is this process's.
    fn housekeeper_on(&self, _task: &str) -> crate::fleet::Housekeeper {
        crate::fleet::Housekeeper::always()
    }

    /// A code exchange's write, committed with the others waiting
    /// ([`GrantWriter`]).
    async fn redeem_step(
        &self,
        code_hash: &str,
        now: i64,
        family: Option<(&RefreshFamilyRecord, &RefreshTokenRecord)>,
    ) -> StoreResult<Redeemed> {
        self.grants.redeem(code_hash, now, family).await
    }

    /// A rotation, committed with the others waiting ([`GrantWriter`]).
    async fn rotate_step(
        &self,
        old_hash: &str,
        new: &RefreshTokenRecord,
        at: RevokeAt,
        grace_secs: i64,
    ) -> StoreResult<Rotate> {
        self.grants.rotate(old_hash, new, at, grace_secs).await
    }

    /// The writer connection, for tests that drive the grant writer's batches.
    #[cfg(test)]
    pub(crate) fn writer_pool(&self) -> &SqlitePool {
        &self.writer
    }

    /// A write transaction holding the database write lock from its start.
    async fn write_tx(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        self.writer
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
