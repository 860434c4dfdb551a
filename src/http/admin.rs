//! The steward and auditor API (`Authorization: Bearer <admin token>`):
//! adapters, forms, partners and their keys, and the audit trail.

use crate::audit::query::{AuditFilter, AuditPage, TimeRange};
use crate::catalog::manage::{
    parse_expiry, DocKind, KeyInfo, NewAdminToken, NewKey, PartnerInput, PartnerPatch, TokenInfo,
};
use crate::catalog::store::{Publish, VersionInfo};
use crate::catalog::AdminCaller;
use crate::domain::partner::{Partner, Role};
use crate::error::{ApiError, ErrorCode};
use crate::http::body::{citizen_id_at, json_body, typed_body};
use crate::http::caller::{Auditor, Steward};
use crate::state::AppState;
use actix_web::{delete, get, patch, post, put, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::time::Duration;
use utoipa::ToSchema;

/// Runs a change (of the catalogue, a partner, a key or a token, or a dry run
/// against a registry) for a steward, and records it in the audit trail,
/// allowed or refused, under the path below `/admin/v1/`. The change needs
/// the steward to run at all.
pub(super) async fn audited<F, Fut>(
    req: &HttpRequest,
    state: &AppState,
    body: &[u8],
    who: Result<Steward, ApiError>,
    change: F,
) -> Result<HttpResponse, ApiError>
where
    F: FnOnce(Steward) -> Fut,
    Fut: std::future::Future<Output = Result<HttpResponse, ApiError>>,
{
    let resource = req.path().trim_start_matches("/admin/v1/").to_string();
    let audit = crate::http::admission::Audit::start(req, crate::audit::Action::Admin, resource);
    let result = match who {
        Ok(steward) => change(steward).await,
        Err(refused) => Err(refused),
    };
    audit.finish_admin(state, req, body, result).await
}

pub(super) fn by(caller: &AdminCaller) -> String {
    format!("steward:{}", caller.token_id)
}

#[derive(Serialize, ToSchema)]
pub struct Published {
    pub id: String,
    pub version: i32,
}

pub(super) async fn publish(
    req: HttpRequest,
    who: Result<Steward, ApiError>,
    state: &AppState,
    kind: DocKind,
    body: &[u8],
    path_id: Option<&str>,
    mode: Publish,
) -> Result<HttpResponse, ApiError> {
    let req = &req;
    audited(req, state, body, who, move |steward| async move {
        let caller = steward.0;
        let doc = json_body(req, body)?;
        let (id, version) = state.catalog.publish(kind, doc, path_id, &by(&caller), mode).await?;
        tracing::info!(kind = kind.noun(), %id, version, by = %caller.token_id, "published");
        let mut resp = if mode == Publish::Create { HttpResponse::Created() } else { HttpResponse::Ok() };
        Ok(resp.json(Published { id, version }))
    })
    .await
}

#[derive(Serialize, ToSchema)]
pub struct AdapterInfo {
    pub id: String,
    pub name: String,
    pub version: i32,
    pub enabled: bool,
    pub operations: Vec<String>,
    /// `closed`, `open` or `half_open`.
    pub circuit_breaker: crate::adapter::client::BreakerStatus,
    pub upstream: String,
}

/// Registers a new adapter (version 1). The manifest is validated in full first.
#[utoipa::path(tag = "stewards", request_body = crate::schema::openapi::AdapterManifest,
    responses((status = 201, body = Published), (status = 409, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("admin_token" = [])))]
#[post("/admin/v1/adapters")]
pub async fn create_adapter(
    who: Result<Steward, ApiError>,
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    publish(req, who, &state, DocKind::Adapter, &body, None, Publish::Create).await
}

/// Publishes a new version of an adapter; it takes effect on every node.
#[utoipa::path(tag = "stewards", params(("id" = String, Path)), request_body = crate::schema::openapi::AdapterManifest,
    responses((status = 200, body = Published), (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("admin_token" = [])))]
