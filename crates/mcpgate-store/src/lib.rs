//! Storage for the authorization server and the gateway.
//!
//! One trait per aggregate, records as plain structs, and [`StoreError`]
//! that tells not-found, conflict and backend failure apart. Two backends
//! implement every trait: SQLite ([`SqliteStore`], the embedded default) and
//! PostgreSQL ([`PostgresStore`]), from one body of SQL. Single-use and
//! rotation are single conditional statements or transactions in the
//! database, never read-then-write in Rust. On SQLite, code exchanges and
//! rotations waiting at the same time share one commit (group commit, each
//! in a savepoint of its own, every caller answered after the commit); on
//! PostgreSQL each is one statement.
//!
//! Secrets never reach this crate in the clear: codes, refresh tokens,
//! client secrets and login-session ids arrive as SHA-256 hashes, passwords
//! as argon2id PHC strings, signing keys and upstream tokens sealed under the
//! master key.
//!
//! With the `conformance` feature, the `conformance` module holds the test suite
//! every backend must pass.

pub mod client_cache;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod fleet;
mod grant_writer;
mod postgres;
pub mod rates;
pub mod records;
pub mod revocation;
mod sql;
mod sqlite;
mod traits;

pub use client_cache::CLIENT_CACHE_TTL;
pub use postgres::PostgresStore;
pub use records::*;
pub use revocation::{RevocableToken, RevocationSet, RevocationWatch};
pub use sqlite::{SqliteDurability, SqliteStore};
/// Connection options for [`PostgresStore::connect_with`].
pub use sqlx::postgres::PgConnectOptions;
pub use traits::*;
