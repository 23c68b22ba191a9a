//! `direct`: one Batch's lines sent straight to a gateway's endpoint, checkpointed in a
//! directory. What the controller's direct-mode Job runs; also usable by hand.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use tokio::io::BufReader;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::api::{DEFAULT_MAX_CONCURRENT_REQUESTS, DirectLimits};
use crate::direct::{self, Counts, DirectError, DirectJob};
use crate::gateway::{ApiKey, GatewayClient, GatewayConfig};
use crate::jsonl::{self, Limits};
use crate::local::API_KEY_ENV;

/// Flags of `direct`.
#[derive(clap::Args, Debug)]
pub struct DirectArgs {
    /// Base URL of the OpenAI-compatible API, ending in /v1.
    #[arg(long)]
    pub url: url::Url,
    /// The endpoint every line goes to (each line's `url` must equal it).
    #[arg(long, default_value = "/v1/chat/completions")]
    pub endpoint: String,
    /// The JSONL request lines.
    #[arg(long)]
    pub input: PathBuf,
    /// Where results and progress are kept: output.jsonl, errors.jsonl, finished.json. A rerun
    /// with the same directory resumes and never resends a line that is in them.
    #[arg(long)]
    pub checkpoint_dir: PathBuf,
    /// Requests in flight at once.
    #[arg(long, default_value_t = DEFAULT_MAX_CONCURRENT_REQUESTS)]
    pub max_concurrent_requests: u32,
    /// Requests per minute, spread evenly.
    #[arg(long)]
    pub requests_per_minute: Option<u64>,
    /// Estimated tokens per minute (body bytes / 4 + max output tokens per request).
    #[arg(long)]
    pub tokens_per_minute: Option<u64>,
    /// Time limit of one request (it is resent after a timeout, with backoff).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
    /// Stop sending at this time (RFC 3339): lines not done become batch_expired errors.
    #[arg(long, value_parser = parse_time)]
    pub deadline: Option<std::time::SystemTime>,
    /// Conclude as cancelled: lines not done become batch_cancelled errors; nothing is sent.
    #[arg(long)]
    pub cancel: bool,
}

fn parse_time(s: &str) -> Result<std::time::SystemTime, String> {
    humantime::parse_rfc3339_weak(s).map_err(|e| format!("{s:?} is not an RFC 3339 time ({e})"))
}

/// Exit 0 when the run concluded (summary JSON on stdout), 1 when it stopped (rerun to
/// resume), 2 on invalid input (nothing sent), 130 on Ctrl-C.
pub async fn run(args: DirectArgs) -> anyhow::Result<ExitCode> {
    let no_limit = Limits {
        max_requests: u64::MAX,
        max_bytes: u64::MAX,
    };
    let report = jsonl::validate_reader(tokio::fs::File::open(&args.input).await?, &args.endpoint, no_limit).await?;
    if !report.is_valid() {
        eprintln!("{}: invalid input:\n{}", args.input.display(), report.render(20));
        eprintln!("nothing was sent to the gateway");
        return Ok(ExitCode::from(2));
    }
    let mut config = GatewayConfig::new(args.url.clone());
    config.api_key = std::env::var(API_KEY_ENV)
        .ok()
        .filter(|k| !k.is_empty())
        .map(ApiKey::new);
    config.request_timeout = args.request_timeout;
    let client = GatewayClient::new(config)?;
    let job = DirectJob {
        endpoint: args.endpoint.clone(),
        limits: DirectLimits {
            max_concurrent_requests: args.max_concurrent_requests,
            requests_per_minute: args.requests_per_minute,
            tokens_per_minute: args.tokens_per_minute,
            request_timeout: args.request_timeout,
        },
        deadline: args.deadline,
        checkpoint_dir: args.checkpoint_dir.clone(),
        cancel: args.cancel,
    };
    let stop = CancellationToken::new();
    let on_signal = {
        let stop = stop.clone();
        tokio::spawn(async move {
            super::shutdown_signal().await;
            stop.cancel();
        })
    };
    let input = BufReader::with_capacity(256 * 1024, tokio::fs::File::open(&args.input).await?);
    let (progress, _) = watch::channel(Counts::default());
    let result = direct::run(&client, &job, input, progress, &stop).await;
    on_signal.abort();
    Ok(match result {
        Ok((conclusion, counts)) => {
            let summary = serde_json::json!({
                "conclusion": conclusion,
                "total": report.summary.requests,
                "completed": counts.completed,
                "failed": counts.failed,
            });
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(DirectError::Interrupted) => {
            eprintln!("interrupted; rerun the same command to resume");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("error: {e}; rerun the same command to resume");
            ExitCode::from(1)
        }
    })
}
