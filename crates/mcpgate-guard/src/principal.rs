//! The validated caller, the challenge when validation fails, and the trait
//! that produces one or the other.

use async_trait::async_trait;
use http::request::Parts;
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
    /// The thumbprint of the key a DPoP-bound token is bound to (`cnf.jkt`,
    /// RFC 9449 §6): every request with it must carry a proof of that key.
    pub dpop_jkt: Option<String>,
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
    /// A DPoP-bound token without a valid proof (RFC 9449 §7.1): 401
    /// `WWW-Authenticate: DPoP error="invalid_dpop_proof"`.
    InvalidDpopProof(String),
    /// A valid proof without this resource's fresh nonce (RFC 9449 §9): 401
    /// `WWW-Authenticate: DPoP error="use_dpop_nonce"` and the nonce in
    /// `DPoP-Nonce`.
    UseDpopNonce { nonce: String },
}

/// Validates the credentials of one request for one protected resource.
#[async_trait]
pub trait Authenticate: Send + Sync + 'static {
    /// `request` is the request as received: its headers carry the token (and the DPoP proof,
    /// which must name this request's method and URI); a token in its query is refused.
    async fn authenticate(&self, request: &Parts) -> Result<Principal, Challenge>;
}
