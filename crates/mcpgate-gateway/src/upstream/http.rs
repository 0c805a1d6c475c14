//! Streamable HTTP upstreams (MCP transports "Streamable HTTP", checklist
//! §2(b) "no token passthrough", §2(e)): requests are forwarded at the byte
//! level through a pooled hyper client and responses (JSON or SSE) stream
//! back without buffering. Only an allowlist of MCP headers leaves the
//! gateway — never the client's `Authorization`, `Cookie`, hop-by-hop
//! headers or `Mcp-Session-Id` (the upstream's own session id is put in its
//! place) — plus the upstream's configured headers and credentials.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config::{HttpConfig, UpstreamAuth};
use crate::upstream::creds::{Caller, CredentialError, Credentials};

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// Headers a client request may carry to the upstream. Everything else
/// (credentials, cookies, hop-by-hop, forwarding headers) stays here.
pub const FORWARDED_REQUEST_HEADERS: &[&str] = &[
    "accept",
    "content-type",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
    "last-event-id",
    "user-agent",
];

/// Headers an upstream response may carry to the client.
pub const FORWARDED_RESPONSE_HEADERS: &[&str] =
    &["content-type", "cache-control", "mcp-protocol-version"];

pub const SESSION_HEADER: &str = "mcp-session-id";

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream unreachable: {0}")]
    Connect(String),
    #[error("upstream did not answer in time")]
    Timeout,
    #[error("upstream credentials unavailable: {0}")]
    Credentials(String),
    /// `user_oauth`: the caller has to connect their account first.
    #[error("the caller has no connected account for this upstream")]
    ConnectAccount(Box<mcpgate_vault::Elicitation>),
    /// `user_oauth`: the caller is not a user of mcpgate's own AS.
    #[error("the caller is not a user of mcpgate's own authorization server")]
    NotLocalUser,
}

/// One HTTP upstream: its URL, static headers, credentials and a shared
/// connection pool.
pub struct HttpUpstream {
    client: Client<Connector, Full<Bytes>>,
    uri: Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    creds: Credentials,
    timeout: Duration,
}

/// A TLS client config that trusts the platform's roots (aws-lc-rs provider).
fn tls_config() -> Result<rustls::ClientConfig, String> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_platform_verifier()
        .map_err(|e| e.to_string())?
        .with_no_client_auth();
    Ok(cfg)
}

