//! `llm-batch-operator report`: the results of a Batch or a BatchSweep joined with its input
//! by custom_id, as a row per request (custom_id, prompt id, model, chunk, status, answer,
//! error, tokens, cost) or with `--pivot model` a row per prompt and a column group per model,
//! and a per-model summary; in CSV, JSONL, Markdown or one self-contained HTML page.
//!
//! The parts: [`target`] finds what ran from the manifests given to `run -f` (a sweep's children
//! as the sweep named them, from the plan its status keeps); [`source`] is where the results
//! are read from (`run -f`'s output directory, or the API server: [`cluster`]); [`join`] pairs each input line with its result
//! in the input's order, whatever order the gateway wrote; [`walk`] makes the rows; [`summary`]
//! sums them by model; [`format`] writes them.
//!
//! It streams: memory holds one prompt's rows, the summary's sums, and, when a gateway wrote a
//! Batch's results out of order, the custom_ids and offsets of that Batch's lines read ahead
//! (never the lines). A line longer than the line limit (16 MiB, a gateway download's) is an
//! `invalid` row, never buffered whole.

pub mod answer;
pub mod cluster;
pub mod format;
pub mod join;
pub mod lines;
pub mod rows;
pub mod source;
pub mod spill;
pub mod summary;
pub mod target;
pub mod walk;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub use format::{DEFAULT_HTML_ROWS, Format, Sink};
pub use source::Source;
pub use summary::Summary;

/// What can stop a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The manifests, the names or the flags: the user's to fix.
    #[error("{0}")]
    Input(String),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// Fetching results from object storage (a rerun may get past it).
    #[error("{0}")]
    Fetch(String),
    /// Writing the report.
    #[error("writing the report: {0}")]
    Output(String),
    /// Whoever read the report stopped reading (`| head`).
    #[error("the report's reader went away")]
    Closed,
}

impl ReportError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        ReportError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Options of `report`.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// The manifests `run -f` ran.
    pub paths: Vec<PathBuf>,
    /// `run -f`'s `--out`.
    pub results: PathBuf,
    /// `NAME` or `NAMESPACE/NAME` of the Batch or BatchSweep (needed when the files hold several).
    pub name: Option<String>,
    /// A local copy of the input, instead of the manifests' source.
    pub input: Option<PathBuf>,
    pub format: Format,
    pub pivot: bool,
    /// The per-model summary instead of the rows.
    pub summary: bool,
    /// A regex whose named groups `prompt`, `model`, `chunk` split each custom_id.
    pub key: Option<String>,
    /// Where the report goes (standard output without).
    pub output: Option<PathBuf>,
    /// Rows the HTML page shows.
    pub html_rows: usize,
}

/// What a report found, in all.
#[derive(Debug)]
pub struct Reported {
    pub summary: Summary,
    /// Why the rows were not joined with the input, when they were not.
    pub unjoined: Option<String>,
}

/// Writes the report to `out`.
pub fn write(options: &ReportOptions, out: Box<dyn Write>) -> Result<Reported, ReportError> {
    let manifests = crate::local::Manifests::load(&options.paths).map_err(|e| ReportError::Input(e.to_string()))?;
    let source = Source::Directory(options.results.clone());
    write_from(&manifests, &source, options, out)
}

/// Writes the report of `options.name` among `manifests`, its results read from `source`, to
/// `out` (`options.paths` and `options.results` are not read).
pub fn write_from(
    manifests: &crate::local::Manifests,
    source: &Source,
    options: &ReportOptions,
    out: Box<dyn Write>,
) -> Result<Reported, ReportError> {
    let target = target::find(manifests, options.name.as_deref(), source, options.input.clone())?;
    let key = match &options.key {
        Some(text) => Some(regex::Regex::new(text).map_err(|e| ReportError::Input(format!("--key: {e}")))?),
        None => None,
    };
    let unjoined = match &target.input {
        target::Input::Unavailable(why) => Some(why.clone()),
        _ => None,
    };
    // Models only --key tells: the pivot spills rows by prompt and groups them at the end.
    let spilled = options.pivot && target.models.is_empty() && key.is_some();
    if options.pivot {
        if target.models.is_empty() && key.is_none() {
            return Err(ReportError::Input(format!(
                "--pivot model needs the models as columns: {} {}/{} has no spec.matrix (a Batch: no \
                 spec.input.overrides.model); or say with --key which part of a custom_id is the model",
                target.kind, target.namespace, target.name
            )));
        }
        if let Some(why) = &unjoined
            && !spilled
        {
            return Err(ReportError::Input(format!("--pivot model joins the input: {why}")));
        }
    }
    let shape = match options.pivot && !spilled {
        true => walk::Shape::Pivot,
        false => walk::Shape::Rows,
    };
    let walk = walk::Walk {
        target: &target,
        source,
        key: key.as_ref(),
        max_line: max_line(),
        shape,
    };
    let title = format!("{} {}/{}", target.kind, target.namespace, target.name);
    let mut sink = format::sink(options.format, out, &title, options.html_rows);
    let mut summary = Summary::with_models(&target.models);
    let prices = target.prices.as_deref();
    if options.summary {
        walk.run(&mut format::Discard, &mut summary)?;
        summary.finish(prices);
        let columns: Vec<String> = summary::SUMMARY_COLUMNS.iter().map(|c| c.to_string()).collect();
        sink.begin(&columns)?;
        for row in summary.rows() {
            sink.row(row)?;
        }
    } else if spilled {
        let mut spill = spill::PivotSpill::new()?;
        walk.run(&mut spill, &mut summary)?;
        summary.finish(prices);
        spill.replay(sink.as_mut())?;
    } else {
        sink.begin(&walk.columns())?;
        walk.run(sink.as_mut(), &mut summary)?;
        summary.finish(prices);
    }
    sink.end(&summary)?;
    Ok(Reported { summary, unjoined })
}

/// The longest line read: a gateway download's line limit.
pub fn max_line() -> usize {
    usize::try_from(crate::gateway::ResponseLimits::default().line_bytes).unwrap_or(usize::MAX)
}

/// Runs `report`: exit 0 when written, 2 when the manifests, names or flags are wrong, 1 when
/// files could not be read or written.
pub fn run(options: ReportOptions) -> anyhow::Result<ExitCode> {
    let out = output(&options)?;
    conclude(write(&options, out))
}

/// Where the report goes: `options.output`, or standard output.
pub fn output(options: &ReportOptions) -> anyhow::Result<Box<dyn Write>> {
    Ok(match &options.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    })
}

/// The exit of a report that `written` ended: its summary line on standard error and 0; the
/// problem and 2 when it is the user's to fix; an error (1) otherwise.
pub fn conclude(written: Result<Reported, ReportError>) -> anyhow::Result<ExitCode> {
    match written {
        Ok(reported) => {
            if let Some(why) = reported.unjoined {
                eprintln!("note: results not joined with the input ({why}): no missing rows");
            }
            let total = &reported.summary.total;
            eprintln!(
                "{} requests: {} succeeded, {} failed, {} missing{}",
                total.requests,
                total.succeeded,
                total.failed,
                total.missing,
                match total.unexpected {
                    0 => String::new(),
                    n => format!("; {n} results not in the input"),
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(ReportError::Input(problem)) => {
            eprintln!("error: {problem}");
            Ok(ExitCode::from(2))
        }
        Err(ReportError::Closed) => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e.into()),
    }
}
