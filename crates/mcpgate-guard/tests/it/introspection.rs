//! Opaque tokens through RFC 7662 introspection against a local test authorization server.

use std::sync::Arc;

use base64::Engine;
use mcpgate_guard::{Authenticate, Challenge, Guard, Introspection, TrustedIssuer};
use mcpgate_jose::FixedClock;
use mcpgate_net::{FetchPolicy, SafeFetcher};
use mcpgate_types::Secret;
use serde_json::{Value, json};

use crate::support::*;

struct Setup {
    guard: Arc<Guard>,
    clock: FixedClock,
    server: TestAs,
}

async fn setup() -> Setup {
    let server = TestAs::start().await;
    let clock = FixedClock::new(NOW);
    let fetcher = SafeFetcher::new(FetchPolicy::loopback_dev());
    let issuer = TrustedIssuer::remote(
        server.base.clone(),
        Some(format!("{}/jwks", server.base)),
        fetcher.clone(),
    )
    .with_introspection(Introspection {
        endpoint: format!("{}/introspect", server.base),
        client_id: "gateway rs".into(),
        client_secret: Secret::new("s3cr:et"),
        cache_secs: 30,
        fetcher,
    });
    let guard = Guard::new(config(RES_A, &clock).with_issuer(issuer)).unwrap();
    Setup {
        guard: Arc::new(guard),
        clock,
        server,
    }
}

fn active(iss: &str) -> Value {
    json!({"active": true, "iss": iss, "aud": RES_A, "sub": "user-9", "client_id": "client-9",
           "scope": "notes:read", "exp": NOW + 600, "token_type": "Bearer", "groups": ["ops"]})
}

#[tokio::test]
async fn happy_path_with_client_secret_basic_and_a_short_cache() {
    let s = setup().await;
    s.server.answer("opaque-1", active(&s.server.base));
    let p = s
        .guard
        .authenticate(&req(&bearer("opaque-1"), None))
        .await
        .unwrap();
    assert_eq!(
        (p.subject.as_str(), p.client_id.as_str()),
        ("user-9", "client-9")
    );
    assert_eq!(p.scopes.to_string(), "notes:read");
    assert_eq!(p.groups, ["ops"]);
    assert_eq!(p.issuer, s.server.base);
    // RFC 6749 §2.3.1: id and secret form-urlencoded, then Basic.
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("gateway+rs:s3cr%3Aet")
    );
    assert_eq!(
        s.server.state.introspection_auth.lock().unwrap()[0],
        expected
    );

    // Cached for cache_secs (30 s), then asked again.
    s.clock.advance(29);
    assert!(
        s.guard
            .authenticate(&req(&bearer("opaque-1"), None))
            .await
            .is_ok()
    );
    assert_eq!(s.server.introspection_hits(), 1);
    s.clock.advance(1);
    assert!(
        s.guard
            .authenticate(&req(&bearer("opaque-1"), None))
            .await
            .is_ok()
    );
    assert_eq!(s.server.introspection_hits(), 2);
    assert_eq!(s.guard.stats().introspections, 2);
}

#[tokio::test]
async fn the_cache_never_outlives_exp() {
    let s = setup().await;
    let mut a = active(&s.server.base);
    a["exp"] = json!(NOW + 5);
    s.server.answer("opaque-2", a);
    assert!(
        s.guard
            .authenticate(&req(&bearer("opaque-2"), None))
            .await
            .is_ok()
    );
    s.clock.advance(5);
    assert!(
        s.guard
            .authenticate(&req(&bearer("opaque-2"), None))
            .await
            .is_ok()
    );
    assert_eq!(s.server.introspection_hits(), 2);
}

#[tokio::test]
async fn inactive_tokens_are_refused() {
    let s = setup().await;
    let out = s
        .guard
        .authenticate(&req(&bearer("never-issued"), None))
        .await;
    assert_eq!(
        out,
        Err(Challenge::InvalidToken("the token is not active".into()))
    );
    // Refusals are not cached.
    assert!(
        s.guard
            .authenticate(&req(&bearer("never-issued"), None))
            .await
            .is_err()
    );
    assert_eq!(s.server.introspection_hits(), 2);
}

#[tokio::test]
async fn audience_mismatch_is_refused() {
    let s = setup().await;
    let mut a = active(&s.server.base);
    a["aud"] = json!(RES_B);
    s.server.answer("for-b", a);
    let out = s.guard.authenticate(&req(&bearer("for-b"), None)).await;
    assert_eq!(
        out,
        Err(Challenge::InvalidToken(
            "the token was not issued for this resource".into()
        ))
    );
    let mut a = active(&s.server.base);
    a.as_object_mut().unwrap().remove("aud");
    s.server.answer("no-aud", a);
    assert!(
        s.guard
            .authenticate(&req(&bearer("no-aud"), None))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn other_issuer_and_refresh_tokens_are_refused() {
    let s = setup().await;
    let mut a = active(&s.server.base);
    a["iss"] = json!("https://evil.example");
    s.server.answer("foreign", a);
    let out = s.guard.authenticate(&req(&bearer("foreign"), None)).await;
    assert_eq!(
        out,
        Err(Challenge::InvalidToken(
            "the token issuer is not trusted".into()
        ))
    );
    // mcpgate's AS reports refresh tokens as active: they must not work as access tokens.
    let mut a = active(&s.server.base);
    a["token_type"] = json!("refresh_token");
    s.server.answer("refresh", a);
    let out = s.guard.authenticate(&req(&bearer("refresh"), None)).await;
    assert_eq!(
        out,
        Err(Challenge::InvalidToken(
            "the token is not an access token".into()
        ))
    );
}
