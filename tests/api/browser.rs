//! The console's journeys in a real headless Chromium, driven over WebDriver
//! (the distribution's `chromium` and `chromium-driver`; `.ci/run` installs
//! them). Where no ChromeDriver is installed, each journey says so and checks
//! nothing. A screenshot of every page a journey visits is kept under
//! `target/console-journeys/` when the journey fails.

use crate::helpers::{spawn_app, TestApp, AUDITOR, STEWARD};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn chromedriver() -> Option<PathBuf> {
    let named = std::env::var_os("LGSP_CHROMEDRIVER").map(PathBuf::from);
    named.into_iter().chain([PathBuf::from("/usr/bin/chromedriver")]).find(|p| p.exists())
}

/// ChromeDriver on a free port, stopped when dropped.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A browser on the console, with the screenshots of its journey.
struct Browser {
    client: Client,
    base: String,
    shots: PathBuf,
    taken: usize,
    _driver: Driver,
}

impl Browser {
    async fn open(app: &TestApp, journey: &str) -> Option<Browser> {
        let Some(path) = chromedriver() else {
            eprintln!("skipped: no ChromeDriver (install chromium and chromium-driver, or set LGSP_CHROMEDRIVER)");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = Driver(child);
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                            "--window-size=1366,900"]}),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let mut client = None;
        for _ in 0..100 {
            match ClientBuilder::new(connector.clone())
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(c) => {
                    client = Some(c);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("..").join("console-journeys").join(journey);
        let _ = std::fs::remove_dir_all(&shots);
        std::fs::create_dir_all(&shots).unwrap();
        Some(Browser {
            client: client.expect("a WebDriver session"),
            base: app.base.clone(),
            shots,
            taken: 0,
            _driver: driver,
        })
    }

    /// Opens a console page and keeps its screenshot.
    async fn visit(&mut self, path: &str) {
        self.client.goto(&format!("{}{path}", self.base)).await.unwrap();
        self.shoot(path).await;
    }

    async fn shoot(&mut self, what: &str) {
        self.taken += 1;
        let name = format!("{:02}-{}.png", self.taken, what.trim_matches('/').replace(['/', '?', '='], "_"));
        if let Ok(png) = self.client.screenshot().await {
            let _ = std::fs::write(self.shots.join(name), png);
        }
    }

    async fn fill(&self, css: &str, value: &str) {
        let e = self.client.find(Locator::Css(css)).await.unwrap_or_else(|_| panic!("no {css}"));
        // Set as the page's own script would: long manifests type slowly.
        self.client
            .execute("arguments[0].value = arguments[1];", vec![serde_json::to_value(&e).unwrap(), json!(value)])
            .await
            .unwrap();
    }

    async fn click(&mut self, css: &str) {
        self.client.find(Locator::Css(css)).await.unwrap_or_else(|_| panic!("no {css}")).click().await.unwrap();
        let url = self.client.current_url().await.unwrap();
        self.shoot(url.path()).await;
    }

    async fn text(&self, css: &str) -> String {
        self.client.find(Locator::Css(css)).await.unwrap_or_else(|_| panic!("no {css}")).text().await.unwrap()
    }

    async fn all_text(&self, css: &str) -> Vec<String> {
        let mut out = Vec::new();
        for e in self.client.find_all(Locator::Css(css)).await.unwrap() {
            out.push(e.text().await.unwrap());
        }
        out
    }

    /// Waits for what htmx swaps in.
    async fn wait_for(&self, css: &str) {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|_| panic!("{css} never came"));
    }

    async fn sign_in(&mut self, token: &str) {
        self.visit("/console/login").await;
        self.fill("input[name=token]", token).await;
        self.click("form[action='/console/login'] button").await;
    }

    /// The journey went through: its screenshots are not kept (unless
    /// `LGSP_KEEP_JOURNEYS` is set, to look at the pages).
    async fn done(self) {
        if std::env::var_os("LGSP_KEEP_JOURNEYS").is_none() {
            let _ = std::fs::remove_dir_all(&self.shots);
        }
        let _ = self.client.close().await;
    }
}

