//! Password hashing with argon2id (OWASP parameters: m=19 MiB, t=2, p=1),
//! run on the blocking pool so logins do not stall the runtime.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

/// Minimum length of a password chosen by a user.
pub const MIN_PASSWORD_LEN: usize = 10;
/// Upper bound, so hashing cost cannot be driven up by huge inputs.
pub const MAX_PASSWORD_LEN: usize = 1024;

fn argon2() -> Argon2<'static> {
    Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(19 * 1024, 2, 1, None).expect("static argon2 params are valid"),
    )
}

/// Hashes a password into a PHC string.
pub fn hash(password: &str, salt_bytes: &[u8; 16]) -> Result<String, String> {
    let h: PasswordHash = argon2()
        .hash_password_with_salt(password.as_bytes(), salt_bytes)
        .map_err(|e| e.to_string())?;
    Ok(h.to_string())
}

/// Verifies a password against a PHC string. A malformed hash never verifies.
pub fn verify(password: &str, phc: &str) -> bool {
    if password.len() > MAX_PASSWORD_LEN {
        return false;
    }
    match PasswordHash::new(phc) {
        Ok(parsed) => argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash of a random password, verified against when the username is
/// unknown so that the response time does not reveal which accounts exist.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash("not a password anyone has", &[7u8; 16]).expect("hashing works"))
}

pub fn check_policy(password: &str) -> Result<(), &'static str> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err("The password is too short.");
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err("The password is too long.");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let h = hash("correct horse battery", &[1u8; 16]).unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("correct horse battery", &h));
        assert!(!verify("correct horse batterY", &h));
        assert!(!verify("x", "not-a-phc-string"));
    }
}
