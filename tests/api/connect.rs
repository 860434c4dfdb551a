//! The promise to data stewards, end to end: a registry the binary has no
//! code or shipped manifest for (the national business-registration
//! database, over SOAP with login tokens) is connected through the admin
//! API with new elements, a stored credential, an adapter and a form, on one
//! node, and prefilled from on another, with no restart; then its
//! credential is rotated and the next call uses the new one, and replaced by
//! one of another kind (HTTP Basic). The documents
//! are the README walk-through's, in `adapters/connect/`.

use crate::helpers::*;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;

fn document(name: &str) -> Value {
    let path = format!("{}/adapters/connect/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test]
async fn a_steward_connects_the_business_registry_at_run_time_and_another_node_prefills_from_it() {
    let p = spawn_app_with(|s| s.catalog_refresh_ms = 100).await;
    let other_base = p.second_node().await;
    let steward = |method: reqwest::Method, path: &'static str, body: Value| {
        let app = &p;
        async move {
            let r = app.admin(method, path, STEWARD, Some(body)).await;
            let status = r.status().as_u16();
            assert!(status < 300, "{path}: {status} {}", r.text().await.unwrap());
        }
    };

    // Everything through the admin API, on the first node.
    for element in document("elements.json").as_array().unwrap() {
        steward(reqwest::Method::POST, "/admin/v1/elements", element.clone()).await;
    }
    let login = json!({"kind": "login", "username": "lgsp", "password": "business-dev-password"});
    steward(reqwest::Method::PUT, "/admin/v1/credentials/business_registry", login).await;
    let mut manifest = document("business_registry.json");
    manifest["upstream"]["base_url"] = json!(p.mocks.business.url());
    steward(reqwest::Method::POST, "/admin/v1/adapters", manifest).await;
    steward(reqwest::Method::POST, "/admin/v1/forms", document("household_business_change.json")).await;
    let grant = json!({"forms": ["household_business_change"], "purposes": ["household_business_change"],
                       "operations": ["business_registry.*", "population.*"], "elements": ["*"]});
    let key = p.partner("000.00.31.H29", grant, 600, 100).await;

    // An owner of an operating household business, and the other node's prefill.
    let state = &p.mocks.business.state;
    let business = state
        .businesses
        .iter()
        .find(|b| !b.enterprise && b.status == 1 && p.mocks.population.people[b.holder].is_alive())
        .unwrap()
        .clone();
    let owner = p.mocks.population.people[business.holder].id.to_string();
    let prefill = || async {
        let r = p
            .client
            .post(format!("{other_base}/v1/prefill"))
            .bearer_auth(&key)
            .json(&json!({"form": "household_business_change", "citizen_id": owner, "purpose": "household_business_change"}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap_or_default())
    };
    let prefilled = |answer: &Value| field(answer, "business_name")["status"] == "prefilled";
    let mut answer = Value::Null;
    for _ in 0..60 {
        let (status, a) = prefill().await;
        answer = a;
        if status == 200 && prefilled(&answer) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(prefilled(&answer), "the other node never prefilled from the new registry: {answer}");
    assert_eq!(field(&answer, "business_name")["value"], json!(business.name));
    assert_eq!(field(&answer, "household_business_code")["value"], json!(business.code));
    assert_eq!(field(&answer, "business_name")["source"], "business_registry.household_business");
    assert_eq!(field(&answer, "owner_name")["source"], "population.citizen", "both registries fill the form");
    let seat = &field(&answer, "business_seat")["value"];
    assert!(seat["ward_code"].as_str().is_some_and(|w| w.len() == 5), "normalised to the 2025 units: {seat}");
    let lines = field(&answer, "business_lines")["value"].as_array().unwrap().clone();
    assert_eq!(lines.len(), business.lines.len(), "{lines:?}");
    assert_eq!(lines[0]["main"], true);
    assert!(answer["coverage"]["cut"].as_f64().unwrap() >= 0.2, "{}", answer["coverage"]);
    // The token is reused, not fetched per call.
    assert_eq!(prefill().await.0, 200);
    assert_eq!(state.logins.load(Ordering::Relaxed), 1, "one login for both prefills");

    // The registry changes lgsp's password and drops its tokens: the source
    // fails (its login is refused) until the steward rotates the credential.
    state.config.write().password = "rotated-password".into();
    state.revoke_tokens();
    let (status, failing) = prefill().await;
    assert_eq!(status, 200);
    assert_eq!(source(&failing, "business_registry.household_business")["status"], "unavailable", "{failing}");
    assert_eq!(field(&failing, "owner_name")["status"], "prefilled", "the population database still answers");
    let rotated = json!({"kind": "login", "username": "lgsp", "password": "rotated-password"});
    steward(reqwest::Method::PUT, "/admin/v1/credentials/business_registry", rotated).await;
    let prefills = || async { prefilled(&prefill().await.1) };
    assert!(eventually(prefills).await, "the rotated credential was never used");
    assert_eq!(state.logins.load(Ordering::Relaxed), 2, "one new login, with the new password");

    // The registry takes HTTP Basic from servers too: a credential of that
    // kind is presented on each call, with no login.
    let basic = json!({"kind": "basic", "username": "lgsp", "password": "rotated-password"});
    steward(reqwest::Method::PUT, "/admin/v1/credentials/business_registry", basic).await;
    // Once the other node holds it, the tokens issued so far are of no use.
    let holds_basic = || async {
        let r = p.client.get(format!("{other_base}/admin/v1/credentials")).bearer_auth(STEWARD).send().await.unwrap();
        r.json::<Value>().await.unwrap()[0]["kind"] == "basic"
    };
    eventually(holds_basic).await;
    state.revoke_tokens();
    assert!(eventually(prefills).await, "the basic credential was never used");
    assert_eq!(state.logins.load(Ordering::Relaxed), 2, "no login with HTTP Basic");
}
