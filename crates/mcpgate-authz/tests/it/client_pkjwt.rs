//! `private_key_jwt` client authentication at our AS (RFC 7523 §2.2): the
//! client proves itself with a JWT signed by its private key; the AS holds
//! only the public keys, registered by value (`jwks`) or by URL (`jwks_uri`,
//! served here by a local server on 127.0.0.1:0, which the test AS's
//! loopback development override lets it fetch).
//!
//! Each attack trial first shows the same request succeed with a good
//! assertion where that makes sense, so a refusal is the rule at work and
//! not a broken setup.

use libtest_mimic::Trial;
use mcpgate_authz::admin::{ClientSpec, create_client};
use mcpgate_jose::{Clock, KeyAlg, SigningKey};
use mcpgate_testkit::{AuthRequest, Browser, TestAs};
use mcpgate_types::client_metadata::{JWT_BEARER_ASSERTION, TokenEndpointAuthMethod};
use serde_json::{Value, json};

use crate::common::*;

pub fn trials() -> Vec<Trial> {
    trials![
        metadata_advertises_private_key_jwt,
        client_credentials_with_inline_keys,
        registered_client_runs_the_code_flow,
        metadata_document_client_with_jwks_uri,
        jwks_uri_refetched_when_the_client_rotates,
        replayed_assertion_refused,
        assertion_for_another_audience_refused,
        expired_or_long_lived_assertion_refused,
        assertion_claims_must_name_the_client,
        assertion_signed_by_another_key_refused,
        assertion_with_hmac_over_the_public_key_refused,
        assertion_beside_a_secret_refused,
        secret_client_cannot_use_an_assertion,
        registration_refuses_unusable_keys,
    ]
}

const CLIENT: &str = "svc";

/// A client key and its public JWK set.
fn key(kid: &str) -> (SigningKey, Value) {
    let k = SigningKey::generate(kid, KeyAlg::Es256).expect("key");
    let set = json!({ "keys": [serde_json::to_value(k.public_jwk()).expect("jwk")] });
    (k, set)
}

/// Claims of a good assertion from `client` to `as_`, valid for 60 s.
fn claims(as_: &TestAs, client: &str) -> Value {
    let now = as_.clock.now();
    json!({
        "iss": client, "sub": client, "aud": as_.issuer,
        "iat": now, "exp": now + 60,
        "jti": format!("jti-{}", random_jti()),
    })
}

fn random_jti() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn sign(k: &SigningKey, claims: &Value) -> String {
    k.sign("JWT", claims).expect("sign")
}

/// `form` with `assertion` as its client authentication.
fn with_assertion(mut form: Vec<(String, String)>, assertion: &str) -> Vec<(String, String)> {
    form.push(("client_assertion_type".into(), JWT_BEARER_ASSERTION.into()));
    form.push(("client_assertion".into(), assertion.into()));
    form
}

/// A token request authenticated by `assertion` (no `client_id` in the form).
async fn token(as_: &TestAs, form: Vec<(String, String)>, assertion: &str) -> Resp {
    post_pairs(as_, "/oauth/token", &with_assertion(form, assertion), None).await
}

fn cc_form(as_: &TestAs) -> Vec<(String, String)> {
    pairs(&[
        ("grant_type", "client_credentials"),
        ("scope", "notes:read"),
        ("resource", &as_.resource),
    ])
}

/// The server with a pre-registered `private_key_jwt` client [`CLIENT`]
/// (client credentials) whose keys are `jwks`.
async fn with_client(jwks: Value) -> TestAs {
    let as_ = setup().await;
    add_key_client(&as_, Some(jwks), None).await;
    as_
}

/// Pre-registers [`CLIENT`] with `private_key_jwt` and these keys.
async fn add_key_client(as_: &TestAs, jwks: Option<Value>, jwks_uri: Option<String>) {
    let spec = ClientSpec {
        client_id: Some(CLIENT.into()),
        name: "Service".into(),
        redirect_uris: vec![],
        auth_method: TokenEndpointAuthMethod::PrivateKeyJwt,
        grant_types: vec!["client_credentials".into()],
        scopes: vec![],
        secret: None,
        jwks,
        jwks_uri,
    };
    let (_, secret) = create_client(&as_.admin(), &spec, false)
        .await
        .expect("client");
    assert!(secret.is_none(), "a key client gets no secret");
}

