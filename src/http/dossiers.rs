//! Linked dossiers for portals: file one (`POST /v1/linked-dossiers`), read
//! its steps and timeline, answer a supplement request, withdraw it; and the
//! results kept for a citizen. Every call is metered, audited and checked
//! against the partner's policy like a prefill.

use crate::dossier::{DossierView, FileRequest, Filed, ResultView, SupplementRequest};
use crate::error::{ApiError, ErrorCode, FieldError};
use crate::http::admission::{Admitted, Audit, DossierCall, ResultsCall};
use crate::http::body::{citizen_id_at, json_body, typed_value};
use crate::http::caller::PartnerCaller;
use crate::http::partner::{check_consent, check_purpose};
use crate::state::AppState;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

/// The header a portal names each filing with; a repeat files nothing new.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

fn idempotency_key(req: &HttpRequest) -> Result<String, ApiError> {
    let key = req.headers().get(IDEMPOTENCY_KEY).and_then(|v| v.to_str().ok()).map(str::trim).unwrap_or("");
    if key.is_empty() || key.len() > 200 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::new(
            ErrorCode::HeaderTooLarge,
            "Name the filing with an Idempotency-Key header (1 to 200 visible ASCII characters, a UUID for \
             instance); a repeated request with the same key files nothing new.",
        ));
    }
    Ok(key.to_string())
}

/// Files a linked dossier: the declaration is checked against the flow's
/// schema and the choice of procedures against its rules; the dossier is
/// stored and answered `202` with its code, then carried step by step.
#[utoipa::path(tag = "partners", request_body = FileRequest,
    params(("Idempotency-Key" = String, Header, description = "Names the filing; a repeat with the same body answers the same dossier")),
    responses((status = 202, body = Filed), (status = 200, body = Filed, description = "A repeated request: the dossier it filed"),
        (status = 400, body = crate::error::Problem), (status = 403, body = crate::error::Problem),
        (status = 409, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("partner_key" = [])))]
#[post("/v1/linked-dossiers")]
pub async fn file_dossier(
    req: HttpRequest,
    call: Admitted<DossierCall>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let Admitted { caller, mut audit, body, .. } = call;
    let result = file_inner(&req, &state, &caller, &body, &mut audit).await;
    audit.finish(&state, result).await
}

async fn file_inner(
    req: &HttpRequest,
    state: &AppState,
    caller: &PartnerCaller,
    body: &[u8],
    audit: &mut Audit,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(req)?;
    let raw = json_body(req, body)?;
    let request: FileRequest = typed_value(raw.clone(), ErrorCode::InvalidBody, "The body does not fit a dossier")?;
    let requester = citizen_id_at("/requester_id", &request.requester_id)?;
    let mut limits = Vec::new();
    if request.procedures.as_ref().is_some_and(|p| p.len() > 20) {
        limits.push(FieldError::new("/procedures", "at most 20 procedures"));
    }
    if request.callback_url.as_ref().is_some_and(|u| u.chars().count() > 2000) {
        limits.push(FieldError::new("/callback_url", "at most 2000 characters"));
    }
    if !limits.is_empty() {
        return Err(
            ApiError::new(ErrorCode::InvalidBody, "The body does not fit a dossier; see errors.").with_errors(limits)
        );
    }
    let catalog = state.catalog.get();
    let flow = catalog.flow(&request.flow).cloned().ok_or_else(|| {
        let known: Vec<&str> = catalog.flows.values().filter(|f| f.enabled).map(|f| f.flow.id()).collect();
        ApiError::new(
            ErrorCode::InvalidBody,
            format!("No flow \"{}\"; the flows are {} (GET /v1/flows).", request.flow, known.join(", ")),
        )
        .with_errors(vec![FieldError::new("/flow", "no such flow")])
    })?;
    audit.record.resource = format!("linked_dossier/{}", flow.id());
    audit.record.purpose = Some(flow.doc.purpose.clone());
    audit.record.subject =
        flow.subject_of(&request.declaration, &requester.to_string()).or(Some(requester.to_string()));
    check_purpose(caller, &catalog, &flow.doc.purpose)?;
    check_consent(req, caller, audit)?;
    if let Some(url) = &request.callback_url {
        let parsed = reqwest::Url::parse(url).ok().filter(|u| matches!(u.scheme(), "http" | "https"));
        let allowed = parsed
            .as_ref()
            .is_some_and(|u| crate::adapter::host_allowed(u, &state.settings.dossiers.callback_allow_list));
        if !allowed {
            return Err(ApiError::new(
                ErrorCode::InvalidCallback,
                "callback_url must be an http(s) URL whose host is in the callback allow-list \
                 (dossiers.callback_allow_list); ask the province's stewards to add your portal's host.",
            )
            .with_errors(vec![FieldError::new("/callback_url", "host not allowed")]));
        }
    }
    let filed = state.dossiers.file(&caller.partner.id, &key, &raw, request, flow).await?;
    audit.record.detail["dossier"] = json!(filed.code);
    audit.record.detail["replayed"] = json!(filed.replayed);
    let status = if filed.replayed { actix_web::http::StatusCode::OK } else { actix_web::http::StatusCode::ACCEPTED };
    Ok(HttpResponse::build(status).insert_header(("Location", filed.location.clone())).json(filed))
}

