//! Replicas that share one database acting as one fleet: which replica
//! does housekeeping ([`Housekeeper`]) and how many replicas are alive
//! ([`Fleet`], for limits that must divide themselves when the database
//! stops answering, see [`crate::rates`]).
//!
//! On PostgreSQL, a round of housekeeping (purging expired rows, retiring
//! keys) runs only on the replica that holds the task's advisory lock
//! (`pg_try_advisory_lock`), taken on a connection of its own outside the
//! pool: when that replica dies, or its connection does, PostgreSQL
//! releases the lock and the next replica to try takes it over. The lock's
//! key is a hash of the task and the schema, so deployments in different
//! schemas of one database do not share it. A round may still overlap
//! another's by a moment (a holder whose connection dies mid-round); every
//! round is idempotent, so that costs work, never correctness. SQLite is
//! one node: its [`Housekeeper`] is always held.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

use crate::traits::FleetStore;

/// The right to run one kind of housekeeping round (see the module docs).
pub struct Housekeeper(Kind);

enum Kind {
    Always,
    Postgres {
        options: PgConnectOptions,
        task: String,
        conn: Option<PgConnection>,
        held: bool,
    },
}

impl std::fmt::Debug for Housekeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Kind::Always => f.write_str("Housekeeper(always)"),
            Kind::Postgres { task, held, .. } => f
                .debug_struct("Housekeeper")
                .field("task", task)
                .field("held", held)
                .finish_non_exhaustive(),
        }
    }
}

impl Housekeeper {
    /// Held by this process for good (one node, or tests).
    pub fn always() -> Self {
        Self(Kind::Always)
    }

    /// The lock of `task` for a process in `fleet`, or held for good by a
    /// process alone. The one way the AS and the gateway take theirs: a
    /// replica never falls back to running every round itself, it only
    /// retries the lock at the next round ([`acquire`](Self::acquire)).
    pub fn of(fleet: Option<&Replica>, task: &str) -> Self {
        match fleet {
            Some(r) => r.housekeeper(task),
            None => Self::always(),
        }
    }

    pub(crate) fn postgres(options: PgConnectOptions, task: &str) -> Self {
        Self(Kind::Postgres {
            options,
            task: task.to_owned(),
            conn: None,
            held: false,
        })
    }

    /// Whether this process may run the next round: it holds the lock (its
    /// connection still answers), or it takes it now. Never waits for
    /// another holder; a failure to connect is logged and answers `false`.
    pub async fn acquire(&mut self) -> bool {
        let Kind::Postgres {
            options,
            task,
            conn,
            held,
        } = &mut self.0
        else {
            return true;
        };
        if let Some(c) = conn.as_mut() {
            if !*held {
                // Another replica holds it: try again below.
            } else if sqlx::query("SELECT 1").execute(&mut *c).await.is_ok() {
                return true;
            } else {
                tracing::warn!(%task, "housekeeping lock lost with its connection");
                *conn = None;
                *held = false;
            }
        }
        if conn.is_none() {
            match PgConnection::connect_with(options).await {
                Ok(c) => *conn = Some(c),
                Err(e) => {
                    tracing::warn!(%task, error = %e, "cannot connect for the housekeeping lock; skipping this round");
                    return false;
                }
            }
        }
        let Some(c) = conn.as_mut() else {
            return false;
        };
        let took = sqlx::query_scalar::<_, bool>(
            "SELECT pg_try_advisory_lock(hashtext($1 || current_schema())::bigint)",
        )
        .bind(format!("mcpgate/housekeeping/{task}/"))
        .fetch_one(&mut *c)
        .await;
        match took {
            Ok(t) => {
                if t {
                    tracing::info!(%task, "this replica now does the housekeeping");
                }
                *held = t;
                t
            }
            Err(e) => {
                tracing::warn!(%task, error = %e, "taking the housekeeping lock failed");
                *conn = None;
                false
            }
        }
    }

