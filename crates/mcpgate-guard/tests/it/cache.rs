//! The validated-token cache: repeats skip verification, entries die at `exp`, and a cache
//! never answers for another resource.

use mcpgate_guard::{Authenticate, Challenge};
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn repeats_are_answered_without_reverifying() {
    let k = key("k1");
    let t = local_guard(RES_A, &[&k]);
    let token = sign(&k, &claims(ISS, RES_A));
    let first = t
        .guard
        .authenticate(&req(&bearer(&token), None))
        .await
        .unwrap();
    assert_eq!(t.guard.stats().verifications, 1);
    let after_first = t.keys.calls();
    for _ in 0..50 {
        let again = t
            .guard
            .authenticate(&req(&bearer(&token), None))
            .await
            .unwrap();
        assert_eq!(again, first);
    }
    let stats = t.guard.stats();
    assert_eq!(stats.verifications, 1);
    assert_eq!(stats.cache_hits, 50);
    // A hit only asks whether the key is still published (one cheap call), never re-verifies.
    assert_eq!(t.keys.calls(), after_first + 50);
}

#[tokio::test]
async fn entries_expire_at_exp() {
    let k = key("k1");
    let t = local_guard(RES_A, &[&k]);
    let mut c = claims(ISS, RES_A);
    c["exp"] = json!(NOW + 10);
    let token = sign(&k, &c);
    assert!(
        t.guard
            .authenticate(&req(&bearer(&token), None))
            .await
            .is_ok()
    );
    t.clock.advance(9);
    assert!(
        t.guard
            .authenticate(&req(&bearer(&token), None))
            .await
            .is_ok()
    );
    assert_eq!(t.guard.stats().verifications, 1);
    // At exp the entry is gone: the token is verified again (and passes within the leeway,
    // without being cached again).
    t.clock.advance(1);
    assert!(
        t.guard
            .authenticate(&req(&bearer(&token), None))
            .await
            .is_ok()
    );
    assert_eq!(t.guard.stats().verifications, 2);
    assert_eq!(t.guard.cached_tokens(), 0);
    // Past the leeway it is refused.
    t.clock.advance(60);
    assert_eq!(
        t.guard.authenticate(&req(&bearer(&token), None)).await,
        Err(Challenge::InvalidToken("the token has expired".into()))
    );
}

#[tokio::test]
async fn a_cache_never_answers_for_another_resource() {
    let k = key("k1");
    let a = local_guard(RES_A, &[&k]);
    let b = local_guard(RES_B, &[&k]);
    let token = sign(&k, &claims(ISS, RES_A));
    assert!(
        a.guard
            .authenticate(&req(&bearer(&token), None))
            .await
            .is_ok()
    );
    assert!(
        b.guard
            .authenticate(&req(&bearer(&token), None))
            .await
            .is_err()
    );
    assert!(
        a.guard
            .authenticate(&req(&bearer(&token), None))
            .await
            .is_ok()
    );
    assert!(
        b.guard
            .authenticate(&req(&bearer(&token), None))
            .await
            .is_err()
    );
    assert_eq!(b.guard.cached_tokens(), 0);
}

#[tokio::test]
async fn the_cache_is_bounded_and_can_be_disabled() {
    let k = key("k1");
    let clock = mcpgate_jose::FixedClock::new(NOW);
    let mut cfg = config(RES_A, &clock).with_issuer(mcpgate_guard::TrustedIssuer::local(
        ISS,
        CountingKeys::new(&[&k]),
    ));
    cfg.cache_capacity = 32;
    let guard = mcpgate_guard::Guard::new(cfg.clone()).unwrap();
    for i in 0..200 {
        let mut c = claims(ISS, RES_A);
        c["jti"] = json!(i);
        assert!(
            guard
                .authenticate(&req(&bearer(&sign(&k, &c)), None))
                .await
                .is_ok()
        );
    }
    assert!(
        guard.cached_tokens() <= 32 + 16,
        "{}",
        guard.cached_tokens()
    );
    guard.clear_cache();
    assert_eq!(guard.cached_tokens(), 0);

    cfg.cache_capacity = 0;
    let guard = mcpgate_guard::Guard::new(cfg).unwrap();
    let token = sign(&k, &claims(ISS, RES_A));
    for _ in 0..3 {
        assert!(
            guard
                .authenticate(&req(&bearer(&token), None))
                .await
                .is_ok()
        );
    }
    assert_eq!(guard.stats().verifications, 3);
}
