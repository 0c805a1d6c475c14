//! stdio upstreams (MCP transports "stdio", checklist §2(f)): one child
//! process speaking newline-delimited JSON-RPC on stdin/stdout.
//!
//! The child starts in the sandbox of `mcpgate-sandbox` (unless its
//! upstream says `mode = "off"`), with a cleared environment (only the
//! declared `env` plus a minimal `PATH` and `LANG`, and `HOME`/`TMPDIR` in
//! its private directory), in its own process group that is killed as a
//! whole when the child is no longer needed. Messages longer
//! than the configured maximum end the child. stderr goes to the log, rate
//! limited. Ids of client requests are rewritten to gateway ids (so several
//! sessions can share one child and never answer each other's requests),
//! and server→client requests get gateway ids bound to one session. A child
//! that exits fails its in-flight requests with a JSON-RPC error.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{OnceCell, mpsc};
use tokio_util::sync::CancellationToken;

use crate::config::StdioConfig;
use crate::jsonrpc::{self, codes};
use crate::log_budget::LogBudget;

/// The pseudo-session of the gateway's own `initialize` handshake.
const INIT_SESSION: &str = "mcpgate-init";
/// Server→client messages kept for a session with no open stream.
const BACKLOG: usize = 256;
/// Messages queued on one stream (a request's or a session's GET stream)
/// that its reader has not taken yet. A full queue refuses what the child
/// sends next for it; a request's last place is kept for its response.
pub const QUEUE: usize = 64;
/// Server→client requests of one session that its client has not answered.
const MAX_SERVER_REQUESTS: usize = 64;
/// stderr lines logged per second per child (burst allowed up to this many).
const STDERR_LINES_PER_SEC: u32 = 20;
/// Refused server messages logged per second per child; the rest are counted.
const REFUSALS_LOGGED_PER_SEC: u32 = 5;

/// The child is gone (exited, killed, or its pipes broke).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the upstream server process is not running")]
pub struct ChildGone;

struct Pending {
    client_id: Value,
    /// The client's `_meta.progressToken`, replaced by the gateway id on the
    /// way to the child (tokens of two sessions may be equal).
    progress_token: Option<Value>,
    session: String,
    seq: u64,
    tx: mpsc::Sender<Value>,
}

struct ServerRequest {
    child_id: Value,
    session: String,
}

#[derive(Default)]
struct Sink {
    stream: Option<mpsc::Sender<Value>>,
    backlog: VecDeque<Value>,
}

#[derive(Default)]
struct State {
    pending: HashMap<String, Pending>,
    server_requests: HashMap<String, ServerRequest>,
    sinks: HashMap<String, Sink>,
    refusals_logged: LogBudget,
}

/// The messages the child sends on one stream, in order: for a request, the
/// server→client messages routed to it and, last, its response. The queue
/// behind it is bounded ([`QUEUE`]).
pub struct Replies {
    rx: mpsc::Receiver<Value>,
    /// A message taken by [`Replies::peek`], received again first.
    held: Option<Value>,
}

impl Replies {
    fn new(rx: mpsc::Receiver<Value>) -> Self {
        Self { rx, held: None }
    }

    /// The next message; `None` once the stream has ended.
    pub async fn recv(&mut self) -> Option<Value> {
        match self.held.take() {
            Some(m) => Some(m),
            None => self.rx.recv().await,
        }
    }

    /// Waits for the next message without taking it.
    pub async fn peek(&mut self) -> Option<&Value> {
        if self.held.is_none() {
            self.held = self.rx.recv().await;
        }
        self.held.as_ref()
    }
}

/// Why a server-initiated message was not forwarded. A request among them
/// is answered with an error, so that the child does not wait for a reply
/// that never comes.
#[derive(Debug, Clone, Copy)]
enum Unrouted {
    /// A shared child with requests of several sessions in flight, or none.
    NoSession,
    /// The stream it belongs to has [`QUEUE`] messages its client has not read.
    QueueFull,
    /// No stream is open and the session's backlog holds [`BACKLOG`] messages.
    BacklogFull,
    /// The session has [`MAX_SERVER_REQUESTS`] unanswered server requests.
    TooManyRequests,
}

impl Unrouted {
    fn reason(self) -> &'static str {
        match self {
            Unrouted::NoSession => "no_session",
            Unrouted::QueueFull => "queue_full",
            Unrouted::BacklogFull => "backlog_full",
            Unrouted::TooManyRequests => "too_many_server_requests",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Unrouted::NoSession => "mcpgate: no single client session to route this request to",
            Unrouted::QueueFull => "mcpgate: the client is not reading this stream",
            Unrouted::BacklogFull => {
                "mcpgate: the client session has no stream open and its backlog is full"
            }
            Unrouted::TooManyRequests => {
                "mcpgate: too many server requests the client has not answered"
            }
        }
    }
}

/// Puts a server-initiated message on a request's stream, keeping the last
/// place of its queue for the response (which therefore always fits).
fn offer(tx: &mpsc::Sender<Value>, msg: Value) -> Result<(), mpsc::error::TrySendError<Value>> {
    if !tx.is_closed() && tx.capacity() <= 1 {
        return Err(mpsc::error::TrySendError::Full(msg));
    }
    tx.try_send(msg)
}

