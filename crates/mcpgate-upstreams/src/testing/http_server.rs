//! The testing fixture over MCP Streamable HTTP (rmcp's
//! `StreamableHttpService` under axum) on `127.0.0.1:0`, endpoint `/mcp`.
//!
//! Every HTTP request that reaches the server — `POST`, `GET` (SSE), `DELETE`,
//! any path — is recorded with its headers by an axum middleware *before* rmcp
//! sees it, so a gateway test can assert that no client `Authorization` or
//! `Cookie` header ever reached the upstream (issue 3, "No token
//! passthrough"). rmcp's own DNS-rebinding checks stay on, configured for
//! loopback: `Host` must be `127.0.0.1`, `localhost` or `::1` (any port), and a
//! present `Origin` must be `http://` one of those.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use http::{HeaderMap, Method, Uri};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::{Map, Value};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{TestingOptions, TestingServer};

/// Path of the MCP endpoint.
pub const MCP_PATH: &str = "/mcp";
/// Most requests kept by a [`RecordedHeaders`]; the oldest are dropped first.
pub const MAX_RECORDED: usize = 10_000;
/// How long [`TestingHttpHandle::shutdown`] waits for connections to drain.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// One HTTP request as the upstream saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, `DELETE`, ...
    pub method: String,
    /// Path and query, e.g. `/mcp`.
    pub path: String,
    /// Every header in arrival order: lower-case name, value (lossy UTF-8).
    pub headers: Vec<(String, String)>,
}

impl RecordedRequest {
    /// Record a request from its parts.
    pub fn from_parts(method: &Method, uri: &Uri, headers: &HeaderMap) -> Self {
        Self {
            method: method.as_str().to_owned(),
            path: uri
                .path_and_query()
                .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned()),
            headers: headers
                .iter()
                .map(|(name, value)| {
                    (
                        name.as_str().to_owned(),
                        String::from_utf8_lossy(value.as_bytes()).into_owned(),
                    )
                })
                .collect(),
        }
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether header `name` (case-insensitive) was present.
    pub fn has_header(&self, name: &str) -> bool {
        self.header(name).is_some()
    }
}

/// The headers as a JSON object `{name: [values...]}`.
pub(crate) fn headers_json(request: &RecordedRequest) -> Value {
    let mut map = Map::new();
    for (name, value) in &request.headers {
        let entry = map
            .entry(name.clone())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(values) = entry {
            values.push(Value::String(value.clone()));
        }
    }
    Value::Object(map)
}

/// Shared, cheaply cloned log of the requests an HTTP fixture received.
#[derive(Debug, Clone, Default)]
pub struct RecordedHeaders {
    inner: Arc<Mutex<Vec<RecordedRequest>>>,
}

impl RecordedHeaders {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<RecordedRequest>> {
        // Pushes and clears cannot leave the Vec inconsistent: ignore poison.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Append a request, dropping the oldest beyond [`MAX_RECORDED`].
    pub fn push(&self, request: RecordedRequest) {
        let mut log = self.lock();
        if log.len() >= MAX_RECORDED {
            log.remove(0);
        }
        log.push(request);
    }

    /// Every recorded request, oldest first.
    pub fn all(&self) -> Vec<RecordedRequest> {
        self.lock().clone()
    }

    /// How many requests are recorded.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Forget everything recorded so far.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Whether any recorded request carried header `name` (case-insensitive).
    pub fn any_has(&self, name: &str) -> bool {
        self.lock().iter().any(|r| r.has_header(name))
    }
}

async fn record(State(recorded): State<RecordedHeaders>, request: Request, next: Next) -> Response {
    recorded.push(RecordedRequest::from_parts(
        request.method(),
        request.uri(),
        request.headers(),
    ));
    next.run(request).await
}

/// A running HTTP fixture. Dropping it stops the server (without waiting);
/// [`shutdown`](Self::shutdown) stops it and waits.
#[derive(Debug)]
pub struct TestingHttpHandle {
    addr: SocketAddr,
    recorded: RecordedHeaders,
    cancel: CancellationToken,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestingHttpHandle {
    /// The bound address (`127.0.0.1:<port>`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The MCP endpoint, `http://127.0.0.1:<port>/mcp`.
    pub fn url(&self) -> String {
        format!("http://{}{MCP_PATH}", self.addr)
    }

    /// The live log of requests received (shared: it keeps filling).
    pub fn recorded_headers(&self) -> RecordedHeaders {
        self.recorded.clone()
    }

    /// Stop accepting, end every MCP session, and wait (up to 5 s) for open
    /// connections to close; then abort whatever is left.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.cancel.cancel();
        let Some(mut task) = self.task.take() else {
            return Ok(());
        };
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
            Ok(joined) => Ok(joined??),
            Err(_) => {
                tracing::warn!("testing HTTP server did not drain in time; aborting");
                task.abort();
                Ok(())
            }
        }
    }
}

impl Drop for TestingHttpHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// [`serve_testing_http_with`] with default options (`crash` disabled, so the
/// in-process server cannot kill the test harness).
pub async fn serve_testing_http() -> anyhow::Result<(SocketAddr, TestingHttpHandle)> {
    serve_testing_http_with(TestingOptions::default()).await
}

/// Serve a [`TestingServer`] over Streamable HTTP on `127.0.0.1:0` at `/mcp`,
/// on the current tokio runtime. Sessions (protocol ≤ 2025-11-25) and
/// stateless requests (2026-07-28) are both accepted; responses stream as SSE.
pub async fn serve_testing_http_with(
    options: TestingOptions,
) -> anyhow::Result<(SocketAddr, TestingHttpHandle)> {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    let recorded = RecordedHeaders::default();
    let cancel = CancellationToken::new();
    let server = TestingServer::new(options).with_recorder(recorded.clone());
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(["127.0.0.1", "localhost", "::1"])
        .with_allowed_origins(["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"])
        .with_cancellation_token(cancel.child_token());
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let router = Router::new()
        .nest_service(MCP_PATH, service)
        .layer(middleware::from_fn_with_state(recorded.clone(), record));
    let stop = cancel.clone();
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
    });
    tracing::info!(%addr, "testing upstream serving Streamable HTTP at {MCP_PATH}");
    Ok((
        addr,
        TestingHttpHandle {
            addr,
            recorded,
            cancel,
            task: Some(task),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_headers_and_renders_multi_values() {
        let mut headers = HeaderMap::new();
        headers.append("x-a", "1".parse().unwrap());
        headers.append("x-a", "2".parse().unwrap());
        headers.append("Cookie", "c=1".parse().unwrap());
        let uri: Uri = "/mcp?x=1".parse().unwrap();
        let request = RecordedRequest::from_parts(&Method::POST, &uri, &headers);
        assert_eq!(request.path, "/mcp?x=1");
        assert!(request.has_header("COOKIE"));
        assert_eq!(
            headers_json(&request),
            serde_json::json!({ "x-a": ["1", "2"], "cookie": ["c=1"] })
        );
        let log = RecordedHeaders::default();
        log.push(request);
        assert!(log.any_has("cookie") && !log.any_has("authorization"));
        log.clear();
        assert!(log.is_empty());
    }
}
