//! The authorization endpoint (OAuth 2.1 §4.1.1, RFC 7636, RFC 8707,
//! RFC 9207). Order matters: `client_id` and the exact `redirect_uri` are
//! checked before anything else, and a failure there is an error page that
//! never redirects. Only then do errors go back to the client's redirect URI
//! (always with `iss`). Then login, then consent, then the code.

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use mcpgate_store::{AuthCodeRecord, ClientRecord, ConsentRecord, StoreError, UserRecord};
use mcpgate_types::redirect_uri::{display_host, is_localhost_only, matches_registered};
use mcpgate_types::secret::hash_secret;
use mcpgate_types::{OAuthErrorCode, ScopeSet, pkce, resource};

pub use crate::clients::Fetch;
use crate::clients::{ClientLookupError, Read, is_public, lookup};
use crate::csrf;
use crate::pages::{Common, ConsentPage, ScopeLine, error_page, html, store_error_page};
use crate::params::Params;
use crate::session::{self, SessionUser};
use crate::settings::Holder;
use crate::state::AppState;

/// The request parameters that define an authorization request, in the
/// order they are carried through the login and consent forms.
pub const REQUEST_PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "resource",
    "prompt",
    "response_mode",
];

/// A request whose every parameter has been checked.
#[derive(Debug, Clone)]
pub struct Validated {
    pub client: ClientRecord,
    pub redirect_uri: String,
    pub state: Option<String>,
    pub scopes: ScopeSet,
    pub resource: String,
    pub code_challenge: String,
    pub prompt: Option<String>,
    /// The request's own parameters, exactly as received (for the forms).
    pub params: Vec<(String, String)>,
}

/// Where an error goes.
pub enum Failure {
    /// Client or redirect URI cannot be trusted: show a page, never redirect.
    Page(StatusCode, String),
    /// Send the error to the (verified) redirect URI, if the client is one
    /// this server may send users to unasked (see [`redirects_unasked`]);
    /// otherwise show it on a page.
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        code: OAuthErrorCode,
        description: String,
        /// The client is pre-registered.
        trusted: bool,
    },
    /// A metadata-document client this server has not fetched yet: the
    /// user signs in first, and only then is the document fetched.
    SignInFirst,
    /// The store failed: 503 with `Retry-After` when it cannot be reached
    /// now, else 500 ([`crate::pages::store_error_page`]).
    Store(StoreError),
}

impl Failure {
    pub fn into_response(self, app: &AppState) -> Response {
        match self {
            Failure::Page(status, msg) => error_page(
                app,
                status,
                "This sign-in request cannot be completed",
                &msg,
            ),
            Failure::Redirect {
                redirect_uri,
                state,
                code,
                description,
                trusted,
            } => to_client(
                app,
                trusted,
                &redirect_uri,
                state.as_deref(),
                code,
                &description,
            ),
            // Answered by a sign-in redirect where the request is known
            // (`handle`); anywhere else it is a request to start over.
            Failure::SignInFirst => error_page(
                app,
                StatusCode::BAD_REQUEST,
                "This sign-in request cannot be completed",
                "Sign in first, then start again from the application.",
            ),
            Failure::Store(e) => store_error_page(app, "authorization request", &e),
        }
    }
}

/// May an error go back to this client's redirect URI without the user
/// having chosen to go there (RFC 9700 §4.11.2: not an open redirector)? A
/// pre-registered client, yes; a self-registered or metadata-document
/// client only once this user has approved it. Anyone can register
/// `https://evil.example/cb`, and an error redirect would bounce users there
/// under this server's name.
pub fn redirects_unasked(client: &ClientRecord, approved_by_this_user: bool) -> bool {
    client.kind == mcpgate_store::ClientKind::PreRegistered || approved_by_this_user
}

/// Must the user confirm this request in the browser even though consent is
/// on record? Yes for a public client sending the code to a loopback
/// redirect URI. RFC 8252 §7.3 lets such a redirect use any port
/// ([`matches_registered`]), and a public client has no secret: any program
/// on the user's machine, or a page that can start a listener there, can
/// send the user here with a known public `client_id` and a port of its own.
/// Consent on record approved the application, not whoever listens on that
/// port, so the code goes out only after the user has seen this request's
/// full redirect URI, port included, and clicked (`POST /consent`, with the
/// form bound to this exact request and usable once). Confidential clients
/// prove themselves at the token endpoint; other redirect URIs are exact
/// strings the client registered, and keep skipping the page.
pub fn needs_click(client: &ClientRecord, redirect_uri: &str) -> bool {
    is_public(client) && is_localhost_only(redirect_uri)
}

