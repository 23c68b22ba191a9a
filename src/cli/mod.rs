//! The command line: one binary, several jobs. Each subcommand parses its flags into typed
//! options here and calls into the library.

mod controller;
mod direct;
pub mod kubectl;
pub(crate) mod report;
mod sink;
mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::local::{self, RunOptions};
use crate::simulator::SimulatorConfig;
use crate::telemetry::LogFormat;

pub use controller::ControllerArgs;

/// Run LLM batch work declaratively: Batch resources through an OpenAI-compatible batch API.
#[derive(Parser, Debug)]
#[command(name = "llm-batch-operator", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log lines as text or JSON objects (level from RUST_LOG).
    #[arg(long, global = true, value_enum, env = "LOG_FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the Batches in YAML files locally, without a cluster.
    #[command(after_help = RUN_EXAMPLES)]
    Run(RunArgs),
    /// Check a JSONL batch input file; prints one `line N: ...` message per problem.
    #[command(after_help = VALIDATE_EXAMPLES)]
    Validate(validate::ValidateArgs),
    /// Serve an OpenAI-compatible Files + Batches API for tests and demos.
    #[command(after_help = SIMULATOR_EXAMPLES)]
    Simulator(SimulatorArgs),
    /// Run the operator in a cluster: reconcile Batches with the same engine as `run`.
    #[command(after_help = CONTROLLER_EXAMPLES)]
    Controller(ControllerArgs),
    /// Send one Batch's lines straight to a gateway without a batch API, checkpointed (what
    /// the direct-mode Job runs). The key is read from LLM_BATCH_API_KEY.
    #[command(after_help = DIRECT_EXAMPLES)]
    Direct(Box<direct::DirectArgs>),
    /// Fetch a finished batch's output and error files into a directory (what the PVC output
    /// Job runs). The key is read from LLM_BATCH_API_KEY.
    #[command(after_help = SINK_EXAMPLES)]
    Sink(sink::SinkArgs),
    /// Report on the results of a Batch or BatchSweep that `run -f` ran: a row per request (or
    /// per prompt, a column group per model) joined with its input, and a summary by model.
    #[command(after_help = REPORT_EXAMPLES)]
    Report(report::ReportArgs),
    /// The kubectl plugin (`kubectl llmbatch ...` once installed as kubectl-llmbatch): get,
    /// describe, report, cancel and retry Batches and BatchSweeps in a cluster.
    Kubectl(kubectl::PluginArgs),
    /// Print the CustomResourceDefinitions as YAML (the source of crds/), or their field
    /// reference as Markdown.
    #[command(after_help = CRD_EXAMPLES)]
    Crd(CrdArgs),
}

const CRD_EXAMPLES: &str = "\
Examples:
  llm-batch-operator crd > crds/llmbatch.io.yaml
  llm-batch-operator crd | kubectl apply -f -
  llm-batch-operator crd --reference > docs/reference.md";

const RUN_EXAMPLES: &str = "\
Examples:
  # the quickstart, on the built-in gateway simulator
  llm-batch-operator run -f examples/quickstart/
  # the same Batch against a real gateway: add a BatchGateway and its Secret to the files
  llm-batch-operator run -f batch.yaml -f gateway.yaml --out results/
  # a BatchSchedule's run for 02:00 on 31 January (in its timeZone), once
  llm-batch-operator run -f schedule.yaml -f gateway.yaml --at 2026-01-31T02:00

Exit codes: 0 every Batch Succeeded; 1 a Batch ended Failed, Expired or Cancelled (or
the run stopped early); 2 invalid manifests or input (nothing was sent); 130 interrupted.
A rerun of the same command resumes from --state-dir and never submits twice.";

const CONTROLLER_EXAMPLES: &str = "\
Examples:
  # against the cluster of the current kubeconfig (or in-cluster config)
  llm-batch-operator crd | kubectl apply -f -
  llm-batch-operator controller
  # two namespaces only, JSON logs, metrics on another port (127.0.0.1:8081 by default)
  llm-batch-operator controller --namespace team-a --namespace team-b --log-format json \\
      --metrics-addr 127.0.0.1:9090
  # several replicas: only the holder of Lease llm-batch-operator reconciles
  llm-batch-operator controller --leader-elect --leader-election-namespace llm-batch-operator";

