//! The join of one Batch's results with its input, by custom_id, in the input's order.
//!
//! Gateways need not keep the input's order, and a request's result is in one of two files.
//! [`Aligned`] reads both files ahead only as far as the next wanted custom_id, and notes
//! where every line it passed is (its custom_id and byte offset, never the line) so that a
//! later wanted line is read back from there. When the results follow the input's order (the
//! common case) it holds a line or two; when they do not, the positions of one Batch's lines
//! (a Batch holds at most the gateway's maxRequestsPerBatch): memory never grows with the
//! sweep, only with the disorder of one Batch.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use super::ReportError;
use super::answer::{self, Outcome, Status};
use super::lines::{LineRead, Lines};
use super::source::BatchFiles;
use crate::api::BatchMode;

/// A result line found for a custom_id.
#[derive(Debug)]
pub struct Found {
    pub outcome: Outcome,
    /// An error that a follow-up attempt retried (HTTP 408, 429, 5xx, `batch_expired`, ...).
    pub retryable: bool,
}

struct ResultFile {
    path: PathBuf,
    lines: Lines<BufReader<File>>,
    random: File,
    done: bool,
    from_errors: bool,
}

/// Where a line passed over is: its file, offset, length and number.
#[derive(Clone, Copy)]
struct Place {
    file: u8,
    offset: u64,
    len: u64,
    number: u64,
}

/// One attempt's results, read in the order they are asked for.
pub struct Aligned {
    pub name: String,
    /// The mode the Batch ran in (from its status): what its answers cost.
    pub mode: BatchMode,
    files: Vec<ResultFile>,
    /// Each file's next line, read and not yet joined.
    heads: Vec<Option<(Place, Found)>>,
    /// Lines passed over, by custom_id: where to read them back.
    passed: HashMap<Box<str>, Place>,
    /// Second lines of a custom_id, and lines without one: they join nothing.
    strays: Vec<Place>,
    max_line: usize,
    buf: Vec<u8>,
    /// Where fetched files are, kept while they are read.
    _fetched: Option<std::sync::Arc<super::source::Fetched>>,
}

impl Aligned {
    pub fn open(files: &BatchFiles, max_line: usize) -> Result<Aligned, ReportError> {
        let mut opened = Vec::new();
        for (path, from_errors) in [(&files.output, false), (&files.errors, true)] {
            let Some(path) = path else { continue };
            let file = File::open(path).map_err(|e| ReportError::io(path, e))?;
            let random = file.try_clone().map_err(|e| ReportError::io(path, e))?;
            opened.push(ResultFile {
                path: path.clone(),
                lines: Lines::new(BufReader::with_capacity(256 * 1024, file), 0, max_line),
                random,
                done: false,
                from_errors,
            });
        }
        let mode = files.status.as_ref().and_then(|s| s.mode).unwrap_or(BatchMode::Batch);
        Ok(Aligned {
            name: files.name.clone(),
            mode,
            heads: opened.iter().map(|_| None).collect(),
            files: opened,
            passed: HashMap::new(),
            strays: Vec::new(),
            max_line,
            buf: Vec::new(),
            _fetched: files.fetched.clone(),
        })
    }

    /// The result of `custom_id`, or `None` when neither file has it.
    pub fn take(&mut self, custom_id: &str) -> Result<Option<Found>, ReportError> {
        if let Some(place) = self.passed.remove(custom_id) {
            return self.read_back(place).map(Some);
        }
        loop {
            self.fill_heads()?;
            if self.heads.iter().all(Option::is_none) {
                return Ok(None);
            }
            let matching = self.heads.iter().position(|h| {
                h.as_ref()
                    .is_some_and(|(_, f)| f.outcome.custom_id.as_deref() == Some(custom_id))
            });
            if let Some(index) = matching {
                return Ok(self.heads[index].take().map(|(_, found)| found));
            }
            // Out of order: note where the heads are and read on.
            for index in 0..self.heads.len() {
                if let Some((place, found)) = self.heads[index].take() {
                    self.pass(place, found.outcome.custom_id);
                }
            }
        }
    }

