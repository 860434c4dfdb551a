//! The partner API (`Authorization: Bearer <api key>`): prefill, exchange,
//! forms, adapters, and citizens' access logs. Every prefill and exchange,
//! allowed or refused, leaves exactly one audit record.

use crate::adapter::OperationKind;
use crate::audit::query::Access;
use crate::audit::{Action, Outcome};
use crate::catalog::Catalog;
use crate::domain::partner::PartnerKind;
use crate::domain::CitizenId;
use crate::error::{ApiError, ErrorCode, FieldError};
use crate::form::{Form, REQUESTER, SUBJECT};
use crate::http::admission::{sensitive_of, AccessLogCall, Admitted, Audit, ExchangeCall, PrefillCall};
use crate::http::body::{citizen_id_at, json_body, typed_value};
use crate::http::caller::PartnerCaller;
use crate::prefill::{PrefillAnswer, PrefillInput, PrefillRequest, Unavailable};
use crate::state::AppState;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use utoipa::ToSchema;

/// The purpose of a call: checked against the partner's grant.
/// A purpose the policy names is granted as named; a wildcard grants the
/// procedures the catalogue's forms serve, so that a made-up purpose never
/// reaches the audit trail as if it were one.
pub(crate) fn check_purpose(caller: &PartnerCaller, catalog: &Catalog, purpose: &str) -> Result<(), ApiError> {
    if purpose.is_empty() || purpose.len() > 100 {
        return Err(ApiError::new(
            ErrorCode::InvalidParameter,
            "State the purpose of the call (the procedure code, at most 100 characters).",
        ));
    }
    let purposes = &caller.partner.policy.purposes;
    if purposes.contains(purpose) {
        return Ok(());
    }
    if !purposes.contains("*") {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("Partner {} is not granted the purpose \"{purpose}\".", caller.partner.id),
        ));
    }
    if !catalog.purposes.contains(purpose) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "\"{purpose}\" is not a procedure lgsp knows: a wildcard grant covers the procedures of the forms \
                 (their purposes in GET /v1/forms). State one of those, or have a steward grant this one by name."
            ),
        ));
    }
    Ok(())
}

/// Partners that are not state agencies must cite the citizen's consent.
pub(crate) fn check_consent(req: &HttpRequest, caller: &PartnerCaller, audit: &mut Audit) -> Result<(), ApiError> {
    if caller.partner.kind != PartnerKind::ConsentRequired {
        return Ok(());
    }
    let consent = req.headers().get("x-consent-reference").and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty());
    match consent {
        Some(c) if c.len() <= 200 => {
            audit.record.detail["consent_reference"] = json!(c);
            Ok(())
        }
        _ => Err(ApiError::new(
            ErrorCode::Forbidden,
            "This partner needs the citizen's consent for each call: send its reference in X-Consent-Reference.",
        )),
    }
}

#[derive(Serialize, ToSchema)]
pub struct ExchangeAnswer {
    pub adapter: String,
    pub operation: String,
    pub adapter_version: i32,
    pub retrieved_at: String,
    /// Canonical data elements (see `schemas/elements.json`).
    #[schema(value_type = Object)]
    pub elements: Value,
    /// Elements the registry returned that this partner may not receive: not sent.
    pub withheld: Vec<String>,
    /// The elements sent that are sensitive personal data (Decree 13/2023/NĐ-CP:
    /// ethnic origin, religious views).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sensitive: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Calls one registry operation and returns canonical elements. The body is
/// the operation's request (see `GET /v1/adapters`); `X-Purpose` states why.
#[utoipa::path(
    tag = "partners",
    params(("adapter" = String, Path), ("operation" = String, Path),
           ("X-Purpose" = String, Header, description = "The procedure code the call serves")),
    request_body(content = Object, content_type = "application/json"),
    responses((status = 200, body = ExchangeAnswer),
              (status = 400, body = crate::error::Problem), (status = 401, body = crate::error::Problem),
              (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem),
              (status = 415, body = crate::error::Problem), (status = 422, body = crate::error::Problem),
              (status = 429, body = crate::error::Problem), (status = 502, body = crate::error::Problem),
              (status = 503, body = crate::error::Problem), (status = 504, body = crate::error::Problem)),
    security(("partner_key" = []))
)]
#[post("/v1/exchange/{adapter}/{operation}")]
pub async fn exchange(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    call: Admitted<ExchangeCall>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (adapter_id, op_name) = path.into_inner();
    let Admitted { caller, mut audit, body, .. } = call;
    let result = exchange_inner(&req, &state, &caller, &adapter_id, &op_name, &body, &mut audit).await;
    audit.finish(&state, result).await
}

