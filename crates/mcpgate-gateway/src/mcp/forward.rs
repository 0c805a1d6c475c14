//! Forwarding (MCP Streamable HTTP, checklist §2(b) "no token
//! passthrough", §2(e) sessions, §2(f) stdio): `initialize` creates a
//! session (an upstream session or a stdio child), later requests go to
//! the session's backend, stateless (2026-07-28) requests to the upstream
//! directly or to the user's own stdio child. Upstream failures become 502
//! JSON-RPC errors without internal detail.

use std::sync::Arc;

use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use mcpgate_guard::Principal;
use serde_json::{Value, json};

use super::{CHILD_VERSION, Ctx, SESSION, header, lookup};
use crate::config::Transport;
use crate::jsonrpc::{Envelope, Kind, codes};
use crate::refusal::Refusal;
use crate::relay;
use crate::session::{Backend, Owner, Session};
use crate::upstream::stdio::StdioChild;

/// What reached the client from the upstream, for the audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Forwarded {
    /// Forwarded, and the upstream's answer relayed.
    Allowed,
    /// Forwarded; the upstream answered with a 4xx, relayed.
    UpstreamRefused,
}

impl Forwarded {
    /// (decision, reason) of the audit record.
    pub(super) fn audit(self) -> (&'static str, &'static str) {
        match self {
            Forwarded::Allowed => ("allow", "allowed"),
            Forwarded::UpstreamRefused => ("error", "upstream_refused"),
        }
    }
}

type Forward = Result<(Response, Forwarded), Refusal>;

/// An upstream failure: logged and counted here with its detail; the
/// client gets a bare 502.
fn upstream_failure(ctx: &Ctx, what: &str, reason: &'static str) -> Refusal {
    tracing::warn!(upstream = %ctx.up.cfg.name, request_id = %ctx.rid, "{what}");
    metrics::counter!("mcpgate_gateway_upstream_errors_total", "upstream" => ctx.up.cfg.name.clone(), "reason" => reason).increment(1);
    Refusal::Upstream { reason }
}

fn spawn_child(ctx: &Ctx, shared: bool) -> Result<Arc<StdioChild>, std::io::Error> {
    match &ctx.up.cfg.transport {
        Transport::Stdio(cfg) => StdioChild::spawn(
            &ctx.up.cfg.name,
            cfg,
            ctx.up
                .launch
                .as_ref()
                .ok_or_else(|| std::io::Error::other("stdio upstream without a launch plan"))?,
            shared,
            ctx.gw.0.settings.max_message_bytes,
        ),
        Transport::Http(_) => Err(std::io::Error::other("not a stdio upstream")),
    }
}

pub(super) async fn session_post(
    ctx: &Ctx,
    p: &Principal,
    headers: &HeaderMap,
    env: &Envelope,
    bytes: Bytes,
) -> Forward {
    if env.kind == Kind::Request && env.is("initialize") {
        return initialize(ctx, p, headers, env, bytes).await;
    }
    let sid = header(headers, SESSION).ok_or(Refusal::MissingSession)?;
    let s = lookup(ctx, sid, p).ok_or(Refusal::UnknownSession)?;
    match &s.backend {
        Backend::Http { .. } => {
            http_forward(ctx, p, Method::POST, headers, Some(&s), Some(env), bytes).await
        }
        Backend::Stdio {
            child,
            shared,
            streams,
        } => {
            let stream = Stream::Session {
                id: &s.id,
                shared: *shared,
                streams,
            };
            stdio_forward(ctx, p, headers, child.clone(), stream, env).await
        }
    }
}

fn with_session(mut r: Response, id: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(id) {
        r.headers_mut().insert(SESSION, v);
    }
    r
}