#[put("/admin/v1/adapters/{id}")]
pub async fn update_adapter(
    who: Result<Steward, ApiError>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    publish(req, who, &state, DocKind::Adapter, &body, Some(&path), Publish::NewVersion).await
}

#[utoipa::path(tag = "stewards", responses((status = 200, body = Vec<AdapterInfo>)), security(("admin_token" = [])))]
#[get("/admin/v1/adapters")]
pub async fn list_adapters(_steward: Steward, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let catalog = state.catalog.get();
    let list: Vec<AdapterInfo> = catalog
        .adapters
        .values()
        .map(|a| AdapterInfo {
            id: a.adapter.id.clone(),
            name: a.adapter.name.clone(),
            version: a.adapter.version,
            enabled: a.enabled,
            operations: a.adapter.operations.keys().cloned().collect(),
            circuit_breaker: a.adapter.upstream.breaker.status(),
            upstream: a.adapter.upstream.base_url.clone(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(list))
}

/// The current manifest of an adapter.
#[utoipa::path(tag = "stewards", params(("id" = String, Path)), responses((status = 200, body = AdapterDocument), (status = 404, body = crate::error::Problem)), security(("admin_token" = [])))]
#[get("/admin/v1/adapters/{id}")]
pub async fn get_adapter(
    _steward: Steward,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let catalog = state.catalog.get();
    let a =
        catalog.adapters.get(path.as_str()).ok_or_else(|| ApiError::not_found(format!("No adapter \"{path}\".")))?;
    Ok(HttpResponse::Ok().json(AdapterDocument {
        id: a.adapter.id.clone(),
        version: a.adapter.version,
        enabled: a.enabled,
        manifest: a.adapter.manifest.clone(),
    }))
}

/// An adapter's current manifest.
#[derive(Serialize, ToSchema)]
pub struct AdapterDocument {
    pub id: String,
    pub version: i32,
    pub enabled: bool,
    #[schema(value_type = crate::schema::openapi::AdapterManifest)]
    pub manifest: Value,
}

/// One stored version of an adapter's manifest.
#[derive(Serialize, ToSchema)]
pub struct AdapterVersion {
    pub id: String,
    pub version: i32,
    #[schema(value_type = crate::schema::openapi::AdapterManifest)]
    pub document: Value,
}

/// One stored version of a form's definition.
#[derive(Serialize, ToSchema)]
pub struct FormVersion {
    pub id: String,
    pub version: i32,
    #[schema(value_type = crate::schema::openapi::FormDefinition)]
    pub document: Value,
}

pub(super) async fn versions(state: &AppState, kind: DocKind, id: &str) -> Result<HttpResponse, ApiError> {
    let list: Vec<VersionInfo> = state.catalog.versions(kind, id).await?;
    Ok(HttpResponse::Ok().json(list))
}

#[utoipa::path(tag = "stewards", params(("id" = String, Path)), responses((status = 200, body = Vec<VersionInfo>), (status = 404, body = crate::error::Problem)), security(("admin_token" = [])))]
#[get("/admin/v1/adapters/{id}/versions")]
pub async fn adapter_versions(
    _steward: Steward,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    versions(&state, DocKind::Adapter, &path).await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StateChange {
    /// Enable or disable.
    #[schema(nullable = false)]
    #[serde(default, deserialize_with = "crate::domain::json::present")]
    pub enabled: Option<bool>,
    /// Make this earlier version current again.
    #[schema(nullable = false, minimum = 1)]
    #[serde(default, deserialize_with = "crate::domain::json::present_whole")]
    pub current_version: Option<i32>,
}

pub(super) async fn change_state(
    req: HttpRequest,
    who: Result<Steward, ApiError>,
    state: &AppState,
    kind: DocKind,
    id: &str,
    body: &[u8],
) -> Result<HttpResponse, ApiError> {
    let req = &req;
    audited(req, state, body, who, move |_steward| async move {
        let change: StateChange =
            typed_body(req, body, ErrorCode::InvalidBody, "Send {\"enabled\": bool} or {\"current_version\": n}")?;
        if change.enabled.is_none() && change.current_version.is_none() {
            return Err(ApiError::new(ErrorCode::InvalidBody, "Send {\"enabled\": bool} or {\"current_version\": n}."));
        }
        if kind == DocKind::Element && change.enabled.is_some() {
            return Err(ApiError::new(
                ErrorCode::InvalidBody,
                "Elements are never disabled: the adapters and forms that name them would break. \
                 Send {\"current_version\": n} to roll one back.",
            )
            .with_errors(vec![crate::error::FieldError::new("/enabled", "not accepted for an element")]));
        }
        if let Some(v) = change.current_version {
            state.catalog.rollback(kind, id, v).await?;
        }
        if let Some(e) = change.enabled {
            state.catalog.set_enabled(kind, id, e).await?;
        }
        Ok(HttpResponse::NoContent().finish())
    })
    .await
}

/// Disables or re-enables an adapter, or rolls it back to an earlier version.
#[utoipa::path(tag = "stewards", params(("id" = String, Path)), request_body = StateChange,
    responses((status = 204), (status = 404, body = crate::error::Problem)), security(("admin_token" = [])))]
#[post("/admin/v1/adapters/{id}/state")]
pub async fn adapter_state(
    who: Result<Steward, ApiError>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    change_state(req, who, &state, DocKind::Adapter, &path, &body).await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DryRun {
    /// The sample subject; becomes `{"citizen_id": ...}` unless `request` is given.
    #[schema(value_type = Option<crate::schema::openapi::CitizenId>)]
    pub citizen_id: Option<String>,
    /// The request to send, as the operations' request schema says.
    #[schema(value_type = Option<Object>)]
    pub request: Option<serde_json::Map<String, Value>>,
    /// Only these operations (default: all).
    #[serde(default)]
    pub operations: Vec<String>,
    /// An unpublished manifest to try instead of the stored adapter.
    #[schema(value_type = Option<crate::schema::openapi::AdapterManifest>)]
    pub manifest: Option<Value>,
}

/// What a dry run of an adapter found, operation by operation.
#[derive(Serialize, ToSchema)]
pub struct DryRunReport {
    pub adapter: String,
    pub version: i32,
    /// Whether every operation answered (a missing record counts as an answer).
    pub ok: bool,
    pub results: Vec<crate::adapter::DryRunResult>,
}

/// A form as stewards list it: what partners see, and whether it is enabled.
#[derive(Serialize, ToSchema)]
pub struct StewardForm {
    #[serde(flatten)]
    pub summary: crate::http::partner::FormSummary,
    pub enabled: bool,
}

/// Tests an adapter (or an unpublished manifest) against its registry with a
/// sample request; nothing is stored and nothing goes live.
#[utoipa::path(tag = "stewards", params(("id" = String, Path)), request_body = DryRun,
    responses((status = 200, body = DryRunReport), (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("admin_token" = [])))]
#[post("/admin/v1/adapters/{id}/test")]
pub async fn test_adapter(
    who: Result<Steward, ApiError>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (req, state, body) = (&req, &*state, &body[..]);
    audited(req, state, body, who, move |_steward| async move {
        let run: DryRun = typed_body(req, body, ErrorCode::InvalidBody, "The body does not fit a test request")?;
        let adapter = match &run.manifest {
            Some(m) => std::sync::Arc::new(
                crate::adapter::Adapter::compile(m, 0, &state.settings, &state.catalog.get().elements).map_err(
                    |e| {
                        ApiError::new(
                            ErrorCode::InvalidManifest,
                            "The manifest was refused; fix every problem listed in errors.",
                        )
                        .with_errors(e)
                    },
                )?,
            ),
            None => state
                .catalog
                .get()
                .adapters
                .get(path.as_str())
                .map(|a| a.adapter.clone())
                .ok_or_else(|| ApiError::not_found(format!("No adapter \"{path}\".")))?,
        };
        let request = match (run.request, run.citizen_id) {
            (Some(r), _) => Value::Object(r),
            (None, Some(id)) => json!({"citizen_id": citizen_id_at("/citizen_id", &id)?.to_string()}),
            (None, None) => {
                return Err(ApiError::new(ErrorCode::InvalidBody, "Give a sample citizen_id or a request."))
            }
        };
        let results = adapter.dry_run(&request, &run.operations, &state.http, &state.metrics).await;
        let ok = results.iter().all(|r| r.ok);
        Ok(HttpResponse::Ok().json(DryRunReport { adapter: adapter.id.clone(), version: adapter.version, ok, results }))
    })
    .await
}

/// Registers a new form. The definition is validated in full first.
#[utoipa::path(tag = "stewards", request_body = crate::schema::openapi::FormDefinition,
    responses((status = 201, body = Published), (status = 409, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("admin_token" = [])))]
