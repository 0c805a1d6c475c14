//! Time and randomness as inputs.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Wall-clock time since the Unix epoch.
pub trait Clock: Send + Sync + 'static {
    /// Seconds.
    fn now(&self) -> i64;

    /// Milliseconds (audit records); a clock without a finer source gives
    /// whole seconds.
    fn now_ms(&self) -> i64 {
        self.now().saturating_mul(1000)
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }

    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// A clock tests move by hand.
#[derive(Debug, Clone)]
pub struct FixedClock(Arc<AtomicI64>);

impl FixedClock {
    pub fn new(now: i64) -> Self {
        Self(Arc::new(AtomicI64::new(now)))
    }
    pub fn set(&self, now: i64) {
        self.0.store(now, Ordering::SeqCst);
    }
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A source of cryptographically secure random bytes.
pub trait Rng: Send + Sync + 'static {
    fn fill(&self, buf: &mut [u8]);
}

/// The operating system's CSPRNG (through aws-lc).
#[derive(Debug, Default)]
pub struct SystemRng(aws_lc_rs::rand::SystemRandom);

impl SystemRng {
    pub fn new() -> Self {
        Self(aws_lc_rs::rand::SystemRandom::new())
    }
}

impl Rng for SystemRng {
    fn fill(&self, buf: &mut [u8]) {
        use aws_lc_rs::rand::SecureRandom;
        // The system RNG does not fail on supported platforms; if it ever
        // does, continuing with predictable bytes would be a security bug.
        self.0.fill(buf).expect("operating system RNG failed");
    }
}

/// `bytes` random bytes, base64url without padding (a 32-byte token is 43 chars).
pub fn random_token(rng: &dyn Rng, bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rng.fill(&mut buf);
    URL_SAFE_NO_PAD.encode(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_clock_moves() {
        let c = FixedClock::new(100);
        c.advance(5);
        assert_eq!(c.now(), 105);
    }

    #[test]
    fn tokens_are_distinct_and_long() {
        let rng = SystemRng::new();
        let a = random_token(&rng, 32);
        let b = random_token(&rng, 32);
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
    }
}
