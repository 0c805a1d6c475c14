//! Audit retention (`[gateway.audit] retain_days`): store rows older than
//! the retention are purged — by the housekeeping task at start (and then
//! hourly) and on demand — and newer rows are kept.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mcpgate_gateway::{Gateway, GatewayDeps, GatewaySettings};
use mcpgate_jose::{Clock, FixedClock, SystemClock, SystemRng};
use mcpgate_store::{AuditRecord, AuditStore};
use mcpgate_testkit::TestAs;

use crate::harness::eventually;

const DAY_MS: i64 = 86_400_000;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn row(id: &str, age_days: i64) -> AuditRecord {
    row_at(id, now_ms(), age_days)
}

fn row_at(id: &str, now: i64, age_days: i64) -> AuditRecord {
    AuditRecord {
        time_ms: now - age_days * DAY_MS,
        request_id: id.into(),
        issuer: None,
        subject: None,
        client_id: None,
        upstream: "u".into(),
        method: Some("tools/call".into()),
        tool: Some("t".into()),
        decision: "allow".into(),
        reason: "allowed".into(),
        status: 200,
        latency_ms: 1,
    }
}

fn gateway(store: Arc<dyn AuditStore>, retain_days: Option<u64>) -> Gateway {
    gateway_with(store, retain_days, Arc::new(SystemClock))
}

fn gateway_with(
    store: Arc<dyn AuditStore>,
    retain_days: Option<u64>,
    clock: Arc<dyn Clock>,
) -> Gateway {
    let mut settings = GatewaySettings::new("http://127.0.0.1:1", true);
    settings.audit.stdout = false;
    settings.audit.retain = retain_days.map(|d| Duration::from_secs(d * 86_400));
    Gateway::new(
        settings,
        GatewayDeps {
            authenticators: HashMap::new(),
            authorization_servers: vec![],
            audit_store: Some(store),
            rng: Arc::new(SystemRng::new()),
            clock,
            entitlements: None,
            request_state_key: None,
            shared_sessions: None,
            replica: None,
            vault: None,
        },
    )
    .expect("gateway")
}

async fn ids(store: &Arc<dyn AuditStore>) -> Vec<String> {
    let mut v: Vec<String> = store
        .list_audit(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.request_id)
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn housekeeping_purges_rows_past_retention() {
    let as_ = TestAs::start().await;
    let store: Arc<dyn AuditStore> = as_.store.clone();
    store.insert_audit(&[row("old", 31)]).await.unwrap();
    store.insert_audit(&[row("recent", 29)]).await.unwrap();
    // Started after the rows exist: its housekeeping purges at once.
    let gw = gateway(store.clone(), Some(30));
    eventually("the old row purged", async || {
        ids(&store).await == ["recent"]
    })
    .await;
    // On demand too.
    store.insert_audit(&[row("older", 400)]).await.unwrap();
    assert!(gw.purge_audit().await.is_some());
    assert_eq!(ids(&store).await, ["recent"]);
    gw.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_off_keeps_everything() {
    let as_ = TestAs::start().await;
    let store: Arc<dyn AuditStore> = as_.store.clone();
    store.insert_audit(&[row("ancient", 4000)]).await.unwrap();
    let gw = gateway(store.clone(), None);
    assert_eq!(gw.purge_audit().await, None);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(ids(&store).await, ["ancient"]);
    gw.shutdown(Duration::from_secs(1)).await;
}

/// Retention counts from the gateway's clock, not the host's: moving the
/// clock two days on makes a 29-day-old row 31 days old.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_follows_the_gateway_clock() {
    let as_ = TestAs::start().await;
    let store: Arc<dyn AuditStore> = as_.store.clone();
    let start_ms = 1_900_000_000_000;
    store
        .insert_audit(&[row_at("ageing", start_ms, 29), row_at("fresh", start_ms, 1)])
        .await
        .unwrap();
    let clock = FixedClock::new(start_ms / 1000);
    let gw = gateway_with(store.clone(), Some(30), Arc::new(clock.clone()));
    assert!(gw.purge_audit().await.is_some());
    assert_eq!(ids(&store).await, ["ageing", "fresh"]);
    clock.advance(2 * 86_400);
    assert!(gw.purge_audit().await.is_some());
    assert_eq!(ids(&store).await, ["fresh"]);
    gw.shutdown(Duration::from_secs(1)).await;
}
