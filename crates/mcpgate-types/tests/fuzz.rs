//! Fuzzing of the protocol parsers in `mcpgate-types` with proptest (issue 15, "Proof").
//!
//! - `www_authenticate::parse`: arbitrary text and mangled challenges never panic and give
//!   well-formed challenges; formatting then parsing gives back the challenges formatted.
//! - `redirect_uri`: arbitrary text never panics and whatever registers is absolute, has no
//!   fragment, userinfo, whitespace or dangerous scheme; a dangerous scheme or a non-loopback
//!   plain http host is refused however it is spelled; exact matching admits nothing but the
//!   registered string, or the port of a loopback IP literal.
//! - `scope`: parse/format round trip, and only RFC 6749 characters pass.
//! - `resource`: validation never panics; canonical lookup folds only scheme and host case.
//! - `metadata`: `well_known_insert` never panics; metadata documents and client metadata
//!   survive a JSON round trip, and arbitrary JSON never panics the deserialisers.
//! - `pkce`: a verifier's challenge verifies and any other challenge does not.
//!
//! `PROPTEST_CASES` overrides the per-property case counts below.

use std::collections::BTreeMap;

use mcpgate_fuzzkit::{case_variant, config};
use mcpgate_types::ScopeSet;
use mcpgate_types::client_metadata::{ClientMetadata, is_cimd_client_id};
use mcpgate_types::metadata::{
    AuthorizationServerMetadata, ProtectedResourceMetadata, well_known_insert,
};
use mcpgate_types::pkce::{
    is_valid_s256_challenge, is_valid_verifier, s256_challenge, verify_s256,
};
use mcpgate_types::redirect_uri::{
    MAX_REDIRECT_URI_LEN, display_host, is_localhost_only, matches_registered,
    validate_for_registration,
};
use mcpgate_types::resource::{find_canonical, validate};
use mcpgate_types::scope::is_scope_token;
use mcpgate_types::www_authenticate::{Challenge, find_bearer, parse};
use proptest::prelude::*;

/// One structural mutation of a valid input.
#[derive(Debug, Clone)]
enum Mutation {
    Truncate(usize),
    FlipByte(usize, u8),
    Insert(usize, String),
    Duplicate(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let piece = prop_oneof![
        Just(",".to_string()),
        Just("=".to_string()),
        Just("\"".to_string()),
        Just("\\".to_string()),
        Just(" ".to_string()),
        Just("\t".to_string()),
        Just("\0".to_string()),
        Just("#".to_string()),
        Just("%".to_string()),
        Just("%00".to_string()),
        Just("@".to_string()),
        Just(":".to_string()),
        Just("/".to_string()),
        Just("?".to_string()),
        Just("\u{212a}".to_string()),
        Just("\u{17f}".to_string()),
        Just("\u{ff0e}".to_string()),
        Just("\u{202e}".to_string()),
        "\\PC{1,3}",
        "[a-zA-Z0-9]{1,3}",
        (1usize..4096).prop_map(|n| "a".repeat(n)),
    ];
    prop_oneof![
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 1u8..).prop_map(|(i, x)| Mutation::FlipByte(i, x)),
        (any::<usize>(), piece).prop_map(|(i, s)| Mutation::Insert(i, s)),
        (any::<usize>(), 1usize..16).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
    ]
}

/// Applies `m` to `s`, keeping it a `String` (a flipped byte that breaks UTF-8 is replaced).
fn mutate(s: &str, m: &Mutation) -> String {
    let boundary = |i: usize| {
        let mut i = i % (s.len() + 1);
        while !s.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    match m {
        Mutation::Truncate(i) => s[..boundary(*i)].to_string(),
        Mutation::FlipByte(i, x) => {
            if s.is_empty() {
                return String::new();
            }
            let mut b = s.as_bytes().to_vec();
            let i = i % b.len();
            b[i] ^= x;
            String::from_utf8_lossy(&b).into_owned()
        }
        Mutation::Insert(i, piece) => {
            let i = boundary(*i);
            format!("{}{piece}{}", &s[..i], &s[i..])
        }
        Mutation::Duplicate(i, n) => {
            let a = boundary(*i);
            let b = boundary(a + n);
            format!("{}{}", &s[..b], &s[a..])
        }
    }
}

fn mutated(valid: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
    (valid, proptest::collection::vec(mutation(), 1..4)).prop_map(|(mut s, ms)| {
        for m in &ms {
            s = mutate(&s, m);
        }
        s
    })
}

// ---------------------------------------------------------------------------------------------
// WWW-Authenticate

fn is_tchar_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c))
}

