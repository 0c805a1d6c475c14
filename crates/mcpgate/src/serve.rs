//! `mcpgate serve`: opens the store, loads keys, builds the router and
//! serves it over plain HTTP (loopback only) or TLS (rustls), with graceful
//! shutdown on SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use mcpgate_authz::{AppState, Deps};
use mcpgate_gateway::MetricsAccess;
use mcpgate_gateway::revocation::StoreRevocations;
use mcpgate_jose::{Clock, MasterKey, Rng, SystemClock, SystemRng};
use mcpgate_net::SafeFetcher;
use mcpgate_net::policy::FetchPolicy;
use mcpgate_store::fleet::Replica;
use mcpgate_store::{DynStore, PostgresStore, SqliteDurability, SqliteStore, StoreError};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::config::{Config, MasterKeySource, StoreConfig, TlsConfig};

/// Everything that shares the config: the store, the master key, time and randomness.
pub struct Runtime {
    pub config: Config,
    pub store: DynStore,
    pub master_key: Arc<MasterKey>,
    pub clock: Arc<dyn Clock>,
    pub rng: Arc<dyn Rng>,
    /// Each user's upstream credentials, when an upstream is `user_oauth`.
    pub vault: Option<mcpgate_vault::Vault>,
}

/// Creates a directory (and parents) with mode 0700.
fn private_dir(path: &Path) -> anyhow::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(path)
        .with_context(|| format!("creating data directory {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn load_master_key(src: &MasterKeySource, rng: &dyn Rng) -> anyhow::Result<MasterKey> {
    match src {
        MasterKeySource::Configured(s) => MasterKey::from_base64(s.expose())
            .context("master_key: expected 32 random bytes, base64 encoded (e.g. `head -c 32 /dev/urandom | base64`)"),
        MasterKeySource::DataDirFile(path) => {
            if path.exists() {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                return MasterKey::from_base64(&text).with_context(|| format!("{} is not a valid master key", path.display()));
            }
            if let Some(dir) = path.parent() {
                private_dir(dir)?;
            }
            let (key, encoded) = MasterKey::generate(rng);
            write_private(path, encoded.as_bytes())?;
            tracing::info!(path = %path.display(), "generated a new master key (mode 0600); back it up with the database");
            Ok(key)
        }
    }
}

/// Writes a new file readable only by its owner; refuses to overwrite.
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

impl Runtime {
    pub async fn open(config: Config) -> anyhow::Result<Self> {
        let rng: Arc<dyn Rng> = Arc::new(SystemRng::new());
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let master_key = Arc::new(load_master_key(&config.master_key, rng.as_ref())?);
        let store: DynStore = match &config.store {
            StoreConfig::Sqlite(path, durability) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    private_dir(dir)?;
                }
                if *durability == SqliteDurability::Normal {
                    tracing::warn!(
                        "store.sqlite_synchronous = \"normal\": commits are not synced to disk; \
                         a power cut can lose the last grants and undo code redemptions"
                    );
                }
                Arc::new(
                    SqliteStore::open_with(path, *durability)
                        .await
                        .map_err(|e| {
                            anyhow::anyhow!("opening SQLite database {}: {e}", path.display())
                        })?,
                )
            }
            StoreConfig::Postgres(url) => {
                Arc::new(PostgresStore::connect(url.expose()).await.map_err(|e| {
                    anyhow::anyhow!("connecting to PostgreSQL: {}", redact_store_error(&e))
                })?)
            }
        };
        let vault = vault(&config, &store, &master_key, &rng, &clock);
        Ok(Self {
            config,
            store,
            master_key,
            clock,
            rng,
            vault,
        })
    }

    pub fn admin(&self) -> mcpgate_authz::admin::Ctx<'_> {
        mcpgate_authz::admin::Ctx {
            store: &self.store,
            rng: self.rng.as_ref(),
            clock: self.clock.as_ref(),
            revocation_ttl: self.config.authz.revocation_ttl(),
            vault: self.vault.as_ref(),
        }
    }

    /// Builds the authorization server state (loads or creates signing keys,
    /// upserts the clients declared in the config file).
    pub async fn app_state(&self, replica: Option<Replica>) -> anyhow::Result<AppState> {
        for c in &self.config.clients {
            mcpgate_authz::admin::create_client(&self.admin(), &c.spec, true)
                .await
                .map_err(|e| {
                    anyhow::anyhow!("client {:?} from the config file: {e}", c.spec.client_id)
                })?;
        }
        let policy = FetchPolicy {
            allow_http_loopback: self.config.authz.cimd.allow_http_loopback,
            ..FetchPolicy::default()
        };
        AppState::new(
            self.config.authz.clone(),
            Deps {
                store: self.store.clone(),
                master_key: self.master_key.clone(),
                clock: self.clock.clone(),
                rng: self.rng.clone(),
                fetcher: SafeFetcher::new(policy),
                replica,
                vault: self.vault.clone(),
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("starting the authorization server: {e}"))
    }
}

