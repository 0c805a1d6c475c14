//! Rate limits per upstream (issue 3 "Rate limits"): one GCRA limiter per
//! user (issuer, subject) and one per OAuth client, from `governor`. Over
//! the limit the gateway answers 429 with `Retry-After`.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use mcpgate_guard::Principal;

use crate::config::RateLimit;

pub struct Limits {
    per_user: DefaultKeyedRateLimiter<(String, String)>,
    per_client: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n.max(1)).expect("max(1) is non-zero"))
}

impl Limits {
    pub fn new(cfg: RateLimit) -> Self {
        Self {
            per_user: RateLimiter::keyed(per_minute(cfg.per_user_per_minute)),
            per_client: RateLimiter::keyed(per_minute(cfg.per_client_per_minute)),
            clock: DefaultClock::default(),
        }
    }

    /// `Err((reason, retry_after))` when either limit is exhausted.
    pub fn check(&self, p: &Principal) -> Result<(), (&'static str, Duration)> {
        let now = self.clock.now();
        self.per_user
            .check_key(&(p.issuer.clone(), p.subject.clone()))
            .map_err(|n| ("user_rate_limit", n.wait_time_from(now)))?;
        self.per_client
            .check_key(&p.client_id)
            .map_err(|n| ("client_rate_limit", n.wait_time_from(now)))?;
        Ok(())
    }

    /// Drops idle keys (called by the gateway's housekeeping task).
    pub fn shrink(&self) {
        self.per_user.retain_recent();
        self.per_client.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use mcpgate_types::ScopeSet;

    use super::*;

    #[test]
    fn user_then_client() {
        let l = Limits::new(RateLimit {
            per_user_per_minute: 2,
            per_client_per_minute: 3,
        });
        let p = |s: &str| Principal {
            issuer: "i".into(),
            subject: s.into(),
            client_id: "c".into(),
            scopes: ScopeSet::new(),
            groups: vec![],
            expires_at: 0,
        };
        assert!(l.check(&p("a")).is_ok());
        assert!(l.check(&p("a")).is_ok());
        let (reason, wait) = l.check(&p("a")).unwrap_err();
        assert_eq!(reason, "user_rate_limit");
        assert!(wait > Duration::ZERO);
        assert!(l.check(&p("b")).is_ok());
        assert_eq!(l.check(&p("c")).unwrap_err().0, "client_rate_limit");
    }
}
