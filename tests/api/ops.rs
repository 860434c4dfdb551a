use crate::helpers::{assert_problem, spawn_app, spawn_app_with};

#[tokio::test]
async fn health_is_ok_and_carries_a_request_id() {
    let app = spawn_app().await;
    let resp = app.get("/healthz").await;
    assert_eq!(resp.status(), 200);
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(id.len(), 36, "a generated uuid: {id}");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn a_callers_request_id_is_echoed_and_a_hostile_one_replaced() {
    let app = spawn_app().await;
    let resp = app.client.get(app.url("/healthz")).header("X-Request-Id", "portal-42.abc").send().await.unwrap();
    assert_eq!(resp.headers()["x-request-id"], "portal-42.abc");
    let resp = app.client.get(app.url("/healthz")).header("X-Request-Id", "a b<script>").send().await.unwrap();
    let id = resp.headers()["x-request-id"].to_str().unwrap();
    assert_ne!(id, "a b<script>");
    assert_eq!(id.len(), 36);
}

#[tokio::test]
async fn ready_when_the_database_is_migrated() {
    let app = spawn_app().await;
    let resp = app.get("/readyz").await;
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["ready"], true);
    assert_eq!(body["checks"][0]["name"], "database");
}

#[tokio::test]
async fn not_ready_but_alive_when_the_database_is_unreachable() {
    // Nothing listens on port 1: the server starts, says it is alive, and
    // reports not-ready until the database appears.
    let app = spawn_app_with(|s| {
        s.database_url = lgsp::config::Secret::new("postgres://postgres@127.0.0.1:1/lgsp");
        s.database.acquire_timeout_ms = 200;
    })
    .await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    let body = assert_problem(app.get("/readyz").await, 503, "not_ready").await;
    assert_eq!(body["checks"][0]["ok"], false);
    assert!(!body.to_string().contains("127.0.0.1:1"), "no connection details leak: {body}");
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let app = spawn_app().await;
    assert_problem(app.get("/v1/nothing-here").await, 404, "not_found").await;
    // A known path asked with a method it does not answer: 405, and Allow
    // names the methods it does.
    let method = |m: &str| reqwest::Method::from_bytes(m.as_bytes()).unwrap();
    for (m, path, allow) in [
        ("DELETE", "/healthz", "GET"),
        ("TRACE", "/healthz", "GET"),
        ("GET", "/v1/prefill", "POST"),
        ("PUT", "/v1/prefill", "POST"),
        ("DELETE", "/v1/prefill", "POST"),
        ("HEAD", "/v1/forms", "GET"),
        ("GET", "/v1/exchange/population/citizen", "POST"),
        ("POST", "/admin/v1/partners/000.00.15.H29", "GET, PATCH"),
        ("PUT", "/openapi.json", "GET"),
    ] {
        let resp = app.client.request(method(m), app.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 405, "{m} {path}");
        assert_eq!(resp.headers()["allow"], allow, "{m} {path}");
        assert_eq!(resp.headers()["content-type"], "application/problem+json", "{m} {path}");
        if m != "HEAD" {
            let problem: serde_json::Value = resp.json().await.unwrap();
            assert_eq!(problem["code"], "method_not_allowed", "{m} {path}");
        }
    }
}

