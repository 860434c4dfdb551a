use crate::helpers::start_mocks;
use lgsp::adapter::client::{BreakerStatus, ExchangeError};
use lgsp::adapter::{normalise_address, Adapter, SHIPPED};
use lgsp::config::{Secret, Settings, UpstreamSettings};
use lgsp::registries::{default_tokens, Faults, MockRegistries, RegistryKind};
use lgsp::telemetry::Metrics;
use serde_json::{json, Value};

fn settings_for(mocks: &MockRegistries) -> Settings {
    let mut s = Settings::default();
    for (i, kind) in RegistryKind::ALL.into_iter().enumerate() {
        s.upstreams.insert(
            kind.name().to_string(),
            UpstreamSettings { url: mocks.url(kind), token: Secret::new(default_tokens()[i].clone()) },
        );
    }
    s
}

fn shipped(name: &str, settings: &Settings) -> Adapter {
    let text = SHIPPED.iter().find(|(n, _)| *n == name).unwrap().1;
    Adapter::compile(&serde_json::from_str(text).unwrap(), 1, settings, &lgsp::elements::Elements::shipped())
        .unwrap_or_else(|e| panic!("{name}: {e:?}"))
}

async fn call(a: &Adapter, op: &str, req: Value) -> Result<Value, ExchangeError> {
    call_for(a, op, req, &|_| true).await
}

/// An exchange that maps only the elements `wanted` accepts.
async fn call_for(
    a: &Adapter,
    op: &str,
    req: Value,
    wanted: &(dyn Fn(&str) -> bool + Sync),
) -> Result<Value, ExchangeError> {
    let http = reqwest::Client::new();
    a.exchange(&a.operations[op], &req, &http, &Metrics::new(), wanted, None).await.map(|m| m.elements)
}

#[tokio::test]
async fn shipped_adapters_map_registry_data_to_canonical_elements() {
    let mocks = start_mocks(3_000);
    let settings = settings_for(&mocks);
    let (pop, civil, ins) =
        (shipped("population", &settings), shipped("civil_status", &settings), shipped("insurance", &settings));
    let s = mocks.population.samples(2);
    for id in s.adult_with_household.iter().chain(&s.child_under_6).chain(&s.married) {
        let person = mocks.population.find(id).unwrap();
        let e = call(&pop, "citizen", json!({"citizen_id": id})).await.unwrap();
        assert_eq!(e["citizen_id"], id.as_str());
        assert_eq!(e["full_name"], person.name.full());
        assert_eq!(e["date_of_birth"], person.dob.to_string());
        assert_eq!(e["sex"], person.sex.as_str());
        let addr = &e["permanent_residence"];
        assert!(addr["ward_code"].as_str().unwrap().len() == 5 && addr["province_name"].is_string(), "{addr}");
        if mocks.population.has_legacy_address(person) {
            assert!(addr["legacy"]["district_code"].is_string(), "legacy codes are kept: {addr}");
        }
        let hh = call(&pop, "household", json!({"citizen_id": id})).await.unwrap();
        assert!(hh["household_members"].as_array().unwrap().iter().any(|m| m["citizen_id"] == id.as_str()));
        let card = call(&ins, "card", json!({"citizen_id": id})).await.unwrap();
        assert_eq!(card["social_insurance_number"].as_str().unwrap().len(), 10);
        let m = call(&civil, "marriage", json!({"citizen_id": id})).await.unwrap();
        assert_eq!(m["marital_status"], e["marital_status"], "the registries agree");
    }
    for id in &s.child_under_6 {
        let b = call(&civil, "birth", json!({"citizen_id": id})).await.unwrap();
        let p = call(&pop, "citizen", json!({"citizen_id": id})).await.unwrap();
        assert_eq!(b["full_name"], p["full_name"], "joined from Ho/ChuDem/Ten");
        assert_eq!(b["mother"]["citizen_id"], p["mother"]["citizen_id"]);
        let card = call(&ins, "card", json!({"citizen_id": id})).await.unwrap();
        assert_eq!(card["health_insurance_card"]["beneficiary_group"], "TE");
    }
    for id in &s.deceased {
        let d = call(&civil, "death", json!({"citizen_id": id})).await.unwrap();
        let p = call(&pop, "citizen", json!({"citizen_id": id})).await.unwrap();
        assert_eq!(d["date_of_death"], p["date_of_death"]);
    }
    let alive = &s.adult_with_household[0];
    assert!(matches!(call(&civil, "death", json!({"citizen_id": alive})).await, Err(ExchangeError::NotFound)));
    let person = mocks.population.find(alive).unwrap();
    let v = call(
        &pop,
        "verify",
        json!({"citizen_id": alive, "full_name": person.name.full(), "date_of_birth": person.dob.to_string()}),
    )
    .await
    .unwrap();
    assert_eq!(v["identity_verified"], true);
}

