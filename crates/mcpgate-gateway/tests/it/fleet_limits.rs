//! Rate limits of replicas sharing one PostgreSQL store: two gateways'
//! limits for one upstream admit one user the configured figure together,
//! not twice it; other upstreams and users keep their own.

use std::sync::Arc;
use std::time::Duration;

use mcpgate_gateway::config::RateLimit;
use mcpgate_gateway::ratelimit::Limits;
use mcpgate_guard::Principal;
use mcpgate_store::fleet::{Fleet, Replica};

fn principal(sub: &str) -> Principal {
    Principal {
        issuer: "https://as.example".into(),
        subject: sub.into(),
        client_id: "app".into(),
        scopes: mcpgate_types::ScopeSet::new(),
        groups: vec![],
        expires_at: i64::MAX,
        dpop_jkt: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_limit_holds_across_replicas() {
    let Some(db) = mcpgate_testkit::pg::schema_or_skip("gw_fleet_limits").await else {
        return;
    };
    let cfg = RateLimit {
        per_user_per_minute: 30,
        per_client_per_minute: 6000,
    };
    let replica =
        |s: mcpgate_store::PostgresStore| Replica::with_fleet(Arc::new(s), Fleet::fixed(2));
    let (a, b) = (db.connect().await, db.connect().await);
    let (ra, rb) = (replica(a.clone()), replica(b.clone()));
    let replicas = [
        Limits::new(cfg, "notes", Some(&ra)),
        Limits::new(cfg, "notes", Some(&rb)),
    ];
    let alice = principal("alice");
    let mut admitted = 0;
    let mut last_wait = None;
    for i in 0..90 {
        match replicas[i % 2].check(&alice).await {
            Ok(()) => admitted += 1,
            Err((reason, wait)) => {
                assert_eq!(reason, "user_rate_limit");
                last_wait = Some(wait);
            }
        }
    }
    // 30 a minute refills one token every 2 s: a second or two of test
    // time adds at most one.
    assert!(
        (30..=33).contains(&admitted),
        "{admitted} admitted by two replicas for a figure of 30"
    );
    let wait = last_wait.expect("refused once over");
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_secs(2),
        "{wait:?}"
    );
    // Another user, and the same user at another upstream, have their own.
    assert!(replicas[0].check(&principal("bob")).await.is_ok());
    let other = Limits::new(cfg, "other", Some(&ra));
    assert!(other.check(&alice).await.is_ok());
    a.close().await;
    b.close().await;
    db.drop_schema().await;
}
