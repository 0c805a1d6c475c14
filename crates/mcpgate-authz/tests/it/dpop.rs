//! DPoP at our token endpoint (RFC 9449 §5, §8): a proof binds the tokens to
//! the client's key (`token_type: DPoP`, `cnf.jkt`), a public client's
//! refresh tokens are bound too, and every proof is for this endpoint, fresh,
//! single-use and (when asked for) carries our nonce.

use libtest_mimic::Trial;
use mcpgate_jose::dpop::proof;
use mcpgate_jose::{Clock, KeyAlg, SigningKey, SystemRng};
use mcpgate_testkit::{Browser, Options, TestAs};
use mcpgate_types::client_metadata::TokenEndpointAuthMethod;

use crate::common::*;

pub fn trials() -> Vec<Trial> {
    trials![
        metadata_advertises_dpop,
        code_flow_binds_tokens_and_refresh_to_the_key,
        client_credentials_token_is_bound,
        proofs_for_elsewhere_or_replayed_are_refused,
        nonce_is_required_when_configured,
    ]
}

fn dpop_key() -> SigningKey {
    SigningKey::generate("dpop", KeyAlg::Es256).expect("key")
}

/// A proof by `key` for `POST /oauth/token` of `as_`, now.
fn token_proof(as_: &TestAs, key: &SigningKey, nonce: Option<&str>) -> String {
    let htu = as_.url("/oauth/token");
    proof(
        key,
        "POST",
        &htu,
        None,
        nonce,
        as_.clock.now(),
        &SystemRng::new(),
    )
    .expect("proof")
}

/// POSTs a token request with `proofs` as `DPoP` headers (and optionally HTTP Basic).
async fn token(
    as_: &TestAs,
    form: &[(String, String)],
    proofs: &[&str],
    basic: Option<(&str, &str)>,
) -> Resp {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form.iter())
        .finish();
    let mut req = http()
        .post(as_.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    for p in proofs {
        req = req.header("dpop", *p);
    }
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    into_resp(req.send().await.expect("POST")).await
}

/// A fresh code's token request form; `b` keeps the user signed in across calls.
async fn code_form(as_: &TestAs, b: &mut Browser) -> Vec<(String, String)> {
    let req = app_request(as_);
    let code = authorize_code(as_, b, &req, USER).await;
    req.token_form(&code)
}

fn refresh_form(rt: &str) -> Vec<(String, String)> {
    pairs(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", rt),
        ("client_id", "app"),
    ])
}

async fn metadata_advertises_dpop() {
    let as_ = setup().await;
    let m = get(&as_, "/.well-known/oauth-authorization-server").await;
    let algs = m.json["dpop_signing_alg_values_supported"]
        .as_array()
        .expect("dpop algs");
    assert!(algs.iter().any(|a| a == "ES256") && algs.iter().any(|a| a == "EdDSA"));
    assert!(
        !algs
            .iter()
            .any(|a| a == "none" || a.as_str().unwrap_or("").starts_with("HS"))
    );
}

