//! The events a Batch or BatchSweep owes its webhook, as CloudEvents 1.0 in JSON (structured
//! mode): `io.llmbatch.batch.succeeded|failed|expired|cancelled`,
//! `io.llmbatch.batch.budget.held` (held by its gateway's money budget) and
//! `io.llmbatch.sweep.succeeded|failed`. `data` carries the object's reference and the figures
//! its status shows (counts, usage, cost) in the status's own field names.

use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde_json::{Value, json};

use crate::api::{
    Batch, BatchPhase, BatchStatus, BatchSweep, BatchSweepStatus, Conditions, GROUP, condition_types as ct, reasons,
};

/// The prefix of every event type.
pub const TYPE_PREFIX: &str = "io.llmbatch.";
const API_VERSION: &str = "llmbatch.io/v1alpha1";

/// One event, ready to send: the same type, id and body on every attempt.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub type_: String,
    pub id: String,
    /// The CloudEvent as JSON.
    pub body: Vec<u8>,
}

/// The events a Batch owes: its end, and its first hold by the gateway's money budget.
pub fn batch_events(batch: &Batch, status: &BatchStatus) -> Vec<Event> {
    let mut events = Vec::new();
    let held = status
        .conditions
        .condition(ct::ADMITTED)
        .filter(|c| c.status == "False" && c.reason == reasons::BUDGET_EXHAUSTED);
    if let Some(held) = held {
        let data = batch_data(batch, status, &held.message);
        events.push(event(
            batch,
            "batches",
            "batch.budget.held",
            held.last_transition_time.0,
            data,
        ));
    }
    if let Some(phase) = status.phase.filter(|p| p.is_terminal()) {
        let data = batch_data(batch, status, &status.headline());
        let suffix = format!("batch.{}", phase.to_string().to_lowercase());
        events.push(event(
            batch,
            "batches",
            &suffix,
            finished_at(status.completion_time.as_ref()),
            data,
        ));
    }
    events
}

/// The events a BatchSweep owes: its end.
pub fn sweep_events(sweep: &BatchSweep, status: &BatchSweepStatus) -> Vec<Event> {
    let Some(phase) = status.phase.filter(|p| p.is_terminal()) else {
        return Vec::new();
    };
    let mut data = reference(sweep, &phase.to_string());
    let fields = json!({
        "message": status.progress,
        "batches": status.batches,
        "requestCounts": status.request_counts,
        "usage": status.usage,
        "cost": status.cost,
    });
    merge(&mut data, fields);
    let suffix = format!("sweep.{}", phase.to_string().to_lowercase());
    vec![event(
        sweep,
        "batchsweeps",
        &suffix,
        finished_at(status.completion_time.as_ref()),
        data,
    )]
}

fn batch_data(batch: &Batch, status: &BatchStatus, message: &str) -> Value {
    let phase = status.phase.unwrap_or(BatchPhase::Pending).to_string();
    let mut data = reference(batch, &phase);
    let gateway = status.gateway.clone().unwrap_or_default();
    let fields = json!({
        "message": message,
        "batchId": gateway.batch_id,
        "requestCounts": status.request_counts,
        "usage": status.usage,
        "cost": status.cost,
        "output": status.output,
    });
    merge(&mut data, fields);
    data
}

/// Which object, and where it stands.
fn reference<K: Resource<DynamicType = ()>>(object: &K, phase: &str) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": K::kind(&()),
        "namespace": object.namespace().unwrap_or_default(),
        "name": object.name_any(),
        "uid": object.uid().unwrap_or_default(),
        "phase": phase,
    })
}

/// Adds the fields of `more` that have a value (a Batch without a price has no `cost`).
fn merge(data: &mut Value, more: Value) {
    let (Value::Object(data), Value::Object(more)) = (data, more) else {
        return;
    };
    data.extend(more.into_iter().filter(|(_, v)| !v.is_null()));
}

fn finished_at(completion: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>) -> Timestamp {
    completion.map_or_else(Timestamp::now, |t| t.0)
}

/// `at` to the second: the API server keeps seconds, so the event a reconcile sends right after
/// the step reads the same as one sent again from the stored status.
fn to_second(at: Timestamp) -> Timestamp {
    Timestamp::from_second(at.as_second()).unwrap_or(at)
}

