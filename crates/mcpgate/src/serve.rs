//! `mcpgate serve`: opens the store, loads keys, builds the router and
//! serves it over plain HTTP (loopback only) or TLS (rustls), with graceful
//! shutdown on SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use mcpgate_authz::{AppState, Deps};
use mcpgate_jose::{Clock, MasterKey, Rng, SystemClock, SystemRng};
use mcpgate_net::SafeFetcher;
use mcpgate_net::policy::FetchPolicy;
use mcpgate_store::{DynStore, PostgresStore, SqliteStore, StoreError};
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
}

/// Creates a directory (and parents) with mode 0700.
fn private_dir(path: &Path) -> anyhow::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(path).with_context(|| format!("creating data directory {}", path.display()))?;
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
    let mut f = opts.open(path).with_context(|| format!("creating {}", path.display()))?;
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
            StoreConfig::Sqlite(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    private_dir(dir)?;
                }
                Arc::new(SqliteStore::open(path).await.map_err(|e| anyhow::anyhow!("opening SQLite database {}: {e}", path.display()))?)
            }
            StoreConfig::Postgres(url) => Arc::new(
                PostgresStore::connect(url.expose())
                    .await
                    .map_err(|e| anyhow::anyhow!("connecting to PostgreSQL: {}", redact_store_error(&e)))?,
            ),
        };
        Ok(Self { config, store, master_key, clock, rng })
    }

    pub fn admin(&self) -> mcpgate_authz::admin::Ctx<'_> {
        mcpgate_authz::admin::Ctx { store: &self.store, rng: self.rng.as_ref(), clock: self.clock.as_ref() }
    }

    /// Builds the authorization server state (loads or creates signing keys,
    /// upserts the clients declared in the config file).
    pub async fn app_state(&self) -> anyhow::Result<AppState> {
        for c in &self.config.clients {
            mcpgate_authz::admin::create_client(&self.admin(), &c.spec, true)
                .await
                .map_err(|e| anyhow::anyhow!("client {:?} from the config file: {e}", c.spec.client_id))?;
        }
        let policy = FetchPolicy { allow_http_loopback: self.config.authz.cimd.allow_http_loopback, ..FetchPolicy::default() };
        AppState::new(
            self.config.authz.clone(),
            Deps {
                store: self.store.clone(),
                master_key: self.master_key.clone(),
                clock: self.clock.clone(),
                rng: self.rng.clone(),
                fetcher: SafeFetcher::new(policy),
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("starting the authorization server: {e}"))
    }
}

/// A PostgreSQL error may echo the connection string; keep only the kind.
fn redact_store_error(e: &StoreError) -> String {
    match e {
        StoreError::Backend(m) if m.contains("://") => "backend failure (details hidden: the message contained a URL)".into(),
        other => other.to_string(),
    }
}

/// Serves until SIGINT/SIGTERM, then drains in-flight requests.
pub async fn serve(rt: &Runtime, ready: Option<tokio::sync::oneshot::Sender<SocketAddr>>) -> anyhow::Result<()> {
    let state = rt.app_state().await?;
    // Rate-limit memory, expired codes and sessions, rotated keys.
    let maintenance = state.spawn_maintenance();
    let app = mcpgate_authz::router(state)
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .layer(axum::middleware::from_fn(log_request));
    let listener = TcpListener::bind(rt.config.listen)
        .await
        .with_context(|| format!("binding {}", rt.config.listen))?;
    let addr = listener.local_addr()?;
    match &rt.config.tls {
        TlsConfig::None => {
            let make = app.into_make_service_with_connect_info::<SocketAddr>();
            tracing::info!(%addr, issuer = %rt.config.authz.issuer, "mcpgate listening (http, loopback)");
            if let Some(tx) = ready {
                let _ = tx.send(addr);
            }
            axum::serve(listener, make).with_graceful_shutdown(shutdown_signal()).await?;
        }
        tls => {
            let acceptor = TlsAcceptor::from(Arc::new(tls_config(tls)?));
            tracing::info!(%addr, issuer = %rt.config.authz.issuer, "mcpgate listening (https)");
            if let Some(tx) = ready {
                let _ = tx.send(addr);
            }
            // axum's ConnectInfo only knows TCP listeners: attach the peer
            // address per connection ourselves.
            let make = tower::service_fn(move |incoming: axum::serve::IncomingStream<'_, TlsListener>| {
                let peer = *incoming.remote_addr();
                let svc = app.clone().layer(axum::Extension(axum::extract::ConnectInfo(peer)));
                async move { Ok::<_, std::convert::Infallible>(svc) }
            });
            axum::serve(TlsListener::new(listener, acceptor), make).with_graceful_shutdown(shutdown_signal()).await?;
        }
    }
    maintenance.abort();
    tracing::info!("mcpgate stopped");
    Ok(())
}

/// One log line per request: method, path (never the query, which may hold
/// codes), status and duration, under a request id.
async fn log_request(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let start = std::time::Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let id = request_id();
    let span = tracing::info_span!("request", id = %id, %method, %path);
    let resp = tracing::Instrument::instrument(next.run(req), span.clone()).await;
    span.in_scope(|| {
        tracing::debug!(status = resp.status().as_u16(), micros = start.elapsed().as_micros() as u64, "request done");
    });
    resp
}

fn request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
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
    tracing::info!("shutting down: draining in-flight requests");
}

fn tls_config(tls: &TlsConfig) -> anyhow::Result<rustls::ServerConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let (certs, key): (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) = match tls {
        TlsConfig::Files { cert, key } => {
            let certs = CertificateDer::pem_file_iter(cert)
                .with_context(|| format!("reading tls.cert {}", cert.display()))?
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("tls.cert {} is not a PEM certificate chain", cert.display()))?;
            if certs.is_empty() {
                bail!("tls.cert {} holds no certificate", cert.display());
            }
            let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("tls.key {} is not a PEM private key", key.display()))?;
            (certs, key)
        }
        TlsConfig::SelfSigned => {
            let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()])
                .context("generating a self-signed certificate")?;
            tracing::warn!("serving a self-signed certificate for localhost: for local testing only");
            (vec![ck.cert.der().clone()], PrivateKeyDer::try_from(ck.signing_key.serialize_der()).map_err(|e| anyhow::anyhow!(e))?)
        }
        TlsConfig::None => bail!("no TLS configured"),
    };
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TLS certificate and key do not match")?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// A listener that completes TLS handshakes off the accept loop (a slow
/// client cannot stall others) and hands finished streams to axum.
pub struct TlsListener {
    rx: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    fn new(listener: TcpListener, acceptor: TlsAcceptor) -> Self {
        let local = listener.local_addr().expect("bound listener has an address");
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    break;
                }
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
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
