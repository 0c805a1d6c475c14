//! Token endpoint responses (RFC 6749 §5.1), RFC 9068 access token claims and
//! RFC 7662 introspection responses.

use serde::{Deserialize, Serialize};

/// RFC 6749 §5.1 successful token response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// RFC 9068 §2.2 JWT access token claims, plus `groups` for gateway policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    pub iss: String,
    pub sub: String,
    /// One audience: the canonical resource URI the token was issued for.
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    pub jti: String,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// The grant the token was issued under (a refresh-token family, or the
    /// grant of one code or client-credentials request): what the
    /// authorization server's revocation set names to revoke every token of
    /// a grant at once. Not registered in RFC 9068; private to mcpgate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
    /// RFC 7800 confirmation: a DPoP-bound token names its key (RFC 9449 §6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
}

/// RFC 7800 §3.1 `cnf`, with the RFC 9449 §6.1 `jkt` member: the RFC 7638
/// thumbprint of the key a token is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    pub jkt: String,
}

/// RFC 7662 §2.2 introspection response. An inactive token is `{"active": false}` only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct IntrospectionResponse {
    pub active: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// RFC 9449 §6.2: the key a DPoP-bound token is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
}

/// What a revocation can name in one validated access token: the ids the
/// authorization server's revocation set matches (`mcpgate-store`) and a
/// guard hands to its issuer's revocations (`mcpgate-guard`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevocableToken<'a> {
    /// `sub`: the user id (or the client id, for client credentials).
    pub subject: &'a str,
    /// `client_id` (or `azp`/`cid`).
    pub client_id: &'a str,
    /// The `grant` claim (mcpgate's issuer names the grant a token belongs
    /// to); tokens minted before it existed have none.
    pub grant: Option<&'a str>,
    /// `jti`.
    pub jti: Option<&'a str>,
    /// `iat`; a token without one counts as issued before any revocation.
    pub issued_at: Option<i64>,
}
