//! Fuzzing of the gateway's parsers with proptest (issue 15, "Proof"). `parser_props.rs` (in
//! `tests/it`) runs generated requests through the whole gateway; this file fuzzes the parsers
//! themselves, in process, with many more cases.
//!
//! - `jsonrpc::parse`: arbitrary bytes never panic; it accepts nothing `serde_json` refuses,
//!   reads what it accepts as `serde_json` does, and parsing the bytes it forwards
//!   (`Envelope::to_bytes`) gives the same decision; a key written twice in any object is
//!   refused with -32600; `decode_header_value` round-trips its base64 form.
//! - `sse::Decoder`: the events decoded do not depend on where the stream is split into chunks
//!   (a CRLF split in two included); what `Event::write` writes decodes to the same event;
//!   arbitrary bytes never panic and never yield a field the writer could not write back.
//! - `uri::canonical`: idempotent, and every equivalent spelling of a resource (scheme and host
//!   case, percent-encoded unreserved characters, dot segments) meets the same canonical form,
//!   so a denied resource cannot be reached by respelling it.
//! - `origin::OriginPolicy`: on a loopback listener no `Host` naming another machine passes,
//!   whatever its case, port or trailing dot; only a configured origin passes `Origin`.
//! - `config::validate` from TOML text: arbitrary and mutated files give a configuration or an
//!   error that names a field, never a panic.
//!
//! `PROPTEST_CASES` overrides the per-property case counts below.

use std::collections::BTreeMap;

use base64::Engine;
use http::{HeaderMap, HeaderValue};
use mcpgate_fuzzkit::{case_variant, config};
use mcpgate_gateway::config::{ConfigError, GatewayTables, secret_as_written};
use mcpgate_gateway::jsonrpc::{ParseError, codes, decode_header_value, id_hint, parse};
use mcpgate_gateway::origin::{OriginPolicy, Refusal};
use mcpgate_gateway::sse::{Decoder, Event};
use mcpgate_gateway::uri::canonical;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Value, json};

