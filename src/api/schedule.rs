//! `BatchSchedule`: a Batch or a BatchSweep run on a cron schedule, the CronJob of this API.
//! Each run is a child owned by the schedule and named from its scheduled time.

// clippy reads the repeated `type_ = ...` inside printcolumn(...) as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{BatchSpec, BatchSweepSpec, RequestCounts, Usage};

/// Runs listed in `status.runs` at most (the history limits keep fewer in practice).
pub const MAX_LISTED_RUNS: usize = 20;
/// The longest schedule name: its runs are `<name>-<unix minutes>`, and a run's name must stay a
/// label value (63 characters), as the sweep label and Job names need.
pub const MAX_SCHEDULE_NAME: usize = 52;

/// A Batch or BatchSweep created on a cron schedule: exactly once per scheduled time, with the
/// scheduled time in its input and output paths.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "llmbatch.io",
    version = "v1alpha1",
    kind = "BatchSchedule",
    namespaced,
    status = "BatchScheduleStatus",
    shortname = "lbsched",
    category = "llmbatch",
    doc = "A Batch or BatchSweep run on a cron schedule, once per scheduled time.",
    validation = Rule::new("size(self.metadata.name) <= 52")
        .message("a BatchSchedule's name is at most 52 characters (its runs add -<unix minutes>)"),
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(name = "Suspend", type_ = "boolean", json_path = ".spec.suspend"),
    printcolumn(name = "Active", type_ = "integer", json_path = ".status.activeRuns"),
    printcolumn(name = "Last Schedule", type_ = "date", json_path = ".status.lastScheduleTime"),
    printcolumn(name = "Last Result", type_ = "string", json_path = ".status.lastResult"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.batchTemplate), has(self.sweepTemplate)].filter(x, x).size() == 1")
    .message("give exactly one of batchTemplate or sweepTemplate"))]
pub struct BatchScheduleSpec {
    /// When runs start: five cron fields (minute hour day-of-month month day-of-week, e.g.
    /// `0 2 * * *`) or a macro (`@yearly`, `@monthly`, `@weekly`, `@daily`, `@midnight`,
    /// `@hourly`), in `timeZone`.
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(validation = Rule::new(CRON_SHAPE)
        .message("schedule must be five cron fields (e.g. '0 2 * * *') or a macro such as @daily"))]
    pub schedule: String,
    /// The IANA time zone the schedule and the placeholders are read in (`Europe/Paris`);
    /// UTC when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9_+/-]+$"))]
    pub time_zone: Option<String>,
    /// The Batch each run creates. `${date}`, `${time}` and `${datetime}` in its input and
    /// output names and URLs become the run's scheduled time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "batch_template_schema")]
    pub batch_template: Option<BatchSpec>,
    /// The BatchSweep each run creates (placeholders as in `batchTemplate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "sweep_template_schema")]
    pub sweep_template: Option<BatchSweepSpec>,
    /// What a scheduled time does while an earlier run is still active.
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,
    /// A run not started within this many seconds of its scheduled time (the controller was
    /// down, or `Forbid` held it back) is skipped. Without it, a late run still starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub starting_deadline_seconds: Option<i64>,
    /// Succeeded runs kept; older ones are deleted (with their deletion policy upstream).
    #[serde(default = "default_successful_history")]
    #[schemars(range(min = 0, max = 10))]
    pub successful_runs_history_limit: u32,
    /// Failed, expired or cancelled runs kept.
    #[serde(default = "default_failed_history")]
    #[schemars(range(min = 0, max = 10))]
    pub failed_runs_history_limit: u32,
    /// No new run starts while true; active runs go on.
    #[serde(default)]
    pub suspend: bool,
}

/// Five fields of cron characters, or an `@` macro. The full check (ranges, names) is the
/// controller's, which reports it as the `Ready` condition.
const CRON_SHAPE: &str = r"self.matches('^\\s*(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|[0-9A-Za-z*/,?#-]+(\\s+[0-9A-Za-z*/,?#-]+){4})\\s*$')";

fn default_successful_history() -> u32 {
    3
}

fn default_failed_history() -> u32 {
    1
}

/// What happens at a scheduled time while an earlier run is active (as a CronJob's).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ConcurrencyPolicy {
    /// The new run starts beside the active ones.
    #[default]
    Allow,
    /// The new run waits until none is active (within `startingDeadlineSeconds`).
    Forbid,
    /// The active runs are deleted (a Batch with `deletionPolicy: Cancel` cancels its upstream
    /// batch) and the new run starts.
    Replace,
}

fn batch_template_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    template_schema::<BatchSpec>(generator)
}

fn sweep_template_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    template_schema::<BatchSweepSpec>(generator)
}

