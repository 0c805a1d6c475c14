//! PostgreSQL for the trials that run on both backends, the way
//! `mcpgate-store`'s own suite does it: with `MCPGATE_TEST_POSTGRES_URL`
//! unset the trials are reported as ignored. With it set, the first trial
//! creates one database for this run, `mcpgate_authz_it_<unix secs>_<hex>`,
//! each trial connects with its own fresh schema as `search_path`, and
//! [`Postgres::teardown`] drops the database at the end. Run databases left
//! behind by killed runs are dropped once they are six hours old.

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libtest_mimic::{Failed, Trial};
use mcpgate_store::{DynStore, PostgresStore};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use url::Url;

const ENV: &str = "MCPGATE_TEST_POSTGRES_URL";
const PREFIX: &str = "mcpgate_authz_it_";
const STALE_AFTER: Duration = Duration::from_secs(6 * 3600);

#[derive(Clone)]
pub struct Postgres(Arc<Inner>);

struct Inner {
    base: Option<Url>,
    run: OnceLock<Result<Url, String>>,
}

impl Postgres {
    pub fn from_env() -> Self {
        let base = std::env::var(ENV)
            .ok()
            .filter(|v| !v.is_empty())
            .map(|v| Url::parse(&v).unwrap_or_else(|e| panic!("{ENV} is not a URL: {e}")));
        Self(Arc::new(Inner {
            base,
            run: OnceLock::new(),
        }))
    }

    pub fn enabled(&self) -> bool {
        self.0.base.is_some()
    }

    /// A trial named `module::name::postgres` that gets a store on a fresh
    /// schema; ignored when the variable is unset.
    pub fn trial<F, Fut>(&self, module: &str, name: &str, f: F) -> Trial
    where
        F: FnOnce(DynStore) -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let this = self.clone();
        let module = module.strip_prefix("it::").unwrap_or(module).to_string();
        let schema = format!("{module}_{name}").replace("::", "_");
        Trial::test(format!("{module}::{name}::postgres"), move || {
            let Some(base) = this.0.base.clone() else {
                return Err(format!(
                    "{ENV} unset, and {} requires PostgreSQL",
                    mcpgate_testkit::REQUIRE_ENV
                )
                .into());
            };
            let run_db = this
                .0
                .run
                .get_or_init(|| create_run_database(base))
                .clone()?;
            crate::common::block_on(async move {
                let store = connect_fresh(&run_db, &schema)
                    .await
                    .expect("PostgreSQL store on a fresh schema");
                f(Arc::new(store.clone())).await;
                store.close().await;
            })
        })
        .with_ignored_flag(!self.enabled() && !mcpgate_testkit::required_by_ci())
    }

    /// Drops this run's database (if one was created).
    pub fn teardown(&self) {
        let (Some(base), Some(Ok(run))) = (self.0.base.clone(), self.0.run.get()) else {
            return;
        };
        let name = run.path().trim_start_matches('/').to_string();
        let r = crate::common::block_on(async move {
            let mut admin = PgConnection::connect(base.as_str())
                .await
                .expect("connect for teardown");
            drop_database(&mut admin, &name)
                .await
                .expect("drop run database");
            let _ = admin.close().await;
        });
        if let Err(e) = r {
            eprintln!("warning: could not drop the PostgreSQL run database: {e:?}");
        }
    }
}

fn create_run_database(base: Url) -> Result<Url, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let random = RandomState::new().hash_one((std::process::id(), now.as_nanos()));
        let name = format!("{PREFIX}{}_{random:016x}", now.as_secs());
        let mut admin = PgConnection::connect(base.as_str())
            .await
            .map_err(|e| format!("connect {ENV}: {e}"))?;
        drop_stale(&mut admin, now.as_secs())
            .await
            .map_err(|e| e.to_string())?;
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await
            .map_err(|e| format!("create run database: {e}"))?;
        let _ = admin.close().await;
        let mut url = base;
        url.set_path(&format!("/{name}"));
        Ok(url)
    })
}

async fn drop_stale(admin: &mut PgConnection, now: u64) -> Result<(), sqlx::Error> {
    let names: Vec<(String,)> =
        sqlx::query_as("SELECT datname FROM pg_database WHERE starts_with(datname, $1)")
            .bind(PREFIX)
            .fetch_all(&mut *admin)
            .await?;
    for (name,) in names {
        let created = name[PREFIX.len()..]
            .split('_')
            .next()
            .and_then(|s| s.parse::<u64>().ok());
        if created.is_some_and(|t| t + STALE_AFTER.as_secs() < now) {
            drop_database(admin, &name).await?;
        }
    }
    Ok(())
}

async fn drop_database(admin: &mut PgConnection, name: &str) -> Result<(), sqlx::Error> {
    assert!(
        name.starts_with(PREFIX) && !name.contains('"'),
        "refusing to drop {name:?}"
    );
    sqlx::query(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(admin)
    .await?;
    Ok(())
}

async fn connect_fresh(run_db: &Url, schema: &str) -> Result<PostgresStore, Failed> {
    let mut admin = PgConnection::connect(run_db.as_str())
        .await
        .map_err(|e| e.to_string())?;
    sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\"")))
        .execute(&mut admin)
        .await
        .map_err(|e| e.to_string())?;
    let _ = admin.close().await;
    let mut url = run_db.clone();
    url.query_pairs_mut()
        .append_pair("options[search_path]", schema);
    PostgresStore::connect(url.as_str())
        .await
        .map_err(|e| format!("connect: {e}").into())
}