/// A challenge as a server would send it: a token scheme, lower-case token names, values
/// without control characters (the formatter drops those).
fn challenge() -> impl Strategy<Value = Challenge> {
    let scheme = prop_oneof![
        Just("Bearer".to_string()),
        Just("Basic".to_string()),
        Just("DPoP".to_string()),
        "[!#$%&'*+.^_`|~0-9A-Za-z-]{1,12}",
    ];
    let name = prop_oneof![
        Just("error".to_string()),
        Just("error_description".to_string()),
        Just("scope".to_string()),
        Just("resource_metadata".to_string()),
        Just("realm".to_string()),
        "[!#$%&'*+.^_`|~0-9a-z-]{1,12}",
    ];
    let value = prop_oneof![
        "[ -~]{0,24}",
        "[^\\p{Cc}]{0,16}",
        Just("https://gw.example/.well-known/oauth-protected-resource/mcp/a".to_string()),
        Just("a \"quoted\" \\ value, with=commas".to_string()),
    ];
    (scheme, proptest::collection::btree_map(name, value, 0..6))
        .prop_map(|(scheme, params)| Challenge { scheme, params })
}

fn header() -> impl Strategy<Value = String> {
    proptest::collection::vec(challenge(), 1..4).prop_map(|cs| {
        cs.iter()
            .map(Challenge::to_header_value)
            .collect::<Vec<_>>()
            .join(", ")
    })
}

