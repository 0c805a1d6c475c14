//! The validated-token cache of one guard (protected resource role; MCP authorization §2(b)
//! "validate every request", made cheap for repeats). Keyed by the SHA-256 of the token, so the
//! token itself is never kept; bounded (sharded, evicting expired entries first, then the one
//! that expires soonest); every entry dies at the token's `exp` (or earlier, for introspection
//! answers). A cache belongs to one [`crate::Guard`], that is to one resource, so it can never
//! answer for another audience. Shard locks are plain mutexes, never held across an `.await`.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::principal::Principal;

/// SHA-256 of a token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct TokenKey([u8; 32]);

impl TokenKey {
    pub(crate) fn of(token: &str) -> Self {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        Self(out)
    }

    fn shard(&self, shards: usize) -> usize {
        usize::from(self.0[8]) % shards
    }
}

impl Hash for TokenKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Already a uniform digest: eight of its bytes are a good hash.
        let mut word = [0u8; 8];
        word.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_ne_bytes(word));
    }
}

/// Passes the digest word through (no SipHash over data that is already a hash).
#[derive(Default)]
pub(crate) struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// How a cached principal was validated, so a hit can re-check what may have changed since.
#[derive(Debug, Clone)]
pub(crate) enum Origin {
    /// A JWT of issuer number `issuer`: its key must still be published, and it must not have
    /// been revoked since.
    Jwt { issuer: usize, facts: Arc<JwtFacts> },
    /// An active introspection answer.
    Introspection,
}

/// What a hit on a cached JWT re-checks: the key that verified it, and the ids the issuer's
/// revocations can name.
#[derive(Debug)]
pub(crate) struct JwtFacts {
    pub kid: String,
    pub grant: Option<String>,
    pub jti: Option<String>,
    pub iat: Option<i64>,
}

struct Entry {
    principal: Arc<Principal>,
    origin: Origin,
    /// Seconds since the epoch at which the entry dies (≤ the token's `exp`).
    until: i64,
    /// The revocations generation at which the token was last found live (0: no revocations).
    checked: u64,
}

/// A live cache entry, as [`TokenCache::get`] hands it out.
pub(crate) struct Hit {
    pub principal: Arc<Principal>,
    pub origin: Origin,
    pub checked: u64,
}

type Shard = HashMap<TokenKey, Entry, BuildHasherDefault<DigestHasher>>;

pub(crate) struct TokenCache {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
}

const MAX_SHARDS: usize = 16;

impl TokenCache {
    /// A cache of about `capacity` entries (at most `capacity + 15`); 0 disables it.
    pub(crate) fn new(capacity: usize) -> Self {
        let shards = capacity.clamp(1, MAX_SHARDS);
        let per_shard = capacity.div_ceil(shards);
        Self {
            shards: (0..shards).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard,
        }
    }

    fn shard(&self, key: &TokenKey) -> MutexGuard<'_, Shard> {
        self.shards[key.shard(self.shards.len())]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The live entry for `key`, if any; a dead one is dropped.
    pub(crate) fn get(&self, key: &TokenKey, now: i64) -> Option<Hit> {
        if self.per_shard == 0 {
            return None;
        }
        let mut shard = self.shard(key);
        match shard.get(key) {
            Some(e) if now < e.until => Some(Hit {
                principal: e.principal.clone(),
                origin: e.origin.clone(),
                checked: e.checked,
            }),
            Some(_) => {
                shard.remove(key);
                None
            }
            None => None,
        }
    }

    /// Keeps `principal` until `until` (exclusive). Entries already dead are not stored.
    pub(crate) fn insert(
        &self,
        key: TokenKey,
        principal: Arc<Principal>,
        origin: Origin,
        until: i64,
        now: i64,
        checked: u64,
    ) {
        if self.per_shard == 0 || now >= until {
            return;
        }
        let mut shard = self.shard(&key);
        if shard.len() >= self.per_shard && !shard.contains_key(&key) {
            shard.retain(|_, e| now < e.until);
            if shard.len() >= self.per_shard {
                let soonest = shard.iter().min_by_key(|(_, e)| e.until).map(|(k, _)| *k);
                if let Some(k) = soonest {
                    shard.remove(&k);
                }
            }
        }
        shard.insert(
            key,
            Entry {
                principal,
                origin,
                until,
                checked,
            },
        );
    }

    /// Records that the token of `key` was found live at revocations generation `checked`.
    pub(crate) fn set_checked(&self, key: &TokenKey, checked: u64) {
        if self.per_shard > 0
            && let Some(e) = self.shard(key).get_mut(key)
        {
            e.checked = checked;
        }
    }

    pub(crate) fn remove(&self, key: &TokenKey) {
        if self.per_shard > 0 {
            self.shard(key).remove(key);
        }
    }

    pub(crate) fn clear(&self) {
        for s in self.shards.iter() {
            s.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clear();
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .len()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use mcpgate_types::ScopeSet;

    use super::*;

    fn p(sub: &str, exp: i64) -> Arc<Principal> {
        Arc::new(Principal {
            issuer: "https://as".into(),
            subject: sub.into(),
            client_id: "c".into(),
            scopes: ScopeSet::new(),
            groups: vec![],
            expires_at: exp,
            dpop_jkt: None,
        })
    }

    #[test]
    fn key_is_sha256() {
        let k = TokenKey::of("abc");
        assert_eq!(k.0[..4], [0xba, 0x78, 0x16, 0xbf]);
        assert!(TokenKey::of("abc") == k && TokenKey::of("abd") != k);
    }

    #[test]
    fn entries_die_at_until() {
        let c = TokenCache::new(10);
        let k = TokenKey::of("t");
        c.insert(k, p("u", 110), Origin::Introspection, 110, 100, 0);
        assert_eq!(c.get(&k, 109).unwrap().principal.subject, "u");
        assert!(c.get(&k, 110).is_none());
        assert_eq!(c.len(), 0);
        c.insert(k, p("u", 110), Origin::Introspection, 110, 110, 0);
        assert_eq!(c.len(), 0, "dead entries are not stored");
    }

    #[test]
    fn bounded_and_evicts_soonest_first() {
        let c = TokenCache::new(1);
        let (a, b) = (TokenKey::of("a"), TokenKey::of("b"));
        c.insert(a, p("a", 500), Origin::Introspection, 500, 100, 0);
        c.insert(b, p("b", 600), Origin::Introspection, 600, 100, 0);
        assert!(c.get(&a, 100).is_none());
        assert!(c.get(&b, 100).is_some());

        let c = TokenCache::new(64);
        for i in 0..1000 {
            let k = TokenKey::of(&i.to_string());
            c.insert(k, p("x", 1000 + i), Origin::Introspection, 1000 + i, 100, 0);
        }
        assert!(c.len() <= 64 + MAX_SHARDS);
        // The latest-expiring entries survive.
        assert!(c.get(&TokenKey::of("999"), 100).is_some());
    }

    #[test]
    fn zero_capacity_disables() {
        let c = TokenCache::new(0);
        let k = TokenKey::of("t");
        c.insert(k, p("u", 200), Origin::Introspection, 200, 100, 0);
        assert!(c.get(&k, 100).is_none());
        c.remove(&k);
        c.clear();
    }
}
