//! Prefill end to end: the shipped forms over the mock registries, relatives,
//! disagreeing sources, a registry down, fields outside the grant, and a form
//! registered at run time.

use crate::helpers::*;
use lgsp::registries::{Faults, RegistryKind};
use serde_json::{json, Value};

#[tokio::test]
async fn shipped_forms_prefill_typical_citizens_with_the_registries_data() {
    let p = spawn_app().await;
    let pop = &p.mocks.population;
    let s = pop.samples(2);
    let key = p.partner("000.00.27.H29", everything(), 60_000, 1_000).await;

    for id in &s.adult_with_household {
        let person = pop.find(id).unwrap();
        let a: Value = p.prefill(&key, "ct01", "residence_change", id).await.json().await.unwrap();
        assert_eq!(field(&a, "full_name")["value"], person.name.full());
        assert_eq!(field(&a, "full_name")["source"], "population.citizen");
        assert_eq!(field(&a, "full_name")["mode"], "authoritative");
        assert_eq!(field(&a, "citizen_id")["value"], id.as_str());
        assert_eq!(field(&a, "request_content")["status"], "declare");
        let head = pop.household_of(person);
        let head_person = head
            .members
            .iter()
            .map(|m| pop.get(*m))
            .find(|m| m.relation == lgsp::registries::population::Relation::Head)
            .unwrap();
        assert_eq!(field(&a, "household_head_name")["value"], head_person.name.full());
        let members = field(&a, "members_changing")["value"].as_array().unwrap().clone();
        assert!(members.len() <= head.members.len() && members.iter().any(|m| m["citizen_id"] == id.as_str()));
        let calls: Vec<&str> =
            a["sources"].as_array().unwrap().iter().map(|s| s["operation"].as_str().unwrap()).collect();
        assert_eq!(calls, ["population.citizen", "population.household"], "only what the form needs");
        assert!(a["coverage"]["cut"].as_f64().unwrap() >= 0.2);
    }
    for id in &s.parent_of_newborn {
        let parent = pop.find(id).unwrap();
        let a: Value = p.prefill(&key, "birth_registration", "birth_registration", id).await.json().await.unwrap();
        let (me, other) = if parent.sex.as_str() == "female" { ("mother", "father") } else { ("father", "mother") };
        assert_eq!(field(&a, &format!("{me}_name"))["value"], parent.name.full());
        // The form asks for the year of birth, and that is all that is released.
        let year: i64 = parent.dob.to_string()[..4].parse().unwrap();
        assert_eq!(field(&a, &format!("{me}_year_of_birth"))["value"], year);
        match parent.spouse.map(|s| pop.get(s)) {
            Some(spouse) => {
                assert_eq!(
                    field(&a, &format!("{other}_name"))["value"],
                    spouse.name.full(),
                    "found through the spouse link"
                )
            }
            None => assert_eq!(field(&a, &format!("{other}_name"))["reason"], "no_person"),
        }
        assert_eq!(field(&a, "child_name")["status"], "declare");
    }
    for id in &s.married {
        let a: Value =
            p.prefill(&key, "marital_status_certificate", "marital_status_certificate", id).await.json().await.unwrap();
        assert_eq!(field(&a, "marital_status")["value"], "married");
        assert_eq!(field(&a, "marital_status")["source"], "civil_status.marriage", "the pinned authoritative source");
    }
    for id in &s.legacy_address {
        let a: Value = p.prefill(&key, "tk1_ts", "health_insurance_enrolment", id).await.json().await.unwrap();
        let addr = &field(&a, "address")["value"];
        assert_eq!(addr["ward_code"].as_str().unwrap().len(), 5);
        assert!(addr["legacy"]["district_code"].is_string(), "the original legacy codes are kept: {addr}");
    }
    for id in &s.split_ward_address {
        let a: Value = p.prefill(&key, "tk1_ts", "health_insurance_enrolment", id).await.json().await.unwrap();
        let f = field(&a, "address");
        assert_eq!(f["value"]["is_guess"], true, "{f}");
        assert_eq!(f["mode"], "suggestion", "a guessed ward is for the citizen to confirm");
    }
    for id in &s.deceased {
        let person = pop.find(id).unwrap();
        let a: Value = p.prefill(&key, "death_registration", "death_registration", id).await.json().await.unwrap();
        assert_eq!(field(&a, "deceased_name")["value"], person.name.full());
        assert_eq!(field(&a, "deceased_date_of_birth")["value"], person.dob.to_string());
        assert_eq!(field(&a, "deceased_id")["value"], id.as_str());
        assert_eq!(field(&a, "cause_of_death")["status"], "declare");
    }
    for id in &s.adult_with_household {
        let person = pop.find(id).unwrap();
        let a: Value = p.prefill(&key, "health_card_reissue", "health_card_reissue", id).await.json().await.unwrap();
        assert_eq!(field(&a, "full_name")["value"], person.name.full());
        let card: Value = p.exchange(&key, "insurance", "card", json!({"citizen_id": id})).await.json().await.unwrap();
        assert_eq!(field(&a, "card_number")["value"], card["elements"]["health_insurance_card"]["number"]);
        assert_eq!(field(&a, "social_insurance_number")["value"], card["elements"]["social_insurance_number"]);
        assert_eq!(field(&a, "card_number")["source"], "insurance.card");
    }
    for id in &s.child_under_6 {
        let child = pop.find(id).unwrap();
        let a: Value = p.prefill(&key, "tk1_ts", "health_insurance_enrolment", id).await.json().await.unwrap();
        let mother = child.mother.map(|m| pop.get(m).name.full());
        assert_eq!(field(&a, "guardian_name")["value"].as_str().map(String::from), mother);
    }
}

