//! Calling a registry: one shared HTTP client; per adapter a timeout, bounded
//! retries with backoff and jitter (idempotent calls only), a concurrency
//! limit and a circuit breaker. Registry faults become 502/503/504 problems,
//! never 500.

use super::{Adapter, BodyError, MapError, MappedElements, Operation};
use crate::error::{ApiError, ErrorCode, FieldError};
use crate::telemetry::Metrics;
use parking_lot::Mutex;
use rand::Rng;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Opens after `threshold` consecutive failures; after `open_for`, lets one
/// probe through (half-open); closes on the probe's success, reopens on its failure.
pub struct Breaker {
    threshold: u32,
    open_for: Duration,
    state: Mutex<BreakerState>,
}

#[derive(Default)]
struct BreakerState {
    failures: u32,
    opened_at: Option<Instant>,
    probing: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BreakerStatus {
    Closed,
    Open,
    HalfOpen,
}

impl Breaker {
    pub fn new(threshold: u32, open_ms: u64) -> Breaker {
        Breaker { threshold: threshold.max(1), open_for: Duration::from_millis(open_ms), state: Mutex::default() }
    }

    pub fn status(&self) -> BreakerStatus {
        let s = self.state.lock();
        match s.opened_at {
            None => BreakerStatus::Closed,
            Some(t) if t.elapsed() < self.open_for => BreakerStatus::Open,
            Some(_) => BreakerStatus::HalfOpen,
        }
    }

    /// Whether a call may go out now; the seconds to wait if not.
    pub fn allow(&self) -> Result<(), u64> {
        let mut s = self.state.lock();
        match s.opened_at {
            None => Ok(()),
            Some(t) if t.elapsed() < self.open_for => Err((self.open_for - t.elapsed()).as_secs() + 1),
            Some(_) if s.probing => Err(1),
            Some(_) => {
                s.probing = true;
                Ok(())
            }
        }
    }

    pub fn success(&self) {
        let mut s = self.state.lock();
        *s = BreakerState::default();
    }

    pub fn failure(&self) {
        let mut s = self.state.lock();
        s.failures += 1;
        if s.probing || s.failures >= self.threshold {
            s.opened_at = Some(Instant::now());
            s.probing = false;
        }
    }
}

pub struct Upstream {
    pub base_url: String,
    pub auth_header: reqwest::header::HeaderName,
    pub auth_value: String,
    pub timeout: Duration,
    pub retries: u32,
    pub backoff: Duration,
    pub limit: Arc<tokio::sync::Semaphore>,
    pub breaker: Breaker,
}

/// Why an exchange did not produce elements.
#[derive(Debug)]
pub enum ExchangeError {
    /// The partner's request breaks the operation's schema (checkpoint 1) or
    /// yields an upstream request that breaks the registry's (checkpoint 2).
    InvalidRequest(Vec<FieldError>),
    /// The registry holds no such record.
    NotFound,
    Timeout,
    Unavailable(String),
    CircuitOpen(u64),
    /// The registry's answer breaks its schema (checkpoint 3), or its mapping
    /// to canonical elements fails or breaks theirs (checkpoint 4).
    InvalidResponse {
        point: &'static str,
        errors: Vec<FieldError>,
    },
}

impl ExchangeError {
    /// A short word for audit records and prefill source status.
    pub fn kind(&self) -> &'static str {
        match self {
            ExchangeError::InvalidRequest(_) => "invalid_request",
            ExchangeError::NotFound => "no_record",
            ExchangeError::Timeout => "timeout",
            ExchangeError::Unavailable(_) => "unavailable",
            ExchangeError::CircuitOpen(_) => "circuit_open",
            ExchangeError::InvalidResponse { .. } => "invalid_response",
        }
    }
}

