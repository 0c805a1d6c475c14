//! Rate limits that hold across replicas (fleet-wide) or in one process.
//!
//! [`Limiter::local`] is a GCRA limiter per key in memory (`governor`): the
//! right one for a single node (SQLite). [`Limiter::shared`] keeps one
//! token bucket per key in the database ([`FleetStore::take_tokens`]:
//! capacity = the figure, refilled at figure / window by the database's
//! clock, in one conditional upsert), so N replicas together admit the
//! figure, not N times it.
//!
//! A database round trip per request would be slow, so each replica takes
//! a **lease** of a few tokens at a time ([`lease_size`]: 1/50 of the
//! figure, at least 1) and spends them locally. A leased token has left the
//! shared bucket, so leases never admit more than the bucket gives; what
//! they can do is move tokens in time: a replica's unspent lease taken
//! before a window may be spent in it. Each replica holds at most one lease
//! per key, so in any window the fleet admits at most the figure (plus the
//! refill) plus `replicas × lease` — within 10% for up to 5 replicas. A
//! lease unspent after [`LEASE_TTL`] is dropped (those tokens are lost to
//! the key: under-admission, bounded the same way). When the bucket is
//! empty, the key is refused locally until the refill the database
//! computed (`Retry-After`), without asking the database again.
//!
//! **When the database fails** (an error, or no answer within
//! [`STORE_TIMEOUT`]), a shared limiter does not refuse everything and
//! does not admit everything: it falls back to a local GCRA limiter whose
//! figure is divided by the number of live replicas last seen
//! ([`Fleet::replicas`]), logs an error when the outage starts and a line
//! when it ends, and uses the database again as soon as it answers.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

use crate::fleet::Fleet;
use crate::traits::{Bucket, FleetStore};

/// N per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_window: u32,
    pub window: Duration,
}

impl Rate {
    pub fn per_minute(n: u32) -> Self {
        Self {
            per_window: n,
            window: Duration::from_secs(60),
        }
    }

    fn bucket(self) -> Bucket {
        Bucket {
            capacity: self.per_window.max(1),
            refill_per_sec: f64::from(self.per_window.max(1)) / self.window.as_secs_f64().max(1e-3),
        }
    }

    /// The GCRA quota: a burst of N, one more every window / N.
    fn quota(self) -> Quota {
        let n = NonZeroU32::new(self.per_window.max(1)).expect("max(1) is non-zero");
        let period = self.window.max(Duration::from_millis(1)) / n.get();
        Quota::with_period(period.max(Duration::from_nanos(1)))
            .expect("period is non-zero")
            .allow_burst(n)
    }
}

/// Tokens a replica takes from the shared bucket at a time.
pub fn lease_size(rate: Rate) -> u32 {
    (rate.per_window / 50).max(1)
}

/// How long a replica keeps an unspent lease.
pub const LEASE_TTL: Duration = Duration::from_secs(10);
/// How long a request waits for the database before the fallback decides.
pub const STORE_TIMEOUT: Duration = Duration::from_secs(2);

/// A rate limit per key (see the module docs).
pub struct Limiter(Kind);

enum Kind {
    Local(Local),
    Shared(Box<Shared>),
}

struct Local {
    limiter: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl Local {
    fn new(rate: Rate) -> Self {
        Self {
            limiter: RateLimiter::keyed(rate.quota()),
            clock: DefaultClock::default(),
        }
    }

    fn check(&self, key: &str) -> Result<(), Duration> {
        self.limiter
            .check_key(&key.to_owned())
            .map_err(|n| n.wait_time_from(self.clock.now()))
    }

    fn shrink(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

struct Shared {
    /// Namespace of this limit's keys in the shared table.
    name: String,
    store: Arc<dyn FleetStore>,
    fleet: Arc<Fleet>,
    rate: Rate,
    lease: u32,
    leases: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Lease>>>>,
    /// The local limiter of an outage, for the replica count it was made for.
    fallback: Mutex<Option<(u32, Arc<Local>)>>,
    failing: AtomicBool,
}

#[derive(Default)]
struct Lease {
    tokens: u32,
    until: Option<Instant>,
    /// The bucket was empty: refused without asking until then.
    empty_until: Option<Instant>,
}

impl Lease {
    fn idle(&self, now: Instant) -> bool {
        (self.tokens == 0 || self.until.is_none_or(|u| now >= u))
            && self.empty_until.is_none_or(|u| now >= u)
    }
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Kind::Local(_) => f.write_str("Limiter(local)"),
            Kind::Shared(s) => f
                .debug_struct("Limiter")
                .field("rate", &s.rate)
                .field("lease", &s.lease)
                .finish_non_exhaustive(),
        }
    }
}

impl Limiter {
    /// In this process's memory only.
    pub fn local(rate: Rate) -> Self {
        Self(Kind::Local(Local::new(rate)))
    }

