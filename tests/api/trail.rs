//! The audit trail: one record per request and per change, hash-chained,
//! exported, verified against anchors, and never lost on a full queue or a stop.

use crate::helpers::*;
use lgsp::registries::{Faults, RegistryKind};
use serde_json::{json, Value};

#[tokio::test]
async fn auditors_export_the_trail_in_pages_that_verify_without_the_database() {
    let p = spawn_app().await;
    let id = p.mocks.population.samples(1).adult_with_household[0].clone();
    let key = p.partner("000.00.25.H29", everything(), 600, 100).await;
    for _ in 0..5 {
        assert_eq!(p.exchange(&key, "population", "citizen", json!({"citizen_id": id})).await.status(), 200);
    }
    let get = |path: String, token: &'static str| {
        let p = &p;
        async move { p.admin(reqwest::Method::GET, &path, token, None).await }
    };
    assert_problem(get("/admin/v1/audit/export".into(), STEWARD).await, 403, "forbidden").await;
    assert_problem(get("/admin/v1/audit/export?limit=0".into(), AUDITOR).await, 400, "invalid_parameter").await;
    assert_problem(get("/admin/v1/audit/export?from=0".into(), AUDITOR).await, 400, "invalid_parameter").await;

    // Pages of two, followed by their links, hold every record once: the
    // first start's, the partner's registration and key, five exchanges.
    let n = STARTUP + 7;
    let mut next = Some("/admin/v1/audit/export?limit=2".to_string());
    let (mut all, mut pages) = (String::new(), 0);
    while let Some(path) = next.take() {
        let r = p.client.get(p.url(&path)).bearer_auth(AUDITOR).header("Accept", "application/x-ndjson").send().await;
        let r = r.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/x-ndjson");
        next = r.headers().get("link").map(|l| {
            let l = l.to_str().unwrap();
            l[l.find('<').unwrap() + 1..l.find('>').unwrap()].to_string()
        });
        all.push_str(&r.text().await.unwrap());
        pages += 1;
        assert!(pages <= n, "the links end");
    }
    assert_eq!(pages, n / 2 + 1, "full pages of two, then the rest (none when every page is full)");
    let v = lgsp::audit::verify_export(all.as_bytes(), &Default::default()).unwrap();
    assert!(v.is_intact(), "{v:?}");
    assert_eq!((v.first_seq, v.last_seq, v.records), (1, n, n));
    let head: Value = get("/admin/v1/audit/verify".into(), AUDITOR).await.json().await.unwrap();
    assert_eq!(head["head_hash"], v.last_hash.as_str(), "the export ends where the trail does");

    // Asked for nothing in particular, a page is one JSON document with the same records.
    let r = get("/admin/v1/audit/export?limit=3".into(), AUDITOR).await;
    assert_eq!(r.headers()["content-type"], "application/json");
    let page: Value = r.json().await.unwrap();
    let lines: Vec<Value> = all.lines().take(3).map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(page["records"], json!(lines));
    assert_eq!(page["next_from"], 4);
}

