//! Rate limits shared by the nodes of a cluster through Redis, and what a
//! node does when Redis fails. The shared case needs a Redis server,
//! named by LGSP_TEST_REDIS_URL; the TLS case starts one of its own from the
//! `redis-server` named by LGSP_TEST_REDIS_SERVER (`.ci/run` sets both).

use crate::helpers::assert_problem;
use crate::helpers::{everything, spawn_app_with, TestApp};
use lgsp::config::{RateLimitBackend, Secret};
use serde_json::json;

async fn node(redis_url: &str, prefix: &str) -> TestApp {
    let (url, prefix) = (redis_url.to_string(), prefix.to_string());
    spawn_app_with(move |s| {
        s.rate_limits.backend = RateLimitBackend::Redis;
        s.rate_limits.redis_url = Secret::new(url);
        s.rate_limits.key_prefix = prefix;
        s.rate_limits.timeout_ms = 200;
    })
    .await
}

async fn call(p: &TestApp, key: &str, id: &str) -> reqwest::Response {
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
            crate::helpers::STEWARD,
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
async fn redis_check(p: &TestApp) -> serde_json::Value {
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
    let err = lgsp::startup::Application::build(settings.clone()).await.err().expect("the start fails");
    assert!(err.to_string().contains("rate_limits.redis_url"), "{err}");
    // A certificate authority for a server that is not reached with TLS.
    settings.rate_limits.redis_url = Secret::new("redis://127.0.0.1:6379");
    settings.rate_limits.redis_ca_file = Some("ca.pem".into());
    let err = lgsp::startup::Application::build(settings.clone()).await.err().expect("the start fails");
    assert!(err.to_string().contains("rediss://"), "{err}");
    // An authority file that is not there.
    settings.rate_limits.redis_url = Secret::new("rediss://127.0.0.1:6380");
    settings.rate_limits.redis_ca_file = Some(dir.path().join("missing.pem").display().to_string());
    let err = lgsp::startup::Application::build(settings.clone()).await.err().expect("the start fails");
    assert!(err.to_string().contains("rate_limits.redis_ca_file") && err.to_string().contains("missing.pem"), "{err}");
    // TLS that would not verify the server.
    settings.rate_limits.redis_url = Secret::new("rediss://127.0.0.1:6380/#insecure");
    let err = lgsp::startup::Application::build(settings.clone()).await.err().expect("the start fails");
    assert!(err.to_string().contains("#insecure"), "{err}");
    settings.rate_limits.redis_url = Secret::new("rediss://127.0.0.1:6380");
    // One that holds no certificate.
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    settings.rate_limits.redis_ca_file = Some(garbage.display().to_string());
    let err = lgsp::startup::Application::build(settings).await.err().expect("the start fails");
    assert!(err.to_string().contains("rate_limits.redis_ca_file"), "{err}");
}

/// A Redis server of the test's own that speaks TLS only, with a certificate
/// for 127.0.0.1 from a certificate authority made for the test.
struct TlsRedis {
    child: std::process::Child,
    port: u16,
    ca_file: String,
    _dir: tempfile::TempDir,
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tls_redis(server: &str) -> TlsRedis {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap().signed_by(&key, &issuer).unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    std::fs::write(path("ca.pem"), ca.pem()).unwrap();
    std::fs::write(path("cert.pem"), cert.pem()).unwrap();
    std::fs::write(path("key.pem"), key.serialize_pem()).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = std::process::Command::new(server)
        .args(["--port", "0", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(["--tls-port", &port.to_string(), "--tls-auth-clients", "no"])
        .args(["--tls-cert-file", &path("cert.pem"), "--tls-key-file", &path("key.pem")])
        .args(["--tls-ca-cert-file", &path("ca.pem")])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server starts");
    let redis = TlsRedis { child, port, ca_file: path("ca.pem"), _dir: dir };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return redis;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("redis-server did not listen on {port}");
}

#[tokio::test]
async fn rate_limits_reach_redis_over_tls_trusting_the_configured_authority() {
    let Some(server) = std::env::var("LGSP_TEST_REDIS_SERVER").ok().filter(|s| !s.is_empty()) else {
        eprintln!("LGSP_TEST_REDIS_SERVER is not set: Redis over TLS is tested by .ci/run");
        return;
    };
    let redis = tls_redis(&server);
    let url = format!("rediss://127.0.0.1:{}", redis.port);
    let (tls_url, ca_file) = (url.clone(), redis.ca_file.clone());
    let p = spawn_app_with(move |s| {
        s.rate_limits.backend = RateLimitBackend::Redis;
        s.rate_limits.redis_url = Secret::new(tls_url);
        s.rate_limits.redis_ca_file = Some(ca_file);
        s.rate_limits.timeout_ms = 1_000;
    })
    .await;
    let id = p.mocks.population.samples(1).adult_with_household[0].clone();
    let key = p.partner("000.00.64.H29", everything(), 60, 2).await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(call(&p, &key, &id).await.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429]);
    assert_eq!(p.state.metrics.rate_limit_fallbacks.get(), 0, "every check was Redis's");
    assert_eq!(p.state.limits.len(), 0, "no bucket of the node's own");
    assert_eq!(redis_check(&p).await["ok"], true);

    // A node that does not trust that authority does not talk to the server.
    let q = node(&url, "lgsp:test:").await;
    let key = q.partner("000.00.65.H29", everything(), 60, 2).await;
    assert_eq!(call(&q, &key, &id).await.status(), 200, "its own bucket decides");
    assert_eq!(q.state.metrics.rate_limit_fallbacks.get(), 1);
    assert_eq!(redis_check(&q).await["ok"], false);
}
