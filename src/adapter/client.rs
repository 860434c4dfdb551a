//! Calling a registry: one shared HTTP client; per adapter a timeout, bounded
//! retries with backoff and jitter (idempotent calls only), a concurrency
//! limit and a circuit breaker. Registry faults become 502/503/504 problems,
//! never 500.

use super::xml::Format;
use super::{Adapter, BodyError, MapError, MappedElements, Operation};
use crate::error::{ApiError, ErrorCode, FieldError};
use crate::telemetry::Metrics;
use parking_lot::{Mutex, RwLock};
use rand::Rng;
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Opens after `threshold` consecutive failures; after `open_for`, lets one
/// probe through (half-open); closes on the probe's success, reopens on its
/// failure.
///
/// A call holds a [`Leave`] from [`Breaker::leave`] and settles it once, when
/// its outcome is known (after the registry's answer passed its schema). A
/// leave dropped unsettled (the caller went away) gives its probe slot back
/// without a verdict, so the breaker never waits for a probe that will not
/// report. A call its deadline cut off (a prefill's budget) is a timeout when
/// it had waited on the registry for [`Breaker::SLOW_ENOUGH`] or its adapter's
/// timeout, whichever is shorter; cut off sooner, it tells nothing either way.
pub struct Breaker {
    threshold: u32,
    open_for: Duration,
    state: Mutex<BreakerState>,
}

#[derive(Default)]
struct BreakerState {
    failures: u32,
    opened_at: Option<Instant>,
    /// The probe out now: its number and when it left.
    probe: Option<(u64, Instant)>,
    /// Probes let out so far, to tell the current one from a stale one.
    probes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BreakerStatus {
    Closed,
    Open,
    HalfOpen,
}

/// How one call to a registry ended, as the breaker hears it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The registry answered within its contract.
    Healthy,
    /// The registry failed, timed out or broke its schema.
    Failing,
    /// Says nothing of the registry's health: it refused a request as the
    /// caller's mistake, or the call was cut off before it could tell.
    Neither,
}

/// Leave for one call to go out; see [`Breaker`].
#[must_use = "a leave is settled with the call's verdict"]
pub struct Leave<'a> {
    breaker: &'a Breaker,
    /// The probe's number, if this call is one.
    probe: Option<u64>,
    started: Instant,
    /// Cut off after this long, the call counts as a timeout.
    patience: Duration,
    settled: bool,
}

impl Leave<'_> {
    pub fn settle(mut self, verdict: Verdict) {
        self.settled = true;
        self.breaker.hear(verdict, self.probe);
    }

    /// The verdict on a call its deadline cut off now.
    fn cut_off_verdict(&self) -> Verdict {
        if self.started.elapsed() >= self.patience {
            Verdict::Failing
        } else {
            Verdict::Neither
        }
    }
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.breaker.hear(Verdict::Neither, self.probe);
        }
    }
}

impl Breaker {
    /// A call its deadline cut off after waiting this long for the registry
    /// (or its adapter's timeout, if shorter) counts as a timeout. One cut off
    /// sooner had too little time to say anything of the registry: a prefill
    /// whose budget an earlier, slower registry used up must not open the
    /// breaker of the next one.
    pub const SLOW_ENOUGH: Duration = Duration::from_millis(500);

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

