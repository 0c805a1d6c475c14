//! Secrets at rest: AES-256-GCM under the master key (signing keys in the store).
//!
//! Layout of a sealed value: `0x01 || nonce (12) || ciphertext || tag (16)`.
//! The associated data binds a ciphertext to its row (e.g. the key id), so a
//! sealed value copied into another row does not open.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::clock::Rng;

const VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("master key must be 32 bytes, base64 encoded")]
    BadKey,
    #[error("sealed value is corrupt, or was sealed under another master key")]
    Open,
}

/// The 256-bit master key. `Debug` never shows it.
pub struct MasterKey {
    key: LessSafeKey,
    /// HMAC key derived from the master key, for subkeys (CSRF, cookies).
    derive: aws_lc_rs::hmac::Key,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

impl MasterKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SealError> {
        if bytes.len() != 32 {
            return Err(SealError::BadKey);
        }
        let unbound = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| SealError::BadKey)?;
        Ok(Self {
            key: LessSafeKey::new(unbound),
            derive: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, bytes),
        })
    }

    /// Parses the base64 form kept in the master key file (whitespace ignored).
    pub fn from_base64(s: &str) -> Result<Self, SealError> {
        let bytes = STANDARD.decode(s.trim()).map_err(|_| SealError::BadKey)?;
        Self::from_bytes(&bytes)
    }

    /// A new random key, returned with its base64 form for writing to disk.
    pub fn generate(rng: &dyn Rng) -> (Self, String) {
        let mut bytes = [0u8; 32];
        rng.fill(&mut bytes);
        let encoded = STANDARD.encode(bytes);
        (
            Self::from_bytes(&bytes).expect("32 bytes is a valid AES-256 key"),
            encoded,
        )
    }

    /// A 256-bit subkey for `label` (HMAC-SHA256 of the label under the
    /// master key), so each purpose gets its own independent key.
    pub fn derive_subkey(&self, label: &str) -> [u8; 32] {
        let tag = aws_lc_rs::hmac::sign(&self.derive, label.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    pub fn seal(&self, rng: &dyn Rng, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill(&mut nonce);
        let mut buf = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut buf,
            )
            .expect("AES-GCM sealing of an in-memory buffer cannot fail");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + buf.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        out
    }

    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < 1 + NONCE_LEN + 16 || sealed[0] != VERSION {
            return Err(SealError::Open);
        }
        let nonce: [u8; NONCE_LEN] = sealed[1..1 + NONCE_LEN]
            .try_into()
            .map_err(|_| SealError::Open)?;
        let mut buf = sealed[1 + NONCE_LEN..].to_vec();
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut buf,
            )
            .map_err(|_| SealError::Open)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemRng;

    #[test]
    fn roundtrip_and_binding() {
        let rng = SystemRng::new();
        let (k, b64) = MasterKey::generate(&rng);
        let sealed = k.seal(&rng, b"secret key", b"kid-1");
        assert_eq!(k.open(&sealed, b"kid-1").unwrap(), b"secret key");
        assert_eq!(k.open(&sealed, b"kid-2"), Err(SealError::Open));
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(k.open(&flipped, b"kid-1"), Err(SealError::Open));
        let (other, _) = MasterKey::generate(&rng);
        assert_eq!(other.open(&sealed, b"kid-1"), Err(SealError::Open));
        let again = MasterKey::from_base64(&b64).unwrap();
        assert_eq!(again.open(&sealed, b"kid-1").unwrap(), b"secret key");
        assert_eq!(k.open(b"short", b"kid-1"), Err(SealError::Open));
        assert!(MasterKey::from_base64("AAAA").is_err());
        assert_eq!(k.derive_subkey("a"), again.derive_subkey("a"));
        assert_ne!(k.derive_subkey("a"), k.derive_subkey("b"));
    }
}
