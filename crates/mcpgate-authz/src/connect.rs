//! Each user's own account at a `user_oauth` upstream (MCP elicitation,
//! URL mode; checklist "Third-party OAuth via URL-mode elicitation"): the
//! gateway answers a user without a connected account with a URL-mode
//! elicitation pointing here, and these pages, where users sign in, run
//! the upstream's authorization as its OAuth client.
//!
//! 1. `GET /connect/{upstream}[?elicitation=ID]` needs a signed-in user.
//!    The elicitation id is sealed by the vault and names the user it was
//!    made for: if another user (or nobody, after sign-in) opens it, or it
//!    was altered, the page refuses. Nothing in the URL is secret, and the
//!    URL alone does nothing: the user sees what is being connected, with
//!    which scopes, and clicks.
//! 2. `POST /connect/{upstream}` (CSRF bound to the session, the form and
//!    the elicitation; each form answered once) creates the upstream
//!    `state` and PKCE verifier, stored server side for at most ten minutes
//!    with the user they belong to, sets the `__Host-` binding cookie and
//!    redirects to the upstream's authorization endpoint.
//! 3. `GET /connect/{upstream}/callback` takes the state with one
//!    conditional delete that needs the state AND the binding cookie, so a
//!    state works once and only in the browser that started it; the
//!    signed-in user must still be the one it was made for (a code
//!    injected into another user's flow is refused); RFC 9207 `iss` is
//!    checked; the code is redeemed with the verifier and the tokens go to
//!    the vault, never to the browser or the MCP client.
//!
//! `GET /account/connections` lists the user's connections with a
//! disconnect button each (`POST …/{upstream}/unlink`, CSRF bound to the
//! session and the upstream), which also revokes the tokens at the
//! upstream's server where it offers RFC 7009.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use mcpgate_store::UpstreamStateRecord;
use mcpgate_types::secret::hash_secret;
use mcpgate_vault::{Connection, Vault};
use serde::{Deserialize, Serialize};

use crate::cookies;
use crate::csrf;
use crate::idp::Flow;
use crate::pages::{
    Common, ConnectPage, ConnectionRow, ConnectionsPage, MessagePage, form_params, html,
    store_error_page,
};
use crate::params::Params;
use crate::session::{self, SessionUser};
use crate::state::AppState;

/// A connect flow's state lives at most this long (seconds).
pub const CONNECT_STATE_TTL: i64 = 600;
/// The connect and unlink forms work this long (seconds).
const FORM_TTL: i64 = 1800;
/// The provider name of a connect flow's state record.
const STATE_PREFIX: &str = "connect:";

/// An upstream name as it may appear in a path (`[a-z0-9-]`, as the
/// gateway's configuration requires).
pub(crate) fn is_upstream_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// What a connect flow's state binds, stored with it.
#[derive(Serialize, Deserialize)]
struct Bound {
    user_id: String,
}

fn callback_url(app: &AppState, upstream: &str) -> String {
    app.settings
        .endpoint(&format!("/connect/{upstream}/callback"))
}

/// The connect flow's cookie and words (its answers are read as an
/// upstream sign-in's are: [`crate::idp::take_answer`]).
const CONNECTION: Flow = Flow {
    cookie: cookies::CONNECT,
    title: "This account cannot be connected",
    what: "connection",
};

fn refuse(app: &AppState, status: StatusCode, message: &str) -> Response {
    CONNECTION.refuse(app, status, message)
}

/// The upstream's authorization server cannot be found or reached now.
fn unreachable(app: &AppState, upstream: &str, e: &mcpgate_vault::VaultError) -> Response {
    tracing::warn!(upstream, error = %e, "the upstream's authorization server cannot be found");
    refuse(
        app,
        StatusCode::BAD_GATEWAY,
        "The service's sign-in server cannot be reached now. Try again later.",
    )
}

fn message(app: &AppState, title: &str, text: &str) -> Response {
    let c = Common::new(app);
    let mut r = html(
        StatusCode::OK,
        &MessagePage {
            asset_base: &c.asset_base,
            issuer_host: &c.issuer_host,
            title,
            message: text,
            is_error: false,
            logout_csrf: None,
        },
    );
    r.headers_mut().append(
        header::SET_COOKIE,
        cookies::set_cookie(cookies::CONNECT, "", 0),
    );
    r
}

/// The vault and the connection named `upstream`, or the page to answer.
#[allow(
    clippy::result_large_err,
    reason = "the error is the page itself, built once per refused request"
)]
fn connection(
    app: &AppState,
    upstream: &str,
) -> Result<(Vault, std::sync::Arc<Connection>), Response> {
    let found = app
        .vault
        .as_ref()
        .filter(|_| is_upstream_name(upstream))
        .and_then(|v| v.connection(upstream).ok().map(|c| (v.clone(), c)));
    found.ok_or_else(|| {
        refuse(
            app,
            StatusCode::NOT_FOUND,
            "This server has no service of that name that acts with your own account.",
        )
    })
}