/// A running stdio child.
pub struct StdioChild {
    pub upstream: String,
    pub pid: Option<u32>,
    /// Shared between sessions: server-initiated messages are only routed
    /// when they can be attributed to exactly one session.
    shared: bool,
    stdin: mpsc::Sender<Bytes>,
    state: Mutex<State>,
    next: AtomicU64,
    dead: CancellationToken,
    kill: CancellationToken,
    /// Cancelled once the child has been waited for (no zombie).
    reaped: CancellationToken,
    init: OnceCell<Value>,
    max_message_bytes: usize,
}

/// The `PATH` every child gets.
pub const CHILD_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// How the children of one upstream start: through the sandbox helper with a
/// resolved plan (the default), or directly (`[upstream.sandbox] mode = "off"`).
#[derive(Debug, Clone)]
pub enum Launch {
    Sandboxed {
        helper: PathBuf,
        plan: Box<mcpgate_sandbox::Plan>,
    },
    Direct,
}

impl Launch {
    /// Resolves the sandbox of one stdio upstream against the running
    /// kernel. Fails (naming the field) when the sandbox is required and
    /// cannot be applied in full, `run_as` cannot be honoured, a rule would
    /// expose one of `protected`, or no helper binary can be found.
    pub fn prepare(
        cfg: &StdioConfig,
        protected: &[PathBuf],
        support: mcpgate_sandbox::Support,
    ) -> Result<Self, String> {
        if cfg.sandbox.mode == mcpgate_sandbox::Mode::Off {
            return Ok(Self::Direct);
        }
        // The PATH the child will have, the way `spawn` sets it.
        let path_env = child_env(cfg)
            .into_iter()
            .find_map(|(k, v)| (k == "PATH").then_some(v))
            .unwrap_or_else(|| CHILD_PATH.to_string());
        let plan = mcpgate_sandbox::Plan::build(&mcpgate_sandbox::PlanInput {
            config: &cfg.sandbox,
            command: &cfg.command,
            path_env: &path_env,
            cwd: cfg.cwd.as_deref(),
            protected,
            support,
        })
        .map_err(|e| e.to_string())?;
        let helper = mcpgate_sandbox::helper::locate().map_err(|e| format!("sandbox: {e}"))?;
        Ok(Self::Sandboxed {
            helper,
            plan: Box::new(plan),
        })
    }
}

/// The environment a child gets: nothing of the gateway's own but a minimal
/// `PATH`, `HOME` and `LANG`, then the declared variables. A sandboxed child's
/// `HOME` and `TMPDIR` are then pointed at its private directory.
pub fn child_env(cfg: &StdioConfig) -> Vec<(String, String)> {
    let mut env = vec![
        ("PATH".to_string(), CHILD_PATH.to_string()),
        (
            "HOME".to_string(),
            std::env::var("HOME").unwrap_or_else(|_| "/".into()),
        ),
        ("LANG".to_string(), "C.UTF-8".to_string()),
    ];
    for (k, v) in &cfg.env {
        env.retain(|(ek, _)| ek != k);
        env.push((k.clone(), v.expose().to_string()));
    }
    env
}

