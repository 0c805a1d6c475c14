//! DPoP (RFC 9449): proofs of possession of a key, made by a client for one
//! HTTP request and checked by the server that receives it. One maker and one
//! checker for every party mcpgate plays: the MCP client signs proofs, the
//! authorization server checks them at its token endpoint, the gateway and
//! the guard at every request with a DPoP-bound token.
//!
//! What the checker does not decide is left to the caller: whether a `jti`
//! was seen before (a replay cache is the server's, per resource), and which
//! nonce it wants ([`NonceKey`] makes and checks stateless ones).

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use mcpgate_types::secret::ct_eq;

use crate::clock::{Rng, random_token};
use crate::jwt::{JwtError, Verifier};
use crate::keys::SigningKey;

/// The `typ` of a DPoP proof JWT (RFC 9449 §4.2).
pub const PROOF_TYP: &str = "dpop+jwt";
/// The algorithms mcpgate accepts in a proof and advertises as
/// `dpop_signing_alg_values_supported`: asymmetric only (RFC 9449 §4.2).
pub const PROOF_ALGS: [&str; 4] = ["ES256", "EdDSA", "RS256", "PS256"];
/// The largest proof looked at; a larger `DPoP` header is refused unread.
pub const MAX_PROOF_BYTES: usize = 4096;
/// How far a proof's `iat` may lie from the checker's clock, either way
/// (seconds). SEP-1932 names ±5 minutes as the widest window for servers
/// without nonces; a minute is enough for a client that makes its proof
/// just before it sends it.
pub const DEFAULT_IAT_WINDOW_SECS: i64 = 60;

/// Why a proof was refused. Every variant maps to `invalid_dpop_proof`
/// except [`DpopError::NonceRequired`] (`use_dpop_nonce`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DpopError {
    #[error("the DPoP proof is not a well-formed proof JWT: {0}")]
    Malformed(&'static str),
    #[error("the DPoP proof's key or algorithm is not acceptable: {0}")]
    Key(&'static str),
    #[error("the DPoP proof's signature does not verify")]
    BadSignature,
    #[error("the DPoP proof is for another HTTP method")]
    WrongMethod,
    #[error("the DPoP proof is for another URI")]
    WrongUri,
    #[error("the DPoP proof's iat is outside the accepted window")]
    Stale,
    #[error("the DPoP proof does not hash the presented access token (ath)")]
    WrongAth,
    #[error("the DPoP proof's key is not the one the token is bound to")]
    WrongKey,
    #[error("a fresh DPoP nonce is required")]
    NonceRequired,
}

impl DpopError {
    /// The OAuth error code of RFC 9449 §§5, 7.1, 8, 9.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NonceRequired => "use_dpop_nonce",
            _ => "invalid_dpop_proof",
        }
    }
}

/// `base64url(SHA-256(access token))`, the `ath` of a proof (RFC 9449 §4.2).
pub fn token_hash(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        access_token.as_bytes(),
    ))
}

/// A proof by `key` for the request `htm htu` made at `now`: with `ath` when
/// it goes with an access token, and the server's `nonce` when it asked for
/// one. Every proof has a fresh random `jti`. `htu` loses any query and
/// fragment, as RFC 9449 §4.2 requires.
pub fn proof(
    key: &SigningKey,
    htm: &str,
    htu: &str,
    access_token: Option<&str>,
    nonce: Option<&str>,
    now: i64,
    rng: &dyn Rng,
) -> Result<String, JwtError> {
    let jwk = key.public_jwk();
    let mut public = json!({"kty": jwk.kty, "crv": jwk.crv, "x": jwk.x});
    if let Some(y) = &jwk.y {
        public["y"] = json!(y);
    }
    let header = json!({"typ": PROOF_TYP, "alg": key.alg().as_str(), "jwk": public});
    let mut claims = json!({
        "jti": random_token(rng, 24),
        "htm": htm,
        "htu": without_query(htu),
        "iat": now,
    });
    if let Some(token) = access_token {
        claims["ath"] = json!(token_hash(token));
    }
    if let Some(nonce) = nonce {
        claims["nonce"] = json!(nonce);
    }
    key.sign_with_header(&header, &claims)
}

