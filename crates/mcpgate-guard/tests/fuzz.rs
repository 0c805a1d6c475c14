//! Fuzzing of the guard's parsers with proptest (issue 15, "Proof").
//!
//! - `bearer::extract`: arbitrary `Authorization` values and query strings never panic; a token
//!   comes back only from one `Bearer` header (scheme in any case) and only as RFC 6750 token68
//!   within the size limit; an `access_token` query parameter is refused however its name is
//!   spelled (case, percent-encoding, `+` and spaces around it, position), with or without a
//!   header.
//! - `www_authenticate`: every challenge the guard formats parses back (the client's parser in
//!   `mcpgate-types`) to the same error, description, scope (never `offline_access`) and
//!   `resource_metadata`.
//! - `Guard::validate_token` (the unverified `iss` peek, JWS verification and the claims): no
//!   panic on arbitrary text or altered tokens, which are all refused as `invalid_token`; a
//!   signed token with arbitrary claims either becomes a principal that carries exactly those
//!   claims or is refused.
//!
//! `PROPTEST_CASES` overrides the per-property case counts below.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use mcpgate_fuzzkit::{case_variant, config};
use mcpgate_guard::bearer::{MAX_TOKEN_LEN, extract, is_token68};
use mcpgate_guard::{Challenge, Guard, GuardConfig, Principal, TrustedIssuer, www_authenticate};
use mcpgate_jose::{FixedClock, KeyAlg, PublicJwks, SigningKey, Verifier};
use mcpgate_types::ScopeSet;
use mcpgate_types::www_authenticate::{find_bearer, find_scheme};
use proptest::prelude::*;
use serde_json::{Value, json};

fn headers(values: &[Vec<u8>]) -> Option<HeaderMap> {
    let mut h = HeaderMap::new();
    for v in values {
        h.append(AUTHORIZATION, HeaderValue::from_bytes(v).ok()?);
    }
    Some(h)
}

/// `access_token` spelled so that a form decoder reads that name.
fn access_token_name() -> impl Strategy<Value = String> {
    (
        any::<u64>(),
        any::<u64>(),
        proptest::sample::select(vec!["", "+", "%20", "++", "%09"]),
        proptest::sample::select(vec!["", "+", "%20", "%0A"]),
    )
        .prop_map(|(flips, encode, before, after)| {
            let name: String = "access_token"
                .chars()
                .enumerate()
                .map(|(i, c)| {
                    let c = if flips & (1 << i) != 0 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    };
                    if encode & (1 << i) != 0 {
                        format!("%{:02X}", c as u32)
                    } else {
                        c.to_string()
                    }
                })
                .collect();
            format!("{before}{name}{after}")
        })
}

fn token68() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._~+/-]{1,64}={0,2}"
}

