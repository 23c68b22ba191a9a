//! What passes between the controller and the Jobs it starts with its own image (`sink` for a
//! PVC output, `direct` for a gateway without a batch API): how the key reaches the pod, and
//! how a failed pod reports back. Both sides import it from here, so neither the controller
//! nor a command depends on the other, nor on the `run -f` driver.

use crate::engine::ErrorClass;

/// The variable every command of this binary reads the gateway's key from (never a flag, so it
/// stays out of a Job's spec): the controller sets it on its Jobs from the BatchGateway's
/// Secret; `run -f` reads it when the gateway's Secret is not among the files.
pub const API_KEY_ENV: &str = "LLM_BATCH_API_KEY";

/// Exit code of a `sink` or `direct` failure that a rerun cannot get past (the file is gone,
/// the input is invalid): the Job's pod failure policy then fails the Job at once.
pub const FINAL_FAILURE: u8 = 2;

/// What a failed `sink` or `direct` reports (stdout and its summary file, which a Job's pod
/// leaves as its termination message, read back by the controller).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct JobFailure {
    pub class: ErrorClass,
    pub error: String,
}
