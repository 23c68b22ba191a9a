//! One self-contained HTML page: the summary by model, charts drawn here as inline SVG (cost
//! and success rate by model, tokens per answer), and the first rows. It fetches nothing and
//! runs no script (its Content-Security-Policy forbids both); every text from the results is
//! escaped, so an answer holding markup shows as text.

use std::fmt::Write as _;
use std::io::Write;

use rust_decimal::Decimal;
use std::str::FromStr;

use super::svg::{self, Bar};
use super::{Sink, output};
use crate::report::ReportError;
use crate::report::rows::Cell;
use crate::report::summary::{SUMMARY_COLUMNS, Summary};

/// Rows the page shows unless told otherwise (the CSV has them all).
pub const DEFAULT_HTML_ROWS: usize = 500;
/// Characters of a cell the page shows.
const MAX_CELL_CHARS: usize = 2000;

pub struct HtmlSink {
    out: Box<dyn Write>,
    title: String,
    columns: Vec<String>,
    /// The first rows, as HTML.
    rows: String,
    shown: usize,
    seen: u64,
    limit: usize,
}

impl HtmlSink {
    pub fn new(out: Box<dyn Write>, title: &str, limit: usize) -> Self {
        Self {
            out,
            title: title.to_string(),
            columns: Vec::new(),
            rows: String::new(),
            shown: 0,
            seen: 0,
            limit,
        }
    }
}

/// `text` safe in HTML text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn cell_html(column: &str, cell: &Cell) -> String {
    let text = cell.text();
    let shown = match text.char_indices().nth(MAX_CELL_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.into_owned(),
    };
    let class = if cell.numeric() { r#" class="num""# } else { "" };
    format!(r#"<td data-col="{}"{class}>{}</td>"#, escape(column), escape(&shown))
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fff}\
h1{font-size:20px}h2{font-size:16px;margin-top:28px}\
table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}\
th{background:#f2f2f2}td.num{text-align:right;font-variant-numeric:tabular-nums}\
#rows td{max-width:480px;white-space:pre-wrap;overflow-wrap:anywhere}\
#rows td[data-col$=answer],#rows td[data-col$=error]{min-width:260px}td[data-col=model]{white-space:nowrap}\
figure{display:inline-block;vertical-align:top;margin:8px 24px 8px 0}svg text{font:12px system-ui,sans-serif;fill:#222}\
svg text.title{font-weight:600;font-size:13px}svg text.small{font-size:10px}.note{color:#555}";

impl Sink for HtmlSink {
    fn begin(&mut self, columns: &[String]) -> Result<(), ReportError> {
        self.columns = columns.to_vec();
        Ok(())
    }

    fn row(&mut self, cells: Vec<Cell>) -> Result<(), ReportError> {
        self.seen += 1;
        if self.shown >= self.limit {
            return Ok(());
        }
        self.shown += 1;
        self.rows.push_str("<tr>");
        for (column, cell) in self.columns.iter().zip(&cells) {
            self.rows.push_str(&cell_html(column, cell));
        }
        self.rows.push_str("</tr>\n");
        Ok(())
    }

    fn end(&mut self, summary: &Summary) -> Result<(), ReportError> {
        let page = page(&self.title, summary, &self.columns, &self.rows, self.shown, self.seen);
        self.out.write_all(page.as_bytes()).map_err(output)?;
        self.out.flush().map_err(output)
    }
}

fn page(title: &str, summary: &Summary, columns: &[String], rows: &str, shown: usize, seen: u64) -> String {
    let title = escape(title);
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head>\n<body>\n<h1>{title}</h1>\n"
    );
    let total = &summary.total;
    let _ = writeln!(
        html,
        "<p class=\"note\">{} requests, {} succeeded, {} failed, {} missing; {} tokens{}.</p>",
        total.requests,
        total.succeeded,
        total.failed,
        total.missing,
        total.total_tokens,
        match (&total.cost, &summary.currency) {
            (Some(cost), Some(currency)) => format!(
                ", cost {} {}",
                escape(if cost.actual.is_empty() { "0" } else { &cost.actual }),
                escape(currency)
            ),
            _ => String::new(),
        }
    );
    html.push_str("<h2>Summary by model</h2>\n<table id=\"summary\"><thead><tr>");
    for column in SUMMARY_COLUMNS {
        let _ = write!(html, "<th>{}</th>", escape(column));
    }
    html.push_str("</tr></thead><tbody>\n");
    for cells in summary.rows() {
        let _ = write!(html, "<tr data-model=\"{}\">", escape(&cells[0].text()));
        for (column, cell) in SUMMARY_COLUMNS.iter().zip(&cells) {
            html.push_str(&cell_html(column, cell));
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</tbody></table>\n<h2>Charts</h2>\n");
    let decimal = |d: Option<Decimal>| d.map(|d| d.to_string());
    if let Some(currency) = &summary.currency {
        let bars: Vec<Bar> = summary
            .models
            .iter()
            .map(|m| {
                let actual = m.cost.as_ref().map(|c| c.actual.clone()).filter(|a| !a.is_empty());
                let amount = actual
                    .as_deref()
                    .and_then(|a| Decimal::from_str(a).ok())
                    .unwrap_or_default();
                Bar {
                    label: m.model.clone(),
                    value: f64::try_from(amount).unwrap_or(0.0),
                    shown: format!("{} {currency}", actual.as_deref().unwrap_or("0")),
                }
            })
            .collect();
        let _ = writeln!(
            html,
            "<figure>{}</figure>",
            svg::horizontal("chart-cost", "Cost by model", &bars, None)
        );
    }
    let bars: Vec<Bar> = summary
        .models
        .iter()
        .map(|m| Bar {
            label: m.model.clone(),
            value: m.success_rate().and_then(|r| f64::try_from(r).ok()).unwrap_or(0.0),
            shown: decimal(m.success_rate()).unwrap_or_else(|| "no requests".into()),
        })
        .collect();
    let _ = write!(
        html,
        "<figure>{}</figure>\n<figure>{}</figure>\n",
        svg::horizontal("chart-success", "Success rate by model", &bars, Some(1.0)),
        svg::token_distribution(summary)
    );
    let _ = write!(
        html,
        "<h2>Rows</h2>\n<p class=\"note\">The first {shown} of {seen} rows (the CSV and JSONL formats have every row).</p>\n<table id=\"rows\"><thead><tr>"
    );
    for column in columns {
        let _ = write!(html, "<th>{}</th>", escape(column));
    }
    html.push_str("</tr></thead><tbody>\n");
    html.push_str(rows);
    html.push_str("</tbody></table>\n</body></html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_results_is_text() {
        let hostile = "</td><script>alert(1)</script><img src=x onerror=\"alert(2)\">'";
        let html = cell_html("answer", &Cell::Text(hostile.into()));
        assert!(!html.contains("<script") && !html.contains("<img"), "{html}");
        assert!(html.contains(
            "&lt;/td&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=&quot;alert(2)&quot;&gt;&#39;"
        ));
    }
}
