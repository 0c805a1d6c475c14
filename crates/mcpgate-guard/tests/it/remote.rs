//! Remote issuers: JWKS through the SSRF-safe fetcher (loopback development policy), discovery
//! by RFC 8414 metadata with an exact issuer check, and the refetch interval for unknown `kid`s.

use std::sync::Arc;

use mcpgate_guard::{Authenticate, Challenge, Guard, TrustedIssuer};
use mcpgate_jose::FixedClock;
use mcpgate_net::{FetchPolicy, SafeFetcher};

use crate::support::*;

struct Remote {
    guard: Arc<Guard>,
    clock: FixedClock,
    server: TestAs,
}

async fn remote(discover: bool) -> Remote {
    let server = TestAs::start().await;
    let clock = FixedClock::new(NOW);
    let fetcher = SafeFetcher::new(FetchPolicy::loopback_dev());
    let jwks_uri = (!discover).then(|| format!("{}/jwks", server.base));
    let issuer = TrustedIssuer::remote(server.base.clone(), jwks_uri, fetcher);
    let guard = Guard::new(config(RES_A, &clock).with_issuer(issuer)).unwrap();
    Remote {
        guard: Arc::new(guard),
        clock,
        server,
    }
}

async fn concurrently(
    guard: &Arc<Guard>,
    token: &str,
    n: usize,
) -> Vec<Result<mcpgate_guard::Principal, Challenge>> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let guard = guard.clone();
        let h = bearer(token);
        tasks.push(tokio::spawn(async move {
            guard.authenticate(&req(&h, None)).await
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test]
async fn first_fetch_is_shared_by_concurrent_requests() {
    let r = remote(false).await;
    let k = key("k1");
    r.server.set_jwks(&[&k]);
    let token = sign(&k, &claims(&r.server.base, RES_A));
    let results = concurrently(&r.guard, &token, 20).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(r.server.jwks_hits(), 1);
}

#[tokio::test]
async fn unknown_kid_refetches_at_most_once_per_interval() {
    let r = remote(false).await;
    let (k1, k2) = (key("k1"), key("k2"));
    r.server.set_jwks(&[&k1]);
    let iss = r.server.base.clone();
    assert!(
        r.guard
            .authenticate(&req(&bearer(&sign(&k1, &claims(&iss, RES_A))), None))
            .await
            .is_ok()
    );
    assert_eq!(r.server.jwks_hits(), 1);

    // k2 is not published: within the interval no request refetches.
    let unknown = sign(&k2, &claims(&iss, RES_A));
    let results = concurrently(&r.guard, &unknown, 10).await;
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Err(Challenge::InvalidToken(_))))
    );
    assert_eq!(r.server.jwks_hits(), 1);

    // After the interval, twenty concurrent requests cause exactly one fetch.
    r.clock.advance(31);
    let results = concurrently(&r.guard, &unknown, 20).await;
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Err(Challenge::InvalidToken(_))))
    );
    assert_eq!(r.server.jwks_hits(), 2);
    assert!(
        r.guard
            .authenticate(&req(&bearer(&unknown), None))
            .await
            .is_err()
    );
    assert_eq!(r.server.jwks_hits(), 2);

    // The issuer publishes k2 (rotation); the next interval picks it up.
    r.server.set_jwks(&[&k1, &k2]);
    r.clock.advance(31);
    let results = concurrently(&r.guard, &unknown, 20).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(r.server.jwks_hits(), 3);
    // Known keys never cause a fetch.
    let fresh = sign(&k1, &json_with_sub(&iss, "user-2"));
    assert!(
        r.guard
            .authenticate(&req(&bearer(&fresh), None))
            .await
            .is_ok()
    );
    assert_eq!(r.server.jwks_hits(), 3);
    assert_eq!(r.guard.stats().key_fetches, 3);
}

fn json_with_sub(iss: &str, sub: &str) -> serde_json::Value {
    let mut c = claims(iss, RES_A);
    c["sub"] = sub.into();
    c
}

