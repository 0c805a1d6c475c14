//! Signing keys and their public JWKs (RFC 7517, RFC 7518 §3.4, RFC 8037).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use crate::jwt::JwtError;

/// The JWS algorithms mcpgate signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyAlg {
    #[serde(rename = "ES256")]
    Es256,
    #[serde(rename = "EdDSA")]
    EdDsa,
}

impl KeyAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ES256" => Some(Self::Es256),
            "EdDSA" => Some(Self::EdDsa),
            _ => None,
        }
    }

    pub(crate) fn jwt_alg(self) -> Algorithm {
        match self {
            Self::Es256 => Algorithm::ES256,
            Self::EdDsa => Algorithm::EdDSA,
        }
    }
}

/// A private signing key. Holds the PKCS#8 document; `Debug` never shows it.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    alg: KeyAlg,
    pkcs8: Vec<u8>,
    encoding: EncodingKey,
    public: PublicJwk,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Reads a PKCS#8 PEM private key (P-256 → ES256, Ed25519 → EdDSA). The
    /// `kid` is `kid` when given, else the RFC 7638 thumbprint of the public
    /// key. The error never quotes the input (it may be a key).
    pub fn from_pkcs8_pem(pem: &str, kid: Option<&str>) -> Result<Self, String> {
        use rustls_pki_types::PrivatePkcs8KeyDer;
        use rustls_pki_types::pem::PemObject;
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| {
            "not a PKCS#8 PEM private key (\"-----BEGIN PRIVATE KEY-----\")".to_string()
        })?;
        let der = der.secret_pkcs8_der().to_vec();
        let key = [KeyAlg::Es256, KeyAlg::EdDsa]
            .into_iter()
            .find_map(|alg| Self::from_pkcs8("", alg, der.clone()).ok())
            .ok_or_else(|| {
                "unsupported key: use a P-256 (ES256) or Ed25519 (EdDSA) PKCS#8 key".to_string()
            })?;
        let kid = match kid {
            Some(k) => k.to_string(),
            None => key.public_jwk().thumbprint(),
        };
        Self::from_pkcs8(kid, key.alg(), der).map_err(|e| e.to_string())
    }

    /// Generates a fresh key with the OS RNG.
    pub fn generate(kid: impl Into<String>, alg: KeyAlg) -> Result<Self, JwtError> {
        let rng = SystemRandom::new();
        let pkcs8 = match alg {
            KeyAlg::Es256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|_| JwtError::Key("P-256 key generation failed".into()))?
                .as_ref()
                .to_vec(),
            KeyAlg::EdDsa => Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|_| JwtError::Key("Ed25519 key generation failed".into()))?
                .as_ref()
                .to_vec(),
        };
        Self::from_pkcs8(kid, alg, pkcs8)
    }

    /// Loads a key from its PKCS#8 DER document.
    pub fn from_pkcs8(
        kid: impl Into<String>,
        alg: KeyAlg,
        pkcs8: Vec<u8>,
    ) -> Result<Self, JwtError> {
        let kid = kid.into();
        let public = match alg {
            KeyAlg::Es256 => {
                let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8)
                    .map_err(|_| JwtError::Key("not a P-256 PKCS#8 key".into()))?;
                let point = kp.public_key().as_ref();
                // Uncompressed SEC1 point: 0x04 || X (32) || Y (32).
                if point.len() != 65 || point[0] != 0x04 {
                    return Err(JwtError::Key("unexpected P-256 public key encoding".into()));
                }
                PublicJwk {
                    kty: "EC".into(),
                    crv: "P-256".into(),
                    x: URL_SAFE_NO_PAD.encode(&point[1..33]),
                    y: Some(URL_SAFE_NO_PAD.encode(&point[33..65])),
                    kid: kid.clone(),
                    alg: alg.as_str().into(),
                    use_: "sig".into(),
                }
            }
            KeyAlg::EdDsa => {
                let kp = Ed25519KeyPair::from_pkcs8(&pkcs8)
                    .map_err(|_| JwtError::Key("not an Ed25519 PKCS#8 key".into()))?;
                PublicJwk {
                    kty: "OKP".into(),
                    crv: "Ed25519".into(),
                    x: URL_SAFE_NO_PAD.encode(kp.public_key().as_ref()),
                    y: None,
                    kid: kid.clone(),
                    alg: alg.as_str().into(),
                    use_: "sig".into(),
                }
            }
        };
        let encoding = match alg {
            KeyAlg::Es256 => EncodingKey::from_ec_der(&pkcs8),
            KeyAlg::EdDsa => EncodingKey::from_ed_der(&pkcs8),
        };
        Ok(Self {
            kid,
            alg,
            pkcs8,
            encoding,
            public,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn alg(&self) -> KeyAlg {
        self.alg
    }

    /// The PKCS#8 document, for sealing into the store.
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    pub fn public_jwk(&self) -> &PublicJwk {
        &self.public
    }

    /// Signs `claims` as a compact JWS with `typ` and this key's `kid`.
    pub fn sign<T: Serialize>(&self, typ: &str, claims: &T) -> Result<String, JwtError> {
        let mut header = Header::new(self.alg.jwt_alg());
        header.typ = Some(typ.to_string());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| JwtError::Key(format!("signing failed: {e}")))
    }

    /// Signs `claims` under a header given whole as JSON (a DPoP proof's,
    /// with `jwk` in place of `kid`). Its `alg` must be this key's.
    pub fn sign_with_header<T: Serialize>(
        &self,
        header: &serde_json::Value,
        claims: &T,
    ) -> Result<String, JwtError> {
        let header: Header = serde_json::from_value(header.clone())
            .map_err(|e| JwtError::Key(format!("header: {e}")))?;
        if header.alg != self.alg.jwt_alg() {
            return Err(JwtError::AlgorithmNotAllowed);
        }
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| JwtError::Key(format!("signing failed: {e}")))
    }
}

