//! Linked dossiers carried through the birth group, as fast as the two cores
//! allow: the mock registries in a process of their own (`lgsp registries
//! serve`, release build, registry delays at zero), the gateway with its
//! worker in this one, dossiers filed over HTTP by 32 concurrent filers.
//! Prints dossiers and steps per second and the CPU time per step of the
//! gateway (this process: the worker, the filings, the audit writer) and of
//! the registries (their process), from /proc.
//!
//! `cargo bench --bench dossiers`; `LGSP_BENCH_DOSSIERS` (default 2000) and
//! `LGSP_BENCH_POSTGRES_URL` (a server URL, to run on a fresh PostgreSQL
//! database too) change it.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test or a benchmark stops at its first surprise")]

use lgsp::config::{Secret, Settings};
use lgsp::registries::{default_tokens, RegistryKind};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// User plus system CPU seconds of a process so far (`/proc/PID/stat`).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of stat (utime, stime), counted after the command's ")".
    (ticks(11) + ticks(12)) / 100.0
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Registries(std::process::Child);

impl Drop for Registries {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn run(label: &str, database_url: String, n: usize) {
    let ports = [free_port(), free_port(), free_port(), free_port()];
    let child = Command::new(env!("CARGO_BIN_EXE_lgsp"))
        .args(["registries", "serve", "--citizens", "50000", "--seed", "11"])
        .args(["--population-port", &ports[0].to_string(), "--civil-status-port", &ports[1].to_string()])
        .args(["--insurance-port", &ports[2].to_string(), "--business-port", &ports[3].to_string()])
        .args(["--portal-port", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("lgsp registries serve starts");
    let registries = Registries(child);
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if client.get(format!("http://127.0.0.1:{}/__faults", ports[0])).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The same population, generated here to pick the mothers from.
    let population = lgsp::registries::population::Population::generate(11, 50_000);

    let mut settings = Settings {
        port: 0,
        database_url: Secret::new(database_url),
        credentials_key: Secret::new("6c67737020746573742063726564656e7469616c73206b657920303030303031"),
        ..Default::default()
    };
    settings.log.level = "warn".into();
    settings.dossiers.poll_ms = 20;
    settings.dossiers.concurrency = 64;
    for (i, kind) in RegistryKind::ALL.into_iter().enumerate() {
        settings.upstreams.insert(
            kind.name().into(),
            lgsp::config::UpstreamSettings {
                url: format!("http://127.0.0.1:{}", ports[i]),
                token: Secret::new(default_tokens()[i].clone()),
            },
        );
    }
    let app = lgsp::startup::Application::build(settings).await.expect("gateway builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    tokio::spawn(app.run_until_stopped());
    let key = lgsp::demo::demo_partner(&state).await.unwrap().key;

    let filings: Vec<Value> =
        (0..n).map(|i| lgsp::demo::birth_filing(&population, i, "An").expect("enough mothers")).collect();
    let (cpu_gw, cpu_reg) = (cpu_seconds("self"), cpu_seconds(&registries.0.id().to_string()));
    let started = Instant::now();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let filings = std::sync::Arc::new(filings);
    let filers: Vec<_> = (0..32)
        .map(|_| {
            let (client, base, key, next, filings) =
                (client.clone(), base.clone(), key.clone(), next.clone(), filings.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(body) = filings.get(i) else { break };
                    let r = client
                        .post(format!("{base}/v1/linked-dossiers"))
                        .bearer_auth(&key)
                        .header("Idempotency-Key", format!("bench-{i}"))
                        .json(body)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 202);
                }
            })
        })
        .collect();
    for f in filers {
        f.await.unwrap();
    }
    let filed_in = started.elapsed();
    let done = loop {
        let counted = state
            .db
            .run(|c| {
                use diesel::prelude::*;
                use lgsp::db::schema::dossiers;
                let finished: i64 = dossiers::table.filter(dossiers::state.eq("done")).count().get_result(c)?;
                Ok(finished)
            })
            .await
            .unwrap();
        if counted as usize >= n {
            break started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(600), "{counted} of {n} done after 10 minutes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (cpu_gw, cpu_reg) = (cpu_seconds("self") - cpu_gw, cpu_seconds(&registries.0.id().to_string()) - cpu_reg);
    let steps = 3 * n;
    let secs = done.as_secs_f64();
    println!(
        "{label:<11} {n:>6} dossiers in {secs:>6.2} s (filed in {:.2} s): {:>7.1} dossiers/s, {:>7.1} steps/s; \
         CPU per step: gateway {:>5.0} µs, registries {:>5.0} µs",
        filed_in.as_secs_f64(),
        n as f64 / secs,
        steps as f64 / secs,
        cpu_gw / steps as f64 * 1e6,
        cpu_reg / steps as f64 * 1e6,
    );
    let apps = client
        .get(format!("http://127.0.0.1:{}/__applications", ports[1]))
        .header("X-API-Key", &default_tokens()[1])
        .send()
        .await
        .unwrap()
        .json::<Vec<Value>>()
        .await
        .unwrap();
    assert_eq!(apps.len(), n, "one birth application per dossier");
}

fn main() {
    let n: usize = std::env::var("LGSP_BENCH_DOSSIERS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    actix_rt::System::new().block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        run("SQLite", format!("sqlite://{}", dir.path().join("bench.db").display()), n).await;
        if let Some(server) = std::env::var("LGSP_BENCH_POSTGRES_URL").ok().filter(|s| !s.is_empty()) {
            use diesel::{Connection, RunQueryDsl};
            let name = format!("lgsp_bench_{}", lgsp::telemetry::new_uuid().simple());
            let mut conn = diesel::PgConnection::establish(&format!("{server}/postgres")).unwrap();
            diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut conn).unwrap();
            run("PostgreSQL", format!("{server}/{name}"), n).await;
        }
    });
}
