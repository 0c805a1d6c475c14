//! `mcpgate bridge URL`: a local stdio MCP server (MCP "Transports", stdio: newline-delimited
//! JSON-RPC on stdin/stdout, logs only on stderr) that forwards everything to a remote
//! OAuth-protected MCP server over Streamable HTTP — what a host that speaks only stdio needs.
//!
//! - The host's `initialize` is replayed to the remote server with the host's protocol
//!   version (a stateful one: 2025-06-18 / 2025-11-25), capabilities and client info; its
//!   result goes back to the host. The transport sends `notifications/initialized` itself, so
//!   the host's copy is not forwarded twice. A 404 for an expired session re-initializes with
//!   the same parameters (done by [`mcpgate_client::McpClient`]).
//! - Host requests are forwarded; each answer goes back with the host's original `id`
//!   (number or string), errors as JSON-RPC errors (remote errors verbatim, local failures as
//!   `-32603` with a message that says what to do). Host notifications are forwarded.
//! - Server-to-client requests and notifications (on response SSE streams and the session's
//!   standalone `GET` stream) are written to stdout, requests with a bridge-assigned string id
//!   (`mcpgate-bridge-N`); the host's response is posted back to the server under the
//!   server's own id.
//! - OAuth: the bearer token on every request; refresh on 401; step-up with the union of
//!   scopes on 403 `insufficient_scope`; when a stored grant stops working the bridge
//!   authorizes again (`auto_reauthorize`), through the browser or the printed URL.
//! - A URL-elicitation-required error (-32042: the server needs the user to complete
//!   something in their browser, such as connecting their own account at a service) goes to
//!   the host verbatim, and its URL is also printed on stderr for hosts that do not show it.
//! - When stdin closes, requests in flight get a few seconds to finish, then the session is
//!   ended with `DELETE` and the process exits with status 0.
//!
//! - The remote server sees the bridge's own request ids. A host's `notifications/cancelled`
//!   names the host's id: the bridge stops waiting for that request (no answer goes to the
//!   host, as the spec says) and forwards the cancellation under the id the server knows, so
//!   the call stops there too. A cancellation of a request no longer in flight is dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use mcpgate_client::mcp::{RpcError, STATEFUL_VERSIONS, TransportConfig};
use mcpgate_client::{ClientError, McpClient, OAuthClient, ServerHandler};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};

/// How long requests in flight may take once stdin has closed.
const DRAIN: Duration = Duration::from_secs(10);
/// The protocol version offered when the host asks for one without sessions.
const FALLBACK_VERSION: &str = "2025-11-25";

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Result<Value, RpcError>>>>>;

/// A host request in flight, by the host's id (its JSON text): the id the
/// remote server knows it by (once sent) and the task waiting for it.
type InFlight = Arc<Mutex<HashMap<String, (Option<i64>, tokio::task::AbortHandle)>>>;

/// Lines to stdout; `None` stops the writer. Bounded: a host that does not
/// read its stdin holds the bridge back instead of filling its memory.
type Out = mpsc::Sender<Option<Value>>;

/// Messages waiting for the host to read them.
const OUT_QUEUE: usize = 64;

/// Runs the bridge until stdin closes.
pub async fn run(
    url: &str,
    oauth: Arc<OAuthClient>,
    allow_http_loopback: bool,
) -> anyhow::Result<()> {
    let (out, mut rx) = mpsc::channel::<Option<Value>>(OUT_QUEUE);
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(Some(message)) = rx.recv().await {
            let mut line = serde_json::to_vec(&message).unwrap_or_default();
            line.push(b'\n');
            if stdout.write_all(&line).await.is_err() || stdout.flush().await.is_err() {
                break;
            }
        }
    });
    tracing::info!(
        url,
        "bridge started; forwarding stdio to the remote MCP server"
    );
    let bridge = Arc::new(Bridge {
        url: url.to_owned(),
        oauth,
        allow_http_loopback,
        out: out.clone(),
        pending: Arc::default(),
        in_flight: Arc::default(),
        next_id: Arc::new(AtomicU64::new(1)),
        client: Mutex::new(None),
    });
    let result = bridge.clone().serve_stdin().await;
    let client = bridge.client.lock().ok().and_then(|mut c| c.take());
    if let Some(client) = client {
        let _ = client.close().await;
        tracing::info!("remote session closed");
    }
    if let Ok(mut pending) = bridge.pending.lock() {
        pending.clear();
    }
    let _ = out.send(None).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    tracing::info!("bridge stopped");
    result
}

struct Bridge {
    url: String,
    oauth: Arc<OAuthClient>,
    allow_http_loopback: bool,
    out: Out,
    pending: Pending,
    in_flight: InFlight,
    next_id: Arc<AtomicU64>,
    client: Mutex<Option<Arc<McpClient>>>,
}

