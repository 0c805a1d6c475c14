//! Password hashing with argon2id (OWASP parameters: m=19 MiB, t=2, p=1),
//! run on the blocking pool so logins do not stall the runtime, and at most
//! a few at a time ([`Gate`]): each costs 19 MiB and a core for tens of
//! milliseconds, so a flood of sign-ins must queue, not multiply.

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

/// How long a hash may wait for its turn before the sign-in is answered
/// 503 with `Retry-After`.
pub const GATE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// At most `max` password hashes run at once; the others wait their turn.
pub struct Gate {
    permits: std::sync::Arc<tokio::sync::Semaphore>,
    wait: std::time::Duration,
}

/// Too many sign-ins at once: try again later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

impl Gate {
    pub fn new(max: usize, wait: std::time::Duration) -> Self {
        Self {
            permits: std::sync::Arc::new(tokio::sync::Semaphore::new(max.max(1))),
            wait,
        }
    }

    /// Runs `work` (a hash or a verification) on the blocking pool once a
    /// place is free; `Busy` if none frees up in time.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let permit = tokio::time::timeout(self.wait, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| {
                tracing::warn!("password hashing at capacity: a sign-in was turned away");
                metrics::counter!("mcpgate_password_hashes_refused_total").increment(1);
                Busy
            })?
            .expect("the semaphore is never closed");
        let out = tokio::task::spawn_blocking(move || {
            let out = work();
            drop(permit);
            out
        })
        .await;
        out.map_err(|_| Busy)
    }
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
    #[tokio::test]
    async fn the_gate_lets_max_through_and_turns_the_rest_away_in_time() {
        let gate = std::sync::Arc::new(super::Gate::new(1, std::time::Duration::from_millis(50)));
        let (hold, release) = std::sync::mpsc::channel::<()>();
        let g = gate.clone();
        let first = tokio::spawn(async move {
            g.run(move || {
                let _ = release.recv();
                1
            })
            .await
        });
        // Wait until the first holds the only place.
        while gate.permits.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(gate.run(|| 2).await, Err(super::Busy));
        hold.send(()).unwrap();
        assert_eq!(first.await.unwrap(), Ok(1));
        assert_eq!(gate.run(|| 3).await, Ok(3));
    }

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