/// One textual change to a valid input.
#[derive(Debug, Clone)]
enum Mutation {
    Truncate(usize),
    FlipByte(usize, u8),
    Insert(usize, Vec<u8>),
    Duplicate(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let piece = prop_oneof![
        Just(b",".to_vec()),
        Just(b":".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"{".to_vec()),
        Just(b"}".to_vec()),
        Just(b"[".to_vec()),
        Just(b"]".to_vec()),
        Just(b"\\".to_vec()),
        Just(b"=".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\0".to_vec()),
        Just(b"\xff".to_vec()),
        Just(b"\\ud800".to_vec()),
        Just("\u{212a}".as_bytes().to_vec()),
        Just(b"1e999".to_vec()),
        Just(b"-0".to_vec()),
        Just(b"18446744073709551616".to_vec()),
        Just(b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[".repeat(8)),
        "\\PC{1,3}".prop_map(String::into_bytes),
        (1usize..5000).prop_map(|n| vec![b'a'; n]),
    ];
    prop_oneof![
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 1u8..).prop_map(|(i, x)| Mutation::FlipByte(i, x)),
        (any::<usize>(), piece).prop_map(|(i, s)| Mutation::Insert(i, s)),
        (any::<usize>(), 1usize..24).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
    ]
}

fn mutate(s: &[u8], m: &Mutation) -> Vec<u8> {
    let at = |i: usize| i % (s.len() + 1);
    match m {
        Mutation::Truncate(i) => s[..at(*i)].to_vec(),
        Mutation::FlipByte(i, x) => {
            let mut b = s.to_vec();
            if !b.is_empty() {
                let i = i % b.len();
                b[i] ^= x;
            }
            b
        }
        Mutation::Insert(i, piece) => {
            let i = at(*i);
            [&s[..i], piece, &s[i..]].concat()
        }
        Mutation::Duplicate(i, n) => {
            let a = at(*i);
            let b = (a + n).min(s.len());
            [&s[..b], &s[a..]].concat()
        }
    }
}

fn mutated(valid: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (valid, proptest::collection::vec(mutation(), 1..4)).prop_map(|(mut s, ms)| {
        for m in &ms {
            s = mutate(&s, m);
        }
        s
    })
}

// ---------------------------------------------------------------------------------------------
// JSON-RPC envelopes

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e12f64..1e12).prop_map(Value::from),
        "\\PC{0,8}".prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map("[a-z_]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// `params` of a message: name, uri, arguments and the `_meta` protocol version.
fn params() -> impl Strategy<Value = Option<Value>> {
    proptest::option::of(
        (
            proptest::option::of("\\PC{0,8}"),
            proptest::option::of("[a-z]{1,6}://\\PC{0,8}"),
            proptest::option::of(json_value()),
            proptest::option::of("\\PC{0,10}"),
        )
            .prop_map(|(name, uri, args, version)| {
                let mut p = json!({});
                if let Some(n) = name {
                    p["name"] = json!(n);
                }
                if let Some(u) = uri {
                    p["uri"] = json!(u);
                }
                if let Some(a) = args {
                    p["arguments"] = a;
                }
                if let Some(v) = version {
                    p["_meta"] = json!({"io.modelcontextprotocol/protocolVersion": v});
                }
                p
            }),
    )
}

/// Valid requests, notifications and responses.
fn message() -> impl Strategy<Value = Value> {
    let id = prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        "\\PC{0,8}".prop_map(Value::from),
    ];
    let method = prop_oneof![
        Just("tools/call".to_string()),
        Just("prompts/get".to_string()),
        Just("resources/read".to_string()),
        Just("tools/list".to_string()),
        Just("notifications/initialized".to_string()),
        "[a-z/]{1,12}",
    ];
    prop_oneof![
        (id.clone(), method.clone(), params()).prop_map(|(id, m, p)| {
            let mut v = json!({"jsonrpc": "2.0", "id": id, "method": m});
            if let Some(p) = p {
                v["params"] = p;
            }
            v
        }),
        (method, params()).prop_map(|(m, p)| {
            let mut v = json!({"jsonrpc": "2.0", "method": m});
            if let Some(p) = p {
                v["params"] = p;
            }
            v
        }),
        (id, json_value()).prop_map(|(id, r)| json!({"jsonrpc": "2.0", "id": id, "result": r})),
    ]
}

/// Writes `v` with the first key of its `target`-th object (in document order) written twice,
/// the second time with `null`: serde_json cannot write a duplicate. `seen` counts objects.
fn write_with_duplicate(v: &Value, target: usize, seen: &mut usize, out: &mut String) -> bool {
    match v {
        Value::Object(m) => {
            let here = *seen == target && !m.is_empty();
            *seen += 1;
            let mut done = here;
            out.push('{');
            for (i, (k, val)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(k.as_str()).to_string());
                out.push(':');
                done |= write_with_duplicate(val, target, seen, out);
            }
            if here {
                let (k, _) = m.iter().next().unwrap();
                out.push(',');
                out.push_str(&Value::from(k.as_str()).to_string());
                out.push_str(":null");
            }
            out.push('}');
            done
        }
        Value::Array(a) => {
            out.push('[');
            let mut done = false;
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                done |= write_with_duplicate(x, target, seen, out);
            }
            out.push(']');
            done
        }
        other => {
            out.push_str(&other.to_string());
            false
        }
    }
}

/// JSON equality. Floats too, exactly: the workspace enables serde_json's
/// `float_roundtrip`, so a float the gateway writes again reads back as the
/// client wrote it (without it, one unit in the last place could move).
fn same_json(a: &Value, b: &Value) -> bool {
    a == b
}

/// What a parse decided: everything policy reads, and the value forwarded.
#[derive(Debug, PartialEq)]
struct Decision {
    read: (
        String,
        Option<Value>,
        Option<String>,
        Option<String>,
        Option<String>,
    ),
    value: Value,
}

