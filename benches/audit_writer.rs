//! What the audit writer's cost per record is made of: the same exchange
//! records appended to the chain the way the writer thread does it (batches
//! of 256, each in one transaction), on a fresh database per variant, with the
//! row's shape or the table's indexes changed one at a time. Prints the CPU
//! time per record of the appending thread (user and system, from
//! `/proc/thread-self/schedstat`), and the in-process parts alone: building
//! the row's JSON text and hashing it into the chain.
//!
//! `cargo bench --bench audit_writer`; `LGSP_BENCH_RECORDS` (default
//! 200,000 per variant) and `LGSP_BENCH_POSTGRES_URL` (a server URL, to run
//! the shipped shape on a fresh PostgreSQL database too) change it.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test or a benchmark stops at its first surprise")]

use diesel::connection::SimpleConnection;
use lgsp::audit::{Action, AuditRecord, AuditRow};
use lgsp::config::{Secret, Settings};
use rand::{Rng, SeedableRng};
use std::time::Instant;

// The binary's allocator, so that building the rows costs what it costs there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Nanoseconds this thread has run on a CPU, user and system.
fn thread_cpu_ns() -> u64 {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    s.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// The elements an exchange of `population.citizen` maps: the shipped
/// adapter's 26.
fn citizen_elements() -> Vec<String> {
    let adapter: serde_json::Value = serde_json::from_str(include_str!("../adapters/population.json")).unwrap();
    serde_json::from_value(adapter["operations"]["citizen"]["elements"].clone()).unwrap()
}

/// How a variant's records look.
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    /// As the exchange writes them: the adapter, 26 elements, a detail of
    /// about 300 bytes.
    Exchange,
    /// The same with empty `adapters`, `elements` and `detail`.
    Bare,
}

/// Citizens' ID numbers: random among a million people, or in arrival
/// order (each record's citizen after the last one's).
#[derive(Clone, Copy, PartialEq)]
enum Subjects {
    Random,
    Ordered,
}

fn records(n: usize, shape: Shape, subjects: Subjects) -> Vec<AuditRecord> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let elements = citizen_elements();
    (0..n)
        .map(|i| {
            let citizen = match subjects {
                Subjects::Random => 1_000_000 + rng.random_range(0..1_000_000u64),
                Subjects::Ordered => 1_000_000 + i as u64,
            };
            let mut r = AuditRecord::new(format!("req-{i:012}"), Action::Exchange, "population.citizen".into());
            r.partner_id = format!("000.00.{:02}.H29", i % 20);
            r.key_id = format!("key-{:02}", i % 20);
            r.subject = Some(format!("001{citizen:09}"));
            r.purpose = Some("health_insurance_enrolment".into());
            r.latency_us = 900 + (i % 500) as i64;
            if shape == Shape::Exchange {
                r.adapters = vec!["population.citizen".into()];
                r.elements = elements.clone();
                r.detail = serde_json::json!({
                    "operation": "population.citizen",
                    "checkpoints": {"request": "ok", "upstream_request": "ok", "upstream_response": "ok", "response": "ok"},
                    "sensitive": ["ethnicity", "religion"],
                    "not_permitted": [],
                    "registry": {"status": 200, "latency_us": 610, "attempts": 1},
                });
            }
            r
        })
        .collect()
}

const BATCH: usize = 256;

