//! `describe NAME`: what a person asks of a Batch or BatchSweep (or BatchSchedule): the spec's
//! essentials, the status (ids, counts, usage, cost, input), the conditions, the recent Events
//! about it, and a sweep's children. Secrets appear by name only, never their data.

use std::fmt::Write as _;
use std::process::ExitCode;

use k8s_openapi::api::core::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use super::lookup::{self, ALL_KINDS, Found};
use super::table::{Table, age, or_none};
use super::{KubeFlags, PluginError, api_error, config};
use crate::api::{Batch, BatchInput, BatchOutput, BatchSchedule, BatchSweep, Cost, RequestCounts, Usage};

/// Flags of `describe`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  kubectl llmbatch describe ticket-triage
  kubectl llmbatch describe sweep/eval -n team-a")]
pub struct DescribeArgs {
    /// The Batch, BatchSweep or BatchSchedule: NAME, or KIND/NAME when several kinds share it.
    pub name: String,
}

/// Annotations too long or too internal to show (kubectl describe leaves the first out too).
const HIDDEN_ANNOTATIONS: [&str; 1] = ["kubectl.kubernetes.io/last-applied-configuration"];

pub async fn run(flags: &KubeFlags, args: DescribeArgs) -> Result<ExitCode, PluginError> {
    let (client, namespace) = config::connect(flags).await?;
    let found = lookup::one(&client, &namespace, &args.name, &ALL_KINDS).await?;
    let (text, uid) = match &found {
        Found::Batch(b) => (batch(b), b.uid()),
        Found::Sweep(s) => (sweep(s), s.uid()),
        Found::Schedule(s) => (schedule(s), s.uid()),
    };
    let events = match uid {
        Some(uid) => events(&client, &namespace, &uid).await?,
        None => "<none>\n".into(),
    };
    print!("{text}Events:\n{events}");
    Ok(ExitCode::SUCCESS)
}

/// Lines `label: value`, values aligned, under `indent` spaces.
#[derive(Default)]
struct Fields {
    pairs: Vec<(String, String)>,
}

impl Fields {
    fn add(&mut self, label: &str, value: impl ToString) -> &mut Self {
        self.pairs.push((label.to_string(), value.to_string()));
        self
    }

    fn opt(&mut self, label: &str, value: Option<impl ToString>) -> &mut Self {
        if let Some(value) = value {
            self.add(label, value);
        }
        self
    }

    fn write(&self, out: &mut String, indent: usize) {
        let width = self.pairs.iter().map(|(l, _)| l.len()).max().unwrap_or(0) + 2;
        for (label, value) in &self.pairs {
            let label = format!("{label}:");
            let _ = writeln!(out, "{:indent$}{label:width$}{value}", "");
        }
    }
}

fn metadata(out: &mut String, kind: &str, meta: &ObjectMeta) {
    let mut fields = Fields::default();
    fields
        .add("Name", meta.name.clone().unwrap_or_default())
        .add("Namespace", meta.namespace.clone().unwrap_or_default())
        .add("Kind", kind)
        .add(
            "Labels",
            pairs(meta.labels.iter().flatten().map(|(k, v)| format!("{k}={v}"))),
        )
        .add(
            "Annotations",
            pairs(
                meta.annotations
                    .iter()
                    .flatten()
                    .filter(|(k, _)| !HIDDEN_ANNOTATIONS.contains(&k.as_str()))
                    .map(|(k, v)| format!("{k}: {v}")),
            ),
        )
        .add("Created", when(meta.creation_timestamp.as_ref()));
    fields.write(out, 0);
}

fn pairs(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.collect();
    match items.is_empty() {
        true => "<none>".into(),
        false => items.join(", "),
    }
}

/// `2026-12-04T20:45:10Z (5m ago)`.
fn when(time: Option<&Time>) -> String {
    match time {
        Some(t) => format!("{} ({} ago)", t.0, age(Some(t))),
        None => "<none>".into(),
    }
}

