//! `private_key_jwt` client authentication at the upstream token endpoint
//! (RFC 7523 §2.2, OIDC Core §9) against the fake provider of `idp`: the
//! token request carries a client assertion signed with the configured key
//! (checked here with the public key: `iss`, `sub`, `aud`, `exp`, `jti`) and
//! no secret; a provider that does not list `private_key_jwt` is refused at
//! sign-in. Config-level refusals are unit tests in `idp_file`.

use std::sync::Arc;

use base64::Engine;
use libtest_mimic::Trial;
use mcpgate_authz::TokenAuth;
use mcpgate_jose::{Clock, KeyAlg, PublicJwk, PublicJwks, SigningKey, Verifier, VerifyOptions};
use mcpgate_testkit::Browser;
use serde_json::{Value, json};

use crate::common::*;
use crate::idp::*;

pub fn trials() -> Vec<Trial> {
    trials![
        token_request_carries_es256_assertion,
        token_request_carries_eddsa_assertion,
        provider_without_private_key_jwt_refused,
    ]
}

/// `key` as a PKCS#8 PEM document.
fn pem(key: &SigningKey) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(key.pkcs8());
    let mut out = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str("-----END PRIVATE KEY-----\n");
    out
}

/// The fake provider's settings with `private_key_jwt`, and the public JWK
/// (of the generated key, with the `kid` mcpgate will use) to verify with.
fn pkjwt_provider(
    issuer: &str,
    alg: KeyAlg,
    kid: Option<&str>,
) -> (mcpgate_authz::IdentityProvider, PublicJwk) {
    let generated = SigningKey::generate("generated", alg).unwrap();
    let key = mcpgate_authz::idp_file::signing_key(&pem(&generated), kid).unwrap();
    assert_eq!(key.alg(), alg);
    let mut jwk = generated.public_jwk().clone();
    jwk.kid = key.kid().to_string();
    let mut p = provider(issuer);
    p.client_secret = mcpgate_types::Secret::new("");
    p.token_endpoint_auth = TokenAuth::PrivateKeyJwt;
    p.private_key = Some(Arc::new(key));
    (p, jwk)
}

async fn signs_in_with_assertion(alg: KeyAlg, kid: Option<&str>) {
    let idp = FakeIdp::start().await;
    idp.set_auth_methods(json!(["client_secret_basic", "private_key_jwt"]));
    let (p, jwk) = pkjwt_provider(idp.issuer(), alg, kid);
    if let Some(k) = kid {
        assert_eq!(jwk.kid, k);
    } else {
        // RFC 7638 thumbprint: 43 base64url characters of SHA-256.
        assert_eq!(jwk.kid.len(), 43, "{}", jwk.kid);
    }
    let as_ = as_with(p).await;
    let mut b = Browser::new();
    let begun = begin(
        &as_,
        &mut b,
        &app_request(&as_),
        &format!("{}/authorize", idp.issuer()),
    )
    .await;
    idp.set_next(good_claims(&as_, &idp, &begun));
    let back = callback(
        &as_,
        &mut b,
        Some(&begun.params["state"]),
        Some(idp.issuer()),
    )
    .await;
    assert_eq!(back.status, 303, "{}", back.body);
    assert!(b.cookie(SESSION_COOKIE).is_some());

    let (form, auth) = idp.last_token_request().expect("a token request");
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(auth, "", "no Authorization header with private_key_jwt");
    assert_eq!(get("client_secret"), None, "no secret sent");
    assert_eq!(get("client_id").as_deref(), Some(CLIENT_ID));
    assert_eq!(
        get("client_assertion_type").as_deref(),
        Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
    );
    assert!(get("code_verifier").is_some());
    let assertion = get("client_assertion").expect("client_assertion sent");
    assert!(!assertion.contains(CLIENT_SECRET));

    // The signature checks out with the public key; the claims are right.
    let token_endpoint = format!("{}/token", idp.issuer());
    let now = as_.clock.now();
    let verifier = Verifier::from_public_jwks(&PublicJwks { keys: vec![jwk] }).unwrap();
    let opts = VerifyOptions {
        issuer: CLIENT_ID,
        audience: Some(&token_endpoint),
        typ: Some("JWT"),
        now,
        leeway: 0,
    };
    let v = verifier.verify::<Value>(&assertion, &opts).unwrap();
    assert_eq!(v.alg, alg_name(alg));
    let c = v.claims;
    assert_eq!(c["iss"], CLIENT_ID);
    assert_eq!(c["sub"], CLIENT_ID);
    // Exactly the token endpoint URL, as a single string.
    assert_eq!(c["aud"], Value::String(token_endpoint.clone()));
    let iat = c["iat"].as_i64().unwrap();
    assert_eq!(iat, now);
    assert_eq!(c["exp"].as_i64().unwrap(), iat + 60);
    let jti = c["jti"].as_str().unwrap().to_string();
    assert!(jti.len() >= 32, "{jti}");
    // Expired a minute later.
    let late = VerifyOptions {
        now: now + 61,
        ..opts.clone()
    };
    assert!(verifier.verify::<Value>(&assertion, &late).is_err());

    // A second sign-in uses a fresh jti.
    let mut b = Browser::new();
    let begun = begin(
        &as_,
        &mut b,
        &app_request(&as_),
        &format!("{}/authorize", idp.issuer()),
    )
    .await;
    idp.set_next(good_claims(&as_, &idp, &begun));
    let back = callback(
        &as_,
        &mut b,
        Some(&begun.params["state"]),
        Some(idp.issuer()),
    )
    .await;
    assert_eq!(back.status, 303, "{}", back.body);
    let (form, _) = idp.last_token_request().unwrap();
    let again = form
        .iter()
        .find(|(n, _)| n == "client_assertion")
        .map(|(_, v)| v.clone())
        .unwrap();
    let c2 = verifier.verify::<Value>(&again, &opts).unwrap().claims;
    assert_ne!(c2["jti"].as_str().unwrap(), jti, "jti is not reused");
}

fn alg_name(alg: KeyAlg) -> &'static str {
    match alg {
        KeyAlg::Es256 => "ES256",
        KeyAlg::EdDsa => "EdDSA",
    }
}

async fn token_request_carries_es256_assertion() {
    signs_in_with_assertion(KeyAlg::Es256, Some("mcpgate-client-key-1")).await;
}

async fn token_request_carries_eddsa_assertion() {
    signs_in_with_assertion(KeyAlg::EdDsa, None).await;
}

async fn provider_without_private_key_jwt_refused() {
    let idp = FakeIdp::start().await;
    idp.set_auth_methods(json!(["client_secret_basic", "client_secret_post"]));
    let (p, _) = pkjwt_provider(idp.issuer(), KeyAlg::Es256, None);
    let as_ = as_with(p).await;
    let mut b = Browser::new();
    let first = b.get(&app_request(&as_).url(&as_.issuer)).await;
    assert_eq!(first.status, 303, "{}", first.body);
    let login = b.get(&as_.url(first.location.as_deref().unwrap())).await;
    assert_eq!(login.status, 200);
    let form = pairs(&[
        ("csrf", &login.input("csrf").unwrap()),
        ("return_to", &login.input("return_to").unwrap()),
    ]);
    let go = b.post_form(&as_.url("/login/idp/corp"), &form).await;
    assert_error_page(&go, 502);
    assert!(go.body.contains("private_key_jwt"), "{}", go.body);
    assert!(upstream_cookie_set(&go).is_none(), "no state cookie");
    assert!(idp.last_token_request().is_none(), "no token request");
}