    /// Leave for a call to go out now, or the seconds to wait. `timeout` is
    /// the adapter's timeout for one attempt.
    pub fn leave(&self, timeout: Duration) -> Result<Leave<'_>, u64> {
        let mut s = self.state.lock();
        let probe = match (s.opened_at, s.probe) {
            (None, _) => None,
            (Some(t), _) if t.elapsed() < self.open_for => return Err(secs_until(t, self.open_for)),
            // One probe at a time; one out longer than `open_for` is stale
            // (a registry that hung it may answer others again), and the
            // next call probes beside it.
            (Some(_), Some((_, left))) if left.elapsed() < self.open_for => {
                return Err(secs_until(left, self.open_for))
            }
            (Some(_), _) => {
                s.probes += 1;
                s.probe = Some((s.probes, Instant::now()));
                Some(s.probes)
            }
        };
        Ok(Leave {
            breaker: self,
            probe,
            started: Instant::now(),
            patience: timeout.min(Self::SLOW_ENOUGH),
            settled: false,
        })
    }

    fn hear(&self, verdict: Verdict, probe: Option<u64>) {
        let mut s = self.state.lock();
        let current_probe = probe.is_some() && s.probe.map(|(n, _)| n) == probe;
        match verdict {
            Verdict::Healthy => *s = BreakerState { probes: s.probes, ..BreakerState::default() },
            Verdict::Failing => {
                s.failures += 1;
                if current_probe || s.failures >= self.threshold {
                    s.opened_at = Some(Instant::now());
                    s.probe = None;
                }
            }
            // Half-open still: the next call probes.
            Verdict::Neither if current_probe => s.probe = None,
            Verdict::Neither => {}
        }
    }
}

/// Whole seconds, rounded up, until `span` has passed since `since`.
fn secs_until(since: Instant, span: Duration) -> u64 {
    span.saturating_sub(since.elapsed()).as_secs() + 1
}

/// A registry's login operation, compiled from the manifest.
pub struct Login {
    pub path: String,
    pub format: Format,
    pub soap_action: Option<String>,
    /// From `{username, password}` to the login request.
    pub body: super::mapping::Mapping,
    /// From the answer to the token.
    pub token: super::mapping::Mapping,
    /// From the answer to the token's lifetime in seconds.
    pub expires_in: Option<super::mapping::Mapping>,
}

/// A token is renewed this long before it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(30);

impl Adapter {
    /// The token to present, logging in when there is none yet, it is about
    /// to expire, or `fresh` asks (the registry refused the last one).
    /// `None` when this upstream does not log in.
    async fn login_token(&self, http: &reqwest::Client, fresh: bool) -> Option<Result<String, ExchangeError>> {
        let up = &self.upstream;
        let login = up.login.as_ref()?;
        let secret = up.login_secret.read().clone()?;
        let mut held = up.token.lock().await;
        if let Some((token, renew_at)) = held.as_ref() {
            if !fresh && Instant::now() < *renew_at {
                return Some(Ok(token.clone()));
            }
        }
        *held = None;
        let issued = self.log_in(http, login, &secret).await;
        Some(issued.map(|(token, lifetime)| {
            let renew_at = Instant::now() + lifetime.saturating_sub(RENEW_BEFORE).max(Duration::from_secs(1));
            *held = Some((token.clone(), renew_at));
            tracing::info!(adapter = %self.id, lifetime_s = lifetime.as_secs(), "logged in to the registry");
            token
        }))
    }

    async fn log_in(
        &self,
        http: &reqwest::Client,
        login: &Login,
        (username, password): &(String, String),
    ) -> Result<(String, Duration), ExchangeError> {
        let failed = |why: String| ExchangeError::Unavailable(format!("login failed: {why}"));
        let input = serde_json::json!({ "username": username, "password": password });
        let body = login.body.run(&input).map_err(|e| failed(format!("the login body program: {e}")))?;
        let bytes = login.format.encode(&body).map_err(failed)?;
        let req = http.post(format!("{}{}", self.upstream.base_url, login.path)).timeout(self.upstream.timeout);
        let req = in_format(req, login.format, login.soap_action.as_deref(), Some(&bytes));
        let resp = req.send().await.map_err(|e| {
            if e.is_timeout() {
                ExchangeError::Timeout
            } else {
                failed(e.without_url().to_string())
            }
        })?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| failed(e.without_url().to_string()))?;
        if login.format == Format::Json && !(200..300).contains(&status) {
            return Err(failed(format!("the registry answered {status}")));
        }
        let answer = match login.format.decode(&bytes, &Value::Null).map_err(failed)? {
            Ok(v) => v,
            // The registry's own code says why (a wrong password, a locked account).
            Err(fault) => return Err(failed(format!("SOAP fault {} {}", fault.code, fault.subcode))),
        };
        let token = match login.token.run(&answer) {
            Ok(Value::String(t)) if !t.is_empty() => t,
            _ => return Err(failed("the token program found no token in the answer".into())),
        };
        let lifetime = match &login.expires_in {
            Some(p) => match p.run(&answer) {
                Ok(v) => v
                    .as_f64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                    .filter(|s| *s > 0.0)
                    .ok_or_else(|| failed("the expires_in program gave no number of seconds".into()))?,
                Err(e) => return Err(failed(format!("the expires_in program: {e}"))),
            },
            None => 300.0,
        };
        Ok((token, Duration::from_secs_f64(lifetime.min(86_400.0 * 30.0))))
    }
}

