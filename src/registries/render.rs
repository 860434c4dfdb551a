//! Rendering one person into each registry's own format.

use super::names;
use super::population::{Marital, Person, Population, Relation, REFERENCE_DATE};
use crate::domain::{AdminUnits, Sex};
use jiff::civil::Date;
use serde_json::{json, Value};

/// `dd/mm/yyyy`, the population registry's date format.
pub fn dmy(d: Date) -> String {
    format!("{:02}/{:02}/{:04}", d.day(), d.month(), d.year())
}

/// `yyyyMMdd`, the insurance registry's.
pub fn compact(d: Date) -> String {
    format!("{:04}{:02}{:02}", d.year(), d.month(), d.day())
}

/// A stable pseudo-random number per (person, purpose), so that derived
/// fields (certificate numbers, insurance numbers) never change between calls.
fn derive(p: &Person, salt: u64) -> u64 {
    let mut x = p.id.as_u64() ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn sex_code(s: Sex) -> &'static str {
    match s {
        Sex::Male => "1",
        Sex::Female => "2",
    }
}

/// An address as the population registry writes it: legacy records carry
/// province/district/ward codes of the old three-level units; updated records
/// carry the 2025 codes and no district.
fn pop_address(unit: u16, street: Option<String>, legacy: bool) -> Value {
    let units = AdminUnits::get();
    let l = &units.legacy[unit as usize];
    if legacy {
        return json!({
            "ma_tinh": l.province_code, "ten_tinh": l.province_name,
            "ma_huyen": l.district_code, "ten_huyen": l.district_name,
            "ma_xa": if l.ward_code.is_empty() { Value::Null } else { json!(l.ward_code) },
            "ten_xa": if l.ward_name.is_empty() { Value::Null } else { json!(l.ward_name) },
            "chi_tiet": street,
        });
    }
    match units.from_legacy(&l.codes()) {
        Ok(n) => json!({
            "ma_tinh": n.province_code, "ten_tinh": n.province_name,
            "ma_huyen": null, "ten_huyen": null,
            "ma_xa": n.ward_code, "ten_xa": n.ward_name,
            "chi_tiet": street,
        }),
        Err(_) => pop_address(unit, street, true),
    }
}

fn place_text(unit: u16) -> String {
    let l = &AdminUnits::get().legacy[unit as usize];
    if l.ward_name.is_empty() {
        format!("{}, {}", l.district_name, l.province_name)
    } else {
        format!("{}, {}, {}", l.ward_name, l.district_name, l.province_name)
    }
}

fn person_ref(pop: &Population, idx: Option<u32>, ext: Option<super::population::NameOnly>) -> Value {
    match (idx, ext) {
        (Some(i), _) => {
            let r = pop.get(i);
            json!({ "so_dinh_danh": r.id.to_string(), "ho_ten": r.name.full(), "quoc_tich": "VN" })
        }
        (None, Some(e)) => json!({ "so_dinh_danh": null, "ho_ten": e.name.full(), "quoc_tich": "VN" }),
        (None, None) => Value::Null,
    }
}

fn relation_code(p: &Person) -> &'static str {
    match (p.relation, p.sex) {
        (Relation::Head, _) => "00",
        (Relation::Spouse, Sex::Female) => "01",
        (Relation::Spouse, Sex::Male) => "02",
        (Relation::Child, _) => "03",
        (Relation::Parent, Sex::Male) => "04",
        (Relation::Parent, Sex::Female) => "05",
    }
}

fn marital_code(m: Marital) -> &'static str {
    match m {
        Marital::Single => "1",
        Marital::Married => "2",
        Marital::Divorced => "3",
        Marital::Widowed => "4",
    }
}

