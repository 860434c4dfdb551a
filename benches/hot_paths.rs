//! Micro-benchmarks of what every exchange and prefill does on its own CPU:
//! `cargo bench --bench hot_paths` (criterion; reports land in target/criterion).
//!
//! - checkpoint 3: validating a population-registry answer against the
//!   operation's response schema;
//! - mapping that answer to canonical elements (jq, address normalisation and
//!   checkpoint 4), for a current address and for a legacy one, and only the
//!   four elements a form reads;
//! - the 2025 crosswalk lookup on its own;
//! - the per-partner rate-limit check, in the node's buckets and, when a Redis
//!   server answers at LGSP_BENCH_REDIS_URL (default redis://127.0.0.1:6379),
//!   in the buckets the nodes of a cluster share;
//! - hashing one audit record into the chain.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test or a benchmark stops at its first surprise")]

use criterion::{criterion_group, criterion_main, Criterion};
use lgsp::adapter::Adapter;
use lgsp::audit::{AuditRow, GENESIS};
use lgsp::config::Settings;
use lgsp::domain::AdminUnits;
use lgsp::ratelimit::RateLimits;
use lgsp::registries::population::Population;
use lgsp::registries::{render, RegistryKind};
use serde_json::Value;
use std::hint::black_box;

// The allocator the lgsp binary uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn population_adapter() -> Adapter {
    let (_, text) = lgsp::adapter::SHIPPED.iter().find(|(id, _)| *id == "population").expect("shipped");
    let manifest: Value = serde_json::from_str(text).expect("manifest is JSON");
    Adapter::compile(&manifest, 1, &Settings::default(), &lgsp::elements::Elements::shipped())
        .expect("the shipped adapter compiles")
}

fn registry_answers() -> (Value, Value) {
    let pop = Population::generate(2025, 20_000);
    let s = pop.samples(1);
    let current = pop.find(&s.adult_with_household[0]).expect("sample");
    let legacy = pop.find(&s.legacy_address[0]).expect("sample");
    let answer = |p| RegistryKind::Population.envelope(render::population_record(&pop, p));
    (answer(current), answer(legacy))
}

fn schema_and_mapping(c: &mut Criterion) {
    let adapter = population_adapter();
    let op = &adapter.operations["citizen"];
    let (current, legacy) = registry_answers();
    op.check_response(&current).expect("a valid answer");
    op.map(&legacy, &|_| true).expect("maps");
    c.bench_function("schema: population.citizen response (checkpoint 3)", |b| {
        b.iter(|| op.check_response(black_box(&current)).is_ok())
    });
    c.bench_function("mapping: population.citizen, current address", |b| {
        b.iter(|| op.map(black_box(&current), &|_| true))
    });
    c.bench_function("mapping: population.citizen, legacy address", |b| {
        b.iter(|| op.map(black_box(&legacy), &|_| true))
    });
    // What a form typically reads of the answer: the per-element mapping runs only these.
    let form = ["full_name", "date_of_birth", "sex", "permanent_residence"];
    c.bench_function("mapping: population.citizen, 4 of 26 elements", |b| {
        b.iter(|| op.map(black_box(&current), &|e| form.contains(&e)))
    });
    // The element programs alone (no normalisation, no checkpoint 4): run
    // directly where they can, and all on jaq's interpreter.
    assert_eq!(op.mapping().run(&legacy, &|_| true), op.mapping().run_jq(&legacy, &|_| true));
    c.bench_function("element programs: population.citizen, 26 elements, direct", |b| {
        b.iter(|| op.mapping().run(black_box(&legacy), &|_| true))
    });
    c.bench_function("element programs: population.citizen, 26 elements, jaq", |b| {
        b.iter(|| op.mapping().run_jq(black_box(&legacy), &|_| true))
    });
}

fn crosswalk(c: &mut Criterion) {
    let units = AdminUnits::get();
    let ward = units.legacy.iter().find(|w| !w.ward_code.is_empty()).expect("a legacy ward");
    let codes = ward.codes();
    units.from_legacy(&codes).expect("in the crosswalk");
    c.bench_function("crosswalk: legacy ward to 2025 ward", |b| b.iter(|| units.from_legacy(black_box(&codes))));
}

fn rate_limit(c: &mut Criterion) {
    let limits = RateLimits::default();
    let partners: Vec<String> = (0..1_000).map(|i| format!("000.00.{:02}.H{:02}", i / 100, i % 100)).collect();
    let mut i = 0usize;
    c.bench_function("rate limit: check (node buckets), 1,000 partners", |b| {
        b.iter(|| {
            i = (i + 1) % partners.len();
            limits.check_local(black_box(&partners[i]), 6_000_000, 10_000).allowed
        })
    });
}

fn shared_rate_limit(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let _in_runtime = rt.enter();
    let mut settings = lgsp::config::RateLimitSettings {
        backend: lgsp::config::RateLimitBackend::Redis,
        key_prefix: "lgsp:bench:".into(),
        timeout_ms: 1_000,
        ..Default::default()
    };
    if let Ok(url) = std::env::var("LGSP_BENCH_REDIS_URL") {
        settings.redis_url = lgsp::config::Secret::new(url);
    }
    let fallbacks = prometheus::IntCounter::new("fallbacks", "fallbacks").expect("counter");
    let limits = RateLimits::new(&settings, fallbacks.clone()).expect("a Redis URL");
    rt.block_on(limits.check("000.00.00.H00", 6_000_000, 10_000));
    if fallbacks.get() > 0 {
        eprintln!("no Redis answers at {}: the shared rate-limit check is not measured", settings.redis_url.expose());
        return;
    }
    let partners: Vec<String> = (0..1_000).map(|i| format!("000.00.{:02}.H{:02}", i / 100, i % 100)).collect();
    let mut i = 0usize;
    c.bench_function("rate limit: check (shared in Redis), 1,000 partners", |b| {
        b.iter(|| {
            i = (i + 1) % partners.len();
            rt.block_on(limits.check(black_box(&partners[i]), 6_000_000, 10_000)).allowed
        })
    });
    assert_eq!(fallbacks.get(), 0, "every check answered by Redis");
}

fn audit_hash(c: &mut Criterion) {
    let row = AuditRow {
        seq: 1_234_567,
        record_id: "6f1c2a8e-5d0b-4c57-9a43-1e0f7f3b2d11".into(),
        ts: 1_795_000_000_000_000,
        request_id: "0d3e4b8a-77a1-4f0c-8a51-2b6c9d0e1f23".into(),
        partner_id: "000.00.15.H29".into(),
        key_id: "key_0123456789abcdef".into(),
        action: "prefill".into(),
        subject: Some("001090012345".into()),
        purpose: Some("health_insurance_enrolment".into()),
        resource: "tk1_ts".into(),
        adapters: r#"["insurance.card","population.citizen","population.household"]"#.into(),
        elements: r#"["address","date_of_birth","ethnicity","full_name","household_members","nationality","phone","sex"]"#
            .into(),
        outcome: "ok".into(),
        status: 200,
        latency_us: 1_873,
        detail: r#"{"sources":[{"operation":"population.citizen","status":"ok"},{"operation":"insurance.card","status":"ok"}]}"#
            .into(),
        prev_hash: GENESIS.into(),
        hash: String::new(),
    };
    c.bench_function("audit: hash one record into the chain", |b| b.iter(|| black_box(&row).compute_hash()));
}

criterion_group!(hot_paths, schema_and_mapping, crosswalk, rate_limit, shared_rate_limit, audit_hash);
criterion_main!(hot_paths);
