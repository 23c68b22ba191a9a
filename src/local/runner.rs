//! Drives one Batch through the engine until its phase is final, persisting the status after
//! every step so a killed run resumes where it stopped.

use std::convert::Infallible;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use super::progress::BatchProgress;
use super::resolve::{GatewayTarget, Plan};
use super::state::{BatchState, StateDir, write_atomically};

use crate::api::{Batch, BatchMode, BatchPhase, BatchStatus, GatewayMode};
use crate::backoff::Backoff;
use crate::engine::admission::OverBudget;
use crate::engine::{self, Action, ErrorClass, Outcome, PollingPolicy};
use crate::gateway::GatewayClient;
use crate::steps::bucket::{self, input_description};
use crate::steps::{self, Driver, Input, crash_if_asked};

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

/// Why `run -f` ends a Batch the money budget holds back, rather than wait for the window to
/// roll (it waits only for running Batches, whose end may make room).
fn held_back_by_budget(over: &OverBudget) -> String {
    match over.room_at {
        Some(at) => format!(
            "held back by the gateway's budget ({}); it could run after {at}",
            over.message
        ),
        None => format!("held back by the gateway's budget ({})", over.message),
    }
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
    /// The attempts this run started (a new run, like a restart, searches for what earlier
    /// runs created).
    pub fresh_attempts: steps::FreshAttempts,
    /// Where the Batch's end is told (`spec.notify`, else its gateway's).
    pub webhook: Option<&'a super::resolve::LocalWebhook>,
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
            if let Action::Poll { after, .. } = action
                && !self.pause(after).await
            {
                break Ending::Interrupted;
            }
            // A direct run stops itself on Ctrl-C, keeping what it finished.
            let stops_itself = action == Action::RunDirect;
            let (status, cancel) = (self.state.status.clone(), self.cancel.clone());
            let performed = tokio::select! {
                _ = cancel.cancelled(), if !stops_itself => break Ending::Interrupted,
                performed = steps::perform(&mut self, &status, action) => performed,
            };
            let Some(outcome) = performed.unwrap_or_else(|never| match never {}) else {
                break Ending::Interrupted;
            };
            crash_if_asked(step);
            self.announce(&outcome);
            let failure = outcome.failure().map(|(class, message)| (class, message.to_string()));
            let awaiting_budget = matches!(outcome, Outcome::AwaitingBudget { .. } | Outcome::OverBudget(_));
            let held_back = match &outcome {
                Outcome::OverBudget(over) if !over.running => Some(held_back_by_budget(over)),
                _ => None,
            };
            let before = std::mem::take(&mut self.state.status);
            self.state.status = engine::reduce(&before, outcome, &self.context());
            if let Some(stalled) = engine::newly_stalled(&before, &self.state.status) {
                let object = self.plan.object();
                self.progress.say(format!("{object}: Stalled: {}", stalled.message));
            }
            if let Err(e) = self.persist() {
                break Ending::Stopped(format!("cannot save state: {e}"));
            }
            self.progress.update(&self.state.status);
            if let Some(why) = held_back {
                break Ending::Stopped(why);
            }
            if awaiting_budget && !self.pause(AWAITING_BUDGET).await {
                break Ending::Interrupted;
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
                    if !self.pause(pause).await {
                        break Ending::Interrupted;
                    }
                }
                _ => transient_failures = 0,
            }
        };
        if !matches!(ending, Ending::Finished(_)) {
            // Batches behind this one in the gateway's queue must not wait for it.
            self.board.withdraw(self.plan);
        } else if let Some(webhook) = self.webhook {
            self.tell(webhook).await;
        }
        self.progress.finish();
        (ending, self.state.status)
    }

    /// Sends the finished Batch's event to its webhook and keeps the record in its status.
    async fn tell(&mut self, webhook: &super::resolve::LocalWebhook) {
        let mut object = self.plan.batch.object.clone();
        object.metadata.uid = Some(self.state.uid.clone());
        let said = super::notify::deliver(webhook, &object, &mut self.state.status, &self.cancel).await;
        for line in said {
            self.progress.say(format!("{}: {line}", self.plan.object()));
        }
        if let Err(e) = self.persist() {
            self.progress
                .say(format!("{}: cannot save state: {e}", self.plan.object()));
        }
    }

    /// Waits `wait`; false when Ctrl-C came first.
    async fn pause(&self, wait: Duration) -> bool {
        tokio::select! {
            _ = self.cancel.cancelled() => false,
            _ = tokio::time::sleep(wait) => true,
        }
    }

    /// Says what the user would not expect: a gateway answered in direct mode.
    fn announce(&self, outcome: &Outcome) {
        if let Outcome::ModeResolved {
            mode: BatchMode::Direct,
        } = outcome
        {
            self.progress.say(format!(
                "{}: no batch API on the gateway (or mode: Direct): sending each request directly",
                self.plan.object()
            ));
        }
    }

    pub(super) fn context(&self) -> engine::Context {
        engine::Context {
            uid: self.state.uid.clone(),
            object: self.plan.object(),
            generation: self.plan.batch.object.metadata.generation.or(Some(1)),
            polling: self.polling,
            now: Timestamp::now(),
            prices: self.plan.gateway.prices(),
        }
    }

    async fn try_download(&self, output_id: Option<String>, error_id: Option<String>) -> Result<Outcome, Outcome> {
        let dir = self.plan.pvc_output.as_ref().map_or(&self.out_dir, |pvc| &pvc.dir);
        let mut downloaded = steps::download_results(
            &self.client,
            output_id.as_deref(),
            error_id.as_deref(),
            dir,
            steps::expected_ids(&self.state.status),
        )
        .await?;
        downloaded.location = match &self.plan.pvc_output {
            Some(pvc) => pvc.location.clone(),
            None => dir.display().to_string(),
        };
        match &self.plan.object_output {
            Some(prefix) => bucket::store_results(prefix, dir, downloaded, self.manifest()).await,
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

/// `run -f`'s side of each step: the input as the run was planned (validated in memory, or
/// streamed from object storage), admission on the run's own board, the direct run in-process,
/// and the results into the output directory (and the claim's directory, and object storage).
impl Driver for BatchRun<'_> {
    type Error = Infallible;

    fn batch(&self) -> &Batch {
        &self.plan.batch.object
    }

    fn client(&self) -> &GatewayClient {
        &self.client
    }

    fn fresh_attempts(&self) -> &steps::FreshAttempts {
        &self.fresh_attempts
    }

    fn gateway_mode(&self) -> (GatewayMode, Option<bool>) {
        match &self.plan.gateway {
            GatewayTarget::Remote(gw) => (gw.spec.mode, None),
            GatewayTarget::Builtin { .. } => (GatewayMode::Auto, None),
        }
    }

    /// What only a cluster needs (a Job image, a claim) is not needed here.
    fn problems(&self, _mode: Option<BatchMode>) -> Vec<String> {
        Vec::new()
    }

    async fn input(&mut self, _status: &BatchStatus) -> Result<Input, Infallible> {
        Ok(match &self.plan.object_input {
            Some(object) => Input::Object(object.clone()),
            None => Input::Prepared {
                bytes: self.plan.input.clone(),
                summary: self.validated.clone(),
            },
        })
    }

    async fn admit(&mut self, status: &BatchStatus) -> Result<Outcome, Infallible> {
        Ok(self.board.admit(self.plan, status))
    }

    async fn run_direct(&mut self, _status: &BatchStatus) -> Result<Option<Outcome>, Infallible> {
        Ok(self.run_directly().await)
    }

    /// Downloads both files into the output directory and counts what they hold.
    async fn download(
        &mut self,
        _status: &BatchStatus,
        output_file_id: Option<String>,
        error_file_id: Option<String>,
    ) -> Result<Option<Outcome>, Infallible> {
        let downloaded = self.try_download(output_file_id, error_file_id).await;
        Ok(Some(downloaded.unwrap_or_else(|failed| failed)))
    }
}

/// Writes `status.yaml`: the status the controller would write.
pub fn write_status_yaml(out_dir: &std::path::Path, status: &BatchStatus) -> anyhow::Result<()> {
    std::fs::create_dir_all(out_dir)?;
    write_atomically(&out_dir.join("status.yaml"), serde_yaml::to_string(status)?.as_bytes())
}