pub struct Upstream {
    pub base_url: String,
    /// The name of the credential the manifest's calls present.
    pub credential: String,
    /// The manifest's auth header and the prefix before a static token.
    pub auth_header: reqwest::header::HeaderName,
    pub auth_prefix: String,
    /// How the registry's login operation issues tokens, if it has one.
    pub login: Option<Login>,
    /// The login credential, when the stored credential is of that kind.
    pub login_secret: RwLock<Option<(String, String)>>,
    /// The last token issued and when to log in again; one login at a time.
    pub token: tokio::sync::Mutex<Option<(String, Instant)>>,
    /// The header the calls present now: set from the node's configuration
    /// or the stored credential at each catalogue load, so that a rotated
    /// credential takes effect without recompiling the adapter (and without
    /// resetting its breaker).
    pub auth: RwLock<Arc<(reqwest::header::HeaderName, reqwest::header::HeaderValue)>>,
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
    /// The registry refused lgsp's request as the caller's mistake (a 4xx
    /// other than not-found, credentials or overload): the registry is well,
    /// the request is not.
    Rejected(u16),
    Timeout,
    /// The caller's deadline (a prefill's budget) passed first.
    BudgetExceeded,
    Unavailable(String),
    CircuitOpen(u64),
    /// The registry's answer breaks its schema (checkpoint 3), or its mapping
    /// to canonical elements fails or breaks theirs (checkpoint 4).
    InvalidResponse {
        point: &'static str,
        errors: Vec<FieldError>,
    },
    /// A SOAP registry answered with a fault.
    Fault(super::xml::Fault),
}

/// How one registry call ended, in the words of audit records, metrics
/// (`lgsp_upstream_requests_total`), a prefill's sources and a dry run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    Ok,
    NoRecord,
    InvalidRequest,
    Rejected,
    Timeout,
    BudgetExceeded,
    Unavailable,
    CircuitOpen,
    InvalidResponse,
    /// A SOAP registry answered with a fault.
    Fault,
    /// Whoever awaited the call went away before it ended.
    Cancelled,
}

impl CallOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Ok => "ok",
            CallOutcome::NoRecord => "no_record",
            CallOutcome::InvalidRequest => "invalid_request",
            CallOutcome::Rejected => "rejected",
            CallOutcome::Timeout => "timeout",
            CallOutcome::BudgetExceeded => "budget_exceeded",
            CallOutcome::Unavailable => "unavailable",
            CallOutcome::CircuitOpen => "circuit_open",
            CallOutcome::InvalidResponse => "invalid_response",
            CallOutcome::Fault => "fault",
            CallOutcome::Cancelled => "cancelled",
        }
    }

    /// Whether the registry answered: a missing record is an answer.
    pub fn answered(self) -> bool {
        matches!(self, CallOutcome::Ok | CallOutcome::NoRecord)
    }
}

impl std::fmt::Display for CallOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ExchangeError {
    /// How the call ended, for audit records and prefill source status.
    pub fn kind(&self) -> CallOutcome {
        match self {
            ExchangeError::InvalidRequest(_) => CallOutcome::InvalidRequest,
            ExchangeError::NotFound => CallOutcome::NoRecord,
            ExchangeError::Rejected(_) => CallOutcome::Rejected,
            ExchangeError::Timeout => CallOutcome::Timeout,
            ExchangeError::BudgetExceeded => CallOutcome::BudgetExceeded,
            ExchangeError::Unavailable(_) => CallOutcome::Unavailable,
            ExchangeError::CircuitOpen(_) => CallOutcome::CircuitOpen,
            ExchangeError::InvalidResponse { .. } => CallOutcome::InvalidResponse,
            ExchangeError::Fault(_) => CallOutcome::Fault,
        }
    }