fn input(input: &BatchInput) -> String {
    let source = if let Some(r) = &input.config_map {
        format!("ConfigMap {} (key {})", r.name, r.key)
    } else if let Some(r) = &input.secret {
        format!("Secret {} (key {})", r.name, r.key)
    } else if let Some(id) = &input.file_id {
        format!("file {id} on the gateway")
    } else if let Some(requests) = &input.requests {
        format!("{} inline requests", requests.len())
    } else if let Some(store) = &input.object_store {
        format!("object {}", store.url)
    } else {
        "<none>".into()
    };
    match &input.byte_range {
        Some(range) => format!("{source}, bytes {}..{}", range.start, range.end),
        None => source,
    }
}

fn output(output: Option<&BatchOutput>) -> String {
    match output {
        Some(BatchOutput { secret: Some(s), .. }) => format!("Secret {}", s.name),
        Some(BatchOutput {
            object_store: Some(o), ..
        }) => format!("objects under {}", o.url),
        Some(BatchOutput { pvc: Some(p), .. }) => format!("PersistentVolumeClaim {} path {:?}", p.claim_name, p.path),
        _ => "none (results stay on the gateway)".into(),
    }
}

fn counts(c: &RequestCounts) -> String {
    let not_run = c.not_run.map(|n| format!(", {n} not run")).unwrap_or_default();
    format!(
        "{} total, {} completed, {} failed{not_run}",
        c.total, c.completed, c.failed
    )
}

fn usage(u: &Usage) -> String {
    format!(
        "{} tokens ({} prompt, {} completion)",
        u.total_tokens, u.prompt_tokens, u.completion_tokens
    )
}

fn cost(c: &Cost) -> String {
    let mut text = c.display.clone();
    if let Some(estimated) = &c.estimated {
        let _ = write!(text, " (estimated {estimated} {})", c.currency);
    }
    text
}

fn batch(b: &Batch) -> String {
    let mut out = String::new();
    metadata(&mut out, "Batch", &b.metadata);
    out.push_str("Spec:\n");
    let spec = &b.spec;
    let mut fields = Fields::default();
    fields
        .add("Gateway", &spec.gateway_ref.name)
        .add("Endpoint", spec.endpoint)
        .add("Input", input(&spec.input))
        .opt("Model", spec.input.overrides.as_ref().and_then(|o| o.model.clone()))
        .add("Output", output(spec.output.as_ref()))
        .add("Completion Window", &spec.completion_window)
        .add("Cancel", spec.cancel)
        .opt(
            "TTL After Finished",
            spec.ttl_seconds_after_finished.map(|s| format!("{s}s")),
        )
        .opt("Notify", spec.notify.as_ref().map(webhook));
    fields.write(&mut out, 2);
    out.push_str("Status:\n");
    let status = b.status.clone().unwrap_or_default();
    let gateway = status.gateway.clone().unwrap_or_default();
    let mut fields = Fields::default();
    fields
        .add("Phase", or_none(status.phase))
        .add("Headline", status.headline())
        .opt("Mode", status.mode)
        .opt("Started", status.start_time.as_ref().map(|t| when(Some(t))))
        .opt("Submitted", status.submit_time.as_ref().map(|t| when(Some(t))))
        .opt("Completed", status.completion_time.as_ref().map(|t| when(Some(t))))
        .opt("Batch ID", gateway.batch_id)
        .opt("Gateway Status", gateway.status)
        .opt("Input File ID", gateway.input_file_id)
        .opt("Output File ID", gateway.output_file_id)
        .opt("Error File ID", gateway.error_file_id)
        .opt("Requests", status.request_counts.as_ref().map(counts))
        .opt("Usage", status.usage.as_ref().map(usage))
        .opt("Cost", status.cost.as_ref().map(cost))
        .opt(
            "Input",
            status
                .input
                .as_ref()
                .map(|i| format!("{} requests, {} bytes", i.requests, i.bytes)),
        )
        .opt("Input Digest", status.input.as_ref().and_then(|i| i.digest.clone()))
        .opt(
            "Estimated Tokens",
            status.input.as_ref().and_then(|i| i.estimated_tokens),
        )
        .opt("Results", status.output.as_ref().map(results));
    fields.write(&mut out, 2);
    if let Some(usage) = status.usage.as_ref().filter(|u| !u.by_model.is_empty()) {
        out.push_str("Usage By Model:\n");
        let mut table = Table::new(&["MODEL", "REQUESTS", "INPUT", "CACHED", "OUTPUT"]);
        for m in &usage.by_model {
            table.push(vec![
                m.model.clone(),
                m.requests.to_string(),
                m.input_tokens.to_string(),
                m.cached_input_tokens.to_string(),
                m.output_tokens.to_string(),
            ]);
        }
        indent(&mut out, &table.render());
    }
    notifications(&mut out, &status.notifications);
    conditions(&mut out, &status.conditions);
    out
}

