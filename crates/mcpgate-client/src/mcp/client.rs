//! [`McpClient`]: the MCP client role's method-level API over Streamable HTTP — lifecycle
//! (`initialize` with sessions; stateless 2026-07-28), `tools/list` (all pages, tools with an
//! invalid `x-mcp-header` left out, SEP-2243), `tools/call` with `Mcp-Param-*` headers and the
//! multi-round `input_required` loop (SEP-2322: fulfil each input request through the
//! [`ServerHandler`], echo `requestState` unchanged, new JSON-RPC id per round), and any other
//! request. OAuth is optional: with an [`OAuthClient`], every request carries the bearer token
//! and 401/403 are handled as the transport describes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::discovery::validate_url;
use crate::error::{ClientError, Result};
use crate::mcp::handler::{DefaultHandler, ServerHandler};
use crate::mcp::headers::{ParamHeader, param_header_values, tool_param_headers};
use crate::mcp::transport::{Transport, TransportConfig};
use crate::oauth::OAuthClient;

/// Most `input_required` rounds one tool call may take.
pub const MAX_INPUT_ROUNDS: usize = 8;

/// Builder for [`McpClient`].
pub struct McpClientBuilder {
    url: String,
    cfg: TransportConfig,
    auth: Option<Arc<OAuthClient>>,
    handler: Arc<dyn ServerHandler>,
    allow_http_loopback: bool,
}

impl McpClientBuilder {
    /// The protocol revision to speak: `2025-06-18` / `2025-11-25` (sessions) or `2026-07-28`
    /// (stateless). Default `2025-11-25`.
    pub fn protocol_version(mut self, v: impl Into<String>) -> Self {
        self.cfg.protocol_version = v.into();
        self
    }

    /// `clientInfo` name and version.
    pub fn client_info(mut self, name: &str, version: &str) -> Self {
        self.cfg.client_info = json!({"name": name, "version": version});
        self
    }

    /// The client capabilities to declare.
    pub fn capabilities(mut self, capabilities: Value) -> Self {
        self.cfg.capabilities = capabilities;
        self
    }

    /// Attaches OAuth.
    pub fn auth(mut self, auth: Arc<OAuthClient>) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Sets the handler for server requests and notifications.
    pub fn handler(mut self, handler: Arc<dyn ServerHandler>) -> Self {
        self.handler = handler;
        self
    }

    /// Allows a plain-http MCP server on a loopback address (development only).
    pub fn allow_http_loopback(mut self, allow: bool) -> Self {
        self.allow_http_loopback = allow;
        self
    }

    /// Replaces the transport settings wholesale.
    pub fn transport_config(mut self, cfg: TransportConfig) -> Self {
        self.cfg = cfg;
        self
    }

    /// Builds the client (no network traffic yet).
    pub fn build(self) -> Result<McpClient> {
        validate_url("MCP server", &self.url, self.allow_http_loopback).map_err(|_| {
            ClientError::InvalidServerUrl {
                url: self.url.clone(),
                reason: "it must be an absolute https URL (http only to loopback with \
                         --allow-http-loopback), without user information or fragment",
            }
        })?;
        if let Some(auth) = &self.auth
            && auth.server_url() != self.url
        {
            return Err(ClientError::InvalidServerUrl {
                url: self.url.clone(),
                reason: "the OAuth client was made for another server URL",
            });
        }
        Ok(McpClient {
            transport: Arc::new(Transport::new(self.url, self.cfg, self.auth, self.handler)?),
            tool_headers: Mutex::new(HashMap::new()),
            listener: Mutex::new(None),
            listening_for: Mutex::new(None),
        })
    }
}

/// An MCP client for one server.
pub struct McpClient {
    transport: Arc<Transport>,
    tool_headers: Mutex<HashMap<String, Vec<ParamHeader>>>,
    listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The session the standalone `GET` stream was opened for.
    listening_for: Mutex<Option<String>>,
}

impl Drop for McpClient {
    fn drop(&mut self) {
        self.stop_listener();
    }
}

impl std::fmt::Debug for McpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpClient")
            .field("url", &self.transport.url)
            .field("version", &self.transport.version())
            .finish_non_exhaustive()
    }
}

