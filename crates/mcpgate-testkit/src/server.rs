//! A whole authorization server on `127.0.0.1:0` for tests (SQLite in a temp
//! dir, or a given store), with a clock the test moves, plus the pieces of an
//! authorization request and a back-channel form POST.

use mcpgate_authz::admin::{self, ClientSpec, Ctx};
use mcpgate_authz::{AppState, AuthzSettings, Deps, ResourceDef, ScopeDef};
use mcpgate_jose::{FixedClock, MasterKey, SystemClock, SystemRng};
use mcpgate_net::SafeFetcher;
use mcpgate_net::policy::FetchPolicy;
use mcpgate_store::{DynStore, SqliteStore};
use mcpgate_types::client_metadata::TokenEndpointAuthMethod;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::PASSWORD;

/// A running authorization server.
pub struct TestAs {
    pub addr: SocketAddr,
    /// The issuer, `http://127.0.0.1:PORT`.
    pub issuer: String,
    /// The canonical resources the server issues tokens for.
    pub resource: String,
    pub other_resource: String,
    pub state: AppState,
    pub store: DynStore,
    pub clock: FixedClock,
    pub master_key: Arc<MasterKey>,
    pub rng: Arc<SystemRng>,
    /// The vault of [`Options::connections`] (`None` without any).
    pub vault: Option<mcpgate_vault::Vault>,
    server: tokio::task::JoinHandle<()>,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for TestAs {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Makes the `user_oauth` connections of a server from its issuer.
pub type Connections = Box<dyn FnOnce(&str) -> Vec<mcpgate_vault::Connection> + Send>;

/// Knobs for [`TestAs::start_with`].
pub struct Options {
    pub store: Option<DynStore>,
    pub tweak: Box<dyn FnOnce(&mut AuthzSettings) + Send>,
    /// The master key (replicas of one fleet share it); a fresh one if unset.
    pub master_key: Option<Arc<MasterKey>>,
    /// This server as a replica of a fleet sharing `store`.
    pub replica: Option<mcpgate_store::fleet::Replica>,
    /// `user_oauth` upstreams, made from the issuer: the server gets a
    /// vault of these (its fetcher allows loopback, as tests need).
    pub connections: Connections,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            store: None,
            tweak: Box::new(|_| {}),
            master_key: None,
            replica: None,
            connections: Box::new(|_| Vec::new()),
        }
    }
}

impl TestAs {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(opts: Options) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let issuer = format!("http://{addr}");
        let (store, dir): (DynStore, _) = match opts.store {
            Some(s) => (s, None),
            None => {
                let dir = tempfile::tempdir().expect("tempdir");
                let s = SqliteStore::open(&dir.path().join("test.db"))
                    .await
                    .expect("open sqlite");
                (Arc::new(s), Some(dir))
            }
        };
        let rng = Arc::new(SystemRng::new());
        let master_key = opts
            .master_key
            .unwrap_or_else(|| Arc::new(MasterKey::generate(rng.as_ref()).0));
        let now = mcpgate_jose::Clock::now(&SystemClock);
        let clock = FixedClock::new(now);
        let mut settings = AuthzSettings::with_issuer(issuer.clone());
        for (n, d) in [
            ("notes:read", "Read your notes"),
            ("notes:write", "Add notes"),
            ("notes:admin", "Delete notes"),
            ("offline_access", "Stay connected"),
        ] {
            settings.scopes.push(ScopeDef::new(n, d));
        }
        let resource = format!("{issuer}/mcp/notes");
        let other_resource = format!("{issuer}/mcp/other");
        settings.resources = vec![
            ResourceDef::new(resource.clone(), "Notes"),
            ResourceDef::new(other_resource.clone(), "Other"),
        ];
        settings.cimd.allow_http_loopback = true;
        settings.introspection_clients = vec!["resource-server".into()];
        (opts.tweak)(&mut settings);
        // As `serve` builds it: the fetcher follows the settings, so a test
        // that turns the override off gets a fetcher that refuses loopback.
        let policy = FetchPolicy {
            allow_http_loopback: settings.cimd.allow_http_loopback,
            ..FetchPolicy::default()
        };
        let connections = (opts.connections)(&issuer);
        let vault = (!connections.is_empty()).then(|| {
            mcpgate_vault::Vault::new(
                connections,
                mcpgate_vault::VaultDeps {
                    store: store.clone(),
                    master_key: master_key.clone(),
                    rng: rng.clone(),
                    clock: Arc::new(clock.clone()),
                    fetcher: SafeFetcher::new(FetchPolicy::loopback_dev()),
                    pages_base: issuer.clone(),
                },
            )
        });
        let state = AppState::new(
            settings,
            Deps {
                store: store.clone(),
                master_key: master_key.clone(),
                clock: Arc::new(clock.clone()),
                rng: rng.clone(),
                fetcher: SafeFetcher::new(policy),
                replica: opts.replica,
                vault: vault.clone(),
            },
        )
        .await
        .expect("authorization server state");
        let app = mcpgate_authz::router(state.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await;
        });
        Self {
            addr,
            issuer,
            resource,
            other_resource,
            state,
            store,
            clock,
            master_key,
            rng,
            vault,
            server,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    pub fn admin(&self) -> Ctx<'_> {
        Ctx {
            store: &self.store,
            rng: self.rng.as_ref(),
            clock: &self.clock,
            revocation_ttl: self.state.settings().revocation_ttl(),
            vault: self.vault.as_ref(),
        }
    }

    /// Adds a user with [`PASSWORD`].
    pub async fn add_user(&self, username: &str, groups: &[&str]) -> mcpgate_store::UserRecord {
        let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        admin::create_user(&self.admin(), username, None, Some(PASSWORD), &groups)
            .await
            .expect("create user")
            .0
    }

    /// Pre-registers a public client with one redirect URI.
    pub async fn add_public_client(&self, id: &str, redirect_uri: &str) -> String {
        self.add_client(
            id,
            redirect_uri,
            TokenEndpointAuthMethod::None,
            &["authorization_code", "refresh_token"],
        )
        .await
        .0
    }

    /// Pre-registers a client; returns (client_id, secret).
    pub async fn add_client(
        &self,
        id: &str,
        redirect_uri: &str,
        method: TokenEndpointAuthMethod,
        grants: &[&str],
    ) -> (String, Option<String>) {
        let spec = ClientSpec {
            client_id: Some(id.into()),
            name: format!("Test client {id}"),
            redirect_uris: if redirect_uri.is_empty() {
                vec![]
            } else {
                vec![redirect_uri.into()]
            },
            auth_method: method,
            grant_types: grants.iter().map(|g| g.to_string()).collect(),
            scopes: vec![],
            secret: None,
            jwks: None,
            jwks_uri: None,
        };
        let (c, s) = admin::create_client(&self.admin(), &spec, false)
            .await
            .expect("create client");
        (c.client_id, s)
    }
}

