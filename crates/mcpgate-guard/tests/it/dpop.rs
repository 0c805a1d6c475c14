//! DPoP-bound tokens at the guard (RFC 9449 §7): the attacks the proof is there to stop, each
//! against a guard on a fixed clock with a token bound to the client's key.

use std::sync::Arc;

use axum::http::HeaderMap;
use mcpgate_guard::{Authenticate, Challenge, Guard, TrustedIssuer, challenge_response};
use mcpgate_jose::dpop::proof;
use mcpgate_jose::{FixedClock, SigningKey, SystemRng};
use serde_json::json;

use crate::support::*;

/// A token bound to `holder`'s key.
fn bound_token(signer: &SigningKey, holder: &SigningKey) -> String {
    let mut c = claims(ISS, RES_A);
    c["cnf"] = json!({"jkt": holder.public_jwk().thumbprint()});
    sign(signer, &c)
}

fn prove(holder: &SigningKey, htm: &str, htu: &str, token: &str, iat: i64) -> String {
    proof(holder, htm, htu, Some(token), None, iat, &SystemRng::new()).unwrap()
}

fn dpop_headers(token: &str, proofs: &[&str]) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("authorization", format!("DPoP {token}").parse().unwrap());
    for p in proofs {
        h.append("dpop", p.parse().unwrap());
    }
    h
}

fn refused_proof(r: Result<mcpgate_guard::Principal, Challenge>) -> String {
    match r {
        Err(Challenge::InvalidDpopProof(d)) => d,
        other => panic!("expected invalid_dpop_proof, got {other:?}"),
    }
}

#[tokio::test]
async fn a_bound_token_works_only_with_a_fresh_proof_of_its_key() {
    let k = key("k1");
    let holder = key("dpop");
    let t = local_guard(RES_A, &[&k]);
    let token = bound_token(&k, &holder);
    let ok = prove(&holder, "POST", RES_A, &token, NOW);
    let p = t
        .guard
        .authenticate(&req(&dpop_headers(&token, &[&ok]), None))
        .await;
    assert_eq!(p.unwrap().dpop_jkt, Some(holder.public_jwk().thumbprint()));

    // The same proof again: a replay.
    let d = refused_proof(
        t.guard
            .authenticate(&req(&dpop_headers(&token, &[&ok]), None))
            .await,
    );
    assert!(d.contains("already used"), "{d}");

    // Stolen: the token alone, as a bearer token or with the DPoP scheme and no proof.
    let r = t.guard.authenticate(&req(&bearer(&token), None)).await;
    assert!(matches!(r, Err(Challenge::InvalidToken(d)) if d.contains("DPoP-bound")));
    refused_proof(
        t.guard
            .authenticate(&req(&dpop_headers(&token, &[]), None))
            .await,
    );

    // Stolen, with a proof made with the thief's own key.
    let thief = key("thief");
    let forged = prove(&thief, "POST", RES_A, &token, NOW);
    let d = refused_proof(
        t.guard
            .authenticate(&req(&dpop_headers(&token, &[&forged]), None))
            .await,
    );
    assert!(d.contains("bound to"), "{d}");
}

