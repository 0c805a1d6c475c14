//! JOSE for mcpgate: signing keys (ES256, EdDSA), JWK sets, JWT signing and
//! verification with an algorithm allowlist (RFC 8725), sealing of secrets
//! at rest (AES-256-GCM), and the `Clock` and `Rng` inputs that make expiry,
//! rotation and replay testable.

pub mod assertion;
pub mod clock;
pub mod dpop;
pub mod jwt;
pub mod keys;
pub mod seal;

pub use assertion::{ASSERTION_LIFETIME_SECS, client_assertion};
pub use clock::{Clock, FixedClock, Rng, SystemClock, SystemRng, random_token};
pub use jwt::{JwtError, VerifiedJwt, Verifier, VerifyOptions};
pub use keys::{KeyAlg, PublicJwk, PublicJwks, SigningKey};
pub use seal::{MasterKey, SealError};
