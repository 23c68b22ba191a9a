//! Exponential backoff, one formula for the whole tree: the gateway client's retry ceiling, the
//! controller's per-object requeue, admission's requeue after the gateway's enqueued-token
//! limit, and `run -f`'s pause after a transient failure. Pure: the caller counts attempts,
//! draws any jitter and sleeps.

use std::time::Duration;

/// `base`, `2 × base`, `4 × base`, ... for attempts 1, 2, 3, ..., never above `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The delay of the first attempt.
    pub base: Duration,
    /// The ceiling every later delay stops at.
    pub max: Duration,
}

impl Backoff {
    pub const fn new(base: Duration, max: Duration) -> Self {
        Self { base, max }
    }

    /// The delay for attempt `attempt` (1-based; 0 counts as 1): `base × 2^(attempt − 1)`, at
    /// most `max`. Saturates instead of overflowing, whatever the attempt.
    pub fn delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1);
        let factor = 1u32.checked_shl(doublings).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn doubles_from_the_base_up_to_the_cap() {
        let backoff = Backoff::new(secs(2), secs(300));
        let delays: Vec<u64> = (1..=10).map(|n| backoff.delay(n).as_secs()).collect();
        assert_eq!(delays, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff.delay(0), secs(2), "attempt 0 counts as the first");
    }

    #[test]
    fn never_overflows() {
        let backoff = Backoff::new(Duration::from_millis(500), secs(4));
        for attempt in [31, 32, 33, 64, u32::MAX] {
            assert_eq!(backoff.delay(attempt), secs(4), "attempt {attempt}");
        }
        let huge = Backoff::new(Duration::MAX, Duration::MAX);
        assert_eq!(huge.delay(40), Duration::MAX);
    }

    #[test]
    fn a_cap_below_the_base_wins() {
        assert_eq!(Backoff::new(secs(10), secs(3)).delay(1), secs(3));
    }
}
