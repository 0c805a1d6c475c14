//! Records stored per aggregate. Times are Unix seconds.

use serde::{Deserialize, Serialize};

/// A local user account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// Stable opaque id; the `sub` of tokens issued for this user.
    pub id: String,
    /// Login name, unique, case-sensitive as typed at creation.
    pub username: String,
    pub display_name: Option<String>,
    /// argon2id PHC string. `None` for accounts that cannot log in with a password.
    pub password_hash: Option<String>,
    /// Groups carried in access tokens (`groups` claim) for gateway policy.
    pub groups: Vec<String>,
    /// The password must be changed at next login (one-time passwords).
    pub must_change_password: bool,
    pub disabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Where a client registration came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientKind {
    /// Added by an operator (CLI or config).
    PreRegistered,
    /// RFC 7591 dynamic registration.
    Dynamic,
    /// A Client ID Metadata Document fetched from the `client_id` URL (cached).
    Cimd,
}

impl ClientKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PreRegistered => "pre_registered",
            Self::Dynamic => "dynamic",
            Self::Cimd => "cimd",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pre_registered" => Some(Self::PreRegistered),
            "dynamic" => Some(Self::Dynamic),
            "cimd" => Some(Self::Cimd),
            _ => None,
        }
    }
}

/// A registered OAuth client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRecord {
    /// Exactly as issued or registered (a URL for CIMD clients).
    pub client_id: String,
    pub kind: ClientKind,
    pub client_name: Option<String>,
    /// SHA-256 hex of the client secret; `None` for public clients.
    pub client_secret_hash: Option<String>,
    /// `none`, `client_secret_basic`, `client_secret_post` or
    /// `private_key_jwt`.
    pub token_endpoint_auth_method: String,
    /// Exact strings, matched exactly.
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    /// Scopes this client may ever request; empty = any configured scope.
    pub allowed_scopes: Vec<String>,
    pub application_type: Option<String>,
    pub client_uri: Option<String>,
    pub logo_uri: Option<String>,
    pub created_at: i64,
    /// For CIMD clients: when the cached document must be fetched again.
    pub expires_at: Option<i64>,
    /// `private_key_jwt` clients: their public JWK set as JSON text, or
    /// (exclusive) the URL it is fetched from.
    pub jwks: Option<String>,
    pub jwks_uri: Option<String>,
}

/// A user's standing approval of a client (the per-client consent registry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentRecord {
    pub user_id: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub resources: Vec<String>,
    pub granted_at: i64,
    pub updated_at: i64,
}

/// An authorization code. Stored by hash; redeemed once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthCodeRecord {
    pub code_hash: String,
    pub client_id: String,
    pub user_id: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub resource: String,
    pub code_challenge: String,
    pub auth_time: i64,
    pub created_at: i64,
    pub expires_at: i64,
    /// Set by the one successful redemption.
    pub used_at: Option<i64>,
}

/// A refresh-token family: every token rotated from one authorization code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshFamilyRecord {
    pub family_id: String,
    pub client_id: String,
    pub user_id: String,
    pub resource: String,
    /// The scopes granted at authorization; a refresh may narrow, never widen.
    pub scopes: Vec<String>,
    pub auth_time: i64,
    /// Hash of the authorization code that started the family (to revoke on code replay).
    pub code_hash: Option<String>,
    pub created_at: i64,
    /// The family dies at this time whatever rotations happen.
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    /// DPoP (RFC 9449 §5): the thumbprint of the key every refresh of this
    /// family must prove possession of (a public client's grant obtained
    /// with a proof). `None`: not bound.
    #[serde(default)]
    pub dpop_jkt: Option<String>,
}

/// One refresh token of a family. Stored by hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshTokenRecord {
    pub token_hash: String,
    pub family_id: String,
    /// Scopes of the access tokens this refresh token yields (≤ family scopes).
    pub scopes: Vec<String>,
    pub created_at: i64,
    pub expires_at: i64,
    /// Set when this token was exchanged for its successor.
    pub rotated_at: Option<i64>,
}

/// Lifecycle state of a signing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    /// Signs new tokens. Exactly one key is active.
    Active,
    /// Published in JWKS so tokens it signed still validate; signs nothing.
    Previous,
    /// Gone from JWKS; its tokens no longer validate.
    Retired,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Previous => "previous",
            Self::Retired => "retired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "previous" => Some(Self::Previous),
            "retired" => Some(Self::Retired),
            _ => None,
        }
    }
}

/// A signing key, private part sealed under the master key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKeyRecord {
    pub kid: String,
    /// `ES256` or `EdDSA`.
    pub alg: String,
    /// AES-256-GCM sealed PKCS#8 (see `mcpgate_jose::seal`), bound to `kid`.
    pub sealed_pkcs8: Vec<u8>,
    pub state: KeyState,
    pub created_at: i64,
    /// When it stopped signing (became `Previous`).
    pub rotated_at: Option<i64>,
    pub retired_at: Option<i64>,
}

/// A browser login session at the AS. Stored by hash of the cookie value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginSessionRecord {
    pub session_hash: String,
    pub user_id: String,
    pub auth_time: i64,
    pub created_at: i64,
    pub expires_at: i64,
}

/// One gateway decision (allow, deny, step-up, rate limit, …) for the audit
/// log. Never holds tokens or tool arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Unix milliseconds.
    pub time_ms: i64,
    pub request_id: String,
    pub issuer: Option<String>,
    pub subject: Option<String>,
    pub client_id: Option<String>,
    pub upstream: String,
    pub method: Option<String>,
    pub tool: Option<String>,
    /// `allow`, `deny`, `step_up`, `unauthenticated`, `rate_limited`, `error`.
    pub decision: String,
    pub reason: String,
    /// HTTP status answered.
    pub status: i64,
    pub latency_ms: i64,
}

