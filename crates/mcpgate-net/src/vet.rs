//! Vetting one URL before any connection (MCP Security Best Practices "SSRF", RFC 9728 §7.7,
//! CIMD §6): scheme, userinfo, host, resolution, classification of every address, and the
//! pinned address set the connection is then restricted to.
//!
//! Rules, in order:
//! 1. The URL is parsed by the `url` crate (WHATWG), which normalises every IPv4 notation
//!    (`2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1`, a trailing dot) to an IP host.
//! 2. Scheme `https`; `http` only with [`FetchPolicy::allow_http_loopback`]; nothing else.
//! 3. No userinfo.
//! 4. An IP-literal host is classified directly and never sent to the resolver;
//!    `localhost` / `*.localhost` mean loopback and are never sent to DNS either; any other
//!    name goes to [`Resolve`] once, and every address it returns must pass [`ip::check`]
//!    (an empty answer is refused).
//! 5. Plain `http` additionally requires that every address is loopback.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use url::{Host, Url};

use crate::error::FetchError;
use crate::ip;
use crate::policy::FetchPolicy;
use crate::resolve::{Resolve, is_localhost_name};

/// A URL that passed every check, with the only addresses its connection may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vetted {
    url: Url,
    name: Option<String>,
    addrs: Vec<SocketAddr>,
}

impl Vetted {
    /// The parsed URL the request goes to.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The host name that was resolved, or `None` for an IP-literal host.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The vetted addresses (canonical form: IPv4-mapped IPv6 is turned into IPv4) with the
    /// URL's port; the connection is pinned to these.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }
}

/// Parses `raw` and vets it; see the module docs for the rules.
pub async fn vet(
    raw: &str,
    policy: &FetchPolicy,
    resolver: &dyn Resolve,
) -> Result<Vetted, FetchError> {
    let url = Url::parse(raw).map_err(|_| FetchError::BadUrl("not an absolute URL"))?;
    vet_url(url, policy, resolver).await
}