/// The vault of the `user_oauth` upstreams, if there are any: the connect
/// pages are the AS's (under its issuer), the tokens are the store's,
/// sealed under the master key.
fn vault(
    config: &Config,
    store: &DynStore,
    master_key: &Arc<MasterKey>,
    rng: &Arc<dyn Rng>,
    clock: &Arc<dyn Clock>,
) -> Option<mcpgate_vault::Vault> {
    let connections: Vec<mcpgate_vault::Connection> = config
        .gateway
        .upstreams
        .iter()
        .filter_map(|u| match &u.auth {
            mcpgate_gateway::config::UpstreamAuth::UserOauth(c) => Some((**c).clone()),
            _ => None,
        })
        .collect();
    if connections.is_empty() {
        return None;
    }
    let policy = FetchPolicy {
        allow_http_loopback: connections.iter().any(|c| c.allow_http_loopback),
        ..FetchPolicy::default()
    };
    Some(mcpgate_vault::Vault::new(
        connections,
        mcpgate_vault::VaultDeps {
            store: store.clone(),
            master_key: master_key.clone(),
            rng: rng.clone(),
            clock: clock.clone(),
            fetcher: SafeFetcher::new(policy),
            pages_base: config.authz.issuer.clone(),
        },
    ))
}

/// A PostgreSQL error may echo the connection string (with its password);
/// keep only the kind. A connection that cannot be made at all is
/// `Unavailable`, the error most likely to quote the URL it tried.
fn redact_store_error(e: &StoreError) -> String {
    match e {
        StoreError::Backend(m) if m.contains("://") => {
            "backend failure (details hidden: the message contained a URL)".into()
        }
        StoreError::Unavailable(m) if m.contains("://") => {
            "store unavailable (details hidden: the message contained a URL)".into()
        }
        other => other.to_string(),
    }
}

/// The authorization server's key ring, as the gateway's guards see it.
struct AsKeys(AppState);

impl mcpgate_guard::LocalKeys for AsKeys {
    fn verifier(&self) -> Arc<mcpgate_jose::Verifier> {
        self.0.current_verifier()
    }
}

/// The authorization server's entitlements, as the gateway asks before a
/// step-up.
struct AsEntitlements(AppState);

#[async_trait::async_trait]
impl mcpgate_gateway::Entitlements for AsEntitlements {
    async fn withheld(
        &self,
        p: &mcpgate_guard::Principal,
        resource: &str,
        scopes: &mcpgate_types::ScopeSet,
    ) -> mcpgate_types::ScopeSet {
        let (iss, sub, client) = (&p.issuer, &p.subject, &p.client_id);
        self.0.withheld(iss, sub, client, resource, scopes).await
    }
}

/// Follows the store's revocation set for the gateway's guards. A store
/// that cannot be read here fails the start: the guards would refuse every
/// token of this issuer until it could.
pub async fn revocations(rt: &Runtime) -> anyhow::Result<StoreRevocations> {
    let (revocations, first) = StoreRevocations::start(rt.store.clone()).await;
    first.map_err(|e| anyhow::anyhow!("loading the revocation set: {}", redact_store_error(&e)))?;
    Ok(revocations)
}

