//! Mock national registries, served over real HTTP: the population database
//! (CSDLQG về dân cư), the civil-status registry (hộ tịch) and the insurance
//! database (BHXH/BHYT). Each has its own API style, field names, date format,
//! error format and credential, as separate agencies' systems do, and its own
//! run-time fault injection (`GET/PUT/DELETE /__faults`).

pub mod business;
pub mod ledger;
pub mod names;
pub mod population;
pub mod portal;
pub mod render;
pub mod writes;

use crate::domain::{AdminUnits, CitizenId};
use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use ledger::{Decision, Ledger};
use parking_lot::RwLock;
use population::{Person, Population};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

/// Faults a registry injects, switchable at run time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Added to every response, in milliseconds.
    pub latency_ms: u64,
    /// Uniform random extra latency, 0..jitter_ms.
    pub jitter_ms: u64,
    /// Share of requests answered with a server error (0.0-1.0).
    pub error_rate: f64,
    /// Share of requests that hang for `timeout_ms` before answering.
    pub timeout_rate: f64,
    pub timeout_ms: u64,
    /// Share of responses that break the registry's own schema.
    pub corrupt_rate: f64,
    /// How long an application waits at each status before it moves on
    /// (receipt, processing), in milliseconds.
    pub processing_ms: u64,
    /// What the registry decides on the applications it receives from now on.
    pub decision: Decision,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            latency_ms: 0,
            jitter_ms: 0,
            error_rate: 0.0,
            timeout_rate: 0.0,
            timeout_ms: 30_000,
            corrupt_rate: 0.0,
            processing_ms: 0,
            decision: Decision::Approve,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistryKind {
    Population,
    CivilStatus,
    Insurance,
}

impl RegistryKind {
    pub const ALL: [RegistryKind; 3] = [RegistryKind::Population, RegistryKind::CivilStatus, RegistryKind::Insurance];

    pub fn name(self) -> &'static str {
        match self {
            RegistryKind::Population => "population",
            RegistryKind::CivilStatus => "civil_status",
            RegistryKind::Insurance => "insurance",
        }
    }

    /// A successful answer as this registry wraps its record.
    pub fn envelope(self, data: Value) -> Value {
        match self {
            RegistryKind::Population => json!({ "ma_loi": "00", "mo_ta": "Thành công", "du_lieu": data }),
            RegistryKind::CivilStatus => json!({ "Status": "OK", "Data": data }),
            RegistryKind::Insurance => json!({ "success": true, "data": data }),
        }
    }
}

pub struct RegistryState {
    pub kind: RegistryKind,
    pub population: Arc<Population>,
    pub token: String,
    pub faults: RwLock<Faults>,
    /// The applications the registries received and what they changed,
    /// shared by the three.
    pub ledger: Arc<Ledger>,
}

pub(crate) enum Outcome {
    Normal,
    Error,
    Corrupt,
}

/// Applies `f`'s latency and decides a request's fate.
pub(crate) async fn inject(f: &Faults) -> Outcome {
    let (delay, roll_timeout, roll_error, roll_corrupt) = {
        let mut rng = rand::rng();
        let jitter = if f.jitter_ms > 0 { rng.random_range(0..f.jitter_ms) } else { 0 };
        (f.latency_ms + jitter, rng.random::<f64>(), rng.random::<f64>(), rng.random::<f64>())
    };
    if delay > 0 {
        actix_rt::time::sleep(Duration::from_millis(delay)).await;
    }
    if roll_timeout < f.timeout_rate {
        actix_rt::time::sleep(Duration::from_millis(f.timeout_ms)).await;
    }
    if roll_error < f.error_rate {
        Outcome::Error
    } else if roll_corrupt < f.corrupt_rate {
        Outcome::Corrupt
    } else {
        Outcome::Normal
    }
}

impl RegistryState {
    fn authorised(&self, req: &HttpRequest) -> bool {
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
        let presented = match self.kind {
            RegistryKind::Population => header("authorization").strip_prefix("Bearer ").unwrap_or(""),
            RegistryKind::CivilStatus => header("x-api-key"),
            RegistryKind::Insurance => header("x-bhxh-token"),
        };
        !presented.is_empty() && constant_time_eq(presented.as_bytes(), self.token.as_bytes())
    }

