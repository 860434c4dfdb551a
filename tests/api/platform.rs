//! The platform end to end: mock registries over HTTP, a gateway with its own
//! database, partners with keys, adapters and forms changed at run time.

use crate::helpers::{
    assert_problem, fire_prefills, fresh_database_url, init_logs, new_key, register_partner, startup_records,
    test_settings,
};
use crate::registries::start_mocks;
use lgsp::registries::{default_tokens, Faults, MockRegistries, RegistryKind};
use lgsp::startup::Application;
use lgsp::state::AppState;
use serde_json::{json, Value};

pub const STEWARD: &str = "steward-token-for-tests-0001";
pub const AUDITOR: &str = "auditor-token-for-tests-0001";
/// The records of the platform's first start: its shipped adapters and forms,
/// and its two bootstrap tokens.
pub const STARTUP: i64 = startup_records(2);

pub struct Platform {
    pub mocks: MockRegistries,
    pub base: String,
    pub client: reqwest::Client,
    pub state: actix_web::web::Data<AppState>,
    pub database_url: String,
    handle: actix_web::dev::ServerHandle,
    running: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

pub async fn platform() -> Platform {
    platform_with(|_| {}).await
}

pub async fn platform_with(customise: impl FnOnce(&mut lgsp::config::Settings)) -> Platform {
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
    customise(&mut settings);
    let app = Application::build(settings).await.expect("gateway builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    let handle = app.handle();
    let running = Some(tokio::spawn(app.run_until_stopped()));
    Platform { mocks, base, client: reqwest::Client::new(), state, database_url, handle, running, _dir: dir }
}

impl Platform {
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
        self.state.audit.flush(std::time::Duration::from_secs(5)).await;
        self.state.db.run(|c| lgsp::audit::query::count_action(c, "admin")).await.unwrap() - STARTUP
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

    pub async fn audit(&self, query: &str) -> Value {
        let r = self.admin(reqwest::Method::GET, &format!("/admin/v1/audit?{query}"), AUDITOR, None).await;
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }
}

pub fn everything() -> Value {
    json!({"forms": ["*"], "purposes": ["*"], "operations": ["*"], "elements": ["*"], "access_log": true})
}

#[tokio::test]
async fn a_partner_exchanges_through_an_adapter_and_only_gets_its_granted_elements() {
    let p = platform().await;
    let s = p.mocks.population.samples(1);
    let id = &s.adult_with_household[0];
    let person = p.mocks.population.find(id).unwrap();
    let key = p
        .partner(
            "000.00.20.H29",
            json!({"operations": ["population.citizen"], "purposes": ["residence_change"],
                                          "elements": ["full_name", "date_of_birth"]}),
            600,
            100,
        )
        .await;
    let r = p.exchange(&key, "population", "citizen", json!({"citizen_id": id})).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("ratelimit") && r.headers().contains_key("ratelimit-policy"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["elements"]["full_name"], person.name.full());
    assert_eq!(body["elements"]["date_of_birth"], person.dob.to_string());
    assert!(body["elements"].get("phone").is_none() && body["elements"].get("permanent_residence").is_none());
    // Withheld names every element of the operation outside the grant, whether or not this
    // citizen's record holds it: a living citizen's date of death is named too.
    let withheld: Vec<&str> = body["withheld"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(withheld.contains(&"permanent_residence") && withheld.contains(&"date_of_death"), "{body}");
    assert!(person.death.is_none() && !withheld.contains(&"full_name"), "{body}");
    assert_eq!(body["elements"].as_object().unwrap().len(), 2, "{body}");

    // Outside the grant: another operation, an unknown one, a wrong purpose, no key.
    let r = p.exchange(&key, "population", "household", json!({"citizen_id": id})).await;
    let problem = assert_problem(r, 403, "forbidden").await;
    assert!(problem["detail"].as_str().unwrap().contains("population.household"), "{problem}");
    assert_problem(p.exchange(&key, "population", "nope", json!({"citizen_id": id})).await, 404, "not_found").await;
    let r = p.exchange_for("marketing", &key, "population", "citizen", json!({"citizen_id": id})).await;
    assert_problem(r, 403, "forbidden").await;
    let r =
        p.client.post(p.url("/v1/exchange/population/citizen")).json(&json!({"citizen_id": id})).send().await.unwrap();
    assert_problem(r, 401, "unauthorized").await;
    // Checkpoint 1: the partner's request breaks the operation's schema.
    let r = p.exchange(&key, "population", "citizen", json!({"citizen_id": id, "extra": 1})).await;
    let problem = assert_problem(r, 422, "invalid_body").await;
    assert_eq!(problem["errors"][0]["pointer"], "", "{problem}");
    // A personal ID number is checked as a prefill checks it.
    let r = p.exchange(&key, "population", "citizen", json!({"citizen_id": "12ab"})).await;
    let problem = assert_problem(r, 400, "invalid_citizen_id").await;
    assert_eq!(problem["errors"][0]["pointer"], "/citizen_id");

    // The list of what it may call carries the schemas.
    let list: Value = p.client.get(p.url("/v1/adapters")).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["operations"][0]["name"], "citizen");
    assert!(list[0]["operations"][0]["request_schema"]["required"].is_array());

    // Every one of those calls is in the audit trail, the refusals too.
    let page = p.audit("partner_id=000.00.20.H29&action=exchange").await;
    let outcomes: Vec<&str> =
        page["items"].as_array().unwrap().iter().map(|i| i["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes.len(), 6, "{page}");
    assert_eq!(outcomes.iter().filter(|o| **o == "ok").count(), 1);
    assert_eq!(page["items"].as_array().unwrap().last().unwrap()["elements"], json!(["date_of_birth", "full_name"]));
    let all = p.audit("action=exchange").await;
    assert_eq!(all["items"].as_array().unwrap().len(), 7, "the call without a key is recorded too");
}

fn new_registry_manifest(url: &str) -> Value {
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

#[tokio::test]
async fn a_steward_registers_versions_disables_and_tests_an_adapter_without_a_restart() {
    let p = platform().await;
    let s = p.mocks.population.samples(1);
    let id = &s.adult_with_household[0];
    let person = p.mocks.population.find(id).unwrap();
    let key = p.partner("000.00.21.H29", everything(), 600, 100).await;
    let url = p.mocks.url(RegistryKind::Population);

    // Refused, with every problem listed: a schema that is not one, a mapping
    // that does not compile, an unknown element, a host off the allow-list.
    let mut bad = new_registry_manifest(&url);
    bad["upstream"]["base_url"] = json!("http://198.51.100.7:80");
    bad["upstream"]["credential"] = json!("not_configured");
    bad["operations"]["whereabouts"]["response_schema"] = json!({"type": "nonsense"});
    bad["operations"]["whereabouts"]["mapping"] = json!("{full_name: .hoTen");
    bad["operations"]["whereabouts"]["elements"] = json!(["full_name", "shoe_size"]);
    let r = p.admin(reqwest::Method::POST, "/admin/v1/adapters", STEWARD, Some(bad)).await;
    let problem = assert_problem(r, 422, "invalid_manifest").await;
    let pointers: Vec<&str> =
        problem["errors"].as_array().unwrap().iter().map(|e| e["pointer"].as_str().unwrap()).collect();
    for expected in [
        "/upstream/base_url",
        "/operations/whereabouts/response_schema",
        "/operations/whereabouts/mapping",
        "/operations/whereabouts/elements/1",
    ] {
        assert!(pointers.contains(&expected), "{expected} missing from {pointers:?}");
    }
    // A partner key never opens /admin; an auditor token cannot change adapters.
    let r = p.admin(reqwest::Method::POST, "/admin/v1/adapters", &key, Some(new_registry_manifest(&url))).await;
    assert_problem(r, 401, "unauthorized").await;
    let r = p.admin(reqwest::Method::POST, "/admin/v1/adapters", AUDITOR, Some(new_registry_manifest(&url))).await;
    assert_problem(r, 403, "forbidden").await;

    // Dry run of the unpublished manifest, then registration, then use.
    let r = p
        .admin(
            reqwest::Method::POST,
            "/admin/v1/adapters/residence_lookup/test",
            STEWARD,
            Some(json!({"citizen_id": id, "manifest": new_registry_manifest(&url)})),
        )
        .await;
    let run: Value = r.json().await.unwrap();
    assert_eq!(run["ok"], true, "{run}");
    assert_eq!(run["results"][0]["elements"]["full_name"], person.name.full());
    assert_problem(
        p.exchange(&key, "residence_lookup", "whereabouts", json!({"citizen_id": id})).await,
        404,
        "not_found",
    )
    .await;
    let r = p.admin(reqwest::Method::POST, "/admin/v1/adapters", STEWARD, Some(new_registry_manifest(&url))).await;
    assert_eq!(r.status(), 201);
    let r = p.exchange(&key, "residence_lookup", "whereabouts", json!({"citizen_id": id})).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["elements"]["full_name"], person.name.full());
    assert_eq!(body["adapter_version"], 1);
    let again = p.admin(reqwest::Method::POST, "/admin/v1/adapters", STEWARD, Some(new_registry_manifest(&url))).await;
    assert_problem(again, 409, "conflict").await;

    // Version 2 changes the mapping; it takes effect at once.
    let mut v2 = new_registry_manifest(&url);
    v2["operations"]["whereabouts"]["mapping"] = json!("{full_name: (.du_lieu.ho_ten | ascii_upcase)}");
    let r = p.admin(reqwest::Method::PUT, "/admin/v1/adapters/residence_lookup", STEWARD, Some(v2)).await;
    assert_eq!(r.status(), 200);
    let body: Value =
        p.exchange(&key, "residence_lookup", "whereabouts", json!({"citizen_id": id})).await.json().await.unwrap();
    assert_eq!(body["adapter_version"], 2);
    assert_eq!(body["elements"]["full_name"], person.name.full().to_ascii_uppercase());
    let versions: Value = p
        .admin(reqwest::Method::GET, "/admin/v1/adapters/residence_lookup/versions", STEWARD, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(versions.as_array().unwrap().len(), 2);
    assert_eq!(versions[1]["current"], true);
    // Each version can be read as it was published, to compare before a rollback.
    let path = "/admin/v1/adapters/residence_lookup/versions";
    let first: Value = p.admin(reqwest::Method::GET, &format!("{path}/1"), STEWARD, None).await.json().await.unwrap();
    assert_eq!((first["id"].as_str(), first["version"].as_i64()), (Some("residence_lookup"), Some(1)));
    assert_eq!(first["document"], new_registry_manifest(&url));
    let second: Value = p.admin(reqwest::Method::GET, &format!("{path}/2"), STEWARD, None).await.json().await.unwrap();
    assert_eq!(
        second["document"]["operations"]["whereabouts"]["mapping"],
        "{full_name: (.du_lieu.ho_ten | ascii_upcase)}"
    );
    assert_problem(p.admin(reqwest::Method::GET, &format!("{path}/3"), STEWARD, None).await, 404, "not_found").await;
    assert_problem(
        p.admin(reqwest::Method::GET, &format!("{path}/two"), STEWARD, None).await,
        400,
        "invalid_parameter",
    )
    .await;
    assert_problem(p.admin(reqwest::Method::GET, &format!("{path}/1"), AUDITOR, None).await, 403, "forbidden").await;

    // Disabled: gone for partners; enabled again: back.
    let off = p
        .admin(
            reqwest::Method::POST,
            "/admin/v1/adapters/residence_lookup/state",
            STEWARD,
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(off.status(), 204);
    assert_problem(
        p.exchange(&key, "residence_lookup", "whereabouts", json!({"citizen_id": id})).await,
        404,
        "not_found",
    )
    .await;
    p.admin(
        reqwest::Method::POST,
        "/admin/v1/adapters/residence_lookup/state",
        STEWARD,
        Some(json!({"enabled": true, "current_version": 1})),
    )
    .await;
    let body: Value =
        p.exchange(&key, "residence_lookup", "whereabouts", json!({"citizen_id": id})).await.json().await.unwrap();
    assert_eq!(body["adapter_version"], 1, "rolled back");
}

#[tokio::test]
async fn another_node_sees_a_change_without_a_restart() {
    // Two gateways on one database: a change made through one is live on the other.
    let p = platform_with(|s| s.catalog_refresh_ms = 100).await;
    let mut settings = test_settings(&p.database_url);
    lgsp::demo::use_mocks(&mut settings, &p.mocks, &default_tokens());
    settings.catalog_refresh_ms = 100;
    let other = Application::build(settings).await.unwrap();
    let other_base = format!("http://127.0.0.1:{}", other.port());
    tokio::spawn(other.run_until_stopped());

    let key = p.partner("000.00.22.H29", everything(), 600, 100).await;
    let id = p.mocks.population.samples(1).adult_with_household[0].clone();
    let url = p.mocks.url(RegistryKind::Population);
    p.admin(reqwest::Method::POST, "/admin/v1/adapters", STEWARD, Some(new_registry_manifest(&url))).await;
    let call = || {
        p.client
            .post(format!("{other_base}/v1/exchange/residence_lookup/whereabouts"))
            .bearer_auth(&key)
            .header("X-Purpose", "residence_change")
            .json(&json!({"citizen_id": id}))
            .send()
    };
    let mut status = 0;
    for _ in 0..50 {
        status = call().await.unwrap().status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, 200, "the other node picked up the new adapter and the new key");
}

#[tokio::test]
async fn keys_expire_and_a_rotated_key_can_stay_valid_for_a_grace_period() {
    let p = platform().await;
    let id = p.mocks.population.samples(1).adult_with_household[0].clone();
    let partner = "000.00.24.H29";
    let first = p.partner(partner, everything(), 600, 100).await;
    let keys_path = format!("/admin/v1/partners/{partner}/keys");
    let call = |key: String| {
        let id = id.clone();
        let p = &p;
        async move { p.exchange(&key, "population", "citizen", json!({"citizen_id": id})).await }
    };

    // An expiry must be a time, and in the future.
    for bad in ["next week", "2020-01-01T00:00:00Z"] {
        let r = p.admin(reqwest::Method::POST, &keys_path, STEWARD, Some(json!({"expires_at": bad}))).await;
        let body = assert_problem(r, 422, "invalid_body").await;
        assert_eq!(body["errors"][0]["pointer"], "/expires_at", "{body}");
    }

    // A key that expires soon works until then, and is listed with its expiry.
    let soon = jiff::Timestamp::now() + jiff::SignedDuration::from_millis(1500);
    let r = p
        .admin(
            reqwest::Method::POST,
            &keys_path,
            STEWARD,
            Some(json!({"label": "short", "expires_at": soon.to_string()})),
        )
        .await;
    assert_eq!(r.status(), 201);
    let short: Value = r.json().await.unwrap();
    assert!(short["expires_at"].is_string(), "{short}");
    let short_key = short["key"].as_str().unwrap().to_string();
    assert_eq!(call(short_key.clone()).await.status(), 200);
    // Monitoring can warn before a key stops working.
    let metrics = p.client.get(p.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let series = format!(
        "lgsp_api_key_expiry_timestamp_seconds{{key=\"{}\",partner=\"{partner}\"}} {}",
        short["id"].as_str().unwrap(),
        soon.as_second()
    );
    assert!(metrics.contains(&series), "{series} not in the metrics");
    assert_eq!(
        metrics.matches("lgsp_api_key_expiry_timestamp_seconds{").count(),
        1,
        "keys without expiry have no series"
    );

    // Rotation with a grace period: old and new keys both work meanwhile.
    let keys: Value = p.admin(reqwest::Method::GET, &keys_path, STEWARD, None).await.json().await.unwrap();
    let first_id = keys[0]["id"].as_str().unwrap().to_string();
    let rotate = format!("{keys_path}/{first_id}/rotate");
    let r = p.admin(reqwest::Method::POST, &rotate, STEWARD, Some(json!({"grace_seconds": 40 * 24 * 3600}))).await;
    assert_problem(r, 422, "invalid_body").await;
    let r = p.admin(reqwest::Method::POST, &rotate, STEWARD, Some(json!({"grace_seconds": 3600}))).await;
    assert_eq!(r.status(), 201);
    let second = r.json::<Value>().await.unwrap()["key"].as_str().unwrap().to_string();
    assert_eq!(call(first.clone()).await.status(), 200, "the old key works during the grace period");
    assert_eq!(call(second.clone()).await.status(), 200, "the new key works at once");
    let keys: Value = p.admin(reqwest::Method::GET, &keys_path, STEWARD, None).await.json().await.unwrap();
    let old = keys.as_array().unwrap().iter().find(|k| k["id"] == first_id.as_str()).unwrap();
    assert_eq!(old["state"], "live", "{old}");
    let ends: jiff::Timestamp = old["expires_at"].as_str().unwrap().parse().unwrap();
    let left = ends.duration_since(jiff::Timestamp::now()).as_secs();
    assert!((3500..=3600).contains(&left), "the old key ends with the grace period: {left} s left");

    // Past its expiry the short key is refused, and says why.
    let wait = soon.duration_since(jiff::Timestamp::now()).as_millis().max(0) as u64 + 100;
    tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
    let body = assert_problem(call(short_key).await, 401, "unauthorized").await;
    assert!(body["detail"].as_str().unwrap().contains("expired"), "{body}");
    let keys: Value = p.admin(reqwest::Method::GET, &keys_path, STEWARD, None).await.json().await.unwrap();
    let states: Vec<&str> = keys.as_array().unwrap().iter().map(|k| k["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["live", "expired", "live"], "{keys}");
    assert_eq!(call(second).await.status(), 200, "other keys are untouched");
}

#[tokio::test]
async fn auditors_export_the_trail_in_pages_that_verify_without_the_database() {
    let p = platform().await;
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
async fn a_keys_last_use_is_listed_and_stored_for_every_node() {
    let p = platform().await;
    let id = p.mocks.population.samples(1).adult_with_household[0].clone();
    let partner = "000.00.26.H29";
    let used = p.partner(partner, everything(), 600, 100).await;
    let (idle_id, _) = p.key(partner).await;
    let before = jiff::Timestamp::now();
    assert_eq!(p.exchange(&used, "population", "citizen", json!({"citizen_id": id})).await.status(), 200);

    let keys: Value = p
        .admin(reqwest::Method::GET, &format!("/admin/v1/partners/{partner}/keys"), STEWARD, None)
        .await
        .json()
        .await
        .unwrap();
    let used_info = keys.as_array().unwrap().iter().find(|k| k["id"] != idle_id.as_str()).unwrap();
    let at: jiff::Timestamp = used_info["last_used_at"].as_str().expect("the used key has a last use").parse().unwrap();
    assert!(at >= before && at <= jiff::Timestamp::now(), "{at}");
    let idle = keys.as_array().unwrap().iter().find(|k| k["id"] == idle_id.as_str()).unwrap();
    assert!(idle["last_used_at"].is_null(), "a key never presented has no last use: {idle}");

    // Stored for the other nodes (the gateway does this once a minute and at shutdown).
    assert_eq!(p.state.catalog.store_key_use().await.unwrap(), 2, "the used key and the steward's token");
    assert_eq!(p.state.catalog.store_key_use().await.unwrap(), 0, "nothing new to store");
    let rows = p.state.db.run(move |c| lgsp::catalog::store::keys_of(c, partner)).await.unwrap();
    let stored: Vec<Option<i64>> = rows.iter().map(|r| r.last_used_at).collect();
    assert_eq!(stored.iter().filter(|s| s.is_some()).count(), 1, "{stored:?}");
    assert_eq!(stored.iter().flatten().next().copied(), Some(at.as_microsecond()));
}

#[tokio::test]
async fn an_admin_tokens_last_use_is_listed_and_stored_for_every_node() {
    let p = platform().await;
    let post = |label: &str| {
        p.admin(reqwest::Method::POST, "/admin/v1/tokens", STEWARD, Some(json!({"role": "auditor", "label": label})))
    };
    let idle: Value = post("idle").await.json().await.unwrap();
    let used: Value = post("inspection").await.json().await.unwrap();
    let before = jiff::Timestamp::now();
    let r = p.admin(reqwest::Method::GET, "/admin/v1/audit", used["token"].as_str().unwrap(), None).await;
    assert_eq!(r.status(), 200);

    let tokens: Value = p.admin(reqwest::Method::GET, "/admin/v1/tokens", STEWARD, None).await.json().await.unwrap();
    let info = |id: &Value| tokens.as_array().unwrap().iter().find(|t| t["id"] == *id).unwrap().clone();
    let at: jiff::Timestamp =
        info(&used["id"])["last_used_at"].as_str().expect("the used token has a last use").parse().unwrap();
    assert!(at >= before && at <= jiff::Timestamp::now(), "{at}");
    assert!(info(&idle["id"])["last_used_at"].is_null(), "a token never presented has no last use: {tokens}");

    // Stored for the other nodes, and read back after a reload.
    assert!(p.state.catalog.store_key_use().await.unwrap() >= 1);
    let rows = p.state.db.run(lgsp::catalog::store::all_admin_tokens).await.unwrap();
    let stored = |id: &Value| rows.iter().find(|r| r.id == id.as_str().unwrap()).unwrap().last_used_at;
    assert_eq!(stored(&used["id"]), Some(at.as_microsecond()));
    assert_eq!(stored(&idle["id"]), None);
    p.state.catalog.reload().await.unwrap();
    let again: Value = p.admin(reqwest::Method::GET, "/admin/v1/tokens", STEWARD, None).await.json().await.unwrap();
    let listed = again.as_array().unwrap().iter().find(|t| t["id"] == used["id"]).unwrap()["last_used_at"].clone();
    assert_eq!(listed, info(&used["id"])["last_used_at"]);
}

#[tokio::test]
async fn sensitive_personal_data_is_marked_in_answers_and_in_the_audit_trail() {
    let p = platform().await;
    let partner = "000.00.27.H29";
    let mut policy = everything();
    policy["elements"] = json!(["*", "ethnicity", "religion"]);
    let key = p.partner(partner, policy, 600, 100).await;
    let samples = p.mocks.population.samples(1);
    let adult = samples.adult_with_household[0].clone();
    let parent = samples.parent_of_newborn[0].clone();

    // A partner sees which elements of an operation are sensitive before calling it.
    let citizen = p.listed_operation(&key, "population", "citizen").await;
    assert!(citizen["sensitive"].as_array().unwrap().contains(&json!("ethnicity")), "{citizen}");
    assert!(!citizen["sensitive"].as_array().unwrap().contains(&json!("full_name")));

    // An exchange names the sensitive elements it sends.
    let a: Value = p.exchange(&key, "population", "citizen", json!({"citizen_id": adult})).await.json().await.unwrap();
    let sent: Vec<&str> = a["elements"].as_object().unwrap().keys().map(String::as_str).collect();
    assert!(sent.contains(&"ethnicity") && sent.contains(&"full_name"), "{a}");
    let expected: Vec<&str> = sent.iter().copied().filter(|e| ["ethnicity", "religion"].contains(e)).collect();
    assert_eq!(a["sensitive"], json!(expected), "{a}");

    // A prefill classifies every bound field, a relative's too.
    let f: Value = p.prefill(&key, "birth_registration", "birth_registration", &parent).await.json().await.unwrap();
    let fields = f["fields"].as_array().unwrap();
    for field in fields.iter().filter(|x| x["element"].is_string()) {
        let sensitive = ["ethnicity", "religion"].contains(&field["element"].as_str().unwrap());
        assert_eq!(field["classification"], if sensitive { "sensitive" } else { "basic" }, "{field}");
    }
    assert!(fields.iter().any(|x| x["classification"] == "sensitive" && x["status"] == "prefilled"), "{f}");
    assert!(fields.iter().filter(|x| x["element"].is_null()).all(|x| x["classification"].is_null()));

    // The audit trail says who received sensitive data.
    let page = p.audit(&format!("partner_id={partner}")).await;
    let records = page["items"].as_array().unwrap();
    let exchange = records.iter().find(|r| r["action"] == "exchange").unwrap();
    assert_eq!(exchange["detail"]["sensitive"], json!(expected), "{exchange}");
    let prefill = records.iter().find(|r| r["action"] == "prefill").unwrap();
    let released: Vec<&str> = prefill["elements"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    let marked: Vec<&str> =
        released.iter().copied().filter(|e| e.ends_with("ethnicity") || e.ends_with("religion")).collect();
    assert!(!marked.is_empty());
    assert_eq!(prefill["detail"]["sensitive"], json!(marked), "{prefill}");

    // The citizen's access log points them out too.
    let log = p.access_log(&key, &parent).await;
    assert_eq!(log[0]["sensitive"], json!(marked), "{log}");
    let log = p.access_log(&key, &adult).await;
    assert_eq!(log[0]["sensitive"], json!(expected), "{log}");
}

#[tokio::test]
async fn a_wildcard_grant_withholds_sensitive_data_until_it_is_granted_by_name() {
    let p = platform().await;
    let partner = "000.00.28.H29";
    let key = p.partner(partner, everything(), 600, 100).await;
    let samples = p.mocks.population.samples(1);
    let adult = samples.adult_with_household[0].clone();
    let parent = samples.parent_of_newborn[0].clone();

    // Before calling, the partner sees that it would not receive them.
    let citizen = p.listed_operation(&key, "population", "citizen").await;
    let listed: Vec<&str> = citizen["elements"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    assert!(listed.contains(&"full_name") && !listed.contains(&"ethnicity"), "{citizen}");
    assert_eq!(citizen["sensitive"], json!([]), "{citizen}");

    // An exchange maps the basic elements and names the sensitive ones withheld.
    let a: Value = p.exchange(&key, "population", "citizen", json!({"citizen_id": adult})).await.json().await.unwrap();
    let sent = a["elements"].as_object().unwrap();
    assert!(sent.contains_key("full_name") && sent.contains_key("permanent_residence"), "{a}");
    assert!(!sent.contains_key("ethnicity") && !sent.contains_key("religion"), "{a}");
    let withheld: Vec<&str> = a["withheld"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    assert!(withheld.contains(&"ethnicity") && withheld.contains(&"religion"), "{a}");
    assert!(a.get("sensitive").is_none(), "{a}");

    // A prefill marks the form's sensitive fields not permitted and fetches the rest.
    let f: Value = p.prefill(&key, "birth_registration", "birth_registration", &parent).await.json().await.unwrap();
    let fields = f["fields"].as_array().unwrap();
    let sensitive: Vec<&Value> = fields.iter().filter(|x| x["classification"] == "sensitive").collect();
    assert!(!sensitive.is_empty(), "{f}");
    assert!(sensitive.iter().all(|x| x["status"] == "unavailable" && x["reason"] == "not_permitted"), "{f}");
    assert!(fields.iter().any(|x| x["classification"] == "basic" && x["status"] == "prefilled"), "{f}");

    // Granted by name, they are released.
    let mut policy = everything();
    policy["elements"] = json!(["*", "ethnicity"]);
    let r = p
        .admin(
            reqwest::Method::PATCH,
            &format!("/admin/v1/partners/{partner}"),
            STEWARD,
            Some(json!({"policy": policy})),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let a: Value = p.exchange(&key, "population", "citizen", json!({"citizen_id": adult})).await.json().await.unwrap();
    assert!(a["elements"].get("ethnicity").is_some(), "{a}");
    assert_eq!(a["withheld"], json!(["religion"]), "{a}");
    assert_eq!(a["sensitive"], json!(["ethnicity"]), "{a}");
}

#[tokio::test]
async fn a_partner_limited_to_its_networks_is_refused_elsewhere_and_the_refusal_is_audited() {
    let trusted_proxy = "127.0.0.1/32".parse().unwrap();
    let p = platform_with(|s| s.trusted_proxies = vec![trusted_proxy]).await;
    let id = p.mocks.population.samples(1).adult_with_household[0].clone();
    let mut policy = everything();
    policy["networks"] = json!(["203.0.113.0/24"]);
    let partner = "000.00.33.H29";
    let key = p.partner(partner, policy, 600, 100).await;
    let exchange_from = |forwarded: Option<&'static str>| {
        let mut r = p
            .client
            .post(p.url("/v1/exchange/population/citizen"))
            .bearer_auth(&key)
            .header("X-Purpose", "residence_change")
            .json(&json!({"citizen_id": id}));
        if let Some(f) = forwarded {
            r = r.header("X-Forwarded-For", f);
        }
        r.send()
    };

    // Straight from loopback, outside the partner's network: refused, saying from where.
    let problem = assert_problem(exchange_from(None).await.unwrap(), 403, "forbidden").await;
    assert!(problem["detail"].as_str().unwrap().contains("127.0.0.1"), "{problem}");
    // Through the trusted proxy, from the partner's network: served.
    assert_eq!(exchange_from(Some("203.0.113.9")).await.unwrap().status(), 200);
    // A client cannot claim the network in a header the proxy passes on.
    let r = exchange_from(Some("203.0.113.9, 198.51.100.4")).await.unwrap();
    let problem = assert_problem(r, 403, "forbidden").await;
    assert!(problem["detail"].as_str().unwrap().contains("198.51.100.4"), "{problem}");

    // So are its reads of forms and adapters.
    let r = p.client.get(p.url("/v1/forms")).bearer_auth(&key).send().await.unwrap();
    assert_problem(r, 403, "forbidden").await;
    let r = p.client.get(p.url("/v1/forms")).bearer_auth(&key).header("X-Forwarded-For", "203.0.113.9").send().await;
    assert_eq!(r.unwrap().status(), 200);

    // Each refusal is in the audit trail under the partner, with its reason.
    let page = p.audit(&format!("partner_id={partner}")).await;
    let records = page["items"].as_array().unwrap();
    assert_eq!(records.len(), 3, "{page}");
    let refused: Vec<&Value> = records.iter().filter(|r| r["outcome"] == "refused").collect();
    assert_eq!(refused.len(), 2, "{page}");
    assert!(refused.iter().all(|r| r["status"] == 403 && r["detail"]["reason"].as_str().unwrap().contains("networks")));

    // A network that is not one is refused when the partner is registered.
    let body = json!({"id": "000.00.34.H29", "name": "Agency", "kind": "state_agency",
                      "policy": {"networks": ["203.0.113.0/33"]}, "rate_per_minute": 60, "burst": 10});
    let r = p.admin(reqwest::Method::POST, "/admin/v1/partners", STEWARD, Some(body)).await;
    let problem = assert_problem(r, 422, "invalid_partner").await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("\"203.0.113.0/33\" is not a network") && detail.contains("CIDR"), "{problem}");
}

#[tokio::test]
async fn the_admin_api_answers_only_its_networks() {
    let trusted_proxy = "127.0.0.1/32".parse().unwrap();
    let admin_network = "10.20.0.0/16".parse().unwrap();
    let p = platform_with(|s| {
        s.trusted_proxies = vec![trusted_proxy];
        s.admin_networks = vec![admin_network];
    })
    .await;
    let get = |token: &'static str, forwarded: Option<&'static str>| {
        let mut r = p.client.get(p.url("/admin/v1/partners")).bearer_auth(token);
        if let Some(f) = forwarded {
            r = r.header("X-Forwarded-For", f);
        }
        r.send()
    };
    // From elsewhere: refused before the token is looked at, a valid one or not.
    for token in [STEWARD, "not-a-token"] {
        let problem = assert_problem(get(token, None).await.unwrap(), 403, "forbidden").await;
        assert!(problem["detail"].as_str().unwrap().contains("admin_networks"), "{problem}");
    }
    let r = p.client.get(p.url("/admin/v1/audit")).bearer_auth(AUDITOR).send().await.unwrap();
    assert_problem(r, 403, "forbidden").await;
    // From the admin network, through the trusted proxy: the token decides.
    assert_eq!(get(STEWARD, Some("10.20.3.4")).await.unwrap().status(), 200);
    assert_problem(get("not-a-token", Some("10.20.3.4")).await.unwrap(), 401, "unauthorized").await;
    // The partner API and the operations endpoints are not affected.
    assert_eq!(p.client.get(p.url("/healthz")).send().await.unwrap().status(), 200);
    let r = p.client.get(p.url("/v1/forms")).send().await.unwrap();
    assert_problem(r, 401, "unauthorized").await;
}

#[tokio::test]
async fn a_citizens_access_log_pages_through_every_access_and_leaves_out_refusals() {
    let p = platform().await;
    let key = p.partner("000.00.35.H29", everything(), 600, 100).await;
    let id = p.mocks.population.samples(1).adult_with_household[0].clone();
    for _ in 0..5 {
        assert_eq!(p.prefill(&key, "ct01", "residence_change", &id).await.status(), 200);
    }
    // A refused call (a purpose the form does not serve) is not an access to show.
    assert_eq!(p.prefill(&key, "ct01", "no_such_purpose", &id).await.status(), 422);
    let trail = p.audit(&format!("subject={id}")).await;
    assert_eq!(trail["items"].as_array().unwrap().len(), 6, "the refusal is in the trail under the citizen: {trail}");

    let mut url = format!("/v1/subjects/{id}/access-log?limit=2");
    let (mut times, mut pages) = (Vec::new(), 0);
    loop {
        let r = p.client.get(p.url(&url)).bearer_auth(&key).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let next = r.headers().get("link").map(|l| l.to_str().unwrap().to_string());
        let page: Value = r.json().await.unwrap();
        pages += 1;
        for e in page.as_array().unwrap() {
            assert_eq!(e["outcome"], "ok", "{e}");
            times.push(e["time"].as_str().unwrap().to_string());
        }
        let Some(link) = next else { break };
        assert!(link.ends_with("rel=\"next\""), "{link}");
        url = link[1..link.find('>').unwrap()].to_string();
    }
    assert_eq!((times.len(), pages), (5, 3), "every access, two a page");
    let mut newest_first = times.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, newest_first);

    let r = p.client.get(p.url(&format!("/v1/subjects/{id}/access-log?limit=0"))).bearer_auth(&key).send().await;
    assert_problem(r.unwrap(), 400, "invalid_parameter").await;
    let r = p.client.get(p.url(&format!("/v1/subjects/{id}/access-log?cursor=abc"))).bearer_auth(&key).send().await;
    assert_problem(r.unwrap(), 400, "invalid_parameter").await;
}

#[tokio::test]
async fn reading_a_citizens_access_log_is_an_audited_access_that_needs_consent_where_the_partner_does() {
    let p = platform().await;
    let portal = p.partner("000.00.37.H29", everything(), 600, 100).await;
    let bank = p.partner("000.00.38.H29", everything(), 600, 100).await;
    let r = p
        .admin(
            reqwest::Method::PATCH,
            "/admin/v1/partners/000.00.38.H29",
            STEWARD,
            Some(json!({"kind": "consent_required"})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let id = p.mocks.population.samples(1).adult_with_household[0].clone();
    assert_eq!(p.prefill(&portal, "ct01", "residence_change", &id).await.status(), 200);
    let log = p.access_log(&portal, &id).await;
    assert_eq!(log.as_array().unwrap().len(), 1, "{log}");

    let url = p.url(&format!("/v1/subjects/{id}/access-log"));
    let r = p.client.get(&url).bearer_auth(&bank).send().await.unwrap();
    assert_problem(r, 403, "forbidden").await;
    let r =
        p.client.get(&url).bearer_auth(&bank).header("X-Consent-Reference", "VNeID-2026-000123").send().await.unwrap();
    assert_eq!(r.status(), 200);

    // The citizen sees who read their log, as any other access.
    let log = p.access_log(&portal, &id).await;
    let reads: Vec<&Value> = log.as_array().unwrap().iter().filter(|e| e["action"] == "access_log").collect();
    let readers: Vec<&str> = reads.iter().map(|e| e["agency_id"].as_str().unwrap()).collect();
    assert_eq!(readers, ["000.00.38.H29", "000.00.37.H29"], "newest first, the refused read left out: {log}");
    // And the auditor sees every read, the refused one too, with the consent cited.
    let trail = p.audit(&format!("action=access_log&subject={id}")).await;
    let items = trail["items"].as_array().unwrap();
    assert_eq!(items.len(), 4, "two reads by the portal, two by the bank: {trail}");
    assert_eq!(items.iter().filter(|i| i["outcome"] == "refused").count(), 1, "{trail}");
    assert!(items.iter().any(|i| i["detail"]["consent_reference"] == "VNeID-2026-000123"), "{trail}");
}

#[tokio::test]
async fn a_partner_is_bounded_and_a_wildcard_purpose_covers_the_catalogues_procedures_only() {
    let p = platform().await;
    let id = p.mocks.population.samples(1).adult_with_household[0].clone();
    let key = p.partner("000.00.39.H29", everything(), 600, 100).await;
    // A purpose the catalogue's forms serve passes the wildcard; a made-up one does not.
    assert_eq!(p.exchange(&key, "population", "citizen", json!({"citizen_id": id})).await.status(), 200);
    let r = p.exchange_for("marketing_campaign", &key, "population", "citizen", json!({"citizen_id": id})).await;
    let problem = assert_problem(r, 403, "forbidden").await;
    assert!(problem["detail"].as_str().unwrap().contains("not a procedure lgsp knows"), "{problem}");
    // Granted by name, it is the steward's word.
    let mut policy = everything();
    policy["purposes"] = json!(["marketing_campaign"]);
    let path = "/admin/v1/partners/000.00.39.H29";
    assert_eq!(p.admin(reqwest::Method::PATCH, path, STEWARD, Some(json!({"policy": policy}))).await.status(), 200);
    let r = p.exchange_for("marketing_campaign", &key, "population", "citizen", json!({"citizen_id": id})).await;
    assert_eq!(r.status(), 200);

    // A name, and the entries of a policy, have bounds.
    let long_name = json!({"name": "x".repeat(201)});
    let problem =
        assert_problem(p.admin(reqwest::Method::PATCH, path, STEWARD, Some(long_name)).await, 422, "invalid_partner")
            .await;
    assert_eq!(problem["errors"][0]["pointer"], "/name", "{problem}");
    let mut policy = everything();
    policy["purposes"] = json!(["y".repeat(101)]);
    let r = p.admin(reqwest::Method::PATCH, path, STEWARD, Some(json!({"policy": policy}))).await;
    let problem = assert_problem(r, 422, "invalid_partner").await;
    assert_eq!(problem["errors"][0]["pointer"], "/policy/purposes", "{problem}");
    // A whole number is a whole number however it is written.
    let r = p.admin(reqwest::Method::PATCH, path, STEWARD, Some(json!({"rate_per_minute": 1200.0}))).await;
    assert_eq!(r.status(), 200);
    let partner: Value = r.json().await.unwrap();
    assert_eq!(partner["rate_per_minute"], 1200);
    let r = p.admin(reqwest::Method::PATCH, path, STEWARD, Some(json!({"burst": 1.5}))).await;
    assert_problem(r, 422, "invalid_partner").await;
}

#[tokio::test]
async fn stewards_changes_are_in_the_audit_trail_allowed_or_refused() {
    let p = platform().await;
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
    let verify: Value =
        p.admin(reqwest::Method::GET, "/admin/v1/audit/verify", AUDITOR, None).await.json().await.unwrap();
    assert_eq!(verify["intact"], true, "{verify}");
}

#[tokio::test]
async fn a_key_rotated_twice_at_once_is_replaced_once() {
    let p = platform().await;
    let partner = "000.00.29.H29";
    p.partner(partner, everything(), 600, 100).await;
    let (old_id, _) = p.key(partner).await;
    let rotate = format!("/admin/v1/partners/{partner}/keys/{old_id}/rotate");
    for round in 0..5 {
        let (a, b) = tokio::join!(
            p.admin(reqwest::Method::POST, &rotate, STEWARD, None),
            p.admin(reqwest::Method::POST, &rotate, STEWARD, None)
        );
        let mut statuses = [a.status().as_u16(), b.status().as_u16()];
        statuses.sort();
        if round == 0 {
            assert_eq!(statuses, [201, 404], "one rotation replaces the key; the other finds it gone");
        } else {
            assert_eq!(statuses, [404, 404], "the old key stays revoked");
        }
    }
    // No key was made that nobody was shown.
    let keys: Value = p
        .admin(reqwest::Method::GET, &format!("/admin/v1/partners/{partner}/keys"), STEWARD, None)
        .await
        .json()
        .await
        .unwrap();
    let states: Vec<&str> = keys.as_array().unwrap().iter().map(|k| k["state"].as_str().unwrap()).collect();
    assert_eq!(states.len(), 3, "{keys}");
    assert_eq!(states.iter().filter(|s| **s == "live").count(), 2, "the partner's first key and the new one: {keys}");
}

#[tokio::test]
async fn keys_rotate_and_revoke_at_once() {
    let p = platform().await;
    let id = p.mocks.population.samples(1).adult_with_household[0].clone();
    let first = p.partner("000.00.23.H29", everything(), 600, 100).await;
    let (second_id, second) = p.key("000.00.23.H29").await;
    for k in [&first, &second] {
        assert_eq!(p.exchange(k, "population", "citizen", json!({"citizen_id": id})).await.status(), 200);
    }
    let r = p
        .admin(
            reqwest::Method::POST,
            &format!("/admin/v1/partners/000.00.23.H29/keys/{second_id}/rotate"),
            STEWARD,
            None,
        )
        .await;
    assert_eq!(r.status(), 201);
    let rotated: Value = r.json().await.unwrap();
    let third = rotated["key"].as_str().unwrap();
    assert_problem(p.exchange(&second, "population", "citizen", json!({"citizen_id": id})).await, 401, "unauthorized")
        .await;
    assert_eq!(p.exchange(third, "population", "citizen", json!({"citizen_id": id})).await.status(), 200);
    let keys: Value = p
        .admin(reqwest::Method::GET, "/admin/v1/partners/000.00.23.H29/keys", STEWARD, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(keys.as_array().unwrap().len(), 3);
    assert!(keys.to_string().find(&first[8..]).is_none(), "no secret is ever listed");
    let first_id = keys[0]["id"].as_str().unwrap();
    let r = p
        .admin(reqwest::Method::DELETE, &format!("/admin/v1/partners/000.00.23.H29/keys/{first_id}"), STEWARD, None)
        .await;
    assert_eq!(r.status(), 204);
    assert_problem(p.exchange(&first, "population", "citizen", json!({"citizen_id": id})).await, 401, "unauthorized")
        .await;

    // Bad partner definitions are refused with what to fix.
    let r = p
        .admin(
            reqwest::Method::POST,
            "/admin/v1/partners",
            STEWARD,
            Some(json!({"id": "H29", "name": "x", "kind": "state_agency", "rate_per_minute": 0, "burst": 1,
                           "policy": {"elements": ["shoe_size"]}})),
        )
        .await;
    let problem = assert_problem(r, 422, "invalid_partner").await;
    let pointers: Vec<&str> =
        problem["errors"].as_array().unwrap().iter().map(|e| e["pointer"].as_str().unwrap()).collect();
    assert_eq!(pointers, ["/id", "/rate_per_minute", "/policy/elements"]);
}

#[tokio::test]
async fn a_limited_partner_gets_its_quota_and_no_more_while_another_is_unaffected() {
    let p = platform().await;
    let id = p.mocks.population.samples(1).adult_with_household[0].clone();
    let limited = p.partner("000.00.24.H29", everything(), 60, 3).await;
    let other = p.partner("000.00.25.H29", everything(), 6000, 100).await;
    let mut statuses = Vec::new();
    let mut refused = None;
    for _ in 0..6 {
        let r = p.exchange(&limited, "population", "citizen", json!({"citizen_id": id})).await;
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            refused = Some(r);
        }
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429]);
    let r = refused.unwrap();
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1, "Retry-After is whole seconds, never 0");
    assert!(r.headers()["ratelimit-policy"].to_str().unwrap().contains("q=60"));
    assert!(r.headers()["ratelimit"].to_str().unwrap().contains("r=0"));
    assert_problem(r, 429, "rate_limited").await;
    for _ in 0..10 {
        assert_eq!(p.exchange(&other, "population", "citizen", json!({"citizen_id": id})).await.status(), 200);
    }
    // A new quota takes effect at once.
    let r =
        p.admin(reqwest::Method::PATCH, "/admin/v1/partners/000.00.24.H29", STEWARD, Some(json!({"burst": 50}))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(p.exchange(&limited, "population", "citizen", json!({"citizen_id": id})).await.status(), 200);
}

#[tokio::test]
async fn a_full_audit_queue_slows_requests_down_and_loses_no_record() {
    // Room for two records and a slow writer (each batch waits 50 ms): most of
    // the 80 requests find the queue full and wait for room before answering.
    let p = platform_with(|s| {
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
    let verify: Value =
        p.admin(reqwest::Method::GET, "/admin/v1/audit/verify", AUDITOR, None).await.json().await.unwrap();
    assert_eq!(verify["intact"], true, "{verify}");
    assert_eq!(p.state.metrics.audit_queue.get(), 0);
}

#[tokio::test]
async fn the_audit_trail_holds_one_record_per_request_under_load_and_detects_tampering() {
    let p = platform().await;
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
    let verify: Value =
        p.admin(reqwest::Method::GET, "/admin/v1/audit/verify", AUDITOR, None).await.json().await.unwrap();
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

/// A prefill answer's field by id.
pub fn field<'a>(answer: &'a Value, id: &str) -> &'a Value {
    answer["fields"].as_array().unwrap().iter().find(|f| f["id"] == id).unwrap_or_else(|| panic!("no field {id}"))
}

/// A prefill answer's source status by `adapter.operation`.
pub fn source<'a>(answer: &'a Value, op: &str) -> &'a Value {
    answer["sources"].as_array().unwrap().iter().find(|s| s["operation"] == op).unwrap_or_else(|| panic!("no {op}"))
}

#[tokio::test]
async fn shipped_forms_prefill_typical_citizens_with_the_registries_data() {
    let p = platform().await;
    let pop = &p.mocks.population;
    let s = pop.samples(2);
    let key = p.partner("000.00.27.H29", everything(), 60_000, 1_000).await;

    for id in &s.adult_with_household {
        let person = pop.find(id).unwrap();
        let a: Value = p.prefill(&key, "ct01", "residence_change", id).await.json().await.unwrap();
        assert_eq!(field(&a, "full_name")["value"], person.name.full());
        assert_eq!(field(&a, "full_name")["source"], "population.citizen");
        assert_eq!(field(&a, "full_name")["mode"], "authoritative");
        assert_eq!(field(&a, "citizen_id")["value"], id.as_str());
        assert_eq!(field(&a, "request_content")["status"], "declare");
        let head = pop.household_of(person);
        let head_person = head
            .members
            .iter()
            .map(|m| pop.get(*m))
            .find(|m| m.relation == lgsp::registries::population::Relation::Head)
            .unwrap();
        assert_eq!(field(&a, "household_head_name")["value"], head_person.name.full());
        let members = field(&a, "members_changing")["value"].as_array().unwrap().clone();
        assert!(members.len() <= head.members.len() && members.iter().any(|m| m["citizen_id"] == id.as_str()));
        let calls: Vec<&str> =
            a["sources"].as_array().unwrap().iter().map(|s| s["operation"].as_str().unwrap()).collect();
        assert_eq!(calls, ["population.citizen", "population.household"], "only what the form needs");
        assert!(a["coverage"]["cut"].as_f64().unwrap() >= 0.2);
    }
    for id in &s.parent_of_newborn {
        let parent = pop.find(id).unwrap();
        let a: Value = p.prefill(&key, "birth_registration", "birth_registration", id).await.json().await.unwrap();
        let (me, other) = if parent.sex.as_str() == "female" { ("mother", "father") } else { ("father", "mother") };
        assert_eq!(field(&a, &format!("{me}_name"))["value"], parent.name.full());
        // The form asks for the year of birth, and that is all that is released.
        let year: i64 = parent.dob.to_string()[..4].parse().unwrap();
        assert_eq!(field(&a, &format!("{me}_year_of_birth"))["value"], year);
        match parent.spouse.map(|s| pop.get(s)) {
            Some(spouse) => {
                assert_eq!(
                    field(&a, &format!("{other}_name"))["value"],
                    spouse.name.full(),
                    "found through the spouse link"
                )
            }
            None => assert_eq!(field(&a, &format!("{other}_name"))["reason"], "no_person"),
        }
        assert_eq!(field(&a, "child_name")["status"], "declare");
    }
    for id in &s.married {
        let a: Value =
            p.prefill(&key, "marital_status_certificate", "marital_status_certificate", id).await.json().await.unwrap();
        assert_eq!(field(&a, "marital_status")["value"], "married");
        assert_eq!(field(&a, "marital_status")["source"], "civil_status.marriage", "the pinned authoritative source");
    }
    for id in &s.legacy_address {
        let a: Value = p.prefill(&key, "tk1_ts", "health_insurance_enrolment", id).await.json().await.unwrap();
        let addr = &field(&a, "address")["value"];
        assert_eq!(addr["ward_code"].as_str().unwrap().len(), 5);
        assert!(addr["legacy"]["district_code"].is_string(), "the original legacy codes are kept: {addr}");
    }
    for id in &s.split_ward_address {
        let a: Value = p.prefill(&key, "tk1_ts", "health_insurance_enrolment", id).await.json().await.unwrap();
        let f = field(&a, "address");
        assert_eq!(f["value"]["is_guess"], true, "{f}");
        assert_eq!(f["mode"], "suggestion", "a guessed ward is for the citizen to confirm");
    }
    for id in &s.deceased {
        let person = pop.find(id).unwrap();
        let a: Value = p.prefill(&key, "death_registration", "death_registration", id).await.json().await.unwrap();
        assert_eq!(field(&a, "deceased_name")["value"], person.name.full());
        assert_eq!(field(&a, "deceased_date_of_birth")["value"], person.dob.to_string());
        assert_eq!(field(&a, "deceased_id")["value"], id.as_str());
        assert_eq!(field(&a, "cause_of_death")["status"], "declare");
    }
    for id in &s.adult_with_household {
        let person = pop.find(id).unwrap();
        let a: Value = p.prefill(&key, "health_card_reissue", "health_card_reissue", id).await.json().await.unwrap();
        assert_eq!(field(&a, "full_name")["value"], person.name.full());
        let card: Value = p.exchange(&key, "insurance", "card", json!({"citizen_id": id})).await.json().await.unwrap();
        assert_eq!(field(&a, "card_number")["value"], card["elements"]["health_insurance_card"]["number"]);
        assert_eq!(field(&a, "social_insurance_number")["value"], card["elements"]["social_insurance_number"]);
        assert_eq!(field(&a, "card_number")["source"], "insurance.card");
    }
    for id in &s.child_under_6 {
        let child = pop.find(id).unwrap();
        let a: Value = p.prefill(&key, "tk1_ts", "health_insurance_enrolment", id).await.json().await.unwrap();
        let mother = child.mother.map(|m| pop.get(m).name.full());
        assert_eq!(field(&a, "guardian_name")["value"].as_str().map(String::from), mother);
    }
}

#[tokio::test]
async fn relatives_named_in_a_request_are_used_for_that_request_alone() {
    let p = platform().await;
    let pop = &p.mocks.population;
    let s = pop.samples(5);
    let key = p.partner("000.00.31.H29", everything(), 60_000, 1_000).await;
    let parent_id = s.parent_of_newborn.iter().find(|id| pop.find(id).unwrap().spouse.is_some()).unwrap();
    let parent = pop.find(parent_id).unwrap();
    let other = if parent.sex.as_str() == "female" { "father" } else { "mother" };
    let stranger_id = &s.adult_with_household[0];
    let stranger = pop.find(stranger_id).unwrap();
    let linked = json!(pop.get(parent.spouse.unwrap()).name.full());
    let prefill = |relatives: Value| {
        let body = json!({"form": "birth_registration", "citizen_id": parent_id,
            "purpose": "birth_registration", "relatives": relatives});
        let request = p.client.post(p.url("/v1/prefill")).bearer_auth(&key).json(&body);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let other_name = |a: &Value| field(a, &format!("{other}_name"))["value"].clone();

    // Both parents named, then none, then both again, on one catalogue snapshot:
    // a request naming relatives needs no link from the subject's record, one
    // naming none does, and neither may be planned as the other.
    let me = if other == "father" { "mother" } else { "father" };
    let both = json!({format!("child_{me}"): parent_id, format!("child_{other}"): stranger_id});
    for round in 0..2 {
        let a = prefill(both.clone()).await;
        assert_eq!(other_name(&a), stranger.name.full(), "round {round}, the relative named: {a}");
        let calls: Vec<(&str, &str)> = a["sources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["operation"].as_str().unwrap(), s["person"].as_str().unwrap()))
            .collect();
        assert!(calls.contains(&("population.citizen", &format!("child_{other}"))), "{calls:?}");
        let a = prefill(json!({})).await;
        assert_eq!(other_name(&a), linked, "round {round}, found through the spouse link: {a}");
    }
}

#[tokio::test]
async fn two_sources_that_disagree_make_the_field_a_suggestion_that_shows_both() {
    let p = platform().await;
    let pop = &p.mocks.population;
    let s = pop.samples(10);
    let id = s.adult_with_household.iter().find(|id| pop.find(id).unwrap().phone.is_some()).unwrap();
    let person = pop.find(id).unwrap();
    let key = p.partner("000.00.32.H29", everything(), 60_000, 1_000).await;
    // A second source of the same registry that spells names in capitals and
    // agrees on the phone number.
    let mut manifest = new_registry_manifest(&p.mocks.url(RegistryKind::Population));
    manifest["operations"]["whereabouts"]["mapping"] =
        json!("{full_name: (.du_lieu.ho_ten | ascii_upcase), phone: .du_lieu.so_dien_thoai}");
    assert_eq!(p.admin(reqwest::Method::POST, "/admin/v1/adapters", STEWARD, Some(manifest)).await.status(), 201);
    let form = json!({
        "id": "club_card", "title": "Thẻ câu lạc bộ", "form_code": "CLB-01",
        "procedure": {"code": "club_card", "name": "Cấp thẻ câu lạc bộ"}, "purposes": ["club_card"],
        "fields": [
            {"id": "name", "label_vi": "Họ và tên", "type": "text", "required": true,
             "bind": {"element": "full_name", "person": "subject", "source": "population.citizen"}},
            {"id": "phone", "label_vi": "Điện thoại", "type": "phone", "required": false,
             "bind": {"element": "phone", "person": "subject", "source": "residence_lookup.whereabouts"}}
        ]
    });
    assert_eq!(p.admin(reqwest::Method::POST, "/admin/v1/forms", STEWARD, Some(form)).await.status(), 201);

    // Twice: the second prefill runs on the plan the first one made.
    for round in 0..2 {
        let a: Value = p.prefill(&key, "club_card", "club_card", id).await.json().await.unwrap();
        let name = field(&a, "name");
        assert_eq!(name["value"], person.name.full(), "round {round}: the pinned source is authoritative: {a}");
        assert_eq!(name["source"], "population.citizen");
        assert_eq!(name["mode"], "suggestion", "round {round}: {a}");
        assert_eq!(name["verified"], false);
        assert_eq!(
            name["conflicts"],
            json!([{"source": "residence_lookup.whereabouts", "value": person.name.full().to_ascii_uppercase()}]),
            "round {round}: {a}"
        );
        let phone = field(&a, "phone");
        assert_eq!(phone["value"], format!("0{}", person.phone.unwrap()), "round {round}: {a}");
        assert_eq!(phone["source"], "residence_lookup.whereabouts");
        assert_eq!(phone["mode"], "authoritative", "round {round}: both sources agree: {a}");
        assert_eq!(phone["verified"], true);
        assert!(phone.get("conflicts").is_none_or(|c| c == &json!([])), "round {round}: {a}");
        let called: Vec<&str> =
            a["sources"].as_array().unwrap().iter().map(|s| s["operation"].as_str().unwrap()).collect();
        assert_eq!(called, ["population.citizen", "residence_lookup.whereabouts"], "each called once: {a}");
    }
}

#[tokio::test]
async fn a_registry_down_mid_request_leaves_the_other_fields_and_says_which_source_failed() {
    let p = platform().await;
    let id = p.mocks.population.samples(1).adult_with_household[0].clone();
    let key = p.partner("000.00.28.H29", everything(), 60_000, 1_000).await;
    p.mocks.set_faults(RegistryKind::Insurance, Faults { error_rate: 1.0, ..Default::default() });
    let r = p.prefill(&key, "tk1_ts", "health_insurance_enrolment", &id).await;
    assert_eq!(r.status(), 200, "a registry fault never fails the whole prefill");
    let a: Value = r.json().await.unwrap();
    assert_eq!(field(&a, "social_insurance_number")["status"], "unavailable");
    assert_eq!(field(&a, "social_insurance_number")["reason"], "source_failed");
    assert_eq!(field(&a, "full_name")["status"], "prefilled");
    let ins = source(&a, "insurance.card");
    assert_eq!(ins["status"], "unavailable");
    let page = p.audit("action=prefill").await;
    assert_eq!(page["items"][0]["outcome"], "partial");
}

#[tokio::test]
async fn fields_outside_the_grant_are_marked_not_permitted_and_never_sent() {
    let p = platform().await;
    let id = p.mocks.population.samples(1).adult_with_household[0].clone();
    let key = p
        .partner(
            "000.00.29.H29",
            json!({"forms": ["ct01"], "purposes": ["residence_change"],
                                          "elements": ["full_name", "date_of_birth", "sex", "citizen_id"]}),
            600,
            100,
        )
        .await;
    let a: Value = p.prefill(&key, "ct01", "residence_change", &id).await.json().await.unwrap();
    assert_eq!(field(&a, "full_name")["status"], "prefilled");
    for f in ["phone", "household_head_name", "members_changing"] {
        assert_eq!(field(&a, f)["reason"], "not_permitted");
        assert!(field(&a, f).get("value").is_none());
    }
    let calls: Vec<&str> = a["sources"].as_array().unwrap().iter().map(|s| s["operation"].as_str().unwrap()).collect();
    assert_eq!(calls, ["population.citizen"], "nothing is fetched for fields it may not receive");
    assert_problem(p.prefill(&key, "tk1_ts", "residence_change", &id).await, 403, "forbidden").await;
    assert_problem(p.prefill(&key, "ct01", "birth_registration", &id).await, 422, "invalid_body").await;
    assert_problem(p.prefill(&key, "ct01", "residence_change", "00109001234x").await, 400, "invalid_citizen_id").await;
}

#[tokio::test]
async fn a_form_registered_at_run_time_is_prefilled_and_the_report_matches_an_independent_count() {
    let p = platform().await;
    let key = p.partner("000.00.30.H29", everything(), 60_000, 1_000).await;
    let form = json!({
        "id": "library_card", "title": "Đăng ký thẻ thư viện", "form_code": "TV-01",
        "procedure": {"code": "library_card", "name": "Cấp thẻ thư viện"}, "purposes": ["library_card"],
        "fields": [
            {"id": "name", "label_vi": "Họ và tên", "type": "text", "required": true, "bind": {"element": "full_name", "person": "subject"}},
            {"id": "phone", "label_vi": "Điện thoại", "type": "phone", "required": false, "bind": {"element": "phone", "person": "subject"}},
            {"id": "school", "label_vi": "Trường", "type": "text", "required": false}
        ]
    });
    let mut bad = form.clone();
    bad["fields"][1]["bind"]["element"] = json!("shoe_size");
    bad["fields"][2]["id"] = json!("name");
    let problem = assert_problem(
        p.admin(reqwest::Method::POST, "/admin/v1/forms", STEWARD, Some(bad)).await,
        422,
        "invalid_form",
    )
    .await;
    assert_eq!(problem["errors"].as_array().unwrap().len(), 2, "{problem}");
    assert_eq!(p.admin(reqwest::Method::POST, "/admin/v1/forms", STEWARD, Some(form)).await.status(), 201);

    let s = p.mocks.population.samples(4);
    let mut expected_prefilled = 0usize;
    let subjects: Vec<String> = s.adult_with_household.iter().chain(&s.missing_phone).cloned().collect();
    for id in &subjects {
        let person = p.mocks.population.find(id).unwrap();
        expected_prefilled += 1 + usize::from(person.phone.is_some());
        let a: Value = p.prefill(&key, "library_card", "library_card", id).await.json().await.unwrap();
        assert_eq!(field(&a, "name")["value"], person.name.full());
    }
    let expected_cut = expected_prefilled as f64 / (3 * subjects.len()) as f64;
    let cov: Value = p
        .client
        .get(p.url("/v1/forms/library_card/coverage"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cov["ceiling"], 0.667);
    assert_eq!(cov["measured"]["prefills"], subjects.len());
    assert!((cov["measured"]["cut"].as_f64().unwrap() - expected_cut).abs() < 0.002, "{cov} vs {expected_cut}");

    // The report over the shipped forms meets the 20% target on every form,
    // and its figures match a count made here from the form files and the
    // per-field answers, not from lgsp's own coverage numbers.
    let rows = lgsp::demo::report(&p.state, &p.base, &key, &s).await.unwrap();
    assert_eq!(rows.len(), 7);
    for r in &rows {
        assert!(r.prefills > 0, "{r:?}");
        assert!(r.measured <= r.ceiling + 1e-9, "{r:?}");
        assert!(r.meets_target(), "{r:?}");
    }
    for (id, _) in lgsp::form::SHIPPED {
        let path = format!("{}/schemas/forms/{id}.json", env!("CARGO_MANIFEST_DIR"));
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let fields = doc["fields"].as_array().unwrap();
        let bound = fields.iter().filter(|f| f.get("bind").is_some()).count();
        let purpose = doc["purposes"][0].as_str().unwrap();
        let mut cuts = Vec::new();
        for subject in lgsp::demo::typical_subjects(id, &s) {
            let a: Value = p.prefill(&key, id, purpose, &subject).await.json().await.unwrap();
            let prefilled = a["fields"].as_array().unwrap().iter().filter(|f| !f["value"].is_null()).count();
            cuts.push(prefilled as f64 / fields.len() as f64);
        }
        let measured = cuts.iter().sum::<f64>() / cuts.len() as f64;
        let row = rows.iter().find(|r| r.form == id).unwrap();
        assert_eq!(row.fields, fields.len(), "{id}");
        assert_eq!(row.prefills, cuts.len(), "{id}");
        assert!(
            (row.ceiling - bound as f64 / fields.len() as f64).abs() < 0.0006,
            "{id}: {row:?} vs {bound}/{}",
            fields.len()
        );
        // Both round to 0.001 (each answer, then the mean); the recount does not.
        assert!((row.measured - measured).abs() < 0.0011, "{id}: {row:?} vs {measured}");
    }
}

#[tokio::test]
async fn the_demos_partner_and_keys_are_in_the_audit_trail() {
    let p = platform().await;
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
async fn stewards_make_and_revoke_admin_tokens_but_never_the_last_steward_one() {
    let p = platform().await;
    let post = |token: &'static str, body: Value| p.admin(reqwest::Method::POST, "/admin/v1/tokens", token, Some(body));
    assert_problem(post(AUDITOR, json!({"role": "auditor"})).await, 403, "forbidden").await;
    assert_problem(post(STEWARD, json!({"role": "root"})).await, 422, "invalid_body").await;
    let key = p.partner("000.00.32.H29", everything(), 600, 100).await;
    let r = p.client.post(p.url("/admin/v1/tokens")).bearer_auth(&key).json(&json!({"role": "steward"})).send().await;
    assert_problem(r.unwrap(), 401, "unauthorized").await;

    // An auditor token, shown once, works at once, and is revoked at once.
    let r = post(STEWARD, json!({"role": "auditor", "label": "inspection 2026"})).await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let made: Value = r.json().await.unwrap();
    let (auditor_id, auditor) = (made["id"].as_str().unwrap(), made["token"].as_str().unwrap());
    assert!(auditor.starts_with("lgsp_at_"));
    assert_eq!(p.admin(reqwest::Method::GET, "/admin/v1/audit", auditor, None).await.status(), 200);
    let list = p.admin(reqwest::Method::GET, "/admin/v1/tokens", STEWARD, None).await.text().await.unwrap();
    assert!(list.contains(auditor_id) && list.contains("inspection 2026") && !list.contains(&auditor[8..]), "{list}");
    let r = p.admin(reqwest::Method::DELETE, &format!("/admin/v1/tokens/{auditor_id}"), STEWARD, None).await;
    assert_eq!(r.status(), 204);
    assert_problem(p.admin(reqwest::Method::GET, "/admin/v1/audit", auditor, None).await, 401, "unauthorized").await;

    // Hand over to a new steward token; the old one stops working; the last one cannot go.
    let made: Value = post(STEWARD, json!({"role": "steward"})).await.json().await.unwrap();
    let (new_id, new_steward) = (made["id"].as_str().unwrap().to_string(), made["token"].as_str().unwrap().to_string());
    let tokens: Value =
        p.admin(reqwest::Method::GET, "/admin/v1/tokens", &new_steward, None).await.json().await.unwrap();
    let bootstrap =
        tokens.as_array().unwrap().iter().find(|t| t["role"] == "steward" && t["label"] == "bootstrap").unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
    let r = p.admin(reqwest::Method::DELETE, &format!("/admin/v1/tokens/{bootstrap}"), &new_steward, None).await;
    assert_eq!(r.status(), 204);
    assert_problem(p.admin(reqwest::Method::GET, "/admin/v1/tokens", STEWARD, None).await, 401, "unauthorized").await;
    let r = p.admin(reqwest::Method::DELETE, &format!("/admin/v1/tokens/{new_id}"), &new_steward, None).await;
    let problem = assert_problem(r, 409, "conflict").await;
    assert!(problem["detail"].as_str().unwrap().contains("last live steward token"), "{problem}");
    let r = p.admin(reqwest::Method::DELETE, "/admin/v1/tokens/adm_nosuchtoken", &new_steward, None).await;
    assert_problem(r, 404, "not_found").await;
}

#[tokio::test]
async fn admin_tokens_may_expire_and_an_expiring_steward_token_never_counts_as_the_last() {
    let p = platform().await;
    let post = |body: Value| p.admin(reqwest::Method::POST, "/admin/v1/tokens", STEWARD, Some(body));
    let r = post(json!({"role": "auditor", "expires_at": "2020-01-01T00:00:00Z"})).await;
    let problem = assert_problem(r, 422, "invalid_body").await;
    assert_eq!(problem["errors"][0]["pointer"], "/expires_at", "{problem}");
    assert_problem(post(json!({"role": "auditor", "expires_at": "next week"})).await, 422, "invalid_body").await;

    // An auditor engaged for a fixed time: the token works until its expiry.
    let soon = jiff::Timestamp::now() + jiff::SignedDuration::from_millis(1500);
    let r = post(json!({"role": "auditor", "label": "external audit", "expires_at": soon.to_string()})).await;
    assert_eq!(r.status(), 201);
    let made: Value = r.json().await.unwrap();
    let (auditor_id, auditor) = (made["id"].as_str().unwrap().to_string(), made["token"].as_str().unwrap().to_string());
    let ends: jiff::Timestamp = made["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(ends.as_millisecond(), soon.as_millisecond());
    assert_eq!(p.admin(reqwest::Method::GET, "/admin/v1/audit", &auditor, None).await.status(), 200);
    let metrics = p.client.get(p.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let series = format!(
        "lgsp_admin_token_expiry_timestamp_seconds{{role=\"auditor\",token=\"{auditor_id}\"}} {}",
        soon.as_second()
    );
    assert!(metrics.contains(&series), "monitoring can warn before it stops working: {metrics}");
    assert_eq!(
        metrics.matches("lgsp_admin_token_expiry_timestamp_seconds{").count(),
        1,
        "tokens without expiry have none"
    );

    // A steward token that expires does not stand in for the last one that does not.
    let soon_steward = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1)).to_string();
    let made: Value = post(json!({"role": "steward", "expires_at": soon_steward})).await.json().await.unwrap();
    let temporary = made["token"].as_str().unwrap().to_string();
    let tokens: Value = p.admin(reqwest::Method::GET, "/admin/v1/tokens", STEWARD, None).await.json().await.unwrap();
    let bootstrap = tokens.as_array().unwrap().iter().find(|t| t["label"] == "bootstrap" && t["role"] == "steward");
    let bootstrap = bootstrap.unwrap()["id"].as_str().unwrap().to_string();
    let r = p.admin(reqwest::Method::DELETE, &format!("/admin/v1/tokens/{bootstrap}"), &temporary, None).await;
    let problem = assert_problem(r, 409, "conflict").await;
    assert!(problem["detail"].as_str().unwrap().contains("without an expiry"), "{problem}");
    let temporary_path = format!("/admin/v1/tokens/{}", made["id"].as_str().unwrap());
    let r = p.admin(reqwest::Method::DELETE, &temporary_path, STEWARD, None).await;
    assert_eq!(r.status(), 204, "an expiring steward token can always be revoked");

    // Past its expiry the auditor's token is refused, says why, and is listed expired.
    let wait = soon.duration_since(jiff::Timestamp::now()).as_millis().max(0) as u64 + 100;
    tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
    let r = p.admin(reqwest::Method::GET, "/admin/v1/audit", &auditor, None).await;
    let problem = assert_problem(r, 401, "unauthorized").await;
    assert!(problem["detail"].as_str().unwrap().contains("expired"), "{problem}");
    let tokens: Value = p.admin(reqwest::Method::GET, "/admin/v1/tokens", STEWARD, None).await.json().await.unwrap();
    let state = |id: &str| tokens.as_array().unwrap().iter().find(|t| t["id"] == id).unwrap()["state"].clone();
    assert_eq!(state(&auditor_id), "expired");
    assert_eq!(state(&bootstrap), "live");
}

#[tokio::test]
async fn a_graceful_stop_lets_in_flight_prefills_finish_and_stores_their_records() {
    let mut p = platform_with(|s| s.shutdown_timeout_secs = 20).await;
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
    let p = platform().await;
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
    let p = platform().await;
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
