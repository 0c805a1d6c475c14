//! Special-purpose IP address classification for the SSRF guard (MCP Security Best Practices
//! "SSRF", RFC 9728 §7.7, CIMD §6 "SSRF Attacks").
//!
//! The tables below are the single source of truth for which destinations outbound fetches may
//! reach. They follow the IANA IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890 and
//! its updates) plus multicast, and are checked in order: the first matching range wins, so more
//! specific ranges come before the ranges that contain them.
//!
//! Addresses that embed an IPv4 address (IPv4-mapped `::ffff:0:0/96`, IPv4-compatible `::/96`,
//! NAT64 `64:ff9b::/96`) are judged by the embedded IPv4 address. Tunnelling prefixes whose
//! embedded destination cannot be trusted (6to4, Teredo, local-use NAT64) are refused outright.
//! Everything outside the IPv6 global unicast block `2000::/3` is refused as reserved.
//!
//! Nothing here parses IP text: addresses arrive as [`IpAddr`] values produced by the `url`
//! crate (WHATWG host parsing) or by std.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

/// One forbidden IPv4 range and the reason reported when an address falls into it.
#[derive(Debug, Clone, Copy)]
pub struct V4Range {
    /// The range.
    pub net: Ipv4Net,
    /// Human-readable reason, used in [`crate::FetchError::Forbidden`].
    pub reason: &'static str,
}

/// What to do with an IPv6 address inside a special-purpose range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V6Rule {
    /// Refuse the address; `reason` says why.
    Forbidden,
    /// The low 32 bits are an IPv4 address: classify that address. When the embedded address is
    /// allowed, the IPv6 address is allowed too, unless `refuse_if_public` is set, in which case
    /// the range's own reason refuses it anyway.
    EmbedsIpv4 {
        /// Refuse even when the embedded IPv4 address is public.
        refuse_if_public: bool,
    },
}

/// One special-purpose IPv6 range.
#[derive(Debug, Clone, Copy)]
pub struct V6Range {
    /// The range.
    pub net: Ipv6Net,
    /// How addresses in it are judged.
    pub rule: V6Rule,
    /// Human-readable reason, used in [`crate::FetchError::Forbidden`].
    pub reason: &'static str,
}

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8, reason: &'static str) -> V4Range {
    V4Range {
        net: Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len),
        reason,
    }
}

const fn v6(segs: [u16; 8], len: u8, rule: V6Rule, reason: &'static str) -> V6Range {
    let [a, b, c, d, e, f, g, h] = segs;
    V6Range {
        net: Ipv6Net::new_assert(Ipv6Addr::new(a, b, c, d, e, f, g, h), len),
        rule,
        reason,
    }
}

const FORBID: V6Rule = V6Rule::Forbidden;

/// Forbidden IPv4 ranges, most specific first (IANA IPv4 Special-Purpose Address Registry,
/// plus multicast and broadcast).
pub const IPV4_FORBIDDEN: &[V4Range] = &[
    v4(0, 0, 0, 0, 8, "\"this network\" address (0.0.0.0/8)"),
    v4(10, 0, 0, 0, 8, "private network (10.0.0.0/8)"),
    v4(
        100,
        64,
        0,
        0,
        10,
        "shared address space / CGNAT (100.64.0.0/10)",
    ),
    v4(127, 0, 0, 0, 8, "loopback (127.0.0.0/8)"),
    v4(
        169,
        254,
        169,
        254,
        32,
        "cloud metadata endpoint (169.254.169.254)",
    ),
    v4(169, 254, 0, 0, 16, "link-local (169.254.0.0/16)"),
    v4(172, 16, 0, 0, 12, "private network (172.16.0.0/12)"),
    v4(192, 0, 0, 0, 24, "IETF protocol assignments (192.0.0.0/24)"),
    v4(192, 0, 2, 0, 24, "documentation TEST-NET-1 (192.0.2.0/24)"),
    v4(
        192,
        88,
        99,
        0,
        24,
        "deprecated 6to4 relay anycast (192.88.99.0/24)",
    ),
    v4(192, 168, 0, 0, 16, "private network (192.168.0.0/16)"),
    v4(198, 18, 0, 0, 15, "benchmarking (198.18.0.0/15)"),
    v4(
        198,
        51,
        100,
        0,
        24,
        "documentation TEST-NET-2 (198.51.100.0/24)",
    ),
    v4(
        203,
        0,
        113,
        0,
        24,
        "documentation TEST-NET-3 (203.0.113.0/24)",
    ),
    v4(224, 0, 0, 0, 4, "multicast (224.0.0.0/4)"),
    v4(
        255,
        255,
        255,
        255,
        32,
        "limited broadcast (255.255.255.255)",
    ),
    v4(240, 0, 0, 0, 4, "reserved (240.0.0.0/4)"),
];

