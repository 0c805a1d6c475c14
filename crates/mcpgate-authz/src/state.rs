//! The authorization server's shared state and its construction.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use mcpgate_jose::{Clock, MasterKey, Rng};
use mcpgate_net::SafeFetcher;
use mcpgate_store::fleet::{Housekeeper, Replica};
use mcpgate_store::rates::{Limiter, Rate};
use mcpgate_store::{DynStore, RevokeAt};

use crate::error::ApiError;
use crate::keyring::{KeyDeps, KeyRing};
use crate::settings::AuthzSettings;

/// What the server is built from.
pub struct Deps {
    pub store: DynStore,
    pub master_key: Arc<MasterKey>,
    pub clock: Arc<dyn Clock>,
    pub rng: Arc<dyn Rng>,
    /// Fetcher for Client ID Metadata Documents (SSRF guarded).
    pub fetcher: SafeFetcher,
    /// This process as a replica of a fleet sharing the store (PostgreSQL):
    /// login and registration limits hold across the fleet, and
    /// housekeeping runs on one replica at a time. `None`: this process is
    /// the only one (limits in memory, every round runs here).
    pub replica: Option<Replica>,
    /// Each user's upstream credentials (`user_oauth` upstreams of the
    /// gateway): the connect and connected-accounts pages are served here,
    /// where users sign in.
    pub vault: Option<mcpgate_vault::Vault>,
}

/// Brute-force and flood limits. Those keyed by account and client
/// address are fleet-wide when the store is shared (an attacker spreading
/// attempts over N replicas gets the figure, not N times it); the outbound
/// metadata-document fetch limits protect other hosts and stay per process.
pub(crate) struct Limiters {
    pub login_account: Limiter,
    pub login_ip: Limiter,
    pub register_ip: Limiter,
    /// Outbound document fetches (client metadata documents, client key
    /// sets), per host and in all.
    pub cimd_host: DefaultKeyedRateLimiter<String>,
    pub cimd_all: governor::DefaultDirectRateLimiter,
}

impl Limiters {
    /// Whether one more outbound document fetch from `host` fits both the
    /// per-host and the overall limit (the one rule for every fetch a
    /// client can make this server do).
    pub(crate) fn may_fetch_from(&self, host: &String) -> bool {
        self.cimd_host.check_key(host).is_ok() && self.cimd_all.check().is_ok()
    }
}

/// The shared state behind [`AppState`].
pub struct Inner {
    pub(crate) settings: AuthzSettings,
    pub(crate) store: DynStore,
    pub(crate) master_key: Arc<MasterKey>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) rng: Arc<dyn Rng>,
    pub(crate) fetcher: SafeFetcher,
    pub(crate) keys: KeyRing,
    pub(crate) limiters: Limiters,
    /// Password hashes run a few at a time (`login.max_concurrent_hashes`).
    pub(crate) hashing: crate::password::Gate,
    /// HMAC key for CSRF tokens, derived from the master key.
    pub(crate) csrf_key: aws_lc_rs::hmac::Key,
    /// Discovered upstream identity providers.
    pub(crate) idp_cache: crate::idp::Cache,
    /// Public keys of `private_key_jwt` clients fetched from their `jwks_uri`.
    pub(crate) client_jwks: crate::client_assertion::JwksCache,
    /// DPoP nonces of the token endpoint, derived from the master key so
    /// that every replica accepts every replica's.
    pub(crate) dpop_nonces: mcpgate_jose::dpop::NonceKey,
    pub(crate) replica: Option<Replica>,
    pub(crate) vault: Option<mcpgate_vault::Vault>,
}

/// Cheap to clone; what every handler receives.
#[derive(Clone)]
pub struct AppState(pub(crate) Arc<Inner>);

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

fn per_window(n: u32, window_secs: u64) -> Quota {
    let n = NonZeroU32::new(n.max(1)).expect("max(1) is non-zero");
    let period = Duration::from_secs(window_secs.max(1)) / n.get();
    Quota::with_period(period.max(Duration::from_millis(1)))
        .expect("period is non-zero")
        .allow_burst(n)
}

