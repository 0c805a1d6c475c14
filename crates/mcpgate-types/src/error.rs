//! OAuth 2.x error codes and the RFC 6749 §5.2 error body.

use serde::{Deserialize, Serialize};

/// Every OAuth error code mcpgate emits or understands, with the RFC that
/// defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OAuthErrorCode {
    /// RFC 6749 §4.1.2.1 / §5.2: malformed or missing parameter.
    InvalidRequest,
    /// RFC 6749 §5.2: client authentication failed or unknown client.
    InvalidClient,
    /// RFC 6749 §5.2: code or refresh token invalid, expired, revoked or reused.
    InvalidGrant,
    /// RFC 6749 §5.2: the client may not use this grant type.
    UnauthorizedClient,
    /// RFC 6749 §5.2: grant type not supported.
    UnsupportedGrantType,
    /// RFC 6749 §4.1.2.1 / §5.2: unknown scope or more than allowed.
    InvalidScope,
    /// RFC 8707 §2: the `resource` is not one this server issues tokens for.
    InvalidTarget,
    /// RFC 6749 §4.1.2.1: the user or server denied the request.
    AccessDenied,
    /// RFC 6749 §4.1.2.1: response type not supported.
    UnsupportedResponseType,
    /// RFC 6749 §4.1.2.1: unexpected condition (never carries detail).
    ServerError,
    /// RFC 6749 §4.1.2.1: overloaded or rate limited.
    TemporarilyUnavailable,
    /// RFC 7591 §3.2.2: a redirect URI is not acceptable.
    InvalidRedirectUri,
    /// RFC 7591 §3.2.2: some client metadata value is not acceptable.
    InvalidClientMetadata,
    /// RFC 6750 §3.1: the access token is invalid.
    InvalidToken,
    /// RFC 6750 §3.1: the token lacks the scope the request needs.
    InsufficientScope,
    /// RFC 7009 §2.2.1: the token type cannot be revoked.
    UnsupportedTokenType,
    /// OpenID Connect Core §3.1.2.6: `prompt=none` and no signed-in user.
    LoginRequired,
    /// OpenID Connect Core §3.1.2.6: `prompt=none` and no consent.
    ConsentRequired,
    /// RFC 9449 §5, §7.1: the DPoP proof is invalid.
    InvalidDpopProof,
    /// RFC 9449 §8, §9: the server wants a proof with its nonce.
    UseDpopNonce,
}

impl OAuthErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope => "invalid_scope",
            Self::InvalidTarget => "invalid_target",
            Self::AccessDenied => "access_denied",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::ServerError => "server_error",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::InvalidRedirectUri => "invalid_redirect_uri",
            Self::InvalidClientMetadata => "invalid_client_metadata",
            Self::InvalidToken => "invalid_token",
            Self::InsufficientScope => "insufficient_scope",
            Self::UnsupportedTokenType => "unsupported_token_type",
            Self::LoginRequired => "login_required",
            Self::ConsentRequired => "consent_required",
            Self::InvalidDpopProof => "invalid_dpop_proof",
            Self::UseDpopNonce => "use_dpop_nonce",
        }
    }
}

/// An OAuth error as sent on the wire (RFC 6749 §5.2). The description is
/// ours, written for the client developer; it never carries internal detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{}: {}", error.as_str(), error_description.as_deref().unwrap_or(""))]
pub struct OAuthError {
    pub error: OAuthErrorCode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}

impl OAuthError {
    pub fn new(code: OAuthErrorCode, description: impl Into<String>) -> Self {
        Self {
            error: code,
            error_description: Some(description.into()),
        }
    }

    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::InvalidRequest, d)
    }
    pub fn invalid_client(d: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::InvalidClient, d)
    }
    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::InvalidGrant, d)
    }
    pub fn invalid_scope(d: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::InvalidScope, d)
    }
    pub fn invalid_target(d: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::InvalidTarget, d)
    }
    pub fn server_error() -> Self {
        Self::new(OAuthErrorCode::ServerError, "internal error")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_as_rfc_strings() {
        for code in [
            OAuthErrorCode::InvalidRequest,
            OAuthErrorCode::InvalidTarget,
            OAuthErrorCode::InvalidClientMetadata,
            OAuthErrorCode::UnsupportedTokenType,
        ] {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }
}
