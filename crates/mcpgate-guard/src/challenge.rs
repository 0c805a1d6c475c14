//! Challenges as HTTP responses (RFC 6750 §3 and §3.1, RFC 9728 §5.1; MCP authorization §2(b)
//! "status codes" and "runtime insufficient scope").
//!
//! | challenge | status | `WWW-Authenticate: Bearer …` |
//! |---|---|---|
//! | `Missing` | 401 | `scope="<baseline>", resource_metadata="…"` (no `error`: RFC 6750 §3.1) |
//! | `InvalidToken` | 401 | `error="invalid_token", error_description, scope="<baseline>", resource_metadata` |
//! | `InvalidRequest` | 400 | `error="invalid_request", error_description, resource_metadata` |
//! | `InsufficientScope` | 403 | `error="insufficient_scope", error_description, scope="<all required>", resource_metadata` |
//!
//! DPoP refusals (RFC 9449 §7.1, §9) are `DPoP` challenges: `InvalidDpopProof` is 401
//! `DPoP error="invalid_dpop_proof", error_description, algs, resource_metadata`;
//! `UseDpopNonce` is 401 `DPoP error="use_dpop_nonce", algs, resource_metadata` with the nonce
//! in `DPoP-Nonce`.
//!
//! `offline_access` never appears in a challenge `scope` (SEP-2207). The body is a JSON-RPC
//! error with `id: null`, sent with `Cache-Control: no-store`. Descriptions are the guard's own
//! fixed texts: nothing from the token is ever echoed.

use axum::body::Body;
use axum::response::Response;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};
use mcpgate_types::ScopeSet;
use mcpgate_types::www_authenticate::Challenge as WwwAuthenticate;

use crate::principal::Challenge;

/// JSON-RPC error code of authentication and authorization refusals.
pub const AUTH_ERROR_CODE: i64 = -32001;

/// The HTTP status of a challenge. Every variant is listed (no catch-all arm).
pub fn status(ch: &Challenge) -> StatusCode {
    match ch {
        Challenge::Missing
        | Challenge::InvalidToken(_)
        | Challenge::InvalidDpopProof(_)
        | Challenge::UseDpopNonce { .. } => StatusCode::UNAUTHORIZED,
        Challenge::InvalidRequest(_) => StatusCode::BAD_REQUEST,
        Challenge::InsufficientScope { .. } => StatusCode::FORBIDDEN,
    }
}

/// Space-delimited scopes without `offline_access`.
fn scope_param(scopes: &ScopeSet) -> String {
    let mut out = String::new();
    for s in scopes.iter().filter(|s| *s != "offline_access") {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(s);
    }
    out
}

/// The `WWW-Authenticate` value of a challenge.
pub fn www_authenticate(
    ch: &Challenge,
    resource_metadata_url: &str,
    baseline: &ScopeSet,
) -> String {
    let mut c = WwwAuthenticate::bearer();
    let scope = match ch {
        Challenge::InvalidDpopProof(description) => {
            c = dpop_challenge()
                .with("error", "invalid_dpop_proof")
                .with("error_description", description.as_str());
            None
        }
        Challenge::UseDpopNonce { .. } => {
            c = dpop_challenge()
                .with("error", "use_dpop_nonce")
                .with("error_description", "a fresh DPoP nonce is required");
            None
        }
        Challenge::Missing => Some(scope_param(baseline)),
        Challenge::InvalidToken(description) => {
            c = c
                .with("error", "invalid_token")
                .with("error_description", description.as_str());
            Some(scope_param(baseline))
        }
        Challenge::InvalidRequest(description) => {
            c = c
                .with("error", "invalid_request")
                .with("error_description", description.as_str());
            None
        }
        Challenge::InsufficientScope {
            required,
            description,
        } => {
            c = c
                .with("error", "insufficient_scope")
                .with("error_description", description.as_str());
            Some(scope_param(required))
        }
    };
    if let Some(scope) = scope.filter(|s| !s.is_empty()) {
        c = c.with("scope", scope);
    }
    c.with("resource_metadata", resource_metadata_url)
        .to_header_value()
}

/// A `DPoP` challenge naming the proof algorithms accepted.
fn dpop_challenge() -> WwwAuthenticate {
    WwwAuthenticate {
        scheme: "DPoP".into(),
        ..WwwAuthenticate::default()
    }
    .with("algs", mcpgate_jose::dpop::PROOF_ALGS.join(" "))
}

/// The message of the JSON-RPC error body.
pub fn message(ch: &Challenge) -> &str {
    match ch {
        Challenge::Missing => "Authentication required",
        Challenge::UseDpopNonce { .. } => "a fresh DPoP nonce is required",
        Challenge::InvalidToken(d)
        | Challenge::InvalidRequest(d)
        | Challenge::InvalidDpopProof(d) => d,
        Challenge::InsufficientScope { description, .. } => description,
    }
}

/// The full response for a challenge: status, `WWW-Authenticate`, JSON-RPC error body,
/// `Content-Type: application/json` and `Cache-Control: no-store`.
pub fn challenge_response(
    ch: &Challenge,
    resource_metadata_url: &str,
    baseline: &ScopeSet,
) -> Response {
    let header = www_authenticate(ch, resource_metadata_url, baseline);
    let header = HeaderValue::from_str(&header).unwrap_or_else(|_| {
        // Only a non-ASCII configuration value can get here; keep the challenge usable.
        tracing::warn!("challenge is not a valid header value; sending a minimal one");
        HeaderValue::from_static("Bearer")
    });
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": { "code": AUTH_ERROR_CODE, "message": message(ch) },
    });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status(ch);
    let h = response.headers_mut();
    h.insert(WWW_AUTHENTICATE, header);
    if let Challenge::UseDpopNonce { nonce } = ch
        && let Ok(v) = HeaderValue::from_str(nonce)
    {
        h.insert("dpop-nonce", v);
    }
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRM: &str = "https://gw.example/.well-known/oauth-protected-resource/mcp/a";

    #[test]
    fn offline_access_is_never_challenged() {
        let base = ScopeSet::parse("offline_access notes:read").unwrap();
        assert_eq!(
            www_authenticate(&Challenge::Missing, PRM, &base),
            format!(r#"Bearer scope="notes:read", resource_metadata="{PRM}""#)
        );
        let only = ScopeSet::parse("offline_access").unwrap();
        assert_eq!(
            www_authenticate(&Challenge::Missing, PRM, &only),
            format!(r#"Bearer resource_metadata="{PRM}""#)
        );
    }

    #[test]
    fn statuses() {
        assert_eq!(status(&Challenge::Missing), 401);
        assert_eq!(status(&Challenge::InvalidToken("x".into())), 401);
        assert_eq!(status(&Challenge::InvalidRequest("x".into())), 400);
        let ch = Challenge::InsufficientScope {
            required: ScopeSet::new(),
            description: "x".into(),
        };
        assert_eq!(status(&ch), 403);
    }
}