impl McpClient {
    /// Starts building a client for `url` (kept as given).
    pub fn builder(url: impl Into<String>) -> McpClientBuilder {
        McpClientBuilder {
            url: url.into(),
            cfg: TransportConfig::default(),
            auth: None,
            handler: Arc::new(DefaultHandler),
            allow_http_loopback: false,
        }
    }

    /// The server URL.
    pub fn url(&self) -> &str {
        &self.transport.url
    }

    /// The protocol version in use (negotiated, with sessions).
    pub fn protocol_version(&self) -> String {
        self.transport.version()
    }

    /// Whether the stateless (2026-07-28) lifecycle is in use.
    pub fn is_stateless(&self) -> bool {
        self.transport.stateless()
    }

    /// The `initialize` result (sessions only).
    pub fn initialize_result(&self) -> Option<Value> {
        self.transport.initialize_result()
    }

    /// The current `Mcp-Session-Id`, if any.
    pub fn session_id(&self) -> Option<String> {
        self.transport.session_id()
    }

    /// The OAuth client, if any.
    pub fn auth(&self) -> Option<&Arc<OAuthClient>> {
        self.transport.auth.as_ref()
    }

    /// Connects: the `initialize` handshake with sessions, then the standalone `GET` stream for
    /// server-initiated messages (if the server offers one); nothing for the stateless lifecycle.
    pub async fn connect(&self) -> Result<()> {
        if self.transport.stateless() {
            return Ok(());
        }
        self.transport.initialize().await?;
        self.stop_listener();
        let (ready, is_ready) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(self.transport.clone().listen(ready));
        if let Ok(mut slot) = self.listener.lock() {
            *slot = Some(task);
        }
        if let Ok(mut l) = self.listening_for.lock() {
            *l = self.transport.session_id();
        }
        let wait = self.transport.cfg.connect_timeout;
        let _ = tokio::time::timeout(wait, is_ready).await;
        Ok(())
    }

    /// After the transport re-initialized an expired session (404), the standalone `GET`
    /// stream still belongs to the old one: opens it again for the new session. Only when
    /// [`McpClient::connect`] opened one before.
    fn relisten_after_reinitialize(&self) {
        let current = self.transport.session_id();
        {
            let Ok(mut last) = self.listening_for.lock() else {
                return;
            };
            if last.is_none() || current.is_none() || *last == current {
                return;
            }
            last.clone_from(&current);
        }
        tracing::debug!("reopening the standalone SSE stream for the new session");
        self.stop_listener();
        let (ready, _) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(self.transport.clone().listen(ready));
        if let Ok(mut slot) = self.listener.lock() {
            *slot = Some(task);
        }
    }

    fn stop_listener(&self) {
        if let Some(task) = self.listener.lock().ok().and_then(|mut s| s.take()) {
            task.abort();
        }
    }

    /// `mcpgate login`: learns the server's challenge with one unauthenticated request, then
    /// runs discovery and a full authorization whatever is stored, and stores the result.
    pub async fn login(&self) -> Result<crate::store::TokenSummary> {
        let Some(auth) = self.transport.auth.clone() else {
            return Err(ClientError::AuthRequired {
                url: self.url().to_owned(),
            });
        };
        let challenge = self.transport.probe_challenge().await?;
        auth.login(challenge.as_deref()).await
    }

    /// Sends a request and returns its `result`.
    pub async fn request(&self, method: &str, params: Option<Value>) -> Result<Value> {
        self.request_with_headers(method, params, &[]).await
    }

    async fn request_with_headers(
        &self,
        method: &str,
        params: Option<Value>,
        headers: &[(String, String)],
    ) -> Result<Value> {
        let result = self
            .transport
            .exchange(method, params, false, headers, None)
            .await;
        self.relisten_after_reinitialize();
        Ok(result?.unwrap_or(Value::Null))
    }

    /// [`Self::request`], telling `on_id` each JSON-RPC id the request is sent under, so a
    /// caller can name it later (`notifications/cancelled`, as `mcpgate bridge` does).
    pub async fn request_tracked(
        &self,
        method: &str,
        params: Option<Value>,
        on_id: &(dyn Fn(i64) + Send + Sync),
    ) -> Result<Value> {
        let result = self
            .transport
            .exchange(method, params, false, &[], Some(on_id))
            .await;
        self.relisten_after_reinitialize();
        Ok(result?.unwrap_or(Value::Null))
    }