proptest! {
    #![proptest_config(config(4096))]

    /// Whatever comes out of `extract` is a token68 from the one Bearer header.
    #[test]
    fn extract_returns_only_bearer_token68(
        values in proptest::collection::vec(prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..40),
            (proptest::sample::select(vec!["Bearer", "bearer", "BEARER", "Basic", "DPoP", "Bearer,"]),
             "[ ]{0,3}", ".{0,30}")
                .prop_map(|(s, sp, t)| format!("{s}{sp}{t}").into_bytes()),
        ], 0..3),
        query in proptest::option::of(".{0,40}"),
    ) {
        let Some(h) = headers(&values) else { return Ok(()) };
        if let Ok(token) = extract(&h, query.as_deref()) {
            prop_assert_eq!(values.len(), 1);
            prop_assert!(is_token68(token) && token.len() <= MAX_TOKEN_LEN);
            let v = &values[0];
            prop_assert!(v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer "));
            prop_assert!(v.ends_with(token.as_bytes()));
            prop_assert!(v[7..v.len() - token.len()].iter().all(|b| *b == b' '));
        }
    }

    /// A good header in any scheme case gives its token; a bad token gives invalid_request.
    #[test]
    fn extract_accepts_bearer_in_any_case(
        flips in any::<u64>(),
        spaces in 1usize..4,
        token in token68(),
        junk in proptest::sample::select(vec!["a b", ",", "\"", "é", "\u{0}", "=a", "\t", ";"]),
        at in any::<usize>(),
    ) {
        let value = format!("{}{}{token}", case_variant("bearer", flips), " ".repeat(spaces));
        let h = headers(&[value.clone().into_bytes()]).unwrap();
        prop_assert_eq!(extract(&h, None), Ok(token.as_str()));
        prop_assert_eq!(extract(&h, Some("a=1&b=access_token")), Ok(token.as_str()));
        // Two headers, even identical ones, are refused.
        let two = headers(&[value.clone().into_bytes(), value.into_bytes()]).unwrap();
        prop_assert!(matches!(extract(&two, None), Err(Challenge::InvalidRequest(_))));
        // A character outside token68 inside the token makes the credential malformed.
        let mut i = at % (token.len() + 1);
        while !token.is_char_boundary(i) {
            i -= 1;
        }
        let bad = format!("Bearer {}{junk}{}", &token[..i], &token[i..]);
        if let Some(h) = headers(&[bad.clone().into_bytes()]) {
            let got = extract(&h, None);
            prop_assert!(got.is_err(), "{:?} accepted", bad);
        }
    }

    /// A token in the query is refused however its name is written.
    #[test]
    fn query_tokens_are_always_refused(
        name in access_token_name(),
        value in "[a-zA-Z0-9%+]{0,12}",
        before in proptest::collection::vec("[a-z_]{1,6}=[a-z0-9]{0,4}", 0..3),
        after in proptest::collection::vec("[a-z_]{1,6}=[a-z0-9]{0,4}", 0..3),
        eq in any::<bool>(),
        with_header in any::<bool>(),
    ) {
        let param = if eq || !value.is_empty() { format!("{name}={value}") } else { name.clone() };
        let mut all = before.clone();
        all.push(param);
        all.extend(after);
        let query = all.join("&");
        let h = if with_header {
            headers(&[b"Bearer abc".to_vec()]).unwrap()
        } else {
            HeaderMap::new()
        };
        prop_assert!(
            matches!(extract(&h, Some(&query)), Err(Challenge::InvalidRequest(_))),
            "{} was not refused", query
        );
    }
}

fn scopes() -> impl Strategy<Value = ScopeSet> {
    proptest::collection::vec(
        prop_oneof![Just("offline_access".to_string()), "[a-z:]{1,8}"],
        0..4,
    )
    .prop_map(|v| v.into_iter().collect())
}

fn challenge() -> impl Strategy<Value = Challenge> {
    let text = "[^\\p{Cc}]{0,40}";
    prop_oneof![
        Just(Challenge::Missing),
        text.prop_map(Challenge::InvalidToken),
        text.prop_map(Challenge::InvalidRequest),
        text.prop_map(Challenge::InvalidDpopProof),
        "[A-Za-z0-9_-]{1,40}".prop_map(|nonce| Challenge::UseDpopNonce { nonce }),
        (scopes(), text).prop_map(|(required, description)| Challenge::InsufficientScope {
            required,
            description
        }),
    ]
}

proptest! {
    #![proptest_config(config(4096))]

    #[test]
    fn challenges_parse_back(
        ch in challenge(),
        baseline in scopes(),
        prm in prop_oneof![
            Just("https://gw.example/.well-known/oauth-protected-resource/mcp/a".to_string()),
            "https://[a-z]{1,8}\\.example/[^\\p{Cc}\"]{0,20}",
        ],
    ) {
        let header = www_authenticate(&ch, &prm, &baseline);
        let dpop = matches!(ch, Challenge::InvalidDpopProof(_) | Challenge::UseDpopNonce { .. });
        let parsed = if dpop {
            find_scheme(&header, "dpop").expect("a DPoP challenge")
        } else {
            find_bearer(&header).expect("a Bearer challenge")
        };
        prop_assert_eq!(parsed.get("resource_metadata"), Some(prm.as_str()));
        let scope_of = |s: &ScopeSet| {
            let v: Vec<&str> = s.iter().filter(|s| *s != "offline_access").collect();
            (!v.is_empty()).then(|| v.join(" "))
        };
        let (error, description, scope) = match &ch {
            Challenge::Missing => (None, None, scope_of(&baseline)),
            Challenge::InvalidToken(d) => (Some("invalid_token"), Some(d.as_str()), scope_of(&baseline)),
            Challenge::InvalidRequest(d) => (Some("invalid_request"), Some(d.as_str()), None),
            Challenge::InvalidDpopProof(d) => (Some("invalid_dpop_proof"), Some(d.as_str()), None),
            Challenge::UseDpopNonce { .. } => {
                (Some("use_dpop_nonce"), Some("a fresh DPoP nonce is required"), None)
            }
            Challenge::InsufficientScope { required, description } => {
                (Some("insufficient_scope"), Some(description.as_str()), scope_of(required))
            }
        };
        prop_assert_eq!(parsed.get("error"), error);
        prop_assert_eq!(parsed.get("error_description"), description);
        prop_assert_eq!(parsed.get("scope"), scope.as_deref());
        prop_assert!(!parsed.get("scope").unwrap_or("").split(' ').any(|s| s == "offline_access"));
    }
}

