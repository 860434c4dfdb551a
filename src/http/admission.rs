//! The audit record of a call, and the admission of a partner's metered
//! calls (prefill, exchange, a citizen's access log): a live key, from the
//! partner's networks, within its quota. A handler that takes [`Admitted`]
//! runs only for an admitted call, and every refusal is audited before the
//! handler is reached, so neither the check nor its record can be left out.

use crate::audit::{Action, AuditRecord, Outcome};
use crate::elements::Elements;
use crate::error::{ApiError, ErrorCode};
use crate::http::caller::{check_network, partner_caller, PartnerCaller};
use crate::http::middleware::RequestId;
use crate::ratelimit::Decision;
use crate::state::AppState;
use actix_web::dev::Payload;
use actix_web::http::header::HeaderValue;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest, HttpResponse};
use futures_util::future::LocalBoxFuture;
use futures_util::FutureExt;
use serde_json::json;
use std::marker::PhantomData;
use std::time::Instant;

/// The audit record of one call, filled in as the call proceeds.
pub struct Audit {
    started: Instant,
    pub record: AuditRecord,
    rate: Option<Decision>,
}

impl Audit {
    pub fn start(req: &HttpRequest, action: Action, resource: String) -> Audit {
        let request_id = req.extensions().get::<RequestId>().map(|r| r.0.clone()).unwrap_or_default();
        Audit { started: Instant::now(), record: AuditRecord::new(request_id, action, resource), rate: None }
    }

    /// Sets the status, outcome and latency from the call's result.
    fn settle(&mut self, result: &Result<HttpResponse, ApiError>) {
        match result {
            Ok(resp) => {
                self.record.latency_us = self.started.elapsed().as_micros() as i64;
                self.record.status = resp.status().as_u16();
            }
            Err(e) => self.settle_error(e),
        }
    }

    fn settle_error(&mut self, e: &ApiError) {
        let r = &mut self.record;
        r.latency_us = self.started.elapsed().as_micros() as i64;
        r.status = e.code.status().as_u16();
        r.outcome = if r.status < 500 { Outcome::Refused } else { Outcome::Failed };
        r.detail["error"] = json!(e.code.as_str());
        r.detail["reason"] = json!(e.detail);
    }

    /// Records an admin call (`action` `admin`): the token that made it, if
    /// any was accepted, what it sent, and the citizen a dry run read.
    pub async fn finish_admin(
        mut self,
        state: &AppState,
        req: &HttpRequest,
        body: &[u8],
        result: Result<HttpResponse, ApiError>,
    ) -> Result<HttpResponse, ApiError> {
        self.settle(&result);
        let r = &mut self.record;
        if let Some(caller) = req.extensions().get::<crate::catalog::AdminCaller>() {
            r.key_id = caller.token_id.clone();
            r.detail["role"] = json!(caller.role.as_str());
        }
        r.detail["method"] = json!(req.method().as_str());
        r.note_sent(body);
        state.audit.record(self.record).await;
        result
    }

    /// Records the call and adds the rate-limit headers to its answer.
    pub async fn finish(
        mut self,
        state: &AppState,
        result: Result<HttpResponse, ApiError>,
    ) -> Result<HttpResponse, ApiError> {
        self.settle(&result);
        let rate = self.record_partner_call(state).await;
        let Some(d) = rate else { return result };
        match result {
            Ok(mut resp) => {
                for (name, value) in d.headers() {
                    if let (Ok(n), Ok(v)) = (
                        actix_web::http::header::HeaderName::from_bytes(name.as_bytes()),
                        HeaderValue::from_str(&value),
                    ) {
                        resp.headers_mut().insert(n, v);
                    }
                }
                Ok(resp)
            }
            Err(e) => Err(with_rate_headers(e, d)),
        }
    }

    /// Records a call refused before its handler ran, and returns the
    /// refusal with the rate-limit headers.
    async fn refuse(mut self, state: &AppState, refused: ApiError) -> ApiError {
        self.settle_error(&refused);
        match self.record_partner_call(state).await {
            Some(d) => with_rate_headers(refused, d),
            None => refused,
        }
    }

    /// Counts a partner's call and stores its record; its rate-limit
    /// decision, if it reached the limiter.
    async fn record_partner_call(self, state: &AppState) -> Option<Decision> {
        let r = &self.record;
        // Only authenticated partners name a series: a caller's own claims
        // never add one.
        let partner = if r.partner_id.is_empty() { "unauthenticated" } else { r.partner_id.as_str() };
        state.metrics.partner_requests.with_label_values(&[partner, r.action.as_str(), r.outcome.as_str()]).inc();
        let mut record = self.record;
        let sensitive = sensitive_of(&record.elements, &state.catalog.get().elements);
        if !sensitive.is_empty() {
            record.detail["sensitive"] = json!(sensitive);
        }
        state.audit.record(record).await;
        self.rate
    }
}

fn with_rate_headers(mut e: ApiError, d: Decision) -> ApiError {
    for (name, value) in d.headers() {
        e = e.with_header(name, value);
    }
    e
}

