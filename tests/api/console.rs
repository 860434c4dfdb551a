//! The web console's pages, without a browser: the HTML the server renders,
//! parsed and checked (roles, CSRF, sign-in and out, the admin networks, the
//! language), over HTTP.

use crate::helpers::{spawn_app, spawn_app_with, TestApp, AUDITOR, STEWARD};
use scraper::{Html, Selector};

/// A browser's worth of cookies for one signed-in user.
struct Session<'a> {
    app: &'a TestApp,
    client: reqwest::Client,
    cookie: String,
}

/// A form as a browser posts it.
trait Form {
    fn form_of(self, pairs: &[(&str, &str)]) -> Self;
}

impl Form for reqwest::RequestBuilder {
    fn form_of(self, pairs: &[(&str, &str)]) -> Self {
        let body: Vec<String> =
            pairs.iter().map(|(k, v)| format!("{}={}", urlencoding::encode(k), urlencoding::encode(v))).collect();
        self.header("Content-Type", "application/x-www-form-urlencoded").body(body.join("&"))
    }
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

fn set_cookie<'r>(r: &'r reqwest::Response, name: &str) -> Option<&'r str> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(&format!("{name}=")))
}

fn select<'h>(html: &'h Html, css: &str) -> Vec<scraper::ElementRef<'h>> {
    html.select(&Selector::parse(css).unwrap()).collect()
}

fn text(e: &scraper::ElementRef) -> String {
    e.text().collect::<String>().trim().to_string()
}

/// Signs in with `token` as a browser would: the form, its nonce cookie, the post.
async fn sign_in<'a>(app: &'a TestApp, token: &str) -> Session<'a> {
    let client = no_redirects();
    let form = client.get(app.url("/console/login")).send().await.unwrap();
    assert_eq!(form.status(), 200);
    let nonce_cookie =
        set_cookie(&form, "lgsp_console_login").expect("the form's nonce").split(';').next().unwrap().to_string();
    let html = Html::parse_document(&form.text().await.unwrap());
    let nonce = select(&html, "input[name=_login]")[0].value().attr("value").unwrap().to_string();
    let r = client
        .post(app.url("/console/login"))
        .header("Cookie", nonce_cookie)
        .form_of(&[("token", token), ("_login", nonce.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "signed in");
    let cookie = set_cookie(&r, "lgsp_console").expect("a session cookie").to_string();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console", "Max-Age="] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    Session { app, client, cookie: cookie.split(';').next().unwrap().to_string() }
}

impl Session<'_> {
    async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.app.url(path)).header("Cookie", &self.cookie).send().await.unwrap()
    }

    async fn page(&self, path: &str) -> Html {
        let r = self.get(path).await;
        assert_eq!(r.status(), 200, "{path}");
        let csp = r.headers()["content-security-policy"].to_str().unwrap().to_string();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        Html::parse_document(&r.text().await.unwrap())
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.client.post(self.app.url(path)).header("Cookie", &self.cookie).form_of(form).send().await.unwrap()
    }

    /// The CSRF token the page's forms carry.
    async fn csrf(&self) -> String {
        let html = self.page("/console").await;
        select(&html, "input[name=_csrf]")[0].value().attr("value").unwrap().to_string()
    }
}

