//! Telling a webhook that work finished. Which events a Batch or BatchSweep owes follows from
//! its status alone ([`event`]), and each event's id from its object and type, so nothing has
//! to be recorded before an event is sent: a controller that dies after sending sends the same
//! event (same id) again, and the receiver drops the repeat (at least once). Each attempt is
//! recorded in `status.notifications`; the next is due after a growing wait ([`next_attempt`]),
//! until [`MAX_ATTEMPTS`]. Delivery never changes the object's phase.

pub mod deliver;
pub mod event;
pub mod sign;

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::api::{DeliveryState, NotificationStatus};

pub use deliver::{DeliveryError, Webhook};
pub use event::{Event, batch_events, sweep_events};

/// Attempts per event before it is given up (about 2.4 hours of waits in all).
pub const MAX_ATTEMPTS: u32 = 12;
/// The wait after the first failed attempt; each further one doubles it.
const FIRST_WAIT: Duration = Duration::from_secs(5);
/// The longest wait between two attempts.
const LONGEST_WAIT: Duration = Duration::from_secs(3600);

/// When `entry`'s next attempt is due: now for an event never tried, `None` once delivered or
/// given up.
pub fn next_attempt(entry: Option<&NotificationStatus>, now: Timestamp) -> Option<Timestamp> {
    let Some(entry) = entry else {
        return Some(now);
    };
    if entry.state != DeliveryState::Pending {
        return None;
    }
    let Some(Time(last)) = entry.last_attempt_time else {
        return Some(now);
    };
    Some(last + wait_after(entry.attempts))
}

/// The wait after `attempts` failed attempts: 5 s, 10 s, 20 s, ... at most an hour.
fn wait_after(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(20);
    FIRST_WAIT.saturating_mul(1 << doublings).min(LONGEST_WAIT)
}

/// `entry` (or a new one for `event`) after an attempt at `now` that ended in `result`.
pub fn attempted(
    entry: Option<&NotificationStatus>,
    event: &Event,
    result: &Result<(), DeliveryError>,
    now: Timestamp,
) -> NotificationStatus {
    let mut next = entry.cloned().unwrap_or_else(|| NotificationStatus {
        type_: event.type_.clone(),
        id: event.id.clone(),
        ..Default::default()
    });
    next.attempts += 1;
    next.last_attempt_time = Some(Time(now));
    match result {
        Ok(()) => {
            next.state = DeliveryState::Delivered;
            next.last_error = None;
        }
        Err(e) => {
            next.last_error = Some(e.to_string());
            if next.attempts >= MAX_ATTEMPTS {
                next.state = DeliveryState::Failed;
            }
        }
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        Event {
            type_: "io.llmbatch.batch.succeeded".into(),
            id: "uid.succeeded".into(),
            body: b"{}".to_vec(),
        }
    }

    #[test]
    fn waits_double_from_five_seconds_up_to_an_hour() {
        let waits: Vec<u64> = (1..=12).map(|n| wait_after(n).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]);
        let all: u64 = (1..MAX_ATTEMPTS).map(|n| wait_after(n).as_secs()).sum();
        assert_eq!(all, 8_715, "about 2.4 hours from the first attempt to the last");
    }

    #[test]
    fn an_event_is_tried_until_delivered_or_given_up() {
        let t0 = Timestamp::from_second(1_800_000_000).unwrap();
        assert_eq!(next_attempt(None, t0), Some(t0), "a new event is due at once");
        let refused = Err(DeliveryError::Status {
            host: "hooks.example".into(),
            status: 503,
        });
        let mut entry = attempted(None, &event(), &refused, t0);
        assert_eq!((entry.attempts, entry.state), (1, DeliveryState::Pending));
        assert_eq!(entry.last_error.as_deref(), Some("hooks.example answered HTTP 503"));
        assert_eq!(next_attempt(Some(&entry), t0), Some(t0 + Duration::from_secs(5)));
        for _ in 1..MAX_ATTEMPTS {
            entry = attempted(Some(&entry), &event(), &refused, t0);
        }
        assert_eq!((entry.attempts, entry.state), (MAX_ATTEMPTS, DeliveryState::Failed));
        assert_eq!(next_attempt(Some(&entry), t0), None);
        let delivered = attempted(Some(&entry), &event(), &Ok(()), t0);
        assert_eq!(delivered.state, DeliveryState::Delivered);
        assert_eq!(delivered.last_error, None);
        assert_eq!(next_attempt(Some(&delivered), t0), None);
    }
}
