//! The console's pages. Each reads what the admin API reads, through the same
//! services, and each change goes through the same checks and is audited
//! under the same resource as its API call.

use super::session::ConsoleUser;
use super::{error_page, page};
use crate::adapter::client::BreakerStatus;
use crate::audit::query::{AuditFilter, TimeRange};
use crate::catalog::manage::DocKind;
use crate::domain::partner::Role;
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

fn breaker_word(s: BreakerStatus) -> &'static str {
    match s {
        BreakerStatus::Closed => "closed",
        BreakerStatus::Open => "open",
        BreakerStatus::HalfOpen => "half_open",
    }
}

/// Readiness, the registries and their breakers, the catalogue's version,
/// the chain's head, the dossiers in progress, and what is about to expire.
pub(super) async fn overview(req: HttpRequest, user: ConsoleUser, state: web::Data<AppState>) -> HttpResponse {
    let catalog = state.catalog.get();
    let adapters: Vec<Value> = catalog
        .adapters
        .values()
        .map(|a| {
            let (mut calls, mut seconds) = (0u64, 0.0);
            for op in a.adapter.operations.keys() {
                let h = state.metrics.upstream_latency.with_label_values(&[&a.adapter.id, op]);
                calls += h.get_sample_count();
                seconds += h.get_sample_sum();
            }
            let mean_ms = if calls > 0 { (seconds / calls as f64 * 1e4).round() / 10.0 } else { 0.0 };
            json!({"id": a.adapter.id, "version": a.adapter.version, "enabled": a.enabled,
                   "breaker": breaker_word(a.adapter.upstream.breaker.status()), "calls": calls, "mean_ms": mean_ms})
        })
        .collect();
    let head = state.audit.head().await.unwrap_or((0, String::new()));
    let dossiers = state.dossiers.counts().await.unwrap_or_default();
    let soon = crate::db::now_micros() + 30 * 24 * 3_600_000_000;
    let week = crate::db::now_micros() + 7 * 24 * 3_600_000_000;
    let mut expiring: Vec<Value> = catalog
        .keys
        .values()
        .filter_map(|k| k.expires_at.filter(|at| *at < soon).map(|at| (k.key_id.clone(), k.partner_id.clone(), at)))
        .chain(catalog.admins.values().filter_map(|t| {
            t.expires_at.filter(|at| *at < soon).map(|at| (t.token_id.clone(), t.role.as_str().to_string(), at))
        }))
        .map(|(id, owner, at)| {
            json!({"id": id, "owner": owner, "expires_at": crate::db::micros_to_rfc3339(at), "soon": at < week})
        })
        .collect();
    expiring.sort_by(|a, b| a["expires_at"].as_str().cmp(&b["expires_at"].as_str()));
    page(
        &req,
        Some(&user),
        "overview.html",
        json!({
            "title": "lgsp", "page": "overview", "ready": state.is_ready(), "catalog_version": catalog.version,
            "chain": {"seq": head.0, "hash": head.1}, "dossiers": dossiers, "adapters": adapters, "expiring": expiring,
        }),
    )
}

fn adapter_view(a: &crate::catalog::LiveAdapter) -> Value {
    let ad = &a.adapter;
    let operations: Vec<Value> = ad
        .operations
        .values()
        .map(|op| {
            json!({"name": op.name, "kind": op.kind, "method": op.method.as_str(), "path": op.path, "elements": op.elements})
        })
        .collect();
    json!({
        "id": ad.id, "version": ad.version, "name": ad.name, "enabled": a.enabled,
        "base_url": ad.upstream.base_url, "breaker": breaker_word(ad.upstream.breaker.status()),
        "operations": operations,
        "manifest": serde_json::to_string_pretty(&ad.manifest).unwrap_or_default(),
    })
}

pub(super) async fn adapters(req: HttpRequest, user: ConsoleUser, state: web::Data<AppState>) -> HttpResponse {
    if let Err(e) = user.require(Role::Steward) {
        return error_page(&req, Some(&user), &e);
    }
    let catalog = state.catalog.get();
    let list: Vec<Value> = catalog.adapters.values().map(adapter_view).collect();
    page(&req, Some(&user), "adapters.html", json!({"title": "Adapters", "page": "adapters", "adapters": list}))
}

