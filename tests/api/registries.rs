use lgsp::registries::{default_tokens, Faults, MockRegistries, RegistryKind};
use serde_json::{json, Value};

use crate::helpers::start_mocks;

struct Calls<'a> {
    mocks: &'a MockRegistries,
    client: reqwest::Client,
}

impl Calls<'_> {
    async fn population(&self, id: &str) -> reqwest::Response {
        self.client
            .get(format!("{}/api/v1/cong-dan/{id}", self.mocks.url(RegistryKind::Population)))
            .bearer_auth(&default_tokens()[0])
            .send()
            .await
            .unwrap()
    }
    async fn civil(&self, record: &str, id: &str) -> reqwest::Response {
        self.client
            .get(format!("{}/hotich/v2/{record}?soDinhDanh={id}", self.mocks.url(RegistryKind::CivilStatus)))
            .header("X-API-Key", &default_tokens()[1])
            .send()
            .await
            .unwrap()
    }
    async fn insurance(&self, id: &str) -> reqwest::Response {
        self.client
            .post(format!("{}/bhxh/api/v1/tra-cuu-the", self.mocks.url(RegistryKind::Insurance)))
            .header("X-BHXH-Token", &default_tokens()[2])
            .json(&json!({ "soDinhDanh": id }))
            .send()
            .await
            .unwrap()
    }
}

fn iso_from_dmy(s: &str) -> String {
    let p: Vec<&str> = s.split('/').collect();
    format!("{}-{}-{}", p[2], p[1], p[0])
}

#[tokio::test]
async fn each_registry_rejects_calls_without_its_own_credential() {
    let mocks = start_mocks(500);
    let id = mocks.population.people[0].id.to_string();
    let c = reqwest::Client::new();
    let pop = format!("{}/api/v1/cong-dan/{id}", mocks.url(RegistryKind::Population));
    let r = c.get(&pop).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["ma_loi"], "401");
    // Another registry's token does not open this one.
    let r = c.get(&pop).bearer_auth(&default_tokens()[1]).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let civil = format!("{}/hotich/v2/khaisinh?soDinhDanh={id}", mocks.url(RegistryKind::CivilStatus));
    let r = c.get(&civil).header("X-API-Key", "wrong").send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["ErrorCode"], "UNAUTHORIZED");
    let ins = format!("{}/bhxh/api/v1/tra-cuu-the", mocks.url(RegistryKind::Insurance));
    let r = c.post(&ins).json(&json!({"soDinhDanh": id})).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "E401");
}

#[tokio::test]
async fn records_agree_across_the_three_registries() {
    let mocks = start_mocks(3_000);
    let calls = Calls { mocks: &mocks, client: reqwest::Client::new() };
    let samples = mocks.population.samples(3);

    for id in &samples.child_under_6 {
        let pop: Value = calls.population(id).await.json().await.unwrap();
        let p = &pop["du_lieu"];
        assert_eq!(pop["ma_loi"], "00");
        let birth: Value = calls.civil("khaisinh", id).await.json().await.unwrap();
        let b = &birth["Data"];
        assert_eq!(
            format!("{} {} {}", b["Ho"].as_str().unwrap(), b["ChuDem"].as_str().unwrap(), b["Ten"].as_str().unwrap()),
            p["ho_ten"]
        );
        assert_eq!(b["NgaySinh"].as_str().unwrap(), iso_from_dmy(p["ngay_sinh"].as_str().unwrap()));
        // The birth record's parents are the population record's parents.
        assert_eq!(b["Cha"]["SoDinhDanh"], p["cha"]["so_dinh_danh"]);
        assert_eq!(b["Me"]["SoDinhDanh"], p["me"]["so_dinh_danh"]);
        assert_eq!(b["Me"]["HoTen"], p["me"]["ho_ten"]);
        let ins: Value = calls.insurance(id).await.json().await.unwrap();
        assert_eq!(ins["data"]["hoTen"], p["ho_ten"]);
        assert_eq!(ins["data"]["doiTuong"], "TE", "children under 6 hold a TE card");
        let card = ins["data"]["soTheBhyt"].as_str().unwrap();
        assert!(card.ends_with(ins["data"]["maSoBhxh"].as_str().unwrap()));
        assert_eq!(ins["data"]["maSoBhxh"].as_str().unwrap().len(), 10);
        // A parent's record lists the child in the household.
        let mother = p["me"]["so_dinh_danh"].as_str().unwrap();
        let hh: Value = calls
            .client
            .get(format!("{}/api/v1/cong-dan/{mother}/ho-gia-dinh", mocks.url(RegistryKind::Population)))
            .bearer_auth(&default_tokens()[0])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let members = hh["du_lieu"]["thanh_vien"].as_array().unwrap();
        assert!(members.iter().any(|m| m["so_dinh_danh"] == id.as_str()));
    }

    for id in &samples.married {
        let pop: Value = calls.population(id).await.json().await.unwrap();
        let spouse = pop["du_lieu"]["vo_chong"]["so_dinh_danh"].as_str().unwrap().to_string();
        let m: Value = calls.civil("kethon", id).await.json().await.unwrap();
        assert_eq!(m["Data"]["TinhTrangHonNhan"], "DA_KET_HON");
        assert_eq!(m["Data"]["VoChong"]["SoDinhDanh"], spouse.as_str());
        let back: Value = calls.population(&spouse).await.json().await.unwrap();
        assert_eq!(back["du_lieu"]["vo_chong"]["so_dinh_danh"], id.as_str());
    }

    for id in &samples.deceased {
        let pop: Value = calls.population(id).await.json().await.unwrap();
        let died = iso_from_dmy(pop["du_lieu"]["ngay_mat"].as_str().unwrap());
        let d: Value = calls.civil("khaitu", id).await.json().await.unwrap();
        assert_eq!(d["Data"]["NgayChet"], died.as_str());
        let ins: Value = calls.insurance(id).await.json().await.unwrap();
        assert_eq!(ins["data"]["trangThai"], "DUNG_THAM_GIA");
    }

    // The living have no death record; legacy addresses carry a district code.
    let alive = &samples.adult_with_household[0];
    assert_eq!(calls.civil("khaitu", alive).await.status(), 404);
    for id in &samples.legacy_address {
        let pop: Value = calls.population(id).await.json().await.unwrap();
        assert!(pop["du_lieu"]["thuong_tru"]["ma_huyen"].is_string(), "{}", pop["du_lieu"]["thuong_tru"]);
    }
}

