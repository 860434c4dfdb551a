//! The province's dossiers carried to the national portal: reported by the
//! one-stop system, written to an outbox with each change, delivered in order
//! per dossier through the portal's outages, once.

use crate::helpers::{assert_problem, TestApp};
use lgsp::registries::portal::PortalFaults;
use serde_json::{json, Value};
use std::time::Duration;

async fn with_portal() -> (TestApp, String) {
    // The gateway's settings name the portal the mocks run.
    let app = crate::helpers::spawn_app_with_mocks(|s, mocks| {
        s.portal = lgsp::config::PortalSettings {
            url: mocks.portal.url(),
            username: "lgsp".into(),
            password: lgsp::config::Secret::new("portal-dev-password"),
            poll_ms: 50,
            retry_max_ms: 300,
        };
    })
    .await;
    let key = app.partner("000.00.15.H29", json!({"purposes": ["dossier_sync"]}), 6000, 200).await;
    (app, key)
}

fn dossier(code: &str) -> Value {
    json!({"code": code, "procedure_code": "1.001193", "agency": "000.00.15.H29", "applicant_type": "citizen",
           "applicant_id": "001090001234", "channel": "online", "received_at": "2026-12-05T08:30:00+07:00",
           "due_at": "2026-12-08T17:00:00+07:00", "status": "received",
           "documents": [{"name": "Tờ khai", "digitised": true, "reused": false}, {"name": "Giấy khai sinh", "digitised": true, "reused": true}]})
}

fn event(id: &str, status: &str, minute: u32) -> Value {
    json!({"event_id": id, "status": status, "at": format!("2026-12-05T09:{minute:02}:00+07:00"),
           "actor": "Bộ phận một cửa", "note": status})
}

impl TestApp {
    async fn report(&self, key: &str, path: &str, body: &Value) -> reqwest::Response {
        self.client.post(self.url(path)).bearer_auth(key).json(body).send().await.unwrap()
    }
}

#[tokio::test]
async fn every_change_reaches_the_portal_once_and_in_order_after_it_was_down() {
    let (app, key) = with_portal().await;
    *app.mocks.portal.state.faults.write() = PortalFaults { error_rate: 1.0, ..Default::default() };
    let code = "000.00.15.H29-261205-0001";
    assert_eq!(app.report(&key, "/v1/dossiers", &dossier(code)).await.status(), 202);
    let path = format!("/v1/dossiers/{code}/events");
    for (i, (id, status)) in [("e1", "processing"), ("e2", "processed"), ("e3", "returned")].iter().enumerate() {
        let r = app.report(&key, &path, &event(id, status, i as u32)).await;
        assert_eq!(r.status(), 202);
        let reported: Value = r.json().await.unwrap();
        assert_eq!(reported["seq"], i + 1);
    }
    // A repeat is kept once; the same id with other values is refused.
    assert_eq!(app.report(&key, &path, &event("e2", "processed", 1)).await.status(), 200);
    assert_problem(app.report(&key, &path, &event("e2", "stopped", 1)).await, 409, "conflict").await;
    assert_eq!(app.report(&key, "/v1/dossiers", &dossier(code)).await.status(), 200, "the same report again");

    // The portal is down: nothing is lost, the first change is tried again and again.
    let retried = crate::helpers::eventually(|| async {
        app.state.sync.outbox(code).await.unwrap().first().is_some_and(|r| r.attempts >= 2)
    })
    .await;
    assert!(retried);
    assert!(app.mocks.portal.state.records.lock().is_empty());
    *app.mocks.portal.state.faults.write() = PortalFaults::default();
    let delivered = crate::helpers::eventually(|| async {
        app.state.sync.outbox(code).await.unwrap().iter().all(|r| r.state == "delivered")
    })
    .await;
    assert!(delivered, "{:#?}", app.state.sync.outbox(code).await.unwrap());
    let records = app.mocks.portal.state.records.lock();
    let held = &records[code];
    assert_eq!(held.versions, 4, "the record once, then once per change: nothing twice");
    assert_eq!(held.record["TrangThaiHoSo"], 10, "returned");
    assert_eq!(held.record["KenhThucHien"], 2);
    assert_eq!(held.record["NgayTiepNhan"], "20261205083000");
    let statuses: Vec<i64> = held.steps.values().map(|s| s["TrangThai"].as_i64().unwrap()).collect();
    assert_eq!(statuses, [4, 9, 10], "in order");
}