pub(super) async fn adapter(
    req: HttpRequest,
    user: ConsoleUser,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    if let Err(e) = user.require(Role::Steward) {
        return error_page(&req, Some(&user), &e);
    }
    let catalog = state.catalog.get();
    match catalog.adapters.get(path.as_str()) {
        Some(a) => page(
            &req,
            Some(&user),
            "adapter.html",
            json!({"title": a.adapter.id, "page": "adapters", "adapter": adapter_view(a)}),
        ),
        None => error_page(&req, Some(&user), &ApiError::not_found(format!("No adapter \"{path}\"."))),
    }
}

#[derive(Deserialize)]
pub(super) struct StateForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    enabled: String,
}

/// Enables or disables an adapter: the API's change, audited under the
/// API's resource (`adapters/{id}/state`), by the session's token.
pub(super) async fn adapter_state(
    req: HttpRequest,
    user: ConsoleUser,
    path: web::Path<String>,
    form: web::Form<StateForm>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let id = path.into_inner();
    let sent = json!({"enabled": form.enabled == "true", "via": "console"}).to_string();
    let mut audit =
        crate::http::admission::Audit::start(&req, crate::audit::Action::Admin, format!("adapters/{id}/state"));
    audit.record.detail["via"] = json!("console");
    let result = async {
        user.require(Role::Steward)?;
        user.check_csrf(&req, Some(&form.csrf))?;
        let enabled = match form.enabled.as_str() {
            "true" => true,
            "false" => false,
            _ => return Err(ApiError::new(ErrorCode::InvalidBody, "enabled is true or false.")),
        };
        state.catalog.set_enabled(DocKind::Adapter, &id, enabled).await?;
        Ok(HttpResponse::SeeOther().insert_header((header::LOCATION, format!("/console/adapters/{id}"))).finish())
    }
    .await;
    match audit.finish_admin(&state, &req, sent.as_bytes(), result).await {
        Ok(resp) => resp,
        Err(e) => error_page(&req, Some(&user), &e),
    }
}

pub(super) async fn flows(req: HttpRequest, user: ConsoleUser, state: web::Data<AppState>) -> HttpResponse {
    if let Err(e) = user.require(Role::Steward) {
        return error_page(&req, Some(&user), &e);
    }
    let catalog = state.catalog.get();
    let flows: Vec<Value> = catalog
        .flows
        .values()
        .map(|f| {
            let steps: Vec<&str> = f.flow.steps.iter().map(|s| s.doc.id.as_str()).collect();
            json!({"id": f.flow.id(), "version": f.flow.version, "title": f.flow.doc.title, "steps": steps,
                   "deadline_days": f.flow.doc.deadline_days, "enabled": f.enabled})
        })
        .collect();
    let dossiers = state.dossiers.recent(50).await.unwrap_or_default();
    page(
        &req,
        Some(&user),
        "flows.html",
        json!({"title": "Flows", "page": "flows", "flows": flows, "dossiers": dossiers}),
    )
}

const FILTERS: [(&str, &str); 8] = [
    ("partner_id", ""),
    ("key_id", ""),
    ("subject", ""),
    ("action", ""),
    ("outcome", ""),
    ("resource", ""),
    ("from", ""),
    ("to", ""),
];

/// The audit trail, searched with every filter the API has, a page at a time.
pub(super) async fn audit(
    req: HttpRequest,
    user: ConsoleUser,
    q: web::Query<BTreeMap<String, String>>,
    state: web::Data<AppState>,
) -> HttpResponse {
    if let Err(e) = user.require(Role::Auditor) {
        return error_page(&req, Some(&user), &e);
    }
    let get = |k: &str| q.get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let filter = AuditFilter {
        partner_id: get("partner_id"),
        key_id: get("key_id"),
        subject: get("subject"),
        action: get("action"),
        outcome: get("outcome"),
        resource: get("resource"),
        from: get("from"),
        to: get("to"),
        limit: Some(50),
        cursor: get("cursor").and_then(|c| c.parse().ok()).filter(|c: &i64| *c >= 1),
    };
    let time = |name: &str, v: &Option<String>| -> Result<Option<i64>, String> {
        v.as_deref()
            .map(|s| s.parse::<jiff::Timestamp>().map(|t| t.as_microsecond()).map_err(|e| format!("{name}: {e}")))
            .transpose()
    };
    let filters: Vec<Value> = FILTERS
        .iter()
        .map(|(name, kind)| json!({"name": name, "value": get(name).unwrap_or_default(), "kind": kind}))
        .collect();
    let (from, to) = match (time("from", &filter.from), time("to", &filter.to)) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => {
            let context = json!({"title": "Audit", "page": "audit", "filters": filters, "records": [],
                                 "problem": format!("{e} (an RFC 3339 instant such as 2026-12-01T00:00:00Z)")});
            let mut resp = page(&req, Some(&user), "audit.html", context);
            *resp.status_mut() = actix_web::http::StatusCode::BAD_REQUEST;
            return resp;
        }
    };
    let found = state.audit.search(filter, TimeRange { from, to }).await;
    let page_of = match found {
        Ok(p) => p,
        Err(e) => return error_page(&req, Some(&user), &e.into()),
    };
    let next = page_of.next_cursor.map(|c| {
        let mut params: Vec<(String, String)> =
            q.iter().filter(|(k, v)| *k != "cursor" && !v.is_empty()).map(|(k, v)| (k.clone(), v.clone())).collect();
        params.push(("cursor".into(), c.to_string()));
        let query: Vec<String> =
            params.iter().map(|(k, v)| format!("{}={}", urlencoding::encode(k), urlencoding::encode(v))).collect();
        format!("/console/audit?{}", query.join("&"))
    });
    page(
        &req,
        Some(&user),
        "audit.html",
        json!({"title": "Audit", "page": "audit", "filters": filters, "records": page_of.items, "next": next}),
    )
}

