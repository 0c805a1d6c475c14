//! Soak (`mcpgate-bench soak`): a real `mcpgate serve` on loopback under a bounded mix of
//! everything its users and attackers send, for `--duration` seconds. Unlike the sections, it
//! is a pass/fail check: every answer is judged against what docs/configuration.md says, and
//! the run fails on any unexpected answer, any request without an answer within [`HANG`] (a
//! liveness bound, not a timing), a limit that was never reached, or RSS that kept growing.
//!
//! The gateway has two stdio upstreams (the bench's echo server, a child per session): `echo`
//! with rate limits out of the way and `tight` with a small per-user rate. Its limits are set
//! small so that they are all reached ([`limits_toml`]); requests that reach a limit come from
//! their own addresses (`X-Forwarded-For`, with 127.0.0.1 as the trusted proxy), so one
//! worker's refusals do not spill onto another's.
//!
//! Workers, in the order of [`Kind`]: code exchanges, refresh rotations, tool calls on
//! churning sessions, forged tokens, oversized and malformed bodies, a second subject filling
//! the gateway, a rate-limited upstream, streams past a user's share, wrong passwords and
//! registrations. docs/testing.md ("Soak") has the table of what each sends and the answers it
//! accepts; the checks themselves are the `Reply` predicates below.
//!
//! Memory: RSS of the `mcpgate serve` process is sampled every second; the lowest of the last
//! five samples must be at most the lowest of the five after the warm-up (a quarter of the run)
//! plus max(32 MiB, 25 %).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use crate::authz::{self, Session};
use crate::gateway;
use crate::load::{PROTOCOL_VERSION, check_answer};
use crate::procs::{self, Gateway};
use crate::report::{Opts, md_table};

/// Default length of a run.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(180);
/// A request without a complete answer after this long is a hang (liveness, not timing).
pub const HANG: Duration = Duration::from_secs(30);
/// RSS sampling period.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// Flat memory: end ≤ warm-up sample + max(this, [`RSS_SLACK_PERCENT`] of it).
const RSS_SLACK_KIB: u64 = 32 * 1024;
const RSS_SLACK_PERCENT: u64 = 25;

/// The limits, small enough to be reached.
const MAX_SESSIONS: usize = 10;
const MAX_STREAMS_PER_USER: usize = 2;
const REFUSED_TOKENS_PER_IP: u32 = 10;
const TIGHT_PER_USER_PER_MINUTE: u32 = 30;
const MAX_MESSAGE_BYTES: usize = 16 * 1024;
const LOGIN_PER_ACCOUNT: u32 = 5;
/// The login limit's window: a refused sign-in's `Retry-After` is at most this.
const LOGIN_WINDOW_SECS: u64 = 60;
const DCR_PER_IP_PER_HOUR: u32 = 5;

const ECHO: &str = gateway::UPSTREAM;
const TIGHT: &str = "tight";
/// What the signed-in user approves (the `tools`, `streams` and `oversized` workers use it).
const USER_SCOPE: &str = "mcp:tools mcp:echo offline_access";

/// The request kinds, one per worker type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Login,
    Refresh,
    Tools,
    Forged,
    Oversized,
    Malformed,
    Capacity,
    Rate,
    Streams,
    SignIn,
    Register,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Login => "login (code + PKCE)",
            Kind::Refresh => "refresh rotation",
            Kind::Tools => "tools/list + tools/call",
            Kind::Forged => "forged tokens",
            Kind::Oversized => "oversized bodies",
            Kind::Malformed => "malformed bodies",
            Kind::Capacity => "sessions past max_sessions",
            Kind::Rate => "over a rate limit",
            Kind::Streams => "streams past the user's share",
            Kind::SignIn => "wrong passwords",
            Kind::Register => "registrations",
        }
    }
}

/// What the run saw: answers per kind and status, and every broken rule.
#[derive(Default)]
struct Tally {
    counts: Mutex<BTreeMap<(Kind, u16), u64>>,
    failures: Mutex<Vec<String>>,
    failed: AtomicU64,
    hangs: AtomicU64,
}

/// Failures kept word for word (the rest are counted).
const KEEP_FAILURES: usize = 12;

impl Tally {
    fn count(&self, kind: Kind, status: u16) {
        *self
            .counts
            .lock()
            .expect("tally")
            .entry((kind, status))
            .or_default() += 1;
    }

    fn fail(&self, kind: Kind, msg: impl Into<String>) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut f = self.failures.lock().expect("tally");
        if f.len() < KEEP_FAILURES {
            f.push(format!("{}: {}", kind.name(), msg.into()));
        }
    }

    fn seen(&self, kind: Kind, status: u16) -> u64 {
        self.counts
            .lock()
            .expect("tally")
            .get(&(kind, status))
            .copied()
            .unwrap_or(0)
    }

    /// Checks `ok`; a failure names the answer.
    fn expect(&self, kind: Kind, what: &str, r: &Reply, ok: bool) -> bool {
        if !ok {
            self.fail(kind, format!("{what}: unexpected answer {}", r.describe()));
        }
        ok
    }
}

