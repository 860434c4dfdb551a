//! Upstream credentials (`/admin/v1/credentials`): stewards set and rotate
//! them; nobody reads a secret back, and the audit trail records the change
//! without it.

use crate::catalog::manage::CredentialInfo;
use crate::domain::credential::Credential;
use crate::error::{ApiError, ErrorCode, FieldError};
use crate::http::admin::{audited, by};
use crate::http::body::json_body;
use crate::http::caller::Steward;
use crate::state::AppState;
use actix_web::{get, put, web, HttpRequest, HttpResponse};
use serde_json::json;

/// What to send, said without echoing anything the caller sent: a secret
/// sent in the wrong shape must not reach an error message or the trail.
const SHAPE: &str =
    "Send {\"kind\": \"static\", \"token\": \"…\"} or {\"kind\": \"basic\", \"username\": \"…\", \"password\": \"…\"}.";

/// Sets or rotates an upstream credential: sealed at rest, presented by
/// every node's calls to the adapters whose manifests name it from the next
/// catalogue refresh. A node whose configuration names a token for it
/// (`upstreams.NAME.token`) keeps that one. The answer never holds the secret.
#[utoipa::path(tag = "stewards", params(("name" = String, Path, description = "The credential name adapter manifests give as upstream.credential")),
    request_body = Credential,
    responses((status = 200, body = CredentialInfo), (status = 415, body = crate::error::Problem), (status = 422, body = crate::error::Problem), (status = 503, body = crate::error::Problem)),
    security(("admin_token" = [])))]
#[put("/admin/v1/credentials/{name}")]
pub async fn set_credential(
    who: Result<Steward, ApiError>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (req, state, name) = (&req, &*state, path.as_str());
    let value = json_body(req, &body);
    // The record keeps the kind alone.
    let kind = value.as_ref().ok().and_then(|v| v["kind"].as_str()).filter(|k| k.len() <= 32).unwrap_or("");
    let recorded = json!({ "kind": kind }).to_string();
    audited(req, state, recorded.as_bytes(), who, move |steward| async move {
        let credential: Credential = serde_json::from_value(value?).map_err(|_| {
            ApiError::new(ErrorCode::InvalidCredential, format!("The body is not a credential. {SHAPE}"))
                .with_errors(vec![FieldError::new("", "not a credential of a known kind")])
        })?;
        state.catalog.set_credential(name, credential, &by(&steward.0)).await?;
        let info = state.catalog.credentials().into_iter().find(|c| c.name == name);
        Ok(HttpResponse::Ok().json(info))
    })
    .await
}

/// The stored credentials: name, kind, when and by whom set, whether this
/// node's calls present it, and the adapters that name it. Never a secret.
#[utoipa::path(tag = "stewards", responses((status = 200, body = Vec<CredentialInfo>)), security(("admin_token" = [])))]
#[get("/admin/v1/credentials")]
pub async fn list_credentials(_steward: Steward, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.catalog.credentials()))
}
