//! Stewards change what lgsp serves at run time: adapters registered, versioned,
//! disabled and tested, seen by every node without a restart.

use crate::helpers::*;
use lgsp::registries::{default_tokens, RegistryKind};
use lgsp::startup::Application;
use serde_json::{json, Value};

#[tokio::test]
async fn a_partner_exchanges_through_an_adapter_and_only_gets_its_granted_elements() {
    let p = spawn_app().await;
    let s = p.mocks.population.samples(1);
    let id = &s.adult_with_household[0];
    let person = p.mocks.population.find(id).unwrap();
    let key = p
        .partner(
            "000.00.20.H29",
            json!({"operations": ["population.citizen"], "purposes": ["residence_change"],
                                          "elements": ["full_name", "date_of_birth"]}),
            600,
            100,
        )
        .await;
    let r = p.exchange(&key, "population", "citizen", json!({"citizen_id": id})).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("ratelimit") && r.headers().contains_key("ratelimit-policy"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["elements"]["full_name"], person.name.full());
    assert_eq!(body["elements"]["date_of_birth"], person.dob.to_string());
    assert!(body["elements"].get("phone").is_none() && body["elements"].get("permanent_residence").is_none());
    // Withheld names every element of the operation outside the grant, whether or not this
    // citizen's record holds it: a living citizen's date of death is named too.
    let withheld: Vec<&str> = body["withheld"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(withheld.contains(&"permanent_residence") && withheld.contains(&"date_of_death"), "{body}");
    assert!(person.death.is_none() && !withheld.contains(&"full_name"), "{body}");
    assert_eq!(body["elements"].as_object().unwrap().len(), 2, "{body}");

    // Outside the grant: another operation, an unknown one, a wrong purpose, no key.
    let r = p.exchange(&key, "population", "household", json!({"citizen_id": id})).await;
    let problem = assert_problem(r, 403, "forbidden").await;
    assert!(problem["detail"].as_str().unwrap().contains("population.household"), "{problem}");
    assert_problem(p.exchange(&key, "population", "nope", json!({"citizen_id": id})).await, 404, "not_found").await;
    let r = p.exchange_for("marketing", &key, "population", "citizen", json!({"citizen_id": id})).await;
    assert_problem(r, 403, "forbidden").await;
    let r =
        p.client.post(p.url("/v1/exchange/population/citizen")).json(&json!({"citizen_id": id})).send().await.unwrap();
    assert_problem(r, 401, "unauthorized").await;
    // Checkpoint 1: the partner's request breaks the operation's schema.
    let r = p.exchange(&key, "population", "citizen", json!({"citizen_id": id, "extra": 1})).await;
    let problem = assert_problem(r, 422, "invalid_body").await;
    assert_eq!(problem["errors"][0]["pointer"], "", "{problem}");
    // A personal ID number is checked as a prefill checks it.
    let r = p.exchange(&key, "population", "citizen", json!({"citizen_id": "12ab"})).await;
    let problem = assert_problem(r, 400, "invalid_citizen_id").await;
    assert_eq!(problem["errors"][0]["pointer"], "/citizen_id");

    // The list of what it may call carries the schemas.
    let list: Value = p.client.get(p.url("/v1/adapters")).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["operations"][0]["name"], "citizen");
    assert!(list[0]["operations"][0]["request_schema"]["required"].is_array());

    // Every one of those calls is in the audit trail, the refusals too.
    let page = p.audit("partner_id=000.00.20.H29&action=exchange").await;
    let outcomes: Vec<&str> =
        page["items"].as_array().unwrap().iter().map(|i| i["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes.len(), 6, "{page}");
    assert_eq!(outcomes.iter().filter(|o| **o == "ok").count(), 1);
    assert_eq!(page["items"].as_array().unwrap().last().unwrap()["elements"], json!(["date_of_birth", "full_name"]));
    let all = p.audit("action=exchange").await;
    assert_eq!(all["items"].as_array().unwrap().len(), 7, "the call without a key is recorded too");
}

#[tokio::test]
async fn a_steward_registers_versions_disables_and_tests_an_adapter_without_a_restart() {
    let p = spawn_app().await;
    let s = p.mocks.population.samples(1);
    let id = &s.adult_with_household[0];
    let person = p.mocks.population.find(id).unwrap();
    let key = p.partner("000.00.21.H29", everything(), 600, 100).await;
    let url = p.mocks.url(RegistryKind::Population);

    // Refused, with every problem listed: a schema that is not one, a mapping
    // that does not compile, an unknown element, a host off the allow-list.
    let mut bad = new_registry_manifest(&url);
    bad["upstream"]["base_url"] = json!("http://198.51.100.7:80");
    bad["upstream"]["credential"] = json!("not_configured");
    bad["operations"]["whereabouts"]["response_schema"] = json!({"type": "nonsense"});
    bad["operations"]["whereabouts"]["mapping"] = json!("{full_name: .hoTen");
    bad["operations"]["whereabouts"]["elements"] = json!(["full_name", "shoe_size"]);
    let r = p.admin(reqwest::Method::POST, "/admin/v1/adapters", STEWARD, Some(bad)).await;
    let problem = assert_problem(r, 422, "invalid_manifest").await;
    let pointers: Vec<&str> =
        problem["errors"].as_array().unwrap().iter().map(|e| e["pointer"].as_str().unwrap()).collect();
    for expected in [
        "/upstream/base_url",
        "/operations/whereabouts/response_schema",
        "/operations/whereabouts/mapping",
        "/operations/whereabouts/elements/1",
    ] {
        assert!(pointers.contains(&expected), "{expected} missing from {pointers:?}");
    }
    // A partner key never opens /admin; an auditor token cannot change adapters.
    let r = p.admin(reqwest::Method::POST, "/admin/v1/adapters", &key, Some(new_registry_manifest(&url))).await;
    assert_problem(r, 401, "unauthorized").await;
    let r = p.admin(reqwest::Method::POST, "/admin/v1/adapters", AUDITOR, Some(new_registry_manifest(&url))).await;
    assert_problem(r, 403, "forbidden").await;

    // Dry run of the unpublished manifest, then registration, then use.
    let r = p
        .admin(
            reqwest::Method::POST,
            "/admin/v1/adapters/residence_lookup/test",
            STEWARD,
            Some(json!({"citizen_id": id, "manifest": new_registry_manifest(&url)})),
        )
        .await;
    let run: Value = r.json().await.unwrap();
    assert_eq!(run["ok"], true, "{run}");
    assert_eq!(run["results"][0]["elements"]["full_name"], person.name.full());
    assert_problem(
        p.exchange(&key, "residence_lookup", "whereabouts", json!({"citizen_id": id})).await,
        404,
        "not_found",
    )
    .await;
    let r = p.admin(reqwest::Method::POST, "/admin/v1/adapters", STEWARD, Some(new_registry_manifest(&url))).await;
    assert_eq!(r.status(), 201);
    let r = p.exchange(&key, "residence_lookup", "whereabouts", json!({"citizen_id": id})).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["elements"]["full_name"], person.name.full());
    assert_eq!(body["adapter_version"], 1);
    let again = p.admin(reqwest::Method::POST, "/admin/v1/adapters", STEWARD, Some(new_registry_manifest(&url))).await;
    assert_problem(again, 409, "conflict").await;

    // Version 2 changes the mapping; it takes effect at once.
    let mut v2 = new_registry_manifest(&url);
    v2["operations"]["whereabouts"]["mapping"] = json!("{full_name: (.du_lieu.ho_ten | ascii_upcase)}");
    let r = p.admin(reqwest::Method::PUT, "/admin/v1/adapters/residence_lookup", STEWARD, Some(v2)).await;
    assert_eq!(r.status(), 200);
    let body: Value =
        p.exchange(&key, "residence_lookup", "whereabouts", json!({"citizen_id": id})).await.json().await.unwrap();
    assert_eq!(body["adapter_version"], 2);
    assert_eq!(body["elements"]["full_name"], person.name.full().to_ascii_uppercase());
    let versions: Value = p
        .admin(reqwest::Method::GET, "/admin/v1/adapters/residence_lookup/versions", STEWARD, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(versions.as_array().unwrap().len(), 2);
    assert_eq!(versions[1]["current"], true);
    // Each version can be read as it was published, to compare before a rollback.
    let path = "/admin/v1/adapters/residence_lookup/versions";
    let first: Value = p.admin(reqwest::Method::GET, &format!("{path}/1"), STEWARD, None).await.json().await.unwrap();
    assert_eq!((first["id"].as_str(), first["version"].as_i64()), (Some("residence_lookup"), Some(1)));
    assert_eq!(first["document"], new_registry_manifest(&url));
    let second: Value = p.admin(reqwest::Method::GET, &format!("{path}/2"), STEWARD, None).await.json().await.unwrap();
    assert_eq!(
        second["document"]["operations"]["whereabouts"]["mapping"],
        "{full_name: (.du_lieu.ho_ten | ascii_upcase)}"
    );
    assert_problem(p.admin(reqwest::Method::GET, &format!("{path}/3"), STEWARD, None).await, 404, "not_found").await;
    assert_problem(
        p.admin(reqwest::Method::GET, &format!("{path}/two"), STEWARD, None).await,
        400,
        "invalid_parameter",
    )
    .await;
    assert_problem(p.admin(reqwest::Method::GET, &format!("{path}/1"), AUDITOR, None).await, 403, "forbidden").await;

    // Disabled: gone for partners; enabled again: back.
    let off = p
        .admin(
            reqwest::Method::POST,
            "/admin/v1/adapters/residence_lookup/state",
            STEWARD,
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(off.status(), 204);
    assert_problem(
        p.exchange(&key, "residence_lookup", "whereabouts", json!({"citizen_id": id})).await,
        404,
        "not_found",
    )
    .await;
    p.admin(
        reqwest::Method::POST,
        "/admin/v1/adapters/residence_lookup/state",
        STEWARD,
        Some(json!({"enabled": true, "current_version": 1})),
    )
    .await;
    let body: Value =
        p.exchange(&key, "residence_lookup", "whereabouts", json!({"citizen_id": id})).await.json().await.unwrap();
    assert_eq!(body["adapter_version"], 1, "rolled back");
}

#[tokio::test]
async fn another_node_sees_a_change_without_a_restart() {
    // Two gateways on one database: a change made through one is live on the other.
    let p = spawn_app_with(|s| s.catalog_refresh_ms = 100).await;
    let other_base = p.second_node().await;

    let key = p.partner("000.00.22.H29", everything(), 600, 100).await;
    let id = p.mocks.population.samples(1).adult_with_household[0].clone();
    let url = p.mocks.url(RegistryKind::Population);
    p.admin(reqwest::Method::POST, "/admin/v1/adapters", STEWARD, Some(new_registry_manifest(&url))).await;
    let call = || {
        p.client
            .post(format!("{other_base}/v1/exchange/residence_lookup/whereabouts"))
            .bearer_auth(&key)
            .header("X-Purpose", "residence_change")
            .json(&json!({"citizen_id": id}))
            .send()
    };
    let mut status = 0;
    for _ in 0..50 {
        status = call().await.unwrap().status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, 200, "the other node picked up the new adapter and the new key");
}

#[tokio::test]
async fn a_steward_registers_elements_at_run_time_and_every_node_uses_them() {
    let p = spawn_app_with(|s| s.catalog_refresh_ms = 100).await;
    let other_base = p.second_node().await;
    let post = |path: &'static str, body: Value| p.admin(reqwest::Method::POST, path, STEWARD, Some(body));
    let element = |id: &str, class: &str, schema: Value| json!({"id": id, "label_en": format!("{id} (en)"), "label_vi": format!("{id} (vi)"), "class": class, "schema": schema});

    // An adapter naming elements nobody registered is refused.
    let url = p.mocks.url(RegistryKind::Population);
    let mut manifest = new_registry_manifest(&url);
    manifest["operations"]["whereabouts"]["mapping"] = json!(
        "{full_name: .du_lieu.ho_ten, household_head_name: .du_lieu.chu_ho.ho_ten, faith_code: .du_lieu.ton_giao}"
    );
    manifest["operations"]["whereabouts"]["elements"] = json!(["full_name", "household_head_name", "faith_code"]);
    let body = assert_problem(post("/admin/v1/adapters", manifest.clone()).await, 422, "invalid_manifest").await;
    assert!(body.to_string().contains("unknown data element \\\"household_head_name\\\""), "{body}");

    // Bad elements: each refused at the pointer to fix, nothing stored.
    let bad = assert_problem(
        post("/admin/v1/elements", element("faith_code", "sensitive", json!({"type": "no-such-type"}))).await,
        422,
        "invalid_element",
    )
    .await;
    assert_eq!(bad["errors"][0]["pointer"], "/schema", "{bad}");
    let bad = assert_problem(
        post("/admin/v1/elements", element("faith_code", "sensitive", json!({"$ref": "#/$defs/nobody"}))).await,
        422,
        "invalid_element",
    )
    .await;
    assert!(bad["errors"][0]["message"].as_str().unwrap().contains("nobody"), "{bad}");
    let bad =
        assert_problem(post("/admin/v1/elements", json!({"id": "Bad Id", "schema": {}})).await, 422, "invalid_element")
            .await;
    let pointers: Vec<&str> =
        bad["errors"].as_array().unwrap().iter().map(|e| e["pointer"].as_str().unwrap()).collect();
    assert!(pointers.contains(&"/id") && pointers.contains(&""), "{bad}");

    // Two new elements, one of them sensitive personal data.
    let r =
        post("/admin/v1/elements", element("household_head_name", "basic", json!({"$ref": "#/$defs/full_name"}))).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let r = post("/admin/v1/elements", element("faith_code", "sensitive", json!({"type": "string", "maxLength": 10})))
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let r = post("/admin/v1/adapters", manifest).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());

    // The other node: the partners' catalogue lists them, and an exchange
    // maps to them; the sensitive one only for the partner granted it by name.
    let everything_key = p.partner("000.00.23.H29", everything(), 600, 100).await;
    let mut named = everything();
    named["elements"] = json!(["*", "faith_code"]);
    let named_key = p.partner("000.00.24.H29", named, 600, 100).await;
    let id = p.mocks.population.samples(1).adult_with_household[0].clone();
    let exchange = |key: String| {
        let (client, url, id) =
            (p.client.clone(), format!("{other_base}/v1/exchange/residence_lookup/whereabouts"), id.clone());
        async move {
            for _ in 0..60 {
                let r = client
                    .post(&url)
                    .bearer_auth(&key)
                    .header("X-Purpose", "residence_change")
                    .json(&json!({"citizen_id": id}))
                    .send()
                    .await
                    .unwrap();
                if r.status() == 200 {
                    return r.json::<Value>().await.unwrap();
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            panic!("the other node never served the new adapter");
        }
    };
    let answer = exchange(everything_key.clone()).await;
    assert!(answer["elements"]["household_head_name"].is_string(), "{answer}");
    assert!(answer["elements"].get("faith_code").is_none(), "a wildcard does not cover sensitive data: {answer}");
    assert_eq!(answer["withheld"], json!(["faith_code"]), "{answer}");
    let answer = exchange(named_key).await;
    assert!(answer["elements"]["faith_code"].is_string(), "{answer}");
    assert_eq!(answer["sensitive"], json!(["faith_code"]), "{answer}");
    let listed: Value = p
        .client
        .get(format!("{other_base}/v1/elements"))
        .bearer_auth(&everything_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let find = |id: &str| listed.as_array().unwrap().iter().find(|e| e["id"] == id).cloned().unwrap();
    assert_eq!(find("faith_code")["class"], "sensitive");
    assert_eq!(find("household_head_name")["schema"], json!({"$ref": "#/$defs/full_name"}));
    assert_eq!(find("full_name")["label_vi"], "Họ, chữ đệm và tên", "the shipped elements are the seed set");

    // A change that would break the stored adapter is refused, naming it.
    let put =
        |body: Value| p.admin(reqwest::Method::PUT, "/admin/v1/elements/household_head_name", STEWARD, Some(body));
    let mut shared = element("household_head_name", "basic", json!({"$ref": "#/$defs/full_name"}));
    shared["shared"] = json!(true);
    let refused = assert_problem(put(shared).await, 422, "invalid_element").await;
    assert!(refused["errors"][0]["message"].as_str().unwrap().contains("adapter \"residence_lookup\""), "{refused}");
    // A compatible change is a new version, and can be rolled back; an element is never disabled.
    let mut relabelled = element("household_head_name", "basic", json!({"$ref": "#/$defs/full_name"}));
    relabelled["label_vi"] = json!("Họ tên chủ hộ");
    let r = put(relabelled).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["version"], 2);
    let versions: Value = p
        .admin(reqwest::Method::GET, "/admin/v1/elements/household_head_name/versions", STEWARD, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(versions.as_array().unwrap().len(), 2, "{versions}");
    let state = "/admin/v1/elements/household_head_name/state";
    assert_problem(post(state, json!({"enabled": false})).await, 422, "invalid_body").await;
    assert_eq!(post(state, json!({"current_version": 1})).await.status(), 204);
    let current: Value = p
        .admin(reqwest::Method::GET, "/admin/v1/elements/household_head_name", STEWARD, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (current["version"].as_i64(), current["document"]["label_vi"].as_str()),
        (Some(1), Some("household_head_name (vi)"))
    );
}

#[tokio::test]
async fn a_stored_credential_serves_every_node_and_rotates_without_a_restart() {
    let p = spawn_app_with(|s| s.catalog_refresh_ms = 100).await;
    let settings = p.node_settings();
    let other_base = TestApp::start_node(settings.clone()).await;
    let app = &p;
    let put = |name: &str, body: Value| {
        let path = format!("/admin/v1/credentials/{name}");
        async move { app.admin(reqwest::Method::PUT, &path, STEWARD, Some(body)).await }
    };

    // An adapter whose credential no node's configuration holds.
    let mut manifest = new_registry_manifest(&p.mocks.url(RegistryKind::Population));
    manifest["upstream"]["credential"] = json!("population_stored");
    assert_eq!(p.admin(reqwest::Method::POST, "/admin/v1/adapters", STEWARD, Some(manifest)).await.status(), 201);
    let key = p.partner("000.00.25.H29", everything(), 6000, 1000).await;
    let id = p.mocks.population.samples(1).adult_with_household[0].clone();
    let status_on_other = || async {
        p.client
            .post(format!("{other_base}/v1/exchange/residence_lookup/whereabouts"))
            .bearer_auth(&key)
            .header("X-Purpose", "residence_change")
            .json(&json!({"citizen_id": id}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    let eventually = |want: u16| async move {
        let mut last = 0;
        for _ in 0..60 {
            last = status_on_other().await;
            if last == want {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the other node answered {last}, not {want}");
    };
    eventually(502).await;

    // Set: the other node's calls present it from its next refresh.
    let token = default_tokens()[0].clone();
    let r = put("population_stored", json!({"kind": "static", "token": token})).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(!text.contains(&token), "the answer never holds the secret: {text}");
    let info: Value = serde_json::from_str(&text).unwrap();
    assert_eq!((info["kind"].as_str(), info["in_use"].as_bool()), (Some("static"), Some(true)), "{info}");
    assert_eq!(info["used_by"], json!(["residence_lookup"]));
    eventually(200).await;

    // Rotated to a token the registry refuses: the calls follow.
    assert_eq!(put("population_stored", json!({"kind": "static", "token": "rotated-but-wrong"})).await.status(), 200);
    eventually(502).await;
    assert_eq!(put("population_stored", json!({"kind": "static", "token": token})).await.status(), 200);
    eventually(200).await;

    // Bad credentials are refused without echoing what was sent.
    assert_problem(
        put("population_stored", json!({"kind": "kerberos", "ticket": "t"})).await,
        422,
        "invalid_credential",
    )
    .await;
    let echoed =
        assert_problem(put("population_stored", json!("secret-sent-bare")).await, 422, "invalid_credential").await;
    assert!(!echoed.to_string().contains("secret-sent-bare"), "{echoed}");
    assert_problem(put("Bad-Name", json!({"kind": "static", "token": "t"})).await, 422, "invalid_credential").await;
    let bad = assert_problem(
        put("population_stored", json!({"kind": "basic", "username": "a:b", "password": ""})).await,
        422,
        "invalid_credential",
    )
    .await;
    assert_eq!(bad["errors"].as_array().unwrap().len(), 2, "{bad}");

    // Listed and audited, never with a secret.
    let listed = p.admin(reqwest::Method::GET, "/admin/v1/credentials", STEWARD, None).await.text().await.unwrap();
    assert!(listed.contains("population_stored") && !listed.contains(&token), "{listed}");
    let trail = p.audit("resource=credentials/population_stored&limit=50").await;
    let records = trail["items"].as_array().unwrap();
    assert_eq!(records.len(), 6, "every change to it, allowed or refused: {trail}");
    let text = trail.to_string();
    for secret in [token.as_str(), "rotated-but-wrong", "secret-sent-bare"] {
        assert!(!text.contains(secret), "the trail holds no secret: {text}");
    }

    // A node whose configuration names a token for it keeps that one.
    let mut configured = settings.clone();
    configured.upstreams.insert(
        "population_stored".into(),
        lgsp::config::UpstreamSettings {
            url: p.mocks.url(RegistryKind::Population),
            token: lgsp::config::Secret::new("configured-and-wrong"),
        },
    );
    let third_base = TestApp::start_node(configured).await;
    let on_third: Value = p
        .client
        .get(format!("{third_base}/admin/v1/credentials"))
        .bearer_auth(STEWARD)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(on_third[0]["in_use"], false, "{on_third}");
    let status = p
        .client
        .post(format!("{third_base}/v1/exchange/residence_lookup/whereabouts"))
        .bearer_auth(&key)
        .header("X-Purpose", "residence_change")
        .json(&json!({"citizen_id": id}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 502, "the configured token, not the stored one");

    // A node without the key, or with another, refuses to start and says why.
    let mut keyless = settings.clone();
    keyless.credentials_key = lgsp::config::Secret::default();
    let e = Application::build(keyless).await.err().expect("refused").to_string();
    assert!(e.contains("population_stored") && e.contains("credentials_key"), "{e}");
    let mut other_key = settings;
    other_key.credentials_key = lgsp::config::Secret::new("11".repeat(32));
    let e = Application::build(other_key).await.err().expect("refused").to_string();
    assert!(e.contains("does not open"), "{e}");
}
