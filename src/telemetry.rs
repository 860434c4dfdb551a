//! Logs (tracing, text or JSON, with the request id on every line), the
//! request-id middleware, and the Prometheus metrics.

use crate::config::{LogFormat, LogSettings};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};
use std::io::IsTerminal;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls (tests) are no-ops.
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_new(&settings.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match settings.format {
        LogFormat::Json => registry
            .with(tracing_subscriber::fmt::layer().json().with_current_span(true).with_span_list(false))
            .try_init(),
        // Colours only on a terminal: a log file or journald would keep
        // the escape codes.
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer().with_target(false).with_ansi(colours(std::io::stdout().is_terminal())),
            )
            .try_init(),
    };
}

/// Whether text logs are coloured: on a terminal, unless `NO_COLOR` is set
/// (no-color.org).
fn colours(terminal: bool) -> bool {
    terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// A random (version 4) UUID from the thread's generator, which is seeded from
/// the operating system but does not ask it for every id: a request takes two.
pub fn new_uuid() -> uuid::Uuid {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid()
}

/// Whether a dependency (the database, Redis) is failing, kept so that the log
/// says so when it starts failing and when it answers again, not at every
/// readiness probe or request in between.
#[derive(Debug)]
pub struct Failing {
    state: std::sync::atomic::AtomicBool,
    /// The dependency, as the log names it.
    what: &'static str,
    /// What happens while it fails, and once it answers again.
    meanwhile: &'static str,
    again: &'static str,
}

impl Failing {
    pub const fn new(what: &'static str, meanwhile: &'static str, again: &'static str) -> Failing {
        Failing { state: std::sync::atomic::AtomicBool::new(false), what, meanwhile, again }
    }

    /// Records a failure, logged if it is the first since the last success
    /// (and then true).
    pub fn failed(&self, error: &dyn std::fmt::Display) -> bool {
        let first = !self.state.swap(true, std::sync::atomic::Ordering::Relaxed);
        if first {
            tracing::warn!(%error, "{} failed; {}", self.what, self.meanwhile);
        }
        first
    }

    /// Records a success, logged if it ends a run of failures (and then true).
    pub fn answered(&self) -> bool {
        let back = self.state.swap(false, std::sync::atomic::Ordering::Relaxed);
        if back {
            tracing::info!("{} answers again; {}", self.what, self.again);
        }
        back
    }
}

/// Everything the server measures.
pub struct Metrics {
    pub registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_latency: HistogramVec,
    pub upstream_requests: IntCounterVec,
    pub upstream_latency: HistogramVec,
    pub schema_violations: IntCounterVec,
    pub breaker_open: prometheus::IntGaugeVec,
    pub rate_limited: IntCounterVec,
    pub rate_limit_fallbacks: prometheus::IntCounter,
    pub audit_written: prometheus::IntCounter,
    pub audit_queue: IntGauge,
    pub prefill_fields: IntCounterVec,
    pub partner_requests: IntCounterVec,
    /// Set from the catalogue at every scrape.
    pub key_expiry: prometheus::IntGaugeVec,
    /// Set from the catalogue at every scrape.
    pub admin_token_expiry: prometheus::IntGaugeVec,
    pub dossier_steps: IntCounterVec,
    pub dossier_retries: IntCounterVec,
    pub dossier_steps_overdue: IntGauge,
}

impl Metrics {
    #[allow(clippy::expect_used, reason = "the metrics' names and labels are constants, valid and distinct")]
    pub fn new() -> Metrics {
        let registry = Registry::new_custom(Some("lgsp".into()), None).expect("valid prefix");
        let buckets = vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
        let http_requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by route, method and status"),
            &["route", "method", "status"],
        )
        .expect("metric");
        let http_latency = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency by route and method")
                .buckets(buckets.clone()),
            &["route", "method"],
        )
        .expect("metric");
        let upstream_requests = IntCounterVec::new(
            Opts::new("upstream_requests_total", "Calls to registries by adapter, operation and outcome"),
            &["adapter", "operation", "outcome"],
        )
        .expect("metric");
        let upstream_latency = HistogramVec::new(
            HistogramOpts::new("upstream_request_duration_seconds", "Registry call latency").buckets(buckets),
            &["adapter", "operation"],
        )
        .expect("metric");
        let schema_violations = IntCounterVec::new(
            Opts::new(
                "schema_violations_total",
                "Messages that failed their JSON Schema, by point (partner_request, upstream_request, upstream_response, response) and adapter",
            ),
            &["point", "adapter"],
        )
        .expect("metric");
        let breaker_open = prometheus::IntGaugeVec::new(
            Opts::new("circuit_breaker_open", "1 while an adapter's circuit breaker is open"),
            &["adapter"],
        )
        .expect("metric");
        let rate_limited = IntCounterVec::new(
            Opts::new("rate_limited_total", "Requests refused by a partner's rate limit"),
            &["partner"],
        )
        .expect("metric");
        let rate_limit_fallbacks = prometheus::IntCounter::new(
            "rate_limit_fallbacks_total",
            "Rate-limit checks decided by the node's own buckets because the shared store (Redis) failed",
        )
        .expect("metric");
        let audit_written =
            prometheus::IntCounter::new("audit_records_written_total", "Audit records committed").expect("metric");
        let audit_queue = IntGauge::new("audit_queue_depth", "Audit records waiting to be written").expect("metric");
        let prefill_fields = IntCounterVec::new(
            Opts::new("prefill_fields_total", "Prefill fields by form and result (prefilled, unavailable)"),
            &["form", "result"],
        )
        .expect("metric");
        let partner_requests = IntCounterVec::new(
            Opts::new(
                "partner_requests_total",
                "Partner calls (prefill, exchange) by partner, action and outcome (ok, partial, refused, failed), as audited; \
                 partner \"unauthenticated\" for calls without a valid key",
            ),
            &["partner", "action", "outcome"],
        )
        .expect("metric");
        let key_expiry = prometheus::IntGaugeVec::new(
            Opts::new(
                "api_key_expiry_timestamp_seconds",
                "When each partner API key that has an expiry stops working, in seconds since the epoch",
            ),
            &["partner", "key"],
        )
        .expect("metric");
        let admin_token_expiry = prometheus::IntGaugeVec::new(
            Opts::new(
                "admin_token_expiry_timestamp_seconds",
                "When each admin token that has an expiry stops working, in seconds since the epoch",
            ),
            &["role", "token"],
        )
        .expect("metric");
        let dossier_steps = IntCounterVec::new(
            Opts::new("dossier_steps_total", "Linked-dossier steps reaching a state, by flow, step and state"),
            &["flow", "step", "state"],
        )
        .expect("metric");
        let dossier_retries = IntCounterVec::new(
            Opts::new("dossier_step_retries_total", "Linked-dossier steps tried again after a registry fault"),
            &["flow", "step"],
        )
        .expect("metric");
        let dossier_steps_overdue =
            IntGauge::new("dossier_steps_overdue", "Linked-dossier steps past their deadline and not finished")
                .expect("metric");
        for c in [
            Box::new(dossier_steps.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(dossier_retries.clone()),
            Box::new(dossier_steps_overdue.clone()),
            Box::new(http_requests.clone()),
            Box::new(http_latency.clone()),
            Box::new(upstream_requests.clone()),
            Box::new(upstream_latency.clone()),
            Box::new(schema_violations.clone()),
            Box::new(breaker_open.clone()),
            Box::new(rate_limited.clone()),
            Box::new(rate_limit_fallbacks.clone()),
            Box::new(audit_written.clone()),
            Box::new(audit_queue.clone()),
            Box::new(prefill_fields.clone()),
            Box::new(partner_requests.clone()),
            Box::new(key_expiry.clone()),
            Box::new(admin_token_expiry.clone()),
        ] {
            registry.register(c).expect("unique metric");
        }
        Metrics {
            registry,
            http_requests,
            http_latency,
            upstream_requests,
            upstream_latency,
            schema_violations,
            breaker_open,
            rate_limited,
            rate_limit_fallbacks,
            audit_written,
            audit_queue,
            prefill_fields,
            partner_requests,
            key_expiry,
            admin_token_expiry,
            dossier_steps,
            dossier_retries,
            dossier_steps_overdue,
        }
    }

    pub fn render(&self) -> String {
        let encoder = prometheus::TextEncoder::new();
        encoder.encode_to_string(&self.registry.gather()).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_dependency_changes_state_once_each_way() {
        // A subscriber of its own, so that the log's call sites are first
        // registered with one listening (as in the tests that read the log).
        let subscriber = tracing_subscriber::fmt().with_writer(std::io::sink).finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let f = Failing::new("the store", "meanwhile", "again");
        assert!(!f.answered(), "nothing to recover from yet");
        assert!(f.failed(&"down"));
        assert!(!f.failed(&"down"), "still failing: no new change");
        assert!(f.answered());
        assert!(!f.answered());
        assert!(f.failed(&"down"), "a new run of failures is a new change");
    }
}