impl StdioChild {
    /// Spawns the child and its reader, writer, stderr and reaper tasks.
    /// A sandboxed child gets a private directory (its `HOME` and `TMPDIR`,
    /// owned by its uid, removed when it has been reaped) and starts through
    /// the helper, which applies the plan and then executes the command.
    pub fn spawn(
        upstream: &str,
        cfg: &StdioConfig,
        launch: &Launch,
        shared: bool,
        max_message_bytes: usize,
        slot: crate::capacity::Slot,
    ) -> std::io::Result<Arc<Self>> {
        let mut env = child_env(cfg);
        let (mut cmd, private) = match launch {
            Launch::Direct => {
                let mut cmd = Command::new(&cfg.command);
                cmd.args(&cfg.args);
                if let Some(cwd) = &cfg.cwd {
                    cmd.current_dir(cwd);
                }
                (cmd, None)
            }
            Launch::Sandboxed { helper, plan } => {
                let (plan, dir) = plan.with_new_private_dir(&format!("mcpgate-{upstream}-"))?;
                let home = dir.path().display().to_string();
                for var in ["HOME", "TMPDIR"] {
                    if !cfg.env.iter().any(|(k, _)| k == var) {
                        env.retain(|(k, _)| k != var);
                        env.push((var.to_string(), home.clone()));
                    }
                }
                let mut cmd = Command::new(helper);
                cmd.args(mcpgate_sandbox::helper::helper_args(&plan, &cfg.args));
                (cmd, Some(dir))
            }
        };
        cmd.env_clear()
            .envs(env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        let mut child = cmd.spawn()?;
        let pid = child.id();
        let (stdin, stdout, stderr) =
            match (child.stdin.take(), child.stdout.take(), child.stderr.take()) {
                (Some(i), Some(o), Some(e)) => (i, o, e),
                _ => return Err(std::io::Error::other("child pipes missing")),
            };
        let (tx, rx) = mpsc::channel::<Bytes>(64);
        let this = Arc::new(Self {
            upstream: upstream.to_string(),
            pid,
            shared,
            stdin: tx,
            state: Mutex::new(State::default()),
            next: AtomicU64::new(1),
            dead: CancellationToken::new(),
            kill: CancellationToken::new(),
            reaped: CancellationToken::new(),
            init: OnceCell::new(),
            max_message_bytes,
        });
        metrics::gauge!("mcpgate_gateway_child_processes", "upstream" => upstream.to_string())
            .increment(1.0);
        tracing::info!(upstream, pid, "started stdio upstream");
        tokio::spawn(writer(stdin, rx, this.kill.clone()));
        tokio::spawn(reader(
            Arc::downgrade(&this),
            BufReader::new(stdout),
            this.dead.clone(),
            this.kill.clone(),
            max_message_bytes,
        ));
        tokio::spawn(log_stderr(
            upstream.to_string(),
            BufReader::new(stderr),
            max_message_bytes,
        ));
        // Its place under `max_children` is free once it has been reaped.
        let reaped = this.reaped.clone();
        tokio::spawn(async move {
            reaped.cancelled().await;
            drop(slot);
        });
        tokio::spawn(reap(
            upstream.to_string(),
            child,
            pid,
            private,
            this.kill.clone(),
            this.dead.clone(),
            this.reaped.clone(),
        ));
        Ok(this)
    }

    pub fn is_alive(&self) -> bool {
        !self.dead.is_cancelled()
    }

    /// Resolves when the child has exited and been reaped.
    pub async fn exited(&self) {
        self.reaped.cancelled().await;
    }

    /// Kills the whole process group (idempotent).
    pub fn kill(&self) {
        self.kill.cancel();
    }

    fn gateway_id(&self, prefix: &str) -> String {
        format!(
            "mcpgate-{prefix}{}",
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }

    async fn write(&self, msg: &Value) -> Result<(), ChildGone> {
        if !self.is_alive() {
            return Err(ChildGone);
        }
        let mut line = serde_json::to_vec(msg).map_err(|_| ChildGone)?;
        line.push(b'\n');
        self.stdin
            .send(Bytes::from(line))
            .await
            .map_err(|_| ChildGone)
    }

    /// Sends a client request. The receiver yields the server→client
    /// messages routed to this request's stream and, last, the response
    /// (with the client's id). It ends when the response has been sent.
    pub async fn request(&self, session: &str, mut msg: Value) -> Result<Replies, ChildGone> {
        let gid = self.gateway_id("c");
        let client_id = msg.get("id").cloned().unwrap_or(Value::Null);
        // Progress notifications name the request by its token: the child
        // sees the gateway id there too, so each one maps back to exactly
        // one request, and so to its session, even on a shared child.
        let progress_token = msg
            .pointer_mut("/params/_meta/progressToken")
            .filter(|t| t.is_string() || t.is_number())
            .map(|t| std::mem::replace(t, Value::String(gid.clone())));
        let (tx, rx) = mpsc::channel(QUEUE);
        {
            let mut st = self.state.lock().expect("child state lock");
            let seq = self.next.fetch_add(1, Ordering::Relaxed);
            st.pending.insert(
                gid.clone(),
                Pending {
                    client_id,
                    progress_token,
                    session: session.to_string(),
                    seq,
                    tx,
                },
            );
            // The session is known from now on: messages for it that arrive
            // while no request is in flight wait in its backlog.
            if session != INIT_SESSION {
                st.sinks.entry(session.to_string()).or_default();
            }
        }
        msg["id"] = Value::String(gid.clone());
        if let Err(e) = self.write(&msg).await {
            self.state
                .lock()
                .expect("child state lock")
                .pending
                .remove(&gid);
            return Err(e);
        }
        Ok(Replies::new(rx))
    }

    /// Forgets an in-flight request whose client went away (its stream
    /// closed) and tells the child with `notifications/cancelled` (closing
    /// the stream cancels the request).
    pub fn abandon(self: &Arc<Self>, session: &str, client_id: &Value) {
        let gid = {
            let mut st = self.state.lock().expect("child state lock");
            let gid = st
                .pending
                .iter()
                .find(|(_, p)| p.session == session && &p.client_id == client_id)
                .map(|(g, _)| g.clone());
            if let Some(g) = &gid {
                st.pending.remove(g);
            }
            gid
        };
        let Some(gid) = gid else { return };
        let this = self.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let n = json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": gid, "reason": "client disconnected"}});
                let _ = this.write(&n).await;
            });
        }
    }

    /// Sends a client notification, mapping `notifications/cancelled`'s
    /// `requestId` to the gateway id the child knows.
    pub async fn notify(&self, session: &str, mut msg: Value) -> Result<(), ChildGone> {
        if msg.get("method").and_then(Value::as_str) == Some("notifications/cancelled") {
            let want = msg.pointer("/params/requestId").cloned();
            let gid = {
                let st = self.state.lock().expect("child state lock");
                st.pending
                    .iter()
                    .find(|(_, p)| p.session == session && Some(&p.client_id) == want.as_ref())
                    .map(|(g, _)| g.clone())
            };
            match gid {
                Some(g) => msg["params"]["requestId"] = Value::String(g),
                None => return Ok(()),
            }
        }
        self.write(&msg).await
    }

    /// Sends a client's response to a server→client request. Returns
    /// `false` when the id is not one this session was asked (dropped).
    pub async fn respond(&self, session: &str, mut msg: Value) -> Result<bool, ChildGone> {
        let Some(gid) = msg.get("id").and_then(Value::as_str).map(str::to_string) else {
            return Ok(false);
        };
        let child_id = {
            let mut st = self.state.lock().expect("child state lock");
            match st.server_requests.get(&gid) {
                Some(r) if r.session == session => {
                    st.server_requests.remove(&gid).map(|r| r.child_id)
                }
                _ => None,
            }
        };
        let Some(child_id) = child_id else {
            return Ok(false);
        };
        msg["id"] = child_id;
        self.write(&msg).await.map(|()| true)
    }

    /// Opens (or replaces) the standalone stream of `session` (GET), first
    /// yielding what was kept while no stream was open.
    pub fn open_stream(&self, session: &str) -> Replies {
        let mut st = self.state.lock().expect("child state lock");
        let sink = st.sinks.entry(session.to_string()).or_default();
        // Room for the whole backlog, then the usual queue.
        let (tx, rx) = mpsc::channel(QUEUE + sink.backlog.len());
        for m in sink.backlog.drain(..) {
            let _ = tx.try_send(m);
        }
        sink.stream = Some(tx);
        Replies::new(rx)
    }

    /// Forgets a session: its streams end and its in-flight requests are dropped.
    pub fn close_session(&self, session: &str) {
        let mut st = self.state.lock().expect("child state lock");
        st.sinks.remove(session);
        st.pending.retain(|_, p| p.session != session);
        st.server_requests.retain(|_, r| r.session != session);
    }

    /// For shared and per-user children the gateway runs the `initialize`
    /// handshake itself, once; later `initialize` requests get the cached
    /// result.
    pub async fn ensure_initialized(&self, params: Value) -> Result<Value, ChildGone> {
        self.init
            .get_or_try_init(|| async {
                let msg =
                    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params});
                let mut rx = self.request(INIT_SESSION, msg).await?;
                let resp = loop {
                    match rx.recv().await {
                        Some(m) if m.get("method").is_none() => break m,
                        Some(_) => continue,
                        None => return Err(ChildGone),
                    }
                };
                let result = resp.get("result").cloned().ok_or(ChildGone)?;
                self.write(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
                    .await?;
                Ok(result)
            })
            .await
            .cloned()
    }

    /// Routes one message from the child.
    fn dispatch(&self, mut msg: Value) {
        let mut st = self.state.lock().expect("child state lock");
        let has_method = msg.get("method").is_some();
        let id = msg.get("id").cloned();
        if !has_method {
            // A response to a client request.
            let Some(gid) = id.as_ref().and_then(Value::as_str) else {
                tracing::debug!(upstream = %self.upstream, "response with an id the gateway did not send");
                return;
            };
            if let Some(p) = st.pending.remove(gid) {
                msg["id"] = p.client_id;
                // The place kept for it (see `offer`).
                let _ = p.tx.try_send(msg);
            }
            return;
        }
        // Progress for a request goes to that request's stream, whoever's it is.
        if msg.get("method").and_then(Value::as_str) == Some("notifications/progress") {
            let token = msg.pointer("/params/progressToken").and_then(Value::as_str);
            if let Some(p) = token.and_then(|t| st.pending.get(t))
                && let Some(client_token) = &p.progress_token
            {
                msg["params"]["progressToken"] = client_token.clone();
                if let Err(mpsc::error::TrySendError::Full(m)) = offer(&p.tx, msg) {
                    self.unrouted(&mut st, &m, None, Unrouted::QueueFull);
                }
                return;
            }
        }
        // Pick the session (and stream) this server-initiated message belongs to.
        let target = {
            let mut sessions = st
                .pending
                .values()
                .filter(|p| p.session != INIT_SESSION)
                .map(|p| p.session.as_str());
            let first = sessions.next().map(str::to_string);
            match first {
                Some(s) if !self.shared || sessions.all(|x| x == s) => Some(s),
                Some(_) => None,
                None if !self.shared && st.sinks.len() == 1 => st.sinks.keys().next().cloned(),
                None => None,
            }
        };
        let Some(session) = target else {
            return self.unrouted(&mut st, &msg, id, Unrouted::NoSession);
        };
        if let Some(child_id) = id {
            let open = st
                .server_requests
                .values()
                .filter(|r| r.session == session)
                .count();
            if open >= MAX_SERVER_REQUESTS {
                return self.unrouted(&mut st, &msg, Some(child_id), Unrouted::TooManyRequests);
            }
            let gid = self.gateway_id("s");
            st.server_requests.insert(
                gid.clone(),
                ServerRequest {
                    child_id,
                    session: session.clone(),
                },
            );
            msg["id"] = Value::String(gid);
        } else if msg.get("method").and_then(Value::as_str) == Some("notifications/cancelled") {
            // The server cancels one of its own requests: use the id the client knows.
            let want = msg.pointer("/params/requestId").cloned();
            if let Some(g) = st
                .server_requests
                .iter()
                .find(|(_, r)| Some(&r.child_id) == want.as_ref())
                .map(|(g, _)| g.clone())
            {
                msg["params"]["requestId"] = Value::String(g);
            }
        }
        if let Err(why) = Self::deliver(&mut st, &session, msg) {
            let (msg, why) = *why;
            // A refused request is answered under the id the child gave it.
            let child_id = msg
                .get("id")
                .and_then(Value::as_str)
                .and_then(|g| st.server_requests.remove(g))
                .map(|r| r.child_id);
            self.unrouted(&mut st, &msg, child_id, why);
        }
    }

    /// Puts a server-initiated message (ids already mapped) on the stream of
    /// `session` it belongs to: the stream a `subscriptions/listen`
    /// notification names, else the newest request in flight, else the GET
    /// stream, else the backlog. A full queue refuses it; a closed stream is
    /// passed over.
    fn deliver(st: &mut State, session: &str, msg: Value) -> Result<(), Box<(Value, Unrouted)>> {
        use mpsc::error::TrySendError::{Closed, Full};
        let full = |m| Err(Box::new((m, Unrouted::QueueFull)));
        // 2026-07-28 `subscriptions/listen`: a notification names its stream
        // (the listen request's id, which the child knows as our gateway id).
        let listen = msg
            .pointer("/params/_meta/io.modelcontextprotocol~1subscriptionId")
            .and_then(Value::as_str)
            .and_then(|gid| st.pending.get(gid))
            .filter(|p| p.session == session);
        if let Some(p) = listen {
            let mut m = msg.clone();
            m["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"] = p.client_id.clone();
            match offer(&p.tx, m) {
                Ok(()) => return Ok(()),
                Err(Full(m)) => return full(m),
                Err(Closed(_)) => {}
            }
        }
        let newest = st
            .pending
            .values()
            .filter(|p| p.session == session)
            .max_by_key(|p| p.seq);
        let msg = match newest {
            Some(p) => match offer(&p.tx, msg) {
                Ok(()) => return Ok(()),
                Err(Full(m)) => return full(m),
                Err(Closed(m)) => m,
            },
            None => msg,
        };
        let sink = st.sinks.entry(session.to_string()).or_default();
        let msg = match &sink.stream {
            Some(s) => match s.try_send(msg) {
                Ok(()) => return Ok(()),
                Err(Full(m)) => return full(m),
                Err(Closed(m)) => m,
            },
            None => msg,
        };
        sink.stream = None;
        if sink.backlog.len() >= BACKLOG {
            return Err(Box::new((msg, Unrouted::BacklogFull)));
        }
        sink.backlog.push_back(msg);
        Ok(())
    }

    /// A server-initiated message that is not forwarded: counted, logged
    /// (within a budget, so a flooding child cannot flood the log) and, if
    /// it is a request, answered to the child with an error.
    fn unrouted(&self, st: &mut State, msg: &Value, child_id: Option<Value>, why: Unrouted) {
        metrics::counter!(
            "mcpgate_gateway_stdio_unrouted_total",
            "upstream" => self.upstream.clone(),
            "reason" => why.reason()
        )
        .increment(1);
        if let Some(held_back) = st.refusals_logged.allow(REFUSALS_LOGGED_PER_SEC) {
            let method = msg
                .get("method")
                .and_then(Value::as_str)
                .unwrap_or_default();
            tracing::warn!(upstream = %self.upstream, method, reason = why.reason(), held_back, "server message not forwarded: {}", why.message());
        }
        if let Some(child_id) = child_id {
            let err = jsonrpc::error_value(Some(&child_id), codes::INTERNAL_ERROR, why.message());
            let mut line = serde_json::to_vec(&err).unwrap_or_default();
            line.push(b'\n');
            if self.stdin.try_send(Bytes::from(line)).is_err() {
                tracing::debug!(upstream = %self.upstream, "could not answer the refused server request (child busy or gone)");
            }
        }
    }

    /// A line that is not one strict JSON-RPC message is not forwarded. If
    /// it reads (leniently) as the answer to a request in flight, that
    /// request is failed instead of left waiting.
    fn malformed(&self, line: &[u8], why: &str) {
        tracing::warn!(upstream = %self.upstream, why, "stdio upstream wrote something that is not one strict JSON-RPC message; not forwarded");
        let Some(gid) = jsonrpc::id_hint(line) else {
            return;
        };
        let mut st = self.state.lock().expect("child state lock");
        if let Some(p) = gid.as_str().and_then(|g| st.pending.remove(g)) {
            let _ = p.tx.try_send(jsonrpc::error_value(
                Some(&p.client_id),
                codes::UPSTREAM_ERROR,
                "the upstream sent a malformed message",
            ));
        }
    }

    /// Fails every in-flight request (the child is gone).
    fn fail_all(&self) {
        let mut st = self.state.lock().expect("child state lock");
        for (_, p) in st.pending.drain() {
            let _ = p.tx.try_send(jsonrpc::error_value(
                Some(&p.client_id),
                codes::UPSTREAM_ERROR,
                "the upstream server exited",
            ));
        }
        st.server_requests.clear();
        st.sinks.clear();
    }

    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }
}