#[post("/admin/v1/forms")]
pub async fn create_form(
    who: Result<Steward, ApiError>,
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    publish(req, who, &state, DocKind::Form, &body, None, Publish::Create).await
}

#[utoipa::path(tag = "stewards", params(("id" = String, Path)), request_body = crate::schema::openapi::FormDefinition,
    responses((status = 200, body = Published), (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("admin_token" = [])))]
#[put("/admin/v1/forms/{id}")]
pub async fn update_form(
    who: Result<Steward, ApiError>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    publish(req, who, &state, DocKind::Form, &body, Some(&path), Publish::NewVersion).await
}

#[utoipa::path(tag = "stewards", responses((status = 200, body = Vec<StewardForm>)), security(("admin_token" = [])))]
#[get("/admin/v1/forms")]
pub async fn list_forms(_steward: Steward, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let catalog = state.catalog.get();
    let list: Vec<StewardForm> = catalog
        .forms
        .values()
        .map(|f| StewardForm { summary: crate::http::partner::summary(&f.form), enabled: f.enabled })
        .collect();
    Ok(HttpResponse::Ok().json(list))
}

#[utoipa::path(tag = "stewards", params(("id" = String, Path)), responses((status = 200, body = Vec<VersionInfo>), (status = 404, body = crate::error::Problem)), security(("admin_token" = [])))]
#[get("/admin/v1/forms/{id}/versions")]
pub async fn form_versions(
    _steward: Steward,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    versions(&state, DocKind::Form, &path).await
}

