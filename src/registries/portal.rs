//! A mock of the national public-service portal's sync interface (Cổng Dịch vụ
//! công quốc gia), to which a province reports its dossiers and their
//! processing steps, and from which the portal computes the province's
//! figures. Its own conventions: a session from a login (`PhienLamViec`, in a
//! header of that name, 30 minutes), Vietnamese PascalCase, dates as
//! `yyyyMMddHHmmss` in Vietnam's time, error codes in `MaLoi` (`0` for
//! success), records reported in batches with a result for each.
//!
//! A dossier record is inserted or replaced whole (`dong-bo-ho-so`); its
//! processing steps are appended by their order number (`ThuTu`), so a step
//! sent twice is kept once (`cap-nhat-tien-do`); a look-up returns the record
//! as the portal holds it (`tra-cuu-ho-so`). Faults as the other mocks have,
//! plus `drop_steps`: steps are acknowledged and not kept, as provinces see
//! happen.

use super::{constant_time_eq, inject, Faults, Outcome};
use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::TcpListener;
use std::time::{Duration, Instant};

/// The national dossier statuses (1 to 10).
pub const STATUSES: [&str; 10] = [
    "Mới đăng ký",
    "Được tiếp nhận",
    "Không được tiếp nhận",
    "Đang xử lý",
    "Yêu cầu bổ sung giấy tờ",
    "Yêu cầu thực hiện nghĩa vụ tài chính",
    "Công dân yêu cầu rút hồ sơ",
    "Dừng xử lý",
    "Đã xử lý xong",
    "Đã trả kết quả",
];

/// The portal's faults: the other mocks' (latency, errors, timeouts), and
/// steps acknowledged but not kept.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PortalFaults {
    pub latency_ms: u64,
    pub error_rate: f64,
    pub timeout_rate: f64,
    pub timeout_ms: u64,
    /// Acknowledge processing steps without keeping them.
    pub drop_steps: bool,
}

#[derive(Debug, Clone)]
pub struct PortalConfig {
    pub username: String,
    pub password: String,
    pub session_ttl: Duration,
}

impl Default for PortalConfig {
    fn default() -> Self {
        PortalConfig {
            username: "lgsp".into(),
            password: "portal-dev-password".into(),
            session_ttl: Duration::from_secs(1800),
        }
    }
}

/// A dossier as the portal holds it.
#[derive(Debug, Clone, Serialize)]
pub struct PortalRecord {
    pub record: Value,
    /// Steps by their order number.
    pub steps: BTreeMap<i64, Value>,
    /// How many times the record was sent (inserted, then replaced).
    pub versions: u32,
}

pub struct PortalState {
    config: PortalConfig,
    sessions: Mutex<HashMap<String, Instant>>,
    pub records: Mutex<BTreeMap<String, PortalRecord>>,
    pub faults: RwLock<PortalFaults>,
}

fn answer(code: &str, message: &str, extra: Value) -> Value {
    let mut body = json!({"MaLoi": code, "MoTa": message});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body
}

/// `yyyyMMddHHmmss`, as the portal writes dates.
pub fn is_portal_time(v: &Value) -> bool {
    let Some(s) = v.as_str() else { return false };
    if s.len() != 14 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let n = |a: usize, b: usize| s[a..b].parse::<i16>().unwrap_or(-1);
    jiff::civil::DateTime::new(
        n(0, 4),
        n(4, 6) as i8,
        n(6, 8) as i8,
        n(8, 10) as i8,
        n(10, 12) as i8,
        n(12, 14) as i8,
        0,
    )
    .is_ok()
}

/// What is wrong with a dossier record, in the portal's words: `(code, message)`.
fn check_record(r: &Value) -> Result<String, (&'static str, String)> {
    let text = |k: &str| r[k].as_str().filter(|s| !s.trim().is_empty());
    let code = text("MaHoSo").ok_or(("HS01", "Thiếu MaHoSo".to_string()))?;
    crate::domain::dossier_code::DossierCode::parse(code)
        .map_err(|_| ("HS01", format!("MaHoSo {code} không đúng định dạng (Nghị định 61/2018)")))?;
    for field in ["MaTTHC", "MaCoQuan", "MaDoiTuong"] {
        if text(field).is_none() {
            return Err(("HS01", format!("Thiếu {field}")));
        }
    }
    // Procedures are known by their code in the national database of
    // administrative procedures: a digit, a dot, six digits (1.001193).
    let procedure = text("MaTTHC").unwrap_or("");
    let known = procedure.len() == 8
        && procedure.as_bytes()[1] == b'.'
        && procedure.bytes().enumerate().all(|(i, b)| i == 1 || b.is_ascii_digit());
    if !known {
        return Err(("HS05", format!("MaTTHC {procedure} không có trong CSDL quốc gia về thủ tục hành chính")));
    }
    if !matches!(r["KenhThucHien"].as_i64(), Some(1..=3)) {
        return Err(("HS01", "KenhThucHien là 1 (trực tiếp), 2 (trực tuyến) hoặc 3 (bưu chính)".into()));
    }
    if !matches!(r["TrangThaiHoSo"].as_i64(), Some(1..=10)) {
        return Err(("HS02", "TrangThaiHoSo là một số từ 1 đến 10".into()));
    }
    for field in ["NgayTiepNhan", "NgayHenTra"] {
        if !r[field].is_null() && !is_portal_time(&r[field]) {
            return Err(("HS03", format!("{field} không đúng định dạng yyyyMMddHHmmss")));
        }
    }
    if !is_portal_time(&r["NgayTiepNhan"]) {
        return Err(("HS03", "Thiếu NgayTiepNhan".into()));
    }
    Ok(code.to_string())
}

