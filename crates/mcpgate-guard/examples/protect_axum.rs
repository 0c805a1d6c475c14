//! A tiny axum "MCP server" protected by `GuardLayer`.
//!
//! ```sh
//! cargo run -p mcpgate-guard --example protect_axum
//! # or trust a real authorization server (its JWKS is discovered from its metadata):
//! ISSUER=https://as.example.com cargo run -p mcpgate-guard --example protect_axum
//! ```
//!
//! Without `ISSUER` the example makes its own signing key (standing in for an authorization
//! server), prints a token for it, and the `curl` commands to try.

use std::sync::Arc;

use axum::Router;
use axum::routing::post;
use mcpgate_guard::{
    Guard, GuardConfig, GuardLayer, Principal, TrustedIssuer, prm_document, prm_router, prm_url,
};
use mcpgate_jose::{KeyAlg, PublicJwks, SigningKey, SystemClock, Verifier};
use mcpgate_net::{FetchPolicy, SafeFetcher};
use mcpgate_types::ScopeSet;
use mcpgate_types::token::AccessTokenClaims;
use serde_json::{Value, json};

/// The MCP endpoint: by the time it runs, the caller is authenticated.
async fn mcp(principal: Principal, axum::Json(request): axum::Json<Value>) -> axum::Json<Value> {
    axum::Json(json!({
        "jsonrpc": "2.0",
        "id": request.get("id").cloned().unwrap_or(Value::Null),
        "result": { "caller": principal.subject, "scopes": principal.scopes.to_string() },
    }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    // The canonical resource URI: the exact `aud` tokens must carry.
    let resource = format!("{base}/mcp");
    let metadata_url = prm_url(&resource).ok_or("bad resource URI")?;
    let baseline = ScopeSet::parse("notes:read")?;

    let (issuer, demo_token) = match std::env::var("ISSUER") {
        Ok(issuer) => {
            let fetcher = SafeFetcher::new(FetchPolicy::default());
            (TrustedIssuer::remote(issuer, None, fetcher), None)
        }
        Err(_) => {
            let key = SigningKey::generate("demo-1", KeyAlg::Es256)?;
            let jwks = PublicJwks {
                keys: vec![key.public_jwk().clone()],
            };
            let verifier = Arc::new(Verifier::from_public_jwks(&jwks)?);
            let now = mcpgate_jose::Clock::now(&SystemClock);
            let claims = AccessTokenClaims {
                iss: "https://demo-issuer.invalid".into(),
                sub: "alice".into(),
                aud: resource.clone(),
                exp: now + 3600,
                iat: now,
                nbf: None,
                jti: "demo".into(),
                client_id: "demo-client".into(),
                scope: "notes:read".into(),
                auth_time: None,
                groups: vec![],
                grant: None,
                cnf: None,
            };
            let token = key.sign("at+jwt", &claims)?;
            (
                TrustedIssuer::local("https://demo-issuer.invalid", Arc::new(verifier)),
                Some(token),
            )
        }
    };
    let authorization_server = issuer.issuer.clone();
    let guard = Arc::new(Guard::new(
        GuardConfig::new(resource.clone(), metadata_url)
            .with_baseline(baseline.clone())
            .with_issuer(issuer),
    )?);
    if !guard.prefetch_keys().await.is_empty() {
        eprintln!("warning: could not fetch the issuer's keys yet; will retry on demand");
    }

    let app = Router::new()
        .route("/mcp", post(mcp))
        .layer(GuardLayer::from_guard(guard))
        // Metadata stays public: merged outside the guarded routes.
        .merge(prm_router(prm_document(
            &resource,
            vec![authorization_server],
            &baseline,
        )));

    println!("MCP endpoint: {resource}");
    println!(
        "try: curl -i -X POST {resource} -H 'content-type: application/json' -d '{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}}'"
    );
    if let Some(token) = demo_token {
        println!("then add: -H 'Authorization: Bearer {token}'");
    }
    axum::serve(listener, app).await?;
    Ok(())
}
