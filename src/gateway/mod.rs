//! Client of an OpenAI-compatible Files + Batches API.
//!
//! [`GatewayClient`] uploads input files, creates, polls, lists and cancels batches, and streams
//! result files, retrying transient failures (408, 429, 5xx, timeouts, resets) with exponential
//! backoff and full jitter while honouring `retry-after`. It knows nothing of its callers.
//!
//! Paths are relative to a base URL ending in `/v1`; the key is sent as `Authorization: Bearer`,
//! marked sensitive, and never appears in errors, logs or `Debug` output. IDs are opaque strings.
//!
//! ```no_run
//! # async fn demo() -> Result<(), llm_batch_operator::gateway::GatewayError> {
//! use llm_batch_operator::gateway::*;
//! let mut config = GatewayConfig::new("https://api.openai.com/v1".parse().unwrap());
//! config.api_key = Some(ApiKey::new("sk-..."));
//! let client = GatewayClient::new(config)?;
//! let file = client
//!     .upload_file("in.jsonl", "batch", UploadSource::Path("in.jsonl".into()))
//!     .await?;
//! let batch = client
//!     .create_batch(&CreateBatch {
//!         input_file_id: file.id,
//!         endpoint: "/v1/chat/completions".into(),
//!         completion_window: "24h".into(),
//!         metadata: Default::default(),
//!     })
//!     .await?;
//! # let _ = batch; Ok(()) }
//! ```

mod batches;
mod client;
mod config;
mod direct;
mod download;
mod error;
mod error_body;
mod files;
mod observer;
mod pages;
pub mod retry;
mod types;

pub use client::GatewayClient;
pub use config::{ApiKey, GatewayConfig, ResponseLimits, RetryPolicy};
pub use direct::DirectReply;
pub use error::GatewayError;
pub(crate) use error::cause_chain;
pub(crate) use error_body::truncate;
pub use observer::{Observer, RequestObserver, RequestOutcome};
pub use pages::{CLOCK_SKEW_SECS, FindError, MAX_EXAMINED};
pub use retry::{GiveUpReason, RetryDecision};
pub use types::{
    Batch, BatchError, BatchErrors, BatchStatus, BatchUsage, CreateBatch, FileObject, InputTokensDetails, ListFiles,
    OutputTokensDetails, Page, RequestCounts, SortOrder, StreamSource, UploadSource,
};
