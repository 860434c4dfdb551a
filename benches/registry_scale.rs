//! How long the mock registries take to start with a large population, and
//! how much memory they hold: `cargo bench --bench registry_scale`
//! (LGSP_BENCH_CITIZENS sets the size, default 1,000,000).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test or a benchmark stops at its first surprise")]

use lgsp::registries::{MockConfig, MockRegistries, RegistryKind};
use std::time::Instant;

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn main() {
    let citizens: usize = std::env::var("LGSP_BENCH_CITIZENS").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let started = Instant::now();
        let config = MockConfig { ports: [0, 0, 0], citizens, ..Default::default() };
        let mocks = MockRegistries::start(&config).expect("start");
        let elapsed = started.elapsed();
        // One real request to be sure the servers answer.
        let id = mocks.population.people[citizens / 2].id.to_string();
        let url = format!("{}/api/v1/cong-dan/{id}", mocks.url(RegistryKind::Population));
        let status = reqwest::Client::new()
            .get(url)
            .bearer_auth("population-dev-token")
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        println!(
            "registry_scale: citizens={} households={} start_seconds={:.2} peak_rss_mb={:.0} first_lookup_status={}",
            mocks.population.people.len(),
            mocks.population.households.len(),
            elapsed.as_secs_f64(),
            peak_rss_mb(),
            status
        );
        mocks.stop().await;
    });
}
