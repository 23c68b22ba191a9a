//! The one table from an engine [`Action`] to the I/O that performs it. Each driver (the
//! controller over the API server, `run -f` over its files and state directory) supplies
//! only what differs, through [`Driver`]: where the input is read, how admission asks for
//! room, how a direct run and the results' sink are done. A step or a rule is written once.

use bytes::Bytes;

use crate::api::{Batch, BatchMode, BatchStatus, GatewayMode};
use crate::engine::{self, Action, Outcome};
use crate::gateway::{GatewayClient, UploadSource};
use crate::io::ObjectInput;
use crate::jsonl::Summary;
use crate::sweep::ValidatedInput;

use super::{Call, Earlier, FreshAttempts};

/// A Batch's input as its driver reads it.
pub enum Input {
    /// In object storage: validated, and later uploaded, by streaming it.
    Object(ObjectInput),
    /// Held in memory, prepared (byteRange and overrides applied) and valid.
    Prepared { bytes: Bytes, summary: Summary },
    /// Not there (yet), or not valid: the outcome says which and where.
    Unreadable(Outcome),
}

/// What a driver does its own way. `Error` is a failure of the driver's own store (the API
/// server), retried by the driver and never put into the status as if it were the Batch's.
#[allow(async_fn_in_trait)] // called with concrete drivers only: their futures' Send-ness shows through
pub trait Driver {
    type Error;

    fn batch(&self) -> &Batch;
    fn client(&self) -> &GatewayClient;
    /// The attempts this process started (shared by every Batch the process runs, or one per
    /// Batch): what they cannot have created yet is not searched for.
    fn fresh_attempts(&self) -> &FreshAttempts;
    /// The gateway's `spec.mode`, and for Auto whether an earlier probe found a batch API.
    fn gateway_mode(&self) -> (GatewayMode, Option<bool>);
    /// What keeps this spec from running here in `mode`, beyond the engine's own rules.
    fn problems(&self, mode: Option<BatchMode>) -> Vec<String>;
    /// The input, read (and prepared) with the ceilings of the Batch's mode.
    async fn input(&mut self, status: &BatchStatus) -> Result<Input, Self::Error>;
    async fn admit(&mut self, status: &BatchStatus) -> Result<Outcome, Self::Error>;
    /// `None`: the direct run has not concluded now (a Job still runs, or Ctrl-C).
    async fn run_direct(&mut self, status: &BatchStatus) -> Result<Option<Outcome>, Self::Error>;
    /// Puts the result files into the Batch's sink; `None` while a Job doing that still runs.
    async fn download(
        &mut self,
        status: &BatchStatus,
        output_file_id: Option<String>,
        error_file_id: Option<String>,
    ) -> Result<Option<Outcome>, Self::Error>;
}

/// Performs one step. `None`: the step did not conclude now (nothing to do, a Job doing it
/// still runs, or the run was interrupted).
pub async fn perform<D: Driver>(
    driver: &mut D,
    status: &BatchStatus,
    action: Action,
) -> Result<Option<Outcome>, D::Error> {
    let client = driver.client().clone();
    Ok(Some(match action {
        Action::ResolveMode => {
            let (mode, probed) = driver.gateway_mode();
            super::resolve_mode(&client, mode, probed).await
        }
        Action::ValidateInput => validate(driver, status).await?,
        Action::CancelBeforeSubmit => Outcome::CancelledBeforeSubmit,
        Action::Admit => driver.admit(status).await?,
        Action::StartAttempt => {
            let token = super::attempt_token();
            driver.fresh_attempts().started(&token);
            Outcome::AttemptStarted { token }
        }
        Action::UploadInput { filename } => match driver.input(status).await? {
            Input::Object(object) => {
                let validated = status.input.clone().unwrap_or_default();
                let earlier = before(driver, status, Call::Upload);
                super::bucket::upload(&client, &filename, earlier, &object, &validated).await
            }
            Input::Prepared { bytes, .. } => {
                let earlier = before(driver, status, Call::Upload);
                super::upload_input(&client, &filename, earlier, UploadSource::Bytes(bytes)).await
            }
            Input::Unreadable(outcome) => outcome,
        },
        Action::CreateBatch(request) => {
            let earlier = driver.fresh_attempts().before(&request.attempt, Call::Create);
            let outcome = super::create_batch(&client, &request, earlier).await;
            if matches!(outcome, Outcome::BatchSubmitted { .. }) {
                driver.fresh_attempts().submitted(&request.attempt);
            }
            outcome
        }
        Action::Poll { batch_id, .. } => super::poll(&client, &batch_id).await,
        Action::Cancel { batch_id } => super::cancel(&client, &batch_id).await,
        Action::Download {
            output_file_id,
            error_file_id,
        } => return driver.download(status, output_file_id, error_file_id).await,
        Action::RunDirect => return driver.run_direct(status).await,
        Action::Finished => return Ok(None),
    }))
}

/// Whether what `call` of the status's attempt creates may exist already.
fn before<D: Driver>(driver: &D, status: &BatchStatus, call: Call) -> Earlier {
    match &status.attempt {
        Some(token) => driver.fresh_attempts().before(token, call),
        None => Earlier::MayExist,
    }
}

/// The spec's rules for its mode first (nothing is read for a spec that cannot run), then the
/// input: a file already on the gateway, an object streamed once, or the bytes in memory.
async fn validate<D: Driver>(driver: &mut D, status: &BatchStatus) -> Result<Outcome, D::Error> {
    let spec = &driver.batch().spec;
    let mut problems = engine::check_spec(spec, status.mode);
    problems.extend(driver.problems(status.mode));
    if !problems.is_empty() {
        return Ok(Outcome::SpecInvalid {
            message: problems.join("; "),
        });
    }
    if let Some(file_id) = spec.input.file_id.clone() {
        return Ok(super::input_on_gateway(driver.client(), &file_id).await);
    }
    Ok(match driver.input(status).await? {
        Input::Object(object) => super::bucket::validate(&object, ValidatedInput::of(driver.batch())).await,
        Input::Prepared { summary, .. } => Outcome::InputValidated {
            requests: summary.requests,
            bytes: summary.bytes,
            estimated_tokens: summary.estimated_tokens,
            estimates: summary.estimates,
            digest: None,
            ids: super::input_ids(summary.ids),
        },
        Input::Unreadable(outcome) => outcome,
    })
}
