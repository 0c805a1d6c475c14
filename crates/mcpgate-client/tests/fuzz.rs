//! Fuzzing of what the client reads from servers with proptest (issue 15, "Proof").
//!
//! - `mcp::sse::SseParser`: events do not depend on chunk boundaries; what a server writes
//!   (fields, multi-line data, any line ending) parses back; arbitrary bytes never panic and
//!   never exceed the size limit.
//! - `discovery::validate_url`: only absolute https (or loopback http when allowed) without
//!   userinfo, fragment or whitespace passes; dangerous schemes never do.
//! - `discovery::check_resource`: a PRM `resource` is accepted only for the same origin and a
//!   whole-segment prefix of the server's path, as the URL parser reads both.
//! - `discovery::validate_as_metadata`: whatever passes has the exact issuer, S256 and safe
//!   endpoints; the metadata URL candidates stay on the issuer's origin.
//! - `authorize::CallbackParams` and `check_iss`: the first value of each parameter, repeats
//!   detected, `iss` compared exactly.
//!
//! `PROPTEST_CASES` overrides the per-property case counts below.

use mcpgate_client::authorize::{CallbackParams, check_iss};
use mcpgate_client::discovery::{
    as_metadata_candidates, check_resource, prm_candidates, validate_as_metadata, validate_url,
};
use mcpgate_client::mcp::sse::{SseEvent, SseParser};
use mcpgate_fuzzkit::{case_variant, config};
use mcpgate_types::metadata::AuthorizationServerMetadata;
use proptest::prelude::*;

fn insert_at(s: &str, at: usize, piece: &str) -> String {
    let mut i = at % (s.len() + 1);
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    format!("{}{piece}{}", &s[..i], &s[i..])
}

// ---------------------------------------------------------------------------------------------
// Server-sent events

fn feed(stream: &[u8], max: usize, cuts: &[usize]) -> Result<Vec<SseEvent>, ()> {
    let mut p = SseParser::new(max);
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    cuts.sort_unstable();
    let mut out = Vec::new();
    let mut start = 0;
    for c in cuts.into_iter().chain([stream.len()]) {
        out.extend(p.feed(&stream[start..c]).map_err(|_| ())?);
        start = c;
    }
    Ok(out)
}

fn sse_stream() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        (
            proptest::sample::select(vec!["data", "id", "event", "retry", "", "x", ":"]),
            proptest::sample::select(vec![":", ": ", ""]),
            prop_oneof!["[ -~]{0,10}", "\\PC{0,5}", Just("1\u{0}2".to_string())],
        )
            .prop_map(|(n, s, v)| format!("{n}{s}{v}").into_bytes()),
        Just(Vec::new()),
        Just(b"\xff\xfe".to_vec()),
    ];
    proptest::collection::vec(
        (
            line,
            proptest::sample::select(vec![&b"\n"[..], b"\r\n", b"\r"]),
        ),
        0..24,
    )
    .prop_map(|lines| {
        lines
            .into_iter()
            .flat_map(|(l, e)| [l, e.to_vec()].concat())
            .collect()
    })
}

fn server_event() -> impl Strategy<Value = SseEvent> {
    (
        proptest::option::of("[^\\r\\n\\x00]{0,10}"),
        proptest::option::of("[^\\r\\n]{0,10}"),
        proptest::collection::vec("[^\\r\\n]{0,10}", 1..4),
        proptest::option::of(any::<u64>()),
    )
        .prop_map(|(id, event, data, retry)| SseEvent {
            id,
            event,
            data: data.join("\n"),
            retry,
        })
}

/// The event as a server writes it, with `end` after every line.
fn write(e: &SseEvent, end: &str) -> String {
    let mut out = String::new();
    if let Some(id) = &e.id {
        out.push_str(&format!("id: {id}{end}"));
    }
    if let Some(ev) = &e.event {
        out.push_str(&format!("event: {ev}{end}"));
    }
    if let Some(r) = e.retry {
        out.push_str(&format!("retry: {r}{end}"));
    }
    for line in e.data.split('\n') {
        out.push_str(&format!("data: {line}{end}"));
    }
    out.push_str(end);
    out
}

