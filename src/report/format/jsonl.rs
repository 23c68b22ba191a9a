//! JSONL: an object per row, its keys the columns in order; numbers are numbers, a JSON answer
//! is JSON, costs are exact decimal strings.

use std::io::Write;

use super::{Sink, output};
use crate::report::ReportError;
use crate::report::rows::Cell;
use crate::report::summary::Summary;

pub struct JsonlSink {
    out: std::io::BufWriter<Box<dyn Write>>,
    keys: Vec<String>,
}

impl JsonlSink {
    pub fn new(out: Box<dyn Write>) -> Self {
        Self {
            out: std::io::BufWriter::with_capacity(256 * 1024, out),
            keys: Vec::new(),
        }
    }
}

impl Sink for JsonlSink {
    fn begin(&mut self, columns: &[String]) -> Result<(), ReportError> {
        self.keys = columns
            .iter()
            .map(|c| serde_json::Value::from(c.as_str()).to_string())
            .collect();
        Ok(())
    }

    fn row(&mut self, cells: Vec<Cell>) -> Result<(), ReportError> {
        let mut line = String::from("{");
        for (i, (key, cell)) in self.keys.iter().zip(&cells).enumerate() {
            if i > 0 {
                line.push(',');
            }
            line.push_str(key);
            line.push(':');
            line.push_str(&cell.json().to_string());
        }
        line.push_str("}\n");
        self.out.write_all(line.as_bytes()).map_err(output)
    }

    fn end(&mut self, _: &Summary) -> Result<(), ReportError> {
        self.out.flush().map_err(output)
    }
}
