//! CSV (RFC 4180, through the `csv` crate): a header, then a record per row.

use std::io::Write;

use super::{Sink, output};
use crate::report::ReportError;
use crate::report::rows::Cell;
use crate::report::summary::Summary;

pub struct CsvSink {
    writer: csv::Writer<Box<dyn Write>>,
}

impl CsvSink {
    pub fn new(out: Box<dyn Write>) -> Self {
        Self {
            writer: csv::WriterBuilder::new().flexible(false).from_writer(out),
        }
    }
}

fn csv_error(e: csv::Error) -> ReportError {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => output(e),
        other => ReportError::Output(format!("{other:?}")),
    }
}

impl Sink for CsvSink {
    fn begin(&mut self, columns: &[String]) -> Result<(), ReportError> {
        self.writer.write_record(columns).map_err(csv_error)
    }

    fn row(&mut self, cells: Vec<Cell>) -> Result<(), ReportError> {
        self.writer
            .write_record(cells.iter().map(|c| c.text().into_owned()))
            .map_err(csv_error)
    }

    fn end(&mut self, _: &Summary) -> Result<(), ReportError> {
        self.writer.flush().map_err(output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Shared(std::rc::Rc<std::cell::RefCell<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.borrow_mut().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn quotes_commas_newlines_and_json_are_escaped() {
        let out = Shared::default();
        let mut sink = CsvSink::new(Box::new(out.clone()));
        sink.begin(&["a".into(), "b".into(), "c".into()]).unwrap();
        sink.row(vec![
            Cell::Text("x, \"y\"\nz".into()),
            Cell::Json(serde_json::json!({"k": "v,w"})),
            Cell::Int(7),
        ])
        .unwrap();
        sink.end(&Summary::default()).unwrap();
        let text = String::from_utf8(out.0.borrow().clone()).unwrap();
        assert_eq!(text, "a,b,c\n\"x, \"\"y\"\"\nz\",\"{\"\"k\"\":\"\"v,w\"\"}\",7\n");
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let record = reader.records().next().unwrap().unwrap();
        assert_eq!(&record[0], "x, \"y\"\nz");
    }
}