proptest! {
    #![proptest_config(config(4096))]

    #[test]
    fn sse_ignores_chunk_boundaries(
        stream in sse_stream(),
        max in prop_oneof![4usize..40, Just(1 << 16)],
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let whole = feed(&stream, max, &[]);
        prop_assert_eq!(&feed(&stream, max, &cuts), &whole);
        let bytewise: Vec<usize> = (0..stream.len()).collect();
        prop_assert_eq!(feed(&stream, max, &bytewise), whole);
    }

    #[test]
    fn sse_reads_what_servers_write(
        events in proptest::collection::vec(server_event(), 0..5),
        end in proptest::sample::select(vec!["\n", "\r\n", "\r"]),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let stream: String = events.iter().map(|e| write(e, end)).collect();
        prop_assert_eq!(feed(stream.as_bytes(), 1 << 16, &cuts), Ok(events));
    }

    #[test]
    fn sse_survives_garbage(
        stream in prop_oneof![proptest::collection::vec(any::<u8>(), 0..256), sse_stream()],
        max in 1usize..64,
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        if let Ok(events) = feed(&stream, max, &cuts) {
            for e in events {
                prop_assert!(e.data.len() <= max);
                prop_assert!(!e.id.unwrap_or_default().contains(['\0', '\r', '\n']));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Discovery

const DANGEROUS: &[&str] = &[
    "javascript",
    "data",
    "file",
    "vbscript",
    "ftp",
    "ws",
    "blob",
];

fn url_text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,48}",
        "(https?|HTTPS|javascript|data|file):(//)?[a-zA-Z0-9.@:%\\[\\]\\\\-]{0,20}(/[a-z]{0,5}){0,2}([?#][a-z=]{0,5})?",
        (
            proptest::sample::select(vec![
                "https://as.example",
                "http://127.0.0.1:9",
                "http://localhost",
                "http://10.0.0.1"
            ]),
            "(/[a-z]{0,5}){0,2}",
            any::<usize>(),
            proptest::sample::select(vec![
                "", " ", "\t", "#", "@", "\\", "%00", "\u{0}", "user:pw@"
            ]),
        )
            .prop_map(|(base, path, at, piece)| insert_at(
                &format!("{base}{path}"),
                at,
                piece
            )),
    ]
}

proptest! {
    #![proptest_config(config(4096))]

    #[test]
    fn only_safe_urls_validate(raw in url_text(), loopback in any::<bool>()) {
        if let Ok(u) = validate_url("endpoint", &raw, loopback) {
            prop_assert!(!raw.chars().any(|c| c.is_whitespace() || c.is_control()));
            prop_assert!(!raw.contains('#'));
            prop_assert!(u.username().is_empty() && u.password().is_none());
            match u.scheme() {
                "https" => {}
                "http" => prop_assert!(loopback, "{}", raw),
                other => prop_assert!(false, "{} accepted with scheme {}", raw, other),
            }
        }
    }

    #[test]
    fn dangerous_schemes_never_validate(
        scheme in proptest::sample::select(DANGEROUS),
        flips in any::<u64>(),
        rest in "[ -~]{0,24}",
        loopback in any::<bool>(),
    ) {
        let raw = format!("{}:{rest}", case_variant(scheme, flips));
        prop_assert!(validate_url("endpoint", &raw, loopback).is_err(), "{}", raw);
    }

    /// A resource is accepted only when the URL parser agrees it covers the server.
    #[test]
    fn resources_cover_the_server_by_url(
        server_path in "(/[a-z]{1,4}){0,3}",
        resource in prop_oneof![
            url_text(),
            ("(/[a-z]{1,4}){0,3}/?", any::<usize>(), proptest::sample::select(vec![
                "", "\\", "\t", "%2F", "/..", "/.", "@evil.example", ":443", ":8443", "?", "#", "\\evil",
            ]), any::<u64>())
                .prop_map(|(path, at, piece, flips)| {
                    let r = format!("{}{path}", case_variant("https://gw.example", flips));
                    insert_at(&r, at, piece)
                }),
        ],
    ) {
        let server = format!("https://gw.example{server_path}");
        let ok = check_resource(&server, &resource).is_ok();
        if ok && resource != server {
            let s = url::Url::parse(&server).unwrap();
            let r = url::Url::parse(&resource).unwrap();
            prop_assert_eq!(r.origin(), s.origin(), "{}", resource);
            let rp = r.path().trim_end_matches('/');
            let covered = rp.is_empty()
                || s.path() == rp
                || s.path().strip_prefix(rp).is_some_and(|rest| rest.starts_with('/'));
            prop_assert!(covered, "{} accepted for {} (parsed path {})", resource, server, r.path());
        }
    }

    #[test]
    fn metadata_that_validates_is_safe(
        issuer in prop_oneof![Just("https://as.example".to_string()), url_text()],
        found in prop_oneof![
            Just("https://as.example".to_string()),
            Just("https://as.example/".to_string()),
            Just("HTTPS://AS.EXAMPLE".to_string()),
            url_text(),
        ],
        authorization in proptest::option::of(url_text()),
        token in proptest::option::of(url_text()),
        pkce in proptest::collection::vec(prop_oneof![Just("S256".to_string()), Just("plain".to_string()), Just("s256".to_string())], 0..3),
        loopback in any::<bool>(),
    ) {
        let m = AuthorizationServerMetadata {
            issuer: found.clone(),
            authorization_endpoint: authorization.clone(),
            token_endpoint: token.clone(),
            code_challenge_methods_supported: pkce.clone(),
            ..AuthorizationServerMetadata::default()
        };
        if validate_as_metadata(&issuer, "https://as.example/.well-known/x", &m, loopback).is_ok() {
            prop_assert_eq!(&found, &issuer);
            prop_assert!(pkce.iter().any(|p| p == "S256"));
            prop_assert!(validate_url("a", authorization.as_deref().unwrap(), loopback).is_ok());
            prop_assert!(validate_url("t", token.as_deref().unwrap(), loopback).is_ok());
        }
        // Candidates for metadata stay on the issuer's origin.
        for c in as_metadata_candidates(&issuer) {
            let origin = &issuer[..issuer.find("://").unwrap() + 3];
            prop_assert!(c.starts_with(origin), "{} from {}", c, issuer);
            prop_assert!(c.contains("/.well-known/"));
        }
        let _ = prm_candidates(&issuer, Some(&found));
    }
}

/// Found by `resources_cover_the_server_by_url`: a resource whose string has no `://` (here
/// `https:\//`) had no written path, which counted as the root and so covered every path of
/// the server, while the URL parser reads it as a sibling path.
#[test]
fn a_rewritten_resource_does_not_cover_a_sibling() {
    for resource in [
        "https:\\//gw.example/mcp/b",
        "https:/\\gw.example/mcp/b",
        "https://gw.example\\mcp/b",
        "https://gw.example/mcp/\\..\\b",
    ] {
        assert!(
            check_resource("https://gw.example/mcp/a", resource).is_err(),
            "{resource}"
        );
    }
    assert!(check_resource("https://gw.example/mcp/a", "https://gw.example/mcp").is_ok());
    assert!(check_resource("https://gw.example/mcp/a", "https://gw.example").is_ok());
}

// ---------------------------------------------------------------------------------------------
// The authorization response

proptest! {
    #![proptest_config(config(4096))]

    #[test]
    fn callback_params_take_first_values_and_see_repeats(
        pairs in proptest::collection::vec((
            proptest::sample::select(vec!["code", "state", "iss", "error", "error_description", "other", "Code"]),
            "\\PC{0,8}",
        ), 0..8),
        fragment in proptest::option::of("[a-z=&]{0,8}"),
    ) {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())))
            .finish();
        let first = |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone());
        let p = CallbackParams::from_query(&query);
        prop_assert_eq!(p.code, first("code"));
        prop_assert_eq!(p.state, first("state"));
        prop_assert_eq!(p.iss, first("iss"));
        prop_assert_eq!(p.error, first("error"));
        prop_assert_eq!(p.error_description, first("error_description"));
        let repeated = ["code", "state", "iss", "error"]
            .iter()
            .any(|n| pairs.iter().filter(|(k, _)| k == n).count() > 1);
        prop_assert_eq!(CallbackParams::has_duplicates(&query), repeated);
        let url = match &fragment {
            Some(f) => format!("http://127.0.0.1:9/cb?{query}#{f}"),
            None => format!("http://127.0.0.1:9/cb?{query}"),
        };
        prop_assert_eq!(CallbackParams::from_url(&url), CallbackParams::from_query(&query));
    }

    #[test]
    fn iss_is_compared_exactly(
        flips in any::<u64>(),
        suffix in proptest::sample::select(vec!["", "/", ":443", ".", "%2F", " "]),
        supported in any::<bool>(),
    ) {
        let issuer = "https://as.example/tenant";
        let iss = format!("{}{suffix}", case_variant(issuer, flips));
        prop_assert_eq!(check_iss(issuer, supported, Some(&iss)).is_ok(), iss == issuer);
        prop_assert_eq!(check_iss(issuer, supported, None).is_ok(), !supported);
    }
}
