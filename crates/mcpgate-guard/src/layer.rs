//! [`GuardLayer`]: the guard as a tower layer for axum MCP servers (protected resource role;
//! MCP authorization §2(b) "validate every request", RFC 6750 §3 challenges). Each request is
//! authenticated before the inner service sees it; on success the [`Principal`] is put into the
//! request extensions (handlers take it as an extractor) and, by default, the `Authorization`
//! header is removed so the token cannot be passed on by accident ("token passthrough"); on
//! failure the challenge response is sent and the inner service is never called.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::header::AUTHORIZATION;
use http::request::Parts;
use http::{Request, StatusCode};
use mcpgate_types::ScopeSet;
use tower::{Layer, Service};

use crate::challenge::challenge_response;
use crate::guard::Guard;
use crate::principal::{Authenticate, Principal};

struct Shared {
    auth: Arc<dyn Authenticate>,
    resource_metadata_url: String,
    baseline: ScopeSet,
    keep_authorization: bool,
}

/// Authenticates every request with an [`Authenticate`] implementation (usually a [`Guard`]).
#[derive(Clone)]
pub struct GuardLayer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for GuardLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardLayer")
            .field("resource_metadata_url", &self.shared.resource_metadata_url)
            .finish_non_exhaustive()
    }
}

impl GuardLayer {
    /// A layer answering refusals with challenges that point at `resource_metadata_url` and
    /// ask for `baseline`.
    pub fn new(
        auth: Arc<dyn Authenticate>,
        resource_metadata_url: impl Into<String>,
        baseline: ScopeSet,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                auth,
                resource_metadata_url: resource_metadata_url.into(),
                baseline,
                keep_authorization: false,
            }),
        }
    }

    /// A layer for `guard`, with its metadata URL and baseline.
    pub fn from_guard(guard: Arc<Guard>) -> Self {
        let url = guard.resource_metadata_url().to_owned();
        let baseline = guard.baseline_scopes().clone();
        Self::new(guard, url, baseline)
    }

    /// Keeps the `Authorization` header for the inner service (it is removed by default).
    pub fn keep_authorization_header(self, keep: bool) -> Self {
        let s = &self.shared;
        Self {
            shared: Arc::new(Shared {
                auth: s.auth.clone(),
                resource_metadata_url: s.resource_metadata_url.clone(),
                baseline: s.baseline.clone(),
                keep_authorization: keep,
            }),
        }
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = GuardService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GuardService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service [`GuardLayer`] wraps around an inner service.
#[derive(Clone)]
pub struct GuardService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> std::fmt::Debug for GuardService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardService").finish_non_exhaustive()
    }
}

impl<S, B> Service<Request<B>> for GuardService<S>
where
    S: Service<Request<B>> + Clone + Send + 'static,
    S::Response: IntoResponse,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The clone is not ready; call the one that is (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            let outcome = shared.auth.authenticate(&parts).await;
            match outcome {
                Ok(principal) => {
                    if !shared.keep_authorization {
                        parts.headers.remove(AUTHORIZATION);
                    }
                    parts.extensions.insert(principal);
                    let response = inner.call(Request::from_parts(parts, body)).await?;
                    Ok(response.into_response())
                }
                Err(challenge) => Ok(challenge_response(
                    &challenge,
                    &shared.resource_metadata_url,
                    &shared.baseline,
                )),
            }
        })
    }
}

/// Handlers behind a [`GuardLayer`] take the caller as an argument. Without the layer the
/// extraction fails with a 500 JSON-RPC error (a wiring mistake, never an open door).
impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Principal>().cloned().ok_or_else(|| {
            tracing::error!("Principal extracted on a route that GuardLayer does not protect");
            let body = serde_json::json!({
                "jsonrpc": "2.0", "id": null,
                "error": {"code": -32603, "message": "Internal error"},
            });
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(http::header::CACHE_CONTROL, "no-store")],
                axum::Json(body),
            )
                .into_response()
        })
    }
}
