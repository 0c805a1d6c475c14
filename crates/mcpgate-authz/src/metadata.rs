//! Authorization server metadata (RFC 8414 §2), also served at the OIDC
//! discovery locations, and the JWKS.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mcpgate_types::metadata::AuthorizationServerMetadata;

use crate::state::AppState;

pub fn document(app: &AppState) -> AuthorizationServerMetadata {
    let s = &app.settings;
    let mut scopes: Vec<String> = s.scopes.iter().map(|d| d.name.clone()).collect();
    scopes.sort();
    let mut grants = vec![
        "authorization_code".to_string(),
        "refresh_token".to_string(),
        "client_credentials".to_string(),
    ];
    if crate::jwt_bearer::offered(app) {
        grants.push(crate::jwt_bearer::JWT_BEARER_GRANT.to_string());
    }
    grants.sort();
    AuthorizationServerMetadata {
        issuer: s.issuer.clone(),
        authorization_endpoint: Some(s.endpoint("/oauth/authorize")),
        token_endpoint: Some(s.endpoint("/oauth/token")),
        jwks_uri: Some(s.endpoint("/oauth/jwks.json")),
        registration_endpoint: s.dcr.enabled.then(|| s.endpoint("/oauth/register")),
        revocation_endpoint: Some(s.endpoint("/oauth/revoke")),
        introspection_endpoint: Some(s.endpoint("/oauth/introspect")),
        scopes_supported: scopes,
        response_types_supported: vec!["code".into()],
        response_modes_supported: vec!["query".into()],
        grant_types_supported: grants,
        token_endpoint_auth_methods_supported: vec![
            "client_secret_basic".into(),
            "client_secret_post".into(),
            "private_key_jwt".into(),
            "none".into(),
        ],
        token_endpoint_auth_signing_alg_values_supported: assertion_algs(),
        revocation_endpoint_auth_methods_supported: vec![
            "client_secret_basic".into(),
            "client_secret_post".into(),
            "private_key_jwt".into(),
            "none".into(),
        ],
        revocation_endpoint_auth_signing_alg_values_supported: assertion_algs(),
        introspection_endpoint_auth_methods_supported: vec![
            "client_secret_basic".into(),
            "client_secret_post".into(),
            "private_key_jwt".into(),
        ],
        introspection_endpoint_auth_signing_alg_values_supported: assertion_algs(),
        code_challenge_methods_supported: vec!["S256".into()],
        authorization_response_iss_parameter_supported: Some(true),
        client_id_metadata_document_supported: Some(s.cimd.enabled),
        dpop_signing_alg_values_supported: mcpgate_jose::dpop::PROOF_ALGS
            .iter()
            .map(|a| a.to_string())
            .collect(),
        ..Default::default()
    }
}

/// The algorithms a `private_key_jwt` assertion may use.
fn assertion_algs() -> Vec<String> {
    crate::client_assertion::SIGNING_ALGS
        .iter()
        .map(|a| a.to_string())
        .collect()
}

fn json_public(body: &impl serde::Serialize, max_age: u32) -> Response {
    let mut r = (StatusCode::OK, axum::Json(body)).into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={max_age}")) {
        h.insert(header::CACHE_CONTROL, v);
    }
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    r
}

pub async fn metadata(State(app): State<AppState>) -> Response {
    json_public(&document(&app), 300)
}

pub async fn jwks(State(app): State<AppState>) -> Response {
    json_public(&app.jwks(), 300)
}