impl Bridge {
    async fn respond(&self, id: Value, result: Result<Value, Value>) {
        let message = match result {
            Ok(r) => json!({"jsonrpc": "2.0", "id": id, "result": r}),
            Err(e) => json!({"jsonrpc": "2.0", "id": id, "error": e}),
        };
        let _ = self.out.send(Some(message)).await;
    }

    fn client(&self) -> Option<Arc<McpClient>> {
        self.client.lock().ok().and_then(|c| c.clone())
    }

    async fn serve_stdin(self: Arc<Self>) -> anyhow::Result<()> {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        let mut tasks = tokio::task::JoinSet::new();
        while let Some(line) = lines.next_line().await? {
            if line.trim().is_empty() {
                continue;
            }
            let message: Value = match serde_json::from_str(&line) {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(error = %e, "ignoring a line from the host that is not JSON");
                    self.respond(Value::Null, Err(rpc(-32700, &format!("parse error: {e}"))))
                        .await;
                    continue;
                }
            };
            let method = message
                .get("method")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let id = message.get("id").cloned();
            let params = message.get("params").cloned();
            match (method, id) {
                (Some(method), Some(id)) if method == "initialize" => {
                    let answer = self.initialize(params).await.map_err(|e| error_value(&e));
                    self.respond(id, answer).await;
                }
                (Some(method), Some(id)) => {
                    let Some(client) = self.client() else {
                        let answer = if method == "ping" {
                            Ok(json!({}))
                        } else {
                            Err(rpc(-32002, "the bridge has not been initialized yet"))
                        };
                        self.respond(id, answer).await;
                        continue;
                    };
                    let bridge = self.clone();
                    let key = id.to_string();
                    // Registered before the task can run, so its ids land in the entry.
                    let mut in_flight = self.in_flight.lock().expect("in-flight lock");
                    let task = tasks.spawn(async move {
                        tracing::debug!(%method, "forwarding a request");
                        let on_id = |upstream: i64| {
                            if let Some(e) = bridge
                                .in_flight
                                .lock()
                                .expect("in-flight lock")
                                .get_mut(&id.to_string())
                            {
                                e.0 = Some(upstream);
                            }
                        };
                        let answer = client
                            .request_tracked(&method, params, &on_id)
                            .await
                            .map_err(|e| error_value(&e));
                        if let Err(e) = &answer {
                            tracing::debug!(%method, error = %e, "request failed");
                            announce_url_elicitations(e);
                        }
                        bridge
                            .in_flight
                            .lock()
                            .expect("in-flight lock")
                            .remove(&id.to_string());
                        bridge.respond(id, answer).await;
                    });
                    in_flight.insert(key, (None, task));
                }
                (Some(method), None) if method == "notifications/cancelled" => {
                    self.cancel(params);
                }
                (Some(method), None) => {
                    if method == "notifications/initialized" {
                        continue;
                    }
                    let Some(client) = self.client() else {
                        tracing::debug!(%method, "dropping a notification sent before initialize");
                        continue;
                    };
                    tasks.spawn(async move {
                        if let Err(e) = client.notify(&method, params).await {
                            tracing::warn!(%method, error = %e, "forwarding a notification failed");
                        }
                    });
                }
                (None, Some(id)) => self.host_response(&id, &message),
                (None, None) => {
                    self.respond(Value::Null, Err(rpc(-32600, "not a JSON-RPC message")))
                        .await;
                }
            }
            while tasks.try_join_next().is_some() {}
        }
        tracing::info!("stdin closed; finishing requests in flight");
        if tokio::time::timeout(DRAIN, async { while tasks.join_next().await.is_some() {} })
            .await
            .is_err()
        {
            tracing::warn!("requests still in flight after {DRAIN:?}; abandoning them");
            tasks.abort_all();
        }
        Ok(())
    }

    /// The host cancels one of its requests: stop waiting for it, and tell
    /// the server under the id it knows.
    fn cancel(&self, params: Option<Value>) {
        let Some(params) = params else { return };
        let Some(host_id) = params.get("requestId") else {
            return;
        };
        let entry = self
            .in_flight
            .lock()
            .expect("in-flight lock")
            .remove(&host_id.to_string());
        let Some((upstream, task)) = entry else {
            tracing::debug!(%host_id, "ignoring a cancellation of no request in flight");
            return;
        };
        task.abort();
        let (Some(upstream), Some(client)) = (upstream, self.client()) else {
            return;
        };
        let mut forwarded = params.clone();
        forwarded["requestId"] = json!(upstream);
        tokio::spawn(async move {
            if let Err(e) = client
                .notify("notifications/cancelled", Some(forwarded))
                .await
            {
                tracing::warn!(error = %e, "forwarding a cancellation failed");
            }
        });
    }

    /// A response from the host to a server request we forwarded.
    fn host_response(&self, id: &Value, message: &Value) {
        let key = id.as_str().unwrap_or_default();
        let waiter = self.pending.lock().ok().and_then(|mut p| p.remove(key));
        let Some(waiter) = waiter else {
            tracing::warn!(%id, "ignoring a response from the host to no request of ours");
            return;
        };
        let answer = match message.get("error") {
            Some(e) => Err(RpcError {
                code: e.get("code").and_then(Value::as_i64).unwrap_or(-32603),
                message: e
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                data: e.get("data").cloned(),
            }),
            None => Ok(message.get("result").cloned().unwrap_or_else(|| json!({}))),
        };
        let _ = waiter.send(answer);
    }

    /// Connects to the remote server with the host's `initialize` parameters.
    async fn initialize(&self, params: Option<Value>) -> Result<Value, ClientError> {
        let params = params.unwrap_or_else(|| json!({}));
        let requested = params
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or(FALLBACK_VERSION);
        let version = if STATEFUL_VERSIONS.contains(&requested) {
            requested
        } else {
            FALLBACK_VERSION
        };
        let mut cfg = TransportConfig {
            protocol_version: version.to_owned(),
            ..TransportConfig::default()
        };
        if let Some(c) = params.get("capabilities") {
            cfg.capabilities = c.clone();
        }
        if let Some(info) = params.get("clientInfo") {
            cfg.client_info = info.clone();
        }
        let handler = HostHandler {
            out: self.out.clone(),
            pending: self.pending.clone(),
            next_id: self.next_id.clone(),
        };
        let client = McpClient::builder(&self.url)
            .transport_config(cfg)
            .auth(self.oauth.clone())
            .handler(Arc::new(handler))
            .allow_http_loopback(self.allow_http_loopback)
            .build()?;
        client.connect().await?;
        let result = client.initialize_result().unwrap_or_else(|| json!({}));
        tracing::info!(
            version = %client.protocol_version(),
            "connected to the remote MCP server"
        );
        let old = self
            .client
            .lock()
            .ok()
            .and_then(|mut c| c.replace(Arc::new(client)));
        if let Some(old) = old {
            let _ = old.close().await;
        }
        Ok(result)
    }
}

