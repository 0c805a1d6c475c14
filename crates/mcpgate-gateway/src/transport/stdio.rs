//! A stdio upstream (MCP transports "stdio", checklist §2(f)): a child
//! process started through the sandbox, one per session, one per user for
//! stateless (2026-07-28) clients, or one shared by every session
//! (`shared = true`). Its messages are JSON lines, parsed strictly by
//! [`crate::upstream::stdio`]; answers reach the client as JSON or as
//! resumable event streams ([`crate::resume`]).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Call, Forward, Forwarded, Started};
use crate::config::{StdioConfig, UpstreamConfig};
use crate::jsonrpc::{Envelope, Kind, codes};
use crate::refusal::Refusal;
use crate::relay;
use crate::session::{Backend, Session};
use crate::upstream::stdio::{Launch, StdioChild};

/// The version the gateway initializes per-user and shared children with.
const CHILD_VERSION: &str = "2025-11-25";
/// The session name stdio requests of stateless (2026-07-28) clients use.
const STATELESS_SESSION: &str = "stateless";

pub struct Stdio {
    name: String,
    cfg: StdioConfig,
    shared: bool,
    timeout: Duration,
    launch: Launch,
}

/// What stands behind a session on a stdio upstream: its own child or the
/// shared one, and the session's resumable streams.
struct StdioSession {
    child: Arc<StdioChild>,
    shared: bool,
    streams: crate::resume::Streams,
}

impl Backend for StdioSession {
    fn child(&self) -> Option<&Arc<StdioChild>> {
        Some(&self.child)
    }
}

/// Whose child serves a message.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Whose {
    /// A new session's own child.
    Session,
    /// The user's own child (stateless clients).
    User,
    /// The upstream's one shared child (`shared = true`).
    Shared,
}

/// Where a request's answer goes.
enum Stream<'a> {
    /// A session (2025-11-25 and before): resumable streams, no cancel on drop.
    Session {
        id: &'a str,
        shared: bool,
        streams: &'a crate::resume::Streams,
    },
    /// A stateless (2026-07-28) request on the user's own child.
    Stateless,
}

impl Stdio {
    /// Resolves the sandbox of the upstream's children against the running
    /// kernel (see [`Launch::prepare`]) and says at start how they are confined.
    pub fn new(
        u: &UpstreamConfig,
        cfg: &StdioConfig,
        protected_paths: &[std::path::PathBuf],
        support: mcpgate_sandbox::Support,
    ) -> Result<Self, String> {
        let launch = Launch::prepare(cfg, protected_paths, support)?;
        log_sandbox(&u.name, cfg, &launch, support);
        Ok(Self {
            name: u.name.clone(),
            cfg: cfg.clone(),
            shared: u.shared,
            timeout: u.timeout,
            launch,
        })
    }

    /// The child a message goes to, started if need be.
    fn child(&self, call: &Call<'_>, whose: Whose) -> Result<Arc<StdioChild>, Refusal> {
        let spawn = || {
            // A new process needs a place under `max_children` first.
            let slot = call
                .ctx
                .gw
                .0
                .capacity
                .child()
                .map_err(Refusal::AtCapacity)?;
            StdioChild::spawn(
                &self.name,
                &self.cfg,
                &self.launch,
                whose == Whose::Shared,
                call.max_message_bytes(),
                slot,
            )
            .map_err(|e| {
                call.failure(
                    &format!("starting the stdio upstream failed: {e}"),
                    "upstream_spawn_failed",
                )
            })
        };
        let children = &call.ctx.gw.0.children;
        match whose {
            Whose::Session => spawn(),
            Whose::User => children.per_user(&self.name, call.p, spawn),
            Whose::Shared => children.shared(&self.name, spawn),
        }
    }