async fn exchange_inner(
    req: &HttpRequest,
    state: &AppState,
    caller: &PartnerCaller,
    adapter_id: &str,
    op_name: &str,
    body: &[u8],
    audit: &mut Audit,
) -> Result<HttpResponse, ApiError> {
    let catalog = state.catalog.get();
    let adapter = catalog
        .adapter(adapter_id)
        .ok_or_else(|| ApiError::not_found(format!("No enabled adapter \"{adapter_id}\"; see GET /v1/adapters.")))?;
    let op = adapter.operations.get(op_name).ok_or_else(|| {
        ApiError::not_found(format!("Adapter \"{adapter_id}\" has no operation \"{op_name}\"; see GET /v1/adapters."))
    })?;
    if op.kind != OperationKind::Read {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "{adapter_id}.{op_name} writes to the registry or reads an application; it is carried only by a \
                 linked dossier's step (POST /v1/linked-dossiers)."
            ),
        ));
    }
    if !caller.partner.policy.may_call(adapter_id, op_name) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("Partner {} is not granted {adapter_id}.{op_name}.", caller.partner.id),
        ));
    }
    let purpose = req.headers().get("x-purpose").and_then(|v| v.to_str().ok()).unwrap_or("").trim().to_string();
    audit.record.purpose = Some(purpose.clone()).filter(|p| !p.is_empty());
    check_purpose(caller, &catalog, &purpose)?;
    check_consent(req, caller, audit)?;
    let request = json_body(req, body)?;
    if let Some(id) = request["citizen_id"].as_str() {
        audit.record.subject = Some(id.chars().take(12).collect());
        // Checked as a prefill checks it, before anything reaches a registry.
        citizen_id_at("/citizen_id", id)?;
    }
    audit.record.adapters = vec![format!("{adapter_id}.{op_name}")];
    // Elements the partner is not granted are never mapped; they are named as withheld.
    let policy = &caller.partner.policy;
    let granted = |e: &str| policy.may_receive(e, &*catalog.elements);
    let mapped = adapter.exchange(op, &request, &state.http, &state.metrics, &granted, None).await.map_err(|e| {
        audit.record.detail["source"] = json!(e.kind());
        if let crate::adapter::client::ExchangeError::InvalidResponse { point, .. } = &e {
            audit.record.detail["schema_violation"] = json!(point);
        }
        ApiError::from(e)
    })?;
    let withheld: Vec<String> =
        op.elements.iter().filter(|e| !policy.may_receive(e, &*catalog.elements)).cloned().collect();
    let elements = mapped.elements;
    audit.record.elements = elements.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
    if !withheld.is_empty() {
        audit.record.detail["withheld"] = json!(withheld);
    }
    let sensitive = sensitive_of(&audit.record.elements, &catalog.elements);
    Ok(HttpResponse::Ok().json(ExchangeAnswer {
        adapter: adapter.id.clone(),
        operation: op.name.clone(),
        adapter_version: adapter.version,
        retrieved_at: crate::db::micros_to_rfc3339(crate::db::now_micros()),
        elements,
        withheld,
        sensitive,
        notes: mapped.notes,
    }))
}