    /// Applies the configured latency and decides this request's fate.
    async fn inject(&self) -> Outcome {
        let f = self.faults.read().clone();
        inject(&f).await
    }
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

type State = web::Data<RegistryState>;

// ---- each registry's error format -------------------------------------------

fn error(kind: RegistryKind, status: u16, code: &str, message: &str) -> HttpResponse {
    let body = match kind {
        RegistryKind::Population => json!({ "ma_loi": code, "mo_ta": message }),
        RegistryKind::CivilStatus => json!({ "Status": "ERROR", "ErrorCode": code, "Message": message }),
        RegistryKind::Insurance => json!({ "success": false, "error": { "code": code, "message": message } }),
    };
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap_or_default()).json(body)
}

fn unauthorised(kind: RegistryKind) -> HttpResponse {
    match kind {
        RegistryKind::Population => error(kind, 401, "401", "Không có quyền truy cập"),
        RegistryKind::CivilStatus => error(kind, 401, "UNAUTHORIZED", "API key không hợp lệ"),
        RegistryKind::Insurance => error(kind, 401, "E401", "Token không hợp lệ"),
    }
}

fn not_found(kind: RegistryKind) -> HttpResponse {
    match kind {
        RegistryKind::Population => error(kind, 404, "404", "Không tìm thấy công dân"),
        RegistryKind::CivilStatus => error(kind, 404, "KHONG_TIM_THAY", "Không tìm thấy hồ sơ"),
        RegistryKind::Insurance => error(kind, 404, "E404", "Không tìm thấy người tham gia"),
    }
}

fn bad_id(kind: RegistryKind) -> HttpResponse {
    match kind {
        RegistryKind::Population => error(kind, 400, "400", "Số định danh không hợp lệ"),
        RegistryKind::CivilStatus => error(kind, 400, "THAM_SO_SAI", "Số định danh không hợp lệ"),
        RegistryKind::Insurance => error(kind, 400, "E400", "Số định danh không hợp lệ"),
    }
}

fn server_error(kind: RegistryKind) -> HttpResponse {
    match kind {
        RegistryKind::Population => error(kind, 500, "500", "Lỗi hệ thống"),
        RegistryKind::CivilStatus => error(kind, 503, "HE_THONG_BAN", "Hệ thống đang bận"),
        RegistryKind::Insurance => error(kind, 500, "E500", "Lỗi máy chủ"),
    }
}

/// The person an ID names as the registries hold them now: a generated
/// person, with the death the civil-status registry registered since if any,
/// or a child whose birth it registered.
pub(crate) struct Subject {
    pub person: Person,
    pub newborn: Option<ledger::Newborn>,
    pub death: Option<ledger::Death>,
    /// When the permanent residence was removed.
    pub removed: Option<jiff::civil::Date>,
}

impl RegistryState {
    fn subject(&self, id: &str) -> Option<Subject> {
        let cid = CitizenId::parse(id).ok()?;
        if let Some(p) = self.population.find(id) {
            let mut person = p.clone();
            let death = self.ledger.death(cid);
            if let Some(d) = &death {
                person.death = Some(d.date);
            }
            return Some(Subject { person, newborn: None, death, removed: self.ledger.removed(cid) });
        }
        let newborn = self.ledger.newborn(cid)?;
        Some(Subject { person: newborn.person.clone(), newborn: Some(newborn), death: None, removed: None })
    }
}

/// Common wrapper: credential, fault injection, ID parsing, then `render`.
async fn serve_record(
    state: &RegistryState,
    req: &HttpRequest,
    id: &str,
    render: impl FnOnce(&Population, &Subject) -> Option<Value>,
    corrupt: impl FnOnce(Value) -> Value,
) -> HttpResponse {
    if !state.authorised(req) {
        return unauthorised(state.kind);
    }
    let outcome = state.inject().await;
    if let Outcome::Error = outcome {
        return server_error(state.kind);
    }
    if CitizenId::parse(id).is_err() {
        return bad_id(state.kind);
    }
    let Some(subject) = state.subject(id) else { return not_found(state.kind) };
    let Some(data) = render(&state.population, &subject) else { return not_found(state.kind) };
    let body = state.kind.envelope(data);
    let body = if let Outcome::Corrupt = outcome { corrupt(body) } else { body };
    HttpResponse::Ok().json(body)
}

