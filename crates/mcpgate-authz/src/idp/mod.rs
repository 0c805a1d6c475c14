//! Sign-in with an upstream identity provider (OIDC or plain OAuth 2.0),
//! ordered so the confused-deputy attack (MCP Security Best Practices,
//! "Confused Deputy") cannot work:
//!
//! 1. `/oauth/authorize` validates `client_id` and the exact `redirect_uri`
//!    first. A user who already has an mcpgate session never reaches the
//!    provider at all: the per-client consent registry and mcpgate's own
//!    consent page decide (see [`crate::authorize`]).
//! 2. Without a session the login page offers the providers. Only when the
//!    user chooses one (a POST with the login CSRF token) does
//!    [`start`] re-validate the bound authorization request, create the
//!    upstream `state` (random, stored server side as a hash with the
//!    nonce hash, the sealed PKCE verifier and the request, for at most
//!    ten minutes) and set the `__Host-` binding cookie — on the very
//!    response that redirects to the provider, never earlier.
//! 3. [`callback`] takes the record with one conditional delete that needs
//!    the state AND the cookie to match (missing, reused, expired or
//!    another browser's state are refused), checks RFC 9207 `iss`, redeems
//!    the code with the PKCE verifier, validates the ID token, applies the
//!    allowlist, links or creates the user, and starts the session. The
//!    user then returns to `/oauth/authorize`, where mcpgate's consent for
//!    that client still has to be given before any code is issued.

pub(crate) mod upstream;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use mcpgate_store::{LinkedIdentityRecord, StoreError, UpstreamStateRecord, UserRecord};
use mcpgate_types::secret::hash_secret;

use upstream::UpstreamError;
pub(crate) use upstream::{Cache, acceptable_url};

use crate::authorize;
use crate::cookies;
use crate::pages::{Common, error_page};
use crate::params::Params;
use crate::session;
use crate::settings::{IdentityProvider, ProviderKind};
use crate::state::AppState;

/// Upstream sign-in state lives at most this long (seconds).
pub const UPSTREAM_STATE_TTL: i64 = 600;

/// Where the provider sends the user back.
pub(crate) fn callback_url(app: &AppState, p: &IdentityProvider) -> String {
    app.settings
        .endpoint(&format!("/login/idp/{}/callback", p.name))
}

fn refuse(app: &AppState, status: StatusCode, message: &str) -> Response {
    SIGN_IN.refuse(app, status, message)
}

/// A flow this server runs at another authorization server, as its client,
/// in the user's browser: an upstream sign-in, or connecting an account
/// (`crate::connect`). Each has its binding cookie and its words.
pub(crate) struct Flow {
    /// The `__Host-` cookie that binds the flow's state to the browser.
    pub cookie: &'static str,
    /// The title of its error pages.
    pub title: &'static str,
    /// What the user started, in messages ("sign-in", "connection").
    pub what: &'static str,
}

const SIGN_IN: Flow = Flow {
    cookie: cookies::UPSTREAM,
    title: "This sign-in cannot be completed",
    what: "sign-in",
};

impl Flow {
    /// The redirect to the other server that starts the flow, setting the
    /// cookie that binds its state to this browser (the only place it is
    /// ever set).
    pub(crate) fn start(&self, location: &str, binding: &str, ttl: i64) -> Response {
        let mut r = Redirect::to(location).into_response();
        *r.status_mut() = StatusCode::SEE_OTHER;
        crate::pages::security_headers(r.headers_mut());
        r.headers_mut().append(
            header::SET_COOKIE,
            cookies::set_cookie(self.cookie, binding, ttl),
        );
        r
    }

    /// RFC 9207 §2.4 on the answer's `iss`: when present it must be exactly
    /// `issuer` (if the issuer is known), and it must be present when the
    /// server promised to send it. A mismatch is a possible mix-up attack.
    #[allow(
        clippy::result_large_err,
        reason = "the error is the page itself, built once per refused request"
    )]
    pub(crate) fn check_iss(
        &self,
        app: &AppState,
        answered: Option<&str>,
        issuer: Option<&str>,
        promised: bool,
    ) -> Result<(), Response> {
        match (answered, issuer) {
            (Some(iss), Some(known)) if iss != known => Err(self.refuse(
                app,
                StatusCode::BAD_REQUEST,
                "The answer names another issuer than the server you were sent to (possible mix-up attack).",
            )),
            (None, _) if promised => Err(self.refuse(
                app,
                StatusCode::BAD_REQUEST,
                "The answer lacks its issuer, which the server promised to send.",
            )),
            _ => Ok(()),
        }
    }

    /// An error page that also clears the flow's cookie.
    pub(crate) fn refuse(&self, app: &AppState, status: StatusCode, message: &str) -> Response {
        let mut r = error_page(app, status, self.title, message);
        r.headers_mut()
            .append(header::SET_COOKIE, cookies::set_cookie(self.cookie, "", 0));
        r
    }
}