pub(super) async fn version_document(
    state: &AppState,
    kind: DocKind,
    (id, version): (String, i32),
) -> Result<HttpResponse, ApiError> {
    let (version, document) = state.catalog.document(kind, &id, Some(version)).await?;
    Ok(HttpResponse::Ok().json(json!({"id": id, "version": version, "document": document})))
}

/// One stored version of an adapter's manifest, as it was published: to
/// compare with the current one before a rollback.
#[utoipa::path(tag = "stewards", params(("id" = String, Path), ("version" = i32, Path, minimum = 1)), responses((status = 200, body = AdapterVersion), (status = 404, body = crate::error::Problem)), security(("admin_token" = [])))]
#[get("/admin/v1/adapters/{id}/versions/{version}")]
pub async fn adapter_version(
    _steward: Steward,
    path: web::Path<(String, i32)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    version_document(&state, DocKind::Adapter, path.into_inner()).await
}

/// One stored version of a form's definition, as it was published.
#[utoipa::path(tag = "stewards", params(("id" = String, Path), ("version" = i32, Path, minimum = 1)), responses((status = 200, body = FormVersion), (status = 404, body = crate::error::Problem)), security(("admin_token" = [])))]
#[get("/admin/v1/forms/{id}/versions/{version}")]
pub async fn form_version(
    _steward: Steward,
    path: web::Path<(String, i32)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    version_document(&state, DocKind::Form, path.into_inner()).await
}

/// Disables or re-enables a form, or rolls it back to an earlier version.
#[utoipa::path(tag = "stewards", params(("id" = String, Path)), request_body = StateChange,
    responses((status = 204), (status = 404, body = crate::error::Problem)), security(("admin_token" = [])))]