/// Prefills a form for a citizen: only the registries the form needs are
/// called, in parallel; every field comes back with its source, or marked
/// unavailable with the reason.
#[utoipa::path(
    tag = "partners",
    request_body = PrefillRequest,
    responses((status = 200, body = PrefillAnswer),
              (status = 400, body = crate::error::Problem), (status = 401, body = crate::error::Problem),
              (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem),
              (status = 415, body = crate::error::Problem), (status = 422, body = crate::error::Problem),
              (status = 429, body = crate::error::Problem)),
    security(("partner_key" = []))
)]
#[post("/v1/prefill")]
pub async fn prefill(
    req: HttpRequest,
    call: Admitted<PrefillCall>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let Admitted { caller, mut audit, body, .. } = call;
    let result = prefill_inner(&req, &state, &caller, &body, &mut audit).await;
    audit.finish(&state, result).await
}

async fn prefill_inner(
    req: &HttpRequest,
    state: &AppState,
    caller: &PartnerCaller,
    body: &[u8],
    audit: &mut Audit,
) -> Result<HttpResponse, ApiError> {
    let value = json_body(req, body)?;
    if let Some(f) = value["form"].as_str() {
        audit.record.resource = f.chars().take(64).collect();
    }
    let request: PrefillRequest =
        typed_value(value, ErrorCode::InvalidBody, "The body does not fit a prefill request")?;
    audit.record.purpose = Some(request.purpose.clone());
    let subject = citizen_id_at("/citizen_id", &request.citizen_id)?;
    audit.record.subject = Some(subject.to_string());
    let mut given = request
        .relatives
        .iter()
        .map(|(person, id)| Ok((person.clone(), citizen_id_at(&format!("/relatives/{person}"), id)?)))
        .collect::<Result<BTreeMap<String, CitizenId>, ApiError>>()?;
    let requester = request.requester_id.as_deref().map(|id| citizen_id_at("/requester_id", id)).transpose()?;
    let catalog = state.catalog.get();
    let form = catalog
        .form(&request.form)
        .ok_or_else(|| ApiError::not_found(format!("No enabled form \"{}\"; see GET /v1/forms.", request.form)))?;
    if !caller.partner.policy.may_use_form(form.id()) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("Partner {} is not granted the form \"{}\".", caller.partner.id, form.id()),
        ));
    }
    if !form.doc.purposes.contains(&request.purpose) {
        return Err(ApiError::new(
            ErrorCode::InvalidBody,
            format!("Form \"{}\" serves the purposes {}; state one of them.", form.id(), form.doc.purposes.join(", ")),
        )
        .with_errors(vec![FieldError::new("/purpose", "not a purpose of this form")]));
    }
    check_persons(form, &given)?;
    if let Some(id) = requester.filter(|_| form.persons.contains_key(REQUESTER)) {
        given.entry(REQUESTER.to_string()).or_insert(id);
    }
    check_purpose(caller, &catalog, &request.purpose)?;
    check_consent(req, caller, audit)?;
    // The grant as this snapshot holds it, so that the snapshot may keep the
    // plan made with it; the caller's own if the partner is gone from it.
    let current = catalog.partners.get(&caller.partner.id);
    let partner = current.unwrap_or(&caller.partner);
    let may_receive = |e: &str| partner.policy.may_receive(e, &*catalog.elements);
    let answer = crate::prefill::prefill(PrefillInput {
        catalog: &catalog,
        form,
        citizen_id: subject,
        purpose: &request.purpose,
        given: &given,
        partner: current.map(|p| p.id.as_str()),
        may_receive: &may_receive,
        http: &state.http,
        metrics: &state.metrics,
        budget: Duration::from_millis(state.settings.prefill.budget_ms),
        results: Some(&state.dossiers),
    })
    .await;
    audit.record.adapters = answer.operations();
    audit.record.elements = answer.released();
    audit.record.outcome = if answer.complete() { Outcome::Ok } else { Outcome::Partial };
    audit.record.detail = json!({
        "form_version": answer.form_version,
        "coverage": answer.coverage,
        "sources": answer.sources.iter().map(|s| json!({"operation": s.operation, "person": s.person, "status": s.status})).collect::<Vec<_>>(),
        "not_permitted": answer.fields.iter().filter(|f| f.reason == Some(Unavailable::NotPermitted)).map(|f| &f.id).collect::<Vec<_>>(),
    });
    Ok(HttpResponse::Ok().json(answer))
}

