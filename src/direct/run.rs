//! One direct run: read the input, send the lines not yet done, record every result, and
//! conclude (completed, expired or cancelled) or stop (resumable).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use tokio::sync::{Semaphore, watch};
use tokio::task::{Id, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::checkpoint::{self, Conclusion, Counts, Writer};
use super::lines::{self, InputLine, NotRun, ResultLine};
use super::pacer::Pacer;
use super::send::{Sender, send_line};
use crate::api::DirectLimits;
use crate::gateway::GatewayClient;

/// What to run and where its checkpoint lives.
#[derive(Debug, Clone)]
pub struct DirectJob {
    /// The endpoint every line goes to, e.g. `/v1/chat/completions`.
    pub endpoint: String,
    pub limits: DirectLimits,
    /// Past this the run concludes as expired; `None`: no deadline.
    pub deadline: Option<SystemTime>,
    /// Holds `output.jsonl`, `errors.jsonl` (results and checkpoint) and `finished.json`.
    pub checkpoint_dir: PathBuf,
    /// Conclude as cancelled: lines not done become `batch_cancelled` errors, nothing is sent.
    pub cancel: bool,
}

/// Answers held at once, in all: each request in flight may receive its share, so memory stays
/// bounded whatever a gateway answers, at any concurrency.
const ANSWERS_IN_FLIGHT: u64 = 32 * 1024 * 1024;

/// The largest answer one request may receive: its share of [`ANSWERS_IN_FLIGHT`], between
/// 1 MiB and 16 MiB (2 MiB at the default 16 requests in flight).
fn answer_limit(max_concurrent_requests: u32) -> u64 {
    const MIB: u64 = 1024 * 1024;
    (ANSWERS_IN_FLIGHT / u64::from(max_concurrent_requests.max(1))).clamp(MIB, 16 * MIB)
}

/// Why a run stopped before concluding. Rerunning the same job resumes it.
#[derive(Debug, thiserror::Error)]
pub enum DirectError {
    #[error("line {line}: {message}")]
    Input { line: u64, message: String },
    #[error("the gateway refused the API key ({0})")]
    Unauthorized(String),
    #[error("the gateway did not answer: {0}")]
    Unavailable(String),
    /// The gateway redirects, or its address is refused: it must be fixed first.
    #[error("{0}")]
    Misconfigured(String),
    #[error("checkpoint in {}: {source}", dir.display())]
    Checkpoint { dir: PathBuf, source: std::io::Error },
    #[error("interrupted")]
    Interrupted,
}

/// Runs `job` over `input` (JSONL, already validated), publishing counts on `progress` as
/// results are made durable. Returns how it concluded and the final counts.
pub async fn run(
    client: &GatewayClient,
    job: &DirectJob,
    input: impl AsyncBufRead + Unpin,
    progress: watch::Sender<Counts>,
    stop: &CancellationToken,
) -> Result<(Conclusion, Counts), DirectError> {
    let io = |source| DirectError::Checkpoint {
        dir: job.checkpoint_dir.clone(),
        source,
    };
    let dir = job.checkpoint_dir.clone();
    let recovered = tokio::task::spawn_blocking(move || checkpoint::recover(&dir))
        .await
        .map_err(|e| io(std::io::Error::other(e)))?
        .map_err(io)?;
    progress.send_replace(recovered.counts);
    if let Some(conclusion) = recovered.conclusion {
        return Ok((conclusion, recovered.counts));
    }
    let mut run = Run {
        input: Input::new(input, recovered.done),
        writer: Writer::start(job.checkpoint_dir.clone(), recovered.counts, progress),
        tasks: JoinSet::new(),
        in_flight: HashMap::new(),
    };
    let ended = match job.cancel {
        true => Ended::NotRun(NotRun::Cancelled),
        false => run.send_all(client, job, stop).await,
    };
    let outcome = run.wind_down(ended).await;
    let counts = run.writer.close().await.map_err(io)?;
    let conclusion = outcome?;
    let dir = job.checkpoint_dir.clone();
    tokio::task::spawn_blocking(move || checkpoint::finish(&dir, conclusion, counts))
        .await
        .map_err(|e| io(std::io::Error::other(e)))?
        .map_err(io)?;
    Ok((conclusion, counts))
}

/// Why sending stopped.
enum Ended {
    /// Every line was sent and answered.
    AllSent,
    /// The lines not done never run (deadline passed, or cancelled).
    NotRun(NotRun),
    /// The run must stop; a rerun resumes.
    Stopped(DirectError),
}

/// A run in progress: the input still to read, the requests in flight, the writer.
struct Run<R> {
    input: Input<R>,
    writer: Writer,
    tasks: JoinSet<Result<ResultLine, DirectError>>,
    /// The custom_id of every request in flight, by task.
    in_flight: HashMap<Id, String>,
}

impl<R: AsyncBufRead + Unpin> Run<R> {
    /// Sends every line not done, `maxConcurrentRequests` at a time, until all are answered,
    /// the deadline passes, a request says the run must stop, or `stop`.
    async fn send_all(&mut self, client: &GatewayClient, job: &DirectJob, stop: &CancellationToken) -> Ended {
        let sender = Arc::new(Sender {
            client: client.clone(),
            endpoint: job.endpoint.clone(),
            pacer: Pacer::new(&job.limits),
            timeout: job.limits.request_timeout,
            answer_limit: answer_limit(job.limits.max_concurrent_requests),
        });
        let permits = Arc::new(Semaphore::new(job.limits.max_concurrent_requests.max(1) as usize));
        let deadline = deadline_instant(job.deadline);
        let mut input_done = false;
        loop {
            if input_done && self.tasks.is_empty() {
                return Ended::AllSent;
            }
            tokio::select! {
                biased;
                _ = stop.cancelled() => return Ended::Stopped(DirectError::Interrupted),
                _ = tokio::time::sleep_until(deadline) => return Ended::NotRun(NotRun::Expired),
                Some(joined) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    if let Err(stopped) = self.record(joined).await {
                        return Ended::Stopped(stopped);
                    }
                }
                permit = permits.clone().acquire_owned(), if !input_done => {
                    let permit = permit.expect("the semaphore is never closed");
                    match self.input.next_to_send().await {
                        Ok(Some(line)) => {
                            let custom_id = line.custom_id.clone();
                            let task = self.tasks.spawn(send_line(sender.clone(), line, permit));
                            self.in_flight.insert(task.id(), custom_id);
                        }
                        Ok(None) => input_done = true,
                        Err(e) => return Ended::Stopped(e),
                    }
                }
            }
        }
    }

    /// Writes the result of a finished request; a request error stops the run.
    async fn record(
        &mut self,
        joined: Result<(Id, Result<ResultLine, DirectError>), tokio::task::JoinError>,
    ) -> Result<(), DirectError> {
        let (id, result) = joined.map_err(|e| DirectError::Unavailable(format!("a request task failed: {e}")))?;
        self.in_flight.remove(&id);
        let line = result?;
        if !self.writer.push(line).await {
            return Err(DirectError::Unavailable("the checkpoint writer stopped".into()));
        }
        Ok(())
    }

    /// Stops what is in flight, keeps what already finished, and (when the lines not done
    /// never run) writes them as such. Returns the conclusion, or why the run stopped.
    async fn wind_down(&mut self, ended: Ended) -> Result<Conclusion, DirectError> {
        self.tasks.abort_all();
        let not_run = match &ended {
            Ended::NotRun(why) => Some(*why),
            _ => None,
        };
        while let Some(joined) = self.tasks.join_next_with_id().await {
            match joined {
                Ok((id, Ok(line))) => {
                    self.in_flight.remove(&id);
                    self.writer.push(line).await;
                }
                Ok((id, Err(_))) => {
                    if let (Some(why), Some(custom_id)) = (not_run, self.in_flight.remove(&id)) {
                        self.writer.push(lines::not_run(&custom_id, why)).await;
                    }
                }
                Err(e) => {
                    if let (Some(why), Some(custom_id)) = (not_run, self.in_flight.remove(&e.id())) {
                        self.writer.push(lines::not_run(&custom_id, why)).await;
                    }
                }
            }
        }
        match ended {
            Ended::AllSent => Ok(Conclusion::Completed),
            Ended::Stopped(error) => Err(error),
            Ended::NotRun(why) => {
                while let Some(line) = self.input.next_to_send().await? {
                    self.writer.push(lines::not_run(&line.custom_id, why)).await;
                }
                Ok(match why {
                    NotRun::Expired => Conclusion::Expired,
                    NotRun::Cancelled => Conclusion::Cancelled,
                })
            }
        }
    }
}

