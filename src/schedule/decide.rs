//! What a schedule does at one moment, decided from its spec, its status, the runs it owns and
//! the time: which run starts, which active runs a `Replace` deletes, which finished runs the
//! history limits prune, and the status that results. No I/O: the controller acts on it.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::{Due, Timing, check_template};
use crate::api::{
    BatchScheduleSpec, BatchScheduleStatus, ConcurrencyPolicy, Conditions, InvalidField, MAX_LISTED_RUNS, ScheduledRun,
    schedule_conditions as ct, schedule_reasons as reasons,
};

/// How a run ended, or that it has not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunOutcome {
    Active,
    Succeeded,
    /// Failed, Expired or Cancelled.
    Failed,
}

/// A child run as the controller sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedRun {
    /// Name, time, phase, counts and cost, as the status lists them.
    pub summary: ScheduledRun,
    pub scheduled: Timestamp,
    pub outcome: RunOutcome,
    /// Being deleted (pruned or replaced): neither active nor kept.
    pub deleting: bool,
}

/// Something worth an Event beyond the run created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// `Forbid`: the run of `time` waits for the active runs.
    Forbidden { time: Timestamp, active: Vec<String> },
    /// The latest scheduled time passed its starting deadline.
    TooLate { time: Timestamp },
    /// Older missed times that never run (only the most recent does).
    Skipped { count: u32 },
}

/// Everything one reconcile does.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    /// The scheduled time of the run to create.
    pub start: Option<Timestamp>,
    /// Active runs to delete before it starts (`Replace`).
    pub replace: Vec<String>,
    /// Finished runs past the history limits, oldest last.
    pub prune: Vec<String>,
    pub notes: Vec<Note>,
    /// When to look again at the latest (the next scheduled time).
    pub next: Option<Timestamp>,
    pub status: BatchScheduleStatus,
}

/// What [`decide`] reads.
pub struct Inputs<'a> {
    pub spec: &'a BatchScheduleSpec,
    pub generation: Option<i64>,
    pub status: &'a BatchScheduleStatus,
    /// The schedule's creation: the earliest time a run may be for.
    pub created: Timestamp,
    /// The latest scheduled time this process created a run for (the cache may lag).
    pub remembered: Option<Timestamp>,
    pub runs: &'a [ObservedRun],
    pub now: Timestamp,
}

pub fn decide(inputs: &Inputs) -> Decision {
    let spec = inputs.spec;
    let mut decision = Decision {
        prune: prune(spec, inputs.runs),
        status: summarize(inputs),
        ..Decision::default()
    };
    let timing = Timing::parse(&spec.schedule, spec.time_zone.as_deref()).and_then(|timing| {
        check_template(spec, &timing, inputs.now)?;
        Ok(timing)
    });
    set_conditions(&mut decision.status, inputs, timing.as_ref().err());
    let Ok(timing) = timing else {
        return decision;
    };
    if spec.suspend {
        decision.status.next_schedule_time = None;
        return decision;
    }
    decision.next = timing.next_after(inputs.now);
    decision.status.next_schedule_time = decision.next.map(Time);
    match timing.due(last_scheduled(inputs), inputs.now, spec.starting_deadline_seconds) {
        Due::Nothing => {}
        Due::TooLate { time } => decision.notes.push(Note::TooLate { time }),
        Due::Run { time, skipped } => {
            if skipped > 0 {
                decision.notes.push(Note::Skipped { count: skipped });
            }
            start(&mut decision, spec.concurrency_policy, time, inputs.runs);
        }
    }
    decision
}

fn start(decision: &mut Decision, policy: ConcurrencyPolicy, time: Timestamp, runs: &[ObservedRun]) {
    let active: Vec<String> = runs
        .iter()
        .filter(|r| r.outcome == RunOutcome::Active && !r.deleting)
        .map(|r| r.summary.name.clone())
        .collect();
    match policy {
        ConcurrencyPolicy::Forbid if !active.is_empty() => {
            decision.notes.push(Note::Forbidden { time, active });
            return;
        }
        ConcurrencyPolicy::Replace => decision.replace = active,
        _ => {}
    }
    decision.start = Some(time);
    decision.status.last_schedule_time = Some(Time(time));
}

