//! Pacing: how the writes (and deletes) of one apply slow down, shared by every writer. To a known
//! quota ([`RateLimiter`]: writes evenly spaced, AIMD on throttling), else adaptively once the
//! target throttles ([`Pacer`]: a common delay before each write). Each attempt is paced, a retry
//! included; reads are not paced.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;

use super::{Attempt, Call, Hook};
use crate::store::{Capabilities, DynStore, StoreError};

/// Adaptive slow-down shared by every worker of one apply: a throttled answer anywhere raises a
/// common delay before each write (doubling, at least the backend's Retry-After); successes decay
/// it again. Per-item backoff alone would let the other workers keep hammering a throttled API.
#[derive(Debug)]
pub struct Pacer {
    delay_us: AtomicU64,
    max: Duration,
}

impl Pacer {
    pub const FLOOR: Duration = Duration::from_millis(20);

    pub fn new(max: Duration) -> Self {
        Self { delay_us: AtomicU64::new(0), max }
    }

    /// The delay every write currently waits.
    pub fn delay(&self) -> Duration {
        Duration::from_micros(self.delay_us.load(Ordering::Relaxed))
    }

    pub fn throttled(&self, hint: Option<Duration>) {
        let _ = self.delay_us.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| {
            let next = Duration::from_micros(d).saturating_mul(2).max(Self::FLOOR).max(hint.unwrap_or_default()).min(self.max);
            Some(next.as_micros() as u64)
        });
    }

    pub fn succeeded(&self) {
        let _ = self.delay_us.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| {
            let next = d - d / 8;
            Some(if next < 1_000 { 0 } else { next })
        });
    }

    async fn wait(&self) {
        let d = self.delay();
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }
}

/// Paces writes to a known quota: requests evenly spaced at `rate` per second, shared by every
/// worker. A throttled answer anyway (the quota is shared with other clients, or lower than
/// published) cuts the rate by 30%; each success wins back 2% of the maximum (AIMD, as TCP does),
/// so an apply settles just under what the backend grants instead of oscillating around it.
#[derive(Debug)]
pub struct RateLimiter {
    state: Mutex<(f64, tokio::time::Instant)>,
    max: f64,
}

impl RateLimiter {
    pub fn new(rate: f64) -> Self {
        Self { state: Mutex::new((rate, tokio::time::Instant::now())), max: rate }
    }

    /// The current rate (writes per second).
    pub fn rate(&self) -> f64 {
        self.state.lock().expect("rate").0
    }

    /// Wait for this request's slot.
    pub async fn acquire(&self) {
        let at = {
            let mut s = self.state.lock().expect("rate");
            let now = tokio::time::Instant::now();
            let at = s.1.max(now);
            s.1 = at + Duration::from_secs_f64(1.0 / s.0);
            at
        };
        tokio::time::sleep_until(at).await;
    }

    pub fn throttled(&self) {
        let mut s = self.state.lock().expect("rate");
        s.0 = (s.0 * 0.7).max(self.max / 50.0).max(0.1);
    }

    pub fn succeeded(&self) {
        let mut s = self.state.lock().expect("rate");
        s.0 = (s.0 + self.max * 0.02).min(self.max);
    }
}

/// The writes per second an apply paces to: `max_writes_per_second` if set (`0`: none), else the
/// target's published quota.
pub fn rate_for(caps: &Capabilities, max_writes_per_second: Option<f64>) -> Option<f64> {
    max_writes_per_second.or(caps.write_rate).filter(|r| *r > 0.0)
}

/// The pacing layer's hook: to a known quota, else adaptively after throttling.
#[derive(Debug)]
pub enum Pace {
    Rate(RateLimiter),
    Adaptive(Pacer),
}

impl Pace {
    /// The pacing of writes to a target with `caps` ([`rate_for`]); an adaptive delay grows to
    /// `max_delay` at most.
    pub fn for_target(caps: &Capabilities, max_writes_per_second: Option<f64>, max_delay: Duration) -> Self {
        match rate_for(caps, max_writes_per_second) {
            Some(r) => Pace::Rate(RateLimiter::new(r)),
            None => Pace::Adaptive(Pacer::new(max_delay)),
        }
    }

    /// The quota paced to, if any.
    pub fn rate(&self) -> Option<f64> {
        match self {
            Pace::Rate(r) => Some(r.max),
            Pace::Adaptive(_) => None,
        }
    }

    async fn wait(&self) {
        match self {
            Pace::Rate(r) => r.acquire().await,
            Pace::Adaptive(p) => p.wait().await,
        }
    }

    fn throttled(&self, hint: Option<Duration>) {
        match self {
            Pace::Rate(r) => r.throttled(),
            Pace::Adaptive(p) => p.throttled(hint),
        }
    }

    fn succeeded(&self) {
        match self {
            Pace::Rate(r) => r.succeeded(),
            Pace::Adaptive(p) => p.succeeded(),
        }
    }
}

impl Hook for Pace {
    fn around<'a, T: Send + 'a>(
        &'a self,
        _store: &'a DynStore,
        call: Call<'a>,
        attempt: Attempt<'a, T>,
    ) -> BoxFuture<'a, Result<T, StoreError>> {
        if !matches!(call, Call::Write(_) | Call::Delete(_)) {
            return attempt();
        }
        Box::pin(async move {
            self.wait().await;
            let outcome = attempt().await;
            match &outcome {
                Ok(_) => self.succeeded(),
                Err(e) if e.is_retryable() => self.throttled(e.retry_after()),
                Err(_) => {}
            }
            outcome
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_rate_limiter_spaces_writes_and_backs_off_when_throttled() {
        let limiter = std::sync::Arc::new(RateLimiter::new(50.0));
        let start = tokio::time::Instant::now();
        // 8 workers, 100 writes: evenly spaced at 50/s, whoever asks.
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let l = limiter.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..(100 / 8 + 1) {
                    l.acquire().await;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let took = start.elapsed();
        // 104 slots at 20 ms: the first at 0, the last at 2.06 s.
        assert!(took >= Duration::from_millis(2050) && took <= Duration::from_millis(2070), "{took:?}");
        limiter.throttled();
        assert!((limiter.rate() - 35.0).abs() < 1e-9);
        for _ in 0..1000 {
            limiter.throttled();
        }
        assert!((limiter.rate() - 1.0).abs() < 1e-9, "never below max/50: {}", limiter.rate());
        for _ in 0..100 {
            limiter.succeeded();
        }
        assert!((limiter.rate() - 50.0).abs() < 1e-9, "climbs back to the quota, not beyond");
    }

    #[test]
    fn the_pacer_slows_down_on_throttling_and_recovers() {
        let p = Pacer::new(Duration::from_secs(1));
        assert!(p.delay().is_zero());
        p.throttled(None);
        assert_eq!(p.delay(), Pacer::FLOOR);
        p.throttled(None);
        assert_eq!(p.delay(), Pacer::FLOOR * 2);
        p.throttled(Some(Duration::from_millis(500)));
        assert_eq!(p.delay(), Duration::from_millis(500));
        for _ in 0..10 {
            p.throttled(None);
        }
        assert_eq!(p.delay(), Duration::from_secs(1), "capped");
        for _ in 0..200 {
            p.succeeded();
        }
        assert!(p.delay().is_zero(), "decays back to full speed");
    }
}
