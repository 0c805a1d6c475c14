//! The OAuth side of the MCP client, put together (MCP authorization: discovery, registration,
//! authorization code + PKCE, token use, refresh, scope challenge handling).
//!
//! [`OAuthClient`] holds everything for one MCP server URL: the SSRF-safe fetcher, the token
//! store, the user agent, time and randomness. The MCP transport asks it for a bearer token
//! before each request ([`OAuthClient::access_token`], refreshing shortly before expiry), and
//! hands it the `WWW-Authenticate` of a 401 ([`OAuthClient::on_unauthorized`]: re-discover,
//! refresh once, else authorize) or of a 403 `insufficient_scope`
//! ([`OAuthClient::on_insufficient_scope`]: authorize again with the union of held and
//! challenged scopes, refusing scopes that were already denied). The transport counts the
//! attempts of one operation and stops after [`OAuthConfig::max_authorizations_per_operation`].

use std::collections::HashMap;
use std::sync::Arc;

use mcpgate_jose::{Clock, Rng, SigningKey, SystemClock, SystemRng};
use mcpgate_net::SafeFetcher;
use mcpgate_types::metadata::AuthorizationServerMetadata;
use mcpgate_types::www_authenticate::{find_oauth, find_scheme};
use mcpgate_types::{ScopeSet, Secret};

use crate::authorize::PendingAuthorization;
use crate::discovery::{self, Discovery, validate_url};
use crate::dpop::{self, DpopPolicy, Nonces, Prover};
use crate::error::{ClientError, Result};
use crate::registration::{
    self, ClientCredentials, ClientIdentity, PreRegisteredClient, RegistrationKind,
};
use crate::scope;
use crate::store::{TokenEntry, TokenStore, TokenSummary};
use crate::token::{self, TokenGrant};
use crate::user_agent::{AuthorizationRedirect, CallbackListener, UserAgent};

/// What the OAuth client does, apart from its collaborators.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    /// The MCP server URL, kept as given.
    pub server_url: String,
    /// What the client says about itself at registration.
    pub identity: ClientIdentity,
    /// Out-of-band registrations (first in the registration priority).
    pub pre_registered: Vec<PreRegisteredClient>,
    /// Use only `pre_registered`: an authorization server none of them is
    /// bound to is refused ([`crate::ClientError::ForeignIssuer`]) rather than
    /// registered with, so credentials meant for one issuer never meet another.
    pub require_pre_registered: bool,
    /// The HTTPS URL of this client's metadata document, for CIMD-capable servers.
    pub client_metadata_url: Option<String>,
    /// Scopes the user asked for explicitly (`--scope`), added to the selection.
    pub extra_scopes: ScopeSet,
    /// Ask for `offline_access` when the AS lists it.
    pub want_refresh_token: bool,
    /// Authorizations one operation may trigger (401 and 403 together). Default 3.
    pub max_authorizations_per_operation: u32,
    /// Refresh this many seconds before the access token expires. Default 60.
    pub refresh_skew_secs: i64,
    /// When a stored grant stops working (refresh answered `invalid_grant`, or the token is
    /// rejected and cannot be refreshed), run the authorization flow again instead of failing
    /// with "run `mcpgate login URL` again". Off by default (commands fail with that message);
    /// a long-running `bridge` turns it on. A first authorization, with nothing stored, always
    /// runs.
    pub auto_reauthorize: bool,
    /// How tokens are obtained: the authorization code flow with a user (default), the client
    /// credentials grant for the client itself, or the JWT-bearer grant; the last two need a
    /// pre-registered client.
    pub grant: Grant,
    /// The assertion of [`Grant::JwtBearer`]: a JWT the workload's identity provider issued
    /// for this authorization server (RFC 7523 §2.1, workload identity federation).
    pub assertion: Option<Secret>,
    /// The enterprise identity provider of [`Grant::EnterpriseManaged`].
    pub enterprise: Option<EnterpriseIdp>,
    /// When to ask for DPoP-bound tokens (RFC 9449). Default: when both the authorization
    /// server and the MCP server offer it.
    pub dpop: DpopPolicy,
}

