//! `retry NAME`: a Batch that ended Failed, Expired or Cancelled runs again as a new Batch
//! `<name>-retry-<n>` (the first free n) with the same spec (`cancel: false`), its own results
//! (an output Secret `<new name>-results`, or a sub-prefix `<new name>/` of an object-store or
//! PVC output), the original's labels and annotations but the ones the operator or tools manage,
//! and `llmbatch.io/retry-of: <name>`.

use std::collections::BTreeMap;
use std::process::ExitCode;

use kube::ResourceExt;
use kube::api::{Api, ObjectMeta, PostParams};

use super::lookup;
use super::{KubeFlags, PluginError, api_error, config};
use crate::api::{Batch, BatchOutput, BatchPhase, LocalObjectRef};

/// The annotation naming the Batch a retry was made from.
pub const RETRY_OF_ANNOTATION: &str = "llmbatch.io/retry-of";

/// Label and annotation prefixes not copied: the operator's own (a batch id would re-attach the
/// retry to the old upstream batch, a sweep label would count it as the sweep's child) and those
/// tools keep of the original (kubectl's last applied configuration, Argo CD's tracking).
const MANAGED_PREFIXES: [&str; 3] = ["llmbatch.io/", "kubectl.kubernetes.io/", "argocd.argoproj.io/"];

/// Names tried for `<name>-retry-<n>` before asking for `--name`.
const MAX_RETRY_NUMBER: u32 = 100;

/// Flags of `retry`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  kubectl llmbatch retry ticket-triage                 # creates ticket-triage-retry-1
  kubectl llmbatch retry ticket-triage --name triage-again")]
pub struct RetryArgs {
    /// The Batch that ended Failed, Expired or Cancelled: NAME or batch/NAME.
    pub name: String,
    /// The new Batch's name (default: `<name>-retry-<n>`, the first n not taken).
    #[arg(long = "name", value_name = "NEW")]
    pub new_name: Option<String>,
}

pub async fn run(flags: &KubeFlags, args: RetryArgs) -> Result<ExitCode, PluginError> {
    let (client, namespace) = config::connect(flags).await?;
    let original = lookup::batch(&client, &namespace, &args.name, sweep_refusal).await?;
    let name = original.name_any();
    refuse_unfinished(&namespace, &name, original.status.as_ref().and_then(|s| s.phase))?;
    let api = Api::<Batch>::namespaced(client, &namespace);
    let new_name = match args.new_name {
        Some(new_name) => new_name,
        None => free_name(&api, &name).await?,
    };
    let retry = retry_of(&original, &new_name);
    let created = api.create(&PostParams::default(), &retry).await.map_err(|e| match e {
        kube::Error::Api(s) if s.code == 409 => PluginError::Usage(format!(
            "a Batch {new_name} already exists in {namespace}: give another --name"
        )),
        e => api_error(format!("creating Batch {namespace}/{new_name}"))(e),
    })?;
    println!(
        "batch.llmbatch.io/{} created (a retry of {name}; results to {})",
        created.name_any(),
        results_of(created.spec.output.as_ref())
    );
    Ok(ExitCode::SUCCESS)
}

/// Only a Batch that ended without succeeding is retried.
fn refuse_unfinished(namespace: &str, name: &str, phase: Option<BatchPhase>) -> Result<(), PluginError> {
    let phase = phase.unwrap_or_default();
    match phase {
        BatchPhase::Failed | BatchPhase::Expired | BatchPhase::Cancelled => Ok(()),
        BatchPhase::Succeeded => Err(PluginError::Usage(format!(
            "Batch {namespace}/{name} Succeeded: there is nothing to retry (lines that failed inside it are \
             in its errors; a BatchSweep's spec.retry resubmits such lines)"
        ))),
        running => Err(PluginError::Usage(format!(
            "Batch {namespace}/{name} is still {running}: wait until it ends, or cancel it first \
             (kubectl llmbatch cancel {name})"
        ))),
    }
}

/// `<name>-retry-<n>` for the first n no Batch has.
async fn free_name(api: &Api<Batch>, name: &str) -> Result<String, PluginError> {
    for n in 1..=MAX_RETRY_NUMBER {
        let candidate = format!("{name}-retry-{n}");
        let taken = api
            .get_opt(&candidate)
            .await
            .map_err(api_error(format!("reading Batch {candidate}")))?;
        if taken.is_none() {
            return Ok(candidate);
        }
    }
    Err(PluginError::Usage(format!(
        "{name}-retry-1 to {name}-retry-{MAX_RETRY_NUMBER} all exist: give the new Batch a --name"
    )))
}

