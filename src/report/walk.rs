//! The walk over a target: chunk by chunk, the input's lines in order, each joined with every
//! model's result for it ([`join`](super::join)), into rows (or one pivot row per prompt) that
//! go to the format as they are made, and into the summary. Memory holds one prompt's rows.

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};

use regex::Regex;
use serde::Deserialize;

use super::answer::{Outcome, Status};
use super::join::{Aligned, Chain, Found};
use super::lines::Lines;
use super::rows::{self, Row};
use super::source::Source;
use super::summary::Summary;
use super::target::{Group, Input, Part, Target};
use super::{ReportError, Sink};
use crate::api::{BatchMode, Usage};

/// Rows per request, or per prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Rows,
    Pivot,
}

/// How to walk.
pub struct Walk<'a> {
    pub target: &'a Target,
    pub source: &'a Source,
    /// `--key`: named groups `prompt`, `model`, `chunk` taken from each result custom_id.
    pub key: Option<&'a Regex>,
    pub max_line: usize,
    pub shape: Shape,
}

impl Walk<'_> {
    /// The columns of the rows [`Walk::run`] writes.
    pub fn columns(&self) -> Vec<String> {
        match self.shape {
            Shape::Rows => rows::ROW_COLUMNS.iter().map(|c| c.to_string()).collect(),
            Shape::Pivot => rows::pivot_columns(&self.target.models),
        }
    }

    /// Writes every row to `sink` and sums them into `summary`.
    pub fn run(&self, sink: &mut dyn Sink, summary: &mut Summary) -> Result<(), ReportError> {
        for group in &self.target.groups {
            let mut chains = Vec::new();
            for part in &group.parts {
                chains.push(self.chain(part)?);
            }
            match &self.target.input {
                Input::Unavailable(_) => {}
                input => self.joined(group, &mut chains, input, sink, summary)?,
            }
            // What the join did not take (all of it without the input).
            let joined = !matches!(self.target.input, Input::Unavailable(_));
            for (part, chain) in group.parts.iter().zip(&mut chains) {
                for (index, attempt) in chain.attempts.iter_mut().enumerate() {
                    let mode = attempt.mode;
                    let mut failure = None;
                    attempt.rest(|outcome| {
                        if failure.is_some() {
                            return;
                        }
                        let mut row = self.row(group, part, None, None, Some((outcome, index, mode)));
                        if joined && row.status != Status::Invalid {
                            row.status = Status::Unexpected;
                            row.error = Some(format!(
                                "{}: custom_id {:?} is not in the input, or has a result already",
                                attempt_label(part, index),
                                row.custom_id
                            ));
                        }
                        summary.add(&row, mode);
                        failure = self.emit_alone(&row, sink).err();
                    })?;
                    if let Some(e) = failure {
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }

    fn chain(&self, part: &Part) -> Result<Chain, ReportError> {
        let mut attempts = Vec::new();
        for attempt in &part.attempts {
            match self.source.batch(&self.target.namespace, attempt)? {
                Some(files) => attempts.push(Aligned::open(&files, self.max_line)?),
                None => break,
            }
        }
        Ok(Chain { attempts })
    }

    /// The input's lines of `group`, each joined with every part's result.
    fn joined(
        &self,
        group: &Group,
        chains: &mut [Chain],
        input: &Input,
        sink: &mut dyn Sink,
        summary: &mut Summary,
    ) -> Result<(), ReportError> {
        let (reader, name): (Box<dyn BufRead + '_>, Cow<'_, str>) = match input {
            Input::Bytes(bytes) => {
                let range = group.range.clone().unwrap_or(0..bytes.len() as u64);
                let slice = bytes
                    .get(range.start as usize..range.end as usize)
                    .ok_or_else(|| ReportError::Input(format!("the input has no bytes {range:?}")))?;
                (Box::new(slice), Cow::Borrowed("the input"))
            }
            Input::File(path) => {
                let mut file = File::open(path).map_err(|e| ReportError::io(path, e))?;
                let range = group.range.clone().unwrap_or(0..u64::MAX);
                file.seek(SeekFrom::Start(range.start))
                    .map_err(|e| ReportError::io(path, e))?;
                let reader = BufReader::with_capacity(256 * 1024, file.take(range.end - range.start));
                (Box::new(reader), Cow::Owned(path.display().to_string()))
            }
            Input::Unavailable(_) => return Ok(()),
        };
        let start = group.range.as_ref().map_or(0, |r| r.start);
        let mut lines = Lines::new(reader, start, self.max_line);
        let mut buf = Vec::new();
        let mut prompt_rows: Vec<Row> = Vec::with_capacity(group.parts.len());
        while let Some(read) = lines
            .next_line(&mut buf)
            .map_err(|e| ReportError::Input(format!("{name}: {e}")))?
        {
            let at = || format!("{name} byte {} (line {} of the chunk)", read.offset, read.number);
            let (prompt_id, input_model) = if read.truncated(buf.len()) {
                (None, None)
            } else {
                match serde_json::from_slice::<InputLine>(&buf) {
                    Ok(line) => (
                        line.custom_id.map(Cow::into_owned),
                        line.body.and_then(|b| b.model).map(Cow::into_owned),
                    ),
                    Err(_) => (None, None),
                }
            };
            let Some(prompt_id) = prompt_id else {
                let row = Row {
                    custom_id: String::new(),
                    prompt_id: String::new(),
                    model: String::new(),
                    chunk: group.chunk,
                    attempt: 0,
                    status: Status::Invalid,
                    answer: None,
                    error: Some(format!("{}: not a request line with a custom_id", at())),
                    answered_by: None,
                    tokens: None,
                    cost: None,
                };
                summary.add(&row, BatchMode::Batch);
                self.emit_alone(&row, sink)?;
                continue;
            };
            prompt_rows.clear();
            for (part, chain) in group.parts.iter().zip(chains.iter_mut()) {
                let custom_id = format!("{}{prompt_id}", part.prefix);
                let found = chain.take(&custom_id)?;
                let mode = found
                    .as_ref()
                    .map_or(BatchMode::Batch, |(_, i)| chain.attempts[*i].mode);
                let result = found.map(|(Found { outcome, .. }, index)| (outcome, index, mode));
                let mut row = self.row(group, part, Some(&prompt_id), input_model.as_deref(), result);
                if row.attempt == 0 {
                    row.custom_id = custom_id;
                }
                summary.add(&row, mode);
                prompt_rows.push(row);
            }
            match self.shape {
                Shape::Rows => {
                    for row in &prompt_rows {
                        sink.row(row.cells())?;
                    }
                }
                Shape::Pivot => sink.row(rows::pivot_cells(
                    &prompt_id,
                    group.chunk,
                    &self.target.models,
                    &prompt_rows,
                ))?,
            }
        }
        Ok(())
    }

    /// A row outside the join: alone in its pivot row. One of no model of the matrix (an input
    /// line that is not a request) shows its status and error in the first model's group.
    fn emit_alone(&self, row: &Row, sink: &mut dyn Sink) -> Result<(), ReportError> {
        let models = &self.target.models;
        match self.shape {
            Shape::Rows => sink.row(row.cells()),
            Shape::Pivot if models.contains(&row.model) || models.is_empty() => sink.row(rows::pivot_cells(
                &row.prompt_id,
                row.chunk,
                models,
                std::slice::from_ref(row),
            )),
            Shape::Pivot => {
                let shown = Row {
                    model: models[0].clone(),
                    ..row.clone()
                };
                sink.row(rows::pivot_cells(&row.prompt_id, row.chunk, models, &[shown]))
            }
        }
    }

    /// The row of one request of `part`: `prompt_id` from the input (else from the custom_id),
    /// its result (the outcome, the 0-based attempt that gave it and that attempt's mode).
    fn row(
        &self,
        group: &Group,
        part: &Part,
        prompt_id: Option<&str>,
        input_model: Option<&str>,
        result: Option<(Outcome, usize, BatchMode)>,
    ) -> Row {
        let (outcome, attempt, mode) = match result {
            Some((outcome, index, mode)) => (outcome, index as u32 + 1, mode),
            None => (
                Outcome {
                    status: Some(Status::Missing),
                    error: Some(format!(
                        "no result in {}",
                        attempt_label(part, part.attempts.len().saturating_sub(1))
                    )),
                    ..Default::default()
                },
                0,
                BatchMode::Batch,
            ),
        };
        let custom_id = outcome.custom_id.clone().unwrap_or_default();
        let prompt_id = match prompt_id {
            Some(p) => p.to_string(),
            None => custom_id
                .strip_prefix(part.prefix.as_str())
                .unwrap_or(&custom_id)
                .to_string(),
        };
        let model = part
            .model
            .clone()
            .or_else(|| input_model.map(str::to_string))
            .unwrap_or_default();
        let mut row = Row {
            custom_id,
            prompt_id,
            model,
            chunk: group.chunk,
            attempt,
            status: outcome.status.unwrap_or(Status::Invalid),
            answer: outcome.answer,
            error: outcome.error,
            answered_by: outcome.model,
            tokens: outcome.tokens,
            cost: None,
        };
        if let Some(key) = self.key {
            apply_key(key, &mut row);
        }
        if row.model.is_empty()
            && let Some(answered_by) = &row.answered_by
        {
            row.model = answered_by.clone();
        }
        row.cost = self.cost(&row, mode);
        row
    }

    /// The exact cost of one answer, when its model is priced.
    fn cost(&self, row: &Row, mode: BatchMode) -> Option<String> {
        let prices = self.target.prices.as_deref()?;
        let tokens = row.tokens.as_ref()?;
        let mut usage = Usage::default();
        let model = row.answered_by.as_deref().unwrap_or(row.model.as_str());
        crate::pricing::add_line(&mut usage, Some(model), tokens);
        let cost = crate::pricing::cost(&usage, prices, mode);
        cost.unpriced.is_empty().then(|| {
            if cost.actual.is_empty() {
                "0".into()
            } else {
                cost.actual
            }
        })
    }
}

/// `--key`'s named groups, where they matched.
fn apply_key(key: &Regex, row: &mut Row) {
    let Some(captures) = key.captures(&row.custom_id) else {
        return;
    };
    if let Some(prompt) = captures.name("prompt") {
        row.prompt_id = prompt.as_str().to_string();
    }
    if let Some(model) = captures.name("model") {
        row.model = model.as_str().to_string();
    }
    if let Some(chunk) = captures
        .name("chunk")
        .and_then(|c| c.as_str().trim_start_matches('c').parse().ok())
    {
        row.chunk = Some(chunk);
    }
}

fn attempt_label(part: &Part, index: usize) -> String {
    part.attempts
        .get(index)
        .map_or_else(|| part.name.clone(), |a| a.name.clone())
}

#[derive(Deserialize)]
struct InputLine<'a> {
    #[serde(borrow, default)]
    custom_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    body: Option<InputBody<'a>>,
}

#[derive(Deserialize)]
struct InputBody<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
}