#[post("/admin/v1/forms/{id}/state")]
pub async fn form_state(
    who: Result<Steward, ApiError>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    change_state(req, who, &state, DocKind::Form, &path, &body).await
}

/// Registers a partner agency with its access policy and rate limit.
#[utoipa::path(tag = "stewards", request_body = PartnerInput,
    responses((status = 201, body = Partner), (status = 409, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("admin_token" = [])))]
#[post("/admin/v1/partners")]
pub async fn create_partner(
    who: Result<Steward, ApiError>,
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (req, state, body) = (&req, &*state, &body[..]);
    audited(req, state, body, who, move |_steward| async move {
        let input: PartnerInput = typed_body(req, body, ErrorCode::InvalidPartner, "The body does not fit a partner")?;
        let id = input.id.clone();
        state.catalog.create_partner(input).await?;
        let p = state.catalog.get().partners.get(&id).cloned().ok_or_else(|| ApiError::internal("partner vanished"))?;
        Ok(HttpResponse::Created().json(&*p))
    })
    .await
}

#[utoipa::path(tag = "stewards", responses((status = 200, body = Vec<Partner>)), security(("admin_token" = [])))]
#[get("/admin/v1/partners")]
pub async fn list_partners(_steward: Steward, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let catalog = state.catalog.get();
    let mut list: Vec<&Partner> = catalog.partners.values().map(|p| &**p).collect();
    list.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(HttpResponse::Ok().json(list))
}

#[utoipa::path(tag = "stewards", params(("id" = String, Path)), responses((status = 200, body = Partner), (status = 404, body = crate::error::Problem)), security(("admin_token" = [])))]
#[get("/admin/v1/partners/{id}")]
pub async fn get_partner(
    _steward: Steward,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let catalog = state.catalog.get();
    let p = catalog.partners.get(path.as_str()).ok_or_else(|| ApiError::not_found(format!("No partner {path}.")))?;
    Ok(HttpResponse::Ok().json(&**p))
}

/// Changes a partner: name, kind, policy, rate limit, enabled. Takes effect at once.
#[utoipa::path(tag = "stewards", params(("id" = String, Path)), request_body = PartnerPatch,
    responses((status = 200, body = Partner), (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("admin_token" = [])))]
#[patch("/admin/v1/partners/{id}")]
pub async fn update_partner(
    who: Result<Steward, ApiError>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (req, state, body) = (&req, &*state, &body[..]);
    audited(req, state, body, who, move |_steward| async move {
        let patch: PartnerPatch =
            typed_body(req, body, ErrorCode::InvalidPartner, "The body does not fit a partner change")?;
        state.catalog.update_partner(&path, patch).await?;
        let p = state
            .catalog
            .get()
            .partners
            .get(path.as_str())
            .cloned()
            .ok_or_else(|| ApiError::internal("partner vanished"))?;
        Ok(HttpResponse::Ok().json(&*p))
    })
    .await
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct KeyRequest {
    #[serde(default)]
    pub label: String,
    /// RFC 3339 time after which the key is refused; absent: it does not expire.
    #[serde(default)]
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    /// How long the old key stays valid beside the new one, in seconds (at
    /// most 30 days); 0, the default, revokes it at once.
    #[serde(default, deserialize_with = "crate::domain::json::whole")]
    #[schema(maximum = 2_592_000)]
    pub grace_seconds: u64,
    /// RFC 3339 time after which the new key is refused; absent: it does not expire.
    #[serde(default)]
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
}

/// An optional JSON body: empty means the type's defaults.
fn optional_body<T: serde::de::DeserializeOwned + Default>(
    req: &HttpRequest,
    body: &[u8],
    shape: &str,
) -> Result<T, ApiError> {
    if body.is_empty() {
        return Ok(T::default());
    }
    typed_body(req, body, ErrorCode::InvalidBody, &format!("Send {shape}"))
}

/// Makes an API key for a partner. The key is in this answer only; lgsp keeps its hash.
#[utoipa::path(tag = "stewards", params(("id" = String, Path)), request_body = Option<KeyRequest>,
    responses((status = 201, body = NewKey), (status = 404, body = crate::error::Problem)), security(("admin_token" = [])))]
