//! Errors of the JSON endpoints, converted once into RFC 6749 §5.2 bodies
//! with `Cache-Control: no-store`. Internal detail is logged, never sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mcpgate_store::StoreError;
use mcpgate_types::log_budget::SharedLogBudget;
use mcpgate_types::{OAuthError, OAuthErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A protocol error the client caused; sent as is.
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    /// `invalid_client` after an attempted HTTP Basic authentication: 401
    /// with a `WWW-Authenticate: Basic` challenge (RFC 6749 §5.2).
    #[error("client authentication failed")]
    ClientAuthBasic(String),
    /// RFC 9449 §8: the token request's proof lacks a fresh nonce; 400
    /// `use_dpop_nonce` with the nonce to use in `DPoP-Nonce`.
    #[error("a DPoP nonce is required")]
    DpopNonce { nonce: String },
    /// Too many requests from this source.
    #[error("rate limited")]
    RateLimited { retry_after_secs: u64 },
    /// Our fault. The string is logged, the client sees `server_error`.
    #[error("internal error: {0}")]
    Internal(String),
    /// The store cannot be reached now: 503 `temporarily_unavailable` with
    /// `Retry-After`, at once rather than after a long wait. Logged.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// The log lines of requests that found the database down: every request
/// fails alike then, so they share one budget (3 lines per 10 s, each with
/// the count held back since the last).
pub(crate) static STORE_OUTAGE_LOG: std::sync::LazyLock<SharedLogBudget> =
    std::sync::LazyLock::new(|| SharedLogBudget::new(3, std::time::Duration::from_secs(10)));

/// A limiter's wait as a `Retry-After` value: whole seconds, rounded up,
/// at least 1.
pub(crate) fn retry_after_secs(wait: std::time::Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => ApiError::Unavailable(m),
            e => ApiError::Internal(format!("store: {e}")),
        }
    }
}

impl ApiError {
    pub fn code(code: OAuthErrorCode, description: impl Into<String>) -> Self {
        ApiError::OAuth(OAuthError::new(code, description))
    }
}

/// The HTTP status for each OAuth error code. Exhaustive on purpose: a new
/// code must be given its status here.
pub fn status_for(code: OAuthErrorCode) -> StatusCode {
    match code {
        OAuthErrorCode::InvalidRequest
        | OAuthErrorCode::InvalidGrant
        | OAuthErrorCode::UnauthorizedClient
        | OAuthErrorCode::UnsupportedGrantType
        | OAuthErrorCode::InvalidScope
        | OAuthErrorCode::InvalidTarget
        | OAuthErrorCode::UnsupportedResponseType
        | OAuthErrorCode::InvalidRedirectUri
        | OAuthErrorCode::InvalidClientMetadata
        | OAuthErrorCode::UnsupportedTokenType
        | OAuthErrorCode::LoginRequired
        | OAuthErrorCode::ConsentRequired
        | OAuthErrorCode::InvalidDpopProof
        | OAuthErrorCode::UseDpopNonce => StatusCode::BAD_REQUEST,
        OAuthErrorCode::InvalidClient | OAuthErrorCode::InvalidToken => StatusCode::UNAUTHORIZED,
        OAuthErrorCode::AccessDenied | OAuthErrorCode::InsufficientScope => StatusCode::FORBIDDEN,
        OAuthErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        OAuthErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

pub fn no_store_json(status: StatusCode, body: &impl serde::Serialize) -> Response {
    let mut resp = (status, axum::Json(body)).into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::OAuth(e) => no_store_json(status_for(e.error), &e),
            ApiError::ClientAuthBasic(d) => {
                let mut r = no_store_json(
                    StatusCode::UNAUTHORIZED,
                    &OAuthError::new(OAuthErrorCode::InvalidClient, d),
                );
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"mcpgate\""),
                );
                r
            }
            ApiError::DpopNonce { nonce } => {
                let mut r = no_store_json(
                    StatusCode::BAD_REQUEST,
                    &OAuthError::new(
                        OAuthErrorCode::UseDpopNonce,
                        "the DPoP proof must carry the nonce in the DPoP-Nonce header",
                    ),
                );
                if let Ok(v) = HeaderValue::from_str(&nonce) {
                    r.headers_mut().insert("dpop-nonce", v);
                }
                r
            }
            ApiError::RateLimited { retry_after_secs } => {
                let mut r = no_store_json(
                    StatusCode::TOO_MANY_REQUESTS,
                    &OAuthError::new(
                        OAuthErrorCode::TemporarilyUnavailable,
                        "too many requests; retry later",
                    ),
                );
                if let Ok(v) = HeaderValue::from_str(&retry_after_secs.max(1).to_string()) {
                    r.headers_mut().insert(header::RETRY_AFTER, v);
                }
                r
            }
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                no_store_json(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &OAuthError::server_error(),
                )
            }
            ApiError::Unavailable(detail) => {
                if let Some(held_back) = STORE_OUTAGE_LOG.allow() {
                    tracing::error!(error = %detail, held_back, "the store is unavailable");
                }
                let mut r = no_store_json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &OAuthError::new(
                        OAuthErrorCode::TemporarilyUnavailable,
                        "the server cannot reach its database; retry shortly",
                    ),
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                r
            }
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
