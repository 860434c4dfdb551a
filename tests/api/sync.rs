//! The province's dossiers carried to the national portal: reported by the
//! one-stop system, written to an outbox with each change, delivered in order
//! per dossier through the portal's outages, once.

use crate::helpers::{assert_problem, TestApp};
use lgsp::registries::portal::PortalFaults;
use serde_json::{json, Value};
use std::time::Duration;

pub async fn with_portal() -> (TestApp, String) {
    // The gateway's settings name the portal the mocks run.
    let app = crate::helpers::spawn_app_with_mocks(|s, mocks| {
        s.portal = lgsp::config::PortalSettings {
            url: mocks.portal.url(),
            username: "lgsp".into(),
            password: lgsp::config::Secret::new("portal-dev-password"),
            poll_ms: 50,
            retry_max_ms: 300,
            ..Default::default()
        };
    })
    .await;
    let key = app.partner("000.00.15.H29", json!({"purposes": ["dossier_sync"]}), 6000, 200).await;
    (app, key)
}

pub fn dossier(code: &str) -> Value {
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
    pub async fn report(&self, key: &str, path: &str, body: &Value) -> reqwest::Response {
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

/// Waits up to 30 s until no change of `codes` waits in the outbox.
pub async fn drained(app: &TestApp, codes: &[String]) -> bool {
    for _ in 0..600 {
        let mut done = true;
        for c in codes {
            done &= app.state.sync.outbox(c).await.unwrap().iter().all(|r| r.state != "pending");
        }
        if done {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn a_linked_dossier_reaches_the_portal_with_each_of_its_steps() {
    let (app, _) = with_portal().await;
    let key = app.partner("000.00.20.H29", crate::helpers::everything(), 6000, 200).await;
    let (mother, head, father) = crate::dossiers::a_mother(&app.mocks.population, 1);
    let body = json!({"flow": "birth_residence_insurance", "requester_id": mother,
                      "declaration": crate::dossiers::birth_declaration(&mother, &head, father.as_deref(), "Bình")});
    let r = app.file(&key, "sync-birth-1", &body).await;
    assert_eq!(r.status(), 202);
    let code = r.json::<Value>().await.unwrap()["code"].as_str().unwrap().to_string();
    let d = app.dossier_when(&key, &code, &["done"]).await;
    assert!(drained(&app, std::slice::from_ref(&code)).await);
    let records = app.mocks.portal.state.records.lock();
    let held = &records[&code];
    assert_eq!(held.record["MaTTHC"], "2.002621", "the group's national procedure code");
    assert_eq!(held.record["KenhThucHien"], 2, "online");
    assert_eq!(held.record["MaDoiTuong"], mother.as_str());
    assert_eq!(held.record["TrangThaiHoSo"], 10, "done maps to result returned");
    // Every change of every step is a processing step, in order; the last
    // ones carry the dossier's final status.
    let steps: Vec<&Value> = held.steps.values().collect();
    let changes: usize = d["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["step"].is_string() && !matches!(e["state"].as_str(), Some("ready" | "retrying")))
        .count();
    assert_eq!(steps.len(), changes, "one processing step per change of a step: {steps:#?}");
    let done = steps.iter().filter(|s| s["NoiDungXuLy"].as_str().unwrap().ends_with(": done")).count();
    assert_eq!(done, d["steps"].as_array().unwrap().len(), "each registry's step done: {steps:#?}");
    let orders: Vec<i64> = held.steps.keys().copied().collect();
    assert_eq!(orders, (1..=steps.len() as i64).collect::<Vec<_>>());
    assert_eq!(steps.last().unwrap()["TrangThai"], 10);
    assert!(steps.iter().all(|s| matches!(s["TrangThai"].as_i64(), Some(4 | 10))), "{steps:#?}");
}

/// One dossier of the simulated day and what became of it.
struct Simulated {
    code: String,
    procedure: String,
    channel: &'static str,
    fate: &'static str,
    digitised: bool,
    reused: bool,
    /// Its local statuses in order, each with its instant.
    changes: Vec<(&'static str, String)>,
}

const FATES: [&str; 10] = [
    "early",
    "on_time",
    "late",
    "within",
    "past",
    "withdrawn",
    "not_accepted",
    "early_after_supplement",
    "late_after_supplement",
    "waiting_supplement",
];

fn simulate(i: usize, procedure: &str) -> Simulated {
    let fate = FATES[i % FATES.len()];
    let at = |day: u32, hour: u32| format!("2026-11-{day:02}T{hour:02}:{:02}:00+07:00", i % 60);
    let mut changes = vec![];
    if !matches!(fate, "withdrawn" | "not_accepted") {
        changes.push(("processing", at(20, 10)));
    }
    if fate.ends_with("supplement") {
        changes.push(("supplement", at(21, 9)));
        if fate != "waiting_supplement" {
            changes.push(("processing", at(22, 9)));
        }
    }
    match fate {
        "early" | "early_after_supplement" => changes.extend([("processed", at(22, 14)), ("returned", at(22, 16))]),
        "on_time" => changes.extend([("processed", at(23, 10)), ("returned", at(23, 11))]),
        "late" | "late_after_supplement" => changes.extend([("processed", at(24, 10)), ("returned", at(25, 8))]),
        "withdrawn" => changes.push(("withdrawn", at(20, 11))),
        "not_accepted" => changes.push(("not_accepted", at(20, 9))),
        _ => {}
    }
    Simulated {
        code: format!("000.00.15.H29-261120-{:04}", i + 1),
        procedure: procedure.to_string(),
        channel: ["online", "in_person", "post"][(i / 3) % 3],
        fate,
        digitised: i % 3 == 0,
        reused: i % 4 == 0,
        changes,
    }
}

impl Simulated {
    fn report(&self, i: usize) -> Value {
        let docs = match i % 3 {
            0 => {
                json!([{"name": "Tờ khai", "digitised": true, "reused": self.reused}, {"name": "Bản sao", "digitised": true}])
            }
            1 => {
                json!([{"name": "Tờ khai", "digitised": true, "reused": self.reused}, {"name": "Bản sao", "digitised": false}])
            }
            _ => json!([{"name": "Tờ khai", "digitised": false, "reused": self.reused}]),
        };
        let due = if self.fate == "within" { "2099-12-31T17:00:00+07:00" } else { "2026-11-23T17:00:00+07:00" };
        json!({"code": self.code, "procedure_code": self.procedure, "agency": "000.00.15.H29", "applicant_type": "citizen",
               "applicant_id": format!("0010900{i:05}"), "channel": self.channel,
               "received_at": format!("2026-11-20T{:02}:30:00+07:00", 7 + i % 9), "due_at": due,
               "status": "received", "documents": docs})
    }

    fn national_status(&self) -> i64 {
        let last = self.changes.last().map_or("received", |c| c.0);
        lgsp::sync::national_codes().statuses[last]
    }
}

#[tokio::test]
async fn a_day_of_dossiers_with_outages_and_dropped_steps_reconciles_and_counts_as_decision_766_does() {
    let (app, key) = with_portal().await;
    let procedures = ["1.001193", "1.000656", "2.000488"];
    let day: Vec<Simulated> =
        (0..40).map(|i| simulate(i, if (36..39).contains(&i) { "TTHC-SAI" } else { procedures[i % 3] })).collect();
    let codes: Vec<String> = day.iter().map(|d| d.code.clone()).collect();
    let report_all = |range: std::ops::Range<usize>| {
        let (app, key, day) = (&app, &key, &day);
        async move {
            for i in range {
                let d = &day[i];
                assert_eq!(app.report(key, "/v1/dossiers", &d.report(i)).await.status(), 202);
                for (n, (status, at)) in d.changes.iter().enumerate() {
                    let e = json!({"event_id": format!("{}-{n}", d.code), "status": status, "at": at,
                                   "actor": "Phòng chuyên môn", "note": status});
                    let r = app.report(key, &format!("/v1/dossiers/{}/events", d.code), &e).await;
                    assert_eq!(r.status(), 202);
                }
            }
        }
    };
    let portal = &app.mocks.portal.state;
    // Morning: all goes through.
    report_all(0..16).await;
    assert!(drained(&app, &codes[..16]).await);
    // Late morning: the portal is down while the one-stop system reports.
    portal.faults.write().error_rate = 1.0;
    report_all(16..28).await;
    let tried = crate::helpers::eventually(|| async {
        app.state.sync.outbox(&codes[16]).await.unwrap().first().is_some_and(|r| r.attempts >= 1)
    })
    .await;
    assert!(tried, "the portal was down and tried");
    portal.faults.write().error_rate = 0.0;
    assert!(drained(&app, &codes[..28]).await);
    // Afternoon: the portal takes records but drops their steps.
    portal.faults.write().drop_steps = true;
    report_all(28..36).await;
    assert!(drained(&app, &codes[28..36]).await);
    portal.faults.write().drop_steps = false;
    // Three with a procedure code the portal does not know; four that
    // differ for good.
    report_all(36..40).await;
    assert!(drained(&app, &codes).await);
    let mut expected = std::collections::BTreeMap::new();
    for d in &day[28..36] {
        expected.insert(d.code.clone(), "steps_missing");
    }
    for d in &day[36..39] {
        expected.insert(d.code.clone(), "refused");
    }
    {
        let mut records = portal.records.lock();
        for i in [2, 5] {
            records.remove(&codes[i]);
            expected.insert(codes[i].clone(), "never_sent");
        }
        // The portal rewrites two statuses on the way.
        for i in [10, 11] {
            assert_ne!(day[i].national_status(), 1);
            records.get_mut(&codes[i]).unwrap().record["TrangThaiHoSo"] = json!(1);
            expected.insert(codes[i].clone(), "status_behind");
        }
    }

    let q = "/admin/v1/reconciliation?from=2026-11-20&to=2026-11-20";
    let found: Value = app.admin(reqwest::Method::GET, q, crate::helpers::STEWARD, None).await.json().await.unwrap();
    assert_eq!(found["dossiers"], 40);
    let got: std::collections::BTreeMap<String, &str> = found["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["code"].as_str().unwrap().to_string(), d["why"].as_str().unwrap()))
        .collect();
    assert_eq!(got, expected, "every difference injected, and nothing else");
    assert_eq!(found["matching"], 40 - expected.len());

    // The tally and the counters, against a count made here from the day's script.
    let mut tally = std::collections::BTreeMap::<String, (usize, usize)>::new();
    for d in &day {
        let channel = lgsp::sync::national_codes().channels[d.channel];
        let entry = tally.entry(format!("{}/{channel}/{}", d.procedure, d.national_status())).or_default();
        entry.0 += 1;
        entry.1 += usize::from(!expected.contains_key(&d.code));
    }
    let held: std::collections::BTreeMap<String, (usize, usize)> = found["tally"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), (v["held"].as_u64().unwrap() as usize, v["matching"].as_u64().unwrap() as usize)))
        .collect();
    assert_eq!(held, tally);
    let count = |f: &dyn Fn(&Simulated) -> bool| day.iter().filter(|d| f(d)).count();
    let share = |n: usize| (n as f64 * 1000.0 / 40.0).round() / 10.0;
    let digitised = count(&|d| d.digitised);
    let reused = count(&|d| d.reused);
    let independent = json!({
        "received": {"online": count(&|d| d.channel == "online"), "in_person": count(&|d| d.channel == "in_person"),
                     "post": count(&|d| d.channel == "post")},
        "processed": {"early": count(&|d| d.fate.starts_with("early")), "on_time": count(&|d| d.fate == "on_time"),
                      "late": count(&|d| d.fate.starts_with("late"))},
        "in_progress": {"within_deadline": count(&|d| d.fate == "within"),
                        "past_deadline": count(&|d| matches!(d.fate, "past" | "waiting_supplement"))},
        "supplement_requested": count(&|d| d.fate.ends_with("supplement")),
        "digitised": digitised, "digitised_percent": share(digitised),
        "reused": reused, "reused_percent": share(reused),
    });
    let mut counters = found["counters"].clone();
    counters.as_object_mut().unwrap().remove("as_of");
    assert_eq!(counters, independent);

    // Resending closes every difference but the refusals, which wait for a person.
    let resend = "/admin/v1/reconciliation/resend?from=2026-11-20&to=2026-11-20";
    let r = app.admin(reqwest::Method::POST, resend, crate::helpers::STEWARD, None).await;
    assert_eq!(r.status(), 200);
    assert!(drained(&app, &codes).await);
    let after: Value = app.admin(reqwest::Method::GET, q, crate::helpers::STEWARD, None).await.json().await.unwrap();
    let left: Vec<&str> = after["differences"].as_array().unwrap().iter().map(|d| d["why"].as_str().unwrap()).collect();
    assert_eq!(left, ["refused"; 3]);
    assert_eq!(after["counters"]["processed"], independent["processed"]);
    let records = portal.records.lock();
    for d in &day[..36] {
        let held = &records[&d.code];
        let statuses: Vec<i64> = held.steps.values().map(|s| s["TrangThai"].as_i64().unwrap()).collect();
        let wanted: Vec<i64> = d.changes.iter().map(|(s, _)| lgsp::sync::national_codes().statuses[*s]).collect();
        assert_eq!(statuses, wanted, "{}: every step, in order", d.code);
        assert_eq!(held.record["TrangThaiHoSo"], d.national_status(), "{}", d.code);
    }
}