/// An upstream identity linked to a local user: (provider, upstream
/// subject) → user id. The first sign-in through a provider creates both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct LinkedIdentityRecord {
    /// The configured provider's name.
    pub provider: String,
    /// The upstream subject (`sub`, or the configured claim), exactly.
    pub subject: String,
    pub user_id: String,
    pub email: Option<String>,
    pub created_at: i64,
}

/// One user's tokens for one upstream that acts on the user's behalf
/// (`auth = { type = "user_oauth" }`): the vault's row. The tokens are
/// never stored in the clear: `sealed_tokens` is the token response sealed
/// under the master key, bound to (user, upstream).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct UpstreamGrantRecord {
    pub user_id: String,
    /// The gateway upstream's name.
    pub upstream: String,
    /// The sealed token set (access token, refresh token, expiry).
    pub sealed_tokens: Vec<u8>,
    /// The scopes the upstream's authorization server granted (shown to
    /// the user and the operator; not secret).
    pub scope: String,
    /// When the access token expires (seconds since the epoch), if known.
    pub expires_at: Option<i64>,
    /// When the user connected (seconds).
    pub created_at: i64,
    /// When the tokens last changed (connect or refresh; seconds).
    pub updated_at: i64,
    /// While a refresh is in flight, the time its lease ends (seconds);
    /// 0 when none is.
    pub refresh_lease_until: i64,
}

/// A gateway session as every replica sharing the store sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct GatewaySessionRecord {
    /// SHA-256 (hex) of the `Mcp-Session-Id`; the id itself is never stored.
    pub id_hash: String,
    pub upstream: String,
    /// The owner: the validated token's issuer, subject and client.
    pub issuer: String,
    pub subject: String,
    pub client_id: String,
    /// The process that made the session.
    pub replica: String,
    /// What another replica needs to carry the session on, sealed; `None`
    /// when the session lives only in `replica` (a stdio child).
    pub state: Option<Vec<u8>>,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    pub last_used: i64,
}

/// An upstream sign-in in flight, stored server side. Single use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct UpstreamStateRecord {
    /// SHA-256 of the `state` sent to the provider.
    pub state_hash: String,
    /// SHA-256 of the binding cookie set on the redirect to the provider.
    pub binding_hash: String,
    pub provider: String,
    /// SHA-256 of the OIDC `nonce`.
    pub nonce_hash: String,
    /// The PKCE code verifier, sealed under the master key.
    pub sealed_verifier: Vec<u8>,
    /// The bound authorization request (its parameters, JSON-encoded).
    pub request_params: String,
    pub created_at: i64,
    /// At most ten minutes after `created_at`.
    pub expires_at: i64,
}

/// Which audit records to read (`mcpgate audit`): every filter that is set
/// must match; newest first, at most `limit`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// At or after this time (ms since the epoch).
    pub since_ms: i64,
    /// Before this time, when set.
    pub until_ms: Option<i64>,
    pub issuer: Option<String>,
    pub subject: Option<String>,
    pub client_id: Option<String>,
    pub upstream: Option<String>,
    pub decision: Option<String>,
    pub limit: u32,
}

/// What one entry of the revocation set revokes. Access tokens are JWTs
/// that the gateway validates without asking the store, so revoking one
/// that is already issued means naming it here (see [`crate::RevocationSet`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RevocationTarget {
    /// Every token of one grant (the token's `grant` claim: a refresh
    /// family id, or the grant id of a code or client-credentials grant).
    Grant { grant_id: String },
    /// Every token issued to a user (`sub`) up to the revocation.
    User { user_id: String },
    /// Every token issued to a client (`client_id`) up to the revocation.
    Client { client_id: String },
    /// Every token of one (user, client) consent up to the revocation.
    Consent { user_id: String, client_id: String },
    /// One token (`jti`).
    Token { jti: String },
}

impl RevocationTarget {
    /// The stored (kind, subject, client_id); the unused column is `""`.
    pub(crate) fn columns(&self) -> (&'static str, &str, &str) {
        match self {
            Self::Grant { grant_id } => ("grant", grant_id, ""),
            Self::User { user_id } => ("user", user_id, ""),
            Self::Client { client_id } => ("client", "", client_id),
            Self::Consent { user_id, client_id } => ("consent", user_id, client_id),
            Self::Token { jti } => ("token", jti, ""),
        }
    }

    pub(crate) fn from_columns(kind: &str, subject: String, client_id: String) -> Option<Self> {
        Some(match kind {
            "grant" => Self::Grant { grant_id: subject },
            "user" => Self::User { user_id: subject },
            "client" => Self::Client { client_id },
            "consent" => Self::Consent {
                user_id: subject,
                client_id,
            },
            "token" => Self::Token { jti: subject },
            _ => return None,
        })
    }
}

/// One entry of the revocation set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationRecord {
    pub target: RevocationTarget,
    /// When it was revoked. User, client and consent entries cover tokens
    /// issued (`iat`) at or before this second; grant and token entries
    /// cover every token they name.
    pub revoked_at: i64,
    /// When the entry may be forgotten: `revoked_at` plus the longest
    /// access-token lifetime (and the guards' clock leeway), after which
    /// every token it covers has expired.
    pub expires_at: i64,
}

/// When a store operation that revokes tokens happens, and until when the
/// revocation entries it writes must be kept (see [`RevocationRecord`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevokeAt {
    pub now: i64,
    pub until: i64,
}

impl RevokeAt {
    /// The entry for `target` revoked at `self.now`.
    pub fn entry(self, target: RevocationTarget) -> RevocationRecord {
        RevocationRecord {
            target,
            revoked_at: self.now,
            expires_at: self.until,
        }
    }
}