/// A dossier's steps, each with its state, deadline and result, and its
/// timeline. Only the partner that filed it reads it.
#[utoipa::path(tag = "partners", params(("code" = String, Path, description = "The dossier code")),
    responses((status = 200, body = DossierView), (status = 404, body = crate::error::Problem)),
    security(("partner_key" = [])))]
#[get("/v1/linked-dossiers/{code}")]
pub async fn get_dossier(
    path: web::Path<String>,
    call: Admitted<DossierCall>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let Admitted { caller, mut audit, .. } = call;
    let result = async {
        let view = state.dossiers.view(&caller.partner.id, &path).await?;
        audit.record.subject = view.subject_id.clone();
        Ok(HttpResponse::Ok().json(view))
    }
    .await;
    audit.finish(&state, result).await
}

#[derive(Serialize, ToSchema)]
pub struct SupplementAccepted {
    pub code: String,
    /// The step whose documents are sent to its registry.
    pub step: String,
}

/// Answers a supplement request with the documents it asks for; they are
/// sent to the registry at once.
#[utoipa::path(tag = "partners", params(("code" = String, Path, description = "The dossier code")), request_body = SupplementRequest,
    responses((status = 202, body = SupplementAccepted), (status = 404, body = crate::error::Problem),
        (status = 409, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("partner_key" = [])))]
#[post("/v1/linked-dossiers/{code}/supplement")]
pub async fn supplement_dossier(
    req: HttpRequest,
    path: web::Path<String>,
    call: Admitted<DossierCall>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let Admitted { caller, mut audit, body, .. } = call;
    let result = async {
        let raw = json_body(&req, &body)?;
        let s: SupplementRequest = typed_value(raw, ErrorCode::InvalidBody, "The body does not fit a supplement")?;
        let long = |t: &Option<String>, n: usize| t.as_ref().is_some_and(|t| t.chars().count() > n);
        let badly_named = s
            .documents
            .iter()
            .any(|d| d.name.trim().is_empty() || d.name.chars().count() > 300 || long(&d.reference, 300));
        if s.documents.is_empty() || s.documents.len() > 20 || badly_named {
            return Err(ApiError::new(
                ErrorCode::InvalidBody,
                "Send 1 to 20 documents, each named in at most 300 characters.",
            )
            .with_errors(vec![FieldError::new("/documents", "1 to 20 documents, each named")]));
        }
        if long(&s.note, 2000) {
            return Err(ApiError::new(ErrorCode::InvalidBody, "The note has at most 2000 characters.")
                .with_errors(vec![FieldError::new("/note", "at most 2000 characters")]));
        }
        let step = state.dossiers.supplement(&caller.partner.id, &path, s).await?;
        audit.record.detail["step"] = json!(step);
        Ok(HttpResponse::Accepted().json(SupplementAccepted { code: path.to_string(), step }))
    }
    .await;
    audit.finish(&state, result).await
}

#[derive(Serialize, ToSchema)]
pub struct Withdrawn {
    pub code: String,
    /// `withdrawn`, or `withdrawing` while steps a registry holds run to their end.
    pub state: String,
}

/// Withdraws a dossier: the procedures not yet filed with their registry
/// are not; those filed run to their end.
#[utoipa::path(tag = "partners", params(("code" = String, Path, description = "The dossier code")),
    responses((status = 200, body = Withdrawn), (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)),
    security(("partner_key" = [])))]
#[post("/v1/linked-dossiers/{code}/withdraw")]
pub async fn withdraw_dossier(
    path: web::Path<String>,
    call: Admitted<DossierCall>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let Admitted { caller, audit, .. } = call;
    let result = async {
        let state_now = state.dossiers.withdraw(&caller.partner.id, &path).await?;
        Ok(HttpResponse::Ok().json(Withdrawn { code: path.to_string(), state: state_now }))
    }
    .await;
    audit.finish(&state, result).await
}

