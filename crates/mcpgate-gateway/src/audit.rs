//! The audit log (issue 3 "Audit"; Security Best Practices: "log elevation
//! events with correlation IDs"): one record per gateway decision — allow,
//! deny, step-up, unauthenticated, rate limited, upstream error — as JSON
//! lines on stdout and/or a file, and rows in the store's `audit_log`
//! table. Records never hold tokens or tool arguments.
//!
//! Writing happens off the request path. A request only puts its record on
//! a bounded queue; a full queue drops the record and counts it
//! (`mcpgate_gateway_audit_dropped_total`). One writer task takes the
//! records in batches: it wakes for the first record, lets others gather
//! for [`LINGER`], then writes the whole batch — one `write` per sink and
//! one store transaction — so the cost of waking it and of committing is
//! shared by every request in the batch instead of paid by each. A record
//! reaches its sinks within about [`LINGER`] plus the write itself;
//! [`Audit::close`] (on shutdown) writes whatever is still queued. Store rows
//! older than `[gateway.audit] retain_days` are purged by the gateway's
//! housekeeping ([`Audit::purge_before`]).

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mcpgate_store::{AuditRecord, AuditStore};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::AuditConfig;

/// Records that may wait for the writer.
const QUEUE: usize = 16_384;
/// How long the writer lets records gather after the first of a batch.
pub const LINGER: Duration = Duration::from_millis(20);
/// Records per batch, at most.
const BATCH: usize = 1024;

/// Where audit records go.
#[derive(Clone)]
pub struct Audit {
    tx: Option<mpsc::Sender<AuditRecord>>,
    /// The store sink, for purging.
    store: Option<Arc<dyn AuditStore>>,
    stop: CancellationToken,
    writer: Arc<Mutex<Option<JoinHandle<()>>>>,
}

/// The writer's sinks.
struct Sinks {
    stdout: bool,
    file: Option<std::fs::File>,
    store: Option<Arc<dyn AuditStore>>,
    /// While the store is down every batch fails: logged within a budget.
    store_warnings: crate::log_budget::SharedLogBudget,
}

impl Audit {
    /// Starts the writer task for the configured sinks (none: no task).
    pub fn start(cfg: &AuditConfig, store: Option<Arc<dyn AuditStore>>) -> std::io::Result<Self> {
        let file = cfg.file.as_deref().map(open_append).transpose()?;
        let store = if cfg.store { store } else { None };
        let stop = CancellationToken::new();
        let mut audit = Self {
            tx: None,
            store: store.clone(),
            stop: stop.clone(),
            writer: Arc::new(Mutex::new(None)),
        };
        if cfg.stdout || file.is_some() || store.is_some() {
            let (tx, rx) = mpsc::channel(QUEUE);
            let sinks = Sinks {
                stdout: cfg.stdout,
                file,
                store,
                store_warnings: crate::log_budget::store_warnings(),
            };
            let handle = tokio::spawn(writer(rx, sinks, stop));
            audit.tx = Some(tx);
            *audit.writer.lock().expect("audit writer lock") = Some(handle);
        }
        Ok(audit)
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
            tx: None,
            store: None,
            stop: CancellationToken::new(),
            writer: Arc::new(Mutex::new(None)),
        }
    }

    pub fn record(&self, rec: AuditRecord) {
        if let Some(tx) = &self.tx
            && tx.try_send(rec).is_err()
        {
            metrics::counter!("mcpgate_gateway_audit_dropped_total").increment(1);
        }
    }

    /// Writes what is queued and stops the writer, waiting at most `grace`.
    /// Records made after this are dropped.
    pub async fn close(&self, grace: Duration) {
        self.stop.cancel();
        let handle = self.writer.lock().expect("audit writer lock").take();
        if let Some(h) = handle
            && tokio::time::timeout(grace, h).await.is_err()
        {
            tracing::warn!("the audit writer did not finish in time; queued records may be lost");
        }
    }
}

/// Request ids for audit records: unique, not secret. A random prefix drawn
/// at start (so ids of different runs do not collide) and a counter, which
/// costs a request an atomic increment instead of random bytes.
pub struct RequestIds {
    prefix: String,
    next: AtomicU64,
}

impl RequestIds {
    pub fn new(rng: &dyn mcpgate_jose::Rng) -> Self {
        Self {
            prefix: mcpgate_jose::random_token(rng, 6),
            next: AtomicU64::new(1),
        }
    }

    /// `<prefix>-<counter in hex>`, e.g. `q3V_x9Zk-1a2b`.
    pub fn next(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n:x}", self.prefix)
    }
}

fn open_append(p: &Path) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(p)
}

