//! Stalled detection: an upstream batch whose state and request counts have not changed for
//! longer than its state's threshold turns `Progressing=False Stalled`, and back to True
//! (`Resumed`) once it moves. Never fatal: polling goes on as before.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::{Context, Upstream, UpstreamState};
use crate::api::{BatchStatus, Conditions, condition_types as ct, reasons};

/// How long an upstream batch may sit in each state without a change (the BatchGateway's
/// `spec.stalledAfter`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StalledPolicy {
    pub validating: Duration,
    pub in_progress: Duration,
    pub finalizing: Duration,
}

impl StalledPolicy {
    /// validating 1h, in_progress 6h, finalizing 2h.
    pub const DEFAULT: Self = Self {
        validating: Duration::from_secs(3600),
        in_progress: Duration::from_secs(6 * 3600),
        finalizing: Duration::from_secs(2 * 3600),
    };

    /// The thresholds a BatchGateway's `spec.stalledAfter` sets (the defaults where omitted).
    pub fn from_spec(spec: &crate::api::StalledAfter) -> Result<Self, crate::api::InvalidField> {
        Ok(Self {
            validating: spec.validating()?,
            in_progress: spec.in_progress()?,
            finalizing: spec.finalizing()?,
        })
    }

    /// The threshold of `state`, `None` for states that never count as stalled (final ones,
    /// `cancelling`, words the engine does not know).
    pub fn threshold(&self, state: &UpstreamState) -> Option<Duration> {
        match state {
            UpstreamState::Validating => Some(self.validating),
            UpstreamState::InProgress => Some(self.in_progress),
            UpstreamState::Finalizing => Some(self.finalizing),
            _ => None,
        }
    }
}

impl Default for StalledPolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// When the upstream batch last changed, once `seen` is taken into account: `now` when its
/// state word or its request counts differ from what the status held (or nothing was recorded
/// yet), else the time recorded. Counts the gateway did not report change nothing.
pub fn last_change(
    before_state: Option<&str>,
    before_counts: Option<(u64, u64, u64)>,
    before_time: Option<Timestamp>,
    seen: &Upstream,
    now: Timestamp,
) -> Timestamp {
    let state_moved = before_state != Some(seen.state.as_wire());
    let counts_moved = seen.counts.is_some() && seen.counts != before_counts;
    match before_time {
        Some(t) if !state_moved && !counts_moved => t,
        _ => now,
    }
}

/// Whether a batch in `state`, unchanged since `since`, is stalled at `now`: the threshold it
/// is past, if so.
pub fn stalled(policy: &StalledPolicy, state: &UpstreamState, since: Timestamp, now: Timestamp) -> Option<Duration> {
    let threshold = policy.threshold(state)?;
    let quiet: Duration = now.duration_since(since).try_into().unwrap_or_default();
    (quiet > threshold).then_some(threshold)
}

/// Records what `seen` says about progress in `status`: the last change time, and the
/// `Progressing` condition (False once stalled; True again when a stalled batch moves; absent
/// while a batch never stalled).
pub(super) fn track(
    status: &mut BatchStatus,
    before: (Option<String>, Option<(u64, u64, u64)>),
    seen: &Upstream,
    ctx: &Context,
) {
    let gw = status.gateway.get_or_insert_with(Default::default);
    let since = last_change(
        before.0.as_deref(),
        before.1,
        gw.last_change_time.as_ref().map(|t| t.0),
        seen,
        ctx.now,
    );
    gw.last_change_time = Some(Time(since));
    match stalled(&ctx.polling.stalled, &seen.state, since, ctx.now) {
        Some(threshold) => {
            let message = format!(
                "the gateway's batch {} has been {} with unchanged request counts since {since}, longer than {} (the BatchGateway's spec.stalledAfter); still polling",
                seen.id,
                seen.state.as_wire(),
                humantime::format_duration(threshold),
            );
            status.conditions.set_condition(
                ct::PROGRESSING,
                false,
                reasons::STALLED,
                message,
                ctx.generation,
                ctx.now,
            );
        }
        None if status
            .conditions
            .condition(ct::PROGRESSING)
            .is_some_and(|c| c.status == "False") =>
        {
            let message = format!("the gateway's batch {} moved: now {}", seen.id, seen.state.as_wire());
            status.conditions.set_condition(
                ct::PROGRESSING,
                true,
                reasons::RESUMED,
                message,
                ctx.generation,
                ctx.now,
            );
        }
        None => {}
    }
}