// ---- population -------------------------------------------------------------

async fn pop_citizen(state: State, req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    serve_record(
        &state,
        &req,
        &path,
        |pop, s| {
            let mut r = render::population_record(pop, &s.person);
            if let Some(n) = &s.newborn {
                r["ho_ten"] = json!(n.full_name());
                if n.household.is_none() {
                    r["thuong_tru"] = Value::Null;
                    r["noi_o_hien_tai"] = Value::Null;
                }
            }
            if let Some(removed) = s.removed {
                r["thuong_tru"] = Value::Null;
                r["ngay_xoa_thuong_tru"] = json!(render::dmy(removed));
            }
            Some(r)
        },
        |mut b| {
            // Breaks the registry's own schema: the date in the wrong format, the ID as a number.
            b["du_lieu"]["ngay_sinh"] = json!("1990-13-45");
            b["du_lieu"]["so_dinh_danh"] = json!(12345);
            b
        },
    )
    .await
}

async fn pop_household(state: State, req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    serve_record(
        &state,
        &req,
        &path,
        |pop, s| {
            if s.newborn.as_ref().is_some_and(|n| n.household.is_none()) {
                return None;
            }
            let mut r = render::population_household(pop, &s.person);
            if let Some(members) = r["thanh_vien"].as_array_mut() {
                for n in state.ledger.born_into(s.person.household) {
                    members.push(json!({
                        "so_dinh_danh": n.person.id.to_string(),
                        "ho_ten": n.full_name(),
                        "ngay_sinh": render::dmy(n.person.dob),
                        "gioi_tinh": if n.person.sex == crate::domain::Sex::Male { "1" } else { "2" },
                        "quan_he_voi_chu_ho": "03",
                        "ngay_mat": null,
                    }));
                }
            }
            Some(r)
        },
        |mut b| {
            b["du_lieu"]["thanh_vien"] = json!("không rõ");
            b
        },
    )
    .await
}

#[derive(Deserialize)]
struct VerifyBody {
    so_dinh_danh: String,
    ho_ten: String,
    ngay_sinh: String,
}

async fn pop_verify(state: State, req: HttpRequest, body: web::Json<VerifyBody>) -> HttpResponse {
    let b = body.into_inner();
    serve_record(
        &state,
        &req,
        &b.so_dinh_danh.clone(),
        |_, s| {
            let name = s.newborn.as_ref().map(|n| n.full_name()).unwrap_or_else(|| s.person.name.full());
            let matches = name.to_lowercase() == b.ho_ten.trim().to_lowercase()
                && render::dmy(s.person.dob) == b.ngay_sinh.trim();
            Some(json!({ "so_dinh_danh": b.so_dinh_danh, "khop": matches }))
        },
        |mut b| {
            b["du_lieu"]["khop"] = json!("có");
            b
        },
    )
    .await
}

// ---- civil status -----------------------------------------------------------

#[derive(Deserialize)]
struct CivilQuery {
    #[serde(rename = "soDinhDanh", default)]
    so_dinh_danh: String,
}

fn civil_corrupt(mut b: Value) -> Value {
    b["Data"] = json!("<KetQua>loi</KetQua>");
    b
}

async fn civil_birth(state: State, req: HttpRequest, q: web::Query<CivilQuery>) -> HttpResponse {
    serve_record(
        &state,
        &req,
        &q.so_dinh_danh,
        |pop, s| {
            let mut r = render::birth_record(pop, &s.person)?;
            if let Some(n) = &s.newborn {
                for (field, value) in [("Ho", &n.surname), ("ChuDem", &n.middle), ("Ten", &n.given)] {
                    r[field] = json!(value);
                }
                for field in ["SoDangKy", "QuyenSo", "Trang", "NgayDangKy", "NoiDangKy"] {
                    r[field] = n.registration[field].clone();
                }
                if !n.place_of_birth.is_empty() {
                    r["NoiSinh"] = json!(n.place_of_birth);
                }
            }
            Some(r)
        },
        civil_corrupt,
    )
    .await
}

