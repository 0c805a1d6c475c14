//! The audit log (issue 3 "Audit"; Security Best Practices: "log elevation
//! events with correlation IDs"): one record per gateway decision — allow,
//! deny, step-up, unauthenticated, rate limited, upstream error — as JSON
//! lines on stdout and/or a file, and rows in the store's `audit_log`
//! table. Records never hold tokens or tool arguments. Writing happens off
//! the request path, through a bounded queue; a full queue drops records
//! and counts them. Store rows older than `[gateway.audit] retain_days` are
//! purged by the gateway's housekeeping ([`Audit::purge_before`]).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use mcpgate_store::{AuditRecord, AuditStore};
use tokio::sync::mpsc;

use crate::config::AuditConfig;

const QUEUE: usize = 4096;

/// Where audit records go.
#[derive(Clone)]
pub struct Audit {
    stdout: bool,
    tx: Option<mpsc::Sender<AuditRecord>>,
    /// The store sink, for purging.
    store: Option<Arc<dyn AuditStore>>,
}

impl Audit {
    /// Starts the writer task for the file and store sinks.
    pub fn start(cfg: &AuditConfig, store: Option<Arc<dyn AuditStore>>) -> std::io::Result<Self> {
        let file = cfg.file.as_deref().map(open_append).transpose()?;
        let store = if cfg.store { store } else { None };
        let tx = if file.is_some() || store.is_some() {
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(writer(rx, file, store.clone()));
            Some(tx)
        } else {
            None
        };
        Ok(Self {
            stdout: cfg.stdout,
            tx,
            store,
        })
    }

    /// Deletes store rows older than `before_ms` (Unix milliseconds);
    /// `None` without a store sink or when the store fails (logged).
    pub async fn purge_before(&self, before_ms: i64) -> Option<u64> {
        let store = self.store.as_ref()?;
        match store.purge_audit(before_ms).await {
            Ok(n) => {
                if n > 0 {
                    tracing::info!(purged = n, "old audit records purged");
                }
                Some(n)
            }
            Err(e) => {
                tracing::warn!(error = %e, "purging old audit records failed");
                None
            }
        }
    }

    /// No sinks (tests).
    pub fn disabled() -> Self {
        Self {
            stdout: false,
            tx: None,
            store: None,
        }
    }

    pub fn record(&self, rec: AuditRecord) {
        metrics::counter!(
            "mcpgate_gateway_decisions_total",
            "upstream" => rec.upstream.clone(),
            "decision" => rec.decision.clone(),
            "reason" => rec.reason.clone()
        )
        .increment(1);
        if self.stdout
            && let Ok(line) = serde_json::to_string(&rec)
        {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
        }
        if let Some(tx) = &self.tx
            && tx.try_send(rec).is_err()
        {
            metrics::counter!("mcpgate_gateway_audit_dropped_total").increment(1);
        }
    }
}

fn open_append(p: &Path) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(p)
}

async fn writer(
    mut rx: mpsc::Receiver<AuditRecord>,
    mut file: Option<std::fs::File>,
    store: Option<Arc<dyn AuditStore>>,
) {
    while let Some(rec) = rx.recv().await {
        if let Some(f) = file.as_mut()
            && let Ok(line) = serde_json::to_string(&rec)
            && writeln!(f, "{line}").is_err()
        {
            tracing::warn!("writing the audit file failed");
        }
        if let Some(s) = &store
            && let Err(e) = s.insert_audit(&rec).await
        {
            tracing::warn!(error = %e, "writing an audit record to the store failed");
        }
    }
}
