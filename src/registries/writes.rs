//! The registries' write endpoints, each in its registry's conventions: the
//! civil-status registry's PascalCase and numeric statuses, the population
//! registry's snake_case and `dd/mm/yyyy`, the insurance registry's camelCase
//! and `yyyyMMdd`. Every submission carries an idempotency key in the
//! registry's own header; the same key with the same request returns the
//! application it made, with another request a 409.

use super::ledger::{Application, Procedure, Refusal};
use super::render::{compact, dmy};
use super::{error, inject, not_found, server_error, unauthorised, Outcome, RegistryKind, RegistryState, State};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use std::time::Duration;

/// The header each registry reads the sender's idempotency key from.
pub fn key_header(kind: RegistryKind) -> &'static str {
    match kind {
        RegistryKind::CivilStatus => "Idempotency-Key",
        RegistryKind::Population => "X-Idempotency-Key",
        RegistryKind::Insurance => "X-Ma-Giao-Dich",
    }
}

fn bad_request(kind: RegistryKind, message: &str) -> HttpResponse {
    let code = match kind {
        RegistryKind::Population => "400",
        RegistryKind::CivilStatus => "THAM_SO_SAI",
        RegistryKind::Insurance => "E400",
    };
    error(kind, 400, code, message)
}

fn conflict(kind: RegistryKind, message: &str) -> HttpResponse {
    let code = match kind {
        RegistryKind::Population => "409",
        RegistryKind::CivilStatus => "XUNG_DOT",
        RegistryKind::Insurance => "E409",
    };
    error(kind, 409, code, message)
}

/// An application in the registry's own words.
fn render(kind: RegistryKind, app: &Application) -> Value {
    let data = match kind {
        RegistryKind::CivilStatus => json!({
            "MaHoSo": app.code,
            "LoaiHoSo": if app.procedure == Procedure::Birth { "KHAI_SINH" } else { "KHAI_TU" },
            "TrangThai": app.status,
            "NgayTiepNhan": app.received.to_string(),
            "HanBoSung": app.supplement_deadline.map(|d| d.to_string()),
            "LyDo": app.reason,
            "KetQua": app.result,
        }),
        RegistryKind::Population => json!({
            "ma_ho_so": app.code,
            "loai": if app.procedure == Procedure::Residence { "DANG_KY_THUONG_TRU" } else { "XOA_DANG_KY_THUONG_TRU" },
            "trang_thai": match app.status {
                1 => "CHO_TIEP_NHAN",
                2 => "CAN_BO_SUNG",
                3 => "DANG_XU_LY",
                4 => "DA_GIAI_QUYET",
                _ => "TU_CHOI",
            },
            "ngay_tiep_nhan": dmy(app.received),
            "han_bo_sung": app.supplement_deadline.map(dmy),
            "ly_do": app.reason,
            "ket_qua": app.result,
        }),
        RegistryKind::Insurance => json!({
            "maHoSo": app.code,
            "loaiHoSo": if app.procedure == Procedure::ChildCard { "CAP_THE_BHYT_TE" } else { "TRO_CAP_MAI_TANG" },
            "trangThai": match app.status {
                1 => "TIEP_NHAN",
                2 => "YEU_CAU_BO_SUNG",
                3 => "DANG_XET_DUYET",
                4 => "DA_DUYET",
                _ => "KHONG_DUYET",
            },
            "ngayTiepNhan": compact(app.received),
            "hanBoSung": app.supplement_deadline.map(compact),
            "lyDo": app.reason,
            "ketQua": app.result,
        }),
    };
    kind.envelope(data)
}

async fn submit(state: &RegistryState, req: &HttpRequest, procedure: Procedure, body: Value) -> HttpResponse {
    let kind = state.kind;
    if !state.authorised(req) {
        return unauthorised(kind);
    }
    let faults = state.faults.read().clone();
    if let Outcome::Error = inject(&faults).await {
        return server_error(kind);
    }
    let header = key_header(kind);
    let key = req.headers().get(header).and_then(|v| v.to_str().ok()).map(str::trim).unwrap_or("");
    if key.is_empty() || key.len() > 200 {
        return bad_request(kind, &format!("Thiếu {header} (1 đến 200 ký tự)"));
    }
    let delay = Duration::from_millis(faults.processing_ms);
    match state.ledger.submit(procedure, key, body, faults.decision, delay) {
        Ok(app) => {
            tracing::info!(registry = kind.name(), code = %app.code, procedure = ?procedure, "application received");
            HttpResponse::Ok().json(render(kind, &app))
        }
        Err(Refusal::KeyReused) => conflict(kind, &format!("{header} đã dùng cho một yêu cầu khác")),
        Err(Refusal::Invalid(message)) => bad_request(kind, &message),
        Err(Refusal::NotFound) => not_found(kind),
    }
}

