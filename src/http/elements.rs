//! Canonical data elements: stewards register, version and roll them back
//! (`/admin/v1/elements`); partners read the catalogue (`/v1/elements`).

use crate::catalog::manage::DocKind;
use crate::catalog::store::{Publish, VersionInfo};
use crate::elements::{Class, ElementDoc, Kind};
use crate::error::ApiError;
use crate::http::admin::{change_state, publish, version_document, versions, Published, StateChange};
use crate::http::caller::{PartnerCaller, Steward};
use crate::state::AppState;
use actix_web::{get, post, put, web, HttpRequest, HttpResponse};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// An element as the catalogue lists it.
#[derive(Serialize, ToSchema)]
pub struct ElementInfo {
    pub id: String,
    pub version: i32,
    pub label_en: String,
    pub label_vi: String,
    /// `basic`, or `sensitive` (granted to a partner only by name).
    pub class: Class,
    /// `address`: normalised to the 2025 administrative units.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<Kind>,
    /// A type other elements refer to, not itself named by adapters, forms or policies.
    pub shared: bool,
    /// JSON Schema (draft 2020-12) of the element's value; `#/$defs/{id}`
    /// refers to another element.
    #[schema(value_type = Object)]
    pub schema: Value,
}

/// One stored version of an element.
#[derive(Serialize, ToSchema)]
pub struct ElementVersion {
    pub id: String,
    pub version: i32,
    pub document: ElementDoc,
}

fn listing(state: &AppState) -> Vec<ElementInfo> {
    state
        .catalog
        .get()
        .elements
        .all()
        .map(|e| ElementInfo {
            id: e.doc.id.clone(),
            version: e.version,
            label_en: e.doc.label_en.clone(),
            label_vi: e.doc.label_vi.clone(),
            class: e.doc.class,
            kind: e.doc.kind,
            shared: e.doc.shared,
            schema: e.doc.schema.clone(),
        })
        .collect()
}

/// The canonical data elements: what adapters map registry data to and
/// forms bind their fields to, with each one's schema. An element's schema
/// is at `https://lgsp.local/schemas/elements.json#/$defs/{id}`.
#[utoipa::path(tag = "partners", responses((status = 200, body = Vec<ElementInfo>), (status = 401, body = crate::error::Problem)), security(("partner_key" = [])))]
#[get("/v1/elements")]
pub async fn partner_elements(_caller: PartnerCaller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(listing(&state)))
}

/// Registers a new data element (version 1). It is usable by adapters and
/// forms on every node as soon as it is stored.
#[utoipa::path(tag = "stewards", request_body = ElementDoc,
    responses((status = 201, body = Published), (status = 409, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("admin_token" = [])))]
#[post("/admin/v1/elements")]
pub async fn create_element(
    who: Result<Steward, ApiError>,
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    publish(req, who, &state, DocKind::Element, &body, None, Publish::Create).await
}

/// Publishes a new version of an element. A change that would break a stored
/// adapter or form is refused, naming each.
#[utoipa::path(tag = "stewards", params(("id" = String, Path)), request_body = ElementDoc,
    responses((status = 200, body = Published), (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("admin_token" = [])))]
#[put("/admin/v1/elements/{id}")]
pub async fn update_element(
    who: Result<Steward, ApiError>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    publish(req, who, &state, DocKind::Element, &body, Some(&path), Publish::NewVersion).await
}

/// Every element, shared types included, with its current version.
#[utoipa::path(tag = "stewards", responses((status = 200, body = Vec<ElementInfo>)), security(("admin_token" = [])))]
#[get("/admin/v1/elements")]
pub async fn list_elements(_steward: Steward, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(listing(&state)))
}

/// An element's current version, as it was published.
#[utoipa::path(tag = "stewards", params(("id" = String, Path)), responses((status = 200, body = ElementVersion), (status = 404, body = crate::error::Problem)), security(("admin_token" = [])))]
#[get("/admin/v1/elements/{id}")]
pub async fn get_element(
    _steward: Steward,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let catalog = state.catalog.get();
    let e = catalog.elements.get(&path).ok_or_else(|| ApiError::not_found(format!("No element \"{path}\".")))?;
    Ok(HttpResponse::Ok().json(ElementVersion { id: e.doc.id.clone(), version: e.version, document: e.doc.clone() }))
}

#[utoipa::path(tag = "stewards", params(("id" = String, Path)), responses((status = 200, body = Vec<VersionInfo>), (status = 404, body = crate::error::Problem)), security(("admin_token" = [])))]
#[get("/admin/v1/elements/{id}/versions")]
pub async fn element_versions(
    _steward: Steward,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    versions(&state, DocKind::Element, &path).await
}

/// One stored version of an element, as it was published.
#[utoipa::path(tag = "stewards", params(("id" = String, Path), ("version" = i32, Path, minimum = 1)), responses((status = 200, body = ElementVersion), (status = 404, body = crate::error::Problem)), security(("admin_token" = [])))]
#[get("/admin/v1/elements/{id}/versions/{version}")]
pub async fn element_version(
    _steward: Steward,
    path: web::Path<(String, i32)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    version_document(&state, DocKind::Element, path.into_inner()).await
}

/// Rolls an element back to an earlier version (`{"current_version": n}`),
/// if every stored adapter and form still validates with it. Elements are
/// never disabled.
#[utoipa::path(tag = "stewards", params(("id" = String, Path)), request_body = StateChange,
    responses((status = 204), (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)), security(("admin_token" = [])))]
#[post("/admin/v1/elements/{id}/state")]
pub async fn element_state(
    who: Result<Steward, ApiError>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    change_state(req, who, &state, DocKind::Element, &path, &body).await
}