impl From<ExchangeError> for ApiError {
    fn from(e: ExchangeError) -> ApiError {
        match e {
            ExchangeError::InvalidRequest(errors) => {
                ApiError::new(ErrorCode::InvalidBody, "The request does not match the operation's schema; see errors.")
                    .with_errors(errors)
            }
            ExchangeError::NotFound => ApiError::not_found("The registry holds no record for this request."),
            ExchangeError::Timeout => ApiError::new(ErrorCode::UpstreamTimeout, "The registry did not answer in time."),
            ExchangeError::Unavailable(why) => {
                tracing::warn!(%why, "upstream unavailable");
                ApiError::new(ErrorCode::UpstreamUnavailable, "The registry failed or could not be reached.")
            }
            ExchangeError::CircuitOpen(secs) => ApiError::new(
                ErrorCode::CircuitOpen,
                "The registry has been failing; calls to it are paused. Retry after the indicated time.",
            )
            .with_retry_after(secs),
            ExchangeError::InvalidResponse { point, errors } => {
                // Only the pointers: the messages quote the registry's (personal) data.
                let pointers: Vec<&str> = errors.iter().map(|e| e.pointer.as_str()).collect();
                tracing::warn!(point, ?pointers, "registry data failed its schema");
                ApiError::new(
                    ErrorCode::UpstreamInvalidResponse,
                    "The registry answered with data that breaks its schema; nothing of it was passed on.",
                )
            }
        }
    }
}

enum Attempt {
    Done(Value),
    NotFound,
    Retryable(ExchangeError),
    Fatal(ExchangeError),
}

impl Adapter {
    /// Runs one operation end to end: checkpoints 1-4 around the upstream call.
    /// Only the elements `wanted` accepts are mapped and returned.
    pub async fn exchange(
        &self,
        op: &Operation,
        request: &Value,
        http: &reqwest::Client,
        metrics: &Metrics,
        wanted: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<MappedElements, ExchangeError> {
        let labels = [self.id.as_str(), op.name.as_str()];
        let violation = |point: &str| metrics.schema_violations.with_label_values(&[point, &self.id]).inc();
        if let Err(errors) = op.check_request(request) {
            violation("partner_request");
            return Err(ExchangeError::InvalidRequest(errors));
        }
        let body = match op.render_body(request) {
            Ok(b) => b,
            Err(BodyError::Invalid(errors)) => {
                violation("upstream_request");
                return Err(ExchangeError::InvalidRequest(errors));
            }
            Err(BodyError::Mapping(e)) => {
                violation("upstream_request");
                return Err(ExchangeError::InvalidRequest(vec![FieldError { pointer: String::new(), message: e }]));
            }
        };
        let query = op
            .render_query(request)
            .map_err(|e| ExchangeError::InvalidRequest(vec![FieldError { pointer: String::new(), message: e }]))?;
        let url = format!("{}{}", self.upstream.base_url, op.render_path(request));

        let started = Instant::now();
        let result = self.call(op, http, &url, &query, body.as_ref()).await;
        metrics.upstream_latency.with_label_values(&labels).observe(started.elapsed().as_secs_f64());
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.kind(),
        };
        metrics.upstream_requests.with_label_values(&[labels[0], labels[1], outcome]).inc();
        metrics
            .breaker_open
            .with_label_values(&[&self.id])
            .set(i64::from(self.upstream.breaker.status() != BreakerStatus::Closed));
        let response = result?;

        if let Err(errors) = op.check_response(&response) {
            violation("upstream_response");
            self.upstream.breaker.failure();
            return Err(ExchangeError::InvalidResponse { point: "upstream_response", errors });
        }
        op.map(&response, wanted).map_err(|e| {
            violation("response");
            let errors = match e {
                MapError::Invalid(errors) => errors,
                MapError::Mapping(m) => vec![FieldError { pointer: String::new(), message: m }],
            };
            ExchangeError::InvalidResponse { point: "response", errors }
        })
    }

