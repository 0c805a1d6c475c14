//! The MCP endpoint `/mcp/{name}` (MCP Streamable HTTP; checklist §2(b)
//! validation and policy, §2(e) transport and sessions): the request path
//! every POST, GET and DELETE takes —
//!
//! 1. the upstream by name, `Host` (loopback listener) and `Origin` checks;
//! 2. authentication of *every* request (401/400 challenges from the guard);
//! 3. rate limits (429 + `Retry-After`) and the baseline scopes (403 step-up);
//! 4. the protocol version: 2026-07-28 is stateless (headers checked
//!    against the body, GET/DELETE 405), older versions use sessions bound
//!    to the token's (issuer, subject, client_id);
//! 5. per-item policy for `tools/call`, `prompts/get` and `resources/read`
//!    (403 deny, 403 `insufficient_scope` step-up; listings filtered);
//! 6. forwarding to the stdio child or the HTTP upstream, and an audit record.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Request, State};
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use mcpgate_guard::{Challenge, Principal, challenge_response};
use mcpgate_store::AuditRecord;
use serde_json::Value;

use crate::jsonrpc::{self, Envelope, Kind, codes};
use crate::origin::Refusal;
use crate::policy::{self, Decision};
use crate::relay::{self, error_response};
use crate::session::{Backend, Session};
use crate::{Gateway, Upstream};

mod forward;
use forward::{http_forward, session_post, stateless_post};

/// Protocol versions the gateway speaks to clients.
pub const SUPPORTED_VERSIONS: &[&str] = &["2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"];
/// The stateless revision.
pub const STATELESS_VERSION: &str = "2026-07-28";
const SESSION: &str = "mcp-session-id";
/// The version the gateway initializes per-user and shared children with.
const CHILD_VERSION: &str = "2025-11-25";

/// The per-request context: what the audit record needs.
struct Ctx {
    gw: Gateway,
    up: Arc<Upstream>,
    rid: String,
    start: Instant,
    principal: Option<Principal>,
    method: Option<String>,
    tool: Option<String>,
}

impl Ctx {
    /// The decision on what the upstream sends back to `p`.
    fn outbound(&self, p: &Principal) -> crate::outbound::Outbound {
        crate::outbound::Outbound::new(self.up.clone(), p.clone(), self.gw.0.states.clone())
    }

    fn audit(&self, decision: &'static str, reason: &'static str, status: StatusCode) {
        let elapsed = self.start.elapsed();
        let p = self.principal.as_ref();
        let time_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        self.up
            .metrics
            .record(status.as_u16(), decision, reason, elapsed);
        self.gw.0.audit.record(AuditRecord {
            time_ms,
            request_id: self.rid.clone(),
            issuer: p.map(|p| p.issuer.clone()),
            subject: p.map(|p| p.subject.clone()),
            client_id: p.map(|p| p.client_id.clone()),
            upstream: self.up.cfg.name.clone(),
            method: self.method.clone(),
            tool: self.tool.clone(),
            decision: decision.to_string(),
            reason: reason.to_string(),
            status: i64::from(status.as_u16()),
            latency_ms: elapsed.as_millis() as i64,
        });
    }

