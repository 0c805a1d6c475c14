//! The AS browser session: login (with per-account and per-IP rate limits
//! and login CSRF protection), one-time password change, logout.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use mcpgate_store::{LoginSessionRecord, StoreError, UserRecord};
use mcpgate_types::secret::hash_secret;

use crate::cookies;
use crate::csrf;
use crate::error::retry_after_secs;
use crate::pages::{
    Common, LoginPage, MessagePage, PasswordPage, error_page, html, store_error_page,
};
use crate::params::Params;
use crate::password;
use crate::state::AppState;

/// The signed-in user of a request.
#[derive(Debug, Clone)]
pub struct SessionUser {
    pub user: UserRecord,
    pub session_hash: String,
    pub auth_time: i64,
}

/// Reads and checks the session cookie. `Ok(None)` when absent, unknown,
/// expired, or the user is gone or disabled; `Err` when the store failed.
pub async fn current(
    app: &AppState,
    headers: &HeaderMap,
) -> Result<Option<SessionUser>, StoreError> {
    let Some(raw) = cookies::get(headers, cookies::SESSION) else {
        return Ok(None);
    };
    if raw.len() > 128 {
        return Ok(None);
    }
    let h = hash_secret(&raw);
    let s = match app.store.get_session(&h).await {
        Ok(s) => s,
        Err(StoreError::NotFound) => return Ok(None),
        Err(e) => return Err(e),
    };
    if s.expires_at <= app.now() {
        return Ok(None);
    }
    match app.store.get_user(&s.user_id).await {
        Ok(u) if !u.disabled && !u.must_change_password => Ok(Some(SessionUser {
            user: u,
            session_hash: h,
            auth_time: s.auth_time,
        })),
        Ok(_) | Err(StoreError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The login-form nonce cookie (double submit) of this browser, if sane.
fn login_nonce(headers: &HeaderMap) -> Option<String> {
    cookies::get(headers, cookies::LOGIN_NONCE).filter(|n| n.len() <= 64)
}

/// Login CSRF: the form's `csrf` token must be bound to this browser's nonce
/// cookie. Returns the nonce when it is.
pub(crate) fn verified_login_nonce(
    app: &AppState,
    headers: &HeaderMap,
    p: &Params,
) -> Option<String> {
    login_nonce(headers).filter(|n| {
        csrf::verify(
            &app.csrf_key,
            "login",
            n.as_bytes(),
            p.get("csrf").unwrap_or(""),
            app.now(),
        )
    })
}

/// Only our own pages that need a signed-in user are valid places to return
/// to after login: the authorization endpoint, a connect page and the
/// connected-accounts page. Always a relative path, never `//host` or a
/// full URL.
pub(crate) fn safe_return_to(app: &AppState, r: &str) -> Option<String> {
    if r.contains(['\\', '\r', '\n', '#']) {
        return None;
    }
    let base = Common::new(app).asset_base;
    let connect = r
        .strip_prefix(&format!("{base}/connect/"))
        .map(|rest| rest.split_once('?').map_or(rest, |(name, _)| name))
        .is_some_and(crate::connect::is_upstream_name);
    let ok = r.starts_with(&format!("{base}/oauth/authorize?"))
        || connect
        || r == format!("{base}/account/connections");
    ok.then(|| r.to_string())
}

/// `return_to` continues an authorization request (not another page).
pub(crate) fn returns_to_authorize(app: &AppState, r: &str) -> bool {
    r.starts_with(&format!("{}/oauth/authorize?", Common::new(app).asset_base))
}

pub fn redirect_to_login(app: &AppState, return_to: &str) -> Response {
    let base = Common::new(app).asset_base;
    let q = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("return_to", return_to)
        .finish();
    let mut r = Redirect::to(&format!("{base}/login?{q}")).into_response();
    *r.status_mut() = StatusCode::SEE_OTHER;
    r
}

fn login_form(
    app: &AppState,
    nonce: Option<&str>,
    return_to: &str,
    username: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let c = Common::new(app);
    // The nonce cookie (double submit) ties the form to this browser.
    let (nonce, set) = match nonce {
        Some(n) => (n.to_string(), false),
        None => (app.random(24), true),
    };
    let token = csrf::issue(&app.csrf_key, "login", nonce.as_bytes(), app.now() + 3600);
    let mut r = html(
        status,
        &LoginPage {
            asset_base: &c.asset_base,
            issuer_host: &c.issuer_host,
            csrf: &token,
            return_to,
            username,
            error,
            local_login: app.settings.local_login,
            providers: app
                .settings
                .identity_providers
                .iter()
                .map(|p| (p.name.clone(), p.display_name.clone()))
                .collect(),
        },
    );
    if set {
        r.headers_mut().append(
            header::SET_COOKIE,
            cookies::set_cookie(cookies::LOGIN_NONCE, &nonce, 3600),
        );
    }
    r
}

/// `GET /login`
pub async fn login_get(
    State(app): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let p = Params::parse(q.unwrap_or_default().as_bytes());
    let return_to = p
        .get("return_to")
        .and_then(|r| safe_return_to(&app, r))
        .unwrap_or_default();
    login_form(
        &app,
        login_nonce(&headers).as_deref(),
        &return_to,
        "",
        None,
        StatusCode::OK,
    )
}

/// `POST /login`
pub async fn login_post(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let p = match crate::pages::form_params(&app, &headers, &body) {
        Ok(p) => p,
        Err(page) => return page,
    };
    let return_to = p
        .get("return_to")
        .and_then(|r| safe_return_to(&app, r))
        .unwrap_or_default();
    let username = p.get("username").unwrap_or("").trim().to_string();
    let Some(nonce) = verified_login_nonce(&app, &headers, &p) else {
        return login_form(
            &app,
            None,
            &return_to,
            "",
            Some("The form expired. Please sign in again."),
            StatusCode::FORBIDDEN,
        );
    };
    if !app.settings.local_login {
        return login_form(
            &app,
            Some(&nonce),
            &return_to,
            "",
            Some("Password sign-in is disabled on this server."),
            StatusCode::FORBIDDEN,
        );
    }
    let ip = app.client_ip(Some(peer), &headers);
    // The address first: a refused address spends none of the account's limit.
    let mut limited = app.limiters.login_ip.check(&ip.to_string()).await.err();
    if limited.is_none() && !username.is_empty() {
        limited = app.limiters.login_account.check(&username).await.err();
    }
    if let Some(wait) = limited {
        let secs = retry_after_secs(wait);
        tracing::warn!(%ip, retry_after_secs = secs, "login rate limit hit");
        let mut r = login_form(
            &app,
            Some(&nonce),
            &return_to,
            &username,
            Some("Too many sign-in attempts. Wait a while and try again."),
            StatusCode::TOO_MANY_REQUESTS,
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return r;
    }
    let password = p.get("password").unwrap_or("").to_string();
    let user = match app.store.get_user_by_username(&username).await {
        Ok(u) => Some(u),
        Err(StoreError::NotFound) => None,
        Err(e) => return store_error_page(&app, "user lookup", &e),
    };
    let phc = user
        .as_ref()
        .and_then(|u| u.password_hash.clone())
        .unwrap_or_else(|| password::dummy_hash().to_string());
    let Ok(ok) = app
        .hashing
        .run(move || password::verify(&password, &phc))
        .await
    else {
        return busy(&app, &nonce, &return_to, &username);
    };
    let user = match user {
        Some(u) if ok && !u.disabled && u.password_hash.is_some() => u,
        _ => {
            tracing::info!(%ip, "login failed");
            return login_form(
                &app,
                Some(&nonce),
                &return_to,
                &username,
                Some("The username or password is not correct."),
                StatusCode::UNAUTHORIZED,
            );
        }
    };
    if user.must_change_password {
        return password_form(&app, &user, &return_to, None, StatusCode::OK);
    }
    start_session(&app, &user, &return_to).await
}

/// Too many password hashes at once: the sign-in form again, 503 with
/// `Retry-After`, nothing lost but this attempt.
fn busy(app: &AppState, nonce: &str, return_to: &str, username: &str) -> Response {
    let mut r = login_form(
        app,
        Some(nonce),
        return_to,
        username,
        Some("The server is busy signing people in. Try again in a few seconds."),
        StatusCode::SERVICE_UNAVAILABLE,
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

/// Too many password hashes at once while changing a password.
fn hashing_busy_page(app: &AppState) -> Response {
    let mut r = error_page(
        app,
        StatusCode::SERVICE_UNAVAILABLE,
        "The server is busy",
        "Try again in a few seconds.",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

/// Binding for a password-change ticket: the user and their current hash,
/// so a ticket dies as soon as the password changes.
fn ticket_binding(user: &UserRecord) -> Vec<u8> {
    format!(
        "{}\n{}",
        user.id,
        user.password_hash.as_deref().unwrap_or("")
    )
    .into_bytes()
}

fn password_form(
    app: &AppState,
    user: &UserRecord,
    return_to: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let c = Common::new(app);
    let exp = app.now() + 600;
    let ticket = format!(
        "{}.{}",
        user.id,
        csrf::issue(&app.csrf_key, "password-change", &ticket_binding(user), exp)
    );
    html(
        status,
        &PasswordPage {
            asset_base: &c.asset_base,
            issuer_host: &c.issuer_host,
            ticket: &ticket,
            return_to,
            min_len: password::MIN_PASSWORD_LEN,
            error,
        },
    )
}

/// `POST /login/password`: replaces a one-time password.
pub async fn password_post(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let p = match crate::pages::form_params(&app, &headers, &body) {
        Ok(p) => p,
        Err(page) => return page,
    };
    let return_to = p
        .get("return_to")
        .and_then(|r| safe_return_to(&app, r))
        .unwrap_or_default();
    let ticket = p.get("ticket").unwrap_or("");
    let Some((user_id, token)) = ticket.split_once('.') else {
        return error_page(
            &app,
            StatusCode::FORBIDDEN,
            "This form cannot be accepted",
            "Sign in again.",
        );
    };
    let user = match app.store.get_user(user_id).await {
        Ok(u) => u,
        Err(e @ StoreError::Unavailable(_)) => return store_error_page(&app, "user lookup", &e),
        Err(_) => {
            return error_page(
                &app,
                StatusCode::FORBIDDEN,
                "This form cannot be accepted",
                "Sign in again.",
            );
        }
    };
    if !user.must_change_password
        || !csrf::verify(
            &app.csrf_key,
            "password-change",
            &ticket_binding(&user),
            token,
            app.now(),
        )
    {
        return error_page(
            &app,
            StatusCode::FORBIDDEN,
            "This form cannot be accepted",
            "It expired or was already used. Sign in again.",
        );
    }
    let new = p.get("new_password").unwrap_or("");
    if new != p.get("confirm").unwrap_or("") {
        return password_form(
            &app,
            &user,
            &return_to,
            Some("The two passwords differ."),
            StatusCode::BAD_REQUEST,
        );
    }
    if let Err(m) = password::check_policy(new) {
        return password_form(&app, &user, &return_to, Some(m), StatusCode::BAD_REQUEST);
    }
    // The one-time password was seen by whoever handed it out: refuse it again.
    let old = user.password_hash.clone().unwrap_or_default();
    let candidate = new.to_string();
    let Ok(reused) = app
        .hashing
        .run(move || password::verify(&candidate, &old))
        .await
    else {
        return hashing_busy_page(&app);
    };
    if reused {
        return password_form(
            &app,
            &user,
            &return_to,
            Some("Choose a password other than the one-time password."),
            StatusCode::BAD_REQUEST,
        );
    }
    let mut salt = [0u8; 16];
    app.rng.fill(&mut salt);
    let new = new.to_string();
    let phc = match app.hashing.run(move || password::hash(&new, &salt)).await {
        Ok(Ok(phc)) => phc,
        Ok(Err(_)) => {
            return error_page(
                &app,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "Try again later.",
            );
        }
        Err(password::Busy) => return hashing_busy_page(&app),
    };
    let mut updated = user.clone();
    updated.password_hash = Some(phc);
    updated.must_change_password = false;
    updated.updated_at = app.now();
    if let Err(e) = app.store.update_user(&updated).await {
        return store_error_page(&app, "password update", &e);
    }
    start_session(&app, &updated, &return_to).await
}

pub(crate) async fn start_session(app: &AppState, user: &UserRecord, return_to: &str) -> Response {
    let raw = app.random(32);
    let now = app.now();
    let ttl = app.settings.login_session_ttl;
    let rec = LoginSessionRecord {
        session_hash: hash_secret(&raw),
        user_id: user.id.clone(),
        auth_time: now,
        created_at: now,
        expires_at: now + ttl,
    };
    if let Err(e) = app.store.insert_session(&rec).await {
        return store_error_page(app, "session insert", &e);
    }
    tracing::info!(user = %user.id, "user signed in");
    let mut r = if return_to.is_empty() {
        signed_in_page(app, user)
    } else {
        let mut r = Redirect::to(return_to).into_response();
        *r.status_mut() = StatusCode::SEE_OTHER;
        r
    };
    let h = r.headers_mut();
    h.append(
        header::SET_COOKIE,
        cookies::set_cookie(cookies::SESSION, &raw, ttl),
    );
    h.append(
        header::SET_COOKIE,
        cookies::set_cookie(cookies::LOGIN_NONCE, "", 0),
    );
    crate::pages::security_headers(h);
    r
}

fn signed_in_page(app: &AppState, user: &UserRecord) -> Response {
    let c = Common::new(app);
    let msg = format!(
        "You are signed in as {}. You can close this page and return to your application.",
        user.username
    );
    html(
        StatusCode::OK,
        &MessagePage {
            asset_base: &c.asset_base,
            issuer_host: &c.issuer_host,
            title: "Signed in",
            message: &msg,
            is_error: false,
            logout_csrf: None,
        },
    )
}

/// `GET /logout`: a confirmation form (a GET never changes state).
pub async fn logout_get(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let c = Common::new(&app);
    match current(&app, &headers).await {
        Err(e) => store_error_page(&app, "sign-out page", &e),
        Ok(Some(u)) => {
            let token = csrf::issue(
                &app.csrf_key,
                "logout",
                u.session_hash.as_bytes(),
                app.now() + 3600,
            );
            let msg = format!("You are signed in as {}.", u.user.username);
            html(
                StatusCode::OK,
                &MessagePage {
                    asset_base: &c.asset_base,
                    issuer_host: &c.issuer_host,
                    title: "Sign out",
                    message: &msg,
                    is_error: false,
                    logout_csrf: Some(&token),
                },
            )
        }
        Ok(None) => html(
            StatusCode::OK,
            &MessagePage {
                asset_base: &c.asset_base,
                issuer_host: &c.issuer_host,
                title: "Signed out",
                message: "You are not signed in.",
                is_error: false,
                logout_csrf: None,
            },
        ),
    }
}

/// `POST /logout`
pub async fn logout_post(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let p = Params::parse(&body);
    let c = Common::new(&app);
    if let Ok(Some(u)) = current(&app, &headers).await {
        if !csrf::verify(
            &app.csrf_key,
            "logout",
            u.session_hash.as_bytes(),
            p.get("csrf").unwrap_or(""),
            app.now(),
        ) {
            return error_page(
                &app,
                StatusCode::FORBIDDEN,
                "This form cannot be accepted",
                "Open the sign-out page again.",
            );
        }
        if let Err(e) = app.store.delete_session(&u.session_hash).await {
            tracing::error!(error = %e, "session delete failed");
        }
    }
    let mut r = html(
        StatusCode::OK,
        &MessagePage {
            asset_base: &c.asset_base,
            issuer_host: &c.issuer_host,
            title: "Signed out",
            message: "You have been signed out.",
            is_error: false,
            logout_csrf: None,
        },
    );
    r.headers_mut().append(
        header::SET_COOKIE,
        cookies::set_cookie(cookies::SESSION, "", 0),
    );
    r
}
