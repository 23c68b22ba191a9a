//! Status conditions per the Kubernetes API conventions: a list keyed by `type`, whose
//! `lastTransitionTime` moves only when the condition's status flips.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// Condition types a Batch (and a BatchSweep) carries.
pub mod condition_types {
    /// The input was read and validated and the batch may be sent.
    pub const ADMITTED: &str = "Admitted";
    /// The batch exists on the gateway.
    pub const SUBMITTED: &str = "Submitted";
    /// The batch reached a final phase and its results were collected.
    pub const COMPLETE: &str = "Complete";
    /// The batch could not run, or the gateway refused it.
    pub const FAILED: &str = "Failed";
    /// The results are in the output sink (False: they stayed on the gateway, and why).
    pub const OUTPUT_STORED: &str = "OutputStored";
    /// The gateway answers and accepts the key.
    pub const GATEWAY_READY: &str = "GatewayReady";
    /// The result files were checked against the input: every custom_id the input's, each
    /// once (False: which check failed; the results are kept as the gateway sent them).
    pub const RESULTS_VERIFIED: &str = "ResultsVerified";
    /// The results' cost is known: every model that answered has a price (False: which have
    /// none; their tokens are left out of `status.cost.actual`). Only with `spec.pricing`.
    pub const PRICED: &str = "Priced";
    /// A sweep's `suspend` is set: no new child starts.
    pub const SUSPENDED: &str = "Suspended";
    /// The upstream batch moves (False, `Stalled`: its state and request counts have not
    /// changed for longer than the gateway's `spec.stalledAfter`). Set once a batch first
    /// stalls; never fatal by itself.
    pub const PROGRESSING: &str = "Progressing";
}

/// Reasons (CamelCase, stable: alerting keys on them).
pub mod reasons {
    pub const INPUT_VALID: &str = "InputValid";
    /// Waiting for room under the gateway's maxActiveBatches or tokensPerHour, or sent back
    /// by the gateway's enqueued-token limit.
    pub const GATEWAY_BUDGET: &str = "GatewayBudget";
    /// Waiting for room under the gateway's money budget (`spec.limits.budget`).
    pub const BUDGET_EXHAUSTED: &str = "BudgetExhausted";
    /// The gateway's budget let the Batch start after a wait.
    pub const ADMITTED: &str = "Admitted";
    pub const INPUT_ON_GATEWAY: &str = "InputOnGateway";
    pub const INPUT_INVALID: &str = "InputInvalid";
    pub const INPUT_NOT_FOUND: &str = "InputNotFound";
    pub const SPEC_INVALID: &str = "SpecInvalid";
    pub const UPLOADING: &str = "Uploading";
    pub const BATCH_CREATED: &str = "BatchCreated";
    pub const BATCH_ADOPTED: &str = "BatchAdopted";
    /// Direct mode: the operator sends each request itself.
    pub const SENDING_DIRECTLY: &str = "SendingDirectly";
    pub const REJECTED_BY_GATEWAY: &str = "RejectedByGateway";
    pub const GATEWAY_UNAUTHORIZED: &str = "GatewayUnauthorized";
    /// The gateway redirects, or its address is one the operator does not connect to.
    pub const GATEWAY_MISCONFIGURED: &str = "GatewayMisconfigured";
    pub const GATEWAY_UNAVAILABLE: &str = "GatewayUnavailable";
    pub const GATEWAY_REACHABLE: &str = "GatewayReachable";
    pub const GATEWAY_NOT_FOUND: &str = "GatewayNotFound";
    pub const BATCH_NOT_FOUND: &str = "BatchNotFound";
    pub const SUCCEEDED: &str = "Succeeded";
    pub const EXPIRED: &str = "Expired";
    pub const CANCELLED: &str = "Cancelled";
    pub const BATCH_FAILED: &str = "BatchFailed";
    pub const OUTPUT_UNAVAILABLE: &str = "OutputUnavailable";
    pub const OUTPUT_TOO_LARGE: &str = "OutputTooLarge";
    /// The output Secret exists and this Batch did not create it: it is left untouched.
    pub const SECRET_NOT_OWNED: &str = "SecretNotOwned";
    pub const STORED: &str = "Stored";
    /// Every result line's custom_id is one of the input's, each once.
    pub const RESULTS_MATCH_INPUT: &str = "ResultsMatchInput";
    /// Only duplicates and unreadable ids were looked for: the input's ids are not known here
    /// (`spec.input.fileId`, or a sweep chunk).
    pub const NO_INPUT_IDS: &str = "NoInputIds";
    /// An expired or cancelled batch: no duplicates, and the requests without a result line
    /// never ran; with those missing, the ids cannot be compared in full.
    pub const RESULTS_INCOMPLETE: &str = "ResultsIncomplete";
    /// A custom_id appears on more than one result line.
    pub const DUPLICATE_RESULTS: &str = "DuplicateResults";
    /// Result lines whose custom_id is not one of the input's, or has none.
    pub const UNEXPECTED_RESULTS: &str = "UnexpectedResults";
    /// The gateway said completed, and input lines have no result line.
    pub const MISSING_RESULTS: &str = "MissingResults";
    /// Every model that answered has a price.
    pub const PRICED: &str = "Priced";
    /// Models answered that no price entry matches.
    pub const UNPRICED_MODELS: &str = "UnpricedModels";
    /// The gateway's prices cannot be used (the PriceList is missing, in another currency,
    /// or holds a malformed price).
    pub const PRICES_UNAVAILABLE: &str = "PricesUnavailable";
    // BatchSweep
    pub const RUNNING: &str = "Running";
    pub const FAILURE_BUDGET_EXCEEDED: &str = "FailureBudgetExceeded";
    pub const WITHIN_BUDGET: &str = "WithinBudget";
    pub const PLAN_FAILED: &str = "PlanFailed";
    pub const SUSPEND_REQUESTED: &str = "SuspendRequested";
    /// A sweep's `spec.budget.maxCost` holds its next child back.
    pub const BUDGET_REACHED: &str = "BudgetReached";
    /// Also Progressing's reason once a stalled upstream batch moves again.
    pub const RESUMED: &str = "Resumed";
    /// The upstream batch's state and counts have not changed for longer than its threshold.
    pub const STALLED: &str = "Stalled";
}