/// Special-purpose IPv6 ranges, most specific first (IANA IPv6 Special-Purpose Address
/// Registry, plus deprecated site-local and multicast). Addresses outside
/// [`IPV6_GLOBAL_UNICAST`] that match nothing here are refused as reserved.
pub const IPV6_SPECIAL: &[V6Range] = &[
    v6(
        [0, 0, 0, 0, 0, 0, 0, 0],
        128,
        FORBID,
        "unspecified address (::/128)",
    ),
    v6([0, 0, 0, 0, 0, 0, 0, 1], 128, FORBID, "loopback (::1)"),
    v6(
        [0, 0, 0, 0, 0, 0xffff, 0, 0],
        96,
        V6Rule::EmbedsIpv4 {
            refuse_if_public: false,
        },
        "IPv4-mapped IPv6 address (::ffff:0:0/96)",
    ),
    v6(
        [0, 0, 0, 0, 0, 0, 0, 0],
        96,
        V6Rule::EmbedsIpv4 {
            refuse_if_public: true,
        },
        "deprecated IPv4-compatible IPv6 address (::/96)",
    ),
    v6(
        [0x64, 0xff9b, 0, 0, 0, 0, 0, 0],
        96,
        V6Rule::EmbedsIpv4 {
            refuse_if_public: false,
        },
        "NAT64 well-known prefix (64:ff9b::/96)",
    ),
    v6(
        [0x64, 0xff9b, 1, 0, 0, 0, 0, 0],
        48,
        FORBID,
        "local-use NAT64 prefix (64:ff9b:1::/48)",
    ),
    v6(
        [0x100, 0, 0, 0, 0, 0, 0, 0],
        64,
        FORBID,
        "discard-only prefix (100::/64)",
    ),
    v6(
        [0x100, 0, 0, 1, 0, 0, 0, 0],
        64,
        FORBID,
        "dummy IPv6 prefix (100:0:0:1::/64)",
    ),
    v6(
        [0x2001, 0, 0, 0, 0, 0, 0, 0],
        32,
        FORBID,
        "Teredo tunnelling (2001::/32); the embedded IPv4 destination cannot be vetted",
    ),
    v6(
        [0x2001, 0, 0, 0, 0, 0, 0, 0],
        23,
        FORBID,
        "IETF protocol assignments (2001::/23)",
    ),
    v6(
        [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0],
        32,
        FORBID,
        "documentation (2001:db8::/32)",
    ),
    v6(
        [0x2002, 0, 0, 0, 0, 0, 0, 0],
        16,
        FORBID,
        "6to4 tunnelling (2002::/16); the embedded IPv4 destination cannot be vetted",
    ),
    v6(
        [0x3fff, 0, 0, 0, 0, 0, 0, 0],
        20,
        FORBID,
        "documentation (3fff::/20)",
    ),
    v6(
        [0x5f00, 0, 0, 0, 0, 0, 0, 0],
        16,
        FORBID,
        "segment routing SIDs (5f00::/16)",
    ),
    v6(
        [0xfc00, 0, 0, 0, 0, 0, 0, 0],
        7,
        FORBID,
        "unique local address (fc00::/7)",
    ),
    v6(
        [0xfe80, 0, 0, 0, 0, 0, 0, 0],
        10,
        FORBID,
        "link-local (fe80::/10)",
    ),
    v6(
        [0xfec0, 0, 0, 0, 0, 0, 0, 0],
        10,
        FORBID,
        "deprecated site-local (fec0::/10)",
    ),
    v6(
        [0xff00, 0, 0, 0, 0, 0, 0, 0],
        8,
        FORBID,
        "multicast (ff00::/8)",
    ),
];

