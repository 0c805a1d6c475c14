//! Client assertions (RFC 7523 §2.2, `private_key_jwt`): the short-lived
//! JWT a client signs with its own key to prove itself at a token endpoint.
//! One signer for every client mcpgate plays: the AS toward an upstream
//! identity provider, and the MCP client toward an authorization server.

use crate::clock::{Rng, random_token};
use crate::jwt::JwtError;
use crate::keys::SigningKey;

/// How long an assertion is valid after it is made (seconds).
pub const ASSERTION_LIFETIME_SECS: i64 = 60;

/// An assertion by `client_id` (as `iss` and `sub`) for `audience`, made at
/// `now`, with a fresh random `jti`. RFC 7523bis wants the audience to be
/// the authorization server's issuer identifier; an OpenID provider that
/// predates it may ask for its token endpoint URL.
pub fn client_assertion(
    key: &SigningKey,
    client_id: &str,
    audience: &str,
    now: i64,
    rng: &dyn Rng,
) -> Result<String, JwtError> {
    let claims = serde_json::json!({
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "jti": random_token(rng, 32),
        "iat": now,
        "exp": now + ASSERTION_LIFETIME_SECS,
    });
    key.sign("JWT", &claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemRng;
    use crate::jwt::{Verifier, VerifyOptions};
    use crate::keys::{KeyAlg, PublicJwks};

    #[test]
    fn an_assertion_names_the_client_and_lives_a_minute() {
        let k = SigningKey::generate("k1", KeyAlg::Es256).unwrap();
        let rng = SystemRng::new();
        let a = client_assertion(&k, "c1", "https://as.example", 1_000, &rng).unwrap();
        let b = client_assertion(&k, "c1", "https://as.example", 1_000, &rng).unwrap();
        let v = Verifier::from_public_jwks(&PublicJwks {
            keys: vec![k.public_jwk().clone()],
        })
        .unwrap();
        let opts = VerifyOptions {
            issuer: "c1",
            audience: Some("https://as.example"),
            typ: Some("JWT"),
            now: 1_000,
            leeway: 0,
        };
        let ca = v.verify::<serde_json::Value>(&a, &opts).unwrap().claims;
        let cb = v.verify::<serde_json::Value>(&b, &opts).unwrap().claims;
        assert_eq!(
            (ca["sub"].as_str(), ca["exp"].as_i64()),
            (Some("c1"), Some(1_060))
        );
        assert_ne!(ca["jti"], cb["jti"], "a fresh jti each time");
        let late = VerifyOptions { now: 1_060, ..opts };
        assert!(v.verify::<serde_json::Value>(&a, &late).is_err());
    }

    #[test]
    fn pem_keys_load_with_a_thumbprint_kid_and_never_echo_the_input() {
        use base64::Engine;
        let k = SigningKey::generate("x", KeyAlg::EdDsa).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(k.pkcs8());
        let pem = format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n");
        let loaded = SigningKey::from_pkcs8_pem(&pem, None).unwrap();
        assert_eq!(loaded.alg(), KeyAlg::EdDsa);
        assert_eq!(loaded.kid(), k.public_jwk().thumbprint());
        assert_eq!(
            SigningKey::from_pkcs8_pem(&pem, Some("mine"))
                .unwrap()
                .kid(),
            "mine"
        );
        let err = SigningKey::from_pkcs8_pem("secret-looking junk", None).unwrap_err();
        assert!(!err.contains("secret-looking"), "{err}");
    }
}