/// The population database's record (Law on Identity 2023, art. 9).
pub fn population_record(pop: &Population, p: &Person) -> Value {
    let h = pop.household_of(p);
    let units = AdminUnits::get();
    let legacy = pop.has_legacy_address(p);
    let permanent = pop_address(h.unit, Some(h.street_line(units)), legacy);
    let current = match p.stale_unit {
        Some(u) => pop_address(u, Some(format!("Số {}", 1 + derive(p, 9) % 200)), true),
        None => permanent.clone(),
    };
    let temporary = p.temp_unit.map(|u| pop_address(u, Some(format!("Phòng {}", 100 + derive(p, 3) % 400)), legacy));
    let head = pop.get(h.head);
    let expiry = p.card_issued.map(|_| {
        let age_limits = [25i16, 40, 60];
        let age = p.age();
        match age_limits.iter().find(|&&a| a > age) {
            Some(&a) => dmy(jiff::civil::date(p.dob.year() + a, p.dob.month(), p.dob.day().min(28))),
            None => "Không thời hạn".to_string(),
        }
    });
    json!({
        "so_dinh_danh": p.id.to_string(),
        "ho_ten": p.name.full(),
        "ten_goi_khac": null,
        "ngay_sinh": dmy(p.dob),
        "gioi_tinh": sex_code(p.sex),
        "noi_dang_ky_khai_sinh": pop_address(p.birth_unit, None, true),
        "que_quan": pop_address(p.hometown_unit, None, true),
        "dan_toc": names::ETHNICITIES[p.ethnicity as usize].0,
        "ton_giao": names::RELIGIONS[p.religion as usize].0,
        "quoc_tich": "VN",
        "nhom_mau": if p.blood == 0 { Value::Null } else { json!(names::BLOOD_TYPES[p.blood as usize]) },
        "so_cmnd": p.old_id.map(|n| format!("{n:09}")),
        "ngay_cap": p.card_issued.map(dmy),
        "noi_cap": p.card_issued.map(|_| "Cục Cảnh sát quản lý hành chính về trật tự xã hội"),
        "ngay_het_han": expiry,
        "thuong_tru": permanent,
        "tam_tru": temporary,
        "noi_o_hien_tai": current,
        "tinh_trang_hon_nhan": marital_code(p.marital),
        "chu_ho": { "so_dinh_danh": head.id.to_string(), "ho_ten": head.name.full() },
        "quan_he_voi_chu_ho": relation_code(p),
        "cha": person_ref(pop, p.father, p.father_ext),
        "me": person_ref(pop, p.mother, p.mother_ext),
        "vo_chong": if p.marital == Marital::Married { person_ref(pop, p.spouse, None) } else { Value::Null },
        "so_dien_thoai": p.phone.map(|n| format!("0{n}")),
        "email": p.email.then(|| format!("{}{}@gmail.com", ascii_fold(p.name.given()), p.id.as_u64() % 10_000)),
        "ngay_mat": p.death.map(dmy),
        "ngay_cap_nhat": dmy(p.card_issued.unwrap_or(jiff::civil::date(2023, 7, 1))),
    })
}

/// The household the person belongs to: head, address and members.
pub fn population_household(pop: &Population, p: &Person) -> Value {
    let h = pop.household_of(p);
    let units = AdminUnits::get();
    let members: Vec<Value> = h
        .members
        .iter()
        .map(|&i| {
            let m = pop.get(i);
            json!({
                "so_dinh_danh": m.id.to_string(),
                "ho_ten": m.name.full(),
                "ngay_sinh": dmy(m.dob),
                "gioi_tinh": sex_code(m.sex),
                "quan_he_voi_chu_ho": relation_code(m),
                "ngay_mat": m.death.map(dmy),
            })
        })
        .collect();
    json!({
        "so_ho_khau": format!("HK{:010}", derive(pop.get(h.head), 11) % 10_000_000_000),
        "chu_ho": { "so_dinh_danh": pop.get(h.head).id.to_string(), "ho_ten": pop.get(h.head).name.full() },
        "dia_chi": pop_address(h.unit, Some(h.street_line(units)), pop.has_legacy_address(p)),
        "thanh_vien": members,
    })
}

fn ascii_fold(s: &str) -> String {
    let map = |c: char| -> char {
        let groups = [
            ("aàáảãạăằắẳẵặâầấẩẫậ", 'a'),
            ("eèéẻẽẹêềếểễệ", 'e'),
            ("iìíỉĩị", 'i'),
            ("oòóỏõọôồốổỗộơờớởỡợ", 'o'),
            ("uùúủũụưừứửữự", 'u'),
            ("yỳýỷỹỵ", 'y'),
            ("dđ", 'd'),
        ];
        let lc = c.to_lowercase().next().unwrap_or(c);
        groups.iter().find(|(set, _)| set.contains(lc)).map(|(_, r)| *r).unwrap_or(lc)
    };
    s.chars().map(map).filter(char::is_ascii_alphanumeric).collect()
}

fn ethnicity_name(p: &Person) -> &'static str {
    names::ETHNICITIES[p.ethnicity as usize].1
}

