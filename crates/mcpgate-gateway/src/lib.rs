//! mcpgate's MCP gateway (the protected-resource role, MCP authorization
//! checklist §2(b), §2(e), §2(f)): each configured upstream MCP server —
//! a stdio child or a Streamable HTTP server — becomes its own protected
//! resource at `{public_url}/mcp/{name}` with its own RFC 9728 metadata and
//! token audience.
//!
//! Every request is authenticated ([`mcpgate_guard::Authenticate`]; sessions
//! are never authentication), checked for `Origin`/`Host`, rate limited,
//! decided by per-tool, per-prompt and per-resource policy (403 step-up
//! challenges, filtered listings), audited, and forwarded without the client's credentials.
//! See `docs/architecture.md` ("Gateway request path").

pub mod audit;
pub mod capacity;
pub mod config;
pub mod fleet;
pub mod jsonrpc;
pub(crate) mod log_budget;
mod mcp;
pub mod metrics;
pub mod origin;
pub mod outbound;
pub mod policy;
pub mod ratelimit;
pub mod refusal;
pub mod relay;
pub mod resume;
pub mod revocation;
pub mod session;
pub mod sse;
pub(crate) mod transport;
pub mod upstream;
pub mod uri;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use mcpgate_guard::{Authenticate, Guard, GuardConfig, LocalKeys, TrustedIssuer};
use mcpgate_jose::{Clock, Rng};
use mcpgate_store::AuditStore;
use tokio_util::sync::CancellationToken;

pub use config::{GatewaySettings, UpstreamConfig};

use crate::audit::Audit;
use crate::origin::OriginPolicy;
use crate::ratelimit::Limits;
use crate::session::{Children, Sessions};

/// The scopes a principal could never be granted: the embedded
/// authorization server's `grantable_to` rules. Asked before a step-up
/// challenge, so a user who can never hold a scope gets a plain 403
/// ([`refusal::Refusal::NotEntitled`]) instead of an authorization loop.
#[async_trait::async_trait]
pub trait Entitlements: Send + Sync {
    /// Of `scopes`, those `p` may not be granted for `resource`; empty when
    /// unknown (another issuer's token).
    async fn withheld(
        &self,
        p: &mcpgate_guard::Principal,
        resource: &str,
        scopes: &mcpgate_types::ScopeSet,
    ) -> mcpgate_types::ScopeSet;
}

/// Who may read `/metrics` on an operations router.
pub enum MetricsAccess {
    /// Not served.
    Hidden,
    /// Anyone who reaches the listener (a loopback or private one).
    Open,
    /// Only with `Authorization: Bearer <this>`.
    Bearer(mcpgate_types::Secret),
}

/// What the gateway is built from besides its settings.
pub struct GatewayDeps {
    /// One authenticator per upstream name (each upstream is its own audience).
    pub authenticators: HashMap<String, Arc<dyn Authenticate>>,
    /// `authorization_servers` of every PRM document.
    pub authorization_servers: Vec<String>,
    pub audit_store: Option<Arc<dyn AuditStore>>,
    pub rng: Arc<dyn Rng>,
    /// Wall-clock time: audit records and retention.
    pub clock: Arc<dyn Clock>,
    /// The embedded authorization server's entitlements, if there is one.
    pub entitlements: Option<Arc<dyn Entitlements>>,
    /// The key that binds upstream `requestState` handles to the user they
    /// were issued to. Replicas that share a database must share it (mcpgate
    /// derives it from the master key); `None` draws one per process.
    pub request_state_key: Option<[u8; 32]>,
    /// The session store shared by the replicas of one database
    /// ([`fleet`]); `None` keeps sessions in this process only.
    pub shared_sessions: Option<fleet::SharedStore>,
    /// This process as a replica of a fleet sharing a PostgreSQL store:
    /// rate limits hold across the fleet and the audit purge runs on one
    /// replica at a time. `None`: limits in memory, every purge runs here.
    pub replica: Option<mcpgate_store::fleet::Replica>,
    /// Each user's upstream credentials (`user_oauth` upstreams), when
    /// mcpgate's own authorization server runs beside the gateway.
    pub vault: Option<mcpgate_vault::Vault>,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("upstream {0}: no authenticator configured")]
    NoAuthenticator(String),
    #[error("upstream {0}: {1}")]
    Upstream(String, String),
    #[error("audit: {0}")]
    Audit(String),
}