impl AppState {
    pub async fn new(settings: AuthzSettings, deps: Deps) -> Result<Self, ApiError> {
        let keys = KeyRing::load(
            &KeyDeps {
                store: &deps.store,
                master: &deps.master_key,
                rng: deps.rng.as_ref(),
                clock: deps.clock.as_ref(),
            },
            settings.signing_alg,
            settings.key_grace_secs,
        )
        .await?;
        let csrf_key = aws_lc_rs::hmac::Key::new(
            aws_lc_rs::hmac::HMAC_SHA256,
            &deps.master_key.derive_subkey("mcpgate/csrf/v1"),
        );
        let limit = |name: &str, per_window: u32, window_secs: u64| {
            let rate = Rate {
                per_window,
                window: Duration::from_secs(window_secs.max(1)),
            };
            match &deps.replica {
                Some(r) => r.limiter(name, rate),
                None => Limiter::local(rate),
            }
        };
        let limiters = Limiters {
            login_account: limit(
                "login-account",
                settings.login.per_account,
                settings.login.window_secs,
            ),
            login_ip: limit(
                "login-ip",
                settings.login.per_ip,
                settings.login.window_secs,
            ),
            register_ip: limit("register-ip", settings.dcr.per_ip_per_hour, 3600),
            cimd_host: RateLimiter::keyed(per_window(
                settings.cimd.fetches_per_host_per_minute,
                60,
            )),
            cimd_all: RateLimiter::direct(per_window(settings.cimd.fetches_per_minute, 60)),
        };
        let dpop_nonces = mcpgate_jose::dpop::NonceKey::derive(
            &deps.master_key.derive_subkey("mcpgate/dpop-nonce/v1"),
            "token-endpoint",
        );
        let hashing = crate::password::Gate::new(
            settings.login.max_concurrent_hashes,
            crate::password::GATE_WAIT,
        );
        Ok(Self(Arc::new(Inner {
            hashing,
            settings,
            store: deps.store,
            master_key: deps.master_key,
            clock: deps.clock,
            rng: deps.rng,
            fetcher: deps.fetcher,
            keys,
            limiters,
            csrf_key,
            idp_cache: Default::default(),
            client_jwks: Default::default(),
            dpop_nonces,
            replica: deps.replica,
            vault: deps.vault,
        })))
    }

    pub fn settings(&self) -> &AuthzSettings {
        &self.settings
    }