/// An OAuth error for the client: redirected when `trusted`, else shown on
/// a page that names it and sends the user nowhere.
fn to_client(
    app: &AppState,
    trusted: bool,
    redirect_uri: &str,
    state: Option<&str>,
    code: OAuthErrorCode,
    description: &str,
) -> Response {
    if trusted {
        return redirect_with(
            app,
            redirect_uri,
            &[("error", code.as_str()), ("error_description", description)],
            state,
        );
    }
    error_page(
        app,
        StatusCode::BAD_REQUEST,
        "This sign-in request cannot be completed",
        &format!(
            "The application's request was refused ({}: {description}). You were not sent back to it, \
             because you have not approved this application here.",
            code.as_str()
        ),
    )
}

/// Builds the redirect back to the client: the registered URI with our
/// parameters appended (its own query kept), `state` echoed, `iss` always.
pub fn redirect_with(
    app: &AppState,
    redirect_uri: &str,
    pairs: &[(&str, &str)],
    state: Option<&str>,
) -> Response {
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        ser.append_pair(k, v);
    }
    if let Some(s) = state {
        ser.append_pair("state", s);
    }
    ser.append_pair("iss", &app.settings.issuer);
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    let location = format!("{redirect_uri}{sep}{}", ser.finish());
    let mut r = Redirect::to(&location).into_response();
    *r.status_mut() = StatusCode::SEE_OTHER;
    crate::pages::security_headers(r.headers_mut());
    r
}