/// One upstream, ready to serve.
pub(crate) struct Upstream {
    pub cfg: UpstreamConfig,
    pub auth: Arc<dyn Authenticate>,
    pub prm_url: String,
    pub transport: Arc<dyn transport::Transport>,
    pub limits: Limits,
    pub origin: OriginPolicy,
    pub metrics: crate::metrics::RequestMetrics,
}

pub(crate) struct Inner {
    pub settings: GatewaySettings,
    pub upstreams: HashMap<String, Arc<Upstream>>,
    pub sessions: Sessions,
    /// The shared session store, when replicas share one.
    pub shared: Option<Arc<fleet::SharedSessions>>,
    pub children: Children,
    pub capacity: capacity::Capacity,
    pub audit: Audit,
    pub authorization_servers: Vec<String>,
    pub request_ids: audit::RequestIds,
    pub states: Arc<outbound::RequestStates>,
    pub clock: Arc<dyn Clock>,
    pub entitlements: Option<Arc<dyn Entitlements>>,
    pub stop: CancellationToken,
    /// Set when the process was asked to stop: `/readyz` answers 503 while
    /// requests are still served.
    pub draining: std::sync::atomic::AtomicBool,
    pub replica: Option<mcpgate_store::fleet::Replica>,
    /// The audit purge's housekeeping lock ([`AUDIT_TASK`]), taken on first use.
    pub purge_lock: HousekeepingLock,
    /// The purge of idle shared sessions' housekeeping lock ([`SESSIONS_TASK`]),
    /// taken on first use.
    pub sweep_lock: HousekeepingLock,
    /// Warnings that the store did not answer: during an outage every
    /// request and sweep would log one, so they share a budget.
    pub store_warnings: log_budget::SharedLogBudget,
}

/// One kind of housekeeping round's lock: `None` until first asked for, and
/// again once the gateway has stopped (dropping it releases the lock).
pub(crate) type HousekeepingLock = tokio::sync::Mutex<Option<mcpgate_store::fleet::Housekeeper>>;

/// The housekeeping lock of the audit purge (one replica at a time).
pub const AUDIT_TASK: &str = "gateway-audit";
/// The housekeeping lock of the purge of sessions idle fleet-wide.
pub const SESSIONS_TASK: &str = "gateway";

/// The gateway. Cheap to clone.
#[derive(Clone)]
pub struct Gateway(pub(crate) Arc<Inner>);

/// The authenticator of `authentication = "none"`: every request, with or
/// without credentials, is the fixed anonymous principal
/// ([`config::ANONYMOUS_ISSUER`], [`config::ANONYMOUS_SUBJECT`], no scopes, no
/// groups). Sessions are still minted and bound to it; audit records name it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Anonymous;

#[async_trait::async_trait]
impl Authenticate for Anonymous {
    async fn authenticate(
        &self,
        _request: &http::request::Parts,
    ) -> Result<mcpgate_guard::Principal, mcpgate_guard::Challenge> {
        Ok(anonymous_principal())
    }
}

/// The principal of every request under `authentication = "none"`.
pub fn anonymous_principal() -> mcpgate_guard::Principal {
    mcpgate_guard::Principal {
        issuer: config::ANONYMOUS_ISSUER.to_string(),
        subject: config::ANONYMOUS_SUBJECT.to_string(),
        client_id: config::ANONYMOUS_SUBJECT.to_string(),
        scopes: mcpgate_types::ScopeSet::new(),
        groups: Vec::new(),
        expires_at: i64::MAX,
        dpop_jkt: None,
    }
}

