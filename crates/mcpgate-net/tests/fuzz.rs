//! Fuzzing of the SSRF guard with proptest (issue 15, "Proof"): the address classifier
//! ([`mcpgate_net::ip`]) and URL vetting ([`mcpgate_net::vet`]).
//!
//! Properties:
//! - an IPv4 address and every IPv6 form that embeds it (IPv4-mapped, NAT64, IPv4-compatible)
//!   are judged alike: refused when the IPv4 address is, never allowed through an embedding;
//! - whatever std calls private, loopback, link-local, multicast, broadcast, documentation,
//!   unspecified or unique-local is refused, as is every IPv6 address outside `2000::/3`;
//! - a URL whose host is an IP literal, written in any notation the WHATWG parser accepts
//!   (decimal, hex, octal, one to four parts, a trailing dot, upper case, percent-encoding,
//!   full-width digits and ideographic dots, bracketed IPv6 forms), gets exactly the verdict of
//!   the address it denotes, and never reaches the resolver;
//! - a name is allowed only when every address the resolver returns is allowed;
//! - arbitrary text never panics, and whatever passes is https without userinfo and pinned to
//!   allowed addresses only.
//!
//! `PROPTEST_CASES` overrides the per-property case counts below.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use async_trait::async_trait;
use mcpgate_fuzzkit::config;
use mcpgate_net::ip::{self, IPV4_FORBIDDEN, classify, classify_v4, classify_v6};
use mcpgate_net::{FetchError, FetchPolicy, Resolve, ResolveError, Vetted, vet};
use proptest::prelude::*;

/// A resolver with fixed answers that records every question.
#[derive(Default)]
struct Fake {
    answers: HashMap<String, Vec<IpAddr>>,
    asked: Mutex<Vec<String>>,
}

#[async_trait]
impl Resolve for Fake {
    async fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        self.asked.lock().unwrap().push(host.to_owned());
        self.answers
            .get(host)
            .cloned()
            .ok_or_else(|| ResolveError("NXDOMAIN".into()))
    }
}

/// Runs `vet` to completion. With the fake resolver nothing ever waits, so one poll must do:
/// a vetting that does not finish at once would be a hang.
fn vet_now(raw: &str, policy: &FetchPolicy, resolver: &Fake) -> Result<Vetted, FetchError> {
    let mut fut = std::pin::pin!(vet(raw, policy, resolver));
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(r) => r,
        Poll::Pending => panic!("vetting {raw:?} did not complete"),
    }
}

/// The verdict a URL must get for a literal address under the default policy.
fn verdict(ip: IpAddr) -> Result<(), &'static str> {
    ip::check(ip, false)
}

/// An IPv4 address, biased towards the forbidden ranges and their edges.
fn ipv4() -> impl Strategy<Value = Ipv4Addr> {
    let in_range = (0..IPV4_FORBIDDEN.len(), any::<u32>()).prop_map(|(i, bits)| {
        let net = IPV4_FORBIDDEN[i].net;
        let host_mask = !u32::from(net.netmask());
        Ipv4Addr::from(u32::from(net.network()) | (bits & host_mask))
    });
    let edge = (0..IPV4_FORBIDDEN.len(), any::<bool>()).prop_map(|(i, below)| {
        let net = IPV4_FORBIDDEN[i].net;
        let n = if below {
            u32::from(net.network()).wrapping_sub(1)
        } else {
            u32::from(net.broadcast()).wrapping_add(1)
        };
        Ipv4Addr::from(n)
    });
    prop_oneof![
        3 => in_range,
        2 => edge,
        3 => any::<u32>().prop_map(Ipv4Addr::from),
    ]
}

/// An IPv6 address, biased towards special prefixes.
fn ipv6() -> impl Strategy<Value = Ipv6Addr> {
    let prefixes: Vec<u128> = vec![
        0,
        0xffff_0000_0000,
        0x0064_ff9b_0000_0000_0000_0000_0000_0000,
        0x0064_ff9b_0001_0000_0000_0000_0000_0000,
        0x0100_0000_0000_0000_0000_0000_0000_0000,
        0x2001_0000_0000_0000_0000_0000_0000_0000,
        0x2001_0db8_0000_0000_0000_0000_0000_0000,
        0x2002_0000_0000_0000_0000_0000_0000_0000,
        0x3fff_0000_0000_0000_0000_0000_0000_0000,
        0x5f00_0000_0000_0000_0000_0000_0000_0000,
        0xfc00_0000_0000_0000_0000_0000_0000_0000,
        0xfe80_0000_0000_0000_0000_0000_0000_0000,
        0xfec0_0000_0000_0000_0000_0000_0000_0000,
        0xff00_0000_0000_0000_0000_0000_0000_0000,
        0x2606_4700_0000_0000_0000_0000_0000_0000,
    ];
    let near = (proptest::sample::select(prefixes), 0u32..=96, any::<u128>()).prop_map(
        |(prefix, free, bits)| {
            // Keep the top bits of the prefix, randomise the rest.
            let mask = if free == 0 {
                0
            } else {
                u128::MAX >> (128 - free)
            };
            Ipv6Addr::from((prefix & !mask) | (bits & mask))
        },
    );
    prop_oneof![3 => near, 1 => any::<u128>().prop_map(Ipv6Addr::from)]
}

