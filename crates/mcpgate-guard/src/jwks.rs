//! Remote issuer keys (RFC 7517 JWK sets; RFC 8414 §3 / OpenID Connect Discovery for the
//! `jwks_uri`), for the protected resource role (MCP authorization §2(b): "`kid` resolved in the
//! issuer's JWKS, cached; an unknown `kid` refetches at most once per interval").
//!
//! One [`RemoteKeys`] per remote issuer. Readers take a snapshot (an `Arc<Verifier>`) under a
//! short std lock. Fetches are single-flight behind a per-issuer async mutex: a request with an
//! unknown `kid` waits for the fetch in flight instead of starting its own, a request whose key
//! is known but whose set is stale never waits (it uses the stale set while one request
//! refreshes), and no fetch starts sooner than `refetch_secs` after the previous attempt,
//! successful or not. When a fetch fails the previous keys stay in use. The fetch runs in its
//! own task, so a request that is cancelled (client gone) never aborts a fetch half-way.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use mcpgate_jose::Verifier;
use mcpgate_net::SafeFetcher;
use mcpgate_types::metadata::well_known_insert;

#[derive(Clone)]
struct Snapshot {
    verifier: Option<Arc<Verifier>>,
    /// The `jwks_uri` found by discovery (kept until a fetch from it fails).
    discovered_uri: Option<Arc<str>>,
    /// When the key set should be refreshed.
    stale_at: i64,
    /// Start of the latest fetch attempt.
    last_attempt: i64,
    /// Number of fetch attempts so far.
    attempts: u64,
}

/// The cached key set of one remote issuer.
pub(crate) struct RemoteKeys {
    issuer: String,
    configured_uri: Option<String>,
    fetcher: SafeFetcher,
    refetch_secs: i64,
    max_age_secs: i64,
    state: RwLock<Snapshot>,
    refresh: Arc<tokio::sync::Mutex<()>>,
    fetches: AtomicU64,
}

impl RemoteKeys {
    pub(crate) fn new(
        issuer: String,
        configured_uri: Option<String>,
        fetcher: SafeFetcher,
        refetch_secs: i64,
        max_age_secs: i64,
    ) -> Self {
        Self {
            issuer,
            configured_uri,
            fetcher,
            refetch_secs,
            max_age_secs,
            state: RwLock::new(Snapshot {
                verifier: None,
                discovered_uri: None,
                stale_at: i64::MIN,
                last_attempt: i64::MIN,
                attempts: 0,
            }),
            refresh: Arc::new(tokio::sync::Mutex::new(())),
            fetches: AtomicU64::new(0),
        }
    }

