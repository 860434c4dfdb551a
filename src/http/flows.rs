//! Flows (linked procedures): stewards register, version, disable and roll
//! them back (`/admin/v1/flows`); partners read them (`/v1/flows`) to build
//! the declaration a dossier carries.

use crate::catalog::manage::DocKind;
use crate::catalog::store::{Publish, VersionInfo};
use crate::error::ApiError;
use crate::flow::Flow;
use crate::http::admin::{change_state, publish, version_document, versions, Published, StateChange};
use crate::http::caller::{PartnerCaller, Steward};
use crate::state::AppState;
use actix_web::{get, post, put, web, HttpRequest, HttpResponse};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// A flow as partners and stewards list it.
#[derive(Serialize, ToSchema)]
pub struct FlowSummary {
    pub id: String,
    pub version: i32,
    pub title: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub title_en: String,
    /// The declaration form a portal prefills for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub form: Option<String>,
    /// The procedure code a partner must be granted to file its dossiers.
    pub purpose: String,
    /// Working days from receipt for the whole dossier.
    pub deadline_days: u32,
    /// How many procedures a dossier carries at least.
    pub min_procedures: usize,
    pub steps: Vec<StepSummary>,
    /// JSON Schema of the declaration.
    #[schema(value_type = Object)]
    pub declaration_schema: Value,
}

#[derive(Serialize, ToSchema)]
pub struct StepSummary {
    pub id: String,
    pub title: String,
    /// The registry that carries it out (the adapter).
    pub agency: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// Whether the citizen may leave it out.
    pub optional: bool,
    pub deadline_days: u32,
}

/// A flow as stewards list it: and whether it is enabled.
#[derive(Serialize, ToSchema)]
pub struct StewardFlow {
    #[serde(flatten)]
    pub summary: FlowSummary,
    pub enabled: bool,
}

/// One stored version of a flow.
#[derive(Serialize, ToSchema)]
pub struct FlowVersion {
    pub id: String,
    pub version: i32,
    #[schema(value_type = crate::schema::openapi::FlowDefinition)]
    pub document: Value,
}

pub fn summary(f: &Flow) -> FlowSummary {
    FlowSummary {
        id: f.doc.id.clone(),
        version: f.version,
        title: f.doc.title.clone(),
        title_en: f.doc.title_en.clone(),
        form: f.doc.form.clone(),
        purpose: f.doc.purpose.clone(),
        deadline_days: f.doc.deadline_days,
        min_procedures: f.doc.min_procedures,
        declaration_schema: f.doc.declaration_schema.clone(),
        steps: f
            .steps
            .iter()
            .map(|s| StepSummary {
                id: s.doc.id.clone(),
                title: s.doc.title.clone(),
                agency: s.doc.adapter.clone(),
                after: s.doc.after.clone(),
                optional: s.doc.optional,
                deadline_days: s.doc.deadline_days,
            })
            .collect(),
    }
}

/// The flows a portal may file dossiers with: their steps, which the citizen
/// may choose, and the declaration's schema.
#[utoipa::path(tag = "partners", responses((status = 200, body = Vec<FlowSummary>), (status = 401, body = crate::error::Problem)), security(("partner_key" = [])))]
#[get("/v1/flows")]
pub async fn partner_flows(_caller: PartnerCaller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let catalog = state.catalog.get();
    let list: Vec<FlowSummary> = catalog.flows.values().filter(|f| f.enabled).map(|f| summary(&f.flow)).collect();
    Ok(HttpResponse::Ok().json(list))
}

/// Registers a new flow (version 1): its steps' operations must be write
/// operations of adapters there are, its form a form there is.
#[utoipa::path(tag = "stewards", request_body = crate::schema::openapi::FlowDefinition,
    responses((status = 201, body = Published), (status = 409, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("admin_token" = [])))]
#[post("/admin/v1/flows")]
pub async fn create_flow(
    who: Result<Steward, ApiError>,
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    publish(req, who, &state, DocKind::Flow, &body, None, Publish::Create).await
}

/// Publishes a new version of a flow. Dossiers already filed keep the
/// version they were filed with.
#[utoipa::path(tag = "stewards", params(("id" = String, Path)), request_body = crate::schema::openapi::FlowDefinition,
    responses((status = 200, body = Published), (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("admin_token" = [])))]
#[put("/admin/v1/flows/{id}")]
pub async fn update_flow(
    who: Result<Steward, ApiError>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    publish(req, who, &state, DocKind::Flow, &body, Some(&path), Publish::NewVersion).await
}

#[utoipa::path(tag = "stewards", responses((status = 200, body = Vec<StewardFlow>)), security(("admin_token" = [])))]
#[get("/admin/v1/flows")]
pub async fn list_flows(_steward: Steward, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let catalog = state.catalog.get();
    let list: Vec<StewardFlow> =
        catalog.flows.values().map(|f| StewardFlow { summary: summary(&f.flow), enabled: f.enabled }).collect();
    Ok(HttpResponse::Ok().json(list))
}

#[utoipa::path(tag = "stewards", params(("id" = String, Path)), responses((status = 200, body = Vec<VersionInfo>), (status = 404, body = crate::error::Problem)), security(("admin_token" = [])))]
#[get("/admin/v1/flows/{id}/versions")]
pub async fn flow_versions(
    _steward: Steward,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    versions(&state, DocKind::Flow, &path).await
}

/// One stored version of a flow, as it was published.
#[utoipa::path(tag = "stewards", params(("id" = String, Path), ("version" = i32, Path, minimum = 1)), responses((status = 200, body = FlowVersion), (status = 404, body = crate::error::Problem)), security(("admin_token" = [])))]
#[get("/admin/v1/flows/{id}/versions/{version}")]
pub async fn flow_version(
    _steward: Steward,
    path: web::Path<(String, i32)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    version_document(&state, DocKind::Flow, path.into_inner()).await
}

/// Disables or re-enables a flow (no new dossiers; those filed go on), or
/// rolls it back to an earlier version.
#[utoipa::path(tag = "stewards", params(("id" = String, Path)), request_body = StateChange,
    responses((status = 204), (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)), security(("admin_token" = [])))]
#[post("/admin/v1/flows/{id}/state")]
pub async fn flow_state(
    who: Result<Steward, ApiError>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    change_state(req, who, &state, DocKind::Flow, &path, &body).await
}
