//! The registries' write side: applications (hồ sơ) a registry receives,
//! moves through its statuses on its own, and decides; and what the decisions
//! change in the data the read side serves. One ledger is shared by the three
//! registries, as the national databases share the personal ID number: a
//! birth the civil-status registry registers is a person the population and
//! insurance registries know.
//!
//! Every application goes 1 (waiting for receipt) → 3 (eligible, being
//! processed) → 4 (done, with its result), each move after the registry's
//! `processing_ms`; or, as the registry's `decision` says, to 2 (a supplement
//! is needed, with a deadline of 7 working days) or 6 (refused, with the
//! reason). A supplement answered puts it back to 3.

use super::population::{Defect, Marital, Person, Population, Relation};
use super::RegistryKind;
use crate::domain::calendar::{today_in_vietnam, WorkingCalendar};
use crate::domain::{AdminUnits, CitizenId, Sex};
use jiff::civil::Date;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a registry decides on the applications it receives (set with its
/// faults, for tests and demonstrations).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    #[default]
    Approve,
    /// Ask for more documents first, then approve once they come.
    Supplement,
    Refuse,
}

/// The procedures the registries carry out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Procedure {
    /// Đăng ký khai sinh (civil status).
    Birth,
    /// Đăng ký khai tử (civil status).
    Death,
    /// Đăng ký thường trú (population).
    Residence,
    /// Xóa đăng ký thường trú (population).
    ResidenceRemoval,
    /// Cấp thẻ BHYT cho trẻ em dưới 6 tuổi (insurance).
    ChildCard,
    /// Trợ cấp mai táng (insurance).
    FuneralAllowance,
}

impl Procedure {
    pub fn registry(self) -> RegistryKind {
        match self {
            Procedure::Birth | Procedure::Death => RegistryKind::CivilStatus,
            Procedure::Residence | Procedure::ResidenceRemoval => RegistryKind::Population,
            Procedure::ChildCard | Procedure::FuneralAllowance => RegistryKind::Insurance,
        }
    }

    fn prefix(self) -> &'static str {
        match self.registry() {
            RegistryKind::CivilStatus => "HT",
            RegistryKind::Population => "CT",
            RegistryKind::Insurance => "BH",
        }
    }
}

/// One application, as the registry holds it.
#[derive(Debug, Clone, Serialize)]
pub struct Application {
    pub code: String,
    pub procedure: Procedure,
    /// The key the sender gave, and the request it came with.
    pub key: String,
    #[serde(skip)]
    fingerprint: String,
    pub request: Value,
    /// 1 waiting for receipt, 2 supplement needed, 3 processing, 4 done, 6 refused.
    pub status: u8,
    pub received: Date,
    pub supplement_deadline: Option<Date>,
    pub supplements: Vec<Value>,
    pub reason: Option<String>,
    pub result: Option<Value>,
    #[serde(skip)]
    decision: Decision,
    #[serde(skip)]
    delay: Duration,
    #[serde(skip)]
    next_at: Instant,
}

/// A child whose birth the civil-status registry registered.
#[derive(Debug, Clone)]
pub struct Newborn {
    /// Rendered as any person is, with the names below put in.
    pub person: Person,
    pub surname: String,
    pub middle: String,
    pub given: String,
    pub place_of_birth: String,
    pub registration: Value,
    /// Registered as a permanent resident of this household.
    pub household: Option<u32>,
    pub residence_registered: Option<Date>,
    /// The health-insurance card issued, in the insurance registry's format.
    pub card: Option<Value>,
}

impl Newborn {
    pub fn full_name(&self) -> String {
        [&self.surname, &self.middle, &self.given]
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A death the civil-status registry registered.
#[derive(Debug, Clone)]
pub struct Death {
    pub date: Date,
    pub place: String,
    pub registration: Value,
}

#[derive(Default)]
struct Inner {
    applications: BTreeMap<String, Application>,
    by_key: HashMap<(Procedure, String), String>,
    serial: u32,
    newborns: HashMap<CitizenId, Newborn>,
    deaths: HashMap<CitizenId, Death>,
    removed: HashMap<CitizenId, Date>,
}

/// Why a submission was not taken.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The same key came with a different request.
    KeyReused,
    /// A field is missing or wrong: the message says which.
    Invalid(String),
    NotFound,
}

pub struct Ledger {
    population: Arc<Population>,
    inner: Mutex<Inner>,
    /// Applications still moving on their own (at status 1 or 3).
    moving: AtomicUsize,
    calendar: WorkingCalendar,
}

/// The monthly base salary (mức lương cơ sở from 1 July 2024); a funeral
/// allowance is ten times it.
const BASE_SALARY: u64 = 2_340_000;

impl Ledger {
    pub fn new(population: Arc<Population>) -> Ledger {
        Ledger {
            population,
            inner: Mutex::default(),
            moving: AtomicUsize::new(0),
            calendar: WorkingCalendar::default(),
        }
    }

