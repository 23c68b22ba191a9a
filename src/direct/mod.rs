//! Direct mode: the lines of a Batch sent one by one to their endpoint, for gateways without a
//! batch API, with results in exactly the OpenAI batch output shape.
//!
//! Bounded concurrency (`maxConcurrentRequests`), even pacing (`requestsPerMinute`,
//! `tokensPerMinute`), a per-request timeout, 429 `retry-after` honoured by every sender, 5xx
//! and timeouts resent with backoff. The output and error files are the checkpoint: appended
//! and fsynced as lines finish, so a run killed at any moment resumes without resending a line
//! that is in them. Past the deadline (the completion window) the lines not done become
//! `batch_expired` errors and the completed ones are kept.
//!
//! Used in-process by `run -f` and by the `direct` subcommand (what a cluster Job runs).

mod checkpoint;
mod lines;
mod pacer;
pub mod progress;
mod run;
mod send;
mod summary;

pub use checkpoint::{Conclusion, Counts, ERRORS_FILE, OUTPUT_FILE};
pub use lines::estimate_tokens;
pub use run::{DirectError, DirectJob, run};
pub use summary::DirectSummary;
