//! Direct mode in a cluster: the lines are sent by a Job running `direct` (so the controller
//! stays light), with its checkpoint and results on the Batch's output claim. While it runs, its
//! pod serves the counts (read by `direct_progress`); its termination message brings the
//! conclusion and the counted results back into the status.

use std::time::SystemTime;

use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, ContainerPort, EnvVar, EnvVarSource, KeyToPath, ObjectFieldSelector, SecretVolumeSource,
    Volume,
};
use kube::ResourceExt;

use super::cluster_io::Gateway;
use super::jobs::{self, JobPlan, JobState};
use super::{Context, Error, direct_progress};
use crate::api::{Batch, BatchGateway, BatchStatus, KeyRef, PvcSink};
use crate::direct::DirectSummary;
use crate::engine::{ErrorClass, Outcome};
use crate::io::object_storage;

/// Where a ConfigMap or Secret input is mounted.
const INPUT_MOUNT: &str = "/mnt/input";
/// The variable holding inline requests (`spec.input.requests`) as JSONL.
const INPUT_ENV: &str = "LLM_BATCH_INPUT";
/// The variable holding the pod's IP (Kubernetes expands `$(POD_IP)` in the arguments).
const POD_IP_ENV: &str = "POD_IP";
/// The name of the container port the counts are served on.
const PROGRESS_PORT_NAME: &str = "progress";

/// What a direct-mode Batch in a cluster needs, as problems to report before anything is sent.
pub fn problems(batch: &Batch, ctx: &Context) -> Vec<String> {
    let mut problems = Vec::new();
    if ctx.job_image.is_none() {
        problems.push(
            "direct mode runs in a Job, and this controller was started without --job-image (Helm: jobs.enabled=true)"
                .to_string(),
        );
    }
    if batch.spec.output.as_ref().and_then(|o| o.pvc.as_ref()).is_none() {
        problems.push(
            "direct mode in a cluster keeps its progress and results on a claim: set spec.output.pvc (the Job \
             resumes from it after any restart)"
                .to_string(),
        );
    }
    problems
}

/// The step's outcome once the Job ended; `None` while it runs.
pub async fn run(
    batch: &Batch,
    status: &BatchStatus,
    gateway: &Gateway,
    ctx: &Context,
) -> Result<Option<Outcome>, Error> {
    let (Some(image), Some(pvc)) = (&ctx.job_image, batch.spec.output.as_ref().and_then(|o| o.pvc.as_ref())) else {
        return Ok(Some(Outcome::SpecInvalid {
            message: problems(batch, ctx).join("; "),
        }));
    };
    let total = status.input.as_ref().map_or(0, |i| i.requests);
    let Some(started) = status.start_time.as_ref() else {
        // Recorded first, so the completion window counts from a time every later Job shares.
        return Ok(Some(Outcome::DirectProgress {
            total,
            completed: 0,
            failed: 0,
        }));
    };
    let deadline = match deadline(batch, started.0.into()) {
        Ok(deadline) => deadline,
        Err(message) => return Ok(Some(Outcome::SpecInvalid { message })),
    };
    let plan = match direct_plan(batch, &gateway.object, pvc, deadline, ctx) {
        Ok(plan) => plan,
        Err(message) => return Ok(Some(Outcome::SpecInvalid { message })),
    };
    let Some(job) = jobs::ensure(&ctx.client, &jobs::build(batch, plan, image)).await? else {
        return Ok(None);
    };
    if batch.spec.cancel && !cancels(&job) {
        // Stop the running Job (its pod is told to stop, keeping what finished); the next
        // Job concludes the run as cancelled.
        jobs::delete(&ctx.client, &job).await?;
        return Ok(None);
    }
    let location = jobs::claim_location(pvc);
    Ok(match jobs::state(&ctx.client, &job).await? {
        JobState::Running => {
            let key = super::batch::key(batch);
            return direct_progress::poll(&key, status, &job, gateway.polling, ctx).await;
        }
        JobState::Succeeded(message) => match message.as_deref().map(serde_json::from_str::<DirectSummary>) {
            Some(Ok(summary)) => {
                let counts = status.request_counts.clone().unwrap_or_default();
                if (counts.completed, counts.failed) != (summary.completed, summary.failed) {
                    // The run's own counts first; the next step concludes from the same Job.
                    return Ok(Some(Outcome::DirectProgress {
                        total,
                        completed: summary.completed,
                        failed: summary.failed,
                    }));
                }
                let mut downloaded = summary.downloaded;
                downloaded.location = location;
                let state = crate::steps::concluded(summary.conclusion);
                Some(Outcome::DirectFinished { state, downloaded })
            }
            _ => {
                jobs::delete(&ctx.client, &job).await?;
                Some(Outcome::GatewayError {
                    class: ErrorClass::Output,
                    message: format!(
                        "direct Job {} ended without its summary; a new Job resumes",
                        job.name_any()
                    ),
                })
            }
        },
        JobState::Failed { reason, message } => {
            jobs::delete(&ctx.client, &job).await?;
            Some(jobs::failed(&job, "", reason, message, ErrorClass::Transient))
        }
    })
}

fn cancels(job: &k8s_openapi::api::batch::v1::Job) -> bool {
    let args = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.first())
        .and_then(|c| c.args.as_ref());
    args.is_some_and(|a| a.iter().any(|arg| arg == "--cancel"))
}

/// The run's end: its start plus the completion window.
fn deadline(batch: &Batch, started: SystemTime) -> Result<SystemTime, String> {
    let window = &batch.spec.completion_window;
    humantime::parse_duration(window)
        .map(|w| started + w)
        .map_err(|e| format!("spec.completionWindow {window:?}: {e}"))
}