/// Appends `records` in batches on a fresh database, after `setup` (SQL run
/// once the migrations are applied); the appending thread's CPU time per
/// record, in microseconds, and the database's size per record in bytes.
fn run(url: &str, setup: &str, records: Vec<AuditRecord>) -> (f64, f64) {
    let mut settings = Settings::default().database;
    settings.max_connections = 1;
    let db = lgsp::db::Db::new(&Secret::new(url), &settings).unwrap();
    db.migrate().unwrap();
    let mut conn = db.conn().unwrap();
    if !setup.is_empty() {
        conn.batch_execute(setup).unwrap();
    }
    let n = records.len();
    let mut batches = Vec::with_capacity(n / BATCH + 1);
    let mut it = records.into_iter().peekable();
    while it.peek().is_some() {
        batches.push(it.by_ref().take(BATCH).collect::<Vec<_>>());
    }
    let start = thread_cpu_ns();
    for batch in batches {
        lgsp::audit::append(&mut conn, batch).unwrap();
    }
    let cpu = (thread_cpu_ns() - start) as f64 / 1_000.0 / n as f64;
    let bytes = |path: String| std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let stored = url.strip_prefix("sqlite://").map(|p| bytes(p.to_string()) + bytes(format!("{p}-wal"))).unwrap_or(0);
    (cpu, stored as f64 / n as f64)
}

/// The in-process part of a record: its row's JSON text, then its hash.
fn in_process(n: usize) -> (f64, f64) {
    let recs = records(n, Shape::Exchange, Subjects::Random);
    let t = Instant::now();
    let rows: Vec<AuditRow> = recs.into_iter().map(AuditRow::unchained).collect();
    let build = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    let t = Instant::now();
    let mut prev = String::new();
    for mut row in rows {
        row.prev_hash = prev;
        prev = row.compute_hash();
    }
    std::hint::black_box(prev);
    (build, t.elapsed().as_secs_f64() * 1e6 / n as f64)
}

fn main() {
    let n: usize = std::env::var("LGSP_BENCH_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let dir = tempfile::tempdir().unwrap();
    println!("{n} exchange records per variant, appended in batches of {BATCH}; CPU time of the appending thread\n");
    println!("| variant | µs per record | bytes stored per record |");
    println!("| --- | ---: | ---: |");
    let variants: [(&str, &str, Shape, Subjects); 7] = [
        ("as shipped: rows, (subject, ts), (partner_id, ts), (ts)", "", Shape::Exchange, Subjects::Random),
        ("without the index on (subject, ts)", "DROP INDEX audit_log_subject;", Shape::Exchange, Subjects::Random),
        ("without the index on (partner_id, ts)", "DROP INDEX audit_log_partner;", Shape::Exchange, Subjects::Random),
        ("without the index on (ts)", "DROP INDEX audit_log_ts;", Shape::Exchange, Subjects::Random),
        (
            "without any of the three indexes",
            "DROP INDEX audit_log_subject; DROP INDEX audit_log_partner; DROP INDEX audit_log_ts;",
            Shape::Exchange,
            Subjects::Random,
        ),
        ("as shipped, citizens in arrival order", "", Shape::Exchange, Subjects::Ordered),
        ("as shipped, empty adapters, elements and detail", "", Shape::Bare, Subjects::Random),
    ];
    for (i, (label, setup, shape, subjects)) in variants.into_iter().enumerate() {
        let url = format!("sqlite://{}", dir.path().join(format!("v{i}.db")).display());
        let (cpu, bytes) = run(&url, setup, records(n, shape, subjects));
        println!("| SQLite, {label} | {cpu:.1} | {bytes:.0} |");
    }
    if let Ok(server) = std::env::var("LGSP_BENCH_POSTGRES_URL") {
        let name = format!("lgsp_bench_audit_{}", std::process::id());
        let mut admin = lgsp::db::Db::new(&Secret::new(format!("{server}/postgres")), &Settings::default().database)
            .unwrap()
            .conn()
            .unwrap();
        admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        let (cpu, _) = run(&format!("{server}/{name}"), "", records(n, Shape::Exchange, Subjects::Random));
        println!("| PostgreSQL, as shipped (this process only; the server's own CPU is not counted) | {cpu:.1} | |");
        admin.batch_execute(&format!("DROP DATABASE {name}")).unwrap();
    }
    let (build, hash) = in_process(n);
    println!(
        "\nIn the writer, before the database: the row's JSON text {build:.2} µs, its hash {hash:.2} µs per record."
    );
}
