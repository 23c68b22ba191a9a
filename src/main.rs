use std::process::ExitCode;

use clap::Parser;
use llm_batch_operator::cli::{self, Cli, Command, kubectl};
use llm_batch_operator::telemetry::LogFormat;

#[tokio::main]
async fn main() -> ExitCode {
    // Linked or installed as kubectl-llmbatch, the binary is the kubectl plugin.
    let cli = match kubectl::invoked_as_plugin() {
        true => Cli {
            command: Command::Kubectl(kubectl::PluginCli::parse().args),
            log_format: LogFormat::Text,
        },
        false => Cli::parse(),
    };
    let default_level = match cli.command {
        Command::Simulator(_) | Command::Controller(_) => "info",
        _ => "warn",
    };
    let log_format = cli.log_format;
    llm_batch_operator::telemetry::init_logging(log_format, default_level);
    match cli::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            match log_format {
                LogFormat::Text => eprintln!("error: {e:#}"),
                LogFormat::Json => tracing::error!(error = format!("{e:#}"), "stopped"),
            }
            ExitCode::FAILURE
        }
    }
}
