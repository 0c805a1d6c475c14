//! `Origin` and `Host` checks (MCP transports "Security warning",
//! checklist §2(e) "validate Origin … invalid → 403"; §2(f) DNS rebinding).
//! An absent `Origin` is a non-browser client and passes; a present one
//! must be the public URL's origin or configured. On a loopback listener
//! the `Host` must name loopback (or the public URL's host), so a DNS
//! rebinding page cannot reach the gateway under its own name.

use http::HeaderMap;
use http::header::{HOST, ORIGIN};

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Origin,
    Host,
}

/// The host part of a `Host` header value (`h`, `h:port`, `[v6]:port`).
fn host_part(v: &str) -> &str {
    if let Some(rest) = v.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    v.rsplit_once(':').map(|(h, _)| h).unwrap_or(v)
}

fn is_loopback_host(h: &str) -> bool {
    mcpgate_net::is_localhost_name(h)
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(mcpgate_net::ip::is_loopback)
}

pub struct OriginPolicy {
    /// `scheme://host[:port]`, lower-case, as `url::Origin` serialises.
    allowed: Vec<String>,
    public_host: Option<String>,
    loopback_listener: bool,
}

impl OriginPolicy {
    pub fn new(public_url: &str, extra: &[String], loopback_listener: bool) -> Self {
        let parsed = url::Url::parse(public_url).ok();
        let mut allowed: Vec<String> = extra.to_vec();
        if let Some(u) = &parsed {
            allowed.push(u.origin().ascii_serialization());
        }
        let public_host = parsed.and_then(|u| {
            u.host_str()
                .map(|h| h.trim_matches(['[', ']']).to_ascii_lowercase())
        });
        Self {
            allowed,
            public_host,
            loopback_listener,
        }
    }

    pub fn check(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        if self.loopback_listener {
            let host = headers
                .get(HOST)
                .and_then(|v| v.to_str().ok())
                .map(host_part);
            let ok = match host {
                None => true, // HTTP/2 without :authority in Host; nothing to rebind.
                Some(h) => {
                    is_loopback_host(h)
                        || self
                            .public_host
                            .as_deref()
                            .is_some_and(|p| p.eq_ignore_ascii_case(h))
                }
            };
            if !ok {
                return Err(Refusal::Host);
            }
        }
        let origins: Vec<_> = headers.get_all(ORIGIN).iter().collect();
        match origins.as_slice() {
            [] => Ok(()),
            [one] => {
                let o = one.to_str().map_err(|_| Refusal::Origin)?;
                let norm = url::Url::parse(o)
                    .ok()
                    .map(|u| u.origin().ascii_serialization());
                match norm {
                    Some(n) if n != "null" && self.allowed.contains(&n) => Ok(()),
                    _ => Err(Refusal::Origin),
                }
            }
            _ => Err(Refusal::Origin),
        }
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn origin_rules() {
        let p = OriginPolicy::new(
            "http://127.0.0.1:8080",
            &["https://app.example".into()],
            true,
        );
        assert_eq!(p.check(&h(&[("host", "127.0.0.1:8080")])), Ok(()));
        assert_eq!(
            p.check(&h(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:8080")
            ])),
            Ok(())
        );
        assert_eq!(
            p.check(&h(&[
                ("host", "localhost:8080"),
                ("origin", "https://app.example")
            ])),
            Ok(())
        );
        assert_eq!(
            p.check(&h(&[
                ("host", "localhost"),
                ("origin", "https://evil.example")
            ])),
            Err(Refusal::Origin)
        );
        assert_eq!(p.check(&h(&[("origin", "null")])), Err(Refusal::Origin));
        assert_eq!(
            p.check(&h(&[("origin", "http://127.0.0.1:9999")])),
            Err(Refusal::Origin)
        );
    }

    #[test]
    fn host_rules_on_loopback() {
        let p = OriginPolicy::new("http://127.0.0.1:8080", &[], true);
        assert_eq!(
            p.check(&h(&[("host", "evil.example:8080")])),
            Err(Refusal::Host)
        );
        assert_eq!(p.check(&h(&[("host", "[::1]:8080")])), Ok(()));
        assert_eq!(p.check(&h(&[("host", "localhost.")])), Ok(()));
        let proxied = OriginPolicy::new("https://gw.example", &[], true);
        assert_eq!(proxied.check(&h(&[("host", "gw.example")])), Ok(()));
        let public = OriginPolicy::new("https://gw.example", &[], false);
        assert_eq!(public.check(&h(&[("host", "anything")])), Ok(()));
    }
}