/// What a proof must match, from the request the checker received.
#[derive(Debug, Clone)]
pub struct ProofCheck<'a> {
    /// The request's method.
    pub htm: &'a str,
    /// The request's URI as this server is addressed (scheme, authority,
    /// path); any query or fragment is ignored on both sides.
    pub htu: &'a str,
    /// The access token sent with the proof: its hash must be the `ath`.
    /// `None` at a token endpoint, where a proof carries no `ath`.
    pub access_token: Option<&'a str>,
    /// The thumbprint the access token is bound to (`cnf.jkt`), if any.
    pub jkt: Option<&'a str>,
    /// The checker's clock (seconds).
    pub now: i64,
    /// How far `iat` may be from `now`, either way.
    pub iat_window: i64,
}

/// A proof that passed: what the caller still decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedProof {
    /// RFC 7638 thumbprint of the proof's key: the `cnf.jkt` to bind to.
    pub jkt: String,
    /// The proof's unique id, for the caller's replay cache.
    pub jti: String,
    /// When the client made it.
    pub iat: i64,
    /// The nonce it carries, if any, for the caller's nonce check.
    pub nonce: Option<String>,
}

/// Checks one `DPoP` header value (RFC 9449 §4.3): syntax, an asymmetric
/// algorithm from [`PROOF_ALGS`] matching the embedded public key (never a
/// private one), the signature, `htm`, `htu`, `iat` in the window, `ath`
/// when a token goes with it, and the token's `cnf.jkt` when it is bound.
pub fn check(proof: &str, want: &ProofCheck<'_>) -> Result<CheckedProof, DpopError> {
    if proof.len() > MAX_PROOF_BYTES {
        return Err(DpopError::Malformed("larger than 4 KiB"));
    }
    let mut parts = proof.split('.');
    let (Some(head), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(DpopError::Malformed("not a compact JWS"));
    };
    let header: Value = URL_SAFE_NO_PAD
        .decode(head)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(DpopError::Malformed("the header is not base64url JSON"))?;
    if header.get("typ").and_then(Value::as_str) != Some(PROOF_TYP) {
        return Err(DpopError::Malformed("typ is not dpop+jwt"));
    }
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .filter(|a| PROOF_ALGS.contains(a))
        .ok_or(DpopError::Key(
            "alg is not one of ES256, EdDSA, RS256, PS256",
        ))?;
    let mut jwk = header
        .get("jwk")
        .filter(|j| j.is_object())
        .cloned()
        .ok_or(DpopError::Key("no jwk header"))?;
    // The key is checked for the algorithm the header names, under the kid
    // the header names (if any), so the signature step finds exactly it.
    jwk["alg"] = json!(alg);
    match header.get("kid").and_then(Value::as_str) {
        Some(kid) => jwk["kid"] = json!(kid),
        None => {
            if let Some(o) = jwk.as_object_mut() {
                o.remove("kid");
            }
        }
    }
    if jwk.get("use").is_some_and(|u| u != "sig") {
        return Err(DpopError::Key("the jwk is not a signing key"));
    }
    let verifier = Verifier::from_client_jwks(&json!({ "keys": [jwk] })).map_err(|e| match e {
        JwtError::Key(m) if m.contains("private") => {
            DpopError::Key("the jwk holds private key material")
        }
        _ => DpopError::Key("the jwk is not a key for alg"),
    })?;
    let claims = verifier
        .verify_signature(proof, Some(PROOF_TYP))
        .map_err(|e| match e {
            JwtError::BadSignature => DpopError::BadSignature,
            JwtError::AlgorithmNotAllowed | JwtError::UnknownKid => {
                DpopError::Key("the jwk is not a key for alg")
            }
            _ => DpopError::Malformed("the proof does not decode"),
        })?
        .claims;
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    let jti = text("jti")
        .filter(|j| !j.is_empty() && j.len() <= 256)
        .ok_or(DpopError::Malformed("jti missing or longer than 256"))?;
    if text("htm") != Some(want.htm) {
        return Err(DpopError::WrongMethod);
    }
    let htu = text("htu").ok_or(DpopError::Malformed("htu missing"))?;
    if !same_uri(htu, want.htu) {
        return Err(DpopError::WrongUri);
    }
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or(DpopError::Malformed("iat missing or not an integer"))?;
    if (want.now - iat).abs() > want.iat_window {
        return Err(DpopError::Stale);
    }
    if let Some(token) = want.access_token
        && text("ath") != Some(token_hash(token).as_str())
    {
        return Err(DpopError::WrongAth);
    }
    let jkt = thumbprint(&header["jwk"]).ok_or(DpopError::Key("the jwk has no thumbprint"))?;
    if let Some(bound) = want.jkt
        && !ct_eq(bound.as_bytes(), jkt.as_bytes())
    {
        return Err(DpopError::WrongKey);
    }
    let nonce = match claims.get("nonce") {
        None => None,
        Some(Value::String(n)) => Some(n.clone()),
        Some(_) => return Err(DpopError::Malformed("nonce is not a string")),
    };
    Ok(CheckedProof {
        jkt,
        jti: jti.to_owned(),
        iat,
        nonce,
    })
}