/// A complete answer.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn describe(&self) -> String {
        let body = String::from_utf8_lossy(&self.body[..self.body.len().min(240)]).into_owned();
        let ra = self
            .header("retry-after")
            .map(|v| format!(" Retry-After: {v}"))
            .unwrap_or_default();
        let wa = self
            .header("www-authenticate")
            .map(|v| format!(" WWW-Authenticate: {v}"))
            .unwrap_or_default();
        format!("HTTP {}{ra}{wa} {body}", self.status.as_u16())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// A JSON-RPC error answer with `code` (plain JSON; refusals are never SSE).
    fn rpc_error(&self, code: i64) -> bool {
        self.json()["error"]["code"].as_i64() == Some(code)
    }

    /// `Retry-After` as whole seconds, at least one.
    fn retry_after(&self) -> Option<u64> {
        self.header("retry-after")
            .and_then(|v| v.parse().ok())
            .filter(|s| *s >= 1)
    }

    fn sse(&self) -> bool {
        self.header("content-type")
            .is_some_and(|v| v.starts_with("text/event-stream"))
    }

    /// 401 with an RFC 6750 challenge; `invalid_token` when a token was sent.
    fn bearer_challenge(&self, token_sent: bool) -> bool {
        let wa = self.header("www-authenticate").unwrap_or("");
        self.status == StatusCode::UNAUTHORIZED
            && wa.starts_with("Bearer ")
            && wa.contains("resource_metadata=")
            && wa.contains("error=\"invalid_token\"") == token_sent
    }

    /// 503 + `Retry-After: 5`, JSON-RPC -32000 (`[gateway.limits]`).
    fn at_capacity(&self) -> bool {
        self.status == StatusCode::SERVICE_UNAVAILABLE
            && self.header("retry-after") == Some("5")
            && self.rpc_error(-32000)
    }

    /// 429 + `Retry-After`, JSON-RPC -32000 (rate limits, stream shares, refused tokens).
    fn rate_limited(&self) -> bool {
        self.status == StatusCode::TOO_MANY_REQUESTS
            && self.retry_after().is_some()
            && self.rpc_error(-32000)
    }
}

/// Everything the workers share.
struct Ctx {
    base: String,
    echo_url: String,
    tight_url: String,
    http: reqwest::Client,
    tally: Tally,
    until: Instant,
    /// The newest access token of the signed-in user (refresh rotations replace it).
    user_token: RwLock<String>,
    /// `client_credentials` tokens of the bench client (another subject than the user).
    cc_echo: String,
    cc_tight: String,
    session: Session,
    sent: AtomicU64,
}

impl Ctx {
    fn running(&self) -> bool {
        Instant::now() < self.until
    }

    fn token(&self) -> String {
        self.user_token.read().expect("token").clone()
    }

    /// Sends `req` and reads the whole answer within [`HANG`]; `None` (and a failure) if it
    /// could not.
    async fn send(&self, kind: Kind, what: &str, req: reqwest::RequestBuilder) -> Option<Reply> {
        self.sent.fetch_add(1, Ordering::Relaxed);
        let fut = async {
            let r = req.send().await?;
            let status = r.status();
            let headers = r.headers().clone();
            let body = r.bytes().await?;
            Ok::<_, reqwest::Error>(Reply {
                status,
                headers,
                body,
            })
        };
        match tokio::time::timeout(HANG, fut).await {
            Ok(Ok(r)) => {
                self.tally.count(kind, r.status.as_u16());
                Some(r)
            }
            Ok(Err(e)) => {
                self.tally.count(kind, 0);
                self.tally.fail(kind, format!("{what}: no answer: {e:#}"));
                None
            }
            Err(_) => {
                self.tally.count(kind, 0);
                self.tally.hangs.fetch_add(1, Ordering::Relaxed);
                self.tally
                    .fail(kind, format!("{what}: no answer within {HANG:?} (a hang)"));
                None
            }
        }
    }

    /// A POST to an MCP endpoint.
    fn mcp(
        &self,
        url: &str,
        token: Option<&str>,
        session: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::RequestBuilder {
        let mut b = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body);
        if let Some(t) = token {
            b = b.bearer_auth(t);
        }
        if let Some(s) = session {
            b = b
                .header("mcp-session-id", s)
                .header("mcp-protocol-version", PROTOCOL_VERSION);
        }
        b
    }
}

fn rpc(id: u64, method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
}

/// How opening a session went.
enum Opened {
    Session(String),
    /// 503 for a full gateway, or (where `limited` allows) 429.
    Refused,
    Failed,
}

/// `initialize` + `notifications/initialized`. A full gateway's 503 is a documented answer
/// for every kind; a 429 only where `limited` (an upstream with a small rate).
async fn open_session(c: &Ctx, kind: Kind, url: &str, token: &str, limited: bool) -> Opened {
    let init = rpc(
        1,
        "initialize",
        json!({"protocolVersion": PROTOCOL_VERSION, "capabilities": {},
               "clientInfo": {"name": "mcpgate-bench soak", "version": "0"}}),
    );
    let Some(r) = c
        .send(kind, "initialize", c.mcp(url, Some(token), None, init))
        .await
    else {
        return Opened::Failed;
    };
    if r.status == StatusCode::SERVICE_UNAVAILABLE || r.status == StatusCode::TOO_MANY_REQUESTS {
        let ok = r.at_capacity() || (limited && r.rate_limited());
        c.tally.expect(kind, "initialize", &r, ok);
        return if ok { Opened::Refused } else { Opened::Failed };
    }
    let session = r.header("mcp-session-id").map(str::to_string);
    let ok = check_answer(r.status, r.sse(), &r.body).is_ok() && session.is_some();
    if !c.tally.expect(kind, "initialize", &r, ok) {
        return Opened::Failed;
    }
    let session = session.unwrap_or_default();
    let note = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    let Some(r) = c
        .send(
            kind,
            "notifications/initialized",
            c.mcp(url, Some(token), Some(&session), note),
        )
        .await
    else {
        return Opened::Failed;
    };
    if !c.tally.expect(
        kind,
        "notifications/initialized",
        &r,
        r.status == StatusCode::ACCEPTED,
    ) {
        return Opened::Failed;
    }
    Opened::Session(session)
}