async fn writer(mut rx: mpsc::Receiver<AuditRecord>, mut sinks: Sinks, stop: CancellationToken) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let n = tokio::select! {
            n = rx.recv_many(&mut batch, BATCH) => n,
            () = stop.cancelled() => 0,
        };
        if n > 0 && batch.len() < BATCH {
            // While the writer sleeps it is not polling the queue, so the
            // records that arrive meanwhile wake nobody.
            tokio::select! {
                () = tokio::time::sleep(LINGER) => {}
                () = stop.cancelled() => {}
            }
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(rec) => batch.push(rec),
                    Err(_) => break,
                }
            }
        }
        if n == 0 || stop.is_cancelled() {
            // Closed or stopping: write everything still queued, then end.
            rx.close();
            while let Ok(rec) = rx.try_recv() {
                batch.push(rec);
                if batch.len() == BATCH {
                    sinks.write(&batch).await;
                    batch.clear();
                }
            }
            sinks.write(&batch).await;
            return;
        }
        sinks.write(&batch).await;
        batch.clear();
    }
}

impl Sinks {
    /// One batch: JSON lines in one write per stream sink, one transaction
    /// in the store.
    async fn write(&mut self, batch: &[AuditRecord]) {
        if batch.is_empty() {
            return;
        }
        if self.stdout || self.file.is_some() {
            let mut lines = Vec::with_capacity(batch.len() * 320);
            for rec in batch {
                if serde_json::to_writer(&mut lines, rec).is_ok() {
                    lines.push(b'\n');
                }
            }
            if self.stdout {
                let mut out = std::io::stdout().lock();
                if out.write_all(&lines).and_then(|()| out.flush()).is_err() {
                    failed(batch.len(), "writing audit records to stdout failed");
                }
            }
            if let Some(f) = self.file.as_mut()
                && f.write_all(&lines).is_err()
            {
                failed(batch.len(), "writing the audit file failed");
            }
        }
        if let Some(s) = &self.store
            && let Err(e) = s.insert_audit(batch).await
        {
            if let Some(held_back) = self.store_warnings.allow() {
                tracing::warn!(error = %e, held_back, "writing audit records to the store failed");
            }
            metrics::counter!("mcpgate_gateway_audit_write_errors_total")
                .increment(batch.len() as u64);
        }
    }
}

fn failed(records: usize, what: &str) {
    tracing::warn!(records, "{what}");
    metrics::counter!("mcpgate_gateway_audit_write_errors_total").increment(records as u64);
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpgate_store::SqliteStore;

    fn rec(i: usize) -> AuditRecord {
        AuditRecord {
            time_ms: 1_700_000_000_000 + i as i64,
            request_id: format!("r{i}"),
            issuer: Some("https://as.example".into()),
            subject: Some("alice".into()),
            client_id: Some("c".into()),
            upstream: "files".into(),
            method: Some("tools/call".into()),
            tool: Some("read".into()),
            decision: "allow".into(),
            reason: "allowed".into(),
            status: 200,
            latency_ms: 1,
        }
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// More records than one batch, all queued at once: `close` writes every
    /// one of them, in order, to the file and to the store.
    #[tokio::test]
    async fn close_writes_everything_queued_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("audit.jsonl");
        let store = Arc::new(SqliteStore::open(&dir.path().join("s.db")).await.unwrap());
        let cfg = AuditConfig {
            stdout: false,
            file: Some(file.clone()),
            store: true,
            retain: None,
        };
        let audit = Audit::start(&cfg, Some(store.clone() as Arc<dyn AuditStore>)).unwrap();
        let n = BATCH * 2 + 7;
        for i in 0..n {
            audit.record(rec(i));
        }
        audit.close(Duration::from_secs(30)).await;
        let got = lines(&file);
        assert_eq!(got.len(), n);
        for (i, l) in got.iter().enumerate() {
            let r: AuditRecord = serde_json::from_str(l).unwrap();
            assert_eq!(r, rec(i));
        }
        let rows = store.list_audit(0, u32::MAX).await.unwrap();
        assert_eq!(rows.len(), n);
        // Records after close are dropped, not written.
        audit.record(rec(n));
        tokio::time::sleep(LINGER * 3).await;
        assert_eq!(lines(&file).len(), n);
    }

    /// Without `close`, a record reaches the file on its own, after the
    /// linger — and records arriving during the linger share its write.
    #[tokio::test]
    async fn records_are_written_after_the_linger() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("audit.jsonl");
        let cfg = AuditConfig {
            stdout: false,
            file: Some(file.clone()),
            store: false,
            retain: None,
        };
        let audit = Audit::start(&cfg, None).unwrap();
        audit.record(rec(0));
        audit.record(rec(1));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while lines(&file).len() < 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "records never written"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(lines(&file).len(), 2);
        audit.close(Duration::from_secs(5)).await;
    }

    #[test]
    fn request_ids_are_unique_and_share_the_run_prefix() {
        let ids = RequestIds::new(&mcpgate_jose::SystemRng::new());
        let a = ids.next();
        let b = ids.next();
        assert_ne!(a, b);
        // The prefix is base64url and may itself hold a '-': split at the last one.
        let (pa, _) = a.rsplit_once('-').unwrap();
        let (pb, _) = b.rsplit_once('-').unwrap();
        assert_eq!(pa, pb);
        assert_eq!(pa.len(), 8);
        let other = RequestIds::new(&mcpgate_jose::SystemRng::new());
        assert_ne!(other.next().rsplit_once('-').unwrap().0, pa);
    }
}