impl Drop for StdioChild {
    fn drop(&mut self) {
        self.kill.cancel();
    }
}

async fn writer(
    mut stdin: tokio::process::ChildStdin,
    mut rx: mpsc::Receiver<Bytes>,
    kill: CancellationToken,
) {
    loop {
        tokio::select! {
            () = kill.cancelled() => break,
            m = rx.recv() => {
                let Some(line) = m else { break };
                if stdin.write_all(&line).await.is_err() || stdin.flush().await.is_err() {
                    break;
                }
            }
        }
    }
}

/// Reads one `\n`-terminated line of at most `max` bytes into `buf`.
/// `Ok(false)` at end of input; an over-long line is an error.
pub async fn read_line_limited<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<bool> {
    buf.clear();
    loop {
        let available = r.fill_buf().await?;
        if available.is_empty() {
            return Ok(!buf.is_empty());
        }
        let (chunk, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        if buf.len() + chunk.len() > max {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "message too large",
            ));
        }
        buf.extend_from_slice(chunk);
        let used = done.unwrap_or(available.len());
        r.consume(used);
        if done.is_some() {
            return Ok(true);
        }
    }
}

async fn reader(
    child: std::sync::Weak<StdioChild>,
    mut out: BufReader<tokio::process::ChildStdout>,
    dead: CancellationToken,
    kill: CancellationToken,
    max: usize,
) {
    let mut buf = Vec::new();
    loop {
        let got = tokio::select! {
            () = kill.cancelled() => break,
            r = read_line_limited(&mut out, &mut buf, max) => r,
        };
        match got {
            Ok(true) => {
                let line = buf.strip_suffix(b"\r").unwrap_or(&buf);
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let Some(c) = child.upgrade() else { break };
                // Parsed once, strictly, like every message crossing the
                // gateway: what is routed (and later decided) is this value.
                match jsonrpc::parse(line) {
                    Ok(env) => c.dispatch(env.value),
                    Err(e) => c.malformed(line, e.message()),
                }
            }
            Ok(false) => break,
            Err(e) => {
                if let Some(c) = child.upgrade() {
                    tracing::warn!(upstream = %c.upstream, error = %e, "stdio upstream output refused; stopping it");
                }
                kill.cancel();
                break;
            }
        }
    }
    dead.cancel();
    if let Some(c) = child.upgrade() {
        c.fail_all();
    }
}