    fn snapshot(&self) -> Snapshot {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn recently_attempted(&self, snap: &Snapshot, now: i64) -> bool {
        now < snap.last_attempt.saturating_add(self.refetch_secs)
    }

    /// HTTP requests made so far (discovery and JWKS).
    pub(crate) fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// The keys to verify a token signed with `kid`, fetching when the set is missing, stale,
    /// or lacks `kid` (subject to the refetch interval). `None` when no key set was ever
    /// fetched successfully. The set returned may still lack `kid`.
    pub(crate) async fn keys_for(self: &Arc<Self>, kid: &str, now: i64) -> Option<Arc<Verifier>> {
        let snap = self.snapshot();
        let known = snap.verifier.as_ref().is_some_and(|v| v.contains(kid));
        if known && (now < snap.stale_at || self.recently_attempted(&snap, now)) {
            return snap.verifier;
        }
        let guard = match self.refresh.clone().try_lock_owned() {
            Ok(guard) => guard,
            // Someone is refreshing; the stale set still has this key.
            Err(_) if known => return snap.verifier,
            // Someone is fetching; wait for that fetch rather than starting another.
            Err(_) => self.refresh.clone().lock_owned().await,
        };
        let current = self.snapshot();
        if current.attempts != snap.attempts || self.recently_attempted(&current, now) {
            return current.verifier;
        }
        self.spawn_fetch(guard, now).await;
        self.snapshot().verifier
    }

    /// Fetches now, whatever the interval (start-up warm-up). Returns whether keys are held.
    pub(crate) async fn prefetch(self: &Arc<Self>, now: i64) -> bool {
        let guard = self.refresh.clone().lock_owned().await;
        self.spawn_fetch(guard, now).await;
        self.snapshot().verifier.is_some()
    }

    /// Runs one fetch in its own task, holding `guard` until it ends, and waits for it.
    async fn spawn_fetch(self: &Arc<Self>, guard: tokio::sync::OwnedMutexGuard<()>, now: i64) {
        let this = Arc::clone(self);
        let task = tokio::spawn(async move {
            this.fetch(now).await;
            drop(guard);
        });
        if task.await.is_err() {
            tracing::error!(issuer = %self.issuer, "JWKS fetch task failed");
        }
    }

    /// One fetch attempt; the caller holds `self.refresh`.
    async fn fetch(&self, now: i64) {
        let discovered = {
            let mut s = self
                .state
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            s.last_attempt = now;
            s.attempts += 1;
            s.discovered_uri.clone()
        };
        let (uri, from_discovery) = match (&self.configured_uri, discovered) {
            (Some(uri), _) => (Arc::<str>::from(uri.as_str()), false),
            (None, Some(uri)) => (uri, true),
            (None, None) => match self.discover().await {
                Ok(uri) => (Arc::<str>::from(uri), true),
                Err(why) => {
                    tracing::warn!(issuer = %self.issuer, why, "JWKS discovery failed");
                    return;
                }
            },
        };
        match self.fetch_jwks(&uri).await {
            Ok((verifier, max_age)) => {
                let ttl = max_age.map_or(self.max_age_secs, |secs| {
                    i64::try_from(secs)
                        .unwrap_or(i64::MAX)
                        .clamp(self.refetch_secs, self.max_age_secs)
                });
                tracing::debug!(issuer = %self.issuer, keys = verifier.len(), "JWKS fetched");
                let mut s = self
                    .state
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                s.verifier = Some(Arc::new(verifier));
                s.stale_at = now.saturating_add(ttl);
                s.discovered_uri = from_discovery.then_some(uri);
            }
            Err(why) => {
                tracing::warn!(issuer = %self.issuer, why, "JWKS fetch failed; keeping the previous keys");
                if from_discovery {
                    self.state
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .discovered_uri = None;
                }
            }
        }
    }

    async fn fetch_jwks(&self, uri: &str) -> Result<(Verifier, Option<u64>), &'static str> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let response = self.fetcher.get(uri).await.map_err(|_| "request failed")?;
        if !response.is_success() {
            return Err("non-success status");
        }
        let doc: serde_json::Value = response.json().map_err(|_| "not JSON")?;
        let verifier = Verifier::from_jwks_json(&doc).map_err(|_| "not a JWK set")?;
        Ok((verifier, response.cache_max_age()))
    }

    /// The issuer's `jwks_uri` from its RFC 8414 metadata (path-inserted well-known URL), else
    /// from OpenID Connect discovery (path-inserted, then appended). A document whose `issuer`
    /// is not byte-for-byte the configured issuer is not used (RFC 8414 §3.3).
    async fn discover(&self) -> Result<String, &'static str> {
        let mut candidates = Vec::with_capacity(3);
        candidates.extend(well_known_insert(
            &self.issuer,
            "oauth-authorization-server",
        ));
        candidates.extend(well_known_insert(&self.issuer, "openid-configuration"));
        let appended = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        if !candidates.contains(&appended) {
            candidates.push(appended);
        }
        let mut why = "no metadata document found";
        for url in &candidates {
            self.fetches.fetch_add(1, Ordering::Relaxed);
            let Ok(response) = self.fetcher.get(url).await else {
                continue;
            };
            if !response.is_success() {
                continue;
            }
            let Ok(doc) = response.json::<serde_json::Value>() else {
                continue;
            };
            if doc.get("issuer").and_then(|v| v.as_str()) != Some(self.issuer.as_str()) {
                why = "metadata issuer does not match the configured issuer";
                continue;
            }
            match doc.get("jwks_uri").and_then(|v| v.as_str()) {
                Some(uri) if !uri.is_empty() => return Ok(uri.to_owned()),
                _ => why = "metadata has no jwks_uri",
            }
        }
        Err(why)
    }
}
