//! Results checked against the input: what the downloaded files prove, custom_id by custom_id,
//! and what is wrong with them. A gateway may return duplicate lines, ids the input never had,
//! fewer lines than it ran, or counts the files do not support; none of it counts as success.
//!
//! The rules:
//! - `requestCounts` are what the files prove: completed = distinct ids in the output file,
//!   failed = distinct ids in the error file, total = the input's requests (or, for an input
//!   already on the gateway, the distinct ids found). The gateway's own figures are kept in
//!   `status.gateway.requestCounts` when they differ.
//! - A line repeating an id is a duplicate (`DuplicateResults`); a line without a readable id,
//!   or ids that are not the input's (by the keyed digest, or more distinct ids than input
//!   lines) are unexpected (`UnexpectedResults`); fewer distinct ids than input lines when the
//!   gateway said `completed` are missing (`MissingResults`). For `expired` and `cancelled`
//!   batches the lines without a result never ran: counted in `notRun`, not a finding.
//! - Any finding fails the Batch (reason: the first finding's), with the files delivered as the
//!   gateway sent them: results that cannot be trusted are not a success, and nothing is lost.

use super::{ResultCheck, UpstreamState};
use crate::api::{BatchStatus, RequestCounts, reasons};

/// What the check concluded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Verdict {
    /// What the files prove.
    pub counts: RequestCounts,
    /// `(reason, message)` of each thing wrong, most telling first; empty when the results hold.
    pub findings: Vec<(&'static str, String)>,
    /// Whether the distinct ids are exactly the input's; `None` when there was no digest.
    pub ids_match: Option<bool>,
    /// Input requests without any result line (never ran, for an expired or cancelled batch).
    pub missing: u64,
}

/// Checks `check` (what the files hold) against the input recorded in `status`, for a batch
/// that ended in `state`; `not_run` error lines (of `check.failed`) say their request never ran.
pub(super) fn verify(status: &BatchStatus, check: &ResultCheck, not_run: u64, state: &UpstreamState) -> Verdict {
    let input_requests = status.input.as_ref().map_or(0, |i| i.requests);
    let distinct = check.completed + check.failed;
    let unfinished = matches!(state, UpstreamState::Expired | UpstreamState::Cancelled);
    let mut findings = Vec::new();
    if check.duplicate_lines > 0 {
        findings.push((
            reasons::DUPLICATE_RESULTS,
            format!(
                "result lines repeating an earlier line's custom_id: {} (only the first counts)",
                check.duplicate_lines
            ),
        ));
    }
    if check.unidentified_lines > 0 {
        findings.push((
            reasons::UNEXPECTED_RESULTS,
            format!(
                "result lines without a readable custom_id: {}",
                check.unidentified_lines
            ),
        ));
    }
    let missing = input_requests.saturating_sub(distinct);
    if input_requests > 0 && distinct > input_requests {
        findings.push((
            reasons::UNEXPECTED_RESULTS,
            format!(
                "the result files hold {distinct} distinct custom_ids and the input {input_requests}: some are not the input's"
            ),
        ));
    } else if check.ids_match == Some(false) && distinct == input_requests {
        findings.push((
            reasons::UNEXPECTED_RESULTS,
            format!("the result files hold {distinct} distinct custom_ids, as many as the input, but not the input's"),
        ));
    } else if missing > 0 && !unfinished {
        findings.push((
            reasons::MISSING_RESULTS,
            format!(
                "{missing} of the input's {input_requests} requests have no result line (the gateway said {})",
                state.as_wire()
            ),
        ));
    }
    let not_run = not_run + if unfinished { missing } else { 0 };
    Verdict {
        counts: RequestCounts {
            total: if input_requests > 0 { input_requests } else { distinct },
            completed: check.completed,
            failed: check.failed,
            not_run: (not_run > 0).then_some(not_run),
        },
        findings,
        ids_match: check.ids_match,
        missing,
    }
}