    /// The PostgreSQL server process of the lock's connection, if one is
    /// open (operations; tests end it to play a replica that died).
    pub async fn backend_pid(&mut self) -> Option<i32> {
        let Kind::Postgres { conn: Some(c), .. } = &mut self.0 else {
            return None;
        };
        sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()")
            .fetch_one(c)
            .await
            .ok()
    }
}

/// How often a replica says it is alive, and how long until one that stopped
/// saying so no longer counts.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
pub const HEARTBEAT_TTL: Duration = Duration::from_secs(15);

/// How many replicas share the database, as last seen by this one.
#[derive(Debug)]
pub struct Fleet {
    replicas: AtomicU32,
}

impl Fleet {
    /// One replica, for good (SQLite, tests).
    pub fn single() -> Arc<Self> {
        Arc::new(Self {
            replicas: AtomicU32::new(1),
        })
    }

    /// A fixed count (tests, or a deployment that knows its size).
    pub fn fixed(replicas: u32) -> Arc<Self> {
        Arc::new(Self {
            replicas: AtomicU32::new(replicas.max(1)),
        })
    }

    /// Joins the fleet: a heartbeat now and every [`HEARTBEAT`] from a
    /// background task (ended when the last clone is dropped), each one
    /// updating the count. Until the first answers, or while the database
    /// does not, the last count stays.
    pub async fn join(store: Arc<dyn FleetStore>) -> Arc<Self> {
        let id = replica_id();
        let fleet = Arc::new(Self {
            replicas: AtomicU32::new(1),
        });
        fleet.beat(store.as_ref(), &id).await;
        let weak = Arc::downgrade(&fleet);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(HEARTBEAT).await;
                let Some(f) = weak.upgrade() else { return };
                f.beat(store.as_ref(), &id).await;
            }
        });
        fleet
    }

    async fn beat(&self, store: &dyn FleetStore, id: &str) {
        match store.fleet_heartbeat(id, HEARTBEAT_TTL.as_secs_f64()).await {
            Ok(n) => self.replicas.store(n, Ordering::Relaxed),
            Err(e) => tracing::warn!(error = %e, "fleet heartbeat failed"),
        }
    }

    /// Live replicas, this one included (at least 1).
    pub fn replicas(&self) -> u32 {
        self.replicas.load(Ordering::Relaxed).max(1)
    }
}

/// This process as one replica of a fleet sharing a database: what the
/// authorization server and the gateway are given to make their limits
/// fleet-wide and their housekeeping one replica's at a time. Cheap to
/// clone. Without one (SQLite, one node) limits stay in memory and every
/// round runs.
#[derive(Clone)]
pub struct Replica {
    store: Arc<dyn FleetStore>,
    fleet: Arc<Fleet>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("replicas", &self.fleet.replicas())
            .finish_non_exhaustive()
    }
}

impl Replica {
    /// Joins the fleet of `store` (see [`Fleet::join`]).
    pub async fn join(store: Arc<dyn FleetStore>) -> Self {
        let fleet = Fleet::join(store.clone()).await;
        Self { store, fleet }
    }

    /// With a known fleet (tests).
    pub fn with_fleet(store: Arc<dyn FleetStore>, fleet: Arc<Fleet>) -> Self {
        Self { store, fleet }
    }

    /// A fleet-wide limit named `name` (its keys' namespace in the store).
    pub fn limiter(&self, name: &str, rate: crate::rates::Rate) -> crate::rates::Limiter {
        crate::rates::Limiter::shared(name, rate, self.store.clone(), self.fleet.clone())
    }

    /// The housekeeping lock of `task`.
    pub fn housekeeper(&self, task: &str) -> Housekeeper {
        self.store.housekeeper(task)
    }

    /// The store the fleet shares.
    pub fn store(&self) -> &Arc<dyn FleetStore> {
        &self.store
    }

    /// Live replicas as last seen.
    pub fn replicas(&self) -> u32 {
        self.fleet.replicas()
    }
}

/// A replica id unique enough among live processes: process id, start time
/// and a random hash seed.
fn replica_id() -> String {
    use std::hash::BuildHasher;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let r = std::collections::hash_map::RandomState::new().hash_one((std::process::id(), nanos));
    format!("{}-{r:016x}", std::process::id())
}
