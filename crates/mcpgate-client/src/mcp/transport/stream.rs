//! The SSE side of the Streamable HTTP client transport (MCP "Transports", "Listening for
//! Messages from the Server" and "Resumability and Redelivery"; SEP-1699): reading a response
//! stream until the response, answering server requests on the way, resuming with `GET` and
//! `Last-Event-ID` after the server's `retry`, and the session's standalone `GET` stream.

use std::sync::Arc;
use std::time::Duration;

use http::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{Value, json};

use super::Transport;
use crate::error::{ClientError, Result};
use crate::mcp::sse::SseParser;

/// Removes a waiting entry when the request finishes, however it finishes.
struct Waiting<'a> {
    transport: &'a Transport,
    id: i64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Ok(mut w) = self.transport.waiting.lock() {
            w.remove(&self.id);
        }
    }
}

impl Transport {
    /// Reads an SSE response until the response to `id`, answering server requests on the way
    /// and resuming with `GET` + `Last-Event-ID` if the stream ends early.
    pub(super) async fn read_stream(&self, response: reqwest::Response, id: i64) -> Result<Value> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if let Ok(mut w) = self.waiting.lock() {
            w.insert(id, tx);
        }
        let _waiting = Waiting {
            transport: self,
            id,
        };
        tokio::select! {
            own = self.read_own_stream(response, id) => own,
            Ok(elsewhere) = rx => elsewhere,
        }
    }

    async fn read_own_stream(&self, mut response: reqwest::Response, id: i64) -> Result<Value> {
        let mut parser = SseParser::new(self.cfg.max_message_bytes);
        let mut last_event_id: Option<String> = None;
        let mut retry_ms: u64 = 1000;
        let mut resumptions = 0;
        loop {
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| self.transport_error(&e))?
            {
                let events = parser
                    .feed(&chunk)
                    .map_err(|e| self.protocol(e.to_string()))?;
                for event in events {
                    if let Some(eid) = event.id {
                        last_event_id = Some(eid);
                    }
                    if let Some(r) = event.retry {
                        retry_ms = r;
                    }
                    if event.data.trim().is_empty() {
                        continue;
                    }
                    let Ok(message) = serde_json::from_str::<Value>(&event.data) else {
                        tracing::warn!("ignoring a server-sent event that is not JSON");
                        continue;
                    };
                    if let Some(result) = self.dispatch(message, id).await? {
                        return Ok(result);
                    }
                }
            }
            let Some(resume_from) = last_event_id.clone() else {
                return Err(self.protocol("the response stream ended before the response".into()));
            };
            if resumptions >= 5 {
                return Err(self.protocol(
                    "the response stream kept ending; gave up after 5 resumptions".into(),
                ));
            }
            resumptions += 1;
            tokio::time::sleep(Duration::from_millis(retry_ms.min(60_000))).await;
            response = self.resume(&resume_from).await?;
            parser = SseParser::new(self.cfg.max_message_bytes);
        }
    }

    /// The standalone `GET` stream of a session (server requests and notifications not tied
    /// to a client request). Runs until the server refuses it (405, 404, …), the session ends,
    /// or the stream fails repeatedly; resumes with `Last-Event-ID` after `retry`.
    /// `ready` is signalled once the first `GET` has been answered (or has failed), so that the
    /// caller does not send requests whose server-side handling needs the stream before it
    /// exists.
    pub(crate) async fn listen(self: Arc<Self>, ready: tokio::sync::oneshot::Sender<()>) {
        let mut ready = Some(ready);
        let mut last_event_id: Option<String> = None;
        let mut retry_ms: u64 = 1000;
        let mut failures = 0u32;
        let Some(session_id) = self.session_id() else {
            return;
        };
        while failures < 5 && self.session_id().as_deref() == Some(session_id.as_str()) {
            let session = self.session();
            let token = match &self.auth {
                Some(a) => a.access_token().await.ok().flatten(),
                None => None,
            };
            let mut request = self.http.get(&self.url).header(ACCEPT, "text/event-stream");
            if let Some(id) = &last_event_id {
                request = request.header("Last-Event-ID", id.as_str());
            }
            let sent = self
                .common_headers(request, &session, "", "GET", token.as_ref())
                .send()
                .await;
            if let Some(r) = ready.take() {
                let _ = r.send(());
            }
            let response = match sent {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(error = %e, "standalone SSE stream failed");
                    failures += 1;
                    tokio::time::sleep(Duration::from_millis(retry_ms)).await;
                    continue;
                }
            };
            let is_sse = response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("text/event-stream"));
            tracing::debug!(
                status = response.status().as_u16(),
                is_sse,
                "standalone SSE stream answer"
            );
            if !response.status().is_success() || !is_sse {
                tracing::debug!(
                    status = response.status().as_u16(),
                    "no standalone SSE stream"
                );
                return;
            }
            let mut response = response;
            let mut parser = SseParser::new(self.cfg.max_message_bytes);
            while let Ok(Some(chunk)) = response.chunk().await {
                let Ok(events) = parser.feed(&chunk) else {
                    break;
                };
                for event in events {
                    if let Some(eid) = event.id {
                        last_event_id = Some(eid);
                    }
                    if let Some(r) = event.retry {
                        retry_ms = r;
                    }
                    let Ok(message) = serde_json::from_str::<Value>(&event.data) else {
                        continue;
                    };
                    tracing::debug!(method = ?message.get("method"), "message on the standalone stream");
                    failures = 0;
                    if let Err(e) = self.dispatch(message, -1).await {
                        tracing::warn!(error = %e, "handling a server message failed");
                    }
                }
            }
            failures += 1;
            tokio::time::sleep(Duration::from_millis(retry_ms.min(60_000))).await;
        }
    }

    async fn resume(&self, last_event_id: &str) -> Result<reqwest::Response> {
        let session = self.session();
        let token = match &self.auth {
            Some(a) => a.access_token().await?,
            None => None,
        };
        let request = self
            .http
            .get(&self.url)
            .header(ACCEPT, "text/event-stream")
            .header("Last-Event-ID", last_event_id);
        let response = self
            .common_headers(request, &session, "", "GET", token.as_ref())
            .send()
            .await
            .map_err(|e| self.transport_error(&e))?;
        if !response.status().is_success() {
            return Err(ClientError::Http {
                url: self.url.clone(),
                status: response.status().as_u16(),
                detail: Some("resuming the response stream failed".into()),
            });
        }
        Ok(response)
    }

    /// One message from a stream: our response, a server request, or a notification.
    async fn dispatch(&self, message: Value, id: i64) -> Result<Option<Value>> {
        let Some(method) = message
            .get("method")
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            let other = message
                .get("id")
                .and_then(Value::as_i64)
                .filter(|i| *i != id);
            if let Some(other) = other {
                let waiter = self.waiting.lock().ok().and_then(|mut w| w.remove(&other));
                if let Some(waiter) = waiter {
                    let delivered = self
                        .take_response(message, other)
                        .and_then(|r| r.ok_or_else(|| self.protocol("malformed response".into())));
                    let _ = waiter.send(delivered);
                }
                return Ok(None);
            }
            return self.take_response(message, id);
        };
        let params = message.get("params").cloned().unwrap_or_else(|| json!({}));
        match message.get("id").cloned() {
            Some(request_id) => {
                let answer = match self.handler.on_request(&method, params).await {
                    Ok(result) => json!({"jsonrpc": "2.0", "id": request_id, "result": result}),
                    Err(e) => json!({"jsonrpc": "2.0", "id": request_id, "error": e.to_value()}),
                };
                self.post_answer(&answer).await?;
            }
            None => self.handler.on_notification(&method, params).await,
        }
        Ok(None)
    }

    /// POSTs a JSON-RPC response to a server request.
    async fn post_answer(&self, answer: &Value) -> Result<()> {
        let session = self.session();
        let token = match &self.auth {
            Some(a) => a.access_token().await?,
            None => None,
        };
        let request = self
            .http
            .post(&self.url)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json, text/event-stream")
            .body(serde_json::to_vec(answer).unwrap_or_default());
        let response = self
            .common_headers(request, &session, "", "POST", token.as_ref())
            .send()
            .await
            .map_err(|e| self.transport_error(&e))?;
        if !response.status().is_success() {
            tracing::warn!(
                status = response.status().as_u16(),
                "the server did not accept our response"
            );
        }
        Ok(())
    }
}
