//! Hostile input: every request below gets a clear 4xx problem, none reaches a
//! registry, and the database is as it was (the audit chain included).

use crate::helpers::{everything, spawn_app, TestApp, AUDITOR, STEWARD};
use serde_json::{json, Value};

const INJECTIONS: [&str; 8] = [
    "' OR '1'='1",
    "1; DROP TABLE audit_log; --",
    "../../../../etc/passwd",
    "..%2F..%2Fetc%2Fpasswd",
    "%00",
    "<script>alert(1)</script>",
    "０１２３４５６７８９０１",
    "Nguyễn Văn A",
];

/// Registry calls made so far, from lgsp's own upstream histogram.
fn upstream_calls(p: &TestApp) -> u64 {
    p.state
        .metrics
        .registry
        .gather()
        .iter()
        .filter(|f| f.name() == "lgsp_upstream_request_duration_seconds")
        .flat_map(|f| f.get_metric().iter().map(|m| m.get_histogram().get_sample_count()))
        .sum()
}

/// Asserts an RFC 9457 problem with a 4xx status and a message that says what to fix.
async fn assert_4xx(what: &str, r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    assert!((400..500).contains(&status), "{what}: {status}");
    let ct = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    assert_eq!(ct, "application/problem+json", "{what}");
    let body: Value = r.json().await.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(body["status"], status, "{what}");
    let code = body["code"].as_str().unwrap_or_else(|| panic!("{what}: no code in {body}")).to_string();
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(detail.len() > 10, "{what}: {body}");
    // In the caller's terms: JSON's and HTTP's, never Rust's.
    let rust = ["i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64", "usize", "f64", "struct", "enum", "recursion"];
    let said = body.to_string();
    let words: Vec<&str> = said.split(|c: char| !c.is_ascii_alphanumeric()).collect();
    assert!(!words.iter().any(|w| rust.contains(w)), "{what}: {body}");
    (status, code)
}

fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