/// Reads the other server's answer to `flow` (its redirect back here):
/// every parameter once, a `state`, the binding cookie, and the state's
/// record taken with one conditional delete that needs both (so a state
/// works once, and only in the browser that started it), made for
/// `provider`. Returns the answer's parameters and the record, or the page
/// to answer.
#[allow(
    clippy::result_large_err,
    reason = "the error is the page itself, built once per refused request"
)]
pub(crate) async fn take_answer(
    app: &AppState,
    q: Option<String>,
    headers: &HeaderMap,
    flow: &Flow,
    provider: &str,
) -> Result<(Params, UpstreamStateRecord), Response> {
    let what = flow.what;
    let refuse = |status, message: &str| Err(flow.refuse(app, status, message));
    let p = Params::parse(q.unwrap_or_default().as_bytes());
    if !p.repeated().is_empty() {
        return refuse(
            StatusCode::BAD_REQUEST,
            &format!("The answer to this {what} was malformed."),
        );
    }
    let Some(state) = p
        .get("state")
        .filter(|s| !s.is_empty() && s.len() <= 128)
        .map(str::to_owned)
    else {
        return refuse(
            StatusCode::BAD_REQUEST,
            &format!(
                "The answer carries no state, so it cannot be matched to a {what} you started."
            ),
        );
    };
    let Some(binding) = cookies::get(headers, flow.cookie).filter(|b| b.len() <= 128) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            &format!(
                "This browser did not start this {what} (its cookie is missing). Start again from your application."
            ),
        );
    };
    let rec = match app
        .store
        .take_upstream_state(&hash_secret(&state), &hash_secret(&binding), app.now())
        .await
    {
        Ok(r) => r,
        Err(StoreError::NotFound) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                &format!(
                    "This {what} has expired, was already used, or was started in another browser. Start again from your application."
                ),
            );
        }
        Err(e) => return Err(store_failed(app, &e)),
    };
    if rec.provider != provider {
        return refuse(
            StatusCode::BAD_REQUEST,
            &format!("This answer belongs to another {what} than the one you started."),
        );
    }
    Ok((p, rec))
}

fn internal(app: &AppState, detail: &str) -> Response {
    tracing::error!(error = %detail, "upstream sign-in failed");
    refuse(
        app,
        StatusCode::INTERNAL_SERVER_ERROR,
        "The server could not complete this sign-in. Try again later.",
    )
}

/// A store failure: 503 with `Retry-After` when the database cannot be
/// reached now (the sign-in state, cookie included, is kept for the retry),
/// else [`internal`].
fn store_failed(app: &AppState, e: &StoreError) -> Response {
    match e {
        StoreError::Unavailable(_) => crate::pages::store_error_page(app, "upstream sign-in", e),
        e => internal(app, &e.to_string()),
    }
}

fn upstream_failed(app: &AppState, p: &IdentityProvider, e: UpstreamError) -> Response {
    match e {
        UpstreamError::Provider(d) => {
            tracing::warn!(provider = %p.name, error = %d, "identity provider unavailable");
            refuse(
                app,
                StatusCode::BAD_GATEWAY,
                "The identity provider could not be reached or refused the request. Try again later.",
            )
        }
        UpstreamError::Invalid(d) => {
            tracing::warn!(provider = %p.name, error = %d, "identity provider response rejected");
            refuse(
                app,
                StatusCode::BAD_REQUEST,
                "The identity provider's answer could not be verified, so you were not signed in.",
            )
        }
        UpstreamError::Config(d) => {
            tracing::error!(provider = %p.name, error = %d, "identity provider misconfigured");
            refuse(
                app,
                StatusCode::BAD_GATEWAY,
                "This identity provider does not accept the way this server is configured to \
                 authenticate to it (private_key_jwt). Ask the administrator to fix the \
                 identity provider configuration.",
            )
        }
    }
}

