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
use std::time::Instant;

use axum::extract::{Path, Request, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use mcpgate_guard::Principal;
use mcpgate_store::AuditRecord;
use serde_json::Value;

use crate::capacity;
use crate::jsonrpc::{self, Envelope, Kind};
use crate::origin;
use crate::outbound;
use crate::policy::{self, Decision};
use crate::refusal::{ChallengeParams, Refusal};
use crate::session::{Found, Owner, Reach, Session};
use crate::transport::{Call, Forward, Forwarded, Started, with_session};
use crate::{Gateway, Upstream};

/// Protocol versions the gateway speaks to clients.
pub const SUPPORTED_VERSIONS: &[&str] = &["2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"];
/// The stateless revision.
pub const STATELESS_VERSION: &str = "2026-07-28";
pub(crate) const SESSION: &str = "mcp-session-id";

/// What a phase of the request path gives back: the answer to relay, or
/// why not (with the request's id once it is known).
type Outcome = Result<(Response, Forwarded), (Refusal, Option<Value>)>;

/// The per-request context: what the audit record needs.
pub(crate) struct Ctx {
    pub gw: Gateway,
    pub up: Arc<Upstream>,
    pub rid: String,
    start: Instant,
    principal: Option<Principal>,
    method: Option<String>,
    tool: Option<String>,
}

impl Ctx {
    fn audit(&self, decision: &'static str, reason: &'static str, status: StatusCode) {
        let elapsed = self.start.elapsed();
        let p = self.principal.as_ref();
        let time_ms = self.gw.0.clock.now_ms();
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

    /// Answers and audits a refusal.
    fn refuse(&self, r: Refusal, id: Option<&Value>) -> Response {
        let params = ChallengeParams {
            resource_metadata_url: &self.up.prm_url,
            baseline: &self.up.cfg.scopes,
        };
        let resp = r.response(id, &params);
        self.audit(r.decision(), r.reason(), resp.status());
        resp
    }

    /// Audits what was forwarded and returns the answer.
    fn forwarded(&self, resp: Response, f: Forwarded) -> Response {
        let (decision, reason) = f.audit();
        self.audit(decision, reason, resp.status());
        resp
    }

    /// Audits the outcome of a phase list.
    fn finish(&self, outcome: Outcome) -> Response {
        match outcome {
            Ok((resp, f)) => self.forwarded(resp, f),
            Err((r, id)) => self.refuse(r, id.as_ref()),
        }
    }
}

/// 404 for a name that is no upstream (not audited: there is none to name).
fn no_such_endpoint() -> Response {
    let none = mcpgate_types::ScopeSet::new();
    let params = ChallengeParams {
        resource_metadata_url: "",
        baseline: &none,
    };
    Refusal::NoSuchEndpoint.response(None, &params)
}

pub(crate) fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// The phases common to POST, GET and DELETE: the upstream by name, `Host`
/// and `Origin`, authentication, rate limits, the baseline scopes.
async fn admit(
    gw: &Gateway,
    name: &str,
    parts: &http::request::Parts,
) -> Result<(Ctx, Principal), Response> {
    let headers = &parts.headers;
    let Some(up) = gw.0.upstreams.get(name).cloned() else {
        return Err(no_such_endpoint());
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
        return Err(ctx.refuse(Refusal::ShuttingDown, None));
    }
    if let Err(e) = up.origin.check(headers) {
        let r = match e {
            origin::Refusal::Origin => Refusal::ForeignOrigin,
            origin::Refusal::Host => Refusal::ForeignHost,
        };
        return Err(ctx.refuse(r, None));
    }
    // An address that keeps presenting tokens the gateway refuses (each a
    // signature check) is not heard for a while.
    let peer = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0);
    let ip = mcpgate_net::forwarded::client_ip(&gw.0.settings.trusted_proxies, peer, headers);
    if let Err(retry_after) = gw.0.capacity.may_present_token(ip) {
        let r = Refusal::RateLimited {
            reason: "address_refused_tokens",
            retry_after,
        };
        return Err(ctx.refuse(r, None));
    }
    let p = match up.auth.authenticate(parts).await {
        Ok(p) => p,
        Err(ch) => {
            if matches!(
                ch,
                mcpgate_guard::Challenge::InvalidToken(_)
                    | mcpgate_guard::Challenge::InvalidDpopProof(_)
            ) {
                gw.0.capacity.token_refused(ip);
            }
            return Err(ctx.refuse(Refusal::Challenge(ch), None));
        }
    };
    ctx.principal = Some(p.clone());
    if let Err((reason, retry_after)) = up.limits.check(&p).await {
        return Err(ctx.refuse(
            Refusal::RateLimited {
                reason,
                retry_after,
            },
            None,
        ));
    }
    if let Decision::StepUp(required) = policy::decide_baseline(&up.cfg, &p) {
        let r = step_up(&ctx, &p, required, None).await;
        return Err(ctx.refuse(r, None));
    }
    Ok((ctx, p))
}

/// A step-up challenge for `required`, unless the authorization server
/// would never grant the user one of those scopes: then a plain 403 that
/// names them, and the client's step-up loop ends here.
async fn step_up(
    ctx: &Ctx,
    p: &Principal,
    required: mcpgate_types::ScopeSet,
    kind: Option<policy::ItemKind>,
) -> Refusal {
    if let Some(e) = &ctx.gw.0.entitlements {
        let scopes = e.withheld(p, &ctx.up.cfg.resource, &required).await;
        if !scopes.is_empty() {
            return Refusal::NotEntitled { kind, scopes };
        }
    }
    Refusal::step_up(required, kind)
}

/// The version a request speaks; `Err` for an unsupported one (400).
fn protocol_version(headers: &HeaderMap) -> Result<Option<&str>, ()> {
    match header(headers, "mcp-protocol-version") {
        None => Ok(None),
        Some(v) if SUPPORTED_VERSIONS.contains(&v) => Ok(Some(v)),
        Some(_) => Err(()),
    }
}

/// POST: admit → version → one strict parse → the stateless rules → policy
/// → request state → forward → audit.
pub(crate) async fn post(
    State(gw): State<Gateway>,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let (mut ctx, p) = match admit(&gw, &name, &parts).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let outcome = post_phases(&mut ctx, &p, &parts.headers, body).await;
    ctx.finish(outcome)
}

async fn post_phases(
    ctx: &mut Ctx,
    p: &Principal,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Outcome {
    let max = ctx.gw.0.settings.max_message_bytes;
    let Ok(version) = protocol_version(headers) else {
        // Answered with the request's id, when it has one.
        let bytes = axum::body::to_bytes(body, max).await.unwrap_or_default();
        let id = jsonrpc::parse(&bytes).ok().and_then(|e| e.id);
        let requested = header(headers, "mcp-protocol-version").unwrap_or_default();
        let r = Refusal::UnsupportedVersion {
            requested: requested.to_string(),
        };
        return Err((r, id));
    };
    let stateless = version == Some(STATELESS_VERSION);
    let bytes = axum::body::to_bytes(body, max)
        .await
        .map_err(|_| (Refusal::TooLarge, None))?;
    let mut env = jsonrpc::parse(&bytes).map_err(|e| (Refusal::Malformed(e), None))?;
    ctx.method = env.method.clone();
    // The audit `tool` column holds the tool, prompt or resource used.
    ctx.tool = env.name.clone();
    let id = env.id.clone();
    let with_id = |r: Refusal| (r, id.clone());
    if stateless {
        stateless_rules(headers, &env).map_err(with_id)?;
    }
    if let Some(item) = policy::item_of(&env) {
        let (kind, item) = item.map_err(|what| {
            let m = format!("{} needs {what}", env.method.as_deref().unwrap_or_default());
            with_id(Refusal::InvalidParams(m.into()))
        })?;
        // The audit `tool` column names the item, however it was reached.
        ctx.tool = Some(item.to_string());
        match policy::decide(&ctx.up.cfg, p, kind, item) {
            Decision::Allow => {}
            Decision::Deny(reason) => return Err(with_id(Refusal::Denied { kind, reason })),
            Decision::StepUp(required) => {
                return Err(with_id(step_up(ctx, p, required, Some(kind)).await));
            }
        }
    }
    // A request state goes back to the upstream only from the user it was
    // sealed for (see `outbound`).
    ctx.gw
        .0
        .states
        .unseal_request(p, &ctx.up.cfg.name, &mut env.value)
        .map_err(|e| with_id(Refusal::ForeignRequestState(e)))?;
    // A retry answering the gateway's own URL elicitation (2026-07-28): its
    // state and answer were for the gateway, not the upstream.
    if stateless {
        outbound::take_connect_answer(&mut env.value).map_err(with_id)?;
    }
    // The gateway decided on `env`; the transport forwards `env` serialised
    // again, never the bytes it received: an upstream whose JSON parser
    // disagrees with ours still reads what policy saw.
    let call = Call { ctx, p, headers };
    let transport = &ctx.up.transport;
    let forwarded = if stateless {
        transport.forward(&call, None, &env).await
    } else if env.kind == Kind::Request && env.is("initialize") {
        initialize(&call, &env).await
    } else {
        match session_named(&call).await {
            Ok(s) => transport.forward(&call, Some(&s), &env).await,
            Err(r) => Err(r),
        }
    };
    match forwarded {
        // 2026-07-28 asks for a URL elicitation as a result, not an error.
        Err(Refusal::ConnectAccount(el)) if stateless => Err(with_id(outbound::input_required(
            &ctx.gw.0.states,
            p,
            &ctx.up.cfg.name,
            &env,
            &el,
        ))),
        other => other.map_err(with_id),
    }
}

/// `initialize` of a client that uses sessions: the transport starts the
/// upstream side, and the gateway's session is made here, bound to the
/// principal, when the upstream accepted.
async fn initialize(call: &Call<'_>, env: &Envelope) -> Forward {
    let gw = &call.ctx.gw.0;
    // The place is taken before the upstream starts anything for it.
    let slot = gw.capacity.session().map_err(Refusal::AtCapacity)?;
    let id = gw.sessions.mint_id();
    let Started {
        answer,
        how,
        backend,
    } = call.ctx.up.transport.initialize(call, &id, env).await?;
    let Some(backend) = backend else {
        return Ok((answer, how));
    };
    let up = &call.ctx.up;
    let owner = Owner::of(call.p);
    let Some(shared) = &gw.shared else {
        let (_, evicted) =
            gw.sessions
                .insert(id.clone(), &up.cfg.name, owner, Reach::Local, backend, slot);
        if let Some(e) = evicted {
            gw.end_session(&e);
        }
        return Ok((with_session(answer, &id), how));
    };
    // Into the shared store first, then this table: a sweep never finds
    // here a session the store has not seen.
    let state = up.transport.export(backend.as_ref());
    let reach = if state.is_some() {
        Reach::Portable
    } else {
        Reach::Pinned
    };
    let id_hash = mcpgate_types::secret::hash_secret(&id);
    let stored = shared
        .insert(
            &id_hash,
            &up.cfg.name,
            &owner,
            state.as_deref(),
            gw.settings.max_sessions_per_user,
        )
        .await;
    let (s, _) = gw
        .sessions
        .insert(id.clone(), &up.cfg.name, owner, reach, backend, slot);
    match stored {
        Ok(evicted) => gw.end_evicted(evicted),
        Err(e) => {
            if let Some(held_back) = gw.store_warnings.allow() {
                tracing::error!(upstream = %up.cfg.name, error = %e, held_back, "storing a new session failed; it is ended");
            }
            if let Some(s) = gw.sessions.remove(&s.id) {
                gw.end_session(&s);
            }
            return Err(Refusal::StoreUnavailable);
        }
    }
    Ok((with_session(answer, &id), how))
}

/// 2026-07-28: `_meta` with version and capabilities, no removed method,
/// and `Mcp-*` headers that agree with the body.
fn stateless_rules(headers: &HeaderMap, env: &Envelope) -> Result<(), Refusal> {
    if let Some(m) = missing_stateless_meta(env) {
        return Err(Refusal::InvalidParams(m.into()));
    }
    if env.kind == Kind::Request
        && env
            .method
            .as_deref()
            .is_some_and(|m| REMOVED_IN_STATELESS.contains(&m))
    {
        return Err(Refusal::MethodRemoved);
    }
    check_stateless_headers(headers, env).map_err(Refusal::HeaderMismatch)
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

/// The session `sid` of this upstream and principal, if it is alive: held
/// here (and, with a shared store, confirmed there at most every
/// [`crate::fleet::CHECK_EVERY`]), or a portable session of another replica,
/// adopted.
async fn lookup(ctx: &Ctx, sid: &str, p: &Principal) -> Result<Arc<Session>, Refusal> {
    let gw = &ctx.gw.0;
    let up = &ctx.up.cfg.name;
    let s = match gw.sessions.find(sid, up, p) {
        Found::Here(s) => s,
        Found::Refused => return Err(Refusal::UnknownSession),
        Found::Absent => return adopt(ctx, sid, p).await,
    };
    if s.child().is_some_and(|c| !c.is_alive()) {
        if let Some(s) = gw.forget_session(sid).await {
            gw.end_session(&s);
        }
        return Err(Refusal::UnknownSession);
    }
    if let Some(shared) = &gw.shared
        && s.reach != Reach::Local
        && s.check_due(crate::fleet::CHECK_EVERY)
    {
        match shared.touch(&s.id_hash, up, p).await {
            Ok(_) => {}
            // Deleted, evicted or idle fleet-wide: whoever removed it ended
            // the upstream's side; a child of ours is ours to end.
            Err(mcpgate_store::StoreError::NotFound) => {
                if let Some(s) = gw.sessions.remove(sid)
                    && s.reach == Reach::Pinned
                {
                    gw.end_session(&s);
                }
                return Err(Refusal::UnknownSession);
            }
            Err(e) => {
                if let Some(held_back) = gw.store_warnings.allow() {
                    tracing::warn!(upstream = %up, error = %e, held_back, "the shared session store did not answer; serving a session held here");
                }
            }
        }
    }
    Ok(s)
}

/// A session this replica does not hold: a portable one of another replica
/// is adopted (its backend rebuilt from the store); a pinned one (a stdio
/// child elsewhere) is 404, as is anything unknown.
async fn adopt(ctx: &Ctx, sid: &str, p: &Principal) -> Result<Arc<Session>, Refusal> {
    let gw = &ctx.gw.0;
    let up = &ctx.up.cfg.name;
    let Some(shared) = &gw.shared else {
        return Err(Refusal::UnknownSession);
    };
    let id_hash = mcpgate_types::secret::hash_secret(sid);
    let rec = match shared.touch(&id_hash, up, p).await {
        Ok(rec) => rec,
        Err(mcpgate_store::StoreError::NotFound) => return Err(Refusal::UnknownSession),
        Err(e) => {
            if let Some(held_back) = gw.store_warnings.allow() {
                tracing::warn!(upstream = %up, error = %e, held_back, "the shared session store did not answer");
            }
            return Err(Refusal::StoreUnavailable);
        }
    };
    let Some(backend) = shared
        .state(&rec)
        .and_then(|st| ctx.up.transport.import(&st))
    else {
        metrics::counter!("mcpgate_gateway_sessions_elsewhere_total", "upstream" => up.clone())
            .increment(1);
        tracing::debug!(upstream = %up, "a session pinned to another replica: 404, the client starts a new one");
        return Err(Refusal::UnknownSession);
    };
    let slot = gw.capacity.session().map_err(Refusal::AtCapacity)?;
    let (s, _) = gw.sessions.insert(
        sid.to_string(),
        up,
        Owner::of(p),
        Reach::Portable,
        backend,
        slot,
    );
    Ok(s)
}

/// The session a request of a session-based client names (404 for one
/// that is unknown, ended, or another principal's).
async fn session_named(call: &Call<'_>) -> Result<Arc<Session>, Refusal> {
    let sid = header(call.headers, SESSION).ok_or(Refusal::MissingSession)?;
    lookup(call.ctx, sid, call.p).await
}

/// The session a GET or DELETE names (stateless clients have none: 405).
async fn session_of(call: &Call<'_>) -> Result<Arc<Session>, Refusal> {
    if header(call.headers, "mcp-protocol-version") == Some(STATELESS_VERSION) {
        return Err(Refusal::MethodNotAllowed);
    }
    session_named(call).await
}

/// GET opens the session's standalone SSE stream, or resumes one of its
/// streams (`Last-Event-ID`).
pub(crate) async fn get(
    State(gw): State<Gateway>,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    let (parts, _) = req.into_parts();
    let (mut ctx, p) = match admit(&gw, &name, &parts).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    ctx.method = Some("GET".into());
    let outcome = get_phases(&ctx, &p, &parts.headers)
        .await
        .map_err(|r| (r, None));
    ctx.finish(outcome)
}

async fn get_phases(
    ctx: &Ctx,
    p: &Principal,
    headers: &HeaderMap,
) -> Result<(Response, Forwarded), Refusal> {
    let call = Call { ctx, p, headers };
    let s = session_of(&call).await?;
    let slot = ctx.gw.0.capacity.stream(p).map_err(|e| match e {
        capacity::StreamRefused::Full => Refusal::AtCapacity(capacity::Full::Streams),
        capacity::StreamRefused::UserShare => Refusal::RateLimited {
            reason: "user_stream_limit",
            retry_after: capacity::FULL_RETRY_AFTER,
        },
    })?;
    let (resp, how) = ctx.up.transport.open_stream(&call, &s).await?;
    // The stream holds its place until the client or the upstream ends it.
    Ok((resp.map(|b| capacity::hold(b, slot)), how))
}

/// DELETE ends the session: the upstream session is deleted, or the
/// session's child process group killed.
pub(crate) async fn delete(
    State(gw): State<Gateway>,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    let (parts, _) = req.into_parts();
    let (mut ctx, p) = match admit(&gw, &name, &parts).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    ctx.method = Some("DELETE".into());
    let call = Call {
        ctx: &ctx,
        p: &p,
        headers: &parts.headers,
    };
    let outcome = match session_of(&call).await {
        Ok(s) => {
            if let Some(s) = gw.0.forget_session(&s.id).await {
                gw.0.end_session(&s);
            }
            let mut r = Response::new(axum::body::Body::empty());
            *r.status_mut() = StatusCode::NO_CONTENT;
            Ok((r, Forwarded::Allowed))
        }
        Err(r) => Err((r, None)),
    };
    ctx.finish(outcome)
}

/// RFC 9728 metadata of one upstream.
pub(crate) async fn prm(State(gw): State<Gateway>, Path(name): Path<String>) -> Response {
    let Some(up) = gw.0.upstreams.get(&name) else {
        return no_such_endpoint();
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
    use http::HeaderValue;

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