/// The IPv6 global unicast block; anything outside it (and not allowed through an embedded
/// IPv4 rule above) is unallocated or reserved.
pub const IPV6_GLOBAL_UNICAST: Ipv6Net =
    Ipv6Net::new_assert(Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3);

const RESERVED_V6: &str = "reserved IPv6 address (outside global unicast 2000::/3)";

/// Why `ip` must not be contacted, or `None` when it is an ordinary public unicast address.
///
/// ```
/// use std::net::IpAddr;
/// use mcpgate_net::ip::classify;
/// let meta: IpAddr = "169.254.169.254".parse().unwrap();
/// assert!(classify(meta).is_some());
/// let public: IpAddr = "93.184.216.34".parse().unwrap();
/// assert_eq!(classify(public), None);
/// ```
pub fn classify(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// [`classify`] for IPv4.
pub fn classify_v4(ip: Ipv4Addr) -> Option<&'static str> {
    IPV4_FORBIDDEN
        .iter()
        .find(|r| r.net.contains(&ip))
        .map(|r| r.reason)
}

/// [`classify`] for IPv6; addresses embedding IPv4 are judged by the embedded address.
pub fn classify_v6(ip: Ipv6Addr) -> Option<&'static str> {
    // IPv4-mapped addresses are the classic bypass; std knows the exact form.
    if let Some(mapped) = ip.to_ipv4_mapped() {
        return classify_v4(mapped);
    }
    match IPV6_SPECIAL.iter().find(|r| r.net.contains(&ip)) {
        Some(range) => match range.rule {
            V6Rule::Forbidden => Some(range.reason),
            V6Rule::EmbedsIpv4 { refuse_if_public } => {
                let o = ip.octets();
                let embedded = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
                match classify_v4(embedded) {
                    Some(reason) => Some(reason),
                    None if refuse_if_public => Some(range.reason),
                    None => None,
                }
            }
        },
        None if IPV6_GLOBAL_UNICAST.contains(&ip) => None,
        None => Some(RESERVED_V6),
    }
}

/// Whether `ip` is a loopback address (`127.0.0.0/8`, `::1`, or IPv4-mapped loopback), the only
/// addresses the development override [`crate::FetchPolicy::allow_http_loopback`] opens.
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback(),
    }
}