/// The schema of a template: the kind's spec without its transition rules (`oldSelf`), which
/// guard a created object and would otherwise freeze the schedule's template.
fn template_schema<T: JsonSchema>(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut value: Value = generator.subschema_for::<T>().into();
    drop_transition_rules(&mut value);
    schemars::Schema::try_from(value).expect("a schema stays a schema")
}

fn drop_transition_rules(value: &mut Value) {
    match value {
        Value::Object(fields) => {
            if let Some(Value::Array(rules)) = fields.get_mut("x-kubernetes-validations") {
                rules.retain(|r| !r["rule"].as_str().is_some_and(|rule| rule.contains("oldSelf")));
                if rules.is_empty() {
                    fields.remove("x-kubernetes-validations");
                }
            }
            fields.values_mut().for_each(drop_transition_rules);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_transition_rules),
        _ => {}
    }
}

/// What the controller knows about a schedule; its runs are the children it owns.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchScheduleStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The scheduled time of the latest run created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// When the latest run that succeeded finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<Time>,
    /// The next scheduled time (none while suspended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<Time>,
    /// The phase of the latest finished run: Succeeded, Failed, Expired or Cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_result: Option<String>,
    /// Runs not finished.
    #[serde(default)]
    pub active_runs: u32,
    /// The names of the runs not finished.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active: Vec<String>,
    /// The runs the schedule keeps, newest first (at most 20).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub runs: Vec<ScheduledRun>,
    /// Ready (the schedule and templates can be used) and Suspended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

/// One run: a child Batch or BatchSweep.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledRun {
    /// The child's name, `<schedule>-<scheduled time in unix minutes>`.
    pub name: String,
    /// The time it was scheduled for.
    pub scheduled_time: Time,
    /// The child's phase (a Batch's or a BatchSweep's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Its request lines by outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_counts: Option<RequestCounts>,
    /// Its tokens (without the per-model split, which the child keeps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// What it cost, as its Cost column shows it (with a priced gateway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<String>,
}

/// Condition types of a BatchSchedule.
pub mod schedule_conditions {
    /// The schedule, time zone and template can make runs (False: which field cannot, and why).
    pub const READY: &str = "Ready";
    /// `suspend` is set: no new run starts.
    pub const SUSPENDED: &str = "Suspended";
}

/// Reasons of a BatchSchedule's conditions (CamelCase, stable: alerting keys on them).
pub mod schedule_reasons {
    /// Runs start at the scheduled times.
    pub const SCHEDULED: &str = "Scheduled";
    /// The schedule, time zone or template cannot be used.
    pub const SPEC_INVALID: &str = "SpecInvalid";
    pub const SUSPEND_REQUESTED: &str = "SuspendRequested";
    pub const RESUMED: &str = "Resumed";
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;

    use super::*;

    /// A template can be edited: the rules that freeze a created Batch's input and endpoint
    /// (`oldSelf`) are not the schedule's, and every other rule of the kind is.
    #[test]
    fn templates_keep_their_kinds_rules_but_not_the_transition_rules() {
        let crd = serde_json::to_string(&BatchSchedule::crd()).unwrap();
        assert!(!crd.contains("oldSelf"), "a transition rule in the schedule's schema");
        assert!(
            crd.contains("input needs exactly one source"),
            "the Batch's own rules are kept"
        );
        assert!(
            serde_json::to_string(&super::super::Batch::crd())
                .unwrap()
                .contains("oldSelf")
        );
    }

    #[test]
    fn cel_checks_the_schedule_shape_and_the_one_template_rule() {
        let schedule = |spec: serde_json::Value| -> BatchSchedule {
            serde_json::from_value(
                serde_json::json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "BatchSchedule",
                "metadata": {"name": "nightly"}, "spec": spec}),
            )
            .unwrap()
        };
        let template = serde_json::json!({"gatewayRef": {"name": "gw"}, "endpoint": "/v1/chat/completions",
            "input": {"configMap": {"name": "in-${date}", "key": "k"}}});
        for good in ["0 2 * * *", "@daily", " */5 9-17 * * MON-FRI "] {
            let broken = super::super::broken_rules(&schedule(
                serde_json::json!({"schedule": good, "batchTemplate": template}),
            ));
            assert!(broken.is_empty(), "{good}: {broken:?}");
        }
        let broken = super::super::broken_rules(&schedule(
            serde_json::json!({"schedule": "0 0 2 * * *", "batchTemplate": template}),
        ));
        assert!(broken.iter().any(|b| b.contains("five cron fields")), "{broken:?}");
        let broken = super::super::broken_rules(&schedule(serde_json::json!({"schedule": "@daily"})));
        assert!(
            broken.iter().any(|b| b.contains("exactly one of batchTemplate")),
            "{broken:?}"
        );
    }
}