#[tokio::test]
async fn unknown_and_malformed_ids_get_each_registrys_errors() {
    let mocks = start_mocks(300);
    let calls = Calls { mocks: &mocks, client: reqwest::Client::new() };
    let r = calls.population("001090000000").await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["ma_loi"], "404");
    let r = calls.civil("khaisinh", "12ab").await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["ErrorCode"], "THAM_SO_SAI");
    let r = calls.insurance("001090000000").await;
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "E404");
}

#[tokio::test]
async fn verify_answers_match_without_revealing_the_record() {
    let mocks = start_mocks(300);
    let p = &mocks.population.people[0];
    let url = format!("{}/api/v1/cong-dan/xac-thuc", mocks.url(RegistryKind::Population));
    let c = reqwest::Client::new();
    let dob = format!("{:02}/{:02}/{}", p.dob.day(), p.dob.month(), p.dob.year());
    let ask = |name: String| {
        c.post(&url).bearer_auth(&default_tokens()[0]).json(&json!({
            "so_dinh_danh": p.id.to_string(), "ho_ten": name, "ngay_sinh": dob
        }))
    };
    let yes: Value = ask(p.name.full()).send().await.unwrap().json().await.unwrap();
    assert_eq!(yes["du_lieu"]["khop"], true);
    assert!(yes["du_lieu"].get("thuong_tru").is_none());
    let no: Value = ask("Người Khác".into()).send().await.unwrap().json().await.unwrap();
    assert_eq!(no["du_lieu"]["khop"], false);
}

