//! The controller's side of each step ([`steps::Driver`]): the input from a ConfigMap, a
//! Secret or object storage (credentials from a Secret), admission against the cache, Jobs
//! for a direct run and a PVC output, and the results into an owned Secret or object storage.

use std::path::Path;

use kube::ResourceExt;

use super::cluster_io::{self, Gateway, InputError, MAX_SECRET_BYTES};
use super::{Context, Error};
use super::{admission, direct_job, object_io, pvc_sink};
use crate::api::{Batch, BatchMode, BatchStatus, GatewayMode};
use crate::engine::{self, ErrorClass, Outcome};
use crate::gateway::GatewayClient;
use crate::io::object_output::Manifest;
use crate::io::{Packed, pack_for_secret};
use crate::jsonl::{Limits, prepare_bytes};
use crate::steps::{self, Driver, Input};

/// One Batch's steps within one reconcile.
pub struct ClusterBatch<'a> {
    pub batch: &'a Batch,
    pub gateway: &'a Gateway,
    pub ctx: &'a Context,
    /// The input held in the cluster, read once per reconcile (validated and uploaded from the
    /// same bytes).
    bytes: Option<bytes::Bytes>,
}

impl<'a> ClusterBatch<'a> {
    pub fn new(batch: &'a Batch, gateway: &'a Gateway, ctx: &'a Context) -> Self {
        ClusterBatch {
            batch,
            gateway,
            ctx,
            bytes: None,
        }
    }

    async fn read(&mut self) -> Result<bytes::Bytes, InputError> {
        if let Some(bytes) = &self.bytes {
            return Ok(bytes.clone());
        }
        let bytes = cluster_io::read_input(&self.ctx.client, self.batch).await?;
        self.bytes = Some(bytes.clone());
        Ok(bytes)
    }

    /// The ceilings the input is validated against, in the Batch's mode.
    fn limits(&self, status: &BatchStatus) -> Result<Limits, InputError> {
        let gateway = &self.gateway.object;
        engine::input_limits(status.mode, &gateway.spec.limits).map_err(|e| {
            let ns = gateway.namespace().unwrap_or_default();
            InputError::Invalid(format!("BatchGateway {ns}/{}: {e}", gateway.name_any()))
        })
    }

    async fn try_input(&mut self, status: &BatchStatus) -> Result<Input, InputError> {
        let limits = self.limits(status)?;
        if let Some(object) = object_io::input(self.ctx, self.batch, limits).await? {
            return Ok(Input::Object(object));
        }
        let bytes = self.read().await?;
        let (prepared, report) = prepare(self.batch, &bytes, limits);
        Ok(match report.is_valid() {
            true => Input::Prepared {
                bytes: prepared.into(),
                summary: report.summary,
            },
            false => Input::Unreadable(Outcome::InputInvalid {
                message: report.render(10).replace('\n', "; "),
            }),
        })
    }
}

impl Driver for ClusterBatch<'_> {
    fn fresh_attempts(&self) -> &steps::FreshAttempts {
        &self.ctx.fresh_attempts
    }

    type Error = Error;

    fn batch(&self) -> &Batch {
        self.batch
    }

    fn client(&self) -> &GatewayClient {
        &self.gateway.client
    }

    /// For Auto, what the BatchGateway's own probe recorded saves a probe per Batch.
    fn gateway_mode(&self) -> (GatewayMode, Option<bool>) {
        let gateway = &self.gateway.object;
        let probed = gateway.status.as_ref().and_then(|s| s.capabilities.as_ref());
        (gateway.spec.mode, probed.map(|c| c.batch_api))
    }

    fn problems(&self, mode: Option<BatchMode>) -> Vec<String> {
        let pvc = self.batch.spec.output.as_ref().and_then(|o| o.pvc.as_ref());
        match (mode, pvc) {
            (Some(BatchMode::Direct), _) => direct_job::problems(self.batch, self.ctx),
            (_, Some(pvc)) if self.ctx.job_image.is_none() => vec![pvc_sink::no_job_image(pvc)],
            _ => Vec::new(),
        }
    }

    async fn input(&mut self, status: &BatchStatus) -> Result<Input, Error> {
        match self.try_input(status).await {
            Ok(input) => Ok(input),
            Err(InputError::NotFound(message)) => Ok(Input::Unreadable(Outcome::InputNotFound { message })),
            Err(InputError::Invalid(message)) => Ok(Input::Unreadable(Outcome::InputInvalid { message })),
            Err(InputError::Api(e)) => Err(Error::Kube(e)),
        }
    }

    async fn admit(&mut self, status: &BatchStatus) -> Result<Outcome, Error> {
        admission::admit(self.batch, status, &self.gateway.object, self.ctx).await
    }

    async fn run_direct(&mut self, status: &BatchStatus) -> Result<Option<Outcome>, Error> {
        direct_job::run(self.batch, status, self.gateway, self.ctx).await
    }

    async fn download(
        &mut self,
        status: &BatchStatus,
        output: Option<String>,
        errors: Option<String>,
    ) -> Result<Option<Outcome>, Error> {
        let (batch, ctx) = (self.batch, self.ctx);
        if let Some(pvc) = batch.spec.output.as_ref().and_then(|o| o.pvc.as_ref()) {
            return pvc_sink::download(batch, status, &self.gateway.object, pvc, output, errors, ctx).await;
        }
        let scratch = std::env::temp_dir().join(format!("llmbatch-{}", uuid::Uuid::new_v4()));
        let result = download_into(batch, status, &self.gateway.client, output, errors, &scratch, ctx).await;
        let _ = tokio::fs::remove_dir_all(&scratch).await;
        Ok(Some(result.unwrap_or_else(|failed| failed)))
    }
}