/// Validates an authorization request (the same code for GET, POST and the
/// consent form, so a replayed form is checked as strictly as a fresh request).
pub async fn validate(app: &AppState, p: &Params, fetch: Fetch) -> Result<Validated, Failure> {
    // 1. client_id and redirect_uri, before anything else.
    if let Some(name) = p.first_repeated(&["client_id", "redirect_uri"]) {
        return Err(Failure::Page(
            StatusCode::BAD_REQUEST,
            format!("The parameter {name} appears more than once."),
        ));
    }
    let client_id = p.get("client_id").ok_or_else(|| {
        Failure::Page(
            StatusCode::BAD_REQUEST,
            "The request names no client (client_id is missing).".into(),
        )
    })?;
    let client = match lookup(app, client_id, fetch, Read::Current).await {
        Ok(c) => c,
        Err(ClientLookupError::NotFetched) => return Err(Failure::SignInFirst),
        Err(ClientLookupError::Untrusted) => {
            return Err(Failure::Page(
                StatusCode::BAD_REQUEST,
                "This server does not accept applications registered on that domain.".into(),
            ));
        }
        Err(ClientLookupError::Busy) => {
            return Err(Failure::Page(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many applications are being looked up right now. Try again in a minute."
                    .into(),
            ));
        }
        Err(ClientLookupError::Unknown) => {
            return Err(Failure::Page(
                StatusCode::BAD_REQUEST,
                "The application that sent you here is not registered with this server.".into(),
            ));
        }
        Err(ClientLookupError::BadMetadata(m)) => {
            return Err(Failure::Page(
                StatusCode::BAD_REQUEST,
                format!("The application's registration is not valid: {m}."),
            ));
        }
        Err(ClientLookupError::Store(e)) => return Err(Failure::Store(e)),
    };
    if !client.grant_types.iter().any(|g| g == "authorization_code") {
        return Err(Failure::Page(
            StatusCode::BAD_REQUEST,
            "This application is not allowed to sign users in.".into(),
        ));
    }
    let redirect_uri = match p.get("redirect_uri") {
        Some(r) if matches_registered(r, &client.redirect_uris) => r.to_string(),
        Some(_) => {
            return Err(Failure::Page(StatusCode::BAD_REQUEST, "The redirect URI in this request is not one the application registered. You were not sent anywhere.".into()));
        }
        None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
        None => {
            return Err(Failure::Page(
                StatusCode::BAD_REQUEST,
                "The request has no redirect_uri.".into(),
            ));
        }
    };

    // 2. From here on, errors go back to the client.
    let state = p.get("state").map(str::to_string);
    let trusted = redirects_unasked(&client, false);
    let fail = |code: OAuthErrorCode, d: &str| Failure::Redirect {
        redirect_uri: redirect_uri.clone(),
        state: state.clone(),
        code,
        description: d.to_string(),
        trusted,
    };
    if let Some(name) = p.first_repeated(REQUEST_PARAMS) {
        return Err(fail(
            OAuthErrorCode::InvalidRequest,
            &format!("parameter {name} is repeated"),
        ));
    }
    match p.get("response_type") {
        Some("code") => {}
        Some(_) => {
            return Err(fail(
                OAuthErrorCode::UnsupportedResponseType,
                "only response_type=code is supported",
            ));
        }
        None => {
            return Err(fail(
                OAuthErrorCode::InvalidRequest,
                "response_type is required",
            ));
        }
    }
    if let Some(mode) = p.get("response_mode")
        && mode != "query"
    {
        return Err(fail(
            OAuthErrorCode::InvalidRequest,
            "only response_mode=query is supported",
        ));
    }
    let code_challenge = p.get("code_challenge").ok_or_else(|| {
        fail(
            OAuthErrorCode::InvalidRequest,
            "PKCE is required: code_challenge is missing",
        )
    })?;
    match p.get("code_challenge_method") {
        Some("S256") => {}
        Some(_) => {
            return Err(fail(
                OAuthErrorCode::InvalidRequest,
                "code_challenge_method must be S256",
            ));
        }
        None => {
            return Err(fail(
                OAuthErrorCode::InvalidRequest,
                "code_challenge_method is required and must be S256",
            ));
        }
    }
    if !pkce::is_valid_s256_challenge(code_challenge) {
        return Err(fail(
            OAuthErrorCode::InvalidRequest,
            "code_challenge is not a valid S256 challenge",
        ));
    }
    let requested = p.get("resource").ok_or_else(|| {
        fail(
            OAuthErrorCode::InvalidTarget,
            "resource is required (RFC 8707)",
        )
    })?;
    if resource::validate(requested).is_err() {
        return Err(fail(
            OAuthErrorCode::InvalidTarget,
            "resource must be an absolute URI without a fragment",
        ));
    }
    let canonical = resource::find_canonical(requested, &app.settings.resource_uris())
        .ok_or_else(|| {
            fail(
                OAuthErrorCode::InvalidTarget,
                "this server does not issue tokens for that resource",
            )
        })?
        .to_string();
    let scopes = parse_scopes(app, &client, p.get("scope").unwrap_or(""))
        .map_err(|d| fail(OAuthErrorCode::InvalidScope, &d))?;
    let prompt = p.get("prompt").map(str::to_string);
    if let Some(pr) = &prompt
        && !pr
            .split(' ')
            .all(|v| matches!(v, "none" | "login" | "consent"))
    {
        return Err(fail(
            OAuthErrorCode::InvalidRequest,
            "prompt must be none, login or consent",
        ));
    }
    let params = REQUEST_PARAMS
        .iter()
        .filter_map(|k| p.get(k).map(|v| (k.to_string(), v.to_string())))
        .collect();
    Ok(Validated {
        client,
        redirect_uri,
        state,
        scopes,
        resource: canonical,
        code_challenge: code_challenge.to_string(),
        prompt,
        params,
    })
}

/// Scopes must be configured and, if the client has a list, on it.
pub fn parse_scopes(app: &AppState, client: &ClientRecord, raw: &str) -> Result<ScopeSet, String> {
    let scopes = ScopeSet::parse(raw).map_err(|e| e.to_string())?;
    for s in scopes.iter() {
        if app.settings.scope(s).is_none() {
            return Err(format!("unknown scope {s:?}"));
        }
        if !client.allowed_scopes.is_empty() && !client.allowed_scopes.iter().any(|a| a == s) {
            return Err(format!("this client may not request scope {s:?}"));
        }
    }
    Ok(scopes)
}

/// `GET /oauth/authorize`
pub async fn get(
    State(app): State<AppState>,
    ConnectInfo(_peer): ConnectInfo<std::net::SocketAddr>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let p = Params::parse(q.unwrap_or_default().as_bytes());
    handle(&app, &p, &headers).await
}

/// `POST /oauth/authorize` (OAuth 2.1 allows form POST to the endpoint).
pub async fn post(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    match crate::pages::form_params(&app, &headers, &body) {
        Ok(p) => handle(&app, &p, &headers).await,
        Err(page) => page,
    }
}