    /// What this outcome says of the registry's health.
    fn verdict(&self) -> Verdict {
        match self {
            ExchangeError::NotFound => Verdict::Healthy,
            // Neither is the registry's doing: a request lgsp refused before
            // the call, or one the registry refused as the caller's mistake.
            ExchangeError::InvalidRequest(_) | ExchangeError::Rejected(_) | ExchangeError::CircuitOpen(_) => {
                Verdict::Neither
            }
            ExchangeError::Timeout | ExchangeError::Unavailable(_) | ExchangeError::InvalidResponse { .. } => {
                Verdict::Failing
            }
            // A fault the registry lays on the request says nothing of its health.
            ExchangeError::Fault(f) if f.is_senders() => Verdict::Neither,
            ExchangeError::Fault(_) => Verdict::Failing,
            // Decided by how long the call had waited: see `Breaker`.
            ExchangeError::BudgetExceeded => Verdict::Neither,
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
            ExchangeError::Rejected(status) => ApiError::new(
                ErrorCode::UpstreamRejected,
                format!(
                    "The registry refused this request as invalid (HTTP {status}): check the values sent against \
                     the operation's request_schema in GET /v1/adapters."
                ),
            ),
            ExchangeError::Timeout | ExchangeError::BudgetExceeded => {
                ApiError::new(ErrorCode::UpstreamTimeout, "The registry did not answer in time.")
            }
            ExchangeError::Unavailable(why) => {
                tracing::warn!(%why, "upstream unavailable");
                ApiError::new(ErrorCode::UpstreamUnavailable, "The registry failed or could not be reached.")
            }
            ExchangeError::CircuitOpen(secs) => ApiError::new(
                ErrorCode::CircuitOpen,
                "The registry has been failing; calls to it are paused. Retry after the indicated time.",
            )
            .with_retry_after(secs),
            ExchangeError::Fault(f) => {
                tracing::warn!(code = %f.code, subcode = %f.subcode, "registry answered with a SOAP fault");
                let whose = if f.is_senders() { "refused the request" } else { "failed" };
                let own = if f.subcode.is_empty() { String::new() } else { format!(" ({})", f.subcode) };
                ApiError::new(
                    ErrorCode::UpstreamFault,
                    format!("The registry {whose} with a SOAP fault {}{own}.", f.code),
                )
            }
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

/// A request in the registry's format: what it accepts and, with a body,
/// its content type and SOAP action.
fn in_format(
    req: reqwest::RequestBuilder,
    format: Format,
    action: Option<&str>,
    body: Option<&[u8]>,
) -> reqwest::RequestBuilder {
    let mut req = req.header(reqwest::header::ACCEPT, format.accept());
    if let Some(b) = body {
        req = req.header(reqwest::header::CONTENT_TYPE, format.content_type(action)).body(b.to_vec());
        if format == Format::Soap11 {
            req = req.header("SOAPAction", format!("\"{}\"", action.unwrap_or("")));
        }
    }
    req
}

/// A fault the operation declares as "no such record", or the fault.
fn fault_or_not_found(op: &Operation, fault: super::xml::Fault) -> ExchangeError {
    let declared = |c: &str| !c.is_empty() && op.not_found_faults.iter().any(|f| f == c);
    if declared(&fault.subcode) || declared(&fault.code) {
        ExchangeError::NotFound
    } else {
        ExchangeError::Fault(fault)
    }
}

enum Attempt {
    Done(Value),
    Failed(ExchangeError),
    Retryable(ExchangeError),
}

/// One call's bookkeeping: its leave from the breaker, and its count and
/// latency in the metrics. Settled once, when its outcome is known; a call
/// dropped before that (whoever awaited it went away) is counted as
/// `cancelled`, and its leave, dropped with it, tells the breaker nothing.
struct CallRecord<'a> {
    leave: Option<Leave<'a>>,
    adapter: &'a Adapter,
    operation: &'a str,
    metrics: &'a Metrics,
    started: Instant,
}

impl CallRecord<'_> {
    fn count(&self, outcome: CallOutcome) {
        let labels = [self.adapter.id.as_str(), self.operation];
        self.metrics.upstream_latency.with_label_values(&labels).observe(self.started.elapsed().as_secs_f64());
        self.metrics.upstream_requests.with_label_values(&[labels[0], labels[1], outcome.as_str()]).inc();
    }

    fn show_breaker(&self) {
        let open = self.adapter.upstream.breaker.status() != BreakerStatus::Closed;
        self.metrics.breaker_open.with_label_values(&[&self.adapter.id]).set(i64::from(open));
    }

    fn settle(mut self, outcome: CallOutcome, verdict: Verdict) {
        self.count(outcome);
        if let Some(leave) = self.leave.take() {
            leave.settle(verdict);
        }
        self.show_breaker();
    }
}

impl Drop for CallRecord<'_> {
    fn drop(&mut self) {
        if let Some(leave) = self.leave.take() {
            self.count(CallOutcome::Cancelled);
            drop(leave);
            self.show_breaker();
        }
    }
}