/// The input as it is uploaded: its byteRange, rewritten by its overrides; and its report.
fn prepare(batch: &Batch, bytes: &[u8], limits: Limits) -> (Vec<u8>, crate::jsonl::Report) {
    let input = &batch.spec.input;
    let range = input.byte_range.map(|r| r.start..r.end);
    prepare_bytes(bytes, range, steps::rewrite(input), batch.spec.endpoint.path(), limits)
}

/// Downloads both files (to a scratch directory, counted line by line) and puts them in the
/// output Secret when they fit, or under the object-store prefix; otherwise the status keeps
/// the file ids.
async fn download_into(
    batch: &Batch,
    status: &BatchStatus,
    gateway: &GatewayClient,
    output_id: Option<String>,
    error_id: Option<String>,
    scratch: &Path,
    ctx: &Context,
) -> Result<Outcome, Outcome> {
    let local = |e: std::io::Error| Outcome::GatewayError {
        class: ErrorClass::Output,
        message: format!("scratch space: {e}"),
    };
    let expected = steps::expected_ids(status);
    let mut downloaded =
        steps::download_results(gateway, output_id.as_deref(), error_id.as_deref(), scratch, expected).await?;
    let files: Vec<(String, std::path::PathBuf)> = ["output.jsonl", "errors.jsonl"]
        .into_iter()
        .map(|name| (name.to_string(), scratch.join(name)))
        .filter(|(_, path)| path.exists())
        .collect();
    match object_io::output(ctx, batch).await {
        Ok(Some(prefix)) => {
            let manifest = manifest(batch, status);
            return steps::bucket::store_results(&prefix, scratch, downloaded, manifest).await;
        }
        Ok(None) => {}
        Err(InputError::Api(e)) => return Err(output_failure(e.to_string())),
        Err(InputError::NotFound(m) | InputError::Invalid(m)) => return Err(output_failure(m)),
    }
    let Some(secret) = batch.spec.output.as_ref().and_then(|o| o.secret.as_ref()) else {
        downloaded.location = "on the gateway (status.gateway has the file ids)".into();
        return Ok(Outcome::Downloaded(downloaded));
    };
    let packed = tokio::task::spawn_blocking(move || pack_for_secret(&files, MAX_SECRET_BYTES)).await;
    let contents = match packed.map_err(|e| local(std::io::Error::other(e)))?.map_err(local)? {
        Packed::Fits(contents) => contents,
        Packed::TooLarge { bytes } => {
            downloaded.location = "the gateway (status.gateway has the file ids)".into();
            downloaded.not_stored = Some(format!(
                "{bytes} bytes of results do not fit Secret {} even gzip-compressed; they stay on the gateway \
                 (status.gateway.outputFileId, errorFileId): use a PVC or object storage output",
                secret.name
            ));
            return Ok(Outcome::Downloaded(downloaded));
        }
    };
    let written = cluster_io::write_output_secret(&ctx.client, batch, &secret.name, contents).await;
    let written = written.map_err(|e| Outcome::GatewayError {
        class: ErrorClass::Output,
        message: format!("output Secret {}: {e}", secret.name),
    })?;
    if let Err(message) = written {
        return Ok(Outcome::OutputNotOwned { message });
    }
    downloaded.location = format!("Secret {}", secret.name);
    Ok(Outcome::Downloaded(downloaded))
}

fn output_failure(message: String) -> Outcome {
    Outcome::GatewayError {
        class: ErrorClass::Output,
        message,
    }
}

/// `manifest.json` for an object-store output (counts and usage are filled in when written).
fn manifest(batch: &Batch, status: &BatchStatus) -> Manifest {
    let gateway = status.gateway.clone().unwrap_or_default();
    let ns = batch.namespace().unwrap_or_default();
    Manifest {
        batch: super::batch::key(batch),
        batch_id: gateway.batch_id,
        input_file_id: gateway.input_file_id,
        output_file_id: gateway.output_file_id,
        error_file_id: gateway.error_file_id,
        input: steps::bucket::input_description(&ns, &batch.spec.input),
        submitted_at: status.submit_time.as_ref().map(|t| t.0.to_string()),
        written_at: k8s_openapi::jiff::Timestamp::now().to_string(),
        ..Default::default()
    }
}