/// The time of the latest run created: by the status, the runs seen or this process's memory;
/// the schedule's creation when none was.
fn last_scheduled(inputs: &Inputs) -> Timestamp {
    let from_status = inputs.status.last_schedule_time.as_ref().map(|t| t.0);
    let seen = inputs.runs.iter().map(|r| r.scheduled).max();
    [from_status, seen, inputs.remembered]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(inputs.created)
}

/// Finished runs beyond `successfulRunsHistoryLimit` and `failedRunsHistoryLimit`, newest kept.
fn prune(spec: &BatchScheduleSpec, runs: &[ObservedRun]) -> Vec<String> {
    let mut finished: Vec<&ObservedRun> = runs
        .iter()
        .filter(|r| r.outcome != RunOutcome::Active && !r.deleting)
        .collect();
    finished.sort_by_key(|r| std::cmp::Reverse(r.scheduled));
    let mut kept = (0, 0);
    let mut pruned = Vec::new();
    for run in finished {
        let (count, limit) = match run.outcome {
            RunOutcome::Succeeded => (&mut kept.0, spec.successful_runs_history_limit),
            _ => (&mut kept.1, spec.failed_runs_history_limit),
        };
        *count += 1;
        if *count > limit {
            pruned.push(run.summary.name.clone());
        }
    }
    pruned
}

/// The status the runs show: active ones, the latest result, the list newest first.
fn summarize(inputs: &Inputs) -> BatchScheduleStatus {
    let mut status = inputs.status.clone();
    let mut runs: Vec<&ObservedRun> = inputs.runs.iter().filter(|r| !r.deleting).collect();
    runs.sort_by_key(|r| std::cmp::Reverse(r.scheduled));
    status.observed_generation = inputs.generation;
    status.active = runs
        .iter()
        .filter(|r| r.outcome == RunOutcome::Active)
        .map(|r| r.summary.name.clone())
        .collect();
    status.active_runs = status.active.len() as u32;
    let latest_finished = inputs
        .runs
        .iter()
        .filter(|r| r.outcome != RunOutcome::Active)
        .max_by_key(|r| r.scheduled);
    if let Some(run) = latest_finished {
        status.last_result = run.summary.phase.clone();
    }
    let succeeded = inputs
        .runs
        .iter()
        .filter(|r| r.outcome == RunOutcome::Succeeded)
        .filter_map(|r| r.summary.completion_time.clone());
    status.last_successful_time = status.last_successful_time.clone().into_iter().chain(succeeded).max();
    if let Some(seen) = inputs.runs.iter().map(|r| r.scheduled).max()
        && status.last_schedule_time.as_ref().is_none_or(|t| t.0 < seen)
    {
        status.last_schedule_time = Some(Time(seen));
    }
    status.runs = runs.iter().take(MAX_LISTED_RUNS).map(|r| r.summary.clone()).collect();
    status
}

fn set_conditions(status: &mut BatchScheduleStatus, inputs: &Inputs, invalid: Option<&InvalidField>) {
    let (generation, now) = (inputs.generation, inputs.now);
    let conditions = &mut status.conditions;
    match invalid {
        Some(e) => conditions.set_condition(ct::READY, false, reasons::SPEC_INVALID, e.to_string(), generation, now),
        None => {
            let message = "the schedule and its template can be used";
            conditions.set_condition(ct::READY, true, reasons::SCHEDULED, message, generation, now);
        }
    }
    if inputs.spec.suspend {
        let message = "suspend is set: no new run starts";
        conditions.set_condition(
            ct::SUSPENDED,
            true,
            reasons::SUSPEND_REQUESTED,
            message,
            generation,
            now,
        );
    } else if conditions.condition(ct::SUSPENDED).is_some() {
        conditions.set_condition(
            ct::SUSPENDED,
            false,
            reasons::RESUMED,
            "runs start again",
            generation,
            now,
        );
    }
}
