//! A fresh PostgreSQL schema per test, in the database of
//! `MCPGATE_TEST_POSTGRES_URL`, so tests sharing one server never see each
//! other's rows; dropped at the end.

use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// The environment variable naming the test database.
pub const URL_ENV: &str = "MCPGATE_TEST_POSTGRES_URL";

pub struct Schema {
    base: String,
    name: String,
}

impl Schema {
    /// A new schema named after `prefix`, or `None` when
    /// `MCPGATE_TEST_POSTGRES_URL` is unset (the caller skips, unless
    /// [`crate::required_by_ci`]).
    pub async fn create(prefix: &str) -> Option<Self> {
        let base = std::env::var(URL_ENV).ok().filter(|v| !v.is_empty())?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let name = format!("{prefix}_{}_{nanos}", std::process::id());
        let mut c = PgConnection::connect(&base).await.expect("connect");
        sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA \"{name}\"")))
            .execute(&mut c)
            .await
            .expect("create schema");
        let _ = c.close().await;
        Some(Self { base, name })
    }

    /// A connection URL whose tables are this schema's.
    pub fn url(&self) -> String {
        let mut url = url::Url::parse(&self.base).expect("URL");
        url.query_pairs_mut()
            .append_pair("options[search_path]", &self.name);
        url.into()
    }

    /// A store on this schema (migrations applied).
    pub async fn connect(&self) -> mcpgate_store::PostgresStore {
        mcpgate_store::PostgresStore::connect(&self.url())
            .await
            .expect("store")
    }

    pub async fn drop_schema(self) {
        let mut c = PgConnection::connect(&self.base).await.expect("connect");
        sqlx::query(AssertSqlSafe(format!(
            "DROP SCHEMA \"{}\" CASCADE",
            self.name
        )))
        .execute(&mut c)
        .await
        .expect("drop schema");
        let _ = c.close().await;
    }
}

/// The schema for a test that needs PostgreSQL, or `None` (after saying
/// so) when the database is not configured and CI does not require it.
pub async fn schema_or_skip(prefix: &str) -> Option<Schema> {
    let s = Schema::create(prefix).await;
    if s.is_none() {
        assert!(
            !crate::required_by_ci(),
            "{URL_ENV} unset, and {} requires PostgreSQL",
            crate::REQUIRE_ENV
        );
        eprintln!("skipped: {URL_ENV} unset");
    }
    s
}
