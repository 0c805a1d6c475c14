//! Upstream credentials (Security Best Practices "Token passthrough",
//! checklist §2(b) "MUST NOT pass the client's token upstream"): the
//! gateway authenticates to an upstream with the upstream's own
//! credentials — a static header, an OAuth 2.1 `client_credentials` token
//! (RFC 6749 §4.4, `resource` per RFC 8707), or a token obtained by RFC 8693
//! token exchange with the caller's validated token as `subject_token` —
//! fetched through the SSRF-safe fetcher and cached until shortly before
//! they expire (exchanged tokens per caller token, keyed by its SHA-256) —
//! or, for `user_oauth`, the caller's own token for the upstream from the
//! vault (`mcpgate-vault`), which is never the caller's mcpgate token.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::{HeaderName, HeaderValue};
use mcpgate_net::SafeFetcher;
use mcpgate_net::policy::FetchPolicy;
use mcpgate_types::Secret;
use serde::Deserialize;

use crate::config::{ClientCredentials, UpstreamAuth};

/// Refresh a cached token this long before it expires.
const EARLY: Duration = Duration::from_secs(30);
/// When the token response names no lifetime.
const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// Exchanged tokens kept (one per caller token).
const EXCHANGE_CACHE: usize = 10_000;
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("token request failed: {0}")]
    Fetch(String),
    #[error("token endpoint answered {0}")]
    Status(u16),
    #[error("token response is not a bearer token response")]
    BadResponse,
    #[error("no caller token to exchange")]
    NoSubjectToken,
    /// `user_oauth`: the user has to connect (or reconnect) their account.
    #[error("the user has no connected account for this upstream")]
    Connect(Box<mcpgate_vault::Elicitation>),
    /// `user_oauth` needs a user of mcpgate's own authorization server.
    #[error("only users of mcpgate's own authorization server have connected accounts")]
    NotLocalUser,
    #[error("vault: {0}")]
    Vault(String),
}

/// Who an upstream request is made for: a token's (issuer, subject).
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub issuer: &'a str,
    pub subject: &'a str,
}

impl<'a> Caller<'a> {
    pub fn of(p: &'a mcpgate_guard::Principal) -> Self {
        Self {
            issuer: &p.issuer,
            subject: &p.subject,
        }
    }
}

/// Produces the credential header for each upstream request.
pub struct Credentials {
    kind: Kind,
}

enum Kind {
    None,
    Header(HeaderName, HeaderValue),
    ClientCredentials {
        cfg: ClientCredentials,
        fetcher: SafeFetcher,
        cache: tokio::sync::Mutex<Option<(Secret, Instant)>>,
    },
    TokenExchange {
        cfg: ClientCredentials,
        audience: Option<String>,
        fetcher: SafeFetcher,
        cache: Mutex<HashMap<[u8; 32], (Secret, Instant)>>,
    },
    UserOauth {
        vault: mcpgate_vault::Vault,
        upstream: String,
        /// mcpgate's own issuer: its `sub` is the vault's user id.
        local_issuer: String,
    },
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    token_type: String,
    expires_in: Option<u64>,
}

impl Credentials {
    /// `vault` and `local_issuer` serve `user_oauth` (the vault is `None`
    /// without mcpgate's own authorization server and store).
    pub fn new(
        auth: &UpstreamAuth,
        vault: Option<&mcpgate_vault::Vault>,
        local_issuer: &str,
    ) -> Result<Self, String> {
        let kind = match auth {
            UpstreamAuth::UserOauth(conn) => Kind::UserOauth {
                vault: vault
                    .ok_or("user_oauth needs mcpgate's own authorization server (its sign-in and its store)")?
                    .clone(),
                upstream: conn.upstream.clone(),
                local_issuer: local_issuer.to_owned(),
            },
            UpstreamAuth::None => Kind::None,
            UpstreamAuth::Header { name, value } => {
                let mut v = HeaderValue::from_str(value.expose()).map_err(|_| {
                    format!("auth header {name} has a value that is not a valid header value")
                })?;
                v.set_sensitive(true);
                Kind::Header(name.clone(), v)
            }
            UpstreamAuth::ClientCredentials(cfg) => {
                let policy = FetchPolicy {
                    allow_http_loopback: cfg.allow_http_loopback,
                    ..FetchPolicy::default()
                };
                Kind::ClientCredentials {
                    cfg: cfg.clone(),
                    fetcher: SafeFetcher::new(policy),
                    cache: tokio::sync::Mutex::new(None),
                }
            }
            UpstreamAuth::TokenExchange { endpoint, audience } => {
                let policy = FetchPolicy {
                    allow_http_loopback: endpoint.allow_http_loopback,
                    ..FetchPolicy::default()
                };
                Kind::TokenExchange {
                    cfg: endpoint.clone(),
                    audience: audience.clone(),
                    fetcher: SafeFetcher::new(policy),
                    cache: Mutex::new(HashMap::new()),
                }
            }
        };
        Ok(Self { kind })
    }

