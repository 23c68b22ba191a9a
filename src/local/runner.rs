//! Drives one Batch through the engine until its phase is final, persisting the status after
//! every step so a killed run resumes where it stopped.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use super::progress::BatchProgress;
use super::resolve::Plan;
use super::state::{BatchState, StateDir, write_atomically};
use crate::api::{BatchPhase, BatchStatus};
use crate::backoff::Backoff;
use crate::driver::storage::{self as storage_steps, input_description};
use crate::driver::{self, crash_if_asked};
use crate::engine::{self, Action, ErrorClass, Outcome, PollingPolicy};
use crate::gateway::{GatewayClient, UploadSource};
use crate::sweep::ValidatedInput;

/// How soon a Batch waiting for room on its gateway asks again.
const AWAITING_BUDGET: Duration = Duration::from_millis(250);

/// Consecutive transient gateway failures (each already retried by the client) before a run gives up.
const MAX_TRANSIENT_FAILURES: u32 = 6;

/// How a batch's run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// The phase is final.
    Finished(BatchPhase),
    /// The run stopped before the end (key refused, gateway down); a rerun resumes.
    Stopped(String),
    /// Ctrl-C.
    Interrupted,
}

/// Everything one batch's run needs.
pub struct BatchRun<'a> {
    pub plan: &'a Plan,
    pub state: BatchState,
    pub client: GatewayClient,
    pub polling: PollingPolicy,
    /// What validation found.
    pub validated: crate::jsonl::Summary,
    pub out_dir: PathBuf,
    pub state_dir: &'a StateDir,
    pub progress: BatchProgress,
    pub cancel: CancellationToken,
    /// The run's admission board, and this Batch's place in the files (its queue order).
    pub board: &'a super::admission::Board,
    pub order: usize,
}