/// One record, with its hash and the hash before it.
pub(super) async fn audit_record(
    req: HttpRequest,
    user: ConsoleUser,
    path: web::Path<i64>,
    state: web::Data<AppState>,
) -> HttpResponse {
    if let Err(e) = user.require(Role::Auditor) {
        return error_page(&req, Some(&user), &e);
    }
    let row = match state.audit.row(*path).await {
        Ok(Some(r)) => r,
        Ok(None) => return error_page(&req, Some(&user), &ApiError::not_found(format!("No record {path}."))),
        Err(e) => return error_page(&req, Some(&user), &e.into()),
    };
    let detail: Value = serde_json::from_str(&row.detail).unwrap_or(Value::Null);
    let fields: Vec<(&str, String)> = vec![
        ("seq", row.seq.to_string()),
        ("record_id", row.record_id.clone()),
        ("time", crate::db::micros_to_rfc3339(row.ts)),
        ("request_id", row.request_id.clone()),
        ("partner_id", row.partner_id.clone()),
        ("key_id", row.key_id.clone()),
        ("action", row.action.clone()),
        ("subject", row.subject.clone().unwrap_or_default()),
        ("purpose", row.purpose.clone().unwrap_or_default()),
        ("resource", row.resource.clone()),
        ("adapters", row.adapters.clone()),
        ("elements", row.elements.clone()),
        ("outcome", row.outcome.clone()),
        ("status", row.status.to_string()),
        ("latency_us", row.latency_us.to_string()),
        ("prev_hash", row.prev_hash.clone()),
        ("hash", row.hash.clone()),
    ];
    page(
        &req,
        Some(&user),
        "audit_record.html",
        json!({"title": format!("#{}", row.seq), "page": "audit", "record": {"seq": row.seq}, "fields": fields,
               "detail": serde_json::to_string_pretty(&detail).unwrap_or_default()}),
    )
}

#[derive(Deserialize)]
pub(super) struct VerifyForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    #[serde(default)]
    anchors: String,
}

/// Verifies the chain (with anchors kept outside the database): an htmx
/// fragment, or the whole page without scripts.
pub(super) async fn verify(
    req: HttpRequest,
    user: ConsoleUser,
    form: web::Form<VerifyForm>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let result = async {
        user.require(Role::Auditor)?;
        user.check_csrf(&req, Some(&form.csrf))?;
        let anchors = crate::audit::parse_anchors(&form.anchors)
            .map_err(|e| ApiError::new(ErrorCode::InvalidParameter, format!("anchors: {e}")))?;
        Ok::<_, ApiError>(state.audit.verify(anchors).await?)
    }
    .await;
    let context = match result {
        Ok(v) => {
            json!({"intact": v.is_intact(), "records": v.records, "head": format!("{}:{}", v.head_seq, v.head_hash),
                        "problem": v.reason})
        }
        Err(e) if e.code == ErrorCode::InvalidParameter => json!({"intact": false, "records": 0, "problem": e.detail}),
        Err(e) => return error_page(&req, Some(&user), &e),
    };
    page(&req, Some(&user), "verification.html", context)
}