#[derive(Debug, Clone, Copy)]
enum Radix {
    Dec,
    Hex { upper: bool },
    Oct,
}

fn radix() -> impl Strategy<Value = Radix> {
    prop_oneof![
        Just(Radix::Dec),
        any::<bool>().prop_map(|upper| Radix::Hex { upper }),
        Just(Radix::Oct),
    ]
}

fn number(n: u32, r: Radix) -> String {
    match r {
        Radix::Dec => n.to_string(),
        Radix::Hex { upper: false } => format!("0x{n:x}"),
        Radix::Hex { upper: true } => format!("0X{n:X}"),
        Radix::Oct => format!("0{n:o}"),
    }
}

/// How an IPv4 host is spelled in a URL.
#[derive(Debug, Clone)]
struct V4Spelling {
    /// 1 to 4 parts (WHATWG: the last part fills the remaining bytes).
    parts: usize,
    radixes: Vec<Radix>,
    trailing_dot: bool,
    /// Percent-encode the host bytes selected by these bits.
    percent: u64,
    /// Full-width digits (U+FF10..) and ideographic full stops (U+3002), which IDNA maps.
    wide: bool,
}

fn v4_spelling() -> impl Strategy<Value = V4Spelling> {
    (
        1usize..=4,
        proptest::collection::vec(radix(), 4),
        any::<bool>(),
        prop_oneof![3 => Just(0u64), 1 => any::<u64>()],
        proptest::bool::weighted(0.2),
    )
        .prop_map(|(parts, radixes, trailing_dot, percent, wide)| V4Spelling {
            parts,
            radixes,
            trailing_dot,
            percent,
            wide,
        })
}

fn spell_v4(ip: Ipv4Addr, s: &V4Spelling) -> String {
    let o = ip.octets();
    let n = u32::from(ip);
    let numbers: Vec<u32> = match s.parts {
        1 => vec![n],
        2 => vec![o[0].into(), n & 0x00ff_ffff],
        3 => vec![o[0].into(), o[1].into(), n & 0xffff],
        _ => o.iter().map(|b| u32::from(*b)).collect(),
    };
    let mut host = numbers
        .iter()
        .zip(&s.radixes)
        .map(|(n, r)| number(*n, *r))
        .collect::<Vec<_>>()
        .join(".");
    if s.trailing_dot {
        host.push('.');
    }
    if s.wide {
        return host
            .chars()
            .map(|c| match c {
                '0'..='9' => char::from_u32(0xff10 + (c as u32 - '0' as u32)).unwrap(),
                '.' => '\u{3002}',
                c => c,
            })
            .collect();
    }
    host.bytes()
        .enumerate()
        .map(|(i, b)| {
            if s.percent & (1 << (i % 64)) != 0 {
                format!("%{b:02X}")
            } else {
                (b as char).to_string()
            }
        })
        .collect()
}

/// Bracketed IPv6 spellings of an IPv4 address: mapped (dotted or hex), NAT64, compatible.
fn v6_embeddings(ip: Ipv4Addr) -> Vec<(String, IpAddr)> {
    let [a, b, c, d] = ip.octets();
    let hi = u16::from_be_bytes([a, b]);
    let lo = u16::from_be_bytes([c, d]);
    let nat64 = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, hi, lo);
    let compat = Ipv6Addr::new(0, 0, 0, 0, 0, 0, hi, lo);
    vec![
        (format!("[::ffff:{ip}]"), IpAddr::V6(ip.to_ipv6_mapped())),
        (
            format!("[::FFFF:{hi:X}:{lo:x}]"),
            IpAddr::V6(ip.to_ipv6_mapped()),
        ),
        (
            format!("[0:0:0:0:0:ffff:{a}.{b}.{c}.{d}]"),
            IpAddr::V6(ip.to_ipv6_mapped()),
        ),
        (format!("[64:ff9b::{ip}]"), IpAddr::V6(nat64)),
        (format!("[::{hi:x}:{lo:x}]"), IpAddr::V6(compat)),
    ]
}

fn url_around(host: &str, scheme_upper: bool, port: Option<u16>, path: &str) -> String {
    let scheme = if scheme_upper { "HTTPS" } else { "https" };
    match port {
        Some(p) => format!("{scheme}://{host}:{p}/{path}"),
        None => format!("{scheme}://{host}/{path}"),
    }
}