    /// Shared by every replica using `store`, its keys named `name/…` there
    /// (`name` tells limits apart; one per limit); `fleet` says how many
    /// replicas there are when the store fails.
    pub fn shared(name: &str, rate: Rate, store: Arc<dyn FleetStore>, fleet: Arc<Fleet>) -> Self {
        Self(Kind::Shared(Box::new(Shared {
            name: name.to_owned(),
            store,
            fleet,
            rate,
            lease: lease_size(rate),
            leases: Mutex::new(HashMap::new()),
            fallback: Mutex::new(None),
            failing: AtomicBool::new(false),
        })))
    }

    /// Whether the fleet shares this limiter.
    pub fn is_shared(&self) -> bool {
        matches!(self.0, Kind::Shared(_))
    }

    /// Spends one unit of `key`'s limit, or says how long until one is free.
    pub async fn check(&self, key: &str) -> Result<(), Duration> {
        match &self.0 {
            Kind::Local(l) => l.check(key),
            Kind::Shared(s) => s.check(key).await,
        }
    }

    /// Forgets idle keys (call from housekeeping).
    pub fn shrink(&self) {
        match &self.0 {
            Kind::Local(l) => l.shrink(),
            Kind::Shared(s) => s.shrink(),
        }
    }
}

/// Longest key stored as it is; longer ones are cut and hashed.
const KEY_MAX: usize = 256;

/// A key as the shared table holds it: `name/` and the key as a JSON
/// string (unambiguous, and without the NUL PostgreSQL text refuses); a
/// key longer than [`KEY_MAX`] (a hostile user name) keeps its start and a
/// hash of the whole, so rows and index entries stay small. Every replica
/// runs the same binary, so the hash agrees across the fleet.
fn stored_key(name: &str, key: &str) -> String {
    let json = serde_json::to_string(key).unwrap_or_default();
    if json.len() <= KEY_MAX {
        return format!("{name}/{json}");
    }
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    key.hash(&mut h);
    let mut cut = KEY_MAX;
    while !json.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{name}/{}#{:016x}", &json[..cut], h.finish())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    async fn check(&self, key: &str) -> Result<(), Duration> {
        let slot = {
            let mut leases = lock(&self.leases);
            match leases.get(key) {
                Some(s) => s.clone(),
                None => leases.entry(key.to_owned()).or_default().clone(),
            }
        };
        // One lease request per key at a time; the others wait for it.
        let mut lease = slot.lock().await;
        let now = Instant::now();
        if lease.tokens > 0 && lease.until.is_some_and(|u| now < u) {
            lease.tokens -= 1;
            return Ok(());
        }
        if let Some(u) = lease.empty_until
            && now < u
        {
            return Err(u - now);
        }
        let bucket = self.rate.bucket();
        let stored = stored_key(&self.name, key);
        let taken = tokio::time::timeout(
            STORE_TIMEOUT,
            self.store.take_tokens(&stored, bucket, self.lease),
        )
        .await;
        match taken {
            Ok(Ok(t)) => {
                if self.failing.swap(false, Ordering::AcqRel) {
                    tracing::info!("rate limits are fleet-wide again (the store answers)");
                }
                if t.granted > 0 {
                    lease.tokens = t.granted - 1;
                    lease.until = Some(now + LEASE_TTL);
                    lease.empty_until = None;
                    Ok(())
                } else {
                    lease.tokens = 0;
                    // Until one whole token has refilled.
                    let secs = (1.0 - t.left).max(0.0) / bucket.refill_per_sec;
                    let secs = if secs.is_finite() {
                        secs.clamp(0.001, 86_400.0)
                    } else {
                        86_400.0
                    };
                    let wait = Duration::from_secs_f64(secs);
                    lease.empty_until = Some(now + wait);
                    Err(wait)
                }
            }
            Ok(Err(e)) => self.fall_back(key, &e.to_string()),
            Err(_) => self.fall_back(key, "no answer in time"),
        }
    }