    /// Audits `resp` under `reason` (the decision follows from the reason) and returns it.
    fn done(&self, resp: Response, reason: &'static str) -> Response {
        let decision = match reason {
            "allowed" => "allow",
            "insufficient_scope" => "step_up",
            r if r.starts_with("upstream") => "error",
            r if r.ends_with("rate_limit") => "rate_limited",
            _ => "deny",
        };
        self.audit(decision, reason, resp.status());
        resp
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn id_of(env: &Envelope) -> Option<&Value> {
    env.id.as_ref()
}

/// Steps 1-3, common to POST, GET and DELETE.
async fn admit(
    gw: &Gateway,
    name: &str,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<(Ctx, Principal), Response> {
    let Some(up) = gw.0.upstreams.get(name).cloned() else {
        return Err(error_response(
            StatusCode::NOT_FOUND,
            None,
            codes::INVALID_REQUEST,
            "no such MCP endpoint",
        ));
    };
    let mut ctx = Ctx {
        gw: gw.clone(),
        up: up.clone(),
        rid: gw.0.request_ids.next(),
        start: Instant::now(),
        principal: None,
        method: None,
        tool: None,
    };
    if gw.0.stop.is_cancelled() {
        let r = error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            codes::SERVER_ERROR,
            "the gateway is shutting down",
        );
        return Err(ctx.done(r, "shutting_down"));
    }
    match up.origin.check(headers) {
        Ok(()) => {}
        Err(Refusal::Origin) => {
            let r = error_response(
                StatusCode::FORBIDDEN,
                None,
                codes::SERVER_ERROR,
                "Origin not allowed",
            );
            return Err(ctx.done(r, "foreign_origin"));
        }
        Err(Refusal::Host) => {
            let r = error_response(
                StatusCode::MISDIRECTED_REQUEST,
                None,
                codes::SERVER_ERROR,
                "Host not allowed",
            );
            return Err(ctx.done(r, "foreign_host"));
        }
    }
    let p = match up.auth.authenticate(headers, query).await {
        Ok(p) => p,
        Err(ch) => {
            let reason = match &ch {
                Challenge::Missing => "missing_token",
                Challenge::InvalidToken(_) => "invalid_token",
                Challenge::InvalidRequest(_) => "invalid_request",
                Challenge::InsufficientScope { .. } => "insufficient_scope",
            };
            let r = challenge_response(&ch, &up.prm_url, &up.cfg.scopes);
            let decision = if matches!(ch, Challenge::InsufficientScope { .. }) {
                "step_up"
            } else {
                "unauthenticated"
            };
            ctx.audit(decision, reason, r.status());
            return Err(r);
        }
    };
    ctx.principal = Some(p.clone());
    if let Some(l) = &up.limits
        && let Err((reason, wait)) = l.check(&p)
    {
        let mut r = error_response(
            StatusCode::TOO_MANY_REQUESTS,
            None,
            codes::SERVER_ERROR,
            "rate limit exceeded",
        );
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        r.headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        return Err(ctx.done(r, reason));
    }
    if let Decision::StepUp(required) = policy::decide_baseline(&up.cfg, &p) {
        let ch = Challenge::InsufficientScope {
            required,
            description: "this resource needs more scope".into(),
        };
        return Err(ctx.done(
            challenge_response(&ch, &up.prm_url, &up.cfg.scopes),
            "insufficient_scope",
        ));
    }
    Ok((ctx, p))
}

/// The version a request speaks; `Err` for an unsupported one (400).
fn protocol_version(headers: &HeaderMap) -> Result<Option<&str>, ()> {
    match header(headers, "mcp-protocol-version") {
        None => Ok(None),
        Some(v) if SUPPORTED_VERSIONS.contains(&v) => Ok(Some(v)),
        Some(_) => Err(()),
    }
}

pub(crate) async fn post(
    State(gw): State<Gateway>,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let (mut ctx, p) = match admit(&gw, &name, &parts.headers, parts.uri.query()).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let headers = &parts.headers;
    let Ok(version) = protocol_version(headers) else {
        // UnsupportedProtocolVersionError (2026-07-28, also right before):
        // the versions we speak and the one asked for, with the request's id.
        let bytes = axum::body::to_bytes(body, gw.0.settings.max_message_bytes)
            .await
            .unwrap_or_default();
        let id = jsonrpc::parse(&bytes).ok().and_then(|e| e.id);
        let requested = header(headers, "mcp-protocol-version").unwrap_or_default();
        let mut r = relay::json_response(&serde_json::json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": {
                "code": codes::UNSUPPORTED_PROTOCOL_VERSION,
                "message": "unsupported MCP-Protocol-Version",
                "data": { "supported": SUPPORTED_VERSIONS, "requested": requested },
            },
        }));
        *r.status_mut() = StatusCode::BAD_REQUEST;
        return ctx.done(r, "unsupported_protocol_version");
    };
    let stateless = version == Some(STATELESS_VERSION);
    let Ok(bytes) = axum::body::to_bytes(body, gw.0.settings.max_message_bytes).await else {
        let r = error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
            codes::INVALID_REQUEST,
            "message too large",
        );
        return ctx.done(r, "too_large");
    };
    let mut env = match jsonrpc::parse(&bytes) {
        Ok(e) => e,
        Err(e) => {
            return ctx.done(
                error_response(StatusCode::BAD_REQUEST, None, e.code(), e.message()),
                "malformed",
            );
        }
    };
    ctx.method = env.method.clone();
    // The audit `tool` column holds the tool, prompt or resource used.
    ctx.tool = env.name.clone();
    if stateless && let Some(m) = missing_stateless_meta(&env) {
        let r = error_response(
            StatusCode::BAD_REQUEST,
            id_of(&env),
            codes::INVALID_PARAMS,
            m,
        );
        return ctx.done(r, "malformed");
    }
    if stateless
        && env.kind == Kind::Request
        && env
            .method
            .as_deref()
            .is_some_and(|m| REMOVED_IN_STATELESS.contains(&m))
    {
        let r = error_response(
            StatusCode::NOT_FOUND,
            id_of(&env),
            codes::METHOD_NOT_FOUND,
            "Method not found (removed in 2026-07-28)",
        );
        return ctx.done(r, "method_not_found");
    }
    if stateless && let Err(m) = check_stateless_headers(headers, &env) {
        let r = error_response(
            StatusCode::BAD_REQUEST,
            id_of(&env),
            codes::HEADER_MISMATCH,
            m,
        );
        return ctx.done(r, "header_mismatch");
    }
    if let Some(item) = policy::item_of(&env) {
        let (kind, item) = match item {
            Ok(x) => x,
            Err(what) => {
                let r = error_response(
                    StatusCode::BAD_REQUEST,
                    id_of(&env),
                    codes::INVALID_PARAMS,
                    &format!("{} needs {what}", env.method.as_deref().unwrap_or_default()),
                );
                return ctx.done(r, "malformed");
            }
        };
        // The audit `tool` column names the item, however it was reached.
        ctx.tool = Some(item.to_string());
        match policy::decide(&ctx.up.cfg, &p, kind, item) {
            Decision::Allow => {}
            Decision::Deny(reason) => {
                let r = error_response(
                    StatusCode::FORBIDDEN,
                    id_of(&env),
                    codes::SERVER_ERROR,
                    &format!("this {} is not available to you", kind.noun()),
                );
                return ctx.done(r, reason);
            }
            Decision::StepUp(required) => {
                let ch = Challenge::InsufficientScope {
                    required,
                    description: format!("this {} needs more scope", kind.noun()),
                };
                return ctx.done(
                    challenge_response(&ch, &ctx.up.prm_url, &ctx.up.cfg.scopes),
                    "insufficient_scope",
                );
            }
        }
    }
    // A request state goes back to the upstream only from the user it was
    // sealed for (see `outbound`).
    if let Err(e) = ctx.outbound(&p).unseal_request(&mut env.value) {
        let message = match e {
            crate::outbound::StateRefusal::Malformed => {
                "Invalid params: requestState was not issued by this gateway"
            }
            crate::outbound::StateRefusal::NotYours => {
                "Invalid params: requestState was issued to another user, client or server"
            }
        };
        let r = error_response(
            StatusCode::BAD_REQUEST,
            id_of(&env),
            codes::INVALID_PARAMS,
            message,
        );
        return ctx.done(r, "foreign_request_state");
    }
    // The gateway decided on `env` and forwards `env` serialised again, never
    // the bytes it received: an upstream whose JSON parser disagrees with
    // ours still reads what policy saw.
    let bytes = env.to_bytes();
    let (resp, reason) = if stateless {
        stateless_post(&ctx, &p, headers, &env, bytes).await
    } else {
        session_post(&ctx, &p, headers, &env, bytes).await
    };
    ctx.done(resp, reason)
}