async fn civil_marriage(state: State, req: HttpRequest, q: web::Query<CivilQuery>) -> HttpResponse {
    serve_record(&state, &req, &q.so_dinh_danh, |pop, s| Some(render::marriage_record(pop, &s.person)), civil_corrupt)
        .await
}

async fn civil_death(state: State, req: HttpRequest, q: web::Query<CivilQuery>) -> HttpResponse {
    serve_record(
        &state,
        &req,
        &q.so_dinh_danh,
        |pop, s| {
            let mut r = render::death_record(pop, &s.person)?;
            if let Some(d) = &s.death {
                for field in ["SoDangKy", "QuyenSo", "NgayDangKy", "NoiDangKy"] {
                    r[field] = d.registration[field].clone();
                }
                if !d.place.is_empty() {
                    r["NoiChet"] = json!(d.place);
                }
            }
            Some(r)
        },
        civil_corrupt,
    )
    .await
}

// ---- insurance --------------------------------------------------------------

#[derive(Deserialize)]
struct InsuranceQuery {
    #[serde(rename = "soDinhDanh")]
    so_dinh_danh: String,
}

async fn insurance_lookup(state: State, req: HttpRequest, body: web::Json<InsuranceQuery>) -> HttpResponse {
    serve_record(
        &state,
        &req,
        &body.so_dinh_danh,
        |pop, s| match &s.newborn {
            Some(n) => n.card.clone(),
            None => Some(render::insurance_record(pop, &s.person)),
        },
        |mut b| {
            b["data"]["maSoBhxh"] = json!(123);
            b["data"].as_object_mut().map(|o| o.remove("soTheBhyt"));
            b
        },
    )
    .await
}

// ---- faults -----------------------------------------------------------------

async fn get_faults(state: State, req: HttpRequest) -> HttpResponse {
    if !state.authorised(&req) {
        return unauthorised(state.kind);
    }
    HttpResponse::Ok().json(state.faults.read().clone())
}

async fn put_faults(state: State, req: HttpRequest, body: web::Json<Faults>) -> HttpResponse {
    if !state.authorised(&req) {
        return unauthorised(state.kind);
    }
    let f = body.into_inner();
    let rates = [f.error_rate, f.timeout_rate, f.corrupt_rate];
    if rates.iter().any(|r| !(0.0..=1.0).contains(r)) {
        return error(state.kind, 400, "400", "rates must be between 0 and 1");
    }
    *state.faults.write() = f.clone();
    tracing::info!(registry = state.kind.name(), faults = ?f, "faults changed");
    HttpResponse::Ok().json(f)
}

async fn delete_faults(state: State, req: HttpRequest) -> HttpResponse {
    if !state.authorised(&req) {
        return unauthorised(state.kind);
    }
    *state.faults.write() = Faults::default();
    HttpResponse::NoContent().finish()
}

fn routes(kind: RegistryKind, cfg: &mut web::ServiceConfig) {
    writes::routes(kind, cfg);
    cfg.route("/__faults", web::get().to(get_faults))
        .route("/__faults", web::put().to(put_faults))
        .route("/__faults", web::delete().to(delete_faults));
    match kind {
        RegistryKind::Population => {
            cfg.route("/api/v1/cong-dan/xac-thuc", web::post().to(pop_verify))
                .route("/api/v1/cong-dan/{so_dinh_danh}", web::get().to(pop_citizen))
                .route("/api/v1/cong-dan/{so_dinh_danh}/ho-gia-dinh", web::get().to(pop_household));
        }
        RegistryKind::CivilStatus => {
            cfg.route("/hotich/v2/khaisinh", web::get().to(civil_birth))
                .route("/hotich/v2/kethon", web::get().to(civil_marriage))
                .route("/hotich/v2/khaitu", web::get().to(civil_death));
        }
        RegistryKind::Insurance => {
            cfg.route("/bhxh/api/v1/tra-cuu-the", web::post().to(insurance_lookup));
        }
    }
}