/// What every form posted to one upstream's page needs: the vault and the
/// connection, the form's parameters, and the signed-in user (`gone` says
/// what to do when there is none), or the page to answer.
async fn posted(
    app: &AppState,
    upstream: &str,
    headers: &HeaderMap,
    body: &[u8],
    gone: &str,
) -> Result<(Vault, std::sync::Arc<Connection>, Params, SessionUser), Response> {
    let (vault, conn) = connection(app, upstream)?;
    let p = form_params(app, headers, body)?;
    match signed_in(app, headers).await? {
        Some(user) => Ok((vault, conn, p, user)),
        None => Err(refuse(app, StatusCode::FORBIDDEN, gone)),
    }
}

/// The signed-in user, or the page to answer.
async fn signed_in(app: &AppState, headers: &HeaderMap) -> Result<Option<SessionUser>, Response> {
    session::current(app, headers)
        .await
        .map_err(|e| store_error_page(app, "session lookup", &e))
}

/// The CSRF binding of a connect form: the session, the form, the upstream
/// and the elicitation it answers.
fn connect_binding(
    session_hash: &str,
    form_id: &str,
    upstream: &str,
    elicitation: &str,
) -> Vec<u8> {
    csrf::bind_params(&[
        ("session".into(), session_hash.into()),
        ("form".into(), form_id.into()),
        ("upstream".into(), upstream.into()),
        ("elicitation".into(), elicitation.into()),
    ])
}

fn unlink_binding(session_hash: &str, upstream: &str) -> Vec<u8> {
    csrf::bind_params(&[
        ("session".into(), session_hash.into()),
        ("upstream".into(), upstream.into()),
    ])
}

/// Checks an elicitation id against the signed-in user and the upstream of
/// the path: `Ok` when absent (the user connects their own account from
/// the connected-accounts page) or made for exactly them.
#[allow(
    clippy::result_large_err,
    reason = "the error is the page itself, built once per refused request"
)]
fn check_elicitation(
    app: &AppState,
    vault: &Vault,
    id: &str,
    user: &SessionUser,
    upstream: &str,
) -> Result<(), Response> {
    if id.is_empty() {
        return Ok(());
    }
    let Some((for_user, for_upstream)) = vault.open_elicitation(id) else {
        return Err(refuse(
            app,
            StatusCode::BAD_REQUEST,
            "This link has expired or was not made by this server. Go back to your application and try again to get a new one.",
        ));
    };
    if for_upstream != upstream {
        return Err(refuse(
            app,
            StatusCode::BAD_REQUEST,
            "This link was made for another service.",
        ));
    }
    if for_user != user.user.id {
        tracing::warn!(upstream, user = %user.user.id, "a connect link made for another user was opened");
        return Err(refuse(
            app,
            StatusCode::FORBIDDEN,
            "This link was made for another account than the one signed in here. Only the person whose application asked can use it: sign out, or ask your application again.",
        ));
    }
    Ok(())
}

/// `GET /connect/{upstream}`: what is being connected, for whom, with which
/// scopes; one click continues.
pub async fn connect_get(
    State(app): State<AppState>,
    Path(upstream): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let (vault, conn) = match connection(&app, &upstream) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let raw = q.unwrap_or_default();
    let p = Params::parse(raw.as_bytes());
    if !p.repeated().is_empty() {
        return refuse(&app, StatusCode::BAD_REQUEST, "The link is malformed.");
    }
    let elicitation = p.get("elicitation").unwrap_or("");
    let user = match signed_in(&app, &headers).await {
        Ok(Some(u)) => u,
        Ok(None) => {
            let base = Common::new(&app).asset_base;
            let here = if raw.is_empty() {
                format!("{base}/connect/{upstream}")
            } else {
                format!("{base}/connect/{upstream}?{raw}")
            };
            return match session::safe_return_to(&app, &here) {
                Some(r) => session::redirect_to_login(&app, &r),
                None => refuse(&app, StatusCode::BAD_REQUEST, "The link is malformed."),
            };
        }
        Err(r) => return r,
    };
    if let Err(r) = check_elicitation(&app, &vault, elicitation, &user, &upstream) {
        return r;
    }
    let endpoints = match vault.endpoints(&conn).await {
        Ok(e) => e,
        Err(e) => return unreachable(&app, &upstream, &e),
    };
    let provider_host = url::Url::parse(&endpoints.authorization_endpoint)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    let form_id = app.random(24);
    let token = csrf::issue(
        &app.csrf_key,
        "connect",
        &connect_binding(&user.session_hash, &form_id, &upstream, elicitation),
        app.now() + FORM_TTL,
    );
    let c = Common::new(&app);
    html(
        StatusCode::OK,
        &ConnectPage {
            asset_base: &c.asset_base,
            issuer_host: &c.issuer_host,
            upstream: &upstream,
            title: &conn.title,
            upstream_url: &conn.upstream_url,
            provider_host: &provider_host,
            username: &user.user.username,
            scopes: &conn.scopes,
            elicitation,
            form_id: &form_id,
            csrf: &token,
        },
    )
}