impl HttpUpstream {
    pub fn new(
        cfg: &HttpConfig,
        auth: &UpstreamAuth,
        timeout: Duration,
        vault: Option<&mcpgate_vault::Vault>,
        local_issuer: &str,
    ) -> Result<Self, String> {
        let uri: Uri = cfg
            .url
            .parse()
            .map_err(|_| format!("{:?} is not a URI", cfg.url))?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config()?)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(https);
        let mut headers = Vec::new();
        for (n, v) in &cfg.headers {
            let mut hv = HeaderValue::from_str(v.expose())
                .map_err(|_| format!("header {n} has an invalid value"))?;
            hv.set_sensitive(true);
            headers.push((n.clone(), hv));
        }
        Ok(Self {
            client,
            uri,
            headers,
            creds: Credentials::new(auth, vault, local_issuer)?,
            timeout,
        })
    }

    /// Sends one request. `upstream_session` replaces whatever session id
    /// the client sent; `caller` is who it is sent for. Only the response
    /// head is awaited (under the timeout); the body streams. A `user_oauth`
    /// token the upstream refuses (401) is refreshed and the request sent
    /// once more; when it cannot be, the user is asked to connect again.
    pub async fn send(
        &self,
        method: Method,
        client_headers: &HeaderMap,
        caller: Option<Caller<'_>>,
        upstream_session: Option<&HeaderValue>,
        body: Bytes,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let credential = self
            .creds
            .header(client_headers, caller)
            .await
            .map_err(credential_error)?;
        let req = self.build(
            method.clone(),
            client_headers,
            upstream_session,
            body.clone(),
            credential.clone(),
        )?;
        let resp = self.round_trip(req).await?;
        if resp.status() == http::StatusCode::UNAUTHORIZED
            && let (Some(caller), Some((_, sent))) = (caller, &credential)
            && let Some(again) = self
                .creds
                .refused(caller, sent)
                .await
                .map_err(credential_error)?
        {
            let req = self.build(method, client_headers, upstream_session, body, Some(again))?;
            return self.round_trip(req).await;
        }
        Ok(resp)
    }

    async fn round_trip(
        &self,
        req: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Err(_) => Err(UpstreamError::Timeout),
            Ok(Err(e)) => Err(UpstreamError::Connect(e.to_string())),
            Ok(Ok(resp)) => {
                if matches!(resp.status().as_u16(), 401 | 403) {
                    // The upstream refused *our* credentials: fetch afresh next time.
                    self.creds.invalidate().await;
                }
                Ok(resp)
            }
        }
    }

    fn build(
        &self,
        method: Method,
        client_headers: &HeaderMap,
        upstream_session: Option<&HeaderValue>,
        body: Bytes,
        credential: Option<(HeaderName, HeaderValue)>,
    ) -> Result<Request<Full<Bytes>>, UpstreamError> {
        let mut req = Request::builder().method(method).uri(self.uri.clone());
        let h = req.headers_mut().expect("fresh request builder");
        for name in FORWARDED_REQUEST_HEADERS {
            for v in client_headers.get_all(*name) {
                h.append(*name, v.clone());
            }
        }
        if let Some(s) = upstream_session {
            h.insert(SESSION_HEADER, s.clone());
        }
        for (n, v) in &self.headers {
            h.insert(n.clone(), v.clone());
        }
        if let Some((n, v)) = credential {
            h.insert(n, v);
        }
        req.body(Full::new(body))
            .map_err(|e| UpstreamError::Connect(e.to_string()))
    }
}

fn credential_error(e: CredentialError) -> UpstreamError {
    match e {
        CredentialError::Connect(el) => UpstreamError::ConnectAccount(el),
        CredentialError::NotLocalUser => UpstreamError::NotLocalUser,
        e => UpstreamError::Credentials(e.to_string()),
    }
}

/// The response headers that may reach the client.
pub fn response_headers(upstream: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in FORWARDED_RESPONSE_HEADERS {
        for v in upstream.get_all(*name) {
            out.append(*name, v.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_allowlisted_headers_leave() {
        let up = HttpUpstream::new(
            &HttpConfig {
                url: "http://127.0.0.1:9/mcp".into(),
                headers: vec![(
                    HeaderName::from_static("x-team"),
                    mcpgate_types::Secret::new("a"),
                )],
            },
            &UpstreamAuth::Header {
                name: HeaderName::from_static("x-api-key"),
                value: mcpgate_types::Secret::new("k"),
            },
            Duration::from_secs(1),
            None,
            "http://127.0.0.1:1",
        )
        .unwrap();
        let mut client = HeaderMap::new();
        for (n, v) in [
            ("authorization", "Bearer user-token"),
            ("cookie", "s=1"),
            ("connection", "keep-alive"),
            ("mcp-session-id", "gateway-session"),
            ("x-forwarded-for", "1.2.3.4"),
            ("accept", "application/json, text/event-stream"),
            ("mcp-protocol-version", "2025-11-25"),
        ] {
            client.insert(n, HeaderValue::from_static(v));
        }
        let upstream_session = HeaderValue::from_static("upstream-session");
        let credential = up.creds.header(&client, None).await.unwrap();
        let req = up
            .build(
                Method::POST,
                &client,
                Some(&upstream_session),
                Bytes::new(),
                credential,
            )
            .unwrap();
        let h = req.headers();
        assert!(h.get("authorization").is_none());
        assert!(h.get("cookie").is_none());
        assert!(h.get("connection").is_none());
        assert!(h.get("x-forwarded-for").is_none());
        assert_eq!(h["mcp-session-id"], "upstream-session");
        assert_eq!(h["x-api-key"], "k");
        assert_eq!(h["x-team"], "a");
        assert_eq!(h["mcp-protocol-version"], "2025-11-25");
    }
}
