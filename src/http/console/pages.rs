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
    let (by_partner, by_adapter) = traffic(&state).await;
    page(
        &req,
        Some(&user),
        "overview.html",
        json!({
            "title": "lgsp", "page": "overview", "ready": state.is_ready(), "catalog_version": catalog.version,
            "chain": {"seq": head.0, "hash": head.1, "verified": state.audit.last_verification().map(|(at, intact, n)| {
                json!({"at": crate::db::micros_to_rfc3339(at), "intact": intact, "records": n})
            })}, "dossiers": dossiers, "adapters": adapters, "expiring": expiring,
            "traffic_partners": by_partner, "traffic_adapters": by_adapter,
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
    drop(catalog);
    match adapter_context(&state, &path, json!({})).await {
        Ok(context) => page(&req, Some(&user), "adapter.html", context),
        Err(e) => error_page(&req, Some(&user), &e),
    }
}

/// A steward's change made through the console: the role and the page's
/// CSRF token checked, then `change` run and audited as the admin API audits
/// it, under the API's resource, with what was sent and `"via": "console"`.
async fn steward_change<F, Fut>(
    req: &HttpRequest,
    user: &ConsoleUser,
    state: &AppState,
    resource: String,
    sent: Value,
    csrf: &str,
    change: F,
) -> Result<HttpResponse, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<HttpResponse, ApiError>>,
{
    let mut audit = crate::http::admission::Audit::start(req, crate::audit::Action::Admin, resource);
    audit.record.detail["via"] = json!("console");
    let result = async {
        user.require(Role::Steward)?;
        user.check_csrf(req, Some(csrf))?;
        change().await
    }
    .await;
    audit.finish_admin(state, req, sent.to_string().as_bytes(), result).await
}

fn see_other(to: String) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((header::LOCATION, to)).finish()
}

/// The form fields a page posts, as they came.
type Fields = web::Form<BTreeMap<String, String>>;

fn field<'f>(form: &'f Fields, name: &str) -> &'f str {
    form.get(name).map(String::as_str).unwrap_or("")
}

/// Enables or disables an adapter, or rolls it back to an earlier version:
/// the API's `adapters/{id}/state`.
pub(super) async fn adapter_state(
    req: HttpRequest,
    user: ConsoleUser,
    path: web::Path<String>,
    form: Fields,
    state: web::Data<AppState>,
) -> HttpResponse {
    let id = path.into_inner();
    let version: Option<i32> = form.get("current_version").and_then(|v| v.parse().ok());
    let enabled = match field(&form, "enabled") {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    };
    let sent = json!({"enabled": enabled, "current_version": version});
    let result =
        steward_change(&req, &user, &state, format!("adapters/{id}/state"), sent, field(&form, "_csrf"), || async {
            if enabled.is_none() && version.is_none() {
                return Err(ApiError::new(ErrorCode::InvalidBody, "Choose to enable, disable or roll back."));
            }
            if let Some(v) = version {
                state.catalog.rollback(DocKind::Adapter, &id, v).await?;
            }
            if let Some(e) = enabled {
                state.catalog.set_enabled(DocKind::Adapter, &id, e).await?;
            }
            Ok(see_other(format!("/console/adapters/{id}")))
        })
        .await;
    result.unwrap_or_else(|e| error_page(&req, Some(&user), &e))
}