async fn metadata_advertises_private_key_jwt() {
    let as_ = setup().await;
    let m = get(&as_, "/.well-known/oauth-authorization-server").await;
    for field in [
        "token_endpoint_auth_methods_supported",
        "revocation_endpoint_auth_methods_supported",
        "introspection_endpoint_auth_methods_supported",
    ] {
        let list = m.json[field].as_array().expect(field);
        assert!(list.iter().any(|v| v == "private_key_jwt"), "{field}");
    }
    let algs = m.json["token_endpoint_auth_signing_alg_values_supported"]
        .as_array()
        .expect("signing algs");
    assert!(algs.iter().any(|a| a == "ES256") && algs.iter().any(|a| a == "EdDSA"));
    assert!(!algs.iter().any(|a| a == "none" || a == "HS256"));
}

async fn client_credentials_with_inline_keys() {
    let (k, set) = key("k1");
    let as_ = with_client(set).await;
    let r = token(&as_, cc_form(&as_), &sign(&k, &claims(&as_, CLIENT))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let at = verify_access_token(&as_, &r.str("access_token"), &as_.resource).await;
    assert_eq!(at.client_id, CLIENT);
    // The issuer alone in an array, or with its root slash, is the issuer.
    for aud in [json!([as_.issuer]), json!(format!("{}/", as_.issuer))] {
        let mut c = claims(&as_, CLIENT);
        c["aud"] = aud;
        let r = token(&as_, cc_form(&as_), &sign(&k, &c)).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    // A matching client_id in the form is fine; no client_id is too.
    let mut form = cc_form(&as_);
    form.push(("client_id".into(), CLIENT.into()));
    let r = token(&as_, form, &sign(&k, &claims(&as_, CLIENT))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Without any credential the client is refused.
    let r = post_form(&as_, "/oauth/token", cc_form(&as_), Auth::Public(CLIENT)).await;
    r.assert_oauth_error(401, "invalid_client");
}

/// Dynamic registration with `jwks`, then the whole code flow with the
/// assertion at the token endpoint, a refresh, and revocation.
async fn registered_client_runs_the_code_flow() {
    let as_ = setup().await;
    let (k, set) = key("dyn-1");
    let reg = register(
        &as_,
        &json!({
            "client_name": "Key client",
            "redirect_uris": [REDIRECT],
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": set,
        }),
    )
    .await;
    assert_eq!(reg.status, 201, "{}", reg.text);
    assert!(reg.json.get("client_secret").is_none(), "no secret issued");
    assert_eq!(reg.str("token_endpoint_auth_method"), "private_key_jwt");
    assert_eq!(reg.json["jwks"], set);
    let id = reg.str("client_id");
    let req = AuthRequest::new(&id, REDIRECT, SCOPES, &as_.resource);
    let code = authorize_code(&as_, &mut Browser::new(), &req, USER).await;
    // The code is bound to an authenticated client: a public-style
    // exchange with its client_id alone is refused.
    let stolen = redeem(&as_, &req, &code, Auth::Public(&id)).await;
    stolen.assert_oauth_error(401, "invalid_client");
    let code = authorize_code(&as_, &mut Browser::new(), &req, USER).await;
    let r = token(&as_, req.token_form(&code), &sign(&k, &claims(&as_, &id))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let rt = r.str("refresh_token");
    let form = pairs(&[("grant_type", "refresh_token"), ("refresh_token", &rt)]);
    let r2 = token(&as_, form, &sign(&k, &claims(&as_, &id))).await;
    assert_eq!(r2.status, 200, "{}", r2.text);
    let form = pairs(&[("token", &r2.str("refresh_token"))]);
    let form = with_assertion(form, &sign(&k, &claims(&as_, &id)));
    let rv = post_pairs(&as_, "/oauth/revoke", &form, None).await;
    assert_eq!(rv.status, 200, "{}", rv.text);
}

/// A metadata-document client that publishes its keys at a `jwks_uri`: the
/// document and the keys are fetched through the SSRF guard, the flow
/// completes with an assertion, and the key set is cached.
async fn metadata_document_client_with_jwks_uri() {
    let as_ = setup().await;
    let (k, set) = key("cimd-1");
    let keys = DocServer::start(|_| set.clone(), None).await;
    let jwks_uri = keys.client_id.clone();
    let doc = DocServer::start(
        |id| {
            let mut d = cimd_doc(id, REDIRECT);
            d["token_endpoint_auth_method"] = json!("private_key_jwt");
            d["jwks_uri"] = json!(jwks_uri);
            d
        },
        None,
    )
    .await;
    let id = doc.client_id.clone();
    let req = AuthRequest::new(&id, REDIRECT, SCOPES, &as_.resource);
    let code = authorize_code(&as_, &mut Browser::new(), &req, USER).await;
    assert_eq!(
        keys.hits(),
        0,
        "keys are fetched only when an assertion comes"
    );
    let r = token(&as_, req.token_form(&code), &sign(&k, &claims(&as_, &id))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let code = authorize_code(&as_, &mut Browser::new(), &req, USER).await;
    let r = token(&as_, req.token_form(&code), &sign(&k, &claims(&as_, &id))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(keys.hits(), 1, "the key set is cached");
    // A metadata-document client with keys is not public: client_id alone fails.
    let code = authorize_code(&as_, &mut Browser::new(), &req, USER).await;
    redeem(&as_, &req, &code, Auth::Public(&id))
        .await
        .assert_oauth_error(401, "invalid_client");
}

/// The client rotates its key at its `jwks_uri`: an assertion naming the
/// new `kid` makes the AS fetch the set again (once the last fetch is old
/// enough), and the old key stops working.
async fn jwks_uri_refetched_when_the_client_rotates() {
    let (old, old_set) = key("gen-1");
    let keys = DocServer::start(|_| old_set.clone(), None).await;
    let as_ = setup().await;
    add_key_client(&as_, None, Some(keys.client_id.clone())).await;
    let r = token(&as_, cc_form(&as_), &sign(&old, &claims(&as_, CLIENT))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let (new, new_set) = key("gen-2");
    keys.replace(new_set);
    // Within the refetch pause the unknown kid does not fetch again.
    let r = token(&as_, cc_form(&as_), &sign(&new, &claims(&as_, CLIENT))).await;
    r.assert_oauth_error(401, "invalid_client");
    assert_eq!(keys.hits(), 1);
    as_.clock.advance(31);
    let r = token(&as_, cc_form(&as_), &sign(&new, &claims(&as_, CLIENT))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(keys.hits(), 2);
    let r = token(&as_, cc_form(&as_), &sign(&old, &claims(&as_, CLIENT))).await;
    r.assert_oauth_error(401, "invalid_client");
}

async fn replayed_assertion_refused() {
    let (k, set) = key("k1");
    let as_ = with_client(set).await;
    let a = sign(&k, &claims(&as_, CLIENT));
    let first = token(&as_, cc_form(&as_), &a).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let again = token(&as_, cc_form(&as_), &a).await;
    again.assert_oauth_error(401, "invalid_client");
    assert!(again.text.contains("already used"), "{}", again.text);
    // Same jti, freshly signed: still the same assertion id.
    let mut c = claims(&as_, CLIENT);
    c["jti"] = json!("fixed");
    assert_eq!(token(&as_, cc_form(&as_), &sign(&k, &c)).await.status, 200);
    c["exp"] = json!(as_.clock.now() + 90);
    token(&as_, cc_form(&as_), &sign(&k, &c))
        .await
        .assert_oauth_error(401, "invalid_client");
}

/// Only the issuer identifier is an acceptable audience (RFC 7523bis): the
/// token endpoint URL is refused too, since another AS's metadata may name
/// our endpoint as its own and collect assertions meant for it.
async fn assertion_for_another_audience_refused() {
    let (k, set) = key("k1");
    let as_ = with_client(set).await;
    for aud in [
        json!("https://other-as.example"),
        json!(format!("{}/oauth/token", as_.issuer)),
        json!([as_.issuer, "https://other-as.example"]),
        json!(format!("{}/oauth/introspect", as_.issuer)),
        json!(as_.resource),
        json!([]),
        json!(null),
    ] {
        let mut c = claims(&as_, CLIENT);
        c["aud"] = aud.clone();
        token(&as_, cc_form(&as_), &sign(&k, &c))
            .await
            .assert_oauth_error(401, "invalid_client");
    }
}

async fn expired_or_long_lived_assertion_refused() {
    let (k, set) = key("k1");
    let as_ = with_client(set).await;
    let now = as_.clock.now();
    let mut edits: Vec<(&str, Value)> = vec![
        ("exp", json!(now - 31)),
        ("exp", json!(now + 3_600)),
        ("exp", Value::Null),
        ("iat", json!(now + 120)),
        ("nbf", json!(now + 120)),
        ("jti", Value::Null),
        ("jti", json!("")),
        ("jti", json!("j".repeat(257))),
    ];
    for (field, v) in edits.drain(..) {
        let mut c = claims(&as_, CLIENT);
        if v.is_null() {
            c.as_object_mut().unwrap().remove(field);
        } else {
            c[field] = v.clone();
        }
        let r = token(&as_, cc_form(&as_), &sign(&k, &c)).await;
        assert_eq!(r.status, 401, "{field}={v}: {}", r.text);
        assert_eq!(r.error(), "invalid_client");
    }
}

async fn assertion_claims_must_name_the_client() {
    let (k, set) = key("k1");
    let as_ = with_client(set).await;
    // sub of another client.
    let mut c = claims(&as_, CLIENT);
    c["sub"] = json!("app");
    token(&as_, cc_form(&as_), &sign(&k, &c))
        .await
        .assert_oauth_error(401, "invalid_client");
    // A form client_id that differs from iss.
    let mut form = cc_form(&as_);
    form.push(("client_id".into(), "app".into()));
    token(&as_, form, &sign(&k, &claims(&as_, CLIENT)))
        .await
        .assert_oauth_error(400, "invalid_request");
    // iss of an unknown client.
    token(&as_, cc_form(&as_), &sign(&k, &claims(&as_, "nobody")))
        .await
        .assert_oauth_error(401, "invalid_client");
    // A public client named as iss: it has no keys to check with.
    token(&as_, cc_form(&as_), &sign(&k, &claims(&as_, "app")))
        .await
        .assert_oauth_error(401, "invalid_client");
    // Not a JWT at all, or the wrong assertion type.
    token(&as_, cc_form(&as_), "not-a-jwt")
        .await
        .assert_oauth_error(401, "invalid_client");
    let mut form = cc_form(&as_);
    form.push((
        "client_assertion_type".into(),
        "urn:ietf:params:oauth:client-assertion-type:saml2-bearer".into(),
    ));
    form.push(("client_assertion".into(), sign(&k, &claims(&as_, CLIENT))));
    post_pairs(&as_, "/oauth/token", &form, None)
        .await
        .assert_oauth_error(400, "invalid_request");
}

async fn assertion_signed_by_another_key_refused() {
    let (_, set) = key("k1");
    let as_ = with_client(set).await;
    // Same kid, another key.
    let (impostor, _) = key("k1");
    let r = token(&as_, cc_form(&as_), &sign(&impostor, &claims(&as_, CLIENT))).await;
    r.assert_oauth_error(401, "invalid_client");
    // Unknown kid.
    let (other, _) = key("k9");
    let r = token(&as_, cc_form(&as_), &sign(&other, &claims(&as_, CLIENT))).await;
    r.assert_oauth_error(401, "invalid_client");
}

/// The classic key-confusion attack: HS256 with the public key as the
/// HMAC secret, and `alg: none`.
async fn assertion_with_hmac_over_the_public_key_refused() {
    let (_, set) = key("k1");
    let as_ = with_client(set.clone()).await;
    let c = claims(&as_, CLIENT);
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    h.kid = Some("k1".into());
    let secret = set["keys"][0]["x"].as_str().unwrap().to_owned();
    let hs = jsonwebtoken::encode(
        &h,
        &c,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    token(&as_, cc_form(&as_), &hs)
        .await
        .assert_oauth_error(401, "invalid_client");
    use base64::Engine;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let none = format!("{}.{}.", b64(&json!({"alg": "none", "kid": "k1"})), b64(&c));
    token(&as_, cc_form(&as_), &none)
        .await
        .assert_oauth_error(401, "invalid_client");
}

async fn assertion_beside_a_secret_refused() {
    let (k, set) = key("k1");
    let as_ = with_client(set).await;
    let mut form = cc_form(&as_);
    form.push(("client_secret".into(), "whatever".into()));
    token(&as_, form, &sign(&k, &claims(&as_, CLIENT)))
        .await
        .assert_oauth_error(400, "invalid_request");
    // Basic beside the assertion.
    let form = with_assertion(cc_form(&as_), &sign(&k, &claims(&as_, CLIENT)));
    post_pairs(&as_, "/oauth/token", &form, Some((CLIENT, "whatever")))
        .await
        .assert_oauth_error(400, "invalid_request");
    // The assertion given twice.
    let a = sign(&k, &claims(&as_, CLIENT));
    let mut form = cc_form(&as_);
    form.push(("client_assertion".into(), a.clone()));
    token(&as_, form, &a)
        .await
        .assert_oauth_error(400, "invalid_request");
}

/// A client registered with a secret cannot switch to an assertion (even
/// one signed with keys it never registered), and a key client cannot use
/// a secret.
async fn secret_client_cannot_use_an_assertion() {
    let as_ = setup().await;
    let secret = add_resource_server(&as_).await;
    let (k, _) = key("k1");
    token(
        &as_,
        cc_form(&as_),
        &sign(&k, &claims(&as_, "resource-server")),
    )
    .await
    .assert_oauth_error(401, "invalid_client");
    let ok = post_form(
        &as_,
        "/oauth/token",
        cc_form(&as_),
        Auth::Basic("resource-server", &secret),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    let (_, set) = key("k2");
    add_key_client(&as_, Some(set), None).await;
    post_form(
        &as_,
        "/oauth/token",
        cc_form(&as_),
        Auth::Post(CLIENT, "guess"),
    )
    .await
    .assert_oauth_error(401, "invalid_client");
}

async fn registration_refuses_unusable_keys() {
    let as_ = setup().await;
    let (k, set) = key("k1");
    let mut private = serde_json::to_value(k.public_jwk()).unwrap();
    private["d"] = json!("c2VjcmV0");
    let base = |extra: Value| {
        let mut b = json!({
            "client_name": "Key client",
            "redirect_uris": [REDIRECT],
            "token_endpoint_auth_method": "private_key_jwt",
        });
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    for (body, why) in [
        (base(json!({})), "needs the client's jwks or jwks_uri"),
        (
            base(json!({"jwks": set, "jwks_uri": "https://a.example/jwks"})),
            "not both",
        ),
        (base(json!({"jwks": {"keys": [private]}})), "private"),
        (
            base(json!({"jwks": {"keys": [{"kty": "oct", "k": "AA"}]}})),
            "private",
        ),
        (base(json!({"jwks": {"keys": []}})), "no usable signing key"),
        (base(json!({"jwks": "not a set"})), "keys array"),
        (base(json!({"jwks_uri": "http://a.example/jwks"})), "https"),
        (base(json!({"jwks_uri": "file:///etc/passwd"})), "https"),
        (
            base(json!({"jwks": {"keys": Value::Array(vec![set["keys"][0].clone(); 200])}})),
            "larger than",
        ),
    ] {
        let r = register(&as_, &body).await;
        r.assert_oauth_error(400, "invalid_client_metadata");
        assert!(r.text.contains(why), "{why}: {}", r.text);
    }
    let clients = as_.store.list_clients().await.unwrap();
    assert!(
        clients
            .iter()
            .all(|c| c.token_endpoint_auth_method != "private_key_jwt"),
        "nothing stored"
    );
}