fn deadline_instant(deadline: Option<SystemTime>) -> Instant {
    // Far enough to never fire, near enough not to overflow an Instant.
    const NEVER: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 24 * 3600);
    let left = match deadline {
        None => NEVER,
        Some(at) => at.duration_since(SystemTime::now()).unwrap_or_default(),
    };
    Instant::now() + left
}

/// The input lines, skipping the ones already done.
struct Input<R> {
    reader: R,
    done: HashSet<String>,
    number: u64,
    buffer: String,
}

impl<R: AsyncBufRead + Unpin> Input<R> {
    fn new(reader: R, done: HashSet<String>) -> Self {
        Input {
            reader,
            done,
            number: 0,
            buffer: String::new(),
        }
    }

    /// The next line not done yet; `None` at the end.
    async fn next_to_send(&mut self) -> Result<Option<InputLine>, DirectError> {
        loop {
            self.buffer.clear();
            self.number += 1;
            let read = self.reader.read_line(&mut self.buffer).await;
            let n = read.map_err(|e| self.invalid(format!("cannot read the input: {e}")))?;
            if n == 0 {
                return Ok(None);
            }
            if self.buffer.trim().is_empty() {
                continue;
            }
            let line: InputLine = serde_json::from_str(&self.buffer)
                .map_err(|e| self.invalid(format!("not a request line with custom_id and body ({e})")))?;
            if !self.done.contains(&line.custom_id) {
                return Ok(Some(line));
            }
        }
    }

    fn invalid(&self, message: String) -> DirectError {
        DirectError::Input {
            line: self.number,
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_in_flight_share_a_bounded_budget() {
        const MIB: u64 = 1024 * 1024;
        assert_eq!(answer_limit(16), 2 * MIB);
        assert_eq!(answer_limit(1), 16 * MIB);
        assert_eq!(answer_limit(0), 16 * MIB);
        assert_eq!(answer_limit(1000), MIB);
    }
}