/// The RFC 9728 metadata URL of a resource (path insertion).
pub fn prm_url(resource: &str) -> String {
    mcpgate_guard::prm_url(resource)
        .unwrap_or_else(|| format!("{resource}/.well-known/oauth-protected-resource"))
}

/// One guard per upstream, trusting mcpgate's own AS (`issuer`, with its
/// in-process keys, and its revocation set when `revocations` is given: see
/// [`revocation`]) and every `[[gateway.trusted_issuer]]` (keys fetched
/// through the SSRF guard; opaque tokens introspected where configured).
/// `dpop_nonce_secret` is the secret every replica derives DPoP nonces from,
/// used when `gateway.dpop_require_nonce` is set.
pub fn guards(
    settings: &GatewaySettings,
    issuer: &str,
    keys: Arc<dyn LocalKeys>,
    revocations: Option<Arc<dyn mcpgate_guard::Revocations>>,
    clock: Arc<dyn Clock>,
    dpop_nonce_secret: [u8; 32],
) -> Result<HashMap<String, Arc<dyn Authenticate>>, GatewayError> {
    let mut out: HashMap<String, Arc<dyn Authenticate>> = HashMap::new();
    let mut own = TrustedIssuer::local(issuer, keys);
    if let Some(r) = revocations {
        own = own.with_revocations(r);
    }
    for u in &settings.upstreams {
        let mut cfg = GuardConfig::new(u.resource.clone(), prm_url(&u.resource))
            .with_baseline(u.scopes.clone())
            .with_issuer(own.clone())
            .with_clock(clock.clone());
        if settings.dpop_require_nonce {
            cfg = cfg.with_dpop_nonces(dpop_nonce_secret);
        }
        for t in &settings.trusted_issuers {
            let policy = mcpgate_net::policy::FetchPolicy {
                allow_http_loopback: t.allow_http_loopback,
                ..Default::default()
            };
            let fetcher = mcpgate_net::SafeFetcher::new(policy);
            let mut ti =
                TrustedIssuer::remote(t.issuer.clone(), t.jwks_uri.clone(), fetcher.clone())
                    .with_typ(t.typ.clone());
            if let Some((endpoint, client_id, client_secret)) = &t.introspection {
                ti = ti.with_introspection(mcpgate_guard::Introspection {
                    endpoint: endpoint.clone(),
                    client_id: client_id.clone(),
                    client_secret: client_secret.clone(),
                    cache_secs: 30,
                    fetcher,
                });
            }
            cfg = cfg.with_issuer(ti);
        }
        let g =
            Guard::new(cfg).map_err(|e| GatewayError::Upstream(u.name.clone(), e.to_string()))?;
        out.insert(u.name.clone(), Arc::new(g));
    }
    Ok(out)
}

/// The issuers every PRM document lists: mcpgate's own first (unless
/// `gateway.advertise_own_issuer = false`), then the trusted issuers.
pub fn authorization_servers(settings: &GatewaySettings, issuer: &str) -> Vec<String> {
    settings
        .advertise_own_issuer
        .then(|| issuer.to_string())
        .into_iter()
        .chain(settings.trusted_issuers.iter().map(|t| t.issuer.clone()))
        .collect()
}