    /// Takes an application: a new one, or, for a key seen before with the
    /// same request, the one it made (a repeated request changes nothing).
    pub fn submit(
        &self,
        procedure: Procedure,
        key: &str,
        request: Value,
        decision: Decision,
        delay: Duration,
    ) -> Result<Application, Refusal> {
        let fingerprint = request.to_string();
        let mut inner = self.inner.lock();
        self.advance(&mut inner);
        if let Some(code) = inner.by_key.get(&(procedure, key.to_string())) {
            let app = &inner.applications[code];
            return if app.fingerprint == fingerprint { Ok(app.clone()) } else { Err(Refusal::KeyReused) };
        }
        self.check(&inner, procedure, &request)?;
        inner.serial += 1;
        let today = today_in_vietnam();
        let code = format!(
            "{}-{:02}{:02}{:02}-{:05}",
            procedure.prefix(),
            today.year() % 100,
            today.month(),
            today.day(),
            inner.serial
        );
        let app = Application {
            code: code.clone(),
            procedure,
            key: key.to_string(),
            fingerprint,
            request,
            status: 1,
            received: today,
            supplement_deadline: None,
            supplements: Vec::new(),
            reason: None,
            result: None,
            decision,
            delay,
            next_at: Instant::now() + delay,
        };
        inner.by_key.insert((procedure, key.to_string()), code.clone());
        inner.applications.insert(code.clone(), app);
        self.moving.fetch_add(1, Ordering::Relaxed);
        self.advance(&mut inner);
        Ok(inner.applications[&code].clone())
    }

    /// An application by its code, as it stands now.
    pub fn application(&self, registry: RegistryKind, code: &str) -> Option<Application> {
        let mut inner = self.inner.lock();
        self.advance(&mut inner);
        inner.applications.get(code).filter(|a| a.procedure.registry() == registry).cloned()
    }

    /// Answers a supplement request: the application goes back to processing.
    /// `Err(status)` when it is not waiting for one.
    pub fn supplement(&self, registry: RegistryKind, code: &str, documents: Value) -> Result<Application, Option<u8>> {
        let mut inner = self.inner.lock();
        self.advance(&mut inner);
        let app = inner.applications.get_mut(code).filter(|a| a.procedure.registry() == registry).ok_or(None)?;
        if app.status != 2 {
            return Err(Some(app.status));
        }
        app.supplements.push(documents);
        app.status = 3;
        app.supplement_deadline = None;
        app.next_at = Instant::now() + app.delay;
        self.moving.fetch_add(1, Ordering::Relaxed);
        self.advance(&mut inner);
        Ok(inner.applications[code].clone())
    }

    /// Every application, oldest first (the registry's own view, for tests).
    pub fn applications(&self) -> Vec<Application> {
        let mut inner = self.inner.lock();
        self.advance(&mut inner);
        let mut all: Vec<Application> = inner.applications.values().cloned().collect();
        all.sort_by(|a, b| a.code.rsplit('-').next().cmp(&b.code.rsplit('-').next()));
        all
    }

    /// Moves what is due; cheap when nothing is moving.
    pub fn tick(&self) {
        if self.moving.load(Ordering::Relaxed) > 0 {
            let mut inner = self.inner.lock();
            self.advance(&mut inner);
        }
    }