fn check_step(s: &Value) -> Result<i64, (&'static str, String)> {
    let order =
        s["ThuTu"].as_i64().filter(|n| *n >= 1).ok_or(("TD01", "ThuTu là số thứ tự của bước, từ 1".to_string()))?;
    if !matches!(s["TrangThai"].as_i64(), Some(1..=10)) {
        return Err(("TD02", "TrangThai là một số từ 1 đến 10".into()));
    }
    if !is_portal_time(&s["ThoiDiemXuLy"]) {
        return Err(("TD03", "ThoiDiemXuLy không đúng định dạng yyyyMMddHHmmss".into()));
    }
    Ok(order)
}

impl PortalState {
    fn session_ok(&self, req: &HttpRequest) -> bool {
        let Some(s) = req.headers().get("PhienLamViec").and_then(|v| v.to_str().ok()) else { return false };
        let mut sessions = self.sessions.lock();
        sessions.retain(|_, until| *until > Instant::now());
        sessions.contains_key(s)
    }

    fn basic_ok(&self, req: &HttpRequest) -> bool {
        use base64::Engine as _;
        let header = req.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
        let Some(pair) = header.strip_prefix("Basic ") else { return false };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(pair) else { return false };
        let expected = format!("{}:{}", self.config.username, self.config.password);
        constant_time_eq(&decoded, expected.as_bytes())
    }

    /// Applies the configured latency and decides a call's fate.
    async fn inject(&self) -> Outcome {
        let f = self.faults.read().clone();
        let base = Faults {
            latency_ms: f.latency_ms,
            error_rate: f.error_rate,
            timeout_rate: f.timeout_rate,
            timeout_ms: if f.timeout_ms == 0 { 30_000 } else { f.timeout_ms },
            ..Faults::default()
        };
        inject(&base).await
    }
}

type State = web::Data<PortalState>;

fn refused_session() -> HttpResponse {
    HttpResponse::Unauthorized().json(answer("PL01", "Phiên làm việc không hợp lệ hoặc đã hết hạn", json!({})))
}

fn busy() -> HttpResponse {
    HttpResponse::ServiceUnavailable().json(answer("HT01", "Hệ thống đang bận, vui lòng thử lại", json!({})))
}

#[derive(Deserialize)]
struct Login {
    #[serde(rename = "TenDangNhap")]
    user: String,
    #[serde(rename = "MatKhau")]
    password: String,
}

async fn login(state: State, body: web::Json<Login>) -> HttpResponse {
    if let Outcome::Error = state.inject().await {
        return busy();
    }
    let c = &state.config;
    let ok = constant_time_eq(body.user.as_bytes(), c.username.as_bytes())
        && constant_time_eq(body.password.as_bytes(), c.password.as_bytes());
    if !ok {
        return HttpResponse::Unauthorized().json(answer("DN01", "Sai tên đăng nhập hoặc mật khẩu", json!({})));
    }
    let session = crate::domain::partner::new_secret("");
    state.sessions.lock().insert(session.clone(), Instant::now() + c.session_ttl);
    HttpResponse::Ok().json(answer(
        "0",
        "Thành công",
        json!({"PhienLamViec": session, "ThoiHanGiay": c.session_ttl.as_secs()}),
    ))
}

/// Inserts or replaces dossier records, each answered on its own.
async fn sync_records(state: State, req: HttpRequest, body: web::Json<Value>) -> HttpResponse {
    if !state.session_ok(&req) {
        return refused_session();
    }
    if let Outcome::Error = state.inject().await {
        return busy();
    }
    let Some(list) = body["DanhSachHoSo"].as_array() else {
        return HttpResponse::BadRequest().json(answer("HS00", "Thiếu DanhSachHoSo", json!({})));
    };
    let mut results = Vec::new();
    let mut records = state.records.lock();
    for r in list {
        match check_record(r) {
            Ok(code) => {
                let entry = records.entry(code.clone()).or_insert_with(|| PortalRecord {
                    record: Value::Null,
                    steps: BTreeMap::new(),
                    versions: 0,
                });
                entry.record = r.clone();
                entry.versions += 1;
                results.push(json!({"MaHoSo": code, "MaLoi": "0"}));
            }
            Err((code, message)) => results.push(json!({"MaHoSo": r["MaHoSo"], "MaLoi": code, "MoTa": message})),
        }
    }
    HttpResponse::Ok().json(answer("0", "Đã nhận", json!({"KetQua": results})))
}