    /// A stateless (2026-07-28) message: to the user's own child, which the
    /// gateway initializes itself.
    async fn stateless(&self, call: &Call<'_>, env: &Envelope) -> Forward {
        let child = self.child(call, Whose::User)?;
        let params = json!({
            "protocolVersion": CHILD_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "mcpgate", "version": env!("CARGO_PKG_VERSION")},
        });
        let result = child
            .ensure_initialized(params)
            .await
            .map_err(|_| call.failure("the stdio upstream did not initialize", "upstream_error"))?;
        if env.kind == Kind::Request && env.is("initialize") {
            let answer = json!({"jsonrpc": "2.0", "id": env.id, "result": result});
            return Ok((relay::json_response(&answer), Forwarded::Allowed));
        }
        forward(call, child, Stream::Stateless, env).await
    }
}

#[async_trait::async_trait]
impl super::Transport for Stdio {
    async fn initialize(
        &self,
        call: &Call<'_>,
        id: &str,
        env: &Envelope,
    ) -> Result<Started, Refusal> {
        let shared = self.shared;
        let whose = if shared {
            Whose::Shared
        } else {
            Whose::Session
        };
        let child = self.child(call, whose)?;
        let answer = if shared {
            let params = env.value.get("params").cloned().unwrap_or(Value::Null);
            match child.ensure_initialized(params).await {
                Ok(result) => Some(json!({"jsonrpc": "2.0", "id": env.id, "result": result})),
                Err(_) => None,
            }
        } else {
            first_response(&child, id, env.value.clone(), self.timeout).await
        };
        let Some(mut answer) = answer else {
            if !shared {
                child.kill();
            }
            return Err(call.failure(
                "the stdio upstream did not answer initialize",
                "upstream_error",
            ));
        };
        call.outbound().decide(&mut answer);
        let backend = if answer.get("error").is_some() {
            if !shared {
                child.kill();
            }
            None
        } else {
            Some(Box::new(StdioSession {
                child,
                shared,
                streams: Default::default(),
            }) as Box<dyn Backend>)
        };
        Ok(Started {
            answer: relay::json_response(&answer),
            how: Forwarded::Allowed,
            backend,
        })
    }

    async fn forward(&self, call: &Call<'_>, session: Option<&Session>, env: &Envelope) -> Forward {
        let Some(s) = session else {
            return self.stateless(call, env).await;
        };
        let b = s.backend::<StdioSession>().ok_or(Refusal::UnknownSession)?;
        let stream = Stream::Session {
            id: &s.id,
            shared: b.shared,
            streams: &b.streams,
        };
        forward(call, b.child.clone(), stream, env).await
    }

    async fn open_stream(&self, call: &Call<'_>, s: &Session) -> Forward {
        let b = s.backend::<StdioSession>().ok_or(Refusal::UnknownSession)?;
        if !relay::accepts_sse(call.headers) {
            return Err(Refusal::NotAcceptable);
        }
        let r = match crate::mcp::header(call.headers, "last-event-id") {
            // Resuming: what followed that event on the same stream.
            Some(last) => {
                let (log, after) = b.streams.resume(last).ok_or(Refusal::UnknownEventId)?;
                relay::log_sse(log, after, false)
            }
            None => relay::logged_sse(
                &b.streams,
                b.child.open_stream(&s.id),
                call.outbound(),
                false,
            ),
        };
        Ok((r, Forwarded::Allowed))
    }

    fn end_session(&self, s: &Session) {
        let Some(b) = s.backend::<StdioSession>() else {
            return;
        };
        if b.shared {
            b.child.close_session(&s.id);
        } else {
            b.child.kill();
        }
    }
}

/// Sends `initialize` to a session's own child and waits (bounded) for its
/// answer, skipping server→client messages.
async fn first_response(
    child: &Arc<StdioChild>,
    session: &str,
    msg: Value,
    timeout: Duration,
) -> Option<Value> {
    let mut rx = child.request(session, msg).await.ok()?;
    let wait = async {
        while let Some(m) = rx.recv().await {
            if m.get("method").is_none() {
                return Some(m);
            }
        }
        None
    };
    tokio::time::timeout(timeout, wait).await.ok().flatten()
}

