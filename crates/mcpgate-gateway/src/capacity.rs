//! What one gateway holds at once (issue 15, "resource limits with
//! defaults"): sessions, stdio children and open GET streams in all, GET
//! streams per user, and the tokens it refuses per client address before it
//! stops checking that address's tokens for a while.
//!
//! Each held thing owns a [`Slot`]; the slot goes back when the thing is
//! gone (the session dropped, the child reaped, the stream closed), so a
//! count cannot drift from what is really held. A full gateway answers 503
//! with `Retry-After`; one user or address over its share gets 429.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use mcpgate_guard::Principal;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::ResourceLimits;

/// What a 503 for a full gateway asks the client to wait.
pub const FULL_RETRY_AFTER: Duration = Duration::from_secs(5);

/// Which limit refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    Sessions,
    Children,
    Streams,
}

impl Full {
    pub fn reason(self) -> &'static str {
        match self {
            Full::Sessions => "capacity_sessions",
            Full::Children => "capacity_children",
            Full::Streams => "capacity_streams",
        }
    }

    fn gauge(self) -> &'static str {
        match self {
            Full::Sessions => "sessions",
            Full::Children => "children",
            Full::Streams => "streams",
        }
    }
}

/// One held session, child or stream; dropping it frees its place.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    kind: Full,
    user: Option<UserStreams>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        metrics::gauge!("mcpgate_gateway_capacity_in_use", "limit" => self.kind.gauge())
            .decrement(1.0);
    }
}

/// A user's share of the GET streams, given back on drop.
struct UserStreams {
    counts: Arc<Mutex<HashMap<(String, String), usize>>>,
    key: (String, String),
}

impl Drop for UserStreams {
    fn drop(&mut self) {
        let mut m = self.counts.lock().expect("stream counts lock");
        if let Some(n) = m.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.key);
            }
        }
    }
}

/// Why a stream was not opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamRefused {
    /// The gateway holds `max_streams`.
    Full,
    /// This user holds `max_streams_per_user`.
    UserShare,
}

pub struct Capacity {
    limits: ResourceLimits,
    sessions: Arc<Semaphore>,
    children: Arc<Semaphore>,
    streams: Arc<Semaphore>,
    user_streams: Arc<Mutex<HashMap<(String, String), usize>>>,
    refused: DefaultKeyedRateLimiter<IpAddr>,
    /// Addresses whose tokens are not checked until the instant given.
    benched: Mutex<HashMap<IpAddr, Instant>>,
    clock: DefaultClock,
}

impl Capacity {
    pub fn new(limits: ResourceLimits) -> Self {
        for (name, max) in [
            ("sessions", limits.max_sessions),
            ("children", limits.max_children),
            ("streams", limits.max_streams),
        ] {
            metrics::gauge!("mcpgate_gateway_capacity_limit", "limit" => name).set(max as f64);
        }
        let per_minute = NonZeroU32::new(limits.refused_tokens_per_ip_per_minute.max(1))
            .expect("max(1) is non-zero");
        Self {
            limits,
            sessions: Arc::new(Semaphore::new(limits.max_sessions)),
            children: Arc::new(Semaphore::new(limits.max_children)),
            streams: Arc::new(Semaphore::new(limits.max_streams)),
            user_streams: Arc::default(),
            refused: RateLimiter::keyed(Quota::per_minute(per_minute)),
            benched: Mutex::default(),
            clock: DefaultClock::default(),
        }
    }

    fn take(&self, sem: &Arc<Semaphore>, kind: Full) -> Result<Slot, Full> {
        let permit = sem.clone().try_acquire_owned().map_err(|_| {
            tracing::warn!(limit = kind.gauge(), "gateway at capacity: request refused");
            kind
        })?;
        metrics::gauge!("mcpgate_gateway_capacity_in_use", "limit" => kind.gauge()).increment(1.0);
        Ok(Slot {
            _permit: permit,
            kind,
            user: None,
        })
    }

    /// A place for a new session (`max_sessions`).
    pub fn session(&self) -> Result<Slot, Full> {
        self.take(&self.sessions, Full::Sessions)
    }

    /// A place for a new stdio child (`max_children`).
    pub fn child(&self) -> Result<Slot, Full> {
        self.take(&self.children, Full::Children)
    }