async fn code_flow_binds_tokens_and_refresh_to_the_key() {
    let as_ = setup().await;
    let mut b = Browser::new();
    let key = dpop_key();
    let jkt = key.public_jwk().thumbprint();
    let r = token(
        &as_,
        &code_form(&as_, &mut b).await,
        &[&token_proof(&as_, &key, None)],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.str("token_type"), "DPoP");
    let at = verify_access_token(&as_, &r.str("access_token"), &as_.resource).await;
    assert_eq!(at.cnf.expect("cnf").jkt, jkt);
    let rt = r.str("refresh_token");

    // The refresh token of this public client is bound: no proof, or another key's, is refused.
    let r2 = token(&as_, &refresh_form(&rt), &[], None).await;
    r2.assert_oauth_error(400, "invalid_grant");
    let thief = dpop_key();
    let r2 = token(
        &as_,
        &refresh_form(&rt),
        &[&token_proof(&as_, &thief, None)],
        None,
    )
    .await;
    r2.assert_oauth_error(400, "invalid_grant");
    // With the key, it rotates and the new access token is bound to the same key.
    let r3 = token(
        &as_,
        &refresh_form(&rt),
        &[&token_proof(&as_, &key, None)],
        None,
    )
    .await;
    assert_eq!(r3.status, 200, "{}", r3.text);
    assert_eq!(r3.str("token_type"), "DPoP");
    let at = verify_access_token(&as_, &r3.str("access_token"), &as_.resource).await;
    assert_eq!(at.cnf.expect("cnf").jkt, jkt);

    // Without a proof, the same flow yields plain bearer tokens, refreshable without one.
    let r = token(&as_, &code_form(&as_, &mut b).await, &[], None).await;
    assert_eq!(r.str("token_type"), "Bearer");
    let at = verify_access_token(&as_, &r.str("access_token"), &as_.resource).await;
    assert!(at.cnf.is_none());
    let r = token(&as_, &refresh_form(&r.str("refresh_token")), &[], None).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

async fn client_credentials_token_is_bound() {
    let as_ = setup().await;
    let (id, secret) = as_
        .add_client(
            "svc",
            "",
            TokenEndpointAuthMethod::ClientSecretBasic,
            &["client_credentials"],
        )
        .await;
    let secret = secret.expect("secret");
    let form = pairs(&[
        ("grant_type", "client_credentials"),
        ("resource", &as_.resource),
    ]);
    let key = dpop_key();
    let r = token(
        &as_,
        &form,
        &[&token_proof(&as_, &key, None)],
        Some((&id, &secret)),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.str("token_type"), "DPoP");
    let at = verify_access_token(&as_, &r.str("access_token"), &as_.resource).await;
    assert_eq!(at.cnf.expect("cnf").jkt, key.public_jwk().thumbprint());
}

async fn proofs_for_elsewhere_or_replayed_are_refused() {
    let as_ = setup().await;
    let mut b = Browser::new();
    let key = dpop_key();
    let now = as_.clock.now();
    let rng = SystemRng::new();
    let endpoint = as_.url("/oauth/token");
    let cases = [
        (
            "another method",
            proof(&key, "GET", &endpoint, None, None, now, &rng),
        ),
        (
            "another URI",
            proof(
                &key,
                "POST",
                &as_.url("/oauth/revoke"),
                None,
                None,
                now,
                &rng,
            ),
        ),
        (
            "an old iat",
            proof(&key, "POST", &endpoint, None, None, now - 120, &rng),
        ),
        (
            "a future iat",
            proof(&key, "POST", &endpoint, None, None, now + 120, &rng),
        ),
    ];
    for (what, p) in cases {
        let r = token(
            &as_,
            &code_form(&as_, &mut b).await,
            &[&p.expect("proof")],
            None,
        )
        .await;
        assert_eq!(r.error(), "invalid_dpop_proof", "{what}: {}", r.text);
        r.assert_oauth_error(400, "invalid_dpop_proof");
    }
    // Not a proof, and two proofs.
    let r = token(&as_, &code_form(&as_, &mut b).await, &["not.a.proof"], None).await;
    r.assert_oauth_error(400, "invalid_dpop_proof");
    let (one, two) = (token_proof(&as_, &key, None), token_proof(&as_, &key, None));
    let r = token(&as_, &code_form(&as_, &mut b).await, &[&one, &two], None).await;
    r.assert_oauth_error(400, "invalid_dpop_proof");

    // A good proof works once; replayed with another code it is refused, and that code
    // is still good (the proof is checked before anything is spent).
    let good = token_proof(&as_, &key, None);
    let r = token(&as_, &code_form(&as_, &mut b).await, &[&good], None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let form = code_form(&as_, &mut b).await;
    let r = token(&as_, &form, &[&good], None).await;
    r.assert_oauth_error(400, "invalid_dpop_proof");
    let r = token(&as_, &form, &[&token_proof(&as_, &key, None)], None).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

async fn nonce_is_required_when_configured() {
    let as_ = TestAs::start_with(Options {
        tweak: Box::new(|s| s.dpop_require_nonce = true),
        ..Default::default()
    })
    .await;
    prepare(&as_).await;
    let mut b = Browser::new();
    let key = dpop_key();
    let form = code_form(&as_, &mut b).await;
    let r = token(&as_, &form, &[&token_proof(&as_, &key, None)], None).await;
    r.assert_oauth_error(400, "use_dpop_nonce");
    let nonce = r.header("dpop-nonce").expect("DPoP-Nonce").to_owned();
    // A made-up nonce earns another challenge; ours works (and the code was not spent).
    let r = token(
        &as_,
        &form,
        &[&token_proof(&as_, &key, Some("made-up"))],
        None,
    )
    .await;
    r.assert_oauth_error(400, "use_dpop_nonce");
    let r = token(&as_, &form, &[&token_proof(&as_, &key, Some(&nonce))], None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.str("token_type"), "DPoP");
    // Without a proof at all, no nonce is asked for: a bearer token.
    let r = token(&as_, &code_form(&as_, &mut b).await, &[], None).await;
    assert_eq!(r.str("token_type"), "Bearer");
}
