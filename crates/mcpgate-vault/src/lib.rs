//! The vault of per-user upstream credentials (`auth = { type =
//! "user_oauth" }`): for an upstream that acts on behalf of each user (its
//! own authorization server, its own accounts), the gateway is an OAuth
//! client of that server and keeps each user's tokens here.
//!
//! - Tokens are sealed under the master key with the (user, upstream) pair
//!   as associated data, so a row moved to another user or upstream does
//!   not open; they are never logged and never leave the gateway except
//!   toward their own upstream and its authorization server.
//! - An access token near its expiry is refreshed by one replica at a time
//!   (a lease in the store, taken by one conditional update); the others
//!   wait for its result. A refresh the server refuses deletes the grant,
//!   and the user is asked to connect again.
//! - Unlinking, and every revocation on mcpgate's side, deletes the grant
//!   and revokes its tokens at the upstream's server where it offers RFC
//!   7009.
//! - [`Vault::elicitation`] makes the URL of the connect page for a URL-mode
//!   elicitation: its id is sealed and names the user it was made for, so
//!   the page can check that the signed-in user is that user whatever is
//!   done to the URL, and it carries nothing readable.

mod connection;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcpgate_jose::{Clock, MasterKey, Rng};
use mcpgate_net::SafeFetcher;
use mcpgate_store::{DynStore, StoreError, UpstreamGrantRecord};
use mcpgate_types::Secret;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use connection::{AuthMethod, Connection, Endpoints, ServerSource};

/// Refresh an access token this long before it expires (seconds).
pub const REFRESH_EARLY_SECS: i64 = 60;
/// A refresh's lease on a grant (seconds): longer than the fetcher's
/// deadline, so a lease outlives the refresh it guards.
pub const REFRESH_LEASE_SECS: i64 = 30;
/// How long a caller waits for another replica's refresh.
const WAIT_FOR_REFRESH: Duration = Duration::from_secs(12);
const WAIT_STEP: Duration = Duration::from_millis(150);
/// Discovered endpoints are fetched again after this long (seconds).
const DISCOVERY_TTL_SECS: i64 = 3600;
/// An elicitation's connect URL works this long (seconds).
pub const ELICITATION_TTL_SECS: i64 = 900;
const TOKENS_AAD: &str = "mcpgate/vault/tokens/v1";
const ELICITATION_AAD: &[u8] = b"mcpgate/vault/elicitation/v1";

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("upstream {0:?} does not act on behalf of users (no user_oauth)")]
    NotConfigured(String),
    /// The user has no grant for this upstream: ask them to connect.
    #[error("no account is connected for this upstream")]
    NotConnected,
    /// The grant was deleted because it can no longer be used: ask the user
    /// to connect again.
    #[error("the connected account must be connected again: {0}")]
    Reconnect(&'static str),
    /// Another replica's refresh did not finish in time.
    #[error("a refresh of this grant is in flight elsewhere and did not finish")]
    Busy,
    #[error("the upstream's authorization server: {0}")]
    Upstream(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl VaultError {
    /// The user has to (re)connect the account.
    pub fn needs_connect(&self) -> bool {
        matches!(self, VaultError::NotConnected | VaultError::Reconnect(_))
    }
}

/// The sealed part of a grant.
#[derive(Serialize, Deserialize)]
struct TokenSet {
    access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
}

/// A token endpoint's answer, as far as the vault reads it.
struct Issued {
    tokens: TokenSet,
    scope: Option<String>,
    expires_at: Option<i64>,
}

/// A connected account, as the user and the operator see it (no tokens).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connected {
    pub upstream: String,
    pub title: String,
    pub scope: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub expires_at: Option<i64>,
}

/// A URL-mode elicitation that sends the user to the connect page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elicitation {
    pub id: String,
    pub url: String,
    pub message: String,
}

#[derive(Serialize, Deserialize)]
struct ElicitationClaims {
    /// The user it was made for.
    u: String,
    /// The upstream.
    up: String,
    exp: i64,
}

pub struct VaultDeps {
    pub store: DynStore,
    pub master_key: Arc<MasterKey>,
    pub rng: Arc<dyn Rng>,
    pub clock: Arc<dyn Clock>,
    /// The SSRF-safe fetcher every request to an upstream's authorization
    /// server goes through.
    pub fetcher: SafeFetcher,
    /// The public base URL of mcpgate's pages (the AS issuer).
    pub pages_base: String,
}