fn decision(body: &[u8]) -> Result<Decision, ParseError> {
    parse(body).map(|e| Decision {
        read: (
            format!("{:?}", e.kind),
            e.id,
            e.method,
            e.name,
            e.meta_version,
        ),
        value: e.value,
    })
}

proptest! {
    #![proptest_config(config(4096))]

    /// Accepted messages are read as serde_json reads them, and re-parse to the same decision.
    #[test]
    fn jsonrpc_is_strict_and_round_trips(body in prop_oneof![
        message().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        message().prop_map(|v| serde_json::to_vec_pretty(&v).unwrap()),
        mutated(message().prop_map(|v| serde_json::to_vec(&v).unwrap())),
        proptest::collection::vec(any::<u8>(), 0..64),
        ".{0,64}".prop_map(String::into_bytes),
    ]) {
        let _ = id_hint(&body);
        let loose = serde_json::from_slice::<Value>(&body);
        match decision(&body) {
            Ok(d) => {
                prop_assert_eq!(loose.as_ref().ok(), Some(&d.value));
                // What the gateway forwards parses to the same decision.
                let forwarded = decision(&parse(&body).unwrap().to_bytes()).unwrap();
                prop_assert_eq!(&forwarded.read, &d.read);
                prop_assert!(same_json(&forwarded.value, &d.value), "{} / {}", forwarded.value, d.value);
            }
            Err(e) => {
                prop_assert!(e.code() == codes::PARSE_ERROR || e.code() == codes::INVALID_REQUEST);
            }
        }
    }

    /// Every generated message parses; written with any key twice, it is refused as invalid.
    #[test]
    fn duplicate_keys_are_refused_anywhere(v in message(), nth in 0usize..6) {
        let body = serde_json::to_vec(&v).unwrap();
        let env = parse(&body).unwrap();
        prop_assert!(same_json(&env.value, &v));
        let method = v.get("method").and_then(Value::as_str);
        let name_key = if method == Some("resources/read") { "uri" } else { "name" };
        if matches!(method, Some("tools/call" | "prompts/get" | "resources/read")) {
            prop_assert_eq!(env.name.as_deref(), v["params"][name_key].as_str());
        }
        let mut text = String::new();
        if write_with_duplicate(&v, nth, &mut 0, &mut text) {
            let e = parse(text.as_bytes()).unwrap_err();
            prop_assert_eq!(e.code(), codes::INVALID_REQUEST, "{}", text);
        }
    }

    #[test]
    fn header_values_round_trip(s in "\\PC{0,24}", raw in "[!-~]{0,24}") {
        let b64 = base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
        prop_assert_eq!(decode_header_value(&format!("=?base64?{b64}?=")), Some(s));
        if !(raw.starts_with("=?base64?") && raw.ends_with("?=")) {
            prop_assert_eq!(decode_header_value(&raw), Some(raw.clone()));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Server-sent events

/// One line of an event stream, without its line end.
fn sse_line() -> impl Strategy<Value = Vec<u8>> {
    let value = prop_oneof![
        "[ -~]{0,12}".prop_map(String::into_bytes),
        "\\PC{0,6}".prop_map(String::into_bytes),
        Just(b"a\0b".to_vec()),
        Just(b"\xff\xfe".to_vec()),
        Just(b" leading".to_vec()),
        Just(b"12345".to_vec()),
    ];
    let name = prop_oneof![
        Just(&b"data"[..]),
        Just(&b"id"[..]),
        Just(&b"event"[..]),
        Just(&b"retry"[..]),
        Just(&b""[..]),
        Just(&b"Data"[..]),
        Just(&b"x"[..]),
    ];
    prop_oneof![
        6 => (name, proptest::sample::select(vec![&b":"[..], b": ", b""]), value).prop_map(|(n, sep, v)| {
            [n, sep, &v].concat()
        }),
        2 => Just(Vec::new()),
        1 => (0usize..40).prop_map(|n| vec![b'x'; n]),
    ]
}

fn line_end() -> impl Strategy<Value = &'static [u8]> {
    proptest::sample::select(vec![&b"\n"[..], b"\r\n", b"\r"])
}

/// A stream, and a size limit that is sometimes exactly the length of one of its lines.
fn sse_stream() -> impl Strategy<Value = (Vec<u8>, usize)> {
    (
        proptest::collection::vec((sse_line(), line_end()), 0..24),
        proptest::option::of(any::<Index>()),
        prop_oneof![8usize..48, Just(1 << 16)],
    )
        .prop_map(|(lines, pick, max)| {
            let max = match pick {
                Some(i) if !lines.is_empty() => lines[i.index(lines.len())].0.len().max(1),
                _ => max,
            };
            let bytes = lines
                .iter()
                .flat_map(|(l, e)| [l.as_slice(), e].concat())
                .collect();
            (bytes, max)
        })
}

/// Decodes `stream` pushed in pieces cut at `cuts`; `Err` if any push refused.
fn decode(stream: &[u8], max: usize, cuts: &[usize]) -> Result<Vec<Event>, ()> {
    let mut d = Decoder::new(max);
    let mut out = Vec::new();
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    cuts.sort_unstable();
    let mut start = 0;
    for c in cuts.into_iter().chain([stream.len()]) {
        out.extend(d.push(&stream[start..c]).map_err(|_| ())?);
        start = c;
    }
    Ok(out)
}

fn event() -> impl Strategy<Value = (Event, Option<Vec<u8>>)> {
    let text = "[^\\r\\n\\x00]{0,12}";
    (
        proptest::option::of(text),
        proptest::option::of(text),
        proptest::option::of(any::<u64>()),
        proptest::option::of("[^\\r\\n]{0,16}".prop_map(String::into_bytes)),
    )
        .prop_map(|(id, event, retry, data)| {
            (
                Event {
                    id,
                    event,
                    retry,
                    data: None,
                },
                data,
            )
        })
}

proptest! {
    #![proptest_config(config(4096))]

    /// Where the chunks split changes nothing, a CRLF split in two included.
    #[test]
    fn sse_decoding_ignores_chunk_boundaries(
        (stream, max) in sse_stream(),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let whole = decode(&stream, max, &[]);
        let split = decode(&stream, max, &cuts);
        prop_assert_eq!(&split, &whole, "max {} stream {:?}", max, String::from_utf8_lossy(&stream));
        let bytewise: Vec<usize> = (0..stream.len()).collect();
        prop_assert_eq!(decode(&stream, max, &bytewise), whole);
    }

    /// What the gateway writes decodes to the event it wrote.
    #[test]
    fn sse_write_round_trips(events in proptest::collection::vec(event(), 0..6), cuts in proptest::collection::vec(any::<usize>(), 0..6)) {
        let mut stream = Vec::new();
        let mut want = Vec::new();
        for (e, data) in &events {
            stream.extend_from_slice(&e.write(data.as_deref()));
            let written = Event { data: data.clone(), ..e.clone() };
            if written != Event::default() {
                want.push(written);
            }
        }
        prop_assert_eq!(decode(&stream, 1 << 16, &cuts), Ok(want));
    }

    /// Arbitrary bytes never panic, and every decoded field could be written back as one line.
    #[test]
    fn sse_survives_garbage(
        stream in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..256),
            mutated(sse_stream().prop_map(|(s, _)| s)),
        ],
        max in prop_oneof![1usize..64, Just(1 << 16)],
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        if let Ok(events) = decode(&stream, max, &cuts) {
            for e in events {
                prop_assert!(!e.id.as_deref().unwrap_or("").contains(['\0', '\r', '\n']));
                prop_assert!(!e.event.as_deref().unwrap_or("").contains(['\r', '\n']));
                prop_assert!(!e.data.as_deref().unwrap_or(b"").contains(&b'\r'));
                prop_assert!(e.data.as_ref().map_or(0, Vec::len) <= max);
            }
        }
    }
}