const NOW: i64 = 1_800_000_000;
const ISS: &str = "https://as.example";
const RES: &str = "https://gw.example/mcp/a";

struct Setup {
    key: SigningKey,
    stranger: SigningKey,
    guard: Guard,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let key = SigningKey::generate("k1", KeyAlg::Es256).unwrap();
        let stranger = SigningKey::generate("k1", KeyAlg::Es256).unwrap();
        let verifier = Arc::new(
            Verifier::from_public_jwks(&PublicJwks {
                keys: vec![key.public_jwk().clone()],
            })
            .unwrap(),
        );
        let config = GuardConfig::new(RES, mcpgate_guard::prm_url(RES).unwrap())
            .with_clock(Arc::new(FixedClock::new(NOW)))
            .with_issuer(TrustedIssuer::local(ISS, Arc::new(verifier)));
        Setup {
            key,
            stranger,
            guard: Guard::new(config).unwrap(),
        }
    })
}

/// Validates with the local keys: nothing waits, so one poll must finish it.
fn validate(token: &str) -> Result<Principal, Challenge> {
    let mut fut = std::pin::pin!(setup().guard.validate_token(token));
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(r) => r,
        Poll::Pending => panic!("validating {token:?} did not complete"),
    }
}

fn optional_text() -> impl Strategy<Value = Option<Value>> {
    proptest::option::of(prop_oneof![
        4 => "[a-z0-9-]{0,8}".prop_map(Value::from),
        1 => Just(json!(7)),
        1 => Just(json!(["x"])),
        1 => Just(json!(null)),
    ])
}

/// Access-token claims with random identity, client and scope members.
fn claims() -> impl Strategy<Value = Value> {
    (
        optional_text(),
        optional_text(),
        optional_text(),
        optional_text(),
        proptest::option::of(prop_oneof![
            "[a-z:]{1,6}( [a-z:]{1,6}){0,2}".prop_map(Value::from),
            "[ -~]{0,12}".prop_map(Value::from),
            Just(json!(3)),
        ]),
        proptest::option::of(prop_oneof![
            proptest::collection::vec("[a-z:]{1,6}", 0..3).prop_map(Value::from),
            "[ -~]{0,12}".prop_map(Value::from),
            Just(json!([1, 2])),
        ]),
        proptest::option::of(prop_oneof![
            proptest::collection::vec("[a-z]{1,6}", 0..3).prop_map(Value::from),
            Just(json!("admins")),
        ]),
        proptest::option::of(prop_oneof![
            Just(json!(1.5)),
            Just(json!("x")),
            Just(json!(NOW))
        ]),
    )
        .prop_map(|(sub, client_id, azp, cid, scope, scp, groups, iat)| {
            let mut c = json!({"iss": ISS, "aud": RES, "exp": NOW + 600});
            for (k, v) in [
                ("sub", sub),
                ("client_id", client_id),
                ("azp", azp),
                ("cid", cid),
                ("scope", scope),
                ("scp", scp),
                ("groups", groups),
                ("iat", iat),
            ] {
                if let Some(v) = v {
                    c[k] = v;
                }
            }
            c
        })
}

fn mutate(token: &str, at: usize, how: u8, piece: &str) -> String {
    let mut i = at % (token.len() + 1);
    while !token.is_char_boundary(i) {
        i -= 1;
    }
    match how % 3 {
        0 => token[..i].to_string(),
        1 => format!("{}{piece}{}", &token[..i], &token[i..]),
        _ => {
            let mut b = token.as_bytes().to_vec();
            if !b.is_empty() {
                let i = at % b.len();
                b[i] ^= 1 + (how >> 2);
            }
            String::from_utf8_lossy(&b).into_owned()
        }
    }
}