fn results(o: &crate::api::OutputStatus) -> String {
    let place = o
        .secret_name
        .as_ref()
        .map(|s| format!("Secret {s}"))
        .or_else(|| o.url.clone())
        .or_else(|| {
            o.pvc
                .as_ref()
                .map(|c| format!("PersistentVolumeClaim {c} {}", o.path.clone().unwrap_or_default()))
        })
        .or_else(|| o.path.clone())
        .unwrap_or_else(|| "<none>".into());
    format!(
        "{place}: {} lines ({} bytes), {} error lines ({} bytes)",
        o.lines, o.bytes, o.error_lines, o.error_bytes
    )
}

fn sweep(s: &BatchSweep) -> String {
    let mut out = String::new();
    metadata(&mut out, "BatchSweep", &s.metadata);
    out.push_str("Spec:\n");
    let spec = &s.spec;
    let mut fields = Fields::default();
    fields
        .add("Gateway", &spec.template.gateway_ref.name)
        .add("Endpoint", spec.template.endpoint)
        .add("Input", input(&spec.input))
        .opt("Models", spec.matrix.as_ref().map(|m| m.models.join(", ")))
        .opt("Chunk Max Requests", spec.chunk.max_requests)
        .opt("Chunk Max Bytes", spec.chunk.max_bytes.clone())
        .add("Output", output(spec.template.output.as_ref()))
        .add("Parallelism", spec.parallelism)
        .add("Max Failed Batches", spec.max_failed_batches)
        .add("Suspend", spec.suspend)
        .add("Max Attempts", spec.max_attempts())
        .opt("Budget", spec.budget.as_ref().map(|b| b.max_cost.clone()))
        .opt("Notify", spec.notify.as_ref().map(webhook));
    fields.write(&mut out, 2);
    out.push_str("Status:\n");
    let status = s.status.clone().unwrap_or_default();
    let mut fields = Fields::default();
    fields
        .add("Phase", or_none(status.phase))
        .opt("Progress", status.progress.clone())
        .opt("Started", status.start_time.as_ref().map(|t| when(Some(t))))
        .opt("Completed", status.completion_time.as_ref().map(|t| when(Some(t))))
        .opt(
            "Plan",
            status
                .plan
                .as_ref()
                .map(|p| format!("{} chunks, {} requests, {} bytes", p.chunks.len(), p.requests, p.bytes)),
        )
        .opt(
            "Batches",
            status.batches.as_ref().map(|b| {
                format!(
                    "{} total, {} waiting, {} running, {} succeeded, {} failed",
                    b.total, b.waiting, b.running, b.succeeded, b.failed
                )
            }),
        )
        .opt("Requests", status.request_counts.as_ref().map(counts))
        .opt("Usage", status.usage.as_ref().map(usage))
        .opt("Cost", status.cost.as_ref().map(cost))
        .opt(
            "Retries",
            status.retries.as_ref().map(|r| {
                format!(
                    "{} follow-up batches, {} lines retried, {} recovered",
                    r.batches, r.retried, r.recovered
                )
            }),
        );
    fields.write(&mut out, 2);
    out.push_str("Children:\n");
    if status.children.is_empty() {
        out.push_str("  <none>\n");
    } else {
        let mut table = Table::new(&[
            "NAME",
            "MODEL",
            "CHUNK",
            "PHASE",
            "COMPLETED",
            "FAILED",
            "ATTEMPTS",
            "COST",
        ]);
        for c in &status.children {
            table.push(vec![
                c.name.clone(),
                or_none(c.model.clone()),
                c.chunk.to_string(),
                or_none(c.phase),
                c.completed.to_string(),
                c.failed.to_string(),
                c.attempts.unwrap_or(1).to_string(),
                c.cost.clone().unwrap_or_default(),
            ]);
        }
        indent(&mut out, &table.render());
        let listed = status.children.len() as u32;
        if let Some(total) = status.batches.as_ref().map(|b| b.total).filter(|t| *t > listed) {
            let _ = writeln!(out, "  ({listed} of {total} children listed: unfinished ones first)");
        }
    }
    notifications(&mut out, &status.notifications);
    conditions(&mut out, &status.conditions);
    out
}

