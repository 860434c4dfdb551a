//! Linked dossiers (Decree 63/2024): a portal files one declaration and lgsp
//! carries it through the registries that write, over HTTP, durably.

use crate::helpers::{assert_problem, everything, spawn_app, TestApp};
use lgsp::registries::ledger::Decision;
use lgsp::registries::population::{Marital, Population};
use lgsp::registries::{Faults, RegistryKind};
use serde_json::{json, Value};
use std::time::Duration;

/// A married mother of working age, alive, in a household; and her household's head.
pub fn a_mother(pop: &Population, nth: usize) -> (String, String, Option<String>) {
    let mut found = pop.people.iter().filter(|p| {
        p.sex == lgsp::domain::Sex::Female
            && p.marital == Marital::Married
            && p.spouse.is_some()
            && (22..40).contains(&p.age())
            && p.is_alive()
    });
    let mother = found.nth(nth).expect("a mother");
    let head = pop.get(pop.household_of(mother).head);
    let father = mother.spouse.map(|s| pop.get(s).id.to_string());
    (mother.id.to_string(), head.id.to_string(), father)
}

pub fn birth_declaration(mother: &str, head: &str, father: Option<&str>, given: &str) -> Value {
    let mut d = json!({
        "child": {"surname": "Nguyễn", "middle_name": "Minh", "given_name": given,
                  "date_of_birth": "2026-11-30", "sex": "male", "place_of_birth": "Bệnh viện Phụ sản Hà Nội"},
        "mother_id": mother,
        "household_head_id": head,
        "relationship": "mẹ",
    });
    if let Some(f) = father {
        d["father_id"] = json!(f);
    }
    d
}

