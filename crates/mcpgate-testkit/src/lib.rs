//! Test harness for mcpgate: spawn a whole authorization server on
//! `127.0.0.1:0` (SQLite in a temp dir, or a given store), with a clock the
//! test moves, and drive its real login and consent pages with a headless
//! user agent that follows no redirects on its own.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use mcpgate_authz::admin::{self, ClientSpec, Ctx};
use mcpgate_authz::{AppState, AuthzSettings, Deps, ResourceDef, ScopeDef};
use mcpgate_jose::{FixedClock, MasterKey, SystemClock, SystemRng};
use mcpgate_net::SafeFetcher;
use mcpgate_net::policy::FetchPolicy;
use mcpgate_store::{DynStore, SqliteStore};
use mcpgate_types::client_metadata::TokenEndpointAuthMethod;

pub use mcpgate_types::pkce;

pub mod haproxy;
pub mod pg;

/// The password every test user gets.
pub const PASSWORD: &str = "correct horse battery staple";

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
    server: tokio::task::JoinHandle<()>,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for TestAs {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Knobs for [`TestAs::start_with`].
pub struct Options {
    pub store: Option<DynStore>,
    pub tweak: Box<dyn FnOnce(&mut AuthzSettings) + Send>,
    /// The master key (replicas of one fleet share it); a fresh one if unset.
    pub master_key: Option<Arc<MasterKey>>,
    /// This server as a replica of a fleet sharing `store`.
    pub replica: Option<mcpgate_store::fleet::Replica>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            store: None,
            tweak: Box::new(|_| {}),
            master_key: None,
            replica: None,
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
        let state = AppState::new(
            settings,
            Deps {
                store: store.clone(),
                master_key: master_key.clone(),
                clock: Arc::new(clock.clone()),
                rng: rng.clone(),
                fetcher: SafeFetcher::new(policy),
                replica: opts.replica,
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

/// A headless user agent: keeps cookies, never follows redirects, and
/// submits the real forms the pages render.
pub struct Browser {
    pub http: reqwest::Client,
    cookies: BTreeMap<String, String>,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

/// A response as the browser saw it.
pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    /// The value of a hidden or text input in the page's form.
    pub fn input(&self, name: &str) -> Option<String> {
        let needle = format!("name=\"{name}\" value=\"");
        let start = self.body.find(&needle)? + needle.len();
        let end = self.body[start..].find('"')? + start;
        Some(html_unescape(&self.body[start..end]))
    }

    /// Every hidden input of the page, in order.
    pub fn hidden_inputs(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut rest = self.body.as_str();
        while let Some(i) = rest.find("<input type=\"hidden\" name=\"") {
            rest = &rest[i + 27..];
            let Some(name_end) = rest.find('"') else {
                break;
            };
            let name = rest[..name_end].to_string();
            let Some(v) = rest.find("value=\"") else {
                break;
            };
            let vs = &rest[v + 7..];
            let Some(ve) = vs.find('"') else { break };
            out.push((name, html_unescape(&vs[..ve])));
            rest = &vs[ve..];
        }
        out
    }

    /// Which consent form the page shows: `Some("consent")` (approve a client,
    /// scopes and resource), `Some("confirm")` (consent is on record; the
    /// click that sends a public client's code to a loopback redirect URI),
    /// or `None` for any other page.
    pub fn consent_step(&self) -> Option<&str> {
        if self.status != 200 || !self.body.contains("action=\"/consent\"") {
            return None;
        }
        let needle = "data-step=\"";
        let start = self.body.find(needle)? + needle.len();
        let end = self.body[start..].find('"')? + start;
        Some(&self.body[start..end])
    }

    /// Query parameters of the redirect target.
    pub fn location_params(&self) -> BTreeMap<String, String> {
        let loc = self.location.as_deref().unwrap_or("");
        let q = loc.split_once('?').map(|(_, q)| q).unwrap_or("");
        url::form_urlencoded::parse(q.as_bytes())
            .into_owned()
            .collect()
    }
}

/// Decodes the character references an HTML escaper emits: the named
/// `&amp; &lt; &gt; &quot; &apos;` and every numeric `&#NN;` / `&#xHH;`
/// (askama 0.16 writes `&#38;` for `&`).
pub fn html_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let decoded = rest.find(';').filter(|&end| end <= 10).and_then(|end| {
            let c = match &rest[1..end] {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                e => match e.strip_prefix("#x").or_else(|| e.strip_prefix("#X")) {
                    Some(hex) => u32::from_str_radix(hex, 16).ok().and_then(char::from_u32),
                    None => e
                        .strip_prefix('#')
                        .and_then(|d| d.parse().ok())
                        .and_then(char::from_u32),
                },
            }?;
            Some((c, end))
        });
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

impl Browser {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .expect("reqwest client");
        Self {
            http,
            cookies: BTreeMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn finish(&mut self, resp: reqwest::Response) -> Page {
        for sc in resp.headers().get_all(reqwest::header::SET_COOKIE) {
            let s = sc.to_str().unwrap_or("");
            let first = s.split(';').next().unwrap_or("");
            if let Some((k, v)) = first.split_once('=') {
                if v.is_empty() || s.contains("Max-Age=0") {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_string(), v.to_string());
                }
            }
        }
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let location = headers
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp.text().await.unwrap_or_default();
        Page {
            status,
            location,
            headers,
            body,
        }
    }

    pub async fn get(&mut self, url: &str) -> Page {
        let r = self
            .http
            .get(url)
            .header(reqwest::header::COOKIE, self.cookie_header())
            .send()
            .await
            .expect("GET");
        self.finish(r).await
    }

    pub async fn post_form(&mut self, url: &str, form: &[(String, String)]) -> Page {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form.iter())
            .finish();
        let r = self
            .http
            .post(url)
            .header(reqwest::header::COOKIE, self.cookie_header())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .expect("POST");
        self.finish(r).await
    }

    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies.get(name).map(String::as_str)
    }

    pub fn clear_cookies(&mut self) {
        self.cookies.clear();
    }

    /// Forgets one cookie (for example the AS session, keeping another site's).
    pub fn remove_cookie(&mut self, name: &str) {
        self.cookies.remove(name);
    }

    /// Sets a cookie as if a server had (for replaying a captured value).
    pub fn set_cookie(&mut self, name: &str, value: &str) {
        self.cookies.insert(name.to_string(), value.to_string());
    }

    /// Opens an authorization URL; if sent to the login page, signs in as
    /// `username` with [`PASSWORD`] and follows back. Returns the page that
    /// follows sign-in (consent page, or the redirect to the client).
    pub async fn authorize_as(
        &mut self,
        issuer: &str,
        authorize_url: &str,
        username: &str,
    ) -> Page {
        let page = self.get(authorize_url).await;
        let Some(loc) = page.location.clone().filter(|l| l.starts_with("/login")) else {
            return page;
        };
        let login = self.get(&format!("{issuer}{loc}")).await;
        let form = vec![
            ("csrf".to_string(), login.input("csrf").expect("login csrf")),
            (
                "return_to".to_string(),
                login.input("return_to").unwrap_or_default(),
            ),
            ("username".to_string(), username.to_string()),
            ("password".to_string(), PASSWORD.to_string()),
        ];
        let after = self.post_form(&format!("{issuer}/login"), &form).await;
        match after.location.clone() {
            Some(back) if after.status == 303 => self.get(&format!("{issuer}{back}")).await,
            _ => after,
        }
    }

    /// Submits the consent form on `page` with `decision` ("approve"/"deny").
    pub async fn decide(&mut self, issuer: &str, page: &Page, decision: &str) -> Page {
        let mut form = page.hidden_inputs();
        form.push(("decision".into(), decision.into()));
        self.post_form(&format!("{issuer}/consent"), &form).await
    }

    /// What a user who trusts the application does: approves the consent
    /// form on `page` if there is one (the consent page, or the click a
    /// public client's loopback redirect needs even with consent on record),
    /// and returns what follows; any other page is returned as it is.
    pub async fn approve_if_asked(&mut self, issuer: &str, page: Page) -> Page {
        if page.consent_step().is_some() {
            self.decide(issuer, &page, "approve").await
        } else {
            page
        }
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
        pkce::s256_challenge(&self.verifier)
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

/// `MCPGATE_TEST_REQUIRE` is set (`.ci/run` sets it): trials that need
/// PostgreSQL or Node fail when those are missing, instead of being
/// reported as ignored.
pub fn required_by_ci() -> bool {
    std::env::var_os(REQUIRE_ENV).is_some()
}

/// See [`required_by_ci`].
pub const REQUIRE_ENV: &str = "MCPGATE_TEST_REQUIRE";

#[cfg(test)]
mod tests {
    use super::html_unescape;

    #[test]
    fn unescapes_named_and_numeric_references() {
        assert_eq!(
            html_unescape("/a?b=1&#38;c=2&amp;d=&#x2f;&#39;&quot;&lt;&gt;"),
            "/a?b=1&c=2&d=/'\"<>"
        );
        assert_eq!(
            html_unescape("a & b &bogus; &#xZZ; &"),
            "a & b &bogus; &#xZZ; &"
        );
    }
}