#[post("/admin/v1/partners/{id}/keys")]
pub async fn create_key(
    who: Result<Steward, ApiError>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (req, state, body) = (&req, &*state, &body[..]);
    audited(req, state, body, who, move |_steward| async move {
        let k: KeyRequest = optional_body(req, body, r#"{"label": "...", "expires_at": "2027-06-30T00:00:00+07:00"}"#)?;
        let expires_at = k.expires_at.as_deref().map(parse_expiry).transpose()?;
        let key = state.catalog.create_key(&path, &k.label, expires_at).await?;
        Ok(HttpResponse::Created().insert_header(("Cache-Control", "no-store")).json(key))
    })
    .await
}

#[utoipa::path(tag = "stewards", params(("id" = String, Path)), responses((status = 200, body = Vec<KeyInfo>)), security(("admin_token" = [])))]
#[get("/admin/v1/partners/{id}/keys")]
pub async fn list_keys(
    _steward: Steward,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let list = state.catalog.keys(&path).await?;
    Ok(HttpResponse::Ok().json(list))
}

/// Revokes a key; calls with it fail at once.
#[utoipa::path(tag = "stewards", params(("id" = String, Path), ("key_id" = String, Path)),
    responses((status = 204), (status = 404, body = crate::error::Problem)), security(("admin_token" = [])))]
#[delete("/admin/v1/partners/{id}/keys/{key_id}")]
pub async fn revoke_key(
    who: Result<Steward, ApiError>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (req, state) = (&req, &*state);
    audited(req, state, &[], who, move |_steward| async move {
        state.catalog.revoke_key(&path.0, &path.1).await?;
        Ok(HttpResponse::NoContent().finish())
    })
    .await
}

/// Replaces a key with a new one (returned once). The old one is revoked at
/// once, or after `grace_seconds` so that the partner can deploy the new key first.
#[utoipa::path(tag = "stewards", params(("id" = String, Path), ("key_id" = String, Path)), request_body = Option<RotateRequest>,
    responses((status = 201, body = NewKey), (status = 404, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)), security(("admin_token" = [])))]
#[post("/admin/v1/partners/{id}/keys/{key_id}/rotate")]
pub async fn rotate_key(
    who: Result<Steward, ApiError>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (req, state, body) = (&req, &*state, &body[..]);
    audited(req, state, body, who, move |_steward| async move {
        let r: RotateRequest =
            optional_body(req, body, r#"{"grace_seconds": 86400, "expires_at": "2027-06-30T00:00:00+07:00"}"#)?;
        let expires_at = r.expires_at.as_deref().map(parse_expiry).transpose()?;
        let grace = Duration::from_secs(r.grace_seconds);
        let key = state.catalog.rotate_key(&path.0, &path.1, grace, expires_at).await?;
        Ok(HttpResponse::Created().insert_header(("Cache-Control", "no-store")).json(key))
    })
    .await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    pub role: Role,
    #[serde(default)]
    pub label: String,
    /// When the token stops working: an RFC 3339 time in the future. Absent:
    /// it works until revoked.
    #[serde(default)]
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
}

/// Makes an admin token (steward role). The token is in this answer only; lgsp keeps its hash.
#[utoipa::path(tag = "stewards", request_body = TokenRequest,
    responses((status = 201, body = NewAdminToken), (status = 422, body = crate::error::Problem)), security(("admin_token" = [])))]
#[post("/admin/v1/tokens")]
pub async fn create_token(
    who: Result<Steward, ApiError>,
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (req, state, body) = (&req, &*state, &body[..]);
    audited(req, state, body, who, move |steward| async move {
        let caller = steward.0;
        let t: TokenRequest = typed_body(
            req,
            body,
            ErrorCode::InvalidBody,
            "Send {\"role\": \"steward\" or \"auditor\", \"label\": \"...\", \"expires_at\": \"2027-06-30T00:00:00+07:00\" (optional)}",
        )?;
        let expires_at = t.expires_at.as_deref().map(parse_expiry).transpose()?;
        let token = state.catalog.create_admin_token(t.role, &t.label, expires_at).await?;
        tracing::info!(token = %token.id, role = t.role.as_str(), by = %caller.token_id, "admin token created");
        Ok(HttpResponse::Created().insert_header(("Cache-Control", "no-store")).json(token))
    })
    .await
}