    fn advance(&self, inner: &mut Inner) {
        if self.moving.load(Ordering::Relaxed) == 0 {
            return;
        }
        let now = Instant::now();
        let due: Vec<String> = inner
            .applications
            .values()
            .filter(|a| matches!(a.status, 1 | 3) && a.next_at <= now)
            .map(|a| a.code.clone())
            .collect();
        for code in due {
            while let Some(app) = inner.applications.get(&code) {
                if app.next_at > now || !matches!(app.status, 1 | 3) {
                    break;
                }
                let (status, decision, supplemented) = (app.status, app.decision, !app.supplements.is_empty());
                let next = match (status, decision) {
                    (1, Decision::Supplement) if !supplemented => Step::Supplement,
                    (1, Decision::Refuse) => Step::Refuse("Hồ sơ không đủ điều kiện theo quy định".into()),
                    (1, _) => Step::Accept,
                    _ => match self.decide(inner, &code) {
                        Ok(result) => Step::Done(result),
                        Err(reason) => Step::Refuse(reason),
                    },
                };
                let Some(app) = inner.applications.get_mut(&code) else { break };
                match next {
                    Step::Accept => {
                        app.status = 3;
                        app.next_at += app.delay;
                        continue;
                    }
                    Step::Supplement => {
                        app.status = 2;
                        app.supplement_deadline = Some(self.calendar.add_working_days(today_in_vietnam(), 7));
                    }
                    Step::Refuse(reason) => {
                        app.status = 6;
                        app.reason = Some(reason);
                    }
                    Step::Done(result) => {
                        app.status = 4;
                        app.result = Some(result);
                    }
                }
                self.moving.fetch_sub(1, Ordering::Relaxed);
                break;
            }
        }
    }

    /// Checks a request before it is taken: the people it names exist.
    fn check(&self, inner: &Inner, procedure: Procedure, r: &Value) -> Result<(), Refusal> {
        let person = |field: &str| -> Result<(), Refusal> {
            let id = r[field].as_str().ok_or_else(|| Refusal::Invalid(format!("{field} is required")))?;
            let id = CitizenId::parse(id).map_err(|_| Refusal::Invalid(format!("{field} is not an ID number")))?;
            if self.population.index_of(id).is_some() || inner.newborns.contains_key(&id) {
                Ok(())
            } else {
                Err(Refusal::NotFound)
            }
        };
        match procedure {
            Procedure::Birth => {
                person("SoDinhDanhMe")?;
                for field in ["Ten", "NgaySinh", "GioiTinh"] {
                    if r[field].as_str().is_none_or(str::is_empty) {
                        return Err(Refusal::Invalid(format!("{field} is required")));
                    }
                }
                parse_date(&r["NgaySinh"]).ok_or_else(|| Refusal::Invalid("NgaySinh is not a date".into()))?;
                Ok(())
            }
            Procedure::Death => {
                person("SoDinhDanh")?;
                parse_date(&r["NgayChet"]).ok_or_else(|| Refusal::Invalid("NgayChet is not a date".into()))?;
                Ok(())
            }
            Procedure::Residence => {
                person("so_dinh_danh")?;
                person("so_dinh_danh_chu_ho")
            }
            Procedure::ResidenceRemoval => person("so_dinh_danh"),
            Procedure::ChildCard | Procedure::FuneralAllowance => person("soDinhDanh"),
        }
    }