/// The gateway in front of the configured upstreams, trusting this
/// process's authorization server (with its revocation set), auditing into
/// the store.
pub fn gateway(
    rt: &Runtime,
    state: &AppState,
    revocations: StoreRevocations,
    replica: Option<Replica>,
) -> anyhow::Result<mcpgate_gateway::Gateway> {
    let issuer = &rt.config.authz.issuer;
    let settings = rt.config.gateway.clone();
    let authenticators = mcpgate_gateway::guards(
        &settings,
        issuer,
        Arc::new(AsKeys(state.clone())),
        Some(Arc::new(revocations)),
        rt.clock.clone(),
        rt.master_key.derive_subkey("mcpgate/gateway/dpop-nonce/v1"),
    )?;
    let audit_store: Arc<dyn mcpgate_store::AuditStore> = rt.store.clone();
    let gw = mcpgate_gateway::Gateway::new(
        settings,
        mcpgate_gateway::GatewayDeps {
            authenticators,
            authorization_servers: mcpgate_gateway::authorization_servers(
                &rt.config.gateway,
                issuer,
            ),
            audit_store: Some(audit_store),
            rng: rt.rng.clone(),
            clock: rt.clock.clone(),
            entitlements: Some(Arc::new(AsEntitlements(state.clone()))),
            // Every replica sharing the master key opens the others' states.
            request_state_key: Some(
                rt.master_key
                    .derive_subkey("mcpgate/gateway/request-state/v1"),
            ),
            // On PostgreSQL, replicas share the database: they share their
            // gateway sessions through it too. SQLite is one node.
            shared_sessions: (rt.store.backend_name() == "postgres").then(|| {
                mcpgate_gateway::fleet::SharedStore {
                    store: rt.store.clone(),
                    key: rt
                        .master_key
                        .derive_subkey("mcpgate/gateway/shared-sessions/v1"),
                }
            }),
            replica,
            vault: rt.vault.clone(),
        },
    )?;
    for u in &gw.settings().upstreams {
        tracing::info!(upstream = %u.name, resource = %u.resource, "gateway upstream");
    }
    if gw.settings().authentication == mcpgate_gateway::config::Authentication::None {
        tracing::warn!(
            public_url = %gw.settings().public_url,
            "!!! gateway.authentication = \"none\": the MCP endpoints accept requests WITHOUT \
             any token, every caller is the anonymous principal. Loopback development and \
             conformance testing only; never expose this listener !!!"
        );
    }
    Ok(gw)
}

/// A whole mcpgate running in this process: the store, the authorization
/// server, the gateway and their listeners, as `mcpgate serve` runs them.
/// The binary serves one until SIGINT/SIGTERM; tests and benchmarks start
/// one or several (replicas sharing a database) the same way.
///
/// Stopping is in three steps: `/readyz` answers 503 at once; the listeners
/// go on serving for `shutdown_delay_secs`, so a load balancer's health
/// check takes the replica out before it stops accepting; then they close
/// and in-flight requests drain (at most [`DRAIN_TIMEOUT`]), and the gateway
/// ends the sessions only this process can serve.
pub struct Stack {
    addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    done: tokio::task::JoinHandle<()>,
}