const DIRECT_EXAMPLES: &str = "\
Examples:
  LLM_BATCH_API_KEY=sk-... llm-batch-operator direct --url http://127.0.0.1:8000/v1 \\
      --input requests.jsonl --checkpoint-dir progress/ --max-concurrent-requests 32 --requests-per-minute 3000
Prints {\"conclusion\",\"total\",\"completed\",\"failed\"} when done; results are in
progress/output.jsonl and progress/errors.jsonl. Rerun the same command to resume.";

const REPORT_EXAMPLES: &str = "\
Examples:
  llm-batch-operator run -f eval.yaml --out results/
  llm-batch-operator report -f eval.yaml --out results/ --pivot model -o answers.csv
  llm-batch-operator report -f eval.yaml --out results/ --format html -o eval.html
  llm-batch-operator report -f eval.yaml --out results/ --summary --format markdown
Exit codes: 0 written; 1 results could not be read or the report written; 2 the files, names
or flags are wrong (the message says which).";

const SINK_EXAMPLES: &str = "\
Examples:
  LLM_BATCH_API_KEY=sk-... llm-batch-operator sink --url https://api.openai.com/v1 \\
      --output-file-id file-abc --error-file-id file-def --dir /mnt/results/run-1
Prints the counts and token usage as JSON when done. On failure the reason goes to stderr;
exit 1 when a rerun may get past it, 2 when it cannot (e.g. the file is gone).";

const VALIDATE_EXAMPLES: &str = "\
Examples:
  llm-batch-operator validate requests.jsonl
  llm-batch-operator validate embeddings.jsonl --endpoint /v1/embeddings
  cat requests.jsonl | llm-batch-operator validate -";

const SIMULATOR_EXAMPLES: &str = "\
Examples:
  llm-batch-operator simulator --addr 127.0.0.1:8080
  # a flaky gateway: 10% 429s, 5% 5xx, 2% of lines failing
  llm-batch-operator simulator --addr 127.0.0.1:8080 --api-key sk-test \\
      --rate-429 0.1 --rate-5xx 0.05 --line-failure-rate 0.02
Point a BatchGateway at it with url: http://127.0.0.1:8080/v1.";

/// Flags of `run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// YAML files or directories holding Batch, BatchGateway, ConfigMap and Secret documents.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub paths: Vec<PathBuf>,
    /// Where results go: DIR/<namespace>/<name>/{output.jsonl,errors.jsonl,status.yaml}.
    #[arg(long, default_value = "batch-output")]
    pub out: PathBuf,
    /// Where progress is kept so a rerun resumes instead of resubmitting.
    #[arg(long, default_value = ".llm-batch-state")]
    pub state_dir: PathBuf,
    /// Where `spec.output.pvc` claims are: claim C is DIR/C/ (results go to DIR/C/<path>/).
    #[arg(long, value_name = "DIR")]
    pub pvc_root: Option<PathBuf>,
    /// Send every Batch to the built-in simulator, whatever gateway the files name.
    #[arg(long)]
    pub simulator: bool,
    /// No progress bars, only a line per state change.
    #[arg(long)]
    pub no_progress: bool,
    /// Run each BatchSchedule once, for its latest scheduled time at or before this time:
    /// RFC 3339 (2026-01-31T02:00:00Z), or without an offset (2026-01-31T02:00) in the
    /// schedule's timeZone. Default: now.
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
}

/// Flags of `crd`.
#[derive(clap::Args, Debug)]
pub struct CrdArgs {
    /// Print every field of every CRD as a Markdown reference instead (the source of
    /// docs/reference.md): type, required, default, validation and description.
    #[arg(long)]
    pub reference: bool,
}