impl TestApp {
    /// Files a dossier with `key` (the partner's) and `idempotency` (the filing's name).
    pub async fn file(&self, key: &str, idempotency: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/v1/linked-dossiers"))
            .bearer_auth(key)
            .header("Idempotency-Key", idempotency)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn dossier(&self, key: &str, code: &str) -> Value {
        let r = self.client.get(self.url(&format!("/v1/linked-dossiers/{code}"))).bearer_auth(key).send().await;
        let r = r.unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// The dossier once its state is one of `states`, within ten seconds.
    pub async fn dossier_when(&self, key: &str, code: &str, states: &[&str]) -> Value {
        for _ in 0..200 {
            let d = self.dossier(key, code).await;
            if states.iter().any(|s| d["state"] == *s) {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("dossier {code} never reached {states:?}: {:#}", self.dossier(key, code).await);
    }

    /// The applications a registry holds (what was written to it).
    pub async fn applications(&self, kind: RegistryKind) -> Vec<Value> {
        let token = &lgsp::registries::default_tokens()[RegistryKind::ALL.iter().position(|k| *k == kind).unwrap()];
        let header = match kind {
            RegistryKind::Population => ("Authorization", format!("Bearer {token}")),
            RegistryKind::CivilStatus => ("X-API-Key", token.clone()),
            RegistryKind::Insurance => ("X-BHXH-Token", token.clone()),
        };
        let url = format!("{}/__applications", self.mocks.url(kind));
        let r = self.client.get(url).header(header.0, header.1).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }
}

fn step<'a>(d: &'a Value, id: &str) -> &'a Value {
    d["steps"].as_array().unwrap().iter().find(|s| s["id"] == id).unwrap_or_else(|| panic!("no step {id} in {d:#}"))
}

#[tokio::test]
async fn a_birth_is_registered_then_the_residence_and_the_card_follow_each_written_once() {
    let app = spawn_app().await;
    let key = app.partner("000.00.15.H29", everything(), 6000, 200).await;
    let (mother, head, father) = a_mother(&app.mocks.population, 0);
    let body = json!({
        "flow": "birth_residence_insurance",
        "requester_id": mother,
        "declaration": birth_declaration(&mother, &head, father.as_deref(), "An"),
    });
    let r = app.file(&key, "birth-0001", &body).await;
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let filed: Value = r.json().await.unwrap();
    let code = filed["code"].as_str().unwrap().to_string();
    assert_eq!(location, format!("/v1/linked-dossiers/{code}"));
    lgsp::domain::dossier_code::DossierCode::parse(&code).expect("a Decree 61 dossier code");
    assert!(code.starts_with("000.00.15.H29-"), "{code}");

    let d = app.dossier_when(&key, &code, &["done"]).await;
    let birth = step(&d, "birth_registration");
    assert_eq!(birth["state"], "done");
    let child = birth["result"]["citizen_id"].as_str().expect("the child's new ID number").to_string();
    assert_eq!(birth["result"]["full_name"], "Nguyễn Minh An");
    assert!(birth["result"]["birth_registration"]["certificate_number"].is_string());
    assert_eq!(step(&d, "permanent_residence")["result"]["citizen_id"], child.as_str());
    let card = &step(&d, "health_insurance_card")["result"]["health_insurance_card"];
    assert!(card["number"].as_str().unwrap().starts_with("TE1"), "a child's card: {card}");
    for s in d["steps"].as_array().unwrap() {
        assert!(s["due_on"].is_string() && s["started_on"].is_string(), "{s}");
        assert!(s["reference"].is_string(), "the registry's own number: {s}");
    }
    // The timeline: received, the birth done, then the two it feeds.
    let events: Vec<(String, String)> = d["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["step"].as_str().unwrap_or("").to_string(), e["state"].as_str().unwrap().to_string()))
        .collect();
    let at = |s: &str, st: &str| {
        events.iter().position(|e| e.0 == s && e.1 == st).unwrap_or_else(|| panic!("{s} {st} in {events:?}"))
    };
    assert!(at("", "received") < at("birth_registration", "done"));
    assert!(at("birth_registration", "done") < at("permanent_residence", "ready"));
    assert!(at("birth_registration", "done") < at("health_insurance_card", "done"));
    assert!(at("permanent_residence", "done") < at("", "done"));

    // Each registry holds exactly one application of the dossier.
    for (kind, n) in [(RegistryKind::CivilStatus, 1), (RegistryKind::Population, 1), (RegistryKind::Insurance, 1)] {
        let apps = app.applications(kind).await;
        assert_eq!(apps.len(), n, "{kind:?}: {apps:#?}");
        assert!(apps[0]["key"].as_str().unwrap().starts_with(&code), "keyed by the dossier: {}", apps[0]["key"]);
    }

    // Results become data: the child exists in the registries and can be prefilled.
    let prefill = app.prefill(&key, "health_card_reissue", "health_card_reissue", &child).await;
    assert_eq!(prefill.status(), 200);
    let answer: Value = prefill.json().await.unwrap();
    let text = answer.to_string();
    assert!(text.contains("Nguyễn Minh An"), "the child's name from the registries: {answer:#}");

    // And they are kept as the province's records, for the child.
    let r = app.client.get(app.url(&format!("/v1/subjects/{child}/results"))).bearer_auth(&key).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let results: Vec<Value> = r.json().await.unwrap();
    let kinds: Vec<&str> = results.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    for k in ["birth_registration", "permanent_residence", "health_insurance_card"] {
        assert!(kinds.contains(&k), "{k} in {kinds:?}");
    }
    let birth_record = results.iter().find(|r| r["kind"] == "birth_registration").unwrap();
    assert_eq!(birth_record["number"], birth["result"]["birth_registration"]["certificate_number"]);
    assert_eq!(birth_record["dossier"], code.as_str());

    // Every registry call is an audited exchange for the partner, about the citizen.
    let steps = app.audit("action=dossier_step&limit=50").await;
    let items = steps["items"].as_array().unwrap();
    assert!(items.len() >= 3, "{steps:#}");
    assert!(items.iter().all(|r| r["partner_id"] == "000.00.15.H29"));
    let log = app.access_log(&key, &mother).await;
    assert!(log.to_string().contains("linked_dossier"), "the mother's access log shows the dossier: {log:#}");
}

#[tokio::test]
async fn a_repeated_filing_files_nothing_new_and_another_body_under_the_same_key_is_refused() {
    let app = spawn_app().await;
    let key = app.partner("000.00.15.H29", everything(), 6000, 200).await;
    let (mother, head, father) = a_mother(&app.mocks.population, 1);
    let body = json!({
        "flow": "birth_residence_insurance",
        "requester_id": mother,
        "declaration": birth_declaration(&mother, &head, father.as_deref(), "Bình"),
        "procedures": ["birth_registration", "health_insurance_card"],
    });
    let first: Value = app.file(&key, "same-key", &body).await.json().await.unwrap();
    let again = app.file(&key, "same-key", &body).await;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["code"], first["code"]);
    assert_eq!(again["replayed"], true);
    let mut other = body.clone();
    other["declaration"]["child"]["given_name"] = json!("Cường");
    let r = app.file(&key, "same-key", &other).await;
    let p = assert_problem(r, 409, "idempotency_key_reused").await;
    assert!(p["detail"].as_str().unwrap().contains(first["code"].as_str().unwrap()), "{p}");

    let code = first["code"].as_str().unwrap();
    let d = app.dossier_when(&key, code, &["done"]).await;
    assert_eq!(d["steps"].as_array().unwrap().len(), 2, "only the procedures chosen: {d:#}");
    assert_eq!(app.applications(RegistryKind::CivilStatus).await.len(), 1);
    assert_eq!(app.applications(RegistryKind::Population).await.len(), 0, "residence was not chosen");
}

#[tokio::test]
async fn bad_declarations_and_choices_are_refused_and_nothing_is_stored() {
    let app = spawn_app().await;
    let key = app.partner("000.00.15.H29", everything(), 6000, 200).await;
    let (mother, head, _) = a_mother(&app.mocks.population, 2);
    let good = json!({
        "flow": "birth_residence_insurance",
        "requester_id": mother,
        "declaration": birth_declaration(&mother, &head, None, "Dũng"),
    });
    let mut broken = good.clone();
    broken["declaration"]["child"]["date_of_birth"] = json!("30/11/2026");
    let p = assert_problem(app.file(&key, "k1", &broken).await, 422, "invalid_declaration").await;
    assert_eq!(p["errors"][0]["pointer"], "/declaration/child/date_of_birth", "{p}");

    let mut too_few = good.clone();
    too_few["procedures"] = json!(["birth_registration"]);
    let p = assert_problem(app.file(&key, "k2", &too_few).await, 422, "invalid_declaration").await;
    assert!(p["detail"].as_str().unwrap().contains("at least 2"), "{p}");

    let mut without_birth = good.clone();
    without_birth["procedures"] = json!(["permanent_residence", "health_insurance_card"]);
    let p = assert_problem(app.file(&key, "k3", &without_birth).await, 422, "invalid_declaration").await;
    assert!(p["detail"].as_str().unwrap().contains("birth_registration"), "{p}");

    let mut unknown = good.clone();
    unknown["procedures"] = json!(["birth_registration", "land_title"]);
    assert_problem(app.file(&key, "k4", &unknown).await, 422, "invalid_declaration").await;

    let mut no_flow = good.clone();
    no_flow["flow"] = json!("marriage_and_more");
    assert_problem(app.file(&key, "k5", &no_flow).await, 422, "invalid_body").await;

    let mut elsewhere = good.clone();
    elsewhere["callback_url"] = json!("https://attacker.example.com/hook");
    assert_problem(app.file(&key, "k6", &elsewhere).await, 422, "invalid_callback").await;

    let r = app.client.post(app.url("/v1/linked-dossiers")).bearer_auth(&key).json(&good).send().await.unwrap();
    assert_problem(r, 400, "invalid_header").await;

    // A partner without the flow's purpose may not file it.
    let other = app
        .partner("000.00.16.H29", json!({"forms": ["*"], "purposes": ["residence_change"], "elements": ["*"]}), 600, 20)
        .await;
    assert_problem(app.file(&other, "k7", &good).await, 403, "forbidden").await;

    // Nothing was filed with any registry.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(app.applications(RegistryKind::CivilStatus).await.is_empty());
    // And a supplement for a dossier that waits for none is refused.
    let filed: Value = app.file(&key, "k8", &good).await.json().await.unwrap();
    let code = filed["code"].as_str().unwrap();
    app.dossier_when(&key, code, &["done"]).await;
    let r = app
        .client
        .post(app.url(&format!("/v1/linked-dossiers/{code}/supplement")))
        .bearer_auth(&key)
        .json(&json!({"documents": [{"name": "Giấy chứng sinh"}]}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 409, "not_awaiting_supplement").await;
    let r = app.client.get(app.url(&format!("/v1/linked-dossiers/{code}"))).bearer_auth(&other).send().await.unwrap();
    assert_problem(r, 404, "not_found").await;
}

#[tokio::test]
async fn a_supplement_requested_is_answered_and_the_group_goes_on() {
    let app = spawn_app().await;
    let key = app.partner("000.00.15.H29", everything(), 6000, 200).await;
    app.mocks.set_faults(RegistryKind::CivilStatus, Faults { decision: Decision::Supplement, ..Default::default() });
    let (mother, head, father) = a_mother(&app.mocks.population, 3);
    let body = json!({
        "flow": "birth_residence_insurance",
        "requester_id": mother,
        "declaration": birth_declaration(&mother, &head, father.as_deref(), "Giang"),
    });
    let filed: Value = app.file(&key, "sup-1", &body).await.json().await.unwrap();
    let code = filed["code"].as_str().unwrap();
    let d = app.dossier_when(&key, code, &["supplement"]).await;
    let birth = step(&d, "birth_registration");
    assert_eq!(birth["state"], "supplement");
    let deadline = birth["supplement_deadline"].as_str().expect("a deadline");
    assert!(deadline > d["received_on"].as_str().unwrap(), "{deadline}");
    assert_eq!(step(&d, "permanent_residence")["state"], "waiting");

    let r = app
        .client
        .post(app.url(&format!("/v1/linked-dossiers/{code}/supplement")))
        .bearer_auth(&key)
        .json(&json!({"documents": [{"name": "Giấy chứng sinh", "reference": "GCS-0113"}], "note": "bản sao"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let d = app.dossier_when(&key, code, &["done"]).await;
    let apps = app.applications(RegistryKind::CivilStatus).await;
    assert_eq!(apps.len(), 1, "{apps:#?}");
    assert_eq!(apps[0]["supplements"][0]["GiayTo"][0]["TenGiayTo"], "Giấy chứng sinh");
    let states: Vec<&str> = d["timeline"].as_array().unwrap().iter().map(|e| e["state"].as_str().unwrap()).collect();
    assert!(states.contains(&"supplement") && states.contains(&"supplement_received"), "{states:?}");
}

#[tokio::test]
async fn a_refused_birth_stops_the_group_and_a_refused_residence_does_not_undo_the_birth() {
    let app = spawn_app().await;
    let key = app.partner("000.00.15.H29", everything(), 6000, 200).await;
    let (mother, head, father) = a_mother(&app.mocks.population, 4);
    app.mocks.set_faults(RegistryKind::CivilStatus, Faults { decision: Decision::Refuse, ..Default::default() });
    let body = json!({
        "flow": "birth_residence_insurance",
        "requester_id": mother,
        "declaration": birth_declaration(&mother, &head, father.as_deref(), "Hà"),
    });
    let filed: Value = app.file(&key, "refuse-1", &body).await.json().await.unwrap();
    let d = app.dossier_when(&key, filed["code"].as_str().unwrap(), &["refused"]).await;
    assert_eq!(step(&d, "birth_registration")["state"], "refused");
    assert!(step(&d, "birth_registration")["reason"].is_string());
    assert_eq!(step(&d, "permanent_residence")["state"], "cancelled");
    assert_eq!(step(&d, "health_insurance_card")["state"], "cancelled");
    assert!(app.applications(RegistryKind::Population).await.is_empty());

    app.mocks.set_faults(RegistryKind::CivilStatus, Faults::default());
    app.mocks.set_faults(RegistryKind::Population, Faults { decision: Decision::Refuse, ..Default::default() });
    let (mother, head, father) = a_mother(&app.mocks.population, 5);
    let body = json!({
        "flow": "birth_residence_insurance",
        "requester_id": mother,
        "declaration": birth_declaration(&mother, &head, father.as_deref(), "Khoa"),
    });
    let filed: Value = app.file(&key, "refuse-2", &body).await.json().await.unwrap();
    let d = app.dossier_when(&key, filed["code"].as_str().unwrap(), &["partly_done"]).await;
    assert_eq!(step(&d, "birth_registration")["state"], "done");
    assert_eq!(step(&d, "permanent_residence")["state"], "refused");
    assert_eq!(step(&d, "health_insurance_card")["state"], "done");
}

#[tokio::test]
async fn a_registry_down_mid_flow_is_retried_until_it_is_back_and_written_once() {
    let app = spawn_app().await;
    let key = app.partner("000.00.15.H29", everything(), 6000, 200).await;
    app.mocks.set_faults(RegistryKind::Insurance, Faults { error_rate: 1.0, ..Default::default() });
    let (mother, head, father) = a_mother(&app.mocks.population, 6);
    let body = json!({
        "flow": "birth_residence_insurance",
        "requester_id": mother,
        "declaration": birth_declaration(&mother, &head, father.as_deref(), "Lan"),
    });
    let filed: Value = app.file(&key, "down-1", &body).await.json().await.unwrap();
    let code = filed["code"].as_str().unwrap();
    // The residence finishes; the card waits for its registry.
    let mut waited = 0;
    let d = loop {
        let d = app.dossier(&key, code).await;
        if step(&d, "permanent_residence")["state"] == "done"
            && step(&d, "health_insurance_card")["attempts"].as_i64() >= Some(2)
        {
            break d;
        }
        waited += 1;
        assert!(waited < 200, "{d:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(d["state"], "processing");
    assert_eq!(step(&d, "health_insurance_card")["state"], "ready");
    app.mocks.set_faults(RegistryKind::Insurance, Faults::default());
    app.dossier_when(&key, code, &["done"]).await;
    assert_eq!(app.applications(RegistryKind::Insurance).await.len(), 1);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(
            "lgsp_dossier_step_retries_total{flow=\"birth_residence_insurance\",step=\"health_insurance_card\"}"
        ),
        "{metrics}"
    );
}

/// An alive adult whose social-insurance history does (or does not) earn a
/// funeral allowance, and a relative in their household to declare the death.
fn a_deceased(pop: &Population, eligible: bool, nth: usize) -> (String, String) {
    let mut found = pop.people.iter().filter(|p| {
        let c = lgsp::registries::render::contributions(p);
        p.is_alive()
            && p.age() >= 30
            && (c.pension || c.months >= 12) == eligible
            && pop.household_of(p).members.iter().any(|&m| pop.get(m).id != p.id && pop.get(m).age() >= 18)
    });
    let p = found.nth(nth).expect("a person");
    let h = pop.household_of(p);
    let relative = h.members.iter().map(|&m| pop.get(m)).find(|m| m.id != p.id && m.age() >= 18).unwrap();
    (p.id.to_string(), relative.id.to_string())
}

fn death_body(deceased: &str, declarant: &str, procedures: Option<Value>) -> Value {
    let mut b = json!({
        "flow": "death_residence_allowance",
        "requester_id": declarant,
        "declaration": {"deceased_id": deceased, "date_of_death": "2026-11-28",
                        "place_of_death": "Bệnh viện Bạch Mai", "relationship": "con"},
    });
    if let Some(p) = procedures {
        b["procedures"] = p;
    }
    b
}

#[tokio::test]
async fn a_death_is_registered_the_residence_removed_and_the_allowance_decided_from_the_contributions() {
    let app = spawn_app().await;
    let key = app.partner("000.00.15.H29", everything(), 6000, 200).await;
    let (deceased, declarant) = a_deceased(&app.mocks.population, true, 0);
    let filed: Value = app.file(&key, "death-1", &death_body(&deceased, &declarant, None)).await.json().await.unwrap();
    let d = app.dossier_when(&key, filed["code"].as_str().unwrap(), &["done"]).await;
    assert_eq!(d["subject_id"], deceased.as_str());
    let cert = step(&d, "death_registration")["result"]["death_registration"]["certificate_number"].clone();
    assert!(cert.is_string(), "{d:#}");
    assert!(step(&d, "residence_removal")["result"]["residence_removal"]["removal_date"].is_string());
    let allowance = &step(&d, "funeral_allowance")["result"]["funeral_allowance"];
    assert_eq!(allowance["amount_vnd"], 23_400_000, "ten times the base salary: {allowance}");
    // The allowance was asked with the certificate the first step gave.
    let ins = app.applications(RegistryKind::Insurance).await;
    assert_eq!(ins[0]["request"]["soTrichLucKhaiTu"], cert);
    assert_eq!(ins[0]["request"]["soDinhDanhNguoiNhan"], declarant.as_str());

    // The person now reads as deceased, with no permanent residence.
    let r = app
        .exchange_for("death_residence_allowance", &key, "population", "citizen", json!({"citizen_id": deceased}))
        .await;
    assert_eq!(r.status(), 200);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["elements"]["deceased"], true, "{e:#}");
    assert_eq!(e["elements"]["date_of_death"], "2026-11-28");
    assert!(e["elements"].get("permanent_residence").is_none(), "{e:#}");
    let r = app
        .exchange_for("death_residence_allowance", &key, "civil_status", "death", json!({"citizen_id": deceased}))
        .await;
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["elements"]["death_registration"]["certificate_number"], cert, "{e:#}");

    // A second death registration of the same person is refused by the registry.
    let again: Value = app.file(&key, "death-2", &death_body(&deceased, &declarant, None)).await.json().await.unwrap();
    let d = app.dossier_when(&key, again["code"].as_str().unwrap(), &["refused"]).await;
    assert!(step(&d, "death_registration")["reason"].as_str().unwrap().contains("đã được đăng ký khai tử"), "{d:#}");
}

#[tokio::test]
async fn a_funeral_allowance_without_the_contributions_is_refused_with_the_reason_and_the_rest_stands() {
    let app = spawn_app().await;
    let key = app.partner("000.00.15.H29", everything(), 6000, 200).await;
    let (deceased, declarant) = a_deceased(&app.mocks.population, false, 0);
    let body = death_body(&deceased, &declarant, Some(json!(["death_registration", "funeral_allowance"])));
    let filed: Value = app.file(&key, "death-3", &body).await.json().await.unwrap();
    let d = app.dossier_when(&key, filed["code"].as_str().unwrap(), &["partly_done"]).await;
    assert_eq!(step(&d, "death_registration")["state"], "done");
    let allowance = step(&d, "funeral_allowance");
    assert_eq!(allowance["state"], "refused");
    assert!(allowance["reason"].as_str().unwrap().contains("12 tháng"), "{allowance}");
    assert_eq!(d["steps"].as_array().unwrap().len(), 2);
    assert!(app.applications(RegistryKind::Population).await.is_empty(), "the removal was not chosen");
}

/// A partner's callback endpoint: refuses its first `fail` deliveries with
/// 500, then keeps (signature, body) of each one it accepts.
async fn callback_receiver(fail: usize) -> (String, std::sync::Arc<parking_lot::Mutex<Vec<(String, Value)>>>) {
    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    let got = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (g, s) = (got.clone(), seen.clone());
    let server = HttpServer::new(move || {
        let (g, s) = (g.clone(), s.clone());
        App::new().route(
            "/hook",
            web::post().to(move |req: HttpRequest, body: web::Bytes| {
                let (g, s) = (g.clone(), s.clone());
                async move {
                    if s.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < fail {
                        return HttpResponse::InternalServerError().finish();
                    }
                    let sig = req.headers().get("x-lgsp-signature").and_then(|v| v.to_str().ok()).unwrap_or("");
                    g.lock().push((sig.to_string(), serde_json::from_slice(&body).unwrap_or(Value::Null)));
                    HttpResponse::NoContent().finish()
                }
            }),
        )
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let port = server.addrs()[0].port();
    tokio::spawn(server.run());
    (format!("http://127.0.0.1:{port}/hook"), got)
}

#[tokio::test]
async fn the_callback_receives_every_change_in_order_signed_after_failing_twice() {
    let app = spawn_app().await;
    let key = app.partner("000.00.15.H29", everything(), 6000, 200).await;
    let (url, got) = callback_receiver(2).await;
    let (mother, head, father) = a_mother(&app.mocks.population, 7);
    let body = json!({
        "flow": "birth_residence_insurance",
        "requester_id": mother,
        "declaration": birth_declaration(&mother, &head, father.as_deref(), "Mai"),
        "callback_url": url,
    });
    let filed: Value = app.file(&key, "cb-1", &body).await.json().await.unwrap();
    let secret = filed["callback_secret"].as_str().expect("the signing key, shown once").to_string();
    let code = filed["code"].as_str().unwrap().to_string();
    app.dossier_when(&key, &code, &["done"]).await;
    // received, then each step's change (birth done, then residence and card done).
    let complete = crate::helpers::eventually(|| {
        let got = got.clone();
        async move { got.lock().iter().any(|(_, b)| b["state"] == "done") }
    })
    .await;
    let got = got.lock().clone();
    assert!(complete, "{got:#?}");
    let key_ = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    for (sig, body) in &got {
        let hex_sig = sig.strip_prefix("sha256=").expect("sha256=<hex>");
        let raw = serde_json::to_vec(body).unwrap();
        assert!(ring::hmac::verify(&key_, &raw, &hex::decode(hex_sig).unwrap()).is_ok(), "signed: {body}");
        assert_eq!(body["dossier"], code.as_str());
    }
    let events: Vec<(String, String)> = got
        .iter()
        .map(|(_, b)| {
            (
                b["step"].as_str().unwrap_or("").to_string(),
                b["step_state"].as_str().unwrap_or(b["event"].as_str().unwrap()).to_string(),
            )
        })
        .collect();
    assert_eq!(events[0], ("".into(), "received".into()), "{events:?}");
    assert_eq!(events[1], ("birth_registration".into(), "done".into()), "{events:?}");
    let rest: std::collections::BTreeSet<_> = events[2..].iter().cloned().collect();
    assert_eq!(
        rest,
        [("health_insurance_card".into(), "done".into()), ("permanent_residence".into(), "done".into())].into(),
        "each change once: {events:?}"
    );
    assert_eq!(got.last().unwrap().1["state"], "done");
    // Shown once: reading the dossier never shows the secret.
    assert!(!app.dossier(&key, &code).await.to_string().contains(&secret));
}

#[tokio::test]
async fn deadlines_count_working_days_skipping_weekends_holidays_and_configured_days_off() {
    use lgsp::domain::calendar::{today_in_vietnam, WorkingCalendar};
    let today = today_in_vietnam();
    // The next five days off, on top of the weekends and public holidays.
    let off: Vec<jiff::civil::Date> = (1..=5).map(|n| today.checked_add(jiff::Span::new().days(n)).unwrap()).collect();
    let cal = WorkingCalendar { extra_days_off: off.iter().copied().collect(), ..Default::default() };
    let app = crate::helpers::spawn_app_with(|s| s.dossiers.extra_days_off = off.clone()).await;
    let key = app.partner("000.00.15.H29", everything(), 6000, 200).await;
    app.mocks.set_faults(RegistryKind::CivilStatus, Faults { decision: Decision::Supplement, ..Default::default() });
    let (mother, head, father) = a_mother(&app.mocks.population, 8);
    let body = json!({
        "flow": "birth_residence_insurance",
        "requester_id": mother,
        "declaration": birth_declaration(&mother, &head, father.as_deref(), "Nam"),
    });
    let filed: Value = app.file(&key, "deadline-1", &body).await.json().await.unwrap();
    let d = app.dossier_when(&key, filed["code"].as_str().unwrap(), &["supplement"]).await;
    let due = |n: u32| cal.add_working_days(today, n).to_string();
    assert_eq!(d["received_on"], today.to_string());
    assert_eq!(d["due_on"], due(3), "three working days for the group: {d:#}");
    assert_eq!(step(&d, "birth_registration")["due_on"], due(1));
    let first_due: jiff::civil::Date = due(1).parse().unwrap();
    assert!(first_due > off[4], "a day off is never a working day: {first_due}");
    assert!(!matches!(first_due.weekday(), jiff::civil::Weekday::Saturday | jiff::civil::Weekday::Sunday));
    assert_eq!(d["overdue"], false);
}

#[tokio::test]
async fn two_nodes_work_one_queue_and_run_each_step_once() {
    let app = spawn_app().await;
    let key = app.partner("000.00.15.H29", everything(), 6000, 200).await;
    let other = app.second_node().await;
    let mut codes = Vec::new();
    for i in 0..10 {
        let (mother, head, father) = a_mother(&app.mocks.population, 30 + i);
        let body = json!({
            "flow": "birth_residence_insurance",
            "requester_id": mother,
            "declaration": birth_declaration(&mother, &head, father.as_deref(), "Quang"),
        });
        // Filed on either node; either node's worker may carry any step.
        let base = if i % 2 == 0 { app.base.clone() } else { other.clone() };
        let r = app
            .client
            .post(format!("{base}/v1/linked-dossiers"))
            .bearer_auth(&key)
            .header("Idempotency-Key", format!("two-{i}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let filed: Value = r.json().await.unwrap();
        codes.push(filed["code"].as_str().unwrap().to_string());
    }
    for code in &codes {
        app.dossier_when(&key, code, &["done"]).await;
    }
    let sequences: std::collections::BTreeSet<&str> = codes.iter().map(|c| c.rsplit('-').next().unwrap()).collect();
    assert_eq!(sequences.len(), codes.len(), "each dossier its own number of the day: {codes:?}");
    // Each step was sent once: one audited call per submission (the other
    // node's records are written by its own audit writer, a moment later).
    let count = |items: &Vec<Value>, op: &str| items.iter().filter(|r| r["resource"] == op).count();
    let ops = ["civil_status.register_birth", "population.register_residence", "insurance.issue_child_card"];
    let all_in = crate::helpers::eventually(|| async {
        let calls = app.audit("action=dossier_step&limit=500").await;
        let items = calls["items"].as_array().unwrap().clone();
        ops.iter().all(|op| count(&items, op) >= codes.len())
    })
    .await;
    assert!(all_in);
    let calls = app.audit("action=dossier_step&limit=500").await;
    let items = calls["items"].as_array().unwrap();
    for op in ops {
        assert_eq!(count(items, op), codes.len(), "{op} sent once per dossier");
    }
    for kind in RegistryKind::ALL {
        assert_eq!(app.applications(kind).await.len(), codes.len(), "{kind:?}");
    }
}

#[tokio::test]
async fn a_later_prefill_takes_what_no_registry_serves_from_the_kept_results() {
    let app = spawn_app().await;
    let key = app.partner("000.00.15.H29", everything(), 6000, 200).await;
    // A survivor-benefit form a steward publishes later: it asks for the
    // funeral allowance decision, which no registry serves to a look-up.
    let form = json!({
        "id": "survivor_benefit", "title": "Đề nghị hưởng chế độ tử tuất", "form_code": "TT-01",
        "procedure": {"code": "survivor_benefit", "name": "Giải quyết hưởng chế độ tử tuất"},
        "purposes": ["survivor_benefit"],
        "fields": [
            {"id": "deceased_name", "label_vi": "Họ tên người chết", "type": "text", "required": true,
             "bind": {"element": "full_name", "person": "subject"}},
            {"id": "funeral_decision", "label_vi": "Số quyết định trợ cấp mai táng", "type": "text", "required": true,
             "bind": {"element": "funeral_allowance", "person": "subject", "path": "/decision_number"}},
        ],
    });
    let r = app.admin(reqwest::Method::POST, "/admin/v1/forms", crate::helpers::STEWARD, Some(form)).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let (deceased, declarant) = a_deceased(&app.mocks.population, true, 1);

    let before: Value =
        app.prefill(&key, "survivor_benefit", "survivor_benefit", &deceased).await.json().await.unwrap();
    assert_eq!(crate::helpers::field(&before, "funeral_decision")["status"], "unavailable", "{before:#}");

    let filed: Value =
        app.file(&key, "death-kept", &death_body(&deceased, &declarant, None)).await.json().await.unwrap();
    let code = filed["code"].as_str().unwrap();
    let d = app.dossier_when(&key, code, &["done"]).await;
    let decision = step(&d, "funeral_allowance")["result"]["funeral_allowance"]["decision_number"].clone();

    let after: Value = app.prefill(&key, "survivor_benefit", "survivor_benefit", &deceased).await.json().await.unwrap();
    let f = crate::helpers::field(&after, "funeral_decision");
    assert_eq!(f["status"], "prefilled", "{after:#}");
    assert_eq!(f["value"], decision);
    assert_eq!(f["source"], format!("lgsp.results/{code}"));
}

#[tokio::test]
async fn an_overdue_step_shows_in_the_dossier_and_in_the_metrics() {
    use diesel::{ExpressionMethods, QueryDsl, RunQueryDsl};
    let app = spawn_app().await;
    let key = app.partner("000.00.15.H29", everything(), 6000, 200).await;
    app.mocks.set_faults(RegistryKind::CivilStatus, Faults { decision: Decision::Supplement, ..Default::default() });
    let (mother, head, father) = a_mother(&app.mocks.population, 9);
    let body = json!({
        "flow": "birth_residence_insurance",
        "requester_id": mother,
        "declaration": birth_declaration(&mother, &head, father.as_deref(), "Oanh"),
    });
    let filed: Value = app.file(&key, "late-1", &body).await.json().await.unwrap();
    let code = filed["code"].as_str().unwrap().to_string();
    let d = app.dossier_when(&key, &code, &["supplement"]).await;
    assert_eq!(d["overdue"], false);
    // The citizen never sent the documents: the deadline passed a week ago.
    let c = code.clone();
    app.state
        .db
        .run(move |conn| {
            use lgsp::db::schema::{dossier_steps, dossiers};
            diesel::update(dossier_steps::table.find((&c, "birth_registration")))
                .set(dossier_steps::due_on.eq("2026-01-02"))
                .execute(conn)?;
            diesel::update(dossiers::table.find(&c)).set(dossiers::due_on.eq("2026-01-05")).execute(conn)?;
            Ok(())
        })
        .await
        .unwrap();
    let d = app.dossier(&key, &code).await;
    assert_eq!(d["overdue"], true, "{d:#}");
    assert_eq!(step(&d, "birth_registration")["overdue"], true);
    assert_eq!(step(&d, "permanent_residence")["overdue"], false, "not started, so not late");
    let counted = crate::helpers::eventually(|| async {
        app.get("/metrics").await.text().await.unwrap().contains("lgsp_dossier_steps_overdue 1")
    })
    .await;
    assert!(counted, "{}", app.get("/metrics").await.text().await.unwrap());
}

#[tokio::test]
async fn a_withdrawn_dossier_files_nothing_more_and_what_a_registry_holds_runs_to_its_end() {
    let app = spawn_app().await;
    let key = app.partner("000.00.15.H29", everything(), 6000, 200).await;
    app.mocks.set_faults(RegistryKind::CivilStatus, Faults { processing_ms: 400, ..Default::default() });
    let (mother, head, father) = a_mother(&app.mocks.population, 10);
    let body = json!({
        "flow": "birth_residence_insurance",
        "requester_id": mother,
        "declaration": birth_declaration(&mother, &head, father.as_deref(), "Phương"),
    });
    let filed: Value = app.file(&key, "withdraw-1", &body).await.json().await.unwrap();
    let code = filed["code"].as_str().unwrap().to_string();
    // Wait until the civil-status registry holds the application.
    assert!(
        crate::helpers::eventually(|| async { !app.applications(RegistryKind::CivilStatus).await.is_empty() }).await
    );
    let url = app.url(&format!("/v1/linked-dossiers/{code}/withdraw"));
    let r = app.client.post(&url).bearer_auth(&key).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let w: Value = r.json().await.unwrap();
    assert_eq!(w["state"], "withdrawing");
    let d = app.dossier_when(&key, &code, &["withdrawn"]).await;
    assert_eq!(step(&d, "birth_registration")["state"], "done", "the registry had it: it ran to its end");
    assert_eq!(step(&d, "permanent_residence")["state"], "withdrawn");
    assert_eq!(step(&d, "health_insurance_card")["state"], "withdrawn");
    assert!(app.applications(RegistryKind::Population).await.is_empty());
    assert!(app.applications(RegistryKind::Insurance).await.is_empty());
    let again = app.client.post(&url).bearer_auth(&key).send().await.unwrap();
    assert_problem(again, 409, "dossier_closed").await;
}

#[tokio::test]
async fn stewards_register_flows_whose_steps_are_checked_against_the_adapters() {
    use crate::helpers::STEWARD;
    use reqwest::Method;
    let app = spawn_app().await;
    let r = app.admin(Method::GET, "/admin/v1/flows", STEWARD, None).await;
    let flows: Vec<Value> = r.json().await.unwrap();
    let ids: Vec<&str> = flows.iter().map(|f| f["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["birth_residence_insurance", "death_residence_allowance"]);

    let mut flow: Value = serde_json::from_str(lgsp::flow::SHIPPED[0].1).unwrap();
    flow["id"] = json!("birth_and_card");
    flow["steps"] = json!([flow["steps"][0].clone(), flow["steps"][2].clone()]);
    // A read operation is no submission; a step after one not declared before it.
    flow["steps"][0]["submit"] = json!("birth");
    flow["steps"][1]["after"] = json!(["permanent_residence"]);
    let r = app.admin(Method::POST, "/admin/v1/flows", STEWARD, Some(flow.clone())).await;
    let p = assert_problem(r, 422, "invalid_flow").await;
    let pointers: Vec<&str> = p["errors"].as_array().unwrap().iter().map(|e| e["pointer"].as_str().unwrap()).collect();
    assert_eq!(pointers, ["/steps/0/submit", "/steps/1/after/0"], "{p:#}");

    flow["steps"][0]["submit"] = json!("register_birth");
    flow["steps"][1]["after"] = json!(["birth_registration"]);
    let r = app.admin(Method::POST, "/admin/v1/flows", STEWARD, Some(flow.clone())).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    // Partners see it at once, and may file it.
    let key = app.partner("000.00.15.H29", everything(), 6000, 200).await;
    let r = app.client.get(app.url("/v1/flows")).bearer_auth(&key).send().await.unwrap();
    let listed: Vec<Value> = r.json().await.unwrap();
    assert!(listed.iter().any(|f| f["id"] == "birth_and_card" && f["steps"].as_array().unwrap().len() == 2));
    let (mother, head, father) = a_mother(&app.mocks.population, 11);
    let body = json!({"flow": "birth_and_card", "requester_id": mother,
                      "declaration": birth_declaration(&mother, &head, father.as_deref(), "Sơn")});
    let filed: Value = app.file(&key, "custom-1", &body).await.json().await.unwrap();
    app.dossier_when(&key, filed["code"].as_str().unwrap(), &["done"]).await;

    // Disabled: no new dossiers; versions are kept.
    let r =
        app.admin(Method::POST, "/admin/v1/flows/birth_and_card/state", STEWARD, Some(json!({"enabled": false}))).await;
    assert_eq!(r.status(), 204);
    assert_problem(app.file(&key, "custom-2", &body).await, 422, "invalid_body").await;
    let r = app.admin(Method::GET, "/admin/v1/flows/birth_and_card/versions", STEWARD, None).await;
    let versions: Vec<Value> = r.json().await.unwrap();
    assert_eq!(versions.len(), 1);
    // Writes are not exchanges: a partner cannot call a write operation directly.
    let r = app.exchange(&key, "civil_status", "register_birth", json!({})).await;
    assert_problem(r, 403, "forbidden").await;
}

#[tokio::test]
async fn the_demos_dossiers_are_carried_end_to_end() {
    // What `lgsp demo` files and prints, against this gateway.
    let app = spawn_app().await;
    let key = lgsp::demo::demo_partner(&app.state).await.unwrap().key;
    let pop = &app.mocks.population;
    for body in [lgsp::demo::birth_filing(pop, 0, "Thảo").unwrap(), lgsp::demo::death_filing(pop, 0).unwrap()] {
        let d = lgsp::demo::carry_dossier(&app.client, &app.base, &key, &body, Duration::from_secs(10)).await.unwrap();
        assert_eq!(d["state"], "done", "{d:#}");
        lgsp::demo::print_dossier(&d);
    }
}