    /// The registry's decision on a complete application, and its effect on
    /// the data: the result, or why it is refused.
    fn decide(&self, inner: &mut Inner, code: &str) -> Result<Value, String> {
        let app = inner.applications.get(code).cloned().ok_or("no such application")?;
        let r = &app.request;
        let today = today_in_vietnam();
        let id = |field: &str| r[field].as_str().and_then(|s| CitizenId::parse(s).ok());
        let registration = |serial: u32| {
            json!({
                "SoDangKy": format!("{}/{}", serial, today.year()),
                "QuyenSo": format!("{:02}/{}", 1 + serial / 200, today.year()),
                "Trang": 1 + serial % 200,
                "NgayDangKy": today.to_string(),
            })
        };
        match app.procedure {
            Procedure::Birth => {
                let mother_id = id("SoDinhDanhMe").ok_or("Thiếu số định danh của mẹ")?;
                let mother = self.population.find(&mother_id.to_string()).ok_or("Không tìm thấy mẹ")?.clone();
                let father = id("SoDinhDanhCha").and_then(|f| self.population.index_of(f));
                let dob = parse_date(&r["NgaySinh"]).ok_or("Ngày sinh không hợp lệ")?;
                let sex = if r["GioiTinh"] == "Nữ" { Sex::Female } else { Sex::Male };
                let unit = self.population.household_of(&mother).unit;
                let province: u16 = AdminUnits::get().legacy[unit as usize].province_code.parse().unwrap_or(1);
                let mut serial = inner.serial.wrapping_mul(2_654_435_761) % 1_000_000;
                let child_id = loop {
                    let candidate = CitizenId::from_parts(province, sex, dob.year(), serial);
                    if self.population.index_of(candidate).is_none() && !inner.newborns.contains_key(&candidate) {
                        break candidate;
                    }
                    serial = (serial + 7919) % 1_000_000;
                };
                inner.serial += 1;
                let mut reg = registration(inner.serial);
                let ward = &AdminUnits::get().legacy[unit as usize];
                reg["NoiDangKy"] = json!(format!(
                    "UBND {}",
                    if ward.ward_name.is_empty() { ward.district_name } else { ward.ward_name }
                ));
                reg["SoDinhDanh"] = json!(child_id.to_string());
                let text = |f: &str| r[f].as_str().unwrap_or("").trim().to_string();
                let person = Person {
                    id: child_id,
                    name: mother.name,
                    sex,
                    dob,
                    ethnicity: mother.ethnicity,
                    religion: 0,
                    birth_unit: unit,
                    hometown_unit: father.map(|f| self.population.get(f).hometown_unit).unwrap_or(mother.hometown_unit),
                    household: mother.household,
                    relation: Relation::Child,
                    father,
                    mother: self.population.index_of(mother_id),
                    spouse: None,
                    father_ext: None,
                    mother_ext: None,
                    marital: Marital::Single,
                    death: None,
                    phone: None,
                    email: false,
                    blood: 0,
                    old_id: None,
                    card_issued: None,
                    temp_unit: None,
                    defect: Defect::None,
                    stale_unit: None,
                };
                let newborn = Newborn {
                    person,
                    surname: text("Ho"),
                    middle: text("ChuDem"),
                    given: text("Ten"),
                    place_of_birth: text("NoiSinh"),
                    registration: reg.clone(),
                    household: None,
                    residence_registered: None,
                    card: None,
                };
                reg["HoTen"] = json!(newborn.full_name());
                inner.newborns.insert(child_id, newborn);
                Ok(reg)
            }
            Procedure::Death => {
                let who = id("SoDinhDanh").ok_or("Thiếu số định danh người chết")?;
                if inner.deaths.contains_key(&who)
                    || self.population.find(&who.to_string()).is_some_and(|p| !p.is_alive())
                {
                    return Err("Người này đã được đăng ký khai tử".into());
                }
                inner.serial += 1;
                let mut reg = registration(inner.serial);
                let place = r["NoiChet"].as_str().unwrap_or("").to_string();
                reg["NoiDangKy"] = json!("UBND cấp xã nơi cư trú cuối cùng");
                reg["SoDinhDanh"] = json!(who.to_string());
                let date = parse_date(&r["NgayChet"]).ok_or("Ngày chết không hợp lệ")?;
                inner.deaths.insert(who, Death { date, place, registration: reg.clone() });
                Ok(reg)
            }
            Procedure::Residence => {
                let who = id("so_dinh_danh").ok_or("Thiếu số định danh")?;
                let head = id("so_dinh_danh_chu_ho").ok_or("Thiếu số định danh chủ hộ")?;
                let head = self.population.find(&head.to_string()).ok_or("Không tìm thấy chủ hộ")?;
                let household = head.household;
                let Some(child) = inner.newborns.get_mut(&who) else {
                    return Err("Công dân đã có nơi thường trú; thủ tục này dành cho trẻ mới đăng ký khai sinh".into());
                };
                child.household = Some(household);
                child.person.household = household;
                child.residence_registered = Some(today);
                let h = &self.population.households[household as usize];
                let ward = &AdminUnits::get().legacy[h.unit as usize];
                Ok(json!({
                    "so_dinh_danh": who.to_string(),
                    "so_ho_khau": format!("HK{:010}", self.population.get(h.head).id.as_u64() % 10_000_000_000),
                    "ngay_dang_ky": super::render::dmy(today),
                    "dia_chi": format!("{}, {}, {}", h.street_line(AdminUnits::get()), ward.ward_name, ward.province_name),
                }))
            }
            Procedure::ResidenceRemoval => {
                let who = id("so_dinh_danh").ok_or("Thiếu số định danh")?;
                let dead = inner.deaths.contains_key(&who)
                    || self.population.find(&who.to_string()).is_some_and(|p| !p.is_alive());
                if !dead {
                    return Err("Chưa có thông tin đăng ký khai tử của công dân".into());
                }
                if inner.removed.contains_key(&who) {
                    return Err("Công dân đã được xóa đăng ký thường trú".into());
                }
                inner.removed.insert(who, today);
                Ok(json!({ "so_dinh_danh": who.to_string(), "ngay_xoa": super::render::dmy(today) }))
            }
            Procedure::ChildCard => {
                let who = id("soDinhDanh").ok_or("Thiếu số định danh")?;
                let Some(child) = inner.newborns.get(&who) else {
                    return Err("Không tìm thấy trẻ em trong CSDL quốc gia về dân cư".into());
                };
                if child.card.is_some() {
                    return Err("Trẻ em đã được cấp thẻ BHYT".into());
                }
                let mut card = super::render::insurance_record(&self.population, &child.person);
                card["hoTen"] = json!(child.full_name());
                card["trangThai"] = json!("DANG_THAM_GIA");
                if let Some(child) = inner.newborns.get_mut(&who) {
                    child.card = Some(card.clone());
                }
                Ok(card)
            }
            Procedure::FuneralAllowance => {
                let who = id("soDinhDanh").ok_or("Thiếu số định danh người chết")?;
                let person = self.population.find(&who.to_string()).ok_or("Không tìm thấy người tham gia")?;
                if !inner.deaths.contains_key(&who) && person.is_alive() {
                    return Err("Chưa có trích lục khai tử của người tham gia".into());
                }
                let history = super::render::contributions(person);
                if !history.pension && history.months < 12 {
                    return Err(format!(
                        "Người chết không hưởng lương hưu và mới đóng BHXH bắt buộc {} tháng (cần từ 12 tháng)",
                        history.months
                    ));
                }
                inner.serial += 1;
                Ok(json!({
                    "soQuyetDinh": format!("{}/QĐ-BHXH", inner.serial),
                    "ngayQuyetDinh": super::render::compact(today),
                    "soTien": 10 * BASE_SALARY,
                    "canCu": if history.pension { "DANG_HUONG_LUONG_HUU".to_string() } else { format!("DONG_BHXH_{}_THANG", history.months) },
                }))
            }
        }
    }