/// Lists admin tokens, revoked ones included (never their secrets).
#[utoipa::path(tag = "stewards", responses((status = 200, body = Vec<TokenInfo>)), security(("admin_token" = [])))]
#[get("/admin/v1/tokens")]
pub async fn list_tokens(_steward: Steward, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.catalog.admin_tokens().await?))
}

/// Revokes an admin token on every node. The last live steward token cannot be revoked (409).
#[utoipa::path(tag = "stewards", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)),
    security(("admin_token" = [])))]
#[delete("/admin/v1/tokens/{id}")]
pub async fn revoke_token(
    who: Result<Steward, ApiError>,
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (req, state) = (&req, &*state);
    audited(req, state, &[], who, move |steward| async move {
        let caller = steward.0;
        state.catalog.revoke_admin_token(&path).await?;
        tracing::info!(token = %path, by = %caller.token_id, "admin token revoked");
        Ok(HttpResponse::NoContent().finish())
    })
    .await
}

fn parse_time(name: &str, v: &Option<String>) -> Result<Option<i64>, ApiError> {
    v.as_deref()
        .map(|s| {
            s.parse::<jiff::Timestamp>().map(|t| t.as_microsecond()).map_err(|e| {
                ApiError::new(
                    ErrorCode::InvalidParameter,
                    format!("{name} must be an RFC 3339 instant like 2026-11-22T00:00:00Z: {e}"),
                )
            })
        })
        .transpose()
}

/// Searches the audit trail, newest first (auditor role).
#[utoipa::path(tag = "auditors", params(AuditFilter), responses((status = 200, body = AuditPage), (status = 400, body = crate::error::Problem)), security(("admin_token" = [])))]
#[get("/admin/v1/audit")]
pub async fn search_audit(
    _auditor: Auditor,
    q: web::Query<AuditFilter>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let f = q.into_inner();
    if f.limit.is_some_and(|l| !(1..=500).contains(&l)) {
        return Err(ApiError::new(ErrorCode::InvalidParameter, "limit must be between 1 and 500."));
    }
    if f.cursor.is_some_and(|c| c < 1) {
        return Err(ApiError::new(ErrorCode::InvalidParameter, "cursor is the next_cursor a page gave, 1 or more."));
    }
    let time = TimeRange { from: parse_time("from", &f.from)?, to: parse_time("to", &f.to)? };
    let page = state.audit.search(f, time).await?;
    Ok(HttpResponse::Ok().json(page))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// First record (seq), 1 or more; default 1.
    #[param(minimum = 1)]
    pub from: Option<i64>,
    /// Most records in this page, 1 to 10000; default 1000.
    #[param(minimum = 1, maximum = 10_000)]
    pub limit: Option<i64>,
}

/// Exports records with their hashes (auditor role), from one snapshot, a
/// page at a time: a `Link` header with `rel="next"` names the next page
/// while the page is full. As a JSON document by default; as JSON lines, one
/// record a line, with `Accept: application/x-ndjson`: `lgsp audit verify
/// --file` checks such pages, concatenated, without the database.
#[utoipa::path(tag = "auditors", params(ExportQuery),
    responses((status = 200, content(
        (AuditExport = "application/json"),
        (String = "application/x-ndjson", example = json!("{\"seq\":1,...}\n{\"seq\":2,...}\n"))
    )), (status = 400, body = crate::error::Problem)),
    security(("admin_token" = [])))]
