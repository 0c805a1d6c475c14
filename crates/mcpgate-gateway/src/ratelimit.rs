//! Rate limits per upstream: one limit per user (issuer, subject) and one
//! per OAuth client. Over the limit the gateway answers 429 with
//! `Retry-After`. On one node the limits are GCRA limiters in memory; when
//! replicas share a PostgreSQL store they are fleet-wide token buckets in
//! it, leased a few tokens at a time ([`mcpgate_store::rates`]), so N
//! replicas admit the configured figure together, not N times it.

use std::time::Duration;

use mcpgate_guard::Principal;
use mcpgate_store::fleet::Replica;
use mcpgate_store::rates::{Limiter, Rate};

use crate::config::RateLimit;

pub struct Limits {
    per_user: Limiter,
    per_client: Limiter,
}

impl Limits {
    /// The limits of upstream `upstream`: fleet-wide with a `replica`, else
    /// in this process's memory.
    pub fn new(cfg: RateLimit, upstream: &str, replica: Option<&Replica>) -> Self {
        let limit = |kind: &str, n: u32| match replica {
            Some(r) => r.limiter(&format!("gateway-{kind}/{upstream}"), Rate::per_minute(n)),
            None => Limiter::local(Rate::per_minute(n)),
        };
        Self {
            per_user: limit("user", cfg.per_user_per_minute),
            per_client: limit("client", cfg.per_client_per_minute),
        }
    }

    /// `Err((reason, retry_after))` when either limit is exhausted.
    pub async fn check(&self, p: &Principal) -> Result<(), (&'static str, Duration)> {
        // (issuer, subject) as one unambiguous string.
        let user = serde_json::to_string(&(&p.issuer, &p.subject)).unwrap_or_default();
        self.per_user
            .check(&user)
            .await
            .map_err(|wait| ("user_rate_limit", wait))?;
        self.per_client
            .check(&p.client_id)
            .await
            .map_err(|wait| ("client_rate_limit", wait))?;
        Ok(())
    }

    /// Drops idle keys (called by the gateway's housekeeping task).
    pub fn shrink(&self) {
        self.per_user.shrink();
        self.per_client.shrink();
    }
}

#[cfg(test)]
mod tests {
    use mcpgate_types::ScopeSet;

    use super::*;

    #[tokio::test]
    async fn user_then_client() {
        let l = Limits::new(
            RateLimit {
                per_user_per_minute: 2,
                per_client_per_minute: 3,
            },
            "up",
            None,
        );
        let p = |s: &str| Principal {
            issuer: "i".into(),
            subject: s.into(),
            client_id: "c".into(),
            scopes: ScopeSet::new(),
            groups: vec![],
            expires_at: 0,
            dpop_jkt: None,
        };
        assert!(l.check(&p("a")).await.is_ok());
        assert!(l.check(&p("a")).await.is_ok());
        let (reason, wait) = l.check(&p("a")).await.unwrap_err();
        assert_eq!(reason, "user_rate_limit");
        assert!(wait > Duration::ZERO);
        assert!(l.check(&p("b")).await.is_ok());
        assert_eq!(l.check(&p("c")).await.unwrap_err().0, "client_rate_limit");
    }
}
