//! Registry faults seen through the gateway: down, slow past the budget,
//! failing, answering out of schema, recovering, and flapping under load.

use crate::helpers::{everything, field, source, spawn_app_with, TestApp, STARTUP, STEWARD};
use lgsp::registries::{Faults, RegistryKind};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const BUDGET_MS: u64 = 700;

pub async fn readyz(p: &TestApp) -> Value {
    let r = p.client.get(p.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200, "a failing registry never takes lgsp out of rotation");
    r.json().await.unwrap()
}

pub fn breaker(ready: &Value, adapter: &str) -> String {
    let name = format!("upstream:{adapter}");
    let check = ready["checks"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap();
    check["detail"].as_str().unwrap().trim_start_matches("circuit breaker ").to_string()
}

#[tokio::test]
async fn each_registry_fault_leaves_a_partial_prefill_within_the_budget_never_a_500() {
    let p = spawn_app_with(|s| s.prefill.budget_ms = BUDGET_MS).await;
    let id = p.mocks.population.samples(1).adult_with_household[0].clone();
    let key = p.partner("000.00.50.H29", everything(), 60_000, 1_000).await;
    let cases = [
        ("down", Faults { error_rate: 1.0, ..Default::default() }, &["unavailable"][..]),
        (
            "hanging past the budget",
            Faults { timeout_rate: 1.0, timeout_ms: 10_000, ..Default::default() },
            &["budget_exceeded", "timeout"][..],
        ),
        ("answering out of its schema", Faults { corrupt_rate: 1.0, ..Default::default() }, &["invalid_response"][..]),
    ];
    for (what, faults, statuses) in cases {
        p.mocks.set_faults(RegistryKind::Insurance, faults);
        let started = Instant::now();
        let r = p.prefill(&key, "tk1_ts", "health_insurance_enrolment", &id).await;
        let took = started.elapsed();
        assert_eq!(r.status(), 200, "insurance {what}");
        let a: Value = r.json().await.unwrap();
        assert_eq!(field(&a, "full_name")["status"], "prefilled", "insurance {what}: the others still answer");
        assert_eq!(field(&a, "social_insurance_number")["reason"], "source_failed", "insurance {what}");
        let status = source(&a, "insurance.card")["status"].as_str().unwrap().to_string();
        assert!(statuses.contains(&status.as_str()), "insurance {what}: {status}");
        assert_eq!(source(&a, "population.citizen")["status"], "ok");
        // A hanging registry does not hold the answer past the budget (with
        // room for a loaded machine; the registry would hang for 10 s).
        assert!(took < Duration::from_millis(BUDGET_MS + 2_000), "insurance {what}: {took:?}");
    }
    // Recovered: everything again.
    p.mocks.set_faults(RegistryKind::Insurance, Faults::default());
    let a: Value = p.prefill(&key, "tk1_ts", "health_insurance_enrolment", &id).await.json().await.unwrap();
    assert_eq!(source(&a, "insurance.card")["status"], "ok", "{a}");
    assert_eq!(field(&a, "social_insurance_number")["status"], "prefilled");
    // An exchange with a failing registry is a problem, not a 500.
    p.mocks.set_faults(RegistryKind::Population, Faults { error_rate: 1.0, ..Default::default() });
    let r = p.exchange(&key, "population", "citizen", json!({"citizen_id": id})).await;
    assert!(matches!(r.status().as_u16(), 502..=504), "{}", r.status());
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    // Every one of them is in the trail, as partial or failed.
    let page = p.audit("limit=50").await;
    let outcomes: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["action"] != "admin")
        .map(|i| i["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["failed", "ok", "partial", "partial", "partial"], "{page}");
}

#[tokio::test]
async fn the_breaker_opens_on_a_dead_registry_shows_in_readyz_and_closes_when_it_recovers() {
    let p = spawn_app_with(|s| s.prefill.budget_ms = BUDGET_MS).await;
    let id = p.mocks.population.samples(1).adult_with_household[0].clone();
    let key = p.partner("000.00.51.H29", everything(), 60_000, 1_000).await;
    // A steward shortens the breaker's open time for this registry.
    let mut manifest: Value = serde_json::from_str(lgsp::adapter::SHIPPED[2].1).unwrap();
    manifest["upstream"]["circuit_breaker"] = json!({"failure_threshold": 3, "open_ms": 300});
    manifest["upstream"]["retries"] = json!(0);
    let r = p.admin(reqwest::Method::PUT, "/admin/v1/adapters/insurance", STEWARD, Some(manifest)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(breaker(&readyz(&p).await, "insurance"), "closed");

    p.mocks.set_faults(RegistryKind::Insurance, Faults { error_rate: 1.0, ..Default::default() });
    for _ in 0..3 {
        p.prefill(&key, "tk1_ts", "health_insurance_enrolment", &id).await;
    }
    let ready = readyz(&p).await;
    assert_eq!(breaker(&ready, "insurance"), "open", "{ready}");
    assert_eq!(breaker(&ready, "population"), "closed");
    let a: Value = p.prefill(&key, "tk1_ts", "health_insurance_enrolment", &id).await.json().await.unwrap();
    assert_eq!(source(&a, "insurance.card")["status"], "circuit_open", "no call while open: {a}");

    p.mocks.set_faults(RegistryKind::Insurance, Faults::default());
    tokio::time::sleep(Duration::from_millis(350)).await;
    let a: Value = p.prefill(&key, "tk1_ts", "health_insurance_enrolment", &id).await.json().await.unwrap();
    assert_eq!(source(&a, "insurance.card")["status"], "ok", "the half-open probe succeeds: {a}");
    assert_eq!(breaker(&readyz(&p).await, "insurance"), "closed");
}

#[tokio::test]
async fn under_load_with_a_flapping_registry_every_request_is_audited_once_and_no_quota_is_exceeded() {
    let p = spawn_app_with(|s| s.prefill.budget_ms = BUDGET_MS).await;
    let ids = p.mocks.population.samples(10).adult_with_household;
    // Three partners: two with room, one whose quota is far below what it sends.
    let roomy = [
        p.partner("000.00.52.H29", everything(), 600_000, 10_000).await,
        p.partner("000.00.53.H29", everything(), 600_000, 10_000).await,
    ];
    let tight = p.partner("000.00.54.H29", everything(), 60, 20).await;
    let warm = p.prefill(&roomy[0], "ct01", "residence_change", &ids[0]).await;
    assert_eq!(warm.status(), 200);

    // The insurance registry flaps while 3 x 100 prefills run at once.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let flap = async {
        let faults = [
            Faults { error_rate: 1.0, ..Default::default() },
            Faults::default(),
            Faults { corrupt_rate: 0.5, latency_ms: 30, ..Default::default() },
            Faults::default(),
        ];
        let mut i = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            p.mocks.set_faults(RegistryKind::Insurance, faults[i % faults.len()].clone());
            i += 1;
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        p.mocks.set_faults(RegistryKind::Insurance, Faults::default());
    };
    let load = async {
        let sends = [&roomy[0], &roomy[1], &tight].map(|key| {
            futures_util::future::join_all((0..100).map(|i| {
                let body = json!({"form": "tk1_ts", "citizen_id": ids[i % ids.len()], "purpose": "health_insurance_enrolment"});
                let request = p.client.post(p.url("/v1/prefill")).bearer_auth(key).json(&body);
                async move { request.send().await.unwrap().status().as_u16() }
            }))
        });
        let out = futures_util::future::join_all(sends).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        out
    };
    let (results, ()) = tokio::join!(load, flap);

    for (i, statuses) in results.iter().enumerate() {
        assert!(statuses.iter().all(|s| *s == 200 || *s == 429), "only answers and refusals: {statuses:?}");
        let allowed = statuses.iter().filter(|s| **s == 200).count();
        if i < 2 {
            assert_eq!(allowed, 100, "a partner with room is never refused");
        } else {
            // A burst of 20 plus at most a few replenished at one a second.
            assert!((20..=30).contains(&allowed), "the tight partner got {allowed}");
        }
    }
    // Exactly one record per request, and the chain holds.
    let verify = p.verify_trail().await;
    assert_eq!(verify["intact"], true, "{verify}");
    assert_eq!(p.admin_records().await, 6, "three partners registered, each given a key");
    assert_eq!(
        verify["records"],
        STARTUP + 6 + 301,
        "the first start, the stewards' changes, the warm-up and 300 prefills"
    );
    for (partner, expected) in [("000.00.52.H29", 101), ("000.00.53.H29", 100), ("000.00.54.H29", 100)] {
        let page = p.audit(&format!("partner_id={partner}&limit=500")).await;
        assert_eq!(page["items"].as_array().unwrap().len(), expected, "{partner}");
    }
    let refused = p.audit("partner_id=000.00.54.H29&outcome=refused&limit=500").await;
    let refused = refused["items"].as_array().unwrap().len();
    let allowed = results[2].iter().filter(|s| **s == 200).count();
    assert_eq!(refused + allowed, 100);
    // Nothing per request is left behind: the audit queue is empty and the
    // rate limiter holds one bucket per partner (tests/memory.rs counts the
    // live heap around a longer load of the same kind).
    assert_eq!(p.state.metrics.audit_queue.get(), 0);
    assert_eq!(p.state.limits.len(), 3);
}

/// A registry that answers with a redirect is not followed: lgsp calls only
/// where the adapter says, so a redirect cannot take a call to a host the
/// allow list does not name. The partner gets a registry problem, not a 500.
#[tokio::test]
async fn a_redirect_from_a_registry_is_not_followed() {
    use std::io::{Read, Write};
    // Where the redirect points: it must never be called.
    let elsewhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    elsewhere.set_nonblocking(true).unwrap();
    let target = format!("http://{}/api/v1/cong-dan/001090001234", elsewhere.local_addr().unwrap());
    // A "registry" that redirects every call there.
    let redirecting = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let registry = format!("http://{}", redirecting.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in redirecting.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut head = [0u8; 8192];
            let _ = stream.read(&mut head);
            let answer =
                format!("HTTP/1.1 302 Found\r\nLocation: {target}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    let p = spawn_app_with(|s| s.upstreams.get_mut("population").expect("population credential").url = registry).await;
    let id = p.mocks.population.samples(1).adult_with_household[0].clone();
    let key = p.partner("000.00.51.H29", everything(), 60_000, 1_000).await;

    let r = p.exchange(&key, "population", "citizen", json!({"citizen_id": id})).await;
    assert!(matches!(r.status().as_u16(), 502..=504), "{}", r.status());
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let a: Value = p.prefill(&key, "tk1_ts", "health_insurance_enrolment", &id).await.json().await.unwrap();
    assert_eq!(source(&a, "population.citizen")["status"], "unavailable", "{a}");
    assert_eq!(source(&a, "insurance.card")["status"], "ok", "the other registries still answer: {a}");
    let followed = elsewhere.accept();
    assert!(
        matches!(&followed, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the redirect's target was called: {followed:?}"
    );
}