async fn log_stderr(upstream: String, mut err: BufReader<tokio::process::ChildStderr>, max: usize) {
    let mut buf = Vec::new();
    let mut budget = LogBudget::default();
    loop {
        match read_line_limited(&mut err, &mut buf, max.min(64 * 1024)).await {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                // An over-long line: skip it, keep reading.
                budget.hold_back();
                let _ = err.read_until(b'\n', &mut Vec::new()).await;
                continue;
            }
            Err(_) => break,
        }
        let Some(dropped) = budget.allow(STDERR_LINES_PER_SEC) else {
            continue;
        };
        if dropped > 0 {
            tracing::warn!(
                upstream,
                dropped,
                "stdio upstream stderr lines dropped (rate limit or too long)"
            );
        }
        let line = String::from_utf8_lossy(&buf);
        tracing::info!(upstream, "stderr: {}", line.trim_end());
    }
}

/// Waits for the child; on a kill request, signals the whole process group
/// (SIGTERM, then SIGKILL after a grace period) and reaps the child so no
/// zombie is left.
async fn reap(
    upstream: String,
    mut child: Child,
    pid: Option<u32>,
    private: Option<tempfile::TempDir>,
    kill: CancellationToken,
    dead: CancellationToken,
    reaped: CancellationToken,
) {
    let status = tokio::select! {
        s = child.wait() => s,
        () = kill.cancelled() => {
            signal_group(pid, nix::sys::signal::Signal::SIGTERM);
            match tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
                Ok(s) => s,
                Err(_) => {
                    signal_group(pid, nix::sys::signal::Signal::SIGKILL);
                    child.wait().await
                }
            }
        }
    };
    // Anything the child left behind in its group goes too, then its
    // private directory.
    signal_group(pid, nix::sys::signal::Signal::SIGKILL);
    if let Some(dir) = private
        && let Err(e) = dir.close()
    {
        tracing::warn!(upstream, error = %e, "removing the child's private directory failed");
    }
    dead.cancel();
    kill.cancel();
    reaped.cancel();
    metrics::gauge!("mcpgate_gateway_child_processes", "upstream" => upstream.clone())
        .decrement(1.0);
    match status {
        Ok(s) => tracing::info!(upstream, pid, status = %s, "stdio upstream exited"),
        Err(e) => tracing::warn!(upstream, pid, error = %e, "waiting for stdio upstream failed"),
    }
}