/// The adapter page's context: the adapter, its versions, and whatever the
/// page shows besides (a refused manifest, a dry run).
async fn adapter_context(state: &AppState, id: &str, extra: Value) -> Result<Value, ApiError> {
    let catalog = state.catalog.get();
    let a = catalog.adapters.get(id).ok_or_else(|| ApiError::not_found(format!("No adapter \"{id}\".")))?;
    let versions = state.catalog.versions(DocKind::Adapter, id).await?;
    let mut context = json!({"title": id, "page": "adapters", "adapter": adapter_view(a), "versions": versions});
    if let (Some(c), Some(e)) = (context.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    Ok(context)
}

/// A refused document shown on its page: the problem, each error at its
/// pointer, and the text as pasted, to fix.
fn refused(e: &ApiError, pasted: &str) -> Value {
    json!({"problem_detail": e.detail, "errors": e.errors, "pasted": pasted})
}

/// Registers an adapter pasted into the page (the API's `POST adapters`).
pub(super) async fn register_adapter(
    req: HttpRequest,
    user: ConsoleUser,
    form: Fields,
    state: web::Data<AppState>,
) -> HttpResponse {
    let text = field(&form, "document").to_string();
    let doc: Result<Value, _> = serde_json::from_str(&text);
    let sent = doc.as_ref().cloned().unwrap_or(Value::Null);
    let result = steward_change(&req, &user, &state, "adapters".into(), sent, field(&form, "_csrf"), || async {
        let doc = doc.map_err(|e| {
            ApiError::new(ErrorCode::MalformedJson, format!("The manifest is not JSON: {e}"))
                .with_errors(vec![crate::error::FieldError::new("", e.to_string())])
        })?;
        let by = format!("steward:{}", user.caller.token_id);
        let (id, _) =
            state.catalog.publish(DocKind::Adapter, doc, None, &by, crate::catalog::store::Publish::Create).await?;
        Ok(see_other(format!("/console/adapters/{id}")))
    })
    .await;
    match result {
        Ok(r) => r,
        Err(e) if matches!(e.code.status().as_u16(), 400 | 409 | 422) => {
            let catalog = state.catalog.get();
            let list: Vec<Value> = catalog.adapters.values().map(adapter_view).collect();
            let mut context = refused(&e, &text);
            context["title"] = json!("Adapters");
            context["page"] = json!("adapters");
            context["adapters"] = json!(list);
            let mut resp = page(&req, Some(&user), "adapters.html", context);
            *resp.status_mut() = e.code.status();
            resp
        }
        Err(e) => error_page(&req, Some(&user), &e),
    }
}

/// Publishes a new version of an adapter pasted into its page (`PUT adapters/{id}`).
pub(super) async fn publish_adapter(
    req: HttpRequest,
    user: ConsoleUser,
    path: web::Path<String>,
    form: Fields,
    state: web::Data<AppState>,
) -> HttpResponse {
    let id = path.into_inner();
    let text = field(&form, "document").to_string();
    let doc: Result<Value, _> = serde_json::from_str(&text);
    let sent = doc.as_ref().cloned().unwrap_or(Value::Null);
    let result = steward_change(&req, &user, &state, format!("adapters/{id}"), sent, field(&form, "_csrf"), || async {
        let doc = doc.map_err(|e| ApiError::new(ErrorCode::MalformedJson, format!("The manifest is not JSON: {e}")))?;
        let by = format!("steward:{}", user.caller.token_id);
        state
            .catalog
            .publish(DocKind::Adapter, doc, Some(&id), &by, crate::catalog::store::Publish::NewVersion)
            .await?;
        Ok(see_other(format!("/console/adapters/{id}")))
    })
    .await;
    match result {
        Ok(r) => r,
        Err(e) if matches!(e.code.status().as_u16(), 400 | 422) => {
            match adapter_context(&state, &id, refused(&e, &text)).await {
                Ok(context) => {
                    let mut resp = page(&req, Some(&user), "adapter.html", context);
                    *resp.status_mut() = e.code.status();
                    resp
                }
                Err(e) => error_page(&req, Some(&user), &e),
            }
        }
        Err(e) => error_page(&req, Some(&user), &e),
    }
}

/// A dry run of every operation against the registry for a citizen: what
/// came back, mapped (the API's `adapters/{id}/test`). An htmx fragment, or
/// the adapter's page without scripts.
pub(super) async fn test_adapter(
    req: HttpRequest,
    user: ConsoleUser,
    path: web::Path<String>,
    form: Fields,
    state: web::Data<AppState>,
) -> HttpResponse {
    let id = path.into_inner();
    let citizen = field(&form, "citizen_id").trim().to_string();
    let sent = json!({"citizen_id": citizen});
    let mut found = Vec::new();
    let result =
        steward_change(&req, &user, &state, format!("adapters/{id}/test"), sent, field(&form, "_csrf"), || async {
            let cid = crate::http::body::citizen_id_at("/citizen_id", &citizen)?;
            let adapter = state.catalog.get().adapters.get(&id).map(|a| a.adapter.clone());
            let adapter = adapter.ok_or_else(|| ApiError::not_found(format!("No adapter \"{id}\".")))?;
            let reads: Vec<String> = adapter
                .operations
                .values()
                .filter(|op| op.kind == crate::adapter::OperationKind::Read)
                .map(|op| op.name.clone())
                .collect();
            found = adapter.dry_run(&json!({"citizen_id": cid.to_string()}), &reads, &state.http, &state.metrics).await;
            Ok(HttpResponse::Ok().finish())
        })
        .await;
    if let Err(e) = result {
        return error_page(&req, Some(&user), &e);
    }
    let results: Vec<Value> = found
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
            let pretty =
                |x: &Option<Value>| json!(x.as_ref().map(|e| serde_json::to_string_pretty(e).unwrap_or_default()));
            v["elements_text"] = pretty(&r.elements);
            v["raw_text"] = pretty(&r.raw);
            v
        })
        .collect();
    if req.headers().contains_key("hx-request") {
        return page(&req, Some(&user), "dry_run.html", json!({"results": results}));
    }
    match adapter_context(&state, &id, json!({"results": results})).await {
        Ok(context) => page(&req, Some(&user), "adapter.html", context),
        Err(e) => error_page(&req, Some(&user), &e),
    }
}

pub(super) async fn flows(req: HttpRequest, user: ConsoleUser, state: web::Data<AppState>) -> HttpResponse {
    if let Err(e) = user.require(Role::Steward) {
        return error_page(&req, Some(&user), &e);
    }
    page(&req, Some(&user), "flows.html", flows_context(&state).await)
}