impl Stack {
    /// Opens everything `rt` configures, binds the listeners and serves.
    pub async fn start(rt: Arc<Runtime>) -> anyhow::Result<Self> {
        // Replicas sharing a PostgreSQL store act as one fleet: rate limits
        // across all of them, housekeeping on one at a time. SQLite is one node.
        let replica = match rt.store.backend_name() {
            "postgres" => Some(Replica::join(rt.store.clone()).await),
            _ => None,
        };
        let state = rt.app_state(replica.clone()).await?;
        // Rate-limit memory, expired codes and sessions, rotated keys.
        let maintenance = state.spawn_maintenance();
        let revocations = revocations(&rt).await?;
        // The store's change feed: a key rotation anywhere reaches this
        // process's JWKS and the gateway's verifiers within a second.
        let follow = state.follow_changes(revocations.0.subscribe());
        // The watch lives while a clone does: the guards hold one per upstream,
        // and this one keeps the feed going without any (an AS alone).
        let feed = revocations.clone();
        let gateway = gateway(&rt, &state, revocations, replica)?;
        let (stop, asked) = tokio::sync::watch::channel(false);
        // Listeners close when `closing` turns true: `shutdown_delay` after
        // the stop was asked for.
        let (close, closing) = tokio::sync::watch::channel(false);
        let metrics = &rt.config.metrics;
        let access = || match (&metrics.token, metrics.served) {
            (_, false) => MetricsAccess::Hidden,
            (Some(t), true) => MetricsAccess::Bearer(t.clone()),
            (None, true) => MetricsAccess::Open,
        };
        // `/metrics` on the main listener, or on one of its own.
        let (main_metrics, own) = match metrics.listen {
            Some(addr) => (MetricsAccess::Hidden, Some((addr, access()))),
            None => (access(), None),
        };
        if !metrics.served {
            tracing::info!(
                "/metrics is not served on a listener that is not loopback: set [metrics] listen or bearer_token"
            );
        }
        let own_metrics = match own {
            Some((addr, access)) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding the metrics listener {addr}"))?;
                tracing::info!(%addr, "metrics listening (http)");
                let app = gateway.ops_router(access);
                Some(tokio::spawn(serve_connections(
                    listener,
                    app,
                    "metrics",
                    METRICS_MAX_CONNECTIONS,
                    closing.clone(),
                )))
            }
            None => None,
        };
        let app = mcpgate_authz::router(state)
            .merge(gateway.router())
            .merge(gateway.ops_router(main_metrics))
            .layer(axum::middleware::from_fn(log_request));
        let listener = TcpListener::bind(rt.config.listen)
            .await
            .with_context(|| format!("binding {}", rt.config.listen))?;
        let addr = listener.local_addr()?;
        let issuer = rt.config.authz.issuer.clone();
        let main: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> =
            match &rt.config.tls {
                TlsConfig::None => {
                    tracing::info!(%addr, %issuer, "mcpgate listening (http, loopback)");
                    // Responses (SSE events, JSON bodies after headers) go out in
                    // several writes: without TCP_NODELAY, Nagle's algorithm and the
                    // peer's delayed ACK hold each one for ~40 ms on loopback.
                    use axum::serve::ListenerExt as _;
                    let listener = listener.tap_io(|tcp| {
                        let _ = tcp.set_nodelay(true);
                    });
                    Box::pin(serve_connections(
                        listener,
                        app,
                        "main",
                        rt.config.max_connections,
                        closing,
                    ))
                }
                tls => {
                    let acceptor = TlsAcceptor::from(Arc::new(tls_config(tls)?));
                    tracing::info!(%addr, %issuer, "mcpgate listening (https)");
                    Box::pin(serve_connections(
                        TlsListener::new(listener, acceptor),
                        app,
                        "main",
                        rt.config.max_connections,
                        closing,
                    ))
                }
            };
        tokio::spawn(drain_on_stop(
            asked,
            gateway.clone(),
            rt.config.shutdown_delay,
            close,
        ));
        let done = tokio::spawn(async move {
            main.await;
            maintenance.abort();
            follow.abort();
            drop(feed);
            if let Some(t) = own_metrics {
                t.abort();
            }
            // In-flight requests are drained: end sessions and kill stdio children.
            gateway.shutdown(Duration::from_secs(5)).await;
            tracing::info!("mcpgate stopped");
        });
        Ok(Self { addr, stop, done })
    }

    /// The main listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Begins stopping (what SIGTERM does); [`wait`](Self::wait) for the end.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Waits until the stack has stopped.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.done.await.context("the server task failed")
    }
}

/// When a stop is asked for: not ready at once, listeners closed
/// `delay` later.
async fn drain_on_stop(
    mut asked: tokio::sync::watch::Receiver<bool>,
    gateway: mcpgate_gateway::Gateway,
    delay: Duration,
    close: tokio::sync::watch::Sender<bool>,
) {
    if asked.wait_for(|stop| *stop).await.is_err() {
        return;
    }
    gateway.begin_drain();
    if !delay.is_zero() {
        tracing::info!(
            ?delay,
            "/readyz answers 503; serving on until the load balancer has noticed"
        );
        tokio::time::sleep(delay).await;
    }
    tracing::info!("closing the listeners: draining in-flight requests");
    let _ = close.send(true);
}

/// Raises this process's soft limit of open files (`RLIMIT_NOFILE`) to its
/// hard limit: every connection, session stream, upstream connection and
/// stdio child's pipes is a descriptor, and the usual soft limit (1024)
/// runs out long before `max_connections`. Returns the limit before and now.
/// Sandboxed children set their own (`[upstream.sandbox.limits] open_files`).
pub fn raise_open_files_limit() -> std::io::Result<(u64, u64)> {
    let (soft, hard) = rlimit::Resource::NOFILE.get()?;
    if soft < hard {
        rlimit::Resource::NOFILE.set(hard, hard)?;
    }
    Ok((soft, rlimit::Resource::NOFILE.get()?.0))
}