fn signal_group(pid: Option<u32>, sig: nix::sys::signal::Signal) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        // The child leads its own group (process_group(0)): pgid == pid.
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), sig);
    }
}

#[cfg(test)]
mod tests {
    fn slot() -> crate::capacity::Slot {
        crate::capacity::Capacity::new(crate::config::ResourceLimits::default())
            .child()
            .unwrap()
    }

    use super::*;
    use std::time::Instant;

    /// A child that runs `script` under `/bin/sh`, outside the sandbox.
    fn sh(script: &str) -> StdioConfig {
        StdioConfig {
            command: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            cwd: None,
            env: vec![],
            sandbox: Default::default(),
        }
    }

    #[tokio::test]
    async fn bounded_lines() {
        let data: &[u8] = b"abc\n\ndefg\nxyz";
        let mut r = BufReader::with_capacity(2, data);
        let mut buf = Vec::new();
        assert!(read_line_limited(&mut r, &mut buf, 10).await.unwrap());
        assert_eq!(buf, b"abc");
        assert!(read_line_limited(&mut r, &mut buf, 10).await.unwrap());
        assert_eq!(buf, b"");
        assert!(read_line_limited(&mut r, &mut buf, 10).await.unwrap());
        assert_eq!(buf, b"defg");
        assert!(read_line_limited(&mut r, &mut buf, 10).await.unwrap());
        assert_eq!(buf, b"xyz");
        assert!(!read_line_limited(&mut r, &mut buf, 10).await.unwrap());
        let mut r = BufReader::with_capacity(2, &b"0123456789abc\n"[..]);
        assert!(read_line_limited(&mut r, &mut buf, 10).await.is_err());
    }