/// Authenticates the partner and takes one request from its quota.
async fn admit(req: &HttpRequest, state: &AppState, audit: &mut Audit) -> Result<PartnerCaller, ApiError> {
    let catalog = state.catalog.get();
    let caller = partner_caller(req, &catalog)?;
    audit.record.partner_id = caller.partner.id.clone();
    audit.record.key_id = caller.key_id.clone();
    // Refused under the partner's name: a genuine key used from elsewhere
    // is what its security officer looks for.
    check_network(req, &state.settings.trusted_proxies, &caller.partner)?;
    let p = &caller.partner;
    let d = state.limits.check(&p.id, p.rate_per_minute, p.burst).await;
    audit.rate = Some(d);
    if !d.allowed {
        state.metrics.rate_limited.with_label_values(&[&p.id]).inc();
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "Partner {} may make {} requests per minute (bursts of {}); retry after {} s.",
                p.id, p.rate_per_minute, p.burst, d.retry_after
            ),
        )
        .with_retry_after(d.retry_after));
    }
    Ok(caller)
}

/// A kind of metered partner call: what its audit record is of.
pub trait Metered: 'static {
    const ACTION: Action;
    /// Whether the call has a body, read before admission is decided.
    const BODY: bool;
    /// The record's resource, as far as the request's path tells it.
    fn resource(req: &HttpRequest) -> String;
}

/// `POST /v1/prefill`: the resource is the form, read from the body later.
pub struct PrefillCall;

impl Metered for PrefillCall {
    const ACTION: Action = Action::Prefill;
    const BODY: bool = true;
    fn resource(_: &HttpRequest) -> String {
        String::new()
    }
}

/// `POST /v1/exchange/{adapter}/{operation}`.
pub struct ExchangeCall;

impl Metered for ExchangeCall {
    const ACTION: Action = Action::Exchange;
    const BODY: bool = true;
    fn resource(req: &HttpRequest) -> String {
        // Decoded as the handler's own `Path` decodes it.
        match web::Path::<(String, String)>::extract(req).now_or_never() {
            Some(Ok(path)) => {
                let (adapter, operation) = path.into_inner();
                format!("{adapter}.{operation}")
            }
            _ => String::new(),
        }
    }
}

/// `GET /v1/subjects/{citizen_id}/access-log`.
pub struct AccessLogCall;

impl Metered for AccessLogCall {
    const ACTION: Action = Action::AccessLog;
    const BODY: bool = false;
    fn resource(_: &HttpRequest) -> String {
        "access_log".into()
    }
}

/// `/v1/linked-dossiers…`: filing, reading, supplementing or withdrawing a
/// dossier; the resource is the dossier, as far as the path names it.
pub struct DossierCall;

impl Metered for DossierCall {
    const ACTION: Action = Action::Dossier;
    const BODY: bool = true;
    fn resource(req: &HttpRequest) -> String {
        match req.match_info().get("code") {
            Some(code) => format!("linked_dossier/{code}"),
            None => "linked_dossier".into(),
        }
    }
}

/// `/v1/dossiers…`: the one-stop system reporting a dossier or its changes.
pub struct SyncCall;

impl Metered for SyncCall {
    const ACTION: Action = Action::Dossier;
    const BODY: bool = true;
    fn resource(req: &HttpRequest) -> String {
        match req.match_info().get("code") {
            Some(code) => format!("dossiers/{code}"),
            None => "dossiers".into(),
        }
    }
}

/// `GET /v1/subjects/{citizen_id}/results`.
pub struct ResultsCall;

impl Metered for ResultsCall {
    const ACTION: Action = Action::Dossier;
    const BODY: bool = false;
    fn resource(_: &HttpRequest) -> String {
        "results".into()
    }
}

/// A partner's call of kind `M`, admitted: who made it, its audit record to
/// fill in and finish, and its body, read once and kept for the record.
pub struct Admitted<M> {
    pub caller: PartnerCaller,
    pub audit: Audit,
    pub body: Vec<u8>,
    kind: PhantomData<M>,
}

impl<M: Metered> FromRequest for Admitted<M> {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, actix_web::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let body = M::BODY.then(|| web::Bytes::from_request(&req, payload));
        Box::pin(async move {
            // The body first, as a handler's body argument is read: a body
            // over the limit is refused before the key is looked at.
            let body = match body {
                // Copied out of actix's buffer, which is at least 8 KB
                // whatever the body's size: a call in flight holds only
                // what it was sent.
                Some(read) => read.await?.to_vec(),
                None => Vec::new(),
            };
            let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
                return Err(ApiError::internal("no application state").into());
            };
            let mut audit = Audit::start(&req, M::ACTION, M::resource(&req));
            match admit(&req, &state, &mut audit).await {
                Ok(caller) => Ok(Admitted { caller, audit, body, kind: PhantomData }),
                Err(refused) => Err(audit.refuse(&state, refused).await.into()),
            }
        })
    }
}

/// The released elements that are sensitive personal data (a relative's as
/// `mother.ethnicity`); every audit record names them, so that auditors find
/// who received such data.
pub fn sensitive_of(released: &[String], elements: &Elements) -> Vec<String> {
    released.iter().filter(|e| elements.is_sensitive(e.rsplit('.').next().unwrap_or(e))).cloned().collect()
}