impl Gateway {
    /// Builds the gateway and starts its housekeeping task (idle sessions,
    /// idle per-user children, rate-limiter memory, audit rows past
    /// `retain_days`). Call from a tokio runtime.
    pub fn new(settings: GatewaySettings, deps: GatewayDeps) -> Result<Self, GatewayError> {
        // Children and other processes of this uid must not read our memory.
        if let Err(e) = mcpgate_sandbox::protect_self() {
            tracing::warn!(error = %e, "could not make the gateway non-dumpable");
        }
        let support = mcpgate_sandbox::Support::detect();
        let mut upstreams = HashMap::new();
        let no_auth = settings.authentication == config::Authentication::None;
        for u in &settings.upstreams {
            // `authentication = "none"` (validated: loopback only) ignores any
            // authenticator it is given: every request is the anonymous principal.
            let auth = if no_auth {
                Arc::new(Anonymous) as Arc<dyn Authenticate>
            } else {
                deps.authenticators
                    .get(&u.name)
                    .cloned()
                    .ok_or_else(|| GatewayError::NoAuthenticator(u.name.clone()))?
            };
            let transport = transport::build(u, &settings, deps.vault.as_ref(), support)
                .map_err(|e| GatewayError::Upstream(u.name.clone(), e))?;
            let mut origins = settings.allowed_origins.clone();
            origins.extend(u.allowed_origins.iter().cloned());
            upstreams.insert(
                u.name.clone(),
                Arc::new(Upstream {
                    cfg: u.clone(),
                    auth,
                    prm_url: prm_url(&u.resource),
                    transport,
                    limits: Limits::new(u.rate_limit, &u.name, deps.replica.as_ref()),
                    origin: OriginPolicy::new(
                        &settings.public_url,
                        &origins,
                        settings.loopback_listener,
                    ),
                    metrics: crate::metrics::RequestMetrics::new(&u.name),
                }),
            );
        }
        let audit = Audit::start(&settings.audit, deps.audit_store)
            .map_err(|e| GatewayError::Audit(e.to_string()))?;
        let state_key = deps.request_state_key.unwrap_or_else(|| {
            let mut k = [0u8; 32];
            deps.rng.fill(&mut k);
            k
        });
        let shared = deps.shared_sessions.map(|store| {
            Arc::new(fleet::SharedSessions::new(
                store,
                deps.clock.clone(),
                deps.rng.clone(),
                settings.session_idle,
            ))
        });
        // With a shared store, the per-user cap is the fleet's (applied there).
        let local_cap = shared.is_none().then_some(settings.max_sessions_per_user);
        let inner = Arc::new(Inner {
            states: Arc::new(outbound::RequestStates::new(state_key, deps.rng.clone())),
            sessions: Sessions::new(settings.session_idle, local_cap, deps.rng.clone()),
            shared,
            children: Children::default(),
            capacity: capacity::Capacity::new(settings.limits),
            audit,
            authorization_servers: deps.authorization_servers,
            request_ids: audit::RequestIds::new(deps.rng.as_ref()),
            clock: deps.clock,
            entitlements: deps.entitlements,
            stop: CancellationToken::new(),
            draining: std::sync::atomic::AtomicBool::new(false),
            replica: deps.replica,
            purge_lock: tokio::sync::Mutex::new(None),
            sweep_lock: tokio::sync::Mutex::new(None),
            store_warnings: log_budget::store_warnings(),
            upstreams,
            settings,
        });
        let gw = Self(inner);
        tokio::spawn(housekeeping(Arc::downgrade(&gw.0), gw.0.stop.clone()));
        if gw.0.shared.is_some() {
            tokio::spawn(fleet_sweep(Arc::downgrade(&gw.0), gw.0.stop.clone()));
        }
        let _ = crate::metrics::handle();
        Ok(gw)
    }

    pub fn settings(&self) -> &GatewaySettings {
        &self.0.settings
    }

    /// The MCP endpoints and their metadata: `{base}/mcp/{name}` (POST, GET,
    /// DELETE) and `/.well-known/oauth-protected-resource{base}/mcp/{name}`,
    /// where `{base}` is the public URL's path.
    pub fn router(&self) -> Router {
        let base = url::Url::parse(&self.0.settings.public_url)
            .map(|u| u.path().trim_end_matches('/').to_string())
            .unwrap_or_default();
        let router = Router::new().route(
            &format!("{base}/mcp/{{name}}"),
            get(mcp::get).post(mcp::post).delete(mcp::delete),
        );
        // Without authentication there is no protected resource to describe.
        let router = if self.0.settings.authentication == config::Authentication::None {
            router
        } else {
            router.route(
                &format!("/.well-known/oauth-protected-resource{base}/mcp/{{name}}"),
                get(mcp::prm),
            )
        };
        router.with_state(self.clone())
    }

