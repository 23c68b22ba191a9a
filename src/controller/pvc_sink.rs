//! `spec.output.pvc`: the controller does not mount claims, so a Job running `sink` with the
//! claim mounted fetches the results from the gateway into the path; its termination message
//! carries the counts and usage back into the status.

use kube::ResourceExt;

use super::jobs::{self, JobPlan, JobState};
use super::{Context, Error};
use crate::api::{Batch, BatchGateway, BatchStatus, PvcSink};
use crate::engine::{Downloaded, ErrorClass, Outcome};
use crate::jsonl::IdDigest;
use crate::net::AddressPolicy;

/// The step's outcome once the sink Job ended; `None` while it runs.
pub async fn download(
    batch: &Batch,
    status: &BatchStatus,
    gateway: &BatchGateway,
    pvc: &PvcSink,
    output_id: Option<String>,
    error_id: Option<String>,
    ctx: &Context,
) -> Result<Option<Outcome>, Error> {
    let Some(image) = &ctx.job_image else {
        return Ok(Some(Outcome::SpecInvalid {
            message: no_job_image(pvc),
        }));
    };
    let expected = crate::steps::expected_ids(status);
    let plan = sink_plan(gateway, pvc, output_id, error_id, expected, &ctx.addresses);
    let Some(job) = jobs::ensure(&ctx.client, &jobs::build(batch, plan, image)).await? else {
        return Ok(None);
    };
    let location = jobs::claim_location(pvc);
    Ok(match jobs::state(&ctx.client, &job).await? {
        JobState::Running => None,
        JobState::Succeeded(message) => {
            let mut downloaded: Downloaded = message
                .as_deref()
                .and_then(|m| serde_json::from_str(m).ok())
                .unwrap_or_else(|| {
                    tracing::warn!(job = %job.name_any(), "the sink's counts are not readable; status keeps the gateway's");
                    Downloaded::default()
                });
            downloaded.location = location;
            Some(Outcome::Downloaded(downloaded))
        }
        JobState::Failed { reason, message } => {
            jobs::delete(&ctx.client, &job).await?;
            let doing = format!(" writing to {location}");
            Some(jobs::failed(&job, &doing, reason, message, ErrorClass::Output))
        }
    })
}

/// Why a PVC output cannot be written by this controller.
pub fn no_job_image(pvc: &PvcSink) -> String {
    format!(
        "spec.output.pvc (claim {}) is written by a Job, and this controller was started without --job-image \
         (Helm: jobs.enabled=true); use spec.output.objectStore or spec.output.secret, or enable Jobs",
        pvc.claim_name
    )
}

fn sink_plan(
    gateway: &BatchGateway,
    pvc: &PvcSink,
    output_id: Option<String>,
    error_id: Option<String>,
    expected: Option<IdDigest>,
    addresses: &AddressPolicy,
) -> JobPlan {
    let (volumes, dir) = jobs::claim_volumes(pvc);
    let mut args = jobs::job_args(gateway, addresses);
    if let Some(id) = output_id {
        args.extend(["--output-file-id".to_string(), id]);
    }
    if let Some(id) = error_id {
        args.extend(["--error-file-id".to_string(), id]);
    }
    if let Some(expected) = expected {
        args.extend(["--expected-ids".to_string(), expected.to_string()]);
    }
    args.extend(["--dir".to_string(), dir]);
    JobPlan {
        command: "sink",
        args,
        api_key: gateway.spec.auth.as_ref().map(|a| a.secret_ref.clone()),
        secret_env: Vec::new(),
        env: Vec::new(),
        volumes,
        ports: Vec::new(),
    }
}