/// Applies the policy: `Ok(())` when `ip` may be contacted, the refusal reason otherwise.
/// With `allow_loopback`, loopback addresses pass; every other special range stays refused.
pub fn check(ip: IpAddr, allow_loopback: bool) -> Result<(), &'static str> {
    match classify(ip) {
        None => Ok(()),
        Some(_) if allow_loopback && is_loopback(ip) => Ok(()),
        Some(reason) => Err(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Option<&'static str> {
        classify(s.parse().unwrap())
    }

    #[test]
    fn public_addresses_are_allowed() {
        for ok in [
            "93.184.216.34",
            "8.8.8.8",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.1",
            "192.169.0.1",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2606:4700::1",
            "2a00:1450:4001:80b::200e",
            "2001:4860:4860::8888",
            "2620:fe::fe",
            "64:ff9b::808:808", // NAT64 of a public address
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(c(ok), None, "{ok} should be allowed");
        }
    }

    #[test]
    fn every_ipv4_range_is_refused() {
        let cases = [
            ("0.0.0.0", "this network"),
            ("0.1.2.3", "this network"),
            ("10.0.0.1", "10.0.0.0/8"),
            ("10.255.255.255", "10.0.0.0/8"),
            ("100.64.0.1", "CGNAT"),
            ("100.127.255.254", "CGNAT"),
            ("127.0.0.1", "loopback"),
            ("127.255.255.254", "loopback"),
            ("169.254.169.254", "metadata"),
            ("169.254.0.1", "link-local"),
            ("172.16.0.1", "172.16.0.0/12"),
            ("172.31.255.255", "172.16.0.0/12"),
            ("192.0.0.8", "IETF"),
            ("192.0.2.1", "TEST-NET-1"),
            ("192.88.99.1", "6to4"),
            ("192.168.1.1", "192.168.0.0/16"),
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.255", "benchmarking"),
            ("198.51.100.7", "TEST-NET-2"),
            ("203.0.113.9", "TEST-NET-3"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("240.0.0.1", "reserved"),
            ("255.255.255.255", "broadcast"),
        ];
        for (ip, want) in cases {
            let reason = c(ip).unwrap_or_else(|| panic!("{ip} must be refused"));
            assert!(reason.contains(want), "{ip}: {reason:?} lacks {want:?}");
        }
    }

    #[test]
    fn every_ipv6_range_is_refused() {
        let cases = [
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("fc00::1", "unique local"),
            ("fd12:3456::1", "unique local"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("fec0::1", "site-local"),
            ("ff02::1", "multicast"),
            ("100::1", "discard"),
            ("100:0:0:1::1", "dummy"),
            ("2001::1", "Teredo"),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
            ("2001:2::1", "IETF protocol"),
            ("2001:10::1", "IETF protocol"),
            ("2001:db8::1", "documentation"),
            ("3fff::1", "documentation"),
            ("2002:c0a8:101::1", "6to4"),
            ("2002:808:808::1", "6to4"),
            ("5f00::1", "segment routing"),
            ("64:ff9b:1::a00:1", "local-use NAT64"),
            ("4000::1", "reserved"),
            ("1::1", "reserved"),
        ];
        for (ip, want) in cases {
            let reason = c(ip).unwrap_or_else(|| panic!("{ip} must be refused"));
            assert!(reason.contains(want), "{ip}: {reason:?} lacks {want:?}");
        }
    }

    #[test]
    fn embedded_ipv4_is_classified() {
        // IPv4-mapped: judged by the IPv4 address.
        assert!(c("::ffff:127.0.0.1").unwrap().contains("loopback"));
        assert!(c("::ffff:7f00:1").unwrap().contains("loopback"));
        assert!(c("::ffff:169.254.169.254").unwrap().contains("metadata"));
        assert!(c("::ffff:10.0.0.1").unwrap().contains("10.0.0.0/8"));
        // IPv4-compatible: embedded reason when forbidden, refused as deprecated otherwise.
        assert!(c("::127.0.0.1").unwrap().contains("loopback"));
        assert!(c("::a00:1").unwrap().contains("10.0.0.0/8"));
        assert!(c("::8.8.8.8").unwrap().contains("IPv4-compatible"));
        // NAT64 well-known prefix.
        assert!(c("64:ff9b::a00:1").unwrap().contains("10.0.0.0/8"));
        assert!(c("64:ff9b::a9fe:a9fe").unwrap().contains("metadata"));
        assert!(c("64:ff9b::7f00:1").unwrap().contains("loopback"));
    }

    #[test]
    fn loopback_override_opens_only_loopback() {
        let ok = |s: &str| check(s.parse().unwrap(), true);
        assert_eq!(ok("127.0.0.1"), Ok(()));
        assert_eq!(ok("127.1.2.3"), Ok(()));
        assert_eq!(ok("::1"), Ok(()));
        assert_eq!(ok("::ffff:127.0.0.1"), Ok(()));
        for refused in [
            "10.0.0.1",
            "169.254.169.254",
            "192.168.0.1",
            "0.0.0.0",
            "::",
            "fe80::1",
            "fd00::1",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
        ] {
            assert!(ok(refused).is_err(), "{refused} must stay refused");
        }
        assert!(check("127.0.0.1".parse().unwrap(), false).is_err());
        assert!(check("::1".parse().unwrap(), false).is_err());
    }

    #[test]
    fn tables_are_ordered_most_specific_first() {
        // A range listed after a range that contains it would be unreachable.
        for (i, later) in IPV4_FORBIDDEN.iter().enumerate() {
            for earlier in &IPV4_FORBIDDEN[..i] {
                assert!(
                    !earlier.net.contains(&later.net),
                    "{} shadows {}",
                    earlier.net,
                    later.net
                );
            }
        }
        for (i, later) in IPV6_SPECIAL.iter().enumerate() {
            for earlier in &IPV6_SPECIAL[..i] {
                assert!(
                    !earlier.net.contains(&later.net),
                    "{} shadows {}",
                    earlier.net,
                    later.net
                );
            }
        }
    }
}
