//! Host name resolution for the SSRF guard (MCP Security Best Practices "SSRF": resolve, vet
//! every address, then pin the connection to the vetted set).
//!
//! [`Resolve`] is the seam: the fetcher calls it exactly once per request (and once per redirect
//! hop) and connects only to addresses it returned and the classifier accepted. Tests inject fake
//! resolvers, including ones that answer differently on each query (DNS rebinding).
//! [`SystemResolver`] is the production implementation: hickory-resolver with the system
//! configuration, falling back to the platform resolver (`getaddrinfo`) when the system
//! configuration cannot be read.

use std::fmt;
use std::net::IpAddr;
use std::sync::OnceLock;

use async_trait::async_trait;
use hickory_resolver::TokioResolver;

/// Why a host name could not be resolved. The message is for logs; the fetcher reports
/// [`crate::FetchError::Dns`] without it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ResolveError(pub String);

/// Resolves a host name (never an IP literal: those are classified without resolution) to the
/// addresses a connection may use.
#[async_trait]
pub trait Resolve: Send + Sync + 'static {
    /// All addresses for `host`. `host` is the URL's host exactly as the `url` crate serialises
    /// it (lowercase, IDNA/punycode, a trailing dot kept). An empty answer is refused.
    async fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError>;
}

enum Backend {
    Hickory(TokioResolver),
    /// `/etc/resolv.conf` (or the platform's equivalent) could not be used.
    Platform,
}

/// The default resolver: hickory-resolver configured from the system (`/etc/resolv.conf`,
/// `/etc/hosts`), built lazily on first use. If the system configuration cannot be parsed, it
/// logs a warning and uses the platform resolver (`getaddrinfo`) instead.
#[derive(Default)]
pub struct SystemResolver {
    backend: OnceLock<Backend>,
}

impl fmt::Debug for SystemResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backend = match self.backend.get() {
            None => "uninitialised",
            Some(Backend::Hickory(_)) => "hickory",
            Some(Backend::Platform) => "platform",
        };
        f.debug_struct("SystemResolver")
            .field("backend", &backend)
            .finish()
    }
}

impl SystemResolver {
    /// A resolver that reads the system configuration on first use.
    pub fn new() -> Self {
        Self::default()
    }

    fn backend(&self) -> &Backend {
        self.backend.get_or_init(|| {
            match TokioResolver::builder_tokio().and_then(|builder| builder.build()) {
                Ok(resolver) => Backend::Hickory(resolver),
                Err(err) => {
                    tracing::warn!(
                        error = %err,
                        "system DNS configuration unusable; using the platform resolver"
                    );
                    Backend::Platform
                }
            }
        })
    }
}

#[async_trait]
impl Resolve for SystemResolver {
    async fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        match self.backend() {
            Backend::Hickory(resolver) => {
                let lookup = resolver
                    .lookup_ip(host)
                    .await
                    .map_err(|e| ResolveError(e.to_string()))?;
                Ok(lookup.iter().collect())
            }
            Backend::Platform => {
                let addrs = tokio::net::lookup_host((host, 0))
                    .await
                    .map_err(|e| ResolveError(e.to_string()))?;
                Ok(addrs.map(|a| a.ip()).collect())
            }
        }
    }
}

/// The one loopback rule for URLs: the host is a `localhost` name (or one below it,
/// [`is_localhost_name`]) or a loopback address, IPv4-mapped IPv6 included
/// ([`crate::ip::is_loopback`]). Used wherever plain `http` is allowed to the local machine
/// only (the fetcher's development override, the client's server URLs, upstream and token
/// URLs in the configuration).
pub fn is_loopback_url(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => is_localhost_name(d),
        Some(url::Host::Ipv4(ip)) => crate::ip::is_loopback(ip.into()),
        Some(url::Host::Ipv6(ip)) => crate::ip::is_loopback(ip.into()),
        None => false,
    }
}

/// Whether `host` is a name reserved for the local machine (`localhost` and `*.localhost`,
/// RFC 6761 §6.3), with or without a trailing dot. Such names are never sent to DNS: they mean
/// loopback, which the classifier refuses unless the development override is on.
pub fn is_localhost_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    host.eq_ignore_ascii_case("localhost")
        || host
            .get(host.len().saturating_sub(".localhost".len())..)
            .is_some_and(|tail| tail.eq_ignore_ascii_case(".localhost"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_loopback_rule_for_urls() {
        let is = |u: &str| is_loopback_url(&url::Url::parse(u).unwrap());
        for u in [
            "http://localhost:1/x",
            "http://LOCALHOST./x",
            "http://app.localhost/x",
            "http://127.0.0.1/x",
            "http://127.9.9.9/x",
            "http://[::1]:8/x",
            "http://[::ffff:127.0.0.1]/x",
        ] {
            assert!(is(u), "{u}");
        }
        for u in [
            "http://localhost.evil.example/x",
            "http://127.0.0.1.evil.example/x",
            "http://evillocalhost/x",
            "http://10.0.0.1/x",
            "http://[::ffff:10.0.0.1]/x",
            "file:///etc/passwd",
        ] {
            assert!(!is(u), "{u}");
        }
    }

    #[test]
    fn localhost_names() {
        for yes in [
            "localhost",
            "localhost.",
            "LOCALHOST",
            "a.localhost",
            "x.y.localhost.",
        ] {
            assert!(is_localhost_name(yes), "{yes}");
        }
        for no in [
            "localhost.com",
            "notlocalhost",
            "localhost..",
            "example.com",
            "",
        ] {
            assert!(!is_localhost_name(no), "{no}");
        }
    }

    #[test]
    fn system_resolver_is_lazy() {
        // Never resolves here: tests must not send DNS traffic off this machine.
        let r = SystemResolver::new();
        assert!(format!("{r:?}").contains("uninitialised"));
    }
}