/// The vault; cheap to clone.
#[derive(Clone)]
pub struct Vault(Arc<Inner>);

struct Inner {
    deps: VaultDeps,
    connections: BTreeMap<String, Arc<Connection>>,
    discovered: tokio::sync::Mutex<HashMap<String, (Arc<Endpoints>, i64)>>,
}

fn tokens_aad(user_id: &str, upstream: &str) -> Vec<u8> {
    format!("{TOKENS_AAD}\0{user_id}\0{upstream}").into_bytes()
}

impl Vault {
    pub fn new(connections: Vec<Connection>, deps: VaultDeps) -> Self {
        let connections = connections
            .into_iter()
            .map(|c| (c.upstream.clone(), Arc::new(c)))
            .collect();
        Self(Arc::new(Inner {
            deps,
            connections,
            discovered: tokio::sync::Mutex::new(HashMap::new()),
        }))
    }

    /// The `user_oauth` upstream named `upstream`.
    pub fn connection(&self, upstream: &str) -> Result<Arc<Connection>, VaultError> {
        self.0
            .connections
            .get(upstream)
            .cloned()
            .ok_or_else(|| VaultError::NotConfigured(upstream.to_owned()))
    }

    /// Every `user_oauth` upstream, by name.
    pub fn connections(&self) -> impl Iterator<Item = &Arc<Connection>> {
        self.0.connections.values()
    }

    fn now(&self) -> i64 {
        self.0.deps.clock.now()
    }

    fn store(&self) -> &DynStore {
        &self.0.deps.store
    }

    /// The endpoints of `conn`'s authorization server (discovered ones are
    /// cached for an hour).
    pub async fn endpoints(&self, conn: &Connection) -> Result<Arc<Endpoints>, VaultError> {
        if let ServerSource::Endpoints(e) = &conn.server {
            return Ok(Arc::new(e.clone()));
        }
        let mut cache = self.0.discovered.lock().await;
        if let Some((e, at)) = cache.get(&conn.upstream)
            && self.now() - at < DISCOVERY_TTL_SECS
        {
            return Ok(e.clone());
        }
        let fetcher = &self.0.deps.fetcher;
        let e = Arc::new(match &conn.server {
            ServerSource::Issuer(issuer) => connection::discover_issuer(fetcher, issuer).await?,
            ServerSource::ProtectedResource => {
                connection::discover_from_resource(fetcher, &conn.upstream_url).await?
            }
            ServerSource::Endpoints(_) => unreachable!("returned above"),
        });
        cache.insert(conn.upstream.clone(), (e.clone(), self.now()));
        Ok(e)
    }