    #[test]
    fn env_is_minimal() {
        let cfg = StdioConfig {
            command: "x".into(),
            args: vec![],
            cwd: None,
            env: vec![
                ("LANG".into(), mcpgate_types::Secret::new("de_DE.UTF-8")),
                ("TOKEN".into(), mcpgate_types::Secret::new("t")),
            ],
            sandbox: Default::default(),
        };
        let env = child_env(&cfg);
        let names: Vec<_> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["PATH", "HOME", "LANG", "TOKEN"]);
        assert_eq!(env[2].1, "de_DE.UTF-8");
    }

    #[tokio::test]
    async fn unsolicited_messages_wait_for_the_get_stream() {
        // Echoes each line, then sends a notification of its own.
        let script = r#"while read l; do echo "$l"; echo '{"jsonrpc":"2.0","method":"notifications/x"}'; done"#;
        let cfg = sh(script);
        let c = StdioChild::spawn("t", &cfg, &Launch::Direct, false, 1024, slot()).unwrap();
        let mut rx = c
            .request("s1", json!({"jsonrpc":"2.0","id":1,"result":{}}))
            .await
            .unwrap();
        assert_eq!(rx.recv().await.unwrap()["id"], 1);
        // The notification came after the response: it waits for a stream.
        let mut stream = c.open_stream("s1");
        let n = tokio::time::timeout(Duration::from_secs(5), stream.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n["method"], "notifications/x");
        c.kill();
        tokio::time::timeout(Duration::from_secs(5), c.exited())
            .await
            .unwrap();
    }

    /// A child's line that two parsers could read differently (here a
    /// duplicate `result`) is not forwarded; the request it answers fails
    /// with an upstream error instead of waiting for the timeout.
    #[tokio::test]
    async fn a_malformed_answer_fails_its_request() {
        // Turns each request into an answer with the same id and two results.
        let script = r#"while read l; do echo "$l" | sed 's/"method".*$/"result":{},"result":{"x":1}}/'; done"#;
        let cfg = sh(script);
        let c = StdioChild::spawn("t", &cfg, &Launch::Direct, false, 1024, slot()).unwrap();
        let mut rx = c
            .request(
                "s1",
                json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{}}),
            )
            .await
            .unwrap();
        let m = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m["id"], 7, "{m}");
        assert_eq!(m["error"]["code"], codes::UPSTREAM_ERROR, "{m}");
        assert!(m.get("result").is_none(), "{m}");
        c.kill();
    }

    /// Two sessions on one shared child use the same progress token; each
    /// progress notification still reaches the request (and session) it is
    /// about, with the client's own token, although both are in flight.
    #[tokio::test]
    async fn progress_reaches_its_own_request_on_a_shared_child() {
        let script = r#"while read -r l; do tok=$(printf '%s' "$l" | sed 's/.*"progressToken":"\([^"]*\)".*/\1/'); echo "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":\"$tok\",\"progress\":1}}"; done"#;
        let cfg = sh(script);
        let c = StdioChild::spawn("t", &cfg, &Launch::Direct, true, 4096, slot()).unwrap();
        let call = |id: i64| {
            json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
            "params":{"name":"x","_meta":{"progressToken":1}}})
        };
        let mut a = c.request("s1", call(10)).await.unwrap();
        let mut b = c.request("s2", call(20)).await.unwrap();
        for rx in [&mut a, &mut b] {
            let m = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("progress in time")
                .unwrap();
            assert_eq!(m["method"], "notifications/progress", "{m}");
            assert_eq!(m["params"]["progressToken"], 1, "{m}");
        }
        c.kill();
    }

    /// A server→client request that no single session can take (here: a
    /// shared child with nothing in flight) is answered with an error on the
    /// child's stdin, not dropped while the server waits.
    #[tokio::test]
    async fn a_server_request_no_session_can_take_is_answered_not_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("reply");
        let script = format!(
            r#"echo '{{"jsonrpc":"2.0","id":"s1","method":"elicitation/create","params":{{}}}}'; read -r reply; printf '%s' "$reply" > {}; sleep 5"#,
            out.display()
        );
        let cfg = sh(&script);
        let c = StdioChild::spawn("t", &cfg, &Launch::Direct, true, 1024, slot()).unwrap();
        let reply = written(&out).await;
        assert_eq!(reply["id"], "s1", "{reply}");
        assert_eq!(reply["error"]["code"], codes::INTERNAL_ERROR, "{reply}");
        c.kill();
        tokio::time::timeout(Duration::from_secs(5), c.exited())
            .await
            .unwrap();
    }

    /// Waits until `path` holds a line the child wrote, and returns it.
    async fn written(path: &std::path::Path) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(r) = std::fs::read_to_string(path)
                && !r.is_empty()
            {
                return serde_json::from_str(&r).unwrap();
            }
            assert!(Instant::now() < deadline, "the child wrote nothing");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Everything queued on `rx` now, until it ends or is empty for a moment.
    async fn drain(rx: &mut Replies) -> Vec<Value> {
        let mut got = vec![];
        while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
            got.push(m);
        }
        got
    }

    /// A child running `script` (which first echoes one line back) with
    /// session `s1` known to it: that line is a request the echo answers.
    async fn session_s1(script: &str) -> Arc<StdioChild> {
        let c = StdioChild::spawn("t", &sh(script), &Launch::Direct, false, 1024, slot()).unwrap();
        let mut rx = c
            .request("s1", json!({"jsonrpc":"2.0","id":1,"result":{}}))
            .await
            .unwrap();
        assert_eq!(rx.recv().await.unwrap()["id"], 1);
        c
    }

    /// A child floods a request's stream its client does not read: the
    /// queue stops at [`QUEUE`] and the response still gets its place.
    #[tokio::test]
    async fn a_flooded_request_stream_is_bounded_and_keeps_the_response() {
        let script = r#"read -r l; i=0; while [ $i -lt 640 ]; do echo '{"jsonrpc":"2.0","method":"notifications/message","params":{}}'; i=$((i+1)); done; echo "$l""#;
        let c = StdioChild::spawn("t", &sh(script), &Launch::Direct, false, 1024, slot()).unwrap();
        // The child echoes this line back: the response, after the flood.
        let mut rx = c
            .request("s1", json!({"jsonrpc":"2.0","id":1,"result":{}}))
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !c.state.lock().unwrap().pending.is_empty() {
            assert!(Instant::now() < deadline, "the response never came");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let got = drain(&mut rx).await;
        assert_eq!(got.len(), QUEUE, "{} messages queued", got.len());
        assert!(
            got[..QUEUE - 1]
                .iter()
                .all(|m| m["method"] == "notifications/message")
        );
        assert_eq!(got[QUEUE - 1]["id"], 1, "the response comes last");
        c.kill();
    }

    /// A child floods the GET stream its client does not read: the queue
    /// stops at [`QUEUE`], and a server request that no longer fits is
    /// answered to the child with an error instead of being dropped.
    #[tokio::test]
    async fn a_flooded_get_stream_is_bounded_and_refuses_requests() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("reply");
        let script = format!(
            r#"read -r l; echo "$l"; sleep 0.2; i=0; while [ $i -lt 640 ]; do echo '{{"jsonrpc":"2.0","method":"notifications/message","params":{{}}}}'; i=$((i+1)); done; echo '{{"jsonrpc":"2.0","id":"ask","method":"elicitation/create","params":{{}}}}'; read -r reply; printf '%s' "$reply" > {}; sleep 5"#,
            out.display()
        );
        let c = session_s1(&script).await;
        let mut stream = c.open_stream("s1");
        let reply = written(&out).await;
        assert_eq!(reply["id"], "ask", "{reply}");
        assert_eq!(reply["error"]["code"], codes::INTERNAL_ERROR, "{reply}");
        assert!(
            reply["error"]["message"]
                .as_str()
                .unwrap()
                .contains("not reading"),
            "{reply}"
        );
        assert_eq!(drain(&mut stream).await.len(), QUEUE);
        assert!(c.state.lock().unwrap().server_requests.is_empty());
        c.kill();
    }

    /// A session's unanswered server requests are capped: the one beyond
    /// [`MAX_SERVER_REQUESTS`] is answered to the child with an error.
    #[tokio::test]
    async fn unanswered_server_requests_are_capped_per_session() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("reply");
        let n = MAX_SERVER_REQUESTS + 1;
        let script = format!(
            r#"read -r l; echo "$l"; i=1; while [ $i -le {n} ]; do echo "{{\"jsonrpc\":\"2.0\",\"id\":$i,\"method\":\"elicitation/create\",\"params\":{{}}}}"; i=$((i+1)); done; read -r reply; printf '%s' "$reply" > {}; sleep 5"#,
            out.display()
        );
        let c = session_s1(&script).await;
        let reply = written(&out).await;
        assert_eq!(reply["id"], n, "{reply}");
        assert!(
            reply["error"]["message"]
                .as_str()
                .unwrap()
                .contains("too many"),
            "{reply}"
        );
        // The others wait in the backlog for a stream, each answerable.
        let mut stream = c.open_stream("s1");
        let got = drain(&mut stream).await;
        assert_eq!(got.len(), MAX_SERVER_REQUESTS);
        assert_eq!(
            c.state.lock().unwrap().server_requests.len(),
            MAX_SERVER_REQUESTS
        );
        c.kill();
    }

    #[tokio::test]
    async fn child_round_trip_and_crash() {
        // `cat` echoes each request back: a "response" with the gateway id.
        let cfg = StdioConfig {
            command: "cat".into(),
            args: vec![],
            cwd: None,
            env: vec![],
            sandbox: Default::default(),
        };
        let c = StdioChild::spawn("t", &cfg, &Launch::Direct, false, 1024, slot()).unwrap();
        let mut rx = c
            .request("s1", json!({"jsonrpc":"2.0","id":7,"result":{}}))
            .await
            .unwrap();
        let back = rx.recv().await.unwrap();
        assert_eq!(back["id"], 7);
        let mut rx = c
            .request("s1", json!({"jsonrpc":"2.0","id":8,"result":{}}))
            .await
            .unwrap();
        let _ = rx.recv().await;
        c.kill();
        tokio::time::timeout(Duration::from_secs(5), c.exited())
            .await
            .unwrap();
        assert!(
            c.request("s1", json!({"jsonrpc":"2.0","id":9,"method":"x"}))
                .await
                .is_err()
        );
    }
}