/// The `Progressing=False Stalled` condition of `after` when `before` was not stalled: what a
/// driver announces once per transition (a Warning Event, a line of `run -f`).
pub fn newly_stalled<'a>(
    before: &BatchStatus,
    after: &'a BatchStatus,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    let stalled = |s: &BatchStatus| {
        s.conditions
            .condition(ct::PROGRESSING)
            .is_some_and(|c| c.status == "False" && c.reason == reasons::STALLED)
    };
    match stalled(before) {
        true => None,
        false => after.conditions.condition(ct::PROGRESSING).filter(|_| stalled(after)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn seen(state: UpstreamState, counts: Option<(u64, u64, u64)>) -> Upstream {
        Upstream {
            id: "batch_1".into(),
            state,
            output_file_id: None,
            error_file_id: None,
            counts,
            errors: Vec::new(),
            token_limited: false,
        }
    }

    #[test]
    fn each_state_has_its_own_threshold() {
        let policy = StalledPolicy::DEFAULT;
        let hour = 3600;
        for (state, limit) in [
            (UpstreamState::Validating, hour),
            (UpstreamState::InProgress, 6 * hour),
            (UpstreamState::Finalizing, 2 * hour),
        ] {
            assert_eq!(
                stalled(&policy, &state, at(0), at(limit)),
                None,
                "{state:?} at its threshold"
            );
            assert_eq!(
                stalled(&policy, &state, at(0), at(limit + 1)),
                Some(Duration::from_secs(limit as u64)),
                "{state:?} past its threshold"
            );
        }
        for state in [
            UpstreamState::Cancelling,
            UpstreamState::Completed,
            UpstreamState::Failed,
            UpstreamState::Other("paused".into()),
        ] {
            assert_eq!(stalled(&policy, &state, at(0), at(100 * hour)), None, "{state:?}");
        }
        let short = StalledPolicy {
            finalizing: Duration::from_secs(1),
            ..policy
        };
        assert!(stalled(&short, &UpstreamState::Finalizing, at(0), at(2)).is_some());
        assert!(stalled(&short, &UpstreamState::InProgress, at(0), at(2)).is_none());
    }

    #[test]
    fn a_change_of_state_or_counts_resets_the_clock() {
        let counts = Some((10, 3, 0));
        let same = seen(UpstreamState::InProgress, counts);
        let t = Some(at(0));
        assert_eq!(last_change(Some("in_progress"), counts, t, &same, at(50)), at(0));
        // Counts not reported change nothing.
        let unreported = seen(UpstreamState::InProgress, None);
        assert_eq!(last_change(Some("in_progress"), counts, t, &unreported, at(50)), at(0));
        let more = seen(UpstreamState::InProgress, Some((10, 4, 0)));
        assert_eq!(last_change(Some("in_progress"), counts, t, &more, at(50)), at(50));
        let finalizing = seen(UpstreamState::Finalizing, counts);
        assert_eq!(last_change(Some("in_progress"), counts, t, &finalizing, at(50)), at(50));
        // Nothing recorded yet (first observation, or a status from before this field).
        assert_eq!(last_change(Some("in_progress"), counts, None, &same, at(50)), at(50));
        assert_eq!(last_change(None, None, None, &same, at(50)), at(50));
    }

    fn ctx(now: Timestamp, finalizing: Duration) -> Context {
        Context {
            uid: "uid".into(),
            object: "ns/b".into(),
            generation: Some(1),
            polling: super::super::PollingPolicy {
                initial: Duration::from_secs(1),
                max: Duration::from_secs(10),
                stalled: StalledPolicy {
                    finalizing,
                    ..StalledPolicy::DEFAULT
                },
            },
            now,
            prices: None,
        }
    }

    fn progressing(status: &BatchStatus) -> Option<(String, String)> {
        let c = status.conditions.condition(ct::PROGRESSING)?;
        Some((c.status.clone(), c.reason.clone()))
    }

    fn step(status: &mut BatchStatus, seen: &Upstream, now: Timestamp) {
        let before = (
            status.gateway.as_ref().and_then(|g| g.status.clone()),
            status.request_counts.as_ref().map(|c| (c.total, c.completed, c.failed)),
        );
        track(status, before, seen, &ctx(now, Duration::from_secs(60)));
        let gw = status.gateway.get_or_insert_with(Default::default);
        gw.status = Some(seen.state.as_wire().to_string());
    }

    #[test]
    fn a_stalled_batch_turns_progressing_false_then_recovers_when_it_moves() {
        let mut status = BatchStatus::default();
        let finalizing = seen(UpstreamState::Finalizing, None);
        step(&mut status, &finalizing, at(0));
        assert_eq!(progressing(&status), None, "no condition while it never stalled");
        step(&mut status, &finalizing, at(60));
        assert_eq!(progressing(&status), None, "at the threshold is not past it");
        let quiet = status.clone();
        step(&mut status, &finalizing, at(61));
        assert_eq!(progressing(&status), Some(("False".into(), "Stalled".into())));
        assert!(newly_stalled(&quiet, &status).is_some(), "announced on the transition");
        assert!(newly_stalled(&status, &status).is_none(), "and only then");
        let message = status.conditions.condition(ct::PROGRESSING).unwrap().message.clone();
        assert!(message.contains("finalizing") && message.contains("1m"), "{message}");
        step(&mut status, &finalizing, at(500));
        let c = status.conditions.condition(ct::PROGRESSING).unwrap();
        assert_eq!(c.message, message, "a stable message: no status write per poll");
        assert_eq!(c.last_transition_time, Time(at(61)));
        step(&mut status, &seen(UpstreamState::Completed, None), at(501));
        assert_eq!(progressing(&status), Some(("True".into(), "Resumed".into())));
        assert_eq!(status.gateway.as_ref().unwrap().last_change_time, Some(Time(at(501))));
    }
}