/// `DELETE` of a session: 204 (or 429 where `limited`: every request to an upstream counts
/// towards its rate limit).
async fn close_session(c: &Ctx, kind: Kind, url: &str, token: &str, session: &str, limited: bool) {
    let req = c
        .http
        .delete(url)
        .bearer_auth(token)
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", PROTOCOL_VERSION);
    if let Some(r) = c.send(kind, "DELETE", req).await {
        let ok = r.status == StatusCode::NO_CONTENT || (limited && r.rate_limited());
        c.tally.expect(kind, "DELETE", &r, ok);
    }
}

async fn pause(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

// ---------------------------------------------------------------------------------------------
// The workers

/// A code minted with the remembered consent and exchanged; the new refresh token.
async fn login_once(c: &Ctx) -> Option<String> {
    let token_url = format!("{}/oauth/token", c.base);
    let mut b = c.session.browser();
    let minted = tokio::time::timeout(HANG, authz::mint_code(&mut b, &c.session)).await;
    let (code, req) = match minted {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            c.tally.count(Kind::Login, 0);
            c.tally.fail(Kind::Login, format!("authorize: {e:#}"));
            return None;
        }
        Err(_) => {
            c.tally.hangs.fetch_add(1, Ordering::Relaxed);
            c.tally
                .fail(Kind::Login, format!("authorize: no answer within {HANG:?}"));
            return None;
        }
    };
    c.tally.count(Kind::Login, 303);
    let exchanged = tokio::time::timeout(HANG, authz::exchange(&c.http, &token_url, &code, &req));
    match exchanged.await {
        Ok(Ok(Some(rt))) => {
            c.tally.count(Kind::Login, 200);
            Some(rt)
        }
        Ok(Ok(None)) => {
            c.tally
                .fail(Kind::Login, "code exchange without a refresh token");
            None
        }
        Ok(Err(e)) => {
            c.tally.fail(Kind::Login, format!("code exchange: {e}"));
            None
        }
        Err(_) => {
            c.tally.hangs.fetch_add(1, Ordering::Relaxed);
            c.tally.fail(
                Kind::Login,
                format!("code exchange: no answer within {HANG:?}"),
            );
            None
        }
    }
}

async fn login_worker(c: Arc<Ctx>) {
    while c.running() {
        if login_once(&c).await.is_none() {
            pause(500).await;
        }
    }
}

/// Rotates its own chain; each new access token becomes the user's current one.
async fn refresh_worker(c: Arc<Ctx>) {
    let token_url = format!("{}/oauth/token", c.base);
    let mut chain = None;
    while c.running() {
        let rt = match chain.take() {
            Some(rt) => Some(rt),
            None => login_once(&c).await,
        };
        let Some(rt) = rt else {
            pause(500).await;
            continue;
        };
        let req = c.http.post(&token_url).form(&authz::refresh_form(&rt));
        let Some(r) = c.send(Kind::Refresh, "refresh", req).await else {
            continue;
        };
        match authz::check_token_response(r.status.as_u16(), &r.body, true) {
            Ok(next) => {
                if let Some(at) = r.json()["access_token"].as_str() {
                    *c.user_token.write().expect("token") = at.to_string();
                }
                chain = next;
            }
            Err(e) => c.tally.fail(Kind::Refresh, e),
        }
    }
}

async fn tools_worker(c: Arc<Ctx>, n: u64) {
    let mut i = 0u64;
    while c.running() {
        let token = c.token();
        let session = match open_session(&c, Kind::Tools, &c.echo_url, &token, false).await {
            Opened::Session(s) => s,
            Opened::Refused | Opened::Failed => {
                pause(200).await;
                continue;
            }
        };
        let list = c.mcp(
            &c.echo_url,
            Some(&token),
            Some(&session),
            rpc(2, "tools/list", json!({})),
        );
        if let Some(r) = c.send(Kind::Tools, "tools/list", list).await {
            let ok = check_answer(r.status, r.sse(), &r.body).is_ok()
                && String::from_utf8_lossy(&r.body).contains("\"echo\"");
            c.tally.expect(Kind::Tools, "tools/list", &r, ok);
        }
        for _ in 0..5 {
            i += 1;
            let text = format!("soak {n}.{i}");
            let call = rpc(
                3 + i,
                "tools/call",
                json!({"name": "echo", "arguments": {"text": text}}),
            );
            let call = c.mcp(&c.echo_url, Some(&token), Some(&session), call);
            if let Some(r) = c.send(Kind::Tools, "tools/call", call).await {
                let ok = check_answer(r.status, r.sse(), &r.body).is_ok()
                    && String::from_utf8_lossy(&r.body).contains(&format!("\"{text}\""));
                c.tally.expect(Kind::Tools, "tools/call", &r, ok);
            }
        }
        close_session(&c, Kind::Tools, &c.echo_url, &token, &session, false).await;
    }
}