/// Sends the user to sign in, then back to this exact authorization request
/// (without `prompt=login`, so the loop ends).
fn sign_in_then<'a>(app: &AppState, params: impl Iterator<Item = (&'a str, &'a str)>) -> Response {
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    for (k, val) in params {
        if k == "prompt" {
            let rest: Vec<&str> = val.split(' ').filter(|x| *x != "login").collect();
            if !rest.is_empty() {
                ser.append_pair(k, &rest.join(" "));
            }
            continue;
        }
        ser.append_pair(k, val);
    }
    let return_to = format!(
        "{}/oauth/authorize?{}",
        Common::new(app).asset_base,
        ser.finish()
    );
    session::redirect_to_login(app, &return_to)
}

async fn handle(app: &AppState, p: &Params, headers: &HeaderMap) -> Response {
    // The browser's session, looked up once for the whole request.
    let current = session::current(app, headers).await;
    // A metadata-document client is fetched only for a signed-in user: an
    // anonymous request cannot make this server fetch URLs.
    let fetch = if matches!(current, Ok(Some(_))) {
        Fetch::Allowed
    } else {
        Fetch::CacheOnly
    };
    let mut v = match validate(app, p, fetch).await {
        Ok(v) => v,
        Err(Failure::SignInFirst) => return sign_in_then(app, p.pairs()),
        Err(Failure::Redirect {
            redirect_uri,
            state,
            code,
            description,
            trusted: false,
        }) => {
            // A client the signed-in user approved may hear of its errors.
            let client_id = p.get("client_id").unwrap_or_default();
            let approved = match current.as_ref().ok().and_then(Option::as_ref) {
                Some(u) => app.store.get_consent(&u.user.id, client_id).await.is_ok(),
                None => false,
            };
            return to_client(
                app,
                approved,
                &redirect_uri,
                state.as_deref(),
                code,
                &description,
            );
        }
        Err(f) => return f.into_response(app),
    };
    let prompt = v.prompt.clone();
    let prompt_has = |x: &str| {
        prompt
            .as_deref()
            .is_some_and(|p| p.split(' ').any(|y| y == x))
    };
    let user = match current {
        Ok(Some(u)) if !prompt_has("login") => u,
        Ok(_) if prompt_has("none") => {
            return to_client(
                app,
                redirects_unasked(&v.client, false),
                &v.redirect_uri,
                v.state.as_deref(),
                OAuthErrorCode::LoginRequired,
                "the user is not signed in",
            );
        }
        Ok(_) => {
            return sign_in_then(app, v.params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        }
        Err(e) => return Failure::Store(e).into_response(app),
    };
    // Consent registry: approved before for at least these scopes and this resource?
    let existing = match app
        .store
        .get_consent(&user.user.id, &v.client.client_id)
        .await
    {
        Ok(c) => Some(c),
        Err(StoreError::NotFound) => None,
        Err(e) => return Failure::Store(e).into_response(app),
    };
    let trusted = redirects_unasked(&v.client, existing.is_some());
    if let Some(r) = entitle(app, &mut v, &user.user, trusted) {
        return r;
    }
    let covered = existing.as_ref().is_some_and(|c| {
        v.scopes.iter().all(|s| c.scopes.iter().any(|g| g == s))
            && c.resources.iter().any(|r| r == &v.resource)
    });
    let click = needs_click(&v.client, &v.redirect_uri);
    if covered && !prompt_has("consent") && !click {
        return issue_code(app, &v, &user).await;
    }
    if prompt_has("none") {
        let description = if covered {
            "the user must confirm this loopback redirect URI in the browser"
        } else {
            "the user has not approved this client"
        };
        return to_client(
            app,
            trusted,
            &v.redirect_uri,
            v.state.as_deref(),
            OAuthErrorCode::ConsentRequired,
            description,
        );
    }
    // With consent on record (only a loopback click is missing), the page
    // asks to continue instead of asking for approval again.
    let confirm_only = covered && !prompt_has("consent");
    consent_page(app, &v, &user, existing.as_ref(), confirm_only)
}

/// Consent is not entitlement: narrows the request to the scopes this user
/// may be granted for its resource (`grantable_to`; RFC 6749 §3.3 lets the
/// server grant fewer than requested). A request that named scopes and has
/// none left is `access_denied` (the answer returned). Runs before the
/// consent page and again on its answer, so neither page nor form can offer
/// more.
fn entitle(
    app: &AppState,
    v: &mut Validated,
    user: &UserRecord,
    trusted: bool,
) -> Option<Response> {
    let entitled = app
        .settings
        .entitled(Holder::User(user), &v.scopes, &v.resource);
    if entitled.len() == v.scopes.len() {
        return None;
    }
    let withheld = v.scopes.difference(&entitled);
    tracing::info!(user = %user.id, client_id = %v.client.client_id, resource = %v.resource, withheld = %withheld, "scopes the user may not be granted were left out");
    if entitled.is_empty() {
        return Some(to_client(
            app,
            trusted,
            &v.redirect_uri,
            v.state.as_deref(),
            OAuthErrorCode::AccessDenied,
            &format!("the user may not be granted the requested scopes ({withheld})"),
        ));
    }
    v.scopes = entitled;
    None
}

/// The binding of a consent form's CSRF token: the login session, the
/// form's own random id and every parameter of the request, so a token shown
/// for one client, scope set, redirect URI (port included), `state` or PKCE
/// challenge cannot approve another, and the id names the form for
/// [`spend_form`] (single use).
pub fn consent_binding(session_hash: &str, form_id: &str, params: &[(String, String)]) -> Vec<u8> {
    let mut b = csrf::bind_params(&[
        ("session".to_string(), session_hash.to_string()),
        ("form".to_string(), form_id.to_string()),
    ]);
    b.extend(csrf::bind_params(params));
    b
}

/// How long a consent page may be left open before its form expires.
const CONSENT_FORM_TTL: i64 = 600;

fn consent_page(
    app: &AppState,
    v: &Validated,
    user: &SessionUser,
    existing: Option<&ConsentRecord>,
    confirm_only: bool,
) -> Response {
    let c = Common::new(app);
    let form_id = app.random(24);
    let token = csrf::issue(
        &app.csrf_key,
        "consent",
        &consent_binding(&user.session_hash, &form_id, &v.params),
        app.now() + CONSENT_FORM_TTL,
    );
    let scopes = v
        .scopes
        .iter()
        .map(|s| ScopeLine {
            name: s.to_string(),
            description: app
                .settings
                .scope(s)
                .map(|d| d.description.clone())
                .unwrap_or_default(),
            is_new: existing.is_some_and(|e| !e.scopes.iter().any(|g| g == s)),
        })
        .collect();
    let resource_name = app
        .settings
        .resources
        .iter()
        .find(|r| r.uri == v.resource)
        .map(|r| r.name.as_str())
        .unwrap_or(v.resource.as_str());
    let verified_host = (v.client.kind == mcpgate_store::ClientKind::Cimd)
        .then(|| display_host(&v.client.client_id));
    let name = v
        .client
        .client_name
        .clone()
        .unwrap_or_else(|| "An unnamed application".into());
    html(
        StatusCode::OK,
        &ConsentPage {
            asset_base: &c.asset_base,
            issuer_host: &c.issuer_host,
            client_name: &name,
            client_id: &v.client.client_id,
            client_verified_host: verified_host,
            redirect_host: display_host(&v.redirect_uri),
            redirect_uri: &v.redirect_uri,
            redirect_port: is_localhost_only(&v.redirect_uri)
                .then(|| {
                    url::Url::parse(&v.redirect_uri)
                        .ok()?
                        .port_or_known_default()
                })
                .flatten(),
            confirm_only,
            resource: &v.resource,
            resource_name,
            username: user
                .user
                .display_name
                .as_deref()
                .unwrap_or(&user.user.username),
            scopes,
            params: v.params.clone(),
            form_id: &form_id,
            csrf: &token,
        },
    )
}

/// `POST /consent`: the user's decision.
pub async fn consent_post(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let p = match crate::pages::form_params(&app, &headers, &body) {
        Ok(p) => p,
        Err(page) => return page,
    };
    let user = match session::current(&app, &headers).await {
        Ok(Some(u)) => u,
        Ok(None) => {
            return error_page(
                &app,
                StatusCode::FORBIDDEN,
                "You are not signed in",
                "Your sign-in session ended. Start again from the application.",
            );
        }
        Err(e) => return Failure::Store(e).into_response(&app),
    };
    if p.repeated()
        .iter()
        .any(|r| matches!(r.as_str(), "csrf" | "decision" | "form"))
    {
        return error_page(
            &app,
            StatusCode::BAD_REQUEST,
            "Invalid form",
            "The form was malformed.",
        );
    }
    let Some(form_id) = p.get("form").filter(|f| !f.is_empty()) else {
        return error_page(
            &app,
            StatusCode::BAD_REQUEST,
            "Invalid form",
            "The form was malformed: it has no form id.",
        );
    };
    // The CSRF token must match this session and exactly these parameters.
    let params: Vec<(String, String)> = REQUEST_PARAMS
        .iter()
        .filter_map(|k| p.get(k).map(|v| (k.to_string(), v.to_string())))
        .collect();
    let token = p.get("csrf").unwrap_or("");
    if !csrf::verify(
        &app.csrf_key,
        "consent",
        &consent_binding(&user.session_hash, form_id, &params),
        token,
        app.now(),
    ) {
        return error_page(
            &app,
            StatusCode::FORBIDDEN,
            "This form cannot be accepted",
            "The consent form was not the one shown to you, or it expired. Start again from the application.",
        );
    }
    let mut v = match validate(&app, &p, Fetch::Allowed).await {
        Ok(v) => v,
        Err(f) => return f.into_response(&app),
    };
    // The user has seen the consent page, which names where the answer goes.
    if let Some(r) = entitle(&app, &mut v, &user.user, true) {
        return r;
    }
    let approve = match p.get("decision") {
        Some("approve") => true,
        Some("deny") => false,
        _ => {
            return error_page(
                &app,
                StatusCode::BAD_REQUEST,
                "Invalid form",
                "Choose Allow or Deny.",
            );
        }
    };
    // One answer per form: a replayed or second submission (of either
    // answer) changes nothing and issues no second code.
    // The mark outlives the form's CSRF token.
    match app.spend_once(form_id, app.now() + CONSENT_FORM_TTL).await {
        Ok(true) => {}
        Ok(false) => {
            return error_page(
                &app,
                StatusCode::CONFLICT,
                "This form was already answered",
                "This request was answered already, and each answer counts once. Start again from the application.",
            );
        }
        Err(e) => return Failure::Store(e).into_response(&app),
    }
    if !approve {
        return redirect_with(
            &app,
            &v.redirect_uri,
            &[
                ("error", "access_denied"),
                ("error_description", "the user denied the request"),
            ],
            v.state.as_deref(),
        );
    }
    if let Err(e) = record_consent(&app, &user.user, &v).await {
        return Failure::Store(e).into_response(&app);
    }
    issue_code(&app, &v, &user).await
}

/// Adds the approved scopes and resource to the user's consent for the client.
async fn record_consent(
    app: &AppState,
    user: &UserRecord,
    v: &Validated,
) -> Result<(), StoreError> {
    let now = app.now();
    let (mut scopes, mut resources, granted_at) =
        match app.store.get_consent(&user.id, &v.client.client_id).await {
            Ok(c) => (c.scopes, c.resources, c.granted_at),
            Err(StoreError::NotFound) => (Vec::new(), Vec::new(), now),
            Err(e) => return Err(e),
        };
    for s in v.scopes.iter() {
        if !scopes.iter().any(|g| g == s) {
            scopes.push(s.to_string());
        }
    }
    if !resources.contains(&v.resource) {
        resources.push(v.resource.clone());
    }
    scopes.sort();
    resources.sort();
    app.store
        .upsert_consent(&ConsentRecord {
            user_id: user.id.clone(),
            client_id: v.client.client_id.clone(),
            scopes,
            resources,
            granted_at,
            updated_at: now,
        })
        .await
}

async fn issue_code(app: &AppState, v: &Validated, user: &SessionUser) -> Response {
    let code = app.random(32);
    let now = app.now();
    let rec = AuthCodeRecord {
        code_hash: hash_secret(&code),
        client_id: v.client.client_id.clone(),
        user_id: user.user.id.clone(),
        redirect_uri: v.redirect_uri.clone(),
        scopes: v.scopes.to_vec(),
        resource: v.resource.clone(),
        code_challenge: v.code_challenge.clone(),
        auth_time: user.auth_time,
        created_at: now,
        expires_at: now + app.settings.code_ttl.min(60),
        used_at: None,
    };
    if let Err(e) = app.store.insert_code(&rec).await {
        return Failure::Store(e).into_response(app);
    }
    tracing::info!(client_id = %v.client.client_id, user = %user.user.id, resource = %v.resource, "authorization code issued");
    let mut r = redirect_with(app, &v.redirect_uri, &[("code", &code)], v.state.as_deref());
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    r
}
