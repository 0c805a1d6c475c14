//! Relaying upstream answers to the client (MCP Streamable HTTP, checklist
//! §2(e)): SSE streams for stdio children (the POST response stream and the
//! standalone GET stream) and HTTP upstreams' answers. No upstream byte
//! reaches a client as it came: every message is parsed strictly and
//! decided by [`Outbound`] (lists filtered by policy, request state sealed)
//! and written again — a JSON body whole, an event stream event by event.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;

use crate::jsonrpc::{self, codes};
use crate::outbound::Outbound;
use crate::upstream::stdio::{Replies, StdioChild};
use crate::{resume, sse};

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

/// An event stream answer: the one place its headers are set.
fn event_stream(body: Body) -> Response {
    let mut r = Response::new(body);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
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

/// A stream of a stdio session: the messages of `rx` are decided by `out`
/// and written to a new log of the session by a task of their own, and the
/// client reads that log (priming event first). For a POST (`until_answer`)
/// the stream ends with the response; the standalone GET stream lasts as
/// long as the session. A client that drops either can resume it with `GET`
/// and `Last-Event-ID`; a request goes on (only `notifications/cancelled`
/// cancels it).
pub fn logged_sse(
    streams: &resume::Streams,
    mut rx: Replies,
    out: Outbound,
    until_answer: bool,
) -> Response {
    let log = streams.open();
    let writer = log.clone();
    tokio::spawn(async move {
        while let Some(mut m) = rx.recv().await {
            let answer = m.get("method").is_none();
            out.decide(&mut m);
            writer.push(m);
            if until_answer && answer {
                break;
            }
        }
        writer.finish();
    });
    log_sse(log, 0, true)
}

/// A stream's events after `after`, as an SSE answer.
pub fn log_sse(log: Arc<resume::Log>, after: u64, prime: bool) -> Response {
    event_stream(Body::from_stream(log.events(after, prime)))
}

/// The POST answer of a stateless (2026-07-28) request to a stdio child:
/// an SSE stream of the server→client messages routed to this request,
/// ending with the response. Each message is decided by `out` (lists
/// filtered, request state sealed). There is no session to resume in, and
/// closing the stream cancels the request.
pub fn stdio_sse(
    child: Arc<StdioChild>,
    session: String,
    client_id: Value,
    rx: Replies,
    out: Outbound,
) -> Response {
    let guard = CancelOnDrop {
        child,
        session,
        client_id,
        done: false,
    };
    let stream =
        futures_util::stream::unfold((rx, guard, out), |(mut rx, mut guard, out)| async move {
            if guard.done {
                return None;
            }
            let mut m = match tokio::time::timeout(resume::KEEP_ALIVE, rx.recv()).await {
                Ok(m) => m?,
                Err(_) => return Some((Ok(sse::keep_alive()), (rx, guard, out))),
            };
            if m.get("method").is_none() {
                guard.done = true;
            }
            out.decide(&mut m);
            let e = sse::Event {
                event: Some("message".into()),
                ..Default::default()
            };
            let bytes = e.write(Some(m.to_string().as_bytes()));
            Some((Ok::<_, Infallible>(bytes), (rx, guard, out)))
        });
    event_stream(Body::from_stream(stream))
}

/// The POST answer for a stdio child as one JSON body (the client does not
/// take SSE): server→client messages in between are dropped. `None` when
/// the child went away before answering.
pub async fn stdio_json(mut rx: Replies, out: &Outbound) -> Option<Response> {
    while let Some(mut m) = rx.recv().await {
        if m.get("method").is_none() {
            out.decide(&mut m);
            return Some(json_response(&m));
        }
    }
    None
}

/// Why an HTTP upstream's answer could not be relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unrelayable {
    /// Larger than `max_message_bytes`, or the connection broke.
    Unreadable,
    /// Not one strict JSON-RPC message (see [`jsonrpc::parse`]).
    Malformed,
    /// Neither JSON nor an event stream, and not empty.
    ContentType,
}

impl Unrelayable {
    pub fn what(self) -> &'static str {
        match self {
            Unrelayable::Unreadable => "the upstream answer was unreadable or too large",
            Unrelayable::Malformed => "the upstream answer was not one strict JSON-RPC message",
            Unrelayable::ContentType => "the upstream answer had an unexpected content type",
        }
    }
}

fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Relays an HTTP upstream's answer, deciding on every message in it: a
/// JSON body (at most `max` bytes) is parsed strictly and written again; an
/// event stream is read event by event ([`crate::sse`]) and each event
/// written again with its message decided. An empty body, or the body of
/// an error status that is neither, is not forwarded (the status is); a
/// success with such a body is refused. `request_id` is the client's id
/// on a POST stream: a malformed or oversized event there ends the stream
/// with an error answering that request; on a GET stream it is dropped.
pub async fn upstream_answer(
    parts: http::response::Parts,
    body: hyper::body::Incoming,
    max: usize,
    out: Outbound,
    request_id: Option<Value>,
) -> Result<Response, Unrelayable> {
    let mut headers = crate::upstream::http::response_headers(&parts.headers);
    let media = media_type(&parts.headers);
    let body = if media == "text/event-stream" {
        Body::from_stream(decided_events(body, max, out, request_id))
    } else {
        let bytes = http_body_util::Limited::new(body, max)
            .collect()
            .await
            .map_err(|_| Unrelayable::Unreadable)?
            .to_bytes();
        if bytes.is_empty() {
            // 202 to a notification, 204, a bare 405 for GET: whatever its
            // content type says, there is nothing to decide on.
            Body::empty()
        } else if media == "application/json" {
            let v = out
                .decide_bytes(&bytes)
                .map_err(|_| Unrelayable::Malformed)?;
            Body::from(serde_json::to_vec(&v).expect("a JSON value serialises"))
        } else if !parts.status.is_success() {
            // An error page (a 405 "Method Not Allowed" in text/plain, a
            // proxy's HTML): the status is what the client acts on, and is
            // relayed; the body is not a message and is not forwarded.
            headers.remove(CONTENT_TYPE);
            Body::empty()
        } else {
            return Err(Unrelayable::ContentType);
        }
    };
    let mut r = Response::new(body);
    *r.status_mut() = parts.status;
    *r.headers_mut() = headers;
    Ok(r)
}

/// The events of an upstream stream, each decided and written again.
fn decided_events(
    body: hyper::body::Incoming,
    max: usize,
    out: Outbound,
    request_id: Option<Value>,
) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> + Send {
    struct St {
        body: hyper::body::Incoming,
        decoder: sse::Decoder,
        queue: std::collections::VecDeque<Bytes>,
        out: Outbound,
        request_id: Option<Value>,
        ended: bool,
    }
    impl St {
        /// Ends a POST stream with an error for its request (a GET stream
        /// just ends).
        fn fail(&mut self, what: &str) {
            tracing::warn!(upstream = %self.out.upstream(), "{what}; event stream ended");
            if let Some(id) = self.request_id.take() {
                let err = jsonrpc::error_value(
                    Some(&id),
                    codes::UPSTREAM_ERROR,
                    "the upstream sent a malformed message",
                );
                let data = serde_json::to_vec(&err).expect("a JSON value serialises");
                self.queue
                    .push_back(sse::Event::default().write(Some(&data)));
            }
            self.ended = true;
        }

        fn take(&mut self, chunk: &[u8]) {
            let events = match self.decoder.push(chunk) {
                Ok(e) => e,
                Err(sse::Refused(what)) => return self.fail(what),
            };
            for e in events {
                let data = match &e.data {
                    Some(d) if !d.is_empty() => match self.out.decide_bytes(d) {
                        Ok(v) => Some(serde_json::to_vec(&v).expect("a JSON value serialises")),
                        Err(_) if self.request_id.is_some() => {
                            return self
                                .fail("an upstream event was not one strict JSON-RPC message");
                        }
                        Err(_) => {
                            tracing::warn!(upstream = %self.out.upstream(), "an upstream event was not one strict JSON-RPC message; dropped");
                            continue;
                        }
                    },
                    Some(_) => Some(Vec::new()),
                    None => None,
                };
                self.queue.push_back(e.write(data.as_deref()));
            }
        }
    }
    let st = St {
        body,
        decoder: sse::Decoder::new(max),
        queue: Default::default(),
        out,
        request_id,
        ended: false,
    };
    futures_util::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(b) = st.queue.pop_front() {
                return Some((Ok(b), st));
            }
            if st.ended {
                return None;
            }
            match st.body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(d) = frame.data_ref() {
                        st.take(d);
                    }
                }
                // The upstream closed or broke the stream: so does the gateway
                // (a resumable client reconnects with Last-Event-ID).
                Some(Err(_)) | None => st.ended = true,
            }
        }
    })
}
