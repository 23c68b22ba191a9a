//! A Markdown (GitHub) table. Cell text is escaped so that no answer can end a cell, a row or
//! the table, or become markup when rendered: `|`, `\`, `<`, `>`, `&`, backticks and line
//! breaks.

use std::io::Write;

use super::{Sink, output};
use crate::report::ReportError;
use crate::report::rows::Cell;
use crate::report::summary::Summary;

pub struct MarkdownSink {
    out: std::io::BufWriter<Box<dyn Write>>,
}

impl MarkdownSink {
    pub fn new(out: Box<dyn Write>) -> Self {
        Self {
            out: std::io::BufWriter::with_capacity(256 * 1024, out),
        }
    }
}

/// `text` safe inside a Markdown table cell.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '|' => out.push_str("\\|"),
            '\\' => out.push_str("\\\\"),
            '`' => out.push_str("\\`"),
            '*' | '_' | '[' | ']' => {
                out.push('\\');
                out.push(c);
            }
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\r' => {}
            '\n' => out.push_str("<br>"),
            c => out.push(c),
        }
    }
    out
}

impl Sink for MarkdownSink {
    fn begin(&mut self, columns: &[String]) -> Result<(), ReportError> {
        let header: Vec<String> = columns.iter().map(|c| escape(c)).collect();
        let rule: Vec<&str> = columns.iter().map(|_| "---").collect();
        writeln!(self.out, "| {} |\n|{}|", header.join(" | "), rule.join("|")).map_err(output)
    }

    fn row(&mut self, cells: Vec<Cell>) -> Result<(), ReportError> {
        let cells: Vec<String> = cells.iter().map(|c| escape(&c.text())).collect();
        writeln!(self.out, "| {} |", cells.join(" | ")).map_err(output)
    }

    fn end(&mut self, _: &Summary) -> Result<(), ReportError> {
        self.out.flush().map_err(output)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn nothing_in_a_cell_breaks_out_of_it() {
        assert_eq!(
            super::escape("a|b\n<script>x</script> & `c` *d*"),
            "a\\|b<br>&lt;script&gt;x&lt;/script&gt; &amp; \\`c\\` \\*d\\*"
        );
    }
}