fn well_formed(cs: &[Challenge], input: &str) -> Result<(), TestCaseError> {
    prop_assert!(cs.len() <= input.len());
    for c in cs {
        prop_assert!(is_tchar_token(&c.scheme), "scheme {:?}", c.scheme);
        for k in c.params.keys() {
            prop_assert!(
                k == "token68" || (is_tchar_token(k) && *k == k.to_ascii_lowercase()),
                "name {:?}",
                k
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(4096))]

    #[test]
    fn www_authenticate_round_trips(cs in proptest::collection::vec(challenge(), 1..4)) {
        let text = cs.iter().map(Challenge::to_header_value).collect::<Vec<_>>().join(", ");
        prop_assert_eq!(parse(&text), cs.clone(), "{}", text);
        // Lower-case names are found under any case.
        if let Some(b) = cs.iter().find(|c| c.scheme.eq_ignore_ascii_case("bearer")) {
            let found = find_bearer(&text).expect("a Bearer challenge");
            prop_assert_eq!(&found, b);
            for (k, v) in &b.params {
                prop_assert_eq!(found.get(&k.to_ascii_uppercase()), Some(v.as_str()));
            }
        }
    }

    #[test]
    fn www_authenticate_survives_garbage(raw in prop_oneof![
        ".{0,80}",
        "[a-zA-Z =,\"\\\\\t]{0,80}",
        mutated(header()),
    ]) {
        let cs = parse(&raw);
        well_formed(&cs, &raw)?;
        let _ = find_bearer(&raw);
    }
}

// ---------------------------------------------------------------------------------------------
// Redirect URIs

const DANGEROUS: &[&str] = &[
    "javascript",
    "data",
    "file",
    "vbscript",
    "about",
    "blob",
    "filesystem",
    "view-source",
    "ftp",
    "ws",
    "wss",
    "chrome",
    "chrome-extension",
    "jar",
    "mailto",
    "tel",
];

fn redirect_uri() -> impl Strategy<Value = String> {
    let host = prop_oneof![
        "[a-z][a-z0-9-]{0,8}(\\.[a-z]{2,5}){1,2}",
        Just("127.0.0.1".to_string()),
        Just("[::1]".to_string()),
        Just("localhost".to_string()),
    ];
    let scheme = prop_oneof![
        Just("https".to_string()),
        Just("http".to_string()),
        Just("com.example.app".to_string()),
    ];
    (
        scheme,
        host,
        proptest::option::of(1u16..),
        "(/[a-zA-Z0-9._~-]{0,8}){0,3}",
        proptest::option::of("[a-z]{1,4}=[a-z0-9]{0,4}"),
    )
        .prop_map(|(scheme, host, port, path, query)| {
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            let query = query.map(|q| format!("?{q}")).unwrap_or_default();
            if scheme.contains('.') {
                format!("{scheme}:{path}{query}")
            } else {
                format!("{scheme}://{host}{port}{path}{query}")
            }
        })
}

proptest! {
    #![proptest_config(config(4096))]

    #[test]
    fn registration_accepts_only_safe_uris(raw in prop_oneof![
        ".{0,64}",
        redirect_uri(),
        mutated(redirect_uri()),
    ]) {
        let _ = display_host(&raw);
        let _ = is_localhost_only(&raw);
        if validate_for_registration(&raw).is_ok() {
            prop_assert!(raw.len() <= MAX_REDIRECT_URI_LEN);
            prop_assert!(!raw.contains('#'));
            prop_assert!(!raw.chars().any(|c| c.is_whitespace() || c.is_control()));
            let u = url::Url::parse(&raw).expect("accepted URIs parse");
            prop_assert!(!DANGEROUS.contains(&u.scheme()));
            prop_assert!(u.username().is_empty() && u.password().is_none());
            if u.scheme() == "http" {
                prop_assert!(mcpgate_types::redirect_uri::is_loopback_host(&u), "{}", raw);
            }
        }
    }

    /// A dangerous scheme is refused in any case and whatever follows it.
    #[test]
    fn dangerous_schemes_are_refused(
        scheme in proptest::sample::select(DANGEROUS),
        flips in any::<u64>(),
        rest in "[ -~]{0,30}",
    ) {
        let uri = format!("{}:{rest}", case_variant(scheme, flips));
        prop_assert!(validate_for_registration(&uri).is_err(), "{}", uri);
        // Leading whitespace or control characters, which URL parsers strip, do not help.
        for prefix in [" ", "\t", "\0", "\u{1}", "\n"] {
            let uri = format!("{prefix}{uri}");
            prop_assert!(validate_for_registration(&uri).is_err(), "{:?}", uri);
        }
    }

    /// Plain http goes only to loopback, however the host is spelled.
    #[test]
    fn plain_http_only_to_loopback(
        label in "[a-z][a-z0-9-]{0,8}",
        flips in any::<u64>(),
        trick in proptest::sample::select(vec![
            "{l}.example", "127.0.0.1.{l}.example", "localhost.{l}", "{l}.localhost",
            "localhost%2e{l}.example", "10.0.0.1", "169.254.169.254", "[fd00::1]", "0.0.0.0",
            "127.0.0.1%2e{l}.example", "[::ffff:10.0.0.1]",
        ]),
        path in "(/[a-z]{0,5}){0,2}",
    ) {
        let host = trick.replace("{l}", &label);
        let uri = format!("{}://{}{path}", case_variant("http", flips), case_variant(&host, flips));
        prop_assert!(validate_for_registration(&uri).is_err(), "{}", uri);
    }

    /// Exact matching: a different string matches only by changing a loopback literal's port.
    #[test]
    fn matching_is_exact(registered in redirect_uri(), m in proptest::collection::vec(mutation(), 1..3)) {
        let reg = vec![registered.clone()];
        prop_assert!(matches_registered(&registered, &reg));
        let mut requested = registered.clone();
        for m in &m {
            requested = mutate(&requested, m);
        }
        if requested != registered && matches_registered(&requested, &reg) {
            let strip = |s: &str| {
                for prefix in ["http://127.0.0.1", "http://[::1]"] {
                    if let Some(rest) = s.strip_prefix(prefix) {
                        let rest = rest.strip_prefix(':').map_or(rest, |r| {
                            r.trim_start_matches(|c: char| c.is_ascii_digit())
                        });
                        return Some(format!("{prefix}{rest}"));
                    }
                }
                None
            };
            let (a, b) = (strip(&registered), strip(&requested));
            prop_assert!(a.is_some() && a == b, "{} matched {}", requested, registered);
        }
    }
}

#[test]
fn loopback_port_variants_match() {
    let reg = vec!["http://127.0.0.1/cb".to_string()];
    assert!(matches_registered("http://127.0.0.1:8123/cb", &reg));
    assert!(!matches_registered(
        "http://127.0.0.1:8123@evil.example/cb",
        &reg
    ));
}

// ---------------------------------------------------------------------------------------------
// Scopes, resources, CIMD ids, PKCE

proptest! {
    #![proptest_config(config(4096))]

    #[test]
    fn scopes_round_trip(tokens in proptest::collection::vec("[!#-\\[\\]-~]{1,12}", 0..8)) {
        let set: ScopeSet = tokens.iter().cloned().collect();
        let text = set.to_string();
        prop_assert!(!text.contains("  ") && !text.starts_with(' '));
        prop_assert_eq!(ScopeSet::parse(&text), Ok(set.clone()));
        prop_assert_eq!(ScopeSet::parse(&tokens.join("  ")), Ok(set));
    }

    #[test]
    fn scope_parse_admits_only_rfc6749_characters(raw in prop_oneof![".{0,40}", mutated("[a-z: ]{0,20}")]) {
        if let Ok(set) = ScopeSet::parse(&raw) {
            for t in set.iter() {
                prop_assert!(is_scope_token(t));
                prop_assert!(t.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\'));
            }
        }
    }

    #[test]
    fn resources_fold_only_scheme_and_host(
        host in "[a-z]{1,8}\\.example",
        path in "(/[a-zA-Z]{1,6}){0,3}",
        flips in any::<u64>(),
        m in mutation(),
    ) {
        let canonical = vec![format!("https://{host}{path}")];
        prop_assert!(validate(&canonical[0]).is_ok());
        // Scheme and host in any case find the canonical string.
        let shouted = format!("{}://{}{path}", case_variant("https", flips), case_variant(&host, flips));
        prop_assert_eq!(find_canonical(&shouted, &canonical), Some(canonical[0].as_str()));
        // Any other change to the path or query finds nothing.
        let other = mutate(&canonical[0], &m);
        if let Some(found) = find_canonical(&other, &canonical) {
            // Only case may differ, and only before the path.
            let split = canonical[0].len() - path.len();
            prop_assert_eq!(other.len(), found.len());
            prop_assert!(other.eq_ignore_ascii_case(found));
            prop_assert_eq!(&other.as_bytes()[split..], &found.as_bytes()[split..], "{} found {}", other, found);
        }
        let _ = validate(&other);
        let _ = is_cimd_client_id(&other);
    }

    #[test]
    fn pkce_verifies_only_its_own_challenge(
        verifier in "[A-Za-z0-9._~-]{43,128}",
        m in mutation(),
    ) {
        prop_assert!(is_valid_verifier(&verifier));
        let challenge = s256_challenge(&verifier);
        prop_assert!(is_valid_s256_challenge(&challenge));
        prop_assert!(verify_s256(&verifier, &challenge));
        let other = mutate(&challenge, &m);
        prop_assert_eq!(verify_s256(&verifier, &other), other == challenge);
        let other_verifier = mutate(&verifier, &m);
        if other_verifier != verifier {
            prop_assert!(!verify_s256(&other_verifier, &challenge));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Metadata documents

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,16}",
        "\\PC{0,8}",
        Just("https://as.example/t".to_string())
    ]
}

fn list() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(text(), 0..3)
}

fn as_metadata() -> impl Strategy<Value = AuthorizationServerMetadata> {
    (
        text(),
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of(text()),
        list(),
        list(),
        list(),
        proptest::option::of(any::<bool>()),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(|(issuer, a, t, j, scopes, grants, pkce, iss, cimd)| {
            AuthorizationServerMetadata {
                issuer,
                authorization_endpoint: a,
                token_endpoint: t,
                jwks_uri: j,
                scopes_supported: scopes,
                grant_types_supported: grants,
                code_challenge_methods_supported: pkce,
                authorization_response_iss_parameter_supported: iss,
                client_id_metadata_document_supported: cimd,
                ..AuthorizationServerMetadata::default()
            }
        })
}

fn pr_metadata() -> impl Strategy<Value = ProtectedResourceMetadata> {
    (text(), list(), list(), proptest::option::of(text())).prop_map(
        |(resource, servers, scopes, name)| ProtectedResourceMetadata {
            resource,
            authorization_servers: servers,
            scopes_supported: scopes,
            resource_name: name,
            ..ProtectedResourceMetadata::default()
        },
    )
}

fn client_metadata() -> impl Strategy<Value = ClientMetadata> {
    (
        proptest::option::of(text()),
        list(),
        proptest::option::of(text()),
        proptest::option::of(list()),
        proptest::option::of(text()),
        proptest::option::of(text()),
    )
        .prop_map(
            |(client_id, redirect_uris, method, grants, name, scope)| ClientMetadata {
                client_id,
                redirect_uris,
                token_endpoint_auth_method: method,
                grant_types: grants,
                client_name: name,
                scope,
                ..ClientMetadata::default()
            },
        )
}

/// Arbitrary JSON, shallow and small.
fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        text().prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("issuer".to_string()),
                    Just("resource".to_string()),
                    Just("redirect_uris".to_string()),
                    Just("client_id".to_string()),
                    Just("scopes_supported".to_string()),
                    Just("authorization_servers".to_string()),
                    "[a-z_]{1,8}",
                ],
                inner,
                0..5,
            )
            .prop_map(|m: BTreeMap<String, serde_json::Value>| {
                serde_json::Value::Object(m.into_iter().collect())
            }),
        ]
    })
}

