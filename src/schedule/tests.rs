//! The schedule decisions, time passed in.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;
use crate::api::{BatchScheduleSpec, BatchScheduleStatus, Conditions, ScheduledRun};

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn spec(extra: serde_json::Value) -> BatchScheduleSpec {
    let mut value = serde_json::json!({
        "schedule": "* * * * *",
        "batchTemplate": {"gatewayRef": {"name": "gw"}, "endpoint": "/v1/chat/completions",
                          "input": {"configMap": {"name": "tickets-${date}", "key": "batch.jsonl"}}}});
    for (k, v) in extra.as_object().unwrap() {
        value[k] = v.clone();
    }
    serde_json::from_value(value).unwrap()
}

fn run(time: &str, outcome: RunOutcome) -> ObservedRun {
    let scheduled = at(time);
    let phase = match outcome {
        RunOutcome::Active => "InProgress",
        RunOutcome::Succeeded => "Succeeded",
        RunOutcome::Failed => "Failed",
    };
    ObservedRun {
        summary: ScheduledRun {
            name: run_name("nightly", scheduled),
            scheduled_time: Time(scheduled),
            phase: Some(phase.into()),
            completion_time: (outcome != RunOutcome::Active).then_some(Time(scheduled)),
            request_counts: None,
            usage: None,
            cost: None,
        },
        scheduled,
        outcome,
        deleting: false,
    }
}

struct Case {
    spec: BatchScheduleSpec,
    status: BatchScheduleStatus,
    created: Timestamp,
    runs: Vec<ObservedRun>,
}

impl Case {
    fn new(spec: BatchScheduleSpec) -> Self {
        Case {
            spec,
            status: BatchScheduleStatus::default(),
            created: at("2026-01-31T01:59:30Z"),
            runs: Vec::new(),
        }
    }

    fn at(&self, now: &str) -> Decision {
        decide(&Inputs {
            spec: &self.spec,
            generation: Some(1),
            status: &self.status,
            created: self.created,
            remembered: None,
            runs: &self.runs,
            now: at(now),
        })
    }
}

#[test]
fn runs_are_named_by_their_minute() {
    assert_eq!(run_name("nightly", at("2026-01-31T02:00:00Z")), "nightly-29497080");
    assert_eq!(run_name("nightly", at("2026-01-31T02:00:59Z")), "nightly-29497080");
}

#[test]
fn each_minute_starts_one_run_and_the_same_minute_none_again() {
    let mut case = Case::new(spec(serde_json::json!({})));
    assert_eq!(
        case.at("2026-01-31T01:59:50Z").start,
        None,
        "nothing scheduled since creation"
    );
    let first = case.at("2026-01-31T02:00:10Z");
    assert_eq!(first.start, Some(at("2026-01-31T02:00:00Z")));
    assert_eq!(first.next, Some(at("2026-01-31T02:01:00Z")));
    assert_eq!(first.status.last_schedule_time, Some(Time(at("2026-01-31T02:00:00Z"))));

    // Restarted within the minute: the status written, or only the run seen, stops a second.
    case.status = first.status.clone();
    assert_eq!(case.at("2026-01-31T02:00:40Z").start, None);
    case.status = BatchScheduleStatus::default();
    case.runs.push(run("2026-01-31T02:00:00Z", RunOutcome::Active));
    assert_eq!(case.at("2026-01-31T02:00:40Z").start, None);
    assert_eq!(case.at("2026-01-31T02:01:05Z").start, Some(at("2026-01-31T02:01:00Z")));
}

#[test]
fn after_three_hours_down_only_the_latest_time_within_the_deadline_runs() {
    let mut case = Case::new(spec(
        serde_json::json!({"schedule": "0 * * * *", "startingDeadlineSeconds": 7200}),
    ));
    case.runs.push(run("2026-01-31T10:00:00Z", RunOutcome::Succeeded));
    let d = case.at("2026-01-31T13:30:00Z");
    assert_eq!(d.start, Some(at("2026-01-31T13:00:00Z")));
    assert_eq!(d.notes, [Note::Skipped { count: 2 }]);

    let mut late = Case::new(spec(
        serde_json::json!({"schedule": "0 * * * *", "startingDeadlineSeconds": 600}),
    ));
    late.runs = case.runs.clone();
    let d = late.at("2026-01-31T13:30:00Z");
    assert_eq!(d.start, None);
    assert_eq!(
        d.notes,
        [Note::TooLate {
            time: at("2026-01-31T13:00:00Z")
        }]
    );
}

