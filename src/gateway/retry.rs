//! The retry decision, as a pure function of the failure, its headers and the attempt number.
//!
//! The client draws the jitter and reads the clock; everything else is decided here, so the
//! policy is unit-tested without I/O.

use std::time::{Duration, SystemTime};

use k8s_openapi::jiff::fmt::rfc2822;
use reqwest::header::HeaderMap;

use super::config::RetryPolicy;
use super::error::is_retryable_status;
use crate::backoff::Backoff;

/// One failed attempt, as the retry decision sees it.
#[derive(Debug, Clone, Copy)]
pub enum Failure<'a> {
    /// The gateway answered with a non-success status.
    Response {
        /// HTTP status code.
        status: u16,
        /// Response headers (`retry-after`, `retry-after-ms`, `x-should-retry`).
        headers: &'a HeaderMap,
    },
    /// No usable response: connection error, reset, timeout, truncated body, ...
    Transport {
        /// Whether this kind of failure is transient.
        retryable: bool,
    },
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Wait this long, then try again.
    Retry(Duration),
    /// Stop and surface the error.
    GiveUp(GiveUpReason),
}

/// Why the client stopped retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUpReason {
    /// The failure is terminal (e.g. 400, 401, 404, or `x-should-retry: false`).
    NotRetryable,
    /// The policy's `max_attempts` were used up.
    AttemptsExhausted,
    /// The gateway asked to wait longer than `max_retry_after`.
    RetryAfterTooLong(Duration),
}

/// Decides whether attempt number `attempt` (1-based, the one that just failed) is followed by
/// another one, and after how long.
///
/// `jitter` in `[0, 1]` scales the exponential backoff ceiling (full jitter). A `retry-after` or
/// `retry-after-ms` header raises the wait to at least that value; one longer than
/// `max_retry_after` ends the retries. `x-should-retry: true|false` overrides the status code.
pub fn decide(policy: &RetryPolicy, failure: Failure<'_>, attempt: u32, jitter: f64, now: SystemTime) -> RetryDecision {
    let (retryable, retry_after) = match failure {
        Failure::Response { status, headers } => (
            should_retry_header(headers).unwrap_or_else(|| is_retryable_status(status)),
            retry_after(headers, now),
        ),
        Failure::Transport { retryable } => (retryable, None),
    };
    if !retryable {
        return RetryDecision::GiveUp(GiveUpReason::NotRetryable);
    }
    if attempt >= policy.max_attempts {
        return RetryDecision::GiveUp(GiveUpReason::AttemptsExhausted);
    }
    let backoff = backoff_ceiling(policy, attempt).mul_f64(clamp_unit(jitter));
    match retry_after {
        Some(wait) if wait > policy.max_retry_after => RetryDecision::GiveUp(GiveUpReason::RetryAfterTooLong(wait)),
        Some(wait) => RetryDecision::Retry(wait.max(backoff).min(policy.max_retry_after)),
        None => RetryDecision::Retry(backoff),
    }
}

/// The un-jittered exponential delay after attempt `attempt`: `initial * 2^(attempt-1)`, capped.
pub fn backoff_ceiling(policy: &RetryPolicy, attempt: u32) -> Duration {
    let max = policy.max_backoff;
    Backoff::new(policy.initial_backoff.min(max), max).delay(attempt)
}

/// The wait the gateway asked for: `retry-after-ms`, else `retry-after` in seconds or as an HTTP date.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if let Some(ms) = header_str(headers, "retry-after-ms").and_then(parse_non_negative) {
        return Duration::try_from_secs_f64(ms / 1000.0).ok();
    }
    let value = header_str(headers, "retry-after")?;
    if let Some(secs) = parse_non_negative(value) {
        return Duration::try_from_secs_f64(secs).ok();
    }
    static HTTP_DATE: rfc2822::DateTimeParser = rfc2822::DateTimeParser::new();
    let at = SystemTime::from(HTTP_DATE.parse_timestamp(value).ok()?);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// `x-should-retry: true|false`, as the OpenAI SDK reads it.
fn should_retry_header(headers: &HeaderMap) -> Option<bool> {
    match header_str(headers, "x-should-retry")? {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name)?.to_str().ok().map(str::trim)
}

fn parse_non_negative(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0)
}

