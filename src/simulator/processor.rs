//! The background task that moves one batch through its states:
//! validating -> in_progress -> finalizing -> completed, or failed / expired / cancelled.

use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::input::{InputSummary, LineReader, check_line, validate};
use super::results::{Abort, Produced, ResultFiles};
use super::state::SimState;
use super::wire::{Batch, BatchError, BatchErrors, BatchStatus, now_secs};

/// Everything a batch task needs, fixed at create time (config merged with `x-sim-*` headers).
#[derive(Debug, Clone)]
pub struct BatchPlan {
    pub batch_id: String,
    pub endpoint: String,
    /// The `input_file_id` the batch was created with.
    pub input_file_id: String,
    /// `None` when the input file did not exist at create time.
    pub input_path: Option<PathBuf>,
    pub line_failure_rate: f64,
    pub expire: bool,
    pub lines_per_sec: u64,
    pub validating: Duration,
    pub finalizing: Duration,
    pub cancelling: Duration,
}

/// How a batch that got past validation ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Completed,
    Expired,
    Cancelled,
}

/// One background task per batch. Returns quietly when the simulator shuts down.
pub async fn run(state: SimState, plan: BatchPlan, cancel: CancellationToken) {
    if let Err(err) = drive(&state, &plan, &cancel).await {
        if state.shutdown_token().is_cancelled() {
            return;
        }
        tracing::warn!(batch = %plan.batch_id, "simulated batch hit an I/O error: {err}");
        let error = BatchError {
            code: "server_error".into(),
            message: "The simulator could not process the batch.".into(),
            param: None,
            line: None,
        };
        fail(&state, &plan.batch_id, vec![error]);
    }
}

/// Waits for `duration`; false when the batch was cancelled (or the simulator stopped) meanwhile.
async fn pause(cancel: &CancellationToken, duration: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(duration) => !cancel.is_cancelled(),
        _ = cancel.cancelled() => false,
    }
}

async fn drive(state: &SimState, plan: &BatchPlan, cancel: &CancellationToken) -> std::io::Result<()> {
    let mut results = ResultFiles::new(state.clone(), &plan.batch_id, plan.line_failure_rate);
    if !pause(cancel, plan.validating).await {
        return conclude(state, plan, &mut results, Ending::Cancelled).await;
    }
    // One handle for both passes: deleting the input file mid-batch does not disturb it.
    let opened = match &plan.input_path {
        Some(path) => LineReader::open(path).await,
        None => Err(std::io::ErrorKind::NotFound.into()),
    };
    let mut reader = match opened {
        Ok(reader) => reader,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            fail(state, &plan.batch_id, vec![missing_input(&plan.input_file_id)]);
            return Ok(());
        }
        Err(err) => return Err(err),
    };
    let summary = match validate(&mut reader, &plan.endpoint).await? {
        Ok(summary) => summary,
        Err(errors) => {
            fail(state, &plan.batch_id, errors);
            return Ok(());
        }
    };
    reader.rewind().await?;
    let tokens = match &plan.input_path {
        Some(path) => tokio::fs::metadata(path).await?.len().div_ceil(4),
        None => 0,
    };
    match start(state, &plan.batch_id, &summary, tokens) {
        Ok(true) => {}
        Ok(false) => return conclude(state, plan, &mut results, Ending::Cancelled).await,
        Err(enqueued) => {
            let limit = state.config().enqueued_token_limit.unwrap_or(0);
            fail(state, &plan.batch_id, vec![token_limit(&summary, limit, enqueued)]);
            return Ok(());
        }
    }
    let ending = process_lines(state, plan, cancel, &summary, reader, &mut results).await?;
    if state.shutdown_token().is_cancelled() {
        return Ok(());
    }
    let ending = match ending {
        Some(why) => why,
        None => finalize(state, plan, cancel).await,
    };
    conclude(state, plan, &mut results, ending).await
}

/// What OpenAI reports for a batch created with an input file it cannot find (unknown or
/// deleted): it accepts the create, then fails the batch in validation with this error
/// (observed; shared/OPENAI_BATCH_API.md section 3), rather than refusing the create.
fn missing_input(file_id: &str) -> BatchError {
    BatchError {
        code: "invalid_request".into(),
        message: format!("Cannot find file {file_id}, or organization {ORGANIZATION} does not have access to it."),
        param: Some("file_id".into()),
        line: None,
    }
}

/// The organization named in messages that name one (the simulator has a single one).
const ORGANIZATION: &str = "org-simulator";

/// validating -> in_progress; false when a cancel came first, `Err` (the tokens already
/// enqueued) when the batch would pass `--enqueued-token-limit`.
fn start(state: &SimState, batch_id: &str, summary: &InputSummary, tokens: u64) -> Result<bool, u64> {
    let limit = state.config().enqueued_token_limit;
    state.start_batch(batch_id, tokens, limit, |b| {
        if b.status != BatchStatus::Validating {
            return false;
        }
        b.status = BatchStatus::InProgress;
        b.in_progress_at = Some(now_secs());
        b.request_counts.total = summary.total;
        b.model = summary.model.clone();
        true
    })
}

/// OpenAI's error for a batch past the organisation's enqueued-token limit.
fn token_limit(summary: &InputSummary, limit: u64, enqueued: u64) -> BatchError {
    let model = summary.model.clone().unwrap_or_else(|| "the model".into());
    BatchError {
        code: "token_limit_exceeded".into(),
        message: format!(
            "Enqueued token limit reached for {model} in organization org-simulator. Limit: {limit} enqueued \
             tokens ({enqueued} already enqueued). Please try again once some in_progress batches have been \
             completed."
        ),
        param: None,
        line: None,
    }
}