    /// Sends a notification.
    pub async fn notify(&self, method: &str, params: Option<Value>) -> Result<()> {
        let result = self
            .transport
            .exchange(method, params, true, &[], None)
            .await;
        self.relisten_after_reinitialize();
        result.map(|_| ())
    }

    /// `tools/list`, following `nextCursor`. Tools whose `x-mcp-header` annotations are invalid
    /// are left out (logged); the others keep their definitions verbatim.
    pub async fn list_tools(&self) -> Result<Vec<Value>> {
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..100 {
            let params = cursor.as_ref().map(|c| json!({"cursor": c}));
            let result = self.request("tools/list", params).await?;
            let page = result
                .get("tools")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            tools.extend(page);
            cursor = result
                .get("nextCursor")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if cursor.is_none() {
                break;
            }
        }
        let mut headers = HashMap::new();
        let mut kept = Vec::with_capacity(tools.len());
        for tool in tools {
            let name = tool
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let schema = tool.get("inputSchema").cloned().unwrap_or(Value::Null);
            match tool_param_headers(&schema) {
                Ok(h) => {
                    headers.insert(name, h);
                    kept.push(tool);
                }
                Err(e) => {
                    tracing::warn!(tool = %name, error = %e, "ignoring a tool with an invalid definition")
                }
            }
        }
        if let Ok(mut map) = self.tool_headers.lock() {
            *map = headers;
        }
        Ok(kept)
    }

    /// `tools/call`. With the stateless lifecycle, arguments annotated with `x-mcp-header` in
    /// the last listing are mirrored into `Mcp-Param-*` headers. An `input_required` result is
    /// answered through the handler and the call retried (at most [`MAX_INPUT_ROUNDS`] rounds).
    pub async fn call_tool(&self, name: &str, arguments: Value) -> Result<Value> {
        let headers = self
            .tool_headers
            .lock()
            .ok()
            .and_then(|m| m.get(name).cloned())
            .unwrap_or_default();
        let param_headers = param_header_values(&headers, &arguments);
        let mut params = json!({"name": name, "arguments": arguments});
        for _ in 0..MAX_INPUT_ROUNDS {
            let result = self
                .request_with_headers("tools/call", Some(params.clone()), &param_headers)
                .await?;
            if result.get("resultType").and_then(Value::as_str) != Some("input_required") {
                return Ok(result);
            }
            params = self.answer_input_requests(name, &params, &result).await?;
        }
        Err(ClientError::Protocol {
            url: self.url().to_owned(),
            detail: format!("tool {name} asked for input more than {MAX_INPUT_ROUNDS} times"),
        })
    }

    /// Builds the retry of a call that returned `input_required`: the same name and arguments,
    /// `inputResponses` for every input request, `requestState` echoed byte for byte (omitted
    /// when the server sent none).
    async fn answer_input_requests(
        &self,
        name: &str,
        previous: &Value,
        result: &Value,
    ) -> Result<Value> {
        let handler = self.transport_handler();
        let mut responses = serde_json::Map::new();
        if let Some(requests) = result.get("inputRequests").and_then(Value::as_object) {
            for (key, request) in requests {
                let method = request
                    .get("method")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let params = request.get("params").cloned().unwrap_or_else(|| json!({}));
                let answer = handler.on_request(method, params).await.map_err(|e| {
                    ClientError::Protocol {
                        url: self.url().to_owned(),
                        detail: format!(
                            "tool {name} asked for {method}, which failed: {}",
                            e.message
                        ),
                    }
                })?;
                responses.insert(key.clone(), answer);
            }
        }
        let mut retry = json!({
            "name": name,
            "arguments": previous.get("arguments").cloned().unwrap_or_else(|| json!({})),
            "inputResponses": Value::Object(responses),
        });
        if let Some(state) = result.get("requestState") {
            retry["requestState"] = state.clone();
        }
        Ok(retry)
    }

    fn transport_handler(&self) -> Arc<dyn ServerHandler> {
        self.transport.handler()
    }

    /// Ends the session (`DELETE` with sessions).
    pub async fn close(&self) -> Result<()> {
        if let Ok(mut l) = self.listening_for.lock() {
            *l = None;
        }
        self.stop_listener();
        self.transport.close().await
    }
}
