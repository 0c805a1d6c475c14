//! The user agent side of the authorization code flow for the MCP client (OAuth 2.1 §4.1.1,
//! RFC 8252 §7.3 loopback redirects; MCP Security Best Practices on authorization URLs).
//!
//! - [`CallbackListener`]: binds `127.0.0.1` on a random port, serves
//!   `http://127.0.0.1:PORT/callback`, accepts exactly one callback whose `state` matches, and
//!   answers it with a plain page that says the window can be closed. Anything else gets a 400
//!   and the listener keeps waiting until its deadline.
//! - [`Interactive`]: prints the authorization URL to stderr and, optionally, opens it with the
//!   platform's opener started directly (`xdg-open URL`, `open URL`), the URL one argv element —
//!   never through a shell.
//! - [`Headless`]: fetches the authorization URL without following redirects (the address
//!   vetted by the SSRF guard and pinned) and reads `code`, `state`, `iss` from the `Location`.
//!   For tests and the conformance suite, whose mock AS approves at once.
//!
//! [`UserAgent`] is the seam: a test harness can implement it to drive login and consent pages.

use std::time::Duration;

use async_trait::async_trait;
use mcpgate_net::SafeFetcher;
use mcpgate_types::Secret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::authorize::CallbackParams;
use crate::discovery::validate_url;
use crate::error::{ClientError, Result};

/// The path of the loopback redirect URI.
pub const CALLBACK_PATH: &str = "/callback";

/// One authorization to take the user through.
pub struct AuthorizationRedirect<'a> {
    /// The authorization URL (already validated).
    pub url: &'a str,
    /// The redirect URI in the request.
    pub redirect_uri: &'a str,
    /// The expected `state`.
    pub state: &'a Secret,
    /// The listener serving `redirect_uri`.
    pub listener: &'a CallbackListener,
    /// The SSRF-safe fetcher (for user agents that fetch the URL themselves).
    pub fetcher: &'a SafeFetcher,
}

/// Takes the user through an authorization request and returns the authorization response.
#[async_trait]
pub trait UserAgent: Send + Sync + std::fmt::Debug {
    /// Runs the front-channel part of the flow and returns the response parameters. The caller
    /// validates `state` and `iss` again before using the code.
    async fn authorize(&self, request: &AuthorizationRedirect<'_>) -> Result<CallbackParams>;
}

/// The interactive user agent: print, optionally open a browser, wait for the callback.
#[derive(Debug, Clone)]
pub struct Interactive {
    /// Start the platform's URL opener (no shell) as well as printing the URL.
    pub open_browser: bool,
    /// How long to wait for the callback.
    pub timeout: Duration,
}

impl Default for Interactive {
    fn default() -> Self {
        Self {
            open_browser: true,
            timeout: Duration::from_secs(300),
        }
    }
}

#[async_trait]
impl UserAgent for Interactive {
    async fn authorize(&self, request: &AuthorizationRedirect<'_>) -> Result<CallbackParams> {
        let allow_http = request.fetcher.policy().allow_http_loopback;
        validate_url("authorization", request.url, allow_http)?;
        eprintln!(
            "Open this URL in a browser on this machine to authorize mcpgate:\n\n  {}\n",
            request.url
        );
        if self.open_browser {
            open_browser(request.url);
        }
        eprintln!(
            "Waiting for the authorization response on {} ...",
            request.redirect_uri
        );
        request.listener.wait(request.state, self.timeout).await
    }
}

/// Starts the platform's URL opener directly, the URL as one argument (never `sh -c`,
/// `cmd /c` or PowerShell). Failure is not an error: the URL was printed.
pub fn open_browser(url: &str) {
    let (program, args): (&str, &[&str]) = if cfg!(target_os = "macos") {
        ("open", &[])
    } else if cfg!(windows) {
        ("rundll32", &["url.dll,FileProtocolHandler"])
    } else {
        ("xdg-open", &[])
    };
    let spawned = std::process::Command::new(program)
        .args(args)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    match spawned {
        // Reap the opener in the background so it does not linger as a zombie.
        Ok(mut child) => {
            std::thread::spawn(move || {
                let _ = child.wait();
            });
        }
        Err(e) => {
            tracing::debug!(program, error = %e, "could not start a browser; the URL was printed")
        }
    }
}

/// The headless user agent: one GET without redirects, then the `Location`.
#[derive(Debug, Clone, Default)]
pub struct Headless;

#[async_trait]
impl UserAgent for Headless {
    async fn authorize(&self, request: &AuthorizationRedirect<'_>) -> Result<CallbackParams> {
        let location = fetch_location(request.fetcher, request.url).await?;
        let target = location.split(['?', '#']).next().unwrap_or_default();
        if target != request.redirect_uri {
            return Err(ClientError::Protocol {
                url: request.url.to_owned(),
                detail: "the authorization endpoint did not redirect straight back to the \
                         redirect URI (it probably wants a person to log in); use the \
                         interactive mode"
                    .into(),
            });
        }
        if let Some((_, query)) = location
            .split('#')
            .next()
            .unwrap_or_default()
            .split_once('?')
            && CallbackParams::has_duplicates(query)
        {
            return Err(ClientError::CallbackRejected(
                "a response parameter is repeated",
            ));
        }
        Ok(CallbackParams::from_url(&location))
    }
}

/// GETs `url` (vetted and pinned by the SSRF guard) without following redirects and returns
/// the `Location` of the 3xx answer.
pub async fn fetch_location(fetcher: &SafeFetcher, url: &str) -> Result<String> {
    let policy = fetcher.policy();
    validate_url("authorization", url, policy.allow_http_loopback)?;
    let vetted = fetcher
        .vet(url)
        .await
        .map_err(|e| ClientError::fetch("authorization endpoint", url, e))?;
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(policy.timeout)
        .connect_timeout(policy.connect_timeout)
        .user_agent(policy.user_agent.as_str());
    if let Some(name) = vetted.name() {
        builder = builder.resolve_to_addrs(name, vetted.addrs());
    }
    for der in &policy.extra_root_certs {
        if let Ok(cert) = reqwest::Certificate::from_der(der.as_ref()) {
            builder = builder.add_root_certificate(cert);
        }
    }
    let transport = |e: reqwest::Error| ClientError::Transport {
        url: url.to_owned(),
        detail: e.to_string(),
    };
    let client = builder.build().map_err(transport)?;
    let response = client
        .get(vetted.url().clone())
        .send()
        .await
        .map_err(transport)?;
    let status = response.status();
    let location = response
        .headers()
        .get(http::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match location {
        Some(l) if status.is_redirection() => Ok(l),
        _ => Err(ClientError::Http {
            url: url.to_owned(),
            status: status.as_u16(),
            detail: Some("the authorization endpoint did not redirect".into()),
        }),
    }
}

/// A one-shot loopback HTTP listener for the redirect URI.
#[derive(Debug)]
pub struct CallbackListener {
    listener: TcpListener,
    redirect_uri: String,
}

const DONE_PAGE: &str = "<!doctype html><html><head><meta charset=\"utf-8\"><title>mcpgate</title></head>\
<body><p>Authorization received. You can close this page and return to the terminal.</p></body></html>";
const BAD_PAGE: &str = "<!doctype html><html><head><meta charset=\"utf-8\"><title>mcpgate</title></head>\
<body><p>This response does not match the pending mcpgate login and was ignored.</p></body></html>";

impl CallbackListener {
    /// Binds `127.0.0.1:0`.
    pub async fn bind() -> Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|source| ClientError::Io {
                what: "binding the loopback redirect listener on 127.0.0.1",
                source,
            })?;
        let port = listener
            .local_addr()
            .map_err(|source| ClientError::Io {
                what: "reading the redirect listener's port",
                source,
            })?
            .port();
        Ok(Self {
            listener,
            redirect_uri: format!("http://127.0.0.1:{port}{CALLBACK_PATH}"),
        })
    }