impl BatchRun<'_> {
    /// Runs until the phase is final, the run must stop, or Ctrl-C.
    pub async fn run(mut self) -> (Ending, BatchStatus) {
        self.progress.update(&self.state.status);
        let mut transient_failures = 0;
        let ending = loop {
            let action = engine::decide(&self.plan.batch.object.spec, &self.state.status, &self.context());
            if action == Action::Finished {
                break Ending::Finished(self.state.status.phase.unwrap_or_default());
            }
            let step = action.name();
            let outcome = match action {
                Action::ResolveMode => self.resolve_mode().await,
                Action::Admit => self.board.admit(self.plan, &self.state.status),
                Action::RunDirect => match self.run_direct().await {
                    Some(outcome) => outcome,
                    None => break Ending::Interrupted,
                },
                action => tokio::select! {
                    _ = self.cancel.cancelled() => break Ending::Interrupted,
                    outcome = self.perform(action) => outcome,
                },
            };
            crash_if_asked(step);
            let failure = outcome.failure().map(|(class, message)| (class, message.to_string()));
            let awaiting_budget = matches!(outcome, Outcome::AwaitingBudget { .. });
            self.state.status = engine::reduce(&self.state.status, outcome, &self.context());
            if let Err(e) = self.persist() {
                break Ending::Stopped(format!("cannot save state: {e}"));
            }
            self.progress.update(&self.state.status);
            if awaiting_budget {
                tokio::select! {
                    _ = self.cancel.cancelled() => break Ending::Interrupted,
                    _ = tokio::time::sleep(AWAITING_BUDGET) => {}
                }
            }
            match failure {
                Some((ErrorClass::Unauthorized, _)) => {
                    break Ending::Stopped("the gateway refused the API key; fix it and rerun to resume".into());
                }
                Some((ErrorClass::Misconfigured, message)) => {
                    break Ending::Stopped(format!("{message}; rerun to resume"));
                }
                Some((ErrorClass::NotFound, message)) if self.state.status.phase.is_none_or(|p| !p.is_terminal()) => {
                    break Ending::Stopped(format!("{message}; rerun once that is fixed"));
                }
                Some((class, message)) if class.is_retryable() => {
                    transient_failures += 1;
                    if transient_failures >= MAX_TRANSIENT_FAILURES {
                        break Ending::Stopped(format!("{message}, {transient_failures} times; rerun to resume"));
                    }
                    let pause = Backoff::new(Duration::from_secs(2), Duration::from_secs(32)).delay(transient_failures);
                    tokio::select! {
                        _ = self.cancel.cancelled() => break Ending::Interrupted,
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
                _ => transient_failures = 0,
            }
        };
        self.progress.finish();
        (ending, self.state.status)
    }

    pub(super) fn context(&self) -> engine::Context {
        engine::Context {
            uid: self.state.uid.clone(),
            object: self.plan.object(),
            generation: self.plan.batch.object.metadata.generation.or(Some(1)),
            polling: self.polling,
            now: Timestamp::now(),
        }
    }

    async fn perform(&self, action: Action) -> Outcome {
        match action {
            Action::ValidateInput => self.validate().await,
            Action::CancelBeforeSubmit => Outcome::CancelledBeforeSubmit,
            Action::StartAttempt => Outcome::AttemptStarted {
                token: driver::attempt_token(),
            },
            Action::UploadInput { filename } => match &self.plan.object_input {
                Some(object) => {
                    let validated = self.state.status.input.clone().unwrap_or_default();
                    storage_steps::upload(&self.client, &filename, object, &validated).await
                }
                None => {
                    driver::upload_input(&self.client, &filename, UploadSource::Bytes(self.plan.input.clone())).await
                }
            },
            Action::CreateBatch(request) => driver::create_batch(&self.client, &request).await,
            Action::Poll { batch_id, after } => {
                tokio::time::sleep(after).await;
                driver::poll(&self.client, &batch_id).await
            }
            Action::Cancel { batch_id } => driver::cancel(&self.client, &batch_id).await,
            Action::Download {
                output_file_id,
                error_file_id,
            } => self.download(output_file_id, error_file_id).await,
            Action::ResolveMode | Action::Admit | Action::RunDirect | Action::Finished => {
                unreachable!("handled by the loop")
            }
        }
    }

    /// The input was validated when the run was planned (before the mode was known): what
    /// depends on the mode is checked now; an object is read through once.
    async fn validate(&self) -> Outcome {
        let spec = &self.plan.batch.object.spec;
        let problems = engine::check_spec(spec, self.state.status.mode);
        if !problems.is_empty() {
            return Outcome::SpecInvalid {
                message: problems.join("; "),
            };
        }
        match (&spec.input.file_id, &self.plan.object_input) {
            (Some(file_id), _) => driver::input_on_gateway(&self.client, file_id).await,
            (None, Some(object)) => storage_steps::validate(object, ValidatedInput::of(&self.plan.batch.object)).await,
            (None, None) => Outcome::InputValidated {
                requests: self.validated.requests,
                bytes: self.validated.bytes,
                estimated_tokens: self.validated.estimated_tokens,
                digest: None,
                ids: driver::input_ids(self.validated.ids),
            },
        }
    }

    /// Downloads both files into the output directory and counts what they hold.
    async fn download(&self, output_file_id: Option<String>, error_file_id: Option<String>) -> Outcome {
        self.try_download(output_file_id, error_file_id)
            .await
            .unwrap_or_else(|failed| failed)
    }

    async fn try_download(&self, output_id: Option<String>, error_id: Option<String>) -> Result<Outcome, Outcome> {
        let dir = self.plan.pvc_output.as_ref().map_or(&self.out_dir, |pvc| &pvc.dir);
        let mut downloaded = driver::download_results(
            &self.client,
            output_id.as_deref(),
            error_id.as_deref(),
            dir,
            driver::expected_ids(&self.state.status),
        )
        .await?;
        downloaded.location = match &self.plan.pvc_output {
            Some(pvc) => pvc.location.clone(),
            None => dir.display().to_string(),
        };
        match &self.plan.object_output {
            Some(prefix) => storage_steps::store_results(prefix, dir, downloaded, self.manifest()).await,
            None => Ok(Outcome::Downloaded(downloaded)),
        }
    }

    /// `manifest.json` for an object-store output (counts and usage are filled in when written).
    pub(super) fn manifest(&self) -> crate::io::object_output::Manifest {
        let status = &self.state.status;
        let gateway = status.gateway.clone().unwrap_or_default();
        let input = &self.plan.batch.object.spec.input;
        crate::io::object_output::Manifest {
            batch: self.plan.object(),
            batch_id: gateway.batch_id,
            input_file_id: gateway.input_file_id,
            output_file_id: gateway.output_file_id,
            error_file_id: gateway.error_file_id,
            input: input_description(&self.plan.namespace, input),
            submitted_at: status.submit_time.as_ref().map(|t| t.0.to_string()),
            written_at: Timestamp::now().to_string(),
            ..Default::default()
        }
    }

    pub(super) fn persist(&self) -> anyhow::Result<()> {
        self.board.update(self.plan, self.order, &self.state.status);
        self.state_dir
            .save(&self.plan.namespace, &self.plan.name, &self.state)?;
        write_status_yaml(&self.out_dir, &self.state.status)
    }
}

/// Writes `status.yaml`: the status the controller would write.
pub fn write_status_yaml(out_dir: &std::path::Path, status: &BatchStatus) -> anyhow::Result<()> {
    std::fs::create_dir_all(out_dir)?;
    write_atomically(&out_dir.join("status.yaml"), serde_yaml::to_string(status)?.as_bytes())
}
