//! Tokens of an external issuer (`[[gateway.trusted_issuer]]`): accepted
//! when minted for this upstream, refused when minted for another resource
//! or by an issuer the gateway does not trust. The external issuer is a real
//! HTTP server publishing RFC 8414 metadata and a JWKS, which the gateway
//! discovers and fetches through its SSRF guard (loopback development
//! override on).

use std::net::SocketAddr;

use axum::Json;
use axum::routing::get;
use mcpgate_jose::{KeyAlg, PublicJwks, SigningKey};
use serde_json::{Value, json};

use crate::harness::*;

/// A minimal external authorization server: metadata and JWKS only.
async fn external_issuer(key: &SigningKey) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    let issuer = format!("http://{addr}");
    let meta = json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/jwks.json"),
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "code_challenge_methods_supported": ["S256"],
        "response_types_supported": ["code"],
    });
    let jwks = serde_json::to_value(PublicJwks {
        keys: vec![key.public_jwk().clone()],
    })
    .expect("jwks");
    let app = axum::Router::new()
        .route(
            "/.well-known/oauth-authorization-server",
            get(move || async move { Json(meta) }),
        )
        .route("/jwks.json", get(move || async move { Json(jwks) }));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    issuer
}

fn token(key: &SigningKey, iss: &str, aud: &str, scope: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs() as i64;
    key.sign(
        "at+jwt",
        &json!({"iss": iss, "sub": "ext-user", "aud": aud, "exp": now + 300, "iat": now,
                "jti": "j1", "client_id": "ext-client", "scope": scope}),
    )
    .expect("sign")
}

async fn list(s: &Stack, token: &str) -> Resp {
    let mut c = s.client("ext", token);
    c.initialize().await;
    c.rpc("tools/list", json!({})).await
}

/// An initialize that may be refused (every request is authenticated, the
/// first one included).
async fn probe(s: &Stack, token: &str) -> Resp {
    let mut c = s.client("ext", token);
    c.rpc(
        "initialize",
        json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "it", "version": "0"}}),
    )
    .await
}

#[tokio::test]
async fn external_issuer_tokens_are_validated_for_this_upstream_only() {
    let key = SigningKey::generate("ext-key-1", KeyAlg::Es256).expect("key");
    let ext = external_issuer(&key).await;
    let config = format!(
        r#"
[gateway.audit]
stdout = false

[[gateway.trusted_issuer]]
issuer = "{ext}"
dev_allow_http_loopback = true

[[upstream]]
name = "ext"
scopes = ["notes:read"]
stdio = {{ command = "{{bin}}", args = ["testing-stdio"] }}
"#
    );
    let s = Stack::start(&config).await;

    // The PRM lists both authorization servers, ours first.
    let prm: Value = s
        .http
        .get(format!(
            "{}/.well-known/oauth-protected-resource/mcp/ext",
            s.base
        ))
        .send()
        .await
        .expect("prm")
        .json()
        .await
        .expect("json");
    assert_eq!(prm["authorization_servers"], json!([s.as_.issuer, ext]));

    // Minted by the external issuer for this upstream: accepted.
    let good = token(&key, &ext, &s.resource("ext"), "notes:read");
    let r = list(&s, &good).await;
    assert_eq!(r.status, 200, "{:?}", r.text);
    assert!(!tool_names(&r).is_empty());

    // Minted by the same issuer for another resource: refused.
    let other = token(&key, &ext, "https://elsewhere.example/mcp", "notes:read");
    let r = probe(&s, &other).await;
    assert_eq!(r.status, 401);
    assert!(
        r.header("www-authenticate")
            .unwrap_or("")
            .contains("invalid_token")
    );

    // Same audience, but an issuer nobody configured: refused.
    let rogue_key = SigningKey::generate("rogue", KeyAlg::Es256).expect("key");
    let rogue = external_issuer(&rogue_key).await;
    let r = probe(
        &s,
        &token(&rogue_key, &rogue, &s.resource("ext"), "notes:read"),
    )
    .await;
    assert_eq!(r.status, 401);

    // The trusted issuer's name with another key (an impostor signing as it): refused.
    let r = probe(
        &s,
        &token(&rogue_key, &ext, &s.resource("ext"), "notes:read"),
    )
    .await;
    assert_eq!(r.status, 401);

    // Not valid yet (nbf ten minutes ahead, beyond the leeway): refused.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs() as i64;
    let early = key
        .sign(
            "at+jwt",
            &json!({"iss": ext, "sub": "ext-user", "aud": s.resource("ext"), "exp": now + 1200,
                    "nbf": now + 600, "iat": now, "jti": "j2", "client_id": "ext-client", "scope": "notes:read"}),
        )
        .expect("sign");
    let r = probe(&s, &early).await;
    assert_eq!(r.status, 401);

    // Scopes still apply to external tokens.
    let r = probe(&s, &token(&key, &ext, &s.resource("ext"), "")).await;
    assert_eq!(r.status, 403, "{:?}", r.text);
}

#[tokio::test]
async fn advertise_own_issuer_false_lists_only_the_trusted_issuers() {
    let key = SigningKey::generate("ext-key-2", KeyAlg::Es256).expect("key");
    let ext = external_issuer(&key).await;
    let config = format!(
        r#"
[gateway]
advertise_own_issuer = false

[gateway.audit]
stdout = false

[[gateway.trusted_issuer]]
issuer = "{ext}"
dev_allow_http_loopback = true

[[upstream]]
name = "ext"
scopes = ["notes:read"]
stdio = {{ command = "{{bin}}", args = ["testing-stdio"] }}
"#
    );
    let s = Stack::start(&config).await;
    let prm: Value = s
        .http
        .get(format!(
            "{}/.well-known/oauth-protected-resource/mcp/ext",
            s.base
        ))
        .send()
        .await
        .expect("prm")
        .json()
        .await
        .expect("json");
    // Only the external AS: a client taking the first entry signs in there.
    assert_eq!(prm["authorization_servers"], json!([ext]));
    // Its tokens are accepted for this upstream...
    let r = list(&s, &token(&key, &ext, &s.resource("ext"), "notes:read")).await;
    assert_eq!(r.status, 200, "{:?}", r.text);
    // ...and tokens of mcpgate's own AS still are (it is trusted, only not advertised).
    let own = s.token("alice", "notes:read", "ext").await;
    let r = list(&s, &own).await;
    assert_eq!(r.status, 200, "{:?}", r.text);
}
