//! Fuzzing of JWS verification, header peeking, JWK set loading and sealing with proptest
//! (issue 15, "Proof").
//!
//! - `Verifier::verify` and `Verifier::peek_kid` never panic on arbitrary text or on tokens
//!   built from arbitrary headers, payloads and signatures; a token that is not exactly the one
//!   signed never verifies (truncated, a byte changed, a part duplicated, separators inserted);
//!   a signed token round-trips its claims; `alg` comes from the key, never from the header.
//! - `Verifier::from_jwks_json` never panics and loads only allow-listed keys that have a `kid`.
//! - `MasterKey::open` refuses arbitrary and altered data and wrong associated data;
//!   `seal` then `open` round-trips.
//!
//! `PROPTEST_CASES` overrides the per-property case counts below.

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcpgate_fuzzkit::config;
use mcpgate_jose::{
    JwtError, KeyAlg, MasterKey, PublicJwks, SigningKey, SystemRng, VerifiedJwt, Verifier,
    VerifyOptions,
};
use proptest::prelude::*;
use serde_json::{Value, json};

const NOW: i64 = 1_800_000_000;
const ISS: &str = "https://as.example";
const AUD: &str = "https://gw.example/mcp/a";

struct Keys {
    es: SigningKey,
    ed: SigningKey,
    verifier: Verifier,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let es = SigningKey::generate("es", KeyAlg::Es256).unwrap();
        let ed = SigningKey::generate("ed", KeyAlg::EdDsa).unwrap();
        let verifier = Verifier::from_public_jwks(&PublicJwks {
            keys: vec![es.public_jwk().clone(), ed.public_jwk().clone()],
        })
        .unwrap();
        Keys { es, ed, verifier }
    })
}

fn opts() -> VerifyOptions<'static> {
    VerifyOptions {
        issuer: ISS,
        audience: Some(AUD),
        typ: Some("at+jwt"),
        now: NOW,
        leeway: 30,
    }
}

fn verify(token: &str) -> Result<VerifiedJwt<Value>, JwtError> {
    keys().verifier.verify::<Value>(token, &opts())
}

/// Claims that verify, with random extra members.
fn claims() -> impl Strategy<Value = Value> {
    (
        "\\PC{0,12}",
        proptest::collection::vec(("[a-z_]{1,6}", "\\PC{0,8}"), 0..4),
        0i64..100_000,
        any::<bool>(),
    )
        .prop_map(|(sub, extra, ttl, many)| {
            let mut c = json!({
                "iss": ISS,
                "aud": if many { json!(["other", AUD]) } else { json!(AUD) },
                "exp": NOW + 1 + ttl,
                "sub": sub,
            });
            for (k, v) in extra {
                if !["iss", "aud", "exp", "nbf"].contains(&k.as_str()) {
                    c[k] = json!(v);
                }
            }
            c
        })
}

/// One structural change to a token.
#[derive(Debug, Clone)]
enum Mutation {
    Truncate(usize),
    FlipByte(usize, u8),
    Insert(usize, String),
    DuplicatePart(usize),
    SwapParts(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let piece = prop_oneof![
        Just(".".to_string()),
        Just("=".to_string()),
        Just("==".to_string()),
        Just(" ".to_string()),
        Just("\0".to_string()),
        Just("+".to_string()),
        Just("/".to_string()),
        Just("\u{2024}".to_string()),
        "[A-Za-z0-9_-]{1,4}",
        "\\PC{1,2}",
    ];
    prop_oneof![
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 1u8..).prop_map(|(i, x)| Mutation::FlipByte(i, x)),
        (any::<usize>(), piece).prop_map(|(i, s)| Mutation::Insert(i, s)),
        (0usize..3).prop_map(Mutation::DuplicatePart),
        (0usize..3, 0usize..3).prop_map(|(a, b)| Mutation::SwapParts(a, b)),
    ]
}

