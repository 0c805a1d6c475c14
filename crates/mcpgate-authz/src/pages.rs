//! HTML pages (login, password change, consent, messages) rendered with
//! askama (auto-escaped), and the security headers every page carries:
//! CSP with `frame-ancestors 'none'`, `X-Frame-Options: DENY`,
//! `Referrer-Policy: no-referrer`, `Cache-Control: no-store`.

use askama::Template;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mcpgate_store::StoreError;

use crate::state::AppState;

pub const CSS: &str = include_str!("../assets/mcpgate.css");

/// Headers for every page and every JSON answer of the AS.
pub fn security_headers(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

pub struct Common {
    pub asset_base: String,
    pub issuer_host: String,
}

impl Common {
    pub fn new(state: &AppState) -> Self {
        let issuer = &state.settings.issuer;
        let after = issuer.split_once("://").map(|(_, r)| r).unwrap_or(issuer);
        let (host, path) = match after.find('/') {
            Some(i) => (&after[..i], after[i..].trim_end_matches('/')),
            None => (after, ""),
        };
        Self {
            asset_base: path.to_string(),
            issuer_host: host.to_string(),
        }
    }
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage<'a> {
    pub asset_base: &'a str,
    pub issuer_host: &'a str,
    pub csrf: &'a str,
    pub return_to: &'a str,
    pub username: &'a str,
    pub error: Option<&'a str>,
    pub local_login: bool,
    /// Upstream identity providers: (name, display name).
    pub providers: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "password.html")]
pub struct PasswordPage<'a> {
    pub asset_base: &'a str,
    pub issuer_host: &'a str,
    pub ticket: &'a str,
    pub return_to: &'a str,
    pub min_len: usize,
    pub error: Option<&'a str>,
}

pub struct ScopeLine {
    pub name: String,
    pub description: String,
    pub is_new: bool,
}

#[derive(Template)]
#[template(path = "consent.html")]
pub struct ConsentPage<'a> {
    pub asset_base: &'a str,
    pub issuer_host: &'a str,
    pub client_name: &'a str,
    pub client_id: &'a str,
    /// For CIMD clients: the host of the `client_id` URL, shown prominently.
    pub client_verified_host: Option<String>,
    pub redirect_host: String,
    /// The full redirect URI, shown on every consent page.
    pub redirect_uri: &'a str,
    /// For a redirect URI on the user's own machine: its port, named on the
    /// page (any program there could listen on it).
    pub redirect_port: Option<u16>,
    /// Consent is on record; only the click for a loopback redirect of a
    /// public client is missing (`authorize::needs_click`): the page asks to
    /// continue to this exact address rather than to approve access.
    pub confirm_only: bool,
    pub resource: &'a str,
    pub resource_name: &'a str,
    pub username: &'a str,
    pub scopes: Vec<ScopeLine>,
    pub params: Vec<(String, String)>,
    /// The form's random id: bound into `csrf`, and spent when answered.
    pub form_id: &'a str,
    pub csrf: &'a str,
}

/// `GET /connect/{upstream}`: connect the signed-in user's own account at
/// a `user_oauth` upstream.
#[derive(Template)]
#[template(path = "connect.html")]
pub struct ConnectPage<'a> {
    pub asset_base: &'a str,
    pub issuer_host: &'a str,
    pub upstream: &'a str,
    pub title: &'a str,
    pub upstream_url: &'a str,
    /// The host of the upstream's authorization endpoint.
    pub provider_host: &'a str,
    pub username: &'a str,
    pub scopes: &'a [String],
    pub elicitation: &'a str,
    /// The form's random id: bound into `csrf`, and spent when answered.
    pub form_id: &'a str,
    pub csrf: &'a str,
}

/// One `user_oauth` upstream on the connected-accounts page.
pub struct ConnectionRow {
    pub upstream: String,
    pub title: String,
    /// When connected (UTC date and time), `None` if not.
    pub connected_since: Option<String>,
    pub scopes: Vec<String>,
    /// The unlink form's token.
    pub csrf: String,
}

#[derive(Template)]
#[template(path = "connections.html")]
pub struct ConnectionsPage<'a> {
    pub asset_base: &'a str,
    pub issuer_host: &'a str,
    pub username: &'a str,
    pub notice: Option<&'a str>,
    pub rows: Vec<ConnectionRow>,
}

#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage<'a> {
    pub asset_base: &'a str,
    pub issuer_host: &'a str,
    pub title: &'a str,
    pub message: &'a str,
    pub is_error: bool,
    pub logout_csrf: Option<&'a str>,
}

/// Renders a template into a response with the page security headers.
pub fn html(status: StatusCode, t: &impl Template) -> Response {
    match t.render() {
        Ok(body) => {
            let mut r = (status, axum::response::Html(body)).into_response();
            security_headers(r.headers_mut());
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "template rendering failed");
            let mut r = (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response();
            security_headers(r.headers_mut());
            r
        }
    }
}

/// A page that explains a problem and never redirects anywhere (used when
/// the client or redirect URI cannot be trusted).
pub fn error_page(state: &AppState, status: StatusCode, title: &str, message: &str) -> Response {
    let c = Common::new(state);
    html(
        status,
        &MessagePage {
            asset_base: &c.asset_base,
            issuer_host: &c.issuer_host,
            title,
            message,
            is_error: true,
            logout_csrf: None,
        },
    )
}

/// The database cannot be reached now: 503 with `Retry-After` (as the JSON
/// endpoints answer `temporarily_unavailable`), and a page that asks the
/// user to try again shortly rather than calling it a failure of theirs.
pub fn unavailable_page(state: &AppState) -> Response {
    let mut r = error_page(
        state,
        StatusCode::SERVICE_UNAVAILABLE,
        "Please try again shortly",
        "The server cannot reach its database at the moment. Please try again in a few seconds.",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// The page for a store error while serving `what` (logged; the page shows
/// no detail): [`unavailable_page`] when the database cannot be reached,
/// otherwise a 500 page.
pub fn store_error_page(state: &AppState, what: &str, e: &StoreError) -> Response {
    match e {
        StoreError::Unavailable(detail) => {
            if let Some(held_back) = crate::error::STORE_OUTAGE_LOG.allow() {
                tracing::warn!(error = %detail, held_back, "{what}: the store is unavailable");
            }
            unavailable_page(state)
        }
        e => {
            tracing::error!(error = %e, "{what} failed");
            error_page(
                state,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The server could not complete this request. Try again later.",
            )
        }
    }
}

/// The parameters of a page form POST, or the error page answering a body
/// that is not `application/x-www-form-urlencoded`.
#[allow(
    clippy::result_large_err,
    reason = "the error is the page itself, built once per refused request"
)]
pub fn form_params(
    state: &AppState,
    headers: &axum::http::HeaderMap,
    body: &[u8],
) -> Result<crate::params::Params, Response> {
    if crate::params::is_form(headers) {
        Ok(crate::params::Params::parse(body))
    } else {
        Err(error_page(
            state,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported request",
            "Send this form as application/x-www-form-urlencoded.",
        ))
    }
}

pub async fn stylesheet() -> Response {
    let mut r = ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    r.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}