#[get("/admin/v1/audit/export")]
pub async fn export_audit(
    _auditor: Auditor,
    req: HttpRequest,
    q: web::Query<ExportQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let from = q.from.unwrap_or(1);
    let limit = q.limit.unwrap_or(1_000);
    if from < 1 {
        return Err(ApiError::new(ErrorCode::InvalidParameter, "from is a record number (seq), 1 or more."));
    }
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::new(ErrorCode::InvalidParameter, "limit must be between 1 and 10000."));
    }
    let (body, n) = state.audit.export_page(from, limit).await?;
    let next_from = (n == limit).then(|| from.saturating_add(limit));
    let mut answer = HttpResponse::Ok();
    if let Some(next) = next_from {
        answer.insert_header(("Link", format!("</admin/v1/audit/export?from={next}&limit={limit}>; rel=\"next\"")));
    }
    if wants_json_lines(&req) {
        return Ok(answer.content_type("application/x-ndjson").body(body));
    }
    // The lines are JSON objects: joined with commas, they are the array.
    let lines: Vec<&[u8]> = body.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
    let mut json = Vec::with_capacity(body.len() + 64);
    json.extend_from_slice(b"{\"records\":[");
    json.extend_from_slice(&lines.join(&b',')[..]);
    json.extend_from_slice(
        format!("],\"next_from\":{}}}", next_from.map_or("null".into(), |n| n.to_string())).as_bytes(),
    );
    Ok(answer.content_type("application/json").body(json))
}

/// Whether the caller asked for JSON lines rather than a JSON document.
fn wants_json_lines(req: &HttpRequest) -> bool {
    let accept = req.headers().get(actix_web::http::header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    accept.split(',').any(|t| {
        let essence = t.split(';').next().unwrap_or("").trim();
        essence.eq_ignore_ascii_case("application/x-ndjson") || essence.eq_ignore_ascii_case("application/jsonl")
    })
}

/// A page of the exported trail.
#[derive(Serialize, ToSchema)]
pub struct AuditExport {
    /// The records, in `seq` order, with their hashes.
    pub records: Vec<crate::audit::AuditRow>,
    /// The `from` of the next page, while this one is full.
    pub next_from: Option<i64>,
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct VerifyQuery {
    /// Anchors recorded earlier, `SEQ:HASH` separated by commas (a `head_seq`
    /// and `head_hash` of an earlier answer): each record must still have that hash.
    #[param(pattern = r"^(|[1-9][0-9]{0,17}:[0-9a-f]{64}(,[1-9][0-9]{0,17}:[0-9a-f]{64})*)$")]
    pub anchor: Option<String>,
}

/// Verifies the hash chain of the whole trail (auditor role). Keep the answer's
/// `head_seq:head_hash` outside lgsp and pass it back as `anchor` later: that
/// also catches a rewrite of the chain that recomputed every hash.
#[utoipa::path(tag = "auditors", params(VerifyQuery),
    responses((status = 200, body = AuditVerification), (status = 400, body = crate::error::Problem)), security(("admin_token" = [])))]
#[get("/admin/v1/audit/verify")]
pub async fn verify_audit(
    _auditor: Auditor,
    q: web::Query<VerifyQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let anchors = crate::audit::parse_anchors(q.anchor.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::new(ErrorCode::InvalidParameter, e))?;
    let v = state.audit.verify(anchors).await?;
    Ok(HttpResponse::Ok().json(AuditVerification {
        intact: v.is_intact(),
        records: v.records,
        head_seq: v.head_seq,
        head_hash: v.head_hash,
        broken_at: v.broken_at,
        reason: v.reason,
    }))
}

/// What a verification of the hash chain found.
#[derive(Serialize, ToSchema)]
pub struct AuditVerification {
    /// Whether every record is there, unedited, in one chain up to its head.
    pub intact: bool,
    /// Records checked.
    pub records: i64,
    /// The chain head: the last record written, and its hash. Keep
    /// `head_seq:head_hash` outside lgsp as an anchor for later checks.
    pub head_seq: i64,
    pub head_hash: String,
    /// The first record where the chain breaks, and why.
    pub broken_at: Option<i64>,
    pub reason: Option<String>,
}
