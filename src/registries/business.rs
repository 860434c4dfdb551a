//! A mock of the national business-registration database (CSDL quốc gia về
//! đăng ký doanh nghiệp), speaking SOAP 1.1 with its own conventions, unlike
//! the three JSON registries: one endpoint (`POST /dkkd/ws`), operations named
//! by the `Body`'s element, Vietnamese element names, dates as dd/MM/yyyy,
//! faults with the registry's own codes, and a login operation (`DangNhap`)
//! that issues an expiring token the other operations want as
//! `Authorization: Bearer`; an expired or unknown token is a 401.
//!
//! Its enterprises and household businesses belong to the synthetic
//! population: an adult may own a household business (hộ kinh doanh) or be an
//! enterprise's legal representative, at the address of their household,
//! with business lines from the official code list (VSIC 2018) and a status.
//! It is not shipped as an adapter: stewards connect it at run time.

use super::population::{Person, Population};
use super::render;
use super::Faults;
use crate::adapter::xml::{self, Format};
use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use parking_lot::{Mutex, RwLock};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Business lines of the Vietnamese standard industrial classification
/// (VSIC 2018, Decision 27/2018/QĐ-TTg), as household businesses hold them.
pub const BUSINESS_LINES: [(&str, &str); 16] = [
    ("4711", "Bán lẻ lương thực, thực phẩm, đồ uống, thuốc lá, thuốc lào chiếm tỷ trọng lớn trong các cửa hàng kinh doanh tổng hợp"),
    ("4719", "Bán lẻ khác trong các cửa hàng kinh doanh tổng hợp"),
    ("4722", "Bán lẻ thực phẩm trong các cửa hàng chuyên doanh"),
    ("4771", "Bán lẻ hàng may mặc, giày dép, hàng da và giả da trong các cửa hàng chuyên doanh"),
    ("4741", "Bán lẻ máy vi tính, thiết bị ngoại vi, phần mềm và thiết bị viễn thông trong các cửa hàng chuyên doanh"),
    ("4520", "Bảo dưỡng, sửa chữa ô tô và xe có động cơ khác"),
    ("4542", "Bảo dưỡng và sửa chữa mô tô, xe máy"),
    ("5510", "Dịch vụ lưu trú ngắn ngày"),
    ("5610", "Nhà hàng và các dịch vụ ăn uống phục vụ lưu động"),
    ("5630", "Dịch vụ phục vụ đồ uống"),
    ("9602", "Cắt tóc, làm đầu, gội đầu"),
    ("9631", "Cắt tóc, gội đầu, massage và các dịch vụ tương tự"),
    ("1071", "Sản xuất các loại bánh từ bột"),
    ("0118", "Trồng rau, đậu các loại và trồng hoa"),
    ("4933", "Vận tải hàng hóa bằng đường bộ"),
    ("6810", "Kinh doanh bất động sản, quyền sử dụng đất thuộc chủ sở hữu, chủ sử dụng hoặc đi thuê"),
];

const SHOP_WORDS: [&str; 12] = [
    "Minh Anh",
    "Phúc Lộc",
    "Thành Đạt",
    "Hoa Mai",
    "Tân Phát",
    "An Khang",
    "Hưng Thịnh",
    "Bình Minh",
    "Kim Ngân",
    "Đức Tài",
    "Thu Hà",
    "Vạn Xuân",
];
const COMPANY_KINDS: [&str; 3] = [
    "Công ty trách nhiệm hữu hạn một thành viên",
    "Công ty trách nhiệm hữu hạn hai thành viên trở lên",
    "Công ty cổ phần",
];

/// One registered business.
#[derive(Debug, Clone)]
pub struct Business {
    /// `hkd` (household business) or `dn` (enterprise).
    pub enterprise: bool,
    pub code: String,
    pub name: String,
    /// Index of the owner or legal representative in the population.
    pub holder: usize,
    pub lines: Vec<usize>,
    /// 1 operating, 2 suspended, 3 dissolved.
    pub status: u8,
    pub registered: jiff::civil::Date,
    pub capital_million_vnd: u64,
    pub kind: usize,
}