#[tokio::test]
async fn a_steward_signs_in_sees_the_registries_and_changes_only_with_the_pages_token() {
    let app = spawn_app().await;
    // Without a session: the sign-in page.
    let r = no_redirects().get(app.url("/console/adapters")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/console/login");

    let s = sign_in(&app, STEWARD).await;
    let html = s.page("/console").await;
    let nav: Vec<String> = select(&html, "header nav a").iter().map(text).collect();
    assert_eq!(
        nav,
        [
            "Tổng quan",
            "Bộ kết nối",
            "Biểu mẫu",
            "Phần tử dữ liệu",
            "Thông tin xác thực",
            "Đối tác",
            "Quy trình liên thông",
            "Đồng bộ DVCQG",
            "Mã quản trị"
        ],
        "Vietnamese first, a steward's pages"
    );
    let rows: Vec<String> = select(&html, "main table tbody tr td:first-child a").iter().map(text).collect();
    assert_eq!(rows, ["civil_status", "insurance", "population"]);

    // A change without the page's token is refused, and changes nothing.
    let r = s.post("/console/adapters/population/state", &[("enabled", "false")]).await;
    assert_eq!(r.status(), 403);
    assert!(app.state.catalog.get().adapters["population"].enabled);
    let csrf = s.csrf().await;
    let r = s.post("/console/adapters/population/state", &[("enabled", "false"), ("_csrf", &csrf)]).await;
    assert_eq!(r.status(), 303);
    assert!(!app.state.catalog.get().adapters["population"].enabled, "disabled through the console");
    let html = s.page("/console/adapters/population").await;
    let button = select(&html, "form[action='/console/adapters/population/state'] button");
    assert_eq!(text(&button[0]), "Bật", "the page offers to enable it again");

    // Audited as the API audits it: the same resource, by the session's token.
    let records = app.audit("action=admin&resource=adapters/population/state").await;
    let items = records["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "the refused change and the change: {records:#}");
    assert_eq!(items[0]["outcome"], "ok");
    assert_eq!(items[0]["detail"]["via"], "console");
    assert_eq!(items[1]["outcome"], "refused");
    let tokens: Vec<serde_json::Value> =
        app.admin(reqwest::Method::GET, "/admin/v1/tokens", STEWARD, None).await.json().await.unwrap();
    let steward = tokens.iter().find(|t| t["role"] == "steward").unwrap();
    assert_eq!(items[0]["key_id"], steward["id"], "made with the signed-in steward's token");

    // An auditor's pages are not a steward's.
    let r = s.get("/console/audit").await;
    assert_eq!(r.status(), 403);

    // Signed out, the cookie opens nothing.
    let r = s.post("/console/logout", &[("_csrf", &csrf)]).await;
    assert_eq!(r.status(), 303);
    let r = s.get("/console").await;
    assert_eq!(r.status(), 303, "back to the sign-in page");
}

#[tokio::test]
async fn an_auditor_searches_the_trail_verifies_the_chain_and_cannot_change_anything() {
    let app = spawn_app().await;
    let s = sign_in(&app, AUDITOR).await;
    let html = s.page("/console?lang=en").await;
    let nav: Vec<String> = select(&html, "header nav a").iter().map(text).collect();
    assert_eq!(nav, ["Overview", "Audit trail"], "English on request, an auditor's pages");
    // No control that changes anything: the only forms sign out.
    let forms: Vec<&str> = select(&html, "form").iter().filter_map(|f| f.value().attr("action")).collect();
    assert_eq!(forms, ["/console/logout"]);

    let html = s.page("/console/audit?action=admin").await;
    let rows = select(&html, "main table tbody tr");
    assert!(!rows.is_empty());
    let first = select(&html, "main table tbody tr td a")[0].value().attr("href").unwrap().to_string();
    let record = s.page(&first).await;
    let fields: Vec<String> = select(&record, "main table th").iter().map(text).collect();
    assert!(fields.contains(&"hash".to_string()) && fields.contains(&"prev_hash".to_string()), "{fields:?}");

    let csrf = s.csrf().await;
    let r = s.post("/console/audit/verify", &[("_csrf", &csrf), ("anchors", "")]).await;
    assert_eq!(r.status(), 200);
    let html = Html::parse_fragment(&r.text().await.unwrap());
    assert_eq!(select(&html, ".ok").len(), 1, "the chain is intact");
    let overview = s.page("/console").await;
    assert!(
        select(&overview, ".card .ok").iter().any(|e| text(e) == "Chuỗi nguyên vẹn"),
        "the last verification, on the overview"
    );

    // A steward's change forged by an auditor, with the auditor's own token: refused.
    let r = s.post("/console/adapters/population/state", &[("enabled", "false"), ("_csrf", &csrf)]).await;
    assert_eq!(r.status(), 403);
    assert!(app.state.catalog.get().adapters["population"].enabled);
    let r = s.get("/console/adapters").await;
    assert_eq!(r.status(), 403);

    // A bad time filter is shown on the page, at its field's name.
    let r = s.get("/console/audit?from=yesterday").await;
    assert_eq!(r.status(), 400);
    let html = Html::parse_document(&r.text().await.unwrap());
    assert!(text(&select(&html, ".problem")[0]).starts_with("from:"));
}

#[tokio::test]
async fn a_wrong_token_is_refused_on_the_page_and_the_console_keeps_to_the_admin_networks() {
    let app = spawn_app().await;
    let client = no_redirects();
    let form = client.get(app.url("/console/login")).send().await.unwrap();
    let nonce_cookie = set_cookie(&form, "lgsp_console_login").unwrap().split(';').next().unwrap().to_string();
    let html = Html::parse_document(&form.text().await.unwrap());
    let nonce = select(&html, "input[name=_login]")[0].value().attr("value").unwrap().to_string();
    let r = client
        .post(app.url("/console/login"))
        .header("Cookie", &nonce_cookie)
        .form_of(&[("token", "not-a-token-at-all"), ("_login", nonce.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(set_cookie(&r, "lgsp_console").is_none());
    let html = Html::parse_document(&r.text().await.unwrap());
    assert_eq!(select(&html, ".problem").len(), 1);
    // A sign-in posted from another site (no nonce of this form) is refused too.
    let r =
        client.post(app.url("/console/login")).form_of(&[("token", STEWARD), ("_login", "x")]).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(set_cookie(&r, "lgsp_console").is_none());
    let refusals = app.audit("action=admin&resource=console/sign-in&outcome=refused").await;
    assert_eq!(refusals["items"].as_array().unwrap().len(), 1, "the wrong token's refusal is audited");

    let kept = spawn_app_with(|s| s.admin_networks = vec!["203.0.113.0/24".parse().unwrap()]).await;
    let r = no_redirects().get(kept.url("/console/login")).send().await.unwrap();
    assert_eq!(r.status(), 403, "the console answers only the admin networks");
}

#[tokio::test]
async fn a_steward_registers_an_adapter_refused_then_fixed_runs_it_and_grants_a_partner_a_key_shown_once() {
    let app = spawn_app().await;
    let s = sign_in(&app, STEWARD).await;
    let csrf = s.csrf().await;
    let mut manifest =
        crate::helpers::new_registry_manifest(&app.mocks.url(lgsp::registries::RegistryKind::Population));
    manifest["operations"]["whereabouts"]["elements"] = serde_json::json!(["full_name", "phone", "shoe_size"]);
    let pasted = serde_json::to_string_pretty(&manifest).unwrap();
    let r = s.post("/console/adapters", &[("_csrf", &csrf), ("document", &pasted)]).await;
    assert_eq!(r.status(), 422);
    let html = Html::parse_document(&r.text().await.unwrap());
    let errors: Vec<String> = select(&html, ".problem li .pointer").iter().map(text).collect();
    assert_eq!(errors[0], "/operations/whereabouts/elements/2", "the error at its pointer: {errors:?}");
    assert_eq!(text(&select(&html, "textarea[name=document]")[0]), pasted.trim(), "the paste kept, to fix");

    manifest["operations"]["whereabouts"]["elements"] = serde_json::json!(["full_name", "phone"]);
    let fixed = serde_json::to_string(&manifest).unwrap();
    let r = s.post("/console/adapters", &[("_csrf", &csrf), ("document", &fixed)]).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/console/adapters/residence_lookup");

    let citizen = app.mocks.population.samples(1).adult_with_household[0].clone();
    let r = s.post("/console/adapters/residence_lookup/test", &[("_csrf", &csrf), ("citizen_id", &citizen)]).await;
    assert_eq!(r.status(), 200);
    let html = Html::parse_document(&r.text().await.unwrap());
    let outcome: Vec<String> = select(&html, "table.dry-run tbody td.ok").iter().map(text).collect();
    assert_eq!(outcome, ["ok"]);
    assert!(text(&select(&html, "table.dry-run td:last-child pre")[0]).contains("full_name"));
    assert!(text(&select(&html, "table.dry-run pre.raw")[0]).contains("du_lieu"), "the raw answer beside it");

    // A partner, granted a form, and a key shown once.
    let r = s
        .post(
            "/console/partners",
            &[
                ("_csrf", &csrf),
                ("id", "000.00.20.H29"),
                ("name", "Cổng huyện"),
                ("kind", "state_agency"),
                ("rate_per_minute", "600"),
                ("burst", "20"),
                ("forms", "ct01"),
                ("purposes", "residence_change"),
                ("elements", "*"),
                ("access_log", "false"),
            ],
        )
        .await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    let r = s.post("/console/partners/000.00.20.H29/keys", &[("_csrf", &csrf), ("label", "portal")]).await;
    assert_eq!(r.status(), 200);
    let html = Html::parse_document(&r.text().await.unwrap());
    let secret = text(&select(&html, "#new-key-secret")[0]);
    assert!(secret.starts_with("lgsp_pk_"), "{secret}");
    let again = s.page("/console/partners/000.00.20.H29").await;
    assert!(select(&again, "#new-key-secret").is_empty(), "shown once");
    assert!(!again.html().contains(&secret));
    // The key works, for the form granted.
    let r = app.prefill(&secret, "ct01", "residence_change", &citizen).await;
    assert_eq!(r.status(), 200);
    let r = app.prefill(&secret, "tk1_ts", "health_insurance_enrolment", &citizen).await;
    assert_eq!(r.status(), 403, "only the form granted");

    // Each change is in the trail, as the API's would be.
    for resource in ["adapters", "adapters/residence_lookup/test", "partners", "partners/000.00.20.H29/keys"] {
        let found = app.audit(&format!("action=admin&resource={resource}")).await;
        assert!(!found["items"].as_array().unwrap().is_empty(), "{resource}");
    }
}

#[tokio::test]
async fn stewards_pages_show_forms_cut_set_credentials_write_only_make_tokens_once_and_follow_dossiers() {
    let app = spawn_app().await;
    let key = app.partner("000.00.15.H29", crate::helpers::everything(), 6000, 200).await;
    let citizen = app.mocks.population.samples(1).adult_with_household[0].clone();
    assert_eq!(app.prefill(&key, "ct01", "residence_change", &citizen).await.status(), 200);
    let s = sign_in(&app, STEWARD).await;

    // The overview charts the last hour's calls, by partner and by adapter.
    let html = s.page("/console").await;
    let charts: Vec<&str> = select(&html, "svg.spark").iter().filter_map(|c| c.value().attr("aria-label")).collect();
    assert!(charts.contains(&"000.00.15.H29: 1"), "{charts:?}");
    assert!(charts.iter().any(|c| c.starts_with("population: ")), "{charts:?}");

    // Forms: the ceiling and the measured cut, as bars.
    let html = s.page("/console/forms").await;
    let ct01 = select(&html, "main table tbody tr").into_iter().find(|r| text(r).contains("ct01")).unwrap();
    let bars: Vec<&str> =
        ct01.select(&Selector::parse("svg.bar").unwrap()).filter_map(|b| b.value().attr("aria-label")).collect();
    assert_eq!(bars.len(), 2, "the ceiling and the measured cut: {}", ct01.html());

    // A credential is set and never shown again, not even in the trail.
    let csrf = s.csrf().await;
    let secret = "a-very-secret-registry-token-0001";
    let r = s
        .post("/console/credentials", &[("_csrf", &csrf), ("name", "land"), ("kind", "static"), ("first", secret)])
        .await;
    assert_eq!(r.status(), 303);
    let page = s.get("/console/credentials").await.text().await.unwrap();
    assert!(page.contains(">land<") && !page.contains(secret), "listed, never shown");
    let trail = app.audit("action=admin&resource=credentials/land").await;
    assert_eq!(trail["items"][0]["detail"]["sent"], serde_json::json!({"kind": "static"}));
    assert!(!trail.to_string().contains(secret));

    // An admin token, shown once, then revoked.
    let r = s.post("/console/tokens", &[("_csrf", &csrf), ("role", "auditor"), ("label", "inspector")]).await;
    assert_eq!(r.status(), 200);
    let html = Html::parse_document(&r.text().await.unwrap());
    let token = text(&select(&html, "#new-key-secret")[0]);
    let auditor = sign_in(&app, &token).await;
    assert_eq!(auditor.get("/console/audit").await.status(), 200, "the new token opens the console");
    let tokens = s.page("/console/tokens").await;
    assert!(!tokens.html().contains(&token), "shown once");
    let id = text(&select(&html, "#new-key .muted")[0]);
    let revoke = format!("/console/tokens/{id}/revoke");
    assert_eq!(select(&tokens, &format!("form[action='{revoke}']")).len(), 1, "the new token's revoke button");
    assert_eq!(s.post(&revoke, &[("_csrf", &csrf)]).await.status(), 303);
    assert_eq!(auditor.get("/console/audit").await.status(), 303, "revoking the token ends its sessions");

    // A dossier's steps and timeline.
    let (mother, head, father) = crate::dossiers::a_mother(&app.mocks.population, 12);
    let body = serde_json::json!({"flow": "birth_residence_insurance", "requester_id": mother,
        "declaration": crate::dossiers::birth_declaration(&mother, &head, father.as_deref(), "Tâm")});
    let filed: serde_json::Value = app.file(&key, "console-1", &body).await.json().await.unwrap();
    let code = filed["code"].as_str().unwrap();
    app.dossier_when(&key, code, &["done"]).await;
    let flows = s.page("/console/flows").await;
    assert!(select(&flows, &format!("a[href='/console/dossiers/{code}']")).len() == 1);
    let html = s.page(&format!("/console/dossiers/{code}")).await;
    let steps: Vec<String> =
        select(&html, "main table:first-of-type tbody tr td:first-child").iter().map(text).collect();
    assert_eq!(steps, ["birth_registration", "permanent_residence", "health_insurance_card"]);
}

#[tokio::test]
async fn keys_rotate_with_a_grace_period_versions_compare_and_the_trail_exports_from_the_console() {
    let app = spawn_app().await;
    let old = app.partner("000.00.15.H29", crate::helpers::everything(), 6000, 200).await;
    let citizen = app.mocks.population.samples(1).adult_with_household[0].clone();
    assert_eq!(app.prefill(&old, "ct01", "nowhere", &citizen).await.status(), 422, "a refusal, for the counts");
    let s = sign_in(&app, STEWARD).await;
    let csrf = s.csrf().await;

    let html = s.page("/console/partners/000.00.15.H29").await;
    let counts = text(&select(&html, "main > p.muted")[0]);
    assert!(counts.contains("1 lượt gọi") && counts.contains("1 bị từ chối"), "{counts}");
    let rotate = select(&html, "form[action$='/rotate']")[0].value().attr("action").unwrap().to_string();
    let r = s.post(&rotate, &[("_csrf", &csrf), ("grace_hours", "1")]).await;
    assert_eq!(r.status(), 200);
    let html = Html::parse_document(&r.text().await.unwrap());
    let new = text(&select(&html, "#new-key-secret")[0]);
    assert_ne!(new, old);
    assert_eq!(app.prefill(&new, "ct01", "residence_change", &citizen).await.status(), 200);
    assert_eq!(
        app.prefill(&old, "ct01", "residence_change", &citizen).await.status(),
        200,
        "the old key, in its grace period"
    );

    // Two versions of an adapter, compared.
    let mut manifest: serde_json::Value = serde_json::from_str(lgsp::adapter::SHIPPED[0].1).unwrap();
    manifest["upstream"]["timeout_ms"] = serde_json::json!(1500);
    let r =
        s.post("/console/adapters/population/publish", &[("_csrf", &csrf), ("document", &manifest.to_string())]).await;
    assert_eq!(r.status(), 303);
    let html = s.page("/console/adapters/population/diff?a=1&b=2").await;
    let changed: Vec<String> = select(&html, "table.diff tr.differs td:last-child").iter().map(text).collect();
    assert_eq!(changed, ["\"timeout_ms\": 1500"]);

    // The auditor exports the trail, which verifies without the database.
    let a = sign_in(&app, AUDITOR).await;
    let r = a.get("/console/audit/export?from=1").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    let lines = r.text().await.unwrap();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &lines).unwrap();
    let v = lgsp::audit::verify_export(
        std::io::BufReader::new(std::fs::File::open(file.path()).unwrap()),
        &Default::default(),
    )
    .unwrap();
    assert!(v.is_intact(), "{v:?}");
    assert_eq!(v.records as usize, lines.lines().count());
}

#[tokio::test]
async fn elements_forms_and_flows_are_registered_by_paste_and_a_forms_bindings_are_shown() {
    let app = spawn_app().await;
    let s = sign_in(&app, STEWARD).await;
    let csrf = s.csrf().await;
    let html = s.page("/console/forms/ct01").await;
    let bound: Vec<String> = select(&html, "main table tbody td .tag").iter().map(text).collect();
    assert!(bound.contains(&"full_name".to_string()), "{bound:?}");

    let element = serde_json::json!({"id": "vehicle_plate", "label_en": "Vehicle plate", "label_vi": "Biển số xe",
                                     "class": "basic", "schema": {"type": "strin"}});
    let r = s.post("/console/elements", &[("_csrf", &csrf), ("document", &element.to_string())]).await;
    assert_eq!(r.status(), 422);
    let html = Html::parse_document(&r.text().await.unwrap());
    assert!(!select(&html, ".problem li").is_empty());
    assert!(text(&select(&html, "textarea[name=document]")[0]).contains("vehicle_plate"), "the paste kept");
    let fixed = serde_json::json!({"id": "vehicle_plate", "label_en": "Vehicle plate", "label_vi": "Biển số xe",
                                   "class": "basic", "schema": {"type": "string"}});
    let r = s.post("/console/elements", &[("_csrf", &csrf), ("document", &fixed.to_string())]).await;
    assert_eq!(r.status(), 303);
    let html = s.page("/console/elements").await;
    assert!(select(&html, "main table tbody td.mono").iter().any(|c| text(c) == "vehicle_plate"));
    let r = s.post("/console/flows", &[("_csrf", &csrf), ("document", "{\"id\": \"x\"}")]).await;
    assert_eq!(r.status(), 422, "a flow, checked as the API checks it");
}

#[tokio::test]
async fn the_reconciliation_is_a_table_whose_differing_dossiers_are_one_click_away_and_resent_from_there() {
    let (app, key) = crate::sync::with_portal().await;
    let (fine, refused) = ("000.00.15.H29-261120-0001", "000.00.15.H29-261120-0002");
    let mut body = crate::sync::dossier(fine);
    body["received_at"] = serde_json::json!("2026-11-20T08:30:00+07:00");
    assert_eq!(app.report(&key, "/v1/dossiers", &body).await.status(), 202);
    body["code"] = serde_json::json!(refused);
    body["procedure_code"] = serde_json::json!("TTHC-SAI");
    assert_eq!(app.report(&key, "/v1/dossiers", &body).await.status(), 202);
    assert!(crate::sync::drained(&app, &[fine.to_string(), refused.to_string()]).await);
    app.mocks.portal.state.records.lock().remove(fine);

    let s = sign_in(&app, STEWARD).await;
    let html = s.page("/console/reconciliation?from=2026-11-20&to=2026-11-20").await;
    let links: Vec<(String, String)> = select(&html, "table#differences td a")
        .iter()
        .map(|a| (text(a), a.value().attr("href").unwrap().to_string()))
        .collect();
    assert_eq!(
        links,
        [
            (fine.to_string(), format!("/console/sync/{fine}")),
            (refused.to_string(), format!("/console/sync/{refused}"))
        ]
    );
    let whys: Vec<String> = select(&html, "table#differences td.bad").iter().map(text).collect();
    assert_eq!(whys, ["never_sent", "refused"]);
    let tally: Vec<String> = select(&html, "table#tally tbody tr").iter().map(text).collect();
    assert_eq!(tally.len(), 2, "{tally:?}");
    let counters: Vec<String> = select(&html, "table#counters td").iter().map(text).collect();
    assert_eq!(counters[0], "2 / 0 / 0", "both received online");

    // One click: the refused dossier, with the portal's error, and no copy there.
    let html = s.page(&links[1].1).await;
    let outbox: Vec<String> = select(&html, "table#outbox td.bad").iter().map(text).collect();
    assert_eq!(outbox, ["refused"]);
    assert!(text(&select(&html, "table#outbox tbody tr")[0]).contains("HS05"));
    assert!(text(&select(&html, "pre#held")[0]).contains("TTHC-SAI"));
    assert!(select(&html, "pre#portal").is_empty());
    let html = s.page(&links[0].1).await;
    assert!(text(&select(&html, "main")[0]).contains("Cổng không có hồ sơ này."));

    // Sent again from the page: the lost one is back; the refused one waits for a person.
    let csrf = s.csrf().await;
    let form = [("from", "2026-11-20"), ("to", "2026-11-20"), ("_csrf", csrf.as_str())];
    let r = s.post("/console/reconciliation/resend", &form).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/console/reconciliation?from=2026-11-20&to=2026-11-20&resent=1");
    assert!(crate::sync::drained(&app, &[fine.to_string()]).await);
    let html = s.page("/console/reconciliation?from=2026-11-20&to=2026-11-20").await;
    let left: Vec<String> = select(&html, "table#differences td a").iter().map(text).collect();
    assert_eq!(left, [refused]);
    let records = app.audit("action=admin&resource=reconciliation/resend").await;
    assert_eq!(records["items"][0]["detail"]["via"], "console", "{records:#}");

    let auditor = sign_in(&app, AUDITOR).await;
    assert_eq!(auditor.get("/console/reconciliation").await.status(), 403);
}