/// [`vet`] for an already parsed URL (redirect targets).
pub async fn vet_url(
    url: Url,
    policy: &FetchPolicy,
    resolver: &dyn Resolve,
) -> Result<Vetted, FetchError> {
    let plain_http = match url.scheme() {
        "https" => false,
        "http" if policy.allow_http_loopback => true,
        _ => return Err(FetchError::InsecureScheme),
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(FetchError::Userinfo);
    }
    let port = url
        .port_or_known_default()
        .ok_or(FetchError::BadUrl("no port"))?;

    let (name, ips): (Option<String>, Vec<IpAddr>) = match url.host() {
        None => return Err(FetchError::BadUrl("missing host")),
        Some(Host::Ipv4(v4)) => (None, vec![IpAddr::V4(v4)]),
        Some(Host::Ipv6(v6)) => (None, vec![IpAddr::V6(v6)]),
        Some(Host::Domain(domain)) => {
            // The WHATWG parser already turns every IPv4 form into Host::Ipv4 for http(s);
            // this std parse is a belt-and-braces check that an address never reaches DNS.
            let bare = domain.strip_suffix('.').unwrap_or(domain);
            if let Ok(ip) = bare.parse::<IpAddr>() {
                (None, vec![ip])
            } else if is_localhost_name(domain) {
                let lo = vec![
                    IpAddr::V4(Ipv4Addr::LOCALHOST),
                    IpAddr::V6(Ipv6Addr::LOCALHOST),
                ];
                (Some(domain.to_owned()), lo)
            } else {
                let ips = resolver.resolve(domain).await.map_err(|err| {
                    tracing::debug!(host = domain, error = %err, "DNS resolution failed");
                    FetchError::Dns
                })?;
                (Some(domain.to_owned()), ips)
            }
        }
    };
    if ips.is_empty() {
        return Err(FetchError::Dns);
    }
    for &ip in &ips {
        if let Err(reason) = ip::check(ip, policy.allow_http_loopback) {
            tracing::debug!(host = url.host_str(), %ip, reason, "refused outbound destination");
            return Err(FetchError::Forbidden { reason });
        }
    }
    if plain_http && !ips.iter().all(|&ip| ip::is_loopback(ip)) {
        return Err(FetchError::InsecureScheme);
    }

    let mut addrs: Vec<SocketAddr> = Vec::with_capacity(ips.len());
    for ip in ips {
        let addr = SocketAddr::new(ip.to_canonical(), port);
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    Ok(Vetted { url, name, addrs })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::ResolveError;
    use async_trait::async_trait;

    /// Resolves `*.public.test` to a public address and fails everything else.
    struct Fake;

    #[async_trait]
    impl Resolve for Fake {
        async fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
            match host {
                "a.public.test" | "a.public.test." => Ok(vec!["93.184.216.34".parse().unwrap()]),
                "mapped.public.test" => Ok(vec!["::ffff:93.184.216.34".parse().unwrap()]),
                "empty.test" => Ok(vec![]),
                _ => Err(ResolveError("NXDOMAIN".into())),
            }
        }
    }

    async fn v(url: &str) -> Result<Vetted, FetchError> {
        vet(url, &FetchPolicy::default(), &Fake).await
    }

    #[tokio::test]
    async fn public_name_is_pinned_with_port() {
        let t = v("https://a.public.test:8443/x").await.unwrap();
        assert_eq!(t.addrs(), ["93.184.216.34:8443".parse().unwrap()]);
        assert_eq!(t.name(), Some("a.public.test"));
        let t = v("HTTPS://A.PUBLIC.TEST./x").await.unwrap();
        assert_eq!(t.addrs(), ["93.184.216.34:443".parse().unwrap()]);
        assert_eq!(t.name(), Some("a.public.test."));
    }

    #[tokio::test]
    async fn mapped_answers_are_canonicalised() {
        let t = v("https://mapped.public.test/").await.unwrap();
        assert_eq!(t.addrs(), ["93.184.216.34:443".parse().unwrap()]);
    }

    #[tokio::test]
    async fn public_literals_are_not_resolved() {
        let t = v("https://[2606:4700::1]/").await.unwrap();
        assert_eq!(t.name(), None);
        assert_eq!(t.addrs(), ["[2606:4700::1]:443".parse().unwrap()]);
    }

    #[tokio::test]
    async fn basic_refusals() {
        assert_eq!(
            v("not a url").await,
            Err(FetchError::BadUrl("not an absolute URL"))
        );
        assert_eq!(
            v("ftp://a.public.test/").await,
            Err(FetchError::InsecureScheme)
        );
        assert_eq!(
            v("http://a.public.test/").await,
            Err(FetchError::InsecureScheme)
        );
        assert_eq!(
            v("https://u@a.public.test/").await,
            Err(FetchError::Userinfo)
        );
        assert_eq!(
            v("https://u:p@a.public.test/").await,
            Err(FetchError::Userinfo)
        );
        assert_eq!(v("https://nx.test/").await, Err(FetchError::Dns));
        assert_eq!(v("https://empty.test/").await, Err(FetchError::Dns));
    }

    #[tokio::test]
    async fn override_allows_http_only_to_loopback() {
        let p = FetchPolicy::loopback_dev();
        let ok = vet("http://localhost:8080/", &p, &Fake).await.unwrap();
        assert_eq!(ok.addrs().len(), 2);
        assert!(vet("http://127.0.0.1/", &p, &Fake).await.is_ok());
        assert!(vet("http://[::1]/", &p, &Fake).await.is_ok());
        assert_eq!(
            vet("http://a.public.test/", &p, &Fake).await,
            Err(FetchError::InsecureScheme)
        );
        assert_eq!(
            vet("http://93.184.216.34/", &p, &Fake).await,
            Err(FetchError::InsecureScheme)
        );
        assert!(matches!(
            vet("http://10.0.0.1/", &p, &Fake).await,
            Err(FetchError::Forbidden { .. })
        ));
        // https to public stays allowed with the override.
        assert!(vet("https://a.public.test/", &p, &Fake).await.is_ok());
    }
}