impl Adapter {
    /// Runs one operation end to end: checkpoints 1-4 around the upstream call.
    /// Only the elements `wanted` accepts are mapped and returned. A call
    /// still out at `deadline` ends as `BudgetExceeded`.
    pub async fn exchange(
        &self,
        op: &Operation,
        request: &Value,
        http: &reqwest::Client,
        metrics: &Metrics,
        wanted: &(dyn Fn(&str) -> bool + Sync),
        deadline: Option<tokio::time::Instant>,
    ) -> Result<MappedElements, ExchangeError> {
        let response = self.checked_call(op, request, http, metrics, deadline, None).await?;
        op.map(&response, wanted).map_err(|e| self.invalid_output(metrics, e))
    }

    /// [`Adapter::exchange`] for a dry run: the registry's answer as it came
    /// (once it passed its schema) beside what was mapped from it.
    pub async fn exchange_showing(
        &self,
        op: &Operation,
        request: &Value,
        http: &reqwest::Client,
        metrics: &Metrics,
    ) -> (Option<Value>, Result<MappedElements, ExchangeError>) {
        match self.checked_call(op, request, http, metrics, None, None).await {
            Ok(raw) => {
                let mapped = op.map(&raw, &|_| true).map_err(|e| self.invalid_output(metrics, e));
                (Some(raw), mapped)
            }
            Err(e) => (None, Err(e)),
        }
    }

    /// A flow step's call: a write (sent with `key` in the operation's
    /// idempotency header) or a status look-up, with its outcome mapped and
    /// checked. The four checkpoints apply as to any exchange.
    pub async fn carry(
        &self,
        op: &Operation,
        request: &Value,
        key: Option<&str>,
        http: &reqwest::Client,
        metrics: &Metrics,
    ) -> Result<Value, ExchangeError> {
        let key = match (&op.idempotency_header, key) {
            (Some(h), Some(k)) => Some((h, k)),
            _ => None,
        };
        let response = self.checked_call(op, request, http, metrics, None, key).await?;
        op.outcome(&response).map_err(|e| self.invalid_output(metrics, e))
    }

    fn invalid_output(&self, metrics: &Metrics, e: MapError) -> ExchangeError {
        metrics.schema_violations.with_label_values(&["response", &self.id]).inc();
        let errors = match e {
            MapError::Invalid(errors) => errors,
            MapError::Mapping(m) => vec![FieldError { pointer: String::new(), message: m }],
        };
        ExchangeError::InvalidResponse { point: "response", errors }
    }

