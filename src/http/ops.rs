//! Operations endpoints: liveness, readiness, metrics, the OpenAPI document.

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;
use actix_web::{get, web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
    pub version: &'static str,
}

/// Liveness: the process is up and serving HTTP.
#[utoipa::path(tag = "operations", responses((status = 200, body = Health)))]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok", version: env!("CARGO_PKG_VERSION") })
}

#[derive(Serialize, ToSchema)]
pub struct CheckResult {
    pub name: String,
    pub ok: bool,
    /// Whether readiness depends on it. Registries are reported but not
    /// required: one failing registry degrades prefill, it does not stop lgsp.
    pub required: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    pub ready: bool,
    pub checks: Vec<CheckResult>,
}

/// Readiness: the database answers and is migrated, and the adapters' state.
/// 503 while any required dependency is down.
#[utoipa::path(tag = "operations", responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let mut checks = Vec::new();
    let db_check = if !state.is_ready() {
        CheckResult {
            name: "database".into(),
            ok: false,
            required: true,
            detail: Some("not reachable or not migrated yet".into()),
        }
    } else {
        match state.database_answers().await {
            Ok(()) => {
                state.db_failing.answered();
                CheckResult { name: "database".into(), ok: true, required: true, detail: None }
            }
            Err(e) => {
                state.db_failing.failed(&e);
                CheckResult { name: "database".into(), ok: false, required: true, detail: Some("not reachable".into()) }
            }
        }
    };
    checks.push(db_check);
    let catalog = state.catalog.get();
    for (id, why) in &catalog.broken {
        checks.push(CheckResult {
            name: format!("catalog:{id}"),
            ok: false,
            required: false,
            detail: Some(why.clone()),
        });
    }
    for a in catalog.adapters.values().filter(|a| a.enabled) {
        let status = a.adapter.upstream.breaker.status();
        checks.push(CheckResult {
            name: format!("upstream:{}", a.adapter.id),
            ok: status == crate::adapter::client::BreakerStatus::Closed,
            required: false,
            detail: Some(format!(
                "circuit breaker {}",
                serde_json::to_value(status).unwrap_or_default().as_str().unwrap_or("")
            )),
        });
    }
    // Not required: while Redis fails, each node limits on its own.
    if let Some(status) = state.limits.shared_store_status().await {
        checks.push(CheckResult {
            name: "rate_limits:redis".into(),
            ok: status.is_ok(),
            required: false,
            detail: Some(match status {
                Ok(()) => "buckets shared by the cluster".into(),
                Err(_) => "Redis not answering; this node's own buckets apply".into(),
            }),
        });
    }
    let ready = checks.iter().filter(|c| c.required).all(|c| c.ok);
    let body = Readiness { ready, checks };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        // A problem document (RFC 9457) extended with the checks.
        let failing: Vec<&str> = body.checks.iter().filter(|c| c.required && !c.ok).map(|c| c.name.as_str()).collect();
        let problem =
            ApiError::new(ErrorCode::NotReady, format!("Not ready: {} failing.", failing.join(", "))).problem();
        let mut doc = serde_json::to_value(&problem).unwrap_or_default();
        doc["checks"] = serde_json::to_value(&body.checks).unwrap_or_default();
        doc["ready"] = serde_json::Value::Bool(false);
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "1"))
            .content_type(crate::error::PROBLEM_JSON)
            .body(doc.to_string())
    }
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(tag = "operations", responses((status = 200, content_type = "text/plain", body = String)))]
#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    // Keys and tokens come and go with the catalogue, so their series are set afresh.
    let catalog = state.catalog.get();
    state.metrics.key_expiry.reset();
    for k in catalog.keys.values() {
        if let Some(at) = k.expires_at {
            state.metrics.key_expiry.with_label_values(&[&k.partner_id, &k.key_id]).set(at.div_euclid(1_000_000));
        }
    }
    state.metrics.admin_token_expiry.reset();
    for t in catalog.admins.values() {
        if let Some(at) = t.expires_at {
            state
                .metrics
                .admin_token_expiry
                .with_label_values(&[t.role.as_str(), &t.token_id])
                .set(at.div_euclid(1_000_000));
        }
    }
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(state.metrics.render())
}

/// The OpenAPI 3.1 description of this API, generated from the code.
#[get("/openapi.json")]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(crate::http::document())
}

/// The Redoc release bundled into the binary (MIT licence, `data/vendor/redoc/`),
/// so that the documentation works on a network without internet access.
const REDOC_VERSION: &str = "2.5.4";
static REDOC_JS: &[u8] = include_bytes!("../../data/vendor/redoc/redoc.standalone.js");

/// Human-readable API documentation: Redoc rendering /openapi.json.
#[get("/docs")]
pub async fn docs() -> HttpResponse {
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(format!(
        "<!DOCTYPE html><html><head><title>lgsp API</title><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"></head><body>\
         <redoc spec-url=\"/openapi.json\"></redoc>\
         <script src=\"/docs/redoc-{REDOC_VERSION}.js\"></script></body></html>"
    ))
}

/// The Redoc script the documentation page loads, served by lgsp itself. Its
/// path names the version, so browsers may keep it.
#[get("/docs/redoc-{version}.js")]
pub async fn redoc_js(version: web::Path<String>) -> Result<HttpResponse, ApiError> {
    if *version != REDOC_VERSION {
        return Err(ApiError::new(ErrorCode::NotFound, "No such Redoc version; load /docs for the current page."));
    }
    Ok(HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header(("Cache-Control", "public, max-age=31536000, immutable"))
        .body(REDOC_JS))
}

/// Fallback for requests no route takes: a known path with a method it
/// does not answer (405, with `Allow`), or an unknown path (404).
pub async fn no_route(req: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    match crate::http::MethodTable::get().allowed(req.path()) {
        Some(methods) => {
            let allow = methods.join(", ");
            Err(ApiError::new(ErrorCode::MethodNotAllowed, format!("This path answers {allow}, not {}.", req.method()))
                .with_header("allow", &allow))
        }
        None => Err(ApiError::new(ErrorCode::NotFound, "No resource at this path; see /docs for the API.")),
    }
}
