use std::process::ExitCode;

use clap::Parser;
use llm_batch_operator::cli::{self, Cli, Command};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Simulator(_) | Command::Controller(_) => "info",
        _ => "warn",
    };
    llm_batch_operator::telemetry::init_logging(cli.log_format, default_level);
    match cli::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