/// The persons a request names must be persons of the form, other than the subject.
fn check_persons(form: &Form, given: &BTreeMap<String, CitizenId>) -> Result<(), ApiError> {
    let unknown: Vec<&String> = given.keys().filter(|p| *p == SUBJECT || !form.persons.contains_key(*p)).collect();
    if unknown.is_empty() {
        return Ok(());
    }
    let others: Vec<&str> = form.persons.keys().map(String::as_str).filter(|p| *p != SUBJECT).collect();
    let shown = |p: &str| p.chars().take(40).collect::<String>();
    Err(ApiError::new(
        ErrorCode::InvalidBody,
        format!(
            "relatives names persons form \"{}\" is not about; it may name {} (the subject is citizen_id).",
            form.id(),
            if others.is_empty() { "none".to_string() } else { others.join(", ") }
        ),
    )
    .with_errors(
        unknown
            .iter()
            .take(50)
            .map(|p| FieldError::new(format!("/relatives/{}", shown(p)), "not a person of this form"))
            .collect(),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct FormSummary {
    pub id: String,
    pub version: i32,
    pub title: String,
    pub form_code: String,
    pub procedure: crate::form::Procedure,
    pub purposes: Vec<String>,
    pub fields: usize,
    /// Fields bound to a data element / declarable fields.
    pub ceiling: f64,
}

pub use crate::prefill::ratio;

pub fn summary(form: &Form) -> FormSummary {
    let (bound, total) = form.ceiling();
    FormSummary {
        id: form.id().to_string(),
        version: form.version,
        title: form.doc.title.clone(),
        form_code: form.doc.form_code.clone(),
        procedure: form.doc.procedure.clone(),
        purposes: form.doc.purposes.clone(),
        fields: total,
        ceiling: ratio(bound, total),
    }
}

/// The forms this partner may prefill.
#[utoipa::path(tag = "partners", responses((status = 200, body = Vec<FormSummary>), (status = 401, body = crate::error::Problem)), security(("partner_key" = [])))]
#[get("/v1/forms")]
pub async fn list_forms(caller: PartnerCaller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let catalog = state.catalog.get();
    let list: Vec<FormSummary> = catalog
        .forms
        .values()
        .filter(|f| f.enabled && caller.partner.policy.may_use_form(f.form.id()))
        .map(|f| summary(&f.form))
        .collect();
    Ok(HttpResponse::Ok().json(list))
}

fn visible_form(caller: &PartnerCaller, state: &AppState, id: &str) -> Result<std::sync::Arc<Form>, ApiError> {
    let catalog = state.catalog.get();
    let form = catalog.form(id).ok_or_else(|| ApiError::not_found(format!("No enabled form \"{id}\".")))?;
    if !caller.partner.policy.may_use_form(id) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("Partner {} is not granted the form \"{id}\".", caller.partner.id),
        ));
    }
    Ok(form.clone())
}

/// One form's definition: its fields, their labels and bindings.
#[utoipa::path(tag = "partners", params(("id" = String, Path)), responses((status = 200, body = crate::schema::openapi::PublishedForm), (status = 404, body = crate::error::Problem)), security(("partner_key" = [])))]
#[get("/v1/forms/{id}")]
pub async fn get_form(
    caller: PartnerCaller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let form = visible_form(&caller, &state, &path)?;
    let mut doc = form.definition.clone();
    doc["version"] = json!(form.version);
    Ok(HttpResponse::Ok().json(doc))
}

#[derive(Serialize, ToSchema)]
pub struct FormCoverage {
    pub form: String,
    pub version: i32,
    pub declarable_fields: usize,
    pub bound_fields: usize,
    /// Static ceiling: bound fields / declarable fields.
    pub ceiling: f64,
    /// Measured over the prefills this platform served for the form.
    pub measured: Option<Measured>,
    pub target: f64,
}

