//! What lgsp keeps after a load. This test is its own binary, so the process
//! holds nothing but it: a wrapper around the global allocator counts the live
//! heap (bytes allocated and not yet freed) of the gateway, the mock
//! registries and the client together.
//!
//! The resident size the operating system reports is not the measure: an
//! allocator keeps freed pages for reuse, so a process's RSS stays near its
//! peak (BENCHMARKS.md has those figures). What must come back is what lgsp
//! itself holds: nothing may be kept per request.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test or a benchmark stops at its first surprise")]

#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;

use helpers::{fire_prefills, fresh_database_url, register_partner, test_settings};
use lgsp::registries::{default_tokens, Faults, MockConfig, MockRegistries, RegistryKind};
use lgsp::startup::Application;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live_kb() -> isize {
    LIVE.load(Ordering::Relaxed) / 1024
}

const STEWARD: &str = "steward-token-for-the-memory-test";
const ROUNDS: usize = 5;
const CONCURRENT: usize = 200;
/// Requests in flight at once in the warm-up: more than the 2 × 128 request
/// objects the gateway's two workers keep for reuse.
const WARM_UP: usize = 600;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_load_with_a_flapping_registry_the_live_heap_is_back_at_its_baseline() {
    let mocks =
        MockRegistries::start(&MockConfig { ports: [0, 0, 0], citizens: 3_000, seed: 11, ..Default::default() })
            .expect("mock registries start");
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(&fresh_database_url(dir.path()));
    lgsp::demo::use_mocks(&mut settings, &mocks, &default_tokens());
    settings.bootstrap_admin_tokens = vec![lgsp::config::Secret::new(format!("steward:{STEWARD}"))];
    // Idle registry connections close a second after the load, so what they
    // hold is not mistaken for what requests left behind.
    settings.upstream_pool.idle_timeout_secs = 1;
    let app = Application::build(settings).await.expect("gateway builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    tokio::spawn(app.run_until_stopped());
    // The client keeps no idle connection either.
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let policy = serde_json::json!({"forms": ["*"], "purposes": ["*"], "operations": ["*"], "elements": ["*"]});
    let key = register_partner(&client, &base, STEWARD, "000.00.61.H29", policy, 1_000_000, 100_000).await;
    let ids = mocks.population.samples(20).adult_with_household;

    let round = || async {
        for task in fire_prefills(&client, &base, &key, &ids, CONCURRENT) {
            assert_eq!(task.await.unwrap(), 200, "every prefill is answered, partially when a source fails");
        }
    };
    let settle = || async {
        state.audit.flush(Duration::from_secs(5)).await;
        tokio::time::sleep(Duration::from_millis(2_500)).await;
    };

    // One round first: lazily built state (connection pools, per-route and
    // per-label metrics, caches filled once) is part of the baseline. That
    // includes the request objects actix keeps for reuse, up to 128 in each
    // worker: how many a round leaves there depends on how its requests spread
    // over the workers, so this round holds more requests in flight at once
    // (a slow registry) than both workers' pools together can keep.
    mocks.set_faults(RegistryKind::Population, Faults { latency_ms: 300, ..Default::default() });
    for task in fire_prefills(&client, &base, &key, &ids, WARM_UP) {
        assert_eq!(task.await.unwrap(), 200);
    }
    mocks.set_faults(RegistryKind::Population, Faults::default());
    round().await;
    settle().await;
    let baseline = live_kb();
    let written = state.metrics.audit_written.get();

    let faults = [
        Faults { error_rate: 1.0, ..Default::default() },
        Faults { corrupt_rate: 0.5, latency_ms: 20, ..Default::default() },
        Faults::default(),
    ];
    let mut after_round = Vec::new();
    for r in 0..ROUNDS {
        mocks.set_faults(RegistryKind::Insurance, faults[r % faults.len()].clone());
        round().await;
        mocks.set_faults(RegistryKind::Insurance, Faults::default());
        settle().await;
        after_round.push(live_kb());
    }
    let stored = state.metrics.audit_written.get() - written;
    assert_eq!(stored, (ROUNDS * CONCURRENT) as u64, "one audit record per request");
    assert_eq!(state.metrics.audit_queue.get(), 0);

    // 1,000 prefills later, the live heap is where it was: at most 1 MB more
    // (about 1 KB per request would already exceed it), and not growing.
    let last = *after_round.last().unwrap();
    eprintln!("live heap: {baseline} KB before the load, {after_round:?} KB after each round");
    assert!(
        last - baseline <= 1024,
        "live heap {baseline} KB before the load, {after_round:?} KB after each round of {CONCURRENT}"
    );
    assert!(
        last <= after_round[0] + 512,
        "the live heap grows round after round: {after_round:?} KB (baseline {baseline} KB)"
    );
}