async fn initialize(
    ctx: &Ctx,
    p: &Principal,
    headers: &HeaderMap,
    env: &Envelope,
    bytes: Bytes,
) -> Forward {
    let gw = &ctx.gw.0;
    let name = &ctx.up.cfg.name;
    match &ctx.up.cfg.transport {
        Transport::Http(_) => {
            let Some(h) = &ctx.up.http else {
                return Err(upstream_failure(ctx, "no HTTP client", "upstream_error"));
            };
            let resp = match h.send(Method::POST, headers, None, bytes).await {
                Ok(r) => r,
                Err(e) => {
                    return Err(upstream_failure(
                        ctx,
                        &e.to_string(),
                        "upstream_unreachable",
                    ));
                }
            };
            let (parts, body) = resp.into_parts();
            if !parts.status.is_success() {
                return upstream_status(ctx, p, env.id.as_ref(), parts, body).await;
            }
            let upstream_session = parts.headers.get(SESSION).cloned();
            let answer = match relay::upstream_answer(
                parts,
                body,
                gw.settings.max_message_bytes,
                ctx.outbound(p),
                env.id.clone(),
            )
            .await
            {
                Ok(r) => r,
                Err(e) => return Err(upstream_failure(ctx, e.what(), "upstream_error")),
            };
            let id = gw.sessions.mint_id();
            let backend = Backend::Http {
                upstream_session: std::sync::Mutex::new(upstream_session),
            };
            let (_, evicted) = gw.sessions.insert(id.clone(), name, Owner::of(p), backend);
            if let Some(e) = evicted {
                gw.end_session(&e);
            }
            Ok((with_session(answer, &id), Forwarded::Allowed))
        }
        Transport::Stdio(_) => {
            let shared = ctx.up.cfg.shared;
            let child = if shared {
                gw.children.shared(name, || spawn_child(ctx, true))
            } else {
                spawn_child(ctx, false)
            };
            let child = match child {
                Ok(c) => c,
                Err(e) => {
                    return Err(upstream_failure(
                        ctx,
                        &format!("starting the stdio upstream failed: {e}"),
                        "upstream_spawn_failed",
                    ));
                }
            };
            let id = gw.sessions.mint_id();
            let answer = if shared {
                match child
                    .ensure_initialized(env.value.get("params").cloned().unwrap_or(Value::Null))
                    .await
                {
                    Ok(result) => Some(json!({"jsonrpc": "2.0", "id": env.id, "result": result})),
                    Err(_) => None,
                }
            } else {
                first_response(&child, &id, env.value.clone(), ctx.up.cfg.timeout).await
            };
            let Some(mut answer) = answer else {
                if !shared {
                    child.kill();
                }
                return Err(upstream_failure(
                    ctx,
                    "the stdio upstream did not answer initialize",
                    "upstream_error",
                ));
            };
            ctx.outbound(p).decide(&mut answer);
            if answer.get("error").is_some() {
                if !shared {
                    child.kill();
                }
                return Ok((relay::json_response(&answer), Forwarded::Allowed));
            }
            let (_, evicted) = gw.sessions.insert(
                id.clone(),
                name,
                Owner::of(p),
                Backend::Stdio {
                    child,
                    shared,
                    streams: Default::default(),
                },
            );
            if let Some(e) = evicted {
                gw.end_session(&e);
            }
            Ok((
                with_session(relay::json_response(&answer), &id),
                Forwarded::Allowed,
            ))
        }
    }
}

