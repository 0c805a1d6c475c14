//! JWT verification with an algorithm allowlist (RFC 8725 §3.1): the
//! algorithm comes from the key we hold, never from the token header, so
//! `alg: none` and HMAC-with-a-public-key cannot get through. Time claims are
//! checked against our `Clock`, not the system time.

use std::collections::HashMap;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::keys::PublicJwks;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("token is not a well-formed JWS")]
    Malformed,
    #[error("token names no key id, or one the issuer does not publish")]
    UnknownKid,
    #[error("token algorithm is not the one this key is for")]
    AlgorithmNotAllowed,
    #[error("signature does not verify")]
    BadSignature,
    #[error("token type is not the expected one")]
    WrongType,
    #[error("token issuer is not the expected one")]
    WrongIssuer,
    #[error("token audience does not include this resource")]
    WrongAudience,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token lacks the {0} claim")]
    MissingClaim(&'static str),
    #[error("key error: {0}")]
    Key(String),
}

/// What a verification expects beyond the signature.
#[derive(Debug, Clone)]
pub struct VerifyOptions<'a> {
    /// Exact `iss`.
    pub issuer: &'a str,
    /// `aud` must be this string or an array that contains it exactly.
    pub audience: Option<&'a str>,
    /// Expected `typ` header, compared case-insensitively with and without
    /// the `application/` prefix (RFC 9068 §4). `None` skips the check.
    pub typ: Option<&'a str>,
    /// Current time (seconds) from the caller's `Clock`.
    pub now: i64,
    /// Allowed clock skew for `exp` and `nbf`, in seconds.
    pub leeway: i64,
}

/// A verified token: header facts and the decoded claims.
#[derive(Debug, Clone)]
pub struct VerifiedJwt<T> {
    pub kid: String,
    pub alg: String,
    pub claims: T,
}

struct VerifyKey {
    alg: Algorithm,
    key: DecodingKey,
}

/// A set of verification keys indexed by `kid`.
#[derive(Default)]
pub struct Verifier {
    keys: HashMap<String, VerifyKey>,
    /// A client's set ([`Verifier::from_client_jwks`]): a token without
    /// `kid` is checked against the set's only key.
    sole_key_without_kid: bool,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The time claims every access token must carry.
#[derive(Deserialize)]
struct TimeClaims {
    iss: Option<String>,
    aud: Option<Audience>,
    exp: Option<i64>,
    nbf: Option<i64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Verifier {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a verifier from our own public JWKs.
    pub fn from_public_jwks(jwks: &PublicJwks) -> Result<Self, JwtError> {
        let value = serde_json::to_value(jwks).map_err(|e| JwtError::Key(e.to_string()))?;
        Self::from_jwks_json(&value)
    }

    /// Builds a verifier from a JWK set document (RFC 7517 §5), as fetched
    /// from an issuer's `jwks_uri`. Keys without `kid`, with `use` other than
    /// `sig`, or of a type or algorithm outside the allowlist (ES256, EdDSA
    /// with Ed25519, RS256/384/512, PS256/384/512) are skipped.
    pub fn from_jwks_json(doc: &serde_json::Value) -> Result<Self, JwtError> {
        Self::from_set(doc, false)
    }

    /// Builds a verifier from the public keys a client registered for
    /// `private_key_jwt` (RFC 7523 §2.2). Stricter than an issuer's set:
    /// a JWK carrying private or symmetric key material (`d`, `p`, `q`,
    /// `dp`, `dq`, `qi`, `oth`, `k`) refuses the whole set, since a client
    /// that publishes its private key has no key left; at least one usable
    /// signing key must remain. A set of one key may leave out `kid`, and
    /// then so may the client's assertions.
    pub fn from_client_jwks(doc: &serde_json::Value) -> Result<Self, JwtError> {
        let keys = doc
            .get("keys")
            .and_then(|k| k.as_array())
            .ok_or_else(|| JwtError::Key("JWK set has no keys array".into()))?;
        const PRIVATE: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];
        if keys
            .iter()
            .any(|k| PRIVATE.iter().any(|m| k.get(*m).is_some()))
        {
            return Err(JwtError::Key(
                "the JWK set holds private or symmetric key material".into(),
            ));
        }
        let out = Self::from_set(doc, keys.len() == 1)?;
        if out.is_empty() {
            return Err(JwtError::Key(
                "the JWK set has no usable signing key (ES256, EdDSA, RS*, PS*)".into(),
            ));
        }
        Ok(out)
    }