fn schedule(s: &BatchSchedule) -> String {
    let mut out = String::new();
    metadata(&mut out, "BatchSchedule", &s.metadata);
    out.push_str("Spec:\n");
    let mut fields = Fields::default();
    fields
        .add("Schedule", &s.spec.schedule)
        .add("Time Zone", s.spec.time_zone.clone().unwrap_or_else(|| "UTC".into()))
        .add("Suspend", s.spec.suspend)
        .add(
            "Runs",
            match (&s.spec.batch_template, &s.spec.sweep_template) {
                (Some(_), _) => "a Batch (batchTemplate)",
                (_, Some(_)) => "a BatchSweep (sweepTemplate)",
                _ => "<none>",
            },
        );
    fields.write(&mut out, 2);
    out.push_str("Status:\n");
    let status = s.status.clone().unwrap_or_default();
    let mut fields = Fields::default();
    fields
        .opt(
            "Last Schedule",
            status.last_schedule_time.as_ref().map(|t| when(Some(t))),
        )
        .opt(
            "Last Successful",
            status.last_successful_time.as_ref().map(|t| when(Some(t))),
        )
        .opt(
            "Next Schedule",
            status.next_schedule_time.as_ref().map(|t| t.0.to_string()),
        )
        .opt("Last Result", status.last_result.clone())
        .add("Active", pairs(status.active.iter().cloned()));
    fields.write(&mut out, 2);
    out.push_str("Runs:\n");
    let mut table = Table::new(&["NAME", "SCHEDULED", "PHASE", "COMPLETED", "FAILED", "COST"]);
    for run in &status.runs {
        let counts = run.request_counts.as_ref();
        table.push(vec![
            run.name.clone(),
            run.scheduled_time.0.to_string(),
            or_none(run.phase.clone()),
            counts.map_or(String::new(), |c| c.completed.to_string()),
            counts.map_or(String::new(), |c| c.failed.to_string()),
            run.cost.clone().unwrap_or_default(),
        ]);
    }
    match table.is_empty() {
        true => out.push_str("  <none>\n"),
        false => indent(&mut out, &table.render()),
    }
    conditions(&mut out, &status.conditions);
    out
}

fn indent(out: &mut String, text: &str) {
    for line in text.lines() {
        let _ = writeln!(out, "  {line}");
    }
}

/// The webhook by its host (its URL may carry a token); signed or not.
fn webhook(notify: &crate::api::Notify) -> String {
    let host = notify.host();
    match &notify.signing_secret_ref {
        Some(r) => format!("webhook at {host}, signed with Secret {} (key {})", r.name, r.key),
        None => format!("webhook at {host}, unsigned"),
    }
}

/// How each event owed to the webhook was delivered (nothing when none is owed).
fn notifications(out: &mut String, entries: &[crate::api::NotificationStatus]) {
    if entries.is_empty() {
        return;
    }
    out.push_str("Notifications:\n");
    let mut table = Table::new(&["TYPE", "STATE", "ATTEMPTS", "LAST ATTEMPT", "LAST ERROR"]);
    for n in entries {
        table.push(vec![
            n.type_.clone(),
            format!("{:?}", n.state),
            n.attempts.to_string(),
            age(n.last_attempt_time.as_ref()),
            n.last_error.clone().unwrap_or_default(),
        ]);
    }
    indent(out, &table.render());
}

