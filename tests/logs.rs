//! Personal data never reaches the application log: every request path that
//! touches a citizen (prefill, exchange, access log, registry faults, schema
//! violations) runs with the log captured, and no ID number or name appears.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test or a benchmark stops at its first surprise")]

use lgsp::config::Secret;
use lgsp::registries::{default_tokens, Faults, MockConfig, MockRegistries, RegistryKind};
use lgsp::startup::Application;
use serde_json::json;
use std::io::Write;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_personal_data_in_the_log() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter("debug,hyper=info,reqwest=info,h2=info,actix_server=info")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let mocks = MockRegistries::start(&MockConfig { ports: [0, 0, 0], citizens: 2_000, seed: 5, ..Default::default() })
        .expect("mocks start");
    let dir = tempfile::tempdir().unwrap();
    let mut settings = lgsp::config::Settings {
        port: 0,
        workers: 1,
        database_url: Secret::new(format!("sqlite://{}", dir.path().join("lgsp.db").display())),
        shutdown_timeout_secs: 1,
        bootstrap_admin_tokens: vec![Secret::new("steward:steward-token-logs-0001")],
        ..Default::default()
    };
    lgsp::demo::use_mocks(&mut settings, &mocks, &default_tokens());
    let app = Application::build(settings).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    tokio::spawn(app.run_until_stopped());
    let key = lgsp::demo::demo_partner(&state).await.unwrap().key;
    let client = reqwest::Client::new();
    let s = mocks.population.samples(2);
    let ids: Vec<String> = s.adult_with_household.iter().chain(&s.married).cloned().collect();
    let names: Vec<String> = ids.iter().map(|id| mocks.population.find(id).unwrap().name.full()).collect();

    let prefill = |id: String| {
        let (client, base, key) = (client.clone(), base.clone(), key.clone());
        async move {
            client
                .post(format!("{base}/v1/prefill"))
                .bearer_auth(&key)
                .json(&json!({"form": "tk1_ts", "citizen_id": id, "purpose": "health_insurance_enrolment"}))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    for id in &ids {
        assert_eq!(prefill(id.clone()).await, 200);
    }
    // Registry faults: errors, broken data, unreachable.
    mocks.set_faults(RegistryKind::Insurance, Faults { error_rate: 1.0, ..Default::default() });
    mocks.set_faults(RegistryKind::Population, Faults { corrupt_rate: 1.0, ..Default::default() });
    for id in &ids {
        assert_eq!(prefill(id.clone()).await, 200);
        client
            .post(format!("{base}/v1/exchange/population/citizen"))
            .bearer_auth(&key)
            .header("X-Purpose", "residence_change")
            .json(&json!({"citizen_id": id}))
            .send()
            .await
            .unwrap();
        client.get(format!("{base}/v1/subjects/{id}/access-log")).bearer_auth(&key).send().await.unwrap();
    }
    mocks.stop().await;
    for id in &ids {
        assert_eq!(prefill(id.clone()).await, 200, "registries gone: still an answer");
        let r = client
            .post(format!("{base}/v1/exchange/civil_status/birth"))
            .bearer_auth(&key)
            .header("X-Purpose", "residence_change")
            .json(&json!({"citizen_id": id}))
            .send()
            .await
            .unwrap();
        assert!(r.status() == 502 || r.status() == 503, "{}", r.status());
    }

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("served") && log.contains("prefill source failed"), "the log was captured");
    assert!(log.contains("request failed"), "the unreachable registry was logged");
    for (id, name) in ids.iter().zip(&names) {
        assert!(!log.contains(id.as_str()), "ID number {id} in the log");
        assert!(!log.contains(name.as_str()), "name {name} in the log");
    }
}