fn mix(x: u64) -> u64 {
    let mut x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The businesses of a population: about one adult in six holds a household
/// business and one in fifteen represents an enterprise.
pub fn businesses(pop: &Population) -> Vec<Business> {
    let mut out = Vec::new();
    for (i, p) in pop.people.iter().enumerate() {
        if p.age() < 18 {
            continue;
        }
        let h = mix(p.id.as_u64() ^ 0xB5);
        let pick = |salt: u64, n: usize| (mix(h ^ salt) % n as u64) as usize;
        let status = match h % 20 {
            0 | 1 => 2,
            2 | 3 => 3,
            _ if !p.is_alive() => 3,
            _ => 1,
        };
        let registered = jiff::civil::date(2008 + (h % 17) as i16, 1 + (h % 12) as i8, 1 + (h % 28) as i8);
        let lines: Vec<usize> = {
            let n = 1 + pick(3, 3);
            let mut v: Vec<usize> = (0..n).map(|k| pick(10 + k as u64, BUSINESS_LINES.len())).collect();
            v.dedup();
            v
        };
        if h % 6 == 0 {
            out.push(Business {
                enterprise: false,
                code: format!("8{:09}", mix(h ^ 1) % 1_000_000_000),
                name: format!("Hộ kinh doanh {}", SHOP_WORDS[pick(4, SHOP_WORDS.len())]),
                holder: i,
                lines: lines.clone(),
                status,
                registered,
                capital_million_vnd: 50 + mix(h ^ 2) % 450,
                kind: 0,
            });
        }
        if h % 15 == 1 {
            let province = render::province_of(p);
            let kind = pick(5, COMPANY_KINDS.len());
            let form = ["TNHH", "TNHH", "CỔ PHẦN"][kind];
            out.push(Business {
                enterprise: true,
                code: format!("{province}{:08}", mix(h ^ 3) % 100_000_000),
                name: format!("CÔNG TY {form} {}", SHOP_WORDS[pick(6, SHOP_WORDS.len())].to_uppercase()),
                holder: i,
                lines,
                status,
                registered,
                capital_million_vnd: 1_000 + mix(h ^ 4) % 49_000,
                kind,
            });
        }
    }
    out
}

/// How the mock business registry runs.
#[derive(Debug, Clone)]
pub struct BusinessConfig {
    pub username: String,
    pub password: String,
    /// How long a login token lasts.
    pub token_ttl: Duration,
}

impl Default for BusinessConfig {
    fn default() -> Self {
        BusinessConfig {
            username: "lgsp".into(),
            password: "business-dev-password".into(),
            token_ttl: Duration::from_secs(300),
        }
    }
}

pub struct BusinessState {
    pub population: Arc<Population>,
    pub businesses: Vec<Business>,
    by_code: HashMap<String, usize>,
    by_holder: HashMap<usize, Vec<usize>>,
    pub config: RwLock<BusinessConfig>,
    /// Live tokens and when each expires.
    tokens: Mutex<HashMap<String, Instant>>,
    /// How many logins it has served.
    pub logins: std::sync::atomic::AtomicU64,
    pub faults: RwLock<Faults>,
}

impl BusinessState {
    pub fn new(population: Arc<Population>, config: BusinessConfig) -> BusinessState {
        let businesses = businesses(&population);
        let by_code = businesses.iter().enumerate().map(|(i, b)| (b.code.clone(), i)).collect();
        let mut by_holder: HashMap<usize, Vec<usize>> = HashMap::new();
        for (i, b) in businesses.iter().enumerate() {
            by_holder.entry(b.holder).or_default().push(i);
        }
        BusinessState {
            population,
            businesses,
            by_code,
            by_holder,
            config: RwLock::new(config),
            tokens: Mutex::new(HashMap::new()),
            logins: Default::default(),
            faults: RwLock::new(Faults::default()),
        }
    }

    /// The businesses a citizen holds.
    pub fn held_by(&self, citizen_id: &str) -> Vec<&Business> {
        let Some(i) = self.population.people.iter().position(|p| p.id.to_string() == citizen_id) else {
            return Vec::new();
        };
        self.by_holder.get(&i).map(|v| v.iter().map(|&b| &self.businesses[b]).collect()).unwrap_or_default()
    }

    /// Forgets every token, as the registry does when it restarts.
    pub fn revoke_tokens(&self) {
        self.tokens.lock().clear();
    }

    fn business_xml(&self, b: &Business) -> Value {
        let p: &Person = &self.population.people[b.holder];
        let lines: Vec<Value> = b
            .lines
            .iter()
            .enumerate()
            .map(|(k, &l)| {
                json!({"Ma": BUSINESS_LINES[l].0, "Ten": BUSINESS_LINES[l].1, "LaNganhChinh": if k == 0 { "1" } else { "0" }})
            })
            .collect();
        let address = render::business_address(&self.population, p);
        let holder = json!({"HoTen": p.name.full(), "SoDinhDanh": p.id.to_string(), "NgaySinh": render::dmy(p.dob)});
        let status = ["", "Đang hoạt động", "Tạm ngừng kinh doanh", "Đã giải thể"][b.status as usize];
        let common = json!({
            "Ten": b.name,
            "TrangThai": {"@Ma": b.status.to_string(), "#text": status},
            "NgayDangKyLanDau": render::dmy(b.registered),
            "DiaChiTruSo": address,
            "NganhNghe": {"Nganh": lines},
        });
        let mut v = common;
        if b.enterprise {
            v["MaSoDoanhNghiep"] = json!(b.code);
            v["LoaiHinh"] = json!(COMPANY_KINDS[b.kind]);
            v["VonDieuLe"] = json!((b.capital_million_vnd * 1_000_000).to_string());
            v["NguoiDaiDienTheoPhapLuat"] = holder;
        } else {
            v["MaSoHoKinhDoanh"] = json!(b.code);
            v["VonKinhDoanh"] = json!((b.capital_million_vnd * 1_000_000).to_string());
            v["ChuHoKinhDoanh"] = holder;
        }
        v
    }
}

type State = web::Data<BusinessState>;

fn soap(status: u16, body: &Value) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap_or_default())
        .content_type("text/xml; charset=utf-8")
        .body(Format::Soap11.encode(body).unwrap_or_default())
}