/// Flags of `simulator`.
#[derive(clap::Args, Debug)]
pub struct SimulatorArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    #[command(flatten)]
    pub config: SimulatorConfig,
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => {
            local::run(RunOptions {
                paths: args.paths,
                out_dir: args.out,
                state_dir: args.state_dir,
                pvc_root: args.pvc_root,
                simulator: args.simulator,
                progress: !args.no_progress,
                at: args.at,
            })
            .await
        }
        Command::Validate(args) => validate::run(args).await,
        Command::Direct(args) => direct::run(*args).await,
        Command::Sink(args) => sink::run(args).await,
        Command::Report(args) => report::run(args).await,
        Command::Kubectl(args) => kubectl::run(args).await,
        Command::Simulator(args) => {
            crate::simulator::serve_until_signal(args.config, args.addr).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Controller(args) => controller::run(args, shutdown_signal()).await,
        Command::Crd(args) if args.reference => {
            print!("{}", crate::api::reference_markdown());
            Ok(ExitCode::SUCCESS)
        }
        Command::Crd(_) => {
            print!("{}", crate::api::crds_yaml());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The flags `sink` and `direct` (what the controller's Jobs run) share: the gateway, and where
/// the summary goes.
#[derive(clap::Args, Debug)]
pub struct JobArgs {
    /// Base URL of the OpenAI-compatible API, ending in /v1.
    #[arg(long)]
    pub url: url::Url,
    /// An extra header sent with every request, as NAME=VALUE (repeatable).
    #[arg(long = "header", value_name = "NAME=VALUE", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    /// Also write the summary (or the error) here: the controller reads it as the pod's
    /// termination message.
    #[arg(long, value_name = "PATH")]
    pub summary_file: Option<std::path::PathBuf>,
    /// Largest result file read, as a quantity (the BatchGateway's spec.limits.maxResultBytes).
    #[arg(long, value_name = "QUANTITY")]
    pub max_result_bytes: Option<String>,
    /// Longest download of one result file (the BatchGateway's spec.limits.downloadTimeout).
    #[arg(long, value_name = "DURATION")]
    pub download_timeout: Option<String>,
    #[command(flatten)]
    pub network: NetworkArgs,
}

/// Where gateways and object stores may be: link-local and cloud metadata addresses never;
/// these ranges besides (the controller passes its own policy to its Jobs with them).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct NetworkArgs {
    /// Never connect to addresses in this range (CIDR; repeatable, or comma-separated).
    #[arg(long = "deny-cidr", value_name = "CIDR", env = "DENY_CIDRS", value_delimiter = ',')]
    pub deny: Vec<ipnet::IpNet>,
    /// Connect to addresses in this range even where a denied range holds them (CIDR;
    /// repeatable, or comma-separated). Never opens link-local or metadata addresses.
    #[arg(long = "allow-cidr", value_name = "CIDR", env = "ALLOW_CIDRS", value_delimiter = ',')]
    pub allow: Vec<ipnet::IpNet>,
}

impl NetworkArgs {
    /// `base` with these ranges denied and allowed.
    pub fn policy(&self, base: crate::net::AddressPolicy) -> crate::net::AddressPolicy {
        base.denying(self.deny.iter().copied())
            .allowing(self.allow.iter().copied())
    }
}

impl JobArgs {
    /// The gateway: `--url`, the `--header` flags, the limits and address policy, and the key
    /// from LLM_BATCH_API_KEY (never a flag, so it stays out of the Job spec).
    fn gateway_config(&self) -> anyhow::Result<crate::gateway::GatewayConfig> {
        let mut config = crate::gateway::GatewayConfig::new(self.url.clone());
        config.api_key = std::env::var(crate::job_protocol::API_KEY_ENV)
            .ok()
            .filter(|k| !k.is_empty())
            .map(crate::gateway::ApiKey::new);
        config.headers = self.headers.iter().cloned().collect();
        config.addresses = self.addresses();
        let limits = crate::api::GatewayLimits {
            max_result_bytes: self.max_result_bytes.clone(),
            download_timeout: self.download_timeout.clone(),
            ..Default::default()
        };
        config.limits = crate::steps::response_limits(&limits).map_err(anyhow::Error::msg)?;
        Ok(config)
    }

    /// The address policy of `--deny-cidr` and `--allow-cidr` (for a Job, the controller's).
    fn addresses(&self) -> std::sync::Arc<crate::net::AddressPolicy> {
        std::sync::Arc::new(self.network.policy(crate::net::AddressPolicy::local()))
    }

    /// Writes `text` to `--summary-file`, when given.
    fn report(&self, text: &str) -> anyhow::Result<()> {
        if let Some(path) = &self.summary_file {
            std::fs::write(path, text).map_err(|e| anyhow::anyhow!("--summary-file {}: {e}", path.display()))?;
        }
        Ok(())
    }
}

/// `NAME=VALUE` of a `--header` flag.
pub(crate) fn parse_header(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(n, v)| (n.trim().to_string(), v.to_string()))
        .filter(|(n, _)| !n.is_empty())
        .ok_or_else(|| format!("{s:?} is not NAME=VALUE"))
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