    async fn call(
        &self,
        op: &Operation,
        http: &reqwest::Client,
        url: &str,
        query: &[(String, String)],
        body: Option<&Value>,
    ) -> Result<Value, ExchangeError> {
        let up = &self.upstream;
        up.breaker.allow().map_err(ExchangeError::CircuitOpen)?;
        let _permit = tokio::time::timeout(up.timeout, up.limit.clone().acquire_owned())
            .await
            .map_err(|_| ExchangeError::Unavailable("concurrency limit reached".into()))?
            .map_err(|_| ExchangeError::Unavailable("adapter closed".into()))?;
        let attempts = if op.idempotent { up.retries + 1 } else { 1 };
        let mut last = ExchangeError::Unavailable("no attempt made".into());
        for attempt in 0..attempts {
            if attempt > 0 {
                let base = up.backoff * 2u32.saturating_pow(attempt - 1);
                let jitter = rand::rng().random_range(0..=up.backoff.as_millis() as u64);
                tokio::time::sleep(base + Duration::from_millis(jitter)).await;
            }
            // Boxed: the HTTP exchange's state is allocated only while it
            // runs, not carried by every call still waiting for its turn.
            match Box::pin(self.attempt(op, http, url, query, body)).await {
                Attempt::Done(v) => {
                    up.breaker.success();
                    return Ok(v);
                }
                Attempt::NotFound => {
                    up.breaker.success();
                    return Err(ExchangeError::NotFound);
                }
                Attempt::Fatal(e) => {
                    up.breaker.failure();
                    return Err(e);
                }
                Attempt::Retryable(e) => last = e,
            }
        }
        up.breaker.failure();
        Err(last)
    }

    async fn attempt(
        &self,
        op: &Operation,
        http: &reqwest::Client,
        url: &str,
        query: &[(String, String)],
        body: Option<&Value>,
    ) -> Attempt {
        let up = &self.upstream;
        let target = if query.is_empty() {
            url.to_string()
        } else {
            let encoded: Vec<String> =
                query.iter().map(|(k, v)| format!("{}={}", urlencoding::encode(k), urlencoding::encode(v))).collect();
            format!("{url}?{}", encoded.join("&"))
        };
        let mut req = http
            .request(op.method.clone(), target)
            .timeout(up.timeout)
            .header(up.auth_header.clone(), up.auth_value.as_str())
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return Attempt::Retryable(ExchangeError::Timeout),
            // The URL holds the citizen's ID: never let it reach the log.
            Err(e) => {
                return Attempt::Retryable(ExchangeError::Unavailable(format!("request failed: {}", e.without_url())))
            }
        };
        let status = resp.status().as_u16();
        if op.is_not_found(status) {
            return Attempt::NotFound;
        }
        if status >= 500 || status == 429 {
            return Attempt::Retryable(ExchangeError::Unavailable(format!("registry answered {status}")));
        }
        if (300..400).contains(&status) {
            let to = resp.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("nowhere");
            return Attempt::Fatal(ExchangeError::Unavailable(format!(
                "registry answered {status}, a redirect to {to}; redirects are not followed: \
                 point the adapter's base_url (or its credential's url) at where the registry answers"
            )));
        }
        if !(200..300).contains(&status) {
            return Attempt::Fatal(ExchangeError::Unavailable(format!("registry refused the call with {status}")));
        }
        match resp.bytes().await {
            Err(e) if e.is_timeout() => Attempt::Retryable(ExchangeError::Timeout),
            Err(e) => {
                Attempt::Retryable(ExchangeError::Unavailable(format!("reading the body failed: {}", e.without_url())))
            }
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(v) => Attempt::Done(v),
                Err(e) => Attempt::Fatal(ExchangeError::InvalidResponse {
                    point: "upstream_response",
                    errors: vec![FieldError { pointer: String::new(), message: format!("not JSON: {e}") }],
                }),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_after_consecutive_failures_and_probes_once() {
        let b = Breaker::new(3, 50);
        b.failure();
        b.failure();
        assert!(b.allow().is_ok());
        b.success();
        b.failure();
        b.failure();
        b.failure();
        assert_eq!(b.status(), BreakerStatus::Open);
        assert!(b.allow().is_err());
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(b.status(), BreakerStatus::HalfOpen);
        assert!(b.allow().is_ok(), "one probe");
        assert!(b.allow().is_err(), "only one probe at a time");
        b.failure();
        assert_eq!(b.status(), BreakerStatus::Open, "a failed probe reopens");
        std::thread::sleep(Duration::from_millis(60));
        assert!(b.allow().is_ok());
        b.success();
        assert_eq!(b.status(), BreakerStatus::Closed);
    }
}