/// The CloudEvent `io.llmbatch.<suffix>` of `object`; its id is the object's uid and the
/// suffix, so every attempt (and every controller) sends the same id.
fn event<K: Resource<DynamicType = ()>>(object: &K, plural: &str, suffix: &str, time: Timestamp, data: Value) -> Event {
    let type_ = format!("{TYPE_PREFIX}{suffix}");
    let id = format!("{}.{suffix}", object.uid().unwrap_or_default());
    let source = format!(
        "/apis/{GROUP}/v1alpha1/namespaces/{}/{plural}/{}",
        object.namespace().unwrap_or_default(),
        object.name_any()
    );
    let cloud_event = CloudEvent {
        specversion: "1.0",
        id: &id,
        source: &source,
        type_: &type_,
        subject: object.name_any(),
        time: to_second(time).to_string(),
        datacontenttype: "application/json",
        data,
    };
    let body = serde_json::to_vec(&cloud_event).expect("a CloudEvent serializes");
    Event { type_, id, body }
}

#[derive(Serialize)]
struct CloudEvent<'a> {
    specversion: &'static str,
    id: &'a str,
    source: &'a str,
    #[serde(rename = "type")]
    type_: &'a str,
    subject: String,
    time: String,
    datacontenttype: &'static str,
    data: Value,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Cost, RequestCounts};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn batch(status: BatchStatus) -> Batch {
        let mut batch: Batch = serde_json::from_value(json!({
            "apiVersion": API_VERSION, "kind": "Batch",
            "metadata": {"name": "nightly", "namespace": "team-a", "uid": "u-1"},
            "spec": {"gatewayRef": {"name": "openai"}, "endpoint": "/v1/chat/completions",
                     "input": {"configMap": {"name": "in", "key": "requests.jsonl"}}},
        }))
        .unwrap();
        batch.status = Some(status);
        batch
    }

    fn parsed(event: &Event) -> Value {
        serde_json::from_slice(&event.body).unwrap()
    }

    #[test]
    fn a_running_batch_owes_nothing_and_a_finished_one_its_end() {
        let running = BatchStatus {
            phase: Some(BatchPhase::InProgress),
            ..Default::default()
        };
        assert!(batch_events(&batch(running.clone()), &running).is_empty());
        let done = BatchStatus {
            phase: Some(BatchPhase::Succeeded),
            completion_time: Some(Time("2026-12-04T02:00:00Z".parse().unwrap())),
            request_counts: Some(RequestCounts {
                total: 3,
                completed: 2,
                failed: 1,
                ..Default::default()
            }),
            cost: Some(Cost {
                currency: "USD".into(),
                actual: "0.0123".into(),
                display: "0.0123 USD".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let events = batch_events(&batch(done.clone()), &done);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].type_, "io.llmbatch.batch.succeeded");
        assert_eq!(events[0].id, "u-1.batch.succeeded");
        let ce = parsed(&events[0]);
        assert_eq!(ce["specversion"], "1.0");
        assert_eq!(
            ce["source"],
            "/apis/llmbatch.io/v1alpha1/namespaces/team-a/batches/nightly"
        );
        assert_eq!(ce["time"], "2026-12-04T02:00:00Z");
        assert_eq!(ce["data"]["kind"], "Batch");
        assert_eq!(ce["data"]["requestCounts"]["failed"], 1);
        assert_eq!(ce["data"]["cost"]["actual"], "0.0123");
        assert!(ce["data"].get("usage").is_none(), "no usage, no field: {ce}");
        assert_eq!(
            events,
            batch_events(&batch(done.clone()), &done),
            "the same event on every attempt"
        );
    }

    #[test]
    fn a_batch_held_by_the_money_budget_owes_budget_held() {
        let mut held = BatchStatus {
            phase: Some(BatchPhase::Pending),
            ..Default::default()
        };
        let at = "2026-12-04T01:00:00Z".parse().unwrap();
        held.conditions.set_condition(
            ct::ADMITTED,
            false,
            reasons::BUDGET_EXHAUSTED,
            "the budget of 10 USD per day is spent",
            None,
            at,
        );
        let events = batch_events(&batch(held.clone()), &held);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].type_, "io.llmbatch.batch.budget.held");
        let ce = parsed(&events[0]);
        assert_eq!(ce["data"]["message"], "the budget of 10 USD per day is spent");
        assert_eq!(ce["time"], "2026-12-04T01:00:00Z");
    }
}
