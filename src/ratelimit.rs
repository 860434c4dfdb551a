//! Per-partner rate limits with governor: each partner has its own quota
//! (requests per minute and burst), changeable at run time; a changed quota
//! starts a fresh bucket. Buckets idle for longer than it takes them to refill
//! are pruned, so memory follows the active partners, not time.
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
    buckets: RwLock<HashMap<String, Arc<Bucket>>>,
    epoch: Instant,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits { buckets: RwLock::default(), epoch: Instant::now() }
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

    /// Takes one request from the partner's bucket.
    pub fn check(&self, partner: &str, per_minute: u32, burst: u32) -> Decision {
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
            let d = limits.check("000.00.00.H29", 60, 3);
            if d.allowed {
                allowed += 1;
            } else {
                last = Some(d);
            }
        }
        assert_eq!(allowed, 3);
        let d = last.unwrap();
        assert_eq!(d.retry_after, 1, "one request per second: {d:?}");
        assert!(limits.check("000.00.00.H30", 60, 3).allowed, "another partner is unaffected");
    }

    #[test]
    fn a_new_quota_takes_effect_and_idle_buckets_are_pruned() {
        let limits = RateLimits::default();
        assert!(limits.check("p", 60, 1).allowed);
        assert!(!limits.check("p", 60, 1).allowed);
        assert!(limits.check("p", 600, 5).allowed, "a changed quota starts a new bucket");
        assert_eq!(limits.check("p", 600, 5).remaining, 3);
        assert_eq!(limits.prune(Duration::ZERO), 0, "not yet refilled");
        let limits = RateLimits::default();
        limits.check("q", 60_000, 1);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(limits.prune(Duration::ZERO), 1);
        assert!(limits.is_empty());
    }
}