/// A token with the signature of `good` replaced: well formed, signed by nobody.
fn forged_tokens(good: &str, other_audience: &str) -> Vec<Option<String>> {
    let mut parts = good.split('.');
    let (head, claims) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"at+jwt"}"#);
    vec![
        Some("not-a-token".into()),
        Some(format!("{head}.{claims}.AAAA")),
        Some(format!("{none}.{claims}.")),
        Some(format!("{head}.{claims}")),
        Some("eyJ.eyJ.eyJ".into()),
        // Signed by the gateway's own AS, for another upstream.
        Some(other_audience.to_string()),
        None,
    ]
}

async fn forged_worker(c: Arc<Ctx>) {
    let tokens = forged_tokens(&c.token(), &c.cc_tight);
    let token_url = format!("{}/oauth/token", c.base);
    let mut n = 0usize;
    while c.running() {
        n += 1;
        // Half from four addresses that soon exhaust their budget, half from a wide range
        // (each address is remembered a while: that memory must stay bounded too).
        let ip = if n.is_multiple_of(2) {
            format!("203.0.113.{}", n / 2 % 4)
        } else {
            format!("198.18.{}.{}", n / 512 % 64, n / 2 % 256)
        };
        let token = &tokens[n % tokens.len()];
        let list = rpc(1, "tools/list", json!({}));
        let req = c
            .mcp(&c.echo_url, token.as_deref(), None, list)
            .header("x-forwarded-for", &ip);
        if let Some(r) = c.send(Kind::Forged, "bad bearer", req).await {
            let ok = r.bearer_challenge(token.is_some()) || r.rate_limited();
            c.tally.expect(Kind::Forged, "bad bearer", &r, ok);
        }
        if n.is_multiple_of(10) {
            let form = authz::refresh_form("forged-refresh-token-0123456789");
            let req = c.http.post(&token_url).form(&form);
            if let Some(r) = c.send(Kind::Forged, "forged refresh token", req).await {
                let ok =
                    r.status == StatusCode::BAD_REQUEST && r.json()["error"] == "invalid_grant";
                c.tally.expect(Kind::Forged, "forged refresh token", &r, ok);
            }
        }
        pause(20).await;
    }
}