#[tokio::test]
async fn fault_injection_is_switchable_at_run_time() {
    let mocks = start_mocks(300);
    let calls = Calls { mocks: &mocks, client: reqwest::Client::new() };
    let id = mocks.population.people[0].id.to_string();
    let faults_url = format!("{}/__faults", mocks.url(RegistryKind::Population));

    // Errors, in the registry's own format.
    let r = calls
        .client
        .put(&faults_url)
        .bearer_auth(&default_tokens()[0])
        .json(&json!({"error_rate": 1.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = calls.population(&id).await;
    assert_eq!(r.status(), 500);
    assert_eq!(r.json::<Value>().await.unwrap()["ma_loi"], "500");
    // The other registries are unaffected.
    assert_eq!(calls.insurance(&id).await.status(), 200);

    // Responses that break the registry's own schema.
    mocks.set_faults(RegistryKind::Population, Faults { corrupt_rate: 1.0, ..Default::default() });
    let body: Value = calls.population(&id).await.json().await.unwrap();
    assert!(body["du_lieu"]["so_dinh_danh"].is_number());
    assert_eq!(body["du_lieu"]["ngay_sinh"], "1990-13-45");

    // Added latency: the answer arrives, no sooner than the latency.
    mocks.set_faults(RegistryKind::Population, Faults { latency_ms: 150, ..Default::default() });
    let started = std::time::Instant::now();
    assert_eq!(calls.population(&id).await.status(), 200);
    assert!(started.elapsed() >= std::time::Duration::from_millis(150));

    // Timeouts: the registry hangs past the caller's patience.
    mocks.set_faults(RegistryKind::Population, Faults { timeout_rate: 1.0, timeout_ms: 2_000, ..Default::default() });
    let r = calls
        .client
        .get(format!("{}/api/v1/cong-dan/{id}", mocks.url(RegistryKind::Population)))
        .bearer_auth(&default_tokens()[0])
        .timeout(std::time::Duration::from_millis(200))
        .send()
        .await;
    assert!(r.unwrap_err().is_timeout());

    // Reset, and refuse nonsense.
    let r = calls.client.delete(&faults_url).bearer_auth(&default_tokens()[0]).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(calls.population(&id).await.status(), 200);
    let r = calls
        .client
        .put(&faults_url)
        .bearer_auth(&default_tokens()[0])
        .json(&json!({"error_rate": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = calls.client.get(&faults_url).send().await.unwrap();
    assert_eq!(r.status(), 401, "the fault switch needs the registry's credential");
}

impl Calls<'_> {
    async fn register_birth(&self, key: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}/hotich/v2/dangky/khaisinh", self.mocks.url(RegistryKind::CivilStatus)))
            .header("X-API-Key", &default_tokens()[1])
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await
            .unwrap()
    }
    async fn application(&self, code: &str) -> Value {
        let r = self
            .client
            .get(format!("{}/hotich/v2/dangky/{code}", self.mocks.url(RegistryKind::CivilStatus)))
            .header("X-API-Key", &default_tokens()[1])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }
}

#[tokio::test]
async fn the_civil_status_registry_moves_a_birth_through_its_statuses_and_the_child_becomes_data() {
    let mocks = start_mocks(500);
    let calls = Calls { mocks: &mocks, client: reqwest::Client::new() };
    mocks.set_faults(RegistryKind::CivilStatus, Faults { processing_ms: 150, ..Default::default() });
    let mother = mocks
        .population
        .people
        .iter()
        .find(|p| p.sex == lgsp::domain::Sex::Female && (22..40).contains(&p.age()) && p.is_alive())
        .unwrap()
        .id
        .to_string();
    let body = json!({"Ho": "Lê", "ChuDem": "Thu", "Ten": "Hà", "NgaySinh": "2026-11-29", "GioiTinh": "Nữ",
                      "SoDinhDanhMe": mother, "NguoiYeuCau": {"SoDinhDanh": mother}});
    let r = calls.register_birth("k-1", &body).await;
    assert_eq!(r.status(), 200);
    let receipt: Value = r.json().await.unwrap();
    assert_eq!(receipt["Data"]["TrangThai"], 1, "waiting for receipt: {receipt}");
    let code = receipt["Data"]["MaHoSo"].as_str().unwrap().to_string();
    // The same key and request: the same application, nothing new.
    let again: Value = calls.register_birth("k-1", &body).await.json().await.unwrap();
    assert_eq!(again["Data"]["MaHoSo"], code.as_str());
    // The same key with another request: refused in the registry's own format.
    let mut other = body.clone();
    other["Ten"] = json!("Hương");
    let r = calls.register_birth("k-1", &other).await;
    assert_eq!(r.status(), 409);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["Status"], "ERROR");
    // No key: refused.
    let r = calls
        .client
        .post(format!("{}/hotich/v2/dangky/khaisinh", mocks.url(RegistryKind::CivilStatus)))
        .header("X-API-Key", &default_tokens()[1])
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    tokio::time::sleep(std::time::Duration::from_millis(170)).await;
    assert_eq!(calls.application(&code).await["Data"]["TrangThai"], 3, "eligible, being processed");
    tokio::time::sleep(std::time::Duration::from_millis(170)).await;
    let done = calls.application(&code).await;
    assert_eq!(done["Data"]["TrangThai"], 4, "{done}");
    let child = done["Data"]["KetQua"]["SoDinhDanh"].as_str().unwrap().to_string();
    assert!(lgsp::domain::CitizenId::parse(&child).is_ok());
    assert_eq!(mocks.ledger.applications().len(), 1, "one application for three submissions");

    // The child is now in the civil-status and population registries, not yet a resident.
    let birth: Value = calls.civil("khaisinh", &child).await.json().await.unwrap();
    assert_eq!(birth["Data"]["Ten"], "Hà");
    assert_eq!(birth["Data"]["SoDangKy"], done["Data"]["KetQua"]["SoDangKy"]);
    let person: Value = calls.population(&child).await.json().await.unwrap();
    assert_eq!(person["du_lieu"]["ho_ten"], "Lê Thu Hà");
    assert_eq!(person["du_lieu"]["thuong_tru"], Value::Null);
    assert_eq!(calls.insurance(&child).await.status(), 404, "no card yet");
}

#[tokio::test]
async fn the_national_portal_takes_dossiers_and_steps_in_its_own_conventions_and_can_drop_steps() {
    let mocks = start_mocks(200);
    let client = reqwest::Client::new();
    let base = format!("{}/dvcqg/api", mocks.portal.url());
    let r = client
        .post(format!("{base}/dang-nhap"))
        .json(&json!({"TenDangNhap": "lgsp", "MatKhau": "wrong"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let login: Value = client
        .post(format!("{base}/dang-nhap"))
        .json(&json!({"TenDangNhap": "lgsp", "MatKhau": "portal-dev-password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let session = login["PhienLamViec"].as_str().unwrap().to_string();
    let post = |path: &str, body: Value| {
        client.post(format!("{base}/{path}")).header("PhienLamViec", &session).json(&body).send()
    };
    let record = json!({"MaHoSo": "000.00.15.H29-261205-0001", "MaTTHC": "1.001193", "MaCoQuan": "000.00.15.H29",
                        "LoaiDoiTuong": 1, "MaDoiTuong": "001090001234", "KenhThucHien": 2,
                        "NgayTiepNhan": "20261205083000", "NgayHenTra": "20261208170000", "TrangThaiHoSo": 2});
    let mut bad = record.clone();
    bad["MaHoSo"] = json!("HS-1");
    let mut late = record.clone();
    late["MaHoSo"] = json!("000.00.15.H29-261205-0002");
    late["NgayTiepNhan"] = json!("05/12/2026");
    let r: Value =
        post("dong-bo-ho-so", json!({"DanhSachHoSo": [record, bad, late]})).await.unwrap().json().await.unwrap();
    let codes: Vec<&str> = r["KetQua"].as_array().unwrap().iter().map(|k| k["MaLoi"].as_str().unwrap()).collect();
    assert_eq!(codes, ["0", "HS01", "HS03"], "each record answered on its own: {r}");

    let step = |n: i64, status: i64| {
        json!({"ThuTu": n, "NguoiXuLy": "Cán bộ một cửa", "ThoiDiemXuLy": "20261205090000", "TrangThai": status,
               "NoiDungXuLy": "Tiếp nhận", "NgayBatDau": "20261205083000", "NgayKetThucTheoQuyDinh": "20261208170000"})
    };
    let code = "000.00.15.H29-261205-0001";
    let r: Value = post("cap-nhat-tien-do", json!({"MaHoSo": code, "QuaTrinhXuLy": [step(1, 2), step(2, 4)]}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["MaLoi"], "0");
    // The same step again is kept once.
    post("cap-nhat-tien-do", json!({"MaHoSo": code, "QuaTrinhXuLy": [step(2, 4)]})).await.unwrap();
    let held: Value = client
        .get(format!("{base}/tra-cuu-ho-so?MaHoSo={code}"))
        .header("PhienLamViec", &session)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(held["QuaTrinhXuLy"].as_array().unwrap().len(), 2);
    assert_eq!(held["HoSo"]["TrangThaiHoSo"], 2);

    // Dropping steps: acknowledged, not kept.
    mocks.portal.state.faults.write().drop_steps = true;
    let r: Value = post("cap-nhat-tien-do", json!({"MaHoSo": code, "QuaTrinhXuLy": [step(3, 9)]}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["MaLoi"], "0");
    assert_eq!(mocks.portal.state.records.lock()[code].steps.len(), 2);
    // A step for a dossier never synced, and a session it never gave.
    let r: Value =
        post("cap-nhat-tien-do", json!({"MaHoSo": "000.00.15.H29-261205-0099", "QuaTrinhXuLy": [step(1, 2)]}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(r["MaLoi"], "TD04");
    let r = client
        .post(format!("{base}/dong-bo-ho-so"))
        .header("PhienLamViec", "nope")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
