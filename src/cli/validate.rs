//! `validate FILE`: the streaming JSONL checks, from the command line.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::api::parse_bytes;
use crate::jsonl::{self, Limits};

/// Problems printed before "and K more problems".
const SHOWN_PROBLEMS: usize = 20;

/// Flags of `validate`.
#[derive(clap::Args, Debug)]
pub struct ValidateArgs {
    /// The JSONL file, or - for standard input.
    pub file: PathBuf,
    /// The batch endpoint every line's `url` must equal.
    #[arg(long, default_value = "/v1/chat/completions")]
    pub endpoint: String,
    /// Most requests allowed (the gateway's maxRequestsPerBatch).
    #[arg(long, default_value_t = Limits::default().max_requests)]
    pub max_requests: u64,
    /// Largest file allowed, as a quantity (the gateway's maxBytesPerBatch).
    #[arg(long, default_value = "200Mi", value_parser = parse_bytes)]
    pub max_bytes: u64,
}

/// Exit 0 when valid, 1 when not, 2 when the file cannot be read.
pub async fn run(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    if !jsonl::is_supported_endpoint(&args.endpoint) {
        eprintln!(
            "error: --endpoint {:?} is not a batch endpoint (one of: {})",
            args.endpoint,
            jsonl::SUPPORTED_ENDPOINTS.join(", ")
        );
        return Ok(ExitCode::from(2));
    }
    let limits = Limits {
        max_requests: args.max_requests,
        max_bytes: args.max_bytes,
    };
    let report = if args.file.as_os_str() == "-" {
        jsonl::validate_reader(tokio::io::stdin(), &args.endpoint, limits).await
    } else {
        jsonl::validate_file(&args.file, &args.endpoint, limits).await
    };
    let report = match report {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: {}: {e}", args.file.display());
            return Ok(ExitCode::from(2));
        }
    };
    if report.is_valid() {
        let models: Vec<String> = report
            .summary
            .models
            .iter()
            .map(|(m, n)| format!("{m} ({n})"))
            .collect();
        println!(
            "{}: valid: {} requests, {} bytes; models: {}",
            args.file.display(),
            report.summary.requests,
            report.summary.bytes,
            models.join(", ")
        );
        for e in &report.summary.estimates {
            println!(
                "  {}: about {} input tokens ({}), {} output tokens at most",
                e.model, e.input_tokens, e.counted_by, e.output_tokens
            );
        }
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{}", report.render(SHOWN_PROBLEMS));
        eprintln!("{}: {} problem(s)", args.file.display(), report.problem_count);
        Ok(ExitCode::from(1))
    }
}
