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
    #[command(flatten)]
    pub report: ReportFlags,
}

/// What to report and how: the flags `report` and `kubectl llmbatch report` share.
#[derive(clap::Args, Debug)]
pub struct ReportFlags {
    /// A local copy of the input JSONL, read instead of the source the Batch names (for an
    /// input in object storage or on the gateway).
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

impl ReportFlags {
    /// The options of a report of `name` from `results`, as these flags ask.
    pub fn options(self, paths: Vec<PathBuf>, results: PathBuf, name: Option<String>) -> ReportOptions {
        ReportOptions {
            paths,
            results,
            name,
            input: self.input,
            format: self.format,
            pivot: self.pivot.is_some(),
            summary: self.summary,
            key: self.key,
            output: self.output,
            html_rows: self.html_rows,
        }
    }
}

pub async fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let options = args.report.options(args.paths, args.out, args.name);
    tokio::task::spawn_blocking(move || report::run(options)).await?
}