/// How to run the three registries.
#[derive(Debug, Clone)]
pub struct MockConfig {
    pub host: String,
    pub seed: u64,
    pub citizens: usize,
    /// Ports for population, civil status, insurance (0 picks free ones).
    pub ports: [u16; 3],
    /// Credentials for population, civil status, insurance.
    pub tokens: [String; 3],
    pub workers: usize,
    /// The business registry's port; `None` picks a free one.
    pub business_port: Option<u16>,
    pub business: business::BusinessConfig,
    /// The national public-service portal's port; `None` picks a free one.
    pub portal_port: Option<u16>,
    pub portal: portal::PortalConfig,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            host: "127.0.0.1".into(),
            seed: 2025,
            citizens: 10_000,
            ports: [7101, 7102, 7103],
            tokens: default_tokens(),
            workers: 1,
            business_port: None,
            business: business::BusinessConfig::default(),
            portal_port: None,
            portal: portal::PortalConfig::default(),
        }
    }
}

pub fn default_tokens() -> [String; 3] {
    ["population-dev-token".into(), "civil-status-dev-token".into(), "insurance-dev-token".into()]
}

/// The three running registries, and the business registry beside them.
pub struct MockRegistries {
    pub population: Arc<Population>,
    /// What the registries were asked to write, and what it changed.
    pub ledger: Arc<Ledger>,
    /// The business-registration database (SOAP), which no shipped adapter calls.
    pub business: business::BusinessRegistry,
    /// The national public-service portal's sync interface.
    pub portal: portal::NationalPortal,
    pub states: Vec<web::Data<RegistryState>>,
    pub ports: [u16; 3],
    pub host: String,
    handles: Vec<ServerHandle>,
}

impl MockRegistries {
    /// Generates the population and starts the three servers on the current
    /// actix/tokio runtime.
    pub fn start(config: &MockConfig) -> std::io::Result<MockRegistries> {
        let population = Arc::new(Population::generate(config.seed, config.citizens));
        Self::start_with(config, population)
    }

    pub fn start_with(config: &MockConfig, population: Arc<Population>) -> std::io::Result<MockRegistries> {
        let _ = AdminUnits::get();
        let mut ports = [0u16; 3];
        let mut handles = Vec::new();
        let mut states = Vec::new();
        let ledger = Arc::new(Ledger::new(population.clone()));
        for (i, kind) in RegistryKind::ALL.into_iter().enumerate() {
            let state = web::Data::new(RegistryState {
                kind,
                population: population.clone(),
                token: config.tokens[i].clone(),
                faults: RwLock::new(Faults::default()),
                ledger: ledger.clone(),
            });
            let listener = TcpListener::bind((config.host.as_str(), config.ports[i])).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!(
                        "the mock {} registry cannot listen on {}:{}: {e}",
                        kind.name(),
                        config.host,
                        config.ports[i]
                    ),
                )
            })?;
            ports[i] = listener.local_addr()?.port();
            let app_state = state.clone();
            let server = HttpServer::new(move || {
                App::new()
                    .app_data(app_state.clone())
                    .app_data(web::JsonConfig::default().limit(16 * 1024))
                    .configure(|cfg| routes(kind, cfg))
                    .default_service(web::route().to(move || async move { not_found(kind) }))
            })
            .workers(config.workers.max(1))
            .shutdown_timeout(1)
            .disable_signals()
            .listen(listener)?
            .run();
            handles.push(server.handle());
            tokio::spawn(server);
            states.push(state);
        }
        let business = business::BusinessRegistry::start(
            population.clone(),
            config.business.clone(),
            &config.host,
            config.business_port.unwrap_or(0),
        )?;
        let portal =
            portal::NationalPortal::start(config.portal.clone(), &config.host, config.portal_port.unwrap_or(0))?;
        Ok(MockRegistries { population, ledger, business, portal, states, ports, host: config.host.clone(), handles })
    }

    pub fn url(&self, kind: RegistryKind) -> String {
        let i = RegistryKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        format!("http://{}:{}", self.host, self.ports[i])
    }

    pub fn state(&self, kind: RegistryKind) -> &RegistryState {
        let i = RegistryKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        &self.states[i]
    }

    /// Sets a registry's faults directly (tests and benchmarks in-process).
    pub fn set_faults(&self, kind: RegistryKind, faults: Faults) {
        *self.state(kind).faults.write() = faults;
    }

    pub async fn stop(self) {
        for h in self.handles {
            h.stop(true).await;
        }
        self.business.stop().await;
        self.portal.stop().await;
    }
}