#[tokio::test]
async fn what_the_portal_refuses_is_kept_with_its_error_and_bad_reports_are_refused_here() {
    let (app, key) = with_portal().await;
    let mut refused = dossier("000.00.15.H29-261205-0002");
    refused["procedure_code"] = json!("TTHC-01");
    assert_eq!(app.report(&key, "/v1/dossiers", &refused).await.status(), 202);
    let kept = crate::helpers::eventually(|| async {
        app.state.sync.outbox("000.00.15.H29-261205-0002").await.unwrap().first().is_some_and(|r| r.state == "refused")
    })
    .await;
    assert!(kept);
    let rows = app.state.sync.outbox("000.00.15.H29-261205-0002").await.unwrap();
    assert!(rows[0].last_error.as_deref().unwrap().starts_with("HS05"), "{rows:?}");

    let mut bad = dossier("000.00.15.H29-261205-0003");
    bad["status"] = json!("lost");
    bad["received_at"] = json!("05/12/2026");
    bad["agency"] = json!("");
    let p = assert_problem(app.report(&key, "/v1/dossiers", &bad).await, 422, "invalid_body").await;
    let pointers: Vec<&str> = p["errors"].as_array().unwrap().iter().map(|e| e["pointer"].as_str().unwrap()).collect();
    assert_eq!(pointers, ["/agency", "/status", "/received_at"]);
    assert_problem(
        app.report(&key, "/v1/dossiers/000.00.15.H29-261205-0009/events", &event("x", "processing", 0)).await,
        404,
        "not_found",
    )
    .await;
    let other = app.partner("000.00.16.H29", json!({"purposes": ["residence_change"]}), 600, 20).await;
    assert_problem(app.report(&other, "/v1/dossiers", &dossier("000.00.15.H29-261205-0004")).await, 403, "forbidden")
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn two_nodes_deliver_one_outbox_without_sending_anything_twice() {
    let (app, key) = with_portal().await;
    let mut settings = app.node_settings();
    settings.portal = app.state.settings.portal.clone();
    let other = TestApp::start_node(settings).await;
    let other_ready = crate::helpers::eventually(|| async {
        app.client.get(format!("{other}/v1/flows")).bearer_auth(&key).send().await.unwrap().status() != 401
    })
    .await;
    assert!(other_ready);
    let codes: Vec<String> = (1..=8).map(|i| format!("000.00.15.H29-261205-{:04}", 100 + i)).collect();
    for (i, code) in codes.iter().enumerate() {
        let base = if i % 2 == 0 { app.base.clone() } else { other.clone() };
        let r =
            app.client.post(format!("{base}/v1/dossiers")).bearer_auth(&key).json(&dossier(code)).send().await.unwrap();
        assert_eq!(r.status(), 202);
        for (n, status) in ["processing", "processed"].iter().enumerate() {
            let base = if n % 2 == 0 { other.clone() } else { app.base.clone() };
            let r = app
                .client
                .post(format!("{base}/v1/dossiers/{code}/events"))
                .bearer_auth(&key)
                .json(&event(&format!("{code}-{n}"), status, n as u32))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202);
        }
    }
    let delivered = crate::helpers::eventually(|| async {
        let mut all = true;
        for code in &codes {
            all &= app.state.sync.outbox(code).await.unwrap().iter().all(|r| r.state == "delivered");
        }
        all
    })
    .await;
    assert!(delivered);
    let records = app.mocks.portal.state.records.lock();
    for code in &codes {
        let held = &records[code];
        assert_eq!(held.versions, 3, "{code}: the record once, then once per change");
        let statuses: Vec<i64> = held.steps.values().map(|s| s["TrangThai"].as_i64().unwrap()).collect();
        assert_eq!(statuses, [4, 9], "{code}");
        assert_eq!(held.record["TrangThaiHoSo"], 9);
    }
}