    /// Checkpoints 1-3 around the upstream call, under the breaker: the
    /// registry's response, checked against its schema.
    async fn checked_call(
        &self,
        op: &Operation,
        request: &Value,
        http: &reqwest::Client,
        metrics: &Metrics,
        deadline: Option<tokio::time::Instant>,
        key: Option<(&reqwest::header::HeaderName, &str)>,
    ) -> Result<Value, ExchangeError> {
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

        let mut record =
            CallRecord { leave: None, adapter: self, operation: &op.name, metrics, started: Instant::now() };
        match self.upstream.breaker.leave(self.upstream.timeout) {
            Ok(leave) => record.leave = Some(leave),
            Err(secs) => {
                let refused = ExchangeError::CircuitOpen(secs);
                record.settle(refused.kind(), refused.verdict());
                return Err(refused);
            }
        }
        // The outcome is decided once, after the registry's answer has
        // passed its schema (checkpoint 3): an answer out of schema is a
        // failing registry, however well its HTTP went.
        let call = self.call(op, http, &url, &query, body.as_deref(), key);
        let answered = match deadline {
            Some(at) => tokio::time::timeout_at(at, call).await.unwrap_or(Err(ExchangeError::BudgetExceeded)),
            None => call.await,
        };
        let result = answered.and_then(|response| match op.check_response(&response) {
            Ok(()) => Ok(response),
            Err(errors) => {
                violation("upstream_response");
                Err(ExchangeError::InvalidResponse { point: "upstream_response", errors })
            }
        });
        match &result {
            Ok(_) => record.settle(CallOutcome::Ok, Verdict::Healthy),
            Err(ExchangeError::BudgetExceeded) => {
                let verdict = record.leave.as_ref().map_or(Verdict::Neither, Leave::cut_off_verdict);
                let outcome =
                    if verdict == Verdict::Failing { CallOutcome::Timeout } else { CallOutcome::BudgetExceeded };
                record.settle(outcome, verdict);
            }
            Err(e) => record.settle(e.kind(), e.verdict()),
        }
        result
    }

