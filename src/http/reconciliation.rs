//! The province's dossiers against what the national portal holds
//! (stewards): the differences, dossier by dossier, and one call that sends
//! again what the portal lacks.

use crate::error::ApiError;
use crate::http::admin::audited;
use crate::http::caller::Steward;
use crate::state::AppState;
use crate::sync::Reconciliation;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct Period {
    /// First day received (`yyyy-mm-dd`).
    #[param(format = Date)]
    pub from: String,
    /// Last day received (`yyyy-mm-dd`), included.
    #[param(format = Date)]
    pub to: String,
}

/// Compares the dossiers received in the period with what the portal holds,
/// asking it for each: never sent, refused (with its error), steps missing,
/// status behind; and tallies them per procedure, channel and status.
#[utoipa::path(tag = "stewards", params(Period),
    responses((status = 200, body = Reconciliation), (status = 400, body = crate::error::Problem), (status = 502, body = crate::error::Problem), (status = 503, body = crate::error::Problem)),
    security(("admin_token" = [])))]
#[get("/admin/v1/reconciliation")]
pub async fn reconciliation(
    _steward: Steward,
    q: web::Query<Period>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (from, to) = crate::sync::period(&q.from, &q.to)?;
    Ok(HttpResponse::Ok().json(state.sync.reconcile(from, to).await?))
}

#[derive(Serialize, ToSchema)]
pub struct Resent {
    /// The dossiers sent again, whole.
    pub dossiers: Vec<String>,
}

/// Sends again, whole, every dossier of the period the portal holds wrong
/// (not those it refused: they need a person to fix them first).
#[utoipa::path(tag = "stewards", params(Period),
    responses((status = 200, body = Resent), (status = 400, body = crate::error::Problem), (status = 502, body = crate::error::Problem), (status = 503, body = crate::error::Problem)),
    security(("admin_token" = [])))]
#[post("/admin/v1/reconciliation/resend")]
pub async fn resend(
    who: Result<Steward, ApiError>,
    req: HttpRequest,
    q: web::Query<Period>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (req, state) = (&req, &*state);
    audited(req, state, &[], who, move |_steward| async move {
        let (from, to) = crate::sync::period(&q.from, &q.to)?;
        let found = state.sync.reconcile(from, to).await?;
        let dossiers = state.sync.resend(&found.differences).await?;
        Ok(HttpResponse::Ok().json(Resent { dossiers }))
    })
    .await
}
