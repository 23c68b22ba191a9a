//! The Jobs the controller starts with its own image for work that must not run inside it:
//! writing results onto a PVC (`sink`) and, for gateways without a batch API, sending the lines
//! (`direct`). Every Job is owned by its Batch (deleted with it), named from the Batch and its
//! UID (so a restart finds it instead of starting a second), and runs a Pod Security
//! "restricted" pod with no service-account token, no user-supplied pod spec, and the API key
//! only as an environment variable from the gateway's Secret.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{
    Job, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    PersistentVolumeClaimVolumeSource, Pod, PodSecurityContext, PodSpec, PodTemplateSpec, ResourceRequirements,
    SeccompProfile, SecretKeySelector, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams, PropagationPolicy};
use kube::{Resource, ResourceExt};

use super::MANAGER;
use crate::api::{Batch, BatchGateway, KeyRef, PvcSink};
use crate::engine::{ErrorClass, Outcome};
use crate::job_protocol::{API_KEY_ENV, FINAL_FAILURE, JobFailure};
use crate::net::AddressPolicy;

/// Label on every Job (and its pods) naming the Batch it works for.
pub const BATCH_LABEL: &str = "llmbatch.io/batch";
/// The UID the image runs as (distroless `nonroot`); also the group that owns written files.
const RUN_AS: i64 = 65532;
/// Where the pod's termination message is written; the controller reads it when the pod ends.
pub const TERMINATION_LOG: &str = "/dev/termination-log";
/// Failed pods (each retried as a new pod) before the Job is Failed; a pod exiting with
/// [`FINAL_FAILURE`] fails the Job at once.
const BACKOFF_LIMIT: i32 = 4;

/// What one Job does: which command of the binary, with which arguments, key and volumes.
pub struct JobPlan {
    /// `sink` or `direct`: the subcommand, and the `app.kubernetes.io/component` label.
    pub command: &'static str,
    pub args: Vec<String>,
    /// The gateway's key, passed as `LLM_BATCH_API_KEY`.
    pub api_key: Option<KeyRef>,
    /// Further variables from Secrets, each optional (object-store credentials: a scheme's keys
    /// that the Secret does not have are left unset).
    pub secret_env: Vec<(String, KeyRef)>,
    /// Plain variables (and ones from the downward API).
    pub env: Vec<EnvVar>,
    pub volumes: Vec<(Volume, VolumeMount)>,
    /// Ports the container serves on.
    pub ports: Vec<ContainerPort>,
}

/// The Job's name: `<batch>-<command>-<uid prefix>`, cut to a DNS label with a hash.
pub fn job_name(batch: &Batch, command: &str) -> String {
    let uid: String = batch
        .uid()
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(6)
        .collect();
    crate::sweep::fit_dns_label(format!("{}-{command}-{uid}", batch.name_any()))
}