fn mutate(t: &str, m: &Mutation) -> String {
    let boundary = |i: usize| {
        let mut i = i % (t.len() + 1);
        while !t.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let parts: Vec<&str> = t.split('.').collect();
    match m {
        Mutation::Truncate(i) => t[..boundary(*i)].to_string(),
        Mutation::FlipByte(i, x) => {
            let mut b = t.as_bytes().to_vec();
            if !b.is_empty() {
                let i = i % b.len();
                b[i] ^= x;
            }
            String::from_utf8_lossy(&b).into_owned()
        }
        Mutation::Insert(i, s) => {
            let i = boundary(*i);
            format!("{}{s}{}", &t[..i], &t[i..])
        }
        Mutation::DuplicatePart(i) => {
            let mut p = parts.clone();
            if let Some(x) = parts.get(*i) {
                p.insert(*i, x);
            }
            p.join(".")
        }
        Mutation::SwapParts(a, b) => {
            let mut p = parts.clone();
            if *a < p.len() && *b < p.len() {
                p.swap(*a, *b);
            }
            p.join(".")
        }
    }
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// A JOSE header: random `alg`, `kid`, `typ`, extra members, or no object at all.
fn header() -> impl Strategy<Value = Value> {
    let alg = prop_oneof![
        Just(json!("none")),
        Just(json!("None")),
        Just(json!("HS256")),
        Just(json!("ES256")),
        Just(json!("EdDSA")),
        Just(json!("RS256")),
        Just(json!("PS512")),
        Just(json!(null)),
        Just(json!(["ES256"])),
        "\\PC{0,6}".prop_map(Value::from),
    ];
    let kid = prop_oneof![
        Just(json!("es")),
        Just(json!("ed")),
        Just(json!("ES")),
        Just(json!("es\u{0}")),
        Just(json!(7)),
        "\\PC{0,6}".prop_map(Value::from),
    ];
    let typ = prop_oneof![
        Just(json!("at+jwt")),
        Just(json!("JWT")),
        Just(json!("application/at+jwt")),
        "\\PC{0,8}".prop_map(Value::from),
    ];
    prop_oneof![
        8 => (alg, proptest::option::of(kid), proptest::option::of(typ), proptest::option::of("[a-z]{1,4}"))
            .prop_map(|(alg, kid, typ, crit)| {
                let mut h = json!({ "alg": alg });
                if let Some(k) = kid {
                    h["kid"] = k;
                }
                if let Some(t) = typ {
                    h["typ"] = t;
                }
                if let Some(c) = crit {
                    h["crit"] = json!([c]);
                }
                h
            }),
        1 => Just(json!([])),
        1 => Just(json!("ES256")),
    ]
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn signed_tokens_round_trip(c in claims(), ed in any::<bool>(), typ in prop_oneof![
        Just("at+jwt"), Just("AT+JWT"), Just("application/at+jwt"), Just("Application/AT+JWT"),
    ]) {
        let key = if ed { &keys().ed } else { &keys().es };
        let token = key.sign(typ, &c).unwrap();
        let got = verify(&token).unwrap();
        prop_assert_eq!(&got.claims, &c);
        prop_assert_eq!(got.kid.as_str(), key.kid());
        prop_assert_eq!(got.alg.as_str(), key.alg().as_str());
        prop_assert_eq!(Verifier::peek_kid(&token), Ok(Some(key.kid().to_string())));
    }

    /// Anything but the exact token signed fails, with an error, without panicking.
    #[test]
    fn altered_tokens_never_verify(
        c in claims(),
        ed in any::<bool>(),
        ms in proptest::collection::vec(mutation(), 1..4),
    ) {
        let key = if ed { &keys().ed } else { &keys().es };
        let token = key.sign("at+jwt", &c).unwrap();
        let mut altered = token.clone();
        for m in &ms {
            altered = mutate(&altered, m);
        }
        let _ = Verifier::peek_kid(&altered);
        if altered != token {
            prop_assert!(verify(&altered).is_err(), "{} verified", altered);
        }
    }

    /// Tokens put together from arbitrary headers, payloads and signatures never verify.
    #[test]
    fn crafted_tokens_never_verify(
        h in header(),
        c in claims(),
        sig in proptest::collection::vec(any::<u8>(), 0..80),
        raw_sig in proptest::option::of("[A-Za-z0-9_=+/.-]{0,90}"),
    ) {
        let sig = raw_sig.unwrap_or_else(|| URL_SAFE_NO_PAD.encode(&sig));
        let token = format!("{}.{}.{sig}", b64(&h), b64(&c));
        let _ = Verifier::peek_kid(&token);
        let got = verify(&token);
        prop_assert!(got.is_err(), "{}", token);
        // `none` and HMAC are refused as such whenever the kid names one of our keys.
        let named = matches!(h.get("kid").and_then(Value::as_str), Some("es" | "ed"));
        if named && matches!(h.get("alg").and_then(Value::as_str), Some("none" | "HS256")) {
            prop_assert!(matches!(got, Err(JwtError::AlgorithmNotAllowed | JwtError::Malformed)), "{:?}", got);
        }
    }

    #[test]
    fn arbitrary_text_is_refused(raw in prop_oneof![
        ".{0,200}",
        "[A-Za-z0-9_-]{0,40}\\.[A-Za-z0-9_-]{0,40}\\.[A-Za-z0-9_-]{0,40}",
        "[A-Za-z0-9_.=+/ -]{0,120}",
    ]) {
        let _ = Verifier::peek_kid(&raw);
        prop_assert!(verify(&raw).is_err());
    }

    /// Oversized parts are refused without trouble.
    #[test]
    fn huge_parts_are_refused(n in 1usize..200_000, part in 0usize..3) {
        let token = keys().es.sign("at+jwt", &json!({"iss": ISS, "aud": AUD, "exp": NOW + 60})).unwrap();
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        parts[part].push_str(&"A".repeat(n));
        let huge = parts.join(".");
        prop_assert!(verify(&huge).is_err());
    }
}

fn jwk() -> impl Strategy<Value = Value> {
    let s = |v: &[&'static str]| proptest::sample::select(v.to_vec()).prop_map(Value::from);
    let field = prop_oneof![
        Just(json!(null)),
        Just(json!(1)),
        "[A-Za-z0-9_-]{0,60}".prop_map(Value::from),
    ];
    (
        proptest::option::of(s(&["EC", "OKP", "RSA", "oct", "ec"])),
        proptest::option::of(s(&["P-256", "P-384", "Ed25519", "X25519"])),
        proptest::option::of(s(&["ES256", "EdDSA", "RS256", "PS384", "HS256", "none"])),
        proptest::option::of(s(&["sig", "enc", ""])),
        proptest::option::of("\\PC{0,6}".prop_map(Value::from)),
        proptest::collection::vec((s(&["x", "y", "n", "e", "d", "k"]), field), 0..5),
    )
        .prop_map(|(kty, crv, alg, use_, kid, rest)| {
            let mut k = json!({});
            for (name, v) in [
                ("kty", kty),
                ("crv", crv),
                ("alg", alg),
                ("use", use_),
                ("kid", kid),
            ] {
                if let Some(v) = v {
                    k[name] = v;
                }
            }
            for (name, v) in rest {
                k[name.as_str().unwrap()] = v;
            }
            k
        })
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn jwk_sets_load_only_usable_keys(
        ks in proptest::collection::vec(jwk(), 0..5),
        real in any::<bool>(),
        wrap in 0u8..4,
    ) {
        let mut list = ks.clone();
        if real {
            list.push(serde_json::to_value(keys().es.public_jwk()).unwrap());
        }
        let doc = match wrap {
            0 => json!({ "keys": list }),
            1 => json!(list),
            2 => json!({ "keys": {} }),
            _ => json!({ "keys": list, "extra": [1, 2] }),
        };
        match Verifier::from_jwks_json(&doc) {
            Ok(v) => {
                let with_kid = list.iter().filter(|k| k.get("kid").is_some_and(Value::is_string)).count();
                prop_assert!(v.len() <= with_kid);
                if real && wrap != 1 && wrap != 2 {
                    prop_assert!(v.contains("es"));
                }
                // Keys from arbitrary material must still refuse every token they did not sign.
                let token = keys().ed.sign("at+jwt", &json!({"iss": ISS, "aud": AUD, "exp": NOW + 60})).unwrap();
                if !v.contains("ed") {
                    prop_assert!(v.verify::<Value>(&token, &opts()).is_err());
                }
            }
            Err(_) => prop_assert!(!doc.get("keys").is_some_and(Value::is_array)),
        }
    }
}

fn master() -> &'static MasterKey {
    static KEY: OnceLock<MasterKey> = OnceLock::new();
    KEY.get_or_init(|| MasterKey::generate(&SystemRng::new()).0)
}

proptest! {
    #![proptest_config(config(2048))]

    #[test]
    fn sealing_round_trips_and_refuses_tampering(
        plain in proptest::collection::vec(any::<u8>(), 0..256),
        aad in proptest::collection::vec(any::<u8>(), 0..32),
        other_aad in proptest::collection::vec(any::<u8>(), 0..32),
        flip in (any::<usize>(), 1u8..),
        cut in any::<usize>(),
    ) {
        let sealed = master().seal(&SystemRng::new(), &plain, &aad);
        prop_assert_eq!(master().open(&sealed, &aad), Ok(plain.clone()));
        if other_aad != aad {
            prop_assert!(master().open(&sealed, &other_aad).is_err());
        }
        let mut bad = sealed.clone();
        let i = flip.0 % bad.len();
        bad[i] ^= flip.1;
        prop_assert!(master().open(&bad, &aad).is_err());
        let cut = cut % sealed.len();
        prop_assert!(master().open(&sealed[..cut], &aad).is_err());
    }

    #[test]
    fn opening_garbage_fails(
        raw in proptest::collection::vec(any::<u8>(), 0..128),
        text in ".{0,64}",
    ) {
        prop_assert!(master().open(&raw, b"").is_err());
        let _ = MasterKey::from_base64(&text);
        prop_assert!(MasterKey::from_bytes(&raw).is_ok() == (raw.len() == 32));
    }
}