/// Appends processing steps to a dossier the portal holds.
async fn sync_steps(state: State, req: HttpRequest, body: web::Json<Value>) -> HttpResponse {
    if !state.session_ok(&req) {
        return refused_session();
    }
    if let Outcome::Error = state.inject().await {
        return busy();
    }
    let Some(code) = body["MaHoSo"].as_str() else {
        return HttpResponse::BadRequest().json(answer("TD00", "Thiếu MaHoSo", json!({})));
    };
    let Some(steps) = body["QuaTrinhXuLy"].as_array() else {
        return HttpResponse::BadRequest().json(answer("TD00", "Thiếu QuaTrinhXuLy", json!({})));
    };
    let mut checked = Vec::new();
    for s in steps {
        match check_step(s) {
            Ok(order) => checked.push((order, s.clone())),
            Err((c, m)) => return HttpResponse::Ok().json(answer(c, &m, json!({"MaHoSo": code}))),
        }
    }
    let drop_steps = state.faults.read().drop_steps;
    let mut records = state.records.lock();
    let Some(record) = records.get_mut(code) else {
        return HttpResponse::Ok().json(answer("TD04", "Hồ sơ chưa được đồng bộ", json!({"MaHoSo": code})));
    };
    if !drop_steps {
        for (order, s) in checked {
            record.steps.insert(order, s);
        }
    }
    HttpResponse::Ok().json(answer("0", "Đã cập nhật", json!({"MaHoSo": code})))
}

#[derive(Deserialize)]
struct Lookup {
    #[serde(rename = "MaHoSo", default)]
    code: String,
}

/// A dossier as the portal holds it, with its steps in order.
async fn lookup(state: State, req: HttpRequest, q: web::Query<Lookup>) -> HttpResponse {
    if !state.session_ok(&req) {
        return refused_session();
    }
    if let Outcome::Error = state.inject().await {
        return busy();
    }
    let records = state.records.lock();
    match records.get(&q.code) {
        Some(r) => {
            let steps: Vec<&Value> = r.steps.values().collect();
            HttpResponse::Ok().json(answer("0", "Thành công", json!({"HoSo": r.record, "QuaTrinhXuLy": steps})))
        }
        None => HttpResponse::NotFound().json(answer("HS04", "Không tìm thấy hồ sơ", json!({}))),
    }
}

async fn get_faults(state: State, req: HttpRequest) -> HttpResponse {
    if !state.basic_ok(&req) {
        return HttpResponse::Unauthorized().finish();
    }
    HttpResponse::Ok().json(state.faults.read().clone())
}

async fn put_faults(state: State, req: HttpRequest, body: web::Json<PortalFaults>) -> HttpResponse {
    if !state.basic_ok(&req) {
        return HttpResponse::Unauthorized().finish();
    }
    let f = body.into_inner();
    if [f.error_rate, f.timeout_rate].iter().any(|r| !(0.0..=1.0).contains(r)) {
        return HttpResponse::BadRequest().json(answer("400", "rates must be between 0 and 1", json!({})));
    }
    *state.faults.write() = f.clone();
    HttpResponse::Ok().json(f)
}

async fn delete_faults(state: State, req: HttpRequest) -> HttpResponse {
    if !state.basic_ok(&req) {
        return HttpResponse::Unauthorized().finish();
    }
    *state.faults.write() = PortalFaults::default();
    HttpResponse::NoContent().finish()
}

/// The running mock portal.
pub struct NationalPortal {
    pub state: web::Data<PortalState>,
    pub port: u16,
    pub host: String,
    handle: ServerHandle,
}

impl NationalPortal {
    pub fn start(config: PortalConfig, host: &str, port: u16) -> std::io::Result<NationalPortal> {
        let state = web::Data::new(PortalState {
            config,
            sessions: Mutex::default(),
            records: Mutex::default(),
            faults: RwLock::default(),
        });
        let listener = TcpListener::bind((host, port)).map_err(|e| {
            std::io::Error::new(e.kind(), format!("the mock national portal cannot listen on {host}:{port}: {e}"))
        })?;
        let port = listener.local_addr()?.port();
        let app_state = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .app_data(web::JsonConfig::default().limit(1024 * 1024))
                .route("/dvcqg/api/dang-nhap", web::post().to(login))
                .route("/dvcqg/api/dong-bo-ho-so", web::post().to(sync_records))
                .route("/dvcqg/api/cap-nhat-tien-do", web::post().to(sync_steps))
                .route("/dvcqg/api/tra-cuu-ho-so", web::get().to(lookup))
                .route("/__faults", web::get().to(get_faults))
                .route("/__faults", web::put().to(put_faults))
                .route("/__faults", web::delete().to(delete_faults))
        })
        .workers(1)
        .shutdown_timeout(1)
        .disable_signals()
        .listen(listener)?
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(NationalPortal { state, port, host: host.to_string(), handle })
    }

    pub fn url(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }

    pub async fn stop(self) {
        self.handle.stop(true).await;
    }
}
