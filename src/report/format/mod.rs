//! The formats a report is written in: each is a [`Sink`] taking the columns, the rows as
//! they are made, then the summary.

mod csv_rows;
mod html;
mod jsonl;
mod markdown;
mod svg;

use std::io::Write;

use super::ReportError;
use super::rows::Cell;
use super::summary::Summary;

pub use html::DEFAULT_HTML_ROWS;

/// What receives a report.
pub trait Sink {
    fn begin(&mut self, columns: &[String]) -> Result<(), ReportError>;
    fn row(&mut self, cells: Vec<Cell>) -> Result<(), ReportError>;
    /// After the last row. The HTML page shows `summary` and its charts; the others ignore it.
    fn end(&mut self, summary: &Summary) -> Result<(), ReportError>;
}

/// A report's format (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Jsonl,
    Markdown,
    /// One self-contained page: the summary, its charts and the first rows.
    Html,
}

/// The sink writing `format` to `out`. `title` heads the HTML page; `html_rows` bounds the
/// rows it shows.
pub fn sink(format: Format, out: Box<dyn Write>, title: &str, html_rows: usize) -> Box<dyn Sink> {
    match format {
        Format::Csv => Box::new(csv_rows::CsvSink::new(out)),
        Format::Jsonl => Box::new(jsonl::JsonlSink::new(out)),
        Format::Markdown => Box::new(markdown::MarkdownSink::new(out)),
        Format::Html => Box::new(html::HtmlSink::new(out, title, html_rows)),
    }
}

/// A sink that keeps nothing (rows are only summed, for `--summary`).
pub struct Discard;

impl Sink for Discard {
    fn begin(&mut self, _: &[String]) -> Result<(), ReportError> {
        Ok(())
    }
    fn row(&mut self, _: Vec<Cell>) -> Result<(), ReportError> {
        Ok(())
    }
    fn end(&mut self, _: &Summary) -> Result<(), ReportError> {
        Ok(())
    }
}

/// A write error of the report's output.
fn output(e: std::io::Error) -> ReportError {
    match e.kind() {
        std::io::ErrorKind::BrokenPipe => ReportError::Closed,
        _ => ReportError::Output(e.to_string()),
    }
}