    fn from_set(doc: &serde_json::Value, one_key_may_omit_kid: bool) -> Result<Self, JwtError> {
        let keys = doc
            .get("keys")
            .and_then(|k| k.as_array())
            .ok_or_else(|| JwtError::Key("JWK set has no keys array".into()))?;
        let mut out = Self::new();
        out.sole_key_without_kid = one_key_may_omit_kid;
        for jwk in keys {
            let s = |name: &str| jwk.get(name).and_then(|v| v.as_str());
            let kid = match s("kid") {
                Some(kid) => kid,
                None if one_key_may_omit_kid => "",
                None => continue,
            };
            if s("use").is_some_and(|u| u != "sig") {
                continue;
            }
            let parsed = match (s("kty"), s("crv")) {
                (Some("EC"), Some("P-256")) => {
                    let (Some(x), Some(y)) = (s("x"), s("y")) else {
                        continue;
                    };
                    DecodingKey::from_ec_components(x, y)
                        .ok()
                        .map(|k| (Algorithm::ES256, k))
                }
                (Some("OKP"), Some("Ed25519")) => {
                    let Some(x) = s("x") else { continue };
                    DecodingKey::from_ed_components(x)
                        .ok()
                        .map(|k| (Algorithm::EdDSA, k))
                }
                (Some("RSA"), _) => {
                    let (Some(n), Some(e)) = (s("n"), s("e")) else {
                        continue;
                    };
                    let alg = match s("alg") {
                        None | Some("RS256") => Algorithm::RS256,
                        Some("RS384") => Algorithm::RS384,
                        Some("RS512") => Algorithm::RS512,
                        Some("PS256") => Algorithm::PS256,
                        Some("PS384") => Algorithm::PS384,
                        Some("PS512") => Algorithm::PS512,
                        Some(_) => continue,
                    };
                    DecodingKey::from_rsa_components(n, e)
                        .ok()
                        .map(|k| (alg, k))
                }
                _ => None,
            };
            let Some((alg, key)) = parsed else { continue };
            // A JWK that names an algorithm must agree with its key type.
            if let Some(named) = s("alg")
                && format!("{alg:?}") != named
            {
                continue;
            }
            out.keys.insert(kid.to_string(), VerifyKey { alg, key });
        }
        Ok(out)
    }

    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Reads the `iss` of a compact JWS without verifying anything: only to
    /// choose whose keys verify it (the verification checks `iss` again).
    pub fn peek_issuer(token: &str) -> Option<String> {
        use base64::Engine;
        #[derive(Deserialize)]
        struct IssOnly<'a> {
            #[serde(borrow)]
            iss: Option<std::borrow::Cow<'a, str>>,
        }
        let mut parts = token.split('.');
        let (Some(_), Some(payload), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .ok()?;
        let claims: IssOnly<'_> = serde_json::from_slice(&bytes).ok()?;
        claims.iss.map(std::borrow::Cow::into_owned)
    }

    /// Reads the `kid` of a token without verifying anything.
    pub fn peek_kid(token: &str) -> Result<Option<String>, JwtError> {
        jsonwebtoken::decode_header(token)
            .map(|h| h.kid)
            .map_err(|_| JwtError::Malformed)
    }

    /// Verifies signature, `typ`, `iss`, `aud`, `exp` and `nbf`; returns the claims.
    pub fn verify<T: DeserializeOwned>(
        &self,
        token: &str,
        opts: &VerifyOptions<'_>,
    ) -> Result<VerifiedJwt<T>, JwtError> {
        let signed = self.verify_signature(token, opts.typ)?;
        let data = signed.claims;
        let (kid, alg) = (signed.kid, signed.alg);
        let time: TimeClaims =
            serde_json::from_value(data.clone()).map_err(|_| JwtError::Malformed)?;
        let iss = time.iss.ok_or(JwtError::MissingClaim("iss"))?;
        if iss != opts.issuer {
            return Err(JwtError::WrongIssuer);
        }
        if let Some(want) = opts.audience {
            let ok = match time.aud {
                Some(Audience::One(a)) => a == want,
                Some(Audience::Many(list)) => list.iter().any(|a| a == want),
                None => return Err(JwtError::MissingClaim("aud")),
            };
            if !ok {
                return Err(JwtError::WrongAudience);
            }
        }
        let exp = time.exp.ok_or(JwtError::MissingClaim("exp"))?;
        if opts.now >= exp.saturating_add(opts.leeway) {
            return Err(JwtError::Expired);
        }
        if let Some(nbf) = time.nbf
            && opts.now.saturating_add(opts.leeway) < nbf
        {
            return Err(JwtError::NotYetValid);
        }
        let claims = serde_json::from_value(data).map_err(|_| JwtError::Malformed)?;
        Ok(VerifiedJwt { kid, alg, claims })
    }