/// An access token and, when it is DPoP-bound, the key its proofs are signed with.
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub token: Secret,
    pub dpop_key: Option<Arc<SigningKey>>,
}

impl From<&TokenEntry> for AccessToken {
    fn from(e: &TokenEntry) -> Self {
        Self {
            token: e.access_token.clone(),
            dpop_key: e.dpop_key.clone(),
        }
    }
}

/// Where and how enterprise-managed authorization gets its ID-JAG.
#[derive(Debug, Clone)]
pub struct EnterpriseIdp {
    /// The identity provider's token endpoint.
    pub token_endpoint: String,
    /// This client at the identity provider (`client_id`, and a secret for Basic if any).
    pub client_id: String,
    pub client_secret: Option<Secret>,
    /// The user's token at the identity provider and its RFC 8693 type.
    pub subject_token: Secret,
    pub subject_token_type: String,
}

/// How the client obtains its tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Grant {
    /// The authorization code flow with PKCE, a user approving in a browser.
    #[default]
    AuthorizationCode,
    /// The client credentials grant (OAuth 2.1 §4.2): no user, no browser, no refresh
    /// token; a new token is requested whenever the held one stops working.
    ClientCredentials,
    /// The JWT-bearer authorization grant (RFC 7523 §2.1) with [`OAuthConfig::assertion`]:
    /// a workload trades the identity its platform vouches for against a token. A refused
    /// assertion is reported, never retried, and no other grant is tried instead.
    JwtBearer,
    /// Enterprise-managed authorization (SEP-990): the enterprise identity provider exchanges
    /// the user's token for an ID-JAG ([`OAuthConfig::enterprise`]), which the JWT-bearer
    /// grant then presents to the authorization server.
    EnterpriseManaged,
}

impl OAuthConfig {
    /// Defaults for `server_url`.
    pub fn new(server_url: impl Into<String>) -> Self {
        Self {
            server_url: server_url.into(),
            identity: ClientIdentity::default(),
            pre_registered: Vec::new(),
            require_pre_registered: false,
            client_metadata_url: None,
            extra_scopes: ScopeSet::new(),
            want_refresh_token: true,
            max_authorizations_per_operation: 3,
            refresh_skew_secs: 60,
            auto_reauthorize: false,
            grant: Grant::AuthorizationCode,
            assertion: None,
            enterprise: None,
            dpop: DpopPolicy::default(),
        }
    }
}

#[derive(Default)]
struct State {
    discovery: Option<Discovery>,
    current: Option<TokenEntry>,
    as_metadata: HashMap<String, AuthorizationServerMetadata>,
    pre_registered: Vec<PreRegisteredClient>,
    /// Scopes asked for explicitly get one more try despite an earlier denial, once.
    denial_override_used: bool,
    /// The MCP server challenged with the `DPoP` scheme: it takes DPoP-bound tokens.
    resource_offers_dpop: bool,
}

/// The OAuth client for one MCP server.
pub struct OAuthClient {
    config: OAuthConfig,
    fetcher: SafeFetcher,
    store: TokenStore,
    user_agent: Arc<dyn UserAgent>,
    clock: Arc<dyn Clock>,
    rng: Arc<dyn Rng>,
    state: tokio::sync::Mutex<State>,
    /// The DPoP nonces the authorization server and the MCP server handed out.
    nonces: Nonces,
}

impl std::fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthClient")
            .field("server_url", &self.config.server_url)
            .field("store", &self.store.dir())
            .finish_non_exhaustive()
    }
}

impl OAuthClient {
    /// An OAuth client for `config.server_url`; fails if that URL is unusable under the
    /// fetcher's policy (https, or loopback http with the development flag).
    pub fn new(
        config: OAuthConfig,
        fetcher: SafeFetcher,
        store: TokenStore,
        user_agent: Arc<dyn UserAgent>,
    ) -> Result<Self> {
        validate_url(
            "MCP server",
            &config.server_url,
            fetcher.policy().allow_http_loopback,
        )
        .map_err(|_| ClientError::InvalidServerUrl {
            url: config.server_url.clone(),
            reason: "it must be an absolute https URL (http only to loopback with \
                         --allow-http-loopback), without user information or fragment",
        })?;
        let state = State {
            pre_registered: config.pre_registered.clone(),
            ..State::default()
        };
        Ok(Self {
            config,
            fetcher,
            store,
            user_agent,
            clock: Arc::new(SystemClock),
            rng: Arc::new(SystemRng::new()),
            state: tokio::sync::Mutex::new(state),
            nonces: Nonces::default(),
        })
    }