/// The new Batch: the original's spec and user metadata, its own results, not cancelled.
pub fn retry_of(original: &Batch, new_name: &str) -> Batch {
    let copied = |map: &Option<BTreeMap<String, String>>| -> BTreeMap<String, String> {
        map.iter()
            .flatten()
            .filter(|(k, _)| !MANAGED_PREFIXES.iter().any(|p| k.starts_with(p)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let mut annotations = copied(&original.metadata.annotations);
    annotations.insert(RETRY_OF_ANNOTATION.to_string(), original.name_any());
    let mut spec = original.spec.clone();
    spec.cancel = false;
    spec.output = spec.output.map(|output| own_output(output, new_name));
    let mut retry = Batch::new(new_name, spec);
    retry.metadata = ObjectMeta {
        name: Some(new_name.to_string()),
        namespace: original.namespace(),
        labels: Some(copied(&original.metadata.labels)).filter(|l| !l.is_empty()),
        annotations: Some(annotations),
        ..Default::default()
    };
    retry
}

/// Where the retry writes: never where the original wrote (its Secret is the original's, and a
/// prefix or directory shared would mix both runs' files).
fn own_output(output: BatchOutput, new_name: &str) -> BatchOutput {
    let sub = |base: &str| format!("{}/{new_name}/", base.trim_end_matches('/'));
    BatchOutput {
        secret: output.secret.map(|_| LocalObjectRef {
            name: format!("{new_name}-results"),
        }),
        object_store: output.object_store.map(|mut store| {
            store.url = sub(&store.url);
            store
        }),
        pvc: output.pvc.map(|mut pvc| {
            pvc.path = match pvc.path.trim_end_matches('/') {
                "" => new_name.to_string(),
                path => format!("{path}/{new_name}"),
            };
            pvc
        }),
    }
}

fn results_of(output: Option<&BatchOutput>) -> String {
    match output {
        Some(BatchOutput { secret: Some(s), .. }) => format!("Secret {}", s.name),
        Some(BatchOutput {
            object_store: Some(o), ..
        }) => o.url.clone(),
        Some(BatchOutput { pvc: Some(p), .. }) => format!("PersistentVolumeClaim {} path {}", p.claim_name, p.path),
        _ => "the gateway (no spec.output)".into(),
    }
}

/// What retries a sweep's work instead.
fn sweep_refusal(name: &str) -> String {
    format!(
        "BatchSweep {name} is not retried as a whole: its spec.retry resubmits the lines that failed retryably \
         (kubectl patch batchsweep {name} --type merge -p '{{\"spec\":{{\"retry\":{{\"maxAttempts\":3}}}}}}' \
         runs a finished sweep again for them), and a child Batch that failed can be retried on its own \
         (kubectl llmbatch retry CHILD; kubectl llmbatch describe sweep/{name} lists them)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn original() -> Batch {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "llmbatch.io/v1alpha1", "kind": "Batch",
            "metadata": {"name": "tickets", "namespace": "team", "uid": "u-1", "resourceVersion": "7",
                "labels": {"team": "support", "llmbatch.io/sweep": "eval"},
                "annotations": {"note": "nightly", "llmbatch.io/batch-id": "batch_1",
                    "kubectl.kubernetes.io/last-applied-configuration": "{}"},
                "finalizers": ["llmbatch.io/cleanup"]},
            "spec": {"gatewayRef": {"name": "gw"}, "endpoint": "/v1/chat/completions", "cancel": true,
                "input": {"configMap": {"name": "in", "key": "batch.jsonl"}},
                "output": {"secret": {"name": "tickets-results"}}},
            "status": {"phase": "Cancelled"}
        }))
        .unwrap()
    }

    #[test]
    fn a_retry_keeps_the_spec_and_user_metadata_and_drops_what_is_managed() {
        let retry = retry_of(&original(), "tickets-retry-1");
        let meta = &retry.metadata;
        assert_eq!(meta.name.as_deref(), Some("tickets-retry-1"));
        assert_eq!(meta.namespace.as_deref(), Some("team"));
        assert_eq!(meta.uid, None);
        assert_eq!(meta.resource_version, None);
        assert_eq!(meta.finalizers, None);
        let labels = meta.labels.clone().unwrap();
        assert_eq!(
            labels.into_iter().collect::<Vec<_>>(),
            [("team".to_string(), "support".to_string())]
        );
        let annotations = meta.annotations.clone().unwrap();
        assert_eq!(
            annotations.into_iter().collect::<Vec<_>>(),
            [
                (RETRY_OF_ANNOTATION.to_string(), "tickets".to_string()),
                ("note".to_string(), "nightly".to_string())
            ]
        );
        assert!(!retry.spec.cancel);
        assert_eq!(retry.spec.input, original().spec.input);
        assert_eq!(
            retry.spec.output.unwrap().secret.unwrap().name,
            "tickets-retry-1-results"
        );
        assert!(retry.status.is_none());
    }

    #[test]
    fn a_retry_writes_under_a_prefix_or_directory_of_its_own() {
        let output: BatchOutput = serde_json::from_value(serde_json::json!(
            {"objectStore": {"url": "s3://bucket/results"}}))
        .unwrap();
        assert_eq!(
            own_output(output, "x-retry-2").object_store.unwrap().url,
            "s3://bucket/results/x-retry-2/"
        );
        let output: BatchOutput = serde_json::from_value(serde_json::json!(
            {"pvc": {"claimName": "data", "path": ""}}))
        .unwrap();
        assert_eq!(own_output(output, "x-retry-2").pvc.unwrap().path, "x-retry-2");
    }

    #[test]
    fn only_a_batch_that_ended_without_succeeding_is_retried() {
        for phase in [BatchPhase::Failed, BatchPhase::Expired, BatchPhase::Cancelled] {
            assert!(refuse_unfinished("ns", "b", Some(phase)).is_ok(), "{phase}");
        }
        for phase in [None, Some(BatchPhase::InProgress), Some(BatchPhase::Succeeded)] {
            let Err(PluginError::Usage(message)) = refuse_unfinished("ns", "b", phase) else {
                panic!("{phase:?} was not refused");
            };
            assert!(message.starts_with("Batch ns/b "), "{message}");
        }
    }
}
