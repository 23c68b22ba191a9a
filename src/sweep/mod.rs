//! The BatchSweep fan-out, decided without I/O (like `engine/` for one Batch): which child
//! Batches the sweep has, what each one runs, which to create next, and what the sweep's
//! status says. The drivers scan the input, create the children and write the status.

mod budget;
mod children;
mod naming;
mod progress;
mod retry;
mod summary;

#[cfg(test)]
mod retry_tests;
#[cfg(test)]
mod tests;

pub use budget::Spending;
pub use children::{
    ChildPlan, TooManyChunks, VALIDATED_INPUT_ANNOTATION, ValidatedInput, chunk_limits, chunk_planner, plan_children,
    plan_of, scan_rewrite,
};
pub use naming::{attempt_name, child_name, fit_dns_label};
pub use progress::{Decision, ObservedChild, decide, only_figures_differ, plan_failed};
pub use retry::{Chain, ChainState, RETRYABLE_CODES, chains, retry_filename, retryable_custom_id};
pub use summary::{AttemptSummary, ChildSummary, Summary, Totals, summarise};

/// Label on every child Batch naming its sweep.
pub const SWEEP_LABEL: &str = "llmbatch.io/sweep";
/// Annotation on a follow-up Batch: how many lines it retries.
pub const RETRY_LINES_ANNOTATION: &str = "llmbatch.io/retry-lines";
/// Annotation on a finished attempt: how many of its lines failed retryably (written once its
/// error file was read, so it is read only once).
pub const RETRYABLE_ANNOTATION: &str = "llmbatch.io/retryable-lines";