/// Server-to-client messages, written to stdout for the host.
struct HostHandler {
    out: Out,
    pending: Pending,
    next_id: Arc<AtomicU64>,
}

#[async_trait]
impl ServerHandler for HostHandler {
    async fn on_request(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        let id = format!(
            "mcpgate-bridge-{}",
            self.next_id.fetch_add(1, Ordering::Relaxed)
        );
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.pending.lock() {
            p.insert(id.clone(), tx);
        }
        let message = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        if self.out.send(Some(message)).await.is_err() {
            return Err(gone());
        }
        rx.await.unwrap_or_else(|_| Err(gone()))
    }

    async fn on_notification(&self, method: &str, params: Value) {
        let _ = self
            .out
            .send(Some(
                json!({"jsonrpc": "2.0", "method": method, "params": params}),
            ))
            .await;
    }
}

fn gone() -> RpcError {
    RpcError {
        code: -32603,
        message: "the MCP host closed the bridge before answering".into(),
        data: None,
    }
}

/// A URLElicitationRequiredError goes to the host verbatim (a host that
/// declared URL elicitations shows it); the URL is also written to stderr,
/// for the person running a host that does not.
fn announce_url_elicitations(error: &Value) {
    if error.get("code").and_then(Value::as_i64)
        != Some(mcpgate_client::mcp::URL_ELICITATION_REQUIRED)
    {
        return;
    }
    for el in mcpgate_client::mcp::url_elicitations(error.get("data").unwrap_or(&Value::Null)) {
        eprintln!(
            "mcpgate bridge: {}",
            mcpgate_client::mcp::describe_url_elicitation(&el)
        );
    }
}

fn rpc(code: i64, message: &str) -> Value {
    json!({"code": code, "message": message})
}

/// A client error as a JSON-RPC `error` for the host: the server's own errors verbatim,
/// everything else `-32603` with the message (which says what to do; it never holds a token).
fn error_value(e: &ClientError) -> Value {
    match e {
        ClientError::JsonRpc {
            code,
            message,
            data,
        } => {
            let mut v = json!({"code": code, "message": message});
            if let Some(d) = data {
                v["data"] = d.clone();
            }
            v
        }
        other => rpc(-32603, &format!("mcpgate bridge: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_errors_pass_through() {
        let e = ClientError::JsonRpc {
            code: -32602,
            message: "bad params".into(),
            data: Some(json!({"x": 1})),
        };
        assert_eq!(
            error_value(&e),
            json!({"code": -32602, "message": "bad params", "data": {"x": 1}})
        );
        let e = ClientError::ReLoginRequired {
            server_url: "https://mcp.example.com/mcp".into(),
        };
        let v = error_value(&e);
        assert_eq!(v["code"], -32603);
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .contains("mcpgate login https://mcp.example.com/mcp"),
            "{v}"
        );
    }
}
