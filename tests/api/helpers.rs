use lgsp::config::{Secret, Settings};
use lgsp::registries::{default_tokens, MockConfig, MockRegistries};
use lgsp::startup::Application;
use lgsp::state::AppState;
use serde_json::{json, Value};
use std::sync::OnceLock;

/// The three mock registries on free ports, with a population of `citizens`.
pub fn start_mocks(citizens: usize) -> MockRegistries {
    let config = MockConfig { ports: [0, 0, 0], citizens, seed: 11, ..Default::default() };
    MockRegistries::start(&config).expect("mock registries start")
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

/// The key every test node seals upstream credentials with.
pub const CREDENTIALS_KEY: &str = "6c67737020746573742063726564656e7469616c73206b657920303030303031";

pub fn test_settings(database_url: &str) -> Settings {
    Settings {
        port: 0,
        workers: 2,
        database_url: Secret::new(database_url),
        shutdown_timeout_secs: 1,
        credentials_key: Secret::new(CREDENTIALS_KEY),
        // Dossier steps looked at every 50 ms, a failing registry retried
        // within half a second: a flow's test takes a second, not minutes.
        dossiers: lgsp::config::DossierSettings { poll_ms: 50, retry_max_ms: 400, ..Default::default() },
        ..Default::default()
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
/// any request: one for the shipped elements, one per shipped adapter and
/// form and flow, and one per bootstrap admin token.
pub const fn startup_records(bootstrap_tokens: usize) -> i64 {
    (1 + lgsp::adapter::SHIPPED.len() + lgsp::form::SHIPPED.len() + lgsp::flow::SHIPPED.len() + bootstrap_tokens) as i64
}

pub const STEWARD: &str = "steward-token-for-tests-0001";
pub const AUDITOR: &str = "auditor-token-for-tests-0001";
/// The records of the platform's first start: its shipped adapters and forms,
/// and its two bootstrap tokens.
pub const STARTUP: i64 = startup_records(2);

/// A running gateway with its own database, in front of the mock registries,
/// with a steward's and an auditor's token: the suite's one harness. Its
/// methods call the endpoints as a portal, a steward or an auditor would.
pub struct TestApp {
    pub mocks: MockRegistries,
    pub base: String,
    pub client: reqwest::Client,
    pub state: actix_web::web::Data<AppState>,
    pub database_url: String,
    handle: actix_web::dev::ServerHandle,
    running: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(customise: impl FnOnce(&mut lgsp::config::Settings)) -> TestApp {
    spawn_app_with_mocks(|s, _| customise(s)).await
}

/// [`spawn_app_with`], the settings made knowing where the mocks run.
pub async fn spawn_app_with_mocks(customise: impl FnOnce(&mut lgsp::config::Settings, &MockRegistries)) -> TestApp {
    init_logs();
    let mocks = start_mocks(3_000);
    let dir = tempfile::tempdir().unwrap();
    let database_url = fresh_database_url(dir.path());
    let mut settings = test_settings(&database_url);
    lgsp::demo::use_mocks(&mut settings, &mocks, &default_tokens());
    settings.bootstrap_admin_tokens = vec![
        lgsp::config::Secret::new(format!("steward:{STEWARD}")),
        lgsp::config::Secret::new(format!("auditor:{AUDITOR}")),
    ];
    customise(&mut settings, &mocks);
    let app = Application::build(settings).await.expect("gateway builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    let handle = app.handle();
    let running = Some(tokio::spawn(app.run_until_stopped()));
    TestApp { mocks, base, client: reqwest::Client::new(), state, database_url, handle, running, _dir: dir }
}

impl TestApp {
    /// A graceful stop, as on SIGTERM: in-flight requests finish, pending
    /// audit records are stored, then the server task ends.
    pub async fn stop(&mut self) {
        self.handle.stop(true).await;
        if let Some(running) = self.running.take() {
            running.await.expect("server task").expect("server stopped cleanly");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The settings of another node on this one's database and mocks, which
    /// follows the catalogue every 100 ms.
    pub fn node_settings(&self) -> Settings {
        let mut settings = test_settings(&self.database_url);
        lgsp::demo::use_mocks(&mut settings, &self.mocks, &default_tokens());
        settings.catalog_refresh_ms = 100;
        settings
    }

    /// Starts a node with `settings`; its base URL.
    pub async fn start_node(settings: Settings) -> String {
        let node = Application::build(settings).await.expect("the node builds");
        let base = format!("http://127.0.0.1:{}", node.port());
        tokio::spawn(node.run_until_stopped());
        base
    }

    /// Another node on this one's database (see [`TestApp::node_settings`]); its base URL.
    pub async fn second_node(&self) -> String {
        TestApp::start_node(self.node_settings()).await
    }

    /// `GET path`, without credentials.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("request sent")
    }

    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut req = self.client.request(method, self.url(path)).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.unwrap()
    }

    /// Registers a partner through the steward API and returns its first key.
    pub async fn partner(&self, id: &str, policy: Value, per_minute: u32, burst: u32) -> String {
        register_partner(&self.client, &self.base, STEWARD, id, policy, per_minute, burst).await
    }

    /// A new key: (key id, secret).
    pub async fn key(&self, partner: &str) -> (String, String) {
        new_key(&self.client, &self.base, STEWARD, partner).await
    }

    pub async fn exchange(&self, key: &str, adapter: &str, op: &str, body: Value) -> reqwest::Response {
        self.exchange_for("residence_change", key, adapter, op, body).await
    }

    /// An exchange stating `purpose`.
    pub async fn exchange_for(
        &self,
        purpose: &str,
        key: &str,
        adapter: &str,
        op: &str,
        body: Value,
    ) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/v1/exchange/{adapter}/{op}")))
            .bearer_auth(key)
            .header("X-Purpose", purpose)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn prefill(&self, key: &str, form: &str, purpose: &str, id: &str) -> reqwest::Response {
        self.client
            .post(self.url("/v1/prefill"))
            .bearer_auth(key)
            .json(&json!({"form": form, "citizen_id": id, "purpose": purpose}))
            .send()
            .await
            .unwrap()
    }

    /// How many records of the trail are stewards' changes (`action` `admin`,
    /// not those of the first start): registering a partner and making its
    /// key are two.
    pub async fn admin_records(&self) -> i64 {
        let mut count = 0;
        let mut cursor = String::new();
        loop {
            let page = self.audit(&format!("action=admin&limit=500{cursor}")).await;
            count += page["items"].as_array().map_or(0, Vec::len) as i64;
            match page["next_cursor"].as_i64() {
                Some(next) => cursor = format!("&cursor={next}"),
                None => return count - STARTUP,
            }
        }
    }

    /// An operation as `GET /v1/adapters` describes it to the partner with `key`.
    pub async fn listed_operation(&self, key: &str, adapter: &str, operation: &str) -> Value {
        let r = self.client.get(self.url("/v1/adapters")).bearer_auth(key).send().await.unwrap();
        let adapters: Value = r.json().await.unwrap();
        let a = adapters.as_array().unwrap().iter().find(|a| a["id"] == adapter).unwrap();
        a["operations"].as_array().unwrap().iter().find(|o| o["name"] == operation).unwrap().clone()
    }

    /// A citizen's access log, first page, as the portal with `key` sees it.
    pub async fn access_log(&self, key: &str, citizen: &str) -> Value {
        let r = self.client.get(self.url(&format!("/v1/subjects/{citizen}/access-log"))).bearer_auth(key).send().await;
        let r = r.unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// The auditor's verification of the whole chain (`intact`, `records`, …).
    pub async fn verify_trail(&self) -> Value {
        let r = self.admin(reqwest::Method::GET, "/admin/v1/audit/verify", AUDITOR, None).await;
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    pub async fn audit(&self, query: &str) -> Value {
        let r = self.admin(reqwest::Method::GET, &format!("/admin/v1/audit?{query}"), AUDITOR, None).await;
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }
}

pub fn everything() -> Value {
    json!({"forms": ["*"], "purposes": ["*"], "operations": ["*"], "elements": ["*"], "access_log": true})
}

/// A prefill answer's field by id.
pub fn field<'a>(answer: &'a Value, id: &str) -> &'a Value {
    answer["fields"].as_array().unwrap().iter().find(|f| f["id"] == id).unwrap_or_else(|| panic!("no field {id}"))
}

/// A prefill answer's source status by `adapter.operation`.
pub fn source<'a>(answer: &'a Value, op: &str) -> &'a Value {
    answer["sources"].as_array().unwrap().iter().find(|s| s["operation"] == op).unwrap_or_else(|| panic!("no {op}"))
}

pub fn new_registry_manifest(url: &str) -> Value {
    json!({
        "id": "residence_lookup",
        "name": "Residence lookup (registered at run time)",
        "upstream": {"base_url": url, "credential": "population", "auth": {"header": "Authorization", "prefix": "Bearer "}},
        "operations": {
            "whereabouts": {
                "method": "GET",
                "path": "/api/v1/cong-dan/{citizen_id}",
                "request_schema": {"type": "object", "required": ["citizen_id"], "additionalProperties": false,
                                   "properties": {"citizen_id": {"type": "string", "pattern": "^[0-9]{12}$"}}},
                "response_schema": {"type": "object", "required": ["du_lieu"],
                                    "properties": {"du_lieu": {"type": "object", "required": ["ho_ten"]}}},
                "mapping": "{full_name: .du_lieu.ho_ten, phone: .du_lieu.so_dien_thoai}",
                "elements": ["full_name", "phone"]
            }
        }
    })
}

/// Whether `check` comes to hold within three seconds, asked every 50 ms:
/// for what another node does at its next catalogue refresh.
pub async fn eventually<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..60 {
        if check().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}