    /// `http://127.0.0.1:PORT/callback`.
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// Waits for the one callback whose `state` matches; other requests get a 400.
    pub async fn wait(&self, state: &Secret, timeout: Duration) -> Result<CallbackParams> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let accepted = tokio::time::timeout_at(deadline, self.listener.accept()).await;
            let Ok(accepted) = accepted else {
                return Err(ClientError::CallbackTimeout {
                    redirect_uri: self.redirect_uri.clone(),
                    secs: timeout.as_secs(),
                });
            };
            let Ok((mut stream, _)) = accepted else {
                continue;
            };
            let per_request = Duration::from_secs(10);
            match tokio::time::timeout(per_request, read_target(&mut stream)).await {
                Ok(Some(target)) => {
                    let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
                    let params = CallbackParams::from_query(query);
                    let matches = path == CALLBACK_PATH
                        && !CallbackParams::has_duplicates(query)
                        && params
                            .state
                            .as_deref()
                            .is_some_and(|s| state.ct_eq(s.as_bytes()));
                    if matches {
                        respond(&mut stream, 200, DONE_PAGE).await;
                        return Ok(params);
                    }
                    respond(&mut stream, 400, BAD_PAGE).await;
                }
                _ => respond(&mut stream, 400, BAD_PAGE).await,
            }
        }
    }
}

/// Reads the request head (at most 8 KiB) and returns the target of a `GET`.
async fn read_target(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() + n > 8192 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = std::str::from_utf8(&buf).ok()?;
    let mut parts = head.lines().next()?.split(' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("GET"), Some(target), Some(version)) if version.starts_with("HTTP/1.") => {
            Some(target.to_owned())
        }
        _ => None,
    }
}

async fn respond(stream: &mut TcpStream, status: u16, body: &str) {
    let reason = if status == 200 { "OK" } else { "Bad Request" };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Length: {}\r\nCache-Control: no-store\r\nReferrer-Policy: no-referrer\r\n\
         Content-Security-Policy: default-src 'none'\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(port: u16, target: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn listener_accepts_only_the_matching_state() {
        let l = CallbackListener::bind().await.unwrap();
        assert!(l.redirect_uri().starts_with("http://127.0.0.1:"));
        let port: u16 = l.redirect_uri()["http://127.0.0.1:".len()..]
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let state = Secret::new("the-state");
        let waiter = tokio::spawn(async move { l.wait(&state, Duration::from_secs(5)).await });
        assert!(
            get(port, "/callback?code=x&state=wrong")
                .await
                .starts_with("HTTP/1.1 400")
        );
        assert!(
            get(port, "/other?code=x&state=the-state")
                .await
                .starts_with("HTTP/1.1 400")
        );
        assert!(
            get(port, "/callback?code=x&state=the-state&state=the-state")
                .await
                .starts_with("HTTP/1.1 400")
        );
        let ok = get(
            port,
            "/callback?code=c1&state=the-state&iss=https%3A%2F%2Fas",
        )
        .await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.contains("You can close this page"));
        let params = waiter.await.unwrap().unwrap();
        assert_eq!(params.code.as_deref(), Some("c1"));
        assert_eq!(params.iss.as_deref(), Some("https://as"));
    }

    #[tokio::test]
    async fn listener_times_out() {
        let l = CallbackListener::bind().await.unwrap();
        let e = l
            .wait(&Secret::new("s"), Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(e, ClientError::CallbackTimeout { .. }));
    }
}
