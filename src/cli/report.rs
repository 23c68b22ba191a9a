//! `report`: the results of a Batch or BatchSweep that `run -f` ran, joined with its input.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::report::{self, Format, ReportOptions};

/// Flags of `report`.
#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// The YAML files or directories `run -f` ran (the Batch or BatchSweep, its input, its
    /// BatchGateway with prices).
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub paths: Vec<PathBuf>,
    /// Where `run -f` wrote the results (its --out).
    #[arg(long, default_value = "batch-output")]
    pub out: PathBuf,
    /// The Batch or BatchSweep, as NAME or NAMESPACE/NAME (when the files hold several).
    #[arg(long)]
    pub name: Option<String>,
    /// A local copy of the input JSONL, read instead of the manifests' source (for an input in
    /// object storage or on the gateway).
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// csv, jsonl, markdown or html (one self-contained page: summary, charts, first rows).
    #[arg(long, value_enum, default_value_t = Format::Csv)]
    pub format: Format,
    /// One row per prompt with a column group per model (a sweep's matrix).
    #[arg(long, value_name = "BY", value_parser = ["model"])]
    pub pivot: Option<String>,
    /// The per-model summary (requests, success rate, tokens, cost, answer length) instead of
    /// the rows.
    #[arg(long)]
    pub summary: bool,
    /// A regex splitting each custom_id with named groups `prompt`, `model` and `chunk`, e.g.
    /// '^(?P<model>[^:]+):(?P<prompt>.+)$' (a sweep's ids are split without it).
    #[arg(long, value_name = "REGEX")]
    pub key: Option<String>,
    /// Write the report to this file instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Rows the HTML page shows after its summary and charts.
    #[arg(long, value_name = "N", default_value_t = report::DEFAULT_HTML_ROWS)]
    pub html_rows: usize,
}

pub async fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let options = ReportOptions {
        paths: args.paths,
        results: args.out,
        name: args.name,
        input: args.input,
        format: args.format,
        pivot: args.pivot.is_some(),
        summary: args.summary,
        key: args.key,
        output: args.output,
        html_rows: args.html_rows,
    };
    tokio::task::spawn_blocking(move || report::run(options)).await?
}