#[tokio::test]
async fn metrics_count_requests_per_route_and_status() {
    let app = spawn_app().await;
    app.get("/healthz").await;
    app.get("/healthz").await;
    app.get("/no/such/route").await;
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(text.contains(r#"lgsp_http_requests_total{method="GET",route="/healthz",status="200"} 2"#), "{text}");
    assert!(text.contains(r#"status="404""#), "{text}");
    assert!(text.contains("lgsp_http_request_duration_seconds_bucket"), "{text}");
}

#[tokio::test]
async fn openapi_is_generated_and_docs_are_served() {
    let app = spawn_app().await;
    let doc: serde_json::Value = app.get("/openapi.json").await.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    assert!(doc["paths"]["/healthz"]["get"].is_object());
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    let docs = app.get("/docs").await;
    assert_eq!(docs.status(), 200);
    let html = docs.text().await.unwrap();
    assert!(html.contains("spec-url=\"/openapi.json\""), "the docs page renders the generated spec");
    // The page loads nothing from outside: its one script is served by lgsp.
    assert!(!html.contains("https://") && !html.contains("http://"), "{html}");
    let script = html.split("<script src=\"").nth(1).and_then(|s| s.split('"').next()).expect("a script");
    let js = app.get(script).await;
    assert_eq!(js.status(), 200);
    assert!(js.headers()["content-type"].to_str().unwrap().starts_with("text/javascript"));
    let body = js.text().await.unwrap();
    assert!(body.len() > 100_000 && body.contains("Redoc"), "the Redoc bundle");
    let stale = app.get("/docs/redoc-0.0.1.js").await;
    assert_eq!(stale.status(), 404);
    assert_eq!(stale.headers()["content-type"], "application/problem+json");
}

/// The extractor configuration every lgsp route uses turns actix's own
/// JSON, path, query and payload errors into problems with stable codes.
#[actix_web::test]
async fn bad_requests_of_every_kind_become_problems() {
    use actix_web::{test, web, App, HttpResponse};
    #[derive(serde::Deserialize, serde::Serialize)]
    struct Body {
        name: String,
    }
    #[derive(serde::Deserialize)]
    struct Q {
        #[allow(dead_code)]
        n: u32,
    }
    let settings = lgsp::config::Settings { max_body_bytes: 64, ..Default::default() };
    let app = test::init_service(
        App::new()
            .route(
                "/probe/json",
                web::post().to(|b: web::Json<Body>| async move { HttpResponse::Ok().json(b.into_inner()) }),
            )
            .route(
                "/probe/path/{n}",
                web::get().to(|n: web::Path<u32>| async move { HttpResponse::Ok().body(n.to_string()) }),
            )
            .route("/probe/query", web::get().to(|_q: web::Query<Q>| async { HttpResponse::Ok().finish() }))
            .configure(|cfg| lgsp::http::configure(cfg, &settings))
            .wrap(actix_web::middleware::from_fn(lgsp::http::middleware::observe)),
    )
    .await;
    let cases: Vec<(test::TestRequest, u16, &str)> = vec![
        (
            test::TestRequest::post()
                .uri("/probe/json")
                .insert_header(("content-type", "application/json"))
                .set_payload(r#"{"name":"#),
            400,
            "malformed_json",
        ),
        (
            test::TestRequest::post()
                .uri("/probe/json")
                .insert_header(("content-type", "text/plain"))
                .set_payload(r#"{"name":"a"}"#),
            415,
            "unsupported_media_type",
        ),
        (
            test::TestRequest::post()
                .uri("/probe/json")
                .insert_header(("content-type", "application/json"))
                .set_payload(format!(r#"{{"name":"{}"}}"#, "x".repeat(100))),
            413,
            "payload_too_large",
        ),
        (
            test::TestRequest::post()
                .uri("/probe/json")
                .insert_header(("content-type", "application/json"))
                .set_payload(r#"{"nom":1}"#),
            422,
            "invalid_body",
        ),
        (test::TestRequest::get().uri("/probe/path/abc"), 400, "invalid_parameter"),
        (test::TestRequest::get().uri("/probe/query?n=-1"), 400, "invalid_parameter"),
        (test::TestRequest::get().uri("/no/such/path"), 404, "not_found"),
    ];
    for (req, status, code) in cases {
        let resp = test::call_service(&app, req.to_request()).await;
        assert_eq!(resp.status().as_u16(), status, "{code}");
        assert_eq!(resp.headers().get("content-type").unwrap(), "application/problem+json", "{code}");
        assert!(resp.headers().contains_key("x-request-id"), "{code}");
        let body: serde_json::Value = test::read_body_json(resp).await;
        assert_eq!(body["code"], code);
        assert_eq!(body["status"], status);
        assert!(!body["detail"].as_str().unwrap().is_empty());
    }
    // A well-formed request passes through.
    let ok = test::TestRequest::post().uri("/probe/json").set_json(serde_json::json!({"name": "An"})).to_request();
    assert_eq!(test::call_service(&app, ok).await.status(), 200);
}

/// The document is a contract a generated client can rely on: every error is
/// a problem document, every answer a named shape, inputs carry the server's
/// own constraints.
#[tokio::test]
async fn the_openapi_document_says_what_lgsp_sends_and_accepts() {
    let app = spawn_app().await;
    let doc: serde_json::Value = app.get("/openapi.json").await.json().await.unwrap();
    let schemas = &doc["components"]["schemas"];
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            for (status, response) in op["responses"].as_object().unwrap() {
                let content = response["content"].as_object().cloned().unwrap_or_default();
                if status.starts_with('4') || (status.starts_with('5') && path != "/readyz") {
                    assert_eq!(
                        content.keys().collect::<Vec<_>>(),
                        ["application/problem+json"],
                        "{method} {path} {status}"
                    );
                    continue;
                }
                for (media, body) in content {
                    let schema = &body["schema"];
                    let named = schema["$ref"].is_string() || schema["items"]["$ref"].is_string();
                    let text = media.starts_with("text/") || media == "application/x-ndjson";
                    assert!(named || text, "{method} {path} {status} {media}: an unnamed shape {schema}");
                }
            }
            if op["security"].is_array() {
                for status in ["401", "403"] {
                    assert!(op["responses"][status].is_object(), "{method} {path} documents {status}");
                }
            }
        }
    }
    assert!(operations > 30, "{operations}");
    // The shapes a portal's client reads.
    assert_eq!(schemas["FieldValue"]["properties"]["value"]["$ref"], "#/components/schemas/AnyValue");
    assert!(schemas["AnyValue"].get("type").is_none(), "a field's value is any JSON value");
    let answers = |path: &str, method: &str| doc["paths"][path][method]["responses"]["200"]["content"].clone();
    assert_eq!(
        answers("/v1/adapters", "get")["application/json"]["schema"]["items"]["$ref"],
        "#/components/schemas/AdapterListing"
    );
    assert_eq!(
        answers("/admin/v1/audit/verify", "get")["application/json"]["schema"]["$ref"],
        "#/components/schemas/AuditVerification"
    );
    assert_eq!(
        answers("/admin/v1/adapters/{id}/test", "post")["application/json"]["schema"]["$ref"],
        "#/components/schemas/DryRunReport"
    );
    assert_eq!(
        answers("/admin/v1/audit/export", "get")["application/json"]["schema"]["$ref"],
        "#/components/schemas/AuditExport"
    );
    // Stewards' documents are the schemas that check them.
    assert_eq!(schemas["AdapterManifest"]["required"], serde_json::json!(["id", "name", "upstream", "operations"]));
    assert!(schemas["AdapterManifest.operation"].is_object());
    assert!(schemas["FormDefinition.field"].is_object());
    // A personal ID number: the pattern refuses what the server refuses.
    let pattern = regex_bites::Regex::new(schemas["CitizenId"]["pattern"].as_str().unwrap()).unwrap();
    assert!(pattern.is_match("001090001234"));
    for refused in ["000193840991", "001690001234", "00109000123", ""] {
        assert!(!pattern.is_match(refused), "{refused}");
    }
    let prefill = &schemas["PrefillRequest"]["properties"];
    assert_eq!(prefill["citizen_id"]["$ref"], "#/components/schemas/CitizenId");
    assert_eq!(prefill["relatives"]["$ref"], "#/components/schemas/Relatives");
    assert_eq!(schemas["Relatives"]["additionalProperties"]["$ref"], "#/components/schemas/CitizenId");
    assert!(
        prefill["requester_id"].to_string().contains("#/components/schemas/CitizenId"),
        "{}",
        prefill["requester_id"]
    );
}

/// Every example in the README is an example in the document, so neither
/// drifts from the other (and from what the server accepts: schemathesis
/// sends the document's examples).
#[tokio::test]
async fn the_readmes_examples_are_the_documents() {
    let app = spawn_app().await;
    let doc: serde_json::Value = app.get("/openapi.json").await.json().await.unwrap();
    fn collect(v: &serde_json::Value, out: &mut Vec<serde_json::Value>) {
        match v {
            serde_json::Value::Object(o) => {
                for (k, v) in o {
                    match (k.as_str(), v) {
                        ("example", e) => out.push(e.clone()),
                        ("examples", serde_json::Value::Array(es)) => out.extend(es.iter().cloned()),
                        _ => {}
                    }
                    collect(v, out);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| collect(v, out)),
            _ => {}
        }
    }
    let mut examples = Vec::new();
    collect(&doc, &mut examples);
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let blocks: Vec<&str> =
        readme.split("```json\n").skip(1).map(|rest| rest.split("```").next().unwrap_or_default()).collect();
    assert!(blocks.len() >= 4, "{}", blocks.len());
    for block in blocks {
        let example: serde_json::Value =
            serde_json::from_str(block).unwrap_or_else(|e| panic!("a README example is not JSON ({e}): {block}"));
        assert!(examples.contains(&example), "the README's example is not in the document: {example}");
    }
}
