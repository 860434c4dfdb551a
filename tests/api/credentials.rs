//! Partners' API keys and admin tokens: made, listed, expired, rotated and revoked.

use crate::helpers::*;
use serde_json::{json, Value};

#[tokio::test]
async fn keys_expire_and_a_rotated_key_can_stay_valid_for_a_grace_period() {
    let p = spawn_app().await;
    let id = p.mocks.population.samples(1).adult_with_household[0].clone();
    let partner = "000.00.24.H29";
    let first = p.partner(partner, everything(), 600, 100).await;
    let keys_path = format!("/admin/v1/partners/{partner}/keys");
    let call = |key: String| {
        let id = id.clone();
        let p = &p;
        async move { p.exchange(&key, "population", "citizen", json!({"citizen_id": id})).await }
    };

    // An expiry must be a time, and in the future.
    for bad in ["next week", "2020-01-01T00:00:00Z"] {
        let r = p.admin(reqwest::Method::POST, &keys_path, STEWARD, Some(json!({"expires_at": bad}))).await;
        let body = assert_problem(r, 422, "invalid_body").await;
        assert_eq!(body["errors"][0]["pointer"], "/expires_at", "{body}");
    }

    // A key that expires soon works until then, and is listed with its expiry.
    let soon = jiff::Timestamp::now() + jiff::SignedDuration::from_millis(1500);
    let r = p
        .admin(
            reqwest::Method::POST,
            &keys_path,
            STEWARD,
            Some(json!({"label": "short", "expires_at": soon.to_string()})),
        )
        .await;
    assert_eq!(r.status(), 201);
    let short: Value = r.json().await.unwrap();
    assert!(short["expires_at"].is_string(), "{short}");
    let short_key = short["key"].as_str().unwrap().to_string();
    assert_eq!(call(short_key.clone()).await.status(), 200);
    // Monitoring can warn before a key stops working.
    let metrics = p.client.get(p.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let series = format!(
        "lgsp_api_key_expiry_timestamp_seconds{{key=\"{}\",partner=\"{partner}\"}} {}",
        short["id"].as_str().unwrap(),
        soon.as_second()
    );
    assert!(metrics.contains(&series), "{series} not in the metrics");
    assert_eq!(
        metrics.matches("lgsp_api_key_expiry_timestamp_seconds{").count(),
        1,
        "keys without expiry have no series"
    );

    // Rotation with a grace period: old and new keys both work meanwhile.
    let keys: Value = p.admin(reqwest::Method::GET, &keys_path, STEWARD, None).await.json().await.unwrap();
    let first_id = keys[0]["id"].as_str().unwrap().to_string();
    let rotate = format!("{keys_path}/{first_id}/rotate");
    let r = p.admin(reqwest::Method::POST, &rotate, STEWARD, Some(json!({"grace_seconds": 40 * 24 * 3600}))).await;
    assert_problem(r, 422, "invalid_body").await;
    let r = p.admin(reqwest::Method::POST, &rotate, STEWARD, Some(json!({"grace_seconds": 3600}))).await;
    assert_eq!(r.status(), 201);
    let second = r.json::<Value>().await.unwrap()["key"].as_str().unwrap().to_string();
    assert_eq!(call(first.clone()).await.status(), 200, "the old key works during the grace period");
    assert_eq!(call(second.clone()).await.status(), 200, "the new key works at once");
    let keys: Value = p.admin(reqwest::Method::GET, &keys_path, STEWARD, None).await.json().await.unwrap();
    let old = keys.as_array().unwrap().iter().find(|k| k["id"] == first_id.as_str()).unwrap();
    assert_eq!(old["state"], "live", "{old}");
    let ends: jiff::Timestamp = old["expires_at"].as_str().unwrap().parse().unwrap();
    let left = ends.duration_since(jiff::Timestamp::now()).as_secs();
    assert!((3500..=3600).contains(&left), "the old key ends with the grace period: {left} s left");

    // Past its expiry the short key is refused, and says why.
    let wait = soon.duration_since(jiff::Timestamp::now()).as_millis().max(0) as u64 + 100;
    tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
    let body = assert_problem(call(short_key).await, 401, "unauthorized").await;
    assert!(body["detail"].as_str().unwrap().contains("expired"), "{body}");
    let keys: Value = p.admin(reqwest::Method::GET, &keys_path, STEWARD, None).await.json().await.unwrap();
    let states: Vec<&str> = keys.as_array().unwrap().iter().map(|k| k["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["live", "expired", "live"], "{keys}");
    assert_eq!(call(second).await.status(), 200, "other keys are untouched");
}

#[tokio::test]
async fn a_keys_last_use_is_listed_and_stored_for_every_node() {
    let p = spawn_app().await;
    let id = p.mocks.population.samples(1).adult_with_household[0].clone();
    let partner = "000.00.26.H29";
    let used = p.partner(partner, everything(), 600, 100).await;
    let (idle_id, _) = p.key(partner).await;
    let before = jiff::Timestamp::now();
    assert_eq!(p.exchange(&used, "population", "citizen", json!({"citizen_id": id})).await.status(), 200);

    let keys: Value = p
        .admin(reqwest::Method::GET, &format!("/admin/v1/partners/{partner}/keys"), STEWARD, None)
        .await
        .json()
        .await
        .unwrap();
    let used_info = keys.as_array().unwrap().iter().find(|k| k["id"] != idle_id.as_str()).unwrap();
    let at: jiff::Timestamp = used_info["last_used_at"].as_str().expect("the used key has a last use").parse().unwrap();
    assert!(at >= before && at <= jiff::Timestamp::now(), "{at}");
    let idle = keys.as_array().unwrap().iter().find(|k| k["id"] == idle_id.as_str()).unwrap();
    assert!(idle["last_used_at"].is_null(), "a key never presented has no last use: {idle}");

    // Stored for the other nodes (the gateway does this once a minute and at shutdown).
    assert_eq!(p.state.catalog.store_key_use().await.unwrap(), 2, "the used key and the steward's token");
    assert_eq!(p.state.catalog.store_key_use().await.unwrap(), 0, "nothing new to store");
    let rows = p.state.db.run(move |c| lgsp::catalog::store::keys_of(c, partner)).await.unwrap();
    let stored: Vec<Option<i64>> = rows.iter().map(|r| r.last_used_at).collect();
    assert_eq!(stored.iter().filter(|s| s.is_some()).count(), 1, "{stored:?}");
    assert_eq!(stored.iter().flatten().next().copied(), Some(at.as_microsecond()));
}

#[tokio::test]
async fn an_admin_tokens_last_use_is_listed_and_stored_for_every_node() {
    let p = spawn_app().await;
    let post = |label: &str| {
        p.admin(reqwest::Method::POST, "/admin/v1/tokens", STEWARD, Some(json!({"role": "auditor", "label": label})))
    };
    let idle: Value = post("idle").await.json().await.unwrap();
    let used: Value = post("inspection").await.json().await.unwrap();
    let before = jiff::Timestamp::now();
    let r = p.admin(reqwest::Method::GET, "/admin/v1/audit", used["token"].as_str().unwrap(), None).await;
    assert_eq!(r.status(), 200);

    let tokens: Value = p.admin(reqwest::Method::GET, "/admin/v1/tokens", STEWARD, None).await.json().await.unwrap();
    let info = |id: &Value| tokens.as_array().unwrap().iter().find(|t| t["id"] == *id).unwrap().clone();
    let at: jiff::Timestamp =
        info(&used["id"])["last_used_at"].as_str().expect("the used token has a last use").parse().unwrap();
    assert!(at >= before && at <= jiff::Timestamp::now(), "{at}");
    assert!(info(&idle["id"])["last_used_at"].is_null(), "a token never presented has no last use: {tokens}");

    // Stored for the other nodes, and read back after a reload.
    assert!(p.state.catalog.store_key_use().await.unwrap() >= 1);
    let rows = p.state.db.run(lgsp::catalog::store::all_admin_tokens).await.unwrap();
    let stored = |id: &Value| rows.iter().find(|r| r.id == id.as_str().unwrap()).unwrap().last_used_at;
    assert_eq!(stored(&used["id"]), Some(at.as_microsecond()));
    assert_eq!(stored(&idle["id"]), None);
    p.state.catalog.reload().await.unwrap();
    let again: Value = p.admin(reqwest::Method::GET, "/admin/v1/tokens", STEWARD, None).await.json().await.unwrap();
    let listed = again.as_array().unwrap().iter().find(|t| t["id"] == used["id"]).unwrap()["last_used_at"].clone();
    assert_eq!(listed, info(&used["id"])["last_used_at"]);
}

#[tokio::test]
async fn a_key_rotated_twice_at_once_is_replaced_once() {
    let p = spawn_app().await;
    let partner = "000.00.29.H29";
    p.partner(partner, everything(), 600, 100).await;
    let (old_id, _) = p.key(partner).await;
    let rotate = format!("/admin/v1/partners/{partner}/keys/{old_id}/rotate");
    for round in 0..5 {
        let (a, b) = tokio::join!(
            p.admin(reqwest::Method::POST, &rotate, STEWARD, None),
            p.admin(reqwest::Method::POST, &rotate, STEWARD, None)
        );
        let mut statuses = [a.status().as_u16(), b.status().as_u16()];
        statuses.sort();
        if round == 0 {
            assert_eq!(statuses, [201, 404], "one rotation replaces the key; the other finds it gone");
        } else {
            assert_eq!(statuses, [404, 404], "the old key stays revoked");
        }
    }
    // No key was made that nobody was shown.
    let keys: Value = p
        .admin(reqwest::Method::GET, &format!("/admin/v1/partners/{partner}/keys"), STEWARD, None)
        .await
        .json()
        .await
        .unwrap();
    let states: Vec<&str> = keys.as_array().unwrap().iter().map(|k| k["state"].as_str().unwrap()).collect();
    assert_eq!(states.len(), 3, "{keys}");
    assert_eq!(states.iter().filter(|s| **s == "live").count(), 2, "the partner's first key and the new one: {keys}");
}

#[tokio::test]
async fn keys_rotate_and_revoke_at_once() {
    let p = spawn_app().await;
    let id = p.mocks.population.samples(1).adult_with_household[0].clone();
    let first = p.partner("000.00.23.H29", everything(), 600, 100).await;
    let (second_id, second) = p.key("000.00.23.H29").await;
    for k in [&first, &second] {
        assert_eq!(p.exchange(k, "population", "citizen", json!({"citizen_id": id})).await.status(), 200);
    }
    let r = p
        .admin(
            reqwest::Method::POST,
            &format!("/admin/v1/partners/000.00.23.H29/keys/{second_id}/rotate"),
            STEWARD,
            None,
        )
        .await;
    assert_eq!(r.status(), 201);
    let rotated: Value = r.json().await.unwrap();
    let third = rotated["key"].as_str().unwrap();
    assert_problem(p.exchange(&second, "population", "citizen", json!({"citizen_id": id})).await, 401, "unauthorized")
        .await;
    assert_eq!(p.exchange(third, "population", "citizen", json!({"citizen_id": id})).await.status(), 200);
    let keys: Value = p
        .admin(reqwest::Method::GET, "/admin/v1/partners/000.00.23.H29/keys", STEWARD, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(keys.as_array().unwrap().len(), 3);
    assert!(keys.to_string().find(&first[8..]).is_none(), "no secret is ever listed");
    let first_id = keys[0]["id"].as_str().unwrap();
    let r = p
        .admin(reqwest::Method::DELETE, &format!("/admin/v1/partners/000.00.23.H29/keys/{first_id}"), STEWARD, None)
        .await;
    assert_eq!(r.status(), 204);
    assert_problem(p.exchange(&first, "population", "citizen", json!({"citizen_id": id})).await, 401, "unauthorized")
        .await;

    // Bad partner definitions are refused with what to fix.
    let r = p
        .admin(
            reqwest::Method::POST,
            "/admin/v1/partners",
            STEWARD,
            Some(json!({"id": "H29", "name": "x", "kind": "state_agency", "rate_per_minute": 0, "burst": 1,
                           "policy": {"elements": ["shoe_size"]}})),
        )
        .await;
    let problem = assert_problem(r, 422, "invalid_partner").await;
    let pointers: Vec<&str> =
        problem["errors"].as_array().unwrap().iter().map(|e| e["pointer"].as_str().unwrap()).collect();
    assert_eq!(pointers, ["/id", "/rate_per_minute", "/policy/elements"]);
}

#[tokio::test]
async fn stewards_make_and_revoke_admin_tokens_but_never_the_last_steward_one() {
    let p = spawn_app().await;
    let post = |token: &'static str, body: Value| p.admin(reqwest::Method::POST, "/admin/v1/tokens", token, Some(body));
    assert_problem(post(AUDITOR, json!({"role": "auditor"})).await, 403, "forbidden").await;
    assert_problem(post(STEWARD, json!({"role": "root"})).await, 422, "invalid_body").await;
    let key = p.partner("000.00.32.H29", everything(), 600, 100).await;
    let r = p.client.post(p.url("/admin/v1/tokens")).bearer_auth(&key).json(&json!({"role": "steward"})).send().await;
    assert_problem(r.unwrap(), 401, "unauthorized").await;

    // An auditor token, shown once, works at once, and is revoked at once.
    let r = post(STEWARD, json!({"role": "auditor", "label": "inspection 2026"})).await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let made: Value = r.json().await.unwrap();
    let (auditor_id, auditor) = (made["id"].as_str().unwrap(), made["token"].as_str().unwrap());
    assert!(auditor.starts_with("lgsp_at_"));
    assert_eq!(p.admin(reqwest::Method::GET, "/admin/v1/audit", auditor, None).await.status(), 200);
    let list = p.admin(reqwest::Method::GET, "/admin/v1/tokens", STEWARD, None).await.text().await.unwrap();
    assert!(list.contains(auditor_id) && list.contains("inspection 2026") && !list.contains(&auditor[8..]), "{list}");
    let r = p.admin(reqwest::Method::DELETE, &format!("/admin/v1/tokens/{auditor_id}"), STEWARD, None).await;
    assert_eq!(r.status(), 204);
    assert_problem(p.admin(reqwest::Method::GET, "/admin/v1/audit", auditor, None).await, 401, "unauthorized").await;

    // Hand over to a new steward token; the old one stops working; the last one cannot go.
    let made: Value = post(STEWARD, json!({"role": "steward"})).await.json().await.unwrap();
    let (new_id, new_steward) = (made["id"].as_str().unwrap().to_string(), made["token"].as_str().unwrap().to_string());
    let tokens: Value =
        p.admin(reqwest::Method::GET, "/admin/v1/tokens", &new_steward, None).await.json().await.unwrap();
    let bootstrap =
        tokens.as_array().unwrap().iter().find(|t| t["role"] == "steward" && t["label"] == "bootstrap").unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
    let r = p.admin(reqwest::Method::DELETE, &format!("/admin/v1/tokens/{bootstrap}"), &new_steward, None).await;
    assert_eq!(r.status(), 204);
    assert_problem(p.admin(reqwest::Method::GET, "/admin/v1/tokens", STEWARD, None).await, 401, "unauthorized").await;
    let r = p.admin(reqwest::Method::DELETE, &format!("/admin/v1/tokens/{new_id}"), &new_steward, None).await;
    let problem = assert_problem(r, 409, "conflict").await;
    assert!(problem["detail"].as_str().unwrap().contains("last live steward token"), "{problem}");
    let r = p.admin(reqwest::Method::DELETE, "/admin/v1/tokens/adm_nosuchtoken", &new_steward, None).await;
    assert_problem(r, 404, "not_found").await;
}

#[tokio::test]
async fn admin_tokens_may_expire_and_an_expiring_steward_token_never_counts_as_the_last() {
    let p = spawn_app().await;
    let post = |body: Value| p.admin(reqwest::Method::POST, "/admin/v1/tokens", STEWARD, Some(body));
    let r = post(json!({"role": "auditor", "expires_at": "2020-01-01T00:00:00Z"})).await;
    let problem = assert_problem(r, 422, "invalid_body").await;
    assert_eq!(problem["errors"][0]["pointer"], "/expires_at", "{problem}");
    assert_problem(post(json!({"role": "auditor", "expires_at": "next week"})).await, 422, "invalid_body").await;

    // An auditor engaged for a fixed time: the token works until its expiry.
    let soon = jiff::Timestamp::now() + jiff::SignedDuration::from_millis(1500);
    let r = post(json!({"role": "auditor", "label": "external audit", "expires_at": soon.to_string()})).await;
    assert_eq!(r.status(), 201);
    let made: Value = r.json().await.unwrap();
    let (auditor_id, auditor) = (made["id"].as_str().unwrap().to_string(), made["token"].as_str().unwrap().to_string());
    let ends: jiff::Timestamp = made["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(ends.as_millisecond(), soon.as_millisecond());
    assert_eq!(p.admin(reqwest::Method::GET, "/admin/v1/audit", &auditor, None).await.status(), 200);
    let metrics = p.client.get(p.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let series = format!(
        "lgsp_admin_token_expiry_timestamp_seconds{{role=\"auditor\",token=\"{auditor_id}\"}} {}",
        soon.as_second()
    );
    assert!(metrics.contains(&series), "monitoring can warn before it stops working: {metrics}");
    assert_eq!(
        metrics.matches("lgsp_admin_token_expiry_timestamp_seconds{").count(),
        1,
        "tokens without expiry have none"
    );

    // A steward token that expires does not stand in for the last one that does not.
    let soon_steward = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1)).to_string();
    let made: Value = post(json!({"role": "steward", "expires_at": soon_steward})).await.json().await.unwrap();
    let temporary = made["token"].as_str().unwrap().to_string();
    let tokens: Value = p.admin(reqwest::Method::GET, "/admin/v1/tokens", STEWARD, None).await.json().await.unwrap();
    let bootstrap = tokens.as_array().unwrap().iter().find(|t| t["label"] == "bootstrap" && t["role"] == "steward");
    let bootstrap = bootstrap.unwrap()["id"].as_str().unwrap().to_string();
    let r = p.admin(reqwest::Method::DELETE, &format!("/admin/v1/tokens/{bootstrap}"), &temporary, None).await;
    let problem = assert_problem(r, 409, "conflict").await;
    assert!(problem["detail"].as_str().unwrap().contains("without an expiry"), "{problem}");
    let temporary_path = format!("/admin/v1/tokens/{}", made["id"].as_str().unwrap());
    let r = p.admin(reqwest::Method::DELETE, &temporary_path, STEWARD, None).await;
    assert_eq!(r.status(), 204, "an expiring steward token can always be revoked");

    // Past its expiry the auditor's token is refused, says why, and is listed expired.
    let wait = soon.duration_since(jiff::Timestamp::now()).as_millis().max(0) as u64 + 100;
    tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
    let r = p.admin(reqwest::Method::GET, "/admin/v1/audit", &auditor, None).await;
    let problem = assert_problem(r, 401, "unauthorized").await;
    assert!(problem["detail"].as_str().unwrap().contains("expired"), "{problem}");
    let tokens: Value = p.admin(reqwest::Method::GET, "/admin/v1/tokens", STEWARD, None).await.json().await.unwrap();
    let state = |id: &str| tokens.as_array().unwrap().iter().find(|t| t["id"] == id).unwrap()["state"].clone();
    assert_eq!(state(&auditor_id), "expired");
    assert_eq!(state(&bootstrap), "live");
}