/// A PKCE pair and everything an authorization request needs.
pub struct AuthRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub resource: String,
    pub state: String,
    pub verifier: String,
}

impl AuthRequest {
    pub fn new(client_id: &str, redirect_uri: &str, scope: &str, resource: &str) -> Self {
        let rng = SystemRng::new();
        Self {
            client_id: client_id.into(),
            redirect_uri: redirect_uri.into(),
            scope: scope.into(),
            resource: resource.into(),
            state: mcpgate_jose::random_token(&rng, 16),
            verifier: mcpgate_jose::random_token(&rng, 32),
        }
    }

    pub fn challenge(&self) -> String {
        mcpgate_types::pkce::s256_challenge(&self.verifier)
    }

    /// The query pairs of the authorization request.
    pub fn pairs(&self) -> Vec<(String, String)> {
        vec![
            ("response_type".into(), "code".into()),
            ("client_id".into(), self.client_id.clone()),
            ("redirect_uri".into(), self.redirect_uri.clone()),
            ("scope".into(), self.scope.clone()),
            ("state".into(), self.state.clone()),
            ("code_challenge".into(), self.challenge()),
            ("code_challenge_method".into(), "S256".into()),
            ("resource".into(), self.resource.clone()),
        ]
    }

    pub fn url(&self, issuer: &str) -> String {
        self.url_with(issuer, &[])
    }

    /// The authorization URL with some pairs replaced (value `None` removes).
    pub fn url_with(&self, issuer: &str, changes: &[(&str, Option<&str>)]) -> String {
        let mut pairs = self.pairs();
        for (k, v) in changes {
            pairs.retain(|(pk, _)| pk != k);
            if let Some(v) = v {
                pairs.push((k.to_string(), v.to_string()));
            }
        }
        let q = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs.iter())
            .finish();
        format!("{issuer}/oauth/authorize?{q}")
    }

    /// The token request for a code.
    pub fn token_form(&self, code: &str) -> Vec<(String, String)> {
        vec![
            ("grant_type".into(), "authorization_code".into()),
            ("code".into(), code.into()),
            ("redirect_uri".into(), self.redirect_uri.clone()),
            ("client_id".into(), self.client_id.clone()),
            ("code_verifier".into(), self.verifier.clone()),
            ("resource".into(), self.resource.clone()),
        ]
    }
}

/// POSTs a form to the token (or any back-channel) endpoint.
pub async fn post_form(
    http: &reqwest::Client,
    url: &str,
    form: &[(String, String)],
    basic: Option<(&str, &str)>,
) -> (u16, serde_json::Value) {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form.iter())
        .finish();
    let mut req = http
        .post(url)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(body);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    let r = req.send().await.expect("POST");
    let status = r.status().as_u16();
    let v = r.json().await.unwrap_or(serde_json::Value::Null);
    (status, v)
}