#[derive(Serialize, ToSchema)]
pub struct Measured {
    pub prefills: usize,
    /// Mean of prefilled / declarable over those prefills.
    pub cut: f64,
    pub mean_characters_saved: f64,
}

/// The form's ceiling and its measured cut of declared data.
#[utoipa::path(tag = "partners", params(("id" = String, Path)), responses((status = 200, body = FormCoverage), (status = 404, body = crate::error::Problem)), security(("partner_key" = [])))]
#[get("/v1/forms/{id}/coverage")]
pub async fn form_coverage(
    caller: PartnerCaller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let form = visible_form(&caller, &state, &path)?;
    let details = state.audit.prefill_details(form.id().to_string(), 10_000).await?;
    Ok(HttpResponse::Ok().json(coverage_of(&form, &details)))
}

pub fn coverage_of(form: &Form, details: &[Value]) -> FormCoverage {
    let (bound, total) = form.ceiling();
    let cuts: Vec<(f64, f64)> = details
        .iter()
        .filter_map(|d| Some((d["coverage"]["cut"].as_f64()?, d["coverage"]["characters_saved"].as_f64()?)))
        .collect();
    let measured = (!cuts.is_empty()).then(|| Measured {
        prefills: cuts.len(),
        cut: (cuts.iter().map(|c| c.0).sum::<f64>() / cuts.len() as f64 * 1000.0).round() / 1000.0,
        mean_characters_saved: (cuts.iter().map(|c| c.1).sum::<f64>() / cuts.len() as f64 * 10.0).round() / 10.0,
    });
    FormCoverage {
        form: form.id().to_string(),
        version: form.version,
        declarable_fields: total,
        bound_fields: bound,
        ceiling: ratio(bound, total),
        measured,
        target: 0.2,
    }
}

/// An adapter as a partner sees it: the operations it may call.
#[derive(Serialize, ToSchema)]
pub struct AdapterListing {
    pub id: String,
    pub name: String,
    pub description: String,
    pub version: i32,
    pub operations: Vec<OperationListing>,
}

/// One operation a partner may call, with the schemas of its request and answer.
#[derive(Serialize, ToSchema)]
pub struct OperationListing {
    pub name: String,
    pub description: String,
    /// How to call it: `POST /v1/exchange/{adapter}/{operation}`.
    pub call: String,
    /// JSON Schema (draft 2020-12) of the request body.
    #[schema(value_type = Object)]
    pub request_schema: Value,
    /// JSON Schema (draft 2020-12) of the answer's `elements`.
    #[schema(value_type = Object)]
    pub response_schema: Value,
    /// The elements it yields that this partner may receive.
    pub elements: Vec<String>,
    /// Those of them that are sensitive personal data.
    pub sensitive: Vec<String>,
}

