//! `sink`: a finished batch's output and error files fetched from the gateway into a
//! directory (what the PVC output Job runs, with the claim mounted). The key is read from
//! LLM_BATCH_API_KEY.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::engine::Outcome;
use crate::gateway::GatewayClient;
use crate::job_protocol::{FINAL_FAILURE, JobFailure};
use crate::jsonl::IdDigest;
use crate::steps;

/// Flags of `sink`.
#[derive(clap::Args, Debug)]
pub struct SinkArgs {
    #[command(flatten)]
    pub job: super::JobArgs,
    /// The batch's output file (absent when every request failed).
    #[arg(long)]
    pub output_file_id: Option<String>,
    /// The batch's error file (absent when no request failed).
    #[arg(long)]
    pub error_file_id: Option<String>,
    /// Where output.jsonl and errors.jsonl are written (created if missing).
    #[arg(long)]
    pub dir: PathBuf,
    /// The input's custom_id digest, `KEY:SUM:COUNT` (from the Batch status): every result
    /// line's custom_id is checked against it. Without it, only duplicates are looked for.
    #[arg(long)]
    pub expected_ids: Option<IdDigest>,
}

/// Exit 0 with the counts as JSON on stdout; 1 (worth retrying) or 2 (final) with the reason on
/// stderr and as JSON on stdout. Rerunning is safe: files are replaced whole.
pub async fn run(args: SinkArgs) -> anyhow::Result<ExitCode> {
    let client = GatewayClient::new(args.job.gateway_config()?)?;
    let result = steps::download_results(
        &client,
        args.output_file_id.as_deref(),
        args.error_file_id.as_deref(),
        &args.dir,
        args.expected_ids,
    )
    .await;
    let (summary, code) = match result {
        Ok(mut downloaded) => (
            crate::job_protocol::fitting_report(&mut downloaded, |d| &mut d.usage)?,
            ExitCode::SUCCESS,
        ),
        Err(Outcome::GatewayError { class, message }) => {
            eprintln!("error: {message}");
            let summary = serde_json::to_string(&JobFailure { class, error: message })?;
            (
                summary,
                ExitCode::from(if class.is_retryable() { 1 } else { FINAL_FAILURE }),
            )
        }
        Err(other) => anyhow::bail!("unexpected outcome {other:?}"),
    };
    println!("{summary}");
    args.job.report(&summary)?;
    Ok(code)
}
