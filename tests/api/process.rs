//! The `lgsp` binary as an operator runs it: stopped with SIGTERM it finishes
//! what is in flight and stores every audit record; killed with SIGKILL under
//! load it restarts on the same database with an intact chain.

use crate::helpers::start_mocks;
use crate::helpers::{everything, CREDENTIALS_KEY};
use crate::helpers::{fire_prefills, fresh_database_url, register_partner, startup_records};
use lgsp::registries::{default_tokens, Faults, MockRegistries, RegistryKind};
use serde_json::json;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

const STEWARD: &str = "steward-token-for-process-tests";

struct Gateway {
    child: Child,
    base: String,
    config: std::path::PathBuf,
}

/// Writes a configuration file for the binary: the mocks, the database, a
/// free port and a steward token, then `extra` (more TOML tables).
fn write_config(dir: &Path, mocks: &MockRegistries, database_url: &str, extra: &str) -> std::path::PathBuf {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut toml = format!(
        "host = \"127.0.0.1\"\nport = {port}\nworkers = 2\ndatabase_url = \"{database_url}\"\n\
         shutdown_timeout_secs = 20\nbootstrap_admin_tokens = [\"steward:{STEWARD}\"]\n\
         [log]\nlevel = \"warn\"\n"
    );
    for (i, kind) in RegistryKind::ALL.into_iter().enumerate() {
        toml.push_str(&format!(
            "[upstreams.{}]\nurl = \"{}\"\ntoken = \"{}\"\n",
            kind.name(),
            mocks.url(kind),
            default_tokens()[i]
        ));
    }
    toml.push_str(extra);
    let path = dir.join("lgsp.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

impl Gateway {
    async fn start(config: &Path) -> Gateway {
        let text = std::fs::read_to_string(config).unwrap();
        let port = text.lines().find_map(|l| l.strip_prefix("port = ")).unwrap().trim().to_string();
        let child = Command::new(env!("CARGO_BIN_EXE_lgsp"))
            .args(["--config", config.to_str().unwrap(), "serve"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("lgsp starts");
        let g = Gateway { child, base: format!("http://127.0.0.1:{port}"), config: config.to_path_buf() };
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = client.get(format!("{}/readyz", g.base)).send().await {
                if r.status() == 200 {
                    return g;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("lgsp did not become ready");
    }

    fn signal(&self, name: &str) {
        let ok = Command::new("kill").args([&format!("-{name}"), &self.child.id().to_string()]).status().unwrap();
        assert!(ok.success(), "kill -{name}");
    }

    async fn wait(&mut self) -> ExitStatus {
        for _ in 0..600 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("lgsp did not exit");
    }

    /// A partner granted everything, through the steward API; returns its key.
    async fn partner(&self, client: &reqwest::Client, id: &str) -> String {
        register_partner(client, &self.base, STEWARD, id, everything(), 600_000, 10_000).await
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary on a fresh database with `extra` configuration, its mocks, a
/// partner's key and four citizens to prefill for.
struct Running {
    mocks: MockRegistries,
    _dir: tempfile::TempDir,
    database_url: String,
    gw: Gateway,
    client: reqwest::Client,
    key: String,
    ids: Vec<String>,
}

async fn running(partner: &str, extra: &str) -> Running {
    let mocks = start_mocks(2_000);
    let dir = tempfile::tempdir().unwrap();
    let database_url = fresh_database_url(dir.path());
    let gw = Gateway::start(&write_config(dir.path(), &mocks, &database_url, extra)).await;
    let client = reqwest::Client::new();
    let key = gw.partner(&client, partner).await;
    let ids = mocks.population.samples(4).adult_with_household;
    Running { mocks, _dir: dir, database_url, gw, client, key, ids }
}

async fn verify(database_url: &str) -> lgsp::audit::Verification {
    let db = lgsp::db::Db::new(&lgsp::config::Secret::new(database_url), &Default::default()).unwrap();
    db.run(lgsp::audit::verify).await.unwrap()
}

#[tokio::test]
async fn sigterm_lets_in_flight_prefills_finish_and_stores_every_audit_record() {
    let Running { mocks, _dir, database_url, mut gw, client, key, ids } = running("000.00.40.H29", "").await;

    // Slow registries keep the prefills in flight when the signal arrives.
    mocks.set_faults(RegistryKind::Population, Faults { latency_ms: 600, ..Default::default() });
    let tasks = fire_prefills(&client, &gw.base, &key, &ids, 40);
    tokio::time::sleep(Duration::from_millis(250)).await;
    gw.signal("TERM");
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert!(gw.wait().await.success(), "a graceful stop exits 0");
    assert!(statuses.iter().all(|s| *s == 200), "every request in flight was answered: {statuses:?}");

    // The process is gone: what it stored is all there is.
    let v = verify(&database_url).await;
    assert!(v.is_intact(), "{v:?}");
    assert_eq!(
        v.records,
        STARTUP + 2 + 40,
        "one stored audit record per request answered, the first start's, the partner's registration and key too"
    );
}

#[tokio::test]
async fn sigkill_under_load_leaves_a_database_that_opens_with_an_intact_chain() {
    let Running { mocks, _dir, database_url, mut gw, client, key, ids } = running("000.00.41.H29", "").await;

    // A steady stream of prefills, killed in the middle of it.
    mocks.set_faults(RegistryKind::Population, Faults { latency_ms: 5, jitter_ms: 20, ..Default::default() });
    let mut tasks = Vec::new();
    for _ in 0..6 {
        tasks.extend(fire_prefills(&client, &gw.base, &key, &ids, 40));
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    // Killed once some prefills' records are stored (after the two of the
    // partner's registration and key), however slow the machine: the chain
    // then has committed records to verify, and requests still in flight.
    for _ in 0..1_500 {
        if written_records(&client, &gw.base).await > 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.signal("KILL");
    let status = gw.wait().await;
    assert!(!status.success());
    let mut answered = 0;
    for t in tasks {
        if t.await.unwrap() == 200 {
            answered += 1;
        }
    }
    assert!(answered > 0, "some prefills were answered before the kill");

    // The database opens cleanly; the chain verifies up to the last committed record.
    let v = verify(&database_url).await;
    assert!(v.is_intact(), "{v:?}");
    assert!(v.records > STARTUP + 2 && v.records <= STARTUP + 2 + 240, "{v:?}");

    // Restarted on the same database, it serves again and extends the same chain.
    let restarted = Gateway::start(&gw.config).await;
    drop(gw);
    let r = client
        .post(format!("{}/v1/prefill", restarted.base))
        .bearer_auth(&key)
        .json(&json!({"form": "ct01", "citizen_id": ids[0], "purpose": "residence_change"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the partner's key survived the crash");
    let mut after = verify(&database_url).await;
    for _ in 0..100 {
        if after.records > v.records {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        after = verify(&database_url).await;
    }
    assert!(after.is_intact(), "{after:?}");
    assert_eq!(after.records, v.records + 1, "the new record is chained after the last committed one");
}

#[tokio::test]
async fn with_store_before_answer_a_sigkill_loses_no_record_of_an_answer_given() {
    let Running { mocks, _dir, database_url, mut gw, client, key, ids } =
        running("000.00.42.H29", "[audit]\nstore_before_answer = true\n").await;

    // A steady stream of prefills, each with a request id of its own, killed
    // in the middle of it.
    mocks.set_faults(RegistryKind::Population, Faults { latency_ms: 5, jitter_ms: 20, ..Default::default() });
    let mut tasks = Vec::new();
    for i in 0..240 {
        let (client, url, key) = (client.clone(), format!("{}/v1/prefill", gw.base), key.clone());
        let body = json!({"form": "ct01", "citizen_id": ids[i % ids.len()], "purpose": "residence_change"});
        let request_id = format!("kill-test-{i}");
        tasks.push(tokio::spawn(async move {
            let sent = client.post(url).bearer_auth(key).header("X-Request-Id", &request_id).json(&body).send().await;
            (sent.map(|r| r.status().as_u16()).unwrap_or(0), request_id)
        }));
        if i % 40 == 39 {
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    }
    for _ in 0..1_500 {
        if written_records(&client, &gw.base).await > 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    gw.signal("KILL");
    assert!(!gw.wait().await.success());
    let mut answered = Vec::new();
    for t in tasks {
        let (status, request_id) = t.await.unwrap();
        if status == 200 {
            answered.push(request_id);
        }
    }
    assert!(!answered.is_empty(), "some prefills were answered before the kill");

    // Every answer given has its record in the trail, and the chain verifies.
    let db = lgsp::db::Db::new(&lgsp::config::Secret::new(database_url.as_str()), &Default::default()).unwrap();
    let stored: std::collections::HashSet<String> = db
        .run(|c| {
            use diesel::prelude::*;
            use lgsp::db::schema::audit_log::dsl::*;
            Ok(audit_log.select(request_id).load::<String>(c)?)
        })
        .await
        .unwrap()
        .into_iter()
        .collect();
    let missing: Vec<&String> = answered.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(missing.is_empty(), "{} of {} answers have no record: {missing:?}", missing.len(), answered.len());
    assert!(verify(&database_url).await.is_intact());
}

/// The records a gateway of these tests stores at its first start (it has
/// one bootstrap token).
const STARTUP: i64 = startup_records(1);

/// `lgsp_audit_records_written_total` of a running gateway.
async fn written_records(client: &reqwest::Client, base: &str) -> u64 {
    let Ok(r) = client.get(format!("{base}/metrics")).send().await else { return 0 };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("lgsp_audit_records_written_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Runs the binary with `args` on the configuration `toml`, in a fresh
/// directory, to its end; returns whether it succeeded, its output, its
/// errors, and whether it left a database file behind.
fn run_with_config(toml: &str, args: &[&str]) -> (bool, String, String, bool) {
    run_with_config_and_env(toml, args, &[])
}

fn run_with_config_and_env(toml: &str, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String, bool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lgsp.toml");
    std::fs::write(&path, toml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lgsp"))
        .args(["--config", path.to_str().unwrap()])
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir.path())
        .output()
        .expect("lgsp runs");
    let database = dir.path().join("lgsp.db").exists();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
        database,
    )
}

#[test]
fn a_misspelt_or_unworkable_setting_stops_the_start_and_names_each_problem() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("port = {port}\ndatabase_url = \"sqlite://lgsp.db\"\n");

    // A typo is not ignored: the gateway does not start on settings it did not read.
    let (ok, _, err, database) = run_with_config(&format!("{base}[database]\nmax_conections = 4\n"), &["serve"]);
    assert!(!ok, "serve refuses a misspelt key");
    assert!(!database, "no database was created");
    assert!(err.contains("max_conections") && err.contains("lgsp.toml"), "{err}");
    assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(), "nothing was left listening");

    // `config check` names every problem at once, and starts nothing.
    let (ok, _, err, _) = run_with_config(
        &format!("{base}workers = 1000\n[audit]\nbatch_size = 0\n[log]\nlevel = \"warning\"\n[upstreams.population]\nurl = \"registry.local\"\n"),
        &["config", "check"],
    );
    assert!(!ok, "config check fails");
    for key in ["workers", "audit.batch_size", "log.level", "upstreams.population.url"] {
        assert!(err.contains(key), "{key} is not named: {err}");
    }

    // TLS files are read by the check as by the start.
    let (ok, _, err, _) = run_with_config(
        &format!("{base}[tls]\ncert_path = \"missing.pem\"\nkey_path = \"missing.key\"\n"),
        &["config", "check"],
    );
    assert!(!ok && err.contains("tls.cert_path"), "{err}");

    // So is the map of national codes a province declares for its own words.
    let (ok, _, err, _) =
        run_with_config(&format!("{base}[portal]\nstatuses_file = \"missing-statuses.json\"\n"), &["config", "check"]);
    assert!(!ok && err.contains("portal.statuses_file missing-statuses.json"), "{err}");

    let (ok, out, err, database) =
        run_with_config(&format!("{base}[database]\nmax_connections = 4\n"), &["config", "check"]);
    assert!(ok, "a good configuration passes: {err}");
    assert!(out.contains("configuration is valid") && out.contains("sqlite"), "{out}");
    assert!(!database, "checking touches no database");

    // A misspelt variable of the environment is named, with what it may mean.
    let with_networks = format!("admin_networks = [\"10.20.0.0/16\"]\n{base}");
    let (ok, out, err, _) = run_with_config_and_env(&with_networks, &["config", "check"], &[("LGSP_PROT", "9000")]);
    assert!(ok, "{err}");
    assert!(out.contains("admin API   10.20.0.0/16"), "{out}");
    assert!(out.contains("warning: LGSP_PROT is not a setting and is ignored; did you mean LGSP_PORT?"), "{out}");
}

#[tokio::test]
async fn logs_written_to_a_pipe_carry_no_terminal_colour_codes() {
    let mocks = start_mocks(200);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &mocks, &fresh_database_url(dir.path()), "");
    let text = std::fs::read_to_string(&config).unwrap().replace("level = \"warn\"", "level = \"info\"");
    std::fs::write(&config, text).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lgsp"))
        .args(["--config", config.to_str().unwrap(), "serve"])
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("lgsp starts");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut log = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut log).unwrap();
        log
    });
    let port =
        std::fs::read_to_string(&config).unwrap().lines().find_map(|l| l.strip_prefix("port = ")).unwrap().to_string();
    let client = reqwest::Client::new();
    for _ in 0..200 {
        match client.get(format!("http://127.0.0.1:{port}/readyz")).send().await {
            Ok(r) if r.status() == 200 => break,
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    child.wait().unwrap();
    let log = reader.join().unwrap();
    assert!(log.contains("lgsp gateway listening"), "the log was captured: {log}");
    assert!(!log.contains('\u{1b}'), "escape codes in a piped log: {log:?}");
}

#[test]
fn a_port_already_in_use_is_named_in_the_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (ok, _, err, _) = run_with_config(&format!("port = {port}\ndatabase_url = \"sqlite://lgsp.db\"\n"), &["serve"]);
    assert!(!ok, "serve fails");
    assert!(err.contains(&format!("cannot listen on 127.0.0.1:{port}")), "{err}");
}

/// The binary with `args` on a running gateway's configuration: success, output, errors.
fn lgsp_cli(config: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lgsp"))
        .args(["--config", config.to_str().unwrap()])
        .args(args)
        .output()
        .expect("lgsp runs");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[tokio::test]
async fn an_exported_trail_verifies_without_the_database_and_shows_any_edit() {
    let Running { _dir, gw, client, key, ids, .. } = running("000.00.41.H29", "").await;
    for t in fire_prefills(&client, &gw.base, &key, &ids, 12) {
        assert_eq!(t.await.unwrap(), 200);
    }
    // The first start's records come first (stored at the start, not by the
    // writer), then the partner's registration and key, then the 12 prefills.
    while written_records(&client, &gw.base).await < 14 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| dir.path().join(name).to_str().unwrap().to_string();

    let (ok, _, err) = lgsp_cli(&gw.config, &["audit", "export", "--out", &file("all.jsonl")]);
    assert!(ok, "{err}");
    let all = std::fs::read_to_string(file("all.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = all.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let n = STARTUP + 14;
    assert_eq!(rows.len() as i64, n, "{err}");
    assert_eq!(rows.iter().map(|r| r["seq"].as_i64().unwrap()).collect::<Vec<_>>(), (1..=n).collect::<Vec<_>>());
    let (ok, out, _) = lgsp_cli(&gw.config, &["audit", "verify", "--file", &file("all.jsonl")]);
    assert!(
        ok && out.contains(&format!("records 1 to {n} ({n} records)")) && out.contains("beginning of the trail"),
        "{out}"
    );
    let last = rows.last().unwrap()["hash"].as_str().unwrap();
    assert!(out.contains(&format!("{n}:{last}")), "the last record's anchor: {out}");

    // Part of the trail links to the record before it, which an anchor confirms.
    let (ok, _, err) =
        lgsp_cli(&gw.config, &["audit", "export", "--from", "4", "--to", "9", "--out", &file("part.jsonl")]);
    assert!(ok, "{err}");
    assert_eq!(std::fs::read_to_string(file("part.jsonl")).unwrap().lines().count(), 6);
    let third = format!("3:{}", rows[2]["hash"].as_str().unwrap());
    let (ok, out, _) = lgsp_cli(&gw.config, &["audit", "verify", "--file", &file("part.jsonl")]);
    assert!(ok && out.contains("records 4 to 9") && out.contains(&format!("links to {third}")), "{out}");
    let (ok, out, _) = lgsp_cli(&gw.config, &["audit", "verify", "--file", &file("part.jsonl"), "--anchor", &third]);
    assert!(ok && out.contains("links to the anchored record 3"), "{out}");
    let wrong = format!("3:{}", rows[3]["hash"].as_str().unwrap());
    let (ok, out, _) = lgsp_cli(&gw.config, &["audit", "verify", "--file", &file("part.jsonl"), "--anchor", &wrong]);
    assert!(!ok && out.contains("BROKEN at record 4"), "{out}");

    // An edited record (the fifth prefill, after the first start's records
    // and the two of the partner's registration and key), and a removed one,
    // are named.
    let edited = all.replacen("\"purpose\":\"residence_change\"", "\"purpose\":\"marketing\"", 5);
    let edited = edited.replacen("\"purpose\":\"marketing\"", "\"purpose\":\"residence_change\"", 4);
    std::fs::write(file("edited.jsonl"), edited).unwrap();
    let (ok, out, _) = lgsp_cli(&gw.config, &["audit", "verify", "--file", &file("edited.jsonl")]);
    let fifth = STARTUP + 2 + 5;
    assert!(!ok && out.contains(&format!("BROKEN at record {fifth}")) && out.contains("edited"), "{out}");
    let removed: Vec<&str> = all.lines().filter(|l| !l.starts_with("{\"seq\":6,")).collect();
    std::fs::write(file("removed.jsonl"), removed.join("\n")).unwrap();
    let (ok, out, _) = lgsp_cli(&gw.config, &["audit", "verify", "--file", &file("removed.jsonl")]);
    assert!(!ok && out.contains("BROKEN at record 6") && out.contains("missing"), "{out}");
}

#[tokio::test]
async fn a_backup_taken_under_load_opens_with_an_intact_chain_and_the_catalogue() {
    let Running { _dir, gw, client, key, ids, database_url, .. } = running("000.00.42.H29", "").await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("backup.db");
    if database_url.starts_with("postgres") {
        let (ok, _, err) = lgsp_cli(&gw.config, &["backup", "--out", out.to_str().unwrap()]);
        assert!(!ok && err.contains("pg_dump"), "PostgreSQL is backed up with its own tools: {err}");
        return;
    }
    let load = fire_prefills(&client, &gw.base, &key, &ids, 200);
    while written_records(&client, &gw.base).await < 20 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (ok, stdout, err) = lgsp_cli(&gw.config, &["backup", "--out", out.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(stdout.contains("audit chain is intact"), "{stdout}");
    for t in load {
        assert_eq!(t.await.unwrap(), 200, "the load was served while the backup ran");
    }

    // The copy opens on its own: whole batches, the chain verifies, the partner is there.
    let copy =
        lgsp::db::Db::new(&lgsp::config::Secret::new(format!("sqlite://{}", out.display())), &Default::default())
            .unwrap();
    let v = copy.run(lgsp::audit::verify).await.unwrap();
    assert!(v.is_intact() && v.records >= 20, "{v:?}");
    let partners = copy.run(lgsp::catalog::store::all_partners).await.unwrap();
    assert!(partners.iter().any(|p| p.id == "000.00.42.H29"));

    // A backup never overwrites, and a missing database is not created.
    let (ok, _, err) = lgsp_cli(&gw.config, &["backup", "--out", out.to_str().unwrap()]);
    assert!(!ok && err.contains("already exists"), "{err}");
    let missing = dir.path().join("missing.toml");
    std::fs::write(&missing, format!("database_url = \"sqlite://{}\"\n", dir.path().join("none.db").display()))
        .unwrap();
    let (ok, _, err) = lgsp_cli(&missing, &["backup", "--out", dir.path().join("b2.db").to_str().unwrap()]);
    assert!(!ok && err.contains("no SQLite database"), "{err}");
    assert!(!dir.path().join("none.db").exists());
}

#[tokio::test]
async fn the_command_line_lists_a_partners_keys_and_no_secret() {
    let Running { _dir, gw, key, .. } = running("000.00.43.H29", "").await;
    let (ok, out, err) = lgsp_cli(&gw.config, &["partners", "keys", "000.00.43.H29"]);
    assert!(ok, "{err}");
    let rows: Vec<&str> = out.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{out}");
    assert!(rows[0].starts_with("key_") && rows[0].contains(" live "), "{out}");
    assert!(!out.contains(&key) && !out.contains("lgsp_pk_"), "no secret is printed: {out}");
    let (ok, _, err) = lgsp_cli(&gw.config, &["partners", "keys", "000.00.99.H29"]);
    assert!(!ok && err.contains("No partner"), "{err}");

    // Shown as JSON, changed from a file of the fields to change.
    let show = || {
        let (ok, out, err) = lgsp_cli(&gw.config, &["partners", "show", "000.00.43.H29"]);
        assert!(ok, "{err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    let before = show();
    assert_eq!(before["id"], "000.00.43.H29");
    let dir = tempfile::tempdir().unwrap();
    let patch = dir.path().join("patch.json");
    std::fs::write(&patch, r#"{"burst": 7, "policy": {"forms": ["ct01"], "networks": ["203.0.113.0/24"]}}"#).unwrap();
    let (ok, _, err) = lgsp_cli(&gw.config, &["partners", "update", "000.00.43.H29", patch.to_str().unwrap()]);
    assert!(ok, "{err}");
    let after = show();
    assert_eq!(after["burst"], 7);
    assert_eq!(after["policy"]["networks"], serde_json::json!(["203.0.113.0/24"]));
    assert_eq!((&after["name"], &after["rate_per_minute"]), (&before["name"], &before["rate_per_minute"]));
    std::fs::write(&patch, r#"{"bursts": 7}"#).unwrap();
    let (ok, _, err) = lgsp_cli(&gw.config, &["partners", "update", "000.00.43.H29", patch.to_str().unwrap()]);
    assert!(!ok && err.contains("patch.json") && err.contains("bursts"), "{err}");
}

#[tokio::test]
async fn the_command_line_shows_versions_of_a_form_and_rolls_one_back() {
    let Running { _dir, gw, client, key, .. } = running("000.00.44.H29", "").await;
    let served_title = |want: serde_json::Value| {
        let (client, key, url) = (client.clone(), key.clone(), format!("{}/v1/forms/ct01", gw.base));
        async move {
            // The gateway follows the database within catalog_refresh_ms.
            for _ in 0..100 {
                let form: serde_json::Value =
                    client.get(&url).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
                if form["title"] == want {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("the gateway does not serve the title {want}");
        }
    };
    let cli = |args: &[&str]| {
        let (ok, out, err) = lgsp_cli(&gw.config, args);
        assert!(ok, "{args:?}: {err}");
        out
    };
    let shipped: serde_json::Value = serde_json::from_str(&cli(&["forms", "show", "ct01"])).unwrap();
    assert_eq!(shipped["id"], "ct01");

    // Edit what `show` printed and publish it: version 2, current.
    let mut edited = shipped.clone();
    edited["title"] = serde_json::json!("Tờ khai thay đổi thông tin cư trú (sửa đổi)");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ct01.json");
    std::fs::write(&file, edited.to_string()).unwrap();
    assert!(cli(&["forms", "update", file.to_str().unwrap()]).contains("version 2"));
    served_title(edited["title"].clone()).await;
    let current = |out: String| -> Vec<String> {
        out.lines()
            .skip(1)
            .filter(|l| l.trim_end().ends_with("yes"))
            .map(|l| l.split(' ').next().unwrap().into())
            .collect()
    };
    assert_eq!(current(cli(&["forms", "versions", "ct01"])), ["2"]);
    let now: serde_json::Value = serde_json::from_str(&cli(&["forms", "show", "ct01"])).unwrap();
    assert_eq!(now, edited);
    let first: serde_json::Value = serde_json::from_str(&cli(&["forms", "show", "ct01", "--version", "1"])).unwrap();
    assert_eq!(first, shipped);

    // Back to version 1, which the gateway serves at once.
    cli(&["forms", "rollback", "ct01", "1"]);
    assert_eq!(current(cli(&["forms", "versions", "ct01"])), ["1"]);
    let back: serde_json::Value = serde_json::from_str(&cli(&["forms", "show", "ct01"])).unwrap();
    assert_eq!(back, shipped, "show prints the current version, not the latest");
    served_title(shipped["title"].clone()).await;
    let (ok, _, err) = lgsp_cli(&gw.config, &["forms", "rollback", "ct01", "7"]);
    assert!(!ok && err.contains("No version 7"), "{err}");
    let (ok, _, err) = lgsp_cli(&gw.config, &["forms", "show", "no_such_form"]);
    assert!(!ok && err.contains("no_such_form"), "{err}");

    // The changes, and the refused one, are in the audit trail; the reads are not.
    let trail = cli(&["audit", "export"]);
    let by_cli: Vec<serde_json::Value> = trail
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["key_id"] == "cli")
        .collect();
    let resources: Vec<&str> = by_cli.iter().map(|r| r["resource"].as_str().unwrap()).collect();
    let update = format!("forms update {}", file.to_str().unwrap());
    assert_eq!(resources, [update.as_str(), "forms rollback ct01", "forms rollback ct01"], "{trail}");
    assert!(by_cli.iter().all(|r| r["action"] == "admin"));
    // An export holds each record as stored: its detail is JSON text.
    let detail =
        |r: &serde_json::Value| serde_json::from_str::<serde_json::Value>(r["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail(&by_cli[0])["sent"], edited, "what the update read");
    assert_eq!(
        (&by_cli[1]["outcome"], &by_cli[2]["outcome"]),
        (&serde_json::json!("ok"), &serde_json::json!("refused"))
    );
    assert!(detail(&by_cli[2])["reason"].as_str().unwrap().contains("No version 7"));
    assert!(detail(&by_cli[1])["command"].as_str().unwrap().ends_with("forms rollback ct01 1"));
    let (ok, out, _) = lgsp_cli(&gw.config, &["audit", "verify"]);
    assert!(ok && out.contains("intact"), "{out}");
}

#[tokio::test]
async fn the_command_line_registers_elements_and_sets_credentials_read_from_standard_input() {
    use std::io::Write;
    let Running { _dir, gw, .. } = running("000.00.45.H29", "").await;
    let run = |args: &[&str], stdin: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lgsp"))
            .args(["--config", gw.config.to_str().unwrap()])
            .args(args)
            .env("LGSP_CREDENTIALS_KEY", CREDENTIALS_KEY)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("element.json");
    let element = serde_json::json!({"id": "land_parcel", "label_en": "Land parcel", "label_vi": "Thửa đất",
                                     "schema": {"type": "string", "pattern": "^[0-9]+/[0-9]+$"}});
    std::fs::write(&file, element.to_string()).unwrap();
    let (ok, out, err) = run(&["elements", "register", file.to_str().unwrap()], "");
    assert!(ok && out.contains("registered element land_parcel version 1"), "{out} {err}");
    let (ok, out, _) = run(&["elements", "list"], "");
    assert!(ok && out.lines().any(|l| l.starts_with("land_parcel") && l.contains("basic")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("address") && l.contains("shared type")), "{out}");

    let secret = "a-token-never-to-be-shown";
    let (ok, out, err) =
        run(&["credentials", "set", "land_registry"], &format!("{{\"kind\": \"static\", \"token\": \"{secret}\"}}"));
    assert!(ok && out.contains("set credential land_registry (static)"), "{out} {err}");
    let (ok, out, err) = run(&["credentials", "set", "land_registry"], secret);
    assert!(!ok && !err.contains(secret) && err.contains("not a credential"), "{err}");
    let (ok, out2, _) = run(&["credentials", "list"], "");
    assert!(ok && out2.contains("land_registry") && out2.contains("static") && !out2.contains(secret), "{out2} {out}");
    let (ok, key, _) = run(&["credentials", "key"], "");
    assert!(ok && key.trim().len() == 64 && key.trim().chars().all(|c| c.is_ascii_hexdigit()), "{key}");

    // Both changes are in the trail, allowed and refused, without the secret.
    let (ok, trail, _) = run(&["audit", "export"], "");
    assert!(ok);
    let records: Vec<&str> = trail.lines().filter(|l| l.contains("\"key_id\":\"cli\"")).collect();
    assert!(records.iter().any(|r| r.contains("elements register")), "{trail}");
    assert_eq!(records.iter().filter(|r| r.contains("credentials set land_registry")).count(), 2, "{trail}");
    assert!(!trail.contains(secret), "{trail}");
}

#[tokio::test]
async fn sigkill_mid_flow_and_a_restart_finish_every_dossier_with_each_registry_written_once() {
    use crate::dossiers::{a_mother, birth_declaration};
    let extra = "[dossiers]\npoll_ms = 50\nlease_ms = 5000\nretry_max_ms = 400\n";
    let mut r = running("000.00.15.H29", extra).await;
    // Each application takes 0.3 s at each status: the kill finds them mid-way.
    for kind in RegistryKind::ALL {
        r.mocks.set_faults(kind, Faults { processing_ms: 300, ..Default::default() });
    }
    let mut codes = Vec::new();
    for i in 0..8 {
        let (mother, head, father) = a_mother(&r.mocks.population, 20 + i);
        let body = json!({
            "flow": "birth_residence_insurance",
            "requester_id": mother,
            "declaration": birth_declaration(&mother, &head, father.as_deref(), "Phúc"),
        });
        let resp = r
            .client
            .post(format!("{}/v1/linked-dossiers", r.gw.base))
            .bearer_auth(&r.key)
            .header("Idempotency-Key", format!("kill-{i}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
        let filed: serde_json::Value = resp.json().await.unwrap();
        codes.push(filed["code"].as_str().unwrap().to_string());
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    r.gw.signal("KILL");
    r.gw.wait().await;
    let births_at_kill = r.mocks.ledger.applications().len();
    assert!(births_at_kill > 0, "some applications were filed before the kill");

    let config = r.gw.config.clone();
    r.gw = Gateway::start(&config).await;
    for code in &codes {
        let mut state = String::new();
        for _ in 0..400 {
            let d: serde_json::Value = r
                .client
                .get(format!("{}/v1/linked-dossiers/{code}", r.gw.base))
                .bearer_auth(&r.key)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            state = d["state"].as_str().unwrap_or("").to_string();
            if state == "done" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(state, "done", "dossier {code}");
    }
    // One application per step of each dossier, in each registry: none twice.
    let apps = r.mocks.ledger.applications();
    for procedure in ["birth", "residence", "child_card"] {
        let of: Vec<_> = apps.iter().filter(|a| serde_json::to_value(a.procedure).unwrap() == procedure).collect();
        assert_eq!(of.len(), codes.len(), "{procedure}: {of:#?}");
        let keys: std::collections::BTreeSet<&str> = of.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(keys.len(), codes.len(), "{procedure}: each dossier's own key");
        assert!(of.iter().all(|a| a.status == 4), "{procedure}: all done");
    }
}

#[tokio::test]
async fn the_command_line_lists_the_flows_with_their_steps() {
    let mocks = start_mocks(200);
    let dir = tempfile::tempdir().unwrap();
    let database_url = fresh_database_url(dir.path());
    let config = write_config(dir.path(), &mocks, &database_url, "");
    let (ok, out, err) = lgsp_cli(&config, &["flows", "list"]);
    assert!(ok, "{err}");
    assert!(out.contains("birth_residence_insurance"), "{out}");
    assert!(out.contains("death_registration → residence_removal → funeral_allowance"), "{out}");
    let (ok, out, _) = lgsp_cli(&config, &["flows", "show", "death_residence_allowance"]);
    assert!(ok);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["min_procedures"], 2);
}

#[tokio::test]
async fn sigkill_during_delivery_to_the_portal_and_a_restart_deliver_every_change_and_the_cli_reconciles() {
    use lgsp::registries::portal::PortalFaults;
    let mocks = start_mocks(500);
    let dir = tempfile::tempdir().unwrap();
    // The province's own words for its statuses, declared in a file of its own.
    let mut codes: serde_json::Value =
        serde_json::from_str(include_str!("../../schemas/flows/national-statuses.json")).unwrap();
    codes["statuses"]["tra_ket_qua"] = json!(10);
    let codes_file = dir.path().join("national-statuses.json");
    std::fs::write(&codes_file, codes.to_string()).unwrap();
    let extra = format!(
        "[portal]\nurl = \"{}\"\nusername = \"lgsp\"\npassword = \"portal-dev-password\"\npoll_ms = 50\n\
         retry_max_ms = 300\nlease_ms = 6000\nstatuses_file = \"{}\"\n",
        mocks.portal.url(),
        codes_file.display()
    );
    let database_url = fresh_database_url(dir.path());
    let mut gw = Gateway::start(&write_config(dir.path(), &mocks, &database_url, &extra)).await;
    let client = reqwest::Client::new();
    let key = gw.partner(&client, "000.00.15.H29").await;
    // Each call to the portal takes 0.8 s: the kill finds one in flight.
    *mocks.portal.state.faults.write() = PortalFaults { latency_ms: 800, ..Default::default() };
    let code = "000.00.15.H29-261120-0001";
    let dossier = json!({"code": code, "procedure_code": "1.001193", "agency": "000.00.15.H29",
        "applicant_type": "citizen", "applicant_id": "001090001234", "channel": "in_person",
        "received_at": "2026-11-20T08:30:00+07:00", "due_at": "2026-11-23T17:00:00+07:00", "status": "received"});
    let post = |path: String, body: serde_json::Value| {
        let (client, base, key) = (&client, gw.base.clone(), &key);
        async move { client.post(format!("{base}{path}")).bearer_auth(key).json(&body).send().await.unwrap().status() }
    };
    assert_eq!(post("/v1/dossiers".into(), dossier).await, 202);
    for (n, status) in ["processing", "processed", "tra_ket_qua"].iter().enumerate() {
        let e = json!({"event_id": format!("e{n}"), "status": status, "at": format!("2026-11-2{}T10:00:00+07:00", n + 1),
                       "actor": "Bộ phận một cửa"});
        assert_eq!(post(format!("/v1/dossiers/{code}/events"), e).await, 202);
    }
    // Killed once the record is there: the next change is on its way.
    for _ in 0..200 {
        if mocks.portal.state.records.lock().contains_key(code) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(mocks.portal.state.records.lock().contains_key(code), "the record was delivered before the kill");
    tokio::time::sleep(Duration::from_millis(200)).await;
    gw.signal("KILL");
    gw.wait().await;
    let before = mocks.portal.state.records.lock()[code].steps.len();
    assert!(before < 3, "the kill came before every change was delivered ({before} steps)");

    // Restarted, it sends what was left (the change in flight once its lease
    // ends), in order; the portal ends with each step once.
    *mocks.portal.state.faults.write() = PortalFaults::default();
    let config = gw.config.clone();
    gw = Gateway::start(&config).await;
    let mut delivered = false;
    for _ in 0..300 {
        let held = mocks.portal.state.records.lock()[code].clone();
        if held.steps.len() == 3 && held.record["TrangThaiHoSo"] == 10 {
            delivered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(delivered, "{:#?}", mocks.portal.state.records.lock()[code]);
    let held = mocks.portal.state.records.lock()[code].clone();
    let statuses: Vec<i64> = held.steps.values().map(|s| s["TrangThai"].as_i64().unwrap()).collect();
    assert_eq!(statuses, [4, 9, 10]);
    assert_eq!(held.steps.keys().copied().collect::<Vec<_>>(), [1, 2, 3]);

    // The command line reconciles: nothing differs, then a record the portal
    // lost is found and, with --resend, sent again.
    let period = ["report", "reconcile", "--from", "2026-11-20", "--to", "2026-11-20"];
    let (ok, out, err) = lgsp_cli(&gw.config, &period);
    assert!(ok, "{out}{err}");
    assert!(out.contains("No differences.") && out.contains("in person 1"), "{out}");
    assert!(out.contains("processed         early 1, on time 0, late 0"), "processed on the 22nd, due the 23rd: {out}");
    mocks.portal.state.records.lock().remove(code);
    let (ok, out, _) = lgsp_cli(&gw.config, &[&period[..], &["--json"]].concat());
    assert!(!ok, "a difference exits non-zero");
    let found: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(found["differences"][0]["why"], "never_sent");
    assert_eq!(found["counters"]["received"]["in_person"], 1);
    let (ok, out, err) = lgsp_cli(&gw.config, &[&period[..], &["--resend"]].concat());
    assert!(ok, "{out}{err}");
    assert!(
        out.contains(&format!("Sent again: {code}")) && out.trim_end().ends_with("reused documents  0 (0%)"),
        "{out}"
    );
    assert!(out.contains("Afterwards:"), "{out}");
    assert_eq!(mocks.portal.state.records.lock()[code].steps.len(), 3);
    let (ok, trail, _) = lgsp_cli(&gw.config, &["audit", "export"]);
    assert!(ok && trail.contains("report reconcile --from"), "the re-sending is in the trail");
}
