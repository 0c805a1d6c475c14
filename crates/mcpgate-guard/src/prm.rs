//! Protected resource metadata (RFC 9728 §2-3; MCP authorization §2(b)): the document, its
//! path-inserted well-known URL (`https://h/mcp` → `https://h/.well-known/oauth-protected-resource/mcp`),
//! and an axum route serving it. `resource` is the canonical URI exactly as configured,
//! `scopes_supported` the minimal baseline (never `offline_access`, SEP-2207) and
//! `bearer_methods_supported` only `header`.

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use http::HeaderValue;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use mcpgate_types::ScopeSet;
use mcpgate_types::metadata::{ProtectedResourceMetadata, well_known_insert};

/// The well-known suffix of RFC 9728 §3.
pub const WELL_KNOWN_SUFFIX: &str = "oauth-protected-resource";

/// The PRM document of one resource.
pub fn prm_document(
    resource: impl Into<String>,
    authorization_servers: Vec<String>,
    scopes_supported: &ScopeSet,
) -> ProtectedResourceMetadata {
    ProtectedResourceMetadata {
        resource: resource.into(),
        authorization_servers,
        scopes_supported: scopes_supported
            .iter()
            .filter(|s| *s != "offline_access")
            .map(str::to_owned)
            .collect(),
        bearer_methods_supported: vec!["header".to_owned()],
        // Every guard checks DPoP proofs of bound tokens (RFC 9449 §7).
        dpop_signing_alg_values_supported: mcpgate_jose::dpop::PROOF_ALGS
            .iter()
            .map(|a| a.to_string())
            .collect(),
        ..ProtectedResourceMetadata::default()
    }
}

/// The metadata URL of `resource` by path insertion (RFC 9728 §3.1); the value for
/// `resource_metadata` in challenges.
pub fn prm_url(resource: &str) -> Option<String> {
    well_known_insert(resource, WELL_KNOWN_SUFFIX)
}

/// The path part of [`prm_url`] (`/.well-known/oauth-protected-resource/mcp`), to route on.
pub fn prm_path(resource: &str) -> Option<String> {
    let url = prm_url(resource)?;
    let after_scheme = url.find("://")? + 3;
    let path = url[after_scheme..].find('/')? + after_scheme;
    Some(url[path..].to_owned())
}

/// The PRM document as a `200 application/json` response, cacheable for five minutes.
pub fn prm_response(doc: &ProtectedResourceMetadata) -> Response {
    let body = serde_json::to_vec(doc).unwrap_or_default();
    let mut response = Response::new(Body::from(body));
    let h = response.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

/// A router serving `doc` with `GET` at the path-inserted well-known path of its `resource`
/// (the root well-known path when the resource has no path). Merge it into the
/// application router *outside* the guard: metadata must be readable without a token.
pub fn prm_router<S: Clone + Send + Sync + 'static>(doc: ProtectedResourceMetadata) -> Router<S> {
    let path =
        prm_path(&doc.resource).unwrap_or_else(|| format!("/.well-known/{WELL_KNOWN_SUFFIX}"));
    let doc = std::sync::Arc::new(doc);
    let handler = move || {
        let doc = doc.clone();
        async move { prm_response(&doc) }
    };
    Router::new().route(&path, axum::routing::get(handler))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_shape() {
        let doc = prm_document(
            "https://gw.example/mcp/notes",
            vec!["https://as.example".into()],
            &ScopeSet::parse("notes:read offline_access").unwrap(),
        );
        assert_eq!(
            serde_json::to_value(&doc).unwrap(),
            serde_json::json!({
                "resource": "https://gw.example/mcp/notes",
                "authorization_servers": ["https://as.example"],
                "scopes_supported": ["notes:read"],
                "bearer_methods_supported": ["header"],
                "dpop_signing_alg_values_supported": ["ES256", "EdDSA", "RS256", "PS256"],
            })
        );
    }

    #[test]
    fn urls_and_paths() {
        assert_eq!(
            prm_url("https://gw.example/mcp/notes").unwrap(),
            "https://gw.example/.well-known/oauth-protected-resource/mcp/notes"
        );
        assert_eq!(
            prm_path("https://gw.example/mcp/notes").unwrap(),
            "/.well-known/oauth-protected-resource/mcp/notes"
        );
        assert_eq!(
            prm_path("http://127.0.0.1:8080").unwrap(),
            "/.well-known/oauth-protected-resource"
        );
        assert!(prm_path("nope").is_none());
    }
}
