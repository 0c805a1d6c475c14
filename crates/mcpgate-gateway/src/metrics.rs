//! Prometheus metrics (issue 3 "Operations"): requests, decisions by
//! reason, latency histograms, upstream errors, live sessions and child
//! processes, through the `metrics` facade. One recorder per process,
//! installed on first use and shared by every gateway in it.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use metrics::{Counter, Histogram, SharedString};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Latency buckets, seconds.
const BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The process's Prometheus handle; `None` if another recorder was
/// installed first (then `/metrics` is empty).
pub fn handle() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
                .ok()?;
            match builder.install_recorder() {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::warn!(error = %e, "a metrics recorder is already installed; /metrics stays empty");
                    None
                }
            }
        })
        .clone()
}

/// The Prometheus text exposition.
pub fn render() -> String {
    handle().map(|h| h.render()).unwrap_or_default()
}

/// One upstream's per-request metrics — `mcpgate_gateway_requests_total`
/// {upstream, status}, `mcpgate_gateway_decisions_total` {upstream,
/// decision, reason} and `mcpgate_gateway_request_duration_seconds`
/// {upstream} — with their handles kept after first use, so a request
/// records its outcome without building metric keys, allocating label
/// strings or looking them up in the registry.
pub struct RequestMetrics {
    upstream: Arc<str>,
    duration: OnceLock<Histogram>,
    outcomes: RwLock<HashMap<Outcome, (Counter, Counter)>>,
}

/// (HTTP status, decision, reason).
type Outcome = (u16, &'static str, &'static str);

impl RequestMetrics {
    pub fn new(upstream: &str) -> Self {
        Self {
            upstream: upstream.into(),
            duration: OnceLock::new(),
            outcomes: RwLock::new(HashMap::new()),
        }
    }

    pub fn record(
        &self,
        status: u16,
        decision: &'static str,
        reason: &'static str,
        elapsed: Duration,
    ) {
        let key = (status, decision, reason);
        let known = self
            .outcomes
            .read()
            .expect("metrics lock")
            .get(&key)
            .cloned();
        let (requests, decisions) = known.unwrap_or_else(|| {
            let up = SharedString::from_shared(self.upstream.clone());
            let handles = (
                metrics::counter!("mcpgate_gateway_requests_total", "upstream" => up.clone(), "status" => status.to_string()),
                metrics::counter!("mcpgate_gateway_decisions_total", "upstream" => up, "decision" => decision, "reason" => reason),
            );
            self.outcomes
                .write()
                .expect("metrics lock")
                .entry(key)
                .or_insert(handles)
                .clone()
        });
        requests.increment(1);
        decisions.increment(1);
        self.duration
            .get_or_init(|| {
                let up = SharedString::from_shared(self.upstream.clone());
                metrics::histogram!("mcpgate_gateway_request_duration_seconds", "upstream" => up)
            })
            .record(elapsed.as_secs_f64());
    }
}