    /// Replaces the clock (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Replaces the random source (tests).
    pub fn with_rng(mut self, rng: Arc<dyn Rng>) -> Self {
        self.rng = rng;
        self
    }

    /// The MCP server URL.
    pub fn server_url(&self) -> &str {
        &self.config.server_url
    }

    /// The configuration.
    pub fn config(&self) -> &OAuthConfig {
        &self.config
    }

    /// The token store.
    pub fn store(&self) -> &TokenStore {
        &self.store
    }

    /// The last discovery result, if any happened in this process.
    pub async fn discovery(&self) -> Option<Discovery> {
        self.state.lock().await.discovery.clone()
    }

    /// What is stored for this server, without secrets.
    pub async fn status(&self) -> Result<Option<TokenSummary>> {
        Ok(self
            .store
            .find_for_server(&self.config.server_url)?
            .map(|e| e.summary()))
    }

    /// The access token to send, refreshed first when it expires within the skew. `None` when
    /// nothing usable is stored (the request then goes without one and a 401 starts the flow).
    /// Send it with [`OAuthClient::authorization`].
    pub async fn access_token(&self) -> Result<Option<AccessToken>> {
        let mut state = self.state.lock().await;
        let entry = match state.current.clone() {
            Some(e) => Some(e),
            None => self.store.find_for_server(&self.config.server_url)?,
        };
        let Some(entry) = entry else {
            return Ok(None);
        };
        let now = self.clock.now();
        if !entry.expires_within(now, self.config.refresh_skew_secs) {
            state.current = Some(entry.clone());
            return Ok(Some(AccessToken::from(&entry)));
        }
        if entry.refresh_token.is_none() {
            state.current = None;
            return Ok(None);
        }
        match self.refresh_locked(&mut state, &entry).await {
            Ok(fresh) => Ok(Some(AccessToken::from(&fresh))),
            Err(e) if e.needs_login() && self.config.auto_reauthorize => {
                tracing::info!(
                    "stored refresh token no longer valid; a new authorization is needed"
                );
                state.current = None;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The headers that present `token` on a request `htm url` to the MCP server: `Authorization:
    /// Bearer`, or for a DPoP-bound token `Authorization: DPoP` and a `DPoP` proof for this
    /// request, with the server's latest nonce (RFC 9449 §7.1).
    pub fn authorization(
        &self,
        token: &AccessToken,
        htm: &str,
        url: &str,
    ) -> Result<Vec<(&'static str, String)>> {
        let secret = token.token.expose();
        Ok(match &token.dpop_key {
            None => vec![("authorization", format!("Bearer {secret}"))],
            Some(key) => {
                let proof = self.prover(key).proof(htm, url, Some(secret))?;
                vec![("authorization", format!("DPoP {secret}")), ("dpop", proof)]
            }
        })
    }

    /// Keeps the `DPoP-Nonce` of a response from `url` for the next proof; whether it had one.
    pub fn remember_nonce(&self, url: &str, headers: &http::HeaderMap) -> bool {
        self.nonces.remember(url, headers)
    }

    fn prover<'a>(&'a self, key: &'a SigningKey) -> Prover<'a> {
        Prover {
            key,
            nonces: &self.nonces,
            now: self.clock.now(),
            rng: self.rng.as_ref(),
        }
    }

    /// Handles a 401: discovers again (the PRM may name a new AS), uses a token another
    /// process stored meanwhile, refreshes once when `allow_refresh`, and otherwise runs the
    /// authorization flow. Returns the new access token.
    pub async fn on_unauthorized(
        &self,
        www_authenticate: Option<&str>,
        rejected: Option<&Secret>,
        allow_refresh: bool,
    ) -> Result<Secret> {
        self.unauthorized(www_authenticate, rejected, allow_refresh, false)
            .await
    }

    async fn unauthorized(
        &self,
        www_authenticate: Option<&str>,
        rejected: Option<&Secret>,
        allow_refresh: bool,
        force: bool,
    ) -> Result<Secret> {
        let challenge = www_authenticate.and_then(find_oauth);
        let resource_metadata = challenge.as_ref().and_then(|c| c.get("resource_metadata"));
        let challenge_scope = challenge.as_ref().and_then(|c| c.get("scope"));
        let mut state = self.state.lock().await;
        if www_authenticate.is_some_and(|w| find_scheme(w, "dpop").is_some()) {
            state.resource_offers_dpop = true;
        }
        let had_grant = state.current.is_some()
            || self
                .store
                .find_for_server(&self.config.server_url)?
                .is_some();
        let discovery =
            discovery::discover(&self.fetcher, &self.config.server_url, resource_metadata).await?;
        state.discovery = Some(discovery.clone());
        state
            .as_metadata
            .insert(discovery.issuer.clone(), discovery.as_metadata.clone());

        let stored = self.store.load(&discovery.issuer, discovery.resource())?;
        if let Some(entry) = stored.as_ref().filter(|_| !force) {
            let now = self.clock.now();
            let is_rejected =
                rejected.is_some_and(|r| r.ct_eq(entry.access_token.expose().as_bytes()));
            if !is_rejected && !entry.expires_within(now, self.config.refresh_skew_secs) {
                state.current = Some(entry.clone());
                return Ok(entry.access_token.clone());
            }
            if allow_refresh && entry.refresh_token.is_some() {
                match self.refresh_locked(&mut state, entry).await {
                    Ok(fresh) => return Ok(fresh.access_token),
                    Err(e) if e.needs_login() => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if self.config.grant != Grant::AuthorizationCode {
            // Unattended by nature: a new token costs no one a click.
            let entry = self
                .unattended_grant(&mut state, &discovery, challenge_scope)
                .await?;
            return Ok(entry.access_token);
        }
        if had_grant && !force && !self.config.auto_reauthorize {
            state.current = None;
            return Err(ClientError::ReLoginRequired {
                server_url: self.config.server_url.clone(),
            });
        }
        let scopes = scope::select_initial(
            challenge_scope,
            &discovery.prm.scopes_supported,
            &discovery.as_metadata.scopes_supported,
            &self.config.extra_scopes,
            self.config.want_refresh_token,
        );
        let denied = stored.map(|e| e.denied_scopes).unwrap_or_default();
        let entry = self
            .authorize(&mut state, &discovery, scopes, denied)
            .await?;
        Ok(entry.access_token)
    }

    /// Handles a 403 `insufficient_scope`: authorizes again for `held ∪ challenged` and returns
    /// the new access token. Scopes already denied are not asked for again.
    pub async fn on_insufficient_scope(&self, www_authenticate: &str) -> Result<Secret> {
        let challenge = find_oauth(www_authenticate);
        let challenged = challenge
            .as_ref()
            .and_then(|c| c.get("scope"))
            .map(scope::parse_lenient)
            .unwrap_or_default();
        let resource_metadata = challenge.as_ref().and_then(|c| c.get("resource_metadata"));
        let mut state = self.state.lock().await;
        let discovery = match &state.discovery {
            Some(d) => d.clone(),
            None => {
                let d =
                    discovery::discover(&self.fetcher, &self.config.server_url, resource_metadata)
                        .await?;
                state.discovery = Some(d.clone());
                d
            }
        };
        let current = match state.current.clone() {
            Some(c) => Some(c),
            None => self.store.load(&discovery.issuer, discovery.resource())?,
        };
        let held = current
            .as_ref()
            .and_then(|e| e.scope.as_deref())
            .map(scope::parse_lenient)
            .unwrap_or_default();
        let denied_list = current.map(|e| e.denied_scopes).unwrap_or_default();
        let denied = ScopeSet::from_iter(denied_list.iter().map(String::as_str));
        let missing = challenged.difference(&held);
        if !missing.is_empty() && missing.is_subset(&denied) {
            let explicit = missing.is_subset(&self.config.extra_scopes);
            if !explicit || state.denial_override_used {
                return Err(ClientError::ScopeDenied {
                    scopes: missing.to_string(),
                });
            }
            state.denial_override_used = true;
        }
        let scopes = scope::select_step_up(
            &held,
            &challenged,
            &discovery.as_metadata.scopes_supported,
            self.config.want_refresh_token,
        );
        let entry = self
            .authorize(&mut state, &discovery, scopes, denied_list)
            .await?;
        Ok(entry.access_token)
    }

    /// Runs discovery (with the `resource_metadata` of `www_authenticate`, if given) and a full
    /// authorization, regardless of what is stored. For `mcpgate login`.
    pub async fn login(&self, www_authenticate: Option<&str>) -> Result<TokenSummary> {
        self.unauthorized(www_authenticate, None, false, true)
            .await?;
        let state = self.state.lock().await;
        state
            .current
            .as_ref()
            .map(TokenEntry::summary)
            .ok_or_else(|| ClientError::ReLoginRequired {
                server_url: self.config.server_url.clone(),
            })
    }

    /// Forgets the tokens stored for this server, revoking the refresh token first when the AS
    /// offers RFC 7009 revocation (best effort). Client registrations are kept.
    pub async fn logout(&self) -> Result<usize> {
        let mut state = self.state.lock().await;
        state.current = None;
        let entries: Vec<TokenEntry> = self
            .store
            .list()?
            .into_iter()
            .filter(|e| e.server_url == self.config.server_url)
            .collect();
        for entry in &entries {
            if let Err(e) = self.revoke(&mut state, entry).await {
                tracing::warn!(error = %e, "token revocation failed; removing the local copy anyway");
            }
            self.store.remove(&entry.issuer, &entry.resource)?;
        }
        Ok(entries.len())
    }

    async fn revoke(&self, state: &mut State, entry: &TokenEntry) -> Result<()> {
        let metadata = self.as_metadata(state, &entry.issuer).await?;
        let (Some(endpoint), Some(rt)) = (
            metadata.revocation_endpoint.as_deref(),
            &entry.refresh_token,
        ) else {
            return Ok(());
        };
        validate_url(
            "revocation endpoint",
            endpoint,
            self.fetcher.policy().allow_http_loopback,
        )?;
        let Some(client) = self.store.load_client(&entry.issuer)? else {
            return Ok(());
        };
        let auth = self.client_auth(state, client)?;
        let form = vec![("token", rt.expose()), ("token_type_hint", "refresh_token")];
        self.fetcher
            .post_authenticated(endpoint, form, &auth, None)
            .await
            .map_err(|e| ClientError::fetch("revocation endpoint", endpoint, e))?;
        Ok(())
    }

    /// Validated metadata of `issuer`, fetched once per process.
    async fn as_metadata(
        &self,
        state: &mut State,
        issuer: &str,
    ) -> Result<AuthorizationServerMetadata> {
        if let Some(m) = state.as_metadata.get(issuer) {
            return Ok(m.clone());
        }
        let (_, m) = discovery::fetch_as_metadata(&self.fetcher, issuer).await?;
        state.as_metadata.insert(issuer.to_owned(), m.clone());
        Ok(m)
    }

    /// Refreshes `entry` under the store's lock. If another process refreshed meanwhile, its
    /// result is used and the (rotated) refresh token is not spent again.
    async fn refresh_locked(&self, state: &mut State, entry: &TokenEntry) -> Result<TokenEntry> {
        let _lock = self.store.lock(&entry.issuer, &entry.resource).await?;
        let now = self.clock.now();
        let on_disk = self.store.load(&entry.issuer, &entry.resource)?;
        if let Some(disk) = &on_disk {
            let changed = disk.access_token != entry.access_token;
            if changed && !disk.expires_within(now, self.config.refresh_skew_secs) {
                tracing::debug!("another process refreshed the token; using its result");
                state.current = Some(disk.clone());
                return Ok(disk.clone());
            }
        }
        let base = on_disk.unwrap_or_else(|| entry.clone());
        let relogin = || ClientError::ReLoginRequired {
            server_url: self.config.server_url.clone(),
        };
        let Some(refresh_token) = base.refresh_token.clone() else {
            return Err(relogin());
        };
        let metadata = self.as_metadata(state, &base.issuer).await?;
        let client = self.store.load_client(&base.issuer)?.ok_or_else(relogin)?;
        let endpoint = metadata.token_endpoint.as_deref().unwrap_or_default();
        let auth = self.client_auth(state, client)?;
        let prover = base.dpop_key.as_deref().map(|k| self.prover(k));
        let grant = match token::refresh(
            &self.fetcher,
            endpoint,
            &auth,
            &refresh_token,
            &base.resource,
            prover.as_ref(),
        )
        .await
        {
            Ok(g) => g,
            Err(e) if token::is_invalid_grant(&e) => {
                self.store.remove(&base.issuer, &base.resource)?;
                state.current = None;
                return Err(relogin());
            }
            Err(e) => return Err(e),
        };
        let fresh = TokenEntry {
            access_token: grant.access_token,
            refresh_token: grant.refresh_token.or(base.refresh_token.clone()),
            expires_at: grant.expires_in.map(|s| now + s),
            scope: grant.scope.or(base.scope.clone()),
            updated_at: now,
            dpop_key: base.dpop_key.clone().filter(|_| grant.dpop_bound),
            ..base
        };
        self.store.save(&fresh)?;
        state.current = Some(fresh.clone());
        Ok(fresh)
    }

    /// The client to use at `discovery.issuer`, in the registration priority order.
    async fn client_for(
        &self,
        state: &mut State,
        discovery: &Discovery,
        redirect_uri: &str,
    ) -> Result<ClientCredentials> {
        let issuer = discovery.issuer.as_str();
        if let Some(pre) =
            registration::select_pre_registered(&state.pre_registered, issuer).cloned()
        {
            let credentials = registration::from_pre_registered(&pre, discovery);
            if pre.issuer.is_none() {
                // Bind the unbound credentials to this issuer: never presented to another AS.
                if let Some(slot) = state.pre_registered.iter_mut().find(|p| p.issuer.is_none()) {
                    slot.issuer = Some(issuer.to_owned());
                }
            }
            self.store.save_client(&credentials)?;
            return Ok(credentials);
        }
        if self.config.require_pre_registered {
            return Err(crate::ClientError::ForeignIssuer {
                issuer: issuer.to_owned(),
                expected: state
                    .pre_registered
                    .iter()
                    .filter_map(|p| p.issuer.clone())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        if let Some(stored) = self.store.load_client(issuer)? {
            let usable = stored.allows_redirect(redirect_uri)
                && !stored.secret_expired(self.clock.now())
                && (stored.kind != RegistrationKind::MetadataDocument
                    || self.config.client_metadata_url.as_deref()
                        == Some(stored.client_id.as_str()));
            if usable {
                return Ok(stored);
            }
        }
        if let Some(cimd) = registration::from_metadata_document(
            discovery,
            self.config.client_metadata_url.as_deref(),
        )? {
            self.store.save_client(&cimd)?;
            return Ok(cimd);
        }
        let registered = registration::register_dynamic(
            &self.fetcher,
            discovery,
            &self.config.identity,
            redirect_uri,
        )
        .await?;
        self.store.save_client(&registered)?;
        Ok(registered)
    }

    /// The authorization code flow for `discovery`, then storage of the result.
    async fn authorize(
        &self,
        state: &mut State,
        discovery: &Discovery,
        scopes: Option<ScopeSet>,
        previously_denied: Vec<String>,
    ) -> Result<TokenEntry> {
        let listener = CallbackListener::bind().await?;
        let redirect_uri = listener.redirect_uri().to_owned();
        let client = self.client_for(state, discovery, &redirect_uri).await?;
        let pending = PendingAuthorization::new(
            discovery,
            &client.client_id,
            &redirect_uri,
            scopes.clone(),
            self.rng.as_ref(),
            self.fetcher.policy().allow_http_loopback,
        )?;
        let response = self
            .user_agent
            .authorize(&AuthorizationRedirect {
                url: &pending.url,
                redirect_uri: &redirect_uri,
                state: &pending.state,
                listener: &listener,
                fetcher: &self.fetcher,
            })
            .await?;
        drop(listener);
        let code = pending.accept(&response)?;
        let auth = self.client_auth(state, client)?;
        let key = self.dpop_key_for(state, discovery)?;
        let prover = key.as_deref().map(|k| self.prover(k));
        let grant = token::exchange_code(
            &self.fetcher,
            discovery.token_endpoint(),
            &auth,
            &pending,
            &code,
            prover.as_ref(),
        )
        .await?;
        let entry =
            self.entry_from_grant(discovery, grant, key, scopes.as_ref(), previously_denied);
        let _lock = self.store.lock(&entry.issuer, &entry.resource).await?;
        self.store.save(&entry)?;
        // Tokens from another AS (or resource) for this server are stale now.
        for old in self.store.list()? {
            if old.server_url == entry.server_url
                && (old.issuer != entry.issuer || old.resource != entry.resource)
            {
                self.store.remove(&old.issuer, &old.resource)?;
            }
        }
        state.current = Some(entry.clone());
        Ok(entry)
    }

    /// A new key for the grant about to be asked for, when it is to be DPoP-bound
    /// ([`OAuthConfig::dpop`]).
    fn dpop_key_for(
        &self,
        state: &State,
        discovery: &Discovery,
    ) -> Result<Option<Arc<SigningKey>>> {
        let offered = state.resource_offers_dpop || dpop::resource_takes_dpop(&discovery.prm);
        dpop::choose(self.config.dpop, &discovery.as_metadata, offered)?
            .map(dpop::new_key)
            .transpose()
    }

    /// How `client` authenticates one request now. A stored `private_key_jwt` registration
    /// has no key (keys never go to disk): it takes the key of the pre-registered client of
    /// its issuer.
    fn client_auth(
        &self,
        state: &State,
        mut client: ClientCredentials,
    ) -> Result<token::ClientAuth> {
        if client.private_key.is_none() {
            client.private_key =
                registration::select_pre_registered(&state.pre_registered, &client.issuer)
                    .filter(|p| p.client_id == client.client_id)
                    .and_then(|p| p.private_key.clone());
        }
        token::client_auth(&client, self.clock.now(), self.rng.as_ref())
    }

    /// The client credentials or JWT-bearer grant at `discovery`'s AS with the pre-registered
    /// client of that issuer (never a dynamic one: a client that registers itself would hold
    /// tokens no one vouched for), for the PRM `resource` and the scopes the challenge and
    /// metadata suggest (never `offline_access`: there is nothing to refresh). Stores the
    /// result.
    async fn unattended_grant(
        &self,
        state: &mut State,
        discovery: &Discovery,
        challenge_scope: Option<&str>,
    ) -> Result<TokenEntry> {
        if registration::select_pre_registered(&state.pre_registered, &discovery.issuer).is_none() {
            return Err(ClientError::NoRegistration {
                issuer: discovery.issuer.clone(),
                detail: "this grant needs a pre-registered client (a client id, with a secret or \
                         a private key where the server asks for one)"
                    .into(),
            });
        }
        let client = self.client_for(state, discovery, "").await?;
        let scopes = scope::select_initial(
            challenge_scope,
            &discovery.prm.scopes_supported,
            &discovery.as_metadata.scopes_supported,
            &self.config.extra_scopes,
            false,
        )
        .map(|s| s.difference(&ScopeSet::from_iter(["offline_access"])));
        let auth = self.client_auth(state, client)?;
        let scope = scopes.as_ref().map(ToString::to_string);
        // Both assertion grants end in the JWT-bearer grant; only where the
        // assertion comes from differs.
        let assertion =
            match self.config.grant {
                Grant::EnterpriseManaged => Some(self.id_jag(discovery, scope.as_deref()).await?),
                Grant::JwtBearer => Some(self.config.assertion.clone().ok_or_else(|| {
                    ClientError::NoRegistration {
                        issuer: discovery.issuer.clone(),
                        detail: "the JWT-bearer grant needs an assertion".into(),
                    }
                })?),
                _ => None,
            };
        let key = self.dpop_key_for(state, discovery)?;
        let prover = key.as_deref().map(|k| self.prover(k));
        let grant = match &assertion {
            Some(assertion) => {
                token::jwt_bearer(
                    &self.fetcher,
                    discovery.token_endpoint(),
                    &auth,
                    assertion,
                    scope.as_deref(),
                    discovery.resource(),
                    prover.as_ref(),
                )
                .await?
            }
            None => {
                token::client_credentials(
                    &self.fetcher,
                    discovery.token_endpoint(),
                    &auth,
                    scope.as_deref(),
                    discovery.resource(),
                    prover.as_ref(),
                )
                .await?
            }
        };
        let entry = self.entry_from_grant(discovery, grant, key, scopes.as_ref(), Vec::new());
        let _lock = self.store.lock(&entry.issuer, &entry.resource).await?;
        self.store.save(&entry)?;
        state.current = Some(entry.clone());
        Ok(entry)
    }

    /// Enterprise-managed authorization's first step: the ID-JAG the
    /// enterprise identity provider ([`OAuthConfig::enterprise`]) exchanges
    /// the user's token for, addressed to `discovery`'s authorization server
    /// and naming its MCP resource.
    async fn id_jag(&self, discovery: &Discovery, scope: Option<&str>) -> Result<Secret> {
        let idp = self
            .config
            .enterprise
            .as_ref()
            .ok_or_else(|| ClientError::NoRegistration {
                issuer: discovery.issuer.clone(),
                detail: "enterprise-managed authorization needs its identity provider".into(),
            })?;
        validate_url(
            "identity provider token endpoint",
            &idp.token_endpoint,
            self.fetcher.policy().allow_http_loopback,
        )?;
        let idp_auth = match &idp.client_secret {
            Some(secret) => token::ClientAuth::basic(&idp.client_id, secret),
            None => token::ClientAuth::none(&idp.client_id),
        };
        token::id_jag(
            &self.fetcher,
            &idp.token_endpoint,
            &idp_auth,
            &token::IdJagRequest {
                subject_token: &idp.subject_token,
                subject_token_type: &idp.subject_token_type,
                audience: &discovery.issuer,
                resource: discovery.resource(),
                scope,
            },
        )
        .await
    }

    fn entry_from_grant(
        &self,
        discovery: &Discovery,
        grant: TokenGrant,
        dpop_key: Option<Arc<SigningKey>>,
        requested: Option<&ScopeSet>,
        previously_denied: Vec<String>,
    ) -> TokenEntry {
        let now = self.clock.now();
        let granted = grant.scope.as_deref().map(scope::parse_lenient);
        let newly_denied = scope::denied(requested, granted.as_ref());
        let held = granted.clone().or_else(|| requested.cloned());
        let mut denied = ScopeSet::from_iter(previously_denied.iter().map(String::as_str));
        if let Some(h) = &held {
            denied = denied.difference(h);
        }
        denied = denied.union(&newly_denied);
        if !newly_denied.is_empty() {
            tracing::warn!(scopes = %newly_denied, "the authorization server did not grant every requested scope");
        }
        TokenEntry {
            issuer: discovery.issuer.clone(),
            resource: discovery.resource().to_owned(),
            server_url: self.config.server_url.clone(),
            access_token: grant.access_token,
            refresh_token: grant.refresh_token,
            expires_at: grant.expires_in.map(|s| now + s),
            scope: held.map(|s| s.to_string()).filter(|s| !s.is_empty()),
            denied_scopes: denied.to_vec(),
            updated_at: now,
            dpop_key: dpop_key.filter(|_| grant.dpop_bound),
        }
    }
}