async fn oversized_worker(c: Arc<Ctx>) {
    let token_url = format!("{}/oauth/token", c.base);
    let big_text = "x".repeat(MAX_MESSAGE_BYTES + 1024);
    let big_form = format!(
        "grant_type=refresh_token&refresh_token={}",
        "y".repeat(80 * 1024)
    );
    while c.running() {
        let call = rpc(
            1,
            "tools/call",
            json!({"name": "echo", "arguments": {"text": big_text}}),
        );
        let req = c
            .mcp(&c.echo_url, Some(&c.token()), None, call)
            .header("mcp-protocol-version", PROTOCOL_VERSION);
        if let Some(r) = c.send(Kind::Oversized, "MCP message", req).await {
            let ok = r.status == StatusCode::PAYLOAD_TOO_LARGE;
            c.tally.expect(Kind::Oversized, "MCP message", &r, ok);
        }
        let req = c
            .http
            .post(&token_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(big_form.clone());
        if let Some(r) = c.send(Kind::Oversized, "token request", req).await {
            let ok =
                r.status == StatusCode::PAYLOAD_TOO_LARGE && r.json()["error"] == "invalid_request";
            c.tally.expect(Kind::Oversized, "token request", &r, ok);
        }
        pause(100).await;
    }
}

async fn malformed_worker(c: Arc<Ctx>) {
    let token_url = format!("{}/oauth/token", c.base);
    let bodies: Vec<(&[u8], i64)> = vec![
        (&b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":"[..], -32700),
        (&b"\xff\xfe\x00not json"[..], -32700),
        (&b""[..], -32700),
        (
            &br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call"}"#[..],
            -32600,
        ),
        (
            &br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","Method":"x"}"#[..],
            -32600,
        ),
        (&br#"[1,2,3]"#[..], -32600),
    ];
    let mut n = 0usize;
    while c.running() {
        n += 1;
        let (body, code) = bodies[n % bodies.len()];
        let req = c
            .mcp(&c.echo_url, Some(&c.token()), None, body.to_vec())
            .header("mcp-protocol-version", PROTOCOL_VERSION);
        if let Some(r) = c.send(Kind::Malformed, "MCP body", req).await {
            let ok = r.status == StatusCode::BAD_REQUEST && r.rpc_error(code);
            c.tally.expect(Kind::Malformed, "MCP body", &r, ok);
        }
        let req = c
            .http
            .post(&token_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type&&=%zz");
        if let Some(r) = c.send(Kind::Malformed, "token request", req).await {
            let ok = r.status == StatusCode::BAD_REQUEST && r.json()["error"].is_string();
            c.tally.expect(Kind::Malformed, "token request", &r, ok);
        }
        pause(50).await;
    }
}

/// Another user fills the gateway until it refuses, holds the places briefly, frees them.
async fn capacity_worker(c: Arc<Ctx>) {
    while c.running() {
        let mut held = Vec::new();
        for _ in 0..=MAX_SESSIONS {
            match open_session(&c, Kind::Capacity, &c.echo_url, &c.cc_echo, false).await {
                Opened::Session(s) => held.push(s),
                Opened::Refused | Opened::Failed => break,
            }
        }
        pause(300).await;
        for s in held {
            close_session(&c, Kind::Capacity, &c.echo_url, &c.cc_echo, &s, false).await;
        }
        pause(1000).await;
    }
}

async fn rate_worker(c: Arc<Ctx>) {
    let mut session = None;
    let mut n = 0u64;
    while c.running() {
        let Some(s) = session.clone() else {
            match open_session(&c, Kind::Rate, &c.tight_url, &c.cc_tight, true).await {
                Opened::Session(s) => session = Some(s),
                Opened::Refused | Opened::Failed => pause(1000).await,
            }
            continue;
        };
        n += 1;
        let list = c.mcp(
            &c.tight_url,
            Some(&c.cc_tight),
            Some(&s),
            rpc(n, "tools/list", json!({})),
        );
        if let Some(r) = c.send(Kind::Rate, "tools/list", list).await {
            let ok = r.rate_limited() || check_answer(r.status, r.sse(), &r.body).is_ok();
            c.tally.expect(Kind::Rate, "tools/list", &r, ok);
        }
        pause(200).await;
    }
    if let Some(s) = session {
        close_session(&c, Kind::Rate, &c.tight_url, &c.cc_tight, &s, true).await;
    }
}

/// One more GET stream than the user's share at once, each on its own session (a session has
/// one standalone stream: a second replaces the first); held a moment, then closed.
async fn streams_worker(c: Arc<Ctx>) {
    while c.running() {
        let token = c.token();
        let mut sessions = Vec::new();
        for _ in 0..=MAX_STREAMS_PER_USER {
            match open_session(&c, Kind::Streams, &c.echo_url, &token, false).await {
                Opened::Session(s) => sessions.push(s),
                Opened::Refused | Opened::Failed => break,
            }
        }
        let mut held = Vec::new();
        if sessions.len() > MAX_STREAMS_PER_USER {
            for session in &sessions {
                if let Some(r) = open_stream(&c, &token, session).await {
                    held.push(r);
                }
            }
        }
        pause(300).await;
        drop(held);
        for s in &sessions {
            close_session(&c, Kind::Streams, &c.echo_url, &token, s, false).await;
        }
        pause(700).await;
    }
}

/// A GET stream: the response while it is open (200), or `None` after judging a refusal.
async fn open_stream(c: &Ctx, token: &str, session: &str) -> Option<reqwest::Response> {
    let req = c
        .http
        .get(&c.echo_url)
        .bearer_auth(token)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", PROTOCOL_VERSION);
    c.sent.fetch_add(1, Ordering::Relaxed);
    match tokio::time::timeout(HANG, req.send()).await {
        Ok(Ok(r)) if r.status() == StatusCode::OK => {
            c.tally.count(Kind::Streams, 200);
            Some(r)
        }
        Ok(Ok(r)) => {
            let status = r.status();
            let headers = r.headers().clone();
            let body = tokio::time::timeout(HANG, r.bytes())
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            let r = Reply {
                status,
                headers,
                body,
            };
            c.tally.count(Kind::Streams, status.as_u16());
            c.tally
                .expect(Kind::Streams, "GET stream", &r, r.rate_limited());
            None
        }
        Ok(Err(e)) => {
            c.tally.count(Kind::Streams, 0);
            c.tally
                .fail(Kind::Streams, format!("GET stream: no answer: {e:#}"));
            None
        }
        Err(_) => {
            c.tally.count(Kind::Streams, 0);
            c.tally.hangs.fetch_add(1, Ordering::Relaxed);
            c.tally.fail(
                Kind::Streams,
                format!("GET stream: no answer within {HANG:?}"),
            );
            None
        }
    }
}

/// Wrong passwords for one account, through the real login form.
async fn signin_worker(c: Arc<Ctx>) {
    let issuer = c.base.clone();
    while c.running() {
        let mut b = mcpgate_testkit::Browser::new();
        let attempt = async {
            let form = b.get(&format!("{issuer}/login")).await;
            let csrf = form.input("csrf").unwrap_or_default();
            let fields = vec![
                ("csrf".to_string(), csrf),
                (
                    "return_to".to_string(),
                    form.input("return_to").unwrap_or_default(),
                ),
                ("username".to_string(), "soak-intruder".to_string()),
                ("password".to_string(), "not the password".to_string()),
            ];
            b.post_form(&format!("{issuer}/login"), &fields).await
        };
        c.sent.fetch_add(2, Ordering::Relaxed);
        match tokio::time::timeout(HANG, attempt).await {
            Ok(page) => {
                c.tally.count(Kind::SignIn, page.status);
                let ra = page
                    .headers
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok());
                let ok = match page.status {
                    401 => true,
                    // The wait until the account's bucket admits again:
                    // whole seconds, within the window.
                    429 => ra
                        .and_then(|v| v.parse::<u64>().ok())
                        .is_some_and(|s| (1..=LOGIN_WINDOW_SECS).contains(&s)),
                    503 => ra == Some("5"),
                    _ => false,
                };
                if !ok {
                    c.tally.fail(
                        Kind::SignIn,
                        format!(
                            "wrong password: unexpected answer HTTP {} Retry-After {ra:?}",
                            page.status
                        ),
                    );
                }
            }
            Err(_) => {
                c.tally.count(Kind::SignIn, 0);
                c.tally.hangs.fetch_add(1, Ordering::Relaxed);
                c.tally
                    .fail(Kind::SignIn, format!("sign-in: no answer within {HANG:?}"));
            }
        }
        pause(1000).await;
    }
}

async fn register_worker(c: Arc<Ctx>) {
    let url = format!("{}/oauth/register", c.base);
    let body = json!({
        "client_name": "soak registered client",
        "redirect_uris": ["http://127.0.0.1/callback"],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
    })
    .to_string();
    while c.running() {
        let req = c
            .http
            .post(&url)
            .header("content-type", "application/json")
            .header("x-forwarded-for", "192.0.2.88")
            .body(body.clone());
        if let Some(r) = c.send(Kind::Register, "registration", req).await {
            let ok = match r.status {
                StatusCode::CREATED => r.json()["client_id"].is_string(),
                StatusCode::TOO_MANY_REQUESTS => r.retry_after().is_some(),
                _ => false,
            };
            c.tally.expect(Kind::Register, "registration", &r, ok);
        }
        pause(1000).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The run

/// `[authorization_server]` keys: the loopback proxy is trusted, so each worker's
/// `X-Forwarded-For` is its address for per-address limits.
const AS_KEYS: &str = "trusted_proxies = [\"127.0.0.1\"]\n";

/// Everything after the base config: sign-in and registration limits, the public client,
/// the gateway's limits and the two upstreams.
fn limits_toml() -> Result<String> {
    let stdio = gateway::stdio_transport(false)?;
    Ok(format!(
        "[authorization_server.login]
per_account = {LOGIN_PER_ACCOUNT}
window_secs = {LOGIN_WINDOW_SECS}

[authorization_server.dcr]
per_ip_per_hour = {DCR_PER_IP_PER_HOUR}

{client}
[gateway]
max_message_bytes = {MAX_MESSAGE_BYTES}

[gateway.limits]
max_sessions = {MAX_SESSIONS}
max_children = {MAX_SESSIONS}
max_streams_per_user = {MAX_STREAMS_PER_USER}
refused_tokens_per_ip_per_minute = {REFUSED_TOKENS_PER_IP}

[gateway.audit]
stdout = false
store = false
file = \"{{dir}}/audit.jsonl\"

{echo}[[upstream]]
name = \"{TIGHT}\"
scopes = [\"mcp:tools\"]
{stdio}
rate_limit = {{ per_user_per_minute = {TIGHT_PER_USER_PER_MINUTE} }}
",
        client = authz::public_client_toml(),
        echo = gateway::echo_upstream_toml(ECHO, &stdio),
    ))
}

/// One RSS sample of the gateway.
struct Sample {
    at: Duration,
    rss_kib: u64,
    children: usize,
}

/// The answers every run must have seen at least once: each limit reached, each flow working.
const MUST_SEE: &[(Kind, u16, &str)] = &[
    (Kind::Login, 200, "a code exchange"),
    (Kind::Refresh, 200, "a refresh rotation"),
    (Kind::Tools, 200, "a tool call"),
    (Kind::Forged, 401, "a refused token"),
    (Kind::Forged, 429, "refused_tokens_per_ip_per_minute"),
    (
        Kind::Oversized,
        413,
        "max_message_bytes / the AS body limit",
    ),
    (Kind::Malformed, 400, "a malformed body"),
    (Kind::Capacity, 503, "max_sessions / max_children"),
    (Kind::Rate, 429, "the upstream rate limit"),
    (Kind::Streams, 429, "max_streams_per_user"),
    (Kind::SignIn, 429, "login per_account"),
    (Kind::Register, 429, "dcr per_ip_per_hour"),
];

/// What a run found.
pub struct Outcome {
    pub report: String,
    pub failures: Vec<String>,
}

pub async fn run(opts: &Opts, duration: Duration) -> Result<Outcome> {
    let gw = procs::start_gateway_with(opts, AS_KEYS, &limits_toml()?, &[])?;
    let session = authz::sign_in_and_consent(opts, &gw, ECHO, USER_SCOPE)
        .await
        .context("signing in")?;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()?;
    let echo_url = gw.mcp_url(ECHO);
    let tight_url = gw.mcp_url(TIGHT);
    let cc_echo = procs::token_for(&gw, &echo_url, "mcp:tools mcp:echo").await?;
    let cc_tight = procs::token_for(&gw, &tight_url, "mcp:tools").await?;
    let ctx = Arc::new(Ctx {
        base: gw.base.clone(),
        echo_url,
        tight_url,
        http,
        tally: Tally::default(),
        until: Instant::now() + duration,
        user_token: RwLock::new(String::new()),
        cc_echo,
        cc_tight,
        session,
        sent: AtomicU64::new(0),
    });
    // A first user token, before the workers that use it start.
    let rt = login_once(&ctx)
        .await
        .context("the first code exchange failed")?;
    let req = ctx
        .http
        .post(format!("{}/oauth/token", ctx.base))
        .form(&authz::refresh_form(&rt));
    let r = ctx
        .send(Kind::Refresh, "refresh", req)
        .await
        .context("the first refresh failed")?;
    authz::check_token_response(r.status.as_u16(), &r.body, true).map_err(anyhow::Error::msg)?;
    *ctx.user_token.write().expect("token") = r.json()["access_token"]
        .as_str()
        .context("no access token")?
        .to_string();

    let started = Instant::now();
    eprintln!(
        "soak: {} s against {} (pid {}) ...",
        duration.as_secs(),
        gw.base,
        gw.proc.pid()
    );
    let mut tasks = Vec::new();
    for _ in 0..2 {
        tasks.push(tokio::spawn(login_worker(ctx.clone())));
        tasks.push(tokio::spawn(refresh_worker(ctx.clone())));
    }
    for n in 0..3 {
        tasks.push(tokio::spawn(tools_worker(ctx.clone(), n)));
    }
    tasks.push(tokio::spawn(forged_worker(ctx.clone())));
    tasks.push(tokio::spawn(oversized_worker(ctx.clone())));
    tasks.push(tokio::spawn(malformed_worker(ctx.clone())));
    tasks.push(tokio::spawn(capacity_worker(ctx.clone())));
    tasks.push(tokio::spawn(rate_worker(ctx.clone())));
    tasks.push(tokio::spawn(streams_worker(ctx.clone())));
    tasks.push(tokio::spawn(signin_worker(ctx.clone())));
    tasks.push(tokio::spawn(register_worker(ctx.clone())));

    let samples = sample_rss(&gw, &ctx, started).await;
    // Every worker ends its current step within the hang bound.
    let mut failures = Vec::new();
    let all = join_all(tasks);
    match tokio::time::timeout(HANG + Duration::from_secs(10), all).await {
        Ok(results) => {
            for r in results {
                if let Err(e) = r {
                    failures.push(format!("a worker died: {e}"));
                }
            }
        }
        Err(_) => failures.push(format!(
            "workers still busy {:?} after the end",
            HANG + Duration::from_secs(10)
        )),
    }
    let elapsed = started.elapsed();
    let port = gw
        .base
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .context("the gateway's port")?;
    let ready = procs::http_get_status(port, "/readyz");
    if !matches!(ready, Ok(200)) {
        failures.push(format!("after the run /readyz answered {ready:?}"));
    }
    let tally = &ctx.tally;
    failures.extend(tally.failures.lock().expect("tally").iter().cloned());
    let failed = tally.failed.load(Ordering::Relaxed);
    if failed as usize > KEEP_FAILURES {
        failures.push(format!(
            "... {} more failures",
            failed as usize - KEEP_FAILURES
        ));
    }
    for (kind, status, what) in MUST_SEE {
        if tally.seen(*kind, *status) == 0 {
            failures.push(format!(
                "{}: never answered {status}: {what} was not exercised",
                kind.name()
            ));
        }
    }
    let memory = judge_memory(&samples, duration);
    if let Err(e) = &memory {
        failures.push(e.clone());
    }
    let report = report(
        tally,
        &samples,
        &memory,
        elapsed,
        ctx.sent.load(Ordering::Relaxed),
    );
    drop(gw);
    Ok(Outcome { report, failures })
}

async fn join_all(
    tasks: Vec<tokio::task::JoinHandle<()>>,
) -> Vec<Result<(), tokio::task::JoinError>> {
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await);
    }
    out
}

/// Samples the gateway's RSS every [`SAMPLE_EVERY`] until the run's end.
async fn sample_rss(gw: &Gateway, ctx: &Ctx, started: Instant) -> Vec<Sample> {
    let pid = gw.proc.pid();
    let mut samples = Vec::new();
    loop {
        match procs::rss_kib(pid) {
            Ok(rss_kib) => samples.push(Sample {
                at: started.elapsed(),
                rss_kib,
                children: procs::descendants(pid).len(),
            }),
            Err(e) => {
                ctx.tally.fail(
                    Kind::Tools,
                    format!("the gateway is gone: {e:#}\n{}", gw.proc.log_tail()),
                );
                break;
            }
        }
        if !ctx.running() {
            break;
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
    samples
}

/// Samples a memory figure is the lowest of: a passing spike (a password hash alone takes
/// 19 MiB for a moment) is not growth, and a leak raises every sample.
const SETTLE_SAMPLES: usize = 5;

/// The memory rule: `Ok((warm, end, bound))` in KiB, or why it failed. `warm` is the lowest of
/// the [`SETTLE_SAMPLES`] samples from the end of the warm-up on, `end` the lowest of the last
/// ones.
fn judge_memory(samples: &[Sample], duration: Duration) -> Result<(u64, u64, u64), String> {
    let warmup = duration / 4;
    let from = samples
        .iter()
        .position(|s| s.at >= warmup)
        .ok_or("no RSS sample after the warm-up")?;
    let lowest = |w: &[Sample]| w.iter().map(|s| s.rss_kib).min().unwrap_or(0);
    let warm = lowest(&samples[from..(from + SETTLE_SAMPLES).min(samples.len())]);
    let end = lowest(&samples[samples.len().saturating_sub(SETTLE_SAMPLES)..]);
    let bound = warm + RSS_SLACK_KIB.max(warm * RSS_SLACK_PERCENT / 100);
    if end > bound {
        return Err(format!(
            "memory grew: RSS {end} KiB at the end, {warm} KiB after the warm-up ({:.0} s), bound {bound} KiB (each the lowest of {SETTLE_SAMPLES} samples)",
            samples[from].at.as_secs_f64()
        ));
    }
    Ok((warm, end, bound))
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn report(
    tally: &Tally,
    samples: &[Sample],
    memory: &Result<(u64, u64, u64), String>,
    elapsed: Duration,
    sent: u64,
) -> String {
    let counts = tally.counts.lock().expect("tally").clone();
    let mut by_kind: BTreeMap<Kind, Vec<(u16, u64)>> = BTreeMap::new();
    for ((k, s), n) in counts {
        by_kind.entry(k).or_default().push((s, n));
    }
    let rows: Vec<Vec<String>> = by_kind
        .iter()
        .map(|(k, v)| {
            let total: u64 = v.iter().map(|(_, n)| n).sum();
            let answers = v
                .iter()
                .map(|(s, n)| {
                    if *s == 0 {
                        format!("no answer ×{n}")
                    } else {
                        format!("{s} ×{n}")
                    }
                })
                .collect::<Vec<_>>()
                .join(", ");
            vec![k.name().to_string(), total.to_string(), answers]
        })
        .collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{sent} requests in {:.0} s; {} failures, {} hangs\n",
        elapsed.as_secs_f64(),
        tally.failed.load(Ordering::Relaxed),
        tally.hangs.load(Ordering::Relaxed)
    );
    out.push_str(&md_table(&["kind", "answers", "by status"], &rows));
    // About ten evenly spaced samples, and the last.
    let step = (samples.len() / 10).max(1);
    let last = samples.len().saturating_sub(1);
    let rss_rows: Vec<Vec<String>> = samples
        .iter()
        .enumerate()
        .filter(|(i, _)| i % step == 0 || *i == last)
        .map(|(_, s)| {
            vec![
                format!("{:.0} s", s.at.as_secs_f64()),
                mib(s.rss_kib),
                s.children.to_string(),
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&md_table(
        &["time", "gateway RSS", "stdio children"],
        &rss_rows,
    ));
    let peak = samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    match memory {
        Ok((warm, end, bound)) => {
            let _ = writeln!(
                out,
                "\nRSS after warm-up {}, at the end {}, bound {}, peak {}: flat",
                mib(*warm),
                mib(*end),
                mib(*bound),
                mib(peak)
            );
        }
        Err(e) => {
            let _ = writeln!(out, "\n{e} (peak {})", mib(peak));
        }
    }
    out
}

/// `soak [--duration SECS] [--bin-dir DIR]`: runs against the `mcpgate` binary in `DIR`
/// (default: next to this one); exit status 1 when a rule was broken.
pub async fn cli(args: &[String]) -> Result<()> {
    let mut duration = DEFAULT_DURATION;
    let mut bin_dir = std::env::current_exe()
        .context("locating the bench binary")?
        .parent()
        .context("the bench binary has no directory")?
        .to_path_buf();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--duration" => {
                let v = it.next().context("--duration needs seconds")?;
                let secs: u64 = v.parse().context("--duration needs whole seconds")?;
                if secs < 10 {
                    bail!("--duration: at least 10 s (a quarter is warm-up)");
                }
                duration = Duration::from_secs(secs);
            }
            "--bin-dir" => bin_dir = it.next().context("--bin-dir needs a directory")?.into(),
            other => bail!(
                "soak: unknown argument {other:?}\nusage: mcpgate-bench soak [--duration SECS] [--bin-dir DIR]"
            ),
        }
    }
    let opts = Opts {
        quick: false,
        pin_loadgen: false,
        bin_dir,
    };
    let out = run(&opts, duration).await?;
    println!("{}", out.report);
    if out.failures.is_empty() {
        println!("soak passed");
        Ok(())
    } else {
        for f in &out.failures {
            println!("FAIL {f}");
        }
        bail!("soak failed: {} FAIL lines above", out.failures.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(rss: &[u64]) -> Vec<Sample> {
        rss.iter()
            .enumerate()
            .map(|(i, r)| Sample {
                at: Duration::from_secs(i as u64 * 10),
                rss_kib: *r,
                children: 0,
            })
            .collect()
    }

    #[test]
    fn memory_is_judged_from_the_samples_after_warm_up() {
        let d = Duration::from_secs(100);
        // Growth during warm-up does not count; after it, 32 MiB or 25 % is allowed.
        let ok = samples(&[
            10_000, 90_000, 100_000, 100_000, 120_000, 125_000, 130_000, 130_000,
        ]);
        assert_eq!(judge_memory(&ok, d), Ok((100_000, 100_000, 132_768)));
        let grew = samples(&[
            0, 0, 0, 100_000, 100_000, 140_000, 140_000, 140_000, 140_000, 140_000,
        ]);
        assert!(judge_memory(&grew, d).unwrap_err().contains("memory grew"));
        // A spike at the end is not growth; a leak raises every sample.
        let spike = samples(&[
            0, 0, 0, 100_000, 100_000, 100_000, 100_000, 100_000, 100_000, 200_000,
        ]);
        assert_eq!(judge_memory(&spike, d), Ok((100_000, 100_000, 132_768)));
        assert!(judge_memory(&samples(&[1]), d).is_err());
    }

    #[test]
    fn the_config_parses_and_sets_every_limit() {
        let text = procs::base_config_with(AS_KEYS, &limits_toml().unwrap());
        let v: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(
            v["authorization_server"]["trusted_proxies"][0].as_str(),
            Some("127.0.0.1")
        );
        let l = &v["gateway"]["limits"];
        assert_eq!(l["max_sessions"].as_integer(), Some(MAX_SESSIONS as i64));
        assert_eq!(l["refused_tokens_per_ip_per_minute"].as_integer(), Some(10));
        let names: Vec<_> = v["upstream"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, [ECHO, TIGHT]);
    }

    #[test]
    fn forged_tokens_are_not_the_good_one() {
        let good = "aGVhZA.Y2xhaW1z.c2ln";
        for t in forged_tokens(good, "other").into_iter().flatten() {
            assert_ne!(t, good);
        }
    }
}