/// `POST /connect/{upstream}`: the user clicked; off to the upstream's
/// authorization server with a state and a PKCE challenge bound to them.
pub async fn connect_post(
    State(app): State<AppState>,
    Path(upstream): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (vault, conn, p, user) = match posted(
        &app,
        &upstream,
        &headers,
        &body,
        "You are no longer signed in. Open the link from your application again.",
    )
    .await
    {
        Ok(posted) => posted,
        Err(r) => return r,
    };
    let elicitation = p.get("elicitation").unwrap_or("");
    let form_id = p.get("form").unwrap_or("");
    let csrf_ok = !form_id.is_empty()
        && csrf::verify(
            &app.csrf_key,
            "connect",
            &connect_binding(&user.session_hash, form_id, &upstream, elicitation),
            p.get("csrf").unwrap_or(""),
            app.now(),
        );
    if !csrf_ok || !p.repeated().is_empty() {
        return refuse(
            &app,
            StatusCode::FORBIDDEN,
            "This form expired or was not the one shown to you. Open the link from your application again.",
        );
    }
    if let Err(r) = check_elicitation(&app, &vault, elicitation, &user, &upstream) {
        return r;
    }
    match app.spend_once(form_id, app.now() + FORM_TTL).await {
        Ok(true) => {}
        Ok(false) => {
            return refuse(
                &app,
                StatusCode::CONFLICT,
                "This form was already answered. Open the link from your application again.",
            );
        }
        Err(e) => return store_error_page(&app, "connect form", &e),
    }
    let state = app.random(32);
    let verifier = app.random(32);
    let binding = app.random(32);
    let state_hash = hash_secret(&state);
    let now = app.now();
    let bound = Bound {
        user_id: user.user.id.clone(),
    };
    let rec = UpstreamStateRecord {
        sealed_verifier: app.master_key.seal(
            app.rng.as_ref(),
            verifier.as_bytes(),
            state_hash.as_bytes(),
        ),
        state_hash,
        binding_hash: hash_secret(&binding),
        provider: format!("{STATE_PREFIX}{upstream}"),
        // No ID token in a connect flow: nothing to compare a nonce with.
        nonce_hash: String::new(),
        request_params: serde_json::to_string(&bound).expect("serializes"),
        created_at: now,
        expires_at: now + CONNECT_STATE_TTL,
    };
    if let Err(e) = app.store.insert_upstream_state(&rec).await {
        return store_error_page(&app, "connect state", &e);
    }
    let location = match vault
        .authorization_url(
            &conn,
            &callback_url(&app, &upstream),
            &state,
            &mcpgate_types::pkce::s256_challenge(&verifier),
        )
        .await
    {
        Ok(l) => l,
        Err(e) => return unreachable(&app, &upstream, &e),
    };
    tracing::info!(upstream = %upstream, user = %user.user.id, "connecting an upstream account");
    CONNECTION.start(&location, &binding, CONNECT_STATE_TTL)
}

