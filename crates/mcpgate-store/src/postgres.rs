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
use sqlx::{FromRow, Postgres, Row, Transaction};

use crate::records::{AuthCodeRecord, RefreshFamilyRecord, RefreshTokenRecord, RevokeAt};
use crate::sql::grants::{bind_redeem_with_family, bind_rotation};
use crate::sql::rows::{
    CodeRow, TokenFamilyRow, code_cols, family_cols, token_cols, token_family_cols,
};
use crate::sql::{db_err, impl_store, migrate_err};
use crate::traits::{Rotate, StoreResult};

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
    /// Clients read recently ([`crate::client_cache`]).
    clients: crate::client_cache::ClientCache,
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
            clients: Default::default(),
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
    fn housekeeper_on(&self, task: &str) -> crate::fleet::Housekeeper {
        crate::fleet::Housekeeper::postgres((*self.pool.connect_options()).clone(), task)
    }

    /// A code exchange's write in one statement (PostgreSQL runs a
    /// statement in a transaction of its own): the conditional `UPDATE`
    /// that decides who redeems the code and, from its row only, the
    /// family (`ON CONFLICT DO NOTHING`: a replay's placeholder keeps the id)
    /// and, only if the family went in, its first token. `None` when the
    /// code was not redeemed here (used or unknown); else the record and
    /// whether the family was stored.
    async fn redeem_step(
        &self,
        code_hash: &str,
        now: i64,
        family: Option<(&RefreshFamilyRecord, &RefreshTokenRecord)>,
    ) -> StoreResult<Option<(AuthCodeRecord, bool)>> {
        let Some((f, first)) = family else {
            let row = sqlx::query_as::<Postgres, CodeRow>(concat!(
                "UPDATE auth_codes SET used_at = $1 \
                 WHERE code_hash = $2 AND used_at IS NULL RETURNING ",
                code_cols!()
            ))
            .bind(now)
            .bind(code_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
            return row.map(|r| Ok((r.try_into()?, false))).transpose();
        };
        let query = sqlx::query(concat!(
            "WITH used AS (UPDATE auth_codes SET used_at = $1 \
             WHERE code_hash = $2 AND used_at IS NULL RETURNING ",
            code_cols!(),
            "), fam AS (INSERT INTO refresh_families (",
            family_cols!(),
            ") SELECT $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $19 FROM used \
             ON CONFLICT (family_id) DO NOTHING RETURNING family_id), \
             tok AS (INSERT INTO refresh_tokens (",
            token_cols!(),
            ") SELECT $13, $14, $15, $16, $17, $18 FROM fam RETURNING token_hash) \
             SELECT used.*, (SELECT count(*) FROM tok) AS stored FROM used"
        ));
        let row = bind_redeem_with_family!(query, now, code_hash, f, first)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        let Some(row) = row else { return Ok(None) };
        let stored: i64 = row.try_get("stored").map_err(db_err)?;
        let rec = CodeRow::from_row(&row).map_err(db_err)?.try_into()?;
        Ok(Some((rec, stored == 1)))
    }

    /// A rotation's write: the conditional `UPDATE` of the old token (current,
    /// of `new`'s family, family live) and the `INSERT` of its successor from
    /// its row only, in one statement returning the old token with its
    /// family. Any other case is settled in a transaction of its own.
    async fn rotate_step(
        &self,
        old_hash: &str,
        new: &RefreshTokenRecord,
        at: RevokeAt,
        grace_secs: i64,
    ) -> StoreResult<Rotate> {
        let query = sqlx::query_as::<Postgres, TokenFamilyRow>(concat!(
            "WITH t AS (UPDATE refresh_tokens SET rotated_at = $1 \
             WHERE token_hash = $2 AND family_id = $3 AND rotated_at IS NULL AND EXISTS (\
             SELECT 1 FROM refresh_families f \
             WHERE f.family_id = refresh_tokens.family_id AND f.revoked_at IS NULL) \
             RETURNING ",
            token_cols!(),
            "), n AS (INSERT INTO refresh_tokens (",
            token_cols!(),
            ") SELECT $4, $3, $5, $6, $7, $8 FROM t RETURNING token_hash) SELECT ",
            token_family_cols!(),
            " FROM t JOIN refresh_families f ON f.family_id = t.family_id"
        ));
        let row = bind_rotation!(query, at, old_hash, new)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        if let Some(row) = row {
            let (old, family) = row.try_into()?;
            return Ok(Rotate::Rotated { family, old });
        }
        let mut tx = self.write_tx().await?;
        let settled = Self::settle_rotation_in(&mut tx, old_hash, new, at, grace_secs).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(settled)
    }

    async fn write_tx(&self) -> StoreResult<Transaction<'static, Postgres>> {
        self.pool.begin().await.map_err(db_err)
    }
}

impl_store!(PostgresStore, Postgres, "postgres");
