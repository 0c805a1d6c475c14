//! The validated caller, the challenge when validation fails, and the trait
//! that produces one or the other.

use async_trait::async_trait;
use http::HeaderMap;
use mcpgate_types::ScopeSet;

/// A caller whose access token was validated for one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// `iss` of the token, exactly.
    pub issuer: String,
    /// `sub` of the token.
    pub subject: String,
    /// `client_id` of the token (RFC 9068 §2.2), or `azp`/`cid` for issuers that use those.
    pub client_id: String,
    /// Scopes from `scope` (space-delimited) or `scp` (array).
    pub scopes: ScopeSet,
    /// `groups` claim, for per-tool policy.
    pub groups: Vec<String>,
    /// `exp`, seconds since the epoch.
    pub expires_at: i64,
}

impl Principal {
    /// The key sessions and per-user state are bound to: `(issuer, subject)`.
    pub fn user_key(&self) -> (String, String) {
        (self.issuer.clone(), self.subject.clone())
    }
}

/// Why a request is refused, and what the client must do (RFC 6750 §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// No token: 401 with `resource_metadata` and the baseline `scope`, no `error`.
    Missing,
    /// A token was presented but is not acceptable: 401 `error="invalid_token"`.
    /// The description is safe to send (it names the rule, not internals).
    InvalidToken(String),
    /// Malformed request (e.g. a token in the query string, two methods): 400
    /// `error="invalid_request"`.
    InvalidRequest(String),
    /// The token lacks scopes: 403 `error="insufficient_scope"` with every
    /// scope the request needs in `scope`.
    InsufficientScope {
        required: ScopeSet,
        description: String,
    },
}

/// Validates the credentials of one request for one protected resource.
#[async_trait]
pub trait Authenticate: Send + Sync + 'static {
    /// `query` is the raw query string (a token there is refused).
    async fn authenticate(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<Principal, Challenge>;
}
