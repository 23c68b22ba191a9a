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

/// The most of a termination message Kubernetes keeps (the rest is cut off).
pub const MAX_REPORT_BYTES: usize = 4096;

/// `value` as the JSON a Job reports, made to fit [`MAX_REPORT_BYTES`]: the usage's `byModel`
/// (up to 52 models with long names) is folded, the models with the fewest tokens summed under
/// `(other)`, until it fits; the totals stay exact.
pub fn fitting_report<T: serde::Serialize>(
    value: &mut T,
    usage: fn(&mut T) -> &mut crate::api::Usage,
) -> serde_json::Result<String> {
    loop {
        let text = serde_json::to_string(value)?;
        let models = usage(value).by_model.len();
        if text.len() <= MAX_REPORT_BYTES || models <= 1 {
            return Ok(text);
        }
        crate::pricing::fold(usage(value), models / 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_with_many_models_is_folded_to_fit_a_termination_message() {
        let mut downloaded = crate::engine::Downloaded::default();
        for i in 0..200 {
            let model = format!("model-{i:03}-{}", "x".repeat(100));
            let tokens = crate::pricing::LineTokens {
                input: i,
                ..Default::default()
            };
            crate::pricing::add_line(&mut downloaded.usage, Some(&model), &tokens);
        }
        let text = fitting_report(&mut downloaded, |d| &mut d.usage).unwrap();
        assert!(text.len() <= MAX_REPORT_BYTES, "{}", text.len());
        let back: crate::engine::Downloaded = serde_json::from_str(&text).unwrap();
        let requests: u64 = back.usage.by_model.iter().map(|m| m.requests).sum();
        assert_eq!((requests, back.usage.prompt_tokens), (200, (0..200).sum::<u64>()));
        assert!(
            back.usage
                .by_model
                .iter()
                .any(|m| m.model == "model-049-".to_string() + &"x".repeat(100))
        );
    }
}