/// The Job for `plan`, owned by `batch`, running `image`.
pub fn build(batch: &Batch, plan: JobPlan, image: &str) -> Job {
    let labels = BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "llm-batch-operator".to_string()),
        ("app.kubernetes.io/component".to_string(), plan.command.to_string()),
        ("app.kubernetes.io/managed-by".to_string(), MANAGER.to_string()),
        (BATCH_LABEL.to_string(), batch.name_any()),
    ]);
    let mut env: Vec<EnvVar> = plan
        .api_key
        .iter()
        .map(|key| secret_var(API_KEY_ENV, key, false))
        .collect();
    env.extend(plan.secret_env.iter().map(|(name, key)| secret_var(name, key, true)));
    env.extend(plan.env);
    env.push(EnvVar {
        name: "RUST_LOG".into(),
        value: Some("info".into()),
        ..Default::default()
    });
    let (volumes, mounts): (Vec<Volume>, Vec<VolumeMount>) = plan.volumes.into_iter().unzip();
    let container = Container {
        name: plan.command.to_string(),
        image: Some(image.to_string()),
        args: Some([vec![plan.command.to_string()], plan.args].concat()),
        env: Some(env),
        volume_mounts: Some(mounts),
        ports: (!plan.ports.is_empty()).then_some(plan.ports),
        security_context: Some(restricted_container()),
        resources: Some(resources()),
        termination_message_path: Some(TERMINATION_LOG.into()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    };
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(batch, plan.command)),
            namespace: batch.namespace(),
            labels: Some(labels.clone()),
            owner_references: batch.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        spec: Some(k8s_openapi::api::batch::v1::JobSpec {
            backoff_limit: Some(BACKOFF_LIMIT),
            pod_failure_policy: Some(PodFailurePolicy {
                rules: vec![PodFailurePolicyRule {
                    action: "FailJob".into(),
                    on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                        container_name: Some(plan.command.to_string()),
                        operator: "In".into(),
                        values: vec![i32::from(FINAL_FAILURE)],
                    }),
                    ..Default::default()
                }],
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(restricted_pod()),
                    containers: vec![container],
                    volumes: Some(volumes),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

fn secret_var(name: &str, key: &KeyRef, optional: bool) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: key.name.clone(),
                key: key.key.clone(),
                optional: Some(optional),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn restricted_pod() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS),
        run_as_group: Some(RUN_AS),
        fs_group: Some(RUN_AS),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn restricted_container() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Streaming keeps memory flat; these leave room for TLS buffers and the runtime.
fn resources() -> ResourceRequirements {
    let quantities = |cpu: &str, memory: &str| {
        BTreeMap::from([
            ("cpu".to_string(), Quantity(cpu.into())),
            ("memory".to_string(), Quantity(memory.into())),
        ])
    };
    ResourceRequirements {
        requests: Some(quantities("50m", "64Mi")),
        limits: Some(BTreeMap::from([("memory".to_string(), Quantity("256Mi".into()))])),
        ..Default::default()
    }
}

/// Where a Job mounts the Batch's output claim.
pub const OUTPUT_MOUNT: &str = "/mnt/output";

/// The Batch's claim, read-write at [`OUTPUT_MOUNT`], and a scratch `/tmp` (the root filesystem
/// is read-only); and the directory of `pvc.path` inside the pod.
pub fn claim_volumes(pvc: &PvcSink) -> (Vec<(Volume, VolumeMount)>, String) {
    let claim = Volume {
        name: "output".into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: pvc.claim_name.clone(),
            read_only: Some(false),
        }),
        ..Default::default()
    };
    let tmp = Volume {
        name: "tmp".into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    };
    let path = pvc.path.trim_start_matches("./").trim_end_matches('/');
    let dir = match path.is_empty() {
        true => OUTPUT_MOUNT.to_string(),
        false => format!("{OUTPUT_MOUNT}/{path}"),
    };
    let volumes = vec![
        (claim, mount("output", OUTPUT_MOUNT, false)),
        (tmp, mount("tmp", "/tmp", false)),
    ];
    (volumes, dir)
}

/// `pvc://<claimName>/<path>`, as the status records where results are.
pub fn claim_location(pvc: &PvcSink) -> String {
    format!("pvc://{}/{}", pvc.claim_name, pvc.path.trim_start_matches("./"))
}

/// A mount of volume `name` at `path`.
pub fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(read_only),
        ..Default::default()
    }
}

/// The flags every Job's command takes (`cli::JobArgs`): `--url`, a `--header` for each static
/// header of the gateway, and the summary written where the pod's termination message is read.
pub fn job_args(gateway: &BatchGateway, addresses: &AddressPolicy) -> Vec<String> {
    let mut args = vec!["--url".to_string(), gateway.spec.url.clone()];
    for (name, value) in &gateway.spec.headers {
        args.extend(["--header".to_string(), format!("{name}={value}")]);
    }
    args.extend(["--summary-file".to_string(), TERMINATION_LOG.to_string()]);
    let limits = &gateway.spec.limits;
    for (flag, value) in [
        ("--max-result-bytes", &limits.max_result_bytes),
        ("--download-timeout", &limits.download_timeout),
    ] {
        if let Some(value) = value {
            args.extend([flag.to_string(), value.clone()]);
        }
    }
    args.extend(addresses.to_args());
    args
}

