//! `direct`: one Batch's lines sent straight to a gateway's endpoint, checkpointed in a
//! directory. What the controller's direct-mode Job runs; also usable by hand.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use tokio::io::BufReader;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::api::{DEFAULT_MAX_CONCURRENT_REQUESTS, DirectLimits, ObjectStoreRef};
use crate::direct::progress::{self, ProgressServer};
use crate::direct::{self, Counts, DirectJob, DirectSummary};
use crate::engine::ErrorClass;
use crate::gateway::GatewayClient;
use crate::io::{Checked, ObjectInput, object_storage};
use crate::job_protocol::{FINAL_FAILURE, JobFailure};
use crate::jsonl::{self, Limits, Rewrite};

/// Flags of `direct`.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["input", "input_env", "input_object"])))]
pub struct DirectArgs {
    #[command(flatten)]
    pub job: super::JobArgs,
    /// The endpoint every line goes to (each line's `url` must equal it).
    #[arg(long, default_value = "/v1/chat/completions")]
    pub endpoint: String,
    /// The JSONL request lines.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Read the JSONL request lines from this environment variable instead of a file.
    #[arg(long, value_name = "NAME")]
    pub input_env: Option<String>,
    /// Stream the request lines from object storage: a `spec.input.objectStore` as JSON
    /// (`{"url": "s3://bucket/key", "endpoint": ..., "region": ...}`); the credentials come
    /// from the environment, under the Secret keys the scheme documents (AWS_ACCESS_KEY_ID...).
    #[arg(long, value_name = "JSON", value_parser = parse_object)]
    pub input_object: Option<ObjectStoreRef>,
    /// Only this line-aligned slice of the input, as START..END bytes.
    #[arg(long, value_name = "START..END", value_parser = parse_range)]
    pub byte_range: Option<std::ops::Range<u64>>,
    /// Replace `body.model` in every line.
    #[arg(long)]
    pub model: Option<String>,
    /// Prefix every `custom_id`.
    #[arg(long)]
    pub custom_id_prefix: Option<String>,
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
    /// Serve the live counts as JSON on `GET http://ADDR/progress` while the run goes (what the
    /// controller reads from a direct-mode Job's pod). IP:PORT; nothing else is served.
    #[arg(long, value_name = "ADDR", value_parser = progress::parse_listen)]
    pub progress_listen: Option<SocketAddr>,
}

fn parse_time(s: &str) -> Result<std::time::SystemTime, String> {
    humantime::parse_rfc3339_weak(s).map_err(|e| format!("{s:?} is not an RFC 3339 time ({e})"))
}

fn parse_object(s: &str) -> Result<ObjectStoreRef, String> {
    serde_json::from_str(s).map_err(|e| format!("not an objectStore reference: {e}"))
}

fn parse_range(s: &str) -> Result<std::ops::Range<u64>, String> {
    let bad = || format!("{s:?} is not START..END (bytes)");
    let (start, end) = s.split_once("..").ok_or_else(bad)?;
    let (start, end) = (start.parse().map_err(|_| bad())?, end.parse().map_err(|_| bad())?);
    if start > end {
        return Err(bad());
    }
    Ok(start..end)
}