    /// A child born through the registry.
    pub fn newborn(&self, id: CitizenId) -> Option<Newborn> {
        if self.is_empty() {
            return None;
        }
        self.inner.lock().newborns.get(&id).cloned()
    }

    /// A registered death.
    pub fn death(&self, id: CitizenId) -> Option<Death> {
        if self.is_empty() {
            return None;
        }
        self.inner.lock().deaths.get(&id).cloned()
    }

    /// When a person's permanent residence was removed.
    pub fn removed(&self, id: CitizenId) -> Option<Date> {
        if self.is_empty() {
            return None;
        }
        self.inner.lock().removed.get(&id).copied()
    }

    /// Children registered as permanent residents of a household.
    pub fn born_into(&self, household: u32) -> Vec<Newborn> {
        if self.is_empty() {
            return Vec::new();
        }
        self.inner.lock().newborns.values().filter(|n| n.household == Some(household)).cloned().collect()
    }

    fn is_empty(&self) -> bool {
        self.tick();
        let inner = self.inner.lock();
        inner.newborns.is_empty() && inner.deaths.is_empty()
    }
}

enum Step {
    Accept,
    Supplement,
    Refuse(String),
    Done(Value),
}

/// A date as `yyyy-mm-dd`, `dd/mm/yyyy` or `yyyyMMdd`.
fn parse_date(v: &Value) -> Option<Date> {
    let s = v.as_str()?.trim();
    if let Ok(d) = s.parse::<Date>() {
        return Some(d);
    }
    if let Some((d, rest)) = s.split_once('/') {
        let (m, y) = rest.split_once('/')?;
        return Date::new(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?).ok();
    }
    if s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit()) {
        return Date::new(s[0..4].parse().ok()?, s[4..6].parse().ok()?, s[6..8].parse().ok()?).ok();
    }
    None
}