/// `POST /login/idp/{name}`: the user chose a provider on the login page.
pub async fn start(
    State(app): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !crate::params::is_form(&headers) {
        return refuse(
            &app,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Send the sign-in form as a form.",
        );
    }
    let Some(provider) = app.settings.identity_provider(&name).cloned() else {
        return refuse(&app, StatusCode::NOT_FOUND, "No such identity provider.");
    };
    let p = Params::parse(&body);
    let csrf_ok = crate::session::verified_login_nonce(&app, &headers, &p).is_some();
    if !csrf_ok || !p.repeated().is_empty() {
        return refuse(
            &app,
            StatusCode::FORBIDDEN,
            "The sign-in form expired or was not the one shown to you. Start again from the application.",
        );
    }
    let return_to = p
        .get("return_to")
        .and_then(|r| session::safe_return_to(&app, r))
        .unwrap_or_default();
    // The authorization request this sign-in continues, checked again
    // (client_id and exact redirect_uri first) and bound into the state.
    let request: Vec<(String, String)> = match return_to.split_once('?') {
        // A sign-in for another page (connect, connected accounts) lands
        // on the signed-in page afterwards.
        _ if !session::returns_to_authorize(&app, &return_to) => Vec::new(),
        Some((_, q)) => {
            // Nobody is signed in yet: a metadata-document client not cached
            // is fetched (and the request checked in full) only when the user
            // is back at /oauth/authorize signed in.
            let params = Params::parse(q.as_bytes());
            match authorize::validate(&app, &params, authorize::Fetch::CacheOnly).await {
                Ok(v) => v.params,
                Err(authorize::Failure::SignInFirst) => params
                    .pairs()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                Err(f) => return f.into_response(&app),
            }
        }
        None => Vec::new(),
    };
    let d = match upstream::discover(&app, &provider, false).await {
        Ok(d) => d,
        Err(e) => return upstream_failed(&app, &provider, e),
    };
    let state = app.random(32);
    let nonce = app.random(32);
    let verifier = app.random(32);
    let binding = app.random(32);
    let state_hash = hash_secret(&state);
    let now = app.now();
    let request_params = match serde_json::to_string(&request) {
        Ok(s) => s,
        Err(e) => return internal(&app, &e.to_string()),
    };
    let rec = UpstreamStateRecord {
        sealed_verifier: app.master_key.seal(
            app.rng.as_ref(),
            verifier.as_bytes(),
            state_hash.as_bytes(),
        ),
        state_hash,
        binding_hash: hash_secret(&binding),
        provider: provider.name.clone(),
        nonce_hash: hash_secret(&nonce),
        request_params,
        created_at: now,
        expires_at: now + UPSTREAM_STATE_TTL,
    };
    if let Err(e) = app.store.insert_upstream_state(&rec).await {
        return store_failed(&app, &e);
    }
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    ser.append_pair("response_type", "code")
        .append_pair("client_id", &provider.client_id)
        .append_pair("redirect_uri", &callback_url(&app, &provider))
        .append_pair("scope", &provider.scopes.join(" "))
        .append_pair("state", &state)
        .append_pair(
            "code_challenge",
            &mcpgate_types::pkce::s256_challenge(&verifier),
        )
        .append_pair("code_challenge_method", "S256");
    if provider.kind == ProviderKind::Oidc {
        ser.append_pair("nonce", &nonce);
    }
    let sep = if d.authorization_endpoint.contains('?') {
        '&'
    } else {
        '?'
    };
    let location = format!("{}{sep}{}", d.authorization_endpoint, ser.finish());
    tracing::info!(provider = %provider.name, "redirecting to identity provider");
    SIGN_IN.start(&location, &binding, UPSTREAM_STATE_TTL)
}