/// Serves until SIGINT/SIGTERM, then stops as [`Stack`] says.
pub async fn serve(rt: Runtime) -> anyhow::Result<()> {
    match raise_open_files_limit() {
        Ok((before, now)) => tracing::info!(limit = now, before, "open files limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open files limit"),
    }
    let stack = Stack::start(Arc::new(rt)).await?;
    shutdown_signal().await;
    stack.stop();
    stack.wait().await
}

/// How long a client may take to send a request's headers, or its first
/// byte after connecting: a client that trickles its headers or says
/// nothing (slowloris) loses the connection instead of holding it. hyper
/// applies it to a request head once its first byte arrives, and between
/// HTTP/1.1 keep-alive requests; the connection watchdog below covers a
/// client that never sends a byte, which hyper does not time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection with no request in progress on which nothing was read or
/// written for this long is closed (idle HTTP/2 connections, which hyper
/// never times out). Streams keep themselves alive with bytes (the
/// gateway's SSE sends a comment every 15 s); a request being handled is
/// never cut by it.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections the `[metrics] listen` listener serves at once (scrapers, probes).
const METRICS_MAX_CONNECTIONS: usize = 64;
/// Connections accepted over `max_connections` only to be answered 503.
const OVERFLOW_CONNECTIONS: usize = 64;
/// How long a connection answered 503 may stay open.
const REFUSED_LIFETIME: Duration = Duration::from_secs(5);
/// How long shutdown waits for in-flight requests before closing them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The accept loop: HTTP/1.1 and HTTP/2 per connection (hyper-util), with
/// the header-read and idle timeouts above (which `axum::serve` cannot
/// set), the peer address as `ConnectInfo`, and a graceful shutdown bounded
/// by [`DRAIN_TIMEOUT`] once `closing` turns true.
async fn serve_connections<L>(
    mut listener: L,
    app: axum::Router,
    name: &'static str,
    max_connections: usize,
    mut closing: tokio::sync::watch::Receiver<bool>,
) where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    use hyper_util::rt::TokioIo;

    let builder = connection_builder();
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let shutdown = async move {
        let _ = closing.wait_for(|close| *close).await;
    };
    tokio::pin!(shutdown);
    // At most `max_connections` are served. Over that, up to
    // `OVERFLOW_CONNECTIONS` more are accepted only to be told 503 (see
    // `refuse_connection`); beyond those, the next waits in the kernel's
    // queue until a place frees.
    let places = Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
    let overflow = Arc::new(tokio::sync::Semaphore::new(OVERFLOW_CONNECTIONS));
    // Per listener (`main`, `metrics`), so one never hides the other.
    metrics::gauge!("mcpgate_connections_limit", "listener" => name).set(max_connections as f64);
    loop {
        let never_closed = "the semaphore is never closed";
        let place = tokio::select! {
            biased;
            p = places.clone().acquire_owned() => Ok(p.expect(never_closed)),
            p = overflow.clone().acquire_owned() => Err(p.expect(never_closed)),
            () = &mut shutdown => break,
        };
        let (io, peer) = tokio::select! {
            conn = listener.accept() => conn,
            () = &mut shutdown => break,
        };
        // A place may have freed while this one waited for a connection.
        let place = match place {
            Ok(p) => p,
            Err(over) => match places.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    tokio::spawn(refuse_connection(io, peer, name, over));
                    continue;
                }
            },
        };
        metrics::gauge!("mcpgate_connections_open", "listener" => name).increment(1.0);
        let activity = Arc::new(Activity::new());
        let svc = {
            let (app, activity) = (app.clone(), activity.clone());
            tower::service_fn(
                move |mut req: axum::extract::Request<hyper::body::Incoming>| {
                    req.extensions_mut()
                        .insert(axum::extract::ConnectInfo(peer));
                    let in_flight = activity.begin();
                    let app = app.clone();
                    async move {
                        let r = tower::ServiceExt::oneshot(app, req).await;
                        drop(in_flight);
                        r
                    }
                },
            )
        };
        let io = Watched {
            inner: io,
            activity: activity.clone(),
        };
        let conn = builder
            .serve_connection_with_upgrades(
                TokioIo::new(io),
                hyper_util::service::TowerToHyperService::new(svc),
            )
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            tokio::pin!(conn);
            loop {
                tokio::select! {
                    r = &mut conn => {
                        if let Err(e) = r {
                            tracing::debug!(%peer, error = %e, "connection closed with an error");
                        }
                        break;
                    }
                    () = tokio::time::sleep_until(activity.deadline()) => {
                        if activity.is_idle() {
                            tracing::debug!(%peer, "closing an idle connection");
                            break;
                        }
                    }
                }
            }
            metrics::gauge!("mcpgate_connections_open", "listener" => name).decrement(1.0);
            drop(place);
        });
    }
    // Stop accepting, then let open connections finish their requests.
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!(timeout = ?DRAIN_TIMEOUT, "requests still running at shutdown were cut off");
        }
    }
}