/// The results the province's linked procedures gave a citizen (a birth
/// certificate, a health-insurance card, a decision), newest first: its
/// electronic records, for reuse. Each holds only the elements the partner
/// may receive.
#[utoipa::path(tag = "partners", params(("citizen_id" = crate::schema::openapi::CitizenId, Path)),
    responses((status = 200, body = Vec<ResultView>), (status = 400, body = crate::error::Problem), (status = 403, body = crate::error::Problem)),
    security(("partner_key" = [])))]
#[get("/v1/subjects/{citizen_id}/results")]
pub async fn subject_results(
    req: HttpRequest,
    path: web::Path<String>,
    call: Admitted<ResultsCall>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let Admitted { caller, mut audit, .. } = call;
    let result = async {
        let id = citizen_id_at("citizen_id", &path)?;
        audit.record.subject = Some(id.to_string());
        check_consent(&req, &caller, &mut audit)?;
        let catalog = state.catalog.get();
        let mut results = state.dossiers.results(&id.to_string()).await?;
        let mut released = std::collections::BTreeSet::new();
        for r in &mut results {
            if let Some(data) = r.data.as_object_mut() {
                data.retain(|k, _| caller.partner.policy.may_receive(k, &*catalog.elements));
                released.extend(data.keys().cloned());
            }
        }
        results.retain(|r| r.data.as_object().is_some_and(|d| !d.is_empty()));
        audit.record.elements = released.into_iter().collect();
        Ok(HttpResponse::Ok().json(results))
    }
    .await;
    audit.finish(&state, result).await
}

/// The one-stop system's grant: the purpose `dossier_sync` (or every purpose).
fn may_report(caller: &PartnerCaller) -> Result<(), ApiError> {
    let p = &caller.partner.policy.purposes;
    if p.contains("dossier_sync") || p.contains("*") {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::Forbidden,
        format!("Partner {} is not granted the purpose \"dossier_sync\" (the one-stop system's).", caller.partner.id),
    ))
}

/// The province's one-stop system reports a dossier: stored with its record
/// for the national portal, and carried there in order, once.
#[utoipa::path(tag = "partners", request_body = crate::sync::DossierReport,
    responses((status = 202, body = crate::sync::Reported), (status = 200, body = crate::sync::Reported, description = "A repeated report"),
        (status = 403, body = crate::error::Problem), (status = 409, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("partner_key" = [])))]
#[post("/v1/dossiers")]
pub async fn report_dossier(
    req: HttpRequest,
    call: Admitted<crate::http::admission::SyncCall>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let Admitted { caller, mut audit, body, .. } = call;
    let result = async {
        may_report(&caller)?;
        let raw = json_body(&req, &body)?;
        let r: crate::sync::DossierReport =
            typed_value(raw.clone(), ErrorCode::InvalidBody, "The body does not fit a dossier")?;
        audit.record.subject = Some(r.applicant_id.chars().take(50).collect());
        audit.record.resource = format!("dossiers/{}", r.code);
        let reported = state.sync.report_dossier(&caller.partner.id, &raw, r).await?;
        let status =
            if reported.replayed { actix_web::http::StatusCode::OK } else { actix_web::http::StatusCode::ACCEPTED };
        Ok(HttpResponse::build(status).json(reported))
    }
    .await;
    audit.finish(&state, result).await
}

/// A status change of a reported dossier: stored with the record's new status
/// and the processing step for the national portal.
#[utoipa::path(tag = "partners", params(("code" = String, Path, description = "The dossier code")), request_body = crate::sync::EventReport,
    responses((status = 202, body = crate::sync::Reported), (status = 200, body = crate::sync::Reported, description = "A repeated report"),
        (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem),
        (status = 409, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("partner_key" = [])))]
#[post("/v1/dossiers/{code}/events")]
pub async fn report_event(
    req: HttpRequest,
    path: web::Path<String>,
    call: Admitted<crate::http::admission::SyncCall>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let Admitted { caller, audit, body, .. } = call;
    let result = async {
        may_report(&caller)?;
        let raw = json_body(&req, &body)?;
        let e: crate::sync::EventReport =
            typed_value(raw.clone(), ErrorCode::InvalidBody, "The body does not fit a change")?;
        let reported = state.sync.report_event(&caller.partner.id, &path, &raw, e).await?;
        let status =
            if reported.replayed { actix_web::http::StatusCode::OK } else { actix_web::http::StatusCode::ACCEPTED };
        Ok(HttpResponse::build(status).json(reported))
    }
    .await;
    audit.finish(&state, result).await
}