    /// A place for a GET stream of `p` (`max_streams`, `max_streams_per_user`).
    pub fn stream(&self, p: &Principal) -> Result<Slot, StreamRefused> {
        let key = (p.issuer.clone(), p.subject.clone());
        let user = {
            let mut m = self.user_streams.lock().expect("stream counts lock");
            let n = m.entry(key.clone()).or_insert(0);
            if *n >= self.limits.max_streams_per_user {
                return Err(StreamRefused::UserShare);
            }
            *n += 1;
            UserStreams {
                counts: self.user_streams.clone(),
                key,
            }
        };
        // On failure `user` drops here and gives its share back.
        let mut slot = self
            .take(&self.streams, Full::Streams)
            .map_err(|_| StreamRefused::Full)?;
        slot.user = Some(user);
        Ok(slot)
    }

    /// Before a token from `ip` is checked: `Err(retry_after)` while the
    /// address is benched for presenting too many refused tokens.
    pub fn may_present_token(&self, ip: IpAddr) -> Result<(), Duration> {
        let m = self.benched.lock().expect("benched lock");
        match m.get(&ip) {
            Some(until) => {
                let now = Instant::now();
                if *until > now {
                    Err(*until - now)
                } else {
                    Ok(())
                }
            }
            None => Ok(()),
        }
    }

    /// A token from `ip` was refused: counted, and once the address is over
    /// `refused_tokens_per_ip_per_minute` it is benched until its budget
    /// allows another check.
    pub fn token_refused(&self, ip: IpAddr) {
        if let Err(not_until) = self.refused.check_key(&ip) {
            let wait = not_until.wait_time_from(self.clock.now());
            tracing::warn!(%ip, ?wait, "too many refused tokens from one address: its tokens are not checked for a while");
            self.benched
                .lock()
                .expect("benched lock")
                .insert(ip, Instant::now() + wait);
        }
    }

    /// Forgets addresses whose bench and budget have expired (housekeeping).
    pub fn shrink(&self) {
        let now = Instant::now();
        self.benched
            .lock()
            .expect("benched lock")
            .retain(|_, until| *until > now);
        self.refused.retain_recent();
    }
}

/// `body`, holding `slot` until the body ends or is dropped (the client
/// went away).
pub fn hold(body: axum::body::Body, slot: Slot) -> axum::body::Body {
    axum::body::Body::new(Held { body, _slot: slot })
}

struct Held {
    body: axum::body::Body,
    _slot: Slot,
}

impl http_body::Body for Held {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, axum::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ResourceLimits {
        ResourceLimits {
            max_sessions: 2,
            max_children: 1,
            max_streams: 3,
            max_streams_per_user: 2,
            refused_tokens_per_ip_per_minute: 3,
        }
    }

    fn user(s: &str) -> Principal {
        let mut p = crate::anonymous_principal();
        p.subject = s.into();
        p
    }

    #[test]
    fn a_slot_is_given_back_when_dropped() {
        let c = Capacity::new(limits());
        let a = c.session().unwrap();
        let _b = c.session().unwrap();
        assert_eq!(c.session().err(), Some(Full::Sessions));
        drop(a);
        assert!(c.session().is_ok());
        let k = c.child().unwrap();
        assert_eq!(c.child().err(), Some(Full::Children));
        drop(k);
        assert!(c.child().is_ok());
    }

    #[test]
    fn streams_are_capped_per_user_and_in_all() {
        let c = Capacity::new(limits());
        let a1 = c.stream(&user("a")).unwrap();
        let _a2 = c.stream(&user("a")).unwrap();
        assert_eq!(c.stream(&user("a")).err(), Some(StreamRefused::UserShare));
        let _b1 = c.stream(&user("b")).unwrap();
        // Three in all: b's second is refused by the total, and its share is
        // not consumed by the refusal.
        assert_eq!(c.stream(&user("b")).err(), Some(StreamRefused::Full));
        drop(a1);
        let _b2 = c.stream(&user("b")).unwrap();
        assert_eq!(c.stream(&user("b")).err(), Some(StreamRefused::UserShare));
        assert_eq!(c.stream(&user("a")).err(), Some(StreamRefused::Full));
    }

    #[test]
    fn an_address_that_keeps_presenting_bad_tokens_is_benched() {
        let c = Capacity::new(limits());
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        let other: IpAddr = "203.0.113.8".parse().unwrap();
        for _ in 0..3 {
            assert!(c.may_present_token(ip).is_ok());
            c.token_refused(ip);
        }
        // The budget of 3 is spent: the fourth refusal benches the address.
        assert!(c.may_present_token(ip).is_ok());
        c.token_refused(ip);
        let wait = c.may_present_token(ip).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        assert!(c.may_present_token(other).is_ok());
    }
}