/// HTTP/1.1 and HTTP/2 per connection (hyper-util), HTTP/1 with
/// [`HEADER_READ_TIMEOUT`]: how every listener serves a connection.
fn connection_builder() -> hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor> {
    use hyper_util::rt::{TokioExecutor, TokioTimer};
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    builder
}

/// Answers every request of a connection over `max_connections` with 503
/// and `Retry-After`, and closes it: HTTP/1 after the first answer, any
/// connection after [`REFUSED_LIFETIME`].
async fn refuse_connection<I>(
    io: I,
    peer: SocketAddr,
    name: &'static str,
    over: tokio::sync::OwnedSemaphorePermit,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    metrics::counter!("mcpgate_connections_refused_total", "listener" => name).increment(1);
    tracing::debug!(%peer, listener = name, "connection refused: max_connections reached");
    let mut builder = connection_builder();
    builder.http1().keep_alive(false);
    let svc = hyper::service::service_fn(|_req: hyper::Request<hyper::body::Incoming>| async {
        use axum::http::{HeaderValue, StatusCode, header};
        let mut r = axum::response::Response::new(axum::body::Body::from(
            "mcpgate is serving as many connections as it may (max_connections); try again later\n",
        ));
        *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        let h = r.headers_mut();
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        Ok::<_, std::convert::Infallible>(r)
    });
    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(io), svc);
    let _ = tokio::time::timeout(REFUSED_LIFETIME, conn).await;
    drop(over);
}

/// When a connection last moved a byte, whether the client ever sent one,
/// and how many of its requests are being handled.
struct Activity {
    start: tokio::time::Instant,
    last_ms: AtomicU64,
    read_any: AtomicBool,
    in_flight: AtomicUsize,
}

/// A request being handled; dropping it (also on cancellation) ends it.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch(false);
    }
}

impl Activity {
    fn new() -> Self {
        Self {
            start: tokio::time::Instant::now(),
            last_ms: AtomicU64::new(0),
            read_any: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn touch(&self, read: bool) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
        if read {
            self.read_any.store(true, Ordering::Relaxed);
        }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// The moment the connection counts as idle, if no request is running then.
    fn deadline(&self) -> tokio::time::Instant {
        let limit = if self.read_any.load(Ordering::Relaxed) {
            IDLE_TIMEOUT
        } else {
            HEADER_READ_TIMEOUT
        };
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) + limit
    }

    fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0
            && tokio::time::Instant::now() >= self.deadline()
    }
}

/// A connection's byte stream that records [`Activity`].
struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Watched<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch(true);
        }
        r
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch(false);
        }
        r
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch(false);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// One log line per request: method, path (never the query, which may hold
/// codes), status and duration, under a request id.
async fn log_request(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let start = std::time::Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let id = request_id();
    let span = tracing::info_span!("request", id = %id, %method, %path);
    let resp = tracing::Instrument::instrument(next.run(req), span.clone()).await;
    span.in_scope(|| {
        tracing::debug!(
            status = resp.status().as_u16(),
            micros = start.elapsed().as_micros() as u64,
            "request done"
        );
    });
    resp
}