    /// The header to add to an upstream request, if any. `client_headers`
    /// are the caller's (already authenticated) request headers: token
    /// exchange takes the caller's bearer token from them as the subject.
    /// `caller` is who the request is made for (`None` for an exported
    /// session ended without its owner at hand): `user_oauth` uses their
    /// token.
    pub async fn header(
        &self,
        client_headers: &http::HeaderMap,
        caller: Option<Caller<'_>>,
    ) -> Result<Option<(HeaderName, HeaderValue)>, CredentialError> {
        match &self.kind {
            Kind::UserOauth {
                vault,
                upstream,
                local_issuer,
            } => {
                let Some(p) = caller else {
                    return Ok(None);
                };
                if p.issuer != local_issuer {
                    return Err(CredentialError::NotLocalUser);
                }
                let tok = vault
                    .access_token(p.subject, upstream)
                    .await
                    .map_err(|e| vault_error(vault, upstream, p.subject, e))?;
                Ok(Some(bearer(&tok)?))
            }
            Kind::TokenExchange {
                cfg,
                audience,
                fetcher,
                cache,
            } => {
                let subject = client_headers
                    .get(http::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| {
                        v.get(..7)
                            .filter(|p| p.eq_ignore_ascii_case("bearer "))
                            .map(|_| v[7..].trim())
                    })
                    .filter(|t| !t.is_empty())
                    .ok_or(CredentialError::NoSubjectToken)?;
                let key = sha256(subject);
                let hit = cache
                    .lock()
                    .expect("exchange cache lock")
                    .get(&key)
                    .filter(|(_, until)| Instant::now() < *until)
                    .map(|(t, _)| t.clone());
                if let Some(tok) = hit {
                    return Ok(Some(bearer(&tok)?));
                }
                let mut form: Vec<(&str, &str)> = vec![
                    ("grant_type", TOKEN_EXCHANGE),
                    ("subject_token", subject),
                    ("subject_token_type", ACCESS_TOKEN_TYPE),
                ];
                if let Some(a) = audience {
                    form.push(("audience", a));
                }
                let (tok, ttl) = request_token(cfg, fetcher, form).await?;
                let header = bearer(&tok)?;
                let mut c = cache.lock().expect("exchange cache lock");
                if c.len() >= EXCHANGE_CACHE {
                    let now = Instant::now();
                    c.retain(|_, (_, until)| now < *until);
                    if c.len() >= EXCHANGE_CACHE {
                        c.clear();
                    }
                }
                c.insert(
                    key,
                    (
                        tok,
                        Instant::now() + ttl.saturating_sub(EARLY).max(Duration::from_secs(1)),
                    ),
                );
                Ok(Some(header))
            }
            Kind::None => Ok(None),
            Kind::Header(n, v) => Ok(Some((n.clone(), v.clone()))),
            Kind::ClientCredentials {
                cfg,
                fetcher,
                cache,
            } => {
                let mut guard = cache.lock().await;
                if let Some((tok, until)) = guard.as_ref()
                    && Instant::now() < *until
                {
                    return Ok(Some(bearer(tok)?));
                }
                let (tok, ttl) = fetch_token(cfg, fetcher).await?;
                let header = bearer(&tok)?;
                *guard = Some((
                    tok,
                    Instant::now() + ttl.saturating_sub(EARLY).max(Duration::from_secs(1)),
                ));
                Ok(Some(header))
            }
        }
    }