    /// `/healthz` (the process runs), `/readyz` (the gateway accepts
    /// requests) and, as `metrics` says, `/metrics` (Prometheus text).
    pub fn ops_router(&self, metrics: MetricsAccess) -> Router {
        let gw = self.clone();
        let router = Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route(
                "/readyz",
                get(move || {
                    let gw = gw.clone();
                    async move {
                        if gw.0.stop.is_cancelled()
                            || gw.0.draining.load(std::sync::atomic::Ordering::Relaxed)
                        {
                            (http::StatusCode::SERVICE_UNAVAILABLE, "stopping")
                        } else {
                            (http::StatusCode::OK, "ready")
                        }
                    }
                }),
            );
        let token = match metrics {
            MetricsAccess::Hidden => return router,
            MetricsAccess::Open => None,
            MetricsAccess::Bearer(t) => Some(Arc::new(t)),
        };
        router.route(
            "/metrics",
            get(move |headers: http::HeaderMap| {
                let token = token.clone();
                async move {
                    use axum::response::IntoResponse;
                    if let Some(t) = token {
                        // The guard's one reading of a bearer credential.
                        let given = mcpgate_guard::bearer::extract(&headers, None).unwrap_or("");
                        if !t.ct_eq(given.as_bytes()) {
                            return (
                                http::StatusCode::UNAUTHORIZED,
                                [(http::header::WWW_AUTHENTICATE, "Bearer")],
                            )
                                .into_response();
                        }
                    }
                    (
                        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                        crate::metrics::render(),
                    )
                        .into_response()
                }
            }),
        )
    }

    /// Purges audit rows older than `[gateway.audit] retain_days` from the
    /// store now (the housekeeping task does it at start and hourly).
    /// Returns how many were deleted; `None` when retention is off, there is
    /// no store sink, or the store failed.
    pub async fn purge_audit(&self) -> Option<u64> {
        self.0.purge_audit().await
    }

    /// Purges sessions idle fleet-wide from the shared store now and ends
    /// what this replica can of them (the fleet sweep does it every
    /// [`fleet::SWEEP_EVERY`]), if this replica holds the housekeeping lock
    /// of that purge ([`SESSIONS_TASK`]). Returns how many rows it removed;
    /// `None` when another replica holds the lock, there is no shared store,
    /// the gateway has stopped, or the store failed.
    pub async fn purge_idle_sessions(&self) -> Option<usize> {
        self.0.purge_shared_round().await
    }

    /// Live gateway sessions.
    pub fn session_count(&self) -> usize {
        self.0.sessions.len()
    }

    /// Process ids of the stdio children of live sessions and of per-user
    /// and shared children (operations, tests).
    pub fn child_pids(&self) -> Vec<u32> {
        self.0.child_pids()
    }

