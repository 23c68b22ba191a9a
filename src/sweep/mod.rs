//! The BatchSweep fan-out, decided without I/O (like `engine/` for one Batch): which child
//! Batches the sweep has, what each one runs, which to create next, and what the sweep's
//! status says. The drivers scan the input, create the children and write the status.

mod children;
mod naming;
mod progress;
mod summary;

#[cfg(test)]
mod tests;

pub use children::{ChildPlan, chunk_limits, plan_children, plan_of};
pub use naming::{child_name, fit_dns_label};
pub use progress::{Decision, ObservedChild, decide, plan_failed};
pub use summary::{ChildSummary, Summary, Totals, summarise};

/// Label on every child Batch naming its sweep.
pub const SWEEP_LABEL: &str = "llmbatch.io/sweep";