/// RFC 7638 thumbprint of a public JWK given as JSON (EC, OKP or RSA).
pub fn thumbprint(jwk: &Value) -> Option<String> {
    let s = |n: &str| jwk.get(n).and_then(Value::as_str);
    // The required members in lexicographic order, serialised without
    // whitespace; serde_json's Map keeps keys sorted.
    let canonical = match s("kty")? {
        "EC" => json!({"crv": s("crv")?, "kty": "EC", "x": s("x")?, "y": s("y")?}),
        "OKP" => json!({"crv": s("crv")?, "kty": "OKP", "x": s("x")?}),
        "RSA" => json!({"e": s("e")?, "kty": "RSA", "n": s("n")?}),
        _ => return None,
    };
    let bytes = serde_json::to_vec(&canonical).ok()?;
    Some(URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        &bytes,
    )))
}

/// Whether two `htu` values name the same resource: scheme and host
/// compared case-insensitively, default ports dropped, query and fragment
/// ignored, the path exact (RFC 9449 §4.3 step 9, RFC 3986 §6.2.2–6.2.3).
pub fn same_uri(a: &str, b: &str) -> bool {
    match (normalise(a), normalise(b)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

fn normalise(u: &str) -> Option<String> {
    let u = without_query(u);
    let (scheme, rest) = u.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let authority = authority.to_ascii_lowercase();
    let authority = match (scheme.as_str(), authority.rsplit_once(':')) {
        ("https", Some((host, "443"))) | ("http", Some((host, "80"))) => host.to_owned(),
        _ => authority,
    };
    Some(format!("{scheme}://{authority}{path}"))
}

fn without_query(u: &str) -> &str {
    let end = u.find(['?', '#']).unwrap_or(u.len());
    &u[..end]
}

/// Stateless server nonces (RFC 9449 §§8–9): the time of issue and an HMAC
/// of it under a key every replica derives from the same secret, so a nonce
/// one replica hands out is accepted by all, until it is `max_age` old.
pub struct NonceKey {
    key: hmac::Key,
}

impl std::fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NonceKey")
    }
}

