//! The purge of sessions idle fleet-wide runs on one replica at a time:
//! of gateways sharing one PostgreSQL schema, only the holder of the
//! `gateway` housekeeping lock purges; when it stops, or dies (its lock's
//! connection closes with it), another takes over.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mcpgate_gateway::fleet::SharedStore;
use mcpgate_gateway::{Gateway, GatewayDeps, GatewaySettings};
use mcpgate_jose::{SystemClock, SystemRng};
use mcpgate_store::PostgresStore;
use mcpgate_store::fleet::{Fleet, Replica};

use crate::harness::eventually;

/// A gateway of the fleet on `store` (its own pool, as a replica has).
fn replica(store: PostgresStore) -> Gateway {
    let store = Arc::new(store);
    let mut settings = GatewaySettings::new("http://127.0.0.1:1", true);
    settings.audit.stdout = false;
    Gateway::new(
        settings,
        GatewayDeps {
            authenticators: HashMap::new(),
            authorization_servers: vec![],
            audit_store: None,
            rng: Arc::new(SystemRng::new()),
            clock: Arc::new(SystemClock),
            entitlements: None,
            request_state_key: None,
            shared_sessions: Some(SharedStore {
                store: store.clone(),
                key: [7; 32],
            }),
            replica: Some(Replica::with_fleet(store, Fleet::fixed(3))),
            vault: None,
        },
    )
    .expect("gateway")
}

/// Which of `gws` purged in one round each (in order).
async fn purgers(gws: &[&Gateway]) -> Vec<bool> {
    let mut out = Vec::new();
    for g in gws {
        out.push(g.purge_idle_sessions().await.is_some());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_are_purged_by_one_replica() {
    let Some(db) = mcpgate_testkit::pg::schema_or_skip("gw_fleet_sweep").await else {
        return;
    };
    let a = replica(db.connect().await);
    let b = replica(db.connect().await);
    // Each gateway's own sweep competes for the lock too: whichever took it
    // first keeps it, and the other never purges.
    let first = purgers(&[&a, &b]).await;
    assert_eq!(
        first.iter().filter(|p| **p).count(),
        1,
        "exactly one replica purges: {first:?}"
    );
    for _ in 0..3 {
        assert_eq!(purgers(&[&a, &b]).await, first, "the holder keeps it");
    }
    let (holder, other) = if first[0] { (a, b) } else { (b, a) };

    // A holder that stops gives the purge up at once.
    holder.shutdown(Duration::from_secs(1)).await;
    assert_eq!(holder.purge_idle_sessions().await, None, "stopped");
    eventually("the other replica takes the purge over", async || {
        other.purge_idle_sessions().await.is_some()
    })
    .await;

    // A holder that dies: its lock's connection closes with it, and a
    // third replica, refused while it lived, takes over.
    let c = replica(db.connect().await);
    assert_eq!(purgers(&[&other, &c]).await, [true, false]);
    drop(other);
    eventually("the third replica takes the purge over", async || {
        c.purge_idle_sessions().await.is_some()
    })
    .await;
    c.shutdown(Duration::from_secs(1)).await;
    drop(c);
    db.drop_schema().await;
}
