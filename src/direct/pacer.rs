//! Pacing direct requests: requests and estimated tokens per minute, spread evenly (a request
//! waits for its slot instead of bursting), and a hold for every sender when the gateway says
//! `retry-after` on a 429.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::api::DirectLimits;

/// When each next request may go. Pure: the caller passes the time in.
#[derive(Debug, Clone)]
pub struct Schedule {
    request_interval: Option<Duration>,
    token_interval: Option<Duration>,
    next_request: Instant,
    next_token: Instant,
    hold_until: Instant,
}

impl Schedule {
    /// A schedule for `limits`, open from `now`.
    pub fn new(limits: &DirectLimits, now: Instant) -> Self {
        let per_minute = |n: Option<u64>| n.filter(|n| *n > 0).map(|n| Duration::from_secs(60).div_f64(n as f64));
        Schedule {
            request_interval: per_minute(limits.requests_per_minute),
            token_interval: per_minute(limits.tokens_per_minute),
            next_request: now,
            next_token: now,
            hold_until: now,
        }
    }

    /// Reserves the next slot for a request of `tokens` estimated tokens and returns when it
    /// may be sent: one request per `60 s / requestsPerMinute`, and after a request of `n`
    /// tokens the next waits `n * 60 s / tokensPerMinute`.
    pub fn reserve(&mut self, now: Instant, tokens: u64) -> Instant {
        let at = now.max(self.next_request).max(self.next_token).max(self.hold_until);
        if let Some(interval) = self.request_interval {
            self.next_request = at + interval;
        }
        if let Some(interval) = self.token_interval {
            self.next_token = at + interval.mul_f64(tokens as f64);
        }
        at
    }

    /// No request goes before `until` (a 429's `retry-after`).
    pub fn hold(&mut self, until: Instant) {
        self.hold_until = self.hold_until.max(until);
    }

    /// True while a hold is in force at `now`.
    pub fn held(&self, now: Instant) -> bool {
        now < self.hold_until
    }
}

/// A [`Schedule`] shared by every sender of one run.
#[derive(Debug)]
pub struct Pacer {
    schedule: Mutex<Schedule>,
}

impl Pacer {
    pub fn new(limits: &DirectLimits) -> Self {
        Pacer {
            schedule: Mutex::new(Schedule::new(limits, Instant::now())),
        }
    }

    /// Waits for a slot; a hold that began while waiting sends the request to the back.
    pub async fn wait(&self, tokens: u64) {
        loop {
            let at = self.lock().reserve(Instant::now(), tokens);
            if at <= Instant::now() {
                return; // a timer, even an elapsed one, would wait for the next tick
            }
            tokio::time::sleep_until(at).await;
            if !self.lock().held(Instant::now()) {
                return;
            }
        }
    }

    /// Holds every sender for `wait`.
    pub fn hold_for(&self, wait: Duration) {
        self.lock().hold(Instant::now() + wait);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Schedule> {
        self.schedule.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rpm: Option<u64>, tpm: Option<u64>) -> DirectLimits {
        DirectLimits {
            requests_per_minute: rpm,
            tokens_per_minute: tpm,
            ..DirectLimits::default()
        }
    }

    #[test]
    fn requests_per_minute_spread_evenly() {
        let t0 = Instant::now();
        let mut s = Schedule::new(&limits(Some(600), None), t0);
        let slots: Vec<Duration> = (0..4).map(|_| s.reserve(t0, 1) - t0).collect();
        assert_eq!(slots, [0, 100, 200, 300].map(Duration::from_millis));
        // A request arriving after its slot went unused goes at once, without a burst after it.
        let late = t0 + Duration::from_secs(5);
        assert_eq!(s.reserve(late, 1), late);
        assert_eq!(s.reserve(late, 1), late + Duration::from_millis(100));
    }

    #[test]
    fn tokens_per_minute_space_requests_by_their_size() {
        let t0 = Instant::now();
        let mut s = Schedule::new(&limits(None, Some(6000)), t0);
        assert_eq!(s.reserve(t0, 100), t0);
        assert_eq!(s.reserve(t0, 10), t0 + Duration::from_secs(1));
        assert_eq!(s.reserve(t0, 10), t0 + Duration::from_millis(1100));
    }

    #[test]
    fn unlimited_sends_at_once_and_a_hold_delays_everyone() {
        let t0 = Instant::now();
        let mut s = Schedule::new(&limits(None, None), t0);
        assert_eq!(s.reserve(t0, 1_000_000), t0);
        assert_eq!(s.reserve(t0, 1), t0);
        s.hold(t0 + Duration::from_secs(2));
        assert!(s.held(t0));
        assert_eq!(s.reserve(t0, 1), t0 + Duration::from_secs(2));
        assert!(!s.held(t0 + Duration::from_secs(2)));
    }
}
