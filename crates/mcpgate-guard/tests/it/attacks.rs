//! One test per attack on token validation (MCP authorization §2(b), RFC 8725, RFC 6750).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderMap;
use mcpgate_guard::{Authenticate, Challenge};
use serde_json::json;

use crate::support::*;

fn invalid_token(r: Result<mcpgate_guard::Principal, Challenge>) -> String {
    match r {
        Err(Challenge::InvalidToken(d)) => d,
        other => panic!("expected invalid_token, got {other:?}"),
    }
}

#[tokio::test]
async fn a_valid_token_yields_its_principal() {
    let k = key("k1");
    let t = local_guard(RES_A, &[&k]);
    let p = t
        .guard
        .authenticate(&req(&bearer(&sign(&k, &claims(ISS, RES_A))), None))
        .await
        .unwrap();
    assert_eq!(p.issuer, ISS);
    assert_eq!(p.subject, "user-1");
    assert_eq!(p.client_id, "client-1");
    assert_eq!(p.scopes.to_string(), "notes:read notes:write");
    assert_eq!(p.groups, ["staff"]);
    assert_eq!(p.expires_at, NOW + 600);
    // EdDSA too, and `aud` as an array that contains the resource.
    let e = ed_key("e1");
    let t = local_guard(RES_A, &[&e]);
    let mut c = claims(ISS, RES_A);
    c["aud"] = json!(["https://other.example", RES_A]);
    assert!(
        t.guard
            .authenticate(&req(&bearer(&sign(&e, &c)), None))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn no_token() {
    let t = local_guard(RES_A, &[&key("k1")]);
    assert_eq!(
        t.guard.authenticate(&req(&HeaderMap::new(), None)).await,
        Err(Challenge::Missing)
    );
}

#[tokio::test]
async fn token_in_query_string() {
    let k = key("k1");
    let t = local_guard(RES_A, &[&k]);
    let token = sign(&k, &claims(ISS, RES_A));
    let q = format!("access_token={token}");
    let r = t
        .guard
        .authenticate(&req(&HeaderMap::new(), Some(&q)))
        .await;
    assert!(matches!(r, Err(Challenge::InvalidRequest(_))), "{r:?}");
    // Even alongside a valid header.
    let r = t.guard.authenticate(&req(&bearer(&token), Some(&q))).await;
    assert!(matches!(r, Err(Challenge::InvalidRequest(_))), "{r:?}");
}

#[tokio::test]
async fn token_for_resource_a_used_on_b() {
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
    let d = invalid_token(b.guard.authenticate(&req(&bearer(&token), None)).await);
    assert_eq!(d, "the token was not issued for this resource");
    // Near misses of the exact string are refused too.
    for aud in [
        format!("{RES_A}/"),
        RES_A.to_uppercase(),
        "https://gw.example/mcp".into(),
    ] {
        let token = sign(&k, &claims(ISS, &aud));
        invalid_token(a.guard.authenticate(&req(&bearer(&token), None)).await);
    }
    let mut c = claims(ISS, RES_A);
    c.as_object_mut().unwrap().remove("aud");
    invalid_token(
        a.guard
            .authenticate(&req(&bearer(&sign(&k, &c)), None))
            .await,
    );
}

#[tokio::test]
async fn expired_with_bounded_leeway() {
    let k = key("k1");
    let t = local_guard(RES_A, &[&k]);
    let mut c = claims(ISS, RES_A);
    c["exp"] = json!(NOW - 61);
    let d = invalid_token(
        t.guard
            .authenticate(&req(&bearer(&sign(&k, &c)), None))
            .await,
    );
    assert_eq!(d, "the token has expired");
    // Inside the 60 s leeway it still passes.
    c["exp"] = json!(NOW - 59);
    assert!(
        t.guard
            .authenticate(&req(&bearer(&sign(&k, &c)), None))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn nbf_in_the_future() {
    let k = key("k1");
    let t = local_guard(RES_A, &[&k]);
    let mut c = claims(ISS, RES_A);
    c["nbf"] = json!(NOW + 61);
    let d = invalid_token(
        t.guard
            .authenticate(&req(&bearer(&sign(&k, &c)), None))
            .await,
    );
    assert_eq!(d, "the token is not valid yet");
}

#[tokio::test]
async fn wrong_issuer() {
    let k = key("k1");
    let t = local_guard(RES_A, &[&k]);
    for iss in [
        "https://evil.example",
        "https://as.example/",
        "HTTPS://AS.EXAMPLE",
    ] {
        let d = invalid_token(
            t.guard
                .authenticate(&req(&bearer(&sign(&k, &claims(iss, RES_A))), None))
                .await,
        );
        assert_eq!(d, "the token issuer is not trusted");
    }
    let mut c = claims(ISS, RES_A);
    c.as_object_mut().unwrap().remove("iss");
    invalid_token(
        t.guard
            .authenticate(&req(&bearer(&sign(&k, &c)), None))
            .await,
    );
}

#[tokio::test]
async fn alg_none() {
    let k = key("k1");
    let t = local_guard(RES_A, &[&k]);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(ISS, RES_A)).unwrap());
    for header in [
        r#"{"alg":"none","typ":"at+jwt","kid":"k1"}"#,
        r#"{"alg":"None","typ":"at+jwt","kid":"k1"}"#,
    ] {
        let h = URL_SAFE_NO_PAD.encode(header);
        invalid_token(
            t.guard
                .authenticate(&req(&bearer(&format!("{h}.{payload}.")), None))
                .await,
        );
        invalid_token(
            t.guard
                .authenticate(&req(&bearer(&format!("{h}.{payload}.e30")), None))
                .await,
        );
    }
}

#[tokio::test]
async fn hs256_signed_with_the_public_key() {
    let k = key("k1");
    let t = local_guard(RES_A, &[&k]);
    let jwk = k.public_jwk();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("k1".into());
    header.typ = Some("at+jwt".into());
    let jwk_json = serde_json::to_vec(jwk).unwrap();
    for secret in [jwk.x.as_bytes(), jwk_json.as_slice()] {
        let forged = jsonwebtoken::encode(
            &header,
            &claims(ISS, RES_A),
            &jsonwebtoken::EncodingKey::from_secret(secret),
        )
        .unwrap();
        let d = invalid_token(t.guard.authenticate(&req(&bearer(&forged), None)).await);
        assert_eq!(d, "the token algorithm is not allowed");
    }
}

#[tokio::test]
async fn unknown_kid() {
    let k = key("k1");
    let t = local_guard(RES_A, &[&k]);
    let stranger = key("k2");
    let d = invalid_token(
        t.guard
            .authenticate(&req(&bearer(&sign(&stranger, &claims(ISS, RES_A))), None))
            .await,
    );
    assert_eq!(d, "the token is signed with an unknown key");
    // Same kid, different key.
    let impostor = key("k1");
    let d = invalid_token(
        t.guard
            .authenticate(&req(&bearer(&sign(&impostor, &claims(ISS, RES_A))), None))
            .await,
    );
    assert_eq!(d, "the token signature is invalid");
}

#[tokio::test]
async fn tampered_payload() {
    let k = key("k1");
    let t = local_guard(RES_A, &[&k]);
    let token = sign(&k, &claims(ISS, RES_A));
    let parts: Vec<&str> = token.split('.').collect();
    let mut c = claims(ISS, RES_A);
    c["scope"] = json!("notes:read notes:write notes:admin");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap()),
        parts[2]
    );
    let d = invalid_token(t.guard.authenticate(&req(&bearer(&forged), None)).await);
    assert_eq!(d, "the token signature is invalid");
    // A flipped signature bit.
    let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    sig[5] ^= 1;
    let flipped = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(sig));
    invalid_token(t.guard.authenticate(&req(&bearer(&flipped), None)).await);
}