    /// The HTTP exchange with the registry, retried as the adapter allows;
    /// the breaker is the caller's to settle.
    async fn call(
        &self,
        op: &Operation,
        http: &reqwest::Client,
        url: &str,
        query: &[(String, String)],
        body: Option<&[u8]>,
        key: Option<(&reqwest::header::HeaderName, &str)>,
    ) -> Result<Value, ExchangeError> {
        let up = &self.upstream;
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
            match Box::pin(self.attempt(op, http, url, query, body, key)).await {
                Attempt::Done(v) => return Ok(v),
                Attempt::Failed(e) => return Err(e),
                Attempt::Retryable(e) => last = e,
            }
        }
        Err(last)
    }

    async fn attempt(
        &self,
        op: &Operation,
        http: &reqwest::Client,
        url: &str,
        query: &[(String, String)],
        body: Option<&[u8]>,
        key: Option<(&reqwest::header::HeaderName, &str)>,
    ) -> Attempt {
        let up = &self.upstream;
        let target = if query.is_empty() {
            url.to_string()
        } else {
            let encoded: Vec<String> =
                query.iter().map(|(k, v)| format!("{}={}", urlencoding::encode(k), urlencoding::encode(v))).collect();
            format!("{url}?{}", encoded.join("&"))
        };
        // A registry that issues tokens is logged in to first, and again at
        // once when it refuses the token it issued (it may have restarted).
        let mut fresh = false;
        let resp = loop {
            let auth = up.auth.read().clone();
            let value = match self.login_token(http, fresh).await {
                None => auth.1.clone(),
                Some(Ok(token)) => {
                    match reqwest::header::HeaderValue::from_str(&format!("{}{token}", up.auth_prefix)) {
                        Ok(v) => v,
                        Err(_) => {
                            return Attempt::Failed(ExchangeError::Unavailable(
                                "the login token fits in no header".into(),
                            ))
                        }
                    }
                }
                Some(Err(e)) => return Attempt::Failed(e),
            };
            let req = http.request(op.method.clone(), target.clone()).timeout(up.timeout).header(auth.0.clone(), value);
            let req = match key {
                Some((header, key)) => req.header(header.clone(), key),
                None => req,
            };
            let req = in_format(req, op.format, op.soap_action.as_deref(), body);
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) if e.is_timeout() => return Attempt::Retryable(ExchangeError::Timeout),
                // The URL holds the citizen's ID: never let it reach the log.
                Err(e) => {
                    return Attempt::Retryable(ExchangeError::Unavailable(format!(
                        "request failed: {}",
                        e.without_url()
                    )))
                }
            };
            if resp.status() == 401 && !fresh && up.login.is_some() && up.login_secret.read().is_some() {
                fresh = true;
                continue;
            }
            break resp;
        };
        let status = resp.status().as_u16();
        if op.is_not_found(status) {
            return Attempt::Failed(ExchangeError::NotFound);
        }
        if status == 408 {
            return Attempt::Retryable(ExchangeError::Timeout);
        }
        // A SOAP registry answers a fault with 500 (1.1), or 400 or 500 (1.2).
        if op.format.is_soap() && matches!(status, 400 | 500) {
            let Ok(bytes) = resp.bytes().await else {
                return Attempt::Retryable(ExchangeError::Unavailable(format!("registry answered {status}")));
            };
            return match op.format.decode(&bytes, &Value::Null) {
                Ok(Err(fault)) => Attempt::Failed(fault_or_not_found(op, fault)),
                _ if status == 400 => Attempt::Failed(ExchangeError::Rejected(status)),
                _ => Attempt::Retryable(ExchangeError::Unavailable(format!("registry answered {status}"))),
            };
        }
        if status >= 500 || status == 429 {
            return Attempt::Retryable(ExchangeError::Unavailable(format!("registry answered {status}")));
        }
        if (300..400).contains(&status) {
            let to = resp.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("nowhere");
            return Attempt::Failed(ExchangeError::Unavailable(format!(
                "registry answered {status}, a redirect to {to}; redirects are not followed: \
                 point the adapter's base_url (or its credential's url) at where the registry answers"
            )));
        }
        // lgsp's own credential refused: the registry cannot be used until
        // a steward mends it, whoever asked.
        if matches!(status, 401 | 403 | 407) {
            return Attempt::Failed(ExchangeError::Unavailable(format!(
                "registry refused lgsp's credential with {status}: check the adapter's credential"
            )));
        }
        if (400..500).contains(&status) {
            return Attempt::Failed(ExchangeError::Rejected(status));
        }
        if !(200..300).contains(&status) {
            return Attempt::Failed(ExchangeError::Unavailable(format!("registry answered {status}")));
        }
        match resp.bytes().await {
            Err(e) if e.is_timeout() => Attempt::Retryable(ExchangeError::Timeout),
            Err(e) => {
                Attempt::Retryable(ExchangeError::Unavailable(format!("reading the body failed: {}", e.without_url())))
            }
            Ok(bytes) => {
                let not_readable = |message: String| {
                    Attempt::Failed(ExchangeError::InvalidResponse {
                        point: "upstream_response",
                        errors: vec![FieldError { pointer: String::new(), message }],
                    })
                };
                match op.format.decode(&bytes, &op.response_schema) {
                    Ok(Ok(v)) => Attempt::Done(v),
                    Ok(Err(fault)) => Attempt::Failed(fault_or_not_found(op, fault)),
                    Err(e) => not_readable(e),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_millis(2_000);

    fn fail(b: &Breaker) {
        b.leave(TIMEOUT).expect("leave").settle(Verdict::Failing);
    }

    #[test]
    fn breaker_opens_after_consecutive_failures_and_probes_once() {
        let b = Breaker::new(3, 50);
        fail(&b);
        fail(&b);
        b.leave(TIMEOUT).expect("still closed").settle(Verdict::Healthy);
        fail(&b);
        fail(&b);
        fail(&b);
        assert_eq!(b.status(), BreakerStatus::Open);
        assert!(b.leave(TIMEOUT).is_err());
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(b.status(), BreakerStatus::HalfOpen);
        let probe = b.leave(TIMEOUT).expect("one probe");
        assert!(b.leave(TIMEOUT).is_err(), "only one probe at a time");
        probe.settle(Verdict::Failing);
        assert_eq!(b.status(), BreakerStatus::Open, "a failed probe reopens");
        std::thread::sleep(Duration::from_millis(60));
        b.leave(TIMEOUT).expect("probe").settle(Verdict::Healthy);
        assert_eq!(b.status(), BreakerStatus::Closed);
    }

    #[test]
    fn a_callers_mistake_neither_opens_nor_closes_the_breaker() {
        let b = Breaker::new(2, 50);
        for _ in 0..10 {
            b.leave(TIMEOUT).expect("closed").settle(Verdict::Neither);
        }
        assert_eq!(b.status(), BreakerStatus::Closed);
        fail(&b);
        b.leave(TIMEOUT).expect("closed").settle(Verdict::Neither);
        fail(&b);
        assert_eq!(b.status(), BreakerStatus::Open, "failures on either side of a mistake are consecutive");
        std::thread::sleep(Duration::from_millis(60));
        b.leave(TIMEOUT).expect("probe").settle(Verdict::Neither);
        assert_eq!(b.status(), BreakerStatus::HalfOpen, "a probe refused as the caller's mistake proves nothing");
        b.leave(TIMEOUT).expect("the next call probes").settle(Verdict::Healthy);
        assert_eq!(b.status(), BreakerStatus::Closed);
    }

    #[test]
    fn a_probe_dropped_unsettled_lets_the_next_one_through() {
        let b = Breaker::new(1, 20);
        fail(&b);
        std::thread::sleep(Duration::from_millis(30));
        let probe = b.leave(TIMEOUT).expect("probe");
        std::thread::sleep(Duration::from_millis(30));
        // Its caller went away: no verdict, but the slot is free again.
        drop(probe);
        assert_eq!(b.status(), BreakerStatus::HalfOpen);
        b.leave(TIMEOUT).expect("the slot was given back").settle(Verdict::Healthy);
        assert_eq!(b.status(), BreakerStatus::Closed);
    }

    #[test]
    fn a_probe_out_longer_than_the_open_time_lets_another_through() {
        let b = Breaker::new(2, 20);
        fail(&b);
        fail(&b);
        std::thread::sleep(Duration::from_millis(30));
        let hung = b.leave(TIMEOUT).expect("probe");
        assert!(b.leave(TIMEOUT).is_err(), "one probe at a time");
        std::thread::sleep(Duration::from_millis(30));
        b.leave(TIMEOUT).expect("the hung probe is stale").settle(Verdict::Healthy);
        assert_eq!(b.status(), BreakerStatus::Closed);
        hung.settle(Verdict::Failing);
        assert_eq!(b.status(), BreakerStatus::Closed, "the stale probe's failure is one ordinary failure");
        fail(&b);
        assert_eq!(b.status(), BreakerStatus::Open, "and counts towards the threshold");
    }

    #[test]
    fn a_call_cut_off_by_its_deadline_is_a_timeout_only_once_it_waited_long_enough() {
        let short = Duration::from_millis(10);
        let leave = Breaker::new(1, 20).leave(short).map(|l| l.cut_off_verdict());
        assert_eq!(leave.ok(), Some(Verdict::Neither), "cut off at once: no verdict");
        let b = Breaker::new(1, 20);
        let leave = b.leave(short).expect("closed");
        std::thread::sleep(Duration::from_millis(15));
        assert_eq!(leave.cut_off_verdict(), Verdict::Failing, "waited past its adapter's timeout");
        leave.settle(Verdict::Failing);
        assert_eq!(b.status(), BreakerStatus::Open);
        let long = Breaker::new(1, 20);
        let leave = long.leave(Duration::from_secs(30)).expect("closed");
        assert_eq!(leave.patience, Breaker::SLOW_ENOUGH, "a long adapter timeout waits no longer than this");
        leave.settle(Verdict::Neither);
    }
}
