//! Per-partner rate limits with governor: each partner has its own quota
//! (requests per minute and burst), changeable at run time; a changed quota
//! starts a fresh bucket. Buckets idle for longer than it takes them to refill
//! are pruned, so memory follows the active partners, not time.
//!
//! With the `redis` backend the nodes of a cluster share one bucket per
//! partner: the same GCRA, run atomically in Redis by a Lua script on Redis's
//! clock. Should Redis fail or be slow, the node's own buckets decide until it
//! answers again, so a partner is never refused because of the store (as Kong
//! and APISIX do); each such check is counted.
//!
//! Answers carry the IETF draft headers (`RateLimit-Policy`, `RateLimit`);
//! a refusal carries `Retry-After` in whole seconds, rounded up, never 0.

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{RateLimitBackend, RateLimitSettings};
use crate::telemetry::Failing;

type Limiter = RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;

struct Bucket {
    quota: (u32, u32),
    /// How often one request's worth of quota comes back.
    interval: Duration,
    limiter: Limiter,
    /// Milliseconds since the table's epoch of the last check.
    last_used: AtomicU64,
}

/// The outcome of one check, with what the headers need.
#[derive(Debug, Clone, Copy)]
pub struct Decision {
    pub allowed: bool,
    pub per_minute: u32,
    pub burst: u32,
    pub remaining: u32,
    /// Seconds until the bucket is full again.
    pub reset_secs: u64,
    /// Seconds to wait before retrying (refusals only; at least 1).
    pub retry_after: u64,
}

impl Decision {
    /// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers).
    pub fn headers(&self) -> [(&'static str, String); 2] {
        [
            ("RateLimit-Policy", format!("\"partner\";q={};w=60;burst={}", self.per_minute, self.burst)),
            ("RateLimit", format!("\"partner\";r={};t={}", self.remaining, self.reset_secs)),
        ]
    }
}

pub struct RateLimits {
    /// This node's buckets: all of them with the local backend, and those
    /// used while the shared store fails with the Redis backend.
    buckets: RwLock<HashMap<String, Arc<Bucket>>>,
    epoch: Instant,
    shared: Option<Shared>,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits { buckets: RwLock::default(), epoch: Instant::now(), shared: None }
    }
}

/// Buckets shared by every node through Redis.
struct Shared {
    conn: redis::aio::ConnectionManager,
    script: redis::Script,
    prefix: String,
    timeout: Duration,
    /// Set while Redis fails (to a check or a readiness probe), so that each
    /// change is logged once, not per request or probe.
    failing: Failing,
    fallbacks: prometheus::IntCounter,
}

/// GCRA on Redis's clock. KEYS[1]: the bucket; ARGV: the interval between
/// two requests' worth of quota (µs) and the burst. The key holds the
/// theoretical arrival time (µs) and expires when the bucket would be full.
/// Returns {allowed, remaining, retry after (µs), until full (µs)}.
const GCRA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - interval * burst
if allow_at > now then
  return {0, 0, allow_at - now, tat - now}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.floor((new_tat - now) / 1000) + 1)
return {1, math.floor((now + interval * burst - new_tat) / interval), 0, new_tat - now}
"#;

impl Shared {
    async fn check(&self, partner: &str, per_minute: u32, burst: u32) -> Result<Decision, String> {
        // The same quota as the node's buckets, so both backends count alike.
        let q = quota(per_minute, burst);
        let (interval_us, burst_size) = (q.replenish_interval().as_micros().max(1) as u64, q.burst_size().get());
        let mut call = self.script.key(format!("{}{partner}:{per_minute}:{burst}", self.prefix));
        call.arg(interval_us).arg(burst_size);
        let mut conn = self.conn.clone();
        let (allowed, remaining, retry_us, full_us): (i64, i64, i64, i64) =
            self.within(call.invoke_async(&mut conn)).await?;
        let secs = |us: i64| ceil_secs(Duration::from_micros(us.max(0) as u64));
        Ok(Decision {
            allowed: allowed == 1,
            per_minute,
            burst,
            remaining: remaining.clamp(0, i64::from(burst_size)) as u32,
            reset_secs: secs(full_us),
            retry_after: if allowed == 1 { 0 } else { secs(retry_us) },
        })
    }

    async fn ping(&self) -> Result<(), String> {
        let mut conn = self.conn.clone();
        self.within(redis::cmd("PING").query_async::<String>(&mut conn)).await.map(drop)
    }

    /// A Redis call given at most the configured timeout.
    async fn within<T>(&self, call: impl std::future::Future<Output = redis::RedisResult<T>>) -> Result<T, String> {
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| format!("no answer within {} ms", self.timeout.as_millis()))?
            .map_err(|e| e.to_string())
    }
}