#[tokio::test]
async fn a_steward_and_then_an_auditor_go_through_the_console_in_a_real_browser() {
    let app = spawn_app().await;
    let Some(mut b) = Browser::open(&app, "steward-and-auditor").await else { return };

    // The steward: an adapter refused, then fixed.
    b.sign_in(STEWARD).await;
    assert_eq!(
        b.all_text("header nav a").await,
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
        ]
    );
    b.visit("/console/adapters").await;
    let mut manifest =
        crate::helpers::new_registry_manifest(&app.mocks.url(lgsp::registries::RegistryKind::Population));
    manifest["operations"]["whereabouts"]["elements"] = json!(["full_name", "phone", "shoe_size"]);
    b.fill("textarea[name=document]", &serde_json::to_string_pretty(&manifest).unwrap()).await;
    b.click("form[action='/console/adapters'] button").await;
    let refused = b.all_text(".problem li .pointer").await;
    assert_eq!(refused.first().map(String::as_str), Some("/operations/whereabouts/elements/2"), "{refused:?}");
    // Fixed, and uploaded as a file this time: the page reads it into the text area.
    manifest["operations"]["whereabouts"]["elements"] = json!(["full_name", "phone"]);
    let file = tempfile::Builder::new().suffix(".json").tempfile().unwrap();
    std::fs::write(file.path(), serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
    let upload = b.client.find(Locator::Css("form[action='/console/adapters'] input[type=file]")).await.unwrap();
    upload.send_keys(file.path().to_str().unwrap()).await.unwrap();
    let read = b
        .client
        .wait()
        .at_most(Duration::from_secs(5))
        .for_element(Locator::Css("textarea[name=document]"))
        .await
        .unwrap();
    for _ in 0..50 {
        if read.prop("value").await.unwrap().unwrap_or_default().contains("\"phone\"\n") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !read.prop("value").await.unwrap().unwrap_or_default().contains("shoe_size"),
        "the file replaced the paste"
    );
    b.click("form[action='/console/adapters'] button").await;
    assert!(b.client.current_url().await.unwrap().path().ends_with("/console/adapters/residence_lookup"));

    // A dry run, swapped into the page by htmx under the console's content policy.
    let citizen = app.mocks.population.samples(1).adult_with_household[0].clone();
    b.fill("input[name=citizen_id]", &citizen).await;
    b.click("form[action='/console/adapters/residence_lookup/test'] button").await;
    b.wait_for("#dry-run table.dry-run").await;
    assert_eq!(b.text("#dry-run td.ok").await, "ok");
    assert!(b.text("#dry-run pre.raw").await.contains("du_lieu"), "the registry's answer beside the elements");
    b.shoot("dry-run").await;

    // A partner, its key shown once, a form granted.
    b.visit("/console/partners").await;
    b.fill("input[name=id]", "000.00.21.H29").await;
    b.fill("input[name=name]", "Cổng dịch vụ công xã").await;
    b.fill("input[name=purposes]", "residence_change").await;
    b.fill("input[name=elements]", "*").await;
    b.click("form[action='/console/partners'] button").await;
    b.fill("form[action$='/keys'] input[name=label]", "portal").await;
    b.click("form[action$='/keys'] button").await;
    let secret = b.text("#new-key-secret").await;
    assert!(secret.starts_with("lgsp_pk_"));
    b.fill("form[action='/console/partners/000.00.21.H29'] input[name=forms]", "ct01").await;
    b.click("form[action='/console/partners/000.00.21.H29'] button").await;
    assert!(b.client.find(Locator::Css("#new-key-secret")).await.is_err(), "the key is not shown again");
    let r = app.prefill(&secret, "ct01", "residence_change", &citizen).await;
    assert_eq!(r.status(), 200, "the form granted on the page works with the key shown on it");
    b.click("form[action='/console/logout'] button").await;

    // The auditor finds the grant, verifies the chain, and can change nothing.
    b.sign_in(AUDITOR).await;
    assert_eq!(b.all_text("header nav a").await, ["Tổng quan", "Nhật ký kiểm toán"]);
    b.visit("/console/audit?resource=partners/000.00.21.H29").await;
    let outcomes = b.all_text("main table tbody td:last-child").await;
    assert_eq!(outcomes, ["ok"], "the grant, found");
    b.click("main table tbody td a").await;
    let fields = b.all_text("main table th").await;
    assert!(fields.contains(&"prev_hash".to_string()));
    b.visit("/console/audit").await;
    b.click("form[action='/console/audit/verify'] button").await;
    b.wait_for("#verification .ok").await;
    b.shoot("verified").await;
    let forms = b.client.find_all(Locator::Css("form[method=post]")).await.unwrap();
    let mut actions = Vec::new();
    for f in forms {
        actions.push(f.attr("action").await.unwrap().unwrap_or_default());
    }
    assert_eq!(actions, ["/console/logout", "/console/audit/verify"], "no control that changes anything");
    // A change forged from the auditor's page, with the page's own token: refused.
    let status = b
        .client
        .execute_async(
            "const done = arguments[0]; const csrf = document.querySelector('input[name=_csrf]').value;
             fetch('/console/adapters/population/state', {method: 'POST',
               headers: {'Content-Type': 'application/x-www-form-urlencoded'},
               body: 'enabled=false&_csrf=' + encodeURIComponent(csrf)}).then(r => done(r.status));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(status, json!(403));
    assert!(app.state.catalog.get().adapters["population"].enabled);
    b.done().await;
}
