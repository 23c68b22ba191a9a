//! The schedule math of a `BatchSchedule`, without I/O: when a run is due (CronJob's rules),
//! what it is named, and the spec it runs with. The controller and `run -f` both use it.

mod decide;
mod placeholders;
mod timing;

pub use decide::{Decision, Inputs, Note, ObservedRun, RunOutcome, decide};
pub use placeholders::{Stamp, batch_spec, sweep_spec};
pub use timing::{Due, Timing};

use jiff::Timestamp;

use crate::api::{BatchScheduleSpec, BatchSpec, BatchSweepSpec, InvalidField};

/// Label on every run: the schedule's name.
pub const SCHEDULE_LABEL: &str = "llmbatch.io/schedule";
/// Annotation on every run: its scheduled time (RFC 3339, UTC).
pub const SCHEDULED_TIME_ANNOTATION: &str = "llmbatch.io/scheduled-time";

/// The run of `schedule` for `time`: `<schedule>-<unix minutes>`, the same in every process,
/// so a run is created once whoever creates it.
pub fn run_name(schedule: &str, time: Timestamp) -> String {
    format!("{schedule}-{}", time.as_second().div_euclid(60))
}

/// The child a run creates.
#[derive(Clone, Debug, PartialEq)]
pub enum RunSpec {
    Batch(Box<BatchSpec>),
    Sweep(Box<BatchSweepSpec>),
}

/// The spec of the run for `time`: the template with the placeholders of `time` in the
/// schedule's zone.
pub fn run_spec(spec: &BatchScheduleSpec, timing: &Timing, time: Timestamp) -> Result<RunSpec, InvalidField> {
    let stamp = Stamp::of(&timing.zoned(time));
    match (&spec.batch_template, &spec.sweep_template) {
        (Some(batch), None) => Ok(RunSpec::Batch(Box::new(batch_spec(batch, &stamp)?))),
        (None, Some(sweep)) => Ok(RunSpec::Sweep(Box::new(sweep_spec(sweep, &stamp)?))),
        _ => Err(InvalidField::new(
            "spec",
            "give exactly one of batchTemplate or sweepTemplate",
        )),
    }
}

/// Whether the template makes a run (placeholders known, one template).
pub fn check_template(spec: &BatchScheduleSpec, timing: &Timing, now: Timestamp) -> Result<(), InvalidField> {
    run_spec(spec, timing, now).map(drop)
}

#[cfg(test)]
mod tests;
