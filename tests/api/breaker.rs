//! A registry's circuit breaker cannot be turned against the province: no
//! caller's bad input moves it, every call it lets out settles it (cut off by
//! a budget, or abandoned by its caller), and an answer out of schema counts
//! as the failure it is.

use crate::faults::{breaker, readyz};
use crate::helpers::assert_problem;
use crate::helpers::{everything, source, spawn_app, spawn_app_with, TestApp, STEWARD};
use lgsp::adapter::SHIPPED;
use lgsp::registries::{Faults, RegistryKind};
use serde_json::{json, Value};
use std::time::Duration;

const INSURANCE: usize = 2;

/// A steward's change of a shipped adapter's upstream settings.
async fn tune(p: &TestApp, which: usize, upstream: Value) {
    let (id, text) = SHIPPED[which];
    let mut manifest: Value = serde_json::from_str(text).unwrap();
    for (k, v) in upstream.as_object().unwrap() {
        manifest["upstream"][k] = v.clone();
    }
    let r = p.admin(reqwest::Method::PUT, &format!("/admin/v1/adapters/{id}"), STEWARD, Some(manifest)).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

/// A counter of `/metrics`, 0 when the series is absent.
async fn counter(p: &TestApp, series: &str) -> f64 {
    let text = p.client.get(p.url("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok())).unwrap_or(0.0)
}

#[tokio::test]
async fn one_partners_bad_requests_never_open_a_registrys_breaker_for_the_others() {
    let p = spawn_app().await;
    let id = p.mocks.population.samples(1).adult_with_household[0].clone();
    let rogue = p.partner("000.00.60.H29", everything(), 60_000, 1_000).await;
    let other = p.partner("000.00.61.H29", everything(), 60_000, 1_000).await;

    // As the probe sent it: twelve digits, but no province's.
    for _ in 0..8 {
        let r = p.exchange(&rogue, "population", "citizen", json!({"citizen_id": "000193840991"})).await;
        let problem = assert_problem(r, 400, "invalid_citizen_id").await;
        assert_eq!(problem["errors"][0]["pointer"], "/citizen_id");
    }

    // An adapter whose request names the number otherwise, so that only the
    // registry checks it: the registry's 400 is the caller's mistake.
    let mut manifest: Value = serde_json::from_str(SHIPPED[0].1).unwrap();
    manifest["id"] = json!("population_lookup");
    let mut op = manifest["operations"]["citizen"].take();
    op["path"] = json!("/api/v1/cong-dan/{so}");
    op["request_schema"] = json!({"type": "object", "required": ["so"], "additionalProperties": false,
                                  "properties": {"so": {"type": "string", "maxLength": 20}}});
    manifest["operations"] = json!({ "citizen": op });
    let r = p.admin(reqwest::Method::POST, "/admin/v1/adapters", STEWARD, Some(manifest)).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    for _ in 0..8 {
        let r = p.exchange(&rogue, "population_lookup", "citizen", json!({"so": "000193840991"})).await;
        let problem = assert_problem(r, 422, "upstream_rejected").await;
        assert!(problem["detail"].as_str().unwrap().contains("request_schema"), "{problem}");
    }

    let ready = readyz(&p).await;
    assert_eq!(breaker(&ready, "population"), "closed", "{ready}");
    assert_eq!(breaker(&ready, "population_lookup"), "closed", "{ready}");
    let r = p.exchange(&other, "population", "citizen", json!({"citizen_id": id})).await;
    assert_eq!(r.status(), 200);
    let r = p.exchange(&other, "population_lookup", "citizen", json!({"so": id})).await;
    assert_eq!(r.status(), 200);
    let a: Value = p.prefill(&other, "ct01", "residence_change", &id).await.json().await.unwrap();
    assert_eq!(source(&a, "population.citizen")["status"], "ok", "{a}");
    let rejected =
        r#"lgsp_upstream_requests_total{adapter="population_lookup",operation="citizen",outcome="rejected"}"#;
    assert_eq!(counter(&p, rejected).await, 8.0);
}

#[tokio::test]
async fn prefills_alone_open_the_breaker_of_a_hung_registry_and_it_recovers_after_a_probe_cut_off_by_the_budget() {
    let p = spawn_app_with(|s| s.prefill.budget_ms = 700).await;
    let id = p.mocks.population.samples(1).adult_with_household[0].clone();
    let key = p.partner("000.00.62.H29", everything(), 60_000, 1_000).await;
    tune(&p, INSURANCE, json!({"retries": 0, "circuit_breaker": {"failure_threshold": 2, "open_ms": 400}})).await;
    let prefill = || async {
        let a: Value = p.prefill(&key, "tk1_ts", "health_insurance_enrolment", &id).await.json().await.unwrap();
        source(&a, "insurance.card")["status"].as_str().unwrap().to_string()
    };

    p.mocks.set_faults(RegistryKind::Insurance, Faults { timeout_rate: 1.0, timeout_ms: 10_000, ..Default::default() });
    for _ in 0..2 {
        assert_eq!(prefill().await, "budget_exceeded");
    }
    let ready = readyz(&p).await;
    assert_eq!(breaker(&ready, "insurance"), "open", "two calls cut off by the budget are two timeouts: {ready}");
    let timeouts = r#"lgsp_upstream_requests_total{adapter="insurance",operation="card",outcome="timeout"}"#;
    assert_eq!(counter(&p, timeouts).await, 2.0, "each is counted");
    assert_eq!(prefill().await, "circuit_open");

    // The probe is cut off by the budget as well: the breaker opens again,
    // and lets the next probe out in its time.
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(prefill().await, "budget_exceeded", "the probe went out");
    assert_eq!(breaker(&readyz(&p).await, "insurance"), "open");

    p.mocks.set_faults(RegistryKind::Insurance, Faults::default());
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(prefill().await, "ok", "recovered within open_ms of answering again");
    assert_eq!(breaker(&readyz(&p).await, "insurance"), "closed");
}

#[tokio::test]
async fn a_probe_whose_caller_went_away_does_not_hold_the_breaker_open() {
    let p = spawn_app().await;
    let id = p.mocks.population.samples(1).adult_with_household[0].clone();
    let key = p.partner("000.00.63.H29", everything(), 60_000, 1_000).await;
    tune(
        &p,
        INSURANCE,
        json!({"retries": 0, "timeout_ms": 5_000, "circuit_breaker": {"failure_threshold": 1, "open_ms": 300}}),
    )
    .await;
    let card = json!({"citizen_id": id});
    p.mocks.set_faults(RegistryKind::Insurance, Faults { error_rate: 1.0, ..Default::default() });
    assert_eq!(p.exchange(&key, "insurance", "card", card.clone()).await.status(), 502);
    assert_eq!(breaker(&readyz(&p).await, "insurance"), "open");

    // Half-open: the probe meets a hung registry, and its caller gives up.
    tokio::time::sleep(Duration::from_millis(350)).await;
    p.mocks.set_faults(RegistryKind::Insurance, Faults { timeout_rate: 1.0, timeout_ms: 10_000, ..Default::default() });
    let gave_up = p
        .client
        .post(p.url("/v1/exchange/insurance/card"))
        .bearer_auth(&key)
        .header("X-Purpose", "health_insurance_enrolment")
        .timeout(Duration::from_millis(200))
        .json(&card)
        .send()
        .await;
    assert!(gave_up.is_err(), "the caller went away");

    // The registry answers again: within open_ms, every partner's calls do.
    p.mocks.set_faults(RegistryKind::Insurance, Faults::default());
    tokio::time::sleep(Duration::from_millis(350)).await;
    let r = p.exchange(&key, "insurance", "card", card.clone()).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(breaker(&readyz(&p).await, "insurance"), "closed");
}

#[tokio::test]
async fn answers_out_of_schema_open_the_breaker() {
    let p = spawn_app().await;
    let id = p.mocks.population.samples(1).adult_with_household[0].clone();
    let key = p.partner("000.00.64.H29", everything(), 60_000, 1_000).await;
    tune(&p, INSURANCE, json!({"circuit_breaker": {"failure_threshold": 3, "open_ms": 60_000}})).await;
    p.mocks.set_faults(RegistryKind::Insurance, Faults { corrupt_rate: 1.0, ..Default::default() });
    for _ in 0..3 {
        let r = p.exchange(&key, "insurance", "card", json!({"citizen_id": id})).await;
        assert_problem(r, 502, "upstream_invalid_response").await;
    }
    assert_eq!(breaker(&readyz(&p).await, "insurance"), "open");
    let r = p.exchange(&key, "insurance", "card", json!({"citizen_id": id})).await;
    assert_problem(r, 503, "circuit_open").await;
}