    /// What the join did not take, each line once: custom_ids the input does not have (or has
    /// once, with a second result), and lines without one.
    pub fn rest(&mut self, mut f: impl FnMut(Outcome)) -> Result<(), ReportError> {
        loop {
            self.fill_heads()?;
            let mut any = false;
            for index in 0..self.heads.len() {
                if let Some((_, found)) = self.heads[index].take() {
                    any = true;
                    f(found.outcome);
                }
            }
            if !any {
                break;
            }
        }
        let mut places: Vec<Place> = self.passed.drain().map(|(_, p)| p).collect();
        places.append(&mut self.strays);
        places.sort_by_key(|p| (p.file, p.offset));
        for place in places {
            f(self.read_back(place)?.outcome);
        }
        Ok(())
    }

    /// How many lines' places are held (for tests of the in-order case).
    #[cfg(test)]
    fn held(&self) -> usize {
        self.passed.len() + self.strays.len()
    }

    fn pass(&mut self, place: Place, custom_id: Option<String>) {
        match custom_id {
            Some(id) if !self.passed.contains_key(id.as_str()) => {
                self.passed.insert(id.into_boxed_str(), place);
            }
            _ => self.strays.push(place),
        }
    }

    /// Reads the next line of every file whose head was taken.
    fn fill_heads(&mut self) -> Result<(), ReportError> {
        for index in 0..self.files.len() {
            if self.heads[index].is_some() || self.files[index].done {
                continue;
            }
            let read = {
                let file = &mut self.files[index];
                file.lines
                    .next_line(&mut self.buf)
                    .map_err(|e| ReportError::io(&file.path, e))?
            };
            match read {
                Some(read) => {
                    let place = Place {
                        file: index as u8,
                        offset: read.offset,
                        len: read.len,
                        number: read.number,
                    };
                    let found = self.parse(index, read);
                    self.heads[index] = Some((place, found));
                }
                None => self.files[index].done = true,
            }
        }
        Ok(())
    }

    fn read_back(&mut self, place: Place) -> Result<Found, ReportError> {
        let file = &self.files[usize::from(place.file)];
        let keep = usize::try_from(place.len).unwrap_or(usize::MAX).min(self.max_line);
        self.buf.resize(keep, 0);
        file.random
            .read_exact_at(&mut self.buf, place.offset)
            .map_err(|e| ReportError::io(&file.path, e))?;
        let read = LineRead {
            offset: place.offset,
            len: place.len,
            number: place.number,
        };
        Ok(self.parse(usize::from(place.file), read))
    }

    /// The line in `buf`, read.
    fn parse(&self, file: usize, read: LineRead) -> Found {
        let file = &self.files[file];
        let at = || format!("{} line {}", file.path.display(), read.number);
        if read.truncated(self.buf.len()) {
            let why = format!("{}: longer than {} bytes ({}), not read", at(), self.max_line, read.len);
            return Found {
                outcome: Outcome::invalid(custom_id_in_prefix(&self.buf), why),
                retryable: false,
            };
        }
        let outcome = answer::read(&self.buf, file.from_errors, &at);
        let retryable = file.from_errors
            && outcome.status != Some(Status::Invalid)
            && std::str::from_utf8(&self.buf)
                .ok()
                .and_then(crate::sweep::retryable_custom_id)
                .is_some();
        Found { outcome, retryable }
    }
}

/// The custom_id of a line too long to read, when its first bytes show it plainly
/// (`{"custom_id":"abc", ...` or after `"id":...,`): it still joins its input line.
fn custom_id_in_prefix(prefix: &[u8]) -> Option<String> {
    let key = b"\"custom_id\":";
    let at = memchr::memmem::find(prefix, key)? + key.len();
    let rest = prefix[at..].trim_ascii_start().strip_prefix(b"\"")?;
    let end = memchr::memchr2(b'"', b'\\', rest)?;
    (rest[end] == b'"').then(|| String::from_utf8_lossy(&rest[..end]).into_owned())
}

/// A Batch with its follow-ups: a line's result is its last attempt's.
pub struct Chain {
    pub attempts: Vec<Aligned>,
}

