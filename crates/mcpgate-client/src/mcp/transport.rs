//! MCP Streamable HTTP, client side (MCP 2025-06-18 / 2025-11-25 "Transports" with sessions;
//! 2026-07-28 stateless transport, SEP-2575 and SEP-2243), with OAuth wired in.
//!
//! Every message is one `POST` to the MCP endpoint with `Accept: application/json,
//! text/event-stream`; the answer is one JSON object or an SSE stream that may carry server
//! requests and notifications before the response. A stream that ends early after an event id
//! is resumed with `GET` and `Last-Event-ID` after the server's `retry` delay (SEP-1699).
//!
//! Per request: `Authorization: Bearer` (never in the URL); with sessions, `Mcp-Session-Id` and,
//! after `initialize`, `MCP-Protocol-Version`; stateless, `MCP-Protocol-Version`, `Mcp-Method`,
//! `Mcp-Name`, the tool's `Mcp-Param-*` headers and `_meta` with the protocol version, client
//! capabilities and client info.
//!
//! Failures handled per operation: 401 → [`OAuthClient::on_unauthorized`]; 403
//! `insufficient_scope` → [`OAuthClient::on_insufficient_scope`], both within
//! [`crate::OAuthConfig::max_authorizations_per_operation`]; 404 with a session → initialize
//! again and retry once; 400 `-32022` (unsupported version) → retry once with a version both
//! sides support. Redirects are never followed and no proxy is used.
//!
//! The SSE reading, resumption and the standalone `GET` stream live in the `stream` submodule.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::header::{ACCEPT, CONTENT_TYPE, WWW_AUTHENTICATE};
use mcpgate_types::www_authenticate::find_oauth;
use serde_json::{Value, json};

use crate::error::{ClientError, Result};
use crate::mcp::handler::ServerHandler;

/// Hears each JSON-RPC id a request is sent under.
pub(crate) type OnId<'a> = dyn Fn(i64) + Send + Sync + 'a;
use crate::mcp::headers::mcp_name;
use crate::oauth::{AccessToken, OAuthClient};

mod stream;

/// Protocol revisions that use the `initialize` handshake and sessions.
pub const STATEFUL_VERSIONS: &[&str] = &["2025-03-26", "2025-06-18", "2025-11-25"];
/// Protocol revisions that are stateless (per-request `_meta`).
pub const STATELESS_VERSIONS: &[&str] = &["2026-07-28"];

/// Whether `version` uses the stateless lifecycle.
pub fn is_stateless(version: &str) -> bool {
    !STATEFUL_VERSIONS.contains(&version) && version != "2024-11-05"
}

/// Transport settings.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// The protocol revision to speak (or to offer, with sessions).
    pub protocol_version: String,
    /// `clientInfo` / `io.modelcontextprotocol/clientInfo`.
    pub client_info: Value,
    /// Client capabilities.
    pub capabilities: Value,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Idle time allowed between bytes of a response.
    pub read_timeout: Duration,
    /// Largest JSON response or SSE event accepted.
    pub max_message_bytes: usize,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            protocol_version: "2025-11-25".into(),
            client_info: json!({"name": "mcpgate", "version": env!("CARGO_PKG_VERSION")}),
            capabilities: json!({}),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(300),
            max_message_bytes: 16 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Session {
    version: String,
    session_id: Option<String>,
    initialized: bool,
    initialize_result: Option<Value>,
}

/// The HTTP side of one MCP connection.
pub(crate) struct Transport {
    pub(crate) url: String,
    http: reqwest::Client,
    pub(crate) auth: Option<Arc<OAuthClient>>,
    handler: Arc<dyn ServerHandler>,
    pub(crate) cfg: TransportConfig,
    session: Mutex<Session>,
    init_lock: tokio::sync::Mutex<()>,
    next_id: AtomicI64,
    /// Requests waiting on an SSE stream, so that a response arriving on another stream (the
    /// standalone `GET` stream after a resumption race) still reaches them.
    waiting: Mutex<HashMap<i64, tokio::sync::oneshot::Sender<Result<Value>>>>,
}

