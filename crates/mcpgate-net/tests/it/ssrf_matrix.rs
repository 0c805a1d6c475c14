//! The SSRF matrix: every special-purpose range, every embedding and numeric notation, trailing
//! dots, userinfo, schemes, and names that resolve to forbidden addresses. Each case must be
//! refused before any connection. Stage 1 vets every case without IO (besides the fake
//! resolver); only when all are refused does stage 2 run the full `get`, after which the
//! counting listener (the target of every loopback form) must have accepted nothing.

use std::sync::Arc;

use mcpgate_net::{FetchError, FetchPolicy};

use crate::support::{FakeResolver, Server, fetcher};

#[derive(Debug, Clone, Copy)]
enum Expect {
    /// `Forbidden` with a reason containing this text.
    Forbidden(&'static str),
    Scheme,
    Userinfo,
    BadUrl,
    Dns,
}

fn matches(expect: Expect, got: &FetchError) -> bool {
    match (expect, got) {
        (Expect::Forbidden(want), FetchError::Forbidden { reason }) => reason.contains(want),
        (Expect::Scheme, FetchError::InsecureScheme)
        | (Expect::Userinfo, FetchError::Userinfo)
        | (Expect::BadUrl, FetchError::BadUrl(_))
        | (Expect::Dns, FetchError::Dns) => true,
        _ => false,
    }
}

fn resolver() -> FakeResolver {
    FakeResolver::new()
        .with("public.test", &["93.184.216.34"])
        .with("metadata.test", &["169.254.169.254"])
        .with("internal.test", &["10.0.0.1"])
        .with("mixed.test", &["93.184.216.34", "10.0.0.1"])
        .with(
            "mixed-late.test",
            &["93.184.216.34", "2606:4700::1", "192.168.0.10"],
        )
        .with("mixed6.test", &["2606:4700::1", "fd00::1"])
        .with("imds6.test", &["fd00:ec2::254"])
        .with("mapped.test", &["::ffff:10.0.0.1"])
        .with("nat64.test", &["64:ff9b::a9fe:a9fe"])
        .with("loop.test", &["127.0.0.1"])
        .with("loop6.test", &["::1"])
        .with("trailing.test.", &["127.0.0.1"])
        .with("zero.test", &["0.0.0.0"])
        .with("cgnat.test", &["100.100.100.200"])
        .with("empty.test", &[])
}

/// (policy is the loopback development override, url, expectation)
fn cases(p: u16) -> Vec<(bool, String, Expect)> {
    use Expect::*;
    let s = |dev: bool, url: &str, e: Expect| (dev, url.replace("{p}", &p.to_string()), e);
    vec![
        // IPv4 special-purpose ranges as literals.
        s(false, "https://0.0.0.0:{p}/", Forbidden("this network")),
        s(false, "https://10.0.0.1/api", Forbidden("10.0.0.0/8")),
        s(false, "https://172.16.0.1/", Forbidden("172.16.0.0/12")),
        s(false, "https://172.31.255.254/", Forbidden("172.16.0.0/12")),
        s(
            false,
            "https://192.168.1.1/admin",
            Forbidden("192.168.0.0/16"),
        ),
        s(false, "https://100.64.0.1/", Forbidden("CGNAT")),
        s(false, "https://127.0.0.1:{p}/", Forbidden("loopback")),
        s(false, "https://127.0.0.2:{p}/", Forbidden("loopback")),
        s(
            false,
            "https://169.254.169.254/latest/meta-data",
            Forbidden("metadata"),
        ),
        s(false, "https://169.254.1.1/", Forbidden("link-local")),
        s(false, "https://192.0.0.8/", Forbidden("IETF protocol")),
        s(false, "https://192.0.2.1/", Forbidden("TEST-NET-1")),
        s(false, "https://198.51.100.1/", Forbidden("TEST-NET-2")),
        s(false, "https://203.0.113.1/", Forbidden("TEST-NET-3")),
        s(false, "https://198.18.0.1/", Forbidden("benchmarking")),
        s(false, "https://224.0.0.1/", Forbidden("multicast")),
        s(false, "https://240.0.0.1/", Forbidden("reserved")),
        s(false, "https://255.255.255.255/", Forbidden("broadcast")),
        // Numeric notations, normalised by the WHATWG parser.
        s(false, "https://2130706433:{p}/", Forbidden("loopback")),
        s(false, "https://0177.0.0.1:{p}/", Forbidden("loopback")),
        s(false, "https://0x7f000001:{p}/", Forbidden("loopback")),
        s(false, "https://0x7f.1:{p}/", Forbidden("loopback")),
        s(false, "https://127.1:{p}/", Forbidden("loopback")),
        s(false, "https://017700000001:{p}/", Forbidden("loopback")),
        s(false, "https://0:{p}/", Forbidden("this network")),
        s(false, "https://2852039166/", Forbidden("metadata")),
        s(false, "https://0xa9fea9fe/", Forbidden("metadata")),
        s(false, "https://0251.0376.0251.0376/", Forbidden("metadata")),
        s(false, "https://10.1/", Forbidden("10.0.0.0/8")),
        s(false, "https://127.0.0.1.:{p}/", Forbidden("loopback")),
        // IPv6 ranges, embedded IPv4 forms and tunnels.
        s(false, "https://[::1]:{p}/", Forbidden("loopback")),
        s(false, "https://[::]:{p}/", Forbidden("unspecified")),
        s(
            false,
            "https://[::ffff:127.0.0.1]:{p}/",
            Forbidden("loopback"),
        ),
        s(false, "https://[::ffff:7f00:1]:{p}/", Forbidden("loopback")),
        s(
            false,
            "https://[::ffff:169.254.169.254]/",
            Forbidden("metadata"),
        ),
        s(false, "https://[::ffff:a00:1]/", Forbidden("10.0.0.0/8")),
        s(false, "https://[::127.0.0.1]:{p}/", Forbidden("loopback")),
        s(false, "https://[::8.8.8.8]/", Forbidden("IPv4-compatible")),
        s(false, "https://[64:ff9b::a00:1]/", Forbidden("10.0.0.0/8")),
        s(
            false,
            "https://[64:ff9b::169.254.169.254]/",
            Forbidden("metadata"),
        ),
        s(
            false,
            "https://[64:ff9b::7f00:1]:{p}/",
            Forbidden("loopback"),
        ),
        s(
            false,
            "https://[64:ff9b:1::808:808]/",
            Forbidden("local-use NAT64"),
        ),
        s(false, "https://[2002:a00:1::1]/", Forbidden("6to4")),
        s(false, "https://[2002:5db8:d822::1]/", Forbidden("6to4")),
        s(
            false,
            "https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
            Forbidden("Teredo"),
        ),
        s(false, "https://[2001:2::1]/", Forbidden("IETF protocol")),
        s(false, "https://[fc00::1]/", Forbidden("unique local")),
        s(false, "https://[fd00:ec2::254]/", Forbidden("unique local")),
        s(false, "https://[fe80::1]/", Forbidden("link-local")),
        s(false, "https://[fec0::1]/", Forbidden("site-local")),
        s(false, "https://[ff02::1]/", Forbidden("multicast")),
        s(false, "https://[100::1]/", Forbidden("discard")),
        s(false, "https://[2001:db8::1]/", Forbidden("documentation")),
        s(false, "https://[3fff::1]/", Forbidden("documentation")),
        s(false, "https://[4000::1]/", Forbidden("reserved")),
        s(false, "https://[fe80::1%25eth0]/", BadUrl),
        // Names: localhost never reaches DNS; other names are resolved and every answer vetted.
        s(false, "https://localhost:{p}/", Forbidden("loopback")),
        s(false, "https://localhost.:{p}/", Forbidden("loopback")),
        s(false, "https://LOCALHOST:{p}/", Forbidden("loopback")),
        s(false, "https://app.localhost:{p}/", Forbidden("loopback")),
        s(
            false,
            "https://metadata.test/latest/meta-data",
            Forbidden("metadata"),
        ),
        s(false, "https://internal.test/", Forbidden("10.0.0.0/8")),
        s(false, "https://mixed.test/", Forbidden("10.0.0.0/8")),
        s(
            false,
            "https://mixed-late.test/",
            Forbidden("192.168.0.0/16"),
        ),
        s(false, "https://mixed6.test/", Forbidden("unique local")),
        s(false, "https://imds6.test/", Forbidden("unique local")),
        s(false, "https://mapped.test/", Forbidden("10.0.0.0/8")),
        s(false, "https://nat64.test/", Forbidden("metadata")),
        s(false, "https://loop.test:{p}/", Forbidden("loopback")),
        s(false, "https://loop6.test:{p}/", Forbidden("loopback")),
        s(false, "https://trailing.test.:{p}/", Forbidden("loopback")),
        s(false, "https://zero.test:{p}/", Forbidden("this network")),
        s(false, "https://cgnat.test/", Forbidden("CGNAT")),
        s(false, "https://empty.test/", Dns),
        s(false, "https://nx.test/", Dns),
        // Schemes and userinfo.
        s(false, "http://public.test/", Scheme),
        s(false, "http://2130706433:{p}/", Scheme),
        s(false, "HTTP://127.0.0.1:{p}/", Scheme),
        s(false, "HTTPS://127.0.0.1:{p}/", Forbidden("loopback")),
        s(false, "http://localhost:{p}/", Scheme),
        s(false, "https://user@public.test/", Userinfo),
        s(false, "https://user:pass@public.test/", Userinfo),
        s(false, "https://:pass@public.test/", Userinfo),
        s(false, "https://public.test@127.0.0.1:{p}/", Userinfo),
        s(false, "file:///etc/passwd", Scheme),
        s(false, "gopher://127.0.0.1:{p}/_", Scheme),
        s(false, "ftp://public.test/", Scheme),
        s(false, "javascript:alert(1)", Scheme),
        s(false, "data:application/json,{}", Scheme),
        s(false, "//public.test/", BadUrl),
        s(false, "https://", BadUrl),
        // The development override opens loopback only.
        s(true, "http://10.0.0.1/", Forbidden("10.0.0.0/8")),
        s(
            true,
            "http://169.254.169.254/latest/meta-data",
            Forbidden("metadata"),
        ),
        s(true, "https://169.254.169.254/", Forbidden("metadata")),
        s(true, "http://internal.test/", Forbidden("10.0.0.0/8")),
        s(true, "http://mixed.test/", Forbidden("10.0.0.0/8")),
        s(true, "http://[::ffff:10.0.0.1]/", Forbidden("10.0.0.0/8")),
        s(true, "http://[fd00::1]/", Forbidden("unique local")),
        s(true, "http://0.0.0.0:{p}/", Forbidden("this network")),
        s(true, "http://[::]:{p}/", Forbidden("unspecified")),
        s(true, "http://[::127.0.0.1]:{p}/", Forbidden("loopback")),
        s(true, "http://public.test/", Scheme),
        s(true, "http://93.184.216.34/", Scheme),
        s(true, "http://user@127.0.0.1:{p}/", Userinfo),
    ]
}

#[tokio::test]
async fn every_case_is_refused_before_connecting() {
    let listener = Server::counting().await;
    let resolver = Arc::new(resolver());
    let strict = fetcher(FetchPolicy::default(), &resolver);
    let dev = fetcher(FetchPolicy::loopback_dev(), &resolver);
    let cases = cases(listener.port());
    assert!(cases.len() >= 40, "matrix has {} cases", cases.len());

    // Stage 1: vetting alone (no connection can happen here).
    for (is_dev, url, expect) in &cases {
        let f = if *is_dev { &dev } else { &strict };
        match f.vet(url).await {
            Ok(v) => panic!("{url} was accepted: {v:?}"),
            Err(err) => assert!(
                matches(*expect, &err),
                "{url}: expected {expect:?}, got {err:?}"
            ),
        }
    }
    // Stage 2: the full request path refuses the same way.
    for (is_dev, url, expect) in &cases {
        let f = if *is_dev { &dev } else { &strict };
        let err = f.get(url).await.expect_err(url);
        assert!(
            matches(*expect, &err),
            "{url}: expected {expect:?}, got {err:?}"
        );
    }
    assert_eq!(listener.accepts(), 0, "a refused URL reached the listener");
    // localhost names and IP literals never reach the resolver: only the `.test` names do.
    for q in resolver.all_queries() {
        assert!(
            q.ends_with(".test") || q.ends_with(".test."),
            "{q:?} was sent to the resolver"
        );
    }
    assert!(resolver.queries("internal.test") >= 2);
}

#[tokio::test]
async fn error_messages_do_not_leak_addresses() {
    let resolver = Arc::new(resolver());
    let f = fetcher(FetchPolicy::default(), &resolver);
    let err = f.get("https://internal.test/").await.unwrap_err();
    let msg = err.to_string();
    assert!(!msg.contains("10.0.0.1"), "{msg}");
    assert!(msg.starts_with("destination not allowed"), "{msg}");
    let err = f.get("https://nx.test/").await.unwrap_err();
    assert!(!err.to_string().contains("NXDOMAIN"));
}
