//! Relaying upstream answers to the client (MCP Streamable HTTP, checklist
//! §2(e)): SSE streams for stdio children (the POST response stream and the
//! standalone GET stream), upstream HTTP responses passed through without
//! buffering, and the one exception — list answers (`tools/list`,
//! `prompts/list`, `resources/list`, `resources/templates/list`), buffered
//! and filtered by policy (JSON or SSE) before they reach the client.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::jsonrpc::{self, codes};
use crate::upstream::stdio::StdioChild;

/// A JSON-RPC error answer with `Cache-Control: no-store`.
pub fn error_response(
    status: StatusCode,
    id: Option<&Value>,
    code: i64,
    message: &str,
) -> Response {
    let mut r = Response::new(Body::from(jsonrpc::error_body(id, code, message)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub fn json_response(v: &Value) -> Response {
    let mut r = Response::new(Body::from(v.to_string()));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

pub fn accepted() -> Response {
    StatusCode::ACCEPTED.into_response()
}

/// Does the client accept an SSE answer?
pub fn accepts_sse(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::ACCEPT)
        .iter()
        .any(|v| v.to_str().is_ok_and(|s| s.contains("text/event-stream")))
}

fn event(v: &Value) -> Event {
    Event::default().event("message").data(v.to_string())
}

/// When the client drops a POST stream before its answer, the request is
/// abandoned and the child told (`notifications/cancelled`).
struct CancelOnDrop {
    child: Arc<StdioChild>,
    session: String,
    client_id: Value,
    done: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.child.abandon(&self.session, &self.client_id);
    }
}

/// Transforms the final response (policy filter for list answers).
pub type Finisher = Box<dyn FnMut(&mut Value) + Send>;

/// The POST answer for a stdio child: an SSE stream of the server→client
/// messages routed to this request, ending with the response.
pub fn stdio_sse(
    child: Arc<StdioChild>,
    session: String,
    client_id: Value,
    rx: mpsc::UnboundedReceiver<Value>,
    finish: Option<Finisher>,
) -> Response {
    let guard = CancelOnDrop {
        child,
        session,
        client_id,
        done: false,
    };
    let stream = futures_util::stream::unfold(
        (rx, guard, finish),
        |(mut rx, mut guard, mut finish)| async move {
            if guard.done {
                return None;
            }
            let mut m = rx.recv().await?;
            if m.get("method").is_none() {
                guard.done = true;
                if let Some(f) = finish.as_mut() {
                    f(&mut m);
                }
            }
            Some((Ok::<_, Infallible>(event(&m)), (rx, guard, finish)))
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// The POST answer for a stdio child as one JSON body (the client does not
/// take SSE): server→client messages in between are dropped.
pub async fn stdio_json(
    mut rx: mpsc::UnboundedReceiver<Value>,
    finish: Option<Finisher>,
    client_id: &Value,
) -> Response {
    let mut finish = finish;
    while let Some(mut m) = rx.recv().await {
        if m.get("method").is_none() {
            if let Some(f) = finish.as_mut() {
                f(&mut m);
            }
            return json_response(&m);
        }
    }
    error_response(
        StatusCode::BAD_GATEWAY,
        Some(client_id),
        codes::UPSTREAM_ERROR,
        "the upstream server exited",
    )
}

/// The standalone GET stream of a stdio session.
pub fn stdio_get_stream(rx: mpsc::UnboundedReceiver<Value>) -> Response {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let m = rx.recv().await?;
        Some((Ok::<_, Infallible>(event(&m)), rx))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// An upstream HTTP response, streamed: status and allowlisted headers,
/// body untouched.
pub fn passthrough(parts: http::response::Parts, body: hyper::body::Incoming) -> Response {
    let mut r = Response::new(Body::new(body));
    *r.status_mut() = parts.status;
    *r.headers_mut() = crate::upstream::http::response_headers(&parts.headers);
    r
}

/// Buffers an upstream response body (at most `max` bytes) and rewrites
/// every JSON-RPC message in it with `f` — a JSON body or each `data:` of
/// an SSE body. `None` when the body is too large or unreadable.
pub async fn rewrite_body(
    parts: http::response::Parts,
    body: hyper::body::Incoming,
    max: usize,
    mut f: impl FnMut(&mut Value),
) -> Option<Response> {
    let limited = http_body_util::Limited::new(body, max);
    let bytes = limited.collect().await.ok()?.to_bytes();
    let is_sse = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let out = if is_sse {
        Bytes::from(rewrite_sse(&String::from_utf8_lossy(&bytes), &mut f))
    } else {
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(mut v) => {
                f(&mut v);
                Bytes::from(v.to_string())
            }
            Err(_) => bytes,
        }
    };
    let mut r = Response::new(Body::from(out));
    *r.status_mut() = parts.status;
    *r.headers_mut() = crate::upstream::http::response_headers(&parts.headers);
    Some(r)
}

/// Rewrites the `data` of every SSE event that holds a JSON-RPC message;
/// other fields (`id`, `event`, `retry`, comments) are kept.
pub fn rewrite_sse(text: &str, f: &mut impl FnMut(&mut Value)) -> String {
    let mut out = String::with_capacity(text.len());
    let normalised = text.replace("\r\n", "\n");
    for block in normalised.split("\n\n") {
        if block.trim().is_empty() {
            continue;
        }
        let mut data = Vec::new();
        let mut other = Vec::new();
        for line in block.lines() {
            match line.strip_prefix("data:") {
                Some(d) => data.push(d.strip_prefix(' ').unwrap_or(d)),
                None => other.push(line),
            }
        }
        for l in &other {
            out.push_str(l);
            out.push('\n');
        }
        if !data.is_empty() {
            let joined = data.join("\n");
            let rewritten = match serde_json::from_str::<Value>(&joined) {
                Ok(mut v) => {
                    f(&mut v);
                    v.to_string()
                }
                Err(_) => joined,
            };
            for l in rewritten.split('\n') {
                out.push_str("data: ");
                out.push_str(l);
                out.push('\n');
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_rewrite_keeps_fields() {
        let text = "id: 1\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"a\"},{\"name\":\"b\"}]}}\n\n: comment\n\n";
        let out = rewrite_sse(text, &mut |v: &mut Value| {
            v["result"]["tools"]
                .as_array_mut()
                .unwrap()
                .retain(|t| t["name"] == "a");
        });
        assert!(out.starts_with("id: 1\nevent: message\ndata: "));
        assert!(!out.contains("\"b\""));
        assert!(out.contains(": comment\n"));
    }
}