async fn flows_context(state: &AppState) -> Value {
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
    json!({"title": "Flows", "page": "flows", "flows": flows, "dossiers": dossiers, "collection": "flows"})
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

/// A partner's policy as the page's fields show it: each list comma-separated.
fn policy_fields(p: &crate::domain::partner::Policy) -> Value {
    let join = |s: &std::collections::BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(", ");
    let nets: Vec<String> = p.networks.iter().map(|n| n.to_string()).collect();
    json!({"forms": join(&p.forms), "purposes": join(&p.purposes), "operations": join(&p.operations),
           "elements": join(&p.elements), "networks": nets.join(", "), "access_log": p.access_log})
}

/// The policy a page's fields give, as the API's JSON.
fn policy_of(form: &Fields) -> Value {
    let list = |name: &str| -> Vec<String> {
        field(form, name).split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
    };
    json!({"forms": list("forms"), "purposes": list("purposes"), "operations": list("operations"),
           "elements": list("elements"), "networks": list("networks"), "access_log": field(form, "access_log") == "true"})
}

fn number(form: &Fields, name: &str) -> Value {
    field(form, name).trim().parse::<u64>().map(|n| json!(n)).unwrap_or(json!(field(form, name)))
}

async fn partners_page(req: &HttpRequest, user: &ConsoleUser, state: &AppState, extra: Value) -> HttpResponse {
    let catalog = state.catalog.get();
    let mut partners: Vec<Value> =
        catalog.partners.values().map(|p| serde_json::to_value(&**p).unwrap_or_default()).collect();
    partners.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    let mut context = json!({"title": "Partners", "page": "partners", "partners": partners, "policy": {}, "sent": {}});
    if let (Some(c), Some(e)) = (context.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    page(req, Some(user), "partners.html", context)
}

pub(super) async fn partners(req: HttpRequest, user: ConsoleUser, state: web::Data<AppState>) -> HttpResponse {
    if let Err(e) = user.require(Role::Steward) {
        return error_page(&req, Some(&user), &e);
    }
    partners_page(&req, &user, &state, json!({})).await
}

/// Registers a partner from the page's form (the API's `POST partners`).
pub(super) async fn create_partner(
    req: HttpRequest,
    user: ConsoleUser,
    form: Fields,
    state: web::Data<AppState>,
) -> HttpResponse {
    let body = json!({
        "id": field(&form, "id").trim(), "name": field(&form, "name").trim(), "kind": field(&form, "kind"),
        "rate_per_minute": number(&form, "rate_per_minute"), "burst": number(&form, "burst"), "policy": policy_of(&form),
    });
    let sent = body.clone();
    let result = steward_change(&req, &user, &state, "partners".into(), sent, field(&form, "_csrf"), || async {
        let input: crate::catalog::manage::PartnerInput =
            crate::http::body::typed_value(body.clone(), ErrorCode::InvalidPartner, "The form does not fit a partner")?;
        let id = input.id.clone();
        state.catalog.create_partner(input).await?;
        Ok(see_other(format!("/console/partners/{id}")))
    })
    .await;
    match result {
        Ok(r) => r,
        Err(e) if matches!(e.code.status().as_u16(), 400 | 409 | 422) => {
            let policy = policy_of(&form);
            let extra = json!({"problem_detail": e.detail, "errors": e.errors, "sent": body, "policy": {
                "forms": field(&form, "forms"), "purposes": field(&form, "purposes"), "operations": field(&form, "operations"),
                "elements": field(&form, "elements"), "networks": field(&form, "networks"), "access_log": policy["access_log"]}});
            let mut resp = partners_page(&req, &user, &state, extra).await;
            *resp.status_mut() = e.code.status();
            resp
        }
        Err(e) => error_page(&req, Some(&user), &e),
    }
}

async fn partner_page(req: &HttpRequest, user: &ConsoleUser, state: &AppState, id: &str, extra: Value) -> HttpResponse {
    let catalog = state.catalog.get();
    let Some(p) = catalog.partners.get(id).cloned() else {
        return error_page(req, Some(user), &ApiError::not_found(format!("No partner \"{id}\".")));
    };
    let keys = match state.catalog.keys(id).await {
        Ok(k) => k,
        Err(e) => return error_page(req, Some(user), &e),
    };
    let since = crate::db::now_micros() - 3_600_000_000;
    let (calls, refused) = state.audit.partner_counts(p.id.clone(), since).await.unwrap_or((0, 0));
    let mut context = json!({"title": p.name, "page": "partners", "partner": &*p, "policy": policy_fields(&p.policy),
                             "keys": keys, "traffic": {"calls": calls, "refused": refused}});
    if let (Some(c), Some(e)) = (context.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    page(req, Some(user), "partner.html", context)
}

pub(super) async fn partner(
    req: HttpRequest,
    user: ConsoleUser,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    if let Err(e) = user.require(Role::Steward) {
        return error_page(&req, Some(&user), &e);
    }
    partner_page(&req, &user, &state, &path, json!({})).await
}

/// Changes a partner's policy and quota (the API's `PATCH partners/{id}`).
pub(super) async fn update_partner(
    req: HttpRequest,
    user: ConsoleUser,
    path: web::Path<String>,
    form: Fields,
    state: web::Data<AppState>,
) -> HttpResponse {
    let id = path.into_inner();
    let body = json!({"rate_per_minute": number(&form, "rate_per_minute"), "burst": number(&form, "burst"), "policy": policy_of(&form)});
    let result =
        steward_change(&req, &user, &state, format!("partners/{id}"), body.clone(), field(&form, "_csrf"), || async {
            let patch: crate::catalog::manage::PartnerPatch = crate::http::body::typed_value(
                body.clone(),
                ErrorCode::InvalidPartner,
                "The form does not fit a partner",
            )?;
            state.catalog.update_partner(&id, patch).await?;
            Ok(see_other(format!("/console/partners/{id}")))
        })
        .await;
    match result {
        Ok(r) => r,
        Err(e) if matches!(e.code.status().as_u16(), 400 | 422) => {
            let extra = json!({"problem_detail": e.detail, "errors": e.errors});
            let mut resp = partner_page(&req, &user, &state, &id, extra).await;
            *resp.status_mut() = e.code.status();
            resp
        }
        Err(e) => error_page(&req, Some(&user), &e),
    }
}

/// Makes a key for the partner: shown on the page that answers, once.
pub(super) async fn create_key(
    req: HttpRequest,
    user: ConsoleUser,
    path: web::Path<String>,
    form: Fields,
    state: web::Data<AppState>,
) -> HttpResponse {
    let id = path.into_inner();
    let label = field(&form, "label").trim().to_string();
    let mut made = None;
    let result = steward_change(
        &req,
        &user,
        &state,
        format!("partners/{id}/keys"),
        json!({"label": label}),
        field(&form, "_csrf"),
        || async {
            made = Some(state.catalog.create_key(&id, &label, None).await?);
            Ok(HttpResponse::Created().finish())
        },
    )
    .await;
    match (result, made) {
        (Ok(_), Some(key)) => partner_page(&req, &user, &state, &id, json!({"new_key": key})).await,
        (Err(e), _) => error_page(&req, Some(&user), &e),
        (Ok(_), None) => error_page(&req, Some(&user), &ApiError::internal("no key made")),
    }
}

/// Revokes one of the partner's keys (the API's `DELETE partners/{id}/keys/{key}`).
pub(super) async fn revoke_key(
    req: HttpRequest,
    user: ConsoleUser,
    path: web::Path<(String, String)>,
    form: Fields,
    state: web::Data<AppState>,
) -> HttpResponse {
    let (id, key) = path.into_inner();
    let result = steward_change(
        &req,
        &user,
        &state,
        format!("partners/{id}/keys/{key}"),
        json!({}),
        field(&form, "_csrf"),
        || async {
            state.catalog.revoke_key(&id, &key).await?;
            Ok(see_other(format!("/console/partners/{id}")))
        },
    )
    .await;
    result.unwrap_or_else(|e| error_page(&req, Some(&user), &e))
}

/// Each form: its fields bound to registries (the ceiling) and the cut of
/// declared data its prefills measured, as bars, against the 20% target.
pub(super) async fn forms(req: HttpRequest, user: ConsoleUser, state: web::Data<AppState>) -> HttpResponse {
    if let Err(e) = user.require(Role::Steward) {
        return error_page(&req, Some(&user), &e);
    }
    page(&req, Some(&user), "forms.html", forms_context(&state).await)
}

async fn forms_context(state: &AppState) -> Value {
    let catalog = state.catalog.get();
    let mut forms = Vec::new();
    for f in catalog.forms.values() {
        let details = state.audit.prefill_details(f.form.id().to_string(), 10_000).await.unwrap_or_default();
        let c = crate::http::partner::coverage_of(&f.form, &details);
        let pct = |x: f64| (x * 1000.0).round() / 10.0;
        forms.push(json!({
            "id": f.form.id(), "version": f.form.version, "title": f.form.doc.title, "enabled": f.enabled,
            "bound": c.bound_fields, "total": c.declarable_fields, "ceiling_pct": pct(c.ceiling),
            "measured_pct": c.measured.as_ref().map(|m| pct(m.cut)), "prefills": c.measured.as_ref().map(|m| m.prefills),
        }));
    }
    json!({"title": "Forms", "page": "forms", "forms": forms, "collection": "forms"})
}

pub(super) async fn elements(req: HttpRequest, user: ConsoleUser, state: web::Data<AppState>) -> HttpResponse {
    if let Err(e) = user.require(Role::Steward) {
        return error_page(&req, Some(&user), &e);
    }
    page(&req, Some(&user), "elements.html", elements_context(&state))
}

fn elements_context(state: &AppState) -> Value {
    let catalog = state.catalog.get();
    let list: Vec<Value> = catalog
        .elements
        .all()
        .map(|e| {
            json!({"id": e.doc.id, "version": e.version, "label_en": e.doc.label_en, "label_vi": e.doc.label_vi,
                   "class": e.doc.class.as_str(), "shared": e.doc.shared})
        })
        .collect();
    json!({"title": "Elements", "page": "elements", "elements": list, "collection": "elements"})
}

fn credentials_context(state: &AppState, extra: Value) -> Value {
    let mut context =
        json!({"title": "Credentials", "page": "credentials", "credentials": state.catalog.credentials()});
    if let (Some(c), Some(e)) = (context.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    context
}

pub(super) async fn credentials(req: HttpRequest, user: ConsoleUser, state: web::Data<AppState>) -> HttpResponse {
    if let Err(e) = user.require(Role::Steward) {
        return error_page(&req, Some(&user), &e);
    }
    page(&req, Some(&user), "credentials.html", credentials_context(&state, json!({})))
}

/// Sets or rotates an upstream credential: write-only, never shown again;
/// the record keeps its kind alone, as the API's does.
pub(super) async fn set_credential(
    req: HttpRequest,
    user: ConsoleUser,
    form: Fields,
    state: web::Data<AppState>,
) -> HttpResponse {
    let name = field(&form, "name").trim().to_string();
    let kind = field(&form, "kind").to_string();
    let (first, second) = (field(&form, "first").to_string(), field(&form, "second").to_string());
    let sent = json!({"kind": kind.chars().take(32).collect::<String>()});
    let resource = format!("credentials/{name}");
    let result = steward_change(&req, &user, &state, resource, sent, field(&form, "_csrf"), || async {
        use crate::domain::credential::Credential;
        let credential = match kind.as_str() {
            "static" => Credential::Static { token: first.clone() },
            "basic" => Credential::Basic { username: first.clone(), password: second.clone() },
            "login" => Credential::Login { username: first.clone(), password: second.clone() },
            _ => return Err(ApiError::new(ErrorCode::InvalidCredential, "The kind is static, basic or login.")),
        };
        state.catalog.set_credential(&name, credential, &format!("steward:{}", user.caller.token_id)).await?;
        Ok(see_other("/console/credentials".into()))
    })
    .await;
    match result {
        Ok(r) => r,
        Err(e) if matches!(e.code.status().as_u16(), 400 | 422) => {
            let context = credentials_context(&state, json!({"problem_detail": e.detail, "errors": e.errors}));
            let mut resp = page(&req, Some(&user), "credentials.html", context);
            *resp.status_mut() = e.code.status();
            resp
        }
        Err(e) => error_page(&req, Some(&user), &e),
    }
}

async fn tokens_page(req: &HttpRequest, user: &ConsoleUser, state: &AppState, extra: Value) -> HttpResponse {
    let tokens = match state.catalog.admin_tokens().await {
        Ok(t) => t,
        Err(e) => return error_page(req, Some(user), &e),
    };
    let mut context = json!({"title": "Tokens", "page": "tokens", "tokens": tokens});
    if let (Some(c), Some(e)) = (context.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    page(req, Some(user), "tokens.html", context)
}

/// Admin tokens, for stewards only.
pub(super) async fn tokens(req: HttpRequest, user: ConsoleUser, state: web::Data<AppState>) -> HttpResponse {
    if let Err(e) = user.require(Role::Steward) {
        return error_page(&req, Some(&user), &e);
    }
    tokens_page(&req, &user, &state, json!({})).await
}

/// Makes an admin token: shown on the page that answers, once.
pub(super) async fn create_token(
    req: HttpRequest,
    user: ConsoleUser,
    form: Fields,
    state: web::Data<AppState>,
) -> HttpResponse {
    let role = Role::parse(field(&form, "role"));
    let label = field(&form, "label").trim().to_string();
    let sent = json!({"role": field(&form, "role"), "label": label});
    let mut made = None;
    let result = steward_change(&req, &user, &state, "tokens".into(), sent, field(&form, "_csrf"), || async {
        let role = role.ok_or_else(|| ApiError::new(ErrorCode::InvalidBody, "The role is steward or auditor."))?;
        made = Some(state.catalog.create_admin_token(role, &label, None).await?);
        Ok(HttpResponse::Created().finish())
    })
    .await;
    match (result, made) {
        (Ok(_), Some(token)) => tokens_page(&req, &user, &state, json!({"new_token": token})).await,
        (Err(e), _) => error_page(&req, Some(&user), &e),
        (Ok(_), None) => error_page(&req, Some(&user), &ApiError::internal("no token made")),
    }
}

pub(super) async fn revoke_token(
    req: HttpRequest,
    user: ConsoleUser,
    path: web::Path<String>,
    form: Fields,
    state: web::Data<AppState>,
) -> HttpResponse {
    let id = path.into_inner();
    let result =
        steward_change(&req, &user, &state, format!("tokens/{id}"), json!({}), field(&form, "_csrf"), || async {
            state.catalog.revoke_admin_token(&id).await?;
            Ok(see_other("/console/tokens".into()))
        })
        .await;
    result.unwrap_or_else(|e| error_page(&req, Some(&user), &e))
}

/// A dossier's steps and timeline, as its partner reads them.
pub(super) async fn dossier(
    req: HttpRequest,
    user: ConsoleUser,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    if let Err(e) = user.require(Role::Steward) {
        return error_page(&req, Some(&user), &e);
    }
    let view = match state.dossiers.view_any(&path).await {
        Ok(v) => v,
        Err(e) => return error_page(&req, Some(&user), &e),
    };
    let mut d = serde_json::to_value(&view).unwrap_or_default();
    if let Some(steps) = d["steps"].as_array_mut() {
        for s in steps {
            s["result_text"] = json!(serde_json::to_string_pretty(&s["result"]).unwrap_or_default());
        }
    }
    page(&req, Some(&user), "dossier.html", json!({"title": view.code, "page": "flows", "d": d}))
}

/// The last hour's calls per minute, by partner and by adapter, as bar
/// charts (SVG drawn here: no chart script to load): at most six series
/// each, the busiest first.
async fn traffic(state: &AppState) -> (Vec<Value>, Vec<Value>) {
    const MINUTES: i64 = 60;
    let now_minute = crate::db::now_micros() / 60_000_000;
    let since = (now_minute - MINUTES + 1) * 60_000_000;
    let rows = state.audit.traffic(since).await.unwrap_or_default();
    let mut partners: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut adapters: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (minute, partner, called, calls) in rows {
        let slot = (minute - (now_minute - MINUTES + 1)).clamp(0, MINUTES - 1) as usize;
        partners.entry(partner).or_insert_with(|| vec![0; MINUTES as usize])[slot] += calls;
        let ops: Vec<String> = serde_json::from_str(&called).unwrap_or_default();
        let names: std::collections::BTreeSet<String> =
            ops.iter().map(|o| o.split('.').next().unwrap_or(o).to_string()).collect();
        for a in names {
            adapters.entry(a).or_insert_with(|| vec![0; MINUTES as usize])[slot] += calls;
        }
    }
    let chart = |series: BTreeMap<String, Vec<i64>>| -> Vec<Value> {
        let mut series: Vec<(String, Vec<i64>)> = series.into_iter().collect();
        series.sort_by_key(|(_, v)| -v.iter().sum::<i64>());
        series
            .into_iter()
            .take(6)
            .map(|(name, counts)| {
                let peak = counts.iter().copied().max().unwrap_or(0).max(1);
                let bars: Vec<Value> = counts
                    .iter()
                    .enumerate()
                    .map(|(i, n)| {
                        let h = (*n as f64 / peak as f64 * 36.0).round() as i64;
                        json!({"x": i * 4, "y": 40 - h, "h": h, "n": n})
                    })
                    .collect();
                json!({"name": name, "total": counts.iter().sum::<i64>(), "peak": peak, "bars": bars})
            })
            .collect()
    };
    (chart(partners), chart(adapters))
}

/// Rotates a partner's key: a new key, shown once; the old one works for the
/// grace period chosen (the API's `partners/{id}/keys/{key}/rotate`).
pub(super) async fn rotate_key(
    req: HttpRequest,
    user: ConsoleUser,
    path: web::Path<(String, String)>,
    form: Fields,
    state: web::Data<AppState>,
) -> HttpResponse {
    let (id, key) = path.into_inner();
    let hours: u64 = field(&form, "grace_hours").trim().parse().unwrap_or(24);
    let sent = json!({"grace_seconds": hours * 3600});
    let mut made = None;
    let resource = format!("partners/{id}/keys/{key}/rotate");
    let result = steward_change(&req, &user, &state, resource, sent, field(&form, "_csrf"), || async {
        let grace = std::time::Duration::from_secs(hours.saturating_mul(3600));
        made = Some(state.catalog.rotate_key(&id, &key, grace, None).await?);
        Ok(HttpResponse::Created().finish())
    })
    .await;
    match (result, made) {
        (Ok(_), Some(new)) => partner_page(&req, &user, &state, &id, json!({"new_key": new})).await,
        (Err(e), _) => error_page(&req, Some(&user), &e),
        (Ok(_), None) => error_page(&req, Some(&user), &ApiError::internal("no key made")),
    }
}

#[derive(Deserialize)]
pub(super) struct ExportQuery {
    from: Option<i64>,
}

/// The trail as JSON lines, a page of 10,000 records from `from`: what
/// `lgsp audit verify --file` checks without the database.
pub(super) async fn export(
    req: HttpRequest,
    user: ConsoleUser,
    q: web::Query<ExportQuery>,
    state: web::Data<AppState>,
) -> HttpResponse {
    if let Err(e) = user.require(Role::Auditor) {
        return error_page(&req, Some(&user), &e);
    }
    let from = q.from.unwrap_or(1).max(1);
    match state.audit.export_page(from, 10_000).await {
        Ok((lines, _)) => HttpResponse::Ok()
            .content_type("application/x-ndjson")
            .insert_header((
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"lgsp-audit-from-{from}.jsonl\""),
            ))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(lines),
        Err(e) => error_page(&req, Some(&user), &e.into()),
    }
}

/// Two versions of an adapter's manifest side by side, line by line, with
/// the lines that differ marked.
pub(super) async fn adapter_diff(
    req: HttpRequest,
    user: ConsoleUser,
    path: web::Path<String>,
    q: web::Query<BTreeMap<String, String>>,
    state: web::Data<AppState>,
) -> HttpResponse {
    if let Err(e) = user.require(Role::Steward) {
        return error_page(&req, Some(&user), &e);
    }
    let id = path.into_inner();
    let version = |k: &str| q.get(k).and_then(|v| v.parse::<i32>().ok());
    let (Some(a), Some(b)) = (version("a"), version("b")) else {
        let e = ApiError::new(ErrorCode::InvalidParameter, "Choose two versions to compare (a and b).");
        return error_page(&req, Some(&user), &e);
    };
    let docs = async {
        let (_, left) = state.catalog.document(DocKind::Adapter, &id, Some(a)).await?;
        let (_, right) = state.catalog.document(DocKind::Adapter, &id, Some(b)).await?;
        Ok::<_, ApiError>((left, right))
    }
    .await;
    let (left, right) = match docs {
        Ok(d) => d,
        Err(e) => return error_page(&req, Some(&user), &e),
    };
    let text = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let (l, r) = (text(&left), text(&right));
    let (l, r): (Vec<&str>, Vec<&str>) = (l.lines().collect(), r.lines().collect());
    let rows: Vec<Value> = (0..l.len().max(r.len()))
        .map(|i| {
            let (x, y) = (l.get(i).copied().unwrap_or(""), r.get(i).copied().unwrap_or(""));
            json!({"a": x, "b": y, "differs": x != y})
        })
        .collect();
    let changed = rows.iter().filter(|r| r["differs"] == true).count();
    page(
        &req,
        Some(&user),
        "diff.html",
        json!({"title": format!("{id} v{a} / v{b}"), "page": "adapters", "id": id, "a": a, "b": b, "rows": rows, "changed": changed}),
    )
}

/// Registers a document pasted into its collection's page (an element, a
/// form, a flow), as the API's `POST {collection}` does; refused, the page
/// shows every error at its pointer with the paste kept.
async fn register_document(
    req: HttpRequest,
    user: ConsoleUser,
    form: Fields,
    state: web::Data<AppState>,
    kind: DocKind,
) -> HttpResponse {
    let collection = kind.noun_plural();
    let text = field(&form, "document").to_string();
    let doc: Result<Value, _> = serde_json::from_str(&text);
    let sent = doc.as_ref().cloned().unwrap_or(Value::Null);
    let result = steward_change(&req, &user, &state, collection.into(), sent, field(&form, "_csrf"), || async {
        let doc = doc.map_err(|e| {
            ApiError::new(ErrorCode::MalformedJson, format!("The document is not JSON: {e}"))
                .with_errors(vec![crate::error::FieldError::new("", e.to_string())])
        })?;
        let by = format!("steward:{}", user.caller.token_id);
        state.catalog.publish(kind, doc, None, &by, crate::catalog::store::Publish::Create).await?;
        Ok(see_other(format!("/console/{collection}")))
    })
    .await;
    match result {
        Ok(r) => r,
        Err(e) if matches!(e.code.status().as_u16(), 400 | 409 | 422) => {
            let mut context = match kind {
                DocKind::Form => forms_context(&state).await,
                DocKind::Element => elements_context(&state),
                _ => flows_context(&state).await,
            };
            if let (Some(c), Some(r)) = (context.as_object_mut(), refused(&e, &text).as_object()) {
                c.extend(r.clone());
            }
            let mut resp = page(&req, Some(&user), &format!("{collection}.html"), context);
            *resp.status_mut() = e.code.status();
            resp
        }
        Err(e) => error_page(&req, Some(&user), &e),
    }
}

pub(super) async fn register_form(
    req: HttpRequest,
    user: ConsoleUser,
    form: Fields,
    state: web::Data<AppState>,
) -> HttpResponse {
    register_document(req, user, form, state, DocKind::Form).await
}

pub(super) async fn register_element(
    req: HttpRequest,
    user: ConsoleUser,
    form: Fields,
    state: web::Data<AppState>,
) -> HttpResponse {
    register_document(req, user, form, state, DocKind::Element).await
}

pub(super) async fn register_flow(
    req: HttpRequest,
    user: ConsoleUser,
    form: Fields,
    state: web::Data<AppState>,
) -> HttpResponse {
    register_document(req, user, form, state, DocKind::Flow).await
}

/// A form's fields, each with the element and person it is bound to.
pub(super) async fn form(
    req: HttpRequest,
    user: ConsoleUser,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    if let Err(e) = user.require(Role::Steward) {
        return error_page(&req, Some(&user), &e);
    }
    let catalog = state.catalog.get();
    let Some(f) = catalog.forms.get(path.as_str()) else {
        return error_page(&req, Some(&user), &ApiError::not_found(format!("No form \"{path}\".")));
    };
    let mut doc = serde_json::to_value(&f.form.doc).unwrap_or_default();
    doc["version"] = json!(f.form.version);
    page(&req, Some(&user), "form.html", json!({"title": f.form.doc.title, "page": "forms", "form": doc}))
}

/// The province's dossiers of a period against the national portal: the
/// tally per procedure, channel and status, Decision 766's counters, and
/// each dossier that differs, one click from its detail. Today by default.
pub(super) async fn reconciliation(
    req: HttpRequest,
    user: ConsoleUser,
    q: web::Query<BTreeMap<String, String>>,
    state: web::Data<AppState>,
) -> HttpResponse {
    if let Err(e) = user.require(Role::Steward) {
        return error_page(&req, Some(&user), &e);
    }
    let today = crate::domain::calendar::today_in_vietnam().to_string();
    let get = |k: &str| q.get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).unwrap_or(today.clone());
    let (from, to) = (get("from"), get("to"));
    let found = match crate::sync::period(&from, &to) {
        Ok((f, t)) => state.sync.reconcile(f, t).await,
        Err(e) => Err(e),
    };
    let mut context = json!({"title": "Đồng bộ DVCQG", "page": "sync", "from": from, "to": to,
        "resent": q.get("resent")});
    match found {
        Ok(r) => {
            let codes = crate::sync::national_codes();
            let tally: Vec<Value> = r
                .rows()
                .map(|t| {
                    json!({"procedure": t.procedure, "channel": codes.channel_name(t.channel), "status": t.status,
                           "status_word": codes.status_name(t.status), "held": t.tally.held, "matching": t.tally.matching})
                })
                .collect();
            let differences: Vec<Value> = r
                .differences
                .iter()
                .map(|d| {
                    json!({"code": d.code, "procedure": d.procedure, "channel": codes.channel_name(d.channel),
                           "status": d.status, "status_word": codes.status_name(d.status), "why": d.why, "detail": d.detail})
                })
                .collect();
            context["r"] = json!(r);
            context["tally"] = json!(tally);
            context["differences"] = json!(differences);
        }
        Err(e) => context["error"] = json!(e.detail),
    }
    page(&req, Some(&user), "reconciliation.html", context)
}

/// Sends again what the portal lacks of the period: the API's
/// `reconciliation/resend`.
pub(super) async fn resend(
    req: HttpRequest,
    user: ConsoleUser,
    form: Fields,
    state: web::Data<AppState>,
) -> HttpResponse {
    let (from, to) = (field(&form, "from").to_string(), field(&form, "to").to_string());
    let sent = json!({"from": from, "to": to});
    let result =
        steward_change(&req, &user, &state, "reconciliation/resend".into(), sent, field(&form, "_csrf"), || async {
            let (f, t) = crate::sync::period(&from, &to)?;
            let found = state.sync.reconcile(f, t).await?;
            let queued = state.sync.resend(&found.differences).await?;
            let (f, t) = (urlencoding::encode(&from), urlencoding::encode(&to));
            Ok(see_other(format!("/console/reconciliation?from={f}&to={t}&resent={}", queued.len())))
        })
        .await;
    result.unwrap_or_else(|e| error_page(&req, Some(&user), &e))
}

/// One dossier of the sync: the record lgsp holds beside the portal's copy,
/// the changes reported, and each message sent with its attempts and error.
pub(super) async fn sync_dossier(
    req: HttpRequest,
    user: ConsoleUser,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    if let Err(e) = user.require(Role::Steward) {
        return error_page(&req, Some(&user), &e);
    }
    let view = match state.sync.view(&path).await {
        Ok(v) => v,
        Err(e) => return error_page(&req, Some(&user), &e),
    };
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let outbox: Vec<Value> = view
        .outbox
        .iter()
        .map(|o| {
            json!({"kind": o.kind, "state": o.state, "attempts": o.attempts, "last_error": o.last_error,
                   "created": crate::db::micros_to_rfc3339(o.created_at),
                   "delivered": o.delivered_at.map(crate::db::micros_to_rfc3339)})
        })
        .collect();
    let context = json!({"title": view.code, "page": "sync", "v": view, "record_text": pretty(&view.record),
        "portal_text": view.portal.as_ref().map(pretty), "outbox": outbox,
        "local_link": state.dossiers.view_any(&view.code).await.is_ok()});
    page(&req, Some(&user), "sync_dossier.html", context)
}