    pub fn store(&self) -> &DynStore {
        &self.store
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Spends `what` (its hash is stored until `until`): `true` the first time, `false` for
    /// every later use, on every replica (one conditional `INSERT` decides). What makes a
    /// consent form, a client assertion, a JWT-bearer assertion or a DPoP proof single-use.
    pub(crate) async fn spend_once(
        &self,
        what: &str,
        until: i64,
    ) -> Result<bool, mcpgate_store::StoreError> {
        match self
            .store
            .spend_form(&mcpgate_types::secret::hash_secret(what), until)
            .await
        {
            Ok(()) => Ok(true),
            Err(mcpgate_store::StoreError::Conflict(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// A revocation now, its entries kept as long as a token can live.
    pub(crate) fn revoke_at(&self, now: i64) -> RevokeAt {
        RevokeAt {
            now,
            until: now + self.settings.revocation_ttl(),
        }
    }

    pub(crate) fn key_deps(&self) -> KeyDeps<'_> {
        KeyDeps {
            store: &self.store,
            master: &self.master_key,
            rng: self.rng.as_ref(),
            clock: self.clock.as_ref(),
        }
    }

    /// Re-reads signing keys from the store.
    pub async fn reload_keys(&self) -> Result<(), ApiError> {
        self.keys
            .reload(
                &self.key_deps(),
                self.settings.signing_alg,
                self.settings.key_grace_secs,
            )
            .await
    }

    /// The verifier for tokens this server signed (active and previous keys),
    /// for in-process resource servers such as the gateway.
    pub fn current_verifier(&self) -> Arc<mcpgate_jose::Verifier> {
        self.keys.current().verifier.clone()
    }

    /// The current public JWKS.
    pub fn jwks(&self) -> mcpgate_jose::PublicJwks {
        self.keys.current().jwks.clone()
    }

    /// The client's IP for per-IP limits (see [`mcpgate_net::forwarded::client_ip`]).
    pub(crate) fn client_ip(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> IpAddr {
        mcpgate_net::forwarded::client_ip(&self.settings.trusted_proxies, peer, headers)
    }

    /// Periodic maintenance, every minute until aborted: forget idle
    /// rate-limit keys (so a flood of distinct usernames or IPs cannot grow
    /// memory without bound), pick up signing keys rotated elsewhere (a
    /// fallback: [`follow_changes`](Self::follow_changes) sees a rotation
    /// within a second), and run a [`housekeeping_round`](Self::housekeeping_round)
    /// if this replica holds the housekeeping lock.
    pub fn spawn_maintenance(&self) -> tokio::task::JoinHandle<()> {
        let app = self.clone();
        tokio::spawn(async move {
            let mut housekeeper = app.housekeeper();
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            tick.tick().await;
            loop {
                tick.tick().await;
                app.limiters.login_account.shrink();
                app.limiters.login_ip.shrink();
                app.limiters.register_ip.shrink();
                app.limiters.cimd_host.retain_recent();
                app.limiters.cimd_host.shrink_to_fit();
                app.housekeeping_round(&mut housekeeper).await;
                if let Err(e) = app.reload_keys().await {
                    tracing::warn!(error = %e, "reloading signing keys failed; keeping the current ones");
                }
            }
        })
    }

    /// The lock that makes this process the one doing housekeeping: the
    /// fleet's (PostgreSQL advisory lock), or always held when alone.
    pub fn housekeeper(&self) -> Housekeeper {
        Housekeeper::of(self.replica.as_ref(), "authz")
    }

    /// One round of housekeeping, if `housekeeper` lets this process run it
    /// (returns whether it ran): delete expired authorization codes, login
    /// sessions, spent forms, upstream sign-ins, revocation entries and
    /// refresh families, unused client metadata documents whose cache
    /// expired, and fleet rate-limit buckets idle for their longest window.
    pub async fn housekeeping_round(&self, housekeeper: &mut Housekeeper) -> bool {
        if !housekeeper.acquire().await {
            return false;
        }
        let now = self.now();
        if let Err(e) = self.store.purge_codes(now).await {
            tracing::warn!(error = %e, "purging expired codes failed");
        }
        if let Err(e) = self.store.purge_sessions(now).await {
            tracing::warn!(error = %e, "purging expired sessions failed");
        }
        if let Err(e) = self.store.purge_revocations(now).await {
            tracing::warn!(error = %e, "purging expired revocation entries failed");
        }
        if let Err(e) = self.store.purge_spent_forms(now).await {
            tracing::warn!(error = %e, "purging spent consent forms failed");
        }
        if let Err(e) = self.store.purge_upstream_states(now).await {
            tracing::warn!(error = %e, "purging expired upstream sign-ins failed");
        }
        if let Err(e) = self.store.purge_families(now).await {
            tracing::warn!(error = %e, "purging expired refresh families failed");
        }
        if let Err(e) = self.store.purge_unused_metadata_clients(now).await {
            tracing::warn!(error = %e, "purging unused client metadata documents failed");
        }
        if self.replica.is_some() {
            // A bucket idle for its window is full, which is what a missing
            // one is. The longest window in use: login's, DCR's hour, or the
            // gateway's minute.
            let idle = self.settings.login.window_secs.max(3600) as f64;
            if let Err(e) = self.store.purge_rate_limits(idle).await {
                tracing::warn!(error = %e, "purging idle rate-limit buckets failed");
            }
        }
        true
    }

    /// Reloads the signing keys whenever the store's change revision moves
    /// (`changes`: [`mcpgate_store::RevocationWatch::subscribe`], which
    /// follows PostgreSQL notices and polls every 250 ms), so a rotation by
    /// `mcpgate keys rotate` or another replica reaches this process's JWKS
    /// and the verifiers of its gateway within a second. A revision that
    /// moved for another reason (a revocation) costs one key listing.
    /// Runs until the watch is dropped or the task aborted.
    pub fn follow_changes(
        &self,
        mut changes: tokio::sync::watch::Receiver<i64>,
    ) -> tokio::task::JoinHandle<()> {
        let app = self.clone();
        tokio::spawn(async move {
            changes.borrow_and_update();
            while changes.changed().await.is_ok() {
                let refreshed = app
                    .keys
                    .refresh(
                        &app.key_deps(),
                        app.settings.signing_alg,
                        app.settings.key_grace_secs,
                    )
                    .await;
                match refreshed {
                    Ok(true) => tracing::info!("signing keys changed in the store; reloaded"),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "reloading signing keys failed; keeping the current ones")
                    }
                }
            }
        })
    }

    pub(crate) fn random(&self, bytes: usize) -> String {
        mcpgate_jose::random_token(self.rng.as_ref(), bytes)
    }
}