    /// `user_oauth`: the upstream answered 401 to `sent` (the header sent
    /// for `caller`). The header to retry with once (the user's token
    /// refreshed), `None` to relay the refusal, or an error: the user must
    /// connect again. Other kinds: `None` (their cache is dropped by
    /// [`Self::invalidate`]).
    pub async fn refused(
        &self,
        caller: Caller<'_>,
        sent: &HeaderValue,
    ) -> Result<Option<(HeaderName, HeaderValue)>, CredentialError> {
        let Kind::UserOauth {
            vault,
            upstream,
            local_issuer,
        } = &self.kind
        else {
            return Ok(None);
        };
        let Some(token) = sent
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .filter(|_| caller.issuer == local_issuer)
        else {
            return Ok(None);
        };
        let tok = vault
            .refused(caller.subject, upstream, &Secret::new(token))
            .await
            .map_err(|e| vault_error(vault, upstream, caller.subject, e))?;
        Ok(Some(bearer(&tok)?))
    }

    /// Drops cached tokens (after the upstream refused one).
    pub async fn invalidate(&self) {
        match &self.kind {
            Kind::ClientCredentials { cache, .. } => *cache.lock().await = None,
            Kind::TokenExchange { cache, .. } => cache.lock().expect("exchange cache lock").clear(),
            Kind::None | Kind::Header(..) | Kind::UserOauth { .. } => {}
        }
    }
}

/// A vault error as a credential error: an account to (re)connect becomes
/// the elicitation that asks the user for it.
fn vault_error(
    vault: &mcpgate_vault::Vault,
    upstream: &str,
    subject: &str,
    e: mcpgate_vault::VaultError,
) -> CredentialError {
    if !e.needs_connect() {
        return CredentialError::Vault(e.to_string());
    }
    match vault.connection(upstream) {
        Ok(conn) => CredentialError::Connect(Box::new(vault.elicitation(subject, &conn))),
        Err(e) => CredentialError::Vault(e.to_string()),
    }
}

fn bearer(tok: &Secret) -> Result<(HeaderName, HeaderValue), CredentialError> {
    let mut v = HeaderValue::from_str(&format!("Bearer {}", tok.expose()))
        .map_err(|_| CredentialError::BadResponse)?;
    v.set_sensitive(true);
    Ok((http::header::AUTHORIZATION, v))
}

fn sha256(s: &str) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

async fn fetch_token(
    cfg: &ClientCredentials,
    fetcher: &SafeFetcher,
) -> Result<(Secret, Duration), CredentialError> {
    request_token(cfg, fetcher, vec![("grant_type", "client_credentials")]).await
}

/// POSTs a token request (client authentication: `client_secret_basic`)
/// with `scope` and `resource` from the configuration added.
async fn request_token<'a>(
    cfg: &'a ClientCredentials,
    fetcher: &SafeFetcher,
    mut form: Vec<(&'a str, &'a str)>,
) -> Result<(Secret, Duration), CredentialError> {
    if let Some(s) = &cfg.scope {
        form.push(("scope", s));
    }
    if let Some(r) = &cfg.resource {
        form.push(("resource", r));
    }
    let auth = mcpgate_net::ClientAuth::basic(&cfg.client_id, &cfg.client_secret);
    let resp = fetcher
        .post_authenticated(&cfg.token_url, form, &auth, None)
        .await
        .map_err(|e| CredentialError::Fetch(e.to_string()))?;
    if !resp.is_success() {
        return Err(CredentialError::Status(resp.status));
    }
    let t: TokenResponse = resp.json().map_err(|_| CredentialError::BadResponse)?;
    if !t.token_type.eq_ignore_ascii_case("bearer") || t.access_token.is_empty() {
        return Err(CredentialError::BadResponse);
    }
    let ttl = t.expires_in.map(Duration::from_secs).unwrap_or(DEFAULT_TTL);
    Ok((Secret::new(t.access_token), ttl))
}
