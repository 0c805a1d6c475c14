//! mcpgate's OAuth 2.1 authorization server for MCP.
//!
//! PKCE S256 only; RFC 8414 metadata (also at the OIDC discovery paths);
//! pre-registered, dynamically registered (RFC 7591) and Client ID Metadata
//! Document clients; `resource` (RFC 8707) bound into RFC 9068 JWT access
//! tokens; rotating refresh tokens with reuse detection; RFC 9207 `iss` on
//! every authorization response; revocation (RFC 7009) and introspection
//! (RFC 7662); login and a per-user, per-client consent registry.

pub mod admin;
mod authorize;
mod cimd;
mod client_assertion;
mod clients;
mod connect;
mod cookies;
mod csrf;
mod dpop;
mod entitlement;
pub mod error;
mod idp;
pub mod idp_file;
mod jwt_bearer;
pub mod keyring;
mod metadata;
mod pages;
mod params;
pub mod password;
mod register;
mod revoke;
mod session;
pub mod settings;
mod state;
mod token;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub use error::ApiError;
pub use idp_file::IdentityProviderFile;
pub use metadata::document as metadata_document;
pub use settings::{
    AuthzSettings, CimdSettings, DcrSettings, Grantees, Holder, IdentityProvider, LoginLimits,
    ProviderKind, ResourceDef, ScopeDef, TokenAuth, WorkloadIssuer,
};
pub use state::{AppState, Deps};

/// Largest request body any AS endpoint accepts.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Every route of the authorization server. Endpoints live under the
/// issuer's path; the well-known documents at the host root (RFC 8414 §3.1
/// path insertion) and, for OIDC, also appended to the issuer path.
pub fn router(app: AppState) -> Router {
    let base = pages::Common::new(&app).asset_base;
    let endpoints: Router<AppState> = Router::new()
        .route(
            "/oauth/authorize",
            get(authorize::get).post(authorize::post),
        )
        .route("/oauth/token", post(token::token))
        .route("/oauth/register", post(register::register))
        .route("/oauth/revoke", post(revoke::revoke))
        .route("/oauth/introspect", post(revoke::introspect))
        .route("/oauth/jwks.json", get(metadata::jwks))
        .route("/login", get(session::login_get).post(session::login_post))
        .route("/login/password", post(session::password_post))
        .route("/login/idp/{name}", post(idp::start))
        .route("/login/idp/{name}/callback", get(idp::callback))
        .route("/consent", post(authorize::consent_post))
        .route(
            "/connect/{upstream}",
            get(connect::connect_get).post(connect::connect_post),
        )
        .route("/connect/{upstream}/callback", get(connect::callback))
        .route("/account/connections", get(connect::connections_get))
        .route(
            "/account/connections/{upstream}/unlink",
            post(connect::unlink_post),
        )
        .route(
            "/logout",
            get(session::logout_get).post(session::logout_post),
        )
        .route("/assets/mcpgate.css", get(pages::stylesheet))
        .route("/.well-known/openid-configuration", get(metadata::metadata));
    let well_known: Router<AppState> = Router::new()
        .route(
            &format!("/.well-known/oauth-authorization-server{base}"),
            get(metadata::metadata),
        )
        .route(
            &format!("/.well-known/openid-configuration{base}"),
            get(metadata::metadata),
        );
    let mut r = if base.is_empty() {
        endpoints.merge(Router::new().route(
            "/.well-known/oauth-authorization-server",
            get(metadata::metadata),
        ))
    } else {
        Router::new().nest(&base, endpoints).merge(well_known)
    };
    r = r
        .layer(axum::middleware::map_response(our_error_format))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ));
    r.with_state(app)
}

/// axum answers some malformed requests itself in plain text (body too
/// large, bad method); turn those into our JSON error format.
async fn our_error_format(resp: Response) -> Response {
    let plain = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.starts_with("text/plain"));
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) || !plain {
        return resp;
    }
    let description = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "request body too large",
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed",
        StatusCode::NOT_FOUND => "not found",
        StatusCode::REQUEST_TIMEOUT => "request timed out",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported media type",
        _ => "malformed request",
    };
    let code = if status.is_server_error() {
        "server_error"
    } else {
        "invalid_request"
    };
    let mut r = (
        status,
        axum::Json(serde_json::json!({"error": code, "error_description": description})),
    )
        .into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(allow) = resp.headers().get(header::ALLOW) {
        r.headers_mut().insert(header::ALLOW, allow.clone());
    }
    r
}