async fn status(state: &RegistryState, req: &HttpRequest, code: &str) -> HttpResponse {
    if !state.authorised(req) {
        return unauthorised(state.kind);
    }
    if let Outcome::Error = state.inject().await {
        return server_error(state.kind);
    }
    match state.ledger.application(state.kind, code) {
        Some(app) => HttpResponse::Ok().json(render(state.kind, &app)),
        None => not_found(state.kind),
    }
}

async fn supplement(state: &RegistryState, req: &HttpRequest, code: &str, documents: Value) -> HttpResponse {
    if !state.authorised(req) {
        return unauthorised(state.kind);
    }
    if let Outcome::Error = state.inject().await {
        return server_error(state.kind);
    }
    match state.ledger.supplement(state.kind, code, documents) {
        Ok(app) => HttpResponse::Ok().json(render(state.kind, &app)),
        Err(None) => not_found(state.kind),
        Err(Some(status)) => conflict(state.kind, &format!("Hồ sơ không chờ bổ sung (trạng thái {status})")),
    }
}

async fn civil_register_birth(state: State, req: HttpRequest, body: web::Json<Value>) -> HttpResponse {
    submit(&state, &req, Procedure::Birth, body.into_inner()).await
}
async fn civil_register_death(state: State, req: HttpRequest, body: web::Json<Value>) -> HttpResponse {
    submit(&state, &req, Procedure::Death, body.into_inner()).await
}
async fn pop_register_residence(state: State, req: HttpRequest, body: web::Json<Value>) -> HttpResponse {
    submit(&state, &req, Procedure::Residence, body.into_inner()).await
}
async fn pop_remove_residence(state: State, req: HttpRequest, body: web::Json<Value>) -> HttpResponse {
    submit(&state, &req, Procedure::ResidenceRemoval, body.into_inner()).await
}
async fn insurance_child_card(state: State, req: HttpRequest, body: web::Json<Value>) -> HttpResponse {
    submit(&state, &req, Procedure::ChildCard, body.into_inner()).await
}
async fn insurance_funeral(state: State, req: HttpRequest, body: web::Json<Value>) -> HttpResponse {
    submit(&state, &req, Procedure::FuneralAllowance, body.into_inner()).await
}
async fn application_status(state: State, req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    status(&state, &req, &path).await
}
async fn application_supplement(
    state: State,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<Value>,
) -> HttpResponse {
    supplement(&state, &req, &path, body.into_inner()).await
}

/// Every application this registry holds, oldest first: what was written,
/// to check that nothing was written twice.
async fn list_applications(state: State, req: HttpRequest) -> HttpResponse {
    if !state.authorised(&req) {
        return unauthorised(state.kind);
    }
    let apps: Vec<Application> =
        state.ledger.applications().into_iter().filter(|a| a.procedure.registry() == state.kind).collect();
    HttpResponse::Ok().json(apps)
}

pub(super) fn routes(kind: RegistryKind, cfg: &mut web::ServiceConfig) {
    cfg.route("/__applications", web::get().to(list_applications));
    let (submits, base): (&[(&str, _)], &str) = match kind {
        RegistryKind::CivilStatus => (
            &[("/hotich/v2/dangky/khaisinh", Procedure::Birth), ("/hotich/v2/dangky/khaitu", Procedure::Death)],
            "/hotich/v2/dangky/{code}",
        ),
        RegistryKind::Population => (
            &[
                ("/api/v1/cu-tru/thuong-tru", Procedure::Residence),
                ("/api/v1/cu-tru/xoa-thuong-tru", Procedure::ResidenceRemoval),
            ],
            "/api/v1/cu-tru/ho-so/{code}",
        ),
        RegistryKind::Insurance => (
            &[
                ("/bhxh/api/v1/cap-the-tre-em", Procedure::ChildCard),
                ("/bhxh/api/v1/tro-cap-mai-tang", Procedure::FuneralAllowance),
            ],
            "/bhxh/api/v1/ho-so/{code}",
        ),
    };
    for (path, procedure) in submits {
        let route = match procedure {
            Procedure::Birth => web::post().to(civil_register_birth),
            Procedure::Death => web::post().to(civil_register_death),
            Procedure::Residence => web::post().to(pop_register_residence),
            Procedure::ResidenceRemoval => web::post().to(pop_remove_residence),
            Procedure::ChildCard => web::post().to(insurance_child_card),
            Procedure::FuneralAllowance => web::post().to(insurance_funeral),
        };
        cfg.route(path, route);
    }
    let supplement_path = match kind {
        RegistryKind::CivilStatus => format!("{base}/bosung"),
        RegistryKind::Population => format!("{base}/bo-sung"),
        RegistryKind::Insurance => format!("{base}/bo-sung"),
    };
    cfg.route(base, web::get().to(application_status)).route(&supplement_path, web::post().to(application_supplement));
}