/// `GET /connect/{upstream}/callback`: the upstream's authorization response.
pub async fn callback(
    State(app): State<AppState>,
    Path(upstream): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let (vault, conn) = match connection(&app, &upstream) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let provider = format!("{STATE_PREFIX}{upstream}");
    let (p, rec) = match crate::idp::take_answer(&app, q, &headers, &CONNECTION, &provider).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let Ok(bound) = serde_json::from_str::<Bound>(&rec.request_params) else {
        return refuse(
            &app,
            StatusCode::BAD_REQUEST,
            "This connection is not one of ours.",
        );
    };
    // The person completing the flow must be the one who started it: a code
    // for someone else's flow, replayed in this browser, is refused here.
    let user = match signed_in(&app, &headers).await {
        Ok(Some(u)) if u.user.id == bound.user_id => u,
        Ok(_) => {
            tracing::warn!(upstream = %upstream, "a connect callback reached another (or no) signed-in user");
            return refuse(
                &app,
                StatusCode::FORBIDDEN,
                "This connection was started by another account than the one signed in here. Start again from your application.",
            );
        }
        Err(r) => return r,
    };
    let endpoints = match vault.endpoints(&conn).await {
        Ok(e) => e,
        Err(e) => return unreachable(&app, &upstream, &e),
    };
    if let Err(r) = CONNECTION.check_iss(
        &app,
        p.get("iss"),
        endpoints.issuer.as_deref(),
        endpoints.iss_parameter_supported,
    ) {
        return r;
    }
    if p.get("error").is_some() {
        return message(
            &app,
            "Not connected",
            &format!(
                "{} was not connected. You can try again from your application.",
                conn.title
            ),
        );
    }
    let Some(code) = p.get("code").filter(|c| !c.is_empty()) else {
        return refuse(&app, StatusCode::BAD_REQUEST, "The service sent no code.");
    };
    let Some(verifier) = app
        .master_key
        .open(&rec.sealed_verifier, rec.state_hash.as_bytes())
        .ok()
        .and_then(|v| String::from_utf8(v).ok())
    else {
        return refuse(
            &app,
            StatusCode::BAD_REQUEST,
            "This connection is not one of ours.",
        );
    };
    match vault
        .redeem(
            &user.user.id,
            &conn,
            code,
            &verifier,
            &callback_url(&app, &upstream),
        )
        .await
    {
        Ok(_) => message(
            &app,
            "Connected",
            &format!(
                "Your {} account is connected. Return to your application and try again.",
                conn.title
            ),
        ),
        Err(e) => {
            tracing::warn!(upstream = %upstream, user = %user.user.id, error = %e, "connecting an upstream account failed");
            refuse(
                &app,
                StatusCode::BAD_GATEWAY,
                "The service did not complete the connection. Start again from your application.",
            )
        }
    }
}

/// `GET /account/connections`: the signed-in user's connected accounts.
pub async fn connections_get(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let user = match signed_in(&app, &headers).await {
        Ok(Some(u)) => u,
        Ok(None) => {
            let here = format!("{}/account/connections", Common::new(&app).asset_base);
            return session::redirect_to_login(&app, &here);
        }
        Err(r) => return r,
    };
    let Some(vault) = app.vault.as_ref() else {
        return message(
            &app,
            "Connected accounts",
            "No service on this server acts with your own account.",
        );
    };
    let connected = match vault.list(&user.user.id).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "listing connected accounts failed");
            return crate::pages::unavailable_page(&app);
        }
    };
    let exp = app.now() + FORM_TTL;
    let rows = vault
        .connections()
        .map(|c| {
            let linked = connected.iter().find(|g| g.upstream == c.upstream);
            ConnectionRow {
                upstream: c.upstream.clone(),
                title: c.title.clone(),
                connected_since: linked.map(|g| mcpgate_types::time::fmt_time(g.created_at)),
                scopes: linked
                    .map(|g| g.scope.split_whitespace().map(str::to_owned).collect())
                    .unwrap_or_default(),
                csrf: csrf::issue(
                    &app.csrf_key,
                    "unlink",
                    &unlink_binding(&user.session_hash, &c.upstream),
                    exp,
                ),
            }
        })
        .collect();
    let c = Common::new(&app);
    html(
        StatusCode::OK,
        &ConnectionsPage {
            asset_base: &c.asset_base,
            issuer_host: &c.issuer_host,
            username: &user.user.username,
            notice: None,
            rows,
        },
    )
}

/// `POST /account/connections/{upstream}/unlink`: disconnects one account
/// (and revokes its tokens at the service where it can).
pub async fn unlink_post(
    State(app): State<AppState>,
    Path(upstream): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (vault, conn, p, user) = match posted(
        &app,
        &upstream,
        &headers,
        &body,
        "You are no longer signed in.",
    )
    .await
    {
        Ok(posted) => posted,
        Err(r) => return r,
    };
    let ok = csrf::verify(
        &app.csrf_key,
        "unlink",
        &unlink_binding(&user.session_hash, &upstream),
        p.get("csrf").unwrap_or(""),
        app.now(),
    );
    if !ok || !p.repeated().is_empty() {
        return refuse(
            &app,
            StatusCode::FORBIDDEN,
            "This form expired or was not the one shown to you. Reload your connected accounts.",
        );
    }
    match vault.unlink(&user.user.id, &upstream).await {
        Ok(_) => {
            tracing::info!(upstream = %upstream, user = %user.user.id, "upstream account disconnected");
            message(
                &app,
                "Disconnected",
                &format!("Your {} account is disconnected.", conn.title),
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "disconnecting an upstream account failed");
            crate::pages::unavailable_page(&app)
        }
    }
}
