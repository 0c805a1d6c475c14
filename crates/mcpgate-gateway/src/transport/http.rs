//! A Streamable HTTP upstream: every message is a request through the
//! pooled client of [`crate::upstream::http`], carrying the upstream's own
//! session id in place of the gateway's. The answer (JSON or an event
//! stream) is decided by [`relay::upstream_answer`] before it reaches the
//! client.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use hyper::body::Incoming;
use serde_json::Value;

use super::{Call, Forward, Forwarded, Started};
use crate::config::{HttpConfig, UpstreamAuth};
use crate::jsonrpc::Envelope;
use crate::refusal::Refusal;
use crate::relay;
use crate::session::{Backend, Owner, Session};
use crate::upstream::creds::Caller;
use crate::upstream::http::{HttpUpstream, UpstreamError};

pub struct Http {
    client: Arc<HttpUpstream>,
}

/// What stands behind a session on an HTTP upstream: the session id the
/// upstream gave (never sent to the client).
struct HttpSession {
    upstream_session: Mutex<Option<HeaderValue>>,
}

impl Backend for HttpSession {}

impl HttpSession {
    fn id(&self) -> Option<HeaderValue> {
        self.upstream_session.lock().expect("session lock").clone()
    }
}

fn upstream_session(s: &Session) -> Option<HeaderValue> {
    s.backend::<HttpSession>().and_then(HttpSession::id)
}

fn upstream_session_of(b: &dyn Backend) -> Option<HeaderValue> {
    (b as &dyn std::any::Any)
        .downcast_ref::<HttpSession>()
        .and_then(HttpSession::id)
}

impl Http {
    pub fn new(
        cfg: &HttpConfig,
        auth: &UpstreamAuth,
        timeout: std::time::Duration,
        vault: Option<&mcpgate_vault::Vault>,
        local_issuer: &str,
    ) -> Result<Self, String> {
        Ok(Self {
            client: Arc::new(HttpUpstream::new(cfg, auth, timeout, vault, local_issuer)?),
        })
    }

    /// Sends one request and maps what comes back: unreachable, the
    /// upstream's session gone (404 within a session), a refusal of our
    /// credentials or a server error (502), a relayed 4xx, or the decided
    /// answer.
    async fn send(
        &self,
        call: &Call<'_>,
        method: Method,
        session: Option<&Session>,
        env: Option<&Envelope>,
    ) -> Result<(http::response::Parts, Incoming), Refusal> {
        let body = env.map(Envelope::to_bytes).unwrap_or_default();
        let upstream_session = session.and_then(upstream_session);
        let resp = self
            .client
            .send(
                method,
                call.headers,
                Some(Caller::of(call.p)),
                upstream_session.as_ref(),
                body,
            )
            .await
            .map_err(|e| match e {
                UpstreamError::ConnectAccount(el) => Refusal::ConnectAccount(el),
                UpstreamError::NotLocalUser => Refusal::NotLocalUser,
                e => call.failure(&e.to_string(), "upstream_unreachable"),
            })?;
        let (parts, body) = resp.into_parts();
        if parts.status == StatusCode::NOT_FOUND
            && let Some(s) = session
        {
            // The upstream ended its session: so does the gateway.
            call.ctx.gw.0.forget_session(&s.id).await;
            return Err(Refusal::UpstreamSessionGone);
        }
        Ok((parts, body))
    }

    async fn exchange(
        &self,
        call: &Call<'_>,
        method: Method,
        session: Option<&Session>,
        env: Option<&Envelope>,
    ) -> Forward {
        let (parts, body) = self.send(call, method, session, env).await?;
        relay(call, env.and_then(|e| e.id.as_ref()), parts, body).await
    }
}