#[tokio::test]
async fn retired_key_is_refused_even_when_cached() {
    let (old, new) = (key("old"), key("new"));
    let t = local_guard(RES_A, &[&old, &new]);
    let token = sign(&old, &claims(ISS, RES_A));
    assert!(
        t.guard
            .authenticate(&req(&bearer(&token), None))
            .await
            .is_ok()
    );
    assert_eq!(t.guard.cached_tokens(), 1);
    t.keys.set(&[&new]);
    let d = invalid_token(t.guard.authenticate(&req(&bearer(&token), None)).await);
    assert_eq!(d, "the token is signed with an unknown key");
    assert_eq!(t.guard.cached_tokens(), 0);
    assert!(
        t.guard
            .authenticate(&req(&bearer(&sign(&new, &claims(ISS, RES_A))), None))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn typ_is_required_unless_configured_off() {
    let k = key("k1");
    let t = local_guard(RES_A, &[&k]);
    for typ in ["JWT", "jwt", "id_token+jwt"] {
        let token = k.sign(typ, &claims(ISS, RES_A)).unwrap();
        let d = invalid_token(t.guard.authenticate(&req(&bearer(&token), None)).await);
        assert_eq!(d, "the token is not an access token (typ)");
    }
    // No typ header at all.
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    h.kid = Some("k1".into());
    h.typ = None;
    let der = jsonwebtoken::EncodingKey::from_ec_der(k.pkcs8());
    let untyped = jsonwebtoken::encode(&h, &claims(ISS, RES_A), &der).unwrap();
    invalid_token(t.guard.authenticate(&req(&bearer(&untyped), None)).await);
    assert!(
        t.guard
            .authenticate(&req(
                &bearer(&k.sign("application/at+jwt", &claims(ISS, RES_A)).unwrap()),
                None
            ))
            .await
            .is_ok()
    );

    // An external issuer that omits typ.
    let lax = local_guard_with(RES_A, &[&k], |i| i.with_typ(None));
    assert!(
        lax.guard
            .authenticate(&req(&bearer(&untyped), None))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn scp_array_and_azp_fallback() {
    let k = key("k1");
    let t = local_guard(RES_A, &[&k]);
    let c = json!({"iss": ISS, "aud": RES_A, "sub": "u", "azp": "ext-client",
                   "scp": ["notes:read", "notes:admin"], "exp": NOW + 60});
    let p = t
        .guard
        .authenticate(&req(&bearer(&sign(&k, &c)), None))
        .await
        .unwrap();
    assert_eq!(p.scopes.to_string(), "notes:admin notes:read");
    assert_eq!(p.client_id, "ext-client");
    assert!(p.groups.is_empty());
    let c = json!({"iss": ISS, "aud": RES_A, "sub": "u", "exp": NOW + 60});
    let d = invalid_token(
        t.guard
            .authenticate(&req(&bearer(&sign(&k, &c)), None))
            .await,
    );
    assert_eq!(d, "the token names no client");
}

#[tokio::test]
async fn two_authorization_headers() {
    let k = key("k1");
    let t = local_guard(RES_A, &[&k]);
    let token = sign(&k, &claims(ISS, RES_A));
    let mut h = bearer(&token);
    h.append("authorization", format!("Bearer {token}").parse().unwrap());
    let r = t.guard.authenticate(&req(&h, None)).await;
    assert!(matches!(r, Err(Challenge::InvalidRequest(_))), "{r:?}");
}

#[tokio::test]
async fn basic_scheme_counts_as_no_token() {
    let t = local_guard(RES_A, &[&key("k1")]);
    let mut h = HeaderMap::new();
    h.insert(
        "authorization",
        "Basic Y2xpZW50OnNlY3JldA==".parse().unwrap(),
    );
    assert_eq!(
        t.guard.authenticate(&req(&h, None)).await,
        Err(Challenge::Missing)
    );
    // A lower-case bearer scheme is fine.
    let k = key("k1");
    let t = local_guard(RES_A, &[&k]);
    let mut h = HeaderMap::new();
    h.insert(
        "authorization",
        format!("bearer {}", sign(&k, &claims(ISS, RES_A)))
            .parse()
            .unwrap(),
    );
    assert!(t.guard.authenticate(&req(&h, None)).await.is_ok());
}

#[tokio::test]
async fn garbage_and_opaque_tokens_without_introspection() {
    let t = local_guard(RES_A, &[&key("k1")]);
    for token in ["opaque-token-value", "a.b.c", "e30.e30.e30", "x.y.z.w.v"] {
        invalid_token(t.guard.authenticate(&req(&bearer(token), None)).await);
    }
}