/// Methods 2026-07-28 removed: the gateway (the HTTP server its clients
/// see) answers them 404 / -32601 for every upstream, as the revision says.
const REMOVED_IN_STATELESS: &[&str] = &[
    "initialize",
    "ping",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
];

/// 2026-07-28: a request must carry `_meta` with the protocol version and the
/// client capabilities (-32602, HTTP 400 otherwise).
fn missing_stateless_meta(env: &Envelope) -> Option<&'static str> {
    if env.kind != Kind::Request {
        return None;
    }
    let meta = env.value.get("params").and_then(|p| p.get("_meta"));
    let Some(meta) = meta.and_then(Value::as_object) else {
        return Some("Invalid params: 2026-07-28 requests need params._meta");
    };
    if !meta
        .get(jsonrpc::META_PROTOCOL_VERSION)
        .is_some_and(Value::is_string)
    {
        return Some("Invalid params: request requires protocolVersion in request _meta");
    }
    if !meta
        .get(jsonrpc::META_CLIENT_CAPABILITIES)
        .is_some_and(Value::is_object)
    {
        return Some("Invalid params: request requires clientCapabilities in request _meta");
    }
    None
}

/// 2026-07-28: `MCP-Protocol-Version` must equal `_meta`'s, `Mcp-Method`
/// the method and `Mcp-Name` the tool, prompt or resource named.
fn check_stateless_headers(headers: &HeaderMap, env: &Envelope) -> Result<(), &'static str> {
    if env.kind == Kind::Response {
        return Ok(());
    }
    if env.meta_version.as_deref() != header(headers, "mcp-protocol-version") {
        return Err("MCP-Protocol-Version does not match _meta");
    }
    let method = header(headers, "mcp-method").and_then(jsonrpc::decode_header_value);
    if method.as_deref() != env.method.as_deref() {
        return Err("Mcp-Method does not match the body");
    }
    if matches!(
        env.method.as_deref(),
        Some("tools/call" | "resources/read" | "prompts/get")
    ) {
        let name = header(headers, "mcp-name").and_then(jsonrpc::decode_header_value);
        if name.is_none() || name != env.name {
            return Err("Mcp-Name does not match the body");
        }
    }
    Ok(())
}

