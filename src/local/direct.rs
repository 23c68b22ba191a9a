//! `run -f` in direct mode: the direct run itself, in-process, with its checkpoint in the state
//! directory and its counts written to the status as lines finish.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use super::resolve::GatewayTarget;
use super::runner::BatchRun;
use crate::api::DirectLimits;
use crate::direct::{self, Conclusion, Counts, DirectJob};
use crate::engine::{self, Downloaded, ErrorClass, Outcome};
use crate::steps;

/// How often counts are written to the state (and reported) while a direct run goes.
const PERSIST_EVERY: Duration = Duration::from_secs(1);

impl BatchRun<'_> {
    /// Runs the Batch's lines directly until they are all answered, the completion window
    /// passes, or the run must stop. `None`: interrupted (Ctrl-C), resumable.
    pub(super) async fn run_directly(&mut self) -> Option<Outcome> {
        let spec = &self.plan.batch.object.spec;
        let limits = match &self.plan.gateway {
            GatewayTarget::Remote(gw) => gw.spec.limits.direct().map_err(|e| e.to_string()),
            GatewayTarget::Builtin { .. } => Ok(DirectLimits::default()),
        };
        let window = humantime::parse_duration(&spec.completion_window)
            .map_err(|e| format!("spec.completionWindow {:?}: {e}", spec.completion_window));
        let (limits, window) = match (limits, window) {
            (Ok(l), Ok(w)) => (l, w),
            (Err(message), _) | (_, Err(message)) => return Some(Outcome::SpecInvalid { message }),
        };
        let total = self.state.status.input.as_ref().map_or(0, |i| i.requests);
        let counts = self.state.status.request_counts.clone().unwrap_or_default();
        if let Err(e) = self.apply(Outcome::DirectProgress {
            total,
            completed: counts.completed,
            failed: counts.failed,
        }) {
            return Some(Outcome::GatewayError {
                class: ErrorClass::Output,
                message: format!("cannot save state: {e}"),
            });
        }
        let started: SystemTime = self
            .state
            .status
            .start_time
            .as_ref()
            .map_or_else(SystemTime::now, |t| t.0.into());
        let checkpoint_dir = match self.checkpoint_dir() {
            Ok(dir) => dir,
            Err(e) => {
                return Some(Outcome::GatewayError {
                    class: ErrorClass::Output,
                    message: e.to_string(),
                });
            }
        };
        let job = DirectJob {
            endpoint: spec.endpoint.path().to_string(),
            limits,
            deadline: Some(started + window),
            checkpoint_dir,
            cancel: spec.cancel,
        };
        let (progress, mut counts) = watch::channel(Counts::default());
        let (client, stop) = (self.client.clone(), self.cancel.clone());
        let input: Box<dyn tokio::io::AsyncBufRead + Send + Unpin> = match &self.plan.object_input {
            Some(object) => {
                let len = self.state.status.input.as_ref().map_or(0, |i| i.bytes);
                match object.prepared_reader(len).await {
                    Ok(reader) => Box::new(reader),
                    Err(e) => return Some(steps::bucket::input_failure(e)),
                }
            }
            None => Box::new(std::io::Cursor::new(self.plan.input.clone())),
        };
        let run = direct::run(&client, &job, input, progress, &stop);
        tokio::pin!(run);
        let mut persisted = Instant::now();
        let result = loop {
            tokio::select! {
                result = &mut run => break result,
                Ok(()) = counts.changed() => {
                    let now = *counts.borrow_and_update();
                    let outcome = Outcome::DirectProgress { total, completed: now.completed, failed: now.failed };
                    self.state.status = engine::reduce(&self.state.status, outcome, &self.context());
                    if persisted.elapsed() >= PERSIST_EVERY {
                        persisted = Instant::now();
                        self.progress.update(&self.state.status);
                        if let Err(e) = self.persist() {
                            tracing::warn!("cannot save the direct-mode progress: {e}");
                        }
                    }
                }
            }
        };
        match result {
            Ok((conclusion, _)) => Some(self.deliver(&job.checkpoint_dir, conclusion).await),
            Err(e) => steps::direct_failure(e),
        }
    }

    /// Where the direct run of this Batch (this state's uid) keeps its checkpoint.
    fn checkpoint_dir(&self) -> Result<PathBuf, super::paths::UnsafePath> {
        let plan = self.plan;
        let dir = format!("direct-{}", self.state.uid);
        self.state_dir.object_file(&plan.namespace, &plan.name, &dir)
    }

    /// Copies the results where the Batch's output goes (the output directory, its claim
    /// under --pvc-root, and object storage) and counts them.
    async fn deliver(&self, checkpoint: &Path, conclusion: Conclusion) -> Outcome {
        let state = steps::concluded(conclusion);
        let dir = self.plan.pvc_output.as_ref().map_or(&self.out_dir, |pvc| &pvc.dir);
        let mut downloaded = match copy_results(checkpoint, dir).await {
            Ok(downloaded) => downloaded,
            Err(e) => {
                return Outcome::GatewayError {
                    class: ErrorClass::Output,
                    message: format!("cannot write the results to {}: {e}", dir.display()),
                };
            }
        };
        if let Some(pvc) = &self.plan.pvc_output {
            downloaded.location = pvc.location.clone();
        }
        let Some(prefix) = &self.plan.object_output else {
            return Outcome::DirectFinished { state, downloaded };
        };
        match steps::bucket::store_results(prefix, dir, downloaded, self.manifest()).await {
            Ok(Outcome::Downloaded(downloaded)) => Outcome::DirectFinished { state, downloaded },
            Ok(other) | Err(other) => other,
        }
    }

    /// Reduces `outcome` into the status and saves it.
    fn apply(&mut self, outcome: Outcome) -> anyhow::Result<()> {
        self.state.status = engine::reduce(&self.state.status, outcome, &self.context());
        self.progress.update(&self.state.status);
        self.persist()
    }
}

/// `output.jsonl` always (empty when every line failed), `errors.jsonl` only when a line failed,
/// as in batch mode; each fsynced.
async fn copy_results(checkpoint: &Path, out_dir: &Path) -> std::io::Result<Downloaded> {
    tokio::fs::create_dir_all(out_dir).await?;
    let (output, errors) = (out_dir.join(direct::OUTPUT_FILE), out_dir.join(direct::ERRORS_FILE));
    copy_synced(&checkpoint.join(direct::OUTPUT_FILE), &output).await?;
    let mut downloaded = Downloaded {
        location: out_dir.display().to_string(),
        ..Default::default()
    };
    // Direct mode writes its own results: nothing to check them against.
    let ids = &mut steps::ResultIds::new(None);
    steps::summarise_output(&output, ids).await?.record(&mut downloaded);
    let source = checkpoint.join(direct::ERRORS_FILE);
    if tokio::fs::metadata(&source).await.is_ok_and(|m| m.len() > 0) {
        copy_synced(&source, &errors).await?;
        steps::summarise_errors(&errors, ids).await?.record(&mut downloaded);
    } else {
        let _ = tokio::fs::remove_file(&errors).await;
    }
    Ok(downloaded)
}

async fn copy_synced(from: &Path, to: &Path) -> std::io::Result<()> {
    let tmp = to.with_extension("tmp");
    match tokio::fs::copy(from, &tmp).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tokio::fs::write(&tmp, b"").await?;
        }
        Err(e) => return Err(e),
    }
    tokio::fs::File::open(&tmp).await?.sync_all().await?;
    tokio::fs::rename(&tmp, to).await
}
