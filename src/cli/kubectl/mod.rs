//! The kubectl plugin: the binary installed (or linked) as `kubectl-llmbatch` answers
//! `kubectl llmbatch get|describe|report|cancel|retry`, with kubectl's flags (`-n`, `--context`,
//! `--kubeconfig`, `-o`, `-A`); `llm-batch-operator kubectl ...` is the same command line.
//!
//! Exit codes as in the rest of the CLI: 0 done, 1 a failure at run time (the API server could
//! not be reached or refused), 2 the user's to fix (an unknown name, a verb the object's state
//! refuses, a bad flag).

mod cancel;
mod config;
mod describe;
mod get;
mod lookup;
mod report;
mod retry;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The file name kubectl finds the plugin by.
pub const PLUGIN_NAME: &str = "kubectl-llmbatch";

/// True when the binary was started as `kubectl-llmbatch` (by kubectl, or by hand).
pub fn invoked_as_plugin() -> bool {
    std::env::args_os()
        .next()
        .map(PathBuf::from)
        .and_then(|path| path.file_name().map(|n| n.to_string_lossy().into_owned()))
        .is_some_and(|name| name == PLUGIN_NAME || name == format!("{PLUGIN_NAME}.exe"))
}

/// `kubectl llmbatch`: Batches, BatchSweeps and BatchSchedules in the cluster of your kubeconfig.
#[derive(Parser, Debug)]
#[command(name = PLUGIN_NAME, bin_name = "kubectl llmbatch", version, about, long_about = None)]
pub struct PluginCli {
    #[command(flatten)]
    pub args: PluginArgs,
}

/// The plugin's command line (also `llm-batch-operator kubectl ...`).
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct PluginArgs {
    #[command(flatten)]
    pub kube: KubeFlags,
    #[command(subcommand)]
    pub verb: Verb,
}

const EXAMPLES: &str = "\
Examples:
  kubectl llmbatch get                       # Batches, BatchSweeps and BatchSchedules here
  kubectl llmbatch get batches -A -o wide
  kubectl llmbatch describe ticket-triage
  kubectl llmbatch report eval --pivot model -o eval.csv
  kubectl llmbatch cancel ticket-triage
  kubectl llmbatch retry ticket-triage       # a new Batch ticket-triage-retry-1
Install: ln -s \"$(command -v llm-batch-operator)\" ~/.local/bin/kubectl-llmbatch
Exit codes: 0 done; 1 the API server could not be reached or refused; 2 a name not found, a
verb the object's state refuses, or a bad flag (the message says which).";

/// Which cluster and namespace, as kubectl's flags say.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct KubeFlags {
    /// The namespace (default: the context's namespace, else `default`).
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// The kubeconfig context (default: its current-context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// The kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Verb {
    /// List Batches, BatchSweeps and BatchSchedules, or show one: get [KIND] [NAME].
    Get(get::GetArgs),
    /// A Batch's or BatchSweep's spec, status, conditions and Events (a sweep's children too).
    Describe(describe::DescribeArgs),
    /// The report of a Batch or BatchSweep (as `llm-batch-operator report`), its results read
    /// from the cluster: its output Secret or object-store prefix.
    Report(report::ReportArgs),
    /// Cancel a running Batch (spec.cancel: true); lines that completed are still collected.
    Cancel(cancel::CancelArgs),
    /// Run a Batch that ended Failed, Expired or Cancelled again, as a new Batch.
    Retry(retry::RetryArgs),
}

/// What stops a verb.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The user's to fix (exit 2): a name not found, a verb the object's state refuses.
    #[error("{0}")]
    Usage(String),
    /// A failure at run time (exit 1).
    #[error(transparent)]
    Runtime(#[from] anyhow::Error),
}

/// A kube error while doing `what`, as a run-time failure.
pub(crate) fn api_error(what: impl std::fmt::Display) -> impl FnOnce(kube::Error) -> PluginError {
    move |e| PluginError::Runtime(anyhow::anyhow!("{what}: {e}"))
}

/// Runs the plugin's command line.
pub async fn run(args: PluginArgs) -> anyhow::Result<ExitCode> {
    let done = match args.verb {
        Verb::Get(verb) => get::run(&args.kube, verb).await,
        Verb::Describe(verb) => describe::run(&args.kube, verb).await,
        Verb::Report(verb) => report::run(&args.kube, verb).await,
        Verb::Cancel(verb) => cancel::run(&args.kube, verb).await,
        Verb::Retry(verb) => retry::run(&args.kube, verb).await,
    };
    match done {
        Ok(code) => Ok(code),
        Err(PluginError::Usage(message)) => {
            eprintln!("error: {message}");
            Ok(ExitCode::from(2))
        }
        Err(PluginError::Runtime(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn plugin_cli_is_well_formed() {
        super::PluginCli::command().debug_assert();
    }
}