#[tokio::test]
async fn each_checkpoint_catches_its_violation() {
    let mocks = start_mocks(500);
    let settings = settings_for(&mocks);
    let pop = shipped("population", &settings);
    let id = mocks.population.people[0].id.to_string();

    // 1. The partner's request.
    match call(&pop, "citizen", json!({"citizen_id": "12; DROP TABLE"})).await {
        Err(ExchangeError::InvalidRequest(errs)) => assert_eq!(errs[0].pointer, "/citizen_id"),
        other => panic!("{other:?}"),
    }
    // 2. The request sent upstream: a date the upstream format cannot carry.
    match call(&pop, "verify", json!({"citizen_id": id, "full_name": "A", "date_of_birth": "1990-1-5x"})).await {
        Err(ExchangeError::InvalidRequest(_)) => {}
        other => panic!("{other:?}"),
    }
    // 3. The registry's response.
    mocks.set_faults(RegistryKind::Population, Faults { corrupt_rate: 1.0, ..Default::default() });
    match call(&pop, "citizen", json!({"citizen_id": id})).await {
        Err(ExchangeError::InvalidResponse { point: "upstream_response", errors }) => {
            assert!(errors.iter().any(|e| e.pointer == "/du_lieu/so_dinh_danh"), "{errors:?}")
        }
        other => panic!("{other:?}"),
    }
    mocks.set_faults(RegistryKind::Population, Faults::default());
    // 4. lgsp's own answer: a mapping that produces a value its element forbids.
    let mut doc: Value = serde_json::from_str(SHIPPED[0].1).unwrap();
    doc["operations"]["citizen"]["mapping"] = json!(r#"{sex: "unknown"}"#);
    let broken = Adapter::compile(&doc, 2, &settings, &lgsp::elements::Elements::shipped()).unwrap();
    let metrics = Metrics::new();
    match broken
        .exchange(
            &broken.operations["citizen"],
            &json!({"citizen_id": id}),
            &reqwest::Client::new(),
            &metrics,
            &|_| true,
            None,
        )
        .await
    {
        Err(ExchangeError::InvalidResponse { point: "response", errors }) => assert_eq!(errors[0].pointer, "/sex"),
        other => panic!("{other:?}"),
    }
    assert!(metrics.render().contains(r#"lgsp_schema_violations_total{adapter="population",point="response"} 1"#));
}

#[tokio::test]
async fn per_element_mappings_run_only_the_wanted_programs() {
    let mocks = start_mocks(500);
    let settings = settings_for(&mocks);
    let pop = shipped("population", &settings);
    let id = mocks.population.samples(1).adult_with_household[0].clone();
    let person = mocks.population.find(&id).unwrap();
    let all = call(&pop, "citizen", json!({"citizen_id": id})).await.unwrap();
    let wanted = ["full_name", "sex", "permanent_residence"];
    let some = call_for(&pop, "citizen", json!({"citizen_id": id}), &|e| wanted.contains(&e)).await.unwrap();
    let keys: Vec<&str> = some.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 3, "{some}");
    for k in wanted {
        assert_eq!(some[k], all[k], "{k} is the same whether mapped alone or with the rest");
    }
    assert_eq!(some["sex"], person.sex.as_str(), "code tables are bound as $sex");

    // A program that would fail is not run unless its element is wanted.
    let mut doc: Value = serde_json::from_str(SHIPPED[0].1).unwrap();
    doc["operations"]["citizen"]["mapping"]["elements"]["phone"] = json!(r#"error("the phone program ran")"#);
    let a = Adapter::compile(&doc, 2, &settings, &lgsp::elements::Elements::shipped()).unwrap();
    let full_name_only = call_for(&a, "citizen", json!({"citizen_id": id}), &|e| e == "full_name").await.unwrap();
    assert_eq!(full_name_only, json!({"full_name": person.name.full()}));
    match call_for(&a, "citizen", json!({"citizen_id": id}), &|e| e == "phone").await {
        Err(ExchangeError::InvalidResponse { point: "response", errors }) => {
            assert!(errors[0].message.contains("phone") && errors[0].message.contains("the phone program ran"))
        }
        other => panic!("{other:?}"),
    }
    // Nothing wanted: the registry is still called and checked, and no program runs.
    assert_eq!(call_for(&a, "citizen", json!({"citizen_id": id}), &|_| false).await.unwrap(), json!({}));

    // Errors point at the program at fault.
    let refused = |edit: &dyn Fn(&mut Value)| {
        let mut doc: Value = serde_json::from_str(SHIPPED[0].1).unwrap();
        let m = &mut doc["operations"]["citizen"]["mapping"];
        m["elements"]["shoe_size"] = json!(".co_giay");
        m["elements"]["sex"] = json!("$sex[.gioi_tinh");
        m["elements"]["ethnicity"] = json!("$no_such_table[.dan_toc]");
        m["elements"].as_object_mut().unwrap().remove("phone");
        edit(m);
        Adapter::compile(&doc, 1, &settings, &lgsp::elements::Elements::shipped()).err().expect("refused")
    };
    // A table name that cannot be a jq variable is refused by the manifest's own schema.
    let errs = refused(&|m| m["tables"]["bad name"] = json!({}));
    assert!(errs.iter().any(|e| e.pointer.starts_with("/operations/citizen/mapping")), "{errs:?}");
    let errs = refused(&|m| m["root"] = json!(".du_lieu |"));
    let at = |p: &str| errs.iter().find(|e| e.pointer == p).map(|e| e.message.as_str());
    assert!(at("/operations/citizen/mapping/elements/shoe_size").is_some_and(|m| m.contains("not one of")), "{errs:?}");
    assert!(at("/operations/citizen/mapping/elements/sex").is_some_and(|m| m.contains("does not compile")), "{errs:?}");
    assert!(at("/operations/citizen/mapping/elements/ethnicity").is_some(), "{errs:?}");
    assert!(
        errs.iter().any(|e| e.pointer == "/operations/citizen/mapping/elements" && e.message.contains("\"phone\"")),
        "{errs:?}"
    );
    assert!(at("/operations/citizen/mapping").is_some_and(|m| m.starts_with("root:")), "{errs:?}");
}

#[tokio::test]
async fn refused_manifests_list_every_problem() {
    let settings = Settings::default();
    let mut doc: Value = serde_json::from_str(SHIPPED[0].1).unwrap();
    doc["upstream"]["base_url"] = json!("http://10.1.2.3:80");
    doc["operations"]["citizen"]["elements"] = json!(["full_name", "shoe_size"]);
    doc["operations"]["citizen"]["mapping"] = json!("{full_name: .ho_ten");
    doc["operations"]["household"]["response_schema"] = json!({"type": "no-such-type"});
    doc["operations"]["household"]["path"] = json!("/api/v1/cong-dan/{so}/ho-gia-dinh");
    let errs = Adapter::compile(&doc, 1, &settings, &lgsp::elements::Elements::shipped()).err().expect("refused");
    let pointers: Vec<&str> = errs.iter().map(|e| e.pointer.as_str()).collect();
    for p in [
        "/upstream/base_url",
        "/operations/citizen/elements/1",
        "/operations/citizen/mapping",
        "/operations/household/response_schema",
        "/operations/household/path",
    ] {
        assert!(pointers.contains(&p), "{p} missing from {errs:?}");
    }
    // Structural errors are caught by the manifest's own schema.
    let errs =
        Adapter::compile(&json!({"id": "X Y", "operations": {}}), 1, &settings, &lgsp::elements::Elements::shipped())
            .err()
            .unwrap();
    assert!(errs.iter().any(|e| e.pointer == "/id"), "{errs:?}");
    // An allow-listed host is accepted.
    let mut allowed = Settings { upstream_allow_list: vec!["registry.gov.vn".into()], ..Default::default() };
    let mut ok: Value = serde_json::from_str(SHIPPED[2].1).unwrap();
    ok["upstream"]["base_url"] = json!("https://registry.gov.vn/bhxh");
    assert!(Adapter::compile(&ok, 1, &allowed, &lgsp::elements::Elements::shipped()).is_ok());
    allowed.upstream_allow_list = vec!["other.gov.vn:443".into()];
    assert!(Adapter::compile(&ok, 1, &allowed, &lgsp::elements::Elements::shipped()).is_err());
    // The node's own URL for the credential replaces the manifest's, and a
    // refusal says that this is the URL refused, not the manifest's.
    allowed.upstream_allow_list = vec!["registry.gov.vn".into()];
    allowed.upstreams.insert(
        "insurance".into(),
        lgsp::config::UpstreamSettings { url: "https://elsewhere.example/bhxh".into(), token: Default::default() },
    );
    let errs = Adapter::compile(&ok, 1, &allowed, &lgsp::elements::Elements::shipped())
        .err()
        .expect("the configured host is not allowed");
    assert_eq!(errs[0].pointer, "/upstream/base_url");
    assert!(
        errs[0].message.contains("elsewhere.example") && errs[0].message.contains("upstreams.insurance.url"),
        "{errs:?}"
    );
}

#[tokio::test]
async fn the_breaker_opens_under_faults_and_recovers() {
    let mocks = start_mocks(300);
    let settings = settings_for(&mocks);
    let mut doc: Value = serde_json::from_str(SHIPPED[2].1).unwrap();
    doc["upstream"]["circuit_breaker"] = json!({"failure_threshold": 3, "open_ms": 200});
    doc["upstream"]["retries"] = json!(0);
    let ins = Adapter::compile(&doc, 1, &settings, &lgsp::elements::Elements::shipped()).unwrap();
    let id = mocks.population.people[0].id.to_string();
    mocks.set_faults(RegistryKind::Insurance, Faults { error_rate: 1.0, ..Default::default() });
    for _ in 0..3 {
        assert!(matches!(call(&ins, "card", json!({"citizen_id": id})).await, Err(ExchangeError::Unavailable(_))));
    }
    assert_eq!(ins.upstream.breaker.status(), BreakerStatus::Open);
    assert!(matches!(call(&ins, "card", json!({"citizen_id": id})).await, Err(ExchangeError::CircuitOpen(_))));
    mocks.set_faults(RegistryKind::Insurance, Faults::default());
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    assert!(call(&ins, "card", json!({"citizen_id": id})).await.is_ok(), "the half-open probe succeeds");
    assert_eq!(ins.upstream.breaker.status(), BreakerStatus::Closed);

    // Slow past the timeout: a timeout, not a hang.
    let mut doc2 = doc.clone();
    doc2["upstream"]["timeout_ms"] = json!(100);
    let slow = Adapter::compile(&doc2, 1, &settings, &lgsp::elements::Elements::shipped()).unwrap();
    mocks.set_faults(RegistryKind::Insurance, Faults { latency_ms: 400, ..Default::default() });
    assert!(matches!(call(&slow, "card", json!({"citizen_id": id})).await, Err(ExchangeError::Timeout)));
}

#[test]
fn crosswalk_cases_through_address_normalisation() {
    let merged = normalise_address(&json!({"scheme": "legacy", "province_code": "01", "district_code": "001", "ward_code": "00001", "street": "Số 1"})).unwrap();
    assert_eq!((merged["ward_code"].as_str(), merged["is_guess"].as_bool()), (Some("00097"), Some(false)));
    assert_eq!(merged["legacy"]["ward_name"], "Phường Phúc Xá");
    let split = normalise_address(
        &json!({"scheme": "legacy", "province_code": "01", "district_code": "001", "ward_code": "00007"}),
    )
    .unwrap();
    assert_eq!(split["is_guess"], true);
    assert!(!split["alternatives"].as_array().unwrap().is_empty());
    let unchanged = normalise_address(
        &json!({"scheme": "legacy", "province_code": "01", "district_code": "001", "ward_code": "00004"}),
    )
    .unwrap();
    assert_eq!(unchanged["ward_code"], "00004");
    let island =
        normalise_address(&json!({"scheme": "legacy", "province_code": "77", "district_code": "755", "ward_code": ""}))
            .unwrap();
    assert_eq!((island["province_code"].as_str(), island["ward_code"].as_str()), (Some("79"), Some("26732")));
    let current = normalise_address(&json!({"scheme": "2025", "province_code": "01", "ward_code": "00004"})).unwrap();
    assert!(current["legacy"].is_null());
    assert!(normalise_address(&json!({"scheme": "legacy", "ward_code": "99999"})).is_err());
}

/// A small SOAP 1.1 service, as an agency's system answers: an enterprise by
/// its code, a declared not-found fault, a server fault, and answers that
/// are not XML or nest too deep.
async fn soap_service() -> String {
    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    async fn answer(req: HttpRequest, body: String) -> HttpResponse {
        let action = req.headers().get("SOAPAction").and_then(|v| v.to_str().ok()).unwrap_or("");
        let content_type = req.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
        if action != "\"urn:dkkd#LayThongTin\"" || !content_type.starts_with("text/xml") {
            return HttpResponse::BadRequest().body("wrong action or content type");
        }
        let envelope = |inner: &str| {
            format!(
                "<?xml version=\"1.0\"?><s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body>{inner}</s:Body></s:Envelope>"
            )
        };
        let fault = |code: &str, own: &str| {
            envelope(&format!(
                "<s:Fault><faultcode>s:{code}</faultcode><faultstring>loi</faultstring><detail><MaLoi>{own}</MaLoi></detail></s:Fault>"
            ))
        };
        let code = body.split("<MaSoDoanhNghiep>").nth(1).and_then(|r| r.split('<').next()).unwrap_or("");
        match code {
            "0101234567" => HttpResponse::Ok().content_type("text/xml").body(envelope(
                "<d:LayThongTinResponse xmlns:d=\"urn:dkkd\"><DoanhNghiep TrangThai=\"1\"><TenDoanhNghiep>C&#212;NG TY TNHH AN B&#204;NH</TenDoanhNghiep>\
                 <NganhNghe><Ma>4711</Ma></NganhNghe></DoanhNghiep></d:LayThongTinResponse>",
            )),
            "0000000000" => HttpResponse::InternalServerError().content_type("text/xml").body(fault("Client", "DN404")),
            "9999999999" => HttpResponse::InternalServerError().content_type("text/xml").body(fault("Server", "DB01")),
            "8888888888" => HttpResponse::Ok().content_type("text/xml").body("{\"not\": \"xml\"}"),
            _ => HttpResponse::Ok().content_type("text/xml").body(envelope(&"<a>".repeat(100))),
        }
    }
    let server =
        HttpServer::new(|| App::new().route("/ws", web::post().to(answer))).workers(1).bind(("127.0.0.1", 0)).unwrap();
    let port = server.addrs()[0].port();
    tokio::spawn(server.run());
    format!("http://127.0.0.1:{port}")
}

#[tokio::test]
async fn a_soap_registry_is_called_with_an_envelope_and_read_back_as_json() {
    use lgsp::elements::{Class, Element, ElementDoc, Elements};
    let mut docs: Vec<Element> = Elements::shipped().all().cloned().collect();
    for (id, schema) in [
        ("enterprise_name", json!({"type": "string"})),
        ("business_lines", json!({"type": "array", "items": {"type": "string", "pattern": "^[0-9]{4}$"}})),
    ] {
        let doc = ElementDoc {
            id: id.into(),
            label_en: id.into(),
            label_vi: id.into(),
            class: Class::Basic,
            kind: None,
            shared: false,
            schema,
        };
        docs.push(Element { doc, version: 1 });
    }
    let elements = Elements::build(docs).unwrap();
    let manifest = json!({
        "id": "business_registry",
        "name": "Business registration (SOAP)",
        "upstream": {"base_url": soap_service().await, "credential": "business_registry",
                     "auth": {"header": "Authorization", "prefix": "Bearer "}, "retries": 0},
        "operations": {"enterprise": {
            "method": "POST", "path": "/ws", "format": "soap11", "soap_action": "urn:dkkd#LayThongTin",
            "body": "{\"tns:LayThongTin\": {\"@xmlns:tns\": \"urn:dkkd\", \"MaSoDoanhNghiep\": .enterprise_code}}",
            "upstream_request_schema": {"type": "object"},
            "not_found_faults": ["DN404"],
            "request_schema": {"type": "object", "required": ["enterprise_code"],
                               "properties": {"enterprise_code": {"type": "string", "pattern": "^[0-9]{10}$"}}},
            "response_schema": {"type": "object", "required": ["LayThongTinResponse"], "properties": {
                "LayThongTinResponse": {"type": "object", "required": ["DoanhNghiep"], "properties": {
                    "DoanhNghiep": {"type": "object", "properties": {"NganhNghe": {"type": "array"}}}}}}},
            "mapping": {"root": ".LayThongTinResponse.DoanhNghiep", "elements": {
                "enterprise_name": ".TenDoanhNghiep", "business_lines": "[.NganhNghe[].Ma]"}},
            "elements": ["enterprise_name", "business_lines"]
        }}
    });
    let a = Adapter::compile(&manifest, 1, &Settings::default(), &elements).unwrap();
    let got = call(&a, "enterprise", json!({"enterprise_code": "0101234567"})).await.unwrap();
    assert_eq!(
        got,
        json!({"enterprise_name": "CÔNG TY TNHH AN BÌNH", "business_lines": ["4711"]}),
        "one line is still a list: the schema says so"
    );
    let e = call(&a, "enterprise", json!({"enterprise_code": "0000000000"})).await.unwrap_err();
    assert!(matches!(e, ExchangeError::NotFound), "a declared fault is no record: {e:?}");
    let e = call(&a, "enterprise", json!({"enterprise_code": "9999999999"})).await.unwrap_err();
    let problem = lgsp::error::ApiError::from(e);
    assert_eq!(problem.code.as_str(), "upstream_fault");
    assert!(problem.detail.contains("Server") && problem.detail.contains("DB01"), "{}", problem.detail);
    for code in ["8888888888", "7777777777"] {
        let e = call(&a, "enterprise", json!({"enterprise_code": code})).await.unwrap_err();
        assert!(matches!(e, ExchangeError::InvalidResponse { .. }), "not XML, or too deep: {e:?}");
    }
    // A SOAP operation must be a POST with a body.
    let mut get = manifest.clone();
    get["operations"]["enterprise"]["method"] = json!("GET");
    let errors = Adapter::compile(&get, 1, &Settings::default(), &elements).err().unwrap();
    assert_eq!(errors[0].pointer, "/operations/enterprise/format");
}