fn request_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("{:x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}

fn tls_config(tls: &TlsConfig) -> anyhow::Result<rustls::ServerConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let (certs, key): (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) = match tls {
        TlsConfig::Files { cert, key } => {
            let certs = CertificateDer::pem_file_iter(cert)
                .with_context(|| format!("reading tls.cert {}", cert.display()))?
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| {
                    format!("tls.cert {} is not a PEM certificate chain", cert.display())
                })?;
            if certs.is_empty() {
                bail!("tls.cert {} holds no certificate", cert.display());
            }
            let key = PrivateKeyDer::from_pem_file(key)
                .with_context(|| format!("tls.key {} is not a PEM private key", key.display()))?;
            (certs, key)
        }
        TlsConfig::SelfSigned => {
            let ck = rcgen::generate_simple_self_signed(vec![
                "localhost".to_string(),
                "127.0.0.1".to_string(),
                "::1".to_string(),
            ])
            .context("generating a self-signed certificate")?;
            tracing::warn!(
                "serving a self-signed certificate for localhost: for local testing only"
            );
            (
                vec![ck.cert.der().clone()],
                PrivateKeyDer::try_from(ck.signing_key.serialize_der())
                    .map_err(|e| anyhow::anyhow!(e))?,
            )
        }
        TlsConfig::None => bail!("no TLS configured"),
    };
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .context("the TLS certificate and key do not match")?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// A listener that completes TLS handshakes off the accept loop (a slow
/// client cannot stall others) and hands finished streams to it.
pub struct TlsListener {
    rx: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    fn new(listener: TcpListener, acceptor: TlsAcceptor) -> Self {
        let local = listener
            .local_addr()
            .expect("bound listener has an address");
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    r = listener.accept() => r,
                    // The server dropped the listener: release the port.
                    () = tx.closed() => break,
                };
                let (tcp, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
                    {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Self { rx, local }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(x) => x,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// From a low soft limit (this test sets one, so that there is
    /// something to raise), `serve`'s call leaves the soft limit at the hard.
    #[test]
    fn the_open_files_limit_is_raised_to_the_hard_limit() {
        let (_, hard) = rlimit::Resource::NOFILE.get().unwrap();
        let low = hard.min(512);
        rlimit::Resource::NOFILE.set(low, hard).unwrap();
        let (before, now) = raise_open_files_limit().unwrap();
        assert_eq!(before, low);
        assert_eq!(now, hard);
        assert_eq!(rlimit::Resource::NOFILE.get().unwrap(), (hard, hard));
    }

    #[test]
    fn store_errors_that_quote_a_url_are_redacted() {
        let url = "postgres://mcpgate:hunter2@db.internal:5432/mcpgate";
        for e in [
            StoreError::Backend(format!("error connecting to {url}")),
            StoreError::Unavailable(format!("pool timed out connecting to {url}")),
        ] {
            let shown = redact_store_error(&e);
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(!shown.contains("://"), "{shown}");
            assert!(shown.contains("details hidden"), "{shown}");
        }
        // The kind stays visible, and messages without a URL are kept.
        assert!(
            redact_store_error(&StoreError::Unavailable(format!("no route: {url}")))
                .starts_with("store unavailable")
        );
        assert_eq!(
            redact_store_error(&StoreError::Unavailable("connection refused".into())),
            "store unavailable: connection refused"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_is_idle_after_the_header_timeout() {
        let a = Arc::new(Activity::new());
        tokio::time::advance(HEADER_READ_TIMEOUT - Duration::from_millis(10)).await;
        assert!(!a.is_idle());
        tokio::time::advance(Duration::from_millis(20)).await;
        assert!(a.is_idle());
    }

    #[tokio::test(start_paused = true)]
    async fn keep_alive_idles_out_but_requests_in_progress_do_not() {
        let a = Arc::new(Activity::new());
        a.touch(true);
        tokio::time::advance(HEADER_READ_TIMEOUT * 2).await;
        assert!(!a.is_idle(), "once bytes came, the idle timeout applies");
        let req = a.begin();
        tokio::time::advance(IDLE_TIMEOUT * 3).await;
        assert!(!a.is_idle(), "a long request is not idle");
        drop(req);
        assert!(!a.is_idle(), "the idle period starts when the request ends");
        tokio::time::advance(IDLE_TIMEOUT).await;
        assert!(a.is_idle());
    }
}