    /// The signature and `typ` steps of [`Verifier::verify`] alone: the key the
    /// header names (or the one key of a client's set), the algorithm that key
    /// is for, and the claims as JSON, no claim checked. For proofs whose
    /// claims follow other rules than an access token's (DPoP, RFC 9449).
    pub fn verify_signature(
        &self,
        token: &str,
        typ: Option<&str>,
    ) -> Result<VerifiedJwt<serde_json::Value>, JwtError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| JwtError::Malformed)?;
        let (kid, vk) = match &header.kid {
            Some(kid) => (kid.clone(), self.keys.get(kid)),
            // Only a client's one-key set: its only key, whatever its kid.
            None if self.sole_key_without_kid && self.keys.len() == 1 => {
                match self.keys.iter().next() {
                    Some((kid, vk)) => (kid.clone(), Some(vk)),
                    None => (String::new(), None),
                }
            }
            None => return Err(JwtError::UnknownKid),
        };
        let vk = vk.ok_or(JwtError::UnknownKid)?;
        if header.alg != vk.alg {
            return Err(JwtError::AlgorithmNotAllowed);
        }
        if let Some(expected) = typ {
            let got = header.typ.as_deref().unwrap_or("");
            if !typ_matches(got, expected) {
                return Err(JwtError::WrongType);
            }
        }
        let mut validation = Validation::new(vk.alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &vk.key, &validation).map_err(
            |e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => JwtError::BadSignature,
                jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => JwtError::AlgorithmNotAllowed,
                _ => JwtError::Malformed,
            },
        )?;
        Ok(VerifiedJwt {
            kid,
            alg: format!("{:?}", vk.alg),
            claims: data.claims,
        })
    }
}