/// The Redis client `settings` name: `rediss://` connects with TLS, trusting
/// `redis_ca_file`'s authorities when it is set and the system's otherwise.
/// Checks the settings without connecting: with the `redis` backend, the URL
/// and the certificate authorities file.
pub fn check_settings(settings: &RateLimitSettings) -> Result<(), String> {
    match settings.backend {
        RateLimitBackend::Redis => redis_client(settings).map(|_| ()),
        RateLimitBackend::Local => Ok(()),
    }
}

fn redis_client(settings: &RateLimitSettings) -> Result<redis::Client, String> {
    let info = redis::IntoConnectionInfo::into_connection_info(settings.redis_url.expose())
        .map_err(|e| format!("rate_limits.redis_url is not a Redis URL: {e}"))?;
    let (tls, insecure) = match info.addr() {
        redis::ConnectionAddr::TcpTls { insecure, .. } => (true, *insecure),
        _ => (false, false),
    };
    if insecure {
        return Err("rate_limits.redis_url asks for TLS without verifying the server (#insecure); \
                    lgsp always verifies it: remove #insecure, and name the server's authority in \
                    rate_limits.redis_ca_file if the system does not trust it"
            .into());
    }
    match settings.redis_ca_file.as_deref().filter(|f| !f.is_empty()) {
        None => redis::Client::open(info).map_err(|e| format!("rate_limits.redis_url: {e}")),
        Some(_) if !tls => Err("rate_limits.redis_ca_file is set but rate_limits.redis_url is not rediss://; \
                                use rediss:// to connect with TLS, or remove redis_ca_file"
            .into()),
        Some(file) => {
            let pem = std::fs::read(file).map_err(|e| format!("rate_limits.redis_ca_file {file}: {e}"))?;
            // The client would take a file without certificates and trust
            // nothing from it; say so instead.
            use rustls::pki_types::{pem::PemObject, CertificateDer};
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("rate_limits.redis_ca_file {file}: not PEM certificates: {e}"))?;
            if certs.is_empty() {
                return Err(format!("rate_limits.redis_ca_file {file} holds no PEM certificate"));
            }
            redis::Client::build_with_tls(info, redis::TlsCertificates { client_tls: None, root_cert: Some(pem) })
                .map_err(|e| format!("rate_limits.redis_ca_file {file}: not usable as PEM certificates: {e}"))
        }
    }
}

fn quota(per_minute: u32, burst: u32) -> Quota {
    let rate = NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
    Quota::per_minute(rate).allow_burst(burst)
}

fn ceil_secs(d: Duration) -> u64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    s.max(1)
}