#[tokio::test]
async fn stewards_changes_are_in_the_audit_trail_allowed_or_refused() {
    let p = spawn_app().await;
    let partner = "000.00.36.H29";
    p.partner(partner, everything(), 600, 100).await;
    let id = p.mocks.population.samples(1).adult_with_household[0].clone();

    // Granting a sensitive element: who, what, when.
    let mut policy = everything();
    policy["elements"] = json!(["*", "religion"]);
    let path = format!("/admin/v1/partners/{partner}");
    let r = p.admin(reqwest::Method::PATCH, &path, STEWARD, Some(json!({"policy": policy}))).await;
    assert_eq!(r.status(), 200);
    // Refused changes, with and without a valid token.
    let r = p.admin(reqwest::Method::PATCH, &path, STEWARD, Some(json!({"burst": "many"}))).await;
    assert_problem(r, 422, "invalid_partner").await;
    let r = p.admin(reqwest::Method::PATCH, &path, "not-a-token", Some(json!({"burst": 1}))).await;
    assert_problem(r, 401, "unauthorized").await;
    // A dry run reads a citizen's record: it is an access to that citizen's data.
    let r = p
        .admin(reqwest::Method::POST, "/admin/v1/adapters/population/test", STEWARD, Some(json!({"citizen_id": id})))
        .await;
    assert_eq!(r.status(), 200);

    let tokens: Value = p.admin(reqwest::Method::GET, "/admin/v1/tokens", STEWARD, None).await.json().await.unwrap();
    let steward_id = tokens.as_array().unwrap().iter().find(|t| t["role"] == "steward").unwrap()["id"].clone();
    let page = p.audit("action=admin&limit=50").await;
    let items = page["items"].as_array().unwrap();
    let on_partner: Vec<&Value> = items.iter().filter(|r| r["resource"] == format!("partners/{partner}")).collect();
    assert_eq!(on_partner.len(), 3, "three changes: {page}");
    let registered = items.iter().find(|r| r["resource"] == "partners").unwrap();
    assert_eq!((&registered["status"], &registered["detail"]["sent"]["id"]), (&json!(201), &json!(partner)));
    let (unauthenticated, refused, granted) = (on_partner[0], on_partner[1], on_partner[2]);
    assert_eq!((&unauthenticated["status"], &unauthenticated["key_id"]), (&json!(401), &json!("")));
    assert_eq!(
        (&refused["outcome"], &refused["status"], &refused["key_id"]),
        (&json!("refused"), &json!(422), &steward_id)
    );
    assert_eq!((&granted["outcome"], &granted["key_id"]), (&json!("ok"), &steward_id));
    assert_eq!(granted["detail"]["method"], "PATCH");
    assert_eq!(granted["detail"]["role"], "steward");
    assert_eq!(granted["detail"]["sent"]["policy"]["elements"], json!(["*", "religion"]));
    let by_token = p.audit(&format!("key_id={}", steward_id.as_str().unwrap())).await;
    let by_token = by_token["items"].as_array().unwrap();
    assert_eq!(
        by_token.len(),
        items.len() - 1 - STARTUP as usize,
        "all but the unauthenticated attempt and the start's"
    );
    assert!(by_token.iter().all(|r| r["key_id"] == steward_id));

    // What the node stored at its first start is in the trail too, under the
    // key `startup`: each shipped adapter and form, and each bootstrap token.
    let startup: Vec<&Value> = items.iter().filter(|r| r["key_id"] == "startup").collect();
    assert_eq!(startup.len() as i64, STARTUP, "{page}");
    let seeded = |resource: &str, field: &str| -> Vec<String> {
        let mut v: Vec<String> = startup
            .iter()
            .filter(|r| r["resource"] == resource)
            .map(|r| r["detail"][field].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    let sorted = |ids: &mut Vec<String>| {
        ids.sort();
        ids.clone()
    };
    assert_eq!(
        seeded("adapters", "shipped"),
        sorted(&mut lgsp::adapter::SHIPPED.map(|(id, _)| id.to_string()).to_vec())
    );
    assert_eq!(seeded("forms", "shipped"), sorted(&mut lgsp::form::SHIPPED.map(|(id, _)| id.to_string()).to_vec()));
    let mut token_ids: Vec<String> =
        tokens.as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(seeded("tokens", "token_id"), sorted(&mut token_ids), "the steward's and the auditor's");
    assert!(startup.iter().all(|r| r["outcome"] == "ok" && r["action"] == "admin"), "{page}");
    // A later start stores nothing, so it notes nothing.
    let mut conn = p.state.db.conn().unwrap();
    let version = lgsp::db::catalog_version(&mut conn).unwrap();
    assert_eq!(lgsp::catalog::seed(&mut conn, &p.state.settings).unwrap(), 0);
    assert_eq!(lgsp::db::catalog_version(&mut conn).unwrap(), version, "nor makes the nodes reload");
    assert_eq!(p.admin_records().await, (items.len() as i64) - STARTUP, "{page}");
    let dry_run = items.iter().find(|r| r["resource"] == "adapters/population/test").unwrap();
    assert_eq!(dry_run["subject"], id.as_str());

    // The citizen sees the steward's dry run among the accesses to their data.
    let key = p.partner("000.00.37.H29", everything(), 600, 100).await;
    let log = p.access_log(&key, &id).await;
    let entry = log.as_array().unwrap().iter().find(|e| e["action"] == "admin").unwrap();
    assert!(entry["agency_name"].as_str().unwrap().contains("steward"), "{entry}");
    // And the chain holds them all.
    let verify = p.verify_trail().await;
    assert_eq!(verify["intact"], true, "{verify}");
}

#[tokio::test]
async fn a_full_audit_queue_slows_requests_down_and_loses_no_record() {
    // Room for two records and a slow writer (each batch waits 50 ms): most of
    // the 80 requests find the queue full and wait for room before answering.
    let p = spawn_app_with(|s| {
        s.audit.queue_capacity = 2;
        s.audit.batch_size = 4;
        s.audit.flush_interval_ms = 50;
    })
    .await;
    let ids = p.mocks.population.samples(5).adult_with_household;
    let key = p.partner("000.00.27.H29", everything(), 60_000, 1_000).await;
    let mut statuses = Vec::new();
    for t in fire_prefills(&p.client, &p.base, &key, &ids, 80) {
        statuses.push(t.await.unwrap());
    }
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let page = p.audit("limit=500&action=prefill").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 80, "one record per request");
    let verify = p.verify_trail().await;
    assert_eq!(verify["intact"], true, "{verify}");
    assert_eq!(p.state.metrics.audit_queue.get(), 0);
}

#[tokio::test]
async fn the_audit_trail_holds_one_record_per_request_under_load_and_detects_tampering() {
    let p = spawn_app().await;
    let ids = p.mocks.population.samples(5).adult_with_household;
    let key = p.partner("000.00.26.H29", everything(), 60_000, 1_000).await;
    let mut tasks = Vec::new();
    for i in 0..60 {
        let (client, url, key, id) = (p.client.clone(), p.url("/v1/prefill"), key.clone(), ids[i % ids.len()].clone());
        tasks.push(tokio::spawn(async move {
            let form = if i % 2 == 0 { "ct01" } else { "tk1_ts" };
            let purpose = if i % 2 == 0 { "residence_change" } else { "health_insurance_enrolment" };
            let body = if i % 10 == 9 {
                json!({"form": form})
            } else {
                json!({"form": form, "citizen_id": id, "purpose": purpose})
            };
            client.post(url).bearer_auth(key).json(&body).send().await.unwrap().status().as_u16()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap() == 200 {
            ok += 1;
        }
    }
    assert_eq!(ok, 54);
    let page = p.audit("limit=500&action=prefill").await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 60, "one record per request, refusals included");
    assert_eq!(items.iter().filter(|i| i["outcome"] == "refused").count(), 6);
    let verify = p.verify_trail().await;
    assert_eq!(verify["intact"], true, "{verify}");
    assert_eq!(verify["records"], STARTUP + p.admin_records().await + 60);
    // Stewards do not read the audit trail.
    assert_problem(p.admin(reqwest::Method::GET, "/admin/v1/audit", STEWARD, None).await, 403, "forbidden").await;

    // The citizen's view: who, when, why.
    let subject = &ids[0];
    let log = p.access_log(&key, subject).await;
    let entries = log.as_array().unwrap();
    assert!(!entries.is_empty());
    assert!(entries.iter().all(|e| e["agency_id"] == "000.00.26.H29" && e["purpose"].is_string()), "{log}");
    assert!(entries[0]["elements"].as_array().unwrap().iter().any(|e| e == "full_name"));

    // Edit one row, then delete another: verification names the first broken record.
    use diesel::RunQueryDsl;
    let db = p.state.db.clone();
    let verify_now = || {
        let db = db.clone();
        async move { db.run(lgsp::audit::verify).await.unwrap() }
    };
    let d = db.clone();
    d.run(|c| Ok(diesel::sql_query("UPDATE audit_log SET purpose = 'edited' WHERE seq = 7").execute(c)?))
        .await
        .unwrap();
    let v = verify_now().await;
    assert_eq!(v.broken_at, Some(7), "{v:?}");
    d.run(|c| Ok(diesel::sql_query("DELETE FROM audit_log WHERE seq = 3").execute(c)?)).await.unwrap();
    let v = verify_now().await;
    assert_eq!(v.broken_at, Some(3), "{v:?}");

    // Every record deleted, and the chain head with them: the break is named,
    // by the command line as by the API. (Nothing may be left to write: with
    // its head gone, the writer could store no more records.)
    p.state.audit.flush(std::time::Duration::from_secs(5)).await;
    d.run(|c| {
        diesel::sql_query("DELETE FROM audit_log").execute(c)?;
        Ok(diesel::sql_query("DELETE FROM audit_head").execute(c)?)
    })
    .await
    .unwrap();
    let v = verify_now().await;
    assert_eq!(v.broken_at, Some(1), "{v:?}");
    assert!(v.reason.as_deref().unwrap().contains("chain head is missing"), "{v:?}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lgsp"))
        .env("LGSP_DATABASE_URL", &p.database_url)
        .args(["audit", "verify"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{said} {}", String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("BROKEN at record 1: the chain head is missing"), "{said}");
}

#[tokio::test]
async fn the_demos_partner_and_keys_are_in_the_audit_trail() {
    let p = spawn_app().await;
    let first = lgsp::demo::demo_partner(&p.state).await.unwrap();
    // A second demo on the same database: the partner exists, a new key is made.
    let second = lgsp::demo::demo_partner(&p.state).await.unwrap();
    assert_ne!(first.id, second.id);
    p.state.audit.flush(std::time::Duration::from_secs(5)).await;
    let page = p.audit("key_id=demo").await;
    let items = page["items"].as_array().unwrap();
    let seen: Vec<(&str, &Value)> = items.iter().map(|r| (r["resource"].as_str().unwrap(), &r["detail"])).collect();
    let keys = format!("partners/{}/keys", lgsp::demo::DEMO_PARTNER);
    assert_eq!(
        seen,
        [
            (keys.as_str(), &json!({"made_key_id": second.id, "by": "lgsp demo"})),
            (keys.as_str(), &json!({"made_key_id": first.id, "by": "lgsp demo"})),
            ("partners", &json!({"partner": lgsp::demo::DEMO_PARTNER, "by": "lgsp demo"})),
        ],
        "newest first: {page}"
    );
    assert!(items.iter().all(|r| r["action"] == "admin" && r["outcome"] == "ok"), "{page}");
}

#[tokio::test]
async fn a_graceful_stop_lets_in_flight_prefills_finish_and_stores_their_records() {
    let mut p = spawn_app_with(|s| s.shutdown_timeout_secs = 20).await;
    let ids = p.mocks.population.samples(3).adult_with_household;
    let key = p.partner("000.00.33.H29", everything(), 60_000, 1_000).await;
    p.mocks.set_faults(RegistryKind::Population, Faults { latency_ms: 500, ..Default::default() });
    let tasks = fire_prefills(&p.client, &p.base, &key, &ids, 30);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    p.stop().await;
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200, "requests in flight at the stop are answered");
    }
    // The sink no longer takes records, and everything it had is stored.
    assert!(p.state.audit.is_closed());
    let v = p.state.db.run(lgsp::audit::verify).await.unwrap();
    assert!(v.is_intact(), "{v:?}");
    let admin = p.state.db.run(|c| lgsp::audit::query::count_action(c, "admin")).await.unwrap();
    assert_eq!(
        (admin, v.records),
        (STARTUP + 2, STARTUP + 2 + 30),
        "the first start's records, the partner's registration and key, and the 30 prefills"
    );
}

#[tokio::test]
async fn an_anchor_kept_outside_the_database_catches_a_rewritten_chain() {
    let p = spawn_app().await;
    let key = p.partner("000.00.34.H29", everything(), 60_000, 1_000).await;
    let id = p.mocks.population.samples(1).adult_with_household[0].clone();
    for _ in 0..5 {
        assert_eq!(p.prefill(&key, "ct01", "residence_change", &id).await.status(), 200);
    }
    let p = &p;
    let verify = |anchor: String| async move {
        p.admin(reqwest::Method::GET, &format!("/admin/v1/audit/verify?anchor={anchor}"), AUDITOR, None).await
    };
    let v: Value = verify(String::new()).await.json().await.unwrap();
    assert_eq!(v["intact"], true, "{v}");
    let anchor = format!("{}:{}", v["head_seq"], v["head_hash"].as_str().unwrap());
    let anchored = v["head_seq"].as_i64().unwrap();
    assert_eq!(verify(anchor.clone()).await.json::<Value>().await.unwrap()["intact"], true);
    assert_problem(verify("5:nothex".into()).await, 400, "invalid_parameter").await;

    // Someone with write access edits record 2 and recomputes every later hash and the head.
    use diesel::{ExpressionMethods, QueryDsl, RunQueryDsl, SelectableHelper};
    use lgsp::audit::{AuditRow, GENESIS};
    use lgsp::db::schema::{audit_head, audit_log};
    p.state
        .db
        .run(|c| {
            let rows: Vec<AuditRow> =
                audit_log::table.order(audit_log::seq.asc()).select(AuditRow::as_select()).load(c)?;
            let mut prev = GENESIS.to_string();
            for mut r in rows {
                if r.seq == 2 {
                    r.purpose = Some("rewritten".into());
                }
                r.prev_hash = prev;
                r.hash = r.compute_hash();
                prev = r.hash.clone();
                diesel::update(audit_log::table.filter(audit_log::seq.eq(r.seq)))
                    .set((
                        audit_log::purpose.eq(&r.purpose),
                        audit_log::prev_hash.eq(&r.prev_hash),
                        audit_log::hash.eq(&r.hash),
                    ))
                    .execute(c)?;
            }
            diesel::update(audit_head::table).set(audit_head::hash.eq(&prev)).execute(c)?;
            Ok(())
        })
        .await
        .unwrap();
    let v: Value = verify(String::new()).await.json().await.unwrap();
    assert_eq!(v["intact"], true, "the chain alone cannot see a full rewrite: {v}");
    let v: Value = verify(anchor).await.json().await.unwrap();
    assert_eq!(v["intact"], false, "{v}");
    assert_eq!(v["broken_at"], anchored, "{v}");
    assert!(v["reason"].as_str().unwrap().contains("rewritten at or before"), "{v}");
}

#[tokio::test]
async fn metrics_count_each_partners_calls_by_action_and_outcome() {
    let p = spawn_app().await;
    let id = p.mocks.population.samples(1).adult_with_household[0].clone();
    let portal = p.partner("000.00.71.H29", everything(), 600, 20).await;
    let narrow = json!({"forms": ["ct01"], "purposes": ["*"], "operations": [], "elements": ["*"]});
    let clinic = p.partner("000.00.72.H29", narrow, 600, 20).await;
    assert_eq!(p.prefill(&portal, "tk1_ts", "health_insurance_enrolment", &id).await.status(), 200);
    assert_eq!(p.prefill(&portal, "tk1_ts", "health_insurance_enrolment", &id).await.status(), 200);
    assert_eq!(p.exchange(&portal, "population", "citizen", json!({"citizen_id": id})).await.status(), 200);
    assert_eq!(p.exchange(&clinic, "population", "citizen", json!({"citizen_id": id})).await.status(), 403);
    assert_eq!(p.prefill("lgsp_pk_not-a-key", "ct01", "residence_change", &id).await.status(), 401);
    p.state.audit.flush(std::time::Duration::from_secs(5)).await;
    let text = p.client.get(p.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for series in [
        r#"lgsp_partner_requests_total{action="prefill",outcome="ok",partner="000.00.71.H29"} 2"#,
        r#"lgsp_partner_requests_total{action="exchange",outcome="ok",partner="000.00.71.H29"} 1"#,
        r#"lgsp_partner_requests_total{action="exchange",outcome="refused",partner="000.00.72.H29"} 1"#,
        r#"lgsp_partner_requests_total{action="prefill",outcome="refused",partner="unauthenticated"} 1"#,
    ] {
        assert!(text.contains(series), "{series} missing from\n{text}");
    }
    // The same calls, as the audit trail counts them.
    let records = p.audit("partner_id=000.00.71.H29").await;
    assert_eq!(records["items"].as_array().map(Vec::len), Some(3), "{records}");
}