/// `GET /login/idp/{name}/callback`: the provider's authorization response.
pub async fn callback(
    State(app): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Some(provider) = app.settings.identity_provider(&name).cloned() else {
        return refuse(&app, StatusCode::NOT_FOUND, "No such identity provider.");
    };
    let (p, rec) = match take_answer(&app, q, &headers, &SIGN_IN, &provider.name).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let d = match upstream::discover(&app, &provider, false).await {
        Ok(d) => d,
        Err(e) => return upstream_failed(&app, &provider, e),
    };
    if let Err(r) = SIGN_IN.check_iss(
        &app,
        p.get("iss"),
        Some(&provider.issuer),
        d.iss_parameter_supported,
    ) {
        return r;
    }
    if p.get("error").is_some() {
        return refuse(
            &app,
            StatusCode::FORBIDDEN,
            "The identity provider did not sign you in.",
        );
    }
    let Some(code) = p.get("code").filter(|c| !c.is_empty()) else {
        return refuse(
            &app,
            StatusCode::BAD_REQUEST,
            "The identity provider sent no code.",
        );
    };
    let verifier = match app
        .master_key
        .open(&rec.sealed_verifier, rec.state_hash.as_bytes())
        .ok()
        .and_then(|v| String::from_utf8(v).ok())
    {
        Some(v) => v,
        None => return internal(&app, "sealed PKCE verifier does not open"),
    };
    let identity = match upstream::exchange(&app, &provider, code, &verifier, &rec.nonce_hash).await
    {
        Ok(i) => i,
        Err(e) => return upstream_failed(&app, &provider, e),
    };
    if let Err(msg) = upstream::allowed(&provider, &identity) {
        tracing::info!(provider = %provider.name, "upstream user refused by the allowlist");
        return refuse(&app, StatusCode::FORBIDDEN, msg);
    }
    let user = match linked_user(&app, &provider, &identity).await {
        Ok(u) => u,
        Err(e) => return store_failed(&app, &e),
    };
    if user.disabled {
        return refuse(
            &app,
            StatusCode::FORBIDDEN,
            "Your account is disabled on this server.",
        );
    }
    let request: Vec<(String, String)> = match serde_json::from_str(&rec.request_params) {
        Ok(r) => r,
        Err(e) => return internal(&app, &e.to_string()),
    };
    let return_to = if request.is_empty() {
        String::new()
    } else {
        let q = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(request.iter())
            .finish();
        format!("{}/oauth/authorize?{q}", Common::new(&app).asset_base)
    };
    let mut r = session::start_session(&app, &user, &return_to).await;
    r.headers_mut().append(
        header::SET_COOKIE,
        cookies::set_cookie(cookies::UPSTREAM, "", 0),
    );
    r
}

/// The local user linked to this upstream identity; created (and linked,
/// in one transaction) on first sign-in. The provider is the source of a
/// linked user's groups: they are replaced by this sign-in's, so a user
/// removed from a group at the provider loses it here at the next sign-in.
async fn linked_user(
    app: &AppState,
    p: &IdentityProvider,
    id: &upstream::Identity,
) -> Result<UserRecord, StoreError> {
    match app.store.get_linked_identity(&p.name, &id.subject).await {
        Ok(link) => {
            let mut user = app.store.get_user(&link.user_id).await?;
            if user.groups != id.groups {
                tracing::info!(provider = %p.name, user = %user.id, "groups refreshed from the provider");
                user.groups = id.groups.clone();
                user.updated_at = app.now();
                app.store.update_user(&user).await?;
            }
            return Ok(user);
        }
        Err(StoreError::NotFound) => {}
        Err(e) => return Err(e),
    }
    let now = app.now();
    let user = UserRecord {
        id: format!("u_{}", app.random(12)),
        username: format!("{}:{}", p.name, id.subject),
        display_name: id.display_name.clone().or_else(|| id.email.clone()),
        password_hash: None,
        groups: id.groups.clone(),
        must_change_password: false,
        disabled: false,
        created_at: now,
        updated_at: now,
    };
    let link = LinkedIdentityRecord {
        provider: p.name.clone(),
        subject: id.subject.clone(),
        user_id: user.id.clone(),
        email: id.email.clone(),
        created_at: now,
    };
    match app.store.create_linked_user(&user, &link).await {
        Ok(()) => {
            tracing::info!(provider = %p.name, user = %user.id, "user created from upstream identity");
            Ok(user)
        }
        // A concurrent first sign-in linked it first: use that user.
        Err(StoreError::Conflict(_)) => {
            let link = app.store.get_linked_identity(&p.name, &id.subject).await?;
            app.store.get_user(&link.user_id).await
        }
        Err(e) => Err(e),
    }
}
