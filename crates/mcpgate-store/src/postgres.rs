//! The PostgreSQL backend: a pooled store for deployments with more than
//! one replica sharing state.
//!
//! Connects a pool and applies the migrations in `migrations/postgres`
//! (sqlx serialises concurrent migrators with an advisory lock). Write
//! transactions run at READ COMMITTED: single use and rotation rely on
//! conditional `UPDATE`s, which PostgreSQL re-checks against the committed
//! row after waiting on a concurrent writer's lock, so exactly one caller
//! wins. Every trait body is the shared SQL of [`crate::sql`].

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use crate::sql::{db_err, impl_store, migrate_err};
use crate::traits::StoreResult;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// How long a request waits for a connection before the store answers
/// `Unavailable`.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// A store in a PostgreSQL database. Cloning shares the connection pool.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// The same pool: PostgreSQL runs concurrent writers itself.
    writer: PgPool,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user[:password]@host[:port]/dbname[?…]`,
    /// libpq-style parameters such as `sslmode` and `options[search_path]`
    /// accepted) and applies pending migrations.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url).map_err(db_err)?;
        Self::connect_with(options).await
    }

    /// Like [`connect`](Self::connect), from options built in code (for
    /// example with a password read from a secret file).
    pub async fn connect_with(options: PgConnectOptions) -> StoreResult<Self> {
        // PostgreSQL's notices (each migration check says the tables already
        // exist) would reach the log as INFO lines on every operator command;
        // warnings and errors still do. An explicit setting is kept.
        let options = if options
            .get_options()
            .is_some_and(|o| o.contains("client_min_messages"))
        {
            options
        } else {
            options.options([("client_min_messages", "warning")])
        };
        let pool = PgPoolOptions::new()
            .max_connections(10)
            // A database that is down makes requests fail (503) after this
            // wait, instead of holding them for long.
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(db_err)?;
        MIGRATOR.run(&pool).await.map_err(migrate_err)?;
        Ok(Self {
            writer: pool.clone(),
            pool,
        })
    }

    /// Closes every connection, waiting for those in use to come back; the
    /// store is unusable after.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// `NOTIFY` with the new revision; PostgreSQL delivers it at commit,
    /// and never if the transaction rolls back.
    async fn notify_revocations_in(
        tx: &mut Transaction<'static, Postgres>,
        revision: i64,
    ) -> StoreResult<()> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(crate::revocation::CHANNEL)
            .bind(revision.to_string())
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    /// A dedicated connection listening on the revocation channel (it
    /// reconnects by itself after a lost connection).
    async fn listen_revocations_on(
        &self,
    ) -> StoreResult<Option<crate::revocation::RevocationListener>> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool)
            .await
            .map_err(db_err)?;
        listener
            .listen(crate::revocation::CHANNEL)
            .await
            .map_err(db_err)?;
        Ok(Some(crate::revocation::RevocationListener(listener)))
    }

    /// Now, in seconds, by the database's clock (the transaction's start:
    /// one value for the whole statement).
    const DB_NOW: &'static str = "EXTRACT(EPOCH FROM now())::float8";
    /// A whole number of tokens from a non-negative amount.
    const FLOOR: (&'static str, &'static str) = ("floor(", ")::bigint");

    /// The advisory lock of `task` in this database and schema, on a
    /// connection of its own (so it dies with this process's connection).
    async fn housekeeper_on(&self, task: &str) -> StoreResult<crate::fleet::Housekeeper> {
        Ok(crate::fleet::Housekeeper::postgres(
            (*self.pool.connect_options()).clone(),
            task,
        ))
    }

    async fn write_tx(&self) -> StoreResult<Transaction<'static, Postgres>> {
        self.pool.begin().await.map_err(db_err)
    }
}

impl_store!(PostgresStore, Postgres, "postgres");
