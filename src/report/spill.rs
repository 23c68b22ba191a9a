//! `--pivot model` for results whose models only `--key` tells (a Batch of mixed models): a
//! prompt's rows may be anywhere in the files, so each row goes to one of [`PARTS`] scratch
//! files by its prompt's hash, then each file is read back alone and grouped. Memory holds one
//! part's rows (about 1/256 of them), never all; prompts come out part by part, each part in
//! input order.

use std::collections::HashMap;
use std::fs::File;
use std::hash::BuildHasher;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;

use super::ReportError;
use super::format::Sink;
use super::rows::{self, Cell, ROW_COLUMNS};
use super::summary::Summary;

/// Scratch files the rows are spread over.
pub const PARTS: usize = 256;
/// Most models a pivot has columns for.
pub const MAX_MODELS: usize = 50;

/// The pivot's scratch files, removed when dropped.
pub struct PivotSpill {
    dir: PathBuf,
    parts: Vec<BufWriter<File>>,
    models: Vec<String>,
    hasher: std::collections::hash_map::RandomState,
    seq: u64,
}

/// What a part's line holds: the row's order, prompt, chunk, model index and group cells.
#[derive(serde::Serialize, serde::Deserialize)]
struct Spilled {
    seq: u64,
    prompt: String,
    chunk: Option<u64>,
    model: usize,
    cells: Vec<Cell>,
}

/// A prompt's rows read back: its first row's order, its chunk, and each model's cells.
type Gathered = (u64, Option<u64>, Vec<Option<Vec<Cell>>>);

fn column(name: &str) -> usize {
    ROW_COLUMNS.iter().position(|c| *c == name).expect("a row column")
}