/// The adapters and operations this partner may call, with their schemas
/// (in the spirit of X-Road's listMethods and getOpenAPI).
#[utoipa::path(tag = "partners", responses((status = 200, body = Vec<AdapterListing>), (status = 401, body = crate::error::Problem)), security(("partner_key" = [])))]
#[get("/v1/adapters")]
pub async fn list_adapters(caller: PartnerCaller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let catalog = state.catalog.get();
    let policy = &caller.partner.policy;
    let list: Vec<AdapterListing> = catalog
        .adapters
        .values()
        .filter(|a| a.enabled)
        .filter_map(|a| {
            let ops: Vec<OperationListing> = a
                .adapter
                .operations
                .values()
                .filter(|op| policy.may_call(&a.adapter.id, &op.name))
                .map(|op| OperationListing {
                    name: op.name.clone(),
                    description: op.description.clone(),
                    call: format!("POST /v1/exchange/{}/{}", a.adapter.id, op.name),
                    request_schema: op.request_schema.clone(),
                    response_schema: op.output_schema.clone(),
                    elements: op
                        .elements
                        .iter()
                        .filter(|e| policy.may_receive(e, &*catalog.elements))
                        .cloned()
                        .collect(),
                    sensitive: op
                        .elements
                        .iter()
                        .filter(|e| policy.may_receive(e, &*catalog.elements) && catalog.elements.is_sensitive(e))
                        .cloned()
                        .collect(),
                })
                .collect();
            (!ops.is_empty()).then(|| AdapterListing {
                id: a.adapter.id.clone(),
                name: a.adapter.name.clone(),
                description: a.adapter.description.clone(),
                version: a.adapter.version,
                operations: ops,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(list))
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AccessLogQuery {
    /// Most accesses in this page, 1 to 500; default 100.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// Where the previous page ended, as its `Link` header gives it.
    #[param(minimum = 1)]
    pub cursor: Option<i64>,
}

/// Who accessed a citizen's data, when and why (for the portal to show the
/// citizen), newest first, a page at a time: while there are older accesses,
/// a `Link` header with `rel="next"` names the next page. Needs the
/// `access_log` grant.
#[utoipa::path(tag = "partners", params(("citizen_id" = crate::schema::openapi::CitizenId, Path), AccessLogQuery), responses((status = 200, body = Vec<Access>), (status = 400, body = crate::error::Problem), (status = 403, body = crate::error::Problem)), security(("partner_key" = [])))]
#[get("/v1/subjects/{citizen_id}/access-log")]
pub async fn access_log(
    req: HttpRequest,
    path: web::Path<String>,
    q: web::Query<AccessLogQuery>,
    call: Admitted<AccessLogCall>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let Admitted { caller, mut audit, .. } = call;
    let result = access_log_inner(&req, &state, &caller, &path, &q, &mut audit).await;
    audit.finish(&state, result).await
}

/// Reading a citizen's access log is itself an access to their personal
/// data: it is audited as one (and so shows in the log it reads), counts
/// against the partner's quota, and needs the citizen's consent where the
/// partner's kind does.
async fn access_log_inner(
    req: &HttpRequest,
    state: &AppState,
    caller: &PartnerCaller,
    citizen: &str,
    q: &AccessLogQuery,
    audit: &mut Audit,
) -> Result<HttpResponse, ApiError> {
    if !caller.partner.policy.access_log {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("Partner {} is not granted access logs (policy.access_log).", caller.partner.id),
        ));
    }
    let id = CitizenId::parse(citizen).map_err(|e| ApiError::new(ErrorCode::InvalidCitizenId, e.to_string()))?;
    audit.record.subject = Some(id.to_string());
    check_consent(req, caller, audit)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::new(ErrorCode::InvalidParameter, "limit must be between 1 and 500."));
    }
    if q.cursor.is_some_and(|c| c < 1) {
        return Err(ApiError::new(ErrorCode::InvalidParameter, "cursor is the one a Link header gave, 1 or more."));
    }
    let mut rows = state.audit.accesses(id.to_string(), q.cursor, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = rows.last().filter(|_| more).map(|r| r.seq);
    let catalog = state.catalog.get();
    let items: Vec<Access> = rows
        .into_iter()
        .map(|r| {
            let elements: Vec<String> = serde_json::from_str(&r.elements).unwrap_or_default();
            Access {
                time: crate::db::micros_to_rfc3339(r.ts),
                agency_name: match catalog.partners.get(&r.partner_id) {
                    Some(p) => p.name.clone(),
                    // A steward's dry run of an adapter read the record.
                    None if r.action == Action::Admin.as_str() => "lgsp data steward (adapter test)".into(),
                    None => String::new(),
                },
                agency_id: r.partner_id,
                purpose: r.purpose,
                action: r.action,
                resource: r.resource,
                sensitive: sensitive_of(&elements, &catalog.elements),
                elements,
                outcome: r.outcome,
            }
        })
        .collect();
    let mut answer = HttpResponse::Ok();
    if let Some(seq) = next {
        answer.insert_header((
            "Link",
            format!("</v1/subjects/{id}/access-log?limit={limit}&cursor={seq}>; rel=\"next\""),
        ));
    }
    Ok(answer.json(items))
}