impl NonceKey {
    /// A key from `secret` (at least 32 bytes of the deployment's secret
    /// material) for one `purpose`, so the AS and a resource never accept
    /// each other's nonces.
    pub fn derive(secret: &[u8], purpose: &str) -> Self {
        let root = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let tag = hmac::sign(
            &root,
            format!("mcpgate/dpop-nonce/v1\n{purpose}").as_bytes(),
        );
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, tag.as_ref()),
        }
    }

    /// A nonce issued at `now`.
    pub fn issue(&self, now: i64) -> String {
        let at = now.to_be_bytes();
        let tag = hmac::sign(&self.key, &at);
        let mut raw = at.to_vec();
        raw.extend_from_slice(&tag.as_ref()[..16]);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Whether `nonce` is one of ours, issued no more than `max_age` seconds
    /// before `now` (and not in the future).
    pub fn accepts(&self, nonce: &str, now: i64, max_age: i64) -> bool {
        let Ok(raw) = URL_SAFE_NO_PAD.decode(nonce) else {
            return false;
        };
        if raw.len() != 24 {
            return false;
        }
        let tag = hmac::sign(&self.key, &raw[..8]);
        if !ct_eq(&tag.as_ref()[..16], &raw[8..]) {
            return false;
        }
        let mut at = [0u8; 8];
        at.copy_from_slice(&raw[..8]);
        let at = i64::from_be_bytes(at);
        at <= now && now - at <= max_age
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemRng;
    use crate::keys::KeyAlg;

    const NOW: i64 = 1_800_000_000;
    const URL: &str = "https://gw.example/mcp/a";

    fn want<'a>() -> ProofCheck<'a> {
        ProofCheck {
            htm: "POST",
            htu: URL,
            access_token: Some("tok"),
            jkt: None,
            now: NOW,
            iat_window: 60,
        }
    }

    fn make(key: &SigningKey, htm: &str, htu: &str, token: Option<&str>, now: i64) -> String {
        proof(key, htm, htu, token, None, now, &SystemRng::new()).unwrap()
    }

    #[test]
    fn a_proof_checks_for_its_request_and_binds_its_key() {
        for alg in [KeyAlg::Es256, KeyAlg::EdDsa] {
            let key = SigningKey::generate("k", alg).unwrap();
            let p = make(
                &key,
                "POST",
                "https://GW.example:443/mcp/a?x=1",
                Some("tok"),
                NOW,
            );
            let ok = check(&p, &want()).unwrap();
            assert_eq!(ok.jkt, key.public_jwk().thumbprint());
            assert_eq!(ok.iat, NOW);
            let bound = ProofCheck {
                jkt: Some(&ok.jkt),
                ..want()
            };
            assert!(check(&p, &bound).is_ok());
            let again = make(&key, "POST", URL, Some("tok"), NOW);
            assert_ne!(check(&again, &want()).unwrap().jti, ok.jti, "fresh jti");
        }
    }

    #[test]
    fn every_mismatch_is_refused() {
        let key = SigningKey::generate("k", KeyAlg::Es256).unwrap();
        let other = SigningKey::generate("k", KeyAlg::Es256).unwrap();
        let p = make(&key, "POST", URL, Some("tok"), NOW);
        let e = |p: &str, w: &ProofCheck<'_>| check(p, w).unwrap_err();
        assert_eq!(
            e(&make(&key, "GET", URL, Some("tok"), NOW), &want()),
            DpopError::WrongMethod
        );
        assert_eq!(
            e(
                &make(&key, "POST", "https://gw.example/mcp/b", Some("tok"), NOW),
                &want()
            ),
            DpopError::WrongUri
        );
        assert_eq!(
            e(
                &make(&key, "POST", "https://gw.example/mcp/a/", Some("tok"), NOW),
                &want()
            ),
            DpopError::WrongUri
        );
        assert_eq!(
            e(&make(&key, "POST", URL, Some("tok"), NOW - 61), &want()),
            DpopError::Stale
        );
        assert_eq!(
            e(&make(&key, "POST", URL, Some("tok"), NOW + 61), &want()),
            DpopError::Stale
        );
        assert_eq!(
            e(&make(&key, "POST", URL, Some("other"), NOW), &want()),
            DpopError::WrongAth
        );
        assert_eq!(
            e(&make(&key, "POST", URL, None, NOW), &want()),
            DpopError::WrongAth
        );
        let jkt = other.public_jwk().thumbprint();
        let bound = ProofCheck {
            jkt: Some(&jkt),
            ..want()
        };
        assert_eq!(e(&p, &bound), DpopError::WrongKey);

        // A proof signed by one key that carries another's public key.
        let (h, rest) = p.split_once('.').unwrap();
        let forged_header = {
            let mut v: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap();
            v["jwk"]["x"] = json!(other.public_jwk().x);
            v["jwk"]["y"] = json!(other.public_jwk().y);
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&v).unwrap())
        };
        assert_eq!(
            e(&format!("{forged_header}.{rest}"), &want()),
            DpopError::BadSignature
        );

        // Headers that are not a DPoP proof's.
        let with = |edit: &dyn Fn(&mut Value)| {
            let mut v: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap();
            edit(&mut v);
            format!(
                "{}.{rest}",
                URL_SAFE_NO_PAD.encode(serde_json::to_vec(&v).unwrap())
            )
        };
        assert!(matches!(
            e(&with(&|v| v["typ"] = json!("JWT")), &want()),
            DpopError::Malformed(_)
        ));
        assert!(matches!(
            e(&with(&|v| v["alg"] = json!("none")), &want()),
            DpopError::Key(_)
        ));
        assert!(matches!(
            e(&with(&|v| v["alg"] = json!("HS256")), &want()),
            DpopError::Key(_)
        ));
        assert!(matches!(
            e(&with(&|v| v["alg"] = json!("EdDSA")), &want()),
            DpopError::Key(_)
        ));
        assert!(matches!(
            e(&with(&|v| v["jwk"]["d"] = json!("c2VjcmV0")), &want()),
            DpopError::Key(_)
        ));
        assert!(matches!(
            e(
                &with(&|v| {
                    v.as_object_mut().unwrap().remove("jwk");
                }),
                &want()
            ),
            DpopError::Key(_)
        ));
        assert!(matches!(e("a.b", &want()), DpopError::Malformed(_)));
        assert!(matches!(
            e(&"x".repeat(5000), &want()),
            DpopError::Malformed(_)
        ));
    }

    #[test]
    fn uris_compare_as_rfc_3986_normalises_them() {
        assert!(same_uri(
            "https://A.example/p",
            "https://a.example:443/p?q#f"
        ));
        assert!(same_uri("HTTP://a.example:80", "http://a.example/"));
        assert!(!same_uri("https://a.example/p", "http://a.example/p"));
        assert!(!same_uri("https://a.example/P", "https://a.example/p"));
        assert!(!same_uri("https://a.example:8443/p", "https://a.example/p"));
        assert!(!same_uri("https://u@a.example/p", "https://a.example/p"));
        assert!(!same_uri("not a uri", "not a uri"));
    }

    #[test]
    fn the_thumbprint_is_rfc_7638s() {
        // RFC 7638 §3.1's example key and thumbprint.
        let jwk = json!({"kty": "RSA", "e": "AQAB", "alg": "RS256", "kid": "2011-04-29",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"});
        assert_eq!(
            thumbprint(&jwk).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
        let k = SigningKey::generate("k", KeyAlg::EdDsa).unwrap();
        let v = serde_json::to_value(k.public_jwk()).unwrap();
        assert_eq!(thumbprint(&v).unwrap(), k.public_jwk().thumbprint());
    }

    #[test]
    fn nonces_are_ours_and_young() {
        let a = NonceKey::derive(&[7u8; 32], "as");
        let n = a.issue(NOW);
        assert!(a.accepts(&n, NOW + 10, 300));
        assert!(!a.accepts(&n, NOW + 301, 300));
        assert!(!a.accepts(&n, NOW - 1, 300), "issued in the future");
        assert!(!NonceKey::derive(&[7u8; 32], "rs").accepts(&n, NOW, 300));
        assert!(!NonceKey::derive(&[8u8; 32], "as").accepts(&n, NOW, 300));
        let mut raw = URL_SAFE_NO_PAD.decode(&n).unwrap();
        raw[7] ^= 1;
        assert!(!a.accepts(&URL_SAFE_NO_PAD.encode(raw), NOW, 300));
        assert!(!a.accepts("junk", NOW, 300));
    }
}
