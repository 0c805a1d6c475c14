//! Client metadata: RFC 7591 dynamic registration requests and responses, and
//! Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document).

use serde::{Deserialize, Serialize};

/// Client metadata as sent in an RFC 7591 registration request or published
/// as a CIMD document. Fields we do not use are accepted and ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ClientMetadata {
    /// Present in CIMD documents (must equal the document URL); absent in DCR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_types: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_types: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_version: Option<String>,
    /// OIDC Dynamic Client Registration: `native` or `web`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_type: Option<String>,
    /// Where the client publishes its public keys (`private_key_jwt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// The client's public keys given by value (RFC 7591 §2: never both
    /// `jwks` and `jwks_uri`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
}

/// RFC 7591 §3.2.1 registration response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientRegistrationResponse {
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    pub client_id_issued_at: i64,
    /// 0 means the secret does not expire (RFC 7591 §3.2.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_expires_at: Option<i64>,
    pub redirect_uris: Vec<String>,
    pub token_endpoint_auth_method: String,
    pub grant_types: Vec<String>,
    pub response_types: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
}

/// The `grant_type` of the JWT-bearer authorization grant (RFC 7523 §2.1).
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The `client_assertion_type` of a JWT client assertion (RFC 7523 §2.2).
pub const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How a client authenticates at the token endpoint (RFC 7591 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenEndpointAuthMethod {
    #[serde(rename = "none")]
    None,
    #[serde(rename = "client_secret_basic")]
    ClientSecretBasic,
    #[serde(rename = "client_secret_post")]
    ClientSecretPost,
    /// A JWT signed with the client's private key (RFC 7523 §2.2); the AS
    /// holds only the public keys (`jwks` or `jwks_uri`).
    #[serde(rename = "private_key_jwt")]
    PrivateKeyJwt,
}

impl TokenEndpointAuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::PrivateKeyJwt => "private_key_jwt",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Self::None),
            "client_secret_basic" => Some(Self::ClientSecretBasic),
            "client_secret_post" => Some(Self::ClientSecretPost),
            "private_key_jwt" => Some(Self::PrivateKeyJwt),
            _ => None,
        }
    }

    /// Whether the client proves who it is at the token endpoint (with a
    /// secret or a key), as opposed to a public client.
    pub fn is_confidential(self) -> bool {
        !matches!(self, Self::None)
    }

    /// Whether the proof is a shared secret the AS issues and stores (as a
    /// hash).
    pub fn uses_secret(self) -> bool {
        matches!(self, Self::ClientSecretBasic | Self::ClientSecretPost)
    }
}

/// True when a `client_id` is a CIMD URL: `https` with a non-root path
/// (CIMD §3). The fetch itself happens elsewhere, through the SSRF guard.
pub fn is_cimd_client_id(client_id: &str) -> bool {
    let Some(rest) = client_id.strip_prefix("https://") else {
        return false;
    };
    match rest.find('/') {
        Some(i) => i > 0 && rest.len() > i + 1,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cimd_ids() {
        assert!(is_cimd_client_id("https://app.example.com/client.json"));
        assert!(!is_cimd_client_id("https://app.example.com/"));
        assert!(!is_cimd_client_id("https://app.example.com"));
        assert!(!is_cimd_client_id("http://app.example.com/c.json"));
        assert!(!is_cimd_client_id("abc123"));
    }

    #[test]
    fn auth_methods_roundtrip() {
        for m in [
            TokenEndpointAuthMethod::None,
            TokenEndpointAuthMethod::ClientSecretBasic,
            TokenEndpointAuthMethod::ClientSecretPost,
            TokenEndpointAuthMethod::PrivateKeyJwt,
        ] {
            assert_eq!(TokenEndpointAuthMethod::parse(m.as_str()), Some(m));
        }
        assert_eq!(TokenEndpointAuthMethod::parse("client_secret_jwt"), None);
        assert!(TokenEndpointAuthMethod::PrivateKeyJwt.is_confidential());
        assert!(!TokenEndpointAuthMethod::PrivateKeyJwt.uses_secret());
    }
}