#[tokio::test]
async fn a_proof_is_for_one_request_one_token_and_one_minute() {
    let k = key("k1");
    let holder = key("dpop");
    let t = local_guard(RES_A, &[&k]);
    let token = bound_token(&k, &holder);
    let other_token = {
        let mut c = claims(ISS, RES_A);
        c["cnf"] = json!({"jkt": holder.public_jwk().thumbprint()});
        c["jti"] = json!("j2");
        sign(&k, &c)
    };
    let cases = [
        ("another method", prove(&holder, "GET", RES_A, &token, NOW)),
        ("another URI", prove(&holder, "POST", RES_B, &token, NOW)),
        (
            "another path",
            prove(&holder, "POST", "https://gw.example/mcp/a/x", &token, NOW),
        ),
        (
            "another origin",
            prove(&holder, "POST", "https://evil.example/mcp/a", &token, NOW),
        ),
        (
            "another token",
            prove(&holder, "POST", RES_A, &other_token, NOW),
        ),
        (
            "an old iat",
            prove(&holder, "POST", RES_A, &token, NOW - 61),
        ),
        (
            "a future iat",
            prove(&holder, "POST", RES_A, &token, NOW + 61),
        ),
    ];
    for (what, p) in cases {
        let r = t
            .guard
            .authenticate(&req(&dpop_headers(&token, &[&p]), None))
            .await;
        assert!(
            matches!(r, Err(Challenge::InvalidDpopProof(_))),
            "{what}: {r:?}"
        );
    }
    // Two proofs in one request.
    let a = prove(&holder, "POST", RES_A, &token, NOW);
    let b = prove(&holder, "POST", RES_A, &token, NOW);
    refused_proof(
        t.guard
            .authenticate(&req(&dpop_headers(&token, &[&a, &b]), None))
            .await,
    );
    // A query string is not part of htu: the proof for the bare URI still holds.
    let ok = prove(&holder, "POST", RES_A, &token, NOW);
    assert!(
        t.guard
            .authenticate(&req(&dpop_headers(&token, &[&ok]), Some("x=1")))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_bearer_token_is_not_taken_with_the_dpop_scheme_nor_an_unknown_binding() {
    let k = key("k1");
    let holder = key("dpop");
    let t = local_guard(RES_A, &[&k]);
    let plain = sign(&k, &claims(ISS, RES_A));
    let p = prove(&holder, "POST", RES_A, &plain, NOW);
    let r = t
        .guard
        .authenticate(&req(&dpop_headers(&plain, &[&p]), None))
        .await;
    assert!(matches!(r, Err(Challenge::InvalidToken(d)) if d.contains("not DPoP-bound")));

    // Bound by certificate (RFC 8705): this resource cannot check it, so it is refused.
    let mut c = claims(ISS, RES_A);
    c["cnf"] = json!({"x5t#S256": "abc"});
    let r = t
        .guard
        .authenticate(&req(&bearer(&sign(&k, &c)), None))
        .await;
    assert!(matches!(r, Err(Challenge::InvalidToken(_))), "{r:?}");
}

#[tokio::test]
async fn with_nonces_a_proof_must_carry_one_the_resource_issued() {
    let k = key("k1");
    let holder = key("dpop");
    let clock = FixedClock::new(NOW);
    let issuer = TrustedIssuer::local(ISS, CountingKeys::new(&[&k]));
    let guard = Guard::new(
        config(RES_A, &clock)
            .with_issuer(issuer)
            .with_dpop_nonces([9u8; 32]),
    )
    .unwrap();
    let guard = Arc::new(guard);
    let token = bound_token(&k, &holder);
    let first = prove(&holder, "POST", RES_A, &token, NOW);
    let nonce = match guard
        .authenticate(&req(&dpop_headers(&token, &[&first]), None))
        .await
    {
        Err(Challenge::UseDpopNonce { nonce }) => nonce,
        other => panic!("expected use_dpop_nonce, got {other:?}"),
    };
    let response = challenge_response(
        &Challenge::UseDpopNonce {
            nonce: nonce.clone(),
        },
        PRM_A,
        &Default::default(),
    );
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["dpop-nonce"], nonce.as_str());
    let www = response.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        www.starts_with("DPoP ") && www.contains(r#"error="use_dpop_nonce""#),
        "{www}"
    );

    let with = |n: &str| {
        proof(
            &holder,
            "POST",
            RES_A,
            Some(&token),
            Some(n),
            NOW,
            &SystemRng::new(),
        )
        .unwrap()
    };
    assert!(
        guard
            .authenticate(&req(&dpop_headers(&token, &[&with(&nonce)]), None))
            .await
            .is_ok()
    );
    // A nonce it did not issue, and one made with another secret.
    let r = guard
        .authenticate(&req(&dpop_headers(&token, &[&with("made-up")]), None))
        .await;
    assert!(matches!(r, Err(Challenge::UseDpopNonce { .. })), "{r:?}");
    let foreign = mcpgate_jose::dpop::NonceKey::derive(&[8u8; 32], "https://gw.example").issue(NOW);
    let r = guard
        .authenticate(&req(&dpop_headers(&token, &[&with(&foreign)]), None))
        .await;
    assert!(matches!(r, Err(Challenge::UseDpopNonce { .. })), "{r:?}");
}