/// Relays an upstream answer through [`relay::upstream_answer`]: its own
/// credentials refused or a server error become 502 without detail; a 4xx
/// is the client's business and is relayed, decided like any answer; one
/// that cannot be relayed is a 502.
async fn relay(
    call: &Call<'_>,
    id: Option<&Value>,
    parts: http::response::Parts,
    body: Incoming,
) -> Forward {
    let how = match parts.status.as_u16() {
        401 | 403 => {
            return Err(call.failure(
                "the upstream refused the gateway's credentials",
                "upstream_auth",
            ));
        }
        s if s >= 500 => {
            return Err(call.failure(&format!("the upstream answered {s}"), "upstream_error"));
        }
        s if s >= 300 => Forwarded::UpstreamRefused,
        _ => Forwarded::Allowed,
    };
    relay::upstream_answer(
        parts,
        body,
        call.max_message_bytes(),
        call.outbound(),
        id.cloned(),
    )
    .await
    .map(|r| (r, how))
    .map_err(|e| call.failure(e.what(), "upstream_error"))
}

#[async_trait::async_trait]
impl super::Transport for Http {
    async fn initialize(
        &self,
        call: &Call<'_>,
        _id: &str,
        env: &Envelope,
    ) -> Result<Started, Refusal> {
        let (parts, body) = self.send(call, Method::POST, None, Some(env)).await?;
        let backend = parts.status.is_success().then(|| {
            let id = parts.headers.get(crate::mcp::SESSION).cloned();
            Box::new(HttpSession {
                upstream_session: Mutex::new(id),
            }) as Box<dyn Backend>
        });
        let (answer, how) = relay(call, env.id.as_ref(), parts, body).await?;
        Ok(Started {
            answer,
            how,
            backend,
        })
    }

    async fn forward(&self, call: &Call<'_>, session: Option<&Session>, env: &Envelope) -> Forward {
        self.exchange(call, Method::POST, session, Some(env)).await
    }

    async fn open_stream(&self, call: &Call<'_>, session: &Session) -> Forward {
        self.exchange(call, Method::GET, Some(session), None).await
    }

    fn end_session(&self, session: &Session) {
        self.delete_upstream_session(upstream_session(session), Some(&session.owner));
    }

    /// The upstream's session id, or nothing when it gave none: `[0]` or
    /// `[1, id…]`.
    fn export(&self, backend: &dyn Backend) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        match upstream_session_of(backend) {
            Some(v) => {
                out.push(1);
                out.extend_from_slice(v.as_bytes());
            }
            None => out.push(0),
        }
        Some(out)
    }

    fn import(&self, state: &[u8]) -> Option<Box<dyn Backend>> {
        let id = imported_session(state)?;
        Some(Box::new(HttpSession {
            upstream_session: Mutex::new(id),
        }))
    }

    fn end_exported(&self, state: &[u8]) {
        if let Some(id) = imported_session(state) {
            self.delete_upstream_session(id, None);
        }
    }
}

/// The upstream session id in an exported state (`None` inside: the
/// upstream gave none); `None` for bytes that are not a state.
fn imported_session(state: &[u8]) -> Option<Option<HeaderValue>> {
    match state.split_first()? {
        (0, []) => Some(None),
        (1, id) => HeaderValue::from_bytes(id).ok().map(Some),
        _ => None,
    }
}

impl Http {
    /// DELETEs the upstream's session, if there is one, for its owner when
    /// known (a `user_oauth` upstream needs the owner's token). Does not wait.
    fn delete_upstream_session(
        &self,
        upstream_session: Option<HeaderValue>,
        owner: Option<&Owner>,
    ) {
        let Some(upstream_session) = upstream_session else {
            return;
        };
        let client = self.client.clone();
        let owner = owner.map(|o| (o.issuer.clone(), o.subject.clone()));
        tokio::spawn(async move {
            let caller = owner
                .as_ref()
                .map(|(issuer, subject)| Caller { issuer, subject });
            let _ = client
                .send(
                    Method::DELETE,
                    &HeaderMap::new(),
                    caller,
                    Some(&upstream_session),
                    Bytes::new(),
                )
                .await;
        });
    }
}