proptest! {
    #![proptest_config(config(2048))]

    #[test]
    fn metadata_round_trips(a in as_metadata(), p in pr_metadata(), c in client_metadata()) {
        let text = serde_json::to_string(&a).unwrap();
        prop_assert_eq!(serde_json::from_str::<AuthorizationServerMetadata>(&text).unwrap(), a);
        let text = serde_json::to_string(&p).unwrap();
        prop_assert_eq!(serde_json::from_str::<ProtectedResourceMetadata>(&text).unwrap(), p);
        let text = serde_json::to_string(&c).unwrap();
        prop_assert_eq!(serde_json::from_str::<ClientMetadata>(&text).unwrap(), c);
    }

    #[test]
    fn metadata_parsers_survive_garbage(
        v in json(),
        raw in prop_oneof![".{0,64}", mutated(as_metadata().prop_map(|a| serde_json::to_string(&a).unwrap()))],
    ) {
        let _ = serde_json::from_value::<AuthorizationServerMetadata>(v.clone());
        let _ = serde_json::from_value::<ProtectedResourceMetadata>(v.clone());
        let _ = serde_json::from_value::<ClientMetadata>(v);
        let _ = serde_json::from_str::<AuthorizationServerMetadata>(&raw);
        let _ = serde_json::from_str::<ProtectedResourceMetadata>(&raw);
        let _ = serde_json::from_str::<ClientMetadata>(&raw);
    }

    #[test]
    fn well_known_insert_keeps_origin(
        raw in prop_oneof![".{0,48}", mutated("https://[a-z]{1,8}\\.example(:[0-9]{1,4})?(/[a-z]{1,4}){0,3}/?")],
        suffix in prop_oneof![Just("oauth-authorization-server"), Just("oauth-protected-resource"), Just("openid-configuration")],
    ) {
        if let Some(out) = well_known_insert(&raw, suffix) {
            let scheme_end = raw.find("://").unwrap() + 3;
            let authority_len = raw[scheme_end..].find('/').unwrap_or(raw.len() - scheme_end);
            let origin = &raw[..scheme_end + authority_len];
            let expected = format!("{origin}/.well-known/{suffix}");
            prop_assert!(out.starts_with(&expected), "{} -> {}", raw, out);
            prop_assert!(!origin[scheme_end..].contains(['?', '#']));
        }
    }
}