#[tokio::test]
async fn hostile_bodies_ids_paths_and_headers_get_problems_and_touch_nothing() {
    let p = spawn_app().await;
    let id = p.mocks.population.samples(1).adult_with_household[0].clone();
    let key = p.partner("000.00.60.H29", everything(), 600_000, 10_000).await;
    let before = upstream_calls(&p);
    let send = |body: Vec<u8>, ct: &str| {
        p.client.post(p.url("/v1/prefill")).bearer_auth(&key).header("content-type", ct).body(body).send()
    };

    // Bodies.
    let good = json!({"form": "ct01", "citizen_id": id, "purpose": "residence_change"}).to_string();
    let bodies: Vec<(&str, Vec<u8>, &str, u16, &str)> = vec![
        ("malformed", br#"{"form": "ct01", "citizen_id": }"#.to_vec(), "application/json", 400, "malformed_json"),
        ("truncated", good.as_bytes()[..good.len() / 2].to_vec(), "application/json", 400, "malformed_json"),
        ("empty", Vec::new(), "application/json", 400, "malformed_json"),
        ("not an object", b"[1,2,3]".to_vec(), "application/json", 422, "invalid_body"),
        (
            "deeply nested",
            format!(r#"{{"form": {}}}"#, nested(100_000)).into_bytes(),
            "application/json",
            400,
            "malformed_json",
        ),
        (
            "nested within the limit",
            format!(r#"{{"form": {}}}"#, nested(100)).into_bytes(),
            "application/json",
            422,
            "invalid_body",
        ),
        (
            "huge",
            format!(r#"{{"form": "{}"}}"#, "x".repeat(2 * 1024 * 1024)).into_bytes(),
            "application/json",
            413,
            "payload_too_large",
        ),
        ("wrong content type", good.clone().into_bytes(), "text/plain", 415, "unsupported_media_type"),
        ("form-encoded", b"form=ct01".to_vec(), "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        ("no content type", good.clone().into_bytes(), "", 415, "unsupported_media_type"),
        (
            "unknown field",
            json!({"form": "ct01", "citizen_id": id, "purpose": "residence_change", "admin": true})
                .to_string()
                .into_bytes(),
            "application/json",
            422,
            "invalid_body",
        ),
        (
            "wrong types",
            json!({"form": 1, "citizen_id": 1, "purpose": ["x"]}).to_string().into_bytes(),
            "application/json",
            422,
            "invalid_body",
        ),
        ("invalid UTF-8", b"{\"form\": \"\xff\xfe\"}".to_vec(), "application/json", 400, "malformed_json"),
        (
            "declared in another charset",
            good.clone().into_bytes(),
            "application/json; charset=utf-16",
            415,
            "unsupported_media_type",
        ),
    ];
    for (what, body, ct, status, code) in bodies {
        let got = assert_4xx(what, send(body, ct).await.unwrap()).await;
        assert_eq!(got, (status, code.to_string()), "{what}");
    }

    // Injection and traversal strings in every body parameter.
    for s in INJECTIONS {
        let as_id = json!({"form": "ct01", "citizen_id": s, "purpose": "residence_change"}).to_string();
        assert_eq!(
            assert_4xx(s, send(as_id.into_bytes(), "application/json").await.unwrap()).await.1,
            "invalid_citizen_id"
        );
        let as_form = json!({"form": s, "citizen_id": id, "purpose": "residence_change"}).to_string();
        assert_eq!(assert_4xx(s, send(as_form.into_bytes(), "application/json").await.unwrap()).await.0, 404);
        let as_purpose = json!({"form": "ct01", "citizen_id": id, "purpose": s}).to_string();
        assert_4xx(s, send(as_purpose.into_bytes(), "application/json").await.unwrap()).await;
        let as_relative =
            json!({"form": "ct01", "citizen_id": id, "purpose": "residence_change", "relatives": {"spouse": s}});
        assert_4xx(s, send(as_relative.to_string().into_bytes(), "application/json").await.unwrap()).await;
        let r = p.exchange(&key, "population", "citizen", json!({"citizen_id": s})).await;
        assert_4xx(s, r).await;
    }
    // Invalid IDs: wrong length, a letter, an impossible province or century.
    for bad in ["", "0", "00109001234", "0010900123456", "00109001234x", "999090012345", "001990012345"] {
        let body = json!({"form": "ct01", "citizen_id": bad, "purpose": "residence_change"}).to_string();
        let (status, code) = assert_4xx(bad, send(body.into_bytes(), "application/json").await.unwrap()).await;
        assert_eq!((status, code.as_str()), (400, "invalid_citizen_id"), "{bad}");
    }

    // Path parameters.
    let enc = |s: &str| urlencoding::encode(s).into_owned();
    for s in INJECTIONS {
        let paths = [
            format!("/v1/forms/{}", enc(s)),
            format!("/v1/forms/{}/coverage", enc(s)),
            format!("/v1/subjects/{}/access-log", enc(s)),
        ];
        for path in paths {
            let r = p.client.get(p.url(&path)).bearer_auth(&key).send().await.unwrap();
            assert_4xx(&path, r).await;
        }
        let path = format!("/v1/exchange/{}/{}", enc(s), enc(s));
        let r = p.exchange(&key, &enc(s), &enc(s), json!({"citizen_id": id})).await;
        assert_eq!(assert_4xx(&path, r).await.0, 404);
        for admin in [
            format!("/admin/v1/adapters/{}", enc(s)),
            format!("/admin/v1/partners/{}", enc(s)),
            format!("/admin/v1/partners/{}/keys", enc(s)),
        ] {
            let r = p.admin(reqwest::Method::GET, &admin, STEWARD, None).await;
            assert_eq!(assert_4xx(&admin, r).await.0, 404, "{admin}");
        }
        let r = p.admin(reqwest::Method::DELETE, &format!("/admin/v1/tokens/{}", enc(s)), STEWARD, None).await;
        assert_eq!(assert_4xx("token id", r).await.0, 404);
        // Query parameters of the audit search are bound, never spliced.
        let r = p
            .admin(
                reqwest::Method::GET,
                &format!("/admin/v1/audit?subject={}&partner_id={}", enc(s), enc(s)),
                AUDITOR,
                None,
            )
            .await;
        assert_eq!(r.status(), 200, "{s}");
        let page: Value = r.json().await.unwrap();
        assert_eq!(page["items"].as_array().unwrap().len(), 0, "{s}: {page}");
    }
    let r = p.admin(reqwest::Method::GET, "/admin/v1/audit?from=yesterday", AUDITOR, None).await;
    assert_eq!(assert_4xx("from", r).await, (400, "invalid_parameter".to_string()));
    let r = p.admin(reqwest::Method::GET, "/admin/v1/audit?limit=-1", AUDITOR, None).await;
    assert_eq!(assert_4xx("limit", r).await, (400, "invalid_parameter".to_string()));
    // The last record number there could be: an empty page, not an overflow.
    let r =
        p.admin(reqwest::Method::GET, "/admin/v1/audit/export?from=9223372036854775807&limit=1", AUDITOR, None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["records"], json!([]));
    let r = p.admin(reqwest::Method::GET, "/admin/v1/audit?limit=many", AUDITOR, None).await;
    assert_eq!(assert_4xx("limit in words", r).await, (400, "invalid_parameter".to_string()));
    let r = p.client.get(p.url(&format!("/v1/subjects/{id}/access-log?cursor=1.5"))).bearer_auth(&key).send().await;
    assert_eq!(assert_4xx("a cursor that is no record", r.unwrap()).await, (400, "invalid_parameter".to_string()));

    // Headers: an over-long key, purpose or consent reference, a key that is not ASCII.
    let long = "a".repeat(16 * 1024);
    let r = p.client.post(p.url("/v1/prefill")).bearer_auth(&long).body(good.clone()).send().await.unwrap();
    assert_4xx("long key", r).await;
    let r = p
        .client
        .post(p.url("/v1/exchange/population/citizen"))
        .bearer_auth(&key)
        .header("X-Purpose", long.as_str())
        .json(&json!({"citizen_id": id}))
        .send()
        .await
        .unwrap();
    assert_4xx("long purpose", r).await;
    let r = p
        .client
        .post(p.url("/v1/prefill"))
        .header("Authorization", reqwest::header::HeaderValue::from_bytes(b"Bearer lgsp_pk_\xc3\xa9\xff").unwrap())
        .body(good.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(assert_4xx("odd key", r).await.0, 401);
    // Far past what any header should hold: still a problem, never a crash.
    let r = p.client.get(p.url("/v1/forms")).header("X-Padding", "b".repeat(64 * 1024)).send().await.unwrap();
    assert_4xx("huge header", r).await;

    // Nothing reached a registry; the database holds what it held and the chain verifies.
    assert_eq!(upstream_calls(&p), before, "no hostile request reached a registry");
    let v = p.verify_trail().await;
    assert_eq!(v["intact"], true, "{v}");
    let partners: Value =
        p.admin(reqwest::Method::GET, "/admin/v1/partners", STEWARD, None).await.json().await.unwrap();
    assert_eq!(partners.as_array().unwrap().len(), 1);
    // The good request still works.
    assert_eq!(send(good.into_bytes(), "application/json").await.unwrap().status(), 200);
    assert!(upstream_calls(&p) > before);
}

#[tokio::test]
async fn hostile_steward_documents_are_refused_with_pointers() {
    let p = spawn_app().await;
    let cases: Vec<(&str, &str, Value)> = vec![
        ("/admin/v1/adapters", "off the allow-list", {
            let mut m: Value = serde_json::from_str(lgsp::adapter::SHIPPED[0].1).unwrap();
            // A configured credential's URL overrides the manifest's, so the
            // manifest's own URL is what would be called only without one.
            m["id"] = json!("exfiltrate");
            m["upstream"]["credential"] = json!("unconfigured");
            m["upstream"]["base_url"] = json!("http://169.254.169.254/latest/meta-data");
            m
        }),
        ("/admin/v1/adapters", "file URL", {
            let mut m: Value = serde_json::from_str(lgsp::adapter::SHIPPED[0].1).unwrap();
            m["id"] = json!("local_file");
            m["upstream"]["credential"] = json!("unconfigured");
            m["upstream"]["base_url"] = json!("file:///etc/passwd");
            m
        }),
        ("/admin/v1/adapters", "injected id", {
            let mut m: Value = serde_json::from_str(lgsp::adapter::SHIPPED[0].1).unwrap();
            m["id"] = json!("x'; DROP TABLE adapters; --");
            m
        }),
        (
            "/admin/v1/forms",
            "traversal id",
            json!({"id": "../../etc/passwd", "title": "x", "form_code": "x",
            "procedure": {"code": "x", "name": "x"}, "purposes": ["x"], "fields": []}),
        ),
        (
            "/admin/v1/partners",
            "injected partner",
            json!({"id": "' OR 1=1 --", "name": "x", "kind": "state_agency",
            "rate_per_minute": 1, "burst": 1, "policy": {}}),
        ),
    ];
    for (path, what, doc) in cases {
        let r = p.admin(reqwest::Method::POST, path, STEWARD, Some(doc)).await;
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        assert_eq!(status, 422, "{what}: {body}");
        assert!(body["errors"].as_array().is_some_and(|e| !e.is_empty()), "{what}: {body}");
    }
    let adapters: Value =
        p.admin(reqwest::Method::GET, "/admin/v1/adapters", STEWARD, None).await.json().await.unwrap();
    assert_eq!(adapters.as_array().unwrap().len(), 3, "nothing was registered");
}
