//! An issuer's revocations: asked after validation, asked again on a cache hit only when their
//! generation moved, and a set that never loaded refuses (fails closed).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use mcpgate_guard::{
    Authenticate, Challenge, Guard, RevocableToken, RevocationStatus, Revocations, TrustedIssuer,
};
use serde_json::json;

use crate::support::*;

#[derive(Default)]
struct Switch {
    generation: AtomicU64,
    status: Mutex<Option<RevocationStatus>>,
    asked: AtomicU64,
    last_grant: Mutex<Option<String>>,
}

impl Revocations for Switch {
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }
    fn status(&self, t: &RevocableToken<'_>) -> RevocationStatus {
        self.asked.fetch_add(1, Ordering::SeqCst);
        *self.last_grant.lock().unwrap() = t.grant.map(str::to_string);
        self.status
            .lock()
            .unwrap()
            .unwrap_or(RevocationStatus::Live)
    }
}

fn guard_with(switch: &Arc<Switch>) -> (Guard, mcpgate_jose::SigningKey) {
    let k = key("k1");
    let clock = mcpgate_jose::FixedClock::new(NOW);
    let cfg = config(RES_A, &clock).with_issuer(
        TrustedIssuer::local(ISS, CountingKeys::new(&[&k])).with_revocations(switch.clone()),
    );
    (Guard::new(cfg).unwrap(), k)
}

fn revoked() -> Result<mcpgate_guard::Principal, Challenge> {
    Err(Challenge::InvalidToken("the token has been revoked".into()))
}

#[tokio::test]
async fn cache_hits_ask_again_only_when_the_generation_moves() {
    let switch = Arc::new(Switch::default());
    switch.generation.store(1, Ordering::SeqCst);
    let (guard, k) = guard_with(&switch);
    let mut c = claims(ISS, RES_A);
    c["grant"] = json!("g-1");
    let token = sign(&k, &c);
    assert!(
        guard
            .authenticate(&req(&bearer(&token), None))
            .await
            .is_ok()
    );
    assert_eq!(switch.asked.load(Ordering::SeqCst), 1);
    assert_eq!(switch.last_grant.lock().unwrap().as_deref(), Some("g-1"));
    for _ in 0..10 {
        assert!(
            guard
                .authenticate(&req(&bearer(&token), None))
                .await
                .is_ok()
        );
    }
    assert_eq!(
        switch.asked.load(Ordering::SeqCst),
        1,
        "same generation: not asked"
    );

    // Revoked, and the generation says so: the cached token is refused and dropped.
    *switch.status.lock().unwrap() = Some(RevocationStatus::Revoked);
    switch.generation.store(2, Ordering::SeqCst);
    assert_eq!(
        guard.authenticate(&req(&bearer(&token), None)).await,
        revoked()
    );
    assert_eq!(guard.cached_tokens(), 0);
    assert_eq!(
        guard.authenticate(&req(&bearer(&token), None)).await,
        revoked()
    );
    assert_eq!(
        guard.stats().verifications,
        2,
        "verified again, then refused"
    );

    // Lifted: accepted again.
    *switch.status.lock().unwrap() = Some(RevocationStatus::Live);
    switch.generation.store(3, Ordering::SeqCst);
    assert!(
        guard
            .authenticate(&req(&bearer(&token), None))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_set_never_loaded_refuses() {
    let switch = Arc::new(Switch::default());
    *switch.status.lock().unwrap() = Some(RevocationStatus::Unknown);
    let (guard, k) = guard_with(&switch);
    let token = sign(&k, &claims(ISS, RES_A));
    assert_eq!(
        guard.authenticate(&req(&bearer(&token), None)).await,
        Err(Challenge::InvalidToken(
            "the token's revocation status is unavailable".into()
        ))
    );
    assert_eq!(guard.cached_tokens(), 0);
}

#[tokio::test]
async fn other_issuers_are_not_asked() {
    let switch = Arc::new(Switch::default());
    *switch.status.lock().unwrap() = Some(RevocationStatus::Revoked);
    let k = key("k1");
    let other = key("k2");
    let clock = mcpgate_jose::FixedClock::new(NOW);
    let cfg = config(RES_A, &clock)
        .with_issuer(
            TrustedIssuer::local(ISS, CountingKeys::new(&[&k])).with_revocations(switch.clone()),
        )
        .with_issuer(TrustedIssuer::local(
            "https://other.example",
            CountingKeys::new(&[&other]),
        ));
    let guard = Guard::new(cfg).unwrap();
    let token = sign(&other, &claims("https://other.example", RES_A));
    assert!(
        guard
            .authenticate(&req(&bearer(&token), None))
            .await
            .is_ok()
    );
    assert_eq!(switch.asked.load(Ordering::SeqCst), 0);
}