#[test]
fn forbid_waits_for_the_active_run_and_replace_deletes_it() {
    let mut forbid = Case::new(spec(serde_json::json!({"concurrencyPolicy": "Forbid"})));
    forbid.runs.push(run("2026-01-31T02:00:00Z", RunOutcome::Active));
    let d = forbid.at("2026-01-31T02:01:10Z");
    assert_eq!(d.start, None);
    assert_eq!(
        d.notes,
        [Note::Forbidden {
            time: at("2026-01-31T02:01:00Z"),
            active: vec!["nightly-29497080".into()]
        }]
    );
    assert_eq!(
        d.status.last_schedule_time,
        Some(Time(at("2026-01-31T02:00:00Z"))),
        "not advanced"
    );
    forbid.runs[0] = run("2026-01-31T02:00:00Z", RunOutcome::Succeeded);
    assert_eq!(
        forbid.at("2026-01-31T02:01:30Z").start,
        Some(at("2026-01-31T02:01:00Z")),
        "the held run starts"
    );

    let mut replace = Case::new(spec(serde_json::json!({"concurrencyPolicy": "Replace"})));
    replace.runs.push(run("2026-01-31T02:00:00Z", RunOutcome::Active));
    let d = replace.at("2026-01-31T02:01:10Z");
    assert_eq!(d.start, Some(at("2026-01-31T02:01:00Z")));
    assert_eq!(d.replace, ["nightly-29497080"]);

    let mut allow = Case::new(spec(serde_json::json!({})));
    allow.runs = replace.runs.clone();
    let d = allow.at("2026-01-31T02:01:10Z");
    assert_eq!((d.start.is_some(), d.replace.len()), (true, 0));
}

#[test]
fn suspend_starts_nothing_and_says_so() {
    let case = Case::new(spec(serde_json::json!({"suspend": true})));
    let d = case.at("2026-01-31T02:05:00Z");
    assert_eq!(
        (d.start, d.next, d.status.next_schedule_time.clone()),
        (None, None, None)
    );
    assert!(d.status.conditions.is_true("Suspended"));
}

#[test]
fn history_limits_keep_the_newest_of_each_outcome() {
    let mut case = Case::new(spec(
        serde_json::json!({"successfulRunsHistoryLimit": 2, "failedRunsHistoryLimit": 1}),
    ));
    for (minute, outcome) in [
        ("00", RunOutcome::Succeeded),
        ("01", RunOutcome::Failed),
        ("02", RunOutcome::Succeeded),
        ("03", RunOutcome::Failed),
        ("04", RunOutcome::Succeeded),
        ("05", RunOutcome::Active),
    ] {
        case.runs.push(run(&format!("2026-01-31T02:{minute}:00Z"), outcome));
    }
    let d = case.at("2026-01-31T02:05:30Z");
    let name = |m: &str| run_name("nightly", at(&format!("2026-01-31T02:{m}:00Z")));
    assert_eq!(d.prune, [name("01"), name("00")]);
    assert_eq!(d.status.active, [name("05")]);
    assert_eq!(d.status.active_runs, 1);
    assert_eq!(d.status.last_result.as_deref(), Some("Succeeded"));
    assert_eq!(d.status.runs[0].name, name("05"), "newest first");
}

#[test]
fn an_unusable_schedule_or_template_is_a_false_ready_condition_naming_the_field() {
    let case = Case::new(spec(serde_json::json!({"timeZone": "Nowhere/Land"})));
    let d = case.at("2026-01-31T02:05:00Z");
    assert_eq!(d.start, None);
    let ready = d.status.conditions.condition("Ready").unwrap();
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "SpecInvalid"));
    assert!(ready.message.starts_with("spec.timeZone:"), "{}", ready.message);

    let mut bad = spec(serde_json::json!({}));
    bad.batch_template
        .as_mut()
        .unwrap()
        .input
        .config_map
        .as_mut()
        .unwrap()
        .name = "t-${when}".into();
    let d = Case::new(bad).at("2026-01-31T02:05:00Z");
    let ready = d.status.conditions.condition("Ready").unwrap();
    assert!(
        ready.message.starts_with("spec.batchTemplate.input.configMap.name:"),
        "{}",
        ready.message
    );
}

#[test]
fn a_run_spec_holds_the_scheduled_time_in_the_zone() {
    let s = spec(serde_json::json!({"timeZone": "Asia/Tokyo"}));
    let timing = Timing::parse(&s.schedule, s.time_zone.as_deref()).unwrap();
    let RunSpec::Batch(batch) = run_spec(&s, &timing, at("2026-01-31T23:30:00Z")).unwrap() else {
        panic!("a batch template makes a Batch");
    };
    assert_eq!(batch.input.config_map.unwrap().name, "tickets-2026-02-01");
}