/// The HTTP status of a 2026-07-28 answer (as the MCP Streamable HTTP
/// transport maps JSON-RPC errors): 404 for an unknown method, 400 for an
/// unsupported version, a header mismatch or a missing client capability.
fn stateless_error_status(m: &Value) -> http::StatusCode {
    use http::StatusCode;
    match m
        .get("error")
        .and_then(|e| e.get("code"))
        .and_then(Value::as_i64)
    {
        Some(codes::METHOD_NOT_FOUND) => StatusCode::NOT_FOUND,
        Some(
            codes::UNSUPPORTED_PROTOCOL_VERSION
            | codes::HEADER_MISMATCH
            | codes::MISSING_REQUIRED_CLIENT_CAPABILITY,
        ) => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    }
}

/// One message to a child: a notification or a response is accepted (202);
/// a request's answer comes back as JSON or as an event stream.
async fn forward(
    call: &Call<'_>,
    child: Arc<StdioChild>,
    stream: Stream<'_>,
    env: &Envelope,
) -> Forward {
    let (session, shared) = match &stream {
        Stream::Session { id, shared, .. } => (*id, *shared),
        Stream::Stateless => (STATELESS_SESSION, false),
    };
    let gone = || call.failure("the stdio upstream is not running", "upstream_exited");
    let accepted = || Ok((relay::accepted(), Forwarded::Allowed));
    match env.kind {
        Kind::Notification => {
            if shared && env.is("notifications/initialized") {
                return accepted();
            }
            child
                .notify(session, env.value.clone())
                .await
                .map_err(|_| gone())?;
            accepted()
        }
        Kind::Response => {
            child
                .respond(session, env.value.clone())
                .await
                .map_err(|_| gone())?;
            accepted()
        }
        Kind::Request => {
            let out = call.outbound();
            let client_id = env.id.clone().unwrap_or(Value::Null);
            let mut rx = child
                .request(session, env.value.clone())
                .await
                .map_err(|_| gone())?;
            if matches!(stream, Stream::Stateless) {
                // 2026-07-28 over HTTP: an error answer carries its HTTP status
                // (404 method not found, 400 missing capability, ...), so wait
                // for the first message before choosing between JSON and SSE.
                let first = rx.peek().await.ok_or_else(gone)?;
                if first.get("method").is_none() {
                    let mut m = rx.recv().await.ok_or_else(gone)?;
                    out.decide(&mut m);
                    let mut r = relay::json_response(&m);
                    *r.status_mut() = stateless_error_status(&m);
                    return Ok((r, Forwarded::Allowed));
                }
            }
            if relay::accepts_sse(call.headers) {
                let r = match stream {
                    Stream::Session { streams, .. } => relay::logged_sse(streams, rx, out, true),
                    Stream::Stateless => {
                        relay::stdio_sse(child, session.to_string(), client_id, rx, out)
                    }
                };
                Ok((r, Forwarded::Allowed))
            } else {
                let r = relay::stdio_json(rx, &out).await.ok_or_else(gone)?;
                Ok((r, Forwarded::Allowed))
            }
        }
    }
}

/// Says at start how the upstream's children are confined; a best-effort
/// sandbox that lacks kernel features, and a switched-off one, are warnings.
fn log_sandbox(name: &str, cfg: &StdioConfig, launch: &Launch, support: mcpgate_sandbox::Support) {
    use mcpgate_sandbox::Mode;
    match (launch, cfg.sandbox.mode) {
        (Launch::Direct, _) => tracing::warn!(
            upstream = name,
            "stdio upstream runs WITHOUT a sandbox ([upstream.sandbox] mode = \"off\"): it can read everything mcpgate can"
        ),
        (Launch::Sandboxed { plan, .. }, mode) => {
            let missing = mcpgate_sandbox::plan::missing(&cfg.sandbox, support);
            if mode == Mode::BestEffort && !missing.is_empty() {
                tracing::warn!(
                    upstream = name,
                    missing = %missing.join(", "),
                    "stdio upstream sandbox is incomplete on this kernel (best-effort)"
                );
            }
            tracing::info!(
                upstream = name,
                mode = mode.as_str(),
                landlock_abi = support.landlock_abi,
                uid = plan.ids.map(|i| i.uid),
                "stdio upstream sandboxed"
            );
        }
    }
}