/// validating -> failed with `errors` (or cancelled, when a cancel is pending).
fn fail(state: &SimState, batch_id: &str, errors: Vec<BatchError>) {
    state.update_batch(batch_id, |b| {
        let now = Some(now_secs());
        if b.status == BatchStatus::Cancelling {
            b.status = BatchStatus::Cancelled;
            b.cancelled_at = now;
        } else {
            b.status = BatchStatus::Failed;
            b.failed_at = now;
        }
        b.errors = Some(BatchErrors {
            object: "list",
            data: errors,
        });
    });
}

/// Executes the lines at the paced speed. Returns why it stopped early, if it did.
async fn process_lines(
    state: &SimState,
    plan: &BatchPlan,
    cancel: &CancellationToken,
    summary: &InputSummary,
    mut reader: LineReader,
    results: &mut ResultFiles,
) -> std::io::Result<Option<Ending>> {
    let expire_after = plan.expire.then_some(summary.total / 2);
    let publish_every = (plan.lines_per_sec / 20).max(1);
    let started = Instant::now();
    let mut executed = 0u64;
    let mut stop: Option<Abort> = None;
    while let Some((line, raw)) = reader.next_line().await? {
        if state.shutdown_token().is_cancelled() {
            return Ok(None);
        }
        if stop.is_none() {
            stop = if cancel.is_cancelled() {
                Some(Abort::Cancelled)
            } else if expire_after == Some(executed) {
                Some(Abort::Expired)
            } else {
                None
            };
        }
        // Validation passed, so the line parses; a file changed underneath still gets an error line.
        let request = check_line(raw, line, &plan.endpoint);
        let custom_id = request.as_ref().map(|r| r.custom_id.clone()).unwrap_or_default();
        match (stop, request) {
            (Some(why), _) => results.abort(&custom_id, why).await?,
            (None, Ok(request)) => {
                results
                    .execute(&plan.endpoint, &request.custom_id, &request.body)
                    .await?;
                executed += 1;
                if executed.is_multiple_of(publish_every) {
                    publish(state, &plan.batch_id, results);
                    pace(cancel, started, executed, plan.lines_per_sec).await;
                }
            }
            (None, Err(_)) => results.abort(&custom_id, Abort::Cancelled).await?,
        }
    }
    publish(state, &plan.batch_id, results);
    Ok(stop.map(|why| match why {
        Abort::Expired => Ending::Expired,
        Abort::Cancelled => Ending::Cancelled,
    }))
}

/// Sleeps until `executed` lines are due at `lines_per_sec` (0 means unpaced).
async fn pace(cancel: &CancellationToken, started: Instant, executed: u64, lines_per_sec: u64) {
    if lines_per_sec == 0 {
        tokio::task::yield_now().await;
        return;
    }
    let due = started + Duration::from_secs_f64(executed as f64 / lines_per_sec as f64);
    tokio::select! {
        _ = tokio::time::sleep_until(due) => {}
        _ = cancel.cancelled() => {}
    }
}

/// Makes the progress so far visible to pollers.
fn publish(state: &SimState, batch_id: &str, results: &ResultFiles) {
    state.update_batch(batch_id, |b| {
        b.request_counts.completed = results.counts.completed;
        b.request_counts.failed = results.counts.failed;
        b.usage = results.usage;
    });
}

/// in_progress -> finalizing, then waits; a cancel meanwhile turns the ending into Cancelled.
async fn finalize(state: &SimState, plan: &BatchPlan, cancel: &CancellationToken) -> Ending {
    let entered = state
        .update_batch(&plan.batch_id, |b| {
            if b.status != BatchStatus::InProgress {
                return false;
            }
            b.status = BatchStatus::Finalizing;
            b.finalizing_at = Some(now_secs());
            true
        })
        .unwrap_or(false);
    if entered && pause(cancel, plan.finalizing).await {
        Ending::Completed
    } else {
        Ending::Cancelled
    }
}

/// Registers the result files and moves the batch to its final state.
async fn conclude(
    state: &SimState,
    plan: &BatchPlan,
    results: &mut ResultFiles,
    ending: Ending,
) -> std::io::Result<()> {
    if ending == Ending::Cancelled {
        tokio::select! {
            _ = tokio::time::sleep(plan.cancelling) => {}
            _ = state.shutdown_token().cancelled() => return Ok(()),
        }
    }
    let produced = results.finish().await?;
    let counts = results.counts;
    let usage = results.usage;
    state.update_batch(&plan.batch_id, |b| {
        b.request_counts.completed = counts.completed;
        b.request_counts.failed = counts.failed;
        b.usage = usage;
        settle(b, ending, produced);
    });
    Ok(())
}

/// Sets the final status; a cancel that raced the ending wins.
fn settle(batch: &mut Batch, ending: Ending, produced: Produced) {
    let now = Some(now_secs());
    batch.output_file_id = produced.output_file_id;
    batch.error_file_id = produced.error_file_id;
    let ending = if batch.status == BatchStatus::Cancelling {
        Ending::Cancelled
    } else {
        ending
    };
    match ending {
        Ending::Completed => {
            batch.status = BatchStatus::Completed;
            batch.completed_at = now;
        }
        Ending::Expired => {
            batch.status = BatchStatus::Expired;
            batch.expired_at = now;
        }
        Ending::Cancelled => {
            batch.status = BatchStatus::Cancelled;
            batch.cancelled_at = now;
        }
    }
}