/// The outcome of a Job that failed (and was deleted, so a later attempt starts afresh): the
/// failure its pod reported in its termination message, or else the Job's own reason, as
/// `fallback`.
pub fn failed(job: &Job, doing: &str, reason: String, message: Option<String>, fallback: ErrorClass) -> Outcome {
    let report: Option<JobFailure> = message.as_deref().and_then(|m| serde_json::from_str(m).ok());
    let (class, why) = match report {
        Some(failure) => (failure.class, failure.error),
        None => {
            let parts: Vec<String> = [Some(reason), message].into_iter().flatten().collect();
            (fallback, parts.join(": "))
        }
    };
    Outcome::GatewayError {
        class,
        message: format!("{} Job {}{doing} failed: {why}", job_command(job), job.name_any()),
    }
}

fn job_command(job: &Job) -> String {
    job.labels()
        .get("app.kubernetes.io/component")
        .cloned()
        .unwrap_or_else(|| "the".into())
}

/// Where a Job stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobState {
    Running,
    /// Complete; the termination message of its succeeded pod, when one can be read.
    Succeeded(Option<String>),
    /// Failed: the Job's reason, and the termination message of its last failed pod.
    Failed {
        reason: String,
        message: Option<String>,
    },
}

/// Creates `job` unless a Job of that name exists; returns the one in the cluster, or `None`
/// while an earlier one of that name is still being deleted (its pods first).
pub async fn ensure(client: &kube::Client, job: &Job) -> Result<Option<Job>, kube::Error> {
    let api = Api::<Job>::namespaced(client.clone(), &job.namespace().unwrap_or_default());
    let existing = match api.get_opt(&job.name_any()).await? {
        Some(existing) => existing,
        None => match api.create(&PostParams::default(), job).await {
            Err(kube::Error::Api(e)) if e.code == 409 => api.get(&job.name_any()).await?,
            other => other?,
        },
    };
    Ok(existing.metadata.deletion_timestamp.is_none().then_some(existing))
}

/// Reads the Job's conditions, and on its end the termination message of its last pod.
pub async fn state(client: &kube::Client, job: &Job) -> Result<JobState, kube::Error> {
    let conditions = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let ended = |type_: &str| conditions.iter().find(|c| c.type_ == type_ && c.status == "True");
    if ended("Complete").is_some() {
        return Ok(JobState::Succeeded(
            termination_message(client, job, "Succeeded").await?,
        ));
    }
    if let Some(failed) = ended("Failed") {
        let reason = failed.message.clone().or(failed.reason.clone()).unwrap_or_default();
        let message = termination_message(client, job, "Failed").await?;
        return Ok(JobState::Failed { reason, message });
    }
    Ok(JobState::Running)
}

/// The termination message of the newest pod of `job` in `phase`.
async fn termination_message(client: &kube::Client, job: &Job, phase: &str) -> Result<Option<String>, kube::Error> {
    Ok(newest_in_phase(pods(client, job).await?, phase).and_then(|pod| {
        let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
        let terminated = statuses.first()?.state.as_ref()?.terminated.as_ref()?;
        terminated.message.clone().filter(|m| !m.trim().is_empty())
    }))
}

/// The newest of `pods` in `phase` (`Running`, `Succeeded`, `Failed`).
pub fn newest_in_phase(pods: Vec<Pod>, phase: &str) -> Option<Pod> {
    pods.into_iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some(phase))
        .max_by_key(|p| p.creation_timestamp())
}

/// The pods of `job` (the label its Job controller gives them).
pub async fn pods(client: &kube::Client, job: &Job) -> Result<Vec<Pod>, kube::Error> {
    let api = Api::<Pod>::namespaced(client.clone(), &job.namespace().unwrap_or_default());
    let selector = format!("batch.kubernetes.io/job-name={}", job.name_any());
    Ok(api.list(&ListParams::default().labels(&selector)).await?.items)
}

/// Deletes a Job, its pods first (foreground), so a later Job of the same name never runs
/// beside a pod of this one.
pub async fn delete(client: &kube::Client, job: &Job) -> Result<(), kube::Error> {
    let api = Api::<Job>::namespaced(client.clone(), &job.namespace().unwrap_or_default());
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        ..Default::default()
    };
    match api.delete(&job.name_any(), &params).await {
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        other => other.map(|_| ()),
    }
}