fn civil_parent(pop: &Population, idx: Option<u32>, ext: Option<super::population::NameOnly>) -> Value {
    match (idx, ext) {
        (Some(i), _) => {
            let r = pop.get(i);
            json!({
                "HoTen": r.name.full(), "NamSinh": r.dob.year(), "SoDinhDanh": r.id.to_string(),
                "DanToc": ethnicity_name(r), "QuocTich": "Việt Nam",
                "NoiCuTru": place_text(pop.household_of(r).unit),
            })
        }
        (None, Some(e)) => json!({
            "HoTen": e.name.full(), "NamSinh": e.birth_year, "SoDinhDanh": null,
            "DanToc": "Kinh", "QuocTich": "Việt Nam", "NoiCuTru": null,
        }),
        (None, None) => Value::Null,
    }
}

/// The birth record (giấy khai sinh), for births registered electronically
/// (from 1975 on; older births are not digitised).
pub fn birth_record(pop: &Population, p: &Person) -> Option<Value> {
    if p.dob.year() < 1975 {
        return None;
    }
    let reg = p.dob.checked_add(jiff::Span::new().days((5 + derive(p, 1) % 50) as i64)).ok()?.min(REFERENCE_DATE);
    let unit = &AdminUnits::get().legacy[p.birth_unit as usize];
    Some(json!({
        "SoDangKy": format!("{}/{}", 1 + derive(p, 2) % 900, reg.year()),
        "QuyenSo": format!("{:02}/{}", 1 + derive(p, 4) % 5, reg.year()),
        "NgayDangKy": reg.to_string(),
        "NoiDangKy": format!("UBND {}", if unit.ward_name.is_empty() { unit.district_name } else { unit.ward_name }),
        "MaDonViDangKy": unit.ward_code,
        "Ho": p.name.surname(),
        "ChuDem": p.name.middle(),
        "Ten": p.name.given(),
        "NgaySinh": p.dob.to_string(),
        "GioiTinh": match p.sex { Sex::Male => "Nam", Sex::Female => "Nữ" },
        "DanToc": ethnicity_name(p),
        "QuocTich": "Việt Nam",
        "NoiSinh": place_text(p.birth_unit),
        "QueQuan": place_text(p.hometown_unit),
        "SoDinhDanh": p.id.to_string(),
        "Cha": civil_parent(pop, p.father, p.father_ext),
        "Me": civil_parent(pop, p.mother, p.mother_ext),
    }))
}

/// Marital status, with the marriage record when married.
pub fn marriage_record(pop: &Population, p: &Person) -> Value {
    let status = match p.marital {
        Marital::Single => "CHUA_KET_HON",
        Marital::Married => "DA_KET_HON",
        Marital::Divorced => "LY_HON",
        Marital::Widowed => "GOA",
    };
    let spouse = p.spouse.filter(|_| p.marital == Marital::Married).map(|s| pop.get(s));
    let married_on = spouse.map(|s| {
        let younger = if s.dob > p.dob { s.dob } else { p.dob };
        let years = 20 + (derive(p, 5) % 8) as i16;
        jiff::civil::date(
            (younger.year() + years).min(2026),
            1 + (derive(p, 6) % 12) as i8,
            1 + (derive(p, 7) % 28) as i8,
        )
        .min(REFERENCE_DATE)
    });
    json!({
        "SoDinhDanh": p.id.to_string(),
        "TinhTrangHonNhan": status,
        "SoDangKy": married_on.map(|d| format!("{}/{}", 1 + derive(p, 8) % 300, d.year())),
        "NgayDangKy": married_on.map(|d| d.to_string()),
        "NoiDangKy": married_on.map(|_| format!("UBND {}", place_text(pop.household_of(p).unit))),
        "VoChong": spouse.map(|s| json!({ "HoTen": s.name.full(), "SoDinhDanh": s.id.to_string(), "NgaySinh": s.dob.to_string() })),
    })
}

/// The death record (trích lục khai tử), for the deceased.
pub fn death_record(pop: &Population, p: &Person) -> Option<Value> {
    let died = p.death?;
    let reg = died.checked_add(jiff::Span::new().days((1 + derive(p, 12) % 14) as i64)).ok()?.min(REFERENCE_DATE);
    Some(json!({
        "SoDinhDanh": p.id.to_string(),
        "HoTen": p.name.full(),
        "NgayChet": died.to_string(),
        "NoiChet": place_text(pop.household_of(p).unit),
        "SoDangKy": format!("{}/{}", 1 + derive(p, 13) % 500, reg.year()),
        "NgayDangKy": reg.to_string(),
        "NoiDangKy": format!("UBND {}", place_text(pop.household_of(p).unit)),
    }))
}