fn fault(code: &str, own: &str, message: &str) -> HttpResponse {
    soap(
        500,
        &json!({"soap:Fault": {"faultcode": format!("soap:{code}"), "faultstring": message,
                               "detail": {"MaLoi": {"@xmlns": "urn:dkkd:loi", "#text": own}}}}),
    )
}

const NS: &str = "urn:dkkd:dichvu:v1";

impl BusinessState {
    /// Whether the request carries a live token, or HTTP Basic with the
    /// registry's user name and password (which server-to-server callers
    /// may use instead of logging in).
    fn authorised(&self, req: &HttpRequest) -> bool {
        use base64::Engine as _;
        let header = req.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
        if let Some(token) = header.strip_prefix("Bearer ") {
            return self.tokens.lock().get(token).is_some_and(|at| *at > Instant::now());
        }
        let Some(pair) = header.strip_prefix("Basic ") else { return false };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(pair) else { return false };
        let config = self.config.read();
        let expected = format!("{}:{}", config.username, config.password);
        super::constant_time_eq(&decoded, expected.as_bytes())
    }
}

/// `GET/PUT/DELETE /__faults`, with the registry's user name and password
/// as HTTP Basic.
async fn faults(state: State, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let header = req.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    if !header.starts_with("Basic ") || !state.authorised(&req) {
        return HttpResponse::Unauthorized().body("HTTP Basic with the registry's user name and password");
    }
    match *req.method() {
        actix_web::http::Method::PUT => match serde_json::from_slice::<Faults>(&body) {
            Ok(f) if [f.error_rate, f.timeout_rate, f.corrupt_rate].iter().all(|r| (0.0..=1.0).contains(r)) => {
                *state.faults.write() = f.clone();
                HttpResponse::Ok().json(f)
            }
            _ => HttpResponse::BadRequest().body("faults as the other registries take them; rates between 0 and 1"),
        },
        actix_web::http::Method::DELETE => {
            *state.faults.write() = Faults::default();
            HttpResponse::NoContent().finish()
        }
        _ => HttpResponse::Ok().json(state.faults.read().clone()),
    }
}