    fn fall_back(&self, key: &str, error: &str) -> Result<(), Duration> {
        let replicas = self.fleet.replicas();
        if !self.failing.swap(true, Ordering::AcqRel) {
            tracing::error!(
                %error,
                replicas,
                "the store failed: rate limits fall back to this replica's memory, each limit divided by the live replicas"
            );
        }
        let local = {
            let mut f = lock(&self.fallback);
            match &*f {
                Some((n, l)) if *n == replicas => l.clone(),
                _ => {
                    let share = Rate {
                        per_window: (self.rate.per_window / replicas).max(1),
                        window: self.rate.window,
                    };
                    let l = Arc::new(Local::new(share));
                    *f = Some((replicas, l.clone()));
                    l
                }
            }
        };
        local.check(key)
    }

    fn shrink(&self) {
        let now = Instant::now();
        lock(&self.leases).retain(|_, slot| {
            Arc::strong_count(slot) > 1 || slot.try_lock().map_or(true, |l| !l.idle(now))
        });
        if let Some((_, l)) = &*lock(&self.fallback) {
            l.shrink();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traits::Taken;

    #[test]
    fn lease_is_a_fiftieth_at_least_one() {
        assert_eq!(lease_size(Rate::per_minute(600)), 12);
        assert_eq!(lease_size(Rate::per_minute(10)), 1);
        assert_eq!(lease_size(Rate::per_minute(0)), 1);
    }

    #[test]
    fn bucket_refills_the_figure_per_window() {
        let b = Rate::per_minute(600).bucket();
        assert_eq!(b.capacity, 600);
        assert!((b.refill_per_sec - 10.0).abs() < 1e-9);
    }

    /// A store that always fails, as a database that went away.
    struct Down;

    #[async_trait::async_trait]
    impl FleetStore for Down {
        async fn take_tokens(&self, _: &str, _: Bucket, _: u32) -> crate::StoreResult<Taken> {
            Err(crate::StoreError::Backend("down".into()))
        }
        async fn purge_rate_limits(&self, _: f64) -> crate::StoreResult<u64> {
            Err(crate::StoreError::Backend("down".into()))
        }
        async fn fleet_heartbeat(&self, _: &str, _: f64) -> crate::StoreResult<u32> {
            Err(crate::StoreError::Backend("down".into()))
        }
        fn housekeeper(&self, _: &str) -> crate::fleet::Housekeeper {
            crate::fleet::Housekeeper::always()
        }
    }

    /// A failing store neither refuses everything nor admits everything:
    /// each replica admits its share of the figure.
    #[tokio::test]
    async fn store_failure_falls_back_to_a_share() {
        let l = Limiter::shared("t", Rate::per_minute(30), Arc::new(Down), Fleet::fixed(3));
        let mut admitted = 0;
        let mut refused = None;
        for _ in 0..40 {
            match l.check("k").await {
                Ok(()) => admitted += 1,
                Err(wait) => refused = Some(wait),
            }
        }
        assert_eq!(admitted, 10, "30 per minute over 3 replicas");
        assert!(refused.is_some_and(|w| w > Duration::ZERO && w <= Duration::from_secs(6)));
    }

    #[test]
    fn stored_keys_are_unambiguous_and_bounded() {
        assert_eq!(stored_key("n", "a/b"), r#"n/"a/b""#);
        assert_ne!(stored_key("n", "a\"/x"), stored_key("n/\"a", "x"));
        assert!(!stored_key("n", "a\0b").contains('\0'));
        let long = "é".repeat(1000);
        let k = stored_key("n", &long);
        assert!(k.len() < KEY_MAX + 30);
        assert_ne!(k, stored_key("n", &format!("{long}x")));
    }

    #[tokio::test]
    async fn local_limits_per_key() {
        let l = Limiter::local(Rate::per_minute(2));
        assert!(l.check("a").await.is_ok());
        assert!(l.check("a").await.is_ok());
        assert!(l.check("a").await.unwrap_err() > Duration::ZERO);
        assert!(l.check("b").await.is_ok());
    }
}