/// Social and health insurance: BHXH number, BHYT card, validity, facility.
pub fn insurance_record(pop: &Population, p: &Person) -> Value {
    let units = AdminUnits::get();
    let h = pop.household_of(p);
    let province: u64 = units.legacy[h.unit as usize].province_code.parse().unwrap_or(1);
    let bhxh = format!("{:02}{:08}", province, derive(p, 20) % 100_000_000);
    let age = p.age();
    let group = beneficiary_group(p);
    let level = match group {
        "TE" => 1,
        "HT" => 2,
        "DN" => 4,
        _ => 4,
    };
    let alive = p.is_alive();
    let year = REFERENCE_DATE.year();
    let (from, to) = if age < 6 {
        (
            p.dob,
            jiff::civil::date(p.dob.year() + 6, p.dob.month(), p.dob.day().min(28))
                .saturating_sub(jiff::Span::new().days(1)),
        )
    } else {
        (jiff::civil::date(year, 1, 1), jiff::civil::date(year, 12, 31))
    };
    let ward = &units.legacy[h.unit as usize];
    json!({
        "maSoBhxh": bhxh,
        "hoTen": p.name.full(),
        "ngaySinh": compact(p.dob),
        "gioiTinh": if p.sex == Sex::Male { 1 } else { 0 },
        "soDinhDanh": p.id.to_string(),
        "soTheBhyt": format!("{group}{level}{province:02}{bhxh}"),
        "doiTuong": group,
        "giaTriTu": compact(from),
        "giaTriDen": compact(if alive { to } else { p.death.unwrap_or(to) }),
        "noiDkKcbBd": {
            "ma": format!("{:02}-{:03}", province, derive(p, 23) % 200),
            "ten": if ward.ward_name.is_empty() { format!("Trung tâm Y tế {}", ward.district_name) } else { format!("Trạm Y tế {}", ward.ward_name) },
        },
        "trangThai": if alive { "DANG_THAM_GIA" } else { "DUNG_THAM_GIA" },
    })
}

/// The insurance beneficiary group: TE children under 6, HS pupils, HT
/// pensioners, DN employees (compulsory social insurance), GD households.
fn beneficiary_group(p: &Person) -> &'static str {
    let age = p.age();
    if age < 6 {
        "TE"
    } else if age < 18 {
        "HS"
    } else if age >= 60 && derive(p, 21) % 3 == 0 {
        "HT"
    } else if derive(p, 22) % 2 == 0 {
        "DN"
    } else {
        "GD"
    }
}

/// A person's social-insurance history, as a funeral allowance is decided on.
pub struct Contributions {
    /// Drew a retirement pension.
    pub pension: bool,
    /// Months of compulsory social-insurance contributions.
    pub months: u32,
}

pub fn contributions(p: &Person) -> Contributions {
    match beneficiary_group(p) {
        "HT" => Contributions { pension: true, months: 240 + (derive(p, 24) % 180) as u32 },
        "DN" => Contributions { pension: false, months: (derive(p, 24) % 300) as u32 },
        _ => Contributions { pension: false, months: 0 },
    }
}

/// The province code (two digits, before 2025) where a person's birth was
/// registered: the first digits of an enterprise code registered there.
pub fn province_of(p: &Person) -> String {
    let l = &AdminUnits::get().legacy[p.birth_unit as usize];
    format!("{:0>2}", l.province_code)
}

/// A business's seat at its holder's household, as the business registry
/// writes an address: legacy units where the registry was never updated.
pub fn business_address(pop: &Population, p: &Person) -> Value {
    let h = pop.household_of(p);
    let a = pop_address(h.unit, Some(h.street_line(AdminUnits::get())), pop.has_legacy_address(p));
    json!({
        "SoNhaDuong": a["chi_tiet"],
        "MaXa": a["ma_xa"], "TenXa": a["ten_xa"],
        "MaHuyen": a["ma_huyen"], "TenHuyen": a["ten_huyen"],
        "MaTinh": a["ma_tinh"], "TenTinh": a["ten_tinh"],
    })
}
