//! The fetcher's policy: what outbound requests may do (MCP Security Best Practices "SSRF":
//! HTTPS only with an explicit loopback-only development override, size and time limits,
//! bounded redirects; SEP-991 for CIMD fetching).

use std::time::Duration;

use rustls_pki_types::CertificateDer;

/// Limits and switches applied to every request and every redirect hop.
#[derive(Debug, Clone)]
pub struct FetchPolicy {
    /// Development override, off by default. When on, plain `http://` is allowed only when every
    /// destination address is loopback (a loopback literal such as `127.0.0.1` / `[::1]`,
    /// `localhost`, or a name that resolves only to loopback addresses), and loopback addresses
    /// (`127.0.0.0/8`, `::1`) become reachable over https too. Every other special-purpose range
    /// stays refused.
    pub allow_http_loopback: bool,
    /// Hard cap on the response body; larger bodies fail with
    /// [`crate::FetchError::TooLarge`]. Default 256 KiB.
    pub max_body_bytes: usize,
    /// Overall deadline for one call, all redirect hops included: resolution, connection,
    /// request and body. Default 10 s.
    pub timeout: Duration,
    /// Time to establish a TCP (and TLS) connection. Default 5 s.
    pub connect_timeout: Duration,
    /// Redirects followed by `GET` requests, each re-vetted. Default 3.
    pub max_redirects: usize,
    /// `User-Agent` header.
    pub user_agent: String,
    /// Extra trust anchors added to the platform's root store (private PKI, tests).
    pub extra_root_certs: Vec<CertificateDer<'static>>,
}

impl Default for FetchPolicy {
    fn default() -> Self {
        Self {
            allow_http_loopback: false,
            max_body_bytes: 256 * 1024,
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            max_redirects: 3,
            user_agent: concat!("mcpgate/", env!("CARGO_PKG_VERSION")).to_owned(),
            extra_root_certs: Vec::new(),
        }
    }
}

impl FetchPolicy {
    /// The default policy with the loopback development override switched on.
    pub fn loopback_dev() -> Self {
        Self {
            allow_http_loopback: true,
            ..Self::default()
        }
    }

    /// Whether a URL is worth storing for later fetches under this policy:
    /// `https` with a host, or `http` to a loopback host with the
    /// development override. Only the URL's form is checked (for a clear
    /// error when a client or an operator names it); every fetch is still
    /// vetted in full ([`crate::vet`]), addresses included.
    pub fn admits(&self, url: &str) -> bool {
        let Ok(u) = url::Url::parse(url) else {
            return false;
        };
        match u.scheme() {
            "https" => u.host().is_some(),
            "http" => self.allow_http_loopback && crate::is_loopback_url(&u),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_safe() {
        let p = FetchPolicy::default();
        assert!(!p.allow_http_loopback);
        assert_eq!(p.max_body_bytes, 262_144);
        assert_eq!(p.timeout, Duration::from_secs(10));
        assert_eq!(p.max_redirects, 3);
        assert!(p.user_agent.starts_with("mcpgate/"));
        assert!(FetchPolicy::loopback_dev().allow_http_loopback);
    }

    #[test]
    fn admits_https_and_loopback_http_only_with_the_override() {
        let (safe, dev) = (FetchPolicy::default(), FetchPolicy::loopback_dev());
        for u in ["https://a.example/jwks", "https://127.0.0.1/k"] {
            assert!(safe.admits(u) && dev.admits(u), "{u}");
        }
        for u in [
            "http://127.0.0.1:8/k",
            "http://[::1]/k",
            "http://localhost/k",
        ] {
            assert!(!safe.admits(u) && dev.admits(u), "{u}");
        }
        for u in [
            "http://localhost.evil.example/k",
            "http://127.0.0.1.evil.example/k",
            "http://10.0.0.1/k",
            "ftp://a.example/k",
            "file:///etc/passwd",
            "https://",
            "not a url",
        ] {
            assert!(!safe.admits(u) && !dev.admits(u), "{u}");
        }
    }
}