fn path() -> impl Strategy<Value = String> {
    "[a-z0-9/._~-]{0,12}"
}

proptest! {
    #![proptest_config(config(4096))]

    /// Every IPv6 form that embeds an IPv4 address is at least as strict as the address.
    #[test]
    fn embedded_ipv4_never_loosens(v4 in ipv4()) {
        let direct = classify_v4(v4);
        let [a, b, c, d] = v4.octets();
        let (hi, lo) = (u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]));
        // IPv4-mapped: judged exactly as the address.
        prop_assert_eq!(classify_v6(v4.to_ipv6_mapped()), direct);
        prop_assert_eq!(classify(IpAddr::V6(v4.to_ipv6_mapped())), direct);
        // NAT64 well-known prefix: the same verdict (a refusal may name either reason).
        let nat64 = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, hi, lo);
        prop_assert_eq!(classify_v6(nat64).is_some(), direct.is_some());
        // IPv4-compatible and the local-use NAT64 prefix: always refused.
        prop_assert!(classify_v6(Ipv6Addr::new(0, 0, 0, 0, 0, 0, hi, lo)).is_some());
        prop_assert!(classify_v6(Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, hi, lo)).is_some());
        // The loopback override opens nothing but loopback.
        if ip::check(IpAddr::V4(v4), true).is_ok() && direct.is_some() {
            prop_assert!(v4.is_loopback());
        }
    }

    /// What std knows to be special is refused.
    #[test]
    fn std_special_ipv4_is_refused(v4 in ipv4()) {
        let special = v4.is_private()
            || v4.is_loopback()
            || v4.is_link_local()
            || v4.is_multicast()
            || v4.is_broadcast()
            || v4.is_documentation()
            || v4.is_unspecified()
            || v4.octets()[0] == 0
            || v4.octets()[0] >= 240;
        if special {
            prop_assert!(classify_v4(v4).is_some(), "{} allowed", v4);
        }
    }

    #[test]
    fn std_special_ipv6_is_refused(v6 in ipv6()) {
        let seg0 = v6.segments()[0];
        let global_unicast = (0x2000..0x4000).contains(&seg0);
        let embeds_v4 = v6.to_ipv4_mapped().is_some()
            || v6.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
        let special = v6.is_loopback()
            || v6.is_unspecified()
            || v6.is_multicast()
            || v6.is_unique_local()
            || v6.is_unicast_link_local()
            || (!global_unicast && !embeds_v4);
        if special {
            prop_assert!(classify_v6(v6).is_some(), "{} allowed", v6);
        }
        // The loopback override opens only ::1 and mapped 127/8.
        if classify_v6(v6).is_some() && ip::check(IpAddr::V6(v6), true).is_ok() {
            prop_assert!(ip::is_loopback(IpAddr::V6(v6)));
        }
    }

    /// An IPv4 literal in any WHATWG notation gets its address's verdict, without DNS.
    #[test]
    fn ipv4_literal_spellings_agree(
        v4 in ipv4(),
        spelling in v4_spelling(),
        upper in any::<bool>(),
        port in proptest::option::of(1u16..),
        path in path(),
    ) {
        let host = spell_v4(v4, &spelling);
        let url = url_around(&host, upper, port, &path);
        let resolver = Fake::default();
        let got = vet_now(&url, &FetchPolicy::default(), &resolver);
        prop_assert!(resolver.asked.lock().unwrap().is_empty(), "{} was resolved", url);
        match (verdict(IpAddr::V4(v4)), got) {
            (Ok(()), Ok(v)) => {
                let want = SocketAddr::new(IpAddr::V4(v4), port.unwrap_or(443));
                prop_assert_eq!(v.addrs(), &[want][..], "{}", url);
            }
            (Err(reason), Err(FetchError::Forbidden { reason: got })) => {
                prop_assert_eq!(reason, got, "{}", url);
            }
            (want, got) => prop_assert!(false, "{}: want {:?}, got {:?}", url, want, got),
        }
    }

    /// Bracketed IPv6 forms of an IPv4 address, and arbitrary IPv6 literals.
    #[test]
    fn ipv6_literals_agree(v4 in ipv4(), v6 in ipv6(), port in proptest::option::of(1u16..)) {
        let mut forms: Vec<(String, IpAddr, bool)> = v6_embeddings(v4)
            .into_iter()
            .map(|(host, addr)| (host, addr, true))
            .collect();
        forms.push((format!("[{v6}]"), IpAddr::V6(v6), false));
        forms.push((format!("[{}]", v6.to_string().to_uppercase()), IpAddr::V6(v6), false));
        for (host, addr, embeds_v4) in forms {
            let url = url_around(&host, false, port, "x");
            let resolver = Fake::default();
            let got = vet_now(&url, &FetchPolicy::default(), &resolver);
            prop_assert!(resolver.asked.lock().unwrap().is_empty());
            match (verdict(addr), &got) {
                (Ok(()), Ok(v)) => {
                    let want = SocketAddr::new(addr.to_canonical(), port.unwrap_or(443));
                    prop_assert_eq!(v.addrs(), &[want][..], "{}", url);
                }
                (Err(_), Err(FetchError::Forbidden { .. })) => {}
                (want, got) => prop_assert!(false, "{}: want {:?}, got {:?}", url, want, got),
            }
            // An embedding never passes where the address it carries is refused.
            if embeds_v4 && classify_v4(v4).is_some() {
                prop_assert!(got.is_err(), "{} allowed", url);
            }
        }
    }

    /// The loopback development override: plain http only to loopback, nothing else opened.
    #[test]
    fn http_override_opens_only_loopback(v4 in ipv4(), spelling in v4_spelling()) {
        let url = format!("http://{}/", spell_v4(v4, &spelling));
        let got = vet_now(&url, &FetchPolicy::loopback_dev(), &Fake::default());
        prop_assert_eq!(got.is_ok(), v4.is_loopback(), "{}: {:?}", url, got);
        let strict = vet_now(&url, &FetchPolicy::default(), &Fake::default());
        prop_assert!(strict.is_err());
    }

    /// A name passes only when every address it resolves to does; localhost never asks DNS.
    #[test]
    fn names_pass_only_with_all_addresses_allowed(
        // An `xn--` label is an IDNA A-label that must decode; the URL
        // parser refuses most random ones, which is not what this checks.
        label in "[a-z][a-z0-9-]{0,10}".prop_filter("not an A-label", |l| !l.starts_with("xn--")),
        answer in proptest::collection::vec(
            prop_oneof![ipv4().prop_map(IpAddr::V4), ipv6().prop_map(IpAddr::V6)],
            0..4,
        ),
        dot in any::<bool>(),
        upper in any::<bool>(),
    ) {
        let name = format!("{label}.example.test");
        let resolver = Fake {
            answers: HashMap::from([(name.clone(), answer.clone())]),
            ..Fake::default()
        };
        let mut host = if upper { name.to_uppercase() } else { name.clone() };
        if dot {
            host.push('.');
        }
        let got = vet_now(&format!("https://{host}/"), &FetchPolicy::default(), &resolver);
        let all_ok = !answer.is_empty() && answer.iter().all(|ip| verdict(*ip).is_ok());
        if dot {
            // The trailing dot is kept and the fake knows only the dotless name.
            prop_assert_eq!(got, Err(FetchError::Dns));
        } else {
            prop_assert_eq!(got.is_ok(), all_ok, "{:?}: {:?}", answer, got);
            if let Ok(v) = got {
                prop_assert!(v.addrs().iter().all(|a| verdict(a.ip()).is_ok()));
            }
        }

        for local in ["localhost", "LOCALHOST.", &format!("{label}.localhost")] {
            let resolver = Fake::default();
            let got = vet_now(&format!("https://{local}/"), &FetchPolicy::default(), &resolver);
            prop_assert!(matches!(got, Err(FetchError::Forbidden { .. })), "{}: {:?}", local, got);
            prop_assert!(resolver.asked.lock().unwrap().is_empty());
        }
    }
}