/// Exit 0 when the run concluded (summary JSON on stdout), 1 when it stopped (rerun to
/// resume), 2 on invalid input (nothing sent), 130 on Ctrl-C.
pub async fn run(args: DirectArgs) -> anyhow::Result<ExitCode> {
    let input = match prepared_input(&args).await? {
        Ok(input) => input,
        Err(message) => {
            eprintln!("{message}\nnothing was sent to the gateway");
            let failure = JobFailure {
                class: ErrorClass::Rejected,
                error: message,
            };
            args.job.report(&serde_json::to_string(&failure)?)?;
            return Ok(ExitCode::from(FINAL_FAILURE));
        }
    };
    let mut config = args.job.gateway_config()?;
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
    let (progress, counts) = watch::channel(Counts::default());
    let server = match serve_progress(&args, input.requests(), counts).await? {
        Ok(server) => server,
        Err(code) => return Ok(code),
    };
    let stop = CancellationToken::new();
    let on_signal = {
        let stop = stop.clone();
        tokio::spawn(async move {
            super::shutdown_signal().await;
            stop.cancel();
        })
    };
    let result = match &input {
        Input::Prepared { bytes, .. } => direct::run(&client, &job, std::io::Cursor::new(bytes), progress, &stop).await,
        Input::File { path, .. } => {
            let reader = BufReader::with_capacity(256 * 1024, tokio::fs::File::open(path).await?);
            direct::run(&client, &job, reader, progress, &stop).await
        }
        Input::Object { object, len, .. } => {
            let reader = object
                .prepared_reader(*len)
                .await
                .map_err(|e| anyhow::anyhow!("{}: {e}", object.location.url))?;
            direct::run(&client, &job, reader, progress, &stop).await
        }
    };
    on_signal.abort();
    if let Some(server) = server {
        server.stop().await;
    }
    let error = match result {
        Ok((conclusion, counts)) => {
            let mut summary = DirectSummary::read(&args.checkpoint_dir, conclusion, input.requests(), counts).await?;
            let text = crate::job_protocol::fitting_report(&mut summary, |s| &mut s.downloaded.usage)?;
            println!("{text}");
            args.job.report(&text)?;
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => e,
    };
    let Some(class) = crate::steps::direct_failure_class(&error) else {
        eprintln!("interrupted; rerun the same command to resume");
        return Ok(ExitCode::from(130));
    };
    let error = error.to_string();
    eprintln!("error: {error}; rerun the same command to resume");
    args.job.report(&serde_json::to_string(&JobFailure { class, error })?)?;
    Ok(ExitCode::from(
        if class.is_retryable() || matches!(class, ErrorClass::Unauthorized | ErrorClass::Misconfigured) {
            1
        } else {
            FINAL_FAILURE
        },
    ))
}

/// The request lines, validated: a file streamed as it is, or (from an environment variable,
/// or with a byte range or rewrites) prepared in memory. `Err` says what is wrong.
enum Input {
    File {
        path: PathBuf,
        requests: u64,
    },
    Prepared {
        bytes: Vec<u8>,
        requests: u64,
    },
    Object {
        object: Box<ObjectInput>,
        len: u64,
        requests: u64,
    },
}

impl Input {
    fn requests(&self) -> u64 {
        match self {
            Input::File { requests, .. } | Input::Prepared { requests, .. } | Input::Object { requests, .. } => {
                *requests
            }
        }
    }
}

/// The object, checked in one streamed pass (it is streamed again while it is sent).
async fn object_input(
    args: &DirectArgs,
    reference: &ObjectStoreRef,
    rewrite: Rewrite,
    limits: Limits,
) -> anyhow::Result<Result<Input, String>> {
    let credentials = object_storage::credential_keys(&reference.url)
        .iter()
        .filter_map(|key| std::env::var(key).ok().map(|value| (key.to_string(), value)))
        .collect();
    let location = match object_storage::open(reference, &credentials, "the environment", &args.job.addresses()) {
        Ok(location) => location,
        Err(e) => return Ok(Err(format!("--input-object: {e}"))),
    };
    let object = ObjectInput {
        location,
        range: args.byte_range.clone(),
        rewrite,
        endpoint: args.endpoint.clone(),
        limits,
        ends_at_a_line: false,
    };
    Ok(match object.check().await {
        Ok(Checked::Valid(report, _)) => Ok(Input::Object {
            object: Box::new(object),
            len: report.summary.bytes,
            requests: report.summary.requests,
        }),
        Ok(Checked::Invalid(message)) => Err(message),
        Err(e) => anyhow::bail!("{}: {e}", reference.url),
    })
}

async fn prepared_input(args: &DirectArgs) -> anyhow::Result<Result<Input, String>> {
    let no_limit = Limits {
        max_requests: u64::MAX,
        max_bytes: u64::MAX,
    };
    let rewrite = Rewrite {
        model: args.model.clone(),
        custom_id_prefix: args.custom_id_prefix.clone(),
    };
    if let Some(reference) = &args.input_object {
        return object_input(args, reference, rewrite, no_limit).await;
    }
    let shaped = args.byte_range.is_some() || rewrite.model.is_some() || rewrite.custom_id_prefix.is_some();
    let (source, bytes) = match (&args.input, &args.input_env) {
        (Some(path), _) if !shaped => {
            let report = jsonl::validate_file(path, &args.endpoint, no_limit).await?;
            return Ok(match report.is_valid() {
                true => Ok(Input::File {
                    path: path.clone(),
                    requests: report.summary.requests,
                }),
                false => Err(format!("{}: invalid input:\n{}", path.display(), report.render(20))),
            });
        }
        (Some(path), _) => (path.display().to_string(), tokio::fs::read(path).await?),
        (None, Some(name)) => (format!("${name}"), std::env::var(name).unwrap_or_default().into_bytes()),
        (None, None) => anyhow::bail!("--input, --input-env or --input-object is required"),
    };
    let (bytes, report) = jsonl::prepare_bytes(&bytes, args.byte_range.clone(), rewrite, &args.endpoint, no_limit);
    Ok(match report.is_valid() {
        true => Ok(Input::Prepared {
            bytes,
            requests: report.summary.requests,
        }),
        false => Err(format!("{source}: invalid input:\n{}", report.render(20))),
    })
}

/// The `--progress-listen` server, when asked for, started before anything is sent; `Err` (the
/// exit code, the failure reported) when it cannot listen there.
async fn serve_progress(
    args: &DirectArgs,
    total: u64,
    counts: watch::Receiver<Counts>,
) -> anyhow::Result<Result<Option<ProgressServer>, ExitCode>> {
    let Some(addr) = args.progress_listen else {
        return Ok(Ok(None));
    };
    let e = match ProgressServer::start(addr, total, counts).await {
        Ok(server) => return Ok(Ok(Some(server))),
        Err(e) => e,
    };
    let error = format!(
        "--progress-listen {addr}: cannot listen there ({e}); give an address of this host and a free port \
         (the controller's --direct-progress-port)"
    );
    eprintln!("error: {error}\nnothing was sent to the gateway");
    let failure = JobFailure {
        class: ErrorClass::Transient,
        error,
    };
    args.job.report(&serde_json::to_string(&failure)?)?;
    Ok(Err(ExitCode::FAILURE))
}