/// The session `sid` of this upstream and principal, if it is alive.
fn lookup(ctx: &Ctx, sid: &str, p: &Principal) -> Option<Arc<Session>> {
    let s = ctx.gw.0.sessions.get(sid, &ctx.up.cfg.name, p)?;
    if s.child().is_some_and(|c| !c.is_alive()) {
        if let Some(s) = ctx.gw.0.sessions.remove(sid) {
            ctx.gw.0.end_session(&s);
        }
        return None;
    }
    Some(s)
}

/// GET opens the session's standalone SSE stream (405 for stateless clients).
pub(crate) async fn get(
    State(gw): State<Gateway>,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    let (parts, _) = req.into_parts();
    let (mut ctx, p) = match admit(&gw, &name, &parts.headers, parts.uri.query()).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    ctx.method = Some("GET".into());
    let headers = &parts.headers;
    if let Some(r) = stateless_refusal(headers) {
        return ctx.done(r, "method_not_allowed");
    }
    let Some(sid) = header(headers, SESSION) else {
        return ctx.done(
            error_response(
                StatusCode::BAD_REQUEST,
                None,
                codes::INVALID_REQUEST,
                "Mcp-Session-Id required",
            ),
            "missing_session",
        );
    };
    let Some(s) = lookup(&ctx, sid, &p) else {
        return ctx.done(
            error_response(
                StatusCode::NOT_FOUND,
                None,
                codes::INVALID_REQUEST,
                "session not found",
            ),
            "unknown_session",
        );
    };
    let (r, reason) = match &s.backend {
        Backend::Http { .. } => {
            http_forward(&ctx, &p, Method::GET, headers, Some(&s), None, Bytes::new()).await
        }
        Backend::Stdio { child, streams, .. } => {
            if !relay::accepts_sse(headers) {
                let r = error_response(
                    StatusCode::NOT_ACCEPTABLE,
                    None,
                    codes::INVALID_REQUEST,
                    "GET needs Accept: text/event-stream",
                );
                return ctx.done(r, "not_acceptable");
            }
            match header(headers, "last-event-id") {
                // Resuming: what followed that event on the same stream.
                Some(last) => match streams.resume(last) {
                    Some((log, after)) => (relay::log_sse(log, after, false), "allowed"),
                    None => {
                        let r = error_response(
                            StatusCode::BAD_REQUEST,
                            None,
                            codes::INVALID_REQUEST,
                            "Last-Event-ID names no stream of this session that can be resumed",
                        );
                        return ctx.done(r, "unknown_event_id");
                    }
                },
                None => (
                    relay::logged_get_stream(streams, child.open_stream(&s.id), ctx.outbound(&p)),
                    "allowed",
                ),
            }
        }
    };
    ctx.done(r, reason)
}