#[tokio::test]
async fn reconciliation_finds_steps_the_portal_dropped_and_what_it_never_got_and_resending_closes_them() {
    let (app, key) = with_portal().await;
    let all_sent = |codes: Vec<&'static str>| {
        let app = &app;
        async move {
            crate::helpers::eventually(|| async {
                let mut done = true;
                for c in &codes {
                    done &= app.state.sync.outbox(c).await.unwrap().iter().all(|r| r.state != "pending");
                }
                done
            })
            .await
        }
    };
    // The portal drops the steps of the first dossier.
    app.mocks.portal.state.faults.write().drop_steps = true;
    let dropped = "000.00.15.H29-261205-0201";
    assert_eq!(app.report(&key, "/v1/dossiers", &dossier(dropped)).await.status(), 202);
    for (i, s) in ["processing", "processed"].iter().enumerate() {
        let path = format!("/v1/dossiers/{dropped}/events");
        assert_eq!(app.report(&key, &path, &event(&format!("d{i}"), s, i as u32)).await.status(), 202);
    }
    assert!(all_sent(vec![dropped]).await);
    app.mocks.portal.state.faults.write().drop_steps = false;
    // One the portal refused, and one it never got (taken out of the outbox as if lost).
    let mut refused = dossier("000.00.15.H29-261205-0202");
    refused["procedure_code"] = json!("TTHC-02");
    assert_eq!(app.report(&key, "/v1/dossiers", &refused).await.status(), 202);
    let fine = "000.00.15.H29-261205-0203";
    assert_eq!(app.report(&key, "/v1/dossiers", &dossier(fine)).await.status(), 202);
    assert!(all_sent(vec!["000.00.15.H29-261205-0202", fine]).await);
    app.mocks.portal.state.records.lock().remove(fine);

    let q = "/admin/v1/reconciliation?from=2026-12-05&to=2026-12-05";
    let r = app.admin(reqwest::Method::GET, q, crate::helpers::STEWARD, None).await;
    assert_eq!(r.status(), 200);
    let found: Value = r.json().await.unwrap();
    assert_eq!(found["dossiers"], 3);
    let whys: Vec<(String, String)> = found["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["code"].as_str().unwrap().to_string(), d["why"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        whys,
        [
            (dropped.to_string(), "steps_missing".to_string()),
            ("000.00.15.H29-261205-0202".to_string(), "refused".to_string()),
            (fine.to_string(), "never_sent".to_string()),
        ]
    );
    let resend = "/admin/v1/reconciliation/resend?from=2026-12-05&to=2026-12-05";
    let r = app.admin(reqwest::Method::POST, resend, crate::helpers::STEWARD, None).await;
    let resent: Value = r.json().await.unwrap();
    assert_eq!(resent["dossiers"], json!([dropped, fine]), "not the refused one: a person fixes it first");
    assert!(all_sent(vec![dropped, fine]).await);
    let found: Value = app.admin(reqwest::Method::GET, q, crate::helpers::STEWARD, None).await.json().await.unwrap();
    let left: Vec<&str> = found["differences"].as_array().unwrap().iter().map(|d| d["why"].as_str().unwrap()).collect();
    assert_eq!(left, ["refused"], "resending closed the rest");
    assert_eq!(app.mocks.portal.state.records.lock()[dropped].steps.len(), 2);
    let r = app
        .admin(
            reqwest::Method::GET,
            "/admin/v1/reconciliation?from=2026-12-06&to=2026-12-05",
            crate::helpers::STEWARD,
            None,
        )
        .await;
    assert_problem(r, 400, "invalid_parameter").await;
}
