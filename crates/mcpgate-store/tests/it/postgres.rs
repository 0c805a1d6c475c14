//! PostgreSQL trials. With `MCPGATE_TEST_POSTGRES_URL` unset they are
//! ignored (reported as skipped). With it set, the first trial creates one
//! database for this run, `mcpgate_it_<unix seconds>_<random hex>`, each
//! trial connects with its own fresh schema as `search_path`, and
//! [`Postgres::teardown`] drops the database at the end. Databases that
//! earlier runs left behind (killed before teardown) are dropped once they
//! are six hours old, so they cannot pile up while concurrent runs stay
//! safe.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libtest_mimic::{Failed, Trial};
use mcpgate_store::conformance::{self, Case};
use mcpgate_store::fleet::Fleet;
use mcpgate_store::rates::{Limiter, Rate};
use mcpgate_store::{
    FleetStore, KeyState, PostgresStore, RevocableToken, RevocationRecord, RevocationStore,
    RevocationTarget, RevocationWatch, SigningKeyRecord, SigningKeyStore, Store, StoreError,
};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use url::Url;

use crate::block_on;

const ENV: &str = "MCPGATE_TEST_POSTGRES_URL";
const PREFIX: &str = "mcpgate_it_";
const STALE_AFTER: Duration = Duration::from_secs(6 * 3600);

/// The PostgreSQL side of the run; clones share one run database.
#[derive(Clone)]
pub(crate) struct Postgres(Arc<Inner>);

struct Inner {
    /// The URL from the environment (its database is only used to create
    /// and drop the run database).
    base: Option<Url>,
    run: OnceLock<Result<Url, String>>,
}

impl Postgres {
    pub(crate) fn from_env() -> Self {
        let base = std::env::var(ENV)
            .ok()
            .filter(|v| !v.is_empty())
            .map(|v| Url::parse(&v).unwrap_or_else(|e| panic!("{ENV} is not a URL: {e}")));
        Self(Arc::new(Inner {
            base,
            run: OnceLock::new(),
        }))
    }

    fn trial<F>(&self, name: &str, test: F) -> Trial
    where
        F: FnOnce(String) -> Result<(), Failed> + Send + 'static,
    {
        let this = self.clone();
        Trial::test(format!("postgres::{name}"), move || {
            let url = this.run_database()?;
            test(url.to_string())
        })
        // Under `MCPGATE_TEST_REQUIRE` (CI; the same variable as
        // `mcpgate_testkit::REQUIRE_ENV`, which this crate cannot depend on)
        // a missing database fails the trials instead.
        .with_ignored_flag(
            self.0.base.is_none() && std::env::var_os("MCPGATE_TEST_REQUIRE").is_none(),
        )
    }

    pub(crate) fn case_trial(&self, case: Case) -> Trial {
        self.trial(case.name, move |run_db| {
            block_on(async move {
                let store = connect_fresh(&run_db, case.name).await?;
                (case.run)(Arc::new(store.clone())).await;
                store.close().await;
                Ok(())
            })
        })
    }

