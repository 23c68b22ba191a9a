//! `report NAME`: `llm-batch-operator report` on a Batch or BatchSweep in the cluster. The
//! status comes from the API server, the input from the ConfigMap or Secret its spec names, the
//! results from its output Secret or object-store prefix ([`crate::report::cluster`]).

use std::path::PathBuf;
use std::process::ExitCode;

use super::lookup::{self, Found, Kind};
use super::{KubeFlags, PluginError, config};
use crate::report::cluster::{self, Cluster, Subject};
use crate::report::{self as reports, Format, ReportError, ReportOptions, Source};

/// Flags of `report`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  kubectl llmbatch report ticket-triage -o rows.csv
  kubectl llmbatch report eval --pivot model -o eval.csv
  kubectl llmbatch report eval --summary --format markdown
  kubectl llmbatch report eval --format html -o eval.html
Exit codes: 0 written; 1 the results could not be read (the API server, object storage); 2 the
name, a flag or the object's output is wrong for a report (a PVC cannot be read from outside
the cluster).")]
pub struct ReportArgs {
    /// The Batch or BatchSweep: NAME, or batch/NAME, sweep/NAME.
    pub name: String,
    /// A local copy of the input JSONL, read instead of the ConfigMap or Secret the spec names
    /// (for an input in object storage or on the gateway).
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// csv, jsonl, markdown or html (one self-contained page: summary, charts, first rows).
    #[arg(long, value_enum, default_value_t = Format::Csv)]
    pub format: Format,
    /// One row per prompt with a column group per model (a sweep's matrix).
    #[arg(long, value_name = "BY", value_parser = ["model"])]
    pub pivot: Option<String>,
    /// The per-model summary instead of the rows.
    #[arg(long)]
    pub summary: bool,
    /// A regex splitting each custom_id with named groups `prompt`, `model` and `chunk`.
    #[arg(long, value_name = "REGEX")]
    pub key: Option<String>,
    /// Write the report to this file instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Rows the HTML page shows after its summary and charts.
    #[arg(long, value_name = "N", default_value_t = reports::DEFAULT_HTML_ROWS)]
    pub html_rows: usize,
}

pub async fn run(flags: &KubeFlags, args: ReportArgs) -> Result<ExitCode, PluginError> {
    let (client, namespace) = config::connect(flags).await?;
    let found = lookup::one(&client, &namespace, &args.name, &[Kind::Batch, Kind::Sweep]).await?;
    let (subject, name) = match found {
        Found::Batch(b) => {
            let name = kube::ResourceExt::name_any(b.as_ref());
            (Subject::Batch(b), name)
        }
        Found::Sweep(s) => {
            let name = kube::ResourceExt::name_any(s.as_ref());
            (Subject::Sweep(s), name)
        }
        Found::Schedule(_) => unreachable!("looked up among Batches and BatchSweeps"),
    };
    let manifests = match cluster::manifests(&client, subject, args.input.is_none()).await {
        Ok(manifests) => manifests,
        Err(ReportError::Input(problem)) => return Err(PluginError::Usage(problem)),
        Err(e) => return Err(PluginError::Runtime(e.into())),
    };
    let options = ReportOptions {
        paths: Vec::new(),
        results: PathBuf::new(),
        name: Some(format!("{namespace}/{name}")),
        input: args.input,
        format: args.format,
        pivot: args.pivot.is_some(),
        summary: args.summary,
        key: args.key,
        output: args.output,
        html_rows: args.html_rows,
    };
    let source = Source::Cluster(Cluster::new(client));
    // The walk reads files and blocks on the API server and object storage from its own thread.
    let written = tokio::task::spawn_blocking(move || {
        let out = reports::output(&options)?;
        reports::conclude(reports::write_from(&manifests, &source, &options, out))
    })
    .await
    .map_err(anyhow::Error::from)?;
    Ok(written?)
}