proptest! {
    #![proptest_config(config(1024))]

    /// A principal carries exactly what the token says, or the token is refused.
    #[test]
    fn signed_claims_become_exactly_this_principal(c in claims()) {
        let token = setup().key.sign("at+jwt", &c).unwrap();
        let s = |k: &str| c.get(k).and_then(Value::as_str);
        match validate(&token) {
            Ok(p) => {
                prop_assert_eq!(p.issuer.as_str(), ISS);
                prop_assert_eq!(Some(p.subject.as_str()), s("sub"));
                prop_assert!(!p.subject.is_empty() && !p.client_id.is_empty());
                let client = ["client_id", "azp", "cid"].iter().find_map(|k| c.get(*k).filter(|v| !v.is_null()));
                prop_assert_eq!(client.and_then(Value::as_str), Some(p.client_id.as_str()));
                prop_assert_eq!(p.expires_at, NOW + 600);
                let want = match (c.get("scope").filter(|v| !v.is_null()), c.get("scp").filter(|v| !v.is_null())) {
                    (Some(Value::String(s)), _) | (None, Some(Value::String(s))) => ScopeSet::parse(s).unwrap(),
                    (None, Some(Value::Array(l))) => l.iter().map(|v| v.as_str().unwrap()).collect(),
                    (None, None) => ScopeSet::new(),
                    other => return Err(TestCaseError::fail(format!("accepted scopes {other:?}"))),
                };
                prop_assert_eq!(p.scopes, want);
            }
            Err(ch) => {
                prop_assert!(matches!(ch, Challenge::InvalidToken(_)), "{:?}", ch);
                // A refusal has a reason in the claims.
                let sub_ok = s("sub").is_some_and(|v| !v.is_empty());
                let client_ok = ["client_id", "azp", "cid"]
                    .iter()
                    .find_map(|k| c.get(*k).filter(|v| !v.is_null()))
                    .and_then(Value::as_str)
                    .is_some_and(|v| !v.is_empty());
                let typed = |k: &str, ok: fn(&Value) -> bool| c.get(k).is_none_or(|v| v.is_null() || ok(v));
                let types_ok = ["sub", "client_id", "azp", "cid"].iter().all(|k| typed(k, Value::is_string))
                    && typed("scope", Value::is_string)
                    && typed("groups", |v| v.as_array().is_some_and(|a| a.iter().all(Value::is_string)))
                    && typed("scp", |v| v.is_string() || v.as_array().is_some_and(|a| a.iter().all(Value::is_string)));
                let scope_ok = [c.get("scope"), c.get("scp")].into_iter().flatten().all(|v| match v {
                    Value::String(s) => ScopeSet::parse(s).is_ok(),
                    Value::Array(a) => a.iter().all(|s| s.as_str().is_some_and(mcpgate_types::scope::is_scope_token)),
                    _ => true,
                });
                prop_assert!(!(sub_ok && client_ok && types_ok && scope_ok), "refused {}: {:?}", c, ch);
            }
        }
    }

    /// Altered, foreign and arbitrary tokens are refused as invalid tokens.
    #[test]
    fn other_tokens_are_refused(
        at in any::<usize>(),
        how in any::<u8>(),
        piece in prop_oneof![Just("."), Just("=="), Just(" "), Just("\u{0}"), Just("a")],
        raw in prop_oneof![".{0,120}", "[A-Za-z0-9_-]{0,30}\\.[A-Za-z0-9_-]{0,60}\\.[A-Za-z0-9_-]{0,30}"],
        iss in prop_oneof![Just(ISS.to_string()), Just(format!("{ISS}/")), Just(ISS.to_uppercase()), "\\PC{0,10}"],
    ) {
        let good = json!({"iss": ISS, "aud": RES, "exp": NOW + 600, "sub": "u", "client_id": "c"});
        let token = setup().key.sign("at+jwt", &good).unwrap();
        prop_assert!(validate(&token).is_ok());
        let altered = mutate(&token, at, how, piece);
        if altered != token {
            prop_assert!(matches!(validate(&altered), Err(Challenge::InvalidToken(_))), "{}", altered);
        }
        // The same kid with another key, and another issuer's name, are refused.
        let forged = setup().stranger.sign("at+jwt", &good).unwrap();
        prop_assert!(validate(&forged).is_err());
        let mut other = good.clone();
        other["iss"] = json!(iss);
        let t = setup().key.sign("at+jwt", &other).unwrap();
        prop_assert_eq!(validate(&t).is_ok(), iss == ISS);
        // An unsigned token naming our issuer is refused.
        let unsigned = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none","kid":"k1","typ":"at+jwt"}"#),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&good).unwrap()),
        );
        prop_assert!(validate(&unsigned).is_err());
        prop_assert!(matches!(validate(&raw), Err(Challenge::InvalidToken(_))));
    }
}
