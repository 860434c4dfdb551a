use lgsp::config::{Secret, Settings};
use lgsp::startup::Application;
use std::sync::OnceLock;

/// A running gateway with its own database.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// The PostgreSQL server the suite runs against, if any
/// (for example `postgres://postgres@127.0.0.1:5432`).
pub fn postgres_server() -> Option<String> {
    std::env::var("LGSP_TEST_POSTGRES_URL").ok().filter(|s| !s.is_empty())
}

/// A fresh database for one test: a new SQLite file, or a new PostgreSQL database.
pub fn fresh_database_url(dir: &std::path::Path) -> String {
    match postgres_server() {
        Some(server) => {
            use diesel::{Connection, RunQueryDsl};
            let name = format!("lgsp_test_{}", lgsp::telemetry::new_uuid().simple());
            let mut conn = diesel::PgConnection::establish(&format!("{server}/postgres"))
                .expect("LGSP_TEST_POSTGRES_URL is set but PostgreSQL is not reachable");
            diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut conn).expect("create database");
            format!("{server}/{name}")
        }
        None => format!("sqlite://{}", dir.join("lgsp.db").display()),
    }
}

pub fn init_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        if std::env::var("TEST_LOG").is_ok() {
            lgsp::telemetry::init(&Default::default());
        }
    });
}

pub fn test_settings(database_url: &str) -> Settings {
    Settings {
        port: 0,
        workers: 2,
        database_url: Secret::new(database_url),
        shutdown_timeout_secs: 1,
        ..Default::default()
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(customise: impl FnOnce(&mut Settings)) -> TestApp {
    init_logs();
    let dir = tempfile::tempdir().expect("temp dir");
    let database_url = fresh_database_url(dir.path());
    let mut settings = test_settings(&database_url);
    customise(&mut settings);
    let app = Application::build(settings).await.expect("application builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    TestApp { address, client: reqwest::Client::new(), _dir: dir }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("request sent")
    }
}

/// Asserts the response is an RFC 9457 problem with this status and code, and returns it.
pub async fn assert_problem(resp: reqwest::Response, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(resp.status().as_u16(), status, "status");
    let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    assert!(ct.starts_with("application/problem+json"), "content type was {ct}");
    assert!(resp.headers().contains_key("x-request-id"), "request id header");
    let body: serde_json::Value = resp.json().await.expect("problem body is JSON");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert!(body["type"].as_str().is_some_and(|t| t.ends_with(code)), "{body}");
    assert!(body["title"].is_string() && body["detail"].is_string(), "{body}");
    body
}

/// Registers a partner at `base` through the steward API and returns the
/// secret of its first key.
pub async fn register_partner(
    client: &reqwest::Client,
    base: &str,
    steward: &str,
    id: &str,
    policy: serde_json::Value,
    per_minute: u32,
    burst: u32,
) -> String {
    let body = serde_json::json!({"id": id, "name": format!("Agency {id}"), "kind": "state_agency", "policy": policy,
                                  "rate_per_minute": per_minute, "burst": burst});
    let r = client.post(format!("{base}/admin/v1/partners")).bearer_auth(steward).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    new_key(client, base, steward, id).await.1
}

/// A new key for a partner: (key id, secret).
pub async fn new_key(client: &reqwest::Client, base: &str, steward: &str, partner: &str) -> (String, String) {
    let r = client
        .post(format!("{base}/admin/v1/partners/{partner}/keys"))
        .bearer_auth(steward)
        .json(&serde_json::json!({"label": "t"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let k: serde_json::Value = r.json().await.unwrap();
    (k["id"].as_str().unwrap().into(), k["key"].as_str().unwrap().into())
}

/// Prefills fired at once; each task yields the HTTP status, or 0 when the
/// connection failed (the process was killed under it).
pub fn fire_prefills(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    ids: &[String],
    n: usize,
) -> Vec<tokio::task::JoinHandle<u16>> {
    (0..n)
        .map(|i| {
            let (client, url, key) = (client.clone(), format!("{base}/v1/prefill"), key.to_string());
            let body =
                serde_json::json!({"form": "ct01", "citizen_id": ids[i % ids.len()], "purpose": "residence_change"});
            tokio::spawn(async move {
                match client.post(url).bearer_auth(key).json(&body).send().await {
                    Ok(r) => r.status().as_u16(),
                    Err(_) => 0,
                }
            })
        })
        .collect()
}

/// The records a node stores in the audit trail at its first start, before
/// any request: one per shipped adapter and form, and per bootstrap admin token.
pub const fn startup_records(bootstrap_tokens: usize) -> i64 {
    (lgsp::adapter::SHIPPED.len() + lgsp::form::SHIPPED.len() + bootstrap_tokens) as i64
}
