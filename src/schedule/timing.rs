//! When a schedule's runs are due: its cron expression read in its time zone, and CronJob's rule
//! for the times missed while nothing ran.

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

use crate::api::InvalidField;

/// Missed times counted at most, for the Event that says how many were skipped.
const MAX_COUNTED: u32 = 1000;

/// A parsed `spec.schedule` in `spec.timeZone`.
#[derive(Clone, Debug)]
pub struct Timing {
    cron: Cron,
    zone: TimeZone,
}

impl Timing {
    /// Reads a five-field expression or an `@` macro, and an IANA zone name (UTC when `None`).
    pub fn parse(schedule: &str, time_zone: Option<&str>) -> Result<Self, InvalidField> {
        let zone = match time_zone {
            None => TimeZone::UTC,
            Some(name) => TimeZone::get(name)
                .map_err(|_| InvalidField::new("spec.timeZone", format!("{name:?} is not an IANA time zone name")))?,
        };
        let expression = match schedule.trim() {
            // croner knows every CronJob macro but this one.
            m if m.eq_ignore_ascii_case("@midnight") => "@daily",
            other => other,
        };
        let parser = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build();
        let cron = parser
            .parse(expression)
            .map_err(|e| InvalidField::new("spec.schedule", format!("{schedule:?} is not a cron schedule: {e}")))?;
        Ok(Timing { cron, zone })
    }

    /// The schedule's zone.
    pub fn zone(&self) -> TimeZone {
        self.zone.clone()
    }

    /// `t` in the schedule's zone.
    pub fn zoned(&self, t: Timestamp) -> Zoned {
        t.to_zoned(self.zone.clone())
    }

    /// The latest scheduled time at or before `now`.
    pub fn latest_at_or_before(&self, now: Timestamp) -> Option<Timestamp> {
        let found = self.cron.find_previous_occurrence(&self.zoned(now), true).ok()?;
        Some(found.timestamp())
    }

    /// The first scheduled time after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let found = self.cron.find_next_occurrence(&self.zoned(t), false).ok()?;
        Some(found.timestamp())
    }

    /// Scheduled times strictly between `after` and `before` (counted up to 1,000).
    fn count_between(&self, after: Timestamp, before: Timestamp) -> u32 {
        let mut count = 0;
        let mut t = after;
        while count < MAX_COUNTED {
            match self.next_after(t) {
                Some(next) if next < before => {
                    count += 1;
                    t = next;
                }
                _ => break,
            }
        }
        count
    }

    /// What is due at `now`, by CronJob's rule: only the most recent scheduled time after `last`
    /// (the latest run's time, or the schedule's creation) may run, never a burst of the
    /// missed ones; with a deadline, not once `deadline` seconds have passed since it.
    pub fn due(&self, last: Timestamp, now: Timestamp, deadline: Option<i64>) -> Due {
        let Some(latest) = self.latest_at_or_before(now).filter(|t| *t > last) else {
            return Due::Nothing;
        };
        let skipped = self.count_between(last, latest);
        let too_late = deadline.is_some_and(|d| latest.as_second().saturating_add(d) < now.as_second());
        if too_late {
            return Due::TooLate { time: latest };
        }
        Due::Run { time: latest, skipped }
    }
}

/// What a schedule should do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// No scheduled time passed since the latest run.
    Nothing,
    /// The run of `time` should start; `skipped` older missed times never will.
    Run { time: Timestamp, skipped: u32 },
    /// The latest scheduled time is past its starting deadline: nothing starts.
    TooLate { time: Timestamp },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn five_fields_and_macros_parse_and_bad_ones_name_the_field() {
        for good in [
            "* * * * *",
            "0 2 * * *",
            "*/15 9-17 * * MON-FRI",
            "@daily",
            "@hourly",
            "@midnight",
            "@weekly",
        ] {
            Timing::parse(good, None).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in ["0 0 2 * * *", "61 * * * *", "* * *", "@sometimes", ""] {
            let e = Timing::parse(bad, None).unwrap_err();
            assert_eq!(e.field, "spec.schedule", "{bad}");
        }
        let e = Timing::parse("@daily", Some("Mars/Olympus")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "spec.timeZone: \"Mars/Olympus\" is not an IANA time zone name"
        );
    }

    #[test]
    fn times_are_read_in_the_schedule_zone() {
        let paris = Timing::parse("0 2 * * *", Some("Europe/Paris")).unwrap();
        // 02:00 in Paris is 01:00 UTC in winter, 00:00 UTC in summer.
        assert_eq!(
            paris.next_after(at("2026-01-30T12:00:00Z")),
            Some(at("2026-01-31T01:00:00Z"))
        );
        assert_eq!(
            paris.next_after(at("2026-07-30T12:00:00Z")),
            Some(at("2026-07-31T00:00:00Z"))
        );
        let utc = Timing::parse("@daily", None).unwrap();
        assert_eq!(
            utc.latest_at_or_before(at("2026-01-31T00:00:00Z")),
            Some(at("2026-01-31T00:00:00Z"))
        );
    }

    #[test]
    fn only_the_most_recent_missed_time_runs() {
        let hourly = Timing::parse("0 * * * *", None).unwrap();
        let last = at("2026-01-31T10:00:00Z");
        let now = at("2026-01-31T13:20:00Z");
        assert_eq!(
            hourly.due(last, now, None),
            Due::Run {
                time: at("2026-01-31T13:00:00Z"),
                skipped: 2
            }
        );
        // Three hours down, a deadline of two: 13:00 is 20 minutes late, within it.
        assert_eq!(
            hourly.due(last, now, Some(7200)),
            Due::Run {
                time: at("2026-01-31T13:00:00Z"),
                skipped: 2
            }
        );
        assert_eq!(
            hourly.due(last, now, Some(600)),
            Due::TooLate {
                time: at("2026-01-31T13:00:00Z")
            }
        );
        assert_eq!(hourly.due(at("2026-01-31T13:00:00Z"), now, None), Due::Nothing);
    }

    #[test]
    fn a_schedule_due_exactly_now_runs_now() {
        let minutely = Timing::parse("* * * * *", None).unwrap();
        let t = at("2026-01-31T02:00:00Z");
        assert_eq!(
            minutely.due(at("2026-01-31T01:59:00Z"), t, Some(0)),
            Due::Run { time: t, skipped: 0 }
        );
    }
}