proptest! {
    #![proptest_config(config(2048))]

    /// Arbitrary text and mangled URLs: no panic; whatever passes is safe.
    #[test]
    fn arbitrary_urls_never_pass_unsafely(raw in prop_oneof![
        ".{0,64}",
        "(https?|HTTPS|ftp|file|javascript):[/\\\\]{0,3}[a-zA-Z0-9@:%._\\[\\]~-]{0,40}(/.{0,10})?",
        (ipv4(), v4_spelling(), ".{0,4}").prop_map(|(ip, s, junk)| {
            format!("https://{}{junk}/", spell_v4(ip, &s))
        }),
    ]) {
        let resolver = Fake {
            answers: HashMap::from([
                ("public.test".to_owned(), vec![IpAddr::from([93, 184, 216, 34])]),
                ("private.test".to_owned(), vec![IpAddr::from([10, 0, 0, 1])]),
            ]),
            ..Fake::default()
        };
        if let Ok(v) = vet_now(&raw, &FetchPolicy::default(), &resolver) {
            prop_assert_eq!(v.url().scheme(), "https");
            prop_assert!(v.url().username().is_empty() && v.url().password().is_none());
            prop_assert!(!v.addrs().is_empty());
            for a in v.addrs() {
                prop_assert!(verdict(a.ip()).is_ok(), "{}: {}", raw, a);
            }
        }
    }
}
