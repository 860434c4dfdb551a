//! What a partner may do: its grant (forms, purposes, operations, elements),
//! its networks, its quota, and citizens' access logs.

use crate::helpers::*;
use serde_json::{json, Value};

#[tokio::test]
async fn sensitive_personal_data_is_marked_in_answers_and_in_the_audit_trail() {
    let p = spawn_app().await;
    let partner = "000.00.27.H29";
    let mut policy = everything();
    policy["elements"] = json!(["*", "ethnicity", "religion"]);
    let key = p.partner(partner, policy, 600, 100).await;
    let samples = p.mocks.population.samples(1);
    let adult = samples.adult_with_household[0].clone();
    let parent = samples.parent_of_newborn[0].clone();

    // A partner sees which elements of an operation are sensitive before calling it.
    let citizen = p.listed_operation(&key, "population", "citizen").await;
    assert!(citizen["sensitive"].as_array().unwrap().contains(&json!("ethnicity")), "{citizen}");
    assert!(!citizen["sensitive"].as_array().unwrap().contains(&json!("full_name")));

    // An exchange names the sensitive elements it sends.
    let a: Value = p.exchange(&key, "population", "citizen", json!({"citizen_id": adult})).await.json().await.unwrap();
    let sent: Vec<&str> = a["elements"].as_object().unwrap().keys().map(String::as_str).collect();
    assert!(sent.contains(&"ethnicity") && sent.contains(&"full_name"), "{a}");
    let expected: Vec<&str> = sent.iter().copied().filter(|e| ["ethnicity", "religion"].contains(e)).collect();
    assert_eq!(a["sensitive"], json!(expected), "{a}");

    // A prefill classifies every bound field, a relative's too.
    let f: Value = p.prefill(&key, "birth_registration", "birth_registration", &parent).await.json().await.unwrap();
    let fields = f["fields"].as_array().unwrap();
    for field in fields.iter().filter(|x| x["element"].is_string()) {
        let sensitive = ["ethnicity", "religion"].contains(&field["element"].as_str().unwrap());
        assert_eq!(field["classification"], if sensitive { "sensitive" } else { "basic" }, "{field}");
    }
    assert!(fields.iter().any(|x| x["classification"] == "sensitive" && x["status"] == "prefilled"), "{f}");
    assert!(fields.iter().filter(|x| x["element"].is_null()).all(|x| x["classification"].is_null()));

    // The audit trail says who received sensitive data.
    let page = p.audit(&format!("partner_id={partner}")).await;
    let records = page["items"].as_array().unwrap();
    let exchange = records.iter().find(|r| r["action"] == "exchange").unwrap();
    assert_eq!(exchange["detail"]["sensitive"], json!(expected), "{exchange}");
    let prefill = records.iter().find(|r| r["action"] == "prefill").unwrap();
    let released: Vec<&str> = prefill["elements"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    let marked: Vec<&str> =
        released.iter().copied().filter(|e| e.ends_with("ethnicity") || e.ends_with("religion")).collect();
    assert!(!marked.is_empty());
    assert_eq!(prefill["detail"]["sensitive"], json!(marked), "{prefill}");

    // The citizen's access log points them out too.
    let log = p.access_log(&key, &parent).await;
    assert_eq!(log[0]["sensitive"], json!(marked), "{log}");
    let log = p.access_log(&key, &adult).await;
    assert_eq!(log[0]["sensitive"], json!(expected), "{log}");
}

#[tokio::test]
async fn a_wildcard_grant_withholds_sensitive_data_until_it_is_granted_by_name() {
    let p = spawn_app().await;
    let partner = "000.00.28.H29";
    let key = p.partner(partner, everything(), 600, 100).await;
    let samples = p.mocks.population.samples(1);
    let adult = samples.adult_with_household[0].clone();
    let parent = samples.parent_of_newborn[0].clone();

    // Before calling, the partner sees that it would not receive them.
    let citizen = p.listed_operation(&key, "population", "citizen").await;
    let listed: Vec<&str> = citizen["elements"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    assert!(listed.contains(&"full_name") && !listed.contains(&"ethnicity"), "{citizen}");
    assert_eq!(citizen["sensitive"], json!([]), "{citizen}");

    // An exchange maps the basic elements and names the sensitive ones withheld.
    let a: Value = p.exchange(&key, "population", "citizen", json!({"citizen_id": adult})).await.json().await.unwrap();
    let sent = a["elements"].as_object().unwrap();
    assert!(sent.contains_key("full_name") && sent.contains_key("permanent_residence"), "{a}");
    assert!(!sent.contains_key("ethnicity") && !sent.contains_key("religion"), "{a}");
    let withheld: Vec<&str> = a["withheld"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    assert!(withheld.contains(&"ethnicity") && withheld.contains(&"religion"), "{a}");
    assert!(a.get("sensitive").is_none(), "{a}");

    // A prefill marks the form's sensitive fields not permitted and fetches the rest.
    let f: Value = p.prefill(&key, "birth_registration", "birth_registration", &parent).await.json().await.unwrap();
    let fields = f["fields"].as_array().unwrap();
    let sensitive: Vec<&Value> = fields.iter().filter(|x| x["classification"] == "sensitive").collect();
    assert!(!sensitive.is_empty(), "{f}");
    assert!(sensitive.iter().all(|x| x["status"] == "unavailable" && x["reason"] == "not_permitted"), "{f}");
    assert!(fields.iter().any(|x| x["classification"] == "basic" && x["status"] == "prefilled"), "{f}");

    // Granted by name, they are released.
    let mut policy = everything();
    policy["elements"] = json!(["*", "ethnicity"]);
    let r = p
        .admin(
            reqwest::Method::PATCH,
            &format!("/admin/v1/partners/{partner}"),
            STEWARD,
            Some(json!({"policy": policy})),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let a: Value = p.exchange(&key, "population", "citizen", json!({"citizen_id": adult})).await.json().await.unwrap();
    assert!(a["elements"].get("ethnicity").is_some(), "{a}");
    assert_eq!(a["withheld"], json!(["religion"]), "{a}");
    assert_eq!(a["sensitive"], json!(["ethnicity"]), "{a}");
}

#[tokio::test]
async fn a_partner_limited_to_its_networks_is_refused_elsewhere_and_the_refusal_is_audited() {
    let trusted_proxy = "127.0.0.1/32".parse().unwrap();
    let p = spawn_app_with(|s| s.trusted_proxies = vec![trusted_proxy]).await;
    let id = p.mocks.population.samples(1).adult_with_household[0].clone();
    let mut policy = everything();
    policy["networks"] = json!(["203.0.113.0/24"]);
    let partner = "000.00.33.H29";
    let key = p.partner(partner, policy, 600, 100).await;
    let exchange_from = |forwarded: Option<&'static str>| {
        let mut r = p
            .client
            .post(p.url("/v1/exchange/population/citizen"))
            .bearer_auth(&key)
            .header("X-Purpose", "residence_change")
            .json(&json!({"citizen_id": id}));
        if let Some(f) = forwarded {
            r = r.header("X-Forwarded-For", f);
        }
        r.send()
    };

    // Straight from loopback, outside the partner's network: refused, saying from where.
    let problem = assert_problem(exchange_from(None).await.unwrap(), 403, "forbidden").await;
    assert!(problem["detail"].as_str().unwrap().contains("127.0.0.1"), "{problem}");
    // Through the trusted proxy, from the partner's network: served.
    assert_eq!(exchange_from(Some("203.0.113.9")).await.unwrap().status(), 200);
    // A client cannot claim the network in a header the proxy passes on.
    let r = exchange_from(Some("203.0.113.9, 198.51.100.4")).await.unwrap();
    let problem = assert_problem(r, 403, "forbidden").await;
    assert!(problem["detail"].as_str().unwrap().contains("198.51.100.4"), "{problem}");

    // So are its reads of forms and adapters.
    let r = p.client.get(p.url("/v1/forms")).bearer_auth(&key).send().await.unwrap();
    assert_problem(r, 403, "forbidden").await;
    let r = p.client.get(p.url("/v1/forms")).bearer_auth(&key).header("X-Forwarded-For", "203.0.113.9").send().await;
    assert_eq!(r.unwrap().status(), 200);

    // Each refusal is in the audit trail under the partner, with its reason.
    let page = p.audit(&format!("partner_id={partner}")).await;
    let records = page["items"].as_array().unwrap();
    assert_eq!(records.len(), 3, "{page}");
    let refused: Vec<&Value> = records.iter().filter(|r| r["outcome"] == "refused").collect();
    assert_eq!(refused.len(), 2, "{page}");
    assert!(refused.iter().all(|r| r["status"] == 403 && r["detail"]["reason"].as_str().unwrap().contains("networks")));

    // A network that is not one is refused when the partner is registered.
    let body = json!({"id": "000.00.34.H29", "name": "Agency", "kind": "state_agency",
                      "policy": {"networks": ["203.0.113.0/33"]}, "rate_per_minute": 60, "burst": 10});
    let r = p.admin(reqwest::Method::POST, "/admin/v1/partners", STEWARD, Some(body)).await;
    let problem = assert_problem(r, 422, "invalid_partner").await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("\"203.0.113.0/33\" is not a network") && detail.contains("CIDR"), "{problem}");
}

#[tokio::test]
async fn the_admin_api_answers_only_its_networks() {
    let trusted_proxy = "127.0.0.1/32".parse().unwrap();
    let admin_network = "10.20.0.0/16".parse().unwrap();
    let p = spawn_app_with(|s| {
        s.trusted_proxies = vec![trusted_proxy];
        s.admin_networks = vec![admin_network];
    })
    .await;
    let get = |token: &'static str, forwarded: Option<&'static str>| {
        let mut r = p.client.get(p.url("/admin/v1/partners")).bearer_auth(token);
        if let Some(f) = forwarded {
            r = r.header("X-Forwarded-For", f);
        }
        r.send()
    };
    // From elsewhere: refused before the token is looked at, a valid one or not.
    for token in [STEWARD, "not-a-token"] {
        let problem = assert_problem(get(token, None).await.unwrap(), 403, "forbidden").await;
        assert!(problem["detail"].as_str().unwrap().contains("admin_networks"), "{problem}");
    }
    let r = p.client.get(p.url("/admin/v1/audit")).bearer_auth(AUDITOR).send().await.unwrap();
    assert_problem(r, 403, "forbidden").await;
    // From the admin network, through the trusted proxy: the token decides.
    assert_eq!(get(STEWARD, Some("10.20.3.4")).await.unwrap().status(), 200);
    assert_problem(get("not-a-token", Some("10.20.3.4")).await.unwrap(), 401, "unauthorized").await;
    // The partner API and the operations endpoints are not affected.
    assert_eq!(p.client.get(p.url("/healthz")).send().await.unwrap().status(), 200);
    let r = p.client.get(p.url("/v1/forms")).send().await.unwrap();
    assert_problem(r, 401, "unauthorized").await;
}

#[tokio::test]
async fn a_citizens_access_log_pages_through_every_access_and_leaves_out_refusals() {
    let p = spawn_app().await;
    let key = p.partner("000.00.35.H29", everything(), 600, 100).await;
    let id = p.mocks.population.samples(1).adult_with_household[0].clone();
    for _ in 0..5 {
        assert_eq!(p.prefill(&key, "ct01", "residence_change", &id).await.status(), 200);
    }
    // A refused call (a purpose the form does not serve) is not an access to show.
    assert_eq!(p.prefill(&key, "ct01", "no_such_purpose", &id).await.status(), 422);
    let trail = p.audit(&format!("subject={id}")).await;
    assert_eq!(trail["items"].as_array().unwrap().len(), 6, "the refusal is in the trail under the citizen: {trail}");

    let mut url = format!("/v1/subjects/{id}/access-log?limit=2");
    let (mut times, mut pages) = (Vec::new(), 0);
    loop {
        let r = p.client.get(p.url(&url)).bearer_auth(&key).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let next = r.headers().get("link").map(|l| l.to_str().unwrap().to_string());
        let page: Value = r.json().await.unwrap();
        pages += 1;
        for e in page.as_array().unwrap() {
            assert_eq!(e["outcome"], "ok", "{e}");
            times.push(e["time"].as_str().unwrap().to_string());
        }
        let Some(link) = next else { break };
        assert!(link.ends_with("rel=\"next\""), "{link}");
        url = link[1..link.find('>').unwrap()].to_string();
    }
    assert_eq!((times.len(), pages), (5, 3), "every access, two a page");
    let mut newest_first = times.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, newest_first);

    let r = p.client.get(p.url(&format!("/v1/subjects/{id}/access-log?limit=0"))).bearer_auth(&key).send().await;
    assert_problem(r.unwrap(), 400, "invalid_parameter").await;
    let r = p.client.get(p.url(&format!("/v1/subjects/{id}/access-log?cursor=abc"))).bearer_auth(&key).send().await;
    assert_problem(r.unwrap(), 400, "invalid_parameter").await;
}

#[tokio::test]
async fn reading_a_citizens_access_log_is_an_audited_access_that_needs_consent_where_the_partner_does() {
    let p = spawn_app().await;
    let portal = p.partner("000.00.37.H29", everything(), 600, 100).await;
    let bank = p.partner("000.00.38.H29", everything(), 600, 100).await;
    let r = p
        .admin(
            reqwest::Method::PATCH,
            "/admin/v1/partners/000.00.38.H29",
            STEWARD,
            Some(json!({"kind": "consent_required"})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let id = p.mocks.population.samples(1).adult_with_household[0].clone();
    assert_eq!(p.prefill(&portal, "ct01", "residence_change", &id).await.status(), 200);
    let log = p.access_log(&portal, &id).await;
    assert_eq!(log.as_array().unwrap().len(), 1, "{log}");

    let url = p.url(&format!("/v1/subjects/{id}/access-log"));
    let r = p.client.get(&url).bearer_auth(&bank).send().await.unwrap();
    assert_problem(r, 403, "forbidden").await;
    let r =
        p.client.get(&url).bearer_auth(&bank).header("X-Consent-Reference", "VNeID-2026-000123").send().await.unwrap();
    assert_eq!(r.status(), 200);

    // The citizen sees who read their log, as any other access.
    let log = p.access_log(&portal, &id).await;
    let reads: Vec<&Value> = log.as_array().unwrap().iter().filter(|e| e["action"] == "access_log").collect();
    let readers: Vec<&str> = reads.iter().map(|e| e["agency_id"].as_str().unwrap()).collect();
    assert_eq!(readers, ["000.00.38.H29", "000.00.37.H29"], "newest first, the refused read left out: {log}");
    // And the auditor sees every read, the refused one too, with the consent cited.
    let trail = p.audit(&format!("action=access_log&subject={id}")).await;
    let items = trail["items"].as_array().unwrap();
    assert_eq!(items.len(), 4, "two reads by the portal, two by the bank: {trail}");
    assert_eq!(items.iter().filter(|i| i["outcome"] == "refused").count(), 1, "{trail}");
    assert!(items.iter().any(|i| i["detail"]["consent_reference"] == "VNeID-2026-000123"), "{trail}");
}

#[tokio::test]
async fn a_partner_is_bounded_and_a_wildcard_purpose_covers_the_catalogues_procedures_only() {
    let p = spawn_app().await;
    let id = p.mocks.population.samples(1).adult_with_household[0].clone();
    let key = p.partner("000.00.39.H29", everything(), 600, 100).await;
    // A purpose the catalogue's forms serve passes the wildcard; a made-up one does not.
    assert_eq!(p.exchange(&key, "population", "citizen", json!({"citizen_id": id})).await.status(), 200);
    let r = p.exchange_for("marketing_campaign", &key, "population", "citizen", json!({"citizen_id": id})).await;
    let problem = assert_problem(r, 403, "forbidden").await;
    assert!(problem["detail"].as_str().unwrap().contains("not a procedure lgsp knows"), "{problem}");
    // Granted by name, it is the steward's word.
    let mut policy = everything();
    policy["purposes"] = json!(["marketing_campaign"]);
    let path = "/admin/v1/partners/000.00.39.H29";
    assert_eq!(p.admin(reqwest::Method::PATCH, path, STEWARD, Some(json!({"policy": policy}))).await.status(), 200);
    let r = p.exchange_for("marketing_campaign", &key, "population", "citizen", json!({"citizen_id": id})).await;
    assert_eq!(r.status(), 200);

    // A name, and the entries of a policy, have bounds.
    let long_name = json!({"name": "x".repeat(201)});
    let problem =
        assert_problem(p.admin(reqwest::Method::PATCH, path, STEWARD, Some(long_name)).await, 422, "invalid_partner")
            .await;
    assert_eq!(problem["errors"][0]["pointer"], "/name", "{problem}");
    let mut policy = everything();
    policy["purposes"] = json!(["y".repeat(101)]);
    let r = p.admin(reqwest::Method::PATCH, path, STEWARD, Some(json!({"policy": policy}))).await;
    let problem = assert_problem(r, 422, "invalid_partner").await;
    assert_eq!(problem["errors"][0]["pointer"], "/policy/purposes", "{problem}");
    // A whole number is a whole number however it is written.
    let r = p.admin(reqwest::Method::PATCH, path, STEWARD, Some(json!({"rate_per_minute": 1200.0}))).await;
    assert_eq!(r.status(), 200);
    let partner: Value = r.json().await.unwrap();
    assert_eq!(partner["rate_per_minute"], 1200);
    let r = p.admin(reqwest::Method::PATCH, path, STEWARD, Some(json!({"burst": 1.5}))).await;
    assert_problem(r, 422, "invalid_partner").await;
}

#[tokio::test]
async fn a_limited_partner_gets_its_quota_and_no_more_while_another_is_unaffected() {
    let p = spawn_app().await;
    let id = p.mocks.population.samples(1).adult_with_household[0].clone();
    let limited = p.partner("000.00.24.H29", everything(), 60, 3).await;
    let other = p.partner("000.00.25.H29", everything(), 6000, 100).await;
    let mut statuses = Vec::new();
    let mut refused = None;
    for _ in 0..6 {
        let r = p.exchange(&limited, "population", "citizen", json!({"citizen_id": id})).await;
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            refused = Some(r);
        }
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429]);
    let r = refused.unwrap();
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1, "Retry-After is whole seconds, never 0");
    assert!(r.headers()["ratelimit-policy"].to_str().unwrap().contains("q=60"));
    assert!(r.headers()["ratelimit"].to_str().unwrap().contains("r=0"));
    assert_problem(r, 429, "rate_limited").await;
    for _ in 0..10 {
        assert_eq!(p.exchange(&other, "population", "citizen", json!({"citizen_id": id})).await.status(), 200);
    }
    // A new quota takes effect at once.
    let r =
        p.admin(reqwest::Method::PATCH, "/admin/v1/partners/000.00.24.H29", STEWARD, Some(json!({"burst": 50}))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(p.exchange(&limited, "population", "citizen", json!({"citizen_id": id})).await.status(), 200);
}
