//! Where a request comes from, for per-address limits (RFC 7239 and the
//! de-facto `X-Forwarded-For`): the peer address, or the address the
//! operator's own proxies vouch for. Shared by the authorization server
//! and the gateway, so both count a client the same way.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;

/// The client's IP: the peer address, unless the peer is one of the
/// `trusted` proxies; then `X-Forwarded-For` is read from the right (the
/// hop the nearest proxy appended) and the first address that is not a
/// trusted proxy is the client. What a client writes into the header
/// itself sits to the left of that and is never taken. A hop that is not an
/// address stops the walk at the last address a trusted proxy vouched for.
pub fn client_ip(
    trusted: &[ipnet::IpNet],
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
) -> IpAddr {
    let peer = peer
        .map(|p| p.ip().to_canonical())
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("").split(','))
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            return client;
        };
        client = ip.to_canonical();
        if !is_trusted(&client) {
            return client;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn only_trusted_proxies_are_believed_from_the_right() {
        let trusted: Vec<ipnet::IpNet> = vec![
            "10.0.0.0/8".parse().unwrap(),
            "127.0.0.1/32".parse().unwrap(),
        ];
        let proxy = Some("10.1.2.3:443".parse().unwrap());
        let stranger = Some("203.0.113.9:5000".parse().unwrap());
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // Not from a proxy: the header is the client's own words.
        assert_eq!(
            client_ip(&trusted, stranger, &xff(&["198.51.100.1"])),
            ip("203.0.113.9")
        );
        // From a proxy: the rightmost untrusted hop; a forged left part is ignored.
        let h = xff(&["1.2.3.4, 198.51.100.7"]);
        assert_eq!(client_ip(&trusted, proxy, &h), ip("198.51.100.7"));
        // Through two proxies, and over two header lines.
        let h = xff(&["1.2.3.4", "198.51.100.7, 10.9.9.9"]);
        assert_eq!(client_ip(&trusted, proxy, &h), ip("198.51.100.7"));
        // Garbage stops at the last vouched-for address.
        let h = xff(&["198.51.100.7, not-an-ip, 10.9.9.9"]);
        assert_eq!(client_ip(&trusted, proxy, &h), ip("10.9.9.9"));
        // No header: the proxy itself.
        assert_eq!(
            client_ip(&trusted, proxy, &HeaderMap::new()),
            ip("10.1.2.3")
        );
        // No trusted proxies configured: never read.
        assert_eq!(client_ip(&[], proxy, &h), ip("10.1.2.3"));
        // An IPv4-mapped peer counts as its IPv4 address.
        let mapped = Some("[::ffff:10.1.2.3]:443".parse().unwrap());
        assert_eq!(
            client_ip(&trusted, mapped, &xff(&["198.51.100.7"])),
            ip("198.51.100.7")
        );
    }
}