#[tokio::test]
async fn relatives_named_in_a_request_are_used_for_that_request_alone() {
    let p = spawn_app().await;
    let pop = &p.mocks.population;
    let s = pop.samples(5);
    let key = p.partner("000.00.31.H29", everything(), 60_000, 1_000).await;
    let parent_id = s.parent_of_newborn.iter().find(|id| pop.find(id).unwrap().spouse.is_some()).unwrap();
    let parent = pop.find(parent_id).unwrap();
    let other = if parent.sex.as_str() == "female" { "father" } else { "mother" };
    let stranger_id = &s.adult_with_household[0];
    let stranger = pop.find(stranger_id).unwrap();
    let linked = json!(pop.get(parent.spouse.unwrap()).name.full());
    let prefill = |relatives: Value| {
        let body = json!({"form": "birth_registration", "citizen_id": parent_id,
            "purpose": "birth_registration", "relatives": relatives});
        let request = p.client.post(p.url("/v1/prefill")).bearer_auth(&key).json(&body);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let other_name = |a: &Value| field(a, &format!("{other}_name"))["value"].clone();

    // Both parents named, then none, then both again, on one catalogue snapshot:
    // a request naming relatives needs no link from the subject's record, one
    // naming none does, and neither may be planned as the other.
    let me = if other == "father" { "mother" } else { "father" };
    let both = json!({format!("child_{me}"): parent_id, format!("child_{other}"): stranger_id});
    for round in 0..2 {
        let a = prefill(both.clone()).await;
        assert_eq!(other_name(&a), stranger.name.full(), "round {round}, the relative named: {a}");
        let calls: Vec<(&str, &str)> = a["sources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["operation"].as_str().unwrap(), s["person"].as_str().unwrap()))
            .collect();
        assert!(calls.contains(&("population.citizen", &format!("child_{other}"))), "{calls:?}");
        let a = prefill(json!({})).await;
        assert_eq!(other_name(&a), linked, "round {round}, found through the spouse link: {a}");
    }
}

#[tokio::test]
async fn two_sources_that_disagree_make_the_field_a_suggestion_that_shows_both() {
    let p = spawn_app().await;
    let pop = &p.mocks.population;
    let s = pop.samples(10);
    let id = s.adult_with_household.iter().find(|id| pop.find(id).unwrap().phone.is_some()).unwrap();
    let person = pop.find(id).unwrap();
    let key = p.partner("000.00.32.H29", everything(), 60_000, 1_000).await;
    // A second source of the same registry that spells names in capitals and
    // agrees on the phone number.
    let mut manifest = new_registry_manifest(&p.mocks.url(RegistryKind::Population));
    manifest["operations"]["whereabouts"]["mapping"] =
        json!("{full_name: (.du_lieu.ho_ten | ascii_upcase), phone: .du_lieu.so_dien_thoai}");
    assert_eq!(p.admin(reqwest::Method::POST, "/admin/v1/adapters", STEWARD, Some(manifest)).await.status(), 201);
    let form = json!({
        "id": "club_card", "title": "Thẻ câu lạc bộ", "form_code": "CLB-01",
        "procedure": {"code": "club_card", "name": "Cấp thẻ câu lạc bộ"}, "purposes": ["club_card"],
        "fields": [
            {"id": "name", "label_vi": "Họ và tên", "type": "text", "required": true,
             "bind": {"element": "full_name", "person": "subject", "source": "population.citizen"}},
            {"id": "phone", "label_vi": "Điện thoại", "type": "phone", "required": false,
             "bind": {"element": "phone", "person": "subject", "source": "residence_lookup.whereabouts"}}
        ]
    });
    assert_eq!(p.admin(reqwest::Method::POST, "/admin/v1/forms", STEWARD, Some(form)).await.status(), 201);

    // Twice: the second prefill runs on the plan the first one made.
    for round in 0..2 {
        let a: Value = p.prefill(&key, "club_card", "club_card", id).await.json().await.unwrap();
        let name = field(&a, "name");
        assert_eq!(name["value"], person.name.full(), "round {round}: the pinned source is authoritative: {a}");
        assert_eq!(name["source"], "population.citizen");
        assert_eq!(name["mode"], "suggestion", "round {round}: {a}");
        assert_eq!(name["verified"], false);
        assert_eq!(
            name["conflicts"],
            json!([{"source": "residence_lookup.whereabouts", "value": person.name.full().to_ascii_uppercase()}]),
            "round {round}: {a}"
        );
        let phone = field(&a, "phone");
        assert_eq!(phone["value"], format!("0{}", person.phone.unwrap()), "round {round}: {a}");
        assert_eq!(phone["source"], "residence_lookup.whereabouts");
        assert_eq!(phone["mode"], "authoritative", "round {round}: both sources agree: {a}");
        assert_eq!(phone["verified"], true);
        assert!(phone.get("conflicts").is_none_or(|c| c == &json!([])), "round {round}: {a}");
        let called: Vec<&str> =
            a["sources"].as_array().unwrap().iter().map(|s| s["operation"].as_str().unwrap()).collect();
        assert_eq!(called, ["population.citizen", "residence_lookup.whereabouts"], "each called once: {a}");
    }
}

#[tokio::test]
async fn a_registry_down_mid_request_leaves_the_other_fields_and_says_which_source_failed() {
    let p = spawn_app().await;
    let id = p.mocks.population.samples(1).adult_with_household[0].clone();
    let key = p.partner("000.00.28.H29", everything(), 60_000, 1_000).await;
    p.mocks.set_faults(RegistryKind::Insurance, Faults { error_rate: 1.0, ..Default::default() });
    let r = p.prefill(&key, "tk1_ts", "health_insurance_enrolment", &id).await;
    assert_eq!(r.status(), 200, "a registry fault never fails the whole prefill");
    let a: Value = r.json().await.unwrap();
    assert_eq!(field(&a, "social_insurance_number")["status"], "unavailable");
    assert_eq!(field(&a, "social_insurance_number")["reason"], "source_failed");
    assert_eq!(field(&a, "full_name")["status"], "prefilled");
    let ins = source(&a, "insurance.card");
    assert_eq!(ins["status"], "unavailable");
    let page = p.audit("action=prefill").await;
    assert_eq!(page["items"][0]["outcome"], "partial");
}

#[tokio::test]
async fn fields_outside_the_grant_are_marked_not_permitted_and_never_sent() {
    let p = spawn_app().await;
    let id = p.mocks.population.samples(1).adult_with_household[0].clone();
    let key = p
        .partner(
            "000.00.29.H29",
            json!({"forms": ["ct01"], "purposes": ["residence_change"],
                                          "elements": ["full_name", "date_of_birth", "sex", "citizen_id"]}),
            600,
            100,
        )
        .await;
    let a: Value = p.prefill(&key, "ct01", "residence_change", &id).await.json().await.unwrap();
    assert_eq!(field(&a, "full_name")["status"], "prefilled");
    for f in ["phone", "household_head_name", "members_changing"] {
        assert_eq!(field(&a, f)["reason"], "not_permitted");
        assert!(field(&a, f).get("value").is_none());
    }
    let calls: Vec<&str> = a["sources"].as_array().unwrap().iter().map(|s| s["operation"].as_str().unwrap()).collect();
    assert_eq!(calls, ["population.citizen"], "nothing is fetched for fields it may not receive");
    assert_problem(p.prefill(&key, "tk1_ts", "residence_change", &id).await, 403, "forbidden").await;
    assert_problem(p.prefill(&key, "ct01", "birth_registration", &id).await, 422, "invalid_body").await;
    assert_problem(p.prefill(&key, "ct01", "residence_change", "00109001234x").await, 400, "invalid_citizen_id").await;
}

#[tokio::test]
async fn a_form_registered_at_run_time_is_prefilled_and_the_report_matches_an_independent_count() {
    let p = spawn_app().await;
    let key = p.partner("000.00.30.H29", everything(), 60_000, 1_000).await;
    let form = json!({
        "id": "library_card", "title": "Đăng ký thẻ thư viện", "form_code": "TV-01",
        "procedure": {"code": "library_card", "name": "Cấp thẻ thư viện"}, "purposes": ["library_card"],
        "fields": [
            {"id": "name", "label_vi": "Họ và tên", "type": "text", "required": true, "bind": {"element": "full_name", "person": "subject"}},
            {"id": "phone", "label_vi": "Điện thoại", "type": "phone", "required": false, "bind": {"element": "phone", "person": "subject"}},
            {"id": "school", "label_vi": "Trường", "type": "text", "required": false}
        ]
    });
    let mut bad = form.clone();
    bad["fields"][1]["bind"]["element"] = json!("shoe_size");
    bad["fields"][2]["id"] = json!("name");
    let problem = assert_problem(
        p.admin(reqwest::Method::POST, "/admin/v1/forms", STEWARD, Some(bad)).await,
        422,
        "invalid_form",
    )
    .await;
    assert_eq!(problem["errors"].as_array().unwrap().len(), 2, "{problem}");
    assert_eq!(p.admin(reqwest::Method::POST, "/admin/v1/forms", STEWARD, Some(form)).await.status(), 201);

    let s = p.mocks.population.samples(4);
    let mut expected_prefilled = 0usize;
    let subjects: Vec<String> = s.adult_with_household.iter().chain(&s.missing_phone).cloned().collect();
    for id in &subjects {
        let person = p.mocks.population.find(id).unwrap();
        expected_prefilled += 1 + usize::from(person.phone.is_some());
        let a: Value = p.prefill(&key, "library_card", "library_card", id).await.json().await.unwrap();
        assert_eq!(field(&a, "name")["value"], person.name.full());
    }
    let expected_cut = expected_prefilled as f64 / (3 * subjects.len()) as f64;
    let cov: Value = p
        .client
        .get(p.url("/v1/forms/library_card/coverage"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cov["ceiling"], 0.667);
    assert_eq!(cov["measured"]["prefills"], subjects.len());
    assert!((cov["measured"]["cut"].as_f64().unwrap() - expected_cut).abs() < 0.002, "{cov} vs {expected_cut}");

    // The report over the shipped forms meets the 20% target on every form,
    // and its figures match a count made here from the form files and the
    // per-field answers, not from lgsp's own coverage numbers.
    let rows = lgsp::demo::report(&p.state, &p.base, &key, &s).await.unwrap();
    assert_eq!(rows.len(), 7);
    for r in &rows {
        assert!(r.prefills > 0, "{r:?}");
        assert!(r.measured <= r.ceiling + 1e-9, "{r:?}");
        assert!(r.meets_target(), "{r:?}");
    }
    for (id, _) in lgsp::form::SHIPPED {
        let path = format!("{}/schemas/forms/{id}.json", env!("CARGO_MANIFEST_DIR"));
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let fields = doc["fields"].as_array().unwrap();
        let bound = fields.iter().filter(|f| f.get("bind").is_some()).count();
        let purpose = doc["purposes"][0].as_str().unwrap();
        let mut cuts = Vec::new();
        for (i, subject) in lgsp::demo::typical_subjects(id, &s).into_iter().enumerate() {
            let requester = lgsp::demo::typical_requester(id, &subject, i, &s);
            let body = json!({"form": id, "citizen_id": subject, "purpose": purpose, "requester_id": requester});
            let r = p.client.post(p.url("/v1/prefill")).bearer_auth(&key).json(&body).send().await.unwrap();
            let a: Value = r.json().await.unwrap();
            let prefilled = a["fields"].as_array().unwrap().iter().filter(|f| !f["value"].is_null()).count();
            cuts.push(prefilled as f64 / fields.len() as f64);
        }
        let measured = cuts.iter().sum::<f64>() / cuts.len() as f64;
        let row = rows.iter().find(|r| r.form == id).unwrap();
        assert_eq!(row.fields, fields.len(), "{id}");
        assert_eq!(row.prefills, cuts.len(), "{id}");
        assert!(
            (row.ceiling - bound as f64 / fields.len() as f64).abs() < 0.0006,
            "{id}: {row:?} vs {bound}/{}",
            fields.len()
        );
        // Both round to 0.001 (each answer, then the mean); the recount does not.
        assert!((row.measured - measured).abs() < 0.0011, "{id}: {row:?} vs {measured}");
    }
}

#[tokio::test]
async fn a_form_declares_its_persons_and_a_requester_fills_in_their_own_fields() {
    let p = spawn_app().await;
    let pop = &p.mocks.population;
    let s = pop.samples(3);
    let key = p.partner("000.00.32.H29", everything(), 60_000, 1_000).await;
    let deceased = &s.deceased[0];
    let declarant_id = &s.adult_with_household[0];
    let declarant = pop.find(declarant_id).unwrap();
    let death = |body: Value| {
        let request = p.client.post(p.url("/v1/prefill")).bearer_auth(&key).json(&body);
        async move { request.send().await.unwrap() }
    };
    let base = json!({"form": "death_registration", "citizen_id": deceased, "purpose": "death_registration"});

    // The declarant's own fields come from the declarant's record.
    let mut with = base.clone();
    with["requester_id"] = json!(declarant_id);
    let a: Value = death(with).await.json().await.unwrap();
    assert_eq!(field(&a, "declarant_name")["value"], json!(declarant.name.full()), "{a}");
    assert_eq!(field(&a, "declarant_name")["person"], "requester");
    assert_eq!(field(&a, "declarant_id")["value"], json!(declarant_id));
    assert_eq!(field(&a, "deceased_name")["value"], json!(pop.find(deceased).unwrap().name.full()));
    let with_cut = a["coverage"]["cut"].as_f64().unwrap();
    // Without the requester they cannot be, and say why.
    let a: Value = death(base.clone()).await.json().await.unwrap();
    assert_eq!(field(&a, "declarant_name")["reason"], "no_person", "{a}");
    assert!(a["coverage"]["cut"].as_f64().unwrap() < with_cut);
    // A person the form is not about is refused, at its pointer.
    let mut stranger = base.clone();
    stranger["relatives"] = json!({"grandmother": declarant_id});
    let e = assert_problem(death(stranger).await, 422, "invalid_body").await;
    assert_eq!(e["errors"][0]["pointer"], "/relatives/grandmother", "{e}");
    let mut bad_id = base;
    bad_id["requester_id"] = json!("123");
    assert_problem(death(bad_id).await, 400, "invalid_citizen_id").await;

    // A form registered at run time declares a person two links away.
    let (child, grandfather) = pop
        .people
        .iter()
        .filter_map(|c| {
            let father = pop.get(c.father?);
            Some((c, pop.get(father.father?)))
        })
        .next()
        .expect("someone whose father's father is on record");
    let form = json!({"id": "lineage", "title": "Lineage", "form_code": "L-1",
        "procedure": {"code": "lineage", "name": "Lineage"}, "purposes": ["lineage"],
        "persons": {"father": {"through": "subject", "element": "father"},
                    "grandfather": {"through": "father", "element": "father"}},
        "fields": [{"id": "grandfather_name", "label_vi": "Họ tên ông nội", "type": "text", "required": true,
                    "bind": {"element": "full_name", "person": "grandfather"}}]});
    assert_eq!(p.admin(reqwest::Method::POST, "/admin/v1/forms", STEWARD, Some(form.clone())).await.status(), 201);
    let a: Value = p.prefill(&key, "lineage", "lineage", &child.id.to_string()).await.json().await.unwrap();
    assert_eq!(field(&a, "grandfather_name")["value"], json!(grandfather.name.full()), "{a}");

    // Persons that cannot be found are refused, each at its pointer.
    let mut looped = form.clone();
    looped["id"] = json!("looped");
    looped["persons"] = json!({"a": {"through": "b", "element": "father"}, "b": {"through": "a", "element": "mother"},
                               "c": {"through": "nobody", "element": "father"}, "d": {"through": "subject", "element": "full_name"}});
    looped["fields"][0]["bind"]["person"] = json!("a");
    let e = assert_problem(
        p.admin(reqwest::Method::POST, "/admin/v1/forms", STEWARD, Some(looped)).await,
        422,
        "invalid_form",
    )
    .await;
    let pointers: Vec<&str> = e["errors"].as_array().unwrap().iter().map(|e| e["pointer"].as_str().unwrap()).collect();
    for at in ["/persons/a", "/persons/b", "/persons/c", "/persons/d/element"] {
        assert!(pointers.contains(&at), "{at} in {e}");
    }
    // And one declared two ways at once, by the form's schema.
    let mut twice = form;
    twice["id"] = json!("twice");
    twice["persons"] = json!({"e": {"given": true, "through": "subject", "element": "father"}});
    twice["fields"][0]["bind"]["person"] = json!("e");
    let e = assert_problem(
        p.admin(reqwest::Method::POST, "/admin/v1/forms", STEWARD, Some(twice)).await,
        422,
        "invalid_form",
    )
    .await;
    assert_eq!(e["errors"][0]["pointer"], "/persons/e", "{e}");
}