    /// The process is stopping: `/readyz` answers 503 from now on, so that
    /// load balancers stop sending new work, while requests are still
    /// served until [`shutdown`](Self::shutdown).
    pub fn begin_drain(&self) {
        self.0
            .draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Stops accepting, ends every session (upstream sessions deleted,
    /// children's process groups killed), waits up to `grace` for the
    /// children to exit, then writes the audit records still queued.
    pub async fn shutdown(&self, grace: Duration) {
        self.0.stop.cancel();
        // Another replica takes the housekeeping over at once, rather than
        // when this process exits.
        for lock in [&self.0.sweep_lock, &self.0.purge_lock] {
            lock.lock().await.take();
        }
        let mut children = Vec::new();
        for s in self.0.sessions.take_all() {
            match s.reach {
                // Other replicas carry it on: the upstream's session stays.
                session::Reach::Portable => continue,
                session::Reach::Pinned => self.0.unshare(&s.id_hash).await,
                session::Reach::Local => {}
            }
            if let Some(c) = s.child() {
                children.push(c.clone());
            }
            self.0.end_session(&s);
        }
        children.extend(self.0.children.kill_all());
        let wait = futures_util::future::join_all(children.iter().map(|c| c.exited()));
        if tokio::time::timeout(grace, wait).await.is_err() {
            tracing::warn!("some stdio upstreams did not exit in time");
        }
        // Last: the records of everything above are queued by now.
        self.0.audit.close(grace).await;
    }
}

impl Inner {
    async fn purge_audit(&self) -> Option<u64> {
        let retain = self.settings.audit.retain?;
        let retain_ms = i64::try_from(retain.as_millis()).unwrap_or(i64::MAX);
        let before = self.clock.now_ms().saturating_sub(retain_ms);
        self.audit.purge_before(before).await
    }

    /// The housekeeping round of the audit log: on one replica at a time
    /// (the holder of the [`AUDIT_TASK`] lock), or here when alone.
    async fn purge_audit_round(&self) -> Option<u64> {
        if self.holds(&self.purge_lock, AUDIT_TASK).await {
            self.purge_audit().await
        } else {
            None
        }
    }

    /// The purge of sessions idle fleet-wide: on one replica at a time (the
    /// holder of the [`SESSIONS_TASK`] lock), or here when alone. Each row
    /// it removes is ended here ([`end_evicted`](Self::end_evicted)).
    async fn purge_shared_round(&self) -> Option<usize> {
        let shared = self.shared.as_ref()?;
        if !self.holds(&self.sweep_lock, SESSIONS_TASK).await {
            return None;
        }
        match shared.purge().await {
            Ok(gone) => {
                let n = gone.len();
                self.end_evicted(gone);
                Some(n)
            }
            Err(e) => {
                if let Some(held_back) = self.store_warnings.allow() {
                    tracing::warn!(error = %e, held_back, "purging idle shared sessions failed");
                }
                None
            }
        }
    }

    /// Whether this process may run the next round of `task`: it holds the
    /// fleet's housekeeping lock (taken here on first use), or it is alone.
    /// Never once the gateway has stopped (its locks are released then).
    async fn holds(&self, lock: &HousekeepingLock, task: &str) -> bool {
        let mut lock = lock.lock().await;
        if self.stop.is_cancelled() {
            return false;
        }
        if lock.is_none() {
            *lock = Some(mcpgate_store::fleet::Housekeeper::of(
                self.replica.as_ref(),
                task,
            ));
        }
        match lock.as_mut() {
            Some(h) => h.acquire().await,
            None => false,
        }
    }

    pub(crate) fn child_pids(&self) -> Vec<u32> {
        let mut out: Vec<u32> = Vec::new();
        for s in self.sessions.snapshot() {
            if let Some(c) = s.child()
                && c.is_alive()
                && let Some(pid) = c.pid
            {
                out.push(pid);
            }
        }
        out.extend(self.children.pids());
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Removes a session from this table and from the shared store (the
    /// session is over for the whole fleet); the caller ends it.
    pub(crate) async fn forget_session(&self, id: &str) -> Option<Arc<session::Session>> {
        let s = self.sessions.remove(id)?;
        if s.reach != session::Reach::Local {
            self.unshare(&s.id_hash).await;
        }
        Some(s)
    }

    /// Deletes a session from the shared store, if there is one (a failure
    /// is logged: the row idles out and is purged).
    async fn unshare(&self, id_hash: &str) {
        if let Some(shared) = &self.shared
            && let Err(e) = shared.delete(id_hash).await
            && let Some(held_back) = self.store_warnings.allow()
        {
            tracing::warn!(error = %e, held_back, "deleting a session from the shared store failed");
        }
    }

    /// Ends sessions the shared store removed (evicted by the fleet-wide
    /// cap, or idle fleet-wide): one held here is ended like any other; a
    /// portable one held nowhere is ended from its stored state; a pinned
    /// one of another replica is ended by that replica's sweep.
    pub(crate) fn end_evicted(&self, gone: Vec<mcpgate_store::GatewaySessionRecord>) {
        for rec in gone {
            if let Some(s) = self.sessions.remove_hashed(&rec.id_hash) {
                self.end_session(&s);
            } else if let Some(shared) = &self.shared
                && let Some(up) = self.upstreams.get(&rec.upstream)
                && let Some(state) = shared.state(&rec)
            {
                up.transport.end_exported(&state);
            }
        }
    }

    /// Ends a session that was removed from the table: its transport
    /// deletes the upstream session, or kills its own child (a shared child
    /// only forgets the session).
    pub(crate) fn end_session(&self, s: &session::Session) {
        if let Some(up) = self.upstreams.get(&s.upstream) {
            up.transport.end_session(s);
        }
    }
}

/// How often the housekeeping task purges old audit rows.
const AUDIT_PURGE_EVERY: Duration = Duration::from_secs(3600);

async fn housekeeping(inner: std::sync::Weak<Inner>, stop: CancellationToken) {
    let period = match inner.upgrade() {
        Some(i) => {
            (i.settings.session_idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(5))
        }
        None => return,
    };
    let mut tick = tokio::time::interval(period);
    let mut last_purge: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(i) = inner.upgrade() else { return };
        for s in i.sessions.take_expired() {
            match s.reach {
                // Idle here only: the store decides when it is over.
                session::Reach::Portable => continue,
                session::Reach::Pinned => i.unshare(&s.id_hash).await,
                session::Reach::Local => {}
            }
            tracing::debug!(upstream = %s.upstream, "session ended (idle or upstream gone)");
            i.end_session(&s);
        }
        i.children.reap_idle(i.settings.stateless_child_idle);
        if last_purge.is_none_or(|t| t.elapsed() >= AUDIT_PURGE_EVERY) {
            last_purge = Some(tokio::time::Instant::now());
            let i = i.clone();
            tokio::spawn(async move { i.purge_audit_round().await });
        }
        for u in i.upstreams.values() {
            u.limits.shrink();
        }
        i.capacity.shrink();
    }
}

/// With a shared session store: every [`fleet::SWEEP_EVERY`], ends this
/// replica's pinned sessions that were removed from the store elsewhere
/// (evicted by the fleet-wide cap), and, on the one replica holding the
/// [`SESSIONS_TASK`] lock, purges sessions idle fleet-wide.
async fn fleet_sweep(inner: std::sync::Weak<Inner>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(fleet::SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The sweep failed last time: its next success is logged, once.
    let mut failing = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(i) = inner.upgrade() else { return };
        let Some(shared) = i.shared.clone() else {
            return;
        };
        let asked = std::time::Instant::now();
        match shared.live().await {
            Ok(live) => {
                if std::mem::take(&mut failing) {
                    tracing::info!("the shared session store answers the sweep again");
                }
                for s in i.sessions.snapshot() {
                    // A session made after the question was asked may not
                    // be in the answer.
                    if s.reach == session::Reach::Pinned
                        && s.created() < asked
                        && !live.contains(&s.id_hash)
                        && let Some(s) = i.sessions.remove(&s.id)
                    {
                        tracing::debug!(upstream = %s.upstream, "session removed elsewhere: ended");
                        i.end_session(&s);
                    }
                }
            }
            Err(e) => {
                failing = true;
                if let Some(held_back) = i.store_warnings.allow() {
                    tracing::warn!(error = %e, held_back, "the shared session store did not answer the sweep");
                }
            }
        }
        i.purge_shared_round().await;
    }
}