    pub(crate) fn extra_trials(&self) -> Vec<Trial> {
        vec![
            self.trial("durability_across_reopen", |run_db| {
                block_on(async move {
                    let first = connect_fresh(&run_db, "durability_across_reopen").await?;
                    conformance::durability_write(Arc::new(first.clone())).await;
                    first.close().await;
                    drop(first);
                    let url = schema_url(&run_db, "durability_across_reopen")?;
                    let second = PostgresStore::connect(&url)
                        .await
                        .map_err(|e| e.to_string())?;
                    conformance::durability_verify(Arc::new(second.clone())).await;
                    second.close().await;
                    Ok(())
                })
            }),
            // Two handles (pools) on one database, as two processes would
            // have: the watch on the first polls only once a minute, so
            // seeing the second's revocation within a second takes NOTIFY.
            self.trial("revocation_notify_across_handles", |run_db| {
                block_on(async move {
                    let name = "revocation_notify_across_handles";
                    let reader = connect_fresh(&run_db, name).await?;
                    let writer = PostgresStore::connect(&schema_url(&run_db, name)?)
                        .await
                        .map_err(|e| e.to_string())?;
                    let (watch, first) =
                        RevocationWatch::start(Arc::new(reader.clone()), Duration::from_secs(60))
                            .await;
                    first.map_err(|e| e.to_string())?;
                    let ids = RevocableToken {
                        subject: "u",
                        client_id: "c",
                        grant: Some("g-notify"),
                        jti: None,
                        issued_at: Some(1),
                    };
                    assert_eq!(watch.covers(&ids), Some(false));
                    writer
                        .revoke(&[RevocationRecord {
                            target: RevocationTarget::Grant {
                                grant_id: "g-notify".into(),
                            },
                            revoked_at: 1,
                            expires_at: i64::MAX,
                        }])
                        .await
                        .map_err(|e| e.to_string())?;
                    let start = std::time::Instant::now();
                    while watch.covers(&ids) != Some(true) {
                        if start.elapsed() > Duration::from_secs(1) {
                            return Err("no NOTIFY seen within 1 s".into());
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    drop(watch);
                    writer.close().await;
                    reader.close().await;
                    Ok(())
                })
            }),
            // Three replicas (three pools on one schema, each with its own
            // limiter) hammer one key: together they admit the figure plus
            // the refill, within 10%, not three times it.
            self.trial("fleet_limit_holds_across_replicas", |run_db| {
                block_on(async move {
                    let name = "fleet_limit_holds_across_replicas";
                    let first = connect_fresh(&run_db, name).await?;
                    let mut stores = vec![first.clone()];
                    for _ in 0..2 {
                        stores.push(
                            PostgresStore::connect(&schema_url(&run_db, name)?)
                                .await
                                .map_err(|e| e.to_string())?,
                        );
                    }
                    let figure = 600;
                    let rate = Rate::per_minute(figure);
                    let start = std::time::Instant::now();
                    let run_for = Duration::from_secs(2);
                    let mut tasks = Vec::new();
                    for s in &stores {
                        let limiter = Arc::new(Limiter::shared(
                            "test",
                            rate,
                            Arc::new(s.clone()),
                            Fleet::fixed(3),
                        ));
                        // Several concurrent callers per replica, as requests are.
                        for _ in 0..4 {
                            let limiter = limiter.clone();
                            tasks.push(tokio::spawn(async move {
                                let (mut ok, mut refused) = (0u32, 0u32);
                                while start.elapsed() < run_for {
                                    match limiter.check("user").await {
                                        Ok(()) => ok += 1,
                                        Err(wait) => {
                                            assert!(wait > Duration::ZERO);
                                            refused += 1;
                                            tokio::task::yield_now().await;
                                        }
                                    }
                                }
                                (ok, refused)
                            }));
                        }
                    }
                    let (mut ok, mut refused) = (0u32, 0u32);
                    for t in tasks {
                        let (o, r) = t.await.map_err(|e| e.to_string())?;
                        ok += o;
                        refused += r;
                    }
                    let elapsed = start.elapsed().as_secs_f64();
                    // A full bucket, plus what refilled meanwhile.
                    let allowed = f64::from(figure) + elapsed * f64::from(figure) / 60.0;
                    eprintln!(
                        "fleet limit: {ok} admitted, {refused} refused in {elapsed:.2} s; \
                         the figure allows {allowed:.0}"
                    );
                    if f64::from(ok) > allowed * 1.1 || f64::from(ok) < f64::from(figure) * 0.9 {
                        return Err(format!(
                            "{ok} admitted across 3 replicas, {allowed:.0} allowed (±10%)"
                        )
                        .into());
                    }
                    if refused == 0 {
                        return Err("nothing refused".into());
                    }
                    for s in stores {
                        s.close().await;
                    }
                    Ok(())
                })
            }),
            // Two replicas want the same round: one gets it. When the
            // holder's connection dies (a killed replica), the other takes over.
            self.trial("fleet_housekeeping_one_replica", |run_db| {
                block_on(async move {
                    let name = "fleet_housekeeping_one_replica";
                    let a = connect_fresh(&run_db, name).await?;
                    let b = PostgresStore::connect(&schema_url(&run_db, name)?)
                        .await
                        .map_err(|e| e.to_string())?;
                    let mut ha = a.housekeeper("purge");
                    let mut hb = b.housekeeper("purge");
                    assert!(ha.acquire().await, "the first asker holds it");
                    assert!(!hb.acquire().await, "one replica at a time");
                    assert!(ha.acquire().await, "the holder keeps it");
                    assert!(!hb.acquire().await);
                    // Another task's lock is another lock.
                    let mut other = b.housekeeper("audit");
                    assert!(other.acquire().await);
                    let pid = ha.backend_pid().await.ok_or("holder has no connection")?;
                    let mut admin = PgConnection::connect(&run_db)
                        .await
                        .map_err(|e| e.to_string())?;
                    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
                        .bind(pid)
                        .fetch_one(&mut admin)
                        .await
                        .map_err(|e| e.to_string())?;
                    assert!(killed);
                    let start = std::time::Instant::now();
                    while !hb.acquire().await {
                        if start.elapsed() > Duration::from_secs(10) {
                            return Err("the lock was not released with its connection".into());
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    assert!(!ha.acquire().await, "the old holder lost it");
                    admin.close().await.map_err(|e| e.to_string())?;
                    a.close().await;
                    b.close().await;
                    Ok(())
                })
            }),
            // A key rotation bumps the change revision and notifies: a watch
            // on another handle that polls once a minute sees it within 1 s.
            self.trial("key_rotation_notifies_across_handles", |run_db| {
                block_on(async move {
                    let name = "key_rotation_notifies_across_handles";
                    let reader = connect_fresh(&run_db, name).await?;
                    let writer = PostgresStore::connect(&schema_url(&run_db, name)?)
                        .await
                        .map_err(|e| e.to_string())?;
                    let (watch, first) =
                        RevocationWatch::start(Arc::new(reader.clone()), Duration::from_secs(60))
                            .await;
                    first.map_err(|e| e.to_string())?;
                    let mut changes = watch.subscribe();
                    let before = *changes.borrow_and_update();
                    writer
                        .rotate_keys(
                            &SigningKeyRecord {
                                kid: "k-notify".into(),
                                alg: "ES256".into(),
                                sealed_pkcs8: vec![1, 2, 3],
                                state: KeyState::Active,
                                created_at: 1,
                                rotated_at: None,
                                retired_at: None,
                            },
                            1,
                            0,
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                    tokio::time::timeout(Duration::from_secs(1), changes.changed())
                        .await
                        .map_err(|_| "no change notice within 1 s")?
                        .map_err(|e| e.to_string())?;
                    assert!(*changes.borrow() > before);
                    drop(watch);
                    writer.close().await;
                    reader.close().await;
                    Ok(())
                })
            }),
            self.trial("connecting_again_is_quiet", |run_db| {
                // Every operator command connects and checks the migrations;
                // PostgreSQL's notices about tables that already exist must
                // not reach the log each time.
                let log = Log::default();
                let subscriber = tracing_subscriber::fmt()
                    .with_max_level(tracing::Level::TRACE)
                    .with_writer(log.clone())
                    .finish();
                tracing::subscriber::with_default(subscriber, || {
                    current_thread(async {
                        let store = connect_fresh(&run_db, "connecting_again_is_quiet").await?;
                        store.close().await;
                        let url = schema_url(&run_db, "connecting_again_is_quiet")?;
                        let again = PostgresStore::connect(&url)
                            .await
                            .map_err(|e| e.to_string())?;
                        again.close().await;
                        Ok::<_, Failed>(())
                    })
                })?;
                let text = log.text();
                if text.contains("already exists") || text.contains("sqlx::postgres::notice") {
                    return Err(format!("PostgreSQL notices reached the log:\n{text}").into());
                }
                Ok(())
            }),
            self.trial("connect_settings", |run_db| {
                block_on(async move {
                    let store = connect_fresh(&run_db, "connect_settings").await?;
                    assert_eq!(store.backend_name(), "postgres");
                    // Migrations already applied: connecting again is fine.
                    let url = schema_url(&run_db, "connect_settings")?;
                    let again = PostgresStore::connect(&url)
                        .await
                        .map_err(|e| e.to_string())?;
                    again.close().await;
                    store.close().await;
                    match PostgresStore::connect("not a url").await {
                        Err(StoreError::Backend(_)) => Ok(()),
                        other => {
                            Err(format!("expected Backend, got {:?}", other.map(|_| ())).into())
                        }
                    }
                })
            }),
        ]
    }

    /// The URL of this run's database, created on first use.
    fn run_database(&self) -> Result<Url, Failed> {
        let Some(base) = &self.0.base else {
            return Err(format!("{ENV} is not set").into());
        };
        let run = self.0.run.get_or_init(|| {
            current_thread(create_run_database(base.clone())).map_err(|e| e.to_string())
        });
        run.clone()
            .map_err(|e| format!("create the run database: {e}").into())
    }

    /// Drops this run's database, if one was created.
    pub(crate) fn teardown(&self) {
        let (Some(base), Some(Ok(run))) = (&self.0.base, self.0.run.get()) else {
            return;
        };
        let name = run.path().trim_start_matches('/').to_owned();
        if let Err(e) = current_thread(async {
            let mut admin = PgConnection::connect(base.as_str()).await?;
            drop_database(&mut admin, &name).await
        }) {
            eprintln!("warning: could not drop test database {name}: {e}");
        }
    }
}

fn current_thread<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

async fn create_run_database(base: Url) -> Result<Url, sqlx::Error> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let random = RandomState::new().hash_one((std::process::id(), now.as_nanos()));
    let name = format!("{PREFIX}{}_{random:016x}", now.as_secs());
    let mut admin = PgConnection::connect(base.as_str()).await?;
    drop_stale(&mut admin, now.as_secs()).await?;
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    let mut url = base;
    url.set_path(&format!("/{name}"));
    Ok(url)
}

/// Drops run databases older than [`STALE_AFTER`] (from killed runs).
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

/// `run_db` with `schema` as the connection's search_path.
fn schema_url(run_db: &str, schema: &str) -> Result<String, Failed> {
    let mut url = Url::parse(run_db).map_err(|e| e.to_string())?;
    url.query_pairs_mut()
        .append_pair("options[search_path]", schema);
    Ok(url.into())
}

/// Creates the trial's schema and connects a store to it (which migrates it).
async fn connect_fresh(run_db: &str, schema: &str) -> Result<PostgresStore, Failed> {
    let mut admin = PgConnection::connect(run_db)
        .await
        .map_err(|e| e.to_string())?;
    sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\"")))
        .execute(&mut admin)
        .await
        .map_err(|e| e.to_string())?;
    admin.close().await.map_err(|e| e.to_string())?;
    PostgresStore::connect(&schema_url(run_db, schema)?)
        .await
        .map_err(|e| format!("connect: {e}").into())
}

/// A log sink for one trial.
#[derive(Clone, Default)]
struct Log(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Log {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log lock")).into_owned()
    }
}

impl std::io::Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Log {
    type Writer = Log;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