    /// The URL to send the user to at the upstream's authorization server.
    pub async fn authorization_url(
        &self,
        conn: &Connection,
        redirect_uri: &str,
        state: &str,
        code_challenge: &str,
    ) -> Result<String, VaultError> {
        let e = self.endpoints(conn).await?;
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("response_type", "code")
            .append_pair("client_id", &conn.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", state)
            .append_pair("code_challenge", code_challenge)
            .append_pair("code_challenge_method", "S256");
        if !conn.scopes.is_empty() {
            q.append_pair("scope", &conn.scopes.join(" "));
        }
        if let Some(r) = conn.resource() {
            q.append_pair("resource", r);
        }
        let sep = if e.authorization_endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        Ok(format!("{}{sep}{}", e.authorization_endpoint, q.finish()))
    }

    // ---- elicitations ----------------------------------------------------------------------

    /// A URL-mode elicitation for `user_id` to connect `upstream`.
    pub fn elicitation(&self, user_id: &str, conn: &Connection) -> Elicitation {
        let claims = ElicitationClaims {
            u: user_id.to_owned(),
            up: conn.upstream.clone(),
            exp: self.now() + ELICITATION_TTL_SECS,
        };
        let plain = serde_json::to_vec(&claims).expect("claims serialize");
        let sealed = self
            .0
            .deps
            .master_key
            .seal(self.0.deps.rng.as_ref(), &plain, ELICITATION_AAD);
        let id = URL_SAFE_NO_PAD.encode(sealed);
        let url = format!(
            "{}/connect/{}?elicitation={id}",
            self.0.deps.pages_base.trim_end_matches('/'),
            conn.upstream
        );
        Elicitation {
            message: format!(
                "{} needs your permission to act on your behalf. Open the link to connect your account, then try again.",
                conn.title
            ),
            id,
            url,
        }
    }

    /// The (user, upstream) an elicitation id was made for, if it is one of
    /// ours and has not expired.
    pub fn open_elicitation(&self, id: &str) -> Option<(String, String)> {
        if id.len() > 1024 {
            return None;
        }
        let sealed = URL_SAFE_NO_PAD.decode(id).ok()?;
        let plain = self.0.deps.master_key.open(&sealed, ELICITATION_AAD).ok()?;
        let c: ElicitationClaims = serde_json::from_slice(&plain).ok()?;
        (c.exp > self.now()).then_some((c.u, c.up))
    }

    // ---- grants ----------------------------------------------------------------------------

    fn seal(&self, user_id: &str, upstream: &str, t: &TokenSet) -> Vec<u8> {
        let plain = serde_json::to_vec(t).expect("token set serializes");
        self.0.deps.master_key.seal(
            self.0.deps.rng.as_ref(),
            &plain,
            &tokens_aad(user_id, upstream),
        )
    }

    fn open(&self, g: &UpstreamGrantRecord) -> Option<TokenSet> {
        let plain = self
            .0
            .deps
            .master_key
            .open(&g.sealed_tokens, &tokens_aad(&g.user_id, &g.upstream))
            .ok()?;
        serde_json::from_slice(&plain).ok()
    }

    /// Posts a token request and reads the answer. `Err(Ok(error))` is the
    /// server's OAuth error code; `Err(Err(_))` is anything else.
    async fn token_request(
        &self,
        conn: &Connection,
        mut form: Vec<(&str, &str)>,
    ) -> Result<Issued, Result<String, VaultError>> {
        let e = self.endpoints(conn).await.map_err(Err)?;
        if let Some(r) = conn.resource() {
            form.push(("resource", r));
        }
        let r = self
            .0
            .deps
            .fetcher
            .post_authenticated(&e.token_endpoint, form, &conn.client_auth(), None)
            .await
            .map_err(|e| Err(VaultError::Upstream(format!("token request: {e}"))))?;
        let body: Value = r.json().unwrap_or(Value::Null);
        if !r.is_success() {
            return Err(match body.get("error").and_then(Value::as_str) {
                Some(code) if r.status == 400 || r.status == 401 => Ok(code.to_owned()),
                _ => Err(VaultError::Upstream(format!(
                    "the token endpoint answered {}",
                    r.status
                ))),
            });
        }
        let text = |n: &str| body.get(n).and_then(Value::as_str).map(str::to_owned);
        let bearer = text("token_type").is_some_and(|t| t.eq_ignore_ascii_case("bearer"));
        let access = text("access_token").filter(|t| !t.is_empty());
        let (Some(access_token), true) = (access, bearer) else {
            return Err(Err(VaultError::Upstream(
                "the token response is not a bearer token response".into(),
            )));
        };
        let expires_at = body
            .get("expires_in")
            .and_then(Value::as_i64)
            .filter(|s| *s > 0)
            .map(|s| self.now() + s);
        Ok(Issued {
            tokens: TokenSet {
                access_token,
                refresh_token: text("refresh_token").filter(|t| !t.is_empty()),
            },
            scope: text("scope"),
            expires_at,
        })
    }

    /// Redeems the code of a finished connect flow and stores the grant
    /// (replacing an earlier one). Returns what is now connected.
    pub async fn redeem(
        &self,
        user_id: &str,
        conn: &Connection,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<Connected, VaultError> {
        let form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ];
        let issued = self.token_request(conn, form).await.map_err(|e| match e {
            Ok(code) => VaultError::Upstream(format!("the code was refused ({code})")),
            Err(e) => e,
        })?;
        let now = self.now();
        let g = UpstreamGrantRecord {
            user_id: user_id.to_owned(),
            upstream: conn.upstream.clone(),
            sealed_tokens: self.seal(user_id, &conn.upstream, &issued.tokens),
            scope: issued.scope.unwrap_or_else(|| conn.scopes.join(" ")),
            expires_at: issued.expires_at,
            created_at: now,
            updated_at: now,
            refresh_lease_until: 0,
        };
        self.store().put_upstream_grant(&g).await?;
        tracing::info!(upstream = %conn.upstream, user = %user_id, "upstream account connected");
        Ok(self.connected(&g))
    }

    fn connected(&self, g: &UpstreamGrantRecord) -> Connected {
        Connected {
            upstream: g.upstream.clone(),
            title: self
                .0
                .connections
                .get(&g.upstream)
                .map_or_else(|| g.upstream.clone(), |c| c.title.clone()),
            scope: g.scope.clone(),
            created_at: g.created_at,
            updated_at: g.updated_at,
            expires_at: g.expires_at,
        }
    }

    /// The access token to present to `upstream` for `user_id`, refreshed
    /// first when it is about to expire.
    pub async fn access_token(&self, user_id: &str, upstream: &str) -> Result<Secret, VaultError> {
        self.usable(user_id, upstream, None).await
    }

    /// The upstream refused `token`, this user's access token (401): it was
    /// revoked or expired early there. Returns the token to retry with: one
    /// already refreshed by another request, or a new one from a refresh
    /// made now. Without a refresh token, or when the refresh is refused,
    /// the grant is deleted and the user must connect again.
    pub async fn refused(
        &self,
        user_id: &str,
        upstream: &str,
        token: &Secret,
    ) -> Result<Secret, VaultError> {
        self.usable(user_id, upstream, Some(token)).await
    }

    /// A usable access token: the stored one while it is good (and is not
    /// `refused`), else a refreshed one. One caller at a time refreshes a
    /// grant (the store's lease); the others wait for its result.
    async fn usable(
        &self,
        user_id: &str,
        upstream: &str,
        refused: Option<&Secret>,
    ) -> Result<Secret, VaultError> {
        let conn = self.connection(upstream)?;
        let deadline = tokio::time::Instant::now() + WAIT_FOR_REFRESH;
        loop {
            let g = match self.store().get_upstream_grant(user_id, upstream).await {
                Ok(g) => g,
                Err(StoreError::NotFound) => return Err(VaultError::NotConnected),
                Err(e) => return Err(e.into()),
            };
            let now = self.now();
            let Some(tokens) = self.open(&g) else {
                // Not sealed for this (user, upstream), or under another key.
                tracing::warn!(upstream, user = %user_id, "a vaulted grant does not open; deleting it");
                self.forget(user_id, upstream).await?;
                return Err(VaultError::Reconnect("the stored grant could not be read"));
            };
            let good = match refused {
                // Refreshed by another request since it was refused.
                Some(t) => !t.ct_eq(tokens.access_token.as_bytes()),
                None => g.expires_at.is_none_or(|e| e - REFRESH_EARLY_SECS > now),
            };
            if good {
                return Ok(Secret::new(tokens.access_token));
            }
            if tokens.refresh_token.is_none() {
                self.forget(user_id, upstream).await?;
                return Err(VaultError::Reconnect(
                    "the access token can no longer be used and the server issued no refresh token",
                ));
            }
            if g.refresh_lease_until <= now {
                let lease = now + REFRESH_LEASE_SECS;
                match self
                    .store()
                    .lease_upstream_grant(user_id, upstream, now, lease)
                    .await
                {
                    Ok(leased) => {
                        // A refused token is refreshed whatever its expiry says.
                        let leased = match refused {
                            Some(_) => UpstreamGrantRecord {
                                expires_at: Some(0),
                                ..leased
                            },
                            None => leased,
                        };
                        return self.refresh(&conn, leased, lease).await;
                    }
                    Err(StoreError::NotFound) => {} // another caller got it, or it is gone
                    Err(e) => return Err(e.into()),
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(VaultError::Busy);
            }
            tokio::time::sleep(WAIT_STEP).await;
        }
    }

    /// Refreshes a leased grant and ends the lease.
    async fn refresh(
        &self,
        conn: &Connection,
        leased: UpstreamGrantRecord,
        lease: i64,
    ) -> Result<Secret, VaultError> {
        let (user_id, upstream) = (leased.user_id.as_str(), leased.upstream.as_str());
        let Some(tokens) = self.open(&leased) else {
            self.forget(user_id, upstream).await?;
            return Err(VaultError::Reconnect("the stored grant could not be read"));
        };
        // Refreshed by someone else between our read and our lease.
        if leased
            .expires_at
            .is_none_or(|e| e - REFRESH_EARLY_SECS > self.now())
        {
            self.release(&leased, lease).await?;
            return Ok(Secret::new(tokens.access_token));
        }
        let Some(refresh_token) = tokens.refresh_token.clone() else {
            self.forget(user_id, upstream).await?;
            return Err(VaultError::Reconnect("no refresh token"));
        };
        let form = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.as_str()),
        ];
        match self.token_request(conn, form).await {
            Ok(issued) => {
                let access = issued.tokens.access_token.clone();
                let kept = TokenSet {
                    access_token: issued.tokens.access_token,
                    // A server that does not rotate keeps the old one valid.
                    refresh_token: issued.tokens.refresh_token.or(Some(refresh_token)),
                };
                let g = UpstreamGrantRecord {
                    sealed_tokens: self.seal(user_id, upstream, &kept),
                    scope: issued.scope.unwrap_or_else(|| leased.scope.clone()),
                    expires_at: issued.expires_at,
                    updated_at: self.now(),
                    ..leased.clone()
                };
                match self.store().finish_upstream_refresh(&g, lease).await {
                    Ok(()) => Ok(Secret::new(access)),
                    // Unlinked or revoked while we refreshed: it stays gone.
                    Err(StoreError::NotFound) => Err(VaultError::NotConnected),
                    Err(e) => Err(e.into()),
                }
            }
            Err(Ok(code)) => {
                tracing::info!(upstream, user = %user_id, error = %code, "the upstream refused a refresh; the account must be connected again");
                self.forget(user_id, upstream).await?;
                Err(VaultError::Reconnect(
                    "the upstream's authorization server refused the refresh token",
                ))
            }
            Err(Err(e)) => {
                self.release(&leased, lease).await?;
                Err(e)
            }
        }
    }