#[tokio::test]
async fn retired_remote_key_is_refused_after_the_set_is_refreshed() {
    let r = remote(false).await;
    let (old, new) = (key("old"), key("new"));
    r.server.set_jwks(&[&old, &new]);
    let iss = r.server.base.clone();
    let token = sign(&old, &claims(&iss, RES_A));
    assert!(
        r.guard
            .authenticate(&req(&bearer(&token), None))
            .await
            .is_ok()
    );
    r.server.set_jwks(&[&new]);
    // Still within the JWKS max age (300 s): the cached set is used.
    r.clock.advance(100);
    assert!(
        r.guard
            .authenticate(&req(&bearer(&token), None))
            .await
            .is_ok()
    );
    assert_eq!(r.server.jwks_hits(), 1);
    // Past it, the set is refreshed and the retired key no longer verifies, cached or not.
    r.clock.advance(201);
    let out = r.guard.authenticate(&req(&bearer(&token), None)).await;
    assert_eq!(
        out,
        Err(Challenge::InvalidToken(
            "the token is signed with an unknown key".into()
        ))
    );
    assert_eq!(r.server.jwks_hits(), 2);
    assert!(
        r.guard
            .authenticate(&req(&bearer(&sign(&new, &claims(&iss, RES_A))), None))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn jwks_uri_is_discovered_from_metadata() {
    let r = remote(true).await;
    let k = key("k1");
    r.server.set_jwks(&[&k]);
    assert!(r.guard.prefetch_keys().await.is_empty());
    let token = sign(&k, &claims(&r.server.base, RES_A));
    assert!(
        r.guard
            .authenticate(&req(&bearer(&token), None))
            .await
            .is_ok()
    );
    assert_eq!(
        r.server
            .state
            .metadata_hits
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    assert_eq!(r.server.jwks_hits(), 1);
}

#[tokio::test]
async fn metadata_with_another_issuer_is_not_used() {
    let r = remote(true).await;
    let k = key("k1");
    r.server.set_jwks(&[&k]);
    // The document claims a different issuer (here: with a trailing slash).
    *r.server.state.metadata_issuer.lock().unwrap() = Some(format!("{}/", r.server.base));
    assert_eq!(r.guard.prefetch_keys().await, vec![r.server.base.clone()]);
    let token = sign(&k, &claims(&r.server.base, RES_A));
    r.clock.advance(31);
    let out = r.guard.authenticate(&req(&bearer(&token), None)).await;
    assert_eq!(
        out,
        Err(Challenge::InvalidToken(
            "the token issuer's keys are unavailable".into()
        ))
    );
    assert_eq!(r.server.jwks_hits(), 0);
}

#[tokio::test]
async fn a_private_jwks_host_is_refused_by_the_default_policy() {
    let server = TestAs::start().await;
    let k = key("k1");
    server.set_jwks(&[&k]);
    let clock = FixedClock::new(NOW);
    let fetcher = SafeFetcher::new(FetchPolicy::default());
    let issuer = TrustedIssuer::remote(
        server.base.clone(),
        Some(format!("{}/jwks", server.base)),
        fetcher,
    );
    let guard = Guard::new(config(RES_A, &clock).with_issuer(issuer)).unwrap();
    let token = sign(&k, &claims(&server.base, RES_A));
    assert!(
        guard
            .authenticate(&req(&bearer(&token), None))
            .await
            .is_err()
    );
    assert_eq!(server.jwks_hits(), 0);
}

#[tokio::test]
async fn a_cancelled_request_does_not_abort_the_key_fetch() {
    let r = remote(false).await;
    let k = key("k1");
    r.server.set_jwks(&[&k]);
    let token = sign(&k, &claims(&r.server.base, RES_A));
    let guard = r.guard.clone();
    let h = bearer(&token);
    let request = tokio::spawn(async move { guard.authenticate(&req(&h, None)).await });
    // The test server answers the JWKS after 50 ms; the client goes away before that.
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    request.abort();
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    // Within the refetch interval, yet the keys are there: the fetch completed on its own.
    assert!(
        r.guard
            .authenticate(&req(&bearer(&token), None))
            .await
            .is_ok()
    );
    assert_eq!(r.server.jwks_hits(), 1);
}
