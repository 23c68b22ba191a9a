//! Writing a batch's output and error files, streamed to disk line by line.

use std::path::PathBuf;

use serde_json::{Value, json};
use tokio::io::{AsyncWriteExt, BufWriter};

use super::answers::{self, Refusal};
use super::rng::{fnv1a, unit_interval};
use super::state::SimState;
use super::wire::{BatchUsage, FileObject, RequestCounts, now_secs};

/// Why a line was never executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abort {
    Expired,
    Cancelled,
}

impl Abort {
    fn code(self) -> &'static str {
        match self {
            Abort::Expired => "batch_expired",
            Abort::Cancelled => "batch_cancelled",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Abort::Expired => "This request could not be executed before the completion window expired.",
            Abort::Cancelled => "This request was not executed because the batch was cancelled.",
        }
    }
}

/// One result file being written; created on its first line.
struct Sink {
    id: String,
    path: PathBuf,
    writer: BufWriter<tokio::fs::File>,
}

/// The output and error files of one batch, with the counts and usage they account for.
pub struct ResultFiles {
    state: SimState,
    batch_id: String,
    line_failure_rate: f64,
    output: Option<Sink>,
    error: Option<Sink>,
    pub counts: RequestCounts,
    pub usage: BatchUsage,
}

/// The ids of the files a batch produced.
#[derive(Debug, Default)]
pub struct Produced {
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
}

/// True when the simulated line with this custom_id fails (deterministic per custom_id).
pub fn line_fails(custom_id: &str, rate: f64) -> bool {
    unit_interval(fnv1a(custom_id.as_bytes())) < rate
}

fn request_id(batch_id: &str, custom_id: &str) -> String {
    format!("req_{:016x}", fnv1a(format!("{batch_id}/{custom_id}").as_bytes()))
}

impl ResultFiles {
    /// Starts empty result files for a batch.
    pub fn new(state: SimState, batch_id: &str, line_failure_rate: f64) -> Self {
        ResultFiles {
            state,
            batch_id: batch_id.to_owned(),
            line_failure_rate,
            output: None,
            error: None,
            counts: RequestCounts::default(),
            usage: BatchUsage::default(),
        }
    }

    /// Executes one request and writes its result line.
    pub async fn execute(&mut self, endpoint: &str, custom_id: &str, body: &Value) -> std::io::Result<()> {
        let request_id = request_id(&self.batch_id, custom_id);
        let outcome = if line_fails(custom_id, self.line_failure_rate) {
            Err(Refusal {
                status: 500,
                message: "The server had an error processing your request (simulated).".into(),
                param: None,
            })
        } else {
            answers::answer(endpoint, body)
        };
        match outcome {
            Ok(answer) => {
                self.usage.add(&answer);
                let body = answer.body;
                self.counts.completed += 1;
                let response = json!({"status_code": 200, "request_id": request_id, "body": body});
                self.write(false, custom_id, response, Value::Null).await
            }
            Err(refusal) => {
                self.counts.failed += 1;
                let (kind, code) = if refusal.status >= 500 {
                    ("server_error", "server_error")
                } else {
                    ("invalid_request_error", "invalid_request")
                };
                let error = json!({"error": {"message": refusal.message, "type": kind,
                    "param": refusal.param, "code": code}});
                let response = json!({"status_code": refusal.status, "request_id": request_id, "body": error});
                self.write(true, custom_id, response, Value::Null).await
            }
        }
    }

    /// Writes an error line for a request that was never executed.
    pub async fn abort(&mut self, custom_id: &str, why: Abort) -> std::io::Result<()> {
        self.counts.failed += 1;
        let error = json!({"code": why.code(), "message": why.message()});
        self.write(true, custom_id, Value::Null, error).await
    }

    async fn write(&mut self, to_error: bool, custom_id: &str, response: Value, error: Value) -> std::io::Result<()> {
        let line_id = format!(
            "batch_req_{:016x}",
            fnv1a(format!("{}/{custom_id}", self.batch_id).as_bytes())
        );
        let line = json!({"id": line_id, "custom_id": custom_id, "response": response, "error": error});
        let mut bytes = serde_json::to_vec(&line)?;
        bytes.push(b'\n');
        let slot = if to_error { &mut self.error } else { &mut self.output };
        if slot.is_none() {
            let id = format!("file-{}", uuid::Uuid::new_v4().simple());
            let path = self.state.file_path(&id);
            let file = tokio::fs::File::create(&path).await?;
            *slot = Some(Sink {
                id,
                path,
                writer: BufWriter::with_capacity(64 * 1024, file),
            });
        }
        let sink = slot.as_mut().expect("sink was just created");
        sink.writer.write_all(&bytes).await
    }

    /// Flushes both files and registers them as `batch_output` File objects.
    pub async fn finish(&mut self) -> std::io::Result<Produced> {
        let output = Self::register(&self.state, &self.batch_id, "output", self.output.take()).await?;
        let error = Self::register(&self.state, &self.batch_id, "error", self.error.take()).await?;
        Ok(Produced {
            output_file_id: output,
            error_file_id: error,
        })
    }

    async fn register(
        state: &SimState,
        batch_id: &str,
        kind: &str,
        sink: Option<Sink>,
    ) -> std::io::Result<Option<String>> {
        let Some(mut sink) = sink else {
            return Ok(None);
        };
        sink.writer.flush().await?;
        let bytes = tokio::fs::metadata(&sink.path).await?.len();
        state.insert_file(FileObject {
            id: sink.id.clone(),
            object: "file",
            bytes,
            created_at: now_secs(),
            filename: format!("{batch_id}_{kind}.jsonl"),
            purpose: "batch_output".into(),
            status: "processed",
            expires_at: None,
            status_details: None,
        });
        Ok(Some(sink.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_failures_follow_the_rate() {
        assert!(!line_fails("a", 0.0));
        assert!(line_fails("a", 1.0));
        let failed = (0..1000).filter(|i| line_fails(&format!("req-{i}"), 0.3)).count();
        assert!((200..400).contains(&failed), "{failed}");
    }
}