/// Sends a request and waits (bounded) for its response, skipping
/// server→client messages.
async fn first_response(
    child: &Arc<StdioChild>,
    session: &str,
    msg: Value,
    timeout: std::time::Duration,
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

/// The session name stdio requests of stateless (2026-07-28) clients use.
const STATELESS_SESSION: &str = "stateless";

/// The HTTP status of a 2026-07-28 answer (as the MCP Streamable HTTP
/// transport maps JSON-RPC errors): 404 for an unknown method, 400 for an
/// unsupported version, a header mismatch or a missing client capability.
fn stateless_error_status(m: &Value) -> StatusCode {
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

/// Where a stdio request's answer goes.
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

async fn stdio_forward(
    ctx: &Ctx,
    p: &Principal,
    headers: &HeaderMap,
    child: Arc<StdioChild>,
    stream: Stream<'_>,
    env: &Envelope,
) -> Forward {
    let (session, shared) = match &stream {
        Stream::Session { id, shared, .. } => (*id, *shared),
        Stream::Stateless => (STATELESS_SESSION, false),
    };
    let gone = |ctx: &Ctx| {
        Err(upstream_failure(
            ctx,
            "the stdio upstream is not running",
            "upstream_exited",
        ))
    };
    let accepted = || Ok((relay::accepted(), Forwarded::Allowed));
    match env.kind {
        Kind::Notification => {
            if shared && env.is("notifications/initialized") {
                return accepted();
            }
            match child.notify(session, env.value.clone()).await {
                Ok(()) => accepted(),
                Err(_) => gone(ctx),
            }
        }
        Kind::Response => match child.respond(session, env.value.clone()).await {
            Ok(_) => accepted(),
            Err(_) => gone(ctx),
        },
        Kind::Request => {
            let out = ctx.outbound(p);
            let client_id = env.id.clone().unwrap_or(Value::Null);
            let mut rx = match child.request(session, env.value.clone()).await {
                Ok(rx) => rx,
                Err(_) => return gone(ctx),
            };
            if matches!(stream, Stream::Stateless) {
                // 2026-07-28 over HTTP: an error answer carries its HTTP status
                // (404 method not found, 400 missing capability, ...), so wait
                // for the first message before choosing between JSON and SSE.
                let Some(first) = rx.recv().await else {
                    return gone(ctx);
                };
                if first.get("method").is_none() {
                    let mut m = first;
                    out.decide(&mut m);
                    let mut r = relay::json_response(&m);
                    *r.status_mut() = stateless_error_status(&m);
                    return Ok((r, Forwarded::Allowed));
                }
                let (tx, rest) = tokio::sync::mpsc::unbounded_channel();
                let _ = tx.send(first);
                tokio::spawn(async move {
                    while let Some(m) = rx.recv().await {
                        if tx.send(m).is_err() {
                            break;
                        }
                    }
                });
                rx = rest;
            }
            if relay::accepts_sse(headers) {
                let r = match stream {
                    Stream::Session { streams, .. } => relay::logged_sse(streams, rx, out, true),
                    Stream::Stateless => {
                        relay::stdio_sse(child, session.to_string(), client_id, rx, out)
                    }
                };
                Ok((r, Forwarded::Allowed))
            } else {
                match relay::stdio_json(rx, &out).await {
                    Some(r) => Ok((r, Forwarded::Allowed)),
                    None => gone(ctx),
                }
            }
        }
    }
}

/// Maps an unsuccessful upstream answer: its own credentials refused or a
/// server error become 502 without detail; a 4xx is the client's business
/// and is relayed (decided like any answer).
async fn upstream_status(
    ctx: &Ctx,
    p: &Principal,
    id: Option<&Value>,
    parts: http::response::Parts,
    body: hyper::body::Incoming,
) -> Forward {
    match parts.status.as_u16() {
        401 | 403 => Err(upstream_failure(
            ctx,
            "the upstream refused the gateway's credentials",
            "upstream_auth",
        )),
        s if s >= 500 => Err(upstream_failure(
            ctx,
            &format!("the upstream answered {s}"),
            "upstream_error",
        )),
        _ => relay_answer(ctx, p, id, parts, body, Forwarded::UpstreamRefused).await,
    }
}

/// Relays an upstream answer through [`relay::upstream_answer`]; one that
/// cannot be relayed is a 502.
async fn relay_answer(
    ctx: &Ctx,
    p: &Principal,
    id: Option<&Value>,
    parts: http::response::Parts,
    body: hyper::body::Incoming,
    how: Forwarded,
) -> Forward {
    match relay::upstream_answer(
        parts,
        body,
        ctx.gw.0.settings.max_message_bytes,
        ctx.outbound(p),
        id.cloned(),
    )
    .await
    {
        Ok(r) => Ok((r, how)),
        Err(e) => Err(upstream_failure(ctx, e.what(), "upstream_error")),
    }
}

pub(super) async fn http_forward(
    ctx: &Ctx,
    p: &Principal,
    method: Method,
    headers: &HeaderMap,
    session: Option<&Arc<Session>>,
    env: Option<&Envelope>,
    bytes: Bytes,
) -> Forward {
    let id = env.and_then(|e| e.id.as_ref());
    let Some(h) = &ctx.up.http else {
        return Err(upstream_failure(ctx, "no HTTP client", "upstream_error"));
    };
    let upstream_session = session.and_then(|s| s.upstream_session());
    let resp = match h
        .send(method, headers, upstream_session.as_ref(), bytes)
        .await
    {
        Ok(r) => r,
        Err(e) => {
            return Err(upstream_failure(
                ctx,
                &e.to_string(),
                "upstream_unreachable",
            ));
        }
    };
    let (parts, body) = resp.into_parts();
    if parts.status == StatusCode::NOT_FOUND
        && let Some(s) = session
    {
        // The upstream ended its session: so does the gateway.
        ctx.gw.0.sessions.remove(&s.id);
        return Err(Refusal::UpstreamSessionGone);
    }
    if !parts.status.is_success() {
        return upstream_status(ctx, p, id, parts, body).await;
    }
    relay_answer(ctx, p, id, parts, body, Forwarded::Allowed).await
}

pub(super) async fn stateless_post(
    ctx: &Ctx,
    p: &Principal,
    headers: &HeaderMap,
    env: &Envelope,
    bytes: Bytes,
) -> Forward {
    match &ctx.up.cfg.transport {
        Transport::Http(_) => {
            http_forward(ctx, p, Method::POST, headers, None, Some(env), bytes).await
        }
        Transport::Stdio(_) => {
            let child = match ctx
                .gw
                .0
                .children
                .per_user(&ctx.up.cfg.name, p, || spawn_child(ctx, false))
            {
                Ok(c) => c,
                Err(e) => {
                    return Err(upstream_failure(
                        ctx,
                        &format!("starting the stdio upstream failed: {e}"),
                        "upstream_spawn_failed",
                    ));
                }
            };
            let params = json!({
                "protocolVersion": CHILD_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "mcpgate", "version": env!("CARGO_PKG_VERSION")},
            });
            let result = match child.ensure_initialized(params).await {
                Ok(r) => r,
                Err(_) => {
                    return Err(upstream_failure(
                        ctx,
                        "the stdio upstream did not initialize",
                        "upstream_error",
                    ));
                }
            };
            if env.kind == Kind::Request && env.is("initialize") {
                let answer = json!({"jsonrpc": "2.0", "id": env.id, "result": result});
                return Ok((relay::json_response(&answer), Forwarded::Allowed));
            }
            stdio_forward(ctx, p, headers, child, Stream::Stateless, env).await
        }
    }
}