fn stateless_refusal(headers: &HeaderMap) -> Option<Response> {
    (header(headers, "mcp-protocol-version") == Some(STATELESS_VERSION)).then(|| {
        let mut r = error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            None,
            codes::INVALID_REQUEST,
            "no sessions in this protocol version",
        );
        r.headers_mut()
            .insert(http::header::ALLOW, HeaderValue::from_static("POST"));
        r
    })
}

/// DELETE ends the session: the upstream session is deleted, or the
/// session's child process group killed.
pub(crate) async fn delete(
    State(gw): State<Gateway>,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    let (parts, _) = req.into_parts();
    let (mut ctx, p) = match admit(&gw, &name, &parts.headers, parts.uri.query()).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    ctx.method = Some("DELETE".into());
    if let Some(r) = stateless_refusal(&parts.headers) {
        return ctx.done(r, "method_not_allowed");
    }
    let Some(sid) = header(&parts.headers, SESSION) else {
        return ctx.done(
            error_response(
                StatusCode::BAD_REQUEST,
                None,
                codes::INVALID_REQUEST,
                "Mcp-Session-Id required",
            ),
            "missing_session",
        );
    };
    if lookup(&ctx, sid, &p).is_none() {
        return ctx.done(
            error_response(
                StatusCode::NOT_FOUND,
                None,
                codes::INVALID_REQUEST,
                "session not found",
            ),
            "unknown_session",
        );
    }
    if let Some(s) = gw.0.sessions.remove(sid) {
        gw.0.end_session(&s);
    }
    let mut r = Response::new(axum::body::Body::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    ctx.done(r, "allowed")
}

/// RFC 9728 metadata of one upstream.
pub(crate) async fn prm(State(gw): State<Gateway>, Path(name): Path<String>) -> Response {
    let Some(up) = gw.0.upstreams.get(&name) else {
        return error_response(
            StatusCode::NOT_FOUND,
            None,
            codes::INVALID_REQUEST,
            "no such MCP endpoint",
        );
    };
    let doc = mcpgate_guard::prm_document(
        up.cfg.resource.clone(),
        gw.0.authorization_servers.clone(),
        &up.cfg.scopes,
    );
    mcpgate_guard::prm_response(&doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(body: &str) -> Envelope {
        jsonrpc::parse(body.as_bytes()).unwrap()
    }

    fn hdrs(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn stateless_header_rules() {
        let call = env(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
        );
        let ok = hdrs(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "add"),
        ]);
        assert!(check_stateless_headers(&ok, &call).is_ok());
        let wrong_name = hdrs(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "other"),
        ]);
        assert!(check_stateless_headers(&wrong_name, &call).is_err());
        let no_name = hdrs(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
        ]);
        assert!(check_stateless_headers(&no_name, &call).is_err());
        let wrong_method = hdrs(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/list"),
            ("mcp-name", "add"),
        ]);
        assert!(check_stateless_headers(&wrong_method, &call).is_err());
        let no_meta = env(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
        assert!(
            check_stateless_headers(
                &hdrs(&[
                    ("mcp-protocol-version", "2026-07-28"),
                    ("mcp-method", "tools/list")
                ]),
                &no_meta
            )
            .is_err()
        );
        let b64 = hdrs(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "=?base64?YWRk?="),
        ]);
        assert!(check_stateless_headers(&b64, &call).is_ok());
    }

    #[test]
    fn versions() {
        assert_eq!(protocol_version(&hdrs(&[])), Ok(None));
        assert_eq!(
            protocol_version(&hdrs(&[("mcp-protocol-version", "2025-06-18")])),
            Ok(Some("2025-06-18"))
        );
        assert!(protocol_version(&hdrs(&[("mcp-protocol-version", "1999-01-01")])).is_err());
    }
}
