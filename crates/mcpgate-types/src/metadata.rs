//! Discovery documents: RFC 8414 authorization server metadata (also served
//! as OIDC discovery) and RFC 9728 protected resource metadata.

use serde::{Deserialize, Serialize};

/// RFC 8414 §2 authorization server metadata, with the MCP-relevant
/// extensions (CIMD, RFC 9207). Unknown fields are kept in `extra` when
/// parsing a peer's document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct AuthorizationServerMetadata {
    pub issuer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registration_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revocation_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub introspection_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes_supported: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_types_supported: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_modes_supported: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grant_types_supported: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub token_endpoint_auth_methods_supported: Vec<String>,
    /// Algorithms of `private_key_jwt` client assertions (RFC 8414 §2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub token_endpoint_auth_signing_alg_values_supported: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revocation_endpoint_auth_methods_supported: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revocation_endpoint_auth_signing_alg_values_supported: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub introspection_endpoint_auth_methods_supported: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub introspection_endpoint_auth_signing_alg_values_supported: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub code_challenge_methods_supported: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_types_supported: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub id_token_signing_alg_values_supported: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_response_iss_parameter_supported: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id_metadata_document_supported: Option<bool>,
    /// RFC 9449 §5.1: the JWS algorithms the server takes in DPoP proofs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dpop_signing_alg_values_supported: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_indicators_supported_values: Vec<String>,
    #[serde(flatten, default, skip_serializing)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// RFC 9728 §2 protected resource metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ProtectedResourceMetadata {
    pub resource: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorization_servers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes_supported: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bearer_methods_supported: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_documentation: Option<String>,
    /// RFC 9728 §2: the JWS algorithms the resource takes in DPoP proofs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dpop_signing_alg_values_supported: Vec<String>,
    /// RFC 9728 §2: the resource accepts only DPoP-bound access tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dpop_bound_access_tokens_required: Option<bool>,
    #[serde(flatten, default, skip_serializing)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Builds a well-known URL by RFC 8414 §3.1 / RFC 9728 §3.1 path insertion:
/// `https://h/p` + `oauth-authorization-server` → `https://h/.well-known/oauth-authorization-server/p`.
/// Returns `None` when `base` has no `scheme://authority`.
pub fn well_known_insert(base: &str, suffix: &str) -> Option<String> {
    let scheme_end = base.find("://")? + 3;
    let rest = &base[scheme_end..];
    let path_start = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(path_start);
    if authority.is_empty() || authority.contains(['?', '#']) {
        return None;
    }
    let path = path.split(['?', '#']).next().unwrap_or("");
    let path = path.trim_end_matches('/');
    Some(format!(
        "{}{}/.well-known/{}{}",
        &base[..scheme_end],
        authority,
        suffix,
        path
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_insertion() {
        assert_eq!(
            well_known_insert("https://as.example.com", "oauth-authorization-server").unwrap(),
            "https://as.example.com/.well-known/oauth-authorization-server"
        );
        assert_eq!(
            well_known_insert(
                "https://as.example.com/tenant1",
                "oauth-authorization-server"
            )
            .unwrap(),
            "https://as.example.com/.well-known/oauth-authorization-server/tenant1"
        );
        assert_eq!(
            well_known_insert(
                "https://gw.example.com/mcp/notes",
                "oauth-protected-resource"
            )
            .unwrap(),
            "https://gw.example.com/.well-known/oauth-protected-resource/mcp/notes"
        );
        assert_eq!(
            well_known_insert("http://127.0.0.1:8080/", "oauth-authorization-server").unwrap(),
            "http://127.0.0.1:8080/.well-known/oauth-authorization-server"
        );
        assert!(well_known_insert("nope", "x").is_none());
    }

    #[test]
    fn peer_metadata_keeps_unknown_fields() {
        let m: AuthorizationServerMetadata = serde_json::from_str(
            r#"{"issuer":"https://a","code_challenge_methods_supported":["S256"],"x_custom":1}"#,
        )
        .unwrap();
        assert_eq!(m.extra.get("x_custom"), Some(&serde_json::json!(1)));
    }
}