async fn serve(state: State, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let f = state.faults.read().clone();
    let outcome = super::inject(&f).await;
    if let super::Outcome::Error = outcome {
        return fault("Server", "HT500", "Hệ thống đang bận, vui lòng thử lại sau");
    }
    let request = match xml::read_soap(&body, &Value::Null) {
        Ok(Ok(v)) => v,
        _ => return fault("Client", "XML01", "Yêu cầu không đúng định dạng SOAP"),
    };
    let Some((operation, args)) = request.as_object().and_then(|o| o.iter().next()) else {
        return fault("Client", "XML01", "Yêu cầu không có thao tác");
    };
    let arg = |name: &str| args[name].as_str().unwrap_or("").trim().to_string();
    if operation == "DangNhap" {
        let config = state.config.read().clone();
        if arg("TenDangNhap") != config.username || arg("MatKhau") != config.password {
            return fault("Client", "XT01", "Sai tên đăng nhập hoặc mật khẩu");
        }
        let token = crate::telemetry::new_uuid().simple().to_string();
        state.tokens.lock().insert(token.clone(), Instant::now() + config.token_ttl);
        state.logins.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return soap(
            200,
            &json!({"dv:DangNhapResponse": {"@xmlns:dv": NS, "MaTruyCap": token, "ThoiHanGiay": config.token_ttl.as_secs().to_string()}}),
        );
    }
    if !state.authorised(&req) {
        return HttpResponse::Unauthorized()
            .content_type("text/plain; charset=utf-8")
            .body("Mã truy cập không hợp lệ hoặc đã hết hạn");
    }
    match operation.as_str() {
        "TraCuuDoanhNghiep" => {
            let code = arg("MaSoDoanhNghiep");
            match state.by_code.get(&code).map(|&i| &state.businesses[i]) {
                Some(b) => {
                    let mut found = state.business_xml(b);
                    if let super::Outcome::Corrupt = outcome {
                        found["MaSoDoanhNghiep"] = json!("KHONG-RO");
                    }
                    soap(200, &json!({"dv:TraCuuDoanhNghiepResponse": {"@xmlns:dv": NS, "KetQua": found}}))
                }
                None => fault("Client", "DN404", "Không tìm thấy doanh nghiệp"),
            }
        }
        "TraCuuTheoCaNhan" => {
            let id = arg("SoDinhDanh");
            if crate::domain::CitizenId::parse(&id).is_err() {
                return fault("Client", "CN400", "Số định danh cá nhân không hợp lệ");
            }
            let held = state.held_by(&id);
            if held.is_empty() {
                return fault(
                    "Client",
                    "DN404",
                    "Cá nhân không là chủ hộ kinh doanh hay người đại diện doanh nghiệp nào",
                );
            }
            let mut households: Vec<Value> =
                held.iter().filter(|b| !b.enterprise).map(|b| state.business_xml(b)).collect();
            if let (super::Outcome::Corrupt, Some(first)) = (&outcome, households.first_mut()) {
                // Breaks the registry's own schema: a code that is not ten digits, a date as the year alone.
                first["MaSoHoKinhDoanh"] = json!("HKD-KHONG-RO");
                first["NgayDangKyLanDau"] = json!("2019");
            }
            let enterprises: Vec<Value> = held.iter().filter(|b| b.enterprise).map(|b| state.business_xml(b)).collect();
            let mut result = json!({"@xmlns:dv": NS});
            if !households.is_empty() {
                result["HoKinhDoanh"] = json!(households);
            }
            if !enterprises.is_empty() {
                result["DoanhNghiep"] = json!(enterprises);
            }
            soap(200, &json!({"dv:TraCuuTheoCaNhanResponse": result}))
        }
        other => fault("Client", "TT404", &format!("Không có thao tác {other}")),
    }
}

/// The running mock business registry.
pub struct BusinessRegistry {
    pub state: web::Data<BusinessState>,
    pub port: u16,
    pub host: String,
    handle: ServerHandle,
}

impl BusinessRegistry {
    pub fn start(
        population: Arc<Population>,
        config: BusinessConfig,
        host: &str,
        port: u16,
    ) -> std::io::Result<BusinessRegistry> {
        let state = web::Data::new(BusinessState::new(population, config));
        let listener = TcpListener::bind((host, port)).map_err(|e| {
            std::io::Error::new(e.kind(), format!("the mock business registry cannot listen on {host}:{port}: {e}"))
        })?;
        let port = listener.local_addr()?.port();
        let app_state = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .app_data(web::PayloadConfig::default().limit(64 * 1024))
                .route("/dkkd/ws", web::post().to(serve))
                .route("/__faults", web::route().to(faults))
        })
        .workers(1)
        .shutdown_timeout(1)
        .disable_signals()
        .listen(listener)?
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(BusinessRegistry { state, port, host: host.to_string(), handle })
    }

    pub fn url(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }

    pub async fn stop(self) {
        self.handle.stop(true).await;
    }
}