impl RateLimits {
    /// The limits `settings` ask for. With the Redis backend, the connection
    /// is made on first use and remade whenever it breaks.
    pub fn new(settings: &RateLimitSettings, fallbacks: prometheus::IntCounter) -> Result<RateLimits, String> {
        let mut limits = RateLimits::default();
        if settings.backend == RateLimitBackend::Redis {
            let client = redis_client(settings)?;
            let timeout = Duration::from_millis(settings.timeout_ms.max(1));
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_secs(1));
            let conn = redis::aio::ConnectionManager::new_lazy_with_config(client, config)
                .map_err(|e| format!("rate limits: {e}"))?;
            limits.shared = Some(Shared {
                conn,
                script: redis::Script::new(GCRA),
                prefix: settings.key_prefix.clone(),
                timeout,
                failing: Failing::new(
                    "rate limits: Redis",
                    "this node's own buckets apply until it answers",
                    "buckets are shared again",
                ),
                fallbacks,
            });
        }
        Ok(limits)
    }

    /// Takes one request from the partner's bucket: the shared one when there
    /// is one and it answers, else this node's.
    pub async fn check(&self, partner: &str, per_minute: u32, burst: u32) -> Decision {
        if let Some(shared) = &self.shared {
            match shared.check(partner, per_minute, burst).await {
                Ok(d) => {
                    shared.failing.answered();
                    return d;
                }
                Err(e) => {
                    shared.fallbacks.inc();
                    shared.failing.failed(&e);
                }
            }
        }
        self.check_local(partner, per_minute, burst)
    }

    /// With the Redis backend, whether Redis answers a PING in time; `None`
    /// with the local backend.
    pub async fn shared_store_status(&self) -> Option<Result<(), String>> {
        let shared = self.shared.as_ref()?;
        let status = shared.ping().await;
        match &status {
            Ok(()) => shared.failing.answered(),
            Err(e) => shared.failing.failed(e),
        };
        Some(status)
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn bucket(&self, partner: &str, q: (u32, u32)) -> Arc<Bucket> {
        if let Some(b) = self.buckets.read().get(partner) {
            if b.quota == q {
                return b.clone();
            }
        }
        let mut map = self.buckets.write();
        match map.get(partner) {
            Some(b) if b.quota == q => b.clone(),
            _ => {
                let built = quota(q.0, q.1);
                let b = Arc::new(Bucket {
                    quota: q,
                    interval: built.replenish_interval(),
                    limiter: RateLimiter::direct(built).with_middleware::<StateInformationMiddleware>(),
                    last_used: AtomicU64::new(self.now_ms()),
                });
                map.insert(partner.to_string(), b.clone());
                b
            }
        }
    }

    /// Takes one request from the partner's bucket in this node.
    pub fn check_local(&self, partner: &str, per_minute: u32, burst: u32) -> Decision {
        let b = self.bucket(partner, (per_minute, burst));
        b.last_used.store(self.now_ms(), Ordering::Relaxed);
        let interval = b.interval;
        match b.limiter.check() {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let missing = burst.max(1).saturating_sub(remaining);
                Decision {
                    allowed: true,
                    per_minute,
                    burst,
                    remaining,
                    reset_secs: if missing == 0 { 0 } else { ceil_secs(interval * missing) },
                    retry_after: 0,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Decision {
                    allowed: false,
                    per_minute,
                    burst,
                    remaining: 0,
                    reset_secs: ceil_secs(interval * burst.max(1)),
                    retry_after: ceil_secs(wait),
                }
            }
        }
    }

    /// Drops buckets unused for longer than they take to refill (a dropped
    /// bucket would be full again anyway) and at least `min_idle`.
    pub fn prune(&self, min_idle: Duration) -> usize {
        let now = self.now_ms();
        let mut map = self.buckets.write();
        let before = map.len();
        map.retain(|_, b| {
            let refill = quota(b.quota.0, b.quota.1).burst_size_replenished_in().max(min_idle);
            now.saturating_sub(b.last_used.load(Ordering::Relaxed)) < refill.as_millis() as u64
        });
        before - map.len()
    }

    pub fn len(&self) -> usize {
        self.buckets.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partner_gets_its_burst_then_a_retry_after_of_at_least_one_second() {
        let limits = RateLimits::default();
        let mut allowed = 0;
        let mut last = None;
        for _ in 0..10 {
            let d = limits.check_local("000.00.00.H29", 60, 3);
            if d.allowed {
                allowed += 1;
            } else {
                last = Some(d);
            }
        }
        assert_eq!(allowed, 3);
        let d = last.unwrap();
        assert_eq!(d.retry_after, 1, "one request per second: {d:?}");
        assert!(limits.check_local("000.00.00.H30", 60, 3).allowed, "another partner is unaffected");
    }

    #[test]
    fn a_new_quota_takes_effect_and_idle_buckets_are_pruned() {
        let limits = RateLimits::default();
        assert!(limits.check_local("p", 60, 1).allowed);
        assert!(!limits.check_local("p", 60, 1).allowed);
        assert!(limits.check_local("p", 600, 5).allowed, "a changed quota starts a new bucket");
        assert_eq!(limits.check_local("p", 600, 5).remaining, 3);
        assert_eq!(limits.prune(Duration::ZERO), 0, "not yet refilled");
        let limits = RateLimits::default();
        limits.check_local("q", 60_000, 1);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(limits.prune(Duration::ZERO), 1);
        assert!(limits.is_empty());
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<parking_lot::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn redis_down_is_logged_once_not_at_every_check_or_probe() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let fallbacks = prometheus::IntCounter::new("fallbacks", "test").unwrap();
        let settings = RateLimitSettings {
            backend: RateLimitBackend::Redis,
            // Nothing listens on port 1.
            redis_url: crate::config::Secret::new("redis://127.0.0.1:1"),
            timeout_ms: 200,
            ..Default::default()
        };
        let limits = RateLimits::new(&settings, fallbacks.clone()).unwrap();
        for _ in 0..3 {
            assert!(limits.check("p", 60, 10).await.allowed, "the node's own bucket decides");
            assert!(limits.shared_store_status().await.unwrap().is_err());
        }
        assert_eq!(fallbacks.get(), 3, "every check that fell back is counted");
        let log = String::from_utf8(captured.0.lock().clone()).unwrap();
        assert_eq!(log.matches("Redis failed").count(), 1, "{log}");
        assert!(log.contains("WARN"), "{log}");
    }
}