/// Condition types a BatchGateway carries.
pub mod gateway_condition_types {
    /// The gateway answers an authenticated call and accepts the key.
    pub const READY: &str = "Ready";
    /// Whether the gateway has a batch API (`/v1/batches`).
    pub const BATCH_API: &str = "BatchApi";
}

/// Reasons of a BatchGateway's conditions (CamelCase, stable: alerting keys on them).
pub mod gateway_reasons {
    // Ready
    /// The gateway answered an authenticated call.
    pub const REACHABLE: &str = "Reachable";
    /// The gateway refused the key (401/403).
    pub const UNAUTHORIZED: &str = "Unauthorized";
    /// The gateway did not answer, or answered with an error.
    pub const UNAVAILABLE: &str = "Unavailable";
    /// The spec or its Secret cannot be used (bad URL, missing Secret or key, a redirect, an
    /// address the controller does not connect to).
    pub const MISCONFIGURED: &str = "Misconfigured";
    // BatchApi
    /// `/v1/batches` answered.
    pub const BATCH_API_FOUND: &str = "BatchApiFound";
    /// `/v1/batches` answered 404 or 405.
    pub const BATCH_API_NOT_FOUND: &str = "BatchApiNotFound";
}

/// Helpers over a status's condition list.
pub trait Conditions {
    /// The condition of this type, if any.
    fn condition(&self, type_: &str) -> Option<&Condition>;
    /// Sets a condition; `lastTransitionTime` is kept unless the status changes.
    fn set_condition(
        &mut self,
        type_: &str,
        status: bool,
        reason: &str,
        message: impl Into<String>,
        generation: Option<i64>,
        now: Timestamp,
    );
    /// True when the condition exists with status "True".
    fn is_true(&self, type_: &str) -> bool {
        self.condition(type_).is_some_and(|c| c.status == "True")
    }
}

impl Conditions for Vec<Condition> {
    fn condition(&self, type_: &str) -> Option<&Condition> {
        self.iter().find(|c| c.type_ == type_)
    }

    fn set_condition(
        &mut self,
        type_: &str,
        status: bool,
        reason: &str,
        message: impl Into<String>,
        generation: Option<i64>,
        now: Timestamp,
    ) {
        let status = if status { "True" } else { "False" }.to_string();
        let next = Condition {
            type_: type_.to_string(),
            last_transition_time: Time(now),
            message: message.into(),
            observed_generation: generation,
            reason: reason.to_string(),
            status,
        };
        match self.iter_mut().find(|c| c.type_ == type_) {
            Some(existing) => {
                let time = if existing.status == next.status {
                    existing.last_transition_time.clone()
                } else {
                    next.last_transition_time.clone()
                };
                *existing = Condition {
                    last_transition_time: time,
                    ..next
                };
            }
            None => self.push(next),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let mut conditions: Vec<Condition> = Vec::new();
        conditions.set_condition("Complete", false, "Running", "in progress", Some(1), at(100));
        conditions.set_condition("Complete", false, "Running", "still in progress", Some(2), at(200));
        let c = conditions.condition("Complete").unwrap();
        assert_eq!(c.last_transition_time, Time(at(100)));
        assert_eq!(c.message, "still in progress");
        assert_eq!(c.observed_generation, Some(2));

        conditions.set_condition("Complete", true, "Succeeded", "done", Some(2), at(300));
        let c = conditions.condition("Complete").unwrap();
        assert_eq!(c.last_transition_time, Time(at(300)));
        assert!(conditions.is_true("Complete"));
        assert_eq!(conditions.len(), 1);
    }
}