fn direct_plan(
    batch: &Batch,
    gateway: &BatchGateway,
    pvc: &PvcSink,
    deadline: SystemTime,
    ctx: &Context,
) -> Result<JobPlan, String> {
    let progress_port = ctx.direct_progress.port();
    let limits = gateway.spec.limits.direct().map_err(|e| e.to_string())?;
    let spec = &batch.spec;
    let (mut volumes, checkpoint) = jobs::claim_volumes(pvc);
    let mut args = jobs::job_args(gateway, &ctx.addresses);
    args.extend([
        "--endpoint".to_string(),
        spec.endpoint.path().to_string(),
        "--checkpoint-dir".to_string(),
        checkpoint,
        "--max-concurrent-requests".to_string(),
        limits.max_concurrent_requests.to_string(),
        "--request-timeout".to_string(),
        humantime::format_duration(limits.request_timeout).to_string(),
        "--deadline".to_string(),
        humantime::format_rfc3339_seconds(deadline).to_string(),
        "--progress-listen".to_string(),
        format!("$({POD_IP_ENV}):{progress_port}"),
    ]);
    if let Some(rpm) = limits.requests_per_minute {
        args.extend(["--requests-per-minute".to_string(), rpm.to_string()]);
    }
    if let Some(tpm) = limits.tokens_per_minute {
        args.extend(["--tokens-per-minute".to_string(), tpm.to_string()]);
    }
    if let Some(range) = spec.input.byte_range {
        args.extend(["--byte-range".to_string(), format!("{}..{}", range.start, range.end)]);
    }
    let overrides = spec.input.overrides.clone().unwrap_or_default();
    if let Some(model) = overrides.model {
        args.extend(["--model".to_string(), model]);
    }
    if let Some(prefix) = overrides.custom_id_prefix {
        args.extend(["--custom-id-prefix".to_string(), prefix]);
    }
    if spec.cancel {
        args.push("--cancel".to_string());
    }
    let input = input_source(spec)?;
    args.extend(input.args);
    volumes.extend(input.volume);
    let mut env = input.env;
    env.push(pod_ip_var());
    Ok(JobPlan {
        command: "direct",
        args,
        api_key: gateway.spec.auth.as_ref().map(|a| a.secret_ref.clone()),
        secret_env: input.secret_env,
        env,
        volumes,
        ports: vec![ContainerPort {
            name: Some(PROGRESS_PORT_NAME.into()),
            container_port: i32::from(progress_port),
            protocol: Some("TCP".into()),
            ..Default::default()
        }],
    })
}

/// `POD_IP` from the downward API: the pod serves its counts on its own IP only.
fn pod_ip_var() -> EnvVar {
    EnvVar {
        name: POD_IP_ENV.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "status.podIP".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// How the pod gets the input: arguments, and a volume or variables for them.
#[derive(Default)]
struct InputSource {
    args: Vec<String>,
    volume: Option<(Volume, k8s_openapi::api::core::v1::VolumeMount)>,
    env: Vec<EnvVar>,
    secret_env: Vec<(String, KeyRef)>,
}

/// A ConfigMap or Secret key as a file in a read-only volume; inline requests as a variable;
/// an object as its reference, with the scheme's credential keys from its Secret.
fn input_source(spec: &crate::api::BatchSpec) -> Result<InputSource, String> {
    let input = &spec.input;
    let as_file = |volume: Volume| InputSource {
        args: vec!["--input".to_string(), format!("{INPUT_MOUNT}/input.jsonl")],
        volume: Some((volume, jobs::mount("input", INPUT_MOUNT, true))),
        ..Default::default()
    };
    let items = |key: &str| {
        Some(vec![KeyToPath {
            key: key.to_string(),
            path: "input.jsonl".into(),
            mode: None,
        }])
    };
    if let Some(r) = &input.config_map {
        let source = ConfigMapVolumeSource {
            name: r.name.clone(),
            items: items(&r.key),
            ..Default::default()
        };
        return Ok(as_file(Volume {
            name: "input".into(),
            config_map: Some(source),
            ..Default::default()
        }));
    }
    if let Some(r) = &input.secret {
        let source = SecretVolumeSource {
            secret_name: Some(r.name.clone()),
            items: items(&r.key),
            ..Default::default()
        };
        return Ok(as_file(Volume {
            name: "input".into(),
            secret: Some(source),
            ..Default::default()
        }));
    }
    if let Some(reference) = &input.object_store {
        let secret_env = match &reference.secret_ref {
            Some(secret) => object_storage::credential_keys(&reference.url)
                .iter()
                .map(|key| {
                    (
                        key.to_string(),
                        KeyRef {
                            name: secret.name.clone(),
                            key: key.to_string(),
                        },
                    )
                })
                .collect(),
            None => Vec::new(),
        };
        let json = serde_json::to_string(reference).map_err(|e| e.to_string())?;
        return Ok(InputSource {
            args: vec!["--input-object".to_string(), json],
            secret_env,
            ..Default::default()
        });
    }
    match input.requests_jsonl(spec.endpoint) {
        Some(jsonl) => Ok(InputSource {
            args: vec!["--input-env".to_string(), INPUT_ENV.to_string()],
            env: vec![EnvVar {
                name: INPUT_ENV.into(),
                value: Some(jsonl),
                ..Default::default()
            }],
            ..Default::default()
        }),
        None => Err("direct mode in a cluster reads ConfigMap, Secret, inline or objectStore inputs".into()),
    }
}