enum Step {
    Done(Option<Value>),
    Retry,
}

impl Transport {
    pub(crate) fn new(
        url: String,
        cfg: TransportConfig,
        auth: Option<Arc<OAuthClient>>,
        handler: Arc<dyn ServerHandler>,
    ) -> Result<Self> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(cfg.connect_timeout)
            .read_timeout(cfg.read_timeout)
            .user_agent(concat!("mcpgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Transport {
                url: url.clone(),
                detail: e.to_string(),
            })?;
        let session = Session {
            version: cfg.protocol_version.clone(),
            ..Session::default()
        };
        Ok(Self {
            url,
            http,
            auth,
            handler,
            cfg,
            session: Mutex::new(session),
            init_lock: tokio::sync::Mutex::new(()),
            next_id: AtomicI64::new(1),
            waiting: Mutex::new(HashMap::new()),
        })
    }

    fn session(&self) -> Session {
        self.session.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn update(&self, f: impl FnOnce(&mut Session)) {
        if let Ok(mut s) = self.session.lock() {
            f(&mut s);
        }
    }

    /// The negotiated (or configured) protocol version.
    pub(crate) fn version(&self) -> String {
        self.session().version
    }

    pub(crate) fn stateless(&self) -> bool {
        is_stateless(&self.version())
    }

    pub(crate) fn handler(&self) -> Arc<dyn ServerHandler> {
        self.handler.clone()
    }

    pub(crate) fn initialize_result(&self) -> Option<Value> {
        self.session().initialize_result
    }

    pub(crate) fn session_id(&self) -> Option<String> {
        self.session().session_id
    }

    /// The `initialize` handshake (sessions only), then `notifications/initialized`.
    pub(crate) async fn initialize(&self) -> Result<()> {
        let _guard = self.init_lock.lock().await;
        self.update(|s| {
            s.session_id = None;
            s.initialized = false;
            s.version = self.cfg.protocol_version.clone();
        });
        let params = json!({
            "protocolVersion": self.cfg.protocol_version,
            "capabilities": self.cfg.capabilities,
            "clientInfo": self.cfg.client_info,
        });
        let result = self
            .exchange("initialize", Some(params), false, &[], None)
            .await?
            .unwrap_or(Value::Null);
        let version = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if !STATEFUL_VERSIONS.contains(&version.as_str()) {
            return Err(ClientError::Protocol {
                url: self.url.clone(),
                detail: format!(
                    "the server chose protocol version {version:?}, which this client does not \
                     speak (it supports {})",
                    STATEFUL_VERSIONS.join(", ")
                ),
            });
        }
        self.update(|s| {
            s.version = version;
            s.initialized = true;
            s.initialize_result = Some(result);
        });
        self.exchange("notifications/initialized", None, true, &[], None)
            .await?;
        Ok(())
    }

    /// Sends one unauthenticated request (`initialize`, or `server/discover` when stateless)
    /// to learn the server's 401 challenge: `Some(WWW-Authenticate)` on a 401, `None` when the
    /// server answered otherwise (a session it opened is closed again).
    pub(crate) async fn probe_challenge(&self) -> Result<Option<String>> {
        let (method, params) = if self.stateless() {
            ("server/discover", None)
        } else {
            let params = json!({
                "protocolVersion": self.cfg.protocol_version,
                "capabilities": self.cfg.capabilities,
                "clientInfo": self.cfg.client_info,
            });
            ("initialize", Some(params))
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let message = self.envelope(Some(id), method, params);
        let mut request = self
            .http
            .post(&self.url)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json, text/event-stream")
            .body(serde_json::to_vec(&message).unwrap_or_default());
        if self.stateless() {
            request = request
                .header("MCP-Protocol-Version", self.version())
                .header("Mcp-Method", method);
        }
        let response = request.send().await.map_err(|e| self.transport_error(&e))?;
        if response.status().as_u16() == 401 {
            let www = response
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            return Ok(Some(www.to_owned()));
        }
        let opened = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if let Some(sid) = opened {
            let _ = self
                .http
                .delete(&self.url)
                .header("Mcp-Session-Id", sid)
                .send()
                .await;
        }
        Ok(None)
    }

    /// Sends a request (or a notification) through the whole pipeline; returns the `result`.
    /// `on_id` hears each id the request is sent under (a retry after a new authorization or
    /// session gets a new one).
    pub(crate) async fn exchange(
        &self,
        method: &str,
        params: Option<Value>,
        notification: bool,
        extra_headers: &[(String, String)],
        on_id: Option<&OnId<'_>>,
    ) -> Result<Option<Value>> {
        let max = self
            .auth
            .as_ref()
            .map_or(0, |a| a.config().max_authorizations_per_operation);
        let mut authorizations = 0u32;
        let mut nonces = 0u32;
        let mut reinitialized = false;
        let mut version_retried = false;
        loop {
            let id = (!notification).then(|| self.next_id.fetch_add(1, Ordering::Relaxed));
            if let (Some(id), Some(f)) = (id, on_id) {
                f(id);
            }
            let message = self.envelope(id, method, params.clone());
            let token = match &self.auth {
                Some(a) => a.access_token().await?,
                None => None,
            };
            let session = self.session();
            let mut request = self
                .http
                .post(&self.url)
                .header(CONTENT_TYPE, "application/json")
                .header(ACCEPT, "application/json, text/event-stream")
                .body(serde_json::to_vec(&message).unwrap_or_default());
            request = self.common_headers(request, &session, method, "POST", token.as_ref());
            if is_stateless(&session.version) {
                request = request.header("Mcp-Method", method);
                if let Some(name) = mcp_name(method, params.as_ref()) {
                    request = request.header("Mcp-Name", name);
                }
                for (k, v) in extra_headers {
                    request = request.header(k.as_str(), v.as_str());
                }
            }
            let response = request.send().await.map_err(|e| self.transport_error(&e))?;
            let step = self
                .handle(
                    response,
                    method,
                    id,
                    &session,
                    token.as_ref(),
                    &mut authorizations,
                    &mut nonces,
                    max,
                    &mut reinitialized,
                    &mut version_retried,
                )
                .await?;
            match step {
                Step::Done(v) => return Ok(v),
                Step::Retry => continue,
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn handle(
        &self,
        response: reqwest::Response,
        method: &str,
        id: Option<i64>,
        session: &Session,
        token: Option<&AccessToken>,
        authorizations: &mut u32,
        nonces: &mut u32,
        max: u32,
        reinitialized: &mut bool,
        version_retried: &mut bool,
    ) -> Result<Step> {
        let status = response.status().as_u16();
        let www = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let fresh_nonce = self
            .auth
            .as_ref()
            .is_some_and(|a| a.remember_nonce(&self.url, response.headers()));
        match status {
            401 => {
                let Some(auth) = &self.auth else {
                    return Err(ClientError::AuthRequired {
                        url: self.url.clone(),
                    });
                };
                // RFC 9449 §9: the server wants its nonce in the proof; the token is fine.
                if fresh_nonce
                    && token.is_some_and(|t| t.dpop_key.is_some())
                    && crate::dpop::asks_for_nonce(www.as_deref())
                    && *nonces < 2
                {
                    *nonces += 1;
                    return Ok(Step::Retry);
                }
                if *authorizations >= max {
                    return Err(ClientError::Http {
                        url: self.url.clone(),
                        status,
                        detail: Some(format!("still unauthorized after {max} authorizations")),
                    });
                }
                *authorizations += 1;
                auth.on_unauthorized(
                    www.as_deref(),
                    token.map(|t| &t.token),
                    *authorizations == 1,
                )
                .await?;
                return Ok(Step::Retry);
            }
            403 if www
                .as_deref()
                .and_then(find_oauth)
                .is_some_and(|c| c.get("error") == Some("insufficient_scope")) =>
            {
                let www = www.unwrap_or_default();
                let Some(auth) = &self.auth else {
                    return Err(ClientError::AuthRequired {
                        url: self.url.clone(),
                    });
                };
                if *authorizations >= max {
                    let scopes = find_oauth(&www)
                        .and_then(|c| c.get("scope").map(str::to_owned))
                        .unwrap_or_default();
                    return Err(ClientError::InsufficientScope {
                        scopes,
                        attempts: *authorizations,
                    });
                }
                *authorizations += 1;
                auth.on_insufficient_scope(&www).await?;
                return Ok(Step::Retry);
            }
            404 if session.session_id.is_some() && method != "initialize" && !*reinitialized => {
                tracing::info!("MCP session expired (404); initializing a new session");
                *reinitialized = true;
                Box::pin(self.initialize()).await?;
                return Ok(Step::Retry);
            }
            _ => {}
        }
        if !(200..300).contains(&status) {
            let body = self.read_body(response).await.unwrap_or_default();
            let parsed: Option<Value> = serde_json::from_slice(&body).ok();
            let error = parsed.as_ref().and_then(|v| v.get("error")).cloned();
            if status == 400
                && is_stateless(&session.version)
                && !*version_retried
                && let Some(next) = error.as_ref().and_then(negotiate_version)
            {
                *version_retried = true;
                tracing::info!(version = %next, "server asked for another protocol version");
                self.update(|s| s.version = next);
                return Ok(Step::Retry);
            }
            if let Some(e) = error.as_ref().and_then(rpc_error) {
                return Err(e);
            }
            return Err(ClientError::Http {
                url: self.url.clone(),
                status,
                detail: excerpt(&body),
            });
        }
        if method == "initialize"
            && let Some(sid) = response
                .headers()
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok())
                .filter(|s| !s.is_empty() && s.bytes().all(|b| (0x21..=0x7e).contains(&b)))
        {
            let sid = sid.to_owned();
            self.update(|s| s.session_id = Some(sid));
        }
        let Some(id) = id else {
            return Ok(Step::Done(None));
        };
        let is_sse = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| {
                ct.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("text/event-stream")
            });
        let value = if is_sse {
            self.read_stream(response, id).await?
        } else {
            let body = self.read_body(response).await?;
            let message: Value = serde_json::from_slice(&body)
                .map_err(|e| self.protocol(format!("the response to {method} is not JSON: {e}")))?;
            self.take_response(message, id)?
                .ok_or_else(|| self.protocol(format!("the response to {method} has another id")))?
        };
        Ok(Step::Done(Some(value)))
    }

    /// The headers every request carries: the access token as the OAuth client presents it
    /// for `htm` (Bearer, or DPoP with a proof), the session and the protocol version.
    fn common_headers(
        &self,
        mut request: reqwest::RequestBuilder,
        session: &Session,
        method: &str,
        htm: &str,
        token: Option<&AccessToken>,
    ) -> reqwest::RequestBuilder {
        if let (Some(auth), Some(token)) = (&self.auth, token) {
            match auth.authorization(token, htm, &self.url) {
                Ok(headers) => {
                    for (name, value) in headers {
                        request = request.header(name, value);
                    }
                }
                // Sent without a token, the request earns a 401 that says what is missing.
                Err(e) => tracing::warn!(error = %e, "the access token cannot be presented"),
            }
        }
        if let Some(sid) = &session.session_id {
            request = request.header("Mcp-Session-Id", sid.as_str());
        }
        if is_stateless(&session.version) || (session.initialized && method != "initialize") {
            request = request.header("MCP-Protocol-Version", session.version.as_str());
        }
        request
    }

    fn envelope(&self, id: Option<i64>, method: &str, params: Option<Value>) -> Value {
        let mut message = json!({"jsonrpc": "2.0", "method": method});
        if let Some(id) = id {
            message["id"] = json!(id);
        }
        let params = if self.stateless() && id.is_some() {
            let mut p = match params {
                Some(Value::Object(map)) => Value::Object(map),
                _ => json!({}),
            };
            let mut meta = p.get("_meta").cloned().unwrap_or_else(|| json!({}));
            if !meta.is_object() {
                meta = json!({});
            }
            meta["io.modelcontextprotocol/protocolVersion"] = json!(self.version());
            meta["io.modelcontextprotocol/clientCapabilities"] = self.cfg.capabilities.clone();
            meta["io.modelcontextprotocol/clientInfo"] = self.cfg.client_info.clone();
            p["_meta"] = meta;
            Some(p)
        } else {
            params
        };
        if let Some(p) = params {
            message["params"] = p;
        }
        message
    }

    /// The `result` of a response to `id`; `Ok(None)` for a message about something else.
    fn take_response(&self, message: Value, id: i64) -> Result<Option<Value>> {
        if message.get("id").and_then(Value::as_i64) != Some(id) || message.get("method").is_some()
        {
            return Ok(None);
        }
        if let Some(e) = message.get("error") {
            return Err(
                rpc_error(e).unwrap_or_else(|| self.protocol("malformed JSON-RPC error".into()))
            );
        }
        Ok(Some(message.get("result").cloned().unwrap_or(Value::Null)))
    }

    /// Ends the session (`DELETE`); a 405 means the server does not allow it, which is fine.
    pub(crate) async fn close(&self) -> Result<()> {
        let session = self.session();
        if session.session_id.is_none() {
            return Ok(());
        }
        let token = match &self.auth {
            Some(a) => a.access_token().await.ok().flatten(),
            None => None,
        };
        let request = self.http.delete(&self.url);
        let result = self
            .common_headers(request, &session, "", "DELETE", token.as_ref())
            .send()
            .await;
        self.update(|s| {
            s.session_id = None;
            s.initialized = false;
        });
        match result {
            Ok(r) => tracing::debug!(status = r.status().as_u16(), "session closed"),
            Err(e) => tracing::debug!(error = %e, "session DELETE failed"),
        }
        Ok(())
    }

    async fn read_body(&self, mut response: reqwest::Response) -> Result<Vec<u8>> {
        let limit = self.cfg.max_message_bytes;
        if response.content_length().is_some_and(|l| l > limit as u64) {
            return Err(self.protocol(format!("response larger than {limit} bytes")));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(&e))?
        {
            if body.len() + chunk.len() > limit {
                return Err(self.protocol(format!("response larger than {limit} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn transport_error(&self, e: &reqwest::Error) -> ClientError {
        let detail = if e.is_timeout() {
            "timed out".to_owned()
        } else if e.is_connect() {
            "could not connect".to_owned()
        } else {
            e.to_string()
        };
        ClientError::Transport {
            url: self.url.clone(),
            detail,
        }
    }

    fn protocol(&self, detail: String) -> ClientError {
        ClientError::Protocol {
            url: self.url.clone(),
            detail,
        }
    }
}

/// A JSON-RPC `error` member as a [`ClientError`].
fn rpc_error(e: &Value) -> Option<ClientError> {
    Some(ClientError::JsonRpc {
        code: e.get("code")?.as_i64()?,
        message: e
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .chars()
            .take(500)
            .collect(),
        data: e.get("data").cloned(),
    })
}

/// For a `-32022` unsupported-version error: the first version both sides support.
fn negotiate_version(error: &Value) -> Option<String> {
    if error.get("code").and_then(Value::as_i64) != Some(-32022) {
        return None;
    }
    let supported = error.get("data")?.get("supported")?.as_array()?;
    STATELESS_VERSIONS
        .iter()
        .find(|v| supported.iter().any(|s| s.as_str() == Some(**v)))
        .map(|v| (*v).to_owned())
}

fn excerpt(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let text: String = text.chars().filter(|c| !c.is_control()).take(200).collect();
    (!text.trim().is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycles() {
        assert!(!is_stateless("2025-06-18"));
        assert!(!is_stateless("2025-11-25"));
        assert!(is_stateless("2026-07-28"));
    }

    #[test]
    fn version_negotiation() {
        let e = json!({"code": -32022, "data": {"supported": ["2026-07-28"], "requested": "x"}});
        assert_eq!(negotiate_version(&e).as_deref(), Some("2026-07-28"));
        let e = json!({"code": -32022, "data": {"supported": ["2099-01-01"]}});
        assert_eq!(negotiate_version(&e), None);
        assert_eq!(negotiate_version(&json!({"code": -32600})), None);
    }
}