fn typ_matches(got: &str, expected: &str) -> bool {
    let strip = |s: &str| {
        let l = s.to_ascii_lowercase();
        l.strip_prefix("application/")
            .map(str::to_string)
            .unwrap_or(l)
    };
    strip(got) == strip(expected)
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::json;

    use super::*;
    use crate::keys::{KeyAlg, SigningKey};

    const NOW: i64 = 1_800_000_000;

    fn opts<'a>() -> VerifyOptions<'a> {
        VerifyOptions {
            issuer: "https://as.example",
            audience: Some("https://gw.example/mcp/a"),
            typ: Some("at+jwt"),
            now: NOW,
            leeway: 30,
        }
    }

    fn claims() -> serde_json::Value {
        json!({"iss": "https://as.example", "aud": "https://gw.example/mcp/a", "exp": NOW + 600, "iat": NOW, "sub": "u1"})
    }

    fn setup(alg: KeyAlg) -> (SigningKey, Verifier) {
        let k = SigningKey::generate("k1", alg).unwrap();
        let v = Verifier::from_public_jwks(&PublicJwks {
            keys: vec![k.public_jwk().clone()],
        })
        .unwrap();
        (k, v)
    }

    #[test]
    fn roundtrip_both_algs() {
        for alg in [KeyAlg::Es256, KeyAlg::EdDsa] {
            let (k, v) = setup(alg);
            let t = k.sign("at+jwt", &claims()).unwrap();
            let got: VerifiedJwt<serde_json::Value> = v.verify(&t, &opts()).unwrap();
            assert_eq!(got.claims["sub"], "u1");
        }
    }

    #[test]
    fn rejections() {
        let (k, v) = setup(KeyAlg::Es256);
        let sign = |c: serde_json::Value| k.sign("at+jwt", &c).unwrap();
        let check = |t: &str| v.verify::<serde_json::Value>(t, &opts()).unwrap_err();

        let mut c = claims();
        c["exp"] = json!(NOW - 31);
        assert_eq!(check(&sign(c)), JwtError::Expired);
        let mut c = claims();
        c["nbf"] = json!(NOW + 31);
        assert_eq!(check(&sign(c)), JwtError::NotYetValid);
        let mut c = claims();
        c["iss"] = json!("https://as.example/");
        assert_eq!(check(&sign(c)), JwtError::WrongIssuer);
        let mut c = claims();
        c["aud"] = json!("https://gw.example/mcp/b");
        assert_eq!(check(&sign(c)), JwtError::WrongAudience);
        let mut c = claims();
        c["aud"] = json!(["https://gw.example/mcp/b", "https://gw.example/mcp/a"]);
        assert!(v.verify::<serde_json::Value>(&sign(c), &opts()).is_ok());
        let mut c = claims();
        c.as_object_mut().unwrap().remove("exp");
        assert_eq!(check(&sign(c)), JwtError::MissingClaim("exp"));
        assert_eq!(
            check(&k.sign("JWT", &claims()).unwrap()),
            JwtError::WrongType
        );
        assert!(
            v.verify::<serde_json::Value>(
                &k.sign("application/at+jwt", &claims()).unwrap(),
                &opts()
            )
            .is_ok()
        );

        // Tampered payload.
        let t = sign(claims());
        let parts: Vec<&str> = t.split('.').collect();
        let mut c = claims();
        c["sub"] = json!("admin");
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap()),
            parts[2]
        );
        assert_eq!(check(&forged), JwtError::BadSignature);

        // alg: none.
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"at+jwt","kid":"k1"}"#);
        let none = format!("{none_header}.{}.", parts[1]);
        assert!(matches!(
            check(&none),
            JwtError::Malformed | JwtError::AlgorithmNotAllowed
        ));

        // HS256 signed with the public key's bytes.
        let pub_x = k.public_jwk().x.clone();
        let mut h = jsonwebtoken::Header::new(Algorithm::HS256);
        h.kid = Some("k1".into());
        h.typ = Some("at+jwt".into());
        let hs = jsonwebtoken::encode(
            &h,
            &claims(),
            &jsonwebtoken::EncodingKey::from_secret(pub_x.as_bytes()),
        )
        .unwrap();
        assert_eq!(check(&hs), JwtError::AlgorithmNotAllowed);

        // Unknown kid.
        let other = SigningKey::generate("k2", KeyAlg::Es256).unwrap();
        assert_eq!(
            check(&other.sign("at+jwt", &claims()).unwrap()),
            JwtError::UnknownKid
        );
        // Same kid, other key.
        let impostor = SigningKey::generate("k1", KeyAlg::Es256).unwrap();
        assert_eq!(
            check(&impostor.sign("at+jwt", &claims()).unwrap()),
            JwtError::BadSignature
        );
        assert_eq!(check("not.a.jwt"), JwtError::Malformed);
        assert_eq!(check(""), JwtError::Malformed);
    }

    #[test]
    fn client_sets_refuse_private_material_and_may_omit_one_kid() {
        let k = SigningKey::generate("k1", KeyAlg::Es256).unwrap();
        let mut jwk = serde_json::to_value(k.public_jwk()).unwrap();
        let with_d = {
            let mut j = jwk.clone();
            j["d"] = json!("c2VjcmV0");
            j
        };
        assert!(Verifier::from_client_jwks(&json!({"keys": [jwk.clone(), with_d]})).is_err());
        assert!(Verifier::from_client_jwks(&json!({"keys": [{"kty": "oct", "k": "AA"}]})).is_err());
        assert!(Verifier::from_client_jwks(&json!({"keys": []})).is_err());
        assert!(Verifier::from_client_jwks(&json!({"nokeys": 1})).is_err());

        jwk.as_object_mut().unwrap().remove("kid");
        let one = json!({"keys": [jwk.clone()]});
        let client = Verifier::from_client_jwks(&one).unwrap();
        // An issuer's set never takes a key without kid.
        assert!(Verifier::from_jwks_json(&one).unwrap().is_empty());
        let kidless = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::ES256),
            &claims(),
            &jsonwebtoken::EncodingKey::from_ec_der(k.pkcs8()),
        )
        .unwrap();
        let o = VerifyOptions {
            typ: None,
            ..opts()
        };
        client.verify::<serde_json::Value>(&kidless, &o).unwrap();
        // A kid-less token against a set of two keys names no key.
        let other = SigningKey::generate("k2", KeyAlg::Es256).unwrap();
        let two = json!({"keys": [jwk, serde_json::to_value(other.public_jwk()).unwrap()]});
        let both = Verifier::from_client_jwks(&two).unwrap();
        assert_eq!(
            both.verify::<serde_json::Value>(&kidless, &o).unwrap_err(),
            JwtError::UnknownKid
        );
        // Another key without kid does not verify against the one key.
        let impostor = SigningKey::generate("k1", KeyAlg::Es256).unwrap();
        let forged = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::ES256),
            &claims(),
            &jsonwebtoken::EncodingKey::from_ec_der(impostor.pkcs8()),
        )
        .unwrap();
        assert_eq!(
            client.verify::<serde_json::Value>(&forged, &o).unwrap_err(),
            JwtError::BadSignature
        );
    }

    #[test]
    fn jwk_alg_must_match_key_type() {
        let doc = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "a", "alg": "HS256",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]});
        assert!(Verifier::from_jwks_json(&doc).unwrap().is_empty());
    }
}