fn clamp_unit(x: f64) -> f64 {
    if x.is_nan() { 1.0 } else { x.clamp(0.0, 1.0) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(4),
            max_retry_after: Duration::from_secs(120),
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn on_status(status: u16, h: &HeaderMap, attempt: u32, jitter: f64) -> RetryDecision {
        let failure = Failure::Response { status, headers: h };
        decide(&policy(), failure, attempt, jitter, SystemTime::UNIX_EPOCH)
    }

    const fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn rate_limit_honours_retry_after_seconds() {
        let h = headers(&[("retry-after", "7")]);
        assert_eq!(on_status(429, &h, 1, 0.5), RetryDecision::Retry(secs(7)));
    }

    #[test]
    fn retry_after_is_a_floor_under_the_backoff() {
        // Attempt 4: ceiling 4 s, full jitter 1.0 -> 4 s, above the 1 s asked for.
        let h = headers(&[("retry-after", "1")]);
        assert_eq!(on_status(429, &h, 4, 1.0), RetryDecision::Retry(secs(4)));
    }

    #[test]
    fn retry_after_http_date_with_an_offset_or_garbage() {
        // 01:00:30 at +0100 is 00:00:30 UTC.
        let h = headers(&[("retry-after", "Thu, 01 Jan 1970 01:00:30 +0100")]);
        assert_eq!(retry_after(&h, SystemTime::UNIX_EPOCH), Some(secs(30)));
        let h = headers(&[("retry-after", "soon")]);
        assert_eq!(retry_after(&h, SystemTime::UNIX_EPOCH), None);
    }

    #[test]
    fn rate_limit_honours_retry_after_http_date() {
        let h = headers(&[("retry-after", "Thu, 01 Jan 1970 00:00:30 GMT")]);
        assert_eq!(on_status(429, &h, 1, 0.0), RetryDecision::Retry(secs(30)));
        let past = headers(&[("retry-after", "Thu, 01 Jan 1970 00:00:00 GMT")]);
        let later = SystemTime::UNIX_EPOCH + secs(100);
        let failure = Failure::Response {
            status: 429,
            headers: &past,
        };
        assert_eq!(
            decide(&policy(), failure, 1, 0.0, later),
            RetryDecision::Retry(Duration::ZERO)
        );
    }

    #[test]
    fn retry_after_ms_takes_precedence() {
        let h = headers(&[("retry-after-ms", "250"), ("retry-after", "9")]);
        assert_eq!(
            on_status(503, &h, 1, 0.0),
            RetryDecision::Retry(Duration::from_millis(250))
        );
    }

    #[test]
    fn too_long_retry_after_gives_up() {
        let h = headers(&[("retry-after", "121")]);
        assert_eq!(
            on_status(429, &h, 1, 0.0),
            RetryDecision::GiveUp(GiveUpReason::RetryAfterTooLong(secs(121)))
        );
    }

    #[test]
    fn garbage_retry_after_falls_back_to_backoff() {
        let h = headers(&[("retry-after", "soon"), ("retry-after-ms", "-5")]);
        assert_eq!(
            on_status(429, &h, 1, 1.0),
            RetryDecision::Retry(Duration::from_millis(500))
        );
    }

    #[test]
    fn server_errors_back_off_exponentially_up_to_the_cap() {
        let h = HeaderMap::new();
        let waits: Vec<_> = (1..=4).map(|a| on_status(503, &h, a, 1.0)).collect();
        let expected = [500, 1000, 2000, 4000].map(|ms| RetryDecision::Retry(Duration::from_millis(ms)));
        assert_eq!(waits, expected);
        let long = RetryPolicy {
            max_attempts: 100,
            ..policy()
        };
        let failure = Failure::Response {
            status: 500,
            headers: &h,
        };
        assert_eq!(
            decide(&long, failure, 40, 1.0, SystemTime::UNIX_EPOCH),
            RetryDecision::Retry(secs(4))
        );
    }

    #[test]
    fn full_jitter_scales_the_ceiling() {
        let h = HeaderMap::new();
        assert_eq!(on_status(502, &h, 2, 0.0), RetryDecision::Retry(Duration::ZERO));
        assert_eq!(
            on_status(502, &h, 2, 0.25),
            RetryDecision::Retry(Duration::from_millis(250))
        );
    }

    #[test]
    fn attempts_are_bounded() {
        let h = HeaderMap::new();
        assert_eq!(
            on_status(500, &h, 5, 0.5),
            RetryDecision::GiveUp(GiveUpReason::AttemptsExhausted)
        );
    }

    #[test]
    fn terminal_codes_give_up() {
        let h = headers(&[("retry-after", "1")]);
        for status in [400, 401, 403, 404, 409, 422] {
            assert_eq!(
                on_status(status, &h, 1, 0.5),
                RetryDecision::GiveUp(GiveUpReason::NotRetryable)
            );
        }
        assert!(matches!(on_status(408, &h, 1, 0.5), RetryDecision::Retry(_)));
    }

    #[test]
    fn x_should_retry_overrides_status() {
        let yes = headers(&[("x-should-retry", "true")]);
        assert!(matches!(on_status(409, &yes, 1, 0.5), RetryDecision::Retry(_)));
        let no = headers(&[("x-should-retry", "false")]);
        assert_eq!(
            on_status(503, &no, 1, 0.5),
            RetryDecision::GiveUp(GiveUpReason::NotRetryable)
        );
        let other = headers(&[("x-should-retry", "maybe")]);
        assert!(matches!(on_status(503, &other, 1, 0.5), RetryDecision::Retry(_)));
    }

    #[test]
    fn transport_failures() {
        let p = policy();
        let now = SystemTime::UNIX_EPOCH;
        let retry = decide(&p, Failure::Transport { retryable: true }, 1, 1.0, now);
        assert_eq!(retry, RetryDecision::Retry(Duration::from_millis(500)));
        let stop = decide(&p, Failure::Transport { retryable: false }, 1, 1.0, now);
        assert_eq!(stop, RetryDecision::GiveUp(GiveUpReason::NotRetryable));
    }
}
