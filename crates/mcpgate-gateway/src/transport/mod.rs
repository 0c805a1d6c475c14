//! How the gateway reaches an upstream (MCP transports, checklist §2(b) "no
//! token passthrough", §2(e) sessions, §2(f) stdio). The request path in
//! `mcp.rs` decides; a [`Transport`] carries what was decided: it starts a
//! session (`initialize`), forwards one message, opens a session's stream
//! (GET) and ends a session. Each transport is one file here and one
//! [`crate::config::Transport`] variant, built in [`build`]:
//!
//! - [`http::Http`]: a Streamable HTTP upstream behind a pooled client;
//! - [`stdio::Stdio`]: a sandboxed child process, per session, per user
//!   (stateless clients) or shared.
//!
//! Upstream failures become a bare 502 JSON-RPC error; their detail is
//! logged and counted here, never sent to the client.

use std::sync::Arc;

use ::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use mcpgate_guard::Principal;

use crate::jsonrpc::Envelope;
use crate::mcp::Ctx;
use crate::refusal::Refusal;
use crate::session::{Backend, Session};

pub mod http;
pub mod stdio;

/// What reached the client from the upstream, for the audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwarded {
    /// Forwarded, and the upstream's answer relayed.
    Allowed,
    /// Forwarded; the upstream answered with a 4xx, relayed.
    UpstreamRefused,
}

impl Forwarded {
    /// (decision, reason) of the audit record.
    pub fn audit(self) -> (&'static str, &'static str) {
        match self {
            Forwarded::Allowed => ("allow", "allowed"),
            Forwarded::UpstreamRefused => ("error", "upstream_refused"),
        }
    }
}

/// The answer to relay and what it was, or why there is none.
pub type Forward = Result<(Response, Forwarded), Refusal>;

/// What `initialize` gave: the answer to relay and what stands behind the
/// new session, `None` when the upstream refused to initialize (its answer
/// is relayed and no session is made).
pub struct Started {
    pub answer: Response,
    pub how: Forwarded,
    pub backend: Option<Box<dyn Backend>>,
}

/// One admitted request on its way to an upstream: the request context
/// (gateway, upstream, request id), the authenticated principal and the
/// client's headers. Every transport method takes it.
pub struct Call<'a> {
    pub ctx: &'a Ctx,
    pub p: &'a Principal,
    pub headers: &'a HeaderMap,
}

impl Call<'_> {
    /// The decision on what the upstream sends back to this principal.
    pub fn outbound(&self) -> crate::outbound::Outbound {
        crate::outbound::Outbound::new(
            self.ctx.up.clone(),
            self.p.clone(),
            self.ctx.gw.0.states.clone(),
        )
    }

    /// An upstream failure: logged and counted with its detail; the client
    /// gets a bare 502.
    pub fn failure(&self, what: &str, reason: &'static str) -> Refusal {
        let name = &self.ctx.up.cfg.name;
        tracing::warn!(upstream = %name, request_id = %self.ctx.rid, "{what}");
        metrics::counter!("mcpgate_gateway_upstream_errors_total", "upstream" => name.clone(), "reason" => reason).increment(1);
        Refusal::Upstream { reason }
    }

    pub fn max_message_bytes(&self) -> usize {
        self.ctx.gw.0.settings.max_message_bytes
    }
}

/// An upstream the gateway forwards to.
#[async_trait::async_trait]
pub trait Transport: Send + Sync {
    /// `initialize` from a client that uses sessions (2025-11-25 and
    /// before): starts the upstream side of the new session `id` and answers.
    async fn initialize(
        &self,
        call: &Call<'_>,
        id: &str,
        env: &Envelope,
    ) -> Result<Started, Refusal>;

    /// Forwards one message: within `session`, or, for stateless
    /// (2026-07-28) clients, with none.
    async fn forward(&self, call: &Call<'_>, session: Option<&Session>, env: &Envelope) -> Forward;

    /// GET: the session's standalone stream, or (with `Last-Event-ID`) the
    /// rest of one of its streams.
    async fn open_stream(&self, call: &Call<'_>, session: &Session) -> Forward;

    /// Ends a session that has left the session table (DELETE, idle,
    /// eviction, shutdown). Does not wait.
    fn end_session(&self, session: &Session);

    /// What another replica needs to carry a session with this backend on
    /// (stored sealed in the shared session store), or `None` when it can
    /// live only in this process (a stdio child): other replicas then
    /// answer 404 to it.
    fn export(&self, _backend: &dyn Backend) -> Option<Vec<u8>> {
        None
    }

    /// The backend of a session another replica made, from what its
    /// [`export`](Self::export) gave; `None` if `state` is not one.
    fn import(&self, _state: &[u8]) -> Option<Box<dyn Backend>> {
        None
    }

    /// Ends a session this process does not hold, from its exported state
    /// (evicted or idle fleet-wide). Does not wait.
    fn end_exported(&self, _state: &[u8]) {}
}

/// The transport of one configured upstream: the one place that maps a
/// [`crate::config::Transport`] variant to its implementation.
pub fn build(
    u: &crate::config::UpstreamConfig,
    settings: &crate::config::GatewaySettings,
    vault: Option<&mcpgate_vault::Vault>,
    support: mcpgate_sandbox::Support,
) -> Result<Arc<dyn Transport>, String> {
    let protected_paths = &settings.protected_paths;
    Ok(match &u.transport {
        crate::config::Transport::Http(h) => Arc::new(http::Http::new(
            h,
            &u.auth,
            u.timeout,
            vault,
            &settings.public_url,
        )?),
        crate::config::Transport::Stdio(st) => {
            Arc::new(stdio::Stdio::new(u, st, protected_paths, support)?)
        }
    })
}

/// Names the gateway's session in an answer.
pub(crate) fn with_session(mut r: Response, id: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(id) {
        r.headers_mut().insert(crate::mcp::SESSION, v);
    }
    r
}