impl Chain {
    /// The result of `custom_id` and the attempt (0-based) that gave it: the first attempt's,
    /// or while that is a retryable error, the next attempt's (when it has the line).
    pub fn take(&mut self, custom_id: &str) -> Result<Option<(Found, usize)>, ReportError> {
        let mut last: Option<(Found, usize)> = None;
        for (i, attempt) in self.attempts.iter_mut().enumerate() {
            if last.as_ref().is_some_and(|(found, _)| !found.retryable) {
                break;
            }
            match attempt.take(custom_id)? {
                Some(found) => last = Some((found, i)),
                None => break,
            }
        }
        Ok(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn files(dir: &Path, output: &[&str], errors: &[&str]) -> BatchFiles {
        let write = |name: &str, lines: &[&str]| {
            let path = dir.join(name);
            std::fs::write(&path, lines.join("\n") + "\n").unwrap();
            Some(path)
        };
        BatchFiles {
            name: "b".into(),
            output: write("output.jsonl", output),
            errors: write("errors.jsonl", errors),
            status: None,
            fetched: None,
        }
    }

    fn ok(id: &str) -> String {
        format!(
            r#"{{"custom_id":"{id}","response":{{"status_code":200,"body":{{"choices":[{{"message":{{"content":"answer {id}"}}}}]}}}}}}"#
        )
    }

    fn failed(id: &str, code: u16) -> String {
        format!(
            r#"{{"custom_id":"{id}","response":{{"status_code":{code},"body":{{"error":{{"message":"no"}}}}}},"error":null}}"#
        )
    }

    #[test]
    fn results_in_any_order_join_their_input_lines_and_the_rest_comes_out_once() {
        let dir = tempfile::tempdir().unwrap();
        let output = [ok("c"), ok("a"), ok("zz"), ok("a"), "garbage".to_string()];
        let errors = [failed("b", 400)];
        let output: Vec<&str> = output.iter().map(String::as_str).collect();
        let errors: Vec<&str> = errors.iter().map(String::as_str).collect();
        let mut aligned = Aligned::open(&files(dir.path(), &output, &errors), 1 << 20).unwrap();
        let mut statuses = Vec::new();
        for id in ["a", "b", "c", "d"] {
            let found = aligned.take(id).unwrap();
            statuses.push(found.map(|f| {
                (
                    f.outcome.status.unwrap(),
                    f.outcome.answer.map(|a| a.text().into_owned()),
                )
            }));
        }
        assert_eq!(
            statuses,
            [
                Some((Status::Succeeded, Some("answer a".into()))),
                Some((Status::Failed, None)),
                Some((Status::Succeeded, Some("answer c".into()))),
                None
            ]
        );
        let mut rest = Vec::new();
        aligned.rest(|o| rest.push((o.custom_id, o.status))).unwrap();
        rest.sort();
        assert_eq!(
            rest,
            [
                (None, Some(Status::Invalid)),
                (Some("a".into()), Some(Status::Succeeded)),
                (Some("zz".into()), Some(Status::Succeeded))
            ],
            "the foreign id, the duplicate and the garbage, each once"
        );
    }

    #[test]
    fn in_order_results_are_joined_without_holding_lines() {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<String> = (0..2000).map(|i| format!("id-{i}")).collect();
        let output: Vec<String> = ids.iter().filter(|id| !id.ends_with('7')).map(|id| ok(id)).collect();
        let errors: Vec<String> = ids
            .iter()
            .filter(|id| id.ends_with('7'))
            .map(|id| failed(id, 500))
            .collect();
        let output: Vec<&str> = output.iter().map(String::as_str).collect();
        let errors: Vec<&str> = errors.iter().map(String::as_str).collect();
        let mut aligned = Aligned::open(&files(dir.path(), &output, &errors), 1 << 20).unwrap();
        let mut most = 0;
        for id in &ids {
            let found = aligned.take(id).unwrap().unwrap();
            assert_eq!(found.retryable, id.ends_with('7'), "{id}");
            most = most.max(aligned.held());
        }
        assert_eq!(most, 0, "no line's place held");
    }

    #[test]
    fn a_line_past_the_limit_is_an_invalid_row_that_still_joins() {
        let dir = tempfile::tempdir().unwrap();
        let long = format!(
            r#"{{"custom_id":"big","response":{{"body":{{"x":"{}"}}}}}}"#,
            "y".repeat(5000)
        );
        let output = [long.as_str(), &ok("next")];
        let mut aligned = Aligned::open(&files(dir.path(), &output, &[]), 1024).unwrap();
        let big = aligned.take("big").unwrap().unwrap().outcome;
        assert_eq!(big.status, Some(Status::Invalid));
        assert!(
            big.error
                .as_deref()
                .unwrap()
                .contains("output.jsonl line 1: longer than 1024 bytes"),
            "{big:?}"
        );
        assert_eq!(
            aligned.take("next").unwrap().unwrap().outcome.status,
            Some(Status::Succeeded)
        );
    }
}