fn conditions(out: &mut String, conditions: &[Condition]) {
    out.push_str("Conditions:\n");
    if conditions.is_empty() {
        out.push_str("  <none>\n");
        return;
    }
    let mut table = Table::new(&["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"]);
    for c in conditions {
        table.push(vec![
            c.type_.clone(),
            c.status.clone(),
            c.reason.clone(),
            age(Some(&c.last_transition_time)),
            c.message.clone(),
        ]);
    }
    indent(out, &table.render());
}

/// Events shown at most, the most recent.
const MAX_EVENTS: usize = 20;

/// The recent Events about the object with `uid`, oldest first, as a table.
async fn events(client: &Client, namespace: &str, uid: &str) -> Result<String, PluginError> {
    let params = ListParams::default().fields(&format!("involvedObject.uid={uid}"));
    let mut list = Api::<Event>::namespaced(client.clone(), namespace)
        .list(&params)
        .await
        .map_err(api_error(format!("listing the Events in {namespace}")))?
        .items;
    if list.is_empty() {
        return Ok("  <none>\n".into());
    }
    list.sort_by_key(last_seen);
    let mut table = Table::new(&["TYPE", "REASON", "AGE", "FROM", "MESSAGE"]);
    for e in list.iter().skip(list.len().saturating_sub(MAX_EVENTS)) {
        let seen = last_seen(e);
        let from = e
            .reporting_component
            .clone()
            .filter(|c| !c.is_empty())
            .or_else(|| e.source.as_ref().and_then(|s| s.component.clone()));
        table.push(vec![
            e.type_.clone().unwrap_or_default(),
            e.reason.clone().unwrap_or_default(),
            age(seen.as_ref()),
            or_none(from),
            e.message.clone().unwrap_or_default().replace('\n', " "),
        ]);
    }
    let mut out = String::new();
    indent(&mut out, &table.render());
    Ok(out)
}

/// When an Event was last seen: its last timestamp, its series', its event time or creation.
fn last_seen(e: &Event) -> Option<Time> {
    e.last_timestamp
        .clone()
        .or_else(|| {
            e.series
                .as_ref()
                .and_then(|s| s.last_observed_time.as_ref())
                .map(|t| Time(t.0))
        })
        .or_else(|| e.event_time.as_ref().map(|t| Time(t.0)))
        .or_else(|| e.metadata.creation_timestamp.clone())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_batch_shows_its_webhook_by_host_and_how_each_event_went() {
        let batch: Batch = serde_json::from_value(json!({
            "apiVersion": "llmbatch.io/v1alpha1", "kind": "Batch",
            "metadata": {"name": "nightly", "namespace": "team-a"},
            "spec": {"gatewayRef": {"name": "gw"}, "endpoint": "/v1/chat/completions",
                     "input": {"configMap": {"name": "in", "key": "k"}},
                     "notify": {"url": "https://hooks.example.com/T0K3N/path",
                                "signingSecretRef": {"name": "hook", "key": "secret"}}},
            "status": {"phase": "Succeeded", "notifications": [{
                "type": "io.llmbatch.batch.succeeded", "id": "u.batch.succeeded", "state": "Pending",
                "attempts": 2, "lastError": "hooks.example.com answered HTTP 503"}]},
        }))
        .unwrap();
        let text = super::batch(&batch);
        assert!(
            text.contains("webhook at hooks.example.com, signed with Secret hook (key secret)"),
            "{text}"
        );
        assert!(!text.contains("T0K3N"), "the URL's path stays out: {text}");
        let row = text
            .lines()
            .find(|l| l.contains("io.llmbatch.batch.succeeded"))
            .unwrap();
        for cell in ["Pending", "2", "hooks.example.com answered HTTP 503"] {
            assert!(row.contains(cell), "{row}");
        }
    }
}