    /// Ends a lease without changing the tokens.
    async fn release(&self, g: &UpstreamGrantRecord, lease: i64) -> Result<(), VaultError> {
        match self.store().finish_upstream_refresh(g, lease).await {
            Ok(()) | Err(StoreError::NotFound) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a grant that can no longer be used (no revocation: it is
    /// already worthless or unreadable).
    async fn forget(&self, user_id: &str, upstream: &str) -> Result<(), VaultError> {
        match self.store().delete_upstream_grant(user_id, upstream).await {
            Ok(_) | Err(StoreError::NotFound) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The user's connected accounts.
    pub async fn list(&self, user_id: &str) -> Result<Vec<Connected>, VaultError> {
        Ok(self
            .store()
            .list_upstream_grants(user_id)
            .await?
            .iter()
            .map(|g| self.connected(g))
            .collect())
    }

    /// Unlinks one account: deletes the grant, then revokes its tokens at
    /// the upstream's server (RFC 7009) when it has a revocation endpoint.
    /// Returns whether there was one.
    pub async fn unlink(&self, user_id: &str, upstream: &str) -> Result<bool, VaultError> {
        match self.store().delete_upstream_grant(user_id, upstream).await {
            Ok(g) => {
                self.revoke_upstream(&g).await;
                Ok(true)
            }
            Err(StoreError::NotFound) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Unlinks every account of a user (the user was disabled, removed or
    /// revoked). Returns how many there were.
    pub async fn unlink_all(&self, user_id: &str) -> Result<usize, VaultError> {
        let gone = self.store().delete_user_upstream_grants(user_id).await?;
        for g in &gone {
            self.revoke_upstream(g).await;
        }
        Ok(gone.len())
    }

    /// RFC 7009 at the upstream's server, refresh token first (which ends
    /// the whole grant at most servers), then the access token. Failures are
    /// logged without the tokens: the grant is already gone here.
    async fn revoke_upstream(&self, g: &UpstreamGrantRecord) {
        let Ok(conn) = self.connection(&g.upstream) else {
            return;
        };
        let Some(tokens) = self.open(g) else {
            return;
        };
        let endpoint = match self.endpoints(&conn).await {
            Ok(e) => e.revocation_endpoint.clone(),
            Err(e) => {
                tracing::warn!(upstream = %g.upstream, error = %e, "cannot revoke at the upstream");
                None
            }
        };
        let Some(endpoint) = endpoint else {
            return;
        };
        let pairs = [
            (tokens.refresh_token.as_deref(), "refresh_token"),
            (Some(tokens.access_token.as_str()), "access_token"),
        ];
        for (token, hint) in pairs {
            let Some(token) = token else { continue };
            let form = vec![("token", token), ("token_type_hint", hint)];
            let r = self
                .0
                .deps
                .fetcher
                .post_authenticated(&endpoint, form, &conn.client_auth(), None)
                .await;
            match r {
                Ok(r) if r.is_success() => {}
                Ok(r) => {
                    tracing::warn!(upstream = %g.upstream, status = r.status, "the upstream's revocation endpoint refused")
                }
                Err(e) => {
                    tracing::warn!(upstream = %g.upstream, error = %e, "the upstream's revocation endpoint is unreachable")
                }
            }
        }
    }
}
