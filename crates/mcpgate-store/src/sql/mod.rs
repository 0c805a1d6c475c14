//! The SQL both backends share: one body of statements and logic for every
//! store trait, expanded by [`impl_store!`] once per sqlx database type.
//!
//! Statements use `$1`-style placeholders, which PostgreSQL and sqlx's SQLite
//! driver both accept, so each query is written once. Rows are decoded into
//! the plain `*Row` structs of [`rows`] (derived `FromRow`, generic over the
//! backend) and converted to records in ordinary Rust. The expanded impls
//! use three things on the store type: a `pool` field for reads, a `writer`
//! field for every statement that writes, and a `write_tx()` method that
//! opens a write transaction on the writer. On SQLite `writer` is a pool of
//! one connection: the database has one writer at a time anyway, and
//! queueing in the pool (async, first come first served) is far cheaper than
//! contending connections sleeping in SQLite's busy handler; its
//! transactions start with `BEGIN IMMEDIATE`. On PostgreSQL `writer` is the
//! same pool as `pool` and transactions start with a plain `BEGIN`.
//!
//! Single use and rotation are decided by the database: `redeem_code` is one
//! conditional `UPDATE … RETURNING`; `rotate_refresh_token` is a conditional
//! `UPDATE` plus `INSERT`, atomically, revoking the family on reuse. Those
//! two writes (the grant steps) are the one place the backends differ in
//! more than connections: each store type also provides `redeem_step` and
//! `rotate_step` (see [`grants`]), a single CTE statement on PostgreSQL and a
//! group-committed step on SQLite ([`crate::grant_writer`]).

pub(crate) mod accounts;
pub(crate) mod audit;
pub(crate) mod fleet;
pub(crate) mod grants;
pub(crate) mod identity;
pub(crate) mod keys;
pub(crate) mod revocations;
pub(crate) mod rows;
pub(crate) mod sessions;
pub(crate) mod upstream_grants;

use crate::traits::StoreError;

/// Maps a sqlx error to the store's: unique violations are `Conflict`, a
/// missing row or a missing referenced row (foreign key) is `NotFound`, a
/// database that cannot be reached is `Unavailable`, anything else is
/// `Backend`.
pub(crate) fn db_err(err: sqlx::Error) -> StoreError {
    match &err {
        sqlx::Error::RowNotFound => StoreError::NotFound,
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(err.to_string()),
        // PostgreSQL's connection exceptions (class 08) and the server
        // shutting down or starting (57P01-57P03).
        sqlx::Error::Database(db)
            if db
                .code()
                .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")) =>
        {
            StoreError::Unavailable(err.to_string())
        }
        sqlx::Error::Database(db) => match db.kind() {
            sqlx::error::ErrorKind::UniqueViolation => {
                StoreError::Conflict(db.message().to_owned())
            }
            sqlx::error::ErrorKind::ForeignKeyViolation => StoreError::NotFound,
            // Not-null and check violations, and kinds sqlx may add later.
            _ => StoreError::Backend(err.to_string()),
        },
        _ => StoreError::Backend(err.to_string()),
    }
}

/// Maps a failed migration to `Backend`.
pub(crate) fn migrate_err(err: sqlx::migrate::MigrateError) -> StoreError {
    StoreError::Backend(format!("migration failed: {err}"))
}

/// A list column as stored: JSON text.
pub(crate) fn to_json(list: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(list).map_err(|e| StoreError::Backend(format!("encode list: {e}")))
}

/// Fails when a record handed to a multi-row write names a different parent
/// than the one the operation is about (a caller bug, never stored).
pub(crate) fn same_family(expected: &str, got: &str) -> Result<(), StoreError> {
    if expected == got {
        Ok(())
    } else {
        Err(StoreError::Conflict(
            "refresh token belongs to another family".to_owned(),
        ))
    }
}

/// Expands every store trait, and `Store`, for `$store` over sqlx database
/// `$db`, with `backend_name` `$name`.
macro_rules! impl_store {
    ($store:ty, $db:ty, $name:literal) => {
        $crate::sql::accounts::impl_account_stores!($store, $db);
        $crate::sql::grants::impl_grant_stores!($store, $db);
        $crate::sql::keys::impl_key_stores!($store, $db);
        $crate::sql::audit::impl_audit_store!($store, $db);
        $crate::sql::identity::impl_identity_store!($store, $db);
        $crate::sql::upstream_grants::impl_upstream_grant_store!($store, $db);
        $crate::sql::revocations::impl_revocation_store!($store, $db);
        $crate::sql::sessions::impl_session_store!($store, $db);
        $crate::sql::fleet::impl_fleet_store!($store, $db);

        impl $crate::Store for $store {
            fn backend_name(&self) -> &'static str {
                $name
            }
        }
    };
}
pub(crate) use impl_store;
