//! Rate limits shared by the nodes of a cluster through Redis, and what a
//! node does when Redis fails. The shared case needs a Redis server,
//! named by LGSP_TEST_REDIS_URL (`.ci/run` sets it).

use crate::helpers::assert_problem;
use crate::platform::{everything, platform_with, Platform};
use lgsp::config::{RateLimitBackend, Secret};
use serde_json::json;

async fn node(redis_url: &str, prefix: &str) -> Platform {
    let (url, prefix) = (redis_url.to_string(), prefix.to_string());
    platform_with(move |s| {
        s.rate_limits.backend = RateLimitBackend::Redis;
        s.rate_limits.redis_url = Secret::new(url);
        s.rate_limits.key_prefix = prefix;
        s.rate_limits.timeout_ms = 200;
    })
    .await
}

async fn call(p: &Platform, key: &str, id: &str) -> reqwest::Response {
    p.exchange(key, "population", "citizen", json!({"citizen_id": id})).await
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()[name].to_str().unwrap().to_string()
}

#[tokio::test]
async fn two_nodes_share_one_bucket_per_partner_through_redis() {
    let Some(redis) = std::env::var("LGSP_TEST_REDIS_URL").ok().filter(|s| !s.is_empty()) else {
        eprintln!("LGSP_TEST_REDIS_URL is not set: the shared rate limits are tested by .ci/run");
        return;
    };
    // Each test run has buckets of its own.
    let prefix = format!("lgsp:test:{}:", lgsp::telemetry::new_uuid().simple());
    let (a, b) = (node(&redis, &prefix).await, node(&redis, &prefix).await);
    let id = a.mocks.population.samples(1).adult_with_household[0].clone();
    let (key_a, key_b) =
        (a.partner("000.00.61.H29", everything(), 60, 4).await, b.partner("000.00.61.H29", everything(), 60, 4).await);
    // A burst of 4 across both nodes, not 4 on each.
    let mut seen = Vec::new();
    for (p, key) in [(&a, &key_a), (&b, &key_b), (&a, &key_a), (&b, &key_b), (&a, &key_a), (&b, &key_b)] {
        let r = call(p, key, &id).await;
        seen.push((r.status().as_u16(), header(&r, "ratelimit")));
        if r.status() == 429 {
            let retry: u64 = header(&r, "retry-after").parse().unwrap();
            assert!((1..=2).contains(&retry), "one request a second comes back: {retry}");
            assert_problem(r, 429, "rate_limited").await;
        }
    }
    let statuses: Vec<u16> = seen.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 429, 429], "{seen:?}");
    let remaining: Vec<&str> = seen.iter().map(|(_, h)| h.split(';').nth(1).unwrap()).collect();
    assert_eq!(remaining, ["r=3", "r=2", "r=1", "r=0", "r=0", "r=0"], "{seen:?}");
    // Another partner has its own bucket; a changed quota starts a fresh one.
    let other = a.partner("000.00.62.H29", everything(), 60, 4).await;
    assert_eq!(call(&a, &other, &id).await.status(), 200);
    let r = b
        .admin(
            reqwest::Method::PATCH,
            "/admin/v1/partners/000.00.61.H29",
            crate::platform::STEWARD,
            Some(json!({"burst": 10})),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(call(&b, &key_b, &id).await.status(), 200);
    // Redis answered every check: no node fell back to its own buckets.
    for p in [&a, &b] {
        assert_eq!(
            redis_check(p).await,
            json!({"name": "rate_limits:redis", "ok": true, "required": false,
                                                "detail": "buckets shared by the cluster"})
        );
        assert_eq!(p.state.metrics.rate_limit_fallbacks.get(), 0);
        assert_eq!(p.state.limits.len(), 0);
    }
}

#[tokio::test]
async fn with_redis_down_each_node_keeps_limiting_on_its_own() {
    // Nothing listens on port 1: every check fails to reach Redis.
    let p = node("redis://127.0.0.1:1", "lgsp:test:").await;
    let id = p.mocks.population.samples(1).adult_with_household[0].clone();
    let key = p.partner("000.00.63.H29", everything(), 60, 2).await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(call(&p, &key, &id).await.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429, 429], "the node's own bucket decides, and no request fails for it");
    assert_eq!(p.state.metrics.rate_limit_fallbacks.get(), 4);
    let metrics = p.client.get(p.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("lgsp_rate_limit_fallbacks_total 4"), "{metrics}");
    // Readiness says so, and the node stays ready.
    let check = redis_check(&p).await;
    assert_eq!(check["ok"], false, "{check}");
    assert!(check["detail"].as_str().unwrap().contains("own buckets"), "{check}");
}

/// The Redis check of a ready node's /readyz.
async fn redis_check(p: &Platform) -> serde_json::Value {
    let r = p.client.get(p.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200, "Redis is not required for readiness");
    let body: serde_json::Value = r.json().await.unwrap();
    let checks = body["checks"].as_array().unwrap();
    checks.iter().find(|c| c["name"] == "rate_limits:redis").cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_rate_limit_backend_that_is_not_a_redis_url_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = crate::helpers::test_settings(&crate::helpers::fresh_database_url(dir.path()));
    settings.rate_limits.backend = RateLimitBackend::Redis;
    settings.rate_limits.redis_url = Secret::new("http://127.0.0.1:6379");
    let err = lgsp::startup::Application::build(settings).await.err().expect("the start fails");
    assert!(err.to_string().contains("rate_limits.redis_url"), "{err}");
}
