//! The outermost middleware: the request id, the request's span and log
//! line, problem documents for the framework's bare errors, and the HTTP
//! metrics.

use crate::error::{problem_for_status, PROBLEM_JSON};
use crate::state::AppState;
use crate::telemetry::new_uuid;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, ResponseError};
use std::time::Instant;
use tracing::Instrument;

pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the request being served, in the request's extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

fn accept_request_id(value: &HeaderValue) -> Option<String> {
    let s = value.to_str().ok()?;
    let ok = !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    ok.then(|| s.to_string())
}

/// The outermost middleware: assigns (or accepts) the request id, opens the
/// request's span, turns any bare error response into a problem document, and
/// records the request's metrics.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    let request_id =
        req.headers().get(&REQUEST_ID).and_then(accept_request_id).unwrap_or_else(|| new_uuid().to_string());
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let method = req.method().to_string();
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".to_string());
    let metrics = req.app_data::<actix_web::web::Data<AppState>>().map(|s| s.metrics.clone());
    let span = tracing::info_span!("request", request_id = %request_id, method = %method, route = %route);

    let result = next.call(req).instrument(span.clone()).await;
    let mut res = match result {
        Ok(res) => res.map_into_boxed_body(),
        Err(err) => {
            // Errors raised before a handler (extractors, guards) arrive here.
            let resp = err.error_response();
            return Err(actix_web::error::InternalError::from_response(err, resp).into());
        }
    };

    let status = res.status();
    let is_problem =
        res.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    // The console's pages show their own errors, to a person.
    let is_page = res.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    if (status.is_client_error() || status.is_server_error()) && !is_problem && !is_page {
        let problem = problem_for_status(status).error_response();
        let (req, _) = res.into_parts();
        res = ServiceResponse::new(req, problem);
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        res.headers_mut().insert(REQUEST_ID.clone(), v);
    }

    let elapsed = started.elapsed();
    if let Some(m) = metrics {
        m.http_requests.with_label_values(&[&route, &method, res.status().as_str()]).inc();
        m.http_latency.with_label_values(&[&route, &method]).observe(elapsed.as_secs_f64());
    }
    let _enter = span.enter();
    tracing::info!(status = res.status().as_u16(), latency_ms = elapsed.as_secs_f64() * 1e3, "served");
    Ok(res)
}