/// Found by `sse_decoding_ignores_chunk_boundaries`: a line of exactly the limit whose CRLF
/// was split between two chunks was refused (the CR was counted as part of the line), while
/// the same bytes in one chunk were accepted.
#[test]
fn sse_split_crlf_does_not_count_towards_the_limit() {
    let whole: [&[u8]; 1] = [b"data:\r\n\n"];
    let split: [&[u8]; 2] = [b"data:\r", b"\n\n"];
    for chunks in [&whole[..], &split[..]] {
        let mut d = Decoder::new(5);
        let events: Vec<Event> = chunks.iter().flat_map(|c| d.push(c).unwrap()).collect();
        let want = Event {
            data: Some(Vec::new()),
            ..Event::default()
        };
        assert_eq!(events, [want]);
    }
    assert!(
        Decoder::new(5).push(b"data:x\r").is_err(),
        "a byte over stays refused"
    );
}

// ---------------------------------------------------------------------------------------------
// Resource URIs, Origin and Host

/// Another spelling of the path segment `seg`: unreserved characters percent-encoded.
fn encode_some(seg: &str, bits: u64) -> String {
    seg.chars()
        .enumerate()
        .map(|(i, c)| {
            if bits & (1 << (i % 64)) != 0 && c.is_ascii() {
                if bits & (1 << 63) != 0 {
                    format!("%{:02x}", c as u32)
                } else {
                    format!("%{:02X}", c as u32)
                }
            } else {
                c.to_string()
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(config(4096))]

    #[test]
    fn canonical_is_idempotent(raw in prop_oneof![
        ".{0,40}",
        "[a-zA-Z][a-zA-Z0-9+.-]{0,5}:[/.%a-zA-Z0-9@:?#_~-]{0,30}",
        "[a-z]{1,4}:(/\\.{0,2}){1,4}/[a-zA-Z.%2E]{0,10}(/[a-zA-Z.]{0,4}){0,2}",
        mutated(Just(b"file:///srv/files/payroll.csv".to_vec())).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]) {
        let once = canonical(&raw);
        prop_assert_eq!(canonical(&once), once.clone(), "{:?}", raw);
    }

    /// Every equivalent spelling of a resource meets its canonical form.
    #[test]
    fn equivalent_spellings_meet(
        scheme in "[a-z][a-z0-9+]{0,5}",
        host in "[a-z0-9]{1,8}",
        segments in proptest::collection::vec("[a-zA-Z0-9_~-]{1,6}", 0..4),
        flips in any::<u64>(),
        bits in proptest::collection::vec(any::<u64>(), 4),
        detours in proptest::collection::vec((any::<Index>(), prop_oneof![Just("."), Just("x/.."), Just("%2E"), Just("a/b/../..")]), 0..3),
    ) {
        let original = format!("{scheme}://{host}/{}", segments.join("/"));
        let mut spelled: Vec<(String, bool)> = segments
            .iter()
            .enumerate()
            .map(|(i, s)| (encode_some(s, bits[i % bits.len()]), false))
            .collect();
        for (at, detour) in &detours {
            spelled.insert(at.index(spelled.len() + 1), ((*detour).to_string(), true));
        }
        let variant = format!(
            "{}://{}/{}",
            case_variant(&scheme, flips),
            case_variant(&host, flips.rotate_left(7)),
            spelled.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>().join("/"),
        );
        // A detour as the last segment leaves a trailing slash, as RFC 3986 does.
        let trailing = !segments.is_empty() && spelled.last().is_some_and(|(_, detour)| *detour);
        if !trailing {
            prop_assert_eq!(canonical(&variant), canonical(&original), "{}", variant);
        }
        // A change of case in the path is another resource.
        if let Some(last) = segments.last().filter(|s| s.chars().any(|c| c.is_ascii_lowercase())) {
            let other = format!("{scheme}://{host}/{}{}", segments[..segments.len() - 1].iter().map(|s| format!("{s}/")).collect::<String>(), last.to_ascii_uppercase());
            prop_assert_ne!(canonical(&other), canonical(&original));
        }
    }
}

/// Found by `canonical_is_idempotent`: dot segments removed from a path without authority
/// left `//` at its start, so the canonical form of `x:/..//EVIL/p` was `x://EVIL/p`, whose own
/// canonical form is `x://evil/p`: a policy on `x://evil/p` did not govern that spelling.
#[test]
fn dot_segments_cannot_forge_an_authority() {
    for (spelling, canonical_form) in [
        ("x:/..//EVIL/p", "x://evil/p"),
        ("fixture:/.//INTERNAL", "fixture://internal"),
        ("a:/.//%aa", "a://%aa"),
        // Found by the same property in a 20000-case run: decoding `%61` completed `%0`.
        ("a:%0%61", "a:%0A"),
        ("x://h/%%36%31", "x://h/a"),
    ] {
        assert_eq!(canonical(spelling), canonical_form, "{spelling}");
        assert_eq!(
            canonical(canonical_form),
            canonical_form,
            "{canonical_form}"
        );
    }
    assert_eq!(canonical("x:/a/b"), "x:/a/b");
}

fn host_map(host: &str, origins: &[&str]) -> Option<HeaderMap> {
    let mut h = HeaderMap::new();
    h.insert(http::header::HOST, HeaderValue::from_str(host).ok()?);
    for o in origins {
        h.append(http::header::ORIGIN, HeaderValue::from_str(o).ok()?);
    }
    Some(h)
}

proptest! {
    #![proptest_config(config(4096))]

    /// On a loopback listener, a Host naming another machine never passes.
    #[test]
    fn foreign_hosts_are_refused(
        labels in proptest::collection::vec("[a-z0-9-]{1,8}", 1..4),
        tld in "[a-z]{2,6}",
        flips in any::<u64>(),
        port in proptest::option::of(any::<u16>()),
        dot in any::<bool>(),
        loopback in proptest::sample::select(vec!["127.0.0.1", "127.3.2.1", "localhost", "[::1]", "LOCALHOST."]),
    ) {
        let p = OriginPolicy::new("http://127.0.0.1:8080", &[], true);
        let name = format!("{}.{tld}", labels.join("."));
        prop_assume!(!name.trim_end_matches('.').eq_ignore_ascii_case("localhost"));
        let mut host = case_variant(&name, flips);
        if dot {
            host.push('.');
        }
        let with_port = |h: &str| port.map_or(h.to_string(), |p| format!("{h}:{p}"));
        let h = host_map(&with_port(&host), &[]).unwrap();
        prop_assert_eq!(p.check(&h), Err(Refusal::Host), "{}", host);
        let h = host_map(&with_port(loopback), &[]).unwrap();
        prop_assert_eq!(p.check(&h), Ok(()));
    }

    /// Only a configured origin passes, once.
    #[test]
    fn only_configured_origins_pass(
        origin in prop_oneof![
            Just("https://app.example".to_string()),
            Just("HTTPS://APP.EXAMPLE:443".to_string()),
            Just("http://127.0.0.1:8080".to_string()),
            Just("null".to_string()),
            "https?://[a-z.]{1,12}(:[0-9]{1,5})?",
            "[ -~]{0,24}",
        ],
        twice in any::<bool>(),
    ) {
        let p = OriginPolicy::new("http://127.0.0.1:8080", &["https://app.example".to_string()], true);
        let origins: Vec<&str> = if twice { vec![&origin, &origin] } else { vec![&origin] };
        let Some(h) = host_map("127.0.0.1:8080", &origins) else { return Ok(()) };
        if p.check(&h).is_ok() {
            prop_assert!(!twice);
            let o = url::Url::parse(&origin).unwrap().origin().ascii_serialization();
            prop_assert!(o == "https://app.example" || o == "http://127.0.0.1:8080", "{}", origin);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration files

const SAMPLE: &str = r#"
[gateway]
session_idle_secs = 600
max_message_bytes = 65536

[[gateway.trusted_issuer]]
issuer = "https://idp.example"
jwks_uri = "https://idp.example/jwks"

[[upstream]]
name = "notes"
stdio = { command = "/bin/true", args = ["a", "b"] }
scopes = ["notes:read"]

[upstream.tools.add]
scopes = ["notes:write"]

[upstream.tools.secret]
allow = false

[upstream.resources."file:///srv/a"]
allow = false

[[upstream]]
name = "web"
http = { url = "https://mcp.example/mcp" }
"#;

fn load(text: &str) -> Result<(), ConfigError> {
    GatewayTables::parse(text)?
        .validate("http://127.0.0.1:8080", true, &secret_as_written)
        .map(|_| ())
}

/// TOML assembled from the gateway's keys with values of every type.
fn toml_text() -> impl Strategy<Value = String> {
    let key = proptest::sample::select(vec![
        "name",
        "title",
        "scopes",
        "allow",
        "users",
        "groups",
        "command",
        "args",
        "url",
        "session_idle_secs",
        "max_message_bytes",
        "max_sessions_per_user",
        "timeout_secs",
        "shared",
        "list",
        "allowed_origins",
        "issuer",
        "jwks_uri",
        "type",
        "client_id",
        "client_secret",
        "token_url",
        "resource",
        "requests_per_minute",
        "unknown_key",
    ]);
    let value = prop_oneof![
        "\"[ -!#-\\[\\]-~]{0,10}\"",
        Just("\"https://idp.example\"".to_string()),
        Just("\"${env:MCPGATE_FUZZ_UNSET}\"".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        Just("0".to_string()),
        Just("18446744073709551615".to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        Just("[\"a\", \"b\"]".to_string()),
        Just("[1, \"x\"]".to_string()),
        Just("{ command = \"x\" }".to_string()),
        Just("{ url = \"http://10.0.0.1/mcp\" }".to_string()),
        Just("{ issuer = \"https://other.example\", subject = \"s\" }".to_string()),
        Just("1979-05-27T07:32:00Z".to_string()),
    ];
    let header = proptest::sample::select(vec![
        "",
        "[gateway]",
        "[[gateway.trusted_issuer]]",
        "[gateway.audit]",
        "[[upstream]]",
        "[upstream.stdio]",
        "[upstream.http]",
        "[upstream.auth]",
        "[upstream.tools.t]",
        "[upstream.default_tool]",
        "[upstream.prompts.p]",
        "[upstream.resources.\"x://y\"]",
        "[upstream.rate_limit]",
        "[upstream.scope_implies]",
    ]);
    proptest::collection::vec(
        (header, proptest::collection::vec((key, value), 0..4)),
        0..6,
    )
    .prop_map(|tables| {
        let mut out = String::new();
        for (h, kvs) in tables {
            out.push_str(h);
            out.push('\n');
            let mut seen = BTreeMap::new();
            for (k, v) in kvs {
                if seen.insert(k, ()).is_none() {
                    out.push_str(&format!("{k} = {v}\n"));
                }
            }
        }
        out
    })
}

#[test]
fn sample_config_is_valid() {
    load(SAMPLE).unwrap();
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn config_errors_name_a_field(text in prop_oneof![
        toml_text(),
        mutated(Just(SAMPLE.as_bytes().to_vec())).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        ".{0,80}",
    ]) {
        if let Err(e) = load(&text) {
            prop_assert!(!e.field.is_empty(), "{}", e);
            prop_assert!(!e.message.is_empty(), "{}", e);
        }
    }
}