/// A public JWK as published in `jwks_uri`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicJwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    pub kid: String,
    pub alg: String,
    #[serde(rename = "use")]
    pub use_: String,
}

impl PublicJwk {
    /// RFC 7638 JWK thumbprint (SHA-256, base64url): the required members
    /// in lexicographic order, no whitespace.
    pub fn thumbprint(&self) -> String {
        let canonical = match &self.y {
            Some(y) => format!(
                r#"{{"crv":"{}","kty":"{}","x":"{}","y":"{}"}}"#,
                self.crv, self.kty, self.x, y
            ),
            None => format!(
                r#"{{"crv":"{}","kty":"{}","x":"{}"}}"#,
                self.crv, self.kty, self.x
            ),
        };
        URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            canonical.as_bytes(),
        ))
    }
}

/// A JWK set (RFC 7517 §5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PublicJwks {
    pub keys: Vec<PublicJwk>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn es256_jwk_shape() {
        let k = SigningKey::generate("k1", KeyAlg::Es256).unwrap();
        let j = k.public_jwk();
        assert_eq!(j.kty, "EC");
        assert_eq!(j.crv, "P-256");
        assert_eq!(j.x.len(), 43);
        assert_eq!(j.y.as_ref().unwrap().len(), 43);
        let reloaded = SigningKey::from_pkcs8("k1", KeyAlg::Es256, k.pkcs8().to_vec()).unwrap();
        assert_eq!(reloaded.public_jwk(), j);
    }

    #[test]
    fn eddsa_jwk_shape() {
        let k = SigningKey::generate("k2", KeyAlg::EdDsa).unwrap();
        assert_eq!(k.public_jwk().kty, "OKP");
        assert!(k.public_jwk().y.is_none());
        assert!(!format!("{k:?}").contains("pkcs8"));
    }

    #[test]
    fn wrong_alg_for_key_is_refused() {
        let k = SigningKey::generate("k", KeyAlg::EdDsa).unwrap();
        assert!(SigningKey::from_pkcs8("k", KeyAlg::Es256, k.pkcs8().to_vec()).is_err());
    }
}