impl PivotSpill {
    pub fn new() -> Result<Self, ReportError> {
        let dir = std::env::temp_dir().join(format!("llmb-report-pivot-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).map_err(|e| ReportError::io(&dir, e))?;
        let mut parts = Vec::with_capacity(PARTS);
        for i in 0..PARTS {
            let path = dir.join(format!("{i}.jsonl"));
            parts.push(BufWriter::with_capacity(
                16 * 1024,
                File::create(&path).map_err(|e| ReportError::io(&path, e))?,
            ));
        }
        Ok(Self {
            dir,
            parts,
            models: Vec::new(),
            hasher: Default::default(),
            seq: 0,
        })
    }

    /// Writes the pivot to `sink`: its columns, then a row per prompt, part by part.
    pub fn replay(mut self, sink: &mut dyn Sink) -> Result<(), ReportError> {
        for (i, part) in self.parts.iter_mut().enumerate() {
            part.flush()
                .map_err(|e| ReportError::io(&self.dir.join(format!("{i}.jsonl")), e))?;
        }
        sink.begin(&rows::pivot_columns(&self.models))?;
        let groups = self.models.len();
        for i in 0..PARTS {
            let path = self.dir.join(format!("{i}.jsonl"));
            let reader = BufReader::new(File::open(&path).map_err(|e| ReportError::io(&path, e))?);
            let mut prompts: HashMap<String, Gathered> = HashMap::new();
            for line in reader.lines() {
                let line = line.map_err(|e| ReportError::io(&path, e))?;
                let spilled: Spilled =
                    serde_json::from_str(&line).map_err(|e| ReportError::Output(format!("{}: {e}", path.display())))?;
                let entry = prompts
                    .entry(spilled.prompt)
                    .or_insert_with(|| (spilled.seq, spilled.chunk, vec![None; groups]));
                entry.2[spilled.model] = Some(spilled.cells);
            }
            let mut ordered: Vec<_> = prompts.into_iter().collect();
            ordered.sort_by_key(|(_, (seq, _, _))| *seq);
            for (prompt, (_, chunk, cells)) in ordered {
                let mut row = vec![Cell::Text(prompt), chunk.map_or(Cell::Empty, Cell::Int)];
                for group in cells {
                    match group {
                        Some(cells) => row.extend(cells),
                        None => row.extend(std::iter::repeat_n(Cell::Empty, rows::PIVOT_GROUP.len())),
                    }
                }
                sink.row(row)?;
            }
        }
        Ok(())
    }
}

impl Drop for PivotSpill {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Sink for PivotSpill {
    fn begin(&mut self, _: &[String]) -> Result<(), ReportError> {
        Ok(())
    }

    /// Takes a row per request ([`ROW_COLUMNS`]).
    fn row(&mut self, mut cells: Vec<Cell>) -> Result<(), ReportError> {
        if cells.len() != ROW_COLUMNS.len() {
            return Err(ReportError::Output(format!(
                "the pivot's spill takes rows per request ({} cells), not {}",
                ROW_COLUMNS.len(),
                cells.len()
            )));
        }
        let take = |cells: &mut Vec<Cell>, name: &str| std::mem::replace(&mut cells[column(name)], Cell::Empty);
        let model = take(&mut cells, "model").text().into_owned();
        let index = match self.models.iter().position(|m| *m == model) {
            Some(i) => i,
            None if self.models.len() < MAX_MODELS => {
                self.models.push(model);
                self.models.len() - 1
            }
            None => {
                return Err(ReportError::Input(format!(
                    "--pivot model: more than {MAX_MODELS} models ({model:?} and {}): check --key",
                    self.models.join(", ")
                )));
            }
        };
        let prompt = take(&mut cells, "prompt_id").text().into_owned();
        let chunk = match take(&mut cells, "chunk") {
            Cell::Int(n) => Some(n),
            _ => None,
        };
        let group: Vec<Cell> = rows::PIVOT_GROUP.iter().map(|name| take(&mut cells, name)).collect();
        let part = (self.hasher.hash_one(&prompt) % PARTS as u64) as usize;
        let spilled = Spilled {
            seq: self.seq,
            prompt,
            chunk,
            model: index,
            cells: group,
        };
        self.seq += 1;
        let mut line = serde_json::to_vec(&spilled).map_err(|e| ReportError::Output(e.to_string()))?;
        line.push(b'\n');
        let path = self.dir.join(format!("{part}.jsonl"));
        self.parts[part].write_all(&line).map_err(|e| ReportError::io(&path, e))
    }

    fn end(&mut self, _: &Summary) -> Result<(), ReportError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keeps the rows a sink is given.
    #[derive(Default)]
    struct Kept(Vec<String>, Vec<Vec<String>>);
    impl Sink for Kept {
        fn begin(&mut self, columns: &[String]) -> Result<(), ReportError> {
            self.0 = columns.to_vec();
            Ok(())
        }
        fn row(&mut self, cells: Vec<Cell>) -> Result<(), ReportError> {
            self.1.push(cells.iter().map(|c| c.text().into_owned()).collect());
            Ok(())
        }
        fn end(&mut self, _: &Summary) -> Result<(), ReportError> {
            Ok(())
        }
    }

    fn row(prompt: &str, model: &str, answer: &str) -> Vec<Cell> {
        ROW_COLUMNS
            .iter()
            .map(|c| match *c {
                "prompt_id" => Cell::Text(prompt.into()),
                "model" => Cell::Text(model.into()),
                "status" => Cell::Text("succeeded".into()),
                "answer" => Cell::Json(serde_json::json!({"a": answer})),
                "total_tokens" => Cell::Int(5),
                _ => Cell::Empty,
            })
            .collect()
    }

    #[test]
    fn rows_far_apart_meet_in_their_prompts_row_and_the_scratch_goes() {
        let mut spill = PivotSpill::new().unwrap();
        let dir = spill.dir.clone();
        for p in 0..1000 {
            spill.row(row(&format!("q{p}"), "m1", &format!("one {p}"))).unwrap();
        }
        for p in (0..1000).rev() {
            spill.row(row(&format!("q{p}"), "m2", &format!("two {p}"))).unwrap();
        }
        let mut kept = Kept::default();
        spill.replay(&mut kept).unwrap();
        assert!(!dir.exists(), "the scratch files are removed");
        assert_eq!(&kept.0[..3], ["prompt_id", "chunk", "m1/status"]);
        assert_eq!(kept.1.len(), 1000, "a row per prompt");
        let answer = |m: &str| kept.0.iter().position(|c| *c == format!("{m}/answer")).unwrap();
        for row in &kept.1 {
            let p = row[0].trim_start_matches('q');
            assert_eq!(row[answer("m1")], format!("{{\"a\":\"one {p}\"}}"));
            assert_eq!(row[answer("m2")], format!("{{\"a\":\"two {p}\"}}"));
        }
    }
}
